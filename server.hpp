// The listening side shared by the proxy listener, the control socket and
// the HTTP statistics listener: one Acceptor (batches, pausing when
// descriptors run out), and for the two request/reply services a
// SessionServer of Sessions whose replies are rendered as the peer reads.
//
// Invariants: an Acceptor whose accept() fails for lack of descriptors is
// not watched until it resumes (no busy loop); a Session holds at most
// kWindow bytes of unsent output plus one piece, and renders more only as
// the peer takes it; all sessions of a server together render at most
// kRenderBudget bytes per loop pass; a closed session is freed at the end
// of the pass, never while an event may still name it.
#ifndef BALANCE_SERVER_HPP
#define BALANCE_SERVER_HPP

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "balance.hpp"
#include "net.hpp"

// Renders a reply piece by piece. A Producer holds a cursor, never
// pointers into the pool, so the pool may change between two pieces
// (a deleted channel is skipped, a new one may appear).
class Producer {
 public:
  virtual ~Producer() = default;
  // Appends the next piece (at most a few dozen channels' worth) to *out;
  // false once the reply is complete.
  virtual bool produce(std::string* out) = 0;
};

class Acceptor final : public Watcher {
 public:
  using OnAccept = std::function<void(Fd fd, const Address& peer)>;

  // `batch` connections at most per readiness, so a flood of connects
  // cannot starve everything else.
  Acceptor(State& state, int batch, OnAccept on_accept);
  ~Acceptor();
  void start(Fd listener);
  // Accept only at tick(), at the end of the pass (the proxy: a slot freed
  // in this pass is then free for the client that arrived in it).
  void defer_to_tick() { deferred_ = true; }
  // Called when descriptors run out (the proxy drops its spare pipes),
  // and before resuming (the proxy first takes its reserve descriptor).
  std::function<void()> on_shortage;
  std::function<bool()> may_resume;

  void on_ready(int fd, unsigned events) override;
  void tick();
  int64_t next_deadline_ms() const;
  // A descriptor was freed: try again now rather than at the next check.
  void resume_soon();
  // Descriptors ran out elsewhere (e.g. for a back-end socket).
  void pause(int error);
  // While held, the listener is not watched (a hand-over is offered).
  void hold(bool on);
  int fd() const { return listener_.get(); }
  void close();

 private:
  void accept_batch();

  State& state_;
  int batch_;
  OnAccept on_accept_;
  Fd listener_;
  bool deferred_ = false;
  bool pending_ = false;  // readable in this pass, accepted at tick()
  bool paused_ = false;
  bool held_ = false;
  int64_t resume_ms_ = 0;
};

class SessionServer;

class Session : public Watcher {
 public:
  static constexpr size_t kWindow = 64 * 1024;

  Session(SessionServer& server, Fd fd);
  virtual ~Session();
  void on_ready(int fd, unsigned events) final;
  bool closed() const { return !fd_; }
  int64_t active_ms() const { return active_ms_; }
  // When the session is closed for inactivity.
  virtual int64_t deadline_ms() const = 0;
  // Makes room for a newer session: a last word, then close.
  virtual void evict() { close(); }
  void close();
  // Continues a reply that the pass's render budget cut short.
  void resume() { update(); }
  bool waiting_for_budget() const { return starved_; }

 protected:
  // Takes what it can from in_ (the bytes read so far) and replies.
  virtual void consume() = 0;
  // Read no more while in_ holds this many bytes.
  virtual size_t input_limit() const = 0;

  // Queues reply text; or a Producer rendered as the peer reads, followed
  // by `tail` once it ends.
  void reply_text(const std::string& text);
  void reply_stream(std::unique_ptr<Producer> producer, std::string tail);
  // A reply is being rendered, or a window's worth waits: take no more
  // requests until it drains.
  bool busy() const { return producer_ || pending() >= kWindow; }
  void close_when_done() { closing_ = true; }
  // A best-effort write of a last message, whatever is pending.
  void write_now(const std::string& text);
  // The session's connection, for another owner: the session is closed
  // without closing it.
  Fd take_socket();
  bool input_ended() const { return input_eof_; }
  State& state();
  // Writes, renders and sets the interest; every path ends here.
  void update();

  std::string in_;
  SessionServer& server_;

 private:
  size_t pending() const { return out_.size() - sent_; }
  void render();
  // Bytes written, or -1 when the session closed on an error.
  long write_pending();

  Fd fd_;
  std::string out_;
  size_t sent_ = 0;  // bytes of out_ already written
  std::unique_ptr<Producer> producer_;
  std::string tail_;
  bool closing_ = false;
  bool input_eof_ = false;
  bool starved_ = false;  // a piece is due but the budget was spent
  int64_t active_ms_ = 0;
};

class SessionServer {
 public:
  using Factory = std::function<std::unique_ptr<Session>(SessionServer&, Fd, const Address&)>;
  static constexpr size_t kRenderBudget = 256 * 1024;

  SessionServer(State& state, size_t max_sessions, Factory factory);
  void start(Fd listener);
  void tick();
  int64_t next_deadline_ms() const;
  void close_all();

  State& state() { return state_; }
  int listener_fd() const { return acceptor_.fd(); }
  // Bytes a session may still render in this pass.
  size_t budget() const { return budget_; }
  void spend(size_t bytes) { budget_ = bytes >= budget_ ? 0 : budget_ - bytes; }
  size_t session_count() const;

 private:
  void accepted(Fd fd, const Address& peer);

  State& state_;
  size_t max_sessions_;
  Factory factory_;
  Acceptor acceptor_;
  std::vector<std::unique_ptr<Session>> sessions_;
  size_t budget_ = kRenderBudget;
};

// Pure framing, fuzzed: the next line of a control session's input.
class LineFramer {
 public:
  enum class Event { None, Line, TooLong, Abandon };
  LineFramer(size_t max_line, size_t max_discard) : max_line_(max_line), max_discard_(max_discard) {}
  // Takes bytes from the front of *in. Line: *line is the next line
  // (without its newline; a blank line of any length comes out empty).
  // TooLong: a line over max_line ended (its bytes are dropped). Abandon: a line still unended after max_discard bytes
  // (the peer is not speaking the protocol). None: more input is needed.
  Event next(std::string* in, std::string* line);

 private:
  size_t max_line_, max_discard_;
  bool discarding_ = false;
  bool blank_ = false;  // the line being discarded holds only blanks so far
  size_t discarded_ = 0;
};

// Pure framing, fuzzed: whether *in holds a whole HTTP request head.
enum class HeadState { Incomplete, Complete, TooLarge };
HeadState http_head_state(const std::string& in, size_t limit);

#endif

// The proxy: the listener, the relayed connections and the probes of
// down channels, all driven by the one readiness loop in balance.cpp.
#ifndef BALANCE_RELAY_HPP
#define BALANCE_RELAY_HPP

#include <list>
#include <memory>
#include <string>
#include <vector>

#include "balance.hpp"
#include "net.hpp"
#include "server.hpp"

struct Connection;
struct Probe;

// Relay buffers are taken from here while data waits and given back as
// soon as they are empty, so an idle connection holds none.
class BufferPool {
 public:
  static constexpr size_t kSize = 32 * 1024;
  std::unique_ptr<char[]> take();
  void give(std::unique_ptr<char[]> buffer);

 private:
  std::vector<std::unique_ptr<char[]>> free_;
};

// Pipes for the splice path, kept like the buffers: taken while bytes
// wait in them, a few kept for the next bulk transfer (each costs two
// descriptors, so the spares go when descriptors run short).
class PipePool {
 public:
  Pipe take();
  void give(Pipe pipe);
  void clear() { free_.clear(); }

 private:
  std::vector<Pipe> free_;
};

// A waiting client as the hand-over sees it (handover.cpp).
struct WaiterView {
  int fd;
  bool priority;
  int64_t waited_ms;
  uint64_t cost;
  std::string bytes;  // read from it, not yet relayed
  bool eof;
};

struct HandedWaiter;

class Proxy {
 public:
  explicit Proxy(State& state);
  ~Proxy();

  // Opens the listening socket; false with *err on failure.
  bool listen(std::string* err);
  // Once per loop pass, after the events: timers, probes, the queue and
  // the freeing of closed connections.
  void tick();
  // The earliest deadline the loop must wake up for, or -1.
  int64_t next_deadline_ms() const;
  size_t connection_count() const { return connections_.size(); }
  // Those not yet closed (closed ones are freed at the end of the pass).
  size_t relayed_count() const { return connections_.size() - closed_.size(); }
  // Closes every connection at once (shutdown of the process).
  void close_all();

  // Restart and upgrade (handover.cpp). The old side: the listener and
  // the waiting clients in the order they are to be served; then, once a
  // new process has taken them, this one stops accepting and forgets them
  // (closing only its own descriptors) and relays what is left.
  int listener_fd() const { return acceptor_.fd(); }
  // From the offer to its answer the old side is frozen: it accepts
  // nothing, serves nobody and reads nothing from waiting clients.
  void freeze(bool on);
  bool frozen() const { return frozen_; }
  std::vector<WaiterView> waiters_in_order() const;
  void handed_over();
  // The new side: the old one's listener and waiting clients.
  void adopt_listener(Fd listener);
  void adopt_waiter(HandedWaiter& waiter);

  // Used by connections and probes.
  State& state() { return state_; }
  BufferPool& buffers() { return buffers_; }
  PipePool& pipes() { return pipes_; }
  void dispatch(Connection& connection);
  // -j: whether the request's first bytes tell its expected cost yet.
  bool sized(Connection& connection);
  void finished(Connection& connection);
  void connect_failed(Connection& connection, int error);
  void probe_done(Probe& probe, int error);
  void touch(Connection& connection);
  void dump(const Connection& connection, bool to_backend, const char* data, size_t length);

 private:
  void accepted(Fd fd, const Address& peer);
  Connection& add_connection(Fd fd, const Address& peer);
  WaiterView waiter_view(const Connection& c, bool priority, int64_t waited_ms) const;
  // Every slot goes back through here: after a hand-over the new process
  // hears of it.
  void release_slot(Channel& channel, int64_t relayed_ms, const Job& job);
  void connect_to(Connection& connection, Channel& channel);
  const Address* source_for(const Channel& channel) const;
  void serve_queue();
  void expire();
  void start_probes();
  void free_closed();
  // Clients closed for one reason, logged at most every ten seconds.
  struct DropLog {
    int64_t last_ms = -1000000;
    uint64_t since_log = 0;
  };
  void log_drop(DropLog& log, const char* why, const std::string& last = "");

  State& state_;
  Acceptor acceptor_;
  Fd reserve_;  // a spare descriptor for the back-end of the last client
  BufferPool buffers_;
  PipePool pipes_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> closed_;  // freed at the end of the pass
  std::vector<std::unique_ptr<Probe>> probes_;
  // Connections ordered by deadline: all connects share -t, all relayed
  // connections -T, so appending keeps each list sorted.
  std::list<Connection*> connecting_;
  std::list<Connection*> idle_;
  std::list<Connection*> sizing_;  // -j: waiting for the request's first bytes
  bool frozen_ = false;            // offered to a new process, no answer yet
  bool handed_over_ = false;       // taken: what is left is relayed, then exit
  uint64_t next_id_ = 1;
  DropLog drop_full_, drop_wait_, drop_refused_, drop_denied_;
};

#endif

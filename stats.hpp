// Statistics: the show table and its brief, CSV, JSON and queue forms,
// and the Prometheus metrics, all rendered in pieces by Producers so that
// a reply of any size costs bounded memory and bounded time per loop pass.
// One table of per-channel fields drives every form. Also the read-only
// HTTP listener (-s) that serves them.
#ifndef BALANCE_STATS_HPP
#define BALANCE_STATS_HPP

#include <memory>
#include <string>

#include "server.hpp"

enum class ShowForm { Table, Brief, Csv, Json, Queue, Rules, Config };

std::unique_ptr<Producer> make_show(const State& state, ShowForm form);
std::unique_ptr<Producer> make_prometheus(const State& state);

// The whole reply at once, for tests and small replies.
std::string render_all(Producer& producer);

// A word as a POSIX shell reads it back: quoted when it must be.
std::string shell_word(const std::string& word);

// Escaping, exposed for tests.
std::string json_string(const std::string& text);
std::string csv_field(const std::string& text);
std::string label_value(const std::string& text);

// The read-only HTTP statistics listener (-s): GET / and GET /metrics,
// HTTP/1.0, one request per connection; the body is streamed and ends
// with the connection.
class StatsServer {
 public:
  explicit StatsServer(State& state);
  bool listen(std::string* err);
  // Restart and upgrade: the listener, handed to or taken from another
  // balance (-1 when there is none).
  int listener_fd() const { return sessions_.listener_fd(); }
  void adopt(Fd listener) { sessions_.start(std::move(listener)); }
  void tick() { sessions_.tick(); }
  int64_t next_deadline_ms() const { return sessions_.next_deadline_ms(); }
  void close() { sessions_.close_all(); }

 private:
  State& state_;
  SessionServer sessions_;
};

// What to send for one HTTP request head: the response head, and the
// body as a Producer (null for none). Pure apart from reading the state.
struct HttpAnswer {
  std::string head;
  std::unique_ptr<Producer> body;
};
HttpAnswer http_answer(const std::string& request, const State& state);

#endif

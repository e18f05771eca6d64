// Relayed connections and their state machine, the listener and the
// probes of down channels.
//
// A Connection has two symmetric sides, the client and the back-end. Each
// side's buffer (and, for a bulk stream on Linux, its pipe) holds bytes
// read from that side and not yet written to the other. Invariants:
//  - a side is read only while its buffer has room (back-pressure), and
//    watched for writing only while the other side's buffer has data;
//  - a buffer or pipe is held only while it holds data;
//  - when a side has sent EOF and its buffer is drained, the other side's
//    write direction is shut down (half-close); the connection ends when
//    both directions have ended, or at once on an error (then the other
//    side gets a reset, so nothing looks complete that is not);
//  - a connection holds a slot on `channel` from the start of its connect
//    to its end (Connecting and Relaying), and none while Waiting.
#include "relay.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "handover.hpp"

namespace {

enum class ConnState {
  Sizing,      // -j: reading the request's first bytes before choosing
  Waiting,     // no channel free: in the pool's wait queue, no back-end fd
  Connecting,  // non-blocking connect to `channel` in progress
  Relaying,    // both sides open, bytes flow until both directions end
  Closed,      // fds closed, slot released; freed at the end of the pass
};

}  // namespace

struct Side {
  Fd fd;
  std::unique_ptr<char[]> buffer;  // bytes read from this side, [start, end)
  uint32_t start = 0, end = 0;
  // A side whose read once filled the buffer is a bulk stream: from then
  // on its bytes go through `pipe` (splice, no copy) whenever the buffer
  // is empty. The buffer's bytes are always older than the pipe's.
  bool bulk = false;
  Pipe pipe;               // taken only while bytes wait in it
  uint32_t piped = 0;      // bytes in the pipe
  bool pipe_full = false;  // splice_in() could not add to a non-empty pipe
  bool read_eof = false;    // this side sent EOF
  bool hangup_seen = false; // a hang-up reported while waiting (-e), not yet read
  bool write_shut = false;  // we shut down writing to this side
  uint64_t bytes_read = 0;

  size_t buffered() const { return end - start; }
  size_t pending() const { return buffered() + piped; }
  bool splicing() const { return bulk && buffered() == 0; }
  bool has_room() const {
    if (splicing()) return !pipe_full && piped < kPipeSize;
    return !buffer || end < BufferPool::kSize;
  }
};

struct Connection final : Watcher {
  Proxy& proxy;
  uint64_t id;
  size_t index = 0;  // position in Proxy::connections_
  ConnState state = ConnState::Waiting;
  Side client, backend;
  Address peer;
  std::string key;  // client host key for hash groups
  Channel* channel = nullptr;
  uint64_t ticket = 0;       // its place in the pool's wait queue, 0 = none
  bool priority = false;     // from a priority network (-P): served first
  bool offered = false;      // waiting when offered to a new process (restart)
  uint64_t cost = 0;         // -j: the request's expected cost in bytes, 0 = unknown
  int64_t expected_end_ms = 0;  // -j: when the pool expects the job to end
  std::list<Connection*>* timer = nullptr;  // connecting_ or idle_
  std::list<Connection*>::iterator timer_it;
  int64_t accepted_ms = 0, connect_ms = 0, relay_ms = 0, active_ms = 0;
  int64_t waited_ms = 0;
  const char* end_reason = "closed";

  Connection(Proxy& owner, uint64_t number) : proxy(owner), id(number) {}

  void on_ready(int fd, unsigned events) override;
  void update_interest();
  // Moves bytes from `from` to `to`; false when the connection was closed.
  bool pump(Side& from, Side& to, bool to_backend);
  bool pump_pipe(Side& from, Side& to, bool to_backend);
  // Bytes that arrived from `from` (counters, dump) and onwards to `to`.
  bool received(Side& from, Side& to, bool to_backend, const char* data, size_t length);
  // Bytes written to `to` (counters, idle timer).
  void delivered(const Side& to, size_t length);
  bool flush(Side& from, Side& to);
  bool flush_pipe(Side& from, Side& to);
  void return_storage(Side& side);
  bool direction_done(const Side& from, const Side& to) const {
    return from.read_eof && from.pending() == 0 && to.write_shut;
  }
  void abort(const char* reason);
  void close_sides(bool reset);
  void set_timer(std::list<Connection*>* list);
};

// A probe knows its channel by id: a channel deleted or assigned while
// the probe runs is no longer found, and nothing dangles.
struct Probe final : Watcher {
  Proxy& proxy;
  uint64_t channel_id;
  Fd fd;
  int64_t deadline_ms;
  bool done = false;

  Probe(Proxy& owner, uint64_t target, int64_t deadline)
      : proxy(owner), channel_id(target), deadline_ms(deadline) {}
  void on_ready(int, unsigned) override {
    if (!done) proxy.probe_done(*this, socket_error(fd.get()));
  }
};

std::unique_ptr<char[]> BufferPool::take() {
  if (free_.empty()) return std::unique_ptr<char[]>(new char[kSize]);
  std::unique_ptr<char[]> buffer = std::move(free_.back());
  free_.pop_back();
  return buffer;
}

void BufferPool::give(std::unique_ptr<char[]> buffer) {
  // Keep a few for the next burst; beyond that memory goes back.
  if (free_.size() < 64) free_.push_back(std::move(buffer));
}

Pipe PipePool::take() {
  if (free_.empty()) return open_pipe();
  Pipe pipe = std::move(free_.back());
  free_.pop_back();
  return pipe;
}

void PipePool::give(Pipe pipe) {
  if (free_.size() < 8) free_.push_back(std::move(pipe));
}

// One descriptor kept in reserve, so that a client accepted with the
// last free descriptor can still open its back-end socket.
Fd open_reserve() { return Fd(open("/dev/null", O_RDONLY | O_CLOEXEC)); }

bool loops_back(const State& state, const Address& address, std::string* err) {
  if (!reaches_listener(address, state.listen_address, state.options.ipv6_only)) return false;
  *err = address.text() + " is balance's own listening address; the channel would loop "
         "back to balance (give the back-end's own host or port)";
  return true;
}

std::string channel_name(const Channel& channel) {
  return std::to_string(channel.group()) + ":" + std::to_string(channel.number()) + " " +
         channel.config().address.text();
}

// ---------------------------------------------------------------- Connection

void Connection::set_timer(std::list<Connection*>* list) {
  if (timer) timer->erase(timer_it);
  timer = list;
  if (list) timer_it = list->insert(list->end(), this);
}

void Connection::update_interest() {
  Poller& poller = *proxy.state().poller;
  if (state == ConnState::Closed) return;
  unsigned want = 0;
  if ((state == ConnState::Sizing || state == ConnState::Waiting) && proxy.frozen()) {
    // Offered to a new process (restart): not a byte is read here that
    // the offer did not carry.
  } else if (state == ConnState::Sizing) {
    if (!client.read_eof && client.has_room()) want = kReadable;
  } else if (state == ConnState::Waiting) {
    // A waiting client's bytes are read into its buffer (they go to the
    // back-end once it has one); once the buffer is full only its leaving
    // is watched for. A half-closed client kept by -e is not watched.
    if (!client.read_eof && !client.hangup_seen) want = client.has_room() ? kReadable : kHangup;
  } else {
    if (!client.read_eof && client.has_room()) want |= kReadable;
    if (state == ConnState::Relaying && backend.pending()) want |= kWritable;
  }
  poller.watch(client.fd.get(), want, this);
  if (!backend.fd) return;
  want = 0;
  if (state == ConnState::Connecting) {
    want = kWritable;
  } else {
    if (!backend.read_eof && backend.has_room()) want |= kReadable;
    if (client.pending()) want |= kWritable;
  }
  poller.watch(backend.fd.get(), want, this);
}

void Connection::on_ready(int fd, unsigned events) {
  if (state == ConnState::Closed) return;
  bool is_client = fd == client.fd.get();
  if (!is_client && fd != backend.fd.get()) return;  // stale event
  // Offered to a new process since this pass's events were gathered: not
  // a byte is read here that the offer did not carry.
  if ((state == ConnState::Sizing || state == ConnState::Waiting) && proxy.frozen()) return;
  switch (state) {
    case ConnState::Sizing:
      // The request's first bytes: enough to know its size, or all there
      // is room for, and the choice is made (the deadline makes it too).
      // Sized first: a big request fills the buffer at once, and it is the
      // one whose size matters most.
      if (!pump(client, backend, true)) return;
      client.bulk = false;
      if (proxy.sized(*this) || client.read_eof || !client.has_room()) {
        proxy.dispatch(*this);
        return;
      }
      break;
    case ConnState::Waiting:
      if (!is_client) return;
      if (!client.read_eof && client.has_room()) {
        if (!pump(client, backend, true)) return;  // a reset: it has left
        client.bulk = false;  // a waiting client's bytes stay in its buffer
      } else if (events & kHangup) {
        // Its buffer is full and it shut down its sending side (or is
        // gone): bytes of its request may still wait unread in the
        // socket. Either it has left, or (-e) it keeps its place and the
        // rest of its request and its end are read once it is served.
        if (!proxy.state().options.keep_half_closed) {
          end_reason = "left the queue";
          close_sides(false);
          return;
        }
        client.hangup_seen = true;
      }
      // EOF from a waiting client, even after a request, is abandonment
      // (HAProxy's abortonclose): nothing is sent on its behalf. -e keeps
      // it waiting, half-closed, as before.
      if (client.read_eof && !proxy.state().options.keep_half_closed) {
        end_reason = "left the queue";
        close_sides(false);
        return;
      }
      break;
    case ConnState::Connecting:
      if (!is_client) {
        // On Linux a failed connect always shows as a hang-up, so a plain
        // "writable" means connected and needs no SO_ERROR query. Some BSD
        // stacks leave a soft error pending on a socket still connecting.
#if defined(__linux__)
        int error = (events & kHangup) ? socket_error(fd) : 0;
#else
        int error = socket_error(fd);
#endif
        if (error == 0 && (events & kHangup)) error = ECONNREFUSED;
        if (error) {
          proxy.connect_failed(*this, error);
          return;
        }
        state = ConnState::Relaying;
        relay_ms = active_ms = proxy.state().now_ms;
        proxy.state().pool.connected(*channel);
        set_timer(nullptr);
        proxy.touch(*this);
        if (!flush(client, backend)) return;
      } else if (events & (kReadable | kHangup)) {
        // Read what the client sends while the connect runs; it is
        // written once the back-end is there.
        if (!pump(client, backend, true)) return;
      }
      break;
    case ConnState::Relaying:
      if (is_client) {
        if ((events & kWritable) && !flush(backend, client)) return;
        if ((events & (kReadable | kHangup)) && !client.read_eof && client.has_room() &&
            !pump(client, backend, true))
          return;
      } else {
        if ((events & kWritable) && !flush(client, backend)) return;
        if ((events & (kReadable | kHangup)) && !backend.read_eof && backend.has_room() &&
            !pump(backend, client, false))
          return;
      }
      if (direction_done(client, backend) && direction_done(backend, client)) {
        close_sides(false);
        return;
      }
      if (events & kHangup) {
        // An error or hang-up that neither reading nor writing consumed
        // (the side is not read any more): the connection cannot go on.
        Side& side = is_client ? client : backend;
        int error = socket_error(fd);
        if (error || (side.read_eof && (is_client ? backend : client).pending())) {
          abort(error ? std::strerror(error) : "hang-up");
          return;
        }
      }
      break;
    case ConnState::Closed:
      return;
  }
  update_interest();
}

bool Connection::pump(Side& from, Side& to, bool to_backend) {
  if (from.splicing()) return pump_pipe(from, to, to_backend);
  if (!from.buffer) from.buffer = proxy.buffers().take();
  if (from.buffered() == 0) from.start = from.end = 0;
  if (from.end == BufferPool::kSize && from.start > 0) {
    std::memmove(from.buffer.get(), from.buffer.get() + from.start, from.buffered());
    from.end -= from.start;
    from.start = 0;
  }
  size_t room = BufferPool::kSize - from.end;
  // recv()/send() rather than read()/write(): they skip the file layer,
  // which is measurably cheaper per call.
  ssize_t n = recv(from.fd.get(), from.buffer.get() + from.end, room, 0);
  if (n > 0) {
    // A full read says more is coming: splice from now on (not when the
    // bytes must be seen, for -p).
    if (size_t(n) == room && kHaveSplice && !proxy.state().options.packet_dump)
      from.bulk = true;
    from.end += uint32_t(n);
    return received(from, to, to_backend, from.buffer.get() + from.end - n, size_t(n));
  }
  if (n == 0) {
    from.read_eof = true;
  } else if (!would_block(errno)) {
    abort(std::strerror(errno));
    return false;
  }
  return_storage(from);
  if (state == ConnState::Relaying) return flush(from, to);
  return true;
}

bool Connection::pump_pipe(Side& from, Side& to, bool to_backend) {
  if (!from.pipe) {
    from.pipe = proxy.pipes().take();
    if (!from.pipe) {
      from.bulk = false;  // no descriptors to spare: copy instead
      return pump(from, to, to_backend);
    }
  }
  long n = splice_in(from.fd.get(), from.pipe, kPipeSize - from.piped);
  if (n > 0) {
    from.piped += uint32_t(n);
    return received(from, to, to_backend, nullptr, size_t(n));
  }
  if (n < 0 && !would_block(errno)) {
    abort(std::strerror(errno));
    return false;
  }
  if (from.piped) {
    // The pipe has no room left (it counts pages, not bytes), or the
    // socket is empty or at EOF: either way reading waits until the pipe
    // drains, which the other side's writability brings.
    from.pipe_full = true;
    return true;
  }
  // Nothing moved into an empty pipe: the socket is empty, at EOF, or at
  // TCP urgent data, where splice stops for good (0 or EAGAIN while more
  // waits behind the mark). recv() tells them apart and steps past the
  // mark; splicing resumes at the next read.
  return_storage(from);
  from.bulk = false;
  if (!pump(from, to, to_backend)) return false;
  from.bulk = true;
  return true;
}

bool Connection::received(Side& from, Side& to, bool to_backend, const char* data,
                          size_t length) {
  if (data && proxy.state().options.packet_dump) proxy.dump(*this, to_backend, data, length);
  from.bytes_read += length;
  if (!to_backend && channel) proxy.state().pool.count_received(*channel, length);
  if (state != ConnState::Relaying) return true;  // written once connected
  proxy.touch(*this);
  return flush(from, to);
}

void Connection::delivered(const Side& to, size_t length) {
  if (&to == &backend && channel) proxy.state().pool.count_sent(*channel, length);
  proxy.touch(*this);
}

// Gives the side's buffer and pipe back to their pools once empty, so
// that an idle connection holds neither.
void Connection::return_storage(Side& side) {
  if (side.buffer && side.buffered() == 0) {
    proxy.buffers().give(std::move(side.buffer));
    side.start = side.end = 0;
  }
  if (side.pipe && side.piped == 0) proxy.pipes().give(std::move(side.pipe));
}

bool Connection::flush(Side& from, Side& to) {
  if (from.buffered()) {
    ssize_t n = send(to.fd.get(), from.buffer.get() + from.start, from.buffered(), 0);
    if (n < 0) {
      if (would_block(errno)) return true;
      abort(std::strerror(errno));
      return false;
    }
    from.start += uint32_t(n);
    delivered(to, size_t(n));
    if (from.buffered()) return true;  // short write: wait for POLLOUT
    return_storage(from);
  }
  if (from.piped && !flush_pipe(from, to)) return false;
  if (from.pending()) return true;
  if (from.read_eof && !to.write_shut) {
    to.write_shut = true;
    // When the other direction has ended too, the close that follows at
    // once sends the FIN: no shutdown() of its own.
    if (direction_done(to, from)) return true;
    if (shutdown(to.fd.get(), SHUT_WR) != 0 && errno != ENOTCONN) {
      abort(std::strerror(errno));
      return false;
    }
  }
  return true;
}

bool Connection::flush_pipe(Side& from, Side& to) {
  long n = splice_out(from.pipe, to.fd.get(), from.piped);
  if (n < 0) {
    if (would_block(errno)) return true;
    abort(std::strerror(errno));
    return false;
  }
  from.piped -= uint32_t(n);
  from.pipe_full = false;
  delivered(to, size_t(n));
  return_storage(from);
  return true;
}

void Connection::abort(const char* reason) {
  end_reason = reason;
  close_sides(true);
}

void Connection::close_sides(bool reset) {
  Poller& poller = *proxy.state().poller;
  for (Side* side : {&client, &backend}) {
    if (!side->fd) continue;
    poller.forget(side->fd.get());
    if (reset) set_linger_reset(side->fd.get());
    side->fd.reset();
    // Unsent bytes are dropped: the buffer goes back to the pool, but a
    // pipe that still holds bytes is closed with them, never reused.
    side->start = side->end = 0;
    return_storage(*side);
    side->pipe = Pipe();
  }
  set_timer(nullptr);
  proxy.finished(*this);
}

// ---------------------------------------------------------------- Proxy

Proxy::Proxy(State& state)
    : state_(state),
      acceptor_(state, 64, [this](Fd fd, const Address& peer) { accepted(std::move(fd), peer); }) {
  // Accepting waits for the end of the pass: a connection that ended in
  // this pass frees its slot first, so a client that reconnects at once
  // finds the fast channel it just left free again.
  acceptor_.defer_to_tick();
  // Spare pipes hold descriptors: they go first when descriptors run out,
  // and accepting resumes only once the reserve can be had again.
  acceptor_.on_shortage = [this] { pipes_.clear(); };
  acceptor_.may_resume = [this] {
    if (!reserve_) reserve_ = open_reserve();
    return bool(reserve_);
  };
}

Proxy::~Proxy() { close_all(); }

bool Proxy::listen(std::string* err) {
  const Options& options = state_.options;
  Address address = state_.listen_address;  // resolved at start-up
  std::string why;
  Fd listener = listen_tcp(address, options.ipv6_only, 1024, &why);
  if (!listener && options.bind_address.empty() && address_family(options) == AF_UNSPEC &&
      address.family() == AF_INET6) {
    // No IPv6 on this host: fall back to the IPv4 wildcard.
    if (resolve_address("", options.port, AF_INET, true, &address, &why))
      listener = listen_tcp(address, false, 1024, &why);
  }
  if (!listener) {
    *err = why;
    return false;
  }
  state_.listen_text = address.text();
  acceptor_.start(std::move(listener));
  reserve_ = open_reserve();
  return true;
}

Connection& Proxy::add_connection(Fd fd, const Address& peer) {
  auto connection = std::make_unique<Connection>(*this, next_id_++);
  connection->client.fd = std::move(fd);
  connection->peer = peer;
  connection->key = peer.host_key();
  connection->accepted_ms = state_.now_ms;
  connection->index = connections_.size();
  Connection& c = *connection;
  connections_.push_back(std::move(connection));
  return c;
}

void Proxy::accepted(Fd fd, const Address& peer) {
  // Access rules first: a refused client is closed before anything else
  // happens, and no back-end ever hears of it.
  ClientRules& rules = state_.rules;
  size_t rule = ClientRules::kNone;
  bool allowed = rules.allowed(peer, &rule);
  rules.count(rule);
  if (!allowed) {
    log_drop(drop_denied_, "refused by the access rules",
             peer.host_text() + " (" + rules.describe(rule) + ")");
    return;  // fd closes here
  }
#if !defined(__linux__)
  set_nodelay(fd.get());  // Linux passes the listener's TCP_NODELAY on
#endif
  const Keepalive& keepalive = state_.options.client_keepalive;
  if (keepalive.idle_s) set_keepalive(fd.get(), keepalive.idle_s, keepalive.interval_s, keepalive.count);
  Connection& c = add_connection(std::move(fd), peer);
  c.priority = rules.priority(peer, &rule);
  rules.count(rule);
  if (state_.options.size_wait_ms > 0) {
    // -j: the choice waits for the request's first bytes, at most -j.
    c.state = ConnState::Sizing;
    c.set_timer(&sizing_);
    c.update_interest();
    return;
  }
  dispatch(c);
}

bool Proxy::sized(Connection& c) {
  const Side& client = c.client;
  if (client.buffered() == 0) return false;
  const char* first = client.buffer.get() + client.start;
  int queued = 0;
#if defined(FIONREAD)
  if (ioctl(client.fd.get(), FIONREAD, &queued) != 0) queued = 0;
#endif
  bool complete = false;
  c.cost = request_cost(first, client.buffered(), uint64_t(std::max(queued, 0)), &complete);
  // distcc's request tells its size once its DOTI token is in; any other
  // request counts what its first bytes brought.
  bool distcc = std::strncmp(first, "DIST", std::min<size_t>(4, client.buffered())) == 0;
  return complete || (!distcc && c.cost > 0);
}

void Proxy::release_slot(Channel& channel, int64_t relayed_ms, const Job& job) {
  uint64_t id = channel.id();  // the release may free a deleted channel
  state_.pool.release(channel, relayed_ms, job);
  // From the offer on, the process that takes over counts this slot.
  if (state_.handover) state_.handover->released(id, relayed_ms);
}

void Proxy::dispatch(Connection& c) {
  Pool& pool = state_.pool;
  if (c.state == ConnState::Sizing) c.set_timer(nullptr);
  if (handed_over_) {
    // A client to place anew (its connect failed) after a hand-over: the
    // new process places it, as it alone knows which slots are free.
    WaiterView view = waiter_view(c, c.priority, state_.now_ms - c.accepted_ms);
    bool passed = state_.handover->pass_on(view);
    c.end_reason = passed ? "handed over" : "hand-over link lost";
    if (passed) state_.poller->forget_shared(c.client.fd.get());
    c.close_sides(false);
    return;
  }
  // First come, first served: nobody passes a client that waits already
  // (serve_queue() decides who goes first). While offered to a new process
  // (its connect failed meanwhile) it waits: the slots are counted there.
  Channel* channel = !frozen_ && pool.queue_length() == 0
                         ? pool.choose(c.key, c.cost, state_.now_ms)
                         : nullptr;
  if (channel) {
    c.expected_end_ms = pool.acquire(*channel, state_.now_ms, c.cost);
    connect_to(c, *channel);
    return;
  }
  Waiter waiter;
  waiter.owner = &c;
  waiter.cost = c.cost;
  waiter.key = c.key;
  waiter.port = c.peer.port();
  waiter.priority = c.priority;
  switch (pool.enqueue(waiter, state_.now_ms, &c.ticket)) {
    case Admission::Queued:
      c.state = ConnState::Waiting;
      c.update_interest();
      return;
    case Admission::Full:
      log_drop(drop_full_, "queue full");
      c.end_reason = "queue full";
      break;
    case Admission::NothingInService:
      log_drop(drop_refused_, "no channel in service");
      c.end_reason = "no channel in service";
      break;
  }
  c.close_sides(false);
}

void Proxy::freeze(bool on) {
  frozen_ = on;
  acceptor_.hold(on);
  for (auto& c : connections_) {
    c->offered = false;
    if (c->state != ConnState::Waiting && c->state != ConnState::Sizing) continue;
    c->offered = on;  // the offer that follows carries exactly these
    c->update_interest();
  }
}

WaiterView Proxy::waiter_view(const Connection& c, bool priority, int64_t waited_ms) const {
  const Side& client = c.client;
  std::string bytes = client.buffered()
                          ? std::string(client.buffer.get() + client.start, client.buffered())
                          : std::string();
  return WaiterView{client.fd.get(), priority, waited_ms, c.cost, bytes, client.read_eof};
}

std::vector<WaiterView> Proxy::waiters_in_order() const {
  std::vector<WaiterView> waiters;
  auto add = [&](const Connection& c, bool priority, int64_t waited_ms) {
    waiters.push_back(waiter_view(c, priority, waited_ms));
  };
  for (bool priority : {true, false})
    for (const auto& [ticket, waiter] : state_.pool.waiters(priority))
      add(*static_cast<const Connection*>(waiter.owner), priority, state_.now_ms - waiter.since_ms);
  // Clients still being sized (-j) come last, as they would have queued.
  for (const Connection* c : sizing_) add(*c, c->priority, state_.now_ms - c->accepted_ms);
  return waiters;
}

void Proxy::handed_over() {
  acceptor_.close();
  frozen_ = false;
  handed_over_ = true;
  // The new process holds these clients now: close our descriptors only,
  // no reset and no shutdown, so their connections go on there.
  for (auto& c : connections_) {
    if (c->state != ConnState::Waiting && c->state != ConnState::Sizing) continue;
    if (c->ticket) state_.pool.leave_queue(c->ticket, state_.now_ms);
    c->ticket = 0;
    if (!c->offered) {
      // Queued after the offer (its connect failed meanwhile): the new
      // process has no copy of it yet.
      dispatch(*c);
      continue;
    }
    c->end_reason = "handed over";
    state_.poller->forget_shared(c->client.fd.get());
    c->close_sides(false);
  }
}

void Proxy::adopt_listener(Fd listener) {
  Address address;
  address.length = sizeof address.storage;
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address.storage), &address.length);
  state_.listen_text = address.text();
  set_nonblocking(listener.get());
  acceptor_.start(std::move(listener));
  reserve_ = open_reserve();
}

void Proxy::adopt_waiter(HandedWaiter& waiter) {
  Address peer;
  peer.length = sizeof peer.storage;
  getpeername(waiter.fd.get(), reinterpret_cast<sockaddr*>(&peer.storage), &peer.length);
  set_nonblocking(waiter.fd.get());
  Connection& c = add_connection(std::move(waiter.fd), peer);
  c.priority = waiter.priority;
  c.cost = waiter.cost;
  if (!waiter.bytes.empty()) {
    c.client.buffer = buffers_.take();
    size_t length = std::min(waiter.bytes.size(), BufferPool::kSize);
    std::memcpy(c.client.buffer.get(), waiter.bytes.data(), length);
    c.client.end = uint32_t(length);
  }
  c.client.read_eof = waiter.eof;
  c.client.bytes_read = waiter.bytes.size();
  Waiter entry;
  entry.owner = &c;
  entry.key = c.key;
  entry.port = peer.port();
  entry.priority = c.priority;
  entry.cost = c.cost;
  c.ticket = state_.pool.enqueue_adopted(entry, state_.now_ms, waiter.waited_ms);
  c.accepted_ms = state_.now_ms - waiter.waited_ms;
  c.state = ConnState::Waiting;
  c.update_interest();
}

// -B applies to back-ends of its own address family, probes included, so
// a probe sees the channel as the traffic will.
const Address* Proxy::source_for(const Channel& channel) const {
  const Address& source = state_.source_address;
  return source.length && source.family() == channel.config().address.family()
             ? &source
             : nullptr;
}

void Proxy::connect_to(Connection& c, Channel& channel) {
  c.channel = &channel;
  c.state = ConnState::Connecting;
  c.connect_ms = state_.now_ms;
  const Address* from = source_for(channel);
  bool in_progress = false;
  Fd fd = ::start_connect(channel.config().address, from, &in_progress);
  if (!fd && (errno == EMFILE || errno == ENFILE) && reserve_) {
    // The client took the last descriptor: the reserve makes room for its
    // back-end, and accepting pauses until the reserve can be had again.
    reserve_.reset();
    acceptor_.pause(EMFILE);
    fd = ::start_connect(channel.config().address, from, &in_progress);
  }
  if (!fd) {
    int error = errno;
    if (error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM) {
      // Not the channel's fault: this client cannot be served now.
      Job none;
      none.expected_end_ms = c.expected_end_ms;
      release_slot(channel, -1, none);
      c.channel = nullptr;
      acceptor_.pause(error);
      c.end_reason = "out of file descriptors";
      c.close_sides(false);
      return;
    }
    connect_failed(c, error);
    return;
  }
  c.backend.fd = std::move(fd);
  const Keepalive& keepalive = state_.options.server_keepalive;
  if (keepalive.idle_s)
    set_keepalive(c.backend.fd.get(), keepalive.idle_s, keepalive.interval_s, keepalive.count);
  c.set_timer(&connecting_);
  if (!in_progress) {
    c.on_ready(c.backend.fd.get(), kWritable);
    return;
  }
  c.update_interest();
}

void Proxy::connect_failed(Connection& c, int error) {
  Channel& channel = *c.channel;
  if (c.backend.fd) {
    state_.poller->forget(c.backend.fd.get());
    c.backend.fd.reset();
  }
  c.set_timer(nullptr);
  if (state_.pool.connect_failed(channel, state_.now_ms))
    state_.log.warning("channel %s %s: %s", channel_name(channel).c_str(),
                       state_.options.pool.autodisable ? "disabled" : "down", std::strerror(error));
  // Released last: a deleted channel is freed with its last connection.
  Job failed;
  failed.expected_end_ms = c.expected_end_ms;
  c.expected_end_ms = 0;
  release_slot(channel, -1, failed);
  c.channel = nullptr;
  // The client does not notice: it goes to the next choice.
  dispatch(c);
}

void Proxy::touch(Connection& c) {
  if (state_.options.idle_timeout_ms <= 0 || c.state != ConnState::Relaying) return;
  if (c.timer && c.active_ms == state_.now_ms) return;
  c.active_ms = state_.now_ms;
  if (c.timer)
    idle_.splice(idle_.end(), idle_, c.timer_it);
  else
    c.set_timer(&idle_);
}

void Proxy::finished(Connection& c) {
  if (c.state == ConnState::Closed) return;
  ConnState was = c.state;
  c.state = ConnState::Closed;
  if (c.ticket) {
    c.waited_ms = state_.pool.leave_queue(c.ticket, state_.now_ms);
    c.ticket = 0;
  }
  // A connection that had its back-end frees two descriptors: enough to
  // accept and serve one more client at once.
  if (was == ConnState::Relaying || was == ConnState::Connecting) acceptor_.resume_soon();
  if (state_.options.debug) {
    state_.log.info("connection %llu from %s to %s: %s; sent %llu, received %llu bytes; "
                    "waited %.3f s, lasted %.3f s",
                    (unsigned long long)c.id, c.peer.text().c_str(),
                    c.channel ? channel_name(*c.channel).c_str() : "no channel", c.end_reason,
                    (unsigned long long)c.client.bytes_read,
                    (unsigned long long)c.backend.bytes_read, double(c.waited_ms) / 1000,
                    double(state_.now_ms - c.accepted_ms) / 1000);
  }
  // Released last: a deleted channel is freed with its last connection.
  if (c.channel) {
    int64_t relayed = was == ConnState::Relaying ? state_.now_ms - c.relay_ms : -1;
    // What the job was, for learned speeds: the client's bytes and the
    // time from the start of the connect, if it ended cleanly.
    Job job;
    job.bytes = c.client.bytes_read;
    job.ms = state_.now_ms - c.connect_ms;
    job.clean = was == ConnState::Relaying && std::strcmp(c.end_reason, "closed") == 0;
    job.expected_end_ms = c.expected_end_ms;
    release_slot(*c.channel, relayed, job);
  }
  c.channel = nullptr;
  closed_.push_back(&c);
}

void Proxy::log_drop(DropLog& log, const char* why, const std::string& last) {
  // At most one line every ten seconds per reason, however many clients
  // are closed (a scan of the port floods nothing).
  ++log.since_log;
  if (state_.now_ms - log.last_ms < 10000) return;
  state_.log.warning("%s: %llu client(s) closed%s", why, (unsigned long long)log.since_log,
                     last.empty() ? "" : (", the last " + last).c_str());
  log.since_log = 0;
  log.last_ms = state_.now_ms;
}

void Proxy::serve_queue() {
  for (auto& [waiter, channel] : state_.pool.serve_queue(state_.now_ms)) {
    Connection& c = *static_cast<Connection*>(waiter.owner);
    c.ticket = 0;
    c.waited_ms = state_.now_ms - waiter.since_ms;
    c.expected_end_ms = waiter.expected_end_ms;
    connect_to(c, *channel);
  }
}

void Proxy::expire() {
  int64_t now = state_.now_ms;
  // Offered waiters are the new process's to expire (it knows their wait).
  std::vector<void*> expired;
  if (!frozen_) expired = state_.pool.expire_waiters(now);
  for (void* owner : expired) {
    Connection& c = *static_cast<Connection*>(owner);
    c.ticket = 0;
    c.waited_ms = now - c.accepted_ms;
    log_drop(drop_wait_, "queue wait limit reached");
    c.end_reason = "queue wait limit";
    c.close_sides(false);
  }
  // -j: the request did not tell its size in time; choose without it.
  while (!frozen_ && !sizing_.empty() && sizing_.front()->accepted_ms + state_.options.size_wait_ms <= now)
    dispatch(*sizing_.front());
  int64_t connect_timeout = state_.options.connect_timeout_ms;
  while (!connecting_.empty() && connecting_.front()->connect_ms + connect_timeout <= now)
    connect_failed(*connecting_.front(), ETIMEDOUT);
  int64_t idle_timeout = state_.options.idle_timeout_ms;
  while (idle_timeout > 0 && !idle_.empty() && idle_.front()->active_ms + idle_timeout <= now) {
    // Everything read was delivered: a plain close says so truthfully.
    // Bytes still stuck in a buffer make it a reset.
    Connection& c = *idle_.front();
    c.end_reason = "idle timeout";
    c.close_sides(c.client.pending() > 0 || c.backend.pending() > 0);
  }
  for (auto& probe : probes_)
    if (!probe->done && probe->deadline_ms <= now) probe_done(*probe, ETIMEDOUT);
}

void Proxy::start_probes() {
  for (Channel* channel : state_.pool.due_probes(state_.now_ms)) {
    // A probe that outlives -r (a connect timeout longer than the retry
    // interval) is not doubled.
    bool probing = false;
    for (auto& probe : probes_) probing |= !probe->done && probe->channel_id == channel->id();
    if (probing) continue;
    auto probe = std::make_unique<Probe>(*this, channel->id(),
                                         state_.now_ms + state_.options.connect_timeout_ms);
    bool in_progress = false;
    probe->fd = ::start_connect(channel->config().address, source_for(*channel), &in_progress);
    if (!probe->fd) {
      state_.pool.probe_failed(*channel, state_.now_ms);
      continue;
    }
    Probe& p = *probe;
    probes_.push_back(std::move(probe));
    if (in_progress)
      state_.poller->watch(p.fd.get(), kWritable, &p);
    else
      probe_done(p, 0);
  }
}

void Proxy::probe_done(Probe& probe, int error) {
  probe.done = true;
  if (probe.fd) {
    state_.poller->forget(probe.fd.get());
    probe.fd.reset();
  }
  Channel* channel = state_.pool.find_id(probe.channel_id);
  if (!channel) return;  // deleted or assigned meanwhile
  if (error) {
    state_.pool.probe_failed(*channel, state_.now_ms);
    return;
  }
  if (state_.pool.mark_up(*channel, state_.now_ms))
    state_.log.info("channel %s up", channel_name(*channel).c_str());
}

void Proxy::free_closed() {
  for (Connection* c : closed_) {
    size_t i = c->index;
    assert(connections_[i].get() == c);
    if (i + 1 != connections_.size()) {
      connections_[i] = std::move(connections_.back());
      connections_[i]->index = i;
    }
    connections_.pop_back();
  }
  closed_.clear();
  // Spare pipes hold descriptors: an idle proxy keeps none.
  if (connections_.empty()) pipes_.clear();
  probes_.erase(std::remove_if(probes_.begin(), probes_.end(),
                               [](const std::unique_ptr<Probe>& p) { return p->done; }),
                probes_.end());
}

void Proxy::tick() {
  expire();
  start_probes();
  state_.pool.drift(state_.now_ms);
  state_.pool.reconsider(state_.now_ms);
  // While a hand-over is offered, a new process holds the same listener
  // and waiting clients: nothing is accepted and nobody served here.
  if (!frozen_) acceptor_.tick();
  if (!frozen_ && state_.pool.take_serve_due() && state_.pool.queue_length() > 0) serve_queue();
  free_closed();
}

int64_t Proxy::next_deadline_ms() const {
  int64_t next = -1;
  auto consider = [&next](int64_t when) {
    if (when >= 0 && (next < 0 || when < next)) next = when;
  };
  // Frozen (offered to a new process): no waiter expires and nothing is
  // accepted here, so their deadlines would only spin the loop.
  if (!frozen_) consider(state_.pool.next_queue_deadline_ms());
  if (!connecting_.empty())
    consider(connecting_.front()->connect_ms + state_.options.connect_timeout_ms);
  if (!frozen_ && !sizing_.empty()) consider(sizing_.front()->accepted_ms + state_.options.size_wait_ms);
  consider(state_.pool.next_reconsider_ms());
  if (!idle_.empty()) consider(idle_.front()->active_ms + state_.options.idle_timeout_ms);
  for (auto& probe : probes_)
    if (!probe->done) consider(probe->deadline_ms);
  consider(state_.pool.next_probe_ms());
  consider(state_.pool.next_drift_ms());
  if (!frozen_) consider(acceptor_.next_deadline_ms());
  return next;
}

void Proxy::close_all() {
  // Bytes still waiting to be relayed make it a reset, never a clean end.
  for (auto& c : connections_)
    if (c->state != ConnState::Closed)
      c->close_sides(c->client.pending() > 0 || c->backend.pending() > 0);
  free_closed();
  for (auto& probe : probes_)
    if (probe->fd) state_.poller->forget(probe->fd.get());
  probes_.clear();
  acceptor_.close();
}

void Proxy::dump(const Connection& c, bool to_backend, const char* data, size_t length) {
  // Readable always: printable ASCII as is, everything else escaped.
  std::string text;
  text.reserve(length + 64);
  char head[96];
  std::snprintf(head, sizeof head, "[%llu] %s %zu bytes\n", (unsigned long long)c.id,
                to_backend ? "client -> server" : "server -> client", length);
  text += head;
  for (size_t i = 0; i < length; ++i) {
    unsigned char ch = static_cast<unsigned char>(data[i]);
    if (ch == '\n') {
      text += "\\n\n";
    } else if (ch == '\\') {
      text += "\\\\";
    } else if (ch >= 32 && ch < 127) {
      text += char(ch);
    } else {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\x%02x", ch);
      text += escape;
    }
  }
  if (text.back() != '\n') text += '\n';
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

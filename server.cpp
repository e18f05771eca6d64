// Acceptor, Session and SessionServer (see server.hpp).
#include "server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace {

constexpr int64_t kPauseMs = 100;        // recheck descriptors this often
constexpr int64_t kShortageEndMs = 10000;  // a shortage ends after this without one

bool out_of_descriptors(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

}  // namespace

// ---------------------------------------------------------------- Acceptor

Acceptor::Acceptor(State& state, int batch, OnAccept on_accept)
    : state_(state), batch_(batch), on_accept_(std::move(on_accept)) {}

Acceptor::~Acceptor() { close(); }

void Acceptor::start(Fd listener) {
  listener_ = std::move(listener);
  state_.poller->watch(listener_.get(), kReadable, this);
}

void Acceptor::on_ready(int, unsigned) {
  // Held since this pass's events were gathered (a hand-over's offer).
  if (held_) return;
  if (deferred_)
    pending_ = true;
  else
    accept_batch();
}

void Acceptor::accept_batch() {
  for (int i = 0; i < batch_ && listener_ && !paused_ && !held_; ++i) {
    Address peer;
    int fd = accept_connection(listener_.get(), &peer);
    if (fd < 0) {
      if (out_of_descriptors(errno)) pause(errno);
      // EAGAIN: nothing more; an aborted handshake or a firewall's
      // refusal concerns only that client.
      if (errno == ECONNABORTED || errno == EPROTO || errno == EPERM) continue;
      return;
    }
    // One line per shortage: it ends after ten seconds without one, so a
    // limit that is hit again and again is not logged again and again.
    FdShortage& shortage = state_.fd_shortage;
    if (shortage.active && state_.now_ms - shortage.last_ms >= kShortageEndMs) {
      shortage.active = false;
      state_.log.info("file descriptors available again");
    }
    on_accept_(Fd(fd), peer);
  }
}

void Acceptor::pause(int error) {
  // Out of descriptors: stop accepting for a moment instead of spinning
  // on a listener that stays readable. Clients wait in the kernel's
  // backlog; a descriptor freed meanwhile resumes accepting sooner.
  FdShortage& shortage = state_.fd_shortage;
  if (!shortage.active)
    state_.log.warning("cannot accept: %s; pausing new connections", std::strerror(error));
  shortage.active = true;
  shortage.last_ms = state_.now_ms;
  if (on_shortage) on_shortage();
  if (!listener_) return;
  paused_ = true;
  pending_ = false;
  resume_ms_ = state_.now_ms + kPauseMs;
  state_.poller->watch(listener_.get(), 0, this);
}

void Acceptor::hold(bool on) {
  if (on == held_ || !listener_) return;
  held_ = on;
  pending_ = false;
  if (!paused_) state_.poller->watch(listener_.get(), on ? 0u : unsigned(kReadable), this);
}

void Acceptor::resume_soon() {
  if (paused_) resume_ms_ = state_.now_ms;
}

void Acceptor::tick() {
  if (paused_ && resume_ms_ <= state_.now_ms) {
    if (may_resume && !may_resume()) {
      resume_ms_ = state_.now_ms + kPauseMs;  // still nothing to spare
    } else {
      paused_ = false;
      if (!held_) state_.poller->watch(listener_.get(), kReadable, this);
    }
  }
  if (pending_) {
    pending_ = false;
    accept_batch();
  }
}

int64_t Acceptor::next_deadline_ms() const {
  if (paused_) return resume_ms_;
  return pending_ ? state_.now_ms : -1;
}

void Acceptor::close() {
  if (!listener_) return;
  // A listener may live on in a process that took it over.
  state_.poller->forget_shared(listener_.get());
  listener_.reset();
  paused_ = pending_ = false;
}

// ---------------------------------------------------------------- Session

Session::Session(SessionServer& server, Fd fd)
    : server_(server), fd_(std::move(fd)), active_ms_(server.state().now_ms) {
  // The kernel would otherwise take megabytes ahead of a slow reader,
  // all of it rendered at once; a window's worth is enough to keep a
  // fast reader busy.
  int size = int(kWindow);
  setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

Session::~Session() { close(); }

State& Session::state() { return server_.state(); }

void Session::close() {
  if (!fd_) return;
  state().poller->forget(fd_.get());
  fd_.reset();
  producer_.reset();
  out_.clear();
  in_.clear();
}

void Session::on_ready(int, unsigned events) {
  if (closed()) return;
  active_ms_ = state().now_ms;
  if ((events & (kReadable | kHangup)) && !input_eof_ && in_.size() < input_limit()) {
    char buffer[4096];
    size_t room = std::min(sizeof buffer, input_limit() - in_.size());
    ssize_t n = recv(fd_.get(), buffer, room, 0);
    if (n == 0) {
      input_eof_ = true;  // consume() answers what was asked, then closes
    } else if (n < 0 && !would_block(errno)) {
      close();
      return;
    } else if (n > 0) {
      in_.append(buffer, size_t(n));
    }
  } else if ((events & kHangup) && !(events & kWritable)) {
    // A hang-up with nothing we want to read: the peer is gone.
    close();
    return;
  }
  update();
}

void Session::reply_text(const std::string& text) { out_ += text; }

Fd Session::take_socket() {
  if (!fd_) return Fd();
  state().poller->forget(fd_.get());
  Fd taken = std::move(fd_);
  producer_.reset();
  out_.clear();
  in_.clear();
  return taken;
}

void Session::reply_stream(std::unique_ptr<Producer> producer, std::string tail) {
  producer_ = std::move(producer);
  tail_ = std::move(tail);
}

void Session::write_now(const std::string& text) {
  if (!fd_) return;
  ssize_t ignored = send(fd_.get(), text.data(), text.size(), MSG_NOSIGNAL);
  (void)ignored;
}

void Session::render() {
  // Only as the peer reads: a window's worth at most, and only what this
  // pass's budget allows.
  while (producer_ && pending() < kWindow) {
    if (server_.budget() == 0) {
      starved_ = true;
      return;
    }
    if (sent_ > 0) {
      // The unsent rest moves to the front once per piece (at most a
      // window), never once per write.
      out_.erase(0, sent_);
      sent_ = 0;
    }
    size_t before = out_.size();
    bool more = producer_->produce(&out_);
    server_.spend(out_.size() - before);
    if (!more) {
      producer_.reset();
      out_ += tail_;
      tail_.clear();
    }
  }
  starved_ = false;
}

long Session::write_pending() {
  long written = 0;
  while (pending() > 0) {
    ssize_t n = send(fd_.get(), out_.data() + sent_, pending(), MSG_NOSIGNAL);
    if (n < 0) {
      if (would_block(errno)) return written;
      close();
      return -1;
    }
    sent_ += size_t(n);
    written += n;
  }
  out_.clear();
  sent_ = 0;
  return written;
}

void Session::update() {
  // Take requests, render and write while the peer takes bytes and the
  // budget lasts; a bounded number of rounds per call.
  for (int round = 0; round < 64 && !closed(); ++round) {
    size_t input_before = in_.size();
    if (!busy()) consume();
    if (closed()) return;
    render();
    long written = write_pending();
    if (written < 0) return;
    bool progressed = written > 0 || in_.size() != input_before;
    if (!progressed || starved_ || pending() > 0) break;
  }
  if (closed()) return;
  if (closing_ && pending() == 0 && !producer_) {
    close();
    return;
  }
  unsigned want = 0;
  if (pending() > 0) want |= kWritable;
  if (!input_eof_ && !closing_ && in_.size() < input_limit()) want |= kReadable;
  // A session that waits for the budget is resumed by the server's tick.
  state().poller->watch(fd_.get(), want, this);
}

// ---------------------------------------------------------------- SessionServer

SessionServer::SessionServer(State& state, size_t max_sessions, Factory factory)
    : state_(state),
      max_sessions_(max_sessions),
      factory_(std::move(factory)),
      acceptor_(state, 16, [this](Fd fd, const Address& peer) { accepted(std::move(fd), peer); }) {}

void SessionServer::start(Fd listener) { acceptor_.start(std::move(listener)); }

size_t SessionServer::session_count() const {
  size_t live = 0;
  for (auto& session : sessions_) live += !session->closed();
  return live;
}

void SessionServer::accepted(Fd fd, const Address& peer) {
  std::unique_ptr<Session> session = factory_(*this, std::move(fd), peer);
  if (!session) return;
  if (session_count() >= max_sessions_) {
    // The least recently active session makes room, so idle or slow
    // sessions can never lock a newcomer out.
    Session* idlest = nullptr;
    for (auto& s : sessions_)
      if (!s->closed() && (!idlest || s->active_ms() < idlest->active_ms())) idlest = s.get();
    if (idlest) idlest->evict();
  }
  sessions_.push_back(std::move(session));
  sessions_.back()->resume();
}

void SessionServer::tick() {
  budget_ = kRenderBudget;
  for (auto& session : sessions_) {
    if (session->closed()) continue;
    if (session->deadline_ms() <= state_.now_ms)
      session->close();
    else if (session->waiting_for_budget())
      session->resume();
  }
  sessions_.erase(std::remove_if(sessions_.begin(), sessions_.end(),
                                 [](const std::unique_ptr<Session>& s) { return s->closed(); }),
                  sessions_.end());
  acceptor_.tick();
}

int64_t SessionServer::next_deadline_ms() const {
  int64_t next = acceptor_.next_deadline_ms();
  for (auto& session : sessions_) {
    if (session->closed()) continue;
    int64_t when = session->waiting_for_budget() ? state_.now_ms : session->deadline_ms();
    if (next < 0 || when < next) next = when;
  }
  return next;
}

void SessionServer::close_all() {
  for (auto& session : sessions_) session->close();
  sessions_.clear();
  acceptor_.close();
}

// ---------------------------------------------------------------- framing

namespace {

bool blanks(const std::string& text, size_t length) {
  for (size_t i = 0; i < length; ++i)
    if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r') return false;
  return true;
}

}  // namespace

LineFramer::Event LineFramer::next(std::string* in, std::string* line) {
  size_t newline = in->find('\n');
  if (discarding_) {
    size_t taken = newline == std::string::npos ? in->size() : newline;
    discarded_ += taken;
    blank_ = blank_ && blanks(*in, taken);
    if (newline == std::string::npos) {
      in->clear();
      return discarded_ > max_discard_ ? Event::Abandon : Event::None;
    }
    in->erase(0, newline + 1);
    discarding_ = false;
    // A long blank line is still no command (the client sends it and
    // expects no reply): an empty line, not an error.
    if (blank_) {
      line->clear();
      return Event::Line;
    }
    return Event::TooLong;
  }
  if (newline == std::string::npos) {
    if (in->size() <= max_line_) return Event::None;
    // Too long already: drop it up to its end, which may be far away.
    discarding_ = true;
    discarded_ = in->size();
    blank_ = blanks(*in, in->size());
    in->clear();
    return discarded_ > max_discard_ ? Event::Abandon : Event::None;
  }
  if (newline > max_line_) {
    bool blank = blanks(*in, newline);
    in->erase(0, newline + 1);
    if (blank) {
      line->clear();
      return Event::Line;
    }
    return Event::TooLong;
  }
  line->assign(*in, 0, newline);
  in->erase(0, newline + 1);
  return Event::Line;
}

HeadState http_head_state(const std::string& in, size_t limit) {
  size_t end = in.find("\r\n\r\n");
  size_t bare = in.find("\n\n");
  if (end != std::string::npos || bare != std::string::npos) {
    size_t at = std::min(end == std::string::npos ? bare : end, bare == std::string::npos ? end : bare);
    return at <= limit ? HeadState::Complete : HeadState::TooLarge;
  }
  return in.size() > limit ? HeadState::TooLarge : HeadState::Incomplete;
}

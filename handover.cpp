// Restart and upgrade (see handover.hpp).
#include "handover.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control.hpp"
#include "relay.hpp"
#include "stats.hpp"

namespace {

constexpr int64_t kOfferMs = 10000;  // the whole offer must go through by then

std::string hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2 + 1);
  for (unsigned char ch : bytes) {
    out += digits[ch >> 4];
    out += digits[ch & 15];
  }
  return out.empty() ? "-" : out;
}

bool unhex(const std::string& text, std::string* bytes) {
  bytes->clear();
  if (text == "-") return true;
  if (text.size() % 2) return false;
  for (size_t i = 0; i < text.size(); i += 2) {
    int value = 0;
    for (size_t k = i; k < i + 2; ++k) {
      char ch = text[k];
      int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
      if (digit < 0) return false;
      value = value * 16 + digit;
    }
    *bytes += char(value);
  }
  return true;
}

std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < line.size()) {
    size_t end = line.find(' ', pos);
    if (end == std::string::npos) end = line.size();
    out.push_back(line.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool number(const std::string& text, uint64_t* value) {
  return parse_unsigned(text, 0, UINT64_MAX / 10, value);
}

// Writes all of `text` (with one descriptor attached when fd >= 0) on a
// blocking socket before the deadline.
bool send_all(int socket, const std::string& text, int fd, int64_t deadline_ms) {
  size_t done = 0;
  while (done < text.size()) {
    if (monotonic_ms() >= deadline_ms) {
      errno = ETIMEDOUT;
      return false;
    }
    iovec io{const_cast<char*>(text.data() + done), text.size() - done};
    msghdr message{};
    message.msg_iov = &io;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (fd >= 0 && done == 0) {
      std::memset(control, 0, sizeof control);
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    ssize_t n = sendmsg(socket, &message, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        pollfd p{socket, POLLOUT, 0};
        poll(&p, 1, int(std::max<int64_t>(deadline_ms - monotonic_ms(), 0)));
        continue;
      }
      return false;
    }
    done += size_t(n);
  }
  return true;
}

// Reads what is there, bytes and the descriptors that came with them:
// > 0 bytes read, 0 at the end, < 0 an error (errno; EAGAIN: nothing yet).
ssize_t receive_now(int socket, std::string* in, std::vector<Fd>* fds) {
  char buffer[65536];
  iovec io{buffer, sizeof buffer};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  int flags = MSG_DONTWAIT;
#ifdef MSG_CMSG_CLOEXEC
  flags |= MSG_CMSG_CLOEXEC;
#endif
  ssize_t n = recvmsg(socket, &message, flags);
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
      set_cloexec(fd);
      fds->emplace_back(fd);
    }
  }
  if (n > 0) in->append(buffer, size_t(n));
  return n;
}

// The same, waiting until the deadline for something to come.
bool receive_some(int socket, std::string* in, std::vector<Fd>* fds, int64_t deadline_ms) {
  pollfd p{socket, POLLIN, 0};
  int left = int(std::max<int64_t>(deadline_ms - monotonic_ms(), 0));
  if (poll(&p, 1, left) != 1) {
    errno = ETIMEDOUT;
    return false;
  }
  ssize_t n = receive_now(socket, in, fds);
  if (n == 0) errno = ECONNRESET;
  return n > 0 || (n < 0 && (errno == EINTR || would_block(errno)));
}

std::string waiter_line(const WaiterView& waiter) {
  return std::string("waiter ") + (waiter.priority ? "1 " : "0 ") + std::to_string(waiter.waited_ms) +
         " " + std::to_string(waiter.cost) + " " + (waiter.eof ? "1 " : "0 ") + hex(waiter.bytes) +
         "\n";
}

const char* admin_word(AdminState admin) {
  return admin == AdminState::Enabled ? "enabled" : admin == AdminState::Disabled ? "disabled" : "auto";
}

}  // namespace

// ---------------------------------------------------------------- lines

std::string offer_line(const HandedChannel& c) {
  const ChannelCounters& n = c.counters;
  return "channel " + std::to_string(c.group) + " " + std::to_string(c.number) + " " +
         admin_word(c.admin) + " " + (c.health == Health::Up ? "up" : "down") + " " +
         std::to_string(c.held) + " " + (c.learned ? "1" : "0") + " " +
         std::to_string(c.config.maxc) + " " + std::to_string(c.config.weight) + " " +
         std::to_string(n.connections) + " " + std::to_string(n.failures) + " " +
         std::to_string(n.sent) + " " + std::to_string(n.received) + " " +
         std::to_string(n.finished) + " " + std::to_string(n.busy_ms) + " " + hex(c.config.host) +
         " " + hex(c.config.port) + " " + hex(c.address);
}

bool parse_offer_line(const std::string& line, HandedChannel* c) {
  std::vector<std::string> w = words(line);
  if (w.size() != 18 || w[0] != "channel") return false;
  uint64_t v[14];
  for (size_t i : {1, 2, 5, 7, 8, 9, 10, 11, 12, 13, 14})
    if (!number(w[i], &v[i - 1])) return false;
  c->group = size_t(v[0]);
  c->number = unsigned(v[1]);
  if (w[3] == "enabled")
    c->admin = AdminState::Enabled;
  else if (w[3] == "disabled")
    c->admin = AdminState::Disabled;
  else if (w[3] == "auto")
    c->admin = AdminState::AutoDisabled;
  else
    return false;
  if (w[4] != "up" && w[4] != "down") return false;
  c->health = w[4] == "up" ? Health::Up : Health::Down;
  c->held = unsigned(v[4]);
  if (w[6] != "0" && w[6] != "1") return false;
  c->learned = w[6] == "1";
  c->config.maxc = unsigned(v[6]);
  c->config.weight = unsigned(v[7]);
  if (c->config.maxc > kMaxMaxc || c->config.weight < 1 || c->config.weight > kMaxWeight) return false;
  c->counters.connections = v[8];
  c->counters.failures = v[9];
  c->counters.sent = v[10];
  c->counters.received = v[11];
  c->counters.finished = v[12];
  c->counters.busy_ms = v[13];
  return unhex(w[15], &c->config.host) && unhex(w[16], &c->config.port) && unhex(w[17], &c->address);
}

// ---------------------------------------------------------------- new side: the offer

namespace {

// Applies one line of the offer; fds holds the descriptors received so far
// that no line has taken yet, in order.
bool offer_step(const std::string& line, std::vector<Fd>* fds, size_t* next_fd, Offer* offer,
                bool* end, std::string* err) {
  std::vector<std::string> w = words(line);
  auto take_fd = [&](Fd* into) {
    if (*next_fd >= fds->size()) {
      *err = "the offer's line \"" + line.substr(0, 40) + "\" came without its descriptor";
      return false;
    }
    *into = std::move((*fds)[(*next_fd)++]);
    return true;
  };
  uint64_t value;
  if (w.empty()) return true;
  if (w[0] == "handover") {
    if (w.size() != 3 || w[1] != "1" || !number(w[2], &value)) {
      *err = "this balance speaks another hand-over protocol: \"" + line.substr(0, 60) + "\"";
      return false;
    }
    offer->pid = long(value);
  } else if (w[0] == "arg" && w.size() == 2) {
    std::string arg;
    if (!unhex(w[1], &arg)) return false;
    offer->args.push_back(arg);
  } else if (w[0] == "listener" && w.size() == 2) {
    return take_fd(w[1] == "proxy" ? &offer->proxy_listener : &offer->stats_listener);
  } else if (w[0] == "waiter" && w.size() == 6) {
    HandedWaiter waiter;
    uint64_t waited, cost;
    if (!number(w[2], &waited) || !number(w[3], &cost) || !unhex(w[5], &waiter.bytes)) return false;
    waiter.priority = w[1] == "1";
    waiter.waited_ms = int64_t(waited);
    waiter.cost = cost;
    waiter.eof = w[4] == "1";
    if (!take_fd(&waiter.fd)) return false;
    offer->waiters.push_back(std::move(waiter));
  } else if (w[0] == "group" && w.size() == 4) {
    uint64_t next;
    if (!number(w[3], &next)) return false;
    offer->groups.emplace_back(w[2] == "hash" ? GroupType::Hash : GroupType::RoundRobin, unsigned(next));
  } else if (w[0] == "channel") {
    HandedChannel channel;
    if (!parse_offer_line(line, &channel)) {
      *err = "a malformed channel in the offer";
      return false;
    }
    offer->channels.push_back(channel);
  } else if (w[0] == "rule" && w.size() == 3) {
    RuleKind kind = w[1] == "allow" ? RuleKind::Allow : w[1] == "deny" ? RuleKind::Deny : RuleKind::Priority;
    offer->rules.emplace_back(kind, w[2]);
  } else if (w[0] == "end") {
    *end = true;
  } else if (w[0] == "error:") {
    *err = "the running balance says: " + line.substr(7);
    return false;
  } else {
    *err = "an unknown line in the offer: \"" + line.substr(0, 60) + "\"";
    return false;
  }
  return true;
}

}  // namespace

bool receive_offer(const Options& options, Offer* offer, Fd* link, std::string* err) {
  std::string path, directory;
  if (!control_socket_path(options, &path, &directory, err)) return false;
  Fd fd = connect_unix(path);
  if (!fd) {
    *err = "-x: no balance to take over on port " + options.port + " (socket " + path + ": " +
           std::strerror(errno) + ")";
    return false;
  }
  uid_t uid = uid_t(-1);
  gid_t gid = gid_t(-1);
  if (!peer_credentials(fd.get(), &uid, &gid) || (uid != geteuid() && uid != 0)) {
    *err = "-x: " + path + " is run by uid " + std::to_string(uid) + ", neither you nor root";
    return false;
  }
  int64_t deadline = monotonic_ms() + kOfferMs;
  if (!send_all(fd.get(), "handover\n", -1, deadline)) {
    *err = "-x: " + path + ": " + std::strerror(errno);
    return false;
  }
  std::string in;
  std::vector<Fd> fds;
  size_t next_fd = 0;
  bool end = false;
  while (!end) {
    size_t newline;
    while (!end && (newline = in.find('\n')) != std::string::npos) {
      std::string line = in.substr(0, newline);
      in.erase(0, newline + 1);
      if (!offer_step(line, &fds, &next_fd, offer, &end, err)) {
        if (err->empty()) *err = "a malformed line in the offer";
        *err = "-x: " + *err;
        return false;
      }
    }
    if (end) break;
    if (!receive_some(fd.get(), &in, &fds, deadline)) {
      *err = "-x: the offer from " + path + " broke off: " + std::strerror(errno);
      return false;
    }
  }
  if (!offer->proxy_listener) {
    *err = "-x: the offer holds no listening socket";
    return false;
  }
  *link = std::move(fd);
  return true;
}

namespace {

// The arguments without -x: what makes two command lines the same.
std::vector<std::string> without_takeover(const std::vector<std::string>& args) {
  std::vector<std::string> kept;
  for (const std::string& arg : args)
    if (arg != "-x") kept.push_back(arg);
  return kept;
}

// "192.0.2.7:25" or "[2001:db8::7]:25", numeric: no resolver.
bool numeric_address(const std::string& text, Address* address) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = text.substr(0, colon), why;
  return resolve_address(host, text.substr(colon + 1), AF_UNSPEC, false, address, &why);
}

}  // namespace

bool restore_offer(State& state, const Offer& offer, bool* restored, std::string* err) {
  *restored = without_takeover(offer.args) == without_takeover(state.args);
  if (!*restored) return true;
  // The same command line: the old process's state, changes made at run
  // time included, carries on here (the pool is still empty).
  Pool& pool = state.pool;
  for (const auto& group : offer.groups) pool.add_group(group.first);
  for (const HandedChannel& handed : offer.channels) {
    if (handed.group >= pool.groups().size()) {
      *err = "-x: the offer has a channel in a group it does not have";
      return false;
    }
    ChannelConfig config = handed.config;
    if (!numeric_address(handed.address, &config.address)) {
      *err = "-x: the offer's address " + handed.address + " does not parse";
      return false;
    }
    pool.restore_channel(handed.group, handed.number, config, handed.admin, handed.health,
                         handed.counters, handed.learned, state.now_ms);
  }
  for (size_t g = 0; g < offer.groups.size(); ++g) pool.reserve_numbers(g, offer.groups[g].second);
  state.rules.clear();
  for (const auto& [kind, network] : offer.rules) {
    std::string why;
    state.rules.add(kind, network, &why);
  }
  return true;
}

void adopt_slots(State& state, const Offer& offer) {
  // The old process's connections keep their slots until it reports them
  // ended: counted against the first channel of the same address.
  Pool& pool = state.pool;
  auto channel_at = [&pool](const std::string& address) -> Channel* {
    for (const auto& group : pool.groups())
      for (const auto& channel : group->channels())
        if (channel->config().address.text() == address)
          return pool.find(channel->group(), channel->number());
    return nullptr;
  };
  for (const HandedChannel& handed : offer.channels)
    if (handed.held > 0)
      if (Channel* channel = channel_at(handed.address)) pool.adopt(*channel, handed.held);
}

// ---------------------------------------------------------------- the coordinator

Handover::Handover(State& state, Proxy& proxy, StatsServer& stats, ControlServer& control)
    : state_(state), proxy_(proxy), stats_(stats), control_(control) {}

Handover::~Handover() {
  for (Link* link : {&down_, &up_})
    if (link->fd) state_.poller->forget(link->fd.get());
}

bool Handover::offer(Fd connection, std::string* err) {
  if (giving_ != Giving::None) {
    *err = "a hand-over to another balance is under way already";
    std::string reply = "error: " + *err + "\n\n";
    send_all(connection.get(), reply, -1, monotonic_ms() + 1000);
    return false;
  }
  int socket = connection.get();
  int flags = fcntl(socket, F_GETFL);
  fcntl(socket, F_SETFL, flags & ~O_NONBLOCK);  // the offer goes out in one go
  int64_t deadline = monotonic_ms() + kOfferMs;
  bool ok = send_all(socket, "handover 1 " + std::to_string(long(getpid())) + "\n", -1, deadline);
  for (const std::string& arg : state_.args) ok = ok && send_all(socket, "arg " + hex(arg) + "\n", -1, deadline);
  ok = ok && send_all(socket, "listener proxy\n", proxy_.listener_fd(), deadline);
  if (ok && stats_.listener_fd() >= 0) ok = send_all(socket, "listener stats\n", stats_.listener_fd(), deadline);
  // From here until the answer nothing is accepted and no waiting client
  // read or served: the offer is all the new process needs to go on.
  proxy_.freeze(true);
  for (const WaiterView& waiter : proxy_.waiters_in_order()) {
    if (!ok) break;
    ok = send_all(socket, waiter_line(waiter), waiter.fd, deadline);
  }
  const Pool& pool = state_.pool;
  for (size_t g = 0; ok && g < pool.groups().size(); ++g) {
    const Group& group = *pool.groups()[g];
    ok = send_all(socket, "group " + std::to_string(g) + " " + to_string(group.type()) + " " +
                              std::to_string(group.next_number()) + "\n", -1, deadline);
    for (const auto& channel : group.channels()) {
      if (!ok) break;
      HandedChannel handed;
      handed.group = g;
      handed.number = channel->number();
      handed.config = channel->config();
      handed.admin = channel->admin();
      handed.health = channel->health();
      handed.counters = channel->counters();
      handed.learned = channel->learned();
      handed.held = channel->c();
      handed.address = channel->config().address.text();
      ok = send_all(socket, offer_line(handed) + "\n", -1, deadline);
    }
  }
  for (const ClientRule& rule : state_.rules.rules())
    ok = ok && send_all(socket, std::string("rule ") + to_string(rule.kind) + " " +
                                    to_string(rule.network) + "\n", -1, deadline);
  ok = ok && send_all(socket, "end\n", -1, deadline);
  fcntl(socket, F_SETFL, flags | O_NONBLOCK);
  if (!ok) {
    proxy_.freeze(false);
    *err = std::string("the offer could not be sent: ") + std::strerror(errno);
    state_.log.warning("hand-over: %s; carrying on", err->c_str());
    return false;
  }
  // Until "taken", accept nothing and serve nobody: the new process holds
  // the same listeners and waiting clients.
  // What each channel's counters were in the offer: this process reports
  // what it counts from here on, slot by slot as its connections end.
  reported_.clear();
  pending_.clear();
  for (const auto& group : pool.groups())
    for (const auto& channel : group->channels())
      reported_[channel->id()] = Reported{channel->config().address.text(), channel->counters()};
  down_.fd = std::move(connection);
  giving_ = Giving::Offering;
  deadline_ms_ = state_.now_ms + kTakeoverMs;
  state_.poller->watch(down_.fd.get(), kReadable, this);
  state_.log.info("hand-over: offered the listeners, %zu waiting clients and %zu channels",
                  pool.queue_length(), pool.channel_count());
  return true;
}

bool Handover::taken(Fd connection, long old_pid, std::string* err) {
  up_.fd = std::move(connection);
  old_pid_ = old_pid;
  if (!send_all(up_.fd.get(), "taken\n", -1, monotonic_ms() + 1000)) {
    *err = std::string("-x: could not confirm the hand-over: ") + std::strerror(errno);
    return false;
  }
  set_nonblocking(up_.fd.get());
  state_.poller->watch(up_.fd.get(), kReadable, this);
  return true;
}

void Handover::send_down(const std::string& text) {
  if (!down_.fd) return;
  // Small lines on a local socket: a full buffer means the new process
  // is gone or stuck; its slots are then its own problem.
  ssize_t ignored = send(down_.fd.get(), text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)ignored;
}

void Handover::released(uint64_t channel_id, int64_t relayed_ms) {
  auto it = reported_.find(channel_id);
  if (giving_ == Giving::None || it == reported_.end()) return;
  // What this process counted on the channel since it last said.
  ChannelCounters since;
  if (const Channel* channel = state_.pool.find_id(channel_id)) {
    const ChannelCounters& now = channel->counters();
    ChannelCounters& then = it->second.counters;
    since.connections = now.connections - then.connections;
    since.failures = now.failures - then.failures;
    since.sent = now.sent - then.sent;
    since.received = now.received - then.received;
    then = now;
  }
  std::string line = "release " + it->second.address + " " + std::to_string(relayed_ms) + " " +
                     std::to_string(since.connections) + " " + std::to_string(since.failures) +
                     " " + std::to_string(since.sent) + " " + std::to_string(since.received) + "\n";
  // Until it has said "taken" the new process reads nothing but the offer.
  if (giving_ == Giving::Draining)
    send_down(line);
  else
    pending_ += line;
}

bool Handover::pass_on(const WaiterView& client) {
  if (giving_ != Giving::Draining || !down_.fd) return false;
  return send_all(down_.fd.get(), waiter_line(client), client.fd, monotonic_ms() + 1000);
}

template <typename OnLine>
bool Handover::read_lines(Link& link, OnLine on_line, std::string* why) {
  for (;;) {
    ssize_t n = receive_now(link.fd.get(), &link.in, &link.fds);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) return true;
    if (n <= 0) {
      *why = n == 0 ? "the other balance closed the connection" : std::strerror(errno);
      return false;
    }
    size_t newline;
    while ((newline = link.in.find('\n')) != std::string::npos) {
      std::string text = link.in.substr(0, newline);
      link.in.erase(0, newline + 1);
      on_line(text);
      if (!link.fd) return true;  // the line ended the link
    }
  }
}

void Handover::on_ready(int fd, unsigned) {
  std::string why;
  if (down_.fd && fd == down_.fd.get()) {
    if (!read_lines(down_, [this](const std::string& text) { downstream_line(text); }, &why))
      drop_downstream(why);
  } else if (up_.fd && fd == up_.fd.get()) {
    if (!read_lines(up_, [this](const std::string& text) { upstream_line(text); }, &why))
      drop_upstream(why);
  }
}

void Handover::downstream_line(const std::string& text) {
  if (giving_ == Giving::Offering && text == "taken") {
    // Acted on in tick(), outside the dispatch of this pass's events: it
    // closes sessions that may still have events waiting in it.
    giving_ = Giving::Taken;
  }
}

void Handover::upstream_line(const std::string& text) {
  std::vector<std::string> w = words(text);
  uint64_t counts[5];
  if (w.size() == 7 && w[0] == "release") {
    bool ok = (w[2] == "-1" || number(w[2], &counts[0])) && number(w[3], &counts[1]) &&
              number(w[4], &counts[2]) && number(w[5], &counts[3]) && number(w[6], &counts[4]);
    if (!ok) return;
    int64_t relayed_ms = w[2] == "-1" ? -1 : int64_t(counts[0]);
    ChannelCounters since;
    since.connections = counts[1];
    since.failures = counts[2];
    since.sent = counts[3];
    since.received = counts[4];
    for (const auto& group : state_.pool.groups())
      for (const auto& channel : group->channels())
        if (channel->adopted() > 0 && channel->config().address.text() == w[1]) {
          Channel& found = *state_.pool.find(channel->group(), channel->number());
          state_.pool.release_adopted(found, relayed_ms, since);
          // Offered on with this process's own slots: downstream hears of
          // it, and of its bytes, as of one of ours.
          released(found.id(), relayed_ms);
          return;
        }
    return;  // a channel deleted meanwhile, or not taken over
  }
  if (!w.empty() && w[0] == "waiter") {
    // A client the process upstream could not place (its connect failed).
    Offer one;
    size_t next_fd = 0;
    bool end = false;
    std::string err;
    bool ok = offer_step(text, &up_.fds, &next_fd, &one, &end, &err);
    up_.fds.erase(up_.fds.begin(), up_.fds.begin() + long(next_fd));
    if (!ok || one.waiters.size() != 1) return;
    HandedWaiter& waiter = one.waiters[0];
    if (giving_ != Giving::Draining) {
      proxy_.adopt_waiter(waiter);
      return;
    }
    // Handed on already: the process downstream places it.
    WaiterView view{waiter.fd.get(), waiter.priority, waiter.waited_ms, waiter.cost, waiter.bytes,
                    waiter.eof};
    pass_on(view);
    return;
  }
  if (text == "done") {
    state_.log.info("the balance this one took over (pid %ld) has ended its last connection", old_pid_);
    drop_upstream("");
  }
}

void Handover::drop_downstream(const std::string& why) {
  if (giving_ == Giving::Offering) {
    state_.log.warning("hand-over failed (%s); carrying on as before", why.c_str());
    proxy_.freeze(false);
    giving_ = Giving::None;
    reported_.clear();
    pending_.clear();
  }
  // Taken or draining: the new process has everything; whatever became of
  // it, what this one still relays runs to its end.
  if (down_.fd) {
    state_.poller->forget(down_.fd.get());
    down_ = Link();
  }
}

void Handover::drop_upstream(const std::string& why) {
  if (!why.empty())
    state_.log.warning("the balance this one took over (pid %ld) is gone (%s); its slots count free",
                       old_pid_, why.c_str());
  // Whatever it held is free now (and, downstream, too).
  for (const auto& group : state_.pool.groups())
    for (const auto& channel : group->channels())
      while (channel->adopted() > 0) {
        state_.pool.release_adopted(*state_.pool.find(channel->group(), channel->number()));
        released(channel->id(), -1);
      }
  if (up_.fd) {
    state_.poller->forget(up_.fd.get());
    up_ = Link();
  }
}

void Handover::tick() {
  if (giving_ == Giving::Offering && state_.now_ms >= deadline_ms_) drop_downstream("no answer in time");
  if (giving_ == Giving::Taken) {
    // The new process listens on everything: this one stops accepting,
    // lets go of its waiting clients and relays what it has to the end.
    giving_ = Giving::Draining;
    send_down(pending_);
    pending_.clear();
    proxy_.handed_over();
    stats_.close();
    control_.give_away();
    state_.log.info("hand-over: taken; relaying the %zu connections left, then exiting",
                    proxy_.relayed_count());
  }
  if (giving_ == Giving::Draining && proxy_.connection_count() == 0 && !up_.fd) {
    send_down("done\n");
    state_.log.info("hand-over: the last connection has ended; exiting");
    state_.stopping = true;
  }
  if (child_ > 0) {
    int status = 0;
    pid_t pid = waitpid(child_, &status, WNOHANG);
    if (pid == child_) {
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        state_.log.warning("SIGUSR2: the new balance (pid %ld) failed (%s %d); still serving",
                           long(child_), WIFEXITED(status) ? "exit status" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      child_ = -1;
    }
  }
}

int64_t Handover::next_deadline_ms() const {
  if (giving_ == Giving::Offering) return deadline_ms_;
  if (giving_ == Giving::Taken) return state_.now_ms;
  if (giving_ == Giving::Draining && proxy_.connection_count() == 0 && !up_.fd) return state_.now_ms;
  if (child_ > 0) return state_.now_ms + 200;  // to reap it
  return -1;
}

void Handover::upgrade() {
  if (giving_ != Giving::None || child_ > 0) {
    state_.log.warning("SIGUSR2: a hand-over is under way already");
    return;
  }
  if (state_.binary.empty()) {
    state_.log.warning("SIGUSR2: the path of balance's binary is unknown; use balance -x");
    return;
  }
  std::vector<std::string> args = {state_.binary, "-x"};
  for (const std::string& arg : state_.args)
    if (arg != "-x") args.push_back(arg);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(&arg[0]);
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    state_.log.warning("SIGUSR2: %s", sys_error("fork").c_str());
    return;
  }
  if (pid == 0) {
    // The child must not keep the signal mask or dispositions.
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], argv.data());
    _exit(127);
  }
  child_ = pid;
  state_.log.info("SIGUSR2: started %s (pid %ld) to take over", state_.binary.c_str(), long(pid));
}

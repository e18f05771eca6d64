// Statistics: the show table, its JSON and CSV forms, the queue listing,
// Prometheus metrics, and the read-only HTTP listener (-s) that serves
// them. The listener runs in the relay loop and never blocks it: a
// request must arrive within kRequestMs and fit in kMaxRequest bytes.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "control.hpp"

namespace {

constexpr size_t kMaxRequest = 8192;
constexpr int64_t kRequestMs = 5000;
constexpr size_t kMaxHttpClients = 64;

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char line[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(line, sizeof line, fmt, args);
  va_end(args);
  return line;
}

double seconds(int64_t ms) { return double(ms) / 1000.0; }

double mean_job_seconds(const Channel& channel) {
  return channel.finished ? double(channel.busy_ms) / 1000.0 / double(channel.finished) : 0.0;
}

std::string address_text(const Channel& channel) {
  return channel.config.address.host_text();
}

double mean_wait_seconds(const Pool& pool) {
  return pool.waited() ? seconds(int64_t(pool.wait_total_ms())) / double(pool.waited()) : 0.0;
}

const char* type_name(GroupType type) { return type == GroupType::Hash ? "hash" : "rr"; }

template <typename Visit>
void each_channel(const State& state, Visit visit) {
  const auto& groups = state.pool.groups();
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& channel : groups[g]->channels) visit(g, *groups[g], *channel);
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += char(ch);
    } else if (ch < 32) {
      out += format("\\u%04x", ch);
    } else {
      out += char(ch);
    }
  }
  return out + "\"";
}

std::string label_value(const std::string& text) {  // Prometheus label escaping
  std::string out;
  for (char ch : text) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (ch == '\n') {
      out += "\\n";
      continue;
    }
    out += ch;
  }
  return out;
}

}  // namespace

std::string render_show(const State& state) {
  std::string text =
      "GRP Type   # S    ip-address                    port      c    totalc   maxc weight "
      "   fail             sent             rcvd  avgtime";
  each_channel(state, [&](size_t g, const Group& group, const Channel& channel) {
    text += format("\n%3zu %-4s %3u %-4s %-28s %5d %6u %9llu %6u %6u %7llu %16llu %16llu %8.3f", g,
                   group.type == GroupType::Hash ? "Hash" : "RR", channel.number,
                   channel.state_name(), address_text(channel).c_str(),
                   channel.config.address.port(), channel.c,
                   (unsigned long long)channel.total_connections, channel.config.maxc,
                   channel.config.weight, (unsigned long long)channel.failures,
                   (unsigned long long)channel.sent, (unsigned long long)channel.received,
                   mean_job_seconds(channel));
  });
  const Pool& pool = state.pool;
  text += format("\nqueue: %zu waiting, high-water %zu, limit %zu, wait limit %.3f s; "
                 "%llu dropped",
                 pool.queue().size(), pool.queue_high_water(), pool.options().queue_limit,
                 seconds(pool.options().queue_wait_ms), (unsigned long long)pool.dropped());
  text += format("\nwaited: %llu clients, mean %.3f s, max %.3f s",
                 (unsigned long long)pool.waited(), mean_wait_seconds(pool), seconds(pool.wait_max_ms()));
  return text;
}

std::string render_csv(const State& state) {
  std::string text =
      "group,type,channel,state,host,address,port,c,totalc,maxc,weight,failures,sent,rcvd,"
      "mean_time_s,since_change_s";
  each_channel(state, [&](size_t g, const Group& group, const Channel& channel) {
    std::string host = channel.config.host;
    if (host.find_first_of(",\"") != std::string::npos) host = "\"" + host + "\"";
    text += format("\n%zu,%s,%u,%s,%s,%s,%d,%u,%llu,%u,%u,%llu,%llu,%llu,%.3f,%.3f", g,
                   type_name(group.type), channel.number, channel.state_name(), host.c_str(),
                   address_text(channel).c_str(), channel.config.address.port(), channel.c,
                   (unsigned long long)channel.total_connections, channel.config.maxc,
                   channel.config.weight, (unsigned long long)channel.failures,
                   (unsigned long long)channel.sent, (unsigned long long)channel.received,
                   mean_job_seconds(channel), seconds(state.now_ms - channel.changed_ms));
  });
  return text;
}

std::string render_json(const State& state) {
  const Pool& pool = state.pool;
  std::string text = format(
      "{\"version\":\"%s\",\"listen\":%s,\"started\":%lld,\"connect_timeout_s\":%.3f,"
      "\"idle_timeout_s\":%.3f,\"queue\":{\"length\":%zu,\"high_water\":%zu,\"limit\":%zu,"
      "\"wait_limit_s\":%.3f,\"dropped\":%llu,\"waited\":%llu,\"wait_mean_s\":%.3f,"
      "\"wait_max_s\":%.3f},\"groups\":[",
      BALANCE_VERSION, json_string(state.listen_text).c_str(), (long long)state.started,
      seconds(state.options.connect_timeout_ms), seconds(state.options.idle_timeout_ms),
      pool.queue().size(), pool.queue_high_water(), pool.options().queue_limit,
      seconds(pool.options().queue_wait_ms), (unsigned long long)pool.dropped(),
      (unsigned long long)pool.waited(),
      mean_wait_seconds(pool),
      seconds(pool.wait_max_ms()));
  const auto& groups = pool.groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    text += format("%s{\"group\":%zu,\"type\":\"%s\",\"channels\":[", g ? "," : "", g,
                   type_name(groups[g]->type));
    bool first = true;
    for (const auto& channel : groups[g]->channels) {
      text += format(
          "%s{\"channel\":%u,\"state\":\"%s\",\"host\":%s,\"address\":%s,\"port\":%d,\"c\":%u,"
          "\"totalc\":%llu,\"maxc\":%u,\"weight\":%u,\"failures\":%llu,\"sent\":%llu,"
          "\"rcvd\":%llu,\"mean_time_s\":%.3f,\"since_change_s\":%.3f}",
          first ? "" : ",", channel->number, channel->state_name(),
          json_string(channel->config.host).c_str(), json_string(address_text(*channel)).c_str(),
          channel->config.address.port(), channel->c,
          (unsigned long long)channel->total_connections, channel->config.maxc,
          channel->config.weight, (unsigned long long)channel->failures,
          (unsigned long long)channel->sent, (unsigned long long)channel->received,
          mean_job_seconds(*channel), seconds(state.now_ms - channel->changed_ms));
      first = false;
    }
    text += "]}";
  }
  return text + "]}";
}

std::string render_queue(const State& state) {
  const WaitQueue& queue = state.pool.queue();
  std::string text = format("%zu waiting (high-water %zu, limit %zu)", queue.size(),
                            state.pool.queue_high_water(), state.pool.options().queue_limit);
  size_t position = 0;
  for (const Waiter& waiter : queue)
    text += format("\n%5zu waiting %.3f s", position++, seconds(state.now_ms - waiter.since_ms));
  return text;
}

std::string render_prometheus(const State& state) {
  const Pool& pool = state.pool;
  std::string text;
  auto metric = [&](const char* name, const char* type, const char* help) {
    text += format("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
  };
  metric("balance_start_time_seconds", "gauge", "Start time of the process since the epoch.");
  text += format("balance_start_time_seconds %lld\n", (long long)state.started);
  metric("balance_queue_length", "gauge", "Clients waiting for a free slot.");
  text += format("balance_queue_length %zu\n", pool.queue().size());
  metric("balance_queue_high_water", "gauge", "Most clients ever waiting at once.");
  text += format("balance_queue_high_water %zu\n", pool.queue_high_water());
  metric("balance_queue_dropped_total", "counter", "Clients closed by the queue limits.");
  text += format("balance_queue_dropped_total %llu\n", (unsigned long long)pool.dropped());
  metric("balance_queue_waited_total", "counter", "Clients served after waiting.");
  text += format("balance_queue_waited_total %llu\n", (unsigned long long)pool.waited());
  metric("balance_queue_wait_seconds_total", "counter", "Summed wait of served clients.");
  text += format("balance_queue_wait_seconds_total %.3f\n", seconds(int64_t(pool.wait_total_ms())));
  struct Series {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const Channel&);
  };
  static const Series series[] = {
      {"balance_channel_up", "gauge", "1 when the channel is enabled and up.",
       [](const Channel& c) { return c.in_service() ? 1.0 : 0.0; }},
      {"balance_channel_enabled", "gauge", "1 when the channel is enabled.",
       [](const Channel& c) { return c.admin == AdminState::Enabled ? 1.0 : 0.0; }},
      {"balance_channel_connections", "gauge", "Connections holding a slot now.",
       [](const Channel& c) { return double(c.c); }},
      {"balance_channel_maxc", "gauge", "Slots of the channel (0 = unlimited).",
       [](const Channel& c) { return double(c.config.maxc); }},
      {"balance_channel_weight", "gauge", "Speed of one slot.",
       [](const Channel& c) { return double(c.config.weight); }},
      {"balance_channel_connections_total", "counter", "Connections relayed.",
       [](const Channel& c) { return double(c.total_connections); }},
      {"balance_channel_failures_total", "counter", "Failed connects.",
       [](const Channel& c) { return double(c.failures); }},
      {"balance_channel_sent_bytes_total", "counter", "Bytes sent to the back-end.",
       [](const Channel& c) { return double(c.sent); }},
      {"balance_channel_received_bytes_total", "counter", "Bytes received from the back-end.",
       [](const Channel& c) { return double(c.received); }},
      {"balance_channel_busy_seconds_total", "counter", "Summed duration of ended connections.",
       [](const Channel& c) { return double(c.busy_ms) / 1000.0; }},
  };
  for (const Series& s : series) {
    metric(s.name, s.type, s.help);
    each_channel(state, [&](size_t g, const Group&, const Channel& channel) {
      text += format("%s{group=\"%zu\",channel=\"%u\",address=\"%s\",port=\"%d\"} %.17g\n", s.name,
                     g, channel.number, label_value(address_text(channel)).c_str(),
                     channel.config.address.port(), s.value(channel));
    });
  }
  return text;
}

std::string http_response(const std::string& request, const State& state) {
  size_t end_of_line = request.find_first_of("\r\n");
  std::string first = request.substr(0, end_of_line);
  size_t space1 = first.find(' ');
  size_t space2 = space1 == std::string::npos ? std::string::npos : first.find(' ', space1 + 1);
  std::string method = first.substr(0, space1);
  std::string target = space1 == std::string::npos
                           ? ""
                           : first.substr(space1 + 1, space2 == std::string::npos
                                                          ? std::string::npos
                                                          : space2 - space1 - 1);
  size_t query = target.find('?');
  if (query != std::string::npos) target.erase(query);
  int status = 200;
  std::string body, type = "text/plain; charset=utf-8";
  if (method.empty() || target.empty() || target[0] != '/') {
    status = 400;
    body = "bad request\n";
  } else if (target != "/" && target != "/metrics") {
    status = 404;
    body = "not found; try / or /metrics\n";
  } else if (method != "GET" && method != "HEAD") {
    status = 405;
    body = "only GET and HEAD\n";
  } else if (target == "/") {
    body = render_show(state) + "\n";
  } else {
    body = render_prometheus(state);
    type = "text/plain; version=0.0.4; charset=utf-8";
  }
  const char* reason = status == 200 ? "OK" : status == 400 ? "Bad Request"
                     : status == 404 ? "Not Found" : "Method Not Allowed";
  std::string head = format("HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", status,
                            reason, type.c_str(), body.size());
  if (status == 405) head += "Allow: GET, HEAD\r\n";
  head += "Connection: close\r\n\r\n";
  return method == "HEAD" ? head : head + body;
}

// ---------------------------------------------------------------- HTTP

struct StatsServer::Client final : Watcher {
  StatsServer& server;
  Fd fd;
  std::string in, out;
  int64_t deadline_ms;
  bool answered = false;
  bool closed = false;

  Client(StatsServer& owner, int descriptor, int64_t deadline)
      : server(owner), fd(descriptor), deadline_ms(deadline) {}

  void on_ready(int, unsigned events) override {
    if (closed) return;
    if (!answered && (events & (kReadable | kHangup))) {
      char buffer[2048];
      ssize_t n = read(fd.get(), buffer, sizeof buffer);
      if (n == 0 || (n < 0 && !would_block(errno))) {
        server.close_client(*this);
        return;
      }
      if (n > 0) in.append(buffer, size_t(n));
      bool complete = in.find("\r\n\r\n") != std::string::npos || in.find("\n\n") != std::string::npos;
      if (complete) {
        out = http_response(in, server.state_);
        answered = true;
      } else if (in.size() > kMaxRequest) {
        out = "HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n";
        answered = true;
      }
    }
    if (answered) {
      ssize_t n = write(fd.get(), out.data(), out.size());
      if (n < 0 && !would_block(errno)) {
        server.close_client(*this);
        return;
      }
      if (n > 0) out.erase(0, size_t(n));
      if (out.empty()) {
        server.close_client(*this);
        return;
      }
    }
    server.state_.poller->watch(fd.get(), answered ? kWritable : kReadable, this);
  }
};

StatsServer::StatsServer(State& state) : state_(state) {}

StatsServer::~StatsServer() {
  for (auto& client : clients_) close_client(*client);
  if (listener_) state_.poller->forget(listener_.get());
}

bool StatsServer::listen(std::string* err) {
  std::string why;
  const Options& options = state_.options;
  listener_ = listen_tcp(state_.stats_address, true, 64, &why);  // resolved at start-up
  if (!listener_) {
    *err = "-s " + options.stats_address + ":" + options.stats_port + ": " + why;
    return false;
  }
  state_.poller->watch(listener_.get(), kReadable, this);
  return true;
}

void StatsServer::on_ready(int, unsigned) {
  for (int i = 0; i < 16; ++i) {
    Address peer;
    int fd = accept_connection(listener_.get(), &peer);
    if (fd < 0) return;
    size_t live = 0;
    for (auto& client : clients_) live += !client->closed;
    if (live >= kMaxHttpClients) {
      // The oldest request makes room: slow clients cannot hold the
      // statistics hostage.
      auto oldest = std::min_element(
          clients_.begin(), clients_.end(),
          [](const std::unique_ptr<Client>& a, const std::unique_ptr<Client>& b) {
            return a->closed != b->closed ? b->closed : a->deadline_ms < b->deadline_ms;
          });
      close_client(**oldest);  // freed in tick(), after this pass's events
    }
    clients_.push_back(std::make_unique<Client>(*this, fd, state_.now_ms + kRequestMs));
    state_.poller->watch(fd, kReadable, clients_.back().get());
  }
}

void StatsServer::close_client(Client& client) {
  if (client.closed) return;
  client.closed = true;
  state_.poller->forget(client.fd.get());
  client.fd.reset();
}

void StatsServer::tick() {
  for (auto& client : clients_)
    if (!client->closed && client->deadline_ms <= state_.now_ms) close_client(*client);
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(),
                                [](const std::unique_ptr<Client>& c) { return c->closed; }),
                 clients_.end());
}

int64_t StatsServer::next_deadline_ms() const {
  int64_t next = -1;
  for (auto& client : clients_)
    if (!client->closed && (next < 0 || client->deadline_ms < next)) next = client->deadline_ms;
  return next;
}

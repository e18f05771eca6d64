// Statistics (see stats.hpp): one table of per-channel fields and the
// Producers that render it as the show table, CSV, JSON and Prometheus
// text, and the queue listing.
//
// Invariants: a Producer reads the pool only through a cursor (group
// index, next channel number, or the next queue ticket), so a channel
// deleted between two pieces is skipped and nothing dangles; one call of
// produce() renders at most kChannelsPerPiece channels; no fixed-size
// buffer holds text of unbounded length.
#include "stats.hpp"

#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "balance.hpp"

namespace {

constexpr int kChannelsPerPiece = 32;

double seconds(int64_t ms) { return double(ms) / 1000.0; }

// Escapes `special` characters with a backslash and bytes outside
// printable ASCII as `hex_prefix` and two hex digits.
std::string escaped(const std::string& text, const char* special, const char* hex_prefix) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : text) {
    if (ch && std::strchr(special, ch)) {
      out += '\\';
      out += char(ch);
    } else if (ch < 32 || ch >= 127) {
      out += hex_prefix;
      out += hex[ch >> 4];
      out += hex[ch & 15];
    } else {
      out += char(ch);
    }
  }
  return out;
}

// A host as given may hold any bytes (the resolver accepts some trailing
// junk); the line-based forms show it with bytes outside printable ASCII
// and the backslash escaped, so that no reply line can break or end early.
std::string printable(const std::string& text) { return escaped(text, "\\", "\\x"); }

std::string fixed3(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.3f", value);
  return text;
}


// ---------------------------------------------------------------- the field table

struct Row {
  const State& state;
  size_t group;
  const Group& group_ref;
  const Channel& channel;
};

enum class Kind { Text, Count, Seconds, Flag };

struct Value {
  Kind kind = Kind::Count;
  uint64_t count = 0;
  double seconds = 0;
  std::string text;

  void set_text(const std::string& t) {
    kind = Kind::Text;
    text = t;
  }
  void set_count(uint64_t n) {
    kind = Kind::Count;
    count = n;
  }
  void set_seconds(double s) {  // also any decimal shown to 3 places
    kind = Kind::Seconds;
    seconds = s;
  }
  void set_flag(bool on) {
    kind = Kind::Flag;
    count = on;
  }
  std::string plain() const {
    if (kind == Kind::Text) return text;
    if (kind == Kind::Count) return std::to_string(count);
    if (kind == Kind::Flag) return count ? "true" : "false";
    return fixed3(seconds);
  }
  double number() const { return kind == Kind::Count || kind == Kind::Flag ? double(count) : seconds; }
};

struct ChannelField {
  const char* key;     // CSV header and JSON member; nullptr = a metric only
  const char* column;  // show column; nullptr = not in the table
  int width;           // show column width; negative = left-aligned
  bool brief;          // also in `show brief` (balance 3.x's columns)
  bool per_group;      // JSON gives it once per group, not per channel
  const char* metric;  // Prometheus name (balance_channel_...), or nullptr
  const char* metric_type;
  const char* help;
  void (*get)(const Row&, Value*);
  // The table's text where it differs from the value (3.x's spelling).
  void (*table_text)(const Row&, Value*) = nullptr;
};

// balance 3.x's columns first, in 3.x's order, so that its scripts'
// `awk '{print $10}'` still reads sent; every newer column after them.
const ChannelField kFields[] = {
    {"group", "GRP", 3, true, true, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_count(r.group); }},
    {"type", "Type", -4, true, true, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_text(to_string(r.group_ref.type())); },
     [](const Row& r, Value* v) { v->set_text(r.group_ref.type() == GroupType::Hash ? "Hash" : "RR"); }},
    {"channel", "#", 3, true, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_count(r.channel.number()); }},
    {"state", "S", -4, true, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_text(r.channel.state_name()); }},
    {"address", "ip-address", -15, true, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_text(r.channel.config().address.host_text()); }},
    {"port", "port", 5, true, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_count(uint64_t(r.channel.config().address.port())); }},
    {"c", "c", 4, true, false, "connections", "gauge", "Connections holding a slot now.",
     [](const Row& r, Value* v) { v->set_count(r.channel.c()); }},
    {"totalc", "totalc", 7, true, false, "connections_total", "counter", "Connections relayed.",
     [](const Row& r, Value* v) { v->set_count(r.channel.counters().connections); }},
    {"maxc", "maxc", 4, true, false, "maxc", "gauge", "Slots of the channel (0 = unlimited).",
     [](const Row& r, Value* v) { v->set_count(r.channel.config().maxc); }},
    {"sent", "sent", 10, true, false, "sent_bytes_total", "counter", "Bytes sent to the back-end.",
     [](const Row& r, Value* v) { v->set_count(r.channel.counters().sent); }},
    {"rcvd", "rcvd", 10, true, false, "received_bytes_total", "counter",
     "Bytes received from the back-end.",
     [](const Row& r, Value* v) { v->set_count(r.channel.counters().received); }},
    {"weight", "weight", 6, false, false, "weight", "gauge", "Speed of one slot.",
     [](const Row& r, Value* v) { v->set_count(r.channel.config().weight); }},
    {"failures", "fail", 5, false, false, "failures_total", "counter", "Failed connects.",
     [](const Row& r, Value* v) { v->set_count(r.channel.counters().failures); }},
    {"mean_time_s", "avgtime", 8, false, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) {
       const ChannelCounters& n = r.channel.counters();
       v->set_seconds(n.finished ? seconds(int64_t(n.busy_ms)) / double(n.finished) : 0.0);
     }},
    {"speed", "speed", 7, false, false, "speed", "gauge",
     "Speed of one slot the scheduler compares, in weight units (learned or the weight).",
     [](const Row& r, Value* v) { v->set_seconds(r.channel.slot_speed()); }},
    {"learned", "learn", -5, false, false, "learned", "gauge", "1 when the speed is learned (-L, weight auto).",
     [](const Row& r, Value* v) { v->set_flag(r.channel.learned()); },
     [](const Row& r, Value* v) { v->set_text(r.channel.learned() ? "auto" : "pin"); }},
    {"speed_jobs", "jobs", 4, false, false, "speed_jobs", "gauge", "Jobs the learned speed rests on.",
     [](const Row& r, Value* v) { v->set_count(r.channel.learned() ? r.channel.estimate()->jobs() : 0); }},
    {"since_change_s", nullptr, 0, false, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_seconds(seconds(r.state.now_ms - r.channel.changed_ms())); }},
    {"host", "host", -1, false, false, nullptr, nullptr, nullptr,
     [](const Row& r, Value* v) { v->set_text(printable(r.channel.config().host)); }},
    {nullptr, nullptr, 0, false, false, "up", "gauge", "1 when the channel is enabled and up.",
     [](const Row& r, Value* v) { v->set_count(r.channel.in_service() ? 1 : 0); }},
    {nullptr, nullptr, 0, false, false, "enabled", "gauge", "1 when the channel is enabled.",
     [](const Row& r, Value* v) { v->set_count(r.channel.enabled() ? 1 : 0); }},
    {nullptr, nullptr, 0, false, false, "busy_seconds_total", "counter",
     "Summed duration of ended connections.",
     [](const Row& r, Value* v) { v->set_seconds(seconds(int64_t(r.channel.counters().busy_ms))); }},
};

// Overall figures of the queue: JSON's "queue" object and the metrics.
struct QueueField {
  const char* key;
  const char* metric;  // balance_queue_...
  const char* metric_type;
  const char* help;
  void (*get)(const Pool&, Value*);
};

const QueueField kQueueFields[] = {
    {"length", "length", "gauge", "Clients waiting for a free slot.",
     [](const Pool& p, Value* v) { v->set_count(p.queue_length()); }},
    {"high_water", "high_water", "gauge", "Most clients ever waiting at once.",
     [](const Pool& p, Value* v) { v->set_count(p.queue_high_water()); }},
    {"limit", nullptr, nullptr, nullptr,
     [](const Pool& p, Value* v) { v->set_count(p.options().queue_limit); }},
    {"wait_limit_s", nullptr, nullptr, nullptr,
     [](const Pool& p, Value* v) { v->set_seconds(seconds(p.options().queue_wait_ms)); }},
    {"outage_wait_s", nullptr, nullptr, nullptr,
     [](const Pool& p, Value* v) { v->set_seconds(seconds(p.options().outage_wait_ms)); }},
    {"dropped", "dropped_total", "counter", "Clients closed by the queue limits (-q, -w).",
     [](const Pool& p, Value* v) { v->set_count(p.dropped()); }},
    {"refused", "refused_total", "counter", "Clients closed at once: no channel in service.",
     [](const Pool& p, Value* v) { v->set_count(p.refused()); }},
    {"waited", "waited_total", "counter", "Clients served after waiting.",
     [](const Pool& p, Value* v) { v->set_count(p.waits().count); }},
    {"wait_seconds_total", "wait_seconds_total", "counter", "Summed wait of served clients.",
     [](const Pool& p, Value* v) { v->set_seconds(seconds(int64_t(p.waits().total_ms))); }},
    {"wait_mean_s", nullptr, nullptr, nullptr,
     [](const Pool& p, Value* v) { v->set_seconds(p.waits().mean_seconds()); }},
    {"wait_max_s", nullptr, nullptr, nullptr,
     [](const Pool& p, Value* v) { v->set_seconds(seconds(p.waits().max_ms)); }},
};

// ---------------------------------------------------------------- cursor

// Walks groups and their channels by (group index, next channel number):
// no iterator or pointer survives between two steps.
class ChannelCursor {
 public:
  enum class Step { GroupStart, Channel, GroupEnd, Done };

  explicit ChannelCursor(const Pool& pool) : pool_(pool) {}
  void restart() {
    group_ = 0;
    inside_ = false;
  }
  Step next(size_t* group, const Channel** channel) {
    const auto& groups = pool_.groups();
    if (group_ >= groups.size()) return Step::Done;
    *group = group_;
    if (!inside_) {
      inside_ = true;
      next_number_ = 0;
      return Step::GroupStart;
    }
    const auto& channels = groups[group_]->channels();
    auto it = std::lower_bound(channels.begin(), channels.end(), next_number_,
                               [](const std::unique_ptr<::Channel>& c, uint64_t n) {
                                 return c->number() < n;
                               });
    if (it != channels.end()) {
      next_number_ = uint64_t((*it)->number()) + 1;
      *channel = it->get();
      return Step::Channel;
    }
    inside_ = false;
    ++group_;
    return Step::GroupEnd;
  }

 private:
  const Pool& pool_;
  size_t group_ = 0;
  uint64_t next_number_ = 0;
  bool inside_ = false;
};

// A Producer that walks the channels once: a head, then per group and
// channel, then a tail.
class ChannelWalk : public Producer {
 public:
  explicit ChannelWalk(const State& state) : state_(state), cursor_(state.pool) {}
  bool produce(std::string* out) override {
    if (!started_) {
      started_ = true;
      head(out);
    }
    for (int done = 0; done < kChannelsPerPiece;) {
      size_t group = 0;
      const Channel* channel = nullptr;
      switch (cursor_.next(&group, &channel)) {
        case ChannelCursor::Step::GroupStart:
          group_start(group, out);
          break;
        case ChannelCursor::Step::Channel:
          row(Row{state_, group, *state_.pool.groups()[group], *channel}, out);
          ++done;
          break;
        case ChannelCursor::Step::GroupEnd:
          group_end(group, out);
          break;
        case ChannelCursor::Step::Done:
          tail(out);
          return false;
      }
    }
    return true;
  }

 protected:
  virtual void head(std::string* out) = 0;
  virtual void group_start(size_t, std::string*) {}
  virtual void row(const Row& row, std::string* out) = 0;
  virtual void group_end(size_t, std::string*) {}
  virtual void tail(std::string* out) = 0;

  const State& state_;
  ChannelCursor cursor_;
  bool started_ = false;
  bool channels_in_group_ = false;
  Value value_;
};

void pad(std::string* out, const std::string& text, int width) {
  size_t w = size_t(width < 0 ? -width : width);
  if (width > 0 && text.size() < w) out->append(w - text.size(), ' ');
  out->append(text);
  if (width < 0 && text.size() < w) out->append(w - text.size(), ' ');
}

// The queue lines that end `show` in every text form.
// "N clients, mean X s, max Y s".
std::string waits_text(const WaitStats& waits) {
  return std::to_string(waits.count) + " clients, mean " + fixed3(waits.mean_seconds()) +
         " s, max " + fixed3(seconds(waits.max_ms)) + " s";
}

bool has_priority_rules(const ClientRules& rules) {
  for (const ClientRule& rule : rules.rules())
    if (rule.kind == RuleKind::Priority) return true;
  return false;
}

// With priority networks (-P), the waits of each class.
std::string classes_line(const State& state) {
  if (!has_priority_rules(state.rules)) return "";
  return "\nwaited by class: priority " + waits_text(state.pool.waits(true)) + "; normal " +
         waits_text(state.pool.waits(false));
}

// After a restart (balance -x), while the balance taken over still relays
// connections: they hold slots here too (counted in c).
std::string handover_line(const Pool& pool) {
  if (pool.adopted_total() == 0) return "";
  return "\nhand-over: the previous balance still relays " + std::to_string(pool.adopted_total()) +
         " connections (counted in c)";
}

std::string queue_lines(const State& state) {
  const Pool& pool = state.pool;
  WaitStats waits = pool.waits();
  return "\nqueue: " + std::to_string(pool.queue_length()) + " waiting, high-water " +
         std::to_string(pool.queue_high_water()) + ", limit " +
         std::to_string(pool.options().queue_limit) + ", wait limit " +
         fixed3(seconds(pool.options().queue_wait_ms)) + " s; " + std::to_string(pool.dropped()) +
         " dropped, " + std::to_string(pool.refused()) + " refused\nwaited: " +
         waits_text(waits) + classes_line(state) + handover_line(pool);
}

// "192.0.2.7:51234" or "[2001:db8::7]:51234" from a waiter's key and port.
std::string client_text(const Waiter& waiter) {
  Address address;
  if (waiter.key.size() == 4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&address.storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, waiter.key.data(), 4);
  } else if (waiter.key.size() == 16) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, waiter.key.data(), 16);
  } else {
    return "?";
  }
  address.set_port(waiter.port);
  return address.text();
}

class TableShow final : public ChannelWalk {
 public:
  TableShow(const State& state, bool brief) : ChannelWalk(state), brief_(brief) {
    for (const ChannelField& field : kFields)
      if (shown(field)) last_ = &field;
  }

 private:
  bool shown(const ChannelField& field) const { return field.column && (field.brief || !brief_); }
  void head(std::string* out) override {
    bool first = true;
    for (const ChannelField& field : kFields) {
      if (!shown(field)) continue;
      if (!first) *out += ' ';
      first = false;
      // The last column (host) is not padded: no trailing blanks.
      pad(out, field.column, &field == last_ ? 0 : field.width);
    }
  }
  void group_start(size_t, std::string*) override { channels_in_group_ = false; }
  void row(const Row& row, std::string* out) override {
    channels_in_group_ = true;
    *out += '\n';
    bool first = true;
    for (const ChannelField& field : kFields) {
      if (!shown(field)) continue;
      if (!first) *out += ' ';
      first = false;
      (field.table_text ? field.table_text : field.get)(row, &value_);
      pad(out, value_.plain(), &field == last_ ? 0 : field.width);
    }
  }
  void group_end(size_t group, std::string* out) override {
    if (channels_in_group_) return;
    // An empty group still shows, so `group G` targets are visible.
    const Group& g = *state_.pool.groups()[group];
    *out += '\n';
    pad(out, std::to_string(group), 3);
    *out += ' ';
    pad(out, g.type() == GroupType::Hash ? "Hash" : "RR", -4);
    *out += "   - (no channels)";
  }
  void tail(std::string* out) override { *out += queue_lines(state_); }

  bool brief_;
  const ChannelField* last_ = nullptr;  // the last column: not padded
};

class CsvShow final : public ChannelWalk {
 public:
  using ChannelWalk::ChannelWalk;

 private:
  void head(std::string* out) override {
    bool first = true;
    for (const ChannelField& field : kFields) {
      if (!field.key) continue;
      if (!first) *out += ',';
      first = false;
      *out += field.key;
    }
  }
  void row(const Row& row, std::string* out) override {
    *out += '\n';
    bool first = true;
    for (const ChannelField& field : kFields) {
      if (!field.key) continue;
      if (!first) *out += ',';
      first = false;
      field.get(row, &value_);
      *out += value_.kind == Kind::Text ? csv_field(value_.text) : value_.plain();
    }
  }
  void tail(std::string*) override {}
};

void json_member(std::string* out, const char* key, const Value& value, bool* first) {
  if (!*first) *out += ',';
  *first = false;
  *out += '"';
  *out += key;
  *out += "\":";
  *out += value.kind == Kind::Text ? json_string(value.text) : value.plain();
}

class JsonShow final : public ChannelWalk {
 public:
  using ChannelWalk::ChannelWalk;

 private:
  void head(std::string* out) override {
    const Pool& pool = state_.pool;
    *out += "{\"version\":" + json_string(BALANCE_VERSION) +
            ",\"pid\":" + std::to_string(long(getpid())) +
            ",\"listen\":" + json_string(state_.listen_text) +
            ",\"started\":" + std::to_string((long long)state_.started) +
            ",\"connect_timeout_s\":" + fixed3(seconds(state_.options.connect_timeout_ms)) +
            ",\"idle_timeout_s\":" + fixed3(seconds(state_.options.idle_timeout_ms)) +
            ",\"queue\":{";
    bool first = true;
    for (const QueueField& field : kQueueFields) {
      field.get(pool, &value_);
      json_member(out, field.key, value_, &first);
    }
    for (bool priority : {true, false}) {
      const WaitStats& waits = pool.waits(priority);
      *out += std::string(",\"") + (priority ? "priority" : "normal") +
              "\":{\"length\":" + std::to_string(pool.waiters(priority).size()) +
              ",\"waited\":" + std::to_string(waits.count) +
              ",\"wait_mean_s\":" + fixed3(waits.mean_seconds()) +
              ",\"wait_max_s\":" + fixed3(seconds(waits.max_ms)) + "}";
    }
    *out += "},\"rules\":[";
    const ClientRules& rules = state_.rules;
    for (size_t i = 0; i < rules.rules().size(); ++i) {
      const ClientRule& rule = rules.rules()[i];
      *out += std::string(i ? "," : "") + "{\"kind\":" + json_string(to_string(rule.kind)) +
              ",\"network\":" + json_string(to_string(rule.network)) +
              ",\"" + counter_name(rule.kind) + "\":" + std::to_string(rule.count) + "}";
    }
    *out += "],\"default_deny\":" + std::string(rules.default_deny() ? "true" : "false") +
            ",\"default_deny_refused\":" + std::to_string(rules.default_refusals()) +
            ",\"groups\":[";
  }
  void group_start(size_t group, std::string* out) override {
    if (group > 0) *out += ',';
    const Group& g = *state_.pool.groups()[group];
    *out += "{\"group\":" + std::to_string(group) + ",\"type\":" +
            json_string(to_string(g.type())) + ",\"channels\":[";
    first_channel_ = true;
  }
  void row(const Row& row, std::string* out) override {
    if (!first_channel_) *out += ',';
    first_channel_ = false;
    *out += '{';
    bool first = true;
    for (const ChannelField& field : kFields) {
      if (!field.key || field.per_group) continue;
      field.get(row, &value_);
      json_member(out, field.key, value_, &first);
    }
    *out += '}';
  }
  void group_end(size_t, std::string* out) override { *out += "]}"; }
  void tail(std::string* out) override { *out += "]}"; }

  bool first_channel_ = true;
};

// The waiting clients in service order: priority clients first, each
// class oldest first. The cursor is (class, last ticket shown).
class QueueShow final : public Producer {
 public:
  explicit QueueShow(const State& state) : state_(state) {}
  bool produce(std::string* out) override {
    const Pool& pool = state_.pool;
    if (!started_) {
      started_ = true;
      *out += std::to_string(pool.queue_length()) + " waiting (high-water " +
              std::to_string(pool.queue_high_water()) + ", limit " +
              std::to_string(pool.options().queue_limit) + ")";
    }
    for (int done = 0; done < kChannelsPerPiece; ++done) {
      const WaitQueue& queue = pool.waiters(priority_);
      auto it = queue.upper_bound(last_ticket_);
      if (it == queue.end()) {
        if (!priority_) return false;
        priority_ = false;  // the priority class is done: the others
        last_ticket_ = 0;
        continue;
      }
      last_ticket_ = it->first;
      const Waiter& waiter = it->second;
      *out += '\n';
      pad(out, std::to_string(position_++), 5);
      *out += " waiting " + fixed3(seconds(state_.now_ms - waiter.since_ms)) + " s " +
              (waiter.priority ? "priority " : "normal ") + client_text(waiter);
    }
    return true;
  }

 private:
  const State& state_;
  bool started_ = false;
  bool priority_ = true;
  uint64_t last_ticket_ = 0;
  size_t position_ = 0;
};

// `show rules`: the access rules in evaluation order, the default, then
// the priority networks, each with its counter.
class RulesShow final : public Producer {
 public:
  explicit RulesShow(const State& state) : state_(state) {}
  bool produce(std::string* out) override {
    std::vector<std::string> lines = state_.rules.listing();
    *out += std::to_string(state_.rules.rules().size()) + " rules" +
            (lines.empty() ? " (every client is allowed)" : "") +
            "; relief: one client in " + std::to_string(state_.pool.options().relief_every) +
            " served is not a priority one";
    for (const std::string& line : lines) *out += "\n" + printable(line);
    return false;
  }

 private:
  const State& state_;
};

// `show config`: a balance command line that recreates the channels as
// they are now (options, groups and their types, every channel as given
// with maxc and weight), then, if need be, a `balance -c` line with the
// commands that recreate the rest: numbers left by deleted channels
// (placeholders deleted again), disabled channels, weights learned or
// pinned unlike -L says. Rules are options (-A, -D, -P) as they are now.
class ConfigShow final : public ChannelWalk {
 public:
  using ChannelWalk::ChannelWalk;

 private:
  void head(std::string* out) override {
    const Options& o = state_.options;
    const PoolOptions& p = state_.pool.options();
    *out += "balance";
    std::string flags;
    for (auto [on, letter] : {std::pair<bool, char>{o.ipv4_only, '4'}, {o.ipv6_only, '6'},
                              {p.autodisable, 'a'}, {o.debug, 'd'}, {o.keep_half_closed, 'e'},
                              {o.foreground, 'f'}, {p.hash_failover, 'H'}, {p.learn_all, 'L'},
                              {o.packet_dump, 'p'}})
      if (on) flags += letter;
    if (!flags.empty()) *out += " -" + flags;
    for (const ClientRule& rule : state_.rules.rules())
      option(out, rule.kind == RuleKind::Allow ? "-A" : rule.kind == RuleKind::Deny ? "-D" : "-P",
             to_string(rule.network));
    option(out, "-b", o.bind_address);
    option(out, "-B", o.source_address);
    option(out, "-G", o.monitor_group);
    if (o.size_wait_ms) option(out, "-j", seconds_text(o.size_wait_ms));
    keepalive(out, "-k", o.client_keepalive);
    keepalive(out, "-K", o.server_keepalive);
    if (p.outage_wait_ms) option(out, "-O", seconds_text(p.outage_wait_ms));
    if (p.queue_limit != PoolOptions().queue_limit) option(out, "-q", std::to_string(p.queue_limit));
    if (p.retry_ms != PoolOptions().retry_ms) option(out, "-r", seconds_text(p.retry_ms));
    if (p.relief_every != PoolOptions().relief_every) option(out, "-R", std::to_string(p.relief_every));
    if (!o.stats_port.empty()) {
      std::string address = o.stats_address.find(':') != std::string::npos
                                ? "[" + o.stats_address + "]" : o.stats_address;
      option(out, "-s", address + ":" + o.stats_port);
    }
    option(out, "-S", o.socket_path);
    if (o.connect_timeout_ms != Options().connect_timeout_ms)
      option(out, "-t", seconds_text(o.connect_timeout_ms));
    if (o.idle_timeout_ms) option(out, "-T", seconds_text(o.idle_timeout_ms));
    if (p.queue_wait_ms != PoolOptions().queue_wait_ms) option(out, "-w", seconds_text(p.queue_wait_ms));
    *out += " " + shell_word(o.port);
    // A placeholder keeps the numbers of deleted channels: any channel's
    // address will do, as it is deleted again at once.
    for (const auto& group : state_.pool.groups())
      if (!group->channels().empty()) {
        placeholder_ = spec(*group->channels().front());
        break;
      }
    if (placeholder_.empty()) placeholder_ = "127.0.0.1:9";
  }
  void group_start(size_t group, std::string*) override {
    next_ = 0;
    group_ = group;
    selected_ = false;
  }
  void row(const Row& row, std::string* out) override {
    const Channel& channel = row.channel;
    for (; next_ < channel.number(); ++next_) {
      *out += " " + shell_word(placeholder_);
      command("delete " + std::to_string(next_));
    }
    ++next_;
    *out += " " + shell_word(spec(channel));
    if (!channel.enabled()) command("disable " + std::to_string(channel.number()));
    if (channel.learned() != state_.pool.options().learn_all)
      command("weight " + std::to_string(channel.number()) + " " +
              (channel.learned() ? std::string("auto") : std::to_string(channel.config().weight)));
  }
  void group_end(size_t group, std::string* out) override {
    const Group& g = *state_.pool.groups()[group];
    if (g.next_number() > next_ || next_ == 0) {
      // Numbers taken after the last channel, or a group with none left.
      for (; next_ < std::max(g.next_number(), 1u); ++next_) {
        *out += " " + shell_word(placeholder_);
        command("delete " + std::to_string(next_));
      }
    }
    bool last = group + 1 == state_.pool.groups().size();
    if (g.type() == GroupType::Hash)
      *out += " %";
    else if (!last)
      *out += " !";
  }
  void tail(std::string* out) override {
    if (commands_.empty()) return;
    const Options& o = state_.options;
    *out += "\nbalance";
    option(out, "-b", o.bind_address);
    option(out, "-S", o.socket_path);
    *out += " -c " + shell_word(commands_) + " " + shell_word(o.port);
  }

  static void option(std::string* out, const char* flag, const std::string& value) {
    if (!value.empty()) *out += std::string(" ") + flag + " " + shell_word(value);
  }
  static void keepalive(std::string* out, const char* flag, const Keepalive& k) {
    if (k.idle_s)
      option(out, flag, std::to_string(k.idle_s) + "," + std::to_string(k.interval_s) + "," +
                            std::to_string(k.count));
  }
  static std::string seconds_text(int64_t ms) {
    std::string text = std::to_string(ms / 1000);
    if (ms % 1000) {
      char fraction[8];
      std::snprintf(fraction, sizeof fraction, ".%03d", int(ms % 1000));
      text += fraction;
    }
    return text;
  }
  static std::string spec(const Channel& channel) {
    const ChannelConfig& config = channel.config();
    std::string host = config.host;
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    return host + ":" + config.port + ":" + std::to_string(config.maxc) + ":" +
           std::to_string(config.weight);
  }
  // A command for the -c line, in this channel's group.
  void command(const std::string& text) {
    if (!selected_) {
      commands_ += (commands_.empty() ? "" : "; ") + std::string("group ") + std::to_string(group_);
      selected_ = true;
    }
    commands_ += "; " + text;
  }

  std::string placeholder_;
  std::string commands_;
  size_t group_ = 0;
  unsigned next_ = 0;  // the number the next channel of the group should have
  bool selected_ = false;
};

// Prometheus text format: the process and queue metrics, then one family
// per channel field that has a metric, each over every channel.
class PrometheusShow final : public Producer {
 public:
  explicit PrometheusShow(const State& state) : state_(state), cursor_(state.pool) {}
  bool produce(std::string* out) override {
    if (!started_) {
      started_ = true;
      family(out, "balance_start_time_seconds", "gauge", "Start time of the process since the epoch.");
      *out += "balance_start_time_seconds " + std::to_string((long long)state_.started) + "\n";
      for (const QueueField& field : kQueueFields) {
        if (!field.metric) continue;
        std::string name = std::string("balance_queue_") + field.metric;
        family(out, name.c_str(), field.metric_type, field.help);
        field.get(state_.pool, &value_);
        *out += name + " " + value_.plain() + "\n";
      }
      classes(out);
      rules(out);
      next_family();
    }
    for (int done = 0; done < kChannelsPerPiece;) {
      if (field_ == std::end(kFields)) return false;
      size_t group = 0;
      const Channel* channel = nullptr;
      switch (cursor_.next(&group, &channel)) {
        case ChannelCursor::Step::Channel:
          sample(Row{state_, group, *state_.pool.groups()[group], *channel}, out);
          ++done;
          break;
        case ChannelCursor::Step::Done:
          ++field_;
          next_family();
          break;
        default:
          break;
      }
    }
    return true;
  }

 private:
  void classes(std::string* out) {
    const Pool& pool = state_.pool;
    family(out, "balance_queue_class_waited_total", "counter", "Clients served after waiting, by class.");
    for (bool priority : {true, false})
      *out += std::string("balance_queue_class_waited_total{class=\"") +
              (priority ? "priority" : "normal") + "\"} " +
              std::to_string(pool.waits(priority).count) + "\n";
    family(out, "balance_queue_class_wait_seconds_total", "counter", "Their summed wait, by class.");
    for (bool priority : {true, false})
      *out += std::string("balance_queue_class_wait_seconds_total{class=\"") +
              (priority ? "priority" : "normal") + "\"} " +
              fixed3(seconds(int64_t(pool.waits(priority).total_ms))) + "\n";
  }
  void rules(std::string* out) {
    const ClientRules& rules = state_.rules;
    family(out, "balance_rule_clients_total", "counter",
           "Clients a rule decided: allowed, refused, or queued as priority.");
    for (const ClientRule& rule : rules.rules())
      *out += std::string("balance_rule_clients_total{kind=\"") + to_string(rule.kind) +
              "\",network=\"" + to_string(rule.network) + "\"} " + std::to_string(rule.count) + "\n";
    if (rules.default_deny())
      *out += "balance_rule_clients_total{kind=\"default deny\",network=\"\"} " +
              std::to_string(rules.default_refusals()) + "\n";
  }
  static void family(std::string* out, const char* name, const char* type, const char* help) {
    *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  // Moves to the next field with a metric and writes its head.
  void next_family() {
    while (field_ != std::end(kFields) && !field_->metric) ++field_;
    if (field_ == std::end(kFields)) return;
    name_ = std::string("balance_channel_") + field_->metric;
    pending_head_ = true;
    cursor_.restart();
  }
  void sample(const Row& row, std::string* out) {
    if (pending_head_) {
      family(out, name_.c_str(), field_->metric_type, field_->help);
      pending_head_ = false;
    }
    field_->get(row, &value_);
    char number[64];
    std::snprintf(number, sizeof number, "%.17g", value_.number());
    *out += name_ + "{group=\"" + std::to_string(row.group) + "\",channel=\"" +
            std::to_string(row.channel.number()) + "\",host=\"" +
            label_value(escaped(row.channel.config().host, "", "\\x")) + "\",address=\"" +
            label_value(row.channel.config().address.host_text()) + "\",port=\"" +
            std::to_string(row.channel.config().address.port()) + "\"} " + number + "\n";
  }

  const State& state_;
  ChannelCursor cursor_;
  const ChannelField* field_ = std::begin(kFields);
  std::string name_;
  bool started_ = false;
  bool pending_head_ = false;
  Value value_;
};

}  // namespace

std::string json_string(const std::string& text) {
  // Valid JSON for any bytes: quotes, backslashes, control bytes and
  // bytes outside ASCII are escaped (the latter as the Latin-1 code
  // point, since a host name given on the command line need not be UTF-8).
  return "\"" + escaped(text, "\"\\", "\\u00") + "\"";
}

std::string shell_word(const std::string& word) {
  static const char* safe =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,:/@%+=![]";
  if (!word.empty() && word.find_first_not_of(safe) == std::string::npos) return word;
  std::string out = "'";
  for (char ch : word) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

std::string csv_field(const std::string& text) {
  // RFC 4180: quote a field holding a comma, quote or line break, and
  // double the quotes inside.
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char ch : text) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

std::string label_value(const std::string& text) {
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

std::unique_ptr<Producer> make_show(const State& state, ShowForm form) {
  switch (form) {
    case ShowForm::Table: return std::make_unique<TableShow>(state, false);
    case ShowForm::Brief: return std::make_unique<TableShow>(state, true);
    case ShowForm::Csv: return std::make_unique<CsvShow>(state);
    case ShowForm::Json: return std::make_unique<JsonShow>(state);
    case ShowForm::Queue: return std::make_unique<QueueShow>(state);
    case ShowForm::Rules: return std::make_unique<RulesShow>(state);
    case ShowForm::Config: return std::make_unique<ConfigShow>(state);
  }
  return nullptr;
}

std::unique_ptr<Producer> make_prometheus(const State& state) {
  return std::make_unique<PrometheusShow>(state);
}

std::string render_all(Producer& producer) {
  std::string out;
  while (producer.produce(&out)) {
  }
  return out;
}

// ---------------------------------------------------------------- HTTP

namespace {

constexpr size_t kMaxRequest = 8192;
constexpr int64_t kRequestMs = 5000;   // the request head must arrive by then
constexpr int64_t kStallMs = 60000;    // a reader that takes nothing this long goes
constexpr size_t kMaxHttpSessions = 64;

std::string status_head(int status, const char* type, const std::string& extra) {
  const char* reason = status == 200   ? "OK"
                       : status == 400 ? "Bad Request"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                                       : "Request Header Fields Too Large";
  return "HTTP/1.0 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
         "\r\n" + extra + "Connection: close\r\n\r\n";
}

std::string error_answer(int status, const std::string& body, const std::string& extra) {
  return status_head(status, "text/plain; charset=utf-8",
                     "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra) +
         body;
}

class HttpSession final : public Session {
 public:
  HttpSession(SessionServer& server, Fd fd)
      : Session(server, std::move(fd)), accepted_ms_(server.state().now_ms) {}
  int64_t deadline_ms() const override {
    return answered_ ? active_ms() + kStallMs : accepted_ms_ + kRequestMs;
  }

 protected:
  size_t input_limit() const override { return kMaxRequest + 1; }
  void consume() override {
    if (answered_) return;
    switch (http_head_state(in_, kMaxRequest)) {
      case HeadState::Incomplete:
        if (input_ended()) close_when_done();
        return;
      case HeadState::TooLarge:
        reply_text(error_answer(431, "", ""));
        break;
      case HeadState::Complete: {
        HttpAnswer answer = http_answer(in_, state());
        reply_text(answer.head);
        if (answer.body) reply_stream(std::move(answer.body), "");
        break;
      }
    }
    answered_ = true;
    in_.clear();
    close_when_done();
  }

 private:
  int64_t accepted_ms_;
  bool answered_ = false;
};

// The `show` table over HTTP: the same Producer, with a final newline.
class WithNewline final : public Producer {
 public:
  explicit WithNewline(std::unique_ptr<Producer> inner) : inner_(std::move(inner)) {}
  bool produce(std::string* out) override {
    if (inner_->produce(out)) return true;
    *out += '\n';
    return false;
  }

 private:
  std::unique_ptr<Producer> inner_;
};

}  // namespace

HttpAnswer http_answer(const std::string& request, const State& state) {
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
  HttpAnswer answer;
  if (method.empty() || target.empty() || target[0] != '/') {
    answer.head = error_answer(400, "bad request\n", "");
  } else if (target != "/" && target != "/metrics") {
    answer.head = error_answer(404, "not found; try / or /metrics\n", "");
  } else if (method != "GET" && method != "HEAD") {
    answer.head = error_answer(405, "only GET and HEAD\n", "Allow: GET, HEAD\r\n");
  } else {
    // The body is streamed and ends with the connection (HTTP/1.0), so
    // no Content-Length: its size is not known before it is rendered.
    bool metrics = target == "/metrics";
    answer.head = status_head(200,
                              metrics ? "text/plain; version=0.0.4; charset=utf-8"
                                      : "text/plain; charset=utf-8",
                              "");
    if (method == "GET")
      answer.body = metrics ? make_prometheus(state)
                            : std::make_unique<WithNewline>(make_show(state, ShowForm::Table));
  }
  return answer;
}

StatsServer::StatsServer(State& state)
    : state_(state),
      sessions_(state, kMaxHttpSessions,
                [](SessionServer& server, Fd fd, const Address&) -> std::unique_ptr<Session> {
                  return std::make_unique<HttpSession>(server, std::move(fd));
                }) {}

bool StatsServer::listen(std::string* err) {
  std::string why;
  const Options& options = state_.options;
  Fd listener = listen_tcp(state_.stats_address, true, SOMAXCONN, &why);  // resolved at start-up
  if (!listener) {
    *err = "-s " + options.stats_address + ":" + options.stats_port + ": " + why;
    return false;
  }
  sessions_.start(std::move(listener));
  return true;
}

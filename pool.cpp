// Groups, channels, selection, the wait queue and counters (see pool.hpp).
#include "pool.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <cstring>

std::string Address::host_text() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (storage.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
  } else if (storage.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof text);
    else
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
  }
  return text;
}

int Address::port() const {
  if (storage.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (storage.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string Address::text() const {
  std::string host = host_text();
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(port());
}

void Address::set_port(int number) {
  if (storage.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(uint16_t(number));
  else if (storage.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(uint16_t(number));
}

std::string Address::host_key() const {
  if (storage.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    return std::string(reinterpret_cast<const char*>(&in->sin_addr), 4);
  }
  if (storage.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    const char* bytes = reinterpret_cast<const char*>(&in6->sin6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return std::string(bytes + 12, 4);
    return std::string(bytes, 16);
  }
  return std::string();
}

const char* to_string(AdminState state) {
  return state == AdminState::Enabled ? "enabled" : "disabled";
}

const char* to_string(Health health) { return health == Health::Up ? "up" : "down"; }

const char* Channel::state_name() const {
  if (admin == AdminState::Disabled) return "DIS";
  if (health == Health::Down) return "DOWN";
  return "ENA";
}

Channel* Group::find(unsigned number) const {
  for (auto& channel : channels)
    if (channel->number == number) return channel.get();
  return nullptr;
}

bool faster(const Channel& a, const Channel& b) {
  // speed = weight / sharers, where sharers is 1 for a slot of a channel
  // with maxc > 0 and c + 1 for an unlimited channel. Cross-multiplied so
  // that equal speeds compare equal and ties go round-robin.
  uint64_t sharers_a = a.config.maxc ? 1 : uint64_t(a.c) + 1;
  uint64_t sharers_b = b.config.maxc ? 1 : uint64_t(b.c) + 1;
  return uint64_t(a.config.weight) * sharers_b > uint64_t(b.config.weight) * sharers_a;
}

namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t hash_bytes(const std::string& bytes) {  // FNV-1a, then mixed
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char byte : bytes) {
    h ^= byte;
    h *= 0x100000001b3ULL;
  }
  return mix64(h);
}

}  // namespace

double rendezvous_score(const std::string& key, const Channel& channel) {
  // Highest random weight: score = -weight / ln(u), u uniform in (0,1)
  // from the (client, channel) pair. Channels are identified by their
  // stable number, so adding or removing one moves only its share.
  uint64_t h = mix64(hash_bytes(key) ^ mix64(channel.number + 0x9e3779b97f4a7c15ULL));
  double u = (double(h >> 11) + 0.5) / 9007199254740992.0;  // (0,1)
  return -double(channel.config.weight) / std::log(u);
}

Group& Pool::add_group(GroupType type) {
  groups_.push_back(std::make_unique<Group>());
  groups_.back()->type = type;
  return *groups_.back();
}

Channel& Pool::add_channel(size_t group_index, const ChannelConfig& config, int64_t now_ms) {
  Group& group = *groups_.at(group_index);
  auto channel = std::make_unique<Channel>();
  channel->group = group_index;
  channel->number = group.next_number++;
  channel->config = config;
  channel->changed_ms = now_ms;
  group.channels.push_back(std::move(channel));
  return *group.channels.back();
}

void Pool::remove_channel(size_t group_index, unsigned number) {
  Group& group = *groups_.at(group_index);
  for (size_t i = 0; i < group.channels.size(); ++i) {
    if (group.channels[i]->number != number) continue;
    std::unique_ptr<Channel> channel = std::move(group.channels[i]);
    group.channels.erase(group.channels.begin() + long(i));
    if (group.last_chosen != SIZE_MAX && group.last_chosen >= i && group.last_chosen > 0)
      --group.last_chosen;
    channel->deleted = true;
    if (channel->health == Health::Down) --down_channels_;
    if (channel->c > 0) retired_.push_back(std::move(channel));
    return;
  }
}

Channel* Pool::select(const std::string& key) {
  for (auto& group : groups_)
    if (Channel* channel = select_in(*group, key)) return channel;
  return nullptr;
}

Channel* Pool::select_in(Group& group, const std::string& key) {
  return group.type == GroupType::Hash ? select_hash(group, key) : select_rr(group);
}

Channel* Pool::select_rr(Group& group) {
  size_t n = group.channels.size();
  if (n == 0) return nullptr;
  size_t start = group.last_chosen == SIZE_MAX ? 0 : (group.last_chosen + 1) % n;
  size_t best = SIZE_MAX;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (start + k) % n;
    const Channel& candidate = *group.channels[i];
    if (!candidate.available()) continue;
    if (best == SIZE_MAX || faster(candidate, *group.channels[best])) best = i;
  }
  if (best == SIZE_MAX) return nullptr;
  group.last_chosen = best;
  return group.channels[best].get();
}

Channel* Pool::select_hash(Group& group, const std::string& key) {
  // Without -H only the client's first choice counts: if it is not
  // available the group is skipped. With -H, the next in its order.
  Channel* first = nullptr;
  double first_score = -1;
  Channel* best_available = nullptr;
  double best_available_score = -1;
  for (auto& channel : group.channels) {
    if (channel->deleted) continue;
    double score = rendezvous_score(key, *channel);
    if (score > first_score) {
      first_score = score;
      first = channel.get();
    }
    if (channel->available() && score > best_available_score) {
      best_available_score = score;
      best_available = channel.get();
    }
  }
  if (first && first->available()) return first;
  return options_.hash_failover ? best_available : nullptr;
}

void Pool::acquire(Channel& channel) { ++channel.c; }

void Pool::connected(Channel& channel) { ++channel.total_connections; }

void Pool::release(Channel& channel, int64_t relayed_ms) {
  if (channel.c > 0) --channel.c;
  if (relayed_ms >= 0) {
    ++channel.finished;
    channel.busy_ms += uint64_t(relayed_ms);
  }
  free_if_retired(channel);
}

void Pool::free_if_retired(Channel& channel) {
  if (!channel.deleted || channel.c > 0) return;
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [&](const std::unique_ptr<Channel>& p) { return p.get() == &channel; }),
                 retired_.end());
}

bool Pool::connect_failed(Channel& channel, int64_t now_ms) {
  ++channel.failures;
  if (options_.autodisable) return set_admin(channel, AdminState::Disabled, now_ms);
  if (channel.health == Health::Down) return false;
  channel.health = Health::Down;
  if (!channel.deleted) ++down_channels_;
  channel.changed_ms = now_ms;
  channel.next_probe_ms = now_ms + options_.retry_ms;
  return true;
}

bool Pool::mark_up(Channel& channel, int64_t now_ms) {
  if (channel.health == Health::Up) return false;
  channel.health = Health::Up;
  if (!channel.deleted) --down_channels_;
  channel.changed_ms = now_ms;
  return true;
}

bool Pool::set_admin(Channel& channel, AdminState admin, int64_t now_ms) {
  if (channel.admin == admin) return false;
  channel.admin = admin;
  channel.changed_ms = now_ms;
  return true;
}

std::vector<Channel*> Pool::due_probes(int64_t now_ms) {
  std::vector<Channel*> due;
  // The common case, nothing down, costs nothing however many channels.
  if (down_channels_ == 0) return due;
  for (auto& group : groups_)
    for (auto& channel : group->channels)
      if (channel->health == Health::Down && channel->admin == AdminState::Enabled &&
          channel->next_probe_ms <= now_ms) {
        // The next probe is scheduled now so a slow probe is not doubled.
        channel->next_probe_ms = now_ms + options_.retry_ms;
        due.push_back(channel.get());
      }
  return due;
}

void Pool::probe_failed(Channel& channel, int64_t now_ms) {
  channel.next_probe_ms = std::max(channel.next_probe_ms, now_ms + options_.retry_ms);
}

int64_t Pool::next_probe_ms() const {
  int64_t next = -1;
  if (down_channels_ == 0) return next;
  for (auto& group : groups_)
    for (auto& channel : group->channels)
      if (channel->health == Health::Down && channel->admin == AdminState::Enabled &&
          (next < 0 || channel->next_probe_ms < next))
        next = channel->next_probe_ms;
  return next;
}

WaitQueue::iterator Pool::enqueue(void* owner, const std::string& key, int64_t now_ms) {
  if (queue_.size() >= options_.queue_limit) {
    ++dropped_;
    return queue_.end();
  }
  queue_.push_back(Waiter{owner, key, now_ms});
  queue_high_water_ = std::max(queue_high_water_, queue_.size());
  return std::prev(queue_.end());
}

bool Pool::has_hash_group() const {
  for (auto& group : groups_)
    if (group->type == GroupType::Hash) return true;
  return false;
}

std::vector<std::pair<Waiter, Channel*>> Pool::serve_queue() {
  std::vector<std::pair<Waiter, Channel*>> served;
  // In round-robin-only pools every waiter competes for the same slots, so
  // when the head cannot be served nobody can; hash groups differ by client.
  bool per_client = has_hash_group();
  for (auto it = queue_.begin(); it != queue_.end();) {
    Channel* channel = select(it->key);
    if (!channel) {
      if (!per_client) break;
      ++it;
      continue;
    }
    acquire(*channel);
    served.emplace_back(*it, channel);
    it = queue_.erase(it);
  }
  return served;
}

std::vector<void*> Pool::expire_waiters(int64_t now_ms) {
  std::vector<void*> expired;
  if (options_.queue_wait_ms <= 0) return expired;
  while (!queue_.empty() && queue_.front().since_ms + options_.queue_wait_ms <= now_ms) {
    expired.push_back(queue_.front().owner);
    queue_.pop_front();
    ++dropped_;
  }
  return expired;
}

int64_t Pool::next_queue_deadline_ms() const {
  if (queue_.empty() || options_.queue_wait_ms <= 0) return -1;
  return queue_.front().since_ms + options_.queue_wait_ms;
}

void Pool::record_wait(int64_t waited_ms) {
  ++waited_;
  wait_total_ms_ += uint64_t(std::max<int64_t>(waited_ms, 0));
  wait_max_ms_ = std::max(wait_max_ms_, waited_ms);
}

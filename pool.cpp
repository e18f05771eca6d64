// Groups, channels, selection, the wait queue and counters (see pool.hpp).
#include "pool.hpp"

#include <algorithm>
#include <cmath>

namespace {

// Hash-group first choices kept per group before the cache starts over.
constexpr size_t kFirstChoiceCache = 4096;

// Speeds are set anew when the scale moves by more than this factor.
constexpr double kRescale = 1.5;

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

const char* to_string(AdminState state) {
  switch (state) {
    case AdminState::Enabled: return "enabled";
    case AdminState::Disabled: return "disabled";
    case AdminState::AutoDisabled: return "disabled after a failure";
  }
  return "?";
}

const char* to_string(Health health) { return health == Health::Up ? "up" : "down"; }

const char* to_string(GroupType type) { return type == GroupType::Hash ? "hash" : "rr"; }

double Channel::speed() const {
  // A learned channel never measured: tried first while it is idle.
  if (estimate_ && estimate_->jobs() == 0 && c_ == 0) return kUnmeasured;
  // Division is correctly rounded, so two channels get equal speeds
  // exactly when their rationals weight/sharers are equal (weights and
  // sharers are far below 2^26): ties stay ties, as faster() has them.
  return config_.maxc ? slot_speed_ : slot_speed_ / (double(c_) + 1);
}

const char* Channel::state_name() const {
  if (admin_ == AdminState::Disabled) return "DIS";
  if (admin_ == AdminState::AutoDisabled) return "ADIS";
  if (health_ == Health::Down) return "DOWN";
  return "ENA";
}

const Channel* Group::find(unsigned number) const { return find_mutable(number); }

Channel* Group::find_mutable(unsigned number) const {
  auto it = std::lower_bound(channels_.begin(), channels_.end(), number,
                             [](const std::unique_ptr<Channel>& channel, unsigned n) {
                               return channel->number() < n;
                             });
  return it != channels_.end() && (*it)->number() == number ? it->get() : nullptr;
}

bool faster(unsigned weight_a, unsigned sharers_a, unsigned weight_b, unsigned sharers_b) {
  return uint64_t(weight_a) * sharers_b > uint64_t(weight_b) * sharers_a;
}

double rendezvous_score(const std::string& key, unsigned number, unsigned weight) {
  // Highest random weight: score = -weight / ln(u), u uniform in (0,1)
  // from the (client, channel) pair. Channels are identified by their
  // stable number, so adding or removing one moves only its share.
  uint64_t h = mix64(hash_bytes(key) ^ mix64(number + 0x9e3779b97f4a7c15ULL));
  double u = (double(h >> 11) + 0.5) / 9007199254740992.0;  // (0,1)
  return -double(weight) / std::log(u);
}

// ---------------------------------------------------------------- changes

size_t Pool::add_group(GroupType type) {
  groups_.push_back(std::make_unique<Group>());
  groups_.back()->type_ = type;
  return groups_.size() - 1;
}

bool Pool::set_group_type(size_t index, GroupType type) {
  Group& group = *groups_.at(index);
  if (group.type_ == type) return false;
  group.type_ = type;
  hash_order_changed(group);
  for (auto& channel : group.channels_) refresh(*channel);
  serve_due_ = true;
  return true;
}

Channel& Pool::add_channel(size_t index, const ChannelConfig& config, AdminState admin,
                           int64_t now_ms) {
  Group& group = *groups_.at(index);
  auto channel = std::make_unique<Channel>();
  channel->id_ = next_id_++;
  channel->group_ = index;
  channel->number_ = group.next_number_++;
  channel->config_ = config;
  channel->admin_ = admin;
  channel->changed_ms_ = now_ms;
  channel->chosen_ms_ = now_ms;
  if (options_.learn_all) channel->estimate_ = std::make_unique<SpeedEstimate>();
  Channel& added = *channel;
  update_speed(added);
  group.channels_.push_back(std::move(channel));
  by_id_[added.id_] = &added;
  hash_order_changed(group);
  refresh(added);
  serve_due_ = true;
  return added;
}

Channel& Pool::restore_channel(size_t index, unsigned number, const ChannelConfig& config,
                              AdminState admin, Health health, const ChannelCounters& counters,
                              bool learned, int64_t now_ms) {
  Group& group = *groups_.at(index);
  group.next_number_ = std::max(group.next_number_, number);
  Channel& channel = add_channel(index, config, admin, now_ms);
  channel.health_ = health;
  channel.counters_ = counters;
  if (health == Health::Down) channel.next_probe_ms_ = now_ms;  // look again soon
  if (learned && !channel.estimate_) channel.estimate_ = std::make_unique<SpeedEstimate>();
  if (!learned) channel.estimate_.reset();
  update_speed(channel);
  refresh(channel);
  return channel;
}

void Pool::reserve_numbers(size_t index, unsigned next_number) {
  Group& group = *groups_.at(index);
  group.next_number_ = std::max(group.next_number_, next_number);
}

void Pool::adopt(Channel& channel, unsigned slots) {
  channel.c_ += slots;
  channel.adopted_ += slots;
  adopted_total_ += slots;
  refresh(channel);
}

void Pool::release_adopted(Channel& channel, int64_t relayed_ms, const ChannelCounters& since) {
  if (channel.adopted_ == 0) return;
  --channel.adopted_;
  --adopted_total_;
  channel.counters_.connections += since.connections;
  channel.counters_.failures += since.failures;
  channel.counters_.sent += since.sent;
  channel.counters_.received += since.received;
  release(channel, relayed_ms);
}

void Pool::remove_channel(Channel& channel) {
  Group& group = *groups_.at(channel.group_);
  auto it = std::find_if(group.channels_.begin(), group.channels_.end(),
                         [&](const std::unique_ptr<Channel>& p) { return p.get() == &channel; });
  if (it == group.channels_.end()) return;
  std::unique_ptr<Channel> owned = std::move(*it);
  group.channels_.erase(it);
  by_id_.erase(channel.id_);
  channel.deleted_ = true;
  refresh(channel);
  schedule_drift(channel);
  hash_order_changed(group);
  if (channel.c_ > 0) retired_.push_back(std::move(owned));
}

bool Pool::set_admin(Channel& channel, AdminState admin, int64_t now_ms) {
  if (admin == AdminState::Enabled && channel.health_ == Health::Down)
    channel.next_probe_ms_ = now_ms;  // look now, whatever the state was
  if (channel.admin_ == admin) {
    refresh(channel);
    return false;
  }
  channel.admin_ = admin;
  channel.changed_ms_ = now_ms;
  refresh(channel);
  if (admin == AdminState::Enabled) serve_due_ = true;
  return true;
}

void Pool::set_maxc(Channel& channel, unsigned maxc) {
  channel.config_.maxc = maxc;
  refresh(channel);
  serve_due_ = true;
}

void Pool::set_weight(Channel& channel, unsigned weight, bool learn) {
  channel.config_.weight = weight;
  if (!learn)
    channel.estimate_.reset();
  else if (!channel.estimate_)
    channel.estimate_ = std::make_unique<SpeedEstimate>();
  hash_order_changed(*groups_.at(channel.group_));
  update_speed(channel);
  refresh(channel);
  serve_due_ = true;
}

void Pool::reset_counters(Channel& channel) { channel.counters_ = ChannelCounters(); }

bool Pool::assign(Channel& channel, const std::string& host, const std::string& port,
                  const Address& address, int64_t now_ms, std::string* err) {
  if (channel.enabled()) {
    *err = "channel " + std::to_string(channel.number_) + " is enabled; disable it first";
    return false;
  }
  channel.config_.host = host;
  channel.config_.port = port;
  channel.config_.address = address;
  // Schedules are keyed by id: out under the old one, in under the new.
  if (channel.drift_scheduled_) {
    drift_schedule_.erase({channel.drift_ms_, channel.id_});
    channel.drift_scheduled_ = false;
  }
  by_id_.erase(channel.id_);
  channel.id_ = next_id_++;
  by_id_[channel.id_] = &channel;
  schedule_drift(channel);
  set_health(channel, Health::Up, now_ms);  // a new address gets a fresh start
  return true;
}

// ---------------------------------------------------------------- lookups

Channel* Pool::find(size_t group, unsigned number) {
  return group < groups_.size() ? groups_[group]->find_mutable(number) : nullptr;
}

Channel* Pool::find_id(uint64_t id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------- derived state

void Pool::refresh(Channel& channel) {
  Group& group = *groups_.at(channel.group_);
  bool ready = group.type_ == GroupType::RoundRobin && channel.available();
  double speed = channel.speed();
  if (channel.indexed_ && (!ready || speed != channel.indexed_speed_)) {
    group.ready_.erase(ReadyKey{channel.indexed_speed_, channel.number_, &channel});
    channel.indexed_ = false;
  }
  if (ready && !channel.indexed_) {
    group.ready_.insert(ReadyKey{speed, channel.number_, &channel});
    channel.indexed_ = true;
    channel.indexed_speed_ = speed;
  }

  bool probe = !channel.deleted_ && channel.enabled() && channel.health_ == Health::Down;
  if (channel.scheduled_ && (!probe || channel.next_probe_ms_ != channel.scheduled_ms_)) {
    probe_schedule_.erase({channel.scheduled_ms_, channel.id_});
    channel.scheduled_ = false;
  }
  if (probe && !channel.scheduled_) {
    probe_schedule_.insert({channel.next_probe_ms_, channel.id_});
    channel.scheduled_ = true;
    channel.scheduled_ms_ = channel.next_probe_ms_;
  }

  if (channel.counted_in_service_ != channel.in_service()) {
    channel.counted_in_service_ = channel.in_service();
    if (channel.counted_in_service_)
      ++in_service_;
    else
      --in_service_;
  }
}

void Pool::hash_order_changed(Group& group) { group.first_choice_.clear(); }

void Pool::update_speed(Channel& channel) {
  double slot = double(channel.config_.weight);
  const SpeedEstimate* estimate = channel.estimate_.get();
  if (estimate && estimate->jobs() > 0 && speed_scale_ > 0) {
    double measured = estimate->work_per_second(speed_basis_);
    if (measured > 0) slot = measured / speed_scale_;
  }
  channel.slot_speed_ = slot;
  schedule_drift(channel);
}

void Pool::rescale() {
  speed_scale_ = scale_.per_weight();
  speed_basis_ = scale_.basis();
  for (auto& group : groups_)
    for (auto& channel : group->channels_)
      if (channel->estimate_) {
        update_speed(*channel);
        refresh(*channel);
      }
}

void Pool::schedule_drift(Channel& channel) {
  // Every measured learned channel has its entry, at kDriftMs after it
  // was last chosen as far as the schedule knows; a channel chosen since
  // is only moved on when its entry comes due (drift()), not on every
  // acquire.
  bool drifts = channel.estimate_ && channel.estimate_->jobs() > 0 && !channel.deleted_;
  int64_t when = channel.drift_scheduled_ ? channel.drift_ms_ : channel.chosen_ms_ + kDriftMs;
  if (channel.drift_scheduled_ && (!drifts || channel.drift_ms_ != when)) {
    drift_schedule_.erase({channel.drift_ms_, channel.id_});
    channel.drift_scheduled_ = false;
  }
  if (drifts && !channel.drift_scheduled_) {
    drift_schedule_.insert({when, channel.id_});
    channel.drift_scheduled_ = true;
    channel.drift_ms_ = when;
  }
}

void Pool::drift(int64_t now_ms) {
  while (!drift_schedule_.empty() && drift_schedule_.begin()->first <= now_ms) {
    Channel& channel = *by_id_.at(drift_schedule_.begin()->second);
    drift_schedule_.erase(drift_schedule_.begin());
    channel.drift_scheduled_ = false;  // rescheduled from chosen_ms_ below
    if (channel.chosen_ms_ + kDriftMs <= now_ms && speed_scale_ > 0) {
      // Toward its weight at the best speed per unit of weight in its
      // group: a host configured alike is assumed alike again, until a
      // job says otherwise.
      double best = 0;
      for (auto& other : groups_.at(channel.group_)->channels_)
        if (other.get() != &channel && other->estimate_ && other->estimate_->jobs() > 0)
          best = std::max(best, other->slot_speed_ / double(other->config_.weight));
      double target = best * double(channel.config_.weight) * speed_scale_;
      channel.estimate_->drift_toward(target, speed_basis_);
      channel.chosen_ms_ = now_ms;  // the next step comes kDriftMs later
    }
    update_speed(channel);
    refresh(channel);
  }
}

int64_t Pool::next_drift_ms() const {
  return drift_schedule_.empty() ? -1 : drift_schedule_.begin()->first;
}

bool Pool::take_serve_due() {
  bool due = serve_due_;
  serve_due_ = false;
  return due;
}

void Pool::reconsider(int64_t now_ms) {
  if (reconsider_ms_ < 0 || reconsider_ms_ > now_ms) return;
  reconsider_ms_ = -1;
  serve_due_ = true;
}

// ---------------------------------------------------------------- selection

Channel* Pool::select(const std::string& key) {
  for (auto& group : groups_)
    if (Channel* channel = select_in(*group, key)) return channel;
  return nullptr;
}

Channel* Pool::select_in(Group& group, const std::string& key) {
  return group.type_ == GroupType::Hash ? select_hash(group, key) : select_rr(group);
}

Channel* Pool::select_rr(Group& group) {
  // The fastest speed present, then among the channels that share it the
  // first numbered after the one chosen last, wrapping around.
  if (group.ready_.empty()) return nullptr;
  last_before_ = group.last_chosen_;
  chose_before_ = group.chose_any_;
  double top = group.ready_.begin()->speed;
  auto it = group.ready_.begin();
  if (group.chose_any_ && group.last_chosen_ < UINT32_MAX) {
    auto after = group.ready_.lower_bound(ReadyKey{top, group.last_chosen_ + 1, nullptr});
    if (after != group.ready_.end() && after->speed == top) it = after;
  }
  group.chose_any_ = true;
  group.last_chosen_ = it->number;
  return it->channel;
}

Channel* Pool::select_hash(Group& group, const std::string& key) {
  // The client's first choice is the channel with the highest score. It
  // is cached, as finding it costs a score per channel; its availability
  // is checked each time. Without -H only that choice counts: if it is
  // not available the group is skipped. With -H, the next in its order.
  if (group.channels_.empty()) return nullptr;
  Channel* first = nullptr;
  auto cached = group.first_choice_.find(key);
  if (cached != group.first_choice_.end()) first = group.find_mutable(cached->second);
  if (!first) {
    double best = -1;
    for (auto& channel : group.channels_) {
      double score = rendezvous_score(key, channel->number_, channel->config_.weight);
      if (score > best) {
        best = score;
        first = channel.get();
      }
    }
    if (group.first_choice_.size() >= kFirstChoiceCache) group.first_choice_.clear();
    group.first_choice_[key] = first->number_;
  }
  if (first->available()) return first;
  if (!options_.hash_failover) return nullptr;
  Channel* best_available = nullptr;
  double best_score = -1;
  for (auto& channel : group.channels_) {
    if (!channel->available()) continue;
    double score = rendezvous_score(key, channel->number_, channel->config_.weight);
    if (score > best_score) {
      best_score = score;
      best_available = channel.get();
    }
  }
  return best_available;
}

int64_t Pool::acquire(Channel& channel, int64_t now_ms, uint64_t cost) {
  ++channel.c_;
  channel.chosen_ms_ = std::max(channel.chosen_ms_, now_ms);
  refresh(channel);
  double seconds = expected_seconds(channel, cost);
  if (seconds <= 0) return 0;
  int64_t end = now_ms + std::max<int64_t>(1, int64_t(seconds * 1000));
  channel.running_.insert({end, now_ms});
  return end;
}

double Pool::expected_seconds(const Channel& channel, uint64_t cost) const {
  // Only in bytes: a cost in request bytes means nothing in jobs/s.
  if (cost == 0 || speed_scale_ <= 0 || speed_basis_ != Basis::Bytes) return 0;
  double speed = channel.slot_speed_ * speed_scale_;
  return speed > 0 ? double(cost) / speed : 0;
}

Channel* Pool::choose(const std::string& key, uint64_t cost, int64_t now_ms, size_t behind,
                      uint64_t next_cost) {
  Channel* free = select(key);
  if (!free || free->config_.maxc == 0 || free->speed() >= kUnmeasured) return free;
  double here = expected_seconds(*free, cost);
  if (here <= 0) return free;
  // While jobs keep coming, holding a job back costs the others: the
  // faster slot it waits for would have gone to the next job, which now
  // runs on the slower one, and every free slot that a waiting job (this
  // one included) could start now stays idle as long. Waiting must save
  // the job more than that: the rule alone ("finishes sooner there") ran
  // a simulated farm 5-25 % slower than never waiting.
  uint64_t displaced = next_cost ? next_cost : uint64_t(scale_.mean_work());
  Group& group = *groups_.at(free->group_);
  // Counted only once a faster slot is worth a look: mostly none is.
  double idle = -1;
  auto slots_left_idle = [&] {
    size_t free_slots = 0;
    for (auto& channel : group.channels_)
      if (channel->available() && channel->config_.maxc > 0) free_slots += channel->config_.maxc - channel->c_;
    return double(std::min(behind + 1, free_slots));
  };
  // A job that has run past twice its expected time is no sign of when
  // its slot frees, so its slot is not waited for.
  for (auto& other : group.channels_) {
    Channel& faster = *other;
    if (&faster == free || !faster.in_service() || faster.available() || faster.config_.maxc == 0 ||
        faster.slot_speed_ <= free->slot_speed_ || faster.running_.empty())
      continue;
    for (const auto& [end, start] : faster.running_) {
      if (end < now_ms - (end - start)) continue;  // overdue
      if (idle < 0) idle = slots_left_idle();
      double wait = double(std::max<int64_t>(end - now_ms, 0)) / 1000.0;
      double there = wait + expected_seconds(faster, cost);
      double others = expected_seconds(*free, displaced) - expected_seconds(faster, displaced) + wait * idle;
      if (there + others < here) {
        // Held back: the round-robin turn select() took is given back.
        group.last_chosen_ = last_before_;
        group.chose_any_ = chose_before_;
        int64_t when = std::max(end, now_ms + 1);
        reconsider_ms_ = reconsider_ms_ < 0 ? when : std::min(reconsider_ms_, when);
        return nullptr;
      }
      break;  // the earliest of its slots decides
    }
  }
  return free;
}

void Pool::connected(Channel& channel) { ++channel.counters_.connections; }

void Pool::release(Channel& channel, int64_t relayed_ms, const Job& job) {
  if (channel.c_ > 0) --channel.c_;
  if (job.expected_end_ms) {
    auto it = channel.running_.lower_bound({job.expected_end_ms, INT64_MIN});
    if (it != channel.running_.end() && it->first == job.expected_end_ms) channel.running_.erase(it);
  }
  if (relayed_ms >= 0) {
    ++channel.counters_.finished;
    channel.counters_.busy_ms += uint64_t(relayed_ms);
  }
  if (measurable(job)) {
    // The channel's estimate learns from the scale as it was; then the
    // job joins the scale, at the channel's configured weight.
    if (channel.estimate_) channel.estimate_->record(job, channel.config_.weight, scale_);
    scale_.record(job, channel.config_.weight);
    if (!channel.deleted_) update_speed(channel);
    // The scale is used from the first measured job on, so that a learned
    // channel's speed counts from its own first job (the scale only places
    // learned speeds against pinned weights; among themselves they keep
    // their order).
    double now_scale = scale_.per_weight();
    if (speed_scale_ <= 0 || scale_.basis() != speed_basis_ || now_scale > speed_scale_ * kRescale ||
        now_scale * kRescale < speed_scale_)
      rescale();
  }
  if (!channel.deleted_) {
    refresh(channel);
    serve_due_ = true;
  }
  free_if_retired(channel);
}

void Pool::free_if_retired(Channel& channel) {
  if (!channel.deleted_ || channel.c_ > 0) return;
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [&](const std::unique_ptr<Channel>& p) { return p.get() == &channel; }),
                 retired_.end());
}

// ---------------------------------------------------------------- health

void Pool::set_health(Channel& channel, Health health, int64_t now_ms) {
  if (channel.health_ != health) {
    channel.health_ = health;
    channel.changed_ms_ = now_ms;
    if (health == Health::Up) serve_due_ = true;
  }
  refresh(channel);
}

bool Pool::connect_failed(Channel& channel, int64_t now_ms) {
  ++channel.counters_.failures;
  if (options_.autodisable) return set_admin(channel, AdminState::AutoDisabled, now_ms);
  if (channel.health_ == Health::Down) return false;
  channel.next_probe_ms_ = now_ms + options_.retry_ms;
  set_health(channel, Health::Down, now_ms);
  return true;
}

bool Pool::mark_up(Channel& channel, int64_t now_ms) {
  if (channel.health_ == Health::Up) return false;
  set_health(channel, Health::Up, now_ms);
  return true;
}

std::vector<Channel*> Pool::due_probes(int64_t now_ms) {
  std::vector<Channel*> due;
  while (!probe_schedule_.empty() && probe_schedule_.begin()->first <= now_ms) {
    Channel& channel = *by_id_.at(probe_schedule_.begin()->second);
    channel.next_probe_ms_ = now_ms + options_.retry_ms;
    refresh(channel);
    due.push_back(&channel);
  }
  return due;
}

void Pool::probe_failed(Channel& channel, int64_t now_ms) {
  channel.next_probe_ms_ = std::max(channel.next_probe_ms_, now_ms + options_.retry_ms);
  refresh(channel);
}

int64_t Pool::next_probe_ms() const {
  return probe_schedule_.empty() ? -1 : probe_schedule_.begin()->first;
}

// ---------------------------------------------------------------- queue

void WaitStats::record(int64_t waited_ms) {
  ++count;
  total_ms += uint64_t(std::max<int64_t>(waited_ms, 0));
  max_ms = std::max(max_ms, waited_ms);
}

WaitStats Pool::waits() const {
  WaitStats both = waits_[0];
  both.count += waits_[1].count;
  both.total_ms += waits_[1].total_ms;
  both.max_ms = std::max(both.max_ms, waits_[1].max_ms);
  return both;
}

Admission Pool::enqueue(const Waiter& waiter, int64_t now_ms, uint64_t* ticket) {
  int64_t wait_ms = options_.queue_wait_ms > 0 ? options_.queue_wait_ms : INT64_MAX;
  if (in_service_ == 0) {
    // Nothing can take this client soon: close it at once (so a distcc
    // client compiles locally) unless -O says to wait out an outage.
    if (options_.outage_wait_ms <= 0) {
      ++refused_;
      return Admission::NothingInService;
    }
    wait_ms = std::min(wait_ms, options_.outage_wait_ms);
  }
  if (queue_length() >= options_.queue_limit) {
    ++dropped_;
    return Admission::Full;
  }
  *ticket = next_ticket_++;
  Waiter& queued = queue_[waiter.priority ? 1 : 0].emplace_hint(queue_[waiter.priority ? 1 : 0].end(),
                                                                *ticket, waiter)->second;
  queued.since_ms = now_ms;
  queued.deadline_ms = wait_ms == INT64_MAX ? INT64_MAX : now_ms + wait_ms;
  if (queued.deadline_ms != INT64_MAX) deadlines_.insert({queued.deadline_ms, *ticket});
  queue_high_water_ = std::max(queue_high_water_, queue_length());
  // In a pool with hash groups a newcomer may be servable where the
  // waiters before it are not.
  serve_due_ = true;
  return Admission::Queued;
}

uint64_t Pool::enqueue_adopted(const Waiter& waiter, int64_t now_ms, int64_t waited_ms) {
  uint64_t ticket = next_ticket_++;
  int cls = waiter.priority ? 1 : 0;
  Waiter& queued = queue_[cls].emplace_hint(queue_[cls].end(), ticket, waiter)->second;
  queued.since_ms = now_ms - waited_ms;
  queued.deadline_ms =
      options_.queue_wait_ms > 0 ? queued.since_ms + options_.queue_wait_ms : INT64_MAX;
  if (queued.deadline_ms != INT64_MAX) deadlines_.insert({queued.deadline_ms, ticket});
  queue_high_water_ = std::max(queue_high_water_, queue_length());
  serve_due_ = true;
  return ticket;
}

void Pool::take_waiter(int cls, WaitQueue::iterator it) {
  if (it->second.deadline_ms != INT64_MAX) deadlines_.erase({it->second.deadline_ms, it->first});
  queue_[cls].erase(it);
}

int64_t Pool::leave_queue(uint64_t ticket, int64_t now_ms) {
  for (int cls = 0; cls < 2; ++cls) {
    auto it = queue_[cls].find(ticket);
    if (it == queue_[cls].end()) continue;
    int64_t waited = now_ms - it->second.since_ms;
    take_waiter(cls, it);
    return waited;
  }
  return 0;
}

bool Pool::has_hash_group() const {
  for (auto& group : groups_)
    if (group->type_ == GroupType::Hash) return true;
  return false;
}

int Pool::next_class() const {
  if (queue_[1].empty()) return 0;
  if (queue_[0].empty()) return 1;
  // Every relief_every-th client served comes from the others.
  return priority_streak_ + 1 >= std::max(options_.relief_every, 1u) ? 0 : 1;
}

std::vector<std::pair<Waiter, Channel*>> Pool::serve_queue(int64_t now_ms) {
  std::vector<std::pair<Waiter, Channel*>> served;
  if (has_hash_group()) {
    // Hash groups differ by client: a waiter whose channel is busy is
    // passed by later ones whose channel is free, in service order.
    for (int cls : {1, 0})
      for (auto it = queue_[cls].begin(); it != queue_[cls].end();) {
        Channel* channel = select(it->second.key);
        if (!channel) {
          ++it;
          continue;
        }
        acquire(*channel);
        waits_[cls].record(now_ms - it->second.since_ms);
        served.emplace_back(it->second, channel);
        auto next = std::next(it);
        take_waiter(cls, it);
        it = next;
      }
    return served;
  }
  // Round-robin groups only: every waiter competes for the same slots, so
  // when the next one in service order cannot be served nobody can.
  while (queue_length() > 0) {
    int cls = next_class();
    auto it = queue_[cls].begin();
    // The job served after it, were it served now.
    auto next = std::next(it) != queue_[cls].end() ? std::next(it) : queue_[1 - cls].begin();
    uint64_t next_cost = queue_length() > 1 ? next->second.cost : 0;
    Channel* channel = choose(it->second.key, it->second.cost, now_ms, queue_length() - 1, next_cost);
    if (!channel) break;
    it->second.expected_end_ms = acquire(*channel, now_ms, it->second.cost);
    priority_streak_ = cls == 1 ? priority_streak_ + 1 : 0;
    waits_[cls].record(now_ms - it->second.since_ms);
    served.emplace_back(it->second, channel);
    take_waiter(cls, it);
  }
  return served;
}

std::vector<void*> Pool::expire_waiters(int64_t now_ms) {
  std::vector<void*> expired;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now_ms) {
    uint64_t ticket = deadlines_.begin()->second;
    for (int cls = 0; cls < 2; ++cls) {
      auto it = queue_[cls].find(ticket);
      if (it == queue_[cls].end()) continue;
      expired.push_back(it->second.owner);
      take_waiter(cls, it);
      ++dropped_;
      break;
    }
  }
  return expired;
}

int64_t Pool::next_queue_deadline_ms() const {
  return deadlines_.empty() ? -1 : deadlines_.begin()->first;
}

// The pool: groups of channels, the choice of a channel for a new client,
// the wait queue and the counters. Pure: no sockets, no clock reads; the
// caller passes "now" (milliseconds on a monotonic clock) where time
// matters, so every rule here is unit-tested with plain values.
//
// The pool owns every change to a channel: other code reads channels
// through const accessors and changes them only through Pool's methods,
// which keep these invariants:
//  - a channel's `c` equals the number of connections that hold a slot on
//    it (connecting or relaying); acquire() and release() alone change it;
//  - acquire() never takes a channel over its maxc (maxc > 0); lowering
//    maxc below c only stops new connections;
//  - channel numbers within a group are never reused or shifted;
//  - a deleted channel leaves scheduling at once and is freed when its
//    last connection releases it;
//  - each round-robin group's index holds exactly its available channels,
//    keyed by their current speed, so select() costs O(log n); the probe
//    schedule holds exactly the enabled, down, undeleted channels.
#ifndef BALANCE_POOL_HPP
#define BALANCE_POOL_HPP

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "address.hpp"
#include "speed.hpp"

// What an administrator configures for a channel.
struct ChannelConfig {
  std::string host;      // as given: name or literal
  std::string port;      // as given: number or service
  Address address;       // resolved when the channel was created or assigned
  unsigned maxc = 0;     // 0 = unlimited
  unsigned weight = 1;   // speed of one slot, 1..kMaxWeight
};

// Admin state, kept apart from health: AutoDisabled is a channel that -a
// disabled after a failed connect, so `show` can tell it from one an
// administrator disabled.
enum class AdminState { Enabled, Disabled, AutoDisabled };
enum class Health { Up, Down };
enum class GroupType { RoundRobin, Hash };

const char* to_string(AdminState state);
const char* to_string(Health health);
const char* to_string(GroupType type);  // "rr" or "hash"

struct ChannelCounters {
  uint64_t connections = 0;  // connections relayed (connects that succeeded)
  uint64_t failures = 0;     // refused, unreachable, timed-out connects
  uint64_t sent = 0;         // bytes written to the back-end
  uint64_t received = 0;     // bytes read from the back-end
  uint64_t finished = 0;     // relayed connections that ended (for the mean)
  uint64_t busy_ms = 0;      // their summed duration
};

class Pool;

class Channel {
 public:
  uint64_t id() const { return id_; }  // unique in the process; new on assign
  size_t group() const { return group_; }
  unsigned number() const { return number_; }  // stable within its group
  const ChannelConfig& config() const { return config_; }
  AdminState admin() const { return admin_; }
  Health health() const { return health_; }
  bool deleted() const { return deleted_; }
  unsigned c() const { return c_; }
  // Of c, the connections a process this one took over still relays.
  unsigned adopted() const { return adopted_; }
  const ChannelCounters& counters() const { return counters_; }
  int64_t changed_ms() const { return changed_ms_; }  // admin state or health
  int64_t next_probe_ms() const { return next_probe_ms_; }

  // Learned speed (-L, `weight C auto`): the estimate, null when pinned.
  bool learned() const { return bool(estimate_); }
  const SpeedEstimate* estimate() const { return estimate_.get(); }
  // The speed of one slot the scheduler compares, in weight units: the
  // weight, or the learned speed once measured.
  double slot_speed() const { return slot_speed_; }

  bool enabled() const { return admin_ == AdminState::Enabled; }
  // Enabled, up and not deleted, free slot or not.
  bool in_service() const { return !deleted_ && enabled() && health_ == Health::Up; }
  bool available() const { return in_service() && (config_.maxc == 0 || c_ < config_.maxc); }
  // How fast one more connection would be served: the slot speed for a
  // channel with maxc > 0, slot speed / (c + 1) for an unlimited one; a
  // learned channel never measured comes first while it is idle, so that
  // it gets measured.
  double speed() const;
  const char* state_name() const;  // "ENA", "DIS", "ADIS" or "DOWN"

 private:
  friend class Pool;
  uint64_t id_ = 0;
  size_t group_ = 0;
  unsigned number_ = 0;
  ChannelConfig config_;
  AdminState admin_ = AdminState::Enabled;
  Health health_ = Health::Up;
  bool deleted_ = false;
  unsigned c_ = 0;
  unsigned adopted_ = 0;
  ChannelCounters counters_;
  int64_t changed_ms_ = 0;
  int64_t next_probe_ms_ = 0;
  double slot_speed_ = 1;                   // kept by Pool::update_speed()
  // Size-aware placement: (expected end, start) of its running jobs of
  // known cost.
  std::multiset<std::pair<int64_t, int64_t>> running_;
  std::unique_ptr<SpeedEstimate> estimate_;  // learned channels only
  int64_t chosen_ms_ = 0;                   // when a connection last took a slot
  // Where the pool's derived structures hold this channel.
  bool indexed_ = false;       // in its group's ready index
  double indexed_speed_ = 0;   // the key it is indexed under
  bool scheduled_ = false;     // in the probe schedule
  int64_t scheduled_ms_ = 0;   // the time it is scheduled under
  bool counted_in_service_ = false;
  bool drift_scheduled_ = false;  // in the drift schedule
  int64_t drift_ms_ = 0;          // the time it is scheduled under
};

// A round-robin group's available channels, fastest first, then by number.
struct ReadyKey {
  double speed;
  unsigned number;
  Channel* channel;
  bool operator<(const ReadyKey& other) const {
    if (speed != other.speed) return speed > other.speed;
    return number < other.number;
  }
};

class Group {
 public:
  GroupType type() const { return type_; }
  // In number order (numbers increase, with gaps where channels were deleted).
  const std::vector<std::unique_ptr<Channel>>& channels() const { return channels_; }
  const Channel* find(unsigned number) const;
  unsigned next_number() const { return next_number_; }

 private:
  friend class Pool;
  Channel* find_mutable(unsigned number) const;
  GroupType type_ = GroupType::RoundRobin;
  std::vector<std::unique_ptr<Channel>> channels_;
  unsigned next_number_ = 0;
  bool chose_any_ = false;      // ties start after last_chosen_ once set
  unsigned last_chosen_ = 0;    // number of the channel chosen last
  std::set<ReadyKey> ready_;    // round-robin groups only
  // Hash groups: a client's first rendezvous choice, valid until the
  // group's channels or weights change. Bounded; cleared when full.
  std::unordered_map<std::string, unsigned> first_choice_;
};

// A client waiting for a free slot. `owner` is the caller's handle.
struct Waiter {
  void* owner = nullptr;
  uint64_t cost = 0;      // expected cost in request bytes (-j), 0 = unknown
  int64_t expected_end_ms = 0;  // set when served: what acquire() expected
  std::string key;        // client address key (Address::host_key), for hash groups
  int port = 0;           // client port, for the listing
  bool priority = false;  // a priority client (served before the others)
  int64_t since_ms = 0;
  int64_t deadline_ms = 0;  // closed when still waiting then; INT64_MAX = never
};
// Waiters of one class by ticket: tickets rise, so the map is in arrival
// order, and a listing can resume after the last ticket it showed however
// the queue changed meanwhile.
using WaitQueue = std::map<uint64_t, Waiter>;

// Clients served after waiting, and how long they waited.
struct WaitStats {
  uint64_t count = 0;
  uint64_t total_ms = 0;
  int64_t max_ms = 0;
  void record(int64_t waited_ms);
  double mean_seconds() const { return count ? double(total_ms) / 1000.0 / double(count) : 0.0; }
};

enum class Admission { Queued, Full, NothingInService };

constexpr unsigned kMaxMaxc = 1000000;
constexpr unsigned kMaxWeight = 1000000;

// Is `a` faster than `b` for one more connection? The exact rational
// comparison of weight / sharers (the oracle that speed() must agree with).
bool faster(unsigned weight_a, unsigned sharers_a, unsigned weight_b, unsigned sharers_b);

// Weighted rendezvous score of a channel number for a client key.
double rendezvous_score(const std::string& key, unsigned number, unsigned weight);

struct PoolOptions {
  bool hash_failover = false;  // -H
  bool autodisable = false;    // -a
  size_t queue_limit = 1024;   // -q
  int64_t queue_wait_ms = 60000;  // -w, 0 = forever
  bool learn_all = false;      // -L: every channel learns its speed
  // -O: how long a new client may wait while no channel is in service
  // (0: it is closed at once, as balance 3.x did).
  int64_t outage_wait_ms = 0;
  // With priority clients waiting, at least one client in this many
  // served comes from the others while they wait (no starvation).
  unsigned relief_every = 5;
  int64_t retry_ms = 5000;     // -r
};

class Pool {
 public:
  explicit Pool(PoolOptions options = {}) : options_(options) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const PoolOptions& options() const { return options_; }
  // Set before use (at start-up, from the command line).
  void set_options(const PoolOptions& options) { options_ = options; }

  // ---- configuration and run-time changes
  size_t add_group(GroupType type);
  // False when the group already had that type.
  bool set_group_type(size_t group, GroupType type);
  Channel& add_channel(size_t group, const ChannelConfig& config,
                       AdminState admin = AdminState::Enabled, int64_t now_ms = 0);
  // Restores a channel as a process handing over had it: its number,
  // state, counters and learning (restart and upgrade).
  Channel& restore_channel(size_t group, unsigned number, const ChannelConfig& config,
                           AdminState admin, Health health, const ChannelCounters& counters,
                           bool learned, int64_t now_ms);
  // The number a group's next channel gets (never below what it was).
  void reserve_numbers(size_t group, unsigned next_number);
  // Slots a process this one took over still holds on the channel: they
  // count against its maxc until that process reports them released.
  void adopt(Channel& channel, unsigned slots);
  // One of them ended after `relayed_ms` (-1: its connect failed); `since`
  // is what that process counted on the channel since the hand-over.
  void release_adopted(Channel& channel, int64_t relayed_ms = -1,
                       const ChannelCounters& since = ChannelCounters());
  uint64_t adopted_total() const { return adopted_total_; }
  // Removes a channel from scheduling; it is freed once c reaches 0.
  void remove_channel(Channel& channel);
  // False when the channel already was in that state. Enabling a channel
  // that is down has it probed at once (the admin says it is back).
  bool set_admin(Channel& channel, AdminState admin, int64_t now_ms);
  void set_maxc(Channel& channel, unsigned maxc);
  // Pins the weight (and stops learning), or with learn, learns the
  // speed with this weight as the prior.
  void set_weight(Channel& channel, unsigned weight, bool learn = false);
  void reset_counters(Channel& channel);
  // Points a disabled channel elsewhere (false with *err when enabled).
  // It is up again and gets a new id, so a probe of its old address that
  // is still under way no longer finds it.
  bool assign(Channel& channel, const std::string& host, const std::string& port,
              const Address& address, int64_t now_ms, std::string* err);

  // ---- lookups
  const std::vector<std::unique_ptr<Group>>& groups() const { return groups_; }
  Channel* find(size_t group, unsigned number);
  Channel* find_id(uint64_t id);
  size_t channel_count() const { return by_id_.size(); }
  // Channels enabled and up: with none, nobody can be served soon.
  size_t in_service_count() const { return in_service_; }

  // ---- choosing and holding a channel
  // The channel a new client with address key `key` should go to, or null
  // when nothing is available (the client then waits).
  Channel* select(const std::string& key);
  // The same for a job of known cost (request bytes, -j): the fastest
  // free slot, unless a faster slot, busy now, is expected to finish the
  // job sooner by more than waiting for it costs the others; null then
  // (the job waits for that slot). Waiting costs the others twice: the
  // next job (of cost next_cost, or the recent mean when 0) takes the
  // slower slot instead of the faster one, and every free slot that a
  // waiting job (this one or one of the `behind` others) could start now
  // stays idle as long.
  Channel* choose(const std::string& key, uint64_t cost, int64_t now_ms, size_t behind = 0,
                  uint64_t next_cost = 0);
  // When a job held back by choose() should be looked at again, or -1;
  // reconsider() makes the queue due for service once that time came.
  int64_t next_reconsider_ms() const { return reconsider_ms_; }
  void reconsider(int64_t now_ms);
  // Slot accounting around one connection: acquire() when the connect
  // starts (so a burst never exceeds maxc), connected() when it succeeds,
  // release() when it ends; relayed_ms < 0 for a connect that failed.
  // With a known cost, returns when the job is expected to end (0: no
  // expectation); pass it back in the Job at release().
  int64_t acquire(Channel& channel, int64_t now_ms = 0, uint64_t cost = 0);
  void connected(Channel& channel);
  // `job` tells how the connection went, for learned speeds.
  void release(Channel& channel, int64_t relayed_ms, const Job& job = Job());
  // Learned channels not chosen for kDriftMs drift halfway back to their
  // prior, every kDriftMs, so a bad period does not starve them for ever.
  void drift(int64_t now_ms);
  int64_t next_drift_ms() const;
  const SpeedScale& scale() const { return scale_; }
  void count_sent(Channel& channel, uint64_t bytes) { channel.counters_.sent += bytes; }
  void count_received(Channel& channel, uint64_t bytes) { channel.counters_.received += bytes; }

  // ---- health
  // Marks the channel down (or disabled with -a); true when this changed
  // its state.
  bool connect_failed(Channel& channel, int64_t now_ms);
  bool mark_up(Channel& channel, int64_t now_ms);
  // Down channels whose probe is due, each rescheduled `retry` later so a
  // slow probe is not doubled; the caller probes each and calls mark_up()
  // or probe_failed(). O(log n) per channel returned.
  std::vector<Channel*> due_probes(int64_t now_ms);
  void probe_failed(Channel& channel, int64_t now_ms);
  // Earliest time any down channel needs a probe, or -1.
  int64_t next_probe_ms() const;

  // ---- the wait queue: two FIFO classes, priority clients first
  // Waiters of a class, in arrival order.
  const WaitQueue& waiters(bool priority) const { return queue_[priority ? 1 : 0]; }
  size_t queue_length() const { return queue_[0].size() + queue_[1].size(); }
  // Queues a client that nothing can take now, with its wait limit (-w,
  // or -O while no channel is in service), and sets *ticket. Full: the
  // queue is (counted as dropped); NothingInService: no channel is
  // enabled and up and -O is 0 (counted as refused).
  Admission enqueue(const Waiter& waiter, int64_t now_ms, uint64_t* ticket);
  // Queues a client that already waited `waited_ms` in a process this one
  // took over, whatever the limits (it was admitted there); its deadline
  // counts from when it began to wait.
  uint64_t enqueue_adopted(const Waiter& waiter, int64_t now_ms, int64_t waited_ms);
  // A waiter gives up; returns how long it waited.
  int64_t leave_queue(uint64_t ticket, int64_t now_ms);
  // Waiters that can be served now, in service order, each with its
  // channel already acquired and its wait recorded; they leave the queue.
  std::vector<std::pair<Waiter, Channel*>> serve_queue(int64_t now_ms);
  // Removes waiters whose deadline has passed (counted as dropped);
  // returns their owners.
  std::vector<void*> expire_waiters(int64_t now_ms);
  // The earliest waiter deadline, or -1.
  int64_t next_queue_deadline_ms() const;
  // True once after anything that may have freed a slot (a release, an
  // enable, maxc or weight raised, a channel up...): the caller serves
  // the queue then.
  bool take_serve_due();

  size_t queue_high_water() const { return queue_high_water_; }
  uint64_t dropped() const { return dropped_; }    // queue full or wait limit
  uint64_t refused() const { return refused_; }    // nothing in service
  const WaitStats& waits(bool priority) const { return waits_[priority ? 1 : 0]; }
  WaitStats waits() const;  // both classes

 private:
  Channel* select_in(Group& group, const std::string& key);
  Channel* select_rr(Group& group);
  Channel* select_hash(Group& group, const std::string& key);
  // Brings the derived structures (ready index, probe schedule, counts)
  // in line with the channel's state, after every change to it.
  void refresh(Channel& channel);
  void set_health(Channel& channel, Health health, int64_t now_ms);
  // The channel's slot speed from its weight or estimate and the scale.
  void update_speed(Channel& channel);
  // The scale moved far from the one the speeds were set with (or its
  // basis changed): every learned channel's speed is set anew.
  void rescale();
  void schedule_drift(Channel& channel);
  // Expected seconds of a job of `cost` bytes on one slot of the channel;
  // 0 when unknown.
  double expected_seconds(const Channel& channel, uint64_t cost) const;
  void hash_order_changed(Group& group);
  void free_if_retired(Channel& channel);
  bool has_hash_group() const;
  // The class whose head is served next (relief for the others).
  int next_class() const;
  void take_waiter(int cls, WaitQueue::iterator it);

  PoolOptions options_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::vector<std::unique_ptr<Channel>> retired_;  // deleted, c > 0
  std::unordered_map<uint64_t, Channel*> by_id_;   // channels in groups
  uint64_t next_id_ = 1;
  std::set<std::pair<int64_t, uint64_t>> probe_schedule_;  // (when, id)
  size_t in_service_ = 0;
  uint64_t adopted_total_ = 0;
  bool serve_due_ = false;
  SpeedScale scale_;
  double speed_scale_ = 0;  // the scale's per_weight() the speeds were set with
  Basis speed_basis_ = Basis::Bytes;
  std::set<std::pair<int64_t, uint64_t>> drift_schedule_;  // (when, id)
  int64_t reconsider_ms_ = -1;
  unsigned last_before_ = 0;   // a group's round-robin state before select_rr()
  bool chose_before_ = false;
  WaitQueue queue_[2];  // [0] the others, [1] priority clients
  std::set<std::pair<int64_t, uint64_t>> deadlines_;  // (deadline, ticket)
  uint64_t next_ticket_ = 1;
  unsigned priority_streak_ = 0;  // priority clients served since another
  size_t queue_high_water_ = 0;
  uint64_t dropped_ = 0;
  uint64_t refused_ = 0;
  WaitStats waits_[2];
};

#endif

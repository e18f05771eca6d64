// The pool: groups of channels, the choice of a channel for a new client,
// the wait queue and the counters. Pure: no sockets, no clock reads; the
// caller passes "now" (milliseconds on a monotonic clock) where time
// matters, so every rule here is unit-tested with plain values.
//
// Invariants:
//  - a channel's `c` equals the number of connections that hold a slot on
//    it (connecting or relaying); acquire() and release() are the only
//    places that change it;
//  - a channel with maxc > 0 never has c > maxc through acquire();
//    lowering maxc below c only stops new connections;
//  - channel numbers within a group are never reused or shifted;
//  - a deleted channel leaves scheduling at once and is freed when its
//    last connection releases it.
#ifndef BALANCE_POOL_HPP
#define BALANCE_POOL_HPP

#include <sys/socket.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

// A resolved socket address (back-end or client), kept as plain bytes.
struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  // "192.0.2.1" or "2001:db8::1" (IPv4-mapped IPv6 shown as IPv4).
  std::string host_text() const;
  int port() const;
  // "host:port", an IPv6 host in brackets: "[::1]:80".
  std::string text() const;
  void set_port(int port);
  // Bytes that identify the host (not the port) for hashing; IPv4-mapped
  // IPv6 addresses give the same key as the IPv4 address.
  std::string host_key() const;
};

// What an administrator configures for a channel.
struct ChannelConfig {
  std::string host;      // as given: name or literal
  std::string port;      // as given: number or service
  Address address;       // resolved when the channel was created or assigned
  unsigned maxc = 0;     // 0 = unlimited
  unsigned weight = 1;   // speed of one slot, 1..kMaxWeight
};

enum class AdminState { Enabled, Disabled };
enum class Health { Up, Down };

const char* to_string(AdminState state);
const char* to_string(Health health);

struct Channel {
  size_t group = 0;     // index of its group
  unsigned number = 0;  // stable within its group
  ChannelConfig config;

  // Runtime state, apart from configuration.
  AdminState admin = AdminState::Enabled;
  Health health = Health::Up;
  bool deleted = false;
  unsigned c = 0;                 // connections holding a slot now
  uint64_t total_connections = 0; // connections relayed since start/reset
  uint64_t failures = 0;          // refused, unreachable, timed-out connects
  uint64_t sent = 0;              // bytes written to the back-end
  uint64_t received = 0;          // bytes read from the back-end
  uint64_t finished = 0;          // connections ended (for the mean)
  uint64_t busy_ms = 0;           // summed duration of ended connections
  int64_t changed_ms = 0;         // when admin state or health last changed
  int64_t next_probe_ms = 0;      // when a down channel is probed next

  bool available() const {
    return !deleted && admin == AdminState::Enabled && health == Health::Up &&
           (config.maxc == 0 || c < config.maxc);
  }
  // "Enabled, up, not deleted", regardless of free slots.
  bool in_service() const {
    return !deleted && admin == AdminState::Enabled && health == Health::Up;
  }
  const char* state_name() const;  // "ENA", "DIS" or "DOWN"
};

enum class GroupType { RoundRobin, Hash };

struct Group {
  GroupType type = GroupType::RoundRobin;
  std::vector<std::unique_ptr<Channel>> channels;  // in number order
  unsigned next_number = 0;   // the number the next created channel gets
  size_t last_chosen = SIZE_MAX;  // index into channels; ties start after it

  Channel* find(unsigned number) const;
};

// A client waiting for a free slot. `owner` is the caller's handle.
struct Waiter {
  void* owner = nullptr;
  std::string key;        // client address key, for hash groups
  int64_t since_ms = 0;
};
using WaitQueue = std::list<Waiter>;

constexpr unsigned kMaxMaxc = 1000000;
constexpr unsigned kMaxWeight = 1000000;

// Is `a` faster than `b` for one more connection? Compares the exact
// rationals weight/(1) (maxc > 0) and weight/(c+1) (unlimited).
bool faster(const Channel& a, const Channel& b);

// Weighted rendezvous score of a channel for a client key; higher wins.
double rendezvous_score(const std::string& key, const Channel& channel);

struct PoolOptions {
  bool hash_failover = false;  // -H
  bool autodisable = false;    // -a
  size_t queue_limit = 1024;   // -q
  int64_t queue_wait_ms = 60000;  // -w, 0 = forever
  int64_t retry_ms = 5000;     // -r
};

class Pool {
 public:
  explicit Pool(PoolOptions options = {}) : options_(options) {}

  PoolOptions& options() { return options_; }
  const PoolOptions& options() const { return options_; }

  // Configuration.
  Group& add_group(GroupType type);
  Channel& add_channel(size_t group, const ChannelConfig& config, int64_t now_ms = 0);
  std::vector<std::unique_ptr<Group>>& groups() { return groups_; }
  const std::vector<std::unique_ptr<Group>>& groups() const { return groups_; }
  // Removes a channel from scheduling; it is freed once c reaches 0.
  void remove_channel(size_t group, unsigned number);

  // The channel a new client with address key `key` should go to, or null
  // when nothing is available (the client then waits).
  Channel* select(const std::string& key);

  // Slot accounting around one connection: acquire() when the connect
  // starts (so a burst never exceeds maxc), connected() when it succeeds,
  // release() when it ends; relayed_ms < 0 for a connect that failed.
  void acquire(Channel& channel);
  void connected(Channel& channel);
  void release(Channel& channel, int64_t relayed_ms);

  // Health. connect_failed() marks the channel down (or disabled with -a)
  // and returns true when this changed its state.
  bool connect_failed(Channel& channel, int64_t now_ms);
  bool mark_up(Channel& channel, int64_t now_ms);
  bool set_admin(Channel& channel, AdminState admin, int64_t now_ms);
  // Down channels whose probe is due; the caller probes each and calls
  // mark_up() or probe_failed().
  std::vector<Channel*> due_probes(int64_t now_ms);
  void probe_failed(Channel& channel, int64_t now_ms);
  // Earliest time any down channel needs a probe, or -1.
  int64_t next_probe_ms() const;

  // The wait queue.
  WaitQueue& queue() { return queue_; }
  const WaitQueue& queue() const { return queue_; }
  // Appends a waiter; returns end() (and counts a drop) when full.
  WaitQueue::iterator enqueue(void* owner, const std::string& key, int64_t now_ms);
  void leave_queue(WaitQueue::iterator it) { queue_.erase(it); }
  // Waiters that can be served now, in FIFO order, each with its channel
  // already acquired; they are removed from the queue.
  std::vector<std::pair<Waiter, Channel*>> serve_queue();
  // Removes waiters whose wait limit has passed; returns their owners.
  std::vector<void*> expire_waiters(int64_t now_ms);
  // Deadline of the oldest waiter, or -1.
  int64_t next_queue_deadline_ms() const;
  void count_drop() { ++dropped_; }

  size_t queue_high_water() const { return queue_high_water_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t waited() const { return waited_; }
  uint64_t wait_total_ms() const { return wait_total_ms_; }
  int64_t wait_max_ms() const { return wait_max_ms_; }
  // Records how long a served waiter waited.
  void record_wait(int64_t waited_ms);

 private:
  Channel* select_in(Group& group, const std::string& key);
  Channel* select_rr(Group& group);
  Channel* select_hash(Group& group, const std::string& key);
  void free_if_retired(Channel& channel);
  bool has_hash_group() const;

  PoolOptions options_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::vector<std::unique_ptr<Channel>> retired_;  // deleted, c > 0
  size_t down_channels_ = 0;  // channels in scheduling whose health is Down
  WaitQueue queue_;
  size_t queue_high_water_ = 0;
  uint64_t dropped_ = 0;
  uint64_t waited_ = 0;
  uint64_t wait_total_ms_ = 0;
  int64_t wait_max_ms_ = 0;
};

#endif

// Selection, slots, the queue and health, with plain values.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <map>
#include <set>

#include "pool.hpp"
#include "test.h"

namespace {

ChannelConfig config(unsigned maxc, unsigned weight) {
  ChannelConfig c;
  c.maxc = maxc;
  c.weight = weight;
  return c;
}

// Takes `n` connections through select+acquire and returns the numbers
// of the channels chosen, in order.
std::vector<unsigned> take(Pool& pool, int n, const std::string& key = "k") {
  std::vector<unsigned> chosen;
  for (int i = 0; i < n; ++i) {
    Channel* c = pool.select(key);
    if (!c) break;
    pool.acquire(*c);
    chosen.push_back(c->number + 100 * unsigned(c->group));
  }
  return chosen;
}

}  // namespace

TEST(fastest_free_slot_first_then_slower) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(0, config(8, 3));  // fast
  pool.add_channel(0, config(4, 1));  // slow
  std::vector<unsigned> chosen = take(pool, 13);
  EXPECT_EQ(chosen.size(), size_t(12));  // 8 + 4 slots, then nothing
  for (int i = 0; i < 8; ++i) EXPECT_EQ(chosen[size_t(i)], 0u);
  for (int i = 8; i < 12; ++i) EXPECT_EQ(chosen[size_t(i)], 1u);
  // A freed fast slot is preferred to... nothing else free; free one of
  // each and the fast one wins.
  Channel& fast = *pool.groups()[0]->channels[0];
  Channel& slow = *pool.groups()[0]->channels[1];
  pool.release(fast, 10);
  pool.release(slow, 10);
  EXPECT_TRUE(pool.select("k") == &fast);
}

TEST(ties_go_round_robin) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  for (int i = 0; i < 3; ++i) pool.add_channel(0, config(0, 1));
  // Short connections: each is released before the next arrives.
  std::vector<unsigned> order;
  for (int i = 0; i < 6; ++i) {
    Channel* c = pool.select("k");
    order.push_back(c->number);
    pool.acquire(*c);
    pool.release(*c, 1);
  }
  EXPECT_TRUE(order == (std::vector<unsigned>{0, 1, 2, 0, 1, 2}));
}

TEST(unlimited_channels_share_themselves) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(0, config(0, 2));
  pool.add_channel(0, config(0, 1));
  // speeds: a = 2/(c+1), b = 1/(c+1): a, then tie a(1) vs b(1) -> b
  // (after a), then a(2/3) vs b(1/2) -> a ...
  std::vector<unsigned> chosen = take(pool, 6);
  std::map<unsigned, int> counts;
  for (unsigned n : chosen) ++counts[n];
  EXPECT_EQ(counts[0], 4);
  EXPECT_EQ(counts[1], 2);
}

TEST(maxc_is_never_exceeded) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(0, config(2, 1));
  pool.add_channel(0, config(3, 5));
  EXPECT_EQ(take(pool, 100).size(), size_t(5));
  EXPECT_EQ(pool.groups()[0]->channels[0]->c, 2u);
  EXPECT_EQ(pool.groups()[0]->channels[1]->c, 3u);
}

TEST(groups_are_tried_in_order) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(0, config(1, 1));
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(1, config(2, 100));
  std::vector<unsigned> chosen = take(pool, 4);
  EXPECT_TRUE(chosen == (std::vector<unsigned>{0, 100, 100}));
}

TEST(disabled_and_down_channels_get_nothing) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(0, 1));
  Channel& b = pool.add_channel(0, config(0, 1));
  pool.set_admin(a, AdminState::Disabled, 0);
  EXPECT_TRUE(pool.select("k") == &b);
  EXPECT_TRUE(pool.connect_failed(b, 0));
  EXPECT_FALSE(pool.connect_failed(b, 0));  // already down
  EXPECT_EQ(b.failures, uint64_t(2));
  EXPECT_TRUE(pool.select("k") == nullptr);
  EXPECT_TRUE(std::string(b.state_name()) == "DOWN");
  EXPECT_TRUE(std::string(a.state_name()) == "DIS");
}

TEST(down_channels_are_probed_every_retry_interval) {
  PoolOptions options;
  options.retry_ms = 1000;
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(0, 1));
  EXPECT_EQ(pool.next_probe_ms(), int64_t(-1));
  pool.connect_failed(a, 5000);
  EXPECT_EQ(pool.next_probe_ms(), int64_t(6000));
  EXPECT_TRUE(pool.due_probes(5999).empty());
  EXPECT_EQ(pool.due_probes(6000).size(), size_t(1));
  EXPECT_TRUE(pool.due_probes(6001).empty());  // probe in flight
  pool.probe_failed(a, 6500);
  EXPECT_EQ(pool.next_probe_ms(), int64_t(7500));
  EXPECT_TRUE(pool.mark_up(a, 7600));
  EXPECT_TRUE(pool.select("k") == &a);
  EXPECT_EQ(pool.next_probe_ms(), int64_t(-1));
}

TEST(probes_follow_down_channels_through_deletion) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(0, 1));
  Channel& b = pool.add_channel(0, config(0, 1));
  pool.acquire(b);
  pool.connect_failed(a, 0);
  pool.connect_failed(b, 0);
  EXPECT_EQ(pool.due_probes(1000000).size(), size_t(2));
  pool.remove_channel(0, 1);  // b: retired, still held
  pool.mark_up(b, 1);
  EXPECT_EQ(pool.due_probes(2000000).size(), size_t(1));
  pool.mark_up(a, 1);
  EXPECT_EQ(pool.next_probe_ms(), int64_t(-1));
  pool.release(b, -1);
}

TEST(autodisable_disables_instead_of_marking_down) {
  PoolOptions options;
  options.autodisable = true;
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(0, 1));
  EXPECT_TRUE(pool.connect_failed(a, 1));
  EXPECT_TRUE(a.admin == AdminState::Disabled);
  EXPECT_TRUE(a.health == Health::Up);
  EXPECT_TRUE(pool.due_probes(1000000).empty());
}

TEST(hash_groups_keep_a_client_on_its_channel) {
  Pool pool;
  pool.add_group(GroupType::Hash);
  for (int i = 0; i < 4; ++i) pool.add_channel(0, config(0, 1));
  std::map<unsigned, int> spread;
  for (int client = 0; client < 400; ++client) {
    std::string key = "client" + std::to_string(client);
    Channel* first = pool.select(key);
    EXPECT_TRUE(first != nullptr);
    EXPECT_TRUE(pool.select(key) == first);  // stable
    ++spread[first->number];
  }
  for (auto& [number, count] : spread) EXPECT_TRUE(count > 60 && count < 140);
}

TEST(hash_removal_moves_only_that_channels_clients) {
  Pool pool;
  pool.add_group(GroupType::Hash);
  for (int i = 0; i < 4; ++i) pool.add_channel(0, config(0, 1));
  std::map<std::string, unsigned> before;
  for (int client = 0; client < 300; ++client) {
    std::string key = "c" + std::to_string(client);
    before[key] = pool.select(key)->number;
  }
  pool.remove_channel(0, 2);
  int moved = 0;
  for (auto& [key, number] : before) {
    unsigned now = pool.select(key)->number;
    if (number != 2) EXPECT_EQ(now, number);
    moved += now != number;
  }
  EXPECT_TRUE(moved > 0);
}

TEST(hash_weight_shifts_the_share) {
  Pool pool;
  pool.add_group(GroupType::Hash);
  pool.add_channel(0, config(0, 3));
  pool.add_channel(0, config(0, 1));
  int heavy = 0;
  for (int client = 0; client < 1000; ++client)
    heavy += pool.select("x" + std::to_string(client))->number == 0;
  EXPECT_TRUE(heavy > 680 && heavy < 820);  // about 3/4
}

TEST(hash_without_H_skips_the_group_when_the_choice_is_busy) {
  Pool pool;
  pool.add_group(GroupType::Hash);
  pool.add_channel(0, config(1, 1));
  pool.add_channel(0, config(1, 1));
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(1, config(0, 1));
  Channel* first = pool.select("client");
  pool.acquire(*first);
  Channel* next = pool.select("client");
  EXPECT_EQ(next->group, size_t(1));  // not the other hash channel

  pool.options().hash_failover = true;
  Channel* failover = pool.select("client");
  EXPECT_EQ(failover->group, size_t(0));
  EXPECT_TRUE(failover != first);
}

TEST(queue_is_fifo_bounded_and_expires) {
  PoolOptions options;
  options.queue_limit = 2;
  options.queue_wait_ms = 100;
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(1, 1));
  pool.acquire(a);
  int one = 1, two = 2, three = 3;
  EXPECT_TRUE(pool.enqueue(&one, "k", 0) != pool.queue().end());
  EXPECT_TRUE(pool.enqueue(&two, "k", 10) != pool.queue().end());
  EXPECT_TRUE(pool.enqueue(&three, "k", 20) == pool.queue().end());
  EXPECT_EQ(pool.dropped(), uint64_t(1));
  EXPECT_EQ(pool.queue_high_water(), size_t(2));
  EXPECT_TRUE(pool.serve_queue().empty());  // nothing free
  pool.release(a, 5);
  auto served = pool.serve_queue();
  EXPECT_EQ(served.size(), size_t(1));
  EXPECT_TRUE(served[0].first.owner == &one);
  EXPECT_EQ(a.c, 1u);
  EXPECT_EQ(pool.next_queue_deadline_ms(), int64_t(110));
  EXPECT_TRUE(pool.expire_waiters(109).empty());
  auto expired = pool.expire_waiters(110);
  EXPECT_EQ(expired.size(), size_t(1));
  EXPECT_TRUE(expired[0] == &two);
  EXPECT_EQ(pool.dropped(), uint64_t(2));
}

TEST(queue_leaves_and_wait_limit_zero_is_forever) {
  PoolOptions options;
  options.queue_wait_ms = 0;
  Pool pool(options);
  int one = 1;
  auto it = pool.enqueue(&one, "k", 0);
  EXPECT_TRUE(pool.expire_waiters(1000000000).empty());
  EXPECT_EQ(pool.next_queue_deadline_ms(), int64_t(-1));
  pool.leave_queue(it);
  EXPECT_TRUE(pool.queue().empty());
}

TEST(queue_serves_per_client_in_hash_pools) {
  Pool pool;
  pool.add_group(GroupType::Hash);
  pool.add_channel(0, config(1, 1));
  pool.add_channel(0, config(1, 1));
  // Find two keys that hash to different channels; fill one channel.
  std::string key_a = "a", key_b;
  Channel* ca = pool.select(key_a);
  for (int i = 0; i < 100 && key_b.empty(); ++i) {
    std::string k = "b" + std::to_string(i);
    if (pool.select(k) != ca) key_b = k;
  }
  pool.acquire(*ca);
  int waiter_a = 1, waiter_b = 2;
  pool.enqueue(&waiter_a, key_a, 0);  // its channel is busy
  pool.enqueue(&waiter_b, key_b, 0);  // its channel is free
  auto served = pool.serve_queue();
  EXPECT_EQ(served.size(), size_t(1));
  EXPECT_TRUE(served[0].first.owner == &waiter_b);
}

TEST(deleted_channels_keep_numbers_and_free_late) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  pool.add_channel(0, config(0, 1));
  Channel& b = pool.add_channel(0, config(0, 1));
  pool.add_channel(0, config(0, 1));
  pool.acquire(b);
  pool.remove_channel(0, 1);
  EXPECT_TRUE(b.deleted);
  EXPECT_TRUE(pool.groups()[0]->find(1) == nullptr);
  EXPECT_EQ(pool.groups()[0]->find(2)->number, 2u);
  Channel& d = pool.add_channel(0, config(0, 1));
  EXPECT_EQ(d.number, 3u);  // numbers are never reused
  std::set<unsigned> chosen;
  for (int i = 0; i < 6; ++i) {
    Channel* c = pool.select("k");
    chosen.insert(c->number);
  }
  EXPECT_TRUE(chosen.count(1) == 0);
  pool.release(b, 1);  // frees it; must not crash under sanitizers
}

TEST(weight_and_rational_speed_comparison) {
  Channel a, b;
  a.config = config(4, 3);
  b.config = config(0, 6);
  b.c = 1;  // 6/2 = 3: tie
  EXPECT_FALSE(faster(a, b));
  EXPECT_FALSE(faster(b, a));
  b.c = 0;  // 6
  EXPECT_TRUE(faster(b, a));
}

TEST(address_keys_unify_v4_mapped) {
  Address v4, mapped;
  auto* in = reinterpret_cast<sockaddr_in*>(&v4.storage);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(0x7f000001);
  v4.length = sizeof(sockaddr_in);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&mapped.storage);
  in6->sin6_family = AF_INET6;
  in6->sin6_addr.s6_addr[10] = 0xff;
  in6->sin6_addr.s6_addr[11] = 0xff;
  in6->sin6_addr.s6_addr[12] = 127;
  in6->sin6_addr.s6_addr[15] = 1;
  mapped.length = sizeof(sockaddr_in6);
  EXPECT_EQ(v4.host_key(), mapped.host_key());
  EXPECT_EQ(mapped.host_text(), "127.0.0.1");
}

TEST_MAIN()

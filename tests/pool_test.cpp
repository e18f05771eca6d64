// Selection, slots, the queue and health, with plain values.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <map>
#include <random>
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
    chosen.push_back(c->number() + 100 * unsigned(c->group()));
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
  Channel& fast = *pool.find(0, 0);
  Channel& slow = *pool.find(0, 1);
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
    order.push_back(c->number());
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
  EXPECT_EQ(pool.find(0, 0)->c(), 2u);
  EXPECT_EQ(pool.find(0, 1)->c(), 3u);
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
  EXPECT_EQ(b.counters().failures, uint64_t(2));
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
  pool.remove_channel(b);  // retired, still held
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
  EXPECT_TRUE(a.admin() == AdminState::AutoDisabled);
  EXPECT_TRUE(std::string(a.state_name()) == "ADIS");
  EXPECT_TRUE(a.health() == Health::Up);
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
    ++spread[first->number()];
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
    before[key] = pool.select(key)->number();
  }
  pool.remove_channel(*pool.find(0, 2));
  int moved = 0;
  for (auto& [key, number] : before) {
    unsigned now = pool.select(key)->number();
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
    heavy += pool.select("x" + std::to_string(client))->number() == 0;
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
  EXPECT_EQ(next->group(), size_t(1));  // not the other hash channel

  PoolOptions failover_options;
  failover_options.hash_failover = true;
  pool.set_options(failover_options);
  Channel* failover = pool.select("client");
  EXPECT_EQ(failover->group(), size_t(0));
  EXPECT_TRUE(failover != first);
}

// A waiter for `owner` with key `key`, optionally a priority client.
Waiter waiter(void* owner, const std::string& key = "k", bool priority = false) {
  Waiter w;
  w.owner = owner;
  w.key = key;
  w.priority = priority;
  return w;
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
  uint64_t ticket = 0;
  EXPECT_TRUE(pool.enqueue(waiter(&one), 0, &ticket) == Admission::Queued);
  EXPECT_TRUE(pool.enqueue(waiter(&two), 10, &ticket) == Admission::Queued);
  EXPECT_TRUE(pool.enqueue(waiter(&three), 20, &ticket) == Admission::Full);
  EXPECT_EQ(pool.dropped(), uint64_t(1));
  EXPECT_EQ(pool.queue_high_water(), size_t(2));
  EXPECT_TRUE(pool.serve_queue(30).empty());  // nothing free
  pool.release(a, 5);
  auto served = pool.serve_queue(40);
  EXPECT_EQ(served.size(), size_t(1));
  EXPECT_TRUE(served[0].first.owner == &one);
  EXPECT_EQ(pool.waits().count, uint64_t(1));
  EXPECT_EQ(pool.waits().max_ms, int64_t(40));
  EXPECT_EQ(a.c(), 1u);
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
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(1, 1));
  pool.acquire(a);
  int one = 1;
  uint64_t ticket = 0;
  EXPECT_TRUE(pool.enqueue(waiter(&one), 0, &ticket) == Admission::Queued);
  EXPECT_TRUE(pool.expire_waiters(1000000000).empty());
  EXPECT_EQ(pool.next_queue_deadline_ms(), int64_t(-1));
  EXPECT_EQ(pool.leave_queue(ticket, 250), int64_t(250));
  EXPECT_EQ(pool.queue_length(), size_t(0));
}

TEST(nothing_in_service_refuses_at_once_unless_an_outage_wait_is_set) {
  PoolOptions options;
  options.queue_wait_ms = 60000;
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(1, 1));
  pool.connect_failed(a, 0);  // down: nothing in service
  int one = 1, two = 2;
  uint64_t ticket = 0;
  EXPECT_TRUE(pool.enqueue(waiter(&one), 0, &ticket) == Admission::NothingInService);
  EXPECT_EQ(pool.refused(), uint64_t(1));
  EXPECT_EQ(pool.dropped(), uint64_t(0));
  options.outage_wait_ms = 3000;  // -O 3: wait out a short outage
  pool.set_options(options);
  EXPECT_TRUE(pool.enqueue(waiter(&two), 100, &ticket) == Admission::Queued);
  EXPECT_EQ(pool.next_queue_deadline_ms(), int64_t(3100));
  // Served the moment the channel is back, however it went.
  pool.mark_up(a, 200);
  EXPECT_TRUE(pool.take_serve_due());
  auto served = pool.serve_queue(200);
  EXPECT_EQ(served.size(), size_t(1));
  EXPECT_TRUE(served[0].first.owner == &two);
  // Busy but in service: a newcomer waits the full -w.
  EXPECT_TRUE(pool.enqueue(waiter(&one), 300, &ticket) == Admission::Queued);
  EXPECT_EQ(pool.next_queue_deadline_ms(), int64_t(60300));
}

TEST(priority_clients_go_first_with_relief_for_the_others) {
  PoolOptions options;
  options.relief_every = 3;  // at least one in three served is not a priority client
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(1, 1));
  pool.acquire(a);
  std::vector<int> owners(12);
  uint64_t ticket = 0;
  // Arrival order: n0 n1 n2 p3 p4 p5 p6 p7 p8 (n = normal, p = priority).
  for (int i = 0; i < 9; ++i) pool.enqueue(waiter(&owners[size_t(i)], "k", i >= 3), i, &ticket);
  std::string order;
  for (int served = 0; served < 9; ++served) {
    pool.release(a, 1);
    auto batch = pool.serve_queue(100);
    EXPECT_EQ(batch.size(), size_t(1));
    int index = int(static_cast<int*>(batch[0].first.owner) - owners.data());
    order += (index >= 3 ? "p" : "n") + std::to_string(index) + " ";
  }
  EXPECT_EQ(order, "p3 p4 n0 p5 p6 n1 p7 p8 n2 ");
  EXPECT_EQ(pool.waits(true).count, uint64_t(6));
  EXPECT_EQ(pool.waits(false).count, uint64_t(3));
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
  uint64_t ticket = 0;
  pool.enqueue(waiter(&waiter_a, key_a), 0, &ticket);  // its channel is busy
  pool.enqueue(waiter(&waiter_b, key_b), 0, &ticket);  // its channel is free
  auto served = pool.serve_queue(5);
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
  pool.remove_channel(b);
  EXPECT_TRUE(b.deleted());
  EXPECT_TRUE(pool.groups()[0]->find(1) == nullptr);
  EXPECT_EQ(pool.groups()[0]->find(2)->number(), 2u);
  Channel& d = pool.add_channel(0, config(0, 1));
  EXPECT_EQ(d.number(), 3u);  // numbers are never reused
  std::set<unsigned> chosen;
  for (int i = 0; i < 6; ++i) {
    Channel* c = pool.select("k");
    chosen.insert(c->number());
  }
  EXPECT_TRUE(chosen.count(1) == 0);
  pool.release(b, 1);  // frees it; must not crash under sanitizers
}

TEST(weight_and_rational_speed_comparison) {
  // a: maxc 4, weight 3 (one sharer); b: unlimited, weight 6.
  EXPECT_FALSE(faster(3, 1, 6, 2));  // b with c = 1: 6/2 = 3, a tie
  EXPECT_FALSE(faster(6, 2, 3, 1));
  EXPECT_TRUE(faster(6, 1, 3, 1));   // b with c = 0: 6
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(4, 3));
  Channel& b = pool.add_channel(0, config(0, 6));
  pool.acquire(b);
  EXPECT_TRUE(a.speed() == b.speed());  // the index sees the same tie
}

// The scheduling rule written as the plain linear scan it was before the
// index: among available channels the fastest by faster_than(a, b), ties
// to the first numbered after the one chosen last.
template <typename Faster>
const Channel* linear_scan(const Group& group, bool chose_any, unsigned last, Faster faster_than) {
  const Channel* best = nullptr;
  auto consider = [&](const Channel& c) {
    if (c.available() && (!best || faster_than(c, *best))) best = &c;
  };
  for (auto& c : group.channels())
    if (!chose_any || c->number() > last) consider(*c);
  if (chose_any)
    for (auto& c : group.channels())
      if (c->number() <= last) consider(*c);
  return best;
}

// By the configured weight/sharers, compared as exact rationals.
const Channel* linear_choice(const Group& group, bool chose_any, unsigned last) {
  auto sharers = [](const Channel& c) { return c.config().maxc ? 1u : c.c() + 1; };
  return linear_scan(group, chose_any, last, [&](const Channel& a, const Channel& b) {
    return faster(a.config().weight, sharers(a), b.config().weight, sharers(b));
  });
}

TEST(the_index_chooses_exactly_as_the_linear_scan_under_random_changes) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    std::mt19937 random(seed);
    auto pick = [&](size_t n) { return size_t(random() % n); };
    Pool pool;
    pool.add_group(GroupType::RoundRobin);
    for (int i = 0; i < 8; ++i) pool.add_channel(0, config(unsigned(pick(4)), 1 + unsigned(pick(3))));
    std::vector<Channel*> held;  // one entry per connection holding a slot
    bool chose_any = false;
    unsigned last = 0;
    int64_t now = 0;
    for (int step = 0; step < 3000; ++step) {
      ++now;
      const Group& group = *pool.groups()[0];
      std::vector<Channel*> live;
      for (auto& c : group.channels()) live.push_back(pool.find(0, c->number()));
      Channel* any = live.empty() ? nullptr : live[pick(live.size())];
      switch (pick(10)) {
        case 0:
        case 1:
        case 2: {  // a client arrives
          const Channel* expected = linear_choice(group, chose_any, last);
          Channel* chosen = pool.select("k");
          EXPECT_TRUE(chosen == expected);
          if (!chosen) break;
          if (chosen->config().maxc) EXPECT_TRUE(chosen->c() < chosen->config().maxc);
          pool.acquire(*chosen);
          held.push_back(chosen);
          chose_any = true;
          last = chosen->number();
          break;
        }
        case 3:
        case 4:  // a connection ends
          if (!held.empty()) {
            size_t i = pick(held.size());
            pool.release(*held[i], 5);
            held.erase(held.begin() + long(i));
          }
          break;
        case 5:
          if (any) pool.set_admin(*any, pick(2) ? AdminState::Enabled : AdminState::Disabled, now);
          break;
        case 6:
          if (any) {
            if (pick(2))
              pool.connect_failed(*any, now);
            else
              pool.mark_up(*any, now);
          }
          break;
        case 7:
          if (any) pool.set_maxc(*any, unsigned(pick(4)));
          break;
        case 8:
          if (any) pool.set_weight(*any, 1 + unsigned(pick(3)));
          break;
        case 9:
          if (pick(2) || live.size() < 3)
            pool.add_channel(0, config(unsigned(pick(4)), 1 + unsigned(pick(3))),
                             pick(2) ? AdminState::Enabled : AdminState::Disabled, now);
          else if (any)
            pool.remove_channel(*any);  // its held connections release it later
          break;
      }
    }
    for (Channel* channel : held) pool.release(*channel, 1);
  }
}

// By the speeds the channels report (learned or not).
const Channel* linear_by_speed(const Group& group, bool chose_any, unsigned last) {
  return linear_scan(group, chose_any, last,
                     [](const Channel& a, const Channel& b) { return a.speed() > b.speed(); });
}

TEST(the_index_follows_learned_speeds_as_exactly_as_the_linear_scan) {
  for (unsigned seed = 1; seed <= 10; ++seed) {
    std::mt19937 random(seed);
    auto pick = [&](size_t n) { return size_t(random() % n); };
    PoolOptions options;
    options.learn_all = true;
    Pool pool(options);
    pool.add_group(GroupType::RoundRobin);
    for (int i = 0; i < 8; ++i) pool.add_channel(0, config(unsigned(pick(3)), 1 + unsigned(pick(3))));
    std::vector<Channel*> held;
    bool chose_any = false;
    unsigned last = 0;
    for (int step = 0; step < 3000; ++step) {
      const Group& group = *pool.groups()[0];
      if (pick(2)) {
        const Channel* expected = linear_by_speed(group, chose_any, last);
        Channel* chosen = pool.select("k");
        EXPECT_TRUE(chosen == expected);
        if (!chosen) continue;
        pool.acquire(*chosen, step);
        held.push_back(chosen);
        chose_any = true;
        last = chosen->number();
      } else if (!held.empty()) {
        size_t i = pick(held.size());
        Job job;
        job.bytes = 4096 + pick(100000);
        job.ms = 5 + int64_t(pick(500));
        job.clean = pick(4) != 0;
        pool.release(*held[i], job.ms, job);
        held.erase(held.begin() + long(i));
      }
      if (pick(50) == 0) pool.drift(int64_t(step) * 1000);
    }
    for (Channel* channel : held) pool.release(*channel, 1);
  }
}

TEST(probe_schedule_and_in_service_count_follow_every_change) {
  PoolOptions options;
  options.retry_ms = 100;
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(1, 1));
  Channel& b = pool.add_channel(0, config(0, 1), AdminState::Disabled);
  EXPECT_EQ(pool.in_service_count(), size_t(1));
  pool.connect_failed(a, 1000);
  EXPECT_EQ(pool.in_service_count(), size_t(0));
  EXPECT_EQ(pool.next_probe_ms(), int64_t(1100));
  pool.set_admin(a, AdminState::Disabled, 1001);  // a disabled channel is not probed
  EXPECT_EQ(pool.next_probe_ms(), int64_t(-1));
  pool.set_admin(a, AdminState::Enabled, 1002);   // enabling a down channel probes it now
  EXPECT_EQ(pool.next_probe_ms(), int64_t(1002));
  pool.set_admin(b, AdminState::Enabled, 1003);
  EXPECT_EQ(pool.in_service_count(), size_t(1));
  EXPECT_TRUE(pool.take_serve_due());
  EXPECT_FALSE(pool.take_serve_due());
  pool.mark_up(a, 1004);
  EXPECT_EQ(pool.in_service_count(), size_t(2));
  EXPECT_TRUE(pool.take_serve_due());  // a channel came back
  pool.remove_channel(b);
  EXPECT_EQ(pool.in_service_count(), size_t(1));
  EXPECT_EQ(pool.channel_count(), size_t(1));
}

TEST(probes_find_channels_by_id_and_assign_gives_a_new_one) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(0, 1));
  uint64_t old_id = a.id();
  EXPECT_TRUE(pool.find_id(old_id) == &a);
  std::string err;
  Address elsewhere;
  EXPECT_FALSE(pool.assign(a, "h", "1", elsewhere, 0, &err));  // enabled
  EXPECT_EQ(err, "channel 0 is enabled; disable it first");
  pool.set_admin(a, AdminState::Disabled, 0);
  pool.connect_failed(a, 0);
  EXPECT_TRUE(pool.assign(a, "h", "1", elsewhere, 5, &err));
  EXPECT_TRUE(pool.find_id(old_id) == nullptr);  // an old probe finds nothing
  EXPECT_TRUE(pool.find_id(a.id()) == &a);
  EXPECT_TRUE(a.health() == Health::Up);
  pool.remove_channel(a);
  EXPECT_TRUE(pool.find_id(a.id()) == nullptr);
}

TEST(hash_first_choices_are_cached_until_the_group_changes) {
  Pool pool;
  pool.add_group(GroupType::Hash);
  for (int i = 0; i < 50; ++i) pool.add_channel(0, config(0, 1));
  std::map<std::string, unsigned> first;
  for (int client = 0; client < 200; ++client) {
    std::string key = "c" + std::to_string(client);
    first[key] = pool.select(key)->number();
    EXPECT_EQ(pool.select(key)->number(), first[key]);  // from the cache
  }
  // A heavier channel takes clients from the others, never the reverse.
  pool.set_weight(*pool.find(0, 7), 50);
  int moved_to_7 = 0;
  for (auto& [key, number] : first) {
    unsigned now = pool.select(key)->number();
    if (now != number) {
      EXPECT_EQ(now, 7u);
      ++moved_to_7;
    }
  }
  EXPECT_TRUE(moved_to_7 > 0);
}

TEST_MAIN()

// Restart and upgrade, without sockets: the offer's channel lines, and the
// pool's side of taking over (adopted slots, adopted waiters).
#include "handover.hpp"
#include "pool.hpp"
#include "test.h"

namespace {

HandedChannel sample() {
  HandedChannel c;
  c.group = 2;
  c.number = 7;
  c.config.host = "build host";  // any text: it travels as hex
  c.config.port = "3632";
  c.config.maxc = 8;
  c.config.weight = 3;
  c.admin = AdminState::AutoDisabled;
  c.health = Health::Down;
  c.counters.connections = 12345678901ull;
  c.counters.failures = 3;
  c.counters.sent = 1ull << 40;
  c.counters.received = 99;
  c.counters.finished = 12345678900ull;
  c.counters.busy_ms = 77;
  c.learned = true;
  c.held = 5;
  c.address = "[2001:db8::7]:3632";
  return c;
}

ChannelConfig config(unsigned maxc) {
  ChannelConfig c;
  c.maxc = maxc;
  c.weight = 1;
  return c;
}

Waiter waiter(void* owner) {
  Waiter w;
  w.owner = owner;
  w.key = "k";
  return w;
}

}  // namespace

TEST(offer_line_round_trips_every_field) {
  HandedChannel in = sample(), out;
  std::string line = offer_line(in);
  EXPECT_TRUE(line.find('\n') == std::string::npos);
  EXPECT_TRUE(parse_offer_line(line, &out));
  EXPECT_EQ(out.group, in.group);
  EXPECT_EQ(out.number, in.number);
  EXPECT_EQ(out.config.host, in.config.host);
  EXPECT_EQ(out.config.port, in.config.port);
  EXPECT_EQ(out.config.maxc, in.config.maxc);
  EXPECT_EQ(out.config.weight, in.config.weight);
  EXPECT_TRUE(out.admin == AdminState::AutoDisabled);
  EXPECT_TRUE(out.health == Health::Down);
  EXPECT_EQ(out.counters.connections, in.counters.connections);
  EXPECT_EQ(out.counters.failures, in.counters.failures);
  EXPECT_EQ(out.counters.sent, in.counters.sent);
  EXPECT_EQ(out.counters.received, in.counters.received);
  EXPECT_EQ(out.counters.finished, in.counters.finished);
  EXPECT_EQ(out.counters.busy_ms, in.counters.busy_ms);
  EXPECT_TRUE(out.learned);
  EXPECT_EQ(out.held, in.held);
  EXPECT_EQ(out.address, in.address);
}

TEST(offer_lines_that_are_not_whole_are_refused) {
  std::string good = offer_line(sample());
  HandedChannel out;
  EXPECT_FALSE(parse_offer_line("", &out));
  EXPECT_FALSE(parse_offer_line("channel", &out));
  EXPECT_FALSE(parse_offer_line(good + " extra", &out));
  EXPECT_FALSE(parse_offer_line(good.substr(0, good.rfind(' ')), &out));
  std::string odd_hex = good;
  odd_hex.pop_back();  // the address's hex loses a digit
  EXPECT_FALSE(parse_offer_line(odd_hex, &out));
  auto replaced = [&good](const std::string& from, const std::string& to) {
    std::string line = good;
    line.replace(line.find(from), from.size(), to);
    return line;
  };
  EXPECT_FALSE(parse_offer_line(replaced(" auto ", " maybe "), &out));
  EXPECT_FALSE(parse_offer_line(replaced(" down ", " sideways "), &out));
  EXPECT_FALSE(parse_offer_line(replaced(" 8 3 ", " 8 0 "), &out));        // weight 0
  EXPECT_FALSE(parse_offer_line(replaced(" 8 3 ", " 8 -3 "), &out));
  EXPECT_FALSE(parse_offer_line(replaced(" 1 8 3 ", " 2 8 3 "), &out));    // learned is 0 or 1
  EXPECT_FALSE(parse_offer_line(replaced("channel 2 ", "channel x "), &out));
}

TEST(adopted_slots_count_against_maxc_until_released_with_their_counters) {
  Pool pool;
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(2));
  pool.adopt(a, 2);
  EXPECT_EQ(a.c(), 2u);
  EXPECT_EQ(pool.adopted_total(), uint64_t(2));
  EXPECT_TRUE(pool.select("k") == nullptr);  // full: the old process holds both
  ChannelCounters since;
  since.connections = 1;
  since.sent = 1000;
  since.received = 2000;
  pool.release_adopted(a, 40, since);
  EXPECT_EQ(a.c(), 1u);
  EXPECT_EQ(a.adopted(), 1u);
  EXPECT_EQ(a.counters().sent, uint64_t(1000));
  EXPECT_EQ(a.counters().received, uint64_t(2000));
  EXPECT_EQ(a.counters().finished, uint64_t(1));
  EXPECT_TRUE(pool.select("k") == &a);
  pool.acquire(a);
  // A release more than was adopted changes nothing (a repeated line).
  pool.release_adopted(a);
  pool.release_adopted(a);
  EXPECT_EQ(a.c(), 1u);  // the slot taken here is still held
  EXPECT_EQ(pool.adopted_total(), uint64_t(0));
}

TEST(adopted_waiters_keep_their_order_and_the_time_they_waited) {
  PoolOptions options;
  options.queue_wait_ms = 1000;
  options.queue_limit = 1;  // an adopted waiter was admitted already
  Pool pool(options);
  pool.add_group(GroupType::RoundRobin);
  Channel& a = pool.add_channel(0, config(1));
  pool.acquire(a);
  int first = 1, second = 2, third = 3;
  pool.enqueue_adopted(waiter(&first), 5000, 900);
  pool.enqueue_adopted(waiter(&second), 5000, 300);
  pool.enqueue_adopted(waiter(&third), 5000, 0);
  EXPECT_EQ(pool.queue_length(), size_t(3));
  // The first one's wait limit counts from when it began to wait.
  EXPECT_EQ(pool.next_queue_deadline_ms(), int64_t(5100));
  std::vector<void*> expired = pool.expire_waiters(5100);
  EXPECT_EQ(expired.size(), size_t(1));
  EXPECT_TRUE(expired.size() == 1 && expired[0] == &first);
  pool.release(a, 5);
  auto served = pool.serve_queue(5200);
  EXPECT_EQ(served.size(), size_t(1));
  EXPECT_TRUE(served.size() == 1 && served[0].first.owner == &second);
}

TEST_MAIN()

// Learned speeds with plain values: the estimate, its prior, its bounded
// step, its fall-back to jobs per second, its drift; and the pool that
// schedules by it.
#include "pool.hpp"
#include "speed.hpp"
#include "test.h"

namespace {

Job job(uint64_t bytes, int64_t ms) {
  Job j;
  j.bytes = bytes;
  j.ms = ms;
  j.clean = true;
  return j;
}

// A scale that has seen `n` jobs of 64 KiB at `speed` bytes/s per unit of weight.
SpeedScale scale_of(double speed, int n = 32) {
  SpeedScale scale;
  for (int i = 0; i < n; ++i) scale.record(job(65536, int64_t(65536 / speed * 1000)), 1);
  return scale;
}

bool near(double a, double b, double tolerance = 0.02) { return a > b * (1 - tolerance) && a < b * (1 + tolerance); }

ChannelConfig config(unsigned maxc, unsigned weight) {
  ChannelConfig c;
  c.maxc = maxc;
  c.weight = weight;
  return c;
}

PoolOptions learning_everywhere() {
  PoolOptions options;
  options.learn_all = true;  // -L
  return options;
}

// A pool of one round-robin group whose channels all learn their speeds.
struct LearningPool : Pool {
  LearningPool() : Pool(learning_everywhere()) { add_group(GroupType::RoundRobin); }
};

}  // namespace

TEST(only_clean_jobs_long_enough_to_time_are_measured) {
  EXPECT_TRUE(measurable(job(100, 5)));
  EXPECT_FALSE(measurable(job(100000, 4)));  // under kMinJobMs
  Job reset = job(100000, 100);
  reset.clean = false;
  EXPECT_FALSE(measurable(reset));
}

TEST(the_estimate_is_a_ratio_of_sums_in_bytes_per_second) {
  SpeedScale scale;  // no scale yet: no prior
  SpeedEstimate estimate;
  // Jobs of unequal size at one speed, 1 MB/s: the estimate is that speed.
  estimate.record(job(100000, 100), 1, scale);
  estimate.record(job(1000000, 1000), 1, scale);
  estimate.record(job(20000, 20), 1, scale);
  EXPECT_TRUE(near(estimate.work_per_second(Basis::Bytes), 1e6));
  EXPECT_EQ(estimate.jobs(), size_t(3));
}

TEST(the_weight_is_a_prior_worth_a_few_jobs_that_fades_as_the_window_fills) {
  SpeedScale scale = scale_of(1e6);  // 1 MB/s per unit of weight
  SpeedEstimate estimate;
  // Configured weight 3 (3 MB/s expected); the host does 1 MB/s.
  estimate.record(job(65536, 65), 3, scale);
  double first = estimate.work_per_second(Basis::Bytes);
  EXPECT_TRUE(first > 1.5e6 && first < 3e6);  // pulled toward the prior
  for (int i = 0; i < 30; ++i) estimate.record(job(65536, 65), 3, scale);
  EXPECT_TRUE(near(estimate.work_per_second(Basis::Bytes), 1e6, 0.03));  // the prior has faded
  EXPECT_EQ(estimate.jobs(), kSpeedWindow);
}

TEST(one_outlier_moves_a_settled_estimate_by_a_bounded_step) {
  SpeedScale scale;
  SpeedEstimate estimate;
  for (int i = 0; i < 10; ++i) estimate.record(job(100000, 100), 1, scale);
  double settled = estimate.work_per_second(Basis::Bytes);
  estimate.record(job(10000000, 100000), 1, scale);  // huge and 100x slower
  double after = estimate.work_per_second(Basis::Bytes);
  EXPECT_TRUE(after >= settled / kMaxStep * 0.999);
  EXPECT_TRUE(after < settled);
}

TEST(a_host_three_times_slower_is_followed_within_a_few_jobs) {
  SpeedScale scale;
  SpeedEstimate estimate;
  for (int i = 0; i < 16; ++i) estimate.record(job(300000, 100), 1, scale);  // 3 MB/s
  int jobs = 0;
  while (estimate.work_per_second(Basis::Bytes) > 1e6 * 1.2 && jobs < 100) {
    estimate.record(job(100000, 100), 1, scale);  // now 1 MB/s
    ++jobs;
  }
  EXPECT_TRUE(jobs >= 5 && jobs <= int(kSpeedWindow));  // at most a window of jobs
}

TEST(small_alike_requests_are_measured_in_jobs_per_second) {
  SpeedScale scale;
  for (int i = 0; i < 20; ++i) scale.record(job(200, 50), 1);
  EXPECT_TRUE(scale.basis() == Basis::Jobs);
  EXPECT_TRUE(near(scale.per_weight(), 20));  // 20 jobs a second per unit of weight
  SpeedEstimate estimate;
  for (int i = 0; i < 5; ++i) estimate.record(job(200, 100), 1, scale);
  EXPECT_TRUE(near(estimate.work_per_second(Basis::Jobs), 10, 0.35));
  SpeedScale big = scale_of(1e6);
  EXPECT_TRUE(big.basis() == Basis::Bytes);
}

TEST(drift_moves_halfway_toward_its_target_then_just_above_it) {
  SpeedScale scale = scale_of(1e6);
  SpeedEstimate estimate;
  for (int i = 0; i < 16; ++i) estimate.record(job(65536, 655), 1, scale);  // 0.1 MB/s
  double slow = estimate.work_per_second(Basis::Bytes);
  estimate.drift_toward(1e6, Basis::Bytes);
  EXPECT_TRUE(near(estimate.work_per_second(Basis::Bytes), (slow + 1e6) / 2));
  EXPECT_EQ(estimate.jobs(), kSpeedWindow / 2);  // the stale half of the window is gone
  for (int i = 0; i < 5; ++i) estimate.drift_toward(1e6, Basis::Bytes);
  EXPECT_TRUE(estimate.work_per_second(Basis::Bytes) > 1e6);  // chosen again, then measured
  double fast = estimate.work_per_second(Basis::Bytes);
  estimate.drift_toward(1e6, Basis::Bytes);  // never past its target
  EXPECT_EQ(estimate.work_per_second(Basis::Bytes), fast);
}

// ---- the pool scheduling by learned speeds

TEST(an_unmeasured_learned_channel_is_tried_first_while_idle) {
  LearningPool pool;
  Channel& measured = pool.add_channel(0, config(4, 10));
  for (int i = 0; i < 10; ++i) {
    pool.acquire(measured, 0);
    pool.release(measured, 100, job(100000, 100));
  }
  Channel& fresh = pool.add_channel(0, config(4, 1));
  EXPECT_TRUE(pool.select("k") == &fresh);  // never measured: its turn
  pool.acquire(fresh, 0);
  EXPECT_TRUE(pool.select("k") == &measured);  // busy now: back to what is known
}

TEST(a_learned_speed_counts_from_the_first_job_of_each_channel) {
  // Every job placed before the speeds count is placed blind: at 6
  // clients on the farm bench, waiting for 8 jobs cost 1.5 % of the batch.
  LearningPool pool;
  Channel& fast = pool.add_channel(0, config(4, 1));
  Channel& slow = pool.add_channel(0, config(4, 1));
  pool.acquire(fast, 0);
  pool.release(fast, 100, job(300000, 100));  // 3 MB/s
  pool.acquire(slow, 0);
  pool.release(slow, 300, job(300000, 300));  // 1 MB/s
  // Each estimate still leans on its prior (weight 1, the pool's mean).
  EXPECT_TRUE(fast.slot_speed() > slow.slot_speed() * 1.4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(pool.select("k") == &fast);  // no longer taken in turns
    pool.acquire(fast, 0);
  }
  EXPECT_TRUE(pool.select("k") == &slow);
}

TEST(learned_speeds_steer_the_fastest_free_slot) {
  LearningPool pool;
  Channel& a = pool.add_channel(0, config(1, 1));
  Channel& b = pool.add_channel(0, config(1, 1));
  // a does 3 MB/s, b 1 MB/s; both were configured alike.
  for (int i = 0; i < 16; ++i) {
    pool.acquire(a, i);
    pool.release(a, 100, job(300000, 100));
    pool.acquire(b, i);
    pool.release(b, 100, job(100000, 100));
  }
  EXPECT_TRUE(a.slot_speed() > 2.5 * b.slot_speed());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(pool.select("k") == &a);  // ties would rotate
  // Pinning b at a high weight wins it back, exactly as configured.
  pool.set_weight(b, 100);
  EXPECT_FALSE(b.learned());
  EXPECT_TRUE(pool.select("k") == &b);
  pool.set_weight(b, 100, true);
  EXPECT_TRUE(b.learned());
}

TEST(a_channel_not_chosen_for_long_drifts_back_and_is_chosen_again) {
  // icecream's rule for this broke unnoticed: a host that had one bad
  // period must not be starved for ever.
  LearningPool pool;
  Channel& a = pool.add_channel(0, config(1, 1));
  Channel& b = pool.add_channel(0, config(1, 1));
  int64_t now = 0;
  for (int i = 0; i < 16; ++i) {
    pool.acquire(a, now);
    pool.release(a, 100, job(100000, 100));   // 1 MB/s
    pool.acquire(b, now);
    pool.release(b, 1000, job(100000, 1000));  // a bad period: 0.1 MB/s
  }
  EXPECT_TRUE(pool.select("k") == &a);
  EXPECT_TRUE(pool.next_drift_ms() == kDriftMs);
  // Only a is chosen from now on; b drifts back, kDriftMs at a time.
  int rounds = 0;
  while (pool.select("k") == &a && rounds < 20) {
    now += kDriftMs;
    pool.acquire(a, now);
    pool.release(a, 100, job(100000, 100));
    pool.drift(now);
    ++rounds;
  }
  EXPECT_TRUE(rounds >= 2 && rounds < 20);
  EXPECT_TRUE(pool.select("k") == &b);  // back in the running, to be measured again
}

// ---- size-aware placement (-j)

TEST(a_distcc_request_tells_its_size_once_its_doti_token_is_in) {
  std::string request = "DIST00000001ARGC00000002ARGV00000003gccARGV00000002-c";
  bool complete = true;
  EXPECT_EQ(request_cost(request.data(), request.size(), 0, &complete), uint64_t(0));
  EXPECT_FALSE(complete);  // DOTI has not come yet
  request += "DOTI00010000";  // 64 KiB of preprocessed source follow
  EXPECT_EQ(request_cost(request.data(), request.size(), 0, &complete),
            uint64_t(request.size() + 0x10000));
  EXPECT_TRUE(complete);
  std::string cut = "DIST00000001ARGC00000001ARGV00000010gc";  // its string is cut short
  EXPECT_EQ(request_cost(cut.data(), cut.size(), 0, &complete), uint64_t(0));
  std::string http = "GET / HTTP/1.0\r\n";
  EXPECT_EQ(request_cost(http.data(), http.size(), 1000, &complete), uint64_t(http.size() + 1000));
  EXPECT_FALSE(complete);
}

namespace {

// A group of a fast channel (one slot, weight 3) and a slow one (weight
// 1) whose slots the pool has measured at 3 MB/s and 1 MB/s; recent jobs
// are 200 KB on average.
struct TwoSpeeds {
  Pool pool;
  Channel* fast;
  Channel* slow;
  explicit TwoSpeeds(unsigned slow_slots = 1) {
    pool.add_group(GroupType::RoundRobin);
    fast = &pool.add_channel(0, config(1, 3));
    slow = &pool.add_channel(0, config(slow_slots, 1));
    for (int i = 0; i < 16; ++i) {
      pool.acquire(*fast, 0);
      pool.release(*fast, 100, job(300000, 100));
      pool.acquire(*slow, 0);
      pool.release(*slow, 100, job(100000, 100));
    }
  }
};

Waiter costing(uint64_t cost) {
  Waiter w;
  w.cost = cost;
  w.key = "k";
  return w;
}

}  // namespace

TEST(a_big_job_waits_for_a_faster_slot_that_frees_sooner_a_small_one_does_not) {
  TwoSpeeds farm;
  Pool& pool = farm.pool;
  Channel &fast = *farm.fast, &slow = *farm.slow;
  int64_t now = 10000;
  // fast runs a job expected to end in 1 s.
  EXPECT_TRUE(pool.choose("k", 3000000, now) == &fast);
  int64_t end = pool.acquire(fast, now, 3000000);
  EXPECT_EQ(end, now + 1000);
  // 6 MB: 6 s on slow, 1 + 2 s on fast once it frees: it waits for fast.
  EXPECT_TRUE(pool.choose("k", 6000000, now) == nullptr);
  EXPECT_EQ(pool.next_reconsider_ms(), end);
  // 300 KB: 0.3 s on slow, 1.1 s on fast: slow takes it now.
  EXPECT_TRUE(pool.choose("k", 300000, now) == &slow);
  // No cost known: the fastest free slot, as always.
  EXPECT_TRUE(pool.choose("k", 0, now) == &slow);
  // A job on fast long overdue is no sign of when it frees.
  EXPECT_TRUE(pool.choose("k", 6000000, now + 2500) == &slow);
  Job done;
  done.expected_end_ms = end;
  pool.release(fast, 1000, done);
  EXPECT_TRUE(pool.choose("k", 6000000, now + 1000) == &fast);
}

TEST(waiting_for_a_faster_slot_must_save_more_than_it_costs_the_next_job) {
  TwoSpeeds farm;
  Pool& pool = farm.pool;
  Channel &fast = *farm.fast, &slow = *farm.slow;
  int64_t now = 10000;
  pool.acquire(fast, now, 1500000);  // frees in 0.5 s
  // 3 MB: 3 s on slow, 0.5 + 1 s on fast. Meanwhile slow idles 0.5 s, and
  // the next job, a recent mean of 200 KB, loses 0.2 - 0.067 s on slow:
  // 2.13 s, waiting pays.
  EXPECT_TRUE(pool.choose("k", 3000000, now) == nullptr);
  // A next job of 300 KB loses 0.2 s: it still pays.
  EXPECT_TRUE(pool.choose("k", 3000000, now, 1, 300000) == nullptr);
  // One of 2.4 MB would lose 1.6 s: 3.6 s, no longer.
  EXPECT_TRUE(pool.choose("k", 3000000, now, 1, 2400000) == &slow);
  // The same through the queue: its second waiter is the next job.
  uint64_t ticket;
  EXPECT_TRUE(pool.enqueue(costing(3000000), now, &ticket) == Admission::Queued);
  EXPECT_TRUE(pool.enqueue(costing(300000), now, &ticket) == Admission::Queued);
  EXPECT_EQ(pool.serve_queue(now).size(), size_t(0));
  TwoSpeeds other;
  other.pool.acquire(*other.fast, now, 1500000);
  EXPECT_TRUE(other.pool.enqueue(costing(3000000), now, &ticket) == Admission::Queued);
  EXPECT_TRUE(other.pool.enqueue(costing(2400000), now, &ticket) == Admission::Queued);
  auto served = other.pool.serve_queue(now);
  EXPECT_EQ(served.size(), size_t(1));  // the big one on slow, the next waits for fast
  EXPECT_TRUE(served.size() == 1 && served[0].second == other.slow && served[0].first.cost == 3000000);
}

TEST(waiting_for_a_faster_slot_counts_every_free_slot_left_idle) {
  TwoSpeeds farm(4);  // four free slow slots
  Pool& pool = farm.pool;
  Channel &fast = *farm.fast, &slow = *farm.slow;
  int64_t now = 10000;
  pool.acquire(fast, now, 3000000);  // frees in 1 s
  // Alone, 6 MB waits for fast: 1 + 2 s, 1 s of one idle slot and 0.13 s
  // for the next job, against 6 s on slow.
  EXPECT_TRUE(pool.choose("k", 6000000, now) == nullptr);
  // With three behind it all four free slots would idle 1 s: 7.2 s.
  EXPECT_TRUE(pool.choose("k", 6000000, now, 3, 300000) == &slow);
  // 9 MB saves 5 s, more than that.
  EXPECT_TRUE(pool.choose("k", 9000000, now, 3, 300000) == nullptr);
}

TEST_MAIN()

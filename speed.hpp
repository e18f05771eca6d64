// Learning a host's speed from the jobs it serves (-L, `weight C auto`).
// Part of the pure pool: no sockets, no clock reads; times come in as
// plain milliseconds.
//
// A job is one relayed connection. Its work is the number of bytes the
// client sent (for distcc, the preprocessed source: a good measure of the
// compile), or, where requests are small and alike (most recent jobs under
// kMinJobBytes), simply 1: the speed is then jobs per second. One slot's
// speed is work per second: a ratio of sums over its last kSpeedWindow
// jobs, with the configured weight as a prior worth kPriorJobs jobs, so a
// channel starts from what the administrator said. Once a channel rests
// on kPriorJobs jobs, one job moves its estimate by at most a factor of
// kMaxStep, so an outlier cannot throw it far, while a real change is
// followed within a few jobs (a host 3x slower: about kSpeedWindow jobs).
//
// Speeds are compared with pinned weights through the pool-wide scale
// (work per second per unit of weight, over the last jobs of every
// channel), so a learned channel and a pinned one can share a group.
#ifndef BALANCE_SPEED_HPP
#define BALANCE_SPEED_HPP

#include <cstddef>
#include <cstdint>
#include <deque>

// What the relay knows of one finished job.
struct Job {
  uint64_t bytes = 0;  // sent by the client to the back-end
  int64_t ms = 0;      // from the start of the connect to the end
  bool clean = false;  // both directions ended normally: not reset, timed out or failed
  // Size-aware placement (-j): when it was expected to end, as
  // Pool::acquire() said (0: no expectation).
  int64_t expected_end_ms = 0;
};

constexpr uint64_t kMinJobBytes = 4096;  // smaller requests count as 1 job of work
constexpr int64_t kMinJobMs = 5;         // shorter jobs are too short to time
constexpr size_t kSpeedWindow = 8;       // the jobs an estimate rests on
constexpr double kPriorJobs = 3;         // what the configured weight is worth, in jobs
constexpr double kMaxStep = 1.2;         // one job moves an estimate by at most this factor
constexpr size_t kScaleWindow = 256;     // the jobs the pool-wide scale rests on
constexpr int64_t kDriftMs = 30000;      // a learned channel not chosen this long drifts back

enum class Basis { Bytes, Jobs };

// The speed of a learned channel that has not been measured yet: above
// any real one, so that it is tried first while it is idle.
constexpr double kUnmeasured = 1e30;

// Whether a finished job can be timed at all.
bool measurable(const Job& job);

// The pool-wide relation between work per second and weight, from the
// last kScaleWindow measured jobs of every channel: each job's work over
// its time times its channel's weight (the prior, for learned channels).
class SpeedScale {
 public:
  void record(const Job& job, unsigned weight);
  // Bytes while most recent jobs carry at least kMinJobBytes, else jobs.
  Basis basis() const { return small_ * 2 > jobs_.size() ? Basis::Jobs : Basis::Bytes; }
  // Work per second per unit of weight in the current basis; 0 until
  // some job was measured.
  double per_weight() const;
  // The mean work of a recent job, in the current basis.
  double mean_work() const;
  size_t jobs() const { return jobs_.size(); }

 private:
  struct Entry {
    uint64_t bytes;
    double weighted_seconds;  // seconds x weight
  };
  std::deque<Entry> jobs_;
  double bytes_ = 0, weighted_seconds_ = 0;
  size_t small_ = 0;  // entries under kMinJobBytes
};

// One channel's per-slot speed, learned in both bases.
class SpeedEstimate {
 public:
  // Adds a measured job of this channel; prior_weight is the configured
  // weight, scale the pool-wide relation (before this job is added to it).
  void record(const Job& job, unsigned prior_weight, const SpeedScale& scale);
  // Work per second of one slot in `basis`; 0 when no job was measured.
  double work_per_second(Basis basis) const { return estimate_[basis == Basis::Jobs ? 1 : 0]; }
  // The jobs the estimate rests on (at most kSpeedWindow).
  size_t jobs() const { return window_.size(); }
  // Moves the estimate in `basis` halfway toward `target` work per second,
  // or just above it once within 10 % (a channel not chosen for a long
  // while, so that one bad period does not starve it: it gets measured
  // again).
  void drift_toward(double target, Basis basis);

 private:
  struct Sample {
    uint64_t bytes;
    int64_t ms;
  };
  double prior_speed(int index, unsigned prior_weight, const SpeedScale& scale) const;
  std::deque<Sample> window_;
  uint64_t bytes_ = 0;
  int64_t ms_ = 0;
  double estimate_[2] = {0, 0};  // [0] bytes/s, [1] jobs/s
};

// Size-aware placement (-j): the expected cost of a job from the first
// bytes of its request. A distcc request ("DIST" + 8 hex digits, then
// tokens, one of them "DOTI" followed by the length of the preprocessed
// source) tells its size exactly; then *complete is true. Any other
// request counts what has arrived (`first` plus `queued` bytes still in
// the socket). 0 when nothing is known yet.
uint64_t request_cost(const char* first, size_t length, uint64_t queued, bool* complete);

#endif

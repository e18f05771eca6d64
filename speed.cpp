// Learned speeds (see speed.hpp).
#include "speed.hpp"

#include <algorithm>
#include <cstring>

namespace {

int index_of(Basis basis) { return basis == Basis::Jobs ? 1 : 0; }

}  // namespace

bool measurable(const Job& job) { return job.clean && job.ms >= kMinJobMs; }

// ---------------------------------------------------------------- scale

void SpeedScale::record(const Job& job, unsigned weight) {
  jobs_.push_back(Entry{job.bytes, double(job.ms) / 1000.0 * double(weight)});
  bytes_ += double(job.bytes);
  weighted_seconds_ += jobs_.back().weighted_seconds;
  small_ += job.bytes < kMinJobBytes;
  if (jobs_.size() > kScaleWindow) {
    const Entry& old = jobs_.front();
    bytes_ -= double(old.bytes);
    weighted_seconds_ -= old.weighted_seconds;
    small_ -= old.bytes < kMinJobBytes;
    jobs_.pop_front();
  }
}

double SpeedScale::per_weight() const {
  if (jobs_.empty() || weighted_seconds_ <= 0) return 0;
  double work = basis() == Basis::Jobs ? double(jobs_.size()) : bytes_;
  return work / weighted_seconds_;
}

double SpeedScale::mean_work() const {
  if (jobs_.empty()) return 0;
  return basis() == Basis::Jobs ? 1.0 : bytes_ / double(jobs_.size());
}

// ---------------------------------------------------------------- estimate

double SpeedEstimate::prior_speed(int index, unsigned prior_weight, const SpeedScale& scale) const {
  // The scale speaks of its current basis only; the other basis has no
  // prior (it is recomputed from the samples alone).
  if (index != index_of(scale.basis())) return 0;
  return double(prior_weight) * scale.per_weight();
}

void SpeedEstimate::record(const Job& job, unsigned prior_weight, const SpeedScale& scale) {
  window_.push_back(Sample{job.bytes, job.ms});
  bytes_ += job.bytes;
  ms_ += job.ms;
  if (window_.size() > kSpeedWindow) {
    bytes_ -= window_.front().bytes;
    ms_ -= window_.front().ms;
    window_.pop_front();
  }
  double seconds = double(ms_) / 1000.0;
  // The prior counts as kPriorJobs jobs while the window fills, fading
  // to nothing once it is full: a wrong weight does not bias for ever.
  double prior_jobs = kPriorJobs * (1.0 - double(window_.size()) / double(kSpeedWindow));
  for (int index = 0; index < 2; ++index) {
    double work = index == 0 ? double(bytes_) : double(window_.size());
    double prior = prior_speed(index, prior_weight, scale);
    double prior_work = index == 0 ? prior_jobs * scale.mean_work() : prior_jobs;
    if (prior <= 0 || index != index_of(scale.basis())) prior_work = 0;
    double raw = (work + prior_work) / (seconds + (prior_work > 0 ? prior_work / prior : 0));
    double& estimate = estimate_[index];
    // One job moves a settled estimate by a bounded step.
    if (estimate > 0 && double(window_.size()) > kPriorJobs)
      raw = std::min(std::max(raw, estimate / kMaxStep), estimate * kMaxStep);
    estimate = raw;
  }
}

void SpeedEstimate::drift_toward(double target, Basis basis) {
  double& estimate = estimate_[index_of(basis)];
  if (target <= 0 || estimate <= 0 || estimate >= target) return;
  estimate = estimate * 1.1 >= target ? target * 1.001 : (estimate + target) / 2;
  // Its oldest jobs are stale by now: the next job counts for more.
  for (size_t drop = window_.size() / 2; drop > 0; --drop) {
    bytes_ -= window_.front().bytes;
    ms_ -= window_.front().ms;
    window_.pop_front();
  }
}

// ---------------------------------------------------------------- request size

namespace {

// The 8 hex digits of a distcc token's value; false when they are not.
bool hex8(const char* text, uint64_t* value) {
  *value = 0;
  for (int i = 0; i < 8; ++i) {
    char ch = text[i];
    int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
    if (digit < 0) return false;
    *value = *value * 16 + uint64_t(digit);
  }
  return true;
}

// distcc tokens whose value is the length of a string that follows.
bool carries_string(const char* name) {
  for (const char* known : {"ARGV", "DOTI", "NAME", "FILE", "LINK", "CDIR"})
    if (std::strncmp(name, known, 4) == 0) return true;
  return false;
}

}  // namespace

uint64_t request_cost(const char* first, size_t length, uint64_t queued, bool* complete) {
  *complete = false;
  uint64_t value;
  if (length >= 12 && std::strncmp(first, "DIST", 4) == 0 && hex8(first + 4, &value)) {
    // Walk the tokens up to DOTI; a request cut short waits for more.
    size_t at = 12;
    while (at + 12 <= length) {
      const char* name = first + at;
      if (!hex8(name + 4, &value)) break;  // not distcc after all
      if (std::strncmp(name, "DOTI", 4) == 0) {
        *complete = true;
        return at + 12 + value;
      }
      at += 12;
      if (carries_string(name)) {
        if (value > length - at) return 0;  // its string has not all come yet
        at += size_t(value);
      }
    }
    if (at + 12 > length) return 0;  // more tokens to come
  }
  return uint64_t(length) + queued;
}

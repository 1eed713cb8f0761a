#pragma once
// Injected time: production uses RealClock, tests a FakeClock they step.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace kubelet {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  /** Wall-clock now: used for API timestamps and for back-off bookkeeping. */
  virtual TimePoint Now() const = 0;
};

class RealClock : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint(std::chrono::seconds(1'700'000'000))) : now_(start) {}
  TimePoint Now() const override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  void Step(Duration d) {
    std::lock_guard<std::mutex> l(mu_);
    now_ += std::chrono::duration_cast<TimePoint::duration>(d);
  }
  void Set(TimePoint t) {
    std::lock_guard<std::mutex> l(mu_);
    now_ = t;
  }

 private:
  mutable std::mutex mu_;
  TimePoint now_;
};

/** RFC 3339 in UTC with second precision, as Kubernetes metav1.Time writes it. */
std::string FormatRFC3339(TimePoint t);
/** RFC 3339 in UTC with nanoseconds, trailing zeros dropped (Go's RFC3339Nano), as CRI logs carry it. */
std::string FormatRFC3339Nano(TimePoint t);
/** RFC 3339 in UTC with microseconds, as metav1.MicroTime writes it. */
std::string FormatRFC3339Micro(TimePoint t);
/** Parses "2006-01-02T15:04:05Z" (a fraction, kept to the nanosecond, and an offset accepted). */
bool ParseRFC3339(const std::string& s, TimePoint* out);
int64_t ToUnixNanos(TimePoint t);
TimePoint FromUnixNanos(int64_t ns);

}  // namespace kubelet

#pragma once
// Per-key exponential back-off with the semantics of client-go's
// flowcontrol.Backoff: an entry doubles on each Next() up to max and starts
// over once 2*max has passed since its last update.
#include <map>
#include <mutex>
#include <string>

#include "kubelet/util/clock.h"

namespace kubelet {

class Backoff {
 public:
  Backoff(Duration initial, Duration max, const Clock* clock) : initial_(initial), max_(max), clock_(clock) {}

  /** Current back-off for id, zero when unknown. */
  Duration Get(const std::string& id) const;
  /** Records a failure at event_time and grows the back-off. */
  void Next(const std::string& id, TimePoint event_time);
  /** True while less than the current back-off has passed since event_time. */
  bool IsInBackOffSince(const std::string& id, TimePoint event_time) const;
  void Reset(const std::string& id);
  /** Drops entries not updated for 2*max; keeps the map bounded. */
  void GC();
  size_t Size() const;

 private:
  struct Entry {
    Duration backoff;
    TimePoint last_update;
  };
  bool Expired(TimePoint now, TimePoint last) const { return now - last > 2 * max_; }

  const Duration initial_;
  const Duration max_;
  const Clock* clock_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace kubelet

#include "kubelet/util/backoff.h"

#include <algorithm>

namespace kubelet {

Duration Backoff::Get(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? Duration::zero() : it->second.backoff;
}

void Backoff::Next(const std::string& id, TimePoint event_time) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || Expired(event_time, it->second.last_update)) {
    entries_[id] = Entry{initial_, event_time};
    return;
  }
  it->second.backoff = std::min<Duration>(it->second.backoff * 2, max_);
  it->second.last_update = event_time;
}

bool Backoff::IsInBackOffSince(const std::string& id, TimePoint event_time) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  TimePoint now = clock_->Now();
  if (Expired(now, it->second.last_update)) return false;
  return now - event_time < it->second.backoff;
}

void Backoff::Reset(const std::string& id) {
  std::lock_guard<std::mutex> l(mu_);
  entries_.erase(id);
}

void Backoff::GC() {
  std::lock_guard<std::mutex> l(mu_);
  TimePoint now = clock_->Now();
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (Expired(now, it->second.last_update)) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t Backoff::Size() const {
  std::lock_guard<std::mutex> l(mu_);
  return entries_.size();
}

}  // namespace kubelet

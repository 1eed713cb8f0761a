#include "kubelet/util/operation_executor.h"

#include "kubelet/util/guard.h"

namespace kubelet {

OperationExecutor::OperationExecutor(std::string name, std::chrono::milliseconds initial_backoff,
                                     std::chrono::milliseconds max_backoff)
    : name_(std::move(name)), initial_(initial_backoff), max_(max_backoff) {}

OperationExecutor::~OperationExecutor() { Stop(); }

void OperationExecutor::JoinFinishedLocked(std::unique_lock<std::mutex>& l) {
  std::vector<std::thread> done;
  done.swap(finished_);
  l.unlock();
  for (auto& t : done)
    if (t.joinable()) t.join();
  l.lock();
}

void OperationExecutor::PruneLocked(Steady::time_point now) {
  for (auto it = ops_.begin(); it != ops_.end();) {
    const Entry& e = it->second;
    // A back-off that ended more than twice the maximum ago is forgotten, as a fresh key.
    bool stale = !e.running && !e.thread.joinable() && (e.backoff.count() == 0 || now > e.retry_at + 2 * max_);
    it = stale ? ops_.erase(it) : std::next(it);
  }
}

absl::Status OperationExecutor::Run(const std::string& key, std::function<absl::Status()> op) {
  std::unique_lock<std::mutex> l(mu_);
  if (stopped_) return absl::CancelledError(name_ + ": stopped");
  if (!finished_.empty()) JoinFinishedLocked(l);
  auto now = Steady::now();
  PruneLocked(now);
  Entry& e = ops_[key];
  if (e.running) return absl::AlreadyExistsError(name_ + ": an operation for " + key + " is already running");
  if (now < e.retry_at) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(e.retry_at - now).count();
    return absl::UnavailableError(name_ + ": " + key + " failed before; no retries permitted for " + std::to_string(left) + "ms");
  }
  e.running = true;
  e.thread = std::thread([this, key, op = std::move(op)] {
    absl::Status st = Guarded(name_ + " " + key, op);
    std::lock_guard<std::mutex> g(mu_);
    auto it = ops_.find(key);
    if (it == ops_.end()) return;
    Entry& me = it->second;
    me.running = false;
    if (st.ok()) {
      me.backoff = std::chrono::milliseconds(0);
      me.retry_at = {};
    } else {
      me.backoff = me.backoff.count() == 0 ? initial_ : std::min(max_, me.backoff * 2);
      me.retry_at = Steady::now() + me.backoff;
    }
    finished_.push_back(std::move(me.thread));
    cv_.notify_all();
  });
  return absl::OkStatus();
}

bool OperationExecutor::IsRunning(const std::string& key) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = ops_.find(key);
  return it != ops_.end() && it->second.running;
}

void OperationExecutor::ResetBackoff(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = ops_.find(key);
  if (it == ops_.end() || it->second.running) return;
  it->second.backoff = std::chrono::milliseconds(0);
  it->second.retry_at = {};
}

void OperationExecutor::Stop() {
  std::unique_lock<std::mutex> l(mu_);
  stopped_ = true;
  cv_.wait(l, [this] {
    for (const auto& [k, e] : ops_)
      if (e.running) return false;
    return true;
  });
  JoinFinishedLocked(l);
}

size_t OperationExecutor::Size() const {
  std::lock_guard<std::mutex> l(mu_);
  return ops_.size();
}

}  // namespace kubelet

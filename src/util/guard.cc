#include "kubelet/util/guard.h"

#include "kubelet/util/logging.h"

namespace kubelet {

namespace {
constexpr const char* kRetryLaterPayload = "type.kubelet.io/retry-later";
}  // namespace

absl::Status RetryLater(absl::Status st) {
  if (!st.ok()) st.SetPayload(kRetryLaterPayload, absl::Cord("1"));
  return st;
}

bool IsRetryLater(const absl::Status& st) { return !st.ok() && st.GetPayload(kRetryLaterPayload).has_value(); }
namespace {
std::atomic<int64_t> g_recovered{0};
thread_local CancelToken* t_cancel = nullptr;

std::string Describe(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

void Report(const std::string& job, const std::string& what) {
  g_recovered.fetch_add(1);
  static auto log = log::Get("runtime");
  log->error("Observed a panic job=\"{}\" panic=\"{}\"", job, what);
}
}  // namespace

int64_t RecoveredExceptions() { return g_recovered.load(); }

absl::Status Guarded(const std::string& job, const std::function<absl::Status()>& fn) {
  try {
    return fn();
  } catch (...) {
    std::string what = Describe(std::current_exception());
    Report(job, what);
    return absl::InternalError(job + ": " + what);
  }
}

void GuardedRun(const std::string& job, const std::function<void()>& fn) {
  try {
    fn();
  } catch (...) {
    Report(job, Describe(std::current_exception()));
  }
}

void CancelToken::Cancel() {
  std::lock_guard<std::mutex> l(mu_);
  if (cancelled_.exchange(true)) return;
  for (auto& [id, fn] : hooks_) GuardedRun("cancel hook", fn);
  hooks_.clear();
}

int CancelToken::Register(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  if (cancelled_.load()) {
    GuardedRun("cancel hook", fn);
    return -1;
  }
  int id = next_id_++;
  hooks_.emplace(id, std::move(fn));
  return id;
}

void CancelToken::Unregister(int id) {
  std::lock_guard<std::mutex> l(mu_);
  hooks_.erase(id);
}

CancelScope::CancelScope(CancelToken* token) : prev_(t_cancel) { t_cancel = token; }
CancelScope::~CancelScope() { t_cancel = prev_; }
bool CancelScope::Cancelled() { return t_cancel && t_cancel->cancelled(); }
CancelToken* CancelScope::Current() { return t_cancel; }

OnCancel::OnCancel(std::function<void()> fn) : token_(t_cancel) {
  if (token_) id_ = token_->Register(std::move(fn));
}
OnCancel::~OnCancel() {
  if (token_ && id_ >= 0) token_->Unregister(id_);
}

}  // namespace kubelet

#include "kubelet/util/guard.h"

#include "kubelet/util/logging.h"

namespace kubelet {
namespace {
std::atomic<int64_t> g_recovered{0};
thread_local const std::atomic<bool>* t_cancel = nullptr;

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

CancelScope::CancelScope(const std::atomic<bool>* flag) : prev_(t_cancel) { t_cancel = flag; }
CancelScope::~CancelScope() { t_cancel = prev_; }
bool CancelScope::Cancelled() { return t_cancel && t_cancel->load(); }

}  // namespace kubelet

#pragma once
// klog-style logging on spdlog: one named logger per component, lines like
//   I1129 00:23:16.123456    4242 kuberuntime] message key=value
// Verbosity follows --v: V(n) lines print when n <= the configured level.
#include <memory>
#include <string>

#include <absl/strings/string_view.h>
#include <spdlog/spdlog.h>

#if !defined(ABSL_USES_STD_STRING_VIEW)
// Debian's abseil has its own string_view (what absl::Status::message() returns): teach fmt to print it.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
#endif

namespace kubelet::log {

void Init(int verbosity);
int Verbosity();
void SetVerbosity(int v);
std::shared_ptr<spdlog::logger> Get(const std::string& component);

}  // namespace kubelet::log

#define KLOG_V(logger, n) \
  if (::kubelet::log::Verbosity() >= (n)) (logger)->info

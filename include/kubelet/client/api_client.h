#pragma once
// A client for kube-apiserver over HTTPS (libcurl: keep-alive connection
// reuse, HTTP/2 when the server offers it). Every request is rate-limited
// (kubeAPIQPS/kubeAPIBurst), carries a timeout and is retried with back-off
// and jitter on 429, 5xx and connection errors, honouring Retry-After. Error
// answers are decoded from the Status object the server returns.
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/client/kubeconfig.h"
#include "kubelet/util/clock.h"

namespace kubelet::client {

enum class PatchType { kMerge, kStrategicMerge, kJSON };

struct ClientOptions {
  double qps = 50;
  int burst = 100;
  Duration timeout = std::chrono::seconds(30);
  int max_retries = 5;
  Duration initial_backoff = std::chrono::milliseconds(200);
  Duration max_backoff = std::chrono::seconds(10);
  std::string user_agent = "kubelet/v1.31.0 (linux/amd64) kubelet-cpp";
  // A watch that receives nothing (no event, no bookmark) for this long is ended and re-opened from its
  // resourceVersion: a half-open connection is noticed within it, as client-go's HTTP/2 pings notice it.
  Duration watch_idle_timeout = std::chrono::seconds(60);
};

/** Upstream reasons: "NotFound", "AlreadyExists", "Conflict", "Expired"/"Gone", ... */
std::string StatusReason(const absl::Status& st);

class ApiClient {
 public:
  virtual ~ApiClient() = default;
  virtual absl::StatusOr<nlohmann::json> Get(const std::string& path) = 0;
  virtual absl::StatusOr<nlohmann::json> Create(const std::string& path, const nlohmann::json& obj) = 0;
  virtual absl::StatusOr<nlohmann::json> Update(const std::string& path, const nlohmann::json& obj) = 0;
  virtual absl::StatusOr<nlohmann::json> Patch(const std::string& path, const nlohmann::json& patch, PatchType type) = 0;
  virtual absl::Status Delete(const std::string& path, const nlohmann::json& options) = 0;
  /**
   * Opens a watch (path must carry watch=true) and calls on_event with each
   * event object until the server ends the stream, on_event returns false, or
   * stop becomes true. Returns OK when the stream ended normally.
   */
  virtual absl::Status Watch(const std::string& path, const std::function<bool(const nlohmann::json&)>& on_event,
                             const std::atomic<bool>* stop) = 0;
  /** Requests sent so far (for the API-requests benchmark). */
  virtual int64_t RequestCount() const = 0;
};

std::unique_ptr<ApiClient> NewApiClient(const RestConfig& config, const ClientOptions& options);

}  // namespace kubelet::client

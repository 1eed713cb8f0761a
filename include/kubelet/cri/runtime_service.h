#pragma once
// The kubelet's view of a CRI runtime (runtime.v1). The remote implementation
// talks gRPC over a unix socket with a deadline on every call; tests use
// the same interface against a fake runtime speaking the same wire protocol.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "runtime/v1/api.pb.h"
#include "kubelet/util/clock.h"

namespace kubelet::metrics {
class KubeletMetrics;
}

namespace kubelet::cri {

namespace rt = ::runtime::v1;

class RuntimeService {
 public:
  virtual ~RuntimeService() = default;
  virtual absl::StatusOr<rt::VersionResponse> Version() = 0;
  /** Returns the new sandbox's ID. */
  virtual absl::StatusOr<std::string> RunPodSandbox(const rt::PodSandboxConfig& config, const std::string& handler) = 0;
  virtual absl::Status StopPodSandbox(const std::string& id) = 0;
  virtual absl::Status RemovePodSandbox(const std::string& id) = 0;
  /** verbose adds the runtime's info map (containerd: pid, runtimeSpec with the network namespace path, ...). */
  virtual absl::StatusOr<rt::PodSandboxStatusResponse> PodSandboxStatus(const std::string& id, bool verbose = false) = 0;
  virtual absl::StatusOr<std::vector<rt::PodSandbox>> ListPodSandbox(const rt::PodSandboxFilter* filter) = 0;
  /** Returns the new container's ID. */
  virtual absl::StatusOr<std::string> CreateContainer(const std::string& sandbox_id, const rt::ContainerConfig& config,
                                                      const rt::PodSandboxConfig& sandbox_config) = 0;
  virtual absl::Status StartContainer(const std::string& id) = 0;
  /** Stops with a grace period of timeout_seconds, then kills. */
  virtual absl::Status StopContainer(const std::string& id, int64_t timeout_seconds) = 0;
  virtual absl::Status RemoveContainer(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<rt::Container>> ListContainers(const rt::ContainerFilter* filter) = 0;
  virtual absl::StatusOr<rt::ContainerStatus> ContainerStatus(const std::string& id) = 0;
  /**
   * The runtime ends the command after `timeout` (0: never). The call itself is abandoned after `call_deadline`;
   * zero means upstream's timeout + the runtime request timeout.
   */
  virtual absl::StatusOr<rt::ExecSyncResponse> ExecSync(const std::string& id, const std::vector<std::string>& cmd,
                                                        Duration timeout, Duration call_deadline = Duration::zero()) = 0;
  /** Streaming calls: the URL on the runtime's streaming server that serves this exec, attach or port-forward. */
  virtual absl::StatusOr<std::string> Exec(const rt::ExecRequest& req) {
    (void)req;
    return absl::UnimplementedError("Exec is not supported by this runtime");
  }
  virtual absl::StatusOr<std::string> Attach(const rt::AttachRequest& req) {
    (void)req;
    return absl::UnimplementedError("Attach is not supported by this runtime");
  }
  virtual absl::StatusOr<std::string> PortForward(const rt::PortForwardRequest& req) {
    (void)req;
    return absl::UnimplementedError("PortForward is not supported by this runtime");
  }
  virtual absl::StatusOr<rt::StatusResponse> Status() = 0;
  /** Has the runtime reopen the container's log file (after the kubelet renamed it away for rotation). */
  virtual absl::Status ReopenContainerLog(const std::string& id) = 0;
  /** The runtime's cgroup driver (CRI RuntimeConfig); Unimplemented on runtimes older than CRI v1.28. */
  virtual absl::StatusOr<rt::RuntimeConfigResponse> RuntimeConfig() = 0;
  virtual absl::Status UpdateContainerResources(const std::string& id, const rt::LinuxContainerResources& resources) = 0;
  virtual absl::StatusOr<std::vector<rt::ContainerStats>> ListContainerStats() = 0;
};

class ImageService {
 public:
  virtual ~ImageService() = default;
  /** The image, or nullopt when the runtime does not have it. */
  virtual absl::StatusOr<std::optional<rt::Image>> ImageStatus(const rt::ImageSpec& image) = 0;
  /** Returns the image reference (ID) of the pulled image. */
  virtual absl::StatusOr<std::string> PullImage(const rt::ImageSpec& image, const rt::AuthConfig* auth,
                                                const rt::PodSandboxConfig* sandbox_config) = 0;
  virtual absl::StatusOr<std::vector<rt::Image>> ListImages() = 0;
  virtual absl::Status RemoveImage(const rt::ImageSpec& image) = 0;
  virtual absl::StatusOr<rt::ImageFsInfoResponse> ImageFsInfo() = 0;
};

struct RemoteOptions {
  std::string runtime_endpoint;  // unix:///path or /path
  std::string image_endpoint;    // empty: same as runtime
  Duration timeout = std::chrono::minutes(2);
  // Pulls get their own, longer deadline: a big image legitimately takes minutes.
  Duration pull_timeout = std::chrono::minutes(30);
  metrics::KubeletMetrics* metrics = nullptr;
};

class RemoteRuntime : public RuntimeService, public ImageService {};

std::unique_ptr<RemoteRuntime> NewRemoteRuntime(const RemoteOptions& options);

/** "unix:///run/x.sock" -> "unix:/run/x.sock" for gRPC; a bare path gets the scheme. */
std::string GrpcTarget(const std::string& endpoint);

}  // namespace kubelet::cri

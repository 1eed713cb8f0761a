#include <chrono>

#include <grpcpp/grpcpp.h>

#include "kubelet/cri/runtime_service.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/util/grpc_error.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"
#include "runtime/v1/api.grpc.pb.h"

namespace kubelet::cri {
namespace {

absl::StatusCode ToAbsl(grpc::StatusCode c) { return static_cast<absl::StatusCode>(static_cast<int>(c)); }

const char* CodeName(grpc::StatusCode c) { return GrpcCodeName(c); }

class RemoteRuntimeImpl : public RemoteRuntime {
 public:
  explicit RemoteRuntimeImpl(const RemoteOptions& o) : opts_(o), log_(log::Get("remote_runtime")) {
    grpc::ChannelArguments args;
    // After containerd restarts, reconnect within a couple of seconds rather
    // than gRPC's default of up to two minutes.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
    args.SetMaxSendMessageSize(16 * 1024 * 1024);
    auto rch = grpc::CreateCustomChannel(GrpcTarget(o.runtime_endpoint), grpc::InsecureChannelCredentials(), args);
    runtime_ = rt::RuntimeService::NewStub(rch);
    auto ich = o.image_endpoint.empty() || o.image_endpoint == o.runtime_endpoint
                   ? rch
                   : grpc::CreateCustomChannel(GrpcTarget(o.image_endpoint), grpc::InsecureChannelCredentials(), args);
    image_ = rt::ImageService::NewStub(ich);
  }

  absl::StatusOr<rt::VersionResponse> Version() override {
    rt::VersionRequest req;
    req.set_version("0.1.0");
    rt::VersionResponse resp;
    auto st = Call("version", "Version", opts_.timeout, [&](grpc::ClientContext* c) { return runtime_->Version(c, req, &resp); });
    if (!st.ok()) return st;
    return resp;
  }

  absl::StatusOr<std::string> RunPodSandbox(const rt::PodSandboxConfig& config, const std::string& handler) override {
    rt::RunPodSandboxRequest req;
    *req.mutable_config() = config;
    req.set_runtime_handler(handler);
    rt::RunPodSandboxResponse resp;
    // Sandbox creation includes network setup: upstream allows it twice the usual time.
    auto st = Call("run_podsandbox", "RunPodSandbox", opts_.timeout * 2,
                   [&](grpc::ClientContext* c) { return runtime_->RunPodSandbox(c, req, &resp); });
    if (!st.ok()) return st;
    if (resp.pod_sandbox_id().empty())
      return absl::InternalError("RunPodSandbox for pod " + config.metadata().name() + " returned an empty sandbox ID");
    return resp.pod_sandbox_id();
  }

  absl::Status StopPodSandbox(const std::string& id) override {
    rt::StopPodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    rt::StopPodSandboxResponse resp;
    return Call("stop_podsandbox", "StopPodSandbox", opts_.timeout,
                [&](grpc::ClientContext* c) { return runtime_->StopPodSandbox(c, req, &resp); });
  }

  absl::Status RemovePodSandbox(const std::string& id) override {
    rt::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    rt::RemovePodSandboxResponse resp;
    return Call("remove_podsandbox", "RemovePodSandbox", opts_.timeout,
                [&](grpc::ClientContext* c) { return runtime_->RemovePodSandbox(c, req, &resp); });
  }

  absl::StatusOr<rt::PodSandboxStatusResponse> PodSandboxStatus(const std::string& id, bool verbose) override {
    rt::PodSandboxStatusRequest req;
    req.set_verbose(verbose);
    req.set_pod_sandbox_id(id);
    rt::PodSandboxStatusResponse resp;
    auto st = Call("podsandbox_status", "PodSandboxStatus", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->PodSandboxStatus(c, req, &resp); });
    if (!st.ok()) return st;
    return resp;
  }

  absl::StatusOr<std::vector<rt::PodSandbox>> ListPodSandbox(const rt::PodSandboxFilter* filter) override {
    rt::ListPodSandboxRequest req;
    if (filter) *req.mutable_filter() = *filter;
    rt::ListPodSandboxResponse resp;
    auto st = Call("list_podsandbox", "ListPodSandbox", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->ListPodSandbox(c, req, &resp); });
    if (!st.ok()) return st;
    return std::vector<rt::PodSandbox>(resp.items().begin(), resp.items().end());
  }

  absl::StatusOr<std::string> CreateContainer(const std::string& sandbox_id, const rt::ContainerConfig& config,
                                              const rt::PodSandboxConfig& sandbox_config) override {
    rt::CreateContainerRequest req;
    req.set_pod_sandbox_id(sandbox_id);
    *req.mutable_config() = config;
    *req.mutable_sandbox_config() = sandbox_config;
    rt::CreateContainerResponse resp;
    auto st = Call("create_container", "CreateContainer", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->CreateContainer(c, req, &resp); });
    if (!st.ok()) return st;
    if (resp.container_id().empty())
      return absl::InternalError("CreateContainer for " + config.metadata().name() + " returned an empty container ID");
    return resp.container_id();
  }

  absl::Status StartContainer(const std::string& id) override {
    rt::StartContainerRequest req;
    req.set_container_id(id);
    rt::StartContainerResponse resp;
    return Call("start_container", "StartContainer", opts_.timeout,
                [&](grpc::ClientContext* c) { return runtime_->StartContainer(c, req, &resp); });
  }

  absl::Status StopContainer(const std::string& id, int64_t timeout_seconds) override {
    rt::StopContainerRequest req;
    req.set_container_id(id);
    req.set_timeout(timeout_seconds);
    rt::StopContainerResponse resp;
    // The runtime waits out the grace period: the deadline covers it plus the usual timeout.
    return Call("stop_container", "StopContainer", opts_.timeout + std::chrono::seconds(timeout_seconds),
                [&](grpc::ClientContext* c) { return runtime_->StopContainer(c, req, &resp); });
  }

  absl::Status RemoveContainer(const std::string& id) override {
    rt::RemoveContainerRequest req;
    req.set_container_id(id);
    rt::RemoveContainerResponse resp;
    return Call("remove_container", "RemoveContainer", opts_.timeout,
                [&](grpc::ClientContext* c) { return runtime_->RemoveContainer(c, req, &resp); });
  }

  absl::StatusOr<std::vector<rt::Container>> ListContainers(const rt::ContainerFilter* filter) override {
    rt::ListContainersRequest req;
    if (filter) *req.mutable_filter() = *filter;
    rt::ListContainersResponse resp;
    auto st = Call("list_containers", "ListContainers", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->ListContainers(c, req, &resp); });
    if (!st.ok()) return st;
    return std::vector<rt::Container>(resp.containers().begin(), resp.containers().end());
  }

  absl::StatusOr<rt::ContainerStatus> ContainerStatus(const std::string& id) override {
    rt::ContainerStatusRequest req;
    req.set_container_id(id);
    rt::ContainerStatusResponse resp;
    auto st = Call("container_status", "ContainerStatus", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->ContainerStatus(c, req, &resp); });
    if (!st.ok()) return st;
    if (!resp.has_status()) return absl::InternalError("ContainerStatus for " + id + " returned no status");
    return resp.status();
  }

  absl::StatusOr<rt::ExecSyncResponse> ExecSync(const std::string& id, const std::vector<std::string>& cmd,
                                                Duration timeout, Duration call_deadline) override {
    rt::ExecSyncRequest req;
    req.set_container_id(id);
    for (const auto& c : cmd) req.add_cmd(c);
    req.set_timeout(std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
    rt::ExecSyncResponse resp;
    Duration deadline = call_deadline > Duration::zero() ? call_deadline
                        : timeout > Duration::zero()  ? timeout + opts_.timeout
                                                      : opts_.timeout;
    auto st = Call("exec_sync", "ExecSync", deadline, [&](grpc::ClientContext* c) { return runtime_->ExecSync(c, req, &resp); });
    if (!st.ok()) return st;
    return resp;
  }

  absl::StatusOr<std::string> Exec(const rt::ExecRequest& req) override {
    rt::ExecResponse resp;
    auto st = Call("exec", "Exec", opts_.timeout, [&](grpc::ClientContext* c) { return runtime_->Exec(c, req, &resp); });
    if (!st.ok()) return st;
    return resp.url();
  }

  absl::StatusOr<std::string> Attach(const rt::AttachRequest& req) override {
    rt::AttachResponse resp;
    auto st = Call("attach", "Attach", opts_.timeout, [&](grpc::ClientContext* c) { return runtime_->Attach(c, req, &resp); });
    if (!st.ok()) return st;
    return resp.url();
  }

  absl::StatusOr<std::string> PortForward(const rt::PortForwardRequest& req) override {
    rt::PortForwardResponse resp;
    auto st = Call("port_forward", "PortForward", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->PortForward(c, req, &resp); });
    if (!st.ok()) return st;
    return resp.url();
  }

  absl::Status ReopenContainerLog(const std::string& id) override {
    rt::ReopenContainerLogRequest req;
    req.set_container_id(id);
    rt::ReopenContainerLogResponse resp;
    return Call("reopen_container_log", "ReopenContainerLog", opts_.timeout,
                [&](grpc::ClientContext* c) { return runtime_->ReopenContainerLog(c, req, &resp); });
  }

  absl::StatusOr<rt::RuntimeConfigResponse> RuntimeConfig() override {
    rt::RuntimeConfigRequest req;
    rt::RuntimeConfigResponse resp;
    auto st = Call("runtime_config", "RuntimeConfig", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->RuntimeConfig(c, req, &resp); });
    if (!st.ok()) return st;
    return resp;
  }

  absl::Status UpdateContainerResources(const std::string& id, const rt::LinuxContainerResources& resources) override {
    rt::UpdateContainerResourcesRequest req;
    req.set_container_id(id);
    *req.mutable_linux() = resources;
    rt::UpdateContainerResourcesResponse resp;
    return Call("update_container", "UpdateContainerResources", opts_.timeout,
                [&](grpc::ClientContext* c) { return runtime_->UpdateContainerResources(c, req, &resp); });
  }

  absl::StatusOr<std::vector<rt::ContainerStats>> ListContainerStats() override {
    rt::ListContainerStatsRequest req;
    rt::ListContainerStatsResponse resp;
    auto st = Call("list_container_stats", "ListContainerStats", opts_.timeout,
                   [&](grpc::ClientContext* c) { return runtime_->ListContainerStats(c, req, &resp); });
    if (!st.ok()) return st;
    return std::vector<rt::ContainerStats>(resp.stats().begin(), resp.stats().end());
  }

  absl::StatusOr<rt::StatusResponse> Status() override {
    rt::StatusRequest req;
    rt::StatusResponse resp;
    auto st = Call("status", "Status", opts_.timeout, [&](grpc::ClientContext* c) { return runtime_->Status(c, req, &resp); });
    if (!st.ok()) return st;
    return resp;
  }

  absl::StatusOr<std::optional<rt::Image>> ImageStatus(const rt::ImageSpec& image) override {
    rt::ImageStatusRequest req;
    *req.mutable_image() = image;
    rt::ImageStatusResponse resp;
    auto st = Call("image_status", "ImageStatus", opts_.timeout,
                   [&](grpc::ClientContext* c) { return image_->ImageStatus(c, req, &resp); });
    if (!st.ok()) return st;
    if (!resp.has_image()) return std::optional<rt::Image>();
    return std::optional<rt::Image>(resp.image());
  }

  absl::StatusOr<std::string> PullImage(const rt::ImageSpec& image, const rt::AuthConfig* auth,
                                        const rt::PodSandboxConfig* sandbox_config) override {
    rt::PullImageRequest req;
    *req.mutable_image() = image;
    if (auth) *req.mutable_auth() = *auth;
    if (sandbox_config) *req.mutable_sandbox_config() = *sandbox_config;
    rt::PullImageResponse resp;
    // A pull is the one call a kill of the same pod cancels while it runs (as upstream cancels the pod's context).
    auto st = Call("pull_image", "PullImage", opts_.pull_timeout,
                   [&](grpc::ClientContext* c) { return image_->PullImage(c, req, &resp); }, /*cancellable=*/true);
    if (!st.ok()) return st;
    if (resp.image_ref().empty()) return absl::InternalError("PullImage of " + image.image() + " returned an empty image ref");
    return resp.image_ref();
  }

  absl::StatusOr<std::vector<rt::Image>> ListImages() override {
    rt::ListImagesRequest req;
    rt::ListImagesResponse resp;
    auto st = Call("list_images", "ListImages", opts_.timeout, [&](grpc::ClientContext* c) { return image_->ListImages(c, req, &resp); });
    if (!st.ok()) return st;
    return std::vector<rt::Image>(resp.images().begin(), resp.images().end());
  }

  absl::Status RemoveImage(const rt::ImageSpec& image) override {
    rt::RemoveImageRequest req;
    *req.mutable_image() = image;
    rt::RemoveImageResponse resp;
    return Call("remove_image", "RemoveImage", opts_.timeout, [&](grpc::ClientContext* c) { return image_->RemoveImage(c, req, &resp); });
  }

  absl::StatusOr<rt::ImageFsInfoResponse> ImageFsInfo() override {
    rt::ImageFsInfoRequest req;
    rt::ImageFsInfoResponse resp;
    auto st = Call("image_fs_info", "ImageFsInfo", opts_.timeout,
                   [&](grpc::ClientContext* c) { return image_->ImageFsInfo(c, req, &resp); });
    if (!st.ok()) return st;
    return resp;
  }

 private:
  template <typename F>
  absl::Status Call(const char* op, const char* rpc, Duration timeout, F&& fn, bool cancellable = false) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
    auto start = std::chrono::steady_clock::now();
    grpc::Status s;
    if (cancellable) {
      OnCancel hook([&ctx] { ctx.TryCancel(); });
      if (CancelScope::Cancelled()) return absl::CancelledError(std::string(rpc) + " not sent: the pod is being killed");
      s = fn(&ctx);
    } else {
      s = fn(&ctx);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (opts_.metrics) opts_.metrics->ObserveRuntimeOperation(op, secs, !s.ok());
    if (s.ok()) return absl::OkStatus();
    std::string msg = std::string(rpc) + " failed: rpc error: code = " + CodeName(s.error_code()) +
                      " desc = " + s.error_message();
    if (s.error_code() == grpc::UNAVAILABLE) msg += " (runtime endpoint " + opts_.runtime_endpoint + ")";
    if (s.error_code() == grpc::DEADLINE_EXCEEDED)
      msg += " (no answer within " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) + "ms)";
    KLOG_V(log_, 4)("CRI {} error: {}", rpc, msg);
    return absl::Status(ToAbsl(s.error_code()), msg);
  }

  RemoteOptions opts_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<rt::RuntimeService::Stub> runtime_;
  std::unique_ptr<rt::ImageService::Stub> image_;
};

}  // namespace

std::string GrpcTarget(const std::string& endpoint) {
  if (endpoint.rfind("unix://", 0) == 0) return "unix:" + endpoint.substr(7);
  if (!endpoint.empty() && endpoint[0] == '/') return "unix:" + endpoint;
  return endpoint;
}

std::unique_ptr<RemoteRuntime> NewRemoteRuntime(const RemoteOptions& options) {
  return std::make_unique<RemoteRuntimeImpl>(options);
}

}  // namespace kubelet::cri

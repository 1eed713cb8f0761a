#pragma once
// A stateful fake CRI runtime: a real gRPC server on a unix socket speaking
// runtime.v1, keeping sandboxes, containers and images as containerd would,
// rejecting what containerd rejects, recording calls and injecting errors
// and delays. Stop() and Start() again simulate a runtime restart (state is
// kept, as containerd keeps its containers).
#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "runtime/v1/api.grpc.pb.h"
#include "kubelet/util/clock.h"

namespace kubelet::testing {

namespace rt = ::runtime::v1;

class FakeRuntime {
 public:
  explicit FakeRuntime(std::string socket_path);
  ~FakeRuntime();
  bool Start();
  void Stop();
  std::string endpoint() const { return "unix://" + socket_; }

  /** The next `times` calls of `method` (e.g. "CreateContainer") fail with `code`. */
  void InjectError(const std::string& method, grpc::StatusCode code, int times = 1);
  void SetDelay(const std::string& method, Duration d);
  int CallCount(const std::string& method) const;
  void ResetCalls();
  /** An image the runtime has; `pinned` as containerd pins the sandbox image. */
  void AddImage(const std::string& ref, uint64_t size = 1 << 20, bool pinned = false);
  bool HasImage(const std::string& ref) const;
  /** Simulates the container's process exiting. */
  bool ExitContainer(const std::string& id, int exit_code);
  std::vector<rt::Container> Containers() const;
  std::vector<rt::PodSandbox> Sandboxes() const;
  /** The config a container was created with. */
  std::optional<rt::ContainerConfig> ConfigOf(const std::string& id) const;
  /** Called (outside the lock) after each successful StartContainer with the container ID. */
  void SetOnStart(std::function<void(const std::string&)> fn);
  /** Containers with this name exit with `code` right after they start (a process that finishes at once). */
  void SetExitOnStart(const std::string& container_name, int code);
  /** Appends lines to the container's log file in the CRI format (what its process would print). */
  bool WriteLog(const std::string& id, const std::string& stream, const std::string& text);
  /** Called (outside the lock) on each PullImage with the image, before it is pulled: a test can hold a pull there. */
  void SetOnPull(std::function<void(const std::string& image)> fn);
  /** Called (outside the lock) on each StopContainer with the container's name, before it stops. */
  void SetOnStop(std::function<void(const std::string& container_name)> fn);
  /** What ExecSync answers: (exit code, output) for a command in a running container, by container name. */
  using ExecFn = std::function<std::pair<int, std::string>(const std::string& container_name, const std::vector<std::string>& cmd)>;
  void SetExec(ExecFn fn);
  /** What CRI RuntimeConfig reports; unset (the default) answers Unimplemented, as containerd 1.6 does. */
  void SetCgroupDriver(rt::CgroupDriver driver);

  struct State;

 private:
  class RuntimeImpl;
  class ImageImpl;
  std::string socket_;
  std::shared_ptr<State> state_;
  std::unique_ptr<RuntimeImpl> runtime_;
  std::unique_ptr<ImageImpl> image_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace kubelet::testing

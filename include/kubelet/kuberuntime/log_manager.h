#pragma once
// Container log rotation, as upstream's container log manager: every
// containerLogMonitorInterval each running container's CRI log is checked;
// past containerLogMaxSize it is renamed to <log>.<YYYYMMDD-hhmmss>, the
// runtime reopens the log (CRI ReopenContainerLog), older rotated files are
// gzipped, and beyond containerLogMaxFiles the oldest go.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "kubelet/cri/runtime_service.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/logging.h"

namespace kubelet::kuberuntime {

struct LogRotationOptions {
  int64_t max_size_bytes = 10 * 1024 * 1024;  // containerLogMaxSize
  int max_files = 5;                           // containerLogMaxFiles (the live log included)
  Duration interval = std::chrono::seconds(10);  // containerLogMonitorInterval
};

class ContainerLogManager {
 public:
  ContainerLogManager(cri::RuntimeService* runtime, const Clock* clock, LogRotationOptions o);
  ~ContainerLogManager();
  void Start();
  void Stop();
  /** One pass over the running containers; for tests. Returns how many logs were rotated. */
  int RotateOnce();
  /** Rotates one log if it is past the size limit (the steps above). */
  absl::Status RotateIfNeeded(const std::string& container_id, const std::string& path);

 private:
  void Loop();
  cri::RuntimeService* runtime_;
  const Clock* clock_;
  LogRotationOptions o_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kubelet::kuberuntime

#pragma once
// Writes pod statuses to the API server (pods/<name>/status), newest status
// per pod, only when it changed; keeps what could not be written and retries
// with back-off, so statuses catch up after the API server comes back. A
// pod being deleted gets its final status written, then is deleted with
// grace 0. Static pods' statuses go to their mirror pods.
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "kubelet/api/types.h"
#include "kubelet/client/api_client.h"
#include "kubelet/util/logging.h"

namespace kubelet::status {

class PodStatusSyncer {
 public:
  explicit PodStatusSyncer(client::ApiClient* api);
  ~PodStatusSyncer();
  void Start();
  void Stop();
  void SetStatus(const api::Pod& pod, const api::PodStatus& status);
  /** Writes the final status, then deletes the pod from the API with grace 0 (after a graceful deletion). */
  void FinalizeDeletion(const api::Pod& pod, const api::PodStatus& final_status);
  /** Drops whatever is pending for the pod (a static pod that is gone, with its mirror). */
  void Forget(const std::string& uid);
  /** Writes everything pending once; for tests. Returns how many writes failed. */
  int SyncOnce();

 private:
  struct Entry {
    std::string ns, name, uid;
    bool mirror = false;
    nlohmann::json status;
    bool dirty = false;
    bool delete_after = false;
  };
  void Loop();

  client::ApiClient* api_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, Entry> entries_;  // by pod UID
  std::thread thread_;
};

}  // namespace kubelet::status

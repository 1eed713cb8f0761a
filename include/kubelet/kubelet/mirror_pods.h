#pragma once
// Mirror pods: every static pod gets a read-only copy in the API server
// (annotation kubernetes.io/config.mirror = the static pod's config hash,
// owned by the Node), recreated when deleted or stale, deleted when the
// static pod goes. Edits to a mirror pod change nothing: the api source
// ignores mirrors, and a mirror whose hash no longer matches is replaced.
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/status.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"
#include "kubelet/client/api_client.h"
#include "kubelet/util/logging.h"

namespace kubelet {

class MirrorPodManager {
 public:
  using StaticPodsFn = std::function<std::vector<api::Pod>()>;
  MirrorPodManager(client::ApiClient* api, std::string node_name, std::function<std::string()> node_uid, StaticPodsFn static_pods);
  ~MirrorPodManager();
  void Start(Duration period);
  void Stop();
  /** The mirror pods bound to this node, as the api source last saw them (full name -> pod object). */
  void SetMirrors(std::map<std::string, nlohmann::json> mirrors);
  /** One reconciliation round; returns the first error. */
  absl::Status SyncOnce();

 private:
  nlohmann::json MirrorOf(const api::Pod& pod) const;

  client::ApiClient* api_;
  std::string node_;
  std::function<std::string()> node_uid_;
  StaticPodsFn static_pods_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool seen_ = false;  // no decision before the api source delivered its first list
  std::map<std::string, nlohmann::json> mirrors_;
  std::thread thread_;
};

}  // namespace kubelet

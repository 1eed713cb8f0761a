#pragma once
// Pod sources (file, http; api with the API server) and PodConfig, which
// merges their snapshots into per-pod ADD/UPDATE/REMOVE changes for the
// sync loop.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"
#include "kubelet/util/clock.h"

namespace kubelet::config {

/** A source delivers the complete set of its pods each time (upstream's SET). */
using SnapshotFn = std::function<void(const std::string& source, std::vector<api::Pod> pods)>;

class PodSource {
 public:
  virtual ~PodSource() = default;
  virtual void Start() = 0;
  /** Stops the source's thread; bounded by the source's own timeouts. */
  virtual void Stop() = 0;
};

/**
 * Turns a manifest object into a static pod as upstream's applyDefaults: name
 * suffixed with the node name, UID from an MD5 of the manifest, node and
 * source, namespace "default", config.source/config.hash annotations, then
 * decoded and validated. `source_id` is the file path or the URL.
 */
absl::StatusOr<api::Pod> PrepareStaticPod(nlohmann::json manifest, const std::string& source_id, bool is_file,
                                          const std::string& node_name);

/** Reads staticPodPath: inotify plus a rescan every period. */
std::unique_ptr<PodSource> NewFileSource(const std::string& path, const std::string& node_name, Duration period,
                                         SnapshotFn fn);
/** Polls staticPodURL every period; headers from staticPodURLHeader. */
std::unique_ptr<PodSource> NewHTTPSource(const std::string& url, const std::map<std::string, std::vector<std::string>>& headers,
                                         const std::string& node_name, Duration period, SnapshotFn fn);

enum class PodOp { kAdd, kUpdate, kRemove };

struct PodChange {
  PodOp op;
  api::Pod pod;
};

/** Merges source snapshots; calls the handler with the changes of each one. */
class PodConfig {
 public:
  using Handler = std::function<void(std::vector<PodChange>)>;
  PodConfig(const Clock* clock, Handler handler);
  /** Registers a source: PodConfig is "ready" once each registered source sent one snapshot. */
  void AddSource(const std::string& source);
  void OnSnapshot(const std::string& source, std::vector<api::Pod> pods);
  bool AllSourcesSeen() const;

 private:
  const Clock* clock_;
  Handler handler_;
  // Held across a snapshot's merge and its handler call: handlers see snapshots in the order they were merged, so
  // AllSourcesSeen() read inside a handler is true exactly when the changes handed over so far cover every source.
  std::mutex order_mu_;
  mutable std::mutex mu_;
  std::set<std::string> sources_;
  std::set<std::string> seen_;
  std::map<std::string, std::map<std::string, api::Pod>> pods_;  // source -> uid -> pod
};

}  // namespace kubelet::config

namespace kubelet::client {
class ApiClient;
}

namespace kubelet::config {

/**
 * The api source: lists the pods bound to this node (fieldSelector
 * spec.nodeName), then watches from the list's resourceVersion with
 * bookmarks; re-lists on 410 Expired, re-watches after a broken stream (with
 * back-off). Mirror pods are not pods to run and are left out.
 */
/** UIDs of pods bound to the node that cannot be decoded (and never could): never killed as orphans. */
using UndecodableFn = std::function<void(const std::set<std::string>& uids)>;
std::unique_ptr<PodSource> NewAPISource(client::ApiClient* api, const std::string& node_name, SnapshotFn fn,
                                        std::function<void(std::map<std::string, nlohmann::json>)> on_mirrors = nullptr,
                                        UndecodableFn on_undecodable = nullptr);
/** Decodes a pod from the API server for the kubelet (config.source=api; status and bookkeeping fields dropped). */
absl::StatusOr<api::Pod> PrepareAPIPod(nlohmann::json obj);

}  // namespace kubelet::config

#pragma once
// The kubelet: the syncLoop that merges pod source updates, PLEG events and
// periodic housekeeping, and drives pod workers that talk to the runtime.
// Everything it uses is injected (Dependencies), so tests build it on a
// fake runtime and temporary folders.
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kubelet/api/types.h"
#include "kubelet/cm/container_manager.h"
#include "kubelet/config/kubelet_config.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/events/recorder.h"
#include "kubelet/kubelet/mirror_pods.h"
#include "kubelet/kubelet/admission.h"
#include "kubelet/kubelet/pod_workers.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/pleg/pleg.h"
#include "kubelet/prober/prober.h"
#include "kubelet/status/status_manager.h"
#include "kubelet/status/status_syncer.h"
#include "kubelet/util/backoff.h"
#include "kubelet/util/logging.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace kubelet {

struct Dependencies {
  const Clock* clock = nullptr;
  kuberuntime::RuntimeManager* runtime = nullptr;
  volumemanager::VolumeManager* volumes = nullptr;
  events::EventRecorder* recorder = nullptr;
  metrics::KubeletMetrics* metrics = nullptr;
  // With an API server (--kubeconfig): the api pod source and status writes.
  client::ApiClient* api = nullptr;
  status::PodStatusSyncer* status_syncer = nullptr;
  // The Node's UID once registered: owner of mirror pods.
  std::function<std::string()> node_uid;
  // The cgroup tree (pod cgroups, QoS cgroups); null: the runtime places pods itself (cgroupsPerQOS off, tests).
  cm::ContainerManager* container_manager = nullptr;
  // The Node object's labels as the API server has them (kubectl label node); unset before the node was read,
  // and in standalone mode. Admission uses them instead of the labels known at start.
  std::function<std::optional<api::StringMap>()> node_labels;
  // The Node's labels read from the API server now; asked once when a pod fails NodeAffinity on the watched ones.
  std::function<std::optional<api::StringMap>()> refresh_node_labels;
  // ConfigMaps and Secrets of the pods (the Watch strategy watches those of each pod the kubelet runs).
  kuberuntime::EnvSource* objects = nullptr;
  // Resources the pod was admitted with but that need plugin calls (the device manager's Allocate): run on the
  // pod's worker before anything of the pod is created. An error rejects the pod (UnexpectedAdmissionError).
  std::function<absl::Status(const api::Pod&)> prepare_resources;
};

struct KubeletOptions {
  config::KubeletConfiguration config;
  std::string node_name;
  std::string node_ip;
  std::string root_dir = "/var/lib/kubelet";
  // The node's labels (node affinity and nodeSelector at admission).
  api::StringMap node_labels;
  // Node allocatable for admission (0: not checked).
  int64_t allocatable_milli_cpu = 0;
  int64_t allocatable_memory = 0;
  bool allow_privileged = true;  // --allow-privileged
  Duration pleg_period = std::chrono::seconds(1);
  Duration housekeeping_period = std::chrono::seconds(2);
  Duration gc_period = std::chrono::minutes(1);
  Duration mirror_period = std::chrono::seconds(2);
  Duration worker_backoff = std::chrono::seconds(10);
  Duration container_backoff_initial = std::chrono::seconds(10);
  Duration container_backoff_max = std::chrono::minutes(5);
};

class Kubelet {
 public:
  Kubelet(KubeletOptions options, Dependencies deps);
  ~Kubelet();
  /** Starts the pod sources, PLEG, pod workers and the sync loop. */
  void Start();
  void Stop();

  /** Pods the kubelet runs and pods it refused at admission that their source still lists, with their current status
   *  (the /pods endpoint; a refused pod shows phase Failed with the admission reason, as upstream). */
  std::vector<api::Pod> GetPods() const;
  /** /healthz: the sync loop and PLEG are alive. */
  bool Healthy(std::string* why) const;
  bool SourcesReady() const;
  /** Source snapshots enter here (public so tests can feed pods directly). */
  void OnSnapshot(const std::string& source, std::vector<api::Pod> pods);
  config::PodConfig& pod_config() { return *pod_config_; }
  /** The probe manager (its registry is served on /metrics/probes). */
  prober::ProbeManager& probes() { return *probes_; }

  /** An admit handler run before the kubelet's own (the eviction manager's), set before Start. */
  void SetExtraAdmitHandler(std::function<AdmitResult(const api::Pod&)> h) { extra_admit_ = std::move(h); }
  /** An admit handler run after the kubelet's own checks passed (resource allocation: the CPU manager), set before Start. */
  void SetAllocateAdmitHandler(std::function<AdmitResult(const api::Pod&)> h) { allocate_admit_ = std::move(h); }
  /** Admitted pods not yet terminal and not being evicted. */
  std::vector<api::Pod> ActivePods() const;
  /** Stops the pod with `grace` seconds and keeps its status Failed / Evicted with `message`. */
  bool EvictPod(const api::Pod& pod, int64_t grace, const std::string& message);
  /** Dead containers of pods no longer wanted and beyond the newest per container (disk reclaim). */
  absl::Status DeleteUnusedContainers();
  /** True once the pod's worker finished tearing it down (or never knew it). */
  bool PodTornDown(const std::string& uid) const;

 private:
  struct LoopEvent {
    enum Kind { kConfig, kPLEG } kind;
    std::vector<config::PodChange> changes;
    bool sources_seen = false;  // every source had spoken once this event's changes are applied
    std::vector<pleg::PodLifecycleEvent> pleg;
  };

  void SyncLoop();
  void HandleChanges(std::vector<config::PodChange> changes);
  void HandlePLEG(const std::vector<pleg::PodLifecycleEvent>& events);
  void Housekeeping();
  void UpdateQOSCgroups();
  void GCLoop();
  void Push(LoopEvent ev, bool may_drop);
  std::optional<prober::PodView> ProbeView(const std::string& uid) const;
  void RejectPod(const api::Pod& pod, const std::string& reason, const std::string& message);

  absl::StatusOr<bool> SyncPod(const api::Pod& pod, UpdateType type);
  absl::Status SyncTerminatingPod(const std::string& uid, const api::Pod* pod, std::optional<int64_t> grace);
  absl::Status SyncTerminatedPod(const std::string& uid, const api::Pod* pod);
  absl::StatusOr<api::PodStatus> RefreshStatus(const api::Pod& pod, kuberuntime::PodStatus* rs, bool terminal = false);
  bool BeingDeleted(const std::string& uid) const;

  KubeletOptions o_;
  Dependencies d_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<config::PodConfig> pod_config_;
  std::vector<std::unique_ptr<config::PodSource>> sources_;
  std::unique_ptr<PodWorkers> workers_;
  std::unique_ptr<pleg::PLEG> pleg_;
  std::unique_ptr<MirrorPodManager> mirrors_;
  status::StatusManager status_;
  Backoff backoff_;

  mutable std::mutex mu_;  // guards pods_, rejected_, start_recorded_
  std::map<std::string, api::Pod> pods_;  // desired pods by UID
  std::unique_ptr<prober::ProbeManager> probes_;
  AdmitNode admit_node_;
  std::set<std::string> start_recorded_;
  TimePoint last_qos_update_{};
  std::set<std::string> ever_removed_;  // UIDs removed while the kubelet watched (for restarted_pods)
  // Pods the kubelet itself ends (evicted, preempted for a critical pod), by UID, while they are wanted: their status
  // is Failed with this reason and message, and a DisruptionTarget condition with condition_message.
  struct KubeletTermination {
    std::string reason, message, condition_message;
  };
  std::map<std::string, KubeletTermination> evicted_;
  // Critical pod admission: preempts what the pod lacks (upstream's CriticalPodAdmissionHandler); the admission result.
  AdmitResult PreemptForCriticalPod(const api::Pod& pod, const AdmitResult& refused);
  // Pods wanted, neither terminal nor ended by the kubelet; mu_ held.
  std::vector<const api::Pod*> ActivePodsLocked() const;
  // Pods refused at admission, by UID, while their source still lists them: listed by GetPods with their Failed status
  // (upstream keeps them in its pod manager); their graceful deletion is finished without a worker. At most 4096.
  std::map<std::string, api::Pod> rejected_;
  std::set<std::string> undecodable_;  // api pods that cannot be decoded: whatever of them runs is left alone
  std::function<AdmitResult(const api::Pod&)> extra_admit_;
  std::function<AdmitResult(const api::Pod&)> allocate_admit_;

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  std::deque<LoopEvent> loop_queue_;
  size_t pleg_events_queued_ = 0;
  bool stop_ = false;
  std::thread loop_thread_;
  std::thread gc_thread_;
  std::atomic<int64_t> loop_heartbeat_{0};
  std::atomic<bool> started_{false};
  // Set by the sync loop once it applied changes covering every source: orphans are judged against pods_ only then.
  std::atomic<bool> sources_ready_{false};
};

}  // namespace kubelet

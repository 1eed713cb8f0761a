#pragma once
// Container probes, as upstream's prober: one worker per (container, probe
// type) runs its probe every periodSeconds (exec through CRI ExecSync,
// httpGet, tcpSocket, grpc.health.v1), counts consecutive results against
// successThreshold/failureThreshold and publishes the result by container
// ID. Liveness and startup failures make the pod's next sync kill the
// container; readiness feeds the container's ready flag. Workers are served by
// one scheduler thread and a small pool, so a node with many probes does not
// hold a thread per probe.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "kubelet/api/types.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/events/recorder.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/logging.h"

namespace kubelet::prober {

enum class ProbeType { kLiveness, kReadiness, kStartup };
/** "Liveness", "Readiness", "Startup": as upstream names them in events and metrics. */
const char* ProbeTypeName(ProbeType t);

enum class Outcome { kSuccess, kFailure, kWarning, kUnknown };

struct ProbeResult {
  Outcome outcome = Outcome::kUnknown;
  std::string output;  // why it failed, for the Unhealthy event
};

/** What a probe needs to know of its container. */
struct ProbeTarget {
  std::string container_id;  // runtime ID, no type prefix
  std::string pod_ip;
  std::vector<api::ContainerPort> ports;  // for named ports
};

/** Runs one probe once. exec goes through the runtime; the network kinds dial the pod IP (or the probe's host). */
class Prober {
 public:
  using ExecFn = std::function<absl::StatusOr<cri::rt::ExecSyncResponse>(const std::string& container_id,
                                                                         const std::vector<std::string>& cmd, Duration timeout)>;
  explicit Prober(ExecFn exec) : exec_(std::move(exec)) {}
  /** Exec probes whose call was given up at its deadline (a runtime that did not end the command in time). */
  int64_t AbandonedExecs() const { return abandoned_execs_.load(); }
  /** An error is a prober problem (runtime unreachable, bad port name): upstream throws such a result away. */
  absl::StatusOr<ProbeResult> Run(const api::ProbeHandler& h, const ProbeTarget& t, Duration timeout);

  static ProbeResult RunHTTP(const api::ProbeHandler::HTTPGet& get, const std::string& host, int port, Duration timeout);
  static ProbeResult RunTCP(const std::string& host, int port, Duration timeout);
  static ProbeResult RunGRPC(const std::string& host, int port, const std::optional<std::string>& service, Duration timeout);

 private:
  ExecFn exec_;
  std::atomic<int64_t> abandoned_execs_{0};
};

/** Resolves an IntOrString port against the container's named ports. */
absl::StatusOr<int> ResolvePort(const api::IntOrString& port, const std::vector<api::ContainerPort>& ports);

/** The state of one container as the worker needs it (from the kubelet's current pod status). */
struct ContainerView {
  std::string container_id;  // empty: not created yet
  bool running = false;
  bool terminated = false;
  bool started = false;  // startup probe passed (or none)
  TimePoint started_at;
};

struct PodView {
  std::string phase;
  std::string pod_ip;
  bool deleting = false;
  std::map<std::string, ContainerView> containers;  // by container name
};

class ProbeManager {
 public:
  // Probes run on an elastic pool: `executors` threads always, more while probes are due and every thread is busy
  // (a hung exec holds one thread until its deadline, never the others' probes), up to `max_executors`; extra
  // threads end after `idle_timeout` without work.
  struct Options {
    size_t executors = 4;
    size_t max_executors = 256;
    Duration idle_timeout = std::chrono::seconds(30);
  };
  struct Deps {
    Prober::ExecFn exec;  // CRI ExecSync
    events::EventRecorder* recorder = nullptr;
    const Clock* clock = nullptr;
    /** The pod's current view; nullopt when the kubelet has no status for it yet. */
    std::function<std::optional<PodView>(const std::string& uid)> pod_view;
    /** A liveness/startup/readiness result changed: the pod needs a sync (and a status update). */
    std::function<void(const std::string& uid)> on_change;
  };
  ProbeManager(Deps deps, Options options);
  ProbeManager(Deps deps) : ProbeManager(std::move(deps), Options{}) {}
  ~ProbeManager();
  void Start();
  void Stop();

  /** Creates workers for every probe the pod's containers (and sidecars) declare; idempotent. */
  void AddPod(const api::Pod& pod);
  /** Stops the pod's workers and drops their results. */
  void RemovePod(const std::string& uid);
  /** Stops workers of pods not in `keep`. */
  void CleanupPods(const std::set<std::string>& keep);
  /** The pod's status changed (a container started): its workers that have not probed the current instance run now. */
  void Poke(const std::string& uid);

  /** The latest published result by container ID: nullopt when there is none yet. */
  std::optional<bool> Liveness(const std::string& container_id) const;
  std::optional<bool> Readiness(const std::string& container_id) const;
  std::optional<bool> Startup(const std::string& container_id) const;

  /** prober_probe_total and prober_probe_duration_seconds, served on /metrics/probes as upstream. */
  prometheus::Registry& registry() { return *registry_; }
  size_t WorkerCount() const;
  /** Executor threads alive now. */
  size_t ExecutorCount() const;
  /** Exec probes given up at timeoutSeconds (plus a second) because the runtime did not answer. */
  int64_t AbandonedExecs() const { return prober_.AbandonedExecs(); }

 private:
  struct Worker;
  void SchedulerLoop();
  void ExecutorLoop();
  void SpawnExecutor();  // mu_ held
  // Runs one probe round for the worker; returns false when the worker should stop.
  bool DoProbe(Worker& w);
  std::optional<bool> Get(ProbeType t, const std::string& id) const;
  void Publish(ProbeType t, const std::string& id, std::optional<bool> value, const std::string& uid);

  Deps d_;
  Options o_;
  Prober prober_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& probe_total_;
  prometheus::Family<prometheus::Histogram>& probe_duration_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Worker>> workers_;                 // by worker id
  std::map<std::string, std::vector<uint64_t>> by_pod_;                // pod UID -> worker ids
  std::set<std::pair<std::chrono::steady_clock::time_point, uint64_t>> due_;  // schedule
  std::vector<uint64_t> ready_;                                        // due now, waiting for an executor
  std::map<std::string, bool> results_[3];                             // by probe type, container ID -> success
  std::thread scheduler_;
  size_t executors_ = 0;  // alive
  size_t idle_ = 0;       // waiting for work
  std::condition_variable executors_cv_;
};

}  // namespace kubelet::prober

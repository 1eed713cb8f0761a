#pragma once
// Every metric the kubelet exports, under the upstream names, in one place.
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace kubelet::metrics {

// Upstream metric names (pkg/kubelet/metrics).
inline constexpr char kRunningPods[] = "kubelet_running_pods";
inline constexpr char kClientCertTTL[] = "kubelet_certificate_manager_client_ttl_seconds";
inline constexpr char kClientCertRenewErrors[] = "kubelet_certificate_manager_client_expiration_renew_errors";
inline constexpr char kServerCertTTL[] = "kubelet_certificate_manager_server_ttl_seconds";
inline constexpr char kServerCertRotation[] = "kubelet_certificate_manager_server_rotation_seconds";
inline constexpr char kServerCertRenewErrors[] = "kubelet_server_expiration_renew_errors";
inline constexpr char kRunningContainers[] = "kubelet_running_containers";
inline constexpr char kPodStartDuration[] = "kubelet_pod_start_duration_seconds";
inline constexpr char kPodStartSLIDuration[] = "kubelet_pod_start_sli_duration_seconds";
inline constexpr char kPodWorkerDuration[] = "kubelet_pod_worker_duration_seconds";
inline constexpr char kPodWorkerStartDuration[] = "kubelet_pod_worker_start_duration_seconds";
inline constexpr char kPLEGRelistDuration[] = "kubelet_pleg_relist_duration_seconds";
inline constexpr char kPLEGRelistInterval[] = "kubelet_pleg_relist_interval_seconds";
inline constexpr char kPLEGLastSeen[] = "kubelet_pleg_last_seen_seconds";
inline constexpr char kRuntimeOperations[] = "kubelet_runtime_operations_total";
inline constexpr char kRuntimeOperationsErrors[] = "kubelet_runtime_operations_errors_total";
inline constexpr char kRuntimeOperationsDuration[] = "kubelet_runtime_operations_duration_seconds";
inline constexpr char kStartedPods[] = "kubelet_started_pods_total";
inline constexpr char kStartedPodsErrors[] = "kubelet_started_pods_errors_total";
inline constexpr char kStartedContainers[] = "kubelet_started_containers_total";
inline constexpr char kStartedContainersErrors[] = "kubelet_started_containers_errors_total";
inline constexpr char kRestartedPods[] = "kubelet_restarted_pods_total";
inline constexpr char kEvictions[] = "kubelet_evictions";  // upstream's name (no _total)
inline constexpr char kPreemptions[] = "kubelet_preemptions";  // upstream's name (no _total)
inline constexpr char kDesiredPods[] = "kubelet_desired_pods";
inline constexpr char kActivePods[] = "kubelet_active_pods";
inline constexpr char kWorkingPods[] = "kubelet_working_pods";
inline constexpr char kNodeName[] = "kubelet_node_name";
inline constexpr char kImagePullDuration[] = "kubelet_image_pull_duration_seconds";
inline constexpr char kHTTPRequests[] = "kubelet_http_requests_total";
inline constexpr char kDevicePluginRegistration[] = "kubelet_device_plugin_registration_total";
inline constexpr char kDevicePluginAllocDuration[] = "kubelet_device_plugin_alloc_duration_seconds";
inline constexpr char kTopologyAdmissionRequests[] = "kubelet_topology_manager_admission_requests_total";
inline constexpr char kTopologyAdmissionErrors[] = "kubelet_topology_manager_admission_errors_total";
inline constexpr char kTopologyAdmissionDuration[] = "kubelet_topology_manager_admission_duration_ms";

/** Owns the registry and the families; handed to each manager by pointer. */
class KubeletMetrics {
 private:
  // Declared first: every family below registers into it during construction.
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();

 public:
  KubeletMetrics();
  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }
  /** The Prometheus text exposition of everything registered. */
  std::string Serialize() const;

  static const prometheus::Histogram::BucketBoundaries kPodWorkerBuckets;
  void ObserveRuntimeOperation(const std::string& op, double seconds, bool error);

  prometheus::Gauge& running_pods;
  prometheus::Family<prometheus::Gauge>& running_containers;
  prometheus::Histogram& pod_start_duration;
  prometheus::Family<prometheus::Histogram>& pod_worker_duration;
  prometheus::Histogram& pod_worker_start_duration;
  prometheus::Histogram& pleg_relist_duration;
  prometheus::Histogram& pleg_relist_interval;
  prometheus::Gauge& pleg_last_seen;
  prometheus::Family<prometheus::Counter>& runtime_operations;
  prometheus::Family<prometheus::Counter>& runtime_operations_errors;
  prometheus::Family<prometheus::Histogram>& runtime_operations_duration;
  prometheus::Counter& started_pods;
  prometheus::Counter& started_pods_errors;
  prometheus::Family<prometheus::Counter>& started_containers;
  prometheus::Family<prometheus::Counter>& started_containers_errors;
  prometheus::Family<prometheus::Counter>& restarted_pods;
  prometheus::Family<prometheus::Counter>& evictions;  // {eviction_signal}
  prometheus::Family<prometheus::Counter>& preemptions;  // {preemption_signal}
  prometheus::Family<prometheus::Counter>& device_plugin_registration;      // {resource_name}
  prometheus::Family<prometheus::Histogram>& device_plugin_alloc_duration;  // {resource_name}
  prometheus::Counter& topology_admission_requests;
  prometheus::Counter& topology_admission_errors;
  prometheus::Histogram& topology_admission_duration;  // milliseconds
  prometheus::Family<prometheus::Gauge>& desired_pods;
  prometheus::Family<prometheus::Gauge>& active_pods;
  prometheus::Family<prometheus::Gauge>& node_name;
  prometheus::Family<prometheus::Histogram>& image_pull_duration;
  prometheus::Family<prometheus::Counter>& http_requests;
  // The certificate managers (rotateCertificates, serverTLSBootstrap); the TTLs are +Inf while no certificate is used.
  prometheus::Gauge& client_cert_ttl;
  prometheus::Counter& client_cert_renew_errors;
  prometheus::Gauge& server_cert_ttl;
  prometheus::Histogram& server_cert_rotation;
  prometheus::Counter& server_cert_renew_errors;
};

}  // namespace kubelet::metrics

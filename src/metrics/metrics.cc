#include "kubelet/metrics/metrics.h"

#include <limits>

#include <mutex>

#include <prometheus/text_serializer.h>

namespace kubelet::metrics {
namespace {
using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

Histogram::BucketBoundaries Exponential(double start, double factor, int count) {
  Histogram::BucketBoundaries b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

const Histogram::BucketBoundaries kDefBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const Histogram::BucketBoundaries kPodStartBuckets = {0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180,
                                                      240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600};
}  // namespace

KubeletMetrics::KubeletMetrics()
    : running_pods(BuildGauge().Name(kRunningPods).Help("[ALPHA] Number of pods that have a running pod sandbox")
                       .Register(*registry_)
                       .Add({})),
      running_containers(BuildGauge().Name(kRunningContainers).Help("[ALPHA] Number of containers currently running")
                             .Register(*registry_)),
      pod_start_duration(BuildHistogram().Name(kPodStartDuration)
                             .Help("[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod "
                                   "starting to run")
                             .Register(*registry_)
                             .Add({}, kPodStartBuckets)),
      pod_worker_duration(BuildHistogram().Name(kPodWorkerDuration)
                              .Help("[ALPHA] Duration in seconds to sync a single pod. Broken down by operation type: "
                                    "create, update, or sync")
                              .Register(*registry_)),
      pod_worker_start_duration(BuildHistogram().Name(kPodWorkerStartDuration)
                                    .Help("[ALPHA] Duration in seconds from kubelet seeing a pod to starting a worker.")
                                    .Register(*registry_)
                                    .Add({}, kDefBuckets)),
      pleg_relist_duration(BuildHistogram().Name(kPLEGRelistDuration)
                               .Help("[ALPHA] Duration in seconds for relisting pods in PLEG.")
                               .Register(*registry_)
                               .Add({}, kDefBuckets)),
      pleg_relist_interval(BuildHistogram().Name(kPLEGRelistInterval)
                               .Help("[ALPHA] Interval in seconds between relisting in PLEG.")
                               .Register(*registry_)
                               .Add({}, kDefBuckets)),
      pleg_last_seen(BuildGauge().Name(kPLEGLastSeen)
                         .Help("[ALPHA] Timestamp in seconds when PLEG was last seen active.")
                         .Register(*registry_)
                         .Add({})),
      runtime_operations(BuildCounter().Name(kRuntimeOperations)
                             .Help("[ALPHA] Cumulative number of runtime operations by operation type.")
                             .Register(*registry_)),
      runtime_operations_errors(BuildCounter().Name(kRuntimeOperationsErrors)
                                    .Help("[ALPHA] Cumulative number of runtime operation errors by operation type.")
                                    .Register(*registry_)),
      runtime_operations_duration(BuildHistogram().Name(kRuntimeOperationsDuration)
                                      .Help("[ALPHA] Duration in seconds of runtime operations. Broken down by "
                                            "operation type.")
                                      .Register(*registry_)),
      started_pods(BuildCounter().Name(kStartedPods)
                       .Help("[ALPHA] Cumulative number of pods started")
                       .Register(*registry_)
                       .Add({})),
      started_pods_errors(BuildCounter().Name(kStartedPodsErrors)
                              .Help("[ALPHA] Cumulative number of errors when starting pods")
                              .Register(*registry_)
                              .Add({})),
      started_containers(BuildCounter().Name(kStartedContainers)
                             .Help("[ALPHA] Cumulative number of containers started")
                             .Register(*registry_)),
      started_containers_errors(BuildCounter().Name(kStartedContainersErrors)
                                    .Help("[ALPHA] Cumulative number of errors when starting containers")
                                    .Register(*registry_)),
      restarted_pods(BuildCounter().Name(kRestartedPods)
                         .Help("[ALPHA] Number of pods that have been restarted because they were deleted and "
                               "recreated with the same UID while the kubelet was watching them (common for static "
                               "pods, extremely uncommon for API pods)")
                         .Register(*registry_)),
      evictions(BuildCounter().Name(kEvictions)
                    .Help("[ALPHA] Cumulative number of pod evictions by eviction signal")
                    .Register(*registry_)),
      preemptions(BuildCounter().Name(kPreemptions)
                      .Help("[ALPHA] Cumulative number of pod preemptions by preemption resource")
                      .Register(*registry_)),
      device_plugin_registration(BuildCounter().Name(kDevicePluginRegistration)
                                     .Help("[ALPHA] Cumulative number of device plugin registrations. Broken down by resource name.")
                                     .Register(*registry_)),
      device_plugin_alloc_duration(BuildHistogram().Name(kDevicePluginAllocDuration)
                                       .Help("[ALPHA] Duration in seconds to serve a device plugin Allocation request. Broken down by "
                                             "resource name.")
                                       .Register(*registry_)),
      topology_admission_requests(BuildCounter().Name(kTopologyAdmissionRequests)
                                      .Help("[ALPHA] Number of admission requests where resources have to be aligned.")
                                      .Register(*registry_)
                                      .Add({})),
      topology_admission_errors(BuildCounter().Name(kTopologyAdmissionErrors)
                                    .Help("[ALPHA] Number of admission request errors where resources couldn't be aligned.")
                                    .Register(*registry_)
                                    .Add({})),
      topology_admission_duration(BuildHistogram().Name(kTopologyAdmissionDuration)
                                      .Help("[ALPHA] Duration in milliseconds to serve a pod admission request.")
                                      .Register(*registry_)
                                      .Add({}, Exponential(0.05, 2, 15))),
      desired_pods(BuildGauge().Name(kDesiredPods)
                       .Help("[ALPHA] The number of pods the kubelet is being instructed to run. static is true if "
                             "the pod is not from the apiserver.")
                       .Register(*registry_)),
      active_pods(BuildGauge().Name(kActivePods)
                      .Help("[ALPHA] The number of pods the kubelet considers active and which are being considered "
                            "when admitting new pods. static is true if the pod is not from the apiserver.")
                      .Register(*registry_)),
      node_name(BuildGauge().Name(kNodeName).Help("[ALPHA] The node's name. The count is always 1.").Register(*registry_)),
      image_pull_duration(BuildHistogram().Name(kImagePullDuration)
                              .Help("[ALPHA] Duration in seconds to pull an image.")
                              .Register(*registry_)),
      http_requests(BuildCounter().Name(kHTTPRequests)
                        .Help("[ALPHA] Number of the http requests received since the server started")
                        .Register(*registry_)),
      client_cert_ttl(BuildGauge().Name(kClientCertTTL)
                          .Help("[ALPHA] Gauge of the TTL (time-to-live) of the Kubelet's client certificate. The value is "
                                "in seconds until certificate expiry (negative if already expired). If client certificate "
                                "is invalid or unused, the value will be +INF.")
                          .Register(*registry_)
                          .Add({})),
      client_cert_renew_errors(BuildCounter().Name(kClientCertRenewErrors)
                                   .Help("[ALPHA] Counter of certificate renewal errors.")
                                   .Register(*registry_)
                                   .Add({})),
      server_cert_ttl(BuildGauge().Name(kServerCertTTL)
                          .Help("[ALPHA] Gauge of the shortest TTL (time-to-live) of the Kubelet's serving certificate. "
                                "The value is in seconds until certificate expiry (negative if already expired). If "
                                "serving certificate is invalid or unused, the value will be +INF.")
                          .Register(*registry_)
                          .Add({})),
      server_cert_rotation(BuildHistogram().Name(kServerCertRotation)
                               .Help("[ALPHA] Histogram of the number of seconds the previous certificate lived before "
                                     "being rotated.")
                               .Register(*registry_)
                               .Add({}, prometheus::Histogram::BucketBoundaries{600, 1800, 3600, 14400, 86400, 604800,
                                                                               2592000, 7776000, 15552000, 31104000,
                                                                               124416000})),
      server_cert_renew_errors(BuildCounter().Name(kServerCertRenewErrors)
                                   .Help("[ALPHA] Counter of certificate renewal errors.")
                                   .Register(*registry_)
                                   .Add({})) {
  client_cert_ttl.Set(std::numeric_limits<double>::infinity());
  server_cert_ttl.Set(std::numeric_limits<double>::infinity());
}

const prometheus::Histogram::BucketBoundaries KubeletMetrics::kPodWorkerBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

std::string KubeletMetrics::Serialize() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

void KubeletMetrics::ObserveRuntimeOperation(const std::string& op, double seconds, bool error) {
  static const auto kBuckets = Exponential(0.005, 2.5, 14);
  runtime_operations.Add({{"operation_type", op}}).Increment();
  runtime_operations_duration.Add({{"operation_type", op}}, kBuckets).Observe(seconds);
  if (error) runtime_operations_errors.Add({{"operation_type", op}}).Increment();
}

}  // namespace kubelet::metrics

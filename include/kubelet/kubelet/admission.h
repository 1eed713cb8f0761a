#pragma once
// Pod admission, as upstream's predicate admit handler: a pod the node cannot
// run is rejected (phase Failed) with the upstream reason and message rather
// than started. Checks, in upstream's order: the pod's OS, resources (pods,
// cpu, memory), node affinity and nodeSelector, node name, host ports, sysctls, then privileged
// containers (reason Forbidden) when --allow-privileged=false.
#include <cstdint>
#include <string>
#include <vector>

#include "kubelet/api/types.h"

namespace kubelet {

/** What admission knows of the node. */
struct AdmitNode {
  std::string name;
  api::StringMap labels;
  int32_t max_pods = 0;             // 0: not checked
  int64_t allocatable_milli_cpu = 0;  // 0: not checked
  int64_t allocatable_memory = 0;     // 0: not checked
  std::vector<std::string> allowed_unsafe_sysctls;
  bool allow_privileged = true;  // --allow-privileged
};

struct AdmitResult {
  bool admit = true;
  std::string reason;   // OutOfpods, OutOfcpu, NodeAffinity, NodeName, NodePorts, PodOSNotSupported, ...
  std::string message;
};

/** Milli-CPU and memory bytes the pod requests (init containers as the max, requests defaulting to limits). */
std::pair<int64_t, int64_t> PodRequests(const api::Pod& pod);

/** A resource the node lacks for a pod (upstream's InsufficientResourceError): what the pod asks, what the admitted
 *  pods use, the node's capacity. */
struct InsufficientResource {
  std::string resource;  // "pods", "cpu" (milli), "memory" (bytes)
  int64_t requested = 0, used = 0, capacity = 0;
  int64_t Shortfall() const { return requested + used - capacity; }
};

/** Every resource `pod` lacks beside `admitted` on `node`, in the order the resource predicate checks them. */
std::vector<InsufficientResource> InsufficientResources(const api::Pod& pod, const std::vector<const api::Pod*>& admitted,
                                                        const AdmitNode& node);

/** Whether `pod` may join `admitted` (the pods the kubelet already runs) on `node`. */
AdmitResult AdmitPod(const api::Pod& pod, const std::vector<const api::Pod*>& admitted, const AdmitNode& node);

}  // namespace kubelet

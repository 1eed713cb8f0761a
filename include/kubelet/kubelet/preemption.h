#pragma once
// Critical pod admission (upstream's pkg/kubelet/preemption, CriticalPodAdmissionHandler): a critical pod (static,
// mirror, or of priority system-cluster-critical and above) refused only for want of resources is admitted after
// the kubelet preempts lower pods that free what it lacks: fewest pods first, best-effort before burstable before
// guaranteed, never another critical pod. Unlike upstream, nothing waits here for the preempted pods to stop: each
// is stopped by its own worker (a grace period of one pod never holds back the sync loop).
#include <cstdint>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/api/types.h"
#include "kubelet/kubelet/admission.h"

namespace kubelet::preemption {

inline constexpr char kReason[] = "Preempting";  // events.PreemptContainer; the pod's status reason
inline constexpr char kMessage[] = "Preempted in order to admit critical pod";
inline constexpr char kConditionMessage[] = "Pod was preempted by Kubelet to accommodate a critical pod.";
inline constexpr int32_t kSystemCriticalPriority = 2000000000;  // scheduling.SystemCriticalPriority

bool IsCriticalPod(const api::Pod& pod);
/** Upstream's kubetypes.Preemptable: a critical pod over a non-critical one, else a strictly higher priority. */
bool Preemptable(const api::Pod& preemptor, const api::Pod& preemptee);

struct Requirement {
  std::string resource;  // "pods", "cpu" (milli), "memory" (bytes)
  int64_t quantity = 0;
};

/** What `pod` lacks on `node` beside `admitted`, in the order the resource predicate checks (pods, cpu, memory). */
std::vector<Requirement> InsufficientResources(const api::Pod& pod, const std::vector<const api::Pod*>& admitted, const AdmitNode& node);

/** "[(res: memory, q: 5), ]", as upstream prints a requirement list. */
std::string RequirementsString(const std::vector<Requirement>& reqs);

/** The pods of `pods` to preempt so that `reqs` are met, as upstream's getPodsToPreempt chooses them; an error
 *  "no set of running pods found to reclaim resources: [...]" when no preemptable set frees enough. */
absl::StatusOr<std::vector<const api::Pod*>> PodsToPreempt(const api::Pod& pod, const std::vector<const api::Pod*>& pods,
                                                           const std::vector<Requirement>& reqs);

}  // namespace kubelet::preemption

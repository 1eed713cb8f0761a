#include "kubelet/kubelet/preemption.h"

#include <algorithm>
#include <cmath>

#include <absl/status/status.h>

namespace kubelet::preemption {
namespace {

int64_t Request(const api::Pod& pod, const std::string& resource) {
  if (resource == "pods") return 1;
  auto [cpu, mem] = PodRequests(pod);
  if (resource == "cpu") return cpu;
  if (resource == "memory") return mem;
  return 0;
}

// What is left of `reqs` once `pods` are gone.
std::vector<Requirement> Subtract(const std::vector<Requirement>& reqs, const std::vector<const api::Pod*>& pods) {
  std::vector<Requirement> out;
  for (const auto& r : reqs) {
    int64_t left = r.quantity;
    for (const api::Pod* p : pods) {
      left -= Request(*p, r.resource);
      if (left <= 0) break;
    }
    if (left > 0) out.push_back({r.resource, left});
  }
  return out;
}

// How far a pod's requests fall short of each requirement, as fractions squared (every requirement weighs the same).
double Distance(const std::vector<Requirement>& reqs, const api::Pod& pod) {
  double d = 0;
  for (const auto& r : reqs) {
    double remaining = static_cast<double>(r.quantity - Request(pod, r.resource));
    if (remaining > 0) d += std::pow(remaining / static_cast<double>(r.quantity), 2);
  }
  return d;
}

bool SmallerRequest(const api::Pod& a, const api::Pod& b) {
  for (const char* res : {"memory", "cpu"}) {
    int64_t x = Request(a, res), y = Request(b, res);
    if (x < y) return true;
    if (x > y) return false;
  }
  return true;
}

absl::StatusOr<std::vector<const api::Pod*>> ByDistance(std::vector<const api::Pod*> pods, std::vector<Requirement> reqs) {
  std::vector<const api::Pod*> out;
  while (!reqs.empty()) {
    if (pods.empty())
      return absl::ResourceExhaustedError("no set of running pods found to reclaim resources: " + RequirementsString(reqs));
    double best = static_cast<double>(reqs.size() + 1);
    size_t best_i = 0;
    for (size_t i = 0; i < pods.size(); ++i) {
      double d = Distance(reqs, *pods[i]);
      if (d < best || (d == best && SmallerRequest(*pods[i], *pods[best_i]))) {
        best = d;
        best_i = i;
      }
    }
    reqs = Subtract(reqs, {pods[best_i]});
    out.push_back(pods[best_i]);
    pods[best_i] = pods.back();
    pods.pop_back();
  }
  return out;
}

std::vector<const api::Pod*> Join(std::initializer_list<const std::vector<const api::Pod*>*> lists) {
  std::vector<const api::Pod*> out;
  for (const auto* l : lists) out.insert(out.end(), l->begin(), l->end());
  return out;
}

}  // namespace

bool IsCriticalPod(const api::Pod& pod) {
  if (api::IsStaticPod(pod) || pod.metadata.annotations.count(api::kConfigMirrorAnnotation)) return true;
  return pod.spec.priority && *pod.spec.priority >= kSystemCriticalPriority;
}

bool Preemptable(const api::Pod& preemptor, const api::Pod& preemptee) {
  if (IsCriticalPod(preemptor) && !IsCriticalPod(preemptee)) return true;
  if (preemptor.spec.priority && preemptee.spec.priority) return *preemptor.spec.priority > *preemptee.spec.priority;
  return false;
}

std::vector<Requirement> InsufficientResources(const api::Pod& pod, const std::vector<const api::Pod*>& admitted,
                                               const AdmitNode& node) {
  std::vector<Requirement> out;
  for (const auto& r : kubelet::InsufficientResources(pod, admitted, node)) out.push_back({r.resource, r.Shortfall()});
  return out;
}

std::string RequirementsString(const std::vector<Requirement>& reqs) {
  std::string s = "[";
  for (const auto& r : reqs) s += "(res: " + r.resource + ", q: " + std::to_string(r.quantity) + "), ";
  return s + "]";
}

absl::StatusOr<std::vector<const api::Pod*>> PodsToPreempt(const api::Pod& pod, const std::vector<const api::Pod*>& pods,
                                                           const std::vector<Requirement>& reqs) {
  std::vector<const api::Pod*> best_effort, burstable, guaranteed;
  for (const api::Pod* p : pods) {
    if (!Preemptable(pod, *p)) continue;
    std::string qos = api::QOSClass(*p);
    (qos == "BestEffort" ? best_effort : qos == "Burstable" ? burstable : guaranteed).push_back(p);
  }
  if (auto left = Subtract(reqs, Join({&best_effort, &burstable, &guaranteed})); !left.empty())
    return absl::ResourceExhaustedError("no set of running pods found to reclaim resources: " + RequirementsString(left));
  // Guaranteed pods only for what all the others cannot free; burstable for what best-effort and those cannot;
  // best-effort for the rest.
  auto g = ByDistance(guaranteed, Subtract(reqs, Join({&best_effort, &burstable})));
  if (!g.ok()) return g.status();
  auto b = ByDistance(burstable, Subtract(reqs, Join({&best_effort, &*g})));
  if (!b.ok()) return b.status();
  auto e = ByDistance(best_effort, Subtract(reqs, Join({&*b, &*g})));
  if (!e.ok()) return e.status();
  return Join({&*e, &*b, &*g});
}

}  // namespace kubelet::preemption

#include "kubelet/kubelet/admission.h"

#include "kubelet/cm/container_manager.h"

#include <cerrno>
#include <cstdlib>

#include "kubelet/api/node_selector.h"
#include "kubelet/api/quantity.h"
#include "kubelet/kuberuntime/security_context.h"

namespace kubelet {
namespace {

bool NodeAffinityMatches(const api::Pod& pod, const AdmitNode& node) {
  for (const auto& [key, want] : pod.spec.node_selector) {
    auto l = node.labels.find(key);
    if (l == node.labels.end() || l->second != want) return false;
  }
  if (!pod.spec.required_node_affinity) return true;
  return api::NodeSelectorTermsMatch(*pod.spec.required_node_affinity, node.labels, node.name);
}

struct HostPort {
  std::string ip, protocol;
  int32_t port;
};

std::vector<HostPort> HostPorts(const api::Pod& pod) {
  std::vector<HostPort> out;
  for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
    for (const auto& c : *list)
      for (const auto& p : c.ports)
        if (p.host_port > 0)
          out.push_back({p.host_ip.empty() ? "0.0.0.0" : p.host_ip, p.protocol.empty() ? "TCP" : p.protocol, p.host_port});
  return out;
}

bool Conflicts(const HostPort& a, const HostPort& b) {
  return a.port == b.port && a.protocol == b.protocol && (a.ip == b.ip || a.ip == "0.0.0.0" || b.ip == "0.0.0.0");
}

AdmitResult Reject(std::string reason, std::string message) { return {false, std::move(reason), std::move(message)}; }

std::string Insufficient(const char* res, int64_t requested, int64_t used, int64_t capacity) {
  return std::string("Node didn't have enough resource: ") + res + ", requested: " + std::to_string(requested) +
         ", used: " + std::to_string(used) + ", capacity: " + std::to_string(capacity);
}

}  // namespace

std::pair<int64_t, int64_t> PodRequests(const api::Pod& pod) {
  auto t = cm::ComputePodResources(pod);
  return {t.cpu_request_milli, t.memory_request};
}

std::vector<InsufficientResource> InsufficientResources(const api::Pod& pod, const std::vector<const api::Pod*>& admitted,
                                                        const AdmitNode& node) {
  std::vector<InsufficientResource> out;
  int64_t count = static_cast<int64_t>(admitted.size());
  if (node.max_pods > 0 && count + 1 > node.max_pods) out.push_back({"pods", 1, count, node.max_pods});
  auto [want_cpu, want_mem] = PodRequests(pod);
  int64_t used_cpu = 0, used_mem = 0;
  for (const api::Pod* p : admitted) {
    auto [c, m] = PodRequests(*p);
    used_cpu += c;
    used_mem += m;
  }
  if (node.allocatable_milli_cpu > 0 && want_cpu > 0 && used_cpu + want_cpu > node.allocatable_milli_cpu)
    out.push_back({"cpu", want_cpu, used_cpu, node.allocatable_milli_cpu});
  if (node.allocatable_memory > 0 && want_mem > 0 && used_mem + want_mem > node.allocatable_memory)
    out.push_back({"memory", want_mem, used_mem, node.allocatable_memory});
  return out;
}

AdmitResult AdmitPod(const api::Pod& pod, const std::vector<const api::Pod*>& admitted, const AdmitNode& node) {
  if (!pod.spec.os_name.empty() && pod.spec.os_name != "linux")
    return Reject("PodOSNotSupported", "Failed to admit pod as the OS field doesn't match node OS");

  // Resources: the first the node lacks, in noderesources.Fits' order.
  if (auto lacking = InsufficientResources(pod, admitted, node); !lacking.empty()) {
    const auto& r = lacking[0];
    return Reject("OutOf" + r.resource, Insufficient(r.resource.c_str(), r.requested, r.used, r.capacity));
  }

  if (!NodeAffinityMatches(pod, node))
    return Reject("NodeAffinity", "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector");
  if (!pod.spec.node_name.empty() && pod.spec.node_name != node.name)
    return Reject("NodeName", "Predicate NodeName failed: node(s) didn't match the requested node name");
  std::vector<HostPort> mine = HostPorts(pod);
  if (!mine.empty())
    for (const api::Pod* p : admitted)
      for (const auto& theirs : HostPorts(*p))
        for (const auto& m : mine)
          if (Conflicts(m, theirs))
            return Reject("NodePorts", "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports");
  // Sysctls: the safe set and allowedUnsafeSysctls only (upstream's sysctl admit handler).
  if (std::string why = kuberuntime::CheckSysctls(pod, node.allowed_unsafe_sysctls); !why.empty())
    return Reject("SysctlForbidden", why);
  // Privileged containers when the node does not allow them (upstream's capabilities admit handler).
  if (!node.allow_privileged) {
    auto privileged = [](const api::Container& c) { return c.security_context && c.security_context->privileged.value_or(false); };
    for (const auto& c : pod.spec.containers)
      if (privileged(c))
        return Reject("Forbidden", "pod with UID \"" + pod.metadata.uid + "\" specified privileged container, but is disallowed");
    for (const auto& c : pod.spec.init_containers)
      if (privileged(c))
        return Reject("Forbidden",
                      "pod with UID \"" + pod.metadata.uid + "\" specified privileged init container, but is disallowed");
  }
  return {};
}

}  // namespace kubelet

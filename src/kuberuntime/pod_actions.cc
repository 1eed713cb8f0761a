#include <algorithm>
#include <cstdio>

#include "kubelet/api/codec.h"
#include "kubelet/kuberuntime/runtime_manager.h"

namespace kubelet::kuberuntime {

const char* ContainerStateName(ContainerState s) {
  switch (s) {
    case ContainerState::kCreated: return "created";
    case ContainerState::kRunning: return "running";
    case ContainerState::kExited: return "exited";
    default: return "unknown";
  }
}

const ContainerStatus* PodStatus::FindContainer(const std::string& name) const {
  for (const auto& c : containers)
    if (c.name == name) return &c;
  return nullptr;
}

bool RuntimePod::IsRunning() const {
  for (const auto& s : sandboxes)
    if (s.ready) return true;
  for (const auto& c : containers)
    if (c.state == ContainerState::kRunning) return true;
  return false;
}

std::string HashContainer(const api::Container& c) {
  std::string data = api::CanonicalJson(c.raw);
  uint32_t h = 2166136261u;
  for (unsigned char ch : data) {
    h ^= ch;
    h *= 16777619u;
  }
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%08x", h);
  return buf;
}

namespace {

bool ShouldRestartOnFailure(const api::Pod& pod) { return pod.spec.restart_policy != "Never"; }

bool ContainerSucceeded(const api::Container& c, const PodStatus& status) {
  const ContainerStatus* cs = status.FindContainer(c.name);
  return cs && cs->state == ContainerState::kExited && cs->exit_code == 0;
}

// Returns (changed, attempt, sandbox id) as upstream's podSandboxChanged.
std::tuple<bool, uint32_t, std::string> SandboxChanged(const api::Pod& pod, const PodStatus& status) {
  if (status.sandboxes.empty()) return {true, 0, ""};
  int ready = 0;
  for (const auto& s : status.sandboxes)
    if (s.ready) ++ready;
  const SandboxStatus& newest = status.sandboxes.front();
  if (ready > 1) return {true, newest.attempt + 1, newest.id};
  if (!newest.ready) return {true, newest.attempt + 1, newest.id};
  if (newest.host_network != pod.spec.host_network) return {true, newest.attempt + 1, newest.id};
  if (!pod.spec.host_network && newest.ip.empty()) return {true, newest.attempt + 1, newest.id};
  return {false, newest.attempt, newest.id};
}

}  // namespace

bool ShouldContainerBeRestarted(const api::Pod& pod, const api::Container& c, const PodStatus& status) {
  if (pod.metadata.deletion_timestamp) return false;
  const ContainerStatus* cs = status.FindContainer(c.name);
  if (!cs) return true;
  if (cs->state == ContainerState::kRunning) return false;
  if (cs->state == ContainerState::kUnknown || cs->state == ContainerState::kCreated) return true;
  if (pod.spec.restart_policy == "Never") return false;
  if (pod.spec.restart_policy == "OnFailure" && cs->exit_code == 0) return false;
  return true;
}

PodActions ComputePodActions(const api::Pod& pod, const PodStatus& status) {
  PodActions a;
  auto [create, attempt, sandbox_id] = SandboxChanged(pod, status);
  a.kill_pod = create;
  a.create_sandbox = create;
  a.attempt = attempt;
  a.sandbox_id = sandbox_id;
  if (create) {
    // A pod that must not restart and already ran gets no new sandbox.
    if (!ShouldRestartOnFailure(pod) && attempt != 0 && !status.containers.empty()) {
      a.create_sandbox = false;
      return a;
    }
    for (size_t i = 0; i < pod.spec.containers.size(); ++i) {
      if (pod.spec.restart_policy == "OnFailure" && ContainerSucceeded(pod.spec.containers[i], status)) continue;
      a.containers_to_start.push_back(i);
    }
    if (a.containers_to_start.empty()) a.create_sandbox = false;
    return a;
  }

  int keep = 0;
  for (size_t i = 0; i < pod.spec.containers.size(); ++i) {
    const api::Container& c = pod.spec.containers[i];
    const ContainerStatus* cs = status.FindContainer(c.name);
    if (!cs || cs->state != ContainerState::kRunning) {
      if (ShouldContainerBeRestarted(pod, c, status)) {
        a.containers_to_start.push_back(i);
        if (cs && cs->state == ContainerState::kUnknown)
          a.containers_to_kill[cs->id] = {c.name, "Container is in unknown state, try killing it before restart", ""};
      }
      continue;
    }
    if (cs->hash != HashContainer(c)) {
      a.containers_to_start.push_back(i);
      a.containers_to_kill[cs->id] = {c.name, "Container " + c.name + " definition changed, will be restarted", ""};
      continue;
    }
    ++keep;
  }
  if (keep == 0 && a.containers_to_start.empty()) a.kill_pod = true;
  return a;
}

}  // namespace kubelet::kuberuntime

#include <algorithm>
#include <cstdio>

#include "kubelet/api/codec.h"
#include "kubelet/util/fnv.h"
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

// As upstream's HashContainer since 1.31: only the fields a running container may never change (name and image), so
// defaults added by a newer API server, or fields this kubelet does not know, never restart a container.
std::string HashContainer(const api::Container& c) {
  nlohmann::json picked = {{"image", c.image}, {"name", c.name}};
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%x", Fnv32a(picked.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  return buf;
}

bool ContainerHashMatches(const std::string& label, const api::Container& c) {
  if (label == HashContainer(c)) return true;
  // Containers started by an earlier kubelet-cpp carry a hash of the whole container: an upgrade keeps them.
  char legacy[16];
  std::snprintf(legacy, sizeof(legacy), "%08x",
                Fnv32a(c.raw.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  return label.size() == 8 && label == legacy;
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

namespace {

bool InitContainerFailed(const ContainerStatus& cs) {
  return cs.state == ContainerState::kUnknown || (cs.state == ContainerState::kExited && cs.exit_code != 0);
}

// Whether any main container was created or runs: then the pod initialized at some point.
bool AnyRegularContainerCreated(const api::Pod& pod, const PodStatus& status) {
  for (const auto& c : pod.spec.containers) {
    const ContainerStatus* cs = status.FindContainer(c.name);
    if (cs && (cs->state == ContainerState::kCreated || cs->state == ContainerState::kRunning)) return true;
  }
  return false;
}

// Init containers (plain and sidecars) to start this round; returns whether the
// pod is initialized, i.e. the main containers may be looked at. Walks the init
// containers from the last one back: the newest one that ran tells how far
// initialization got, even when older ones were garbage collected.
bool ComputeInitContainerActions(const api::Pod& pod, const PodStatus& status, const ProbeLookup& probes, PodActions* a) {
  const auto& inits = pod.spec.init_containers;
  if (inits.empty()) return true;
  bool initialized = AnyRegularContainerCreated(pod, status);
  bool previous_done = initialized;  // every init container before the current one has completed
  bool restart_on_failure = ShouldRestartOnFailure(pod);
  std::vector<size_t> start;  // collected backwards
  auto kill = [&](const ContainerStatus& cs, const api::Container& c, std::string message, std::string reason) {
    a->containers_to_kill[cs.id] = {c.name, std::move(message), std::move(reason)};
  };
  for (size_t n = inits.size(); n-- > 0;) {
    const api::Container& c = inits[n];
    bool sidecar = api::IsRestartableInitContainer(c);
    const ContainerStatus* cs = status.FindContainer(c.name);
    if (!cs) {
      // Gone from the runtime after initialization: only a sidecar comes back.
      if (previous_done && sidecar) start.push_back(n);
      continue;
    }
    if (previous_done && !sidecar) continue;  // done once, never again
    switch (cs->state) {
      case ContainerState::kCreated:
        // Created but never started (the runtime failed in between): start it.
        start.push_back(n);
        break;
      case ContainerState::kRunning: {
        if (!sidecar) break;  // a plain init container: wait for it to finish
        if (c.startup_probe) {
          std::optional<bool> started = probes.startup ? probes.startup(cs->id) : std::nullopt;
          if (!started) break;  // not probed yet: wait
          if (!*started) {
            kill(*cs, c, "Init container " + c.name + " failed startup probe", "StartupProbe");
            start.push_back(n);
            break;
          }
        }
        if (n + 1 == inits.size()) {
          initialized = true;
        } else if (!previous_done) {
          start.push_back(n + 1);  // started for the first time: on to the next one
        }
        if (!ContainerHashMatches(cs->hash, c)) {
          kill(*cs, c, "Init container " + c.name + " definition changed", "");
          start.push_back(n);
          break;
        }
        if (c.liveness_probe && probes.liveness) {
          std::optional<bool> live = probes.liveness(cs->id);
          if (live && !*live) {
            kill(*cs, c, "Init container " + c.name + " failed liveness probe", "LivenessProbe");
            start.push_back(n);
          }
        }
        break;
      }
      case ContainerState::kExited:
        if (sidecar) {
          start.push_back(n);
        } else if (InitContainerFailed(*cs)) {
          if (!restart_on_failure) {
            a->kill_pod = true;
            a->init_containers_to_start.clear();
            return false;
          }
          start.push_back(n);
        } else if (n + 1 == inits.size()) {
          initialized = true;
        } else {
          start.push_back(n + 1);
        }
        break;
      default:  // unknown state
        if (!sidecar && !restart_on_failure) {
          a->kill_pod = true;
          a->init_containers_to_start.clear();
          return false;
        }
        kill(*cs, c, "Init container is in \"unknown\" state, try killing it before restart", "Unknown");
        start.push_back(n);
        break;
    }
    previous_done = true;
  }
  if (!previous_done) start.push_back(0);  // nothing ran yet: begin with the first
  std::reverse(start.begin(), start.end());
  a->init_containers_to_start = std::move(start);
  return initialized;
}

}  // namespace

PodActions ComputePodActions(const api::Pod& pod, const PodStatus& status, const ProbeLookup& probes) {
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
    std::vector<size_t> to_start;
    for (size_t i = 0; i < pod.spec.containers.size(); ++i) {
      if (pod.spec.restart_policy == "OnFailure" && ContainerSucceeded(pod.spec.containers[i], status)) continue;
      to_start.push_back(i);
    }
    // Nothing left to run and initialization done before: no new sandbox.
    if (to_start.empty() && AnyRegularContainerCreated(pod, status)) {
      a.create_sandbox = false;
      return a;
    }
    // A new sandbox starts from the beginning: the first init container, if any.
    if (!pod.spec.init_containers.empty()) {
      a.init_containers_to_start = {0};
      return a;
    }
    a.containers_to_start = std::move(to_start);
    if (a.containers_to_start.empty()) a.create_sandbox = false;
    return a;
  }

  bool initialized = ComputeInitContainerActions(pod, status, probes, &a);
  if (a.kill_pod || !initialized) return a;

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
    // Running: kill it on a changed spec (always restarted) or a failed liveness or startup probe (per restartPolicy).
    std::string message, reason;
    bool restart = ShouldRestartOnFailure(pod);
    std::optional<bool> live = probes.liveness ? probes.liveness(cs->id) : std::nullopt;
    std::optional<bool> started = probes.startup ? probes.startup(cs->id) : std::nullopt;
    if (!ContainerHashMatches(cs->hash, c)) {
      message = "Container " + c.name + " definition changed";
      restart = true;
    } else if (live && !*live) {
      message = "Container " + c.name + " failed liveness probe";
      reason = "LivenessProbe";
    } else if (started && !*started) {
      message = "Container " + c.name + " failed startup probe";
      reason = "StartupProbe";
    } else {
      ++keep;
      continue;
    }
    if (restart) {
      message += ", will be restarted";
      a.containers_to_start.push_back(i);
    }
    a.containers_to_kill[cs->id] = {c.name, message, reason};
  }
  if (keep == 0 && a.containers_to_start.empty()) {
    a.kill_pod = true;
    a.init_containers_to_start.clear();  // sidecars do not keep a finished pod alive
  }
  return a;
}

}  // namespace kubelet::kuberuntime

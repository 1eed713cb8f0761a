#include <algorithm>

#include "kubelet/api/codec.h"
#include "kubelet/status/status_manager.h"

namespace kubelet::status {

using kuberuntime::ContainerState;

namespace {

const api::ContainerStatus* Find(const std::vector<api::ContainerStatus>& list, const std::string& name) {
  for (const auto& s : list)
    if (s.name == name) return &s;
  return nullptr;
}

// A main container ran at some point: the pod initialized (a restarting sidecar does not send it back to Pending).
bool AnyRegularContainerStarted(const api::Pod& pod, const std::vector<api::ContainerStatus>& statuses) {
  for (const auto& c : pod.spec.containers) {
    const api::ContainerStatus* s = Find(statuses, c.name);
    if (s && (s->state.running || s->state.terminated || (s->state.waiting && s->last_termination_state.terminated)))
      return true;
  }
  return false;
}

std::string BracketList(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? " " : "") + names[i];
  return out + "]";
}

}  // namespace

std::string GetPhase(const api::Pod& pod, const std::vector<api::ContainerStatus>& init_statuses,
                     const std::vector<api::ContainerStatus>& statuses, bool pod_is_terminal) {
  int pending_init = 0, failed_init = 0;
  int unknown = 0, running = 0, waiting = 0, stopped = 0, succeeded = 0;
  for (const auto& c : pod.spec.init_containers) {
    const api::ContainerStatus* s = Find(init_statuses, c.name);
    if (api::IsRestartableInitContainer(c)) {
      // Sidecars: running counts once started; terminated ones do not count.
      if (!s) {
        ++unknown;
      } else if (s->state.running) {
        if (!s->started.value_or(false)) ++pending_init;
        ++running;
      } else if (s->state.waiting && !s->last_termination_state.terminated) {
        ++pending_init;
        ++waiting;
      } else if (!s->state.terminated && !s->state.waiting) {
        ++pending_init;
        ++unknown;
      }
      continue;
    }
    if (!s || s->state.running) {
      ++pending_init;
    } else if (s->state.terminated) {
      if (s->state.terminated->exit_code != 0) ++failed_init;
    } else if (s->state.waiting) {
      if (s->last_termination_state.terminated) {
        if (s->last_termination_state.terminated->exit_code != 0) ++failed_init;
      } else {
        ++pending_init;
      }
    } else {
      ++pending_init;
    }
  }
  for (const auto& c : pod.spec.containers) {
    const api::ContainerStatus* s = Find(statuses, c.name);
    if (!s) {
      ++unknown;
    } else if (s->state.running) {
      ++running;
    } else if (s->state.terminated) {
      ++stopped;
      if (s->state.terminated->exit_code == 0) ++succeeded;
    } else if (s->state.waiting) {
      if (s->last_termination_state.terminated) {
        ++stopped;
      } else {
        ++waiting;
      }
    } else {
      ++unknown;
    }
  }
  if (failed_init > 0 && pod.spec.restart_policy == "Never") return "Failed";
  if ((pending_init > 0 && !AnyRegularContainerStarted(pod, statuses)) || waiting > 0) return "Pending";
  if (running > 0 && unknown == 0) return "Running";
  if (running == 0 && stopped > 0 && unknown == 0) {
    // Upstream leaves static pods out of this (kubernetes#116484).
    if (pod_is_terminal && !api::IsStaticPod(pod)) return stopped == succeeded ? "Succeeded" : "Failed";
    if (pod.spec.restart_policy == "Always") return "Running";
    if (stopped == succeeded) return "Succeeded";
    if (pod.spec.restart_policy == "Never") return "Failed";
    return "Running";
  }
  return "Pending";
}

std::string GetPhase(const api::Pod& pod, const std::vector<api::ContainerStatus>& statuses, bool pod_is_terminal) {
  return GetPhase(pod, {}, statuses, pod_is_terminal);
}

namespace {

api::ContainerStateTerminated Terminated(const kuberuntime::ContainerStatus& cs, const std::string& prefix) {
  api::ContainerStateTerminated t;
  t.exit_code = cs.exit_code;
  t.reason = !cs.reason.empty() ? cs.reason : (cs.exit_code == 0 ? "Completed" : "Error");
  t.message = cs.message;
  t.started_at = cs.started_at;
  t.finished_at = cs.finished_at;
  t.container_id = prefix + cs.id;
  return t;
}

api::PodCondition Cond(const char* type, bool ok, const std::string& reason = "", const std::string& msg = "") {
  api::PodCondition c;
  c.type = type;
  c.status = ok ? "True" : "False";
  c.reason = ok ? "" : reason;
  c.message = ok ? "" : msg;
  return c;
}

}  // namespace

api::PodStatus GenerateAPIPodStatus(const api::Pod& pod, const kuberuntime::PodStatus& rs,
                                    const std::optional<api::PodStatus>& old, const StatusInputs& in) {
  api::PodStatus s;
  std::string prefix = in.runtime_type + "://";
  bool sandbox_ready = !rs.sandboxes.empty() && rs.sandboxes.front().ready;
  bool has_init = !pod.spec.init_containers.empty();
  const char* default_wait = has_init ? "PodInitializing" : "ContainerCreating";

  auto build = [&](const api::Container& c, bool init, const std::vector<api::ContainerStatus>* old_list) {
    api::ContainerStatus out;
    out.name = c.name;
    out.image = c.image;
    bool plain_init = init && !api::IsRestartableInitContainer(c);
    // Newest and previous runtime instances of this container.
    const kuberuntime::ContainerStatus* latest = nullptr;
    const kuberuntime::ContainerStatus* previous = nullptr;
    for (const auto& cs : rs.containers) {
      if (cs.name != c.name) continue;
      if (!latest) {
        latest = &cs;
      } else if (!previous) {
        previous = &cs;
        break;
      }
    }
    auto reason = in.waiting_reason ? in.waiting_reason(c.name) : std::nullopt;
    if (!latest) {
      api::ContainerStateWaiting w;
      w.reason = reason ? reason->reason : default_wait;
      if (reason) w.message = reason->message;
      out.state.waiting = w;
      // Keep the last termination across sandbox re-creation, as the API status did.
      if (old_list)
        for (const auto& oc : *old_list)
          if (oc.name == c.name) {
            out.restart_count = oc.restart_count;
            out.last_termination_state = oc.state.terminated ? oc.state : oc.last_termination_state;
          }
      out.started = false;
      return out;
    }
    out.container_id = prefix + latest->id;
    out.image_id = latest->image_ref;
    if (!latest->image.empty() && latest->image.rfind("sha256:", 0) != 0) out.image = latest->image;
    out.restart_count = latest->restart_count;
    switch (latest->state) {
      case ContainerState::kRunning: {
        out.state.running = api::ContainerStateRunning{latest->started_at};
        // Started once the startup probe passed (or there is none); ready once started and the readiness probe passed.
        bool started = !c.startup_probe || (in.startup && in.startup(latest->id).value_or(false));
        bool ready = started && (!c.readiness_probe || (in.readiness && in.readiness(latest->id).value_or(false)));
        out.started = started;
        out.ready = !plain_init && ready;
        break;
      }
      case ContainerState::kExited:
        if (reason && sandbox_ready && !pod.metadata.deletion_timestamp) {
          // It will be restarted: show the wait (CrashLoopBackOff, ...) and the exit as lastState.
          out.state.waiting = api::ContainerStateWaiting{reason->reason, reason->message};
          out.last_termination_state.terminated = Terminated(*latest, prefix);
        } else {
          out.state.terminated = Terminated(*latest, prefix);
          if (previous && previous->state == ContainerState::kExited)
            out.last_termination_state.terminated = Terminated(*previous, prefix);
        }
        out.started = false;
        // A plain init container is ready once it completed.
        out.ready = plain_init && out.state.terminated && out.state.terminated->exit_code == 0;
        break;
      default:
        out.state.waiting = api::ContainerStateWaiting{reason ? reason->reason : default_wait, reason ? reason->message : ""};
        out.started = false;
        break;
    }
    if (!out.last_termination_state.terminated && previous && previous->state == ContainerState::kExited)
      out.last_termination_state.terminated = Terminated(*previous, prefix);
    return out;
  };
  for (const auto& c : pod.spec.init_containers)
    s.init_container_statuses.push_back(build(c, true, old ? &old->init_container_statuses : nullptr));
  for (const auto& c : pod.spec.containers)
    s.container_statuses.push_back(build(c, false, old ? &old->container_statuses : nullptr));

  s.phase = GetPhase(pod, s.init_container_statuses, s.container_statuses, in.pod_is_terminal);
  s.qos_class = api::QOSClass(pod);
  s.host_ip = in.host_ip;
  if (!in.host_ip.empty()) s.host_ips = {in.host_ip};
  if (pod.spec.host_network) {
    if (!in.host_ip.empty()) s.pod_ips = {in.host_ip};
  } else {
    s.pod_ips = rs.ips;
  }
  if (!s.pod_ips.empty()) s.pod_ip = s.pod_ips.front();
  s.start_time = old && old->start_time ? old->start_time : std::optional<TimePoint>(in.now);

  bool succeeded = s.phase == "Succeeded";
  // Initialized: every plain init container completed and every sidecar started (or a main container already ran).
  std::vector<std::string> incomplete;
  if (!AnyRegularContainerStarted(pod, s.container_statuses))
    for (size_t i = 0; i < pod.spec.init_containers.size(); ++i) {
      const auto& c = pod.spec.init_containers[i];
      const auto& st = s.init_container_statuses[i];
      if (api::IsRestartableInitContainer(c) ? !st.started.value_or(false) : !st.ready) incomplete.push_back(c.name);
    }
  bool initialized = incomplete.empty() || succeeded;
  // Ready: sidecars and main containers all ready.
  std::vector<std::string> unready;
  for (size_t i = 0; i < pod.spec.init_containers.size(); ++i)
    if (api::IsRestartableInitContainer(pod.spec.init_containers[i]) && !s.init_container_statuses[i].ready)
      unready.push_back(pod.spec.init_containers[i].name);
  for (const auto& cs : s.container_statuses)
    if (!cs.ready) unready.push_back(cs.name);
  bool ready = unready.empty();
  std::string not_ready_reason = succeeded ? "PodCompleted" : "ContainersNotReady";
  std::string unready_msg = succeeded ? "" : "containers with unready status: " + BracketList(unready);
  s.conditions.push_back(Cond("PodReadyToStartContainers", sandbox_ready && (pod.spec.host_network || !rs.ips.empty())));
  s.conditions.push_back(Cond("Initialized", initialized, "ContainersNotInitialized",
                              "containers with incomplete status: " + BracketList(incomplete)));
  if (succeeded) s.conditions.back().reason = "PodCompleted";
  s.conditions.push_back(Cond("Ready", ready && !succeeded, not_ready_reason, unready_msg));
  s.conditions.push_back(Cond("ContainersReady", ready && !succeeded, not_ready_reason, unready_msg));
  s.conditions.push_back(Cond("PodScheduled", true));
  for (auto& c : s.conditions) c.last_transition_time = in.now;
  return s;
}

std::optional<api::PodStatus> StatusManager::GetPodStatus(const std::string& uid) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = statuses_.find(uid);
  if (it == statuses_.end()) return std::nullopt;
  return it->second;
}

bool StatusManager::SetPodStatus(const std::string& uid, api::PodStatus& status) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = statuses_.find(uid);
  if (it != statuses_.end()) {
    for (auto& c : status.conditions)
      for (const auto& oc : it->second.conditions)
        if (oc.type == c.type && oc.status == c.status) c.last_transition_time = oc.last_transition_time;
    if (!status.start_time) status.start_time = it->second.start_time;
    const auto& a = api::EncodePodStatus(status);
    const auto& b = api::EncodePodStatus(it->second);
    if (a == b) return false;
  }
  statuses_[uid] = status;
  return true;
}

void StatusManager::RemoveOrphanedStatuses(const std::set<std::string>& keep) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = statuses_.begin(); it != statuses_.end();)
    it = keep.count(it->first) ? std::next(it) : statuses_.erase(it);
}

size_t StatusManager::Size() const {
  std::lock_guard<std::mutex> l(mu_);
  return statuses_.size();
}

}  // namespace kubelet::status

#include <algorithm>

#include "kubelet/api/codec.h"
#include "kubelet/status/status_manager.h"

namespace kubelet::status {

using kuberuntime::ContainerState;

std::string GetPhase(const api::Pod& pod, const std::vector<api::ContainerStatus>& statuses, bool pod_is_terminal) {
  int unknown = 0, running = 0, waiting = 0, stopped = 0, succeeded = 0;
  for (const auto& c : pod.spec.containers) {
    auto it = std::find_if(statuses.begin(), statuses.end(), [&](const auto& s) { return s.name == c.name; });
    if (it == statuses.end()) {
      ++unknown;
      continue;
    }
    if (it->state.running) {
      ++running;
    } else if (it->state.terminated) {
      ++stopped;
      if (it->state.terminated->exit_code == 0) ++succeeded;
    } else if (it->state.waiting) {
      if (it->last_termination_state.terminated) {
        ++stopped;
      } else {
        ++waiting;
      }
    } else {
      ++unknown;
    }
  }
  if (waiting > 0) return "Pending";
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
  for (const auto& c : pod.spec.containers) {
    api::ContainerStatus out;
    out.name = c.name;
    out.image = c.image;
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
      w.reason = reason ? reason->reason : "ContainerCreating";
      if (reason) w.message = reason->message;
      out.state.waiting = w;
      // Keep the last termination across sandbox re-creation, as the API status did.
      if (old) {
        for (const auto& oc : old->container_statuses)
          if (oc.name == c.name) {
            out.restart_count = oc.restart_count;
            if (oc.state.terminated) out.last_termination_state = oc.state;
            else out.last_termination_state = oc.last_termination_state;
          }
      }
      out.started = false;
      s.container_statuses.push_back(out);
      continue;
    }
    out.container_id = prefix + latest->id;
    out.image_id = latest->image_ref;
    if (!latest->image.empty() && latest->image.rfind("sha256:", 0) != 0) out.image = latest->image;
    out.restart_count = latest->restart_count;
    switch (latest->state) {
      case ContainerState::kRunning:
        out.state.running = api::ContainerStateRunning{latest->started_at};
        out.ready = true;  // no readiness probe yet: running means ready
        out.started = true;
        break;
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
        break;
      default:
        out.state.waiting = api::ContainerStateWaiting{reason ? reason->reason : "ContainerCreating", reason ? reason->message : ""};
        out.started = false;
        break;
    }
    if (!out.last_termination_state.terminated && previous && previous->state == ContainerState::kExited)
      out.last_termination_state.terminated = Terminated(*previous, prefix);
    s.container_statuses.push_back(out);
  }

  s.phase = GetPhase(pod, s.container_statuses, in.pod_is_terminal);
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

  bool terminal = s.phase == "Succeeded" || s.phase == "Failed";
  std::vector<std::string> unready;
  for (const auto& cs : s.container_statuses)
    if (!cs.ready) unready.push_back(cs.name);
  std::string unready_msg;
  if (!unready.empty()) {
    unready_msg = "containers with unready status: [";
    for (size_t i = 0; i < unready.size(); ++i) unready_msg += (i ? " " : "") + unready[i];
    unready_msg += "]";
  }
  std::string not_ready_reason = terminal ? "PodCompleted" : "ContainersNotReady";
  s.conditions.push_back(Cond("PodReadyToStartContainers", sandbox_ready && (pod.spec.host_network || !rs.ips.empty())));
  s.conditions.push_back(Cond("Initialized", true));
  s.conditions.push_back(Cond("Ready", unready.empty() && !terminal, not_ready_reason, terminal ? "" : unready_msg));
  s.conditions.push_back(Cond("ContainersReady", unready.empty() && !terminal, not_ready_reason, terminal ? "" : unready_msg));
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

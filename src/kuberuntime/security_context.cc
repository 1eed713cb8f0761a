#include "kubelet/kuberuntime/security_context.h"

namespace kubelet::kuberuntime {

namespace rt = ::runtime::v1;
using json = nlohmann::json;

namespace {

const json& Obj(const json& j, const char* key) {
  static const json kEmpty = json::object();
  if (!j.is_object()) return kEmpty;
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

std::optional<int64_t> Int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::optional<bool> Bool(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

const json& PodSC(const api::Pod& pod) { return Obj(Obj(pod.raw, "spec"), "securityContext"); }
const json& ContainerSC(const api::Container& c) { return Obj(c.raw, "securityContext"); }

// The container's value, else the pod's.
std::optional<int64_t> EffectiveInt(const api::Pod& pod, const api::Container& c, const char* key) {
  if (auto v = Int(ContainerSC(c), key)) return v;
  return Int(PodSC(pod), key);
}

// seccompProfile / appArmorProfile {type, localhostProfile} to a CRI profile; nullopt when neither sets it.
std::optional<rt::SecurityProfile> Profile(const json& container_sc, const json& pod_sc, const char* key) {
  const json* p = nullptr;
  if (container_sc.contains(key) && container_sc[key].is_object()) p = &container_sc[key];
  else if (pod_sc.contains(key) && pod_sc[key].is_object()) p = &pod_sc[key];
  if (!p) return std::nullopt;
  rt::SecurityProfile out;
  std::string type = p->value("type", "");
  if (type == "Unconfined") {
    out.set_profile_type(rt::SecurityProfile::Unconfined);
  } else if (type == "Localhost") {
    out.set_profile_type(rt::SecurityProfile::Localhost);
    out.set_localhost_ref(p->value("localhostProfile", ""));
  } else {
    out.set_profile_type(rt::SecurityProfile::RuntimeDefault);
  }
  return out;
}

std::string PodRef(const api::Pod& pod) { return pod.metadata.name + "_" + pod.metadata.namespace_ + "(" + pod.metadata.uid + ")"; }

}  // namespace

bool NeedsImageUser(const api::Pod& pod, const api::Container& c) {
  std::optional<bool> non_root = Bool(ContainerSC(c), "runAsNonRoot");
  if (!non_root) non_root = Bool(PodSC(pod), "runAsNonRoot");
  return non_root.value_or(false) && !EffectiveInt(pod, c, "runAsUser");
}

absl::Status BuildContainerSecurityContext(const api::Pod& pod, const api::Container& c, const SecurityOptions& o,
                                           const std::optional<ImageUser>& image_user, rt::LinuxContainerSecurityContext* out) {
  const json& csc = ContainerSC(c);
  const json& psc = PodSC(pod);
  bool privileged = Bool(csc, "privileged").value_or(false);
  if (privileged && !o.allow_privileged)
    return absl::PermissionDeniedError("pod with UID \"" + pod.metadata.uid + "\" specified privileged container, but is disallowed");
  out->set_privileged(privileged);
  std::optional<int64_t> uid = EffectiveInt(pod, c, "runAsUser");
  std::optional<int64_t> gid = EffectiveInt(pod, c, "runAsGroup");
  if (uid) out->mutable_run_as_user()->set_value(*uid);
  if (gid) out->mutable_run_as_group()->set_value(*gid);

  // runAsNonRoot, as upstream's verifyRunAsNonRoot.
  std::optional<bool> non_root = Bool(csc, "runAsNonRoot");
  if (!non_root) non_root = Bool(psc, "runAsNonRoot");
  if (non_root.value_or(false)) {
    if (uid) {
      if (*uid == 0)
        return absl::InvalidArgumentError("container's runAsUser breaks non-root policy (pod: \"" + PodRef(pod) +
                                          "\", container: " + c.name + ")");
    } else if (image_user) {
      if (image_user->uid && *image_user->uid == 0)
        return absl::InvalidArgumentError("container has runAsNonRoot and image will run as root (pod: \"" + PodRef(pod) +
                                          "\", container: " + c.name + ")");
      if (!image_user->uid && !image_user->username.empty())
        return absl::InvalidArgumentError("container has runAsNonRoot and image has non-numeric user (" + image_user->username +
                                          "), cannot verify user is non-root (pod: \"" + PodRef(pod) + "\", container: " + c.name + ")");
      if (!image_user->uid && image_user->username.empty())
        return absl::InvalidArgumentError("container has runAsNonRoot and image will run as root (pod: \"" + PodRef(pod) +
                                          "\", container: " + c.name + ")");
    }
  }

  out->set_readonly_rootfs(Bool(csc, "readOnlyRootFilesystem").value_or(false));
  if (Bool(csc, "allowPrivilegeEscalation") == std::optional<bool>(false)) out->set_no_new_privs(true);
  const json& caps = Obj(csc, "capabilities");
  for (const char* key : {"add", "drop"})
    if (caps.contains(key) && caps[key].is_array())
      for (const auto& cap : caps[key])
        if (cap.is_string())
          (std::string(key) == "add" ? out->mutable_capabilities()->add_add_capabilities()
                                     : out->mutable_capabilities()->add_drop_capabilities())
              ->assign(cap.get<std::string>());

  // Supplemental groups: fsGroup and the pod's supplementalGroups.
  if (auto fs_group = Int(psc, "fsGroup")) out->add_supplemental_groups(*fs_group);
  if (psc.contains("supplementalGroups") && psc["supplementalGroups"].is_array())
    for (const auto& g : psc["supplementalGroups"])
      if (g.is_number_integer()) out->add_supplemental_groups(g.get<int64_t>());

  // seccomp: the profile asked for, else RuntimeDefault with seccompDefault, else Unconfined.
  if (auto p = Profile(csc, psc, "seccompProfile")) {
    *out->mutable_seccomp() = *p;
  } else {
    out->mutable_seccomp()->set_profile_type(o.seccomp_default && !privileged ? rt::SecurityProfile::RuntimeDefault
                                                                                : rt::SecurityProfile::Unconfined);
  }
  if (auto p = Profile(csc, psc, "appArmorProfile")) *out->mutable_apparmor() = *p;

  // The default masked and read-only /proc paths, unless privileged or procMount: Unmasked.
  if (!privileged && csc.value("procMount", "Default") != "Unmasked") {
    for (const char* p : {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"})
      out->add_masked_paths(p);
    for (const char* p : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) out->add_readonly_paths(p);
  }
  return absl::OkStatus();
}

void BuildSandboxSecurityContext(const api::Pod& pod, const SecurityOptions& o, rt::LinuxPodSandboxConfig* out) {
  const json& psc = PodSC(pod);
  auto* sc = out->mutable_security_context();
  if (auto uid = Int(psc, "runAsUser")) sc->mutable_run_as_user()->set_value(*uid);
  if (auto gid = Int(psc, "runAsGroup")) sc->mutable_run_as_group()->set_value(*gid);
  if (auto fs_group = Int(psc, "fsGroup")) sc->add_supplemental_groups(*fs_group);
  if (psc.contains("supplementalGroups") && psc["supplementalGroups"].is_array())
    for (const auto& g : psc["supplementalGroups"])
      if (g.is_number_integer()) sc->add_supplemental_groups(g.get<int64_t>());
  bool privileged = false;
  for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
    for (const auto& c : *list) privileged |= Bool(ContainerSC(c), "privileged").value_or(false);
  sc->set_privileged(privileged && o.allow_privileged);
  if (auto p = Profile(json::object(), psc, "seccompProfile")) {
    *sc->mutable_seccomp() = *p;
  } else {
    sc->mutable_seccomp()->set_profile_type(o.seccomp_default ? rt::SecurityProfile::RuntimeDefault : rt::SecurityProfile::Unconfined);
  }
  if (psc.contains("sysctls") && psc["sysctls"].is_array())
    for (const auto& s : psc["sysctls"])
      if (s.is_object() && s.contains("name") && s["name"].is_string())
        (*out->mutable_sysctls())[s["name"].get<std::string>()] = s.value("value", "");
}

const std::vector<std::string>& SafeSysctls() {
  static const std::vector<std::string> kSafe = {
      "kernel.shm_rmid_forced",       "net.ipv4.ip_local_port_range",     "net.ipv4.tcp_syncookies",
      "net.ipv4.ping_group_range",    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports",
      "net.ipv4.tcp_keepalive_time",  "net.ipv4.tcp_fin_timeout",         "net.ipv4.tcp_keepalive_intvl",
      "net.ipv4.tcp_keepalive_probes"};
  return kSafe;
}

std::string CheckSysctls(const api::Pod& pod, const std::vector<std::string>& allowed_unsafe) {
  const json& psc = PodSC(pod);
  if (!psc.contains("sysctls") || !psc["sysctls"].is_array()) return "";
  for (const auto& s : psc["sysctls"]) {
    if (!s.is_object() || !s.contains("name") || !s["name"].is_string()) continue;
    std::string name = s["name"];
    // Sysctls name either form: kernel.shm_rmid_forced or kernel/shm_rmid_forced.
    std::string dotted = name;
    for (auto& ch : dotted)
      if (ch == '/') ch = '.';
    bool allowed = std::find(SafeSysctls().begin(), SafeSysctls().end(), dotted) != SafeSysctls().end();
    for (const auto& a : allowed_unsafe) {
      if (!a.empty() && a.back() == '*' ? dotted.rfind(a.substr(0, a.size() - 1), 0) == 0 : dotted == a) allowed = true;
    }
    if (!allowed) return "forbidden sysctl: \"" + name + "\" not allowlisted";
    if (pod.spec.host_network && dotted.rfind("net.", 0) == 0)
      return "forbidden sysctl: \"" + name + "\" not allowed with host net enabled";
    if (pod.spec.host_ipc && (dotted.rfind("kernel.shm", 0) == 0 || dotted.rfind("kernel.msg", 0) == 0 ||
                              dotted.rfind("kernel.sem", 0) == 0 || dotted.rfind("fs.mqueue.", 0) == 0))
      return "forbidden sysctl: \"" + name + "\" not allowed with host ipc enabled";
  }
  return "";
}

}  // namespace kubelet::kuberuntime

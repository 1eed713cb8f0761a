#include "kubelet/kuberuntime/security_context.h"

namespace kubelet::kuberuntime {

namespace rt = ::runtime::v1;

namespace {

const api::SecurityContext& ContainerSC(const api::Container& c) {
  static const api::SecurityContext kNone;
  return c.security_context ? *c.security_context : kNone;
}

// seccompProfile / appArmorProfile to a CRI profile: the container's, else the pod's; nullopt when neither sets it.
std::optional<rt::SecurityProfile> Profile(const std::optional<api::SecurityProfile>& container,
                                           const std::optional<api::SecurityProfile>& pod) {
  const auto& p = container ? container : pod;
  if (!p) return std::nullopt;
  rt::SecurityProfile out;
  if (p->type == "Unconfined") {
    out.set_profile_type(rt::SecurityProfile::Unconfined);
  } else if (p->type == "Localhost") {
    out.set_profile_type(rt::SecurityProfile::Localhost);
    out.set_localhost_ref(p->localhost_profile);
  } else {
    out.set_profile_type(rt::SecurityProfile::RuntimeDefault);
  }
  return out;
}

std::string PodRef(const api::Pod& pod) { return pod.metadata.name + "_" + pod.metadata.namespace_ + "(" + pod.metadata.uid + ")"; }

}  // namespace

bool NeedsImageUser(const api::Pod& pod, const api::Container& c) {
  const auto& csc = ContainerSC(c);
  const auto& psc = pod.spec.security_context;
  bool non_root = csc.run_as_non_root.value_or(psc.run_as_non_root.value_or(false));
  return non_root && !csc.run_as_user && !psc.run_as_user;
}

absl::Status BuildContainerSecurityContext(const api::Pod& pod, const api::Container& c, const SecurityOptions& o,
                                           const std::optional<ImageUser>& image_user, rt::LinuxContainerSecurityContext* out) {
  const api::SecurityContext& csc = ContainerSC(c);
  const api::PodSecurityContext& psc = pod.spec.security_context;
  bool privileged = csc.privileged.value_or(false);
  if (privileged && !o.allow_privileged)
    return absl::PermissionDeniedError("pod with UID \"" + pod.metadata.uid + "\" specified privileged container, but is disallowed");
  out->set_privileged(privileged);
  std::optional<int64_t> uid = csc.run_as_user ? csc.run_as_user : psc.run_as_user;
  std::optional<int64_t> gid = csc.run_as_group ? csc.run_as_group : psc.run_as_group;
  if (uid) out->mutable_run_as_user()->set_value(*uid);
  if (gid) out->mutable_run_as_group()->set_value(*gid);

  // runAsNonRoot, as upstream's verifyRunAsNonRoot.
  std::optional<bool> non_root = csc.run_as_non_root ? csc.run_as_non_root : psc.run_as_non_root;
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

  out->set_readonly_rootfs(csc.read_only_root_filesystem.value_or(false));
  if (csc.allow_privilege_escalation == std::optional<bool>(false)) out->set_no_new_privs(true);
  if (csc.capabilities) {
    for (const auto& cap : csc.capabilities->add) out->mutable_capabilities()->add_add_capabilities(cap);
    for (const auto& cap : csc.capabilities->drop) out->mutable_capabilities()->add_drop_capabilities(cap);
  }

  // Supplemental groups: fsGroup and the pod's supplementalGroups.
  if (psc.fs_group) out->add_supplemental_groups(*psc.fs_group);
  for (int64_t g : psc.supplemental_groups) out->add_supplemental_groups(g);

  // seccomp: the profile asked for, else RuntimeDefault with seccompDefault, else Unconfined.
  if (auto p = Profile(csc.seccomp_profile, psc.seccomp_profile)) {
    *out->mutable_seccomp() = *p;
  } else {
    out->mutable_seccomp()->set_profile_type(o.seccomp_default && !privileged ? rt::SecurityProfile::RuntimeDefault
                                                                                : rt::SecurityProfile::Unconfined);
  }
  if (auto p = Profile(csc.app_armor_profile, psc.app_armor_profile)) *out->mutable_apparmor() = *p;

  // The default masked and read-only /proc paths, unless privileged or procMount: Unmasked.
  if (!privileged && csc.proc_mount != "Unmasked") {
    for (const char* p : {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"})
      out->add_masked_paths(p);
    for (const char* p : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) out->add_readonly_paths(p);
  }
  return absl::OkStatus();
}

void BuildSandboxSecurityContext(const api::Pod& pod, const SecurityOptions& o, rt::LinuxPodSandboxConfig* out) {
  const api::PodSecurityContext& psc = pod.spec.security_context;
  auto* sc = out->mutable_security_context();
  if (psc.run_as_user) sc->mutable_run_as_user()->set_value(*psc.run_as_user);
  if (psc.run_as_group) sc->mutable_run_as_group()->set_value(*psc.run_as_group);
  if (psc.fs_group) sc->add_supplemental_groups(*psc.fs_group);
  for (int64_t g : psc.supplemental_groups) sc->add_supplemental_groups(g);
  bool privileged = false;
  for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
    for (const auto& c : *list) privileged |= ContainerSC(c).privileged.value_or(false);
  sc->set_privileged(privileged && o.allow_privileged);
  if (auto p = Profile(std::nullopt, psc.seccomp_profile)) {
    *sc->mutable_seccomp() = *p;
  } else {
    sc->mutable_seccomp()->set_profile_type(o.seccomp_default ? rt::SecurityProfile::RuntimeDefault : rt::SecurityProfile::Unconfined);
  }
  for (const auto& s : psc.sysctls) (*out->mutable_sysctls())[s.name] = s.value;
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
  for (const auto& s : pod.spec.security_context.sysctls) {
    const std::string& name = s.name;
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

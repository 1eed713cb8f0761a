#pragma once
// Pod and container securityContext to CRI, as upstream's kuberuntime does:
// the container's fields override the pod's (runAsUser, runAsGroup,
// runAsNonRoot, seccompProfile, appArmorProfile), supplemental groups carry
// fsGroup, allowPrivilegeEscalation=false sets no_new_privs, the default
// masked and read-only /proc paths apply unless the container is privileged
// or asks for an unmasked /proc, and runAsNonRoot is verified against the
// user the container will run as.
#include <optional>
#include <string>
#include <vector>

#include <absl/status/status.h>

#include "kubelet/api/types.h"
#include "runtime/v1/api.pb.h"

namespace kubelet::kuberuntime {

struct SecurityOptions {
  bool seccomp_default = false;    // seccompDefault: RuntimeDefault when the pod says nothing
  bool allow_privileged = true;    // --allow-privileged (upstream always allows since 1.15)
};

/** The user the image runs as (CRI ImageStatus), for the runAsNonRoot check. */
struct ImageUser {
  std::optional<int64_t> uid;
  std::string username;
};

/** Fills the container's CRI security context; an error is a CreateContainerConfigError with upstream's message. */
absl::Status BuildContainerSecurityContext(const api::Pod& pod, const api::Container& c, const SecurityOptions& o,
                                           const std::optional<ImageUser>& image_user,
                                           ::runtime::v1::LinuxContainerSecurityContext* out);
/** Whether runAsNonRoot needs the image's user to be checked (set, and no runAsUser says who). */
bool NeedsImageUser(const api::Pod& pod, const api::Container& c);
/** The sandbox's CRI security context and sysctls. */
void BuildSandboxSecurityContext(const api::Pod& pod, const SecurityOptions& o, ::runtime::v1::LinuxPodSandboxConfig* out);

/** Upstream's safe sysctls, namespaced and allowed for every pod. */
const std::vector<std::string>& SafeSysctls();
/** Sysctl admission: empty when allowed, else upstream's reason message. allowed_unsafe may end in '*'. */
std::string CheckSysctls(const api::Pod& pod, const std::vector<std::string>& allowed_unsafe);

}  // namespace kubelet::kuberuntime

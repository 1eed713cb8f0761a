// securityContext to CRI: pod/container precedence, runAsNonRoot checks with
// upstream's messages, capabilities, seccomp defaults, masked paths, sysctls.
#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/kubelet/admission.h"
#include "kubelet/kuberuntime/security_context.h"

namespace kubelet::kuberuntime {
namespace {

using json = nlohmann::json;
namespace rt = ::runtime::v1;

api::Pod MakePod(json pod_sc, json container_sc, json spec_extra = json::object()) {
  json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"namespace", "ns"}, {"uid", "u1"}}},
            {"spec", {{"securityContext", pod_sc}, {"containers", {{{"name", "c"}, {"image", "x:1"}, {"securityContext", container_sc}}}}}}};
  j["spec"].update(spec_extra);
  api::ApplyPodDefaults(j);
  return *api::DecodePod(j);
}

TEST(SecurityContext, ContainerOverridesPodAndGroupsCarryFsGroup) {
  auto pod = MakePod({{"runAsUser", 1000}, {"runAsGroup", 3000}, {"fsGroup", 2000}, {"supplementalGroups", {4000}}},
                     {{"runAsUser", 1001}, {"readOnlyRootFilesystem", true}, {"allowPrivilegeEscalation", false},
                      {"capabilities", {{"add", {"NET_ADMIN"}}, {"drop", {"ALL"}}}}});
  rt::LinuxContainerSecurityContext sc;
  ASSERT_TRUE(BuildContainerSecurityContext(pod, pod.spec.containers[0], {}, std::nullopt, &sc).ok());
  EXPECT_EQ(sc.run_as_user().value(), 1001);
  EXPECT_EQ(sc.run_as_group().value(), 3000);
  EXPECT_TRUE(sc.readonly_rootfs());
  EXPECT_TRUE(sc.no_new_privs());
  EXPECT_FALSE(sc.privileged());
  ASSERT_EQ(sc.supplemental_groups_size(), 2);
  EXPECT_EQ(sc.supplemental_groups(0), 2000);
  EXPECT_EQ(sc.supplemental_groups(1), 4000);
  EXPECT_EQ(sc.capabilities().add_capabilities(0), "NET_ADMIN");
  EXPECT_EQ(sc.capabilities().drop_capabilities(0), "ALL");
  EXPECT_EQ(sc.seccomp().profile_type(), rt::SecurityProfile::Unconfined);  // seccompDefault off
  EXPECT_GT(sc.masked_paths_size(), 5);
  EXPECT_EQ(sc.readonly_paths(0), "/proc/bus");
}

TEST(SecurityContext, SeccompAppArmorAndPrivileged) {
  auto pod = MakePod({{"seccompProfile", {{"type", "Localhost"}, {"localhostProfile", "profiles/audit.json"}}}},
                     {{"appArmorProfile", {{"type", "RuntimeDefault"}}}});
  rt::LinuxContainerSecurityContext sc;
  ASSERT_TRUE(BuildContainerSecurityContext(pod, pod.spec.containers[0], {}, std::nullopt, &sc).ok());
  EXPECT_EQ(sc.seccomp().profile_type(), rt::SecurityProfile::Localhost);
  EXPECT_EQ(sc.seccomp().localhost_ref(), "profiles/audit.json");
  EXPECT_EQ(sc.apparmor().profile_type(), rt::SecurityProfile::RuntimeDefault);
  auto plain = MakePod(json::object(), json::object());
  rt::LinuxContainerSecurityContext d;
  ASSERT_TRUE(BuildContainerSecurityContext(plain, plain.spec.containers[0], {true, true}, std::nullopt, &d).ok());
  EXPECT_EQ(d.seccomp().profile_type(), rt::SecurityProfile::RuntimeDefault);  // seccompDefault on
  EXPECT_FALSE(d.has_apparmor());
  auto priv = MakePod(json::object(), {{"privileged", true}});
  rt::LinuxContainerSecurityContext p;
  ASSERT_TRUE(BuildContainerSecurityContext(priv, priv.spec.containers[0], {}, std::nullopt, &p).ok());
  EXPECT_TRUE(p.privileged());
  EXPECT_EQ(p.masked_paths_size(), 0);
  rt::LinuxContainerSecurityContext refused;
  auto st = BuildContainerSecurityContext(priv, priv.spec.containers[0], {false, false}, std::nullopt, &refused);
  EXPECT_EQ(st.message(), "pod with UID \"u1\" specified privileged container, but is disallowed");
}

TEST(SecurityContext, RunAsNonRoot) {
  rt::LinuxContainerSecurityContext sc;
  auto root = MakePod({{"runAsNonRoot", true}}, {{"runAsUser", 0}});
  EXPECT_EQ(BuildContainerSecurityContext(root, root.spec.containers[0], {}, std::nullopt, &sc).message(),
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)");
  auto image = MakePod({{"runAsNonRoot", true}}, json::object());
  EXPECT_TRUE(NeedsImageUser(image, image.spec.containers[0]));
  EXPECT_EQ(BuildContainerSecurityContext(image, image.spec.containers[0], {}, ImageUser{0, ""}, &sc).message(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)");
  EXPECT_EQ(BuildContainerSecurityContext(image, image.spec.containers[0], {}, ImageUser{std::nullopt, "nginx"}, &sc).message(),
            "container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: \"p_ns(u1)\", container: c)");
  EXPECT_TRUE(BuildContainerSecurityContext(image, image.spec.containers[0], {}, ImageUser{65534, ""}, &sc).ok());
  auto fine = MakePod({{"runAsNonRoot", true}, {"runAsUser", 1000}}, json::object());
  EXPECT_FALSE(NeedsImageUser(fine, fine.spec.containers[0]));
}

TEST(SecurityContext, SandboxAndSysctls) {
  auto pod = MakePod({{"runAsUser", 1000}, {"sysctls", {{{"name", "net.ipv4.ip_local_port_range"}, {"value", "1024 65535"}}}}},
                     {{"privileged", true}});
  rt::LinuxPodSandboxConfig cfg;
  BuildSandboxSecurityContext(pod, {}, &cfg);
  EXPECT_EQ(cfg.security_context().run_as_user().value(), 1000);
  EXPECT_TRUE(cfg.security_context().privileged());
  EXPECT_EQ(cfg.sysctls().at("net.ipv4.ip_local_port_range"), "1024 65535");
  EXPECT_EQ(CheckSysctls(pod, {}), "");
  auto unsafe = MakePod({{"sysctls", {{{"name", "kernel.msgmax"}, {"value", "65536"}}}}}, json::object());
  EXPECT_EQ(CheckSysctls(unsafe, {}), "forbidden sysctl: \"kernel.msgmax\" not allowlisted");
  EXPECT_EQ(CheckSysctls(unsafe, {"kernel.msg*"}), "");
  auto hostnet = MakePod({{"sysctls", {{{"name", "net.ipv4.tcp_syncookies"}, {"value", "1"}}}}}, json::object(),
                         {{"hostNetwork", true}});
  EXPECT_EQ(CheckSysctls(hostnet, {}), "forbidden sysctl: \"net.ipv4.tcp_syncookies\" not allowed with host net enabled");
  AdmitNode node;
  node.name = "node1";
  auto r = AdmitPod(unsafe, {}, node);
  EXPECT_EQ(r.reason, "SysctlForbidden");
}

TEST(SecurityContext, PrivilegedRefusedUnlessAllowed) {
  auto pod = MakePod(json::object(), {{"privileged", true}});
  AdmitNode node;
  node.name = "node1";
  EXPECT_TRUE(AdmitPod(pod, {}, node).admit);  // upstream's default: allowed
  node.allow_privileged = false;
  auto r = AdmitPod(pod, {}, node);
  EXPECT_FALSE(r.admit);
  EXPECT_EQ(r.reason, "Forbidden");
  EXPECT_EQ(r.message, "pod with UID \"u1\" specified privileged container, but is disallowed");
  auto plain = MakePod(json::object(), {{"privileged", false}});
  EXPECT_TRUE(AdmitPod(plain, {}, node).admit);
  rt::LinuxContainerSecurityContext sc;
  auto st = BuildContainerSecurityContext(pod, pod.spec.containers[0], {false, false}, std::nullopt, &sc);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);  // and never reaches the runtime
}

}  // namespace
}  // namespace kubelet::kuberuntime

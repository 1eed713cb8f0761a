// The RuntimeClass manager's store: what the informer hands it, and the lookups the runtime manager makes.
#include "kubelet/runtimeclass/runtimeclass_manager.h"

#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/kubelet/admission.h"

namespace kubelet::runtimeclass {
namespace {

using json = nlohmann::json;

json Class(const std::string& name, const json& handler) {
  return {{"apiVersion", "node.k8s.io/v1"}, {"kind", "RuntimeClass"}, {"metadata", {{"name", name}}}, {"handler", handler}};
}

TEST(RuntimeClassStore, LooksUpHandlersAsUpstream) {
  RuntimeClassStore s;
  EXPECT_EQ(*s.LookupRuntimeHandler(""), "");  // no class: the runtime's default, synced or not
  auto before = s.LookupRuntimeHandler("gvisor");
  EXPECT_EQ(before.status().code(), absl::StatusCode::kUnavailable) << before.status();  // retried, not NotFound
  EXPECT_TRUE(s.Replace({{"u1", Class("gvisor", "runsc")}, {"u2", Class("kata", "kata-qemu")}}).empty());
  EXPECT_EQ(*s.LookupRuntimeHandler("gvisor"), "runsc");
  EXPECT_EQ(*s.LookupRuntimeHandler("kata"), "kata-qemu");
  auto missing = s.LookupRuntimeHandler("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "runtimeclasses.node.k8s.io \"nope\" not found");
  // A deleted class is gone with the next store.
  s.Replace({{"u2", Class("kata", "kata-qemu")}});
  EXPECT_EQ(s.LookupRuntimeHandler("gvisor").status().code(), absl::StatusCode::kNotFound);
}

TEST(RuntimeClassStore, ObjectsWithoutANameOrAHandlerAreLeftOutByName) {
  RuntimeClassStore s;
  auto skipped = s.Replace({{"u1", Class("empty", "")},
                            {"u2", Class("number", 7)},
                            {"u3", json::array()},
                            {"u4", Class("good", "runc")}});
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_EQ(skipped[0], "RuntimeClass \"empty\" (uid u1) has no handler, ignored");
  EXPECT_EQ(skipped[1], "RuntimeClass \"number\" (uid u2) has no handler, ignored");
  EXPECT_EQ(*s.LookupRuntimeHandler("good"), "runc");
  EXPECT_EQ(s.LookupRuntimeHandler("empty").status().code(), absl::StatusCode::kNotFound);
}

TEST(RuntimeClassStore, KeepsAtMostItsBound) {
  RuntimeClassStore s;
  std::map<std::string, json> many;
  for (size_t i = 0; i < kMaxRuntimeClasses + 3; ++i) many["u" + std::to_string(i)] = Class("c" + std::to_string(i), "runc");
  auto skipped = s.Replace(many);
  EXPECT_EQ(skipped.size(), 3u);
}

// Admission counts the overhead in the pod's requests (upstream's PodRequests).
TEST(RuntimeClassOverhead, CountsInAdmission) {
  json pod = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"namespace", "default"}, {"uid", "u"}}},
              {"spec", {{"overhead", {{"cpu", "500m"}, {"memory", "1Gi"}}},
                        {"containers", {{{"name", "c"}, {"image", "i:1"}, {"resources", {{"requests", {{"cpu", "1"}}}}}}}}}}};
  api::ApplyPodDefaults(pod);
  auto p = api::DecodePod(pod);
  ASSERT_TRUE(p.ok()) << p.status();
  auto [cpu, mem] = PodRequests(*p);
  EXPECT_EQ(cpu, 1500);
  EXPECT_EQ(mem, int64_t{1} << 30);
  AdmitNode n;
  n.name = "node1";
  n.max_pods = 10;
  n.allocatable_milli_cpu = 1200;
  n.allocatable_memory = int64_t{4} << 30;
  auto r = AdmitPod(*p, {}, n);
  EXPECT_EQ(r.reason, "OutOfcpu");
  EXPECT_EQ(r.message, "Node didn't have enough resource: cpu, requested: 1500, used: 0, capacity: 1200");
}

}  // namespace
}  // namespace kubelet::runtimeclass

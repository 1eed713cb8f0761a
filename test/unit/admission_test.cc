// Pod admission: each upstream predicate rejects with its reason and message.
#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/kubelet/admission.h"
#include "kubelet/kubelet/preemption.h"

namespace kubelet {
namespace {

using json = nlohmann::json;

api::Pod MakePod(const std::string& name, json spec_extra = json::object()) {
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", name}, {"namespace", "default"}, {"uid", "uid-" + name}}},
              {"spec", {{"nodeName", "node1"}, {"containers", {{{"name", "c"}, {"image", "busybox:1.35"}}}}}}};
  pod["spec"].update(spec_extra);
  api::ApplyPodDefaults(pod);
  auto p = api::DecodePod(pod);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

AdmitNode Node() {
  AdmitNode n;
  n.name = "node1";
  n.labels = {{"kubernetes.io/hostname", "node1"}, {"kubernetes.io/os", "linux"}, {"zone", "a"}, {"cores", "8"}};
  n.max_pods = 3;
  n.allocatable_milli_cpu = 2000;
  n.allocatable_memory = 1 << 30;
  return n;
}

TEST(Admission, AdmitsAPlainPod) {
  auto r = AdmitPod(MakePod("a"), {}, Node());
  EXPECT_TRUE(r.admit) << r.reason << ": " << r.message;
}

TEST(Admission, PodCountComesFirst) {
  api::Pod a = MakePod("a"), b = MakePod("b"), c = MakePod("c");
  auto r = AdmitPod(MakePod("d"), {&a, &b, &c}, Node());
  EXPECT_FALSE(r.admit);
  EXPECT_EQ(r.reason, "OutOfpods");
  EXPECT_EQ(r.message, "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3");
  EXPECT_TRUE(AdmitPod(MakePod("d"), {&a, &b}, Node()).admit);
}

TEST(Admission, CpuAndMemoryRequests) {
  json big_cpu = {{"containers", {{{"name", "c"}, {"image", "i:1"}, {"resources", {{"requests", {{"cpu", "1500m"}}}}}}}}};
  api::Pod a = MakePod("a", big_cpu);
  auto r = AdmitPod(MakePod("b", big_cpu), {&a}, Node());
  EXPECT_EQ(r.reason, "OutOfcpu");
  EXPECT_EQ(r.message, "Node didn't have enough resource: cpu, requested: 1500, used: 1500, capacity: 2000");
  // Requests default to limits.
  json big_mem = {{"containers", {{{"name", "c"}, {"image", "i:1"}, {"resources", {{"limits", {{"memory", "2Gi"}}}}}}}}};
  r = AdmitPod(MakePod("m", big_mem), {}, Node());
  EXPECT_EQ(r.reason, "OutOfmemory");
  // Init containers count as their max, not their sum.
  json init = {{"initContainers",
                {{{"name", "i1"}, {"image", "i:1"}, {"resources", {{"requests", {{"cpu", "1"}}}}}},
                 {{"name", "i2"}, {"image", "i:1"}, {"resources", {{"requests", {{"cpu", "1"}}}}}}}}};
  EXPECT_TRUE(AdmitPod(MakePod("i", init), {}, Node()).admit);
  // A sidecar's request adds to every later container: 1 + 1.5 > 2.
  json sidecar = {{"initContainers", {{{"name", "s"}, {"image", "i:1"}, {"restartPolicy", "Always"},
                                       {"resources", {{"requests", {{"cpu", "1"}}}}}}}},
                  {"containers", {{{"name", "c"}, {"image", "i:1"}, {"resources", {{"requests", {{"cpu", "1500m"}}}}}}}}};
  EXPECT_EQ(PodRequests(MakePod("s", sidecar)).first, 2500);
  EXPECT_EQ(AdmitPod(MakePod("s", sidecar), {}, Node()).reason, "OutOfcpu");
}

TEST(Admission, NodeSelectorAndAffinity) {
  EXPECT_TRUE(AdmitPod(MakePod("a", {{"nodeSelector", {{"zone", "a"}}}}), {}, Node()).admit);
  auto r = AdmitPod(MakePod("b", {{"nodeSelector", {{"zone", "b"}}}}), {}, Node());
  EXPECT_EQ(r.reason, "NodeAffinity");
  EXPECT_EQ(r.message, "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector");

  auto affinity = [](json terms) {
    return json{{"affinity", {{"nodeAffinity", {{"requiredDuringSchedulingIgnoredDuringExecution", {{"nodeSelectorTerms", terms}}}}}}}};
  };
  auto admits = [&](json terms) { return AdmitPod(MakePod("x", affinity(terms)), {}, Node()).admit; };
  EXPECT_TRUE(admits(json::parse(R"([{"matchExpressions":[{"key":"zone","operator":"In","values":["a","b"]}]}])")));
  EXPECT_FALSE(admits(json::parse(R"([{"matchExpressions":[{"key":"zone","operator":"NotIn","values":["a"]}]}])")));
  EXPECT_TRUE(admits(json::parse(R"([{"matchExpressions":[{"key":"gpu","operator":"DoesNotExist"}]}])")));
  EXPECT_FALSE(admits(json::parse(R"([{"matchExpressions":[{"key":"gpu","operator":"Exists"}]}])")));
  EXPECT_TRUE(admits(json::parse(R"([{"matchExpressions":[{"key":"cores","operator":"Gt","values":["4"]}]}])")));
  EXPECT_FALSE(admits(json::parse(R"([{"matchExpressions":[{"key":"cores","operator":"Lt","values":["4"]}]}])")));
  // Terms are ORed, expressions within a term ANDed.
  EXPECT_TRUE(admits(json::parse(R"([{"matchExpressions":[{"key":"zone","operator":"In","values":["z"]}]},
                                     {"matchFields":[{"key":"metadata.name","operator":"In","values":["node1"]}]}])")));
  EXPECT_FALSE(admits(json::parse(R"([{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]},
                                                           {"key":"gpu","operator":"Exists"}]}])")));
  // An empty term matches nothing.
  EXPECT_FALSE(admits(json::parse(R"([{}])")));
}

TEST(Admission, NodeName) {
  auto r = AdmitPod(MakePod("a", {{"nodeName", "node2"}}), {}, Node());
  EXPECT_EQ(r.reason, "NodeName");
  EXPECT_EQ(r.message, "Predicate NodeName failed: node(s) didn't match the requested node name");
}

TEST(Admission, HostPorts) {
  auto with_port = [](int port, const char* ip, const char* proto) {
    json p = {{"containerPort", 80}, {"hostPort", port}, {"protocol", proto}};
    if (*ip) p["hostIP"] = ip;
    return json{{"containers", {{{"name", "c"}, {"image", "i:1"}, {"ports", {p}}}}}};
  };
  api::Pod a = MakePod("a", with_port(8080, "", "TCP"));
  auto r = AdmitPod(MakePod("b", with_port(8080, "127.0.0.1", "TCP")), {&a}, Node());
  EXPECT_EQ(r.reason, "NodePorts");
  EXPECT_EQ(r.message, "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports");
  EXPECT_TRUE(AdmitPod(MakePod("b", with_port(8080, "", "UDP")), {&a}, Node()).admit);
  EXPECT_TRUE(AdmitPod(MakePod("b", with_port(8081, "", "TCP")), {&a}, Node()).admit);
  api::Pod c = MakePod("c", with_port(9090, "10.0.0.1", "TCP"));
  EXPECT_TRUE(AdmitPod(MakePod("d", with_port(9090, "10.0.0.2", "TCP")), {&c}, Node()).admit);
}

TEST(Admission, PodOS) {
  auto r = AdmitPod(MakePod("w", {{"os", {{"name", "windows"}}}}), {}, Node());
  EXPECT_EQ(r.reason, "PodOSNotSupported");
  EXPECT_TRUE(AdmitPod(MakePod("l", {{"os", {{"name", "linux"}}}}), {}, Node()).admit);
}

// Critical pod admission's choice of victims (upstream's getPodsToPreempt): fewest pods, best-effort before
// burstable before guaranteed, never a critical pod.
json Memory(const std::string& request, bool guaranteed = false) {
  json res = guaranteed ? json{{"requests", {{"memory", request}, {"cpu", "100m"}}}, {"limits", {{"memory", request}, {"cpu", "100m"}}}}
                        : json{{"requests", {{"memory", request}}}};
  return {{"containers", {{{"name", "c"}, {"image", "i:1"}, {"resources", res}}}}};
}

std::vector<std::string> Names(const std::vector<const api::Pod*>& pods) {
  std::vector<std::string> out;
  for (const auto* p : pods) out.push_back(p->metadata.name);
  return out;
}

TEST(Preemption, FewestPodsLowestQoSFirst) {
  api::Pod critical = MakePod("critical", {{"priority", 2000001000}});
  api::Pod be = MakePod("be"), burst = MakePod("burst", Memory("100Mi")), big = MakePod("burst-big", Memory("200Mi"));
  api::Pod guar = MakePod("guar", Memory("300Mi", true));
  api::Pod other_critical = MakePod("node-critical", {{"priority", 2000001000}, {"containers", Memory("1Gi")["containers"]}});
  std::vector<const api::Pod*> pods = {&be, &burst, &big, &guar, &other_critical};
  ASSERT_TRUE(preemption::IsCriticalPod(critical));
  ASSERT_EQ(api::QOSClass(guar), "Guaranteed");
  // 150Mi: the one burstable pod that covers it alone.
  auto r = preemption::PodsToPreempt(critical, pods, {{"memory", 150 << 20}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), std::vector<std::string>{"burst-big"});
  // 450Mi: more than the burstable pods hold, so the guaranteed one too, and then only the burstable pod still needed.
  r = preemption::PodsToPreempt(critical, pods, {{"memory", 450 << 20}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"burst-big", "guar"}));
  // A pod slot: the best-effort pod.
  r = preemption::PodsToPreempt(critical, pods, {{"pods", 1}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Names(*r), std::vector<std::string>{"be"});
  // The other critical pod's 1Gi is not for taking.
  r = preemption::PodsToPreempt(critical, pods, {{"memory", 700 << 20}});
  EXPECT_EQ(r.status().message(), "no set of running pods found to reclaim resources: [(res: memory, q: 104857600), ]");
}

TEST(Preemption, CriticalityAndPriority) {
  api::Pod low = MakePod("low", {{"priority", 50}}), high = MakePod("high", {{"priority", 100}}), none = MakePod("none");
  EXPECT_FALSE(preemption::IsCriticalPod(high));
  EXPECT_TRUE(preemption::Preemptable(high, low));
  EXPECT_FALSE(preemption::Preemptable(low, high));
  EXPECT_FALSE(preemption::Preemptable(high, high));
  EXPECT_FALSE(preemption::Preemptable(high, none));  // no priority to compare
  api::Pod mirror = MakePod("mirror");
  mirror.metadata.annotations[api::kConfigMirrorAnnotation] = "abc";
  EXPECT_TRUE(preemption::IsCriticalPod(mirror));
  EXPECT_TRUE(preemption::Preemptable(mirror, none));
  EXPECT_EQ(preemption::RequirementsString({{"cpu", 700}, {"pods", 1}}), "[(res: cpu, q: 700), (res: pods, q: 1), ]");
  // What a pod lacks: pods, cpu and memory, in that order.
  api::Pod a = MakePod("a", {{"containers", {{{"name", "c"}, {"image", "i:1"}, {"resources", {{"requests", {{"cpu", "1500m"}}}}}}}}});
  api::Pod b = MakePod("b"), c = MakePod("c");
  api::Pod want = MakePod("want", {{"containers", {{{"name", "c"}, {"image", "i:1"},
                                                   {"resources", {{"requests", {{"cpu", "800m"}, {"memory", "2Gi"}}}}}}}}});
  auto lack = preemption::InsufficientResources(want, {&a, &b, &c}, Node());
  EXPECT_EQ(preemption::RequirementsString(lack), "[(res: pods, q: 1), (res: cpu, q: 300), (res: memory, q: 1073741824), ]");
}

}  // namespace
}  // namespace kubelet

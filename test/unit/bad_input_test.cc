// Regression tests for the bad inputs of issue 10: each used to abort the
// daemon (an exception escaping a decoder, a validator or a consumer of the
// pod). Each must now be an error naming the field, or harmless.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "kubelet/api/codec.h"
#include "kubelet/api/quantity.h"
#include "kubelet/kubelet/admission.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/kuberuntime/security_context.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/json.h"

namespace kubelet {
namespace {

absl::StatusOr<api::Pod> Decode(const std::string& text) {
  auto doc = api::ParseDocument(text);
  if (!doc.ok()) return doc.status();
  api::ApplyPodDefaults(*doc);
  auto pod = api::DecodePod(*doc);
  if (!pod.ok()) return pod.status();
  if (auto st = api::ValidatePod(*pod); !st.ok()) return st;
  return pod;
}

const char kHead[] = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, uid: u1}\n";

std::string WithSpec(const std::string& spec) {
  return std::string(kHead) + "spec:\n  containers:\n  - {name: c, image: busybox:1}\n" + spec;
}

TEST(BadInput, HugeIntegerInYamlIsAnErrorNamingTheField) {
  std::string digits(310, '9');
  auto pod = Decode(WithSpec("  terminationGracePeriodSeconds: " + digits + "\n"));
  ASSERT_FALSE(pod.ok());
  EXPECT_NE(pod.status().message().find("spec.terminationGracePeriodSeconds"), std::string::npos) << pod.status();
  // The same number anywhere the kubelet does not model is kept as it is: not an error.
  auto ok = Decode(WithSpec("  schedulerName: x\n") + "  overhead: {}\n" + "  x-unknown: " + digits + "\n");
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST(BadInput, HugeIntegerInJsonIsAnError) {
  std::string digits(310, '9');
  std::string doc = R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","uid":"u"},"spec":{"containers":[{"name":"c","image":"i:1","ports":[{"containerPort":)" +
                    digits + "}]}]}}";
  auto pod = Decode(doc);
  ASSERT_FALSE(pod.ok());
}

TEST(BadInput, IntegersOutOfTheirFieldsRange) {
  auto pod = Decode(WithSpec("  priority: 99999999999\n"));
  ASSERT_FALSE(pod.ok());
  EXPECT_NE(pod.status().message().find("spec.priority"), std::string::npos) << pod.status();
  EXPECT_NE(pod.status().message().find("out of range"), std::string::npos) << pod.status();
  auto port = Decode(std::string(kHead) + "spec:\n  containers:\n  - name: c\n    image: i:1\n    ports: [{containerPort: 4294967377}]\n");
  ASSERT_FALSE(port.ok());
  EXPECT_NE(port.status().message().find("spec.containers[0].ports[0].containerPort"), std::string::npos) << port.status();
  auto big = Decode(WithSpec("  terminationGracePeriodSeconds: 18446744073709551615\n"));
  ASSERT_FALSE(big.ok());
  auto fl = Decode(WithSpec("  terminationGracePeriodSeconds: 1e300\n"));
  ASSERT_FALSE(fl.ok());
  EXPECT_NE(fl.status().message().find("spec.terminationGracePeriodSeconds"), std::string::npos) << fl.status();
}

TEST(BadInput, SeccompProfileTypeOfTheWrongType) {
  auto pod = Decode(std::string(kHead) +
                    "spec:\n  containers:\n  - name: c\n    image: i:1\n    securityContext:\n      seccompProfile: {type: 5}\n");
  ASSERT_FALSE(pod.ok());
  EXPECT_EQ(pod.status().message(), "spec.containers[0].securityContext.seccompProfile.type: expected string, got integer");
  auto unsupported = Decode(WithSpec("  securityContext:\n    seccompProfile: {type: Sometimes}\n"));
  ASSERT_FALSE(unsupported.ok());
  EXPECT_NE(unsupported.status().message().find("spec.securityContext.seccompProfile.type: Unsupported value: \"Sometimes\""),
            std::string::npos)
      << unsupported.status();
}

TEST(BadInput, WrongTypesAcrossTheSecurityContext) {
  for (const std::string sc : {"runAsUser: abc", "privileged: 1", "capabilities: {add: [1]}", "capabilities: 7",
                               "seLinuxOptions: {user: []}", "procMount: [x]", "runAsNonRoot: yes-please"}) {
    auto pod = Decode(std::string(kHead) + "spec:\n  containers:\n  - name: c\n    image: i:1\n    securityContext: {" + sc + "}\n");
    EXPECT_FALSE(pod.ok()) << sc;
  }
  for (const std::string sc : {"fsGroup: x", "supplementalGroups: [a]", "supplementalGroups: 3", "sysctls: [{name: 3}]",
                               "fsGroupChangePolicy: 4"}) {
    auto pod = Decode(WithSpec("  securityContext: {" + sc + "}\n"));
    EXPECT_FALSE(pod.ok()) << sc;
  }
}

TEST(BadInput, NumericOperatorInNodeAffinity) {
  std::string affinity =
      "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n"
      "        - matchExpressions:\n          - {key: zone, operator: 5, values: [a]}\n";
  auto pod = Decode(WithSpec(affinity));
  ASSERT_FALSE(pod.ok());
  EXPECT_NE(pod.status().message().find("nodeSelectorTerms[0].matchExpressions[0].operator: expected string"), std::string::npos)
      << pod.status();
  // An unknown operator is refused as upstream validates it, not silently matched.
  std::string unknown = affinity;
  unknown.replace(unknown.find("operator: 5"), 11, "operator: Near");
  auto pod2 = Decode(WithSpec(unknown));
  ASSERT_FALSE(pod2.ok());
  EXPECT_NE(pod2.status().message().find("Unsupported value: \"Near\""), std::string::npos) << pod2.status();
  // Non-string values and keys, and a non-array of terms.
  EXPECT_FALSE(Decode(WithSpec("  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: 3}}}\n")).ok());
  EXPECT_FALSE(Decode(WithSpec("  nodeSelector: {zone: 3}\n")).ok());
  EXPECT_FALSE(Decode(WithSpec("  tolerations: [{key: 1}]\n")).ok());
  EXPECT_FALSE(Decode(WithSpec("  hostAliases: [{ip: 1.2.3.4, hostnames: [2]}]\n")).ok());
  EXPECT_FALSE(Decode(WithSpec("  os: {name: 1}\n")).ok());
}

TEST(BadInput, AffinityThatDecodesIsAdmittedByItsTypedFields) {
  auto pod = Decode(WithSpec(
      "  nodeSelector: {disk: ssd}\n  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
      "        nodeSelectorTerms:\n        - matchExpressions:\n          - {key: cores, operator: Gt, values: ['99999999999999999999999']}\n"
      "        - matchExpressions:\n          - {key: zone, operator: In, values: [a, b]}\n"));
  ASSERT_TRUE(pod.ok()) << pod.status();
  AdmitNode node;
  node.name = "n";
  node.labels = {{"disk", "ssd"}, {"zone", "b"}, {"cores", "4"}};
  EXPECT_TRUE(AdmitPod(*pod, {}, node).admit);
  node.labels["zone"] = "c";
  EXPECT_EQ(AdmitPod(*pod, {}, node).reason, "NodeAffinity");
}

TEST(BadInput, InvalidUTF8InYamlIsAnError) {
  std::string text = WithSpec("") ;
  text.replace(text.find("busybox:1"), 9, "busy\xff\xfe");
  auto pod = Decode(text);
  ASSERT_FALSE(pod.ok());
  EXPECT_NE(pod.status().message().find("invalid UTF-8"), std::string::npos) << pod.status();
  // Overlong encodings and lone surrogates too.
  for (const std::string bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80", "\xe2\x82"}) {
    std::string t = WithSpec("");
    t.replace(t.find("busybox:1"), 9, "x" + bad);
    EXPECT_FALSE(Decode(t).ok());
  }
  std::string good = WithSpec("");
  good.replace(good.find("busybox:1"), 9, "caf\xc3\xa9:1");  // valid UTF-8 (é)
  EXPECT_TRUE(api::ParseDocument(good).ok());
}

TEST(BadInput, InvalidUTF8IsReplacedWhenSerialised) {
  // A termination message or log line read from a container may hold anything: it must never throw on the way out.
  api::PodStatus st;
  api::ContainerStatus cs;
  cs.name = "c";
  api::ContainerStateTerminated t;
  t.message = "bad \xff\xfe bytes";
  cs.state.terminated = t;
  st.container_statuses.push_back(cs);
  std::string out;
  EXPECT_NO_THROW(out = DumpJSON(api::EncodePodStatus(st)));
  EXPECT_NE(out.find("bad \xef\xbf\xbd"), std::string::npos) << out;  // U+FFFD, as Go's encoding/json writes it
}

TEST(BadInput, NonStringMappingKeysAreAnError) {
  auto j = api::YamlToJson("? [a, b]\n: 1\n");
  EXPECT_FALSE(j.ok());
}

TEST(BadInput, MemoryEmptyDirSizeIsAQuantity) {
  // Decoding keeps the quantity; the volume manager converts it to bytes for tmpfs (1Gi -> 1073741824).
  auto pod = Decode(std::string(kHead) +
                    "spec:\n  volumes: [{name: m, emptyDir: {medium: Memory, sizeLimit: 1Gi}}]\n  containers:\n  - {name: c, image: i:1}\n");
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->spec.volumes[0].empty_dir->size_limit, "1Gi");
}

TEST(ContainerHash, OnlyNameAndImageAsUpstream) {
  auto a = Decode(WithSpec(""));
  ASSERT_TRUE(a.ok());
  auto b = Decode(std::string(kHead) +
                  "spec:\n  containers:\n  - {name: c, image: busybox:1, newDefaultedField: {x: 1}, terminationMessagePolicy: File}\n");
  ASSERT_TRUE(b.ok());
  // An API server that adds a defaulted field restarts nothing.
  EXPECT_EQ(kuberuntime::HashContainer(a->spec.containers[0]), kuberuntime::HashContainer(b->spec.containers[0]));
  auto c = Decode(std::string(kHead) + "spec:\n  containers:\n  - {name: c, image: busybox:2}\n");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(kuberuntime::HashContainer(a->spec.containers[0]), kuberuntime::HashContainer(c->spec.containers[0]));
  EXPECT_TRUE(kuberuntime::ContainerHashMatches(kuberuntime::HashContainer(b->spec.containers[0]), a->spec.containers[0]));
  EXPECT_FALSE(kuberuntime::ContainerHashMatches("deadbeef", a->spec.containers[0]));
}

TEST(BadInput, FuzzFindings) {
  // Years the nanosecond clock cannot hold overflowed in ParseRFC3339 (UBSan, fuzz_api_objects).
  TimePoint t;
  EXPECT_FALSE(ParseRFC3339("4052-01-01T00:00:00Z", &t));
  EXPECT_FALSE(ParseRFC3339("2026-13-01T00:00:00Z", &t));
  EXPECT_TRUE(ParseRFC3339("2026-12-01T10:00:00Z", &t));
  auto pod = Decode(std::string("apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: u, creationTimestamp: '9999-01-01T00:00:00Z'}\n") +
                    "spec:\n  containers:\n  - {name: c, image: i:1}\n");
  ASSERT_FALSE(pod.ok());
  EXPECT_NE(pod.status().message().find("metadata.creationTimestamp"), std::string::npos) << pod.status();
  // Quantities past the int64 range saturate instead of overflowing (UBSan, fuzz_quantity).
  auto q = api::ParseQuantity("5E");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->MilliValue(), INT64_MAX);
  EXPECT_EQ(q->Value(), 5000000000000000000LL);
  // Aliases that expand exponentially are refused (fuzz_pod_manifest, "billion laughs").
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'k'; ++c, ++prev)
    laughs += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
              ", *" + prev + ", *" + prev + "]\n";
  auto j = api::YamlToJson(laughs);
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.status().message().find("excessive aliasing"), std::string::npos) << j.status();
}

TEST(BadInput, InputsThatHungYamlCppLoadAll) {
  // yaml-cpp 0.7's LoadAll never returned on these (endless empty documents, memory growing): fuzz_kubeconfig found
  // "!t,rue". The event-driven builder bounds the document count.
  for (const std::string text : {",", "!t,rue", "!,", "!t ,", "!a,b\n"}) {
    auto j = api::YamlToJson(text);
    EXPECT_FALSE(j.ok()) << text;
  }
  // What YAML means is unchanged: anchors and aliases, explicit string tags, empty documents, one object per manifest.
  auto j = api::YamlToJson("a: &x [1, 2]\nb: *x\nc: !!str 5\nd: '7'\ne: 7\n&k key: v\nf: {*k : w}\n");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)["b"], nlohmann::json::array({1, 2}));
  EXPECT_EQ((*j)["c"], "5");
  EXPECT_EQ((*j)["d"], "7");
  EXPECT_EQ((*j)["e"], 7);
  EXPECT_EQ((*j)["f"]["key"], "w");
  auto docs = api::YamlToJson("---\n---\na: 1\n---\n");
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_EQ((*docs)["a"], 1);
  EXPECT_FALSE(api::YamlToJson("a: 1\n---\nb: 2\n").ok());
  EXPECT_FALSE(api::YamlToJson("---\n").ok());
  EXPECT_FALSE(api::YamlToJson("[a]: 1\n").ok());
}

TEST(Guard, ExceptionsBecomeStatusAndAreCounted) {
  int64_t before = RecoveredExceptions();
  auto st = Guarded("test job", []() -> absl::Status { throw std::runtime_error("boom"); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("boom"), std::string::npos);
  GuardedRun("test thread", [] { throw 42; });
  EXPECT_EQ(RecoveredExceptions(), before + 2);
}

}  // namespace
}  // namespace kubelet

#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/api/quantity.h"

namespace kubelet::api {
namespace {

absl::StatusOr<Pod> Decode(const std::string& text) {
  auto doc = ParseDocument(text);
  if (!doc.ok()) return doc.status();
  ApplyPodDefaults(*doc);
  auto pod = DecodePod(*doc);
  if (!pod.ok()) return pod.status();
  if (auto st = ValidatePod(*pod); !st.ok()) return st;
  return pod;
}

TEST(YamlToJson, ScalarsFollowKubernetesRules) {
  auto j = YamlToJson("a: 1\nb: \"1\"\nc: true\nd: 'yes'\ne: 0644\nf: 1.5\ng: null\nh: ~\ni: abc\nj: 0x1F\nk: off\nl: n\n");
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE((*j)["a"].is_number_integer());
  EXPECT_TRUE((*j)["b"].is_string());
  EXPECT_EQ((*j)["c"], true);
  EXPECT_EQ((*j)["d"], "yes");
  EXPECT_EQ((*j)["e"], 420);  // YAML 1.1 octal, as defaultMode: 0644 reads
  EXPECT_DOUBLE_EQ((*j)["f"].get<double>(), 1.5);
  EXPECT_TRUE((*j)["g"].is_null());
  EXPECT_TRUE((*j)["h"].is_null());
  EXPECT_EQ((*j)["i"], "abc");
  EXPECT_EQ((*j)["j"], 31);
  EXPECT_EQ((*j)["k"], false);  // YAML 1.1
  EXPECT_EQ((*j)["l"], "n");    // a single letter stays a name
  auto e = YamlToJson("a: e1\nb: 1e3\nc: .5\nd: 2.\ne: E5x\n");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)["a"], "e1");  // an exponent needs digits before it
  EXPECT_DOUBLE_EQ((*e)["b"].get<double>(), 1000.0);
  EXPECT_DOUBLE_EQ((*e)["c"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ((*e)["d"].get<double>(), 2.0);
  EXPECT_EQ((*e)["e"], "E5x");
  EXPECT_FALSE(YamlToJson("a: 1\n---\nb: 2\n").ok());
  EXPECT_FALSE(YamlToJson("a: [1,\n").ok());
}

TEST(DecodePod, AppliesDefaults) {
  auto pod = Decode("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                    "  - name: a\n    image: busybox\n  - name: b\n    image: busybox:1.35\n    ports: [{containerPort: 80}]\n");
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->spec.restart_policy, "Always");
  EXPECT_EQ(pod->spec.dns_policy, "ClusterFirst");
  EXPECT_EQ(pod->spec.termination_grace_period_seconds, 30);
  EXPECT_EQ(pod->spec.containers[0].image_pull_policy, "Always");  // untagged means latest
  EXPECT_EQ(pod->spec.containers[1].image_pull_policy, "IfNotPresent");
  EXPECT_EQ(pod->spec.containers[1].ports[0].protocol, "TCP");
  EXPECT_EQ(pod->spec.containers[0].termination_message_path, "/dev/termination-log");
  EXPECT_EQ(pod->metadata.namespace_, "default");
}

TEST(DecodePod, TypeErrorsNameTheField) {
  auto pod = Decode("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
                    "  - name: a\n    image: x\n    ports: [{containerPort: http}]\n");
  ASSERT_FALSE(pod.ok());
  EXPECT_NE(pod.status().message().find("spec.containers[0].ports[0].containerPort"), std::string::npos) << pod.status();
  auto cmd = Decode("kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: x\n    command: sleep\n");
  ASSERT_FALSE(cmd.ok());
  EXPECT_NE(cmd.status().message().find("spec.containers[0].command"), std::string::npos);
  auto res = Decode("kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: x\n"
                    "    resources: {limits: {memory: lots}}\n");
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.status().message().find("resources.limits.memory"), std::string::npos) << res.status();
  EXPECT_FALSE(Decode("kind: Service\nmetadata: {name: p}\n").ok());
  EXPECT_FALSE(Decode("apiVersion: v2\nkind: Pod\nmetadata: {name: p}\n").ok());
}

TEST(ValidatePod, RejectsWhatUpstreamRejects) {
  struct Case {
    const char* spec;
    const char* want;
  } cases[] = {
      {"containers:\n  - name: a\n", "spec.containers[0].image: Required value"},
      {"containers: []\n", "spec.containers: Required value"},
      {"containers:\n  - {name: a, image: x}\n  - {name: a, image: z}\n", "spec.containers[1].name: Duplicate value: \"a\""},
      {"containers:\n  - {name: A_b, image: x}\n", "spec.containers[0].name: Invalid value"},
      {"restartPolicy: Sometimes\n  containers:\n  - {name: a, image: x}\n", "spec.restartPolicy: Unsupported value"},
      {"containers:\n  - {name: a, image: x, volumeMounts: [{name: v, mountPath: /v}]}\n",
       "spec.containers[0].volumeMounts[0].name: Not found: \"v\""},
      {"containers:\n  - {name: a, image: x, ports: [{containerPort: 70000}]}\n", "containerPort: Invalid value"},
      {"containers:\n  - {name: a, image: x, imagePullPolicy: Sometimes}\n", "imagePullPolicy: Unsupported value"},
      {"volumes: [{name: v, hostPath: {path: /x, type: Dir}}]\n  containers:\n  - {name: a, image: x}\n",
       "spec.volumes[0].hostPath.type: Unsupported value"},
      {"securityContext: {fsGroup: 5, fsGroupChangePolicy: Sometimes}\n  containers:\n  - {name: a, image: x}\n",
       "spec.securityContext.fsGroupChangePolicy: Unsupported value: \"Sometimes\": supported values: \"OnRootMismatch\", \"Always\""},
  };
  for (const auto& tc : cases) {
    std::string doc = std::string("kind: Pod\nmetadata: {name: p}\nspec:\n  ") + tc.spec;
    auto pod = Decode(doc);
    ASSERT_FALSE(pod.ok()) << doc;
    EXPECT_NE(pod.status().message().find(tc.want), std::string::npos) << pod.status() << "\nwant: " << tc.want;
  }
  auto noname = Decode("kind: Pod\nmetadata: {}\nspec:\n  containers: [{name: a, image: x}]\n");
  ASSERT_FALSE(noname.ok());
  EXPECT_NE(noname.status().message().find("metadata.name: Required value"), std::string::npos);
}

TEST(QOS, ClassesAsUpstream) {
  auto make = [](const std::string& res) {
    return *Decode("kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: x:1\n    resources: " + res + "\n");
  };
  EXPECT_EQ(QOSClass(make("{}")), "BestEffort");
  EXPECT_EQ(QOSClass(make("{limits: {cpu: 1, memory: 1Gi}}")), "Guaranteed");
  EXPECT_EQ(QOSClass(make("{requests: {cpu: 1000m, memory: 1Gi}, limits: {cpu: 1, memory: 1Gi}}")), "Guaranteed");
  EXPECT_EQ(QOSClass(make("{requests: {cpu: 100m}}")), "Burstable");
  EXPECT_EQ(QOSClass(make("{requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 2, memory: 1Gi}}")), "Burstable");
}

TEST(Quantity, Parses) {
  EXPECT_EQ(ParseQuantity("100m")->MilliValue(), 100);
  EXPECT_EQ(ParseQuantity("1")->MilliValue(), 1000);
  EXPECT_EQ(ParseQuantity("1.5")->MilliValue(), 1500);
  EXPECT_EQ(ParseQuantity("128Mi")->Value(), 128LL * 1024 * 1024);
  EXPECT_EQ(ParseQuantity("1G")->Value(), 1000000000LL);
  EXPECT_EQ(ParseQuantity("1e3")->Value(), 1000);
  EXPECT_FALSE(ParseQuantity("lots").ok());
  EXPECT_FALSE(ParseQuantity("1Zi").ok());
  EXPECT_FALSE(ParseQuantity("").ok());
}

TEST(EncodePod, RoundTripsUnknownFieldsAndAddsStatus) {
  auto pod = Decode("kind: Pod\nmetadata: {name: p, labels: {app: x}}\nspec:\n  priorityClassName: high\n"
                    "  containers: [{name: a, image: x:1}]\n");
  ASSERT_TRUE(pod.ok());
  pod->metadata.uid = "u1";
  pod->status.phase = "Running";
  auto j = EncodePod(*pod);
  EXPECT_EQ(j["spec"]["priorityClassName"], "high");
  EXPECT_EQ(j["metadata"]["labels"]["app"], "x");
  EXPECT_EQ(j["metadata"]["uid"], "u1");
  EXPECT_EQ(j["status"]["phase"], "Running");
  EXPECT_EQ(j["kind"], "Pod");
}

}  // namespace
}  // namespace kubelet::api

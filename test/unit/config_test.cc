#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kubelet/config/kubelet_config.h"

namespace kubelet::config {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

TEST(KubeletConfig, DefaultsMatchUpstream) {
  auto c = ParseKubeletConfiguration("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n", "");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sync_frequency, minutes(1));
  EXPECT_EQ(c->file_check_frequency, seconds(20));
  EXPECT_EQ(c->http_check_frequency, seconds(20));
  EXPECT_EQ(c->port, 10250);
  EXPECT_EQ(c->healthz_port, 10248);
  EXPECT_EQ(c->healthz_bind_address, "127.0.0.1");
  EXPECT_EQ(c->address, "0.0.0.0");
  EXPECT_EQ(c->runtime_request_timeout, minutes(2));
  EXPECT_EQ(c->max_pods, 110);
  EXPECT_EQ(c->image_gc_high_threshold_percent, 85);
  EXPECT_EQ(c->image_gc_low_threshold_percent, 80);
  EXPECT_EQ(c->container_log_max_size, "10Mi");
  EXPECT_EQ(c->container_log_max_files, 5);
  EXPECT_EQ(c->kube_api_qps, 50);
  EXPECT_EQ(c->kube_api_burst, 100);
  EXPECT_EQ(c->node_lease_duration_seconds, 40);
  EXPECT_EQ(c->eviction_hard.at("memory.available"), "100Mi");
  EXPECT_EQ(c->eviction_hard.at("nodefs.available"), "10%");
  EXPECT_EQ(c->eviction_hard.at("imagefs.available"), "15%");
  EXPECT_EQ(c->cgroup_driver, "cgroupfs");
  EXPECT_TRUE(c->serialize_image_pulls);
  EXPECT_TRUE(ValidateKubeletConfiguration(*c).ok());
}

// /configz prints the running configuration as upstream does (v1beta1 names, Go durations, authn/authz defaults
// filled in), and what it prints reads back to the same configuration.
TEST(KubeletConfig, ConfigzEncodingReadsBackToTheSameConfiguration) {
  auto c = ParseKubeletConfiguration(
      "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\n"
      "syncFrequency: 90s\nmaxPods: 42\nnodeLabels: {a: b}\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n"
      "featureGates: {KubeletFineGrainedAuthz: true}\n",
      "");
  ASSERT_TRUE(c.ok()) << c.status();
  nlohmann::json j = EncodeKubeletConfiguration(*c);
  EXPECT_EQ(j["kind"], "KubeletConfiguration");
  EXPECT_EQ(j["apiVersion"], "kubelet.config.k8s.io/v1beta1");
  EXPECT_EQ(j["staticPodPath"], "/etc/kubernetes/manifests");
  EXPECT_EQ(j["syncFrequency"], "1m30s");
  EXPECT_EQ(j["streamingConnectionIdleTimeout"], "4h0m0s");
  EXPECT_EQ(j["maxPods"], 42);
  EXPECT_EQ(j["authentication"]["x509"]["clientCAFile"], "/etc/kubernetes/pki/ca.crt");
  EXPECT_EQ(j["authentication"]["webhook"]["enabled"], true);
  EXPECT_EQ(j["authentication"]["webhook"]["cacheTTL"], "2m0s");
  EXPECT_EQ(j["authentication"]["anonymous"]["enabled"], false);
  EXPECT_EQ(j["authorization"]["mode"], "Webhook");
  EXPECT_EQ(j["authorization"]["webhook"]["cacheAuthorizedTTL"], "5m0s");
  EXPECT_EQ(j["authorization"]["webhook"]["cacheUnauthorizedTTL"], "30s");
  auto back = ParseKubeletConfiguration(j.dump(), "");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << j.dump(2);
  EXPECT_EQ(EncodeKubeletConfiguration(*back), j);
}

TEST(KubeletConfig, ParsesYamlAndJson) {
  const char* yaml = R"(apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: manifests
fileCheckFrequency: 5s
syncFrequency: 1m30s
maxPods: 30
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
evictionHard:
  memory.available: 200Mi
serializeImagePulls: false
cgroupDriver: systemd
)";
  auto c = ParseKubeletConfiguration(yaml, "/etc/kubernetes");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->static_pod_path, "/etc/kubernetes/manifests");  // relative to the config file
  EXPECT_EQ(c->file_check_frequency, seconds(5));
  EXPECT_EQ(c->sync_frequency, seconds(90));
  EXPECT_EQ(c->max_pods, 30);
  EXPECT_EQ(c->cluster_dns, std::vector<std::string>{"10.96.0.10"});
  EXPECT_EQ(c->eviction_hard.size(), 1u);  // a given map replaces the default
  EXPECT_FALSE(c->serialize_image_pulls);
  EXPECT_EQ(c->cgroup_driver, "systemd");
  auto j = ParseKubeletConfiguration(
      R"({"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration","port":10251})", "");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(j->port, 10251);
}

TEST(KubeletConfig, UnknownFieldIsAnErrorNamingIt) {
  auto c = ParseKubeletConfiguration(
      "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPth: /x\n", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("unknown field \"staticPodPth\""), std::string::npos) << c.status();
  auto nested = ParseKubeletConfiguration(
      "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymus: {}\n", "");
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.status().message().find("authentication.anonymus"), std::string::npos) << nested.status();
}

TEST(KubeletConfig, WrongTypesNameTheField) {
  struct Case {
    const char* line;
    const char* field;
  } cases[] = {
      {"maxPods: many", "maxPods"},
      {"syncFrequency: 10", "syncFrequency"},
      {"syncFrequency: 10parsecs", "syncFrequency"},
      {"clusterDNS: 10.0.0.1", "clusterDNS"},
      {"serializeImagePulls: \"yes\"", "serializeImagePulls"},
      {"evictionHard: [1]", "evictionHard"},
      {"maxPods: 99999999999", "maxPods"},
      {"authentication: {webhook: {enabled: \"yes\"}}", "authentication.webhook.enabled"},
      {"authentication: {webhook: {cacheTTL: soon}}", "authentication.webhook.cacheTTL"},
      {"authorization: {webhook: {cacheAuthorizedTTL: 5}}", "authorization.webhook.cacheAuthorizedTTL"},
      {"authorization: {webhook: {cacheDeniedTTL: 5s}}", "authorization.webhook.cacheDeniedTTL"},
  };
  for (const auto& tc : cases) {
    std::string doc = std::string("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n") + tc.line + "\n";
    auto c = ParseKubeletConfiguration(doc, "");
    ASSERT_FALSE(c.ok()) << tc.line;
    EXPECT_NE(c.status().message().find(tc.field), std::string::npos) << c.status();
  }
}

TEST(KubeletConfig, WrongKindOrVersionOrSyntax) {
  EXPECT_FALSE(ParseKubeletConfiguration("apiVersion: v1\nkind: KubeletConfiguration\n", "").ok());
  EXPECT_FALSE(ParseKubeletConfiguration("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: Pod\n", "").ok());
  auto bad = ParseKubeletConfiguration("apiVersion: [\n", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("YAML"), std::string::npos) << bad.status();
}

TEST(KubeletConfig, ValidationCatchesBadValues) {
  KubeletConfiguration c;
  c.image_gc_high_threshold_percent = 120;
  c.cgroup_driver = "cgroup";
  c.eviction_hard["memory.avail"] = "1Gi";
  c.container_log_max_files = 1;
  c.port = 0;
  auto st = ValidateKubeletConfiguration(c);
  ASSERT_FALSE(st.ok());
  std::string msg(st.message());
  for (const char* want : {"imageGCHighThresholdPercent", "cgroupDriver", "memory.avail", "containerLogMaxFiles", "port (--port)"})
    EXPECT_NE(msg.find(want), std::string::npos) << want << " in " << msg;
  KubeletConfiguration soft;
  soft.eviction_soft["memory.available"] = "1Gi";
  EXPECT_FALSE(ValidateKubeletConfiguration(soft).ok());  // no grace period
  KubeletConfiguration taints;
  taints.register_with_taints = nlohmann::json::parse(R"([{"key":"a","effect":"NoSchedule"},{"key":"b","effect":"Sometimes"}])");
  st = ValidateKubeletConfiguration(taints);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("registerWithTaints[1].effect: Unsupported value: \"Sometimes\""), std::string::npos) << st.message();
  taints.register_with_taints = nlohmann::json::parse(R"([{"key":"a","effect":3}])");
  st = ValidateKubeletConfiguration(taints);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("registerWithTaints[0].effect: expected string, got integer"), std::string::npos) << st.message();
}

class CommandLine : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kcfg-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "config.yaml") << "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                                         << "maxPods: 20\nstaticPodPath: manifests\nport: 11250\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(CommandLine, FlagsOverrideTheConfigFile) {
  auto o = ParseCommandLine({"--config", (dir_ / "config.yaml").string(), "--max-pods=7", "--pod-manifest-path=/srv/m",
                             "--container-runtime-endpoint", "unix:///run/x.sock", "--v=3", "--hostname-override=N1",
                             "--root-dir=/tmp/r", "--fail-swap-on=false"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->config.max_pods, 7);
  EXPECT_EQ(o->config.static_pod_path, "/srv/m");
  EXPECT_EQ(o->config.port, 11250);  // from the file, no flag
  EXPECT_EQ(o->config.container_runtime_endpoint, "unix:///run/x.sock");
  EXPECT_FALSE(o->config.fail_swap_on);
  EXPECT_EQ(o->flags.verbosity, 3);
  EXPECT_EQ(o->flags.root_dir, "/tmp/r");
  EXPECT_EQ(NodeName(o->flags), "n1");
}

TEST_F(CommandLine, FileValuesResolveRelativeToTheFile) {
  auto o = ParseCommandLine({"--config=" + (dir_ / "config.yaml").string()});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->config.static_pod_path, (dir_ / "manifests").string());
}

TEST_F(CommandLine, BadFlagsAreErrors) {
  auto unknown = ParseCommandLine({"--no-such-flag=1"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown flag: --no-such-flag"), std::string::npos);
  auto bad = ParseCommandLine({"--max-pods=lots"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--max-pods"), std::string::npos) << bad.status();
  auto missing = ParseCommandLine({"--config", (dir_ / "nope.yaml").string()});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);
  EXPECT_FALSE(ParseCommandLine({"--sync-frequency=0s"}).ok());
  EXPECT_FALSE(ParseCommandLine({"--max-pods"}).ok());  // needs a value
  EXPECT_TRUE(ParseCommandLine({"--version"})->flags.version);
  EXPECT_FALSE(ParseCommandLine({"--allow-privileged=maybe"}).ok());
  EXPECT_TRUE(ParseCommandLine({})->flags.allow_privileged);
  EXPECT_FALSE(ParseCommandLine({"--allow-privileged=false"})->flags.allow_privileged);
}

TEST(GoDuration, ParsesAndFormats) {
  EXPECT_EQ(*ParseGoDuration("1h2m3s"), std::chrono::seconds(3723));
  EXPECT_EQ(*ParseGoDuration("100ms"), std::chrono::milliseconds(100));
  EXPECT_EQ(*ParseGoDuration("1.5s"), std::chrono::milliseconds(1500));
  EXPECT_EQ(*ParseGoDuration("0"), Duration::zero());
  EXPECT_FALSE(ParseGoDuration("10").ok());
  EXPECT_FALSE(ParseGoDuration("").ok());
  EXPECT_FALSE(ParseGoDuration("5y").ok());
  EXPECT_EQ(FormatGoDuration(std::chrono::seconds(90)), "1m30s");
  EXPECT_EQ(FormatGoDuration(std::chrono::milliseconds(100)), "100ms");
  EXPECT_EQ(FormatGoDuration(std::chrono::hours(4)), "4h0m0s");
}

// --node-labels as upstream's ValidateKubeletFlags checks them: in the kubernetes.io and k8s.io namespaces only the
// kubelet's own prefixes and the allowed set (a node-role label is the usual mistake), and valid label names.
TEST(KubeletFlags, NodeLabelsInTheKubernetesNamespacesAreRefusedAsUpstream) {
  auto ok = ParseCommandLine({"--node-labels=node.kubernetes.io/pool=a,kubernetes.io/arch=amd64,x.kubelet.kubernetes.io/y=z,"
                              "topology.kubernetes.io/zone=z1,example.com/team=infra,plain="});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->config.node_labels.size(), 6u);
  auto role = ParseCommandLine({"--node-labels=node-role.kubernetes.io/worker=,beta.kubernetes.io/metadata-proxy-ready=true"});
  ASSERT_FALSE(role.ok());
  EXPECT_EQ(role.status().message(),
            "failed to validate kubelet flags: unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: "
            "[beta.kubernetes.io/metadata-proxy-ready node-role.kubernetes.io/worker]\n--node-labels in the 'kubernetes.io' "
            "namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically "
            "allowed set (beta.kubernetes.io/arch, beta.kubernetes.io/instance-type, beta.kubernetes.io/os, "
            "failure-domain.beta.kubernetes.io/region, failure-domain.beta.kubernetes.io/zone, kubernetes.io/arch, "
            "kubernetes.io/hostname, kubernetes.io/os, node.kubernetes.io/instance-type, topology.kubernetes.io/region, "
            "topology.kubernetes.io/zone)");
  EXPECT_FALSE(ParseCommandLine({"--node-labels=k8s.io/x=y"}).ok());
  auto bad = ParseCommandLine({"--node-labels=-bad=x"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "failed to validate kubelet flags: invalid node labels: '-bad' - not a qualified name");
  EXPECT_FALSE(ParseCommandLine({"--node-labels=good=bad value"}).ok());
}

// Issue 10: the deprecated flags kubeadm, kops and distributions still pass land in their config fields; flags
// upstream removed are refused with pflag's message.
TEST(KubeletFlags, DeprecatedFlagsMapToTheirConfigFields) {
  auto o = ParseCommandLine({"--anonymous-auth=false", "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                             "--authentication-token-webhook", "--authentication-token-webhook-cache-ttl=2m",
                             "--authorization-mode=Webhook", "--authorization-webhook-cache-authorized-ttl=5m",
                             "--register-with-taints=node-role.kubernetes.io/control-plane:NoSchedule,dedicated=gpu:NoExecute",
                             "--node-labels=a=b,c=d", "--eviction-hard=memory.available<100Mi", "--cloud-provider=external",
                             "--rotate-server-certificates", "--image-maximum-gc-age=48h", "--container-log-max-workers=2",
                             "--local-storage-capacity-isolation=false"});
  ASSERT_TRUE(o.ok()) << o.status();
  const auto& c = o->config;
  EXPECT_EQ(c.authentication["anonymous"]["enabled"], false);
  EXPECT_EQ(c.authentication["x509"]["clientCAFile"], "/etc/kubernetes/pki/ca.crt");
  EXPECT_EQ(c.authentication["webhook"]["enabled"], true);
  EXPECT_EQ(c.authentication["webhook"]["cacheTTL"], "2m");
  EXPECT_EQ(c.authorization["mode"], "Webhook");
  EXPECT_EQ(c.authorization["webhook"]["cacheAuthorizedTTL"], "5m");
  ASSERT_EQ(c.register_with_taints.size(), 2u);
  EXPECT_EQ(c.register_with_taints[0]["key"], "node-role.kubernetes.io/control-plane");
  EXPECT_EQ(c.register_with_taints[0]["effect"], "NoSchedule");
  EXPECT_FALSE(c.register_with_taints[0].contains("value"));
  EXPECT_EQ(c.register_with_taints[1]["value"], "gpu");
  EXPECT_EQ(c.node_labels.at("c"), "d");
  EXPECT_TRUE(c.server_tls_bootstrap);
  EXPECT_EQ(c.image_maximum_gc_age, std::chrono::hours(48));
  EXPECT_EQ(c.container_log_max_workers, 2);
  EXPECT_FALSE(c.local_storage_capacity_isolation);
  // Bad values name the flag; a bad taint effect is refused by validation, as upstream.
  auto bad_bool = ParseCommandLine({"--anonymous-auth=maybe"});
  ASSERT_FALSE(bad_bool.ok());
  EXPECT_NE(bad_bool.status().message().find("--anonymous-auth"), std::string::npos) << bad_bool.status();
  EXPECT_FALSE(ParseCommandLine({"--authorization-mode=RBAC"}).ok());
  EXPECT_FALSE(ParseCommandLine({"--register-with-taints=key"}).ok());
  EXPECT_FALSE(ParseCommandLine({"--register-with-taints=k=v:Sometimes"}).ok());
  // Removed upstream: refused with the same words.
  for (const char* removed : {"--container-runtime=remote", "--experimental-mounter-path=/x", "--non-masquerade-cidr=10.0.0.0/8"}) {
    auto r = ParseCommandLine({removed});
    ASSERT_FALSE(r.ok()) << removed;
    EXPECT_EQ(r.status().message().rfind("unknown flag: --", 0), 0u) << r.status();
  }
}

}  // namespace
}  // namespace kubelet::config

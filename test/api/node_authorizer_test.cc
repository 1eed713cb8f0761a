// The fake API server rejects what kubeadm's API server (Node,RBAC authorization, NodeRestriction) rejects for a
// node's credentials, so that a kubelet reading more than its pods reference fails its tests.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "fake/fake_apiserver.h"
#include "common/test_util.h"
#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/kuberuntime/env.h"

namespace kubelet {
namespace {

using json = nlohmann::json;

class NodeAuthorizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("nodeauthz-" + std::to_string(getpid()));
    testing::FakeApiServer::Options o;
    o.cert_dir = dir_.string();
    o.token_user = "system:node:node1";
    api_ = std::make_unique<testing::FakeApiServer>(o);
    ASSERT_TRUE(api_->Start());
    client::RestConfig rc{api_->url(), api_->ca_pem(), false, "", "", "", "test-token", "", ""};
    client::ClientOptions co;
    co.max_retries = 0;
    client_ = client::NewApiClient(rc, co);
    api_->CreateNamespaceDefaults("default");
    api_->Create("configmaps", json::parse(R"({"metadata":{"name":"mine","namespace":"default"},"data":{"a":"1"}})"));
    api_->Create("configmaps", json::parse(R"({"metadata":{"name":"theirs","namespace":"default"},"data":{"a":"2"}})"));
    api_->Create("secrets", json::parse(R"({"metadata":{"name":"s","namespace":"default"},"data":{}})"));
    api_->Create("pods", json::parse(R"({"metadata":{"name":"here","namespace":"default"},"spec":{"nodeName":"node1",
      "containers":[{"name":"c","image":"x","envFrom":[{"configMapRef":{"name":"mine"}}]}],
      "volumes":[{"name":"v","projected":{"sources":[{"configMap":{"name":"kube-root-ca.crt"}}]}}]}})"));
    api_->Create("pods", json::parse(R"({"metadata":{"name":"there","namespace":"default"},"spec":{"nodeName":"node2",
      "containers":[{"name":"c","image":"x"}],"volumes":[{"name":"v","secret":{"secretName":"s"}}]}})"));
  }
  void TearDown() override {
    api_->Stop();
    std::filesystem::remove_all(dir_);
  }
  absl::StatusCode Code(const absl::StatusOr<json>& r) { return r.status().code(); }
  std::filesystem::path dir_;
  std::unique_ptr<testing::FakeApiServer> api_;
  std::unique_ptr<client::ApiClient> client_;
};

TEST_F(NodeAuthorizerTest, ANodeReadsOnlyWhatItsPodsReference) {
  EXPECT_TRUE(client_->Get("/api/v1/namespaces/default/configmaps/mine").ok());
  EXPECT_TRUE(client_->Get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").ok());
  auto theirs = client_->Get("/api/v1/namespaces/default/configmaps/theirs");
  EXPECT_EQ(Code(theirs), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(theirs.status().message().find("no relationship found between node 'node1' and this object"), std::string::npos)
      << theirs.status();
  // Another node's pod's secret, and any namespace-wide list.
  EXPECT_EQ(Code(client_->Get("/api/v1/namespaces/default/secrets/s")), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code(client_->Get("/api/v1/namespaces/default/configmaps")), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code(client_->Get("/api/v1/namespaces/default/secrets")), absl::StatusCode::kPermissionDenied);
  // A list of one referenced object by name is allowed (what a per-object watch starts from).
  EXPECT_TRUE(client_->Get("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dmine").ok());
  EXPECT_EQ(Code(client_->Get("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dtheirs")),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(api_->Forbidden().size(), 5u);
}

TEST_F(NodeAuthorizerTest, TokensOnlyForItsOwnPodsAndWritesOnlyToItsOwnNode) {
  auto token_for = [&](const std::string& pod) {
    auto p = api_->Get("pods", "default", pod);
    json req = {{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenRequest"},
                {"spec", {{"expirationSeconds", 3600},
                          {"boundObjectRef", {{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod}, {"uid", (*p)["metadata"]["uid"]}}}}}};
    return client_->Create("/api/v1/namespaces/default/serviceaccounts/default/token", req);
  };
  auto mine = token_for("here");
  ASSERT_TRUE(mine.ok()) << mine.status();
  std::string token = (*mine)["status"]["token"];
  EXPECT_EQ(api_->TokenClaims(token)["sub"], "system:serviceaccount:default:default");
  EXPECT_TRUE((*mine)["status"].contains("expirationTimestamp"));
  auto theirs = token_for("there");
  EXPECT_EQ(Code(theirs), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(theirs.status().message().find("node requested token bound to a pod scheduled on a different node"), std::string::npos)
      << theirs.status();
  api_->Create("nodes", json::parse(R"({"metadata":{"name":"node2"}})"));
  EXPECT_EQ(Code(client_->Patch("/api/v1/nodes/node2/status", {{"status", json::object()}}, client::PatchType::kStrategicMerge)),
            absl::StatusCode::kPermissionDenied);
}

// NodeRestriction on the node's own Node: no taints of its own making, only the kubelet's kubernetes.io labels;
// the pressure taints come from the node lifecycle controller (TaintNodesByCondition), which the fake plays.
TEST_F(NodeAuthorizerTest, ANodeKeepsOffItsTaintsAndRestrictedLabels) {
  api_->Create("nodes", json::parse(R"({"metadata":{"name":"node1","labels":{"kubernetes.io/hostname":"node1"}},"status":{}})"));
  auto patch = [&](const json& body) { return client_->Patch("/api/v1/nodes/node1", body, client::PatchType::kMerge); };
  auto taint = patch({{"spec", {{"taints", {{{"key", "k"}, {"effect", "NoSchedule"}}}}}}});
  EXPECT_EQ(Code(taint), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(taint.status().message().find("node \"node1\" is not allowed to modify taints"), std::string::npos) << taint.status();
  auto role = patch({{"metadata", {{"labels", {{"node-role.kubernetes.io/control-plane", ""}}}}}});
  EXPECT_EQ(Code(role), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(role.status().message().find("is not allowed to modify labels: node-role.kubernetes.io/control-plane"), std::string::npos)
      << role.status();
  EXPECT_EQ(Code(patch({{"metadata", {{"labels", {{"node-restriction.kubernetes.io/pool", "a"}}}}}})), absl::StatusCode::kPermissionDenied);
  for (const char* ok : {"topology.kubernetes.io/zone", "kubernetes.io/arch", "node.kubernetes.io/instance-type",
                         "topology.csi.example.com/zone", "example.com/anything"})
    EXPECT_TRUE(patch({{"metadata", {{"labels", {{ok, "x"}}}}}}).ok()) << ok;
  // The controller's part: a True pressure condition carries its NoSchedule taint, and it goes with it.
  auto cond = [&](const char* status) {
    return client_->Patch("/api/v1/nodes/node1/status",
                          {{"status", {{"conditions", {{{"type", "MemoryPressure"}, {"status", status}}}}}}},
                          client::PatchType::kMerge);
  };
  ASSERT_TRUE(cond("True").ok());
  auto n = api_->Get("nodes", "", "node1");
  ASSERT_TRUE((*n)["spec"].contains("taints"));
  EXPECT_EQ((*n)["spec"]["taints"][0]["key"], "node.kubernetes.io/memory-pressure");
  EXPECT_EQ((*n)["spec"]["taints"][0]["effect"], "NoSchedule");
  ASSERT_TRUE(cond("False").ok());
  EXPECT_FALSE((*api_->Get("nodes", "", "node1"))["spec"].contains("taints"));
}

// NodeRestriction at registration: the Node a kubelet creates carries only the labels a kubelet may set.
TEST_F(NodeAuthorizerTest, ANodeRegistersOnlyWithTheKubeletsLabels) {
  auto create = [&](const json& labels) {
    return client_->Create("/api/v1/nodes", {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", "node1"}, {"labels", labels}}}});
  };
  auto role = create({{"node-role.kubernetes.io/worker", ""}, {"node-restriction.kubernetes.io/pool", "a"}, {"kubernetes.io/os", "linux"}});
  EXPECT_EQ(Code(role), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(role.status().message().find("node \"node1\" is not allowed to set the following labels: "
                                         "node-restriction.kubernetes.io/pool, node-role.kubernetes.io/worker"),
            std::string::npos)
      << role.status();
  EXPECT_FALSE(api_->Get("nodes", "", "node1").has_value());
  EXPECT_TRUE(create({{"kubernetes.io/os", "linux"}, {"kubernetes.io/hostname", "node1"}, {"example.com/team", "a"}}).ok());
}

TEST_F(NodeAuthorizerTest, ANodeCreatesOnlyMirrorPodsAndTouchesOnlyItsOwnPods) {
  // Reads: one pod bound to the node, or a list selecting the node's pods.
  EXPECT_TRUE(client_->Get("/api/v1/namespaces/default/pods/here").ok());
  EXPECT_EQ(Code(client_->Get("/api/v1/namespaces/default/pods/there")), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(client_->Get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode1").ok());
  EXPECT_EQ(Code(client_->Get("/api/v1/pods")), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Code(client_->Get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode2")), absl::StatusCode::kPermissionDenied);
  // Creates: a mirror pod bound to itself, that references no secret, configMap, claim or service account.
  auto pod = [](const std::string& name, const std::string& node, bool mirror) {
    json p = {{"apiVersion", "v1"}, {"kind", "Pod"},
              {"metadata", {{"name", name}, {"namespace", "default"}}},
              {"spec", {{"nodeName", node}, {"containers", json::array({{{"name", "c"}, {"image", "x"}}})}}}};
    if (mirror) p["metadata"]["annotations"] = {{"kubernetes.io/config.mirror", "hash"}};
    return p;
  };
  auto plain = client_->Create("/api/v1/namespaces/default/pods", pod("plain", "node1", false));
  EXPECT_EQ(Code(plain), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(plain.status().message().find("node \"node1\" can only create mirror pods"), std::string::npos) << plain.status();
  EXPECT_EQ(Code(client_->Create("/api/v1/namespaces/default/pods", pod("elsewhere", "node2", true))),
            absl::StatusCode::kPermissionDenied);
  json with_secret = pod("secretive", "node1", true);
  with_secret["spec"]["volumes"] = json::array({{{"name", "v"}, {"secret", {{"secretName", "s"}}}}});
  auto secretive = client_->Create("/api/v1/namespaces/default/pods", with_secret);
  EXPECT_NE(secretive.status().message().find("can not create pods that reference secrets"), std::string::npos)
      << secretive.status();
  EXPECT_TRUE(client_->Create("/api/v1/namespaces/default/pods", pod("mirror", "node1", true)).ok());
  // Status and deletion: only of its own pods.
  auto status = client_->Patch("/api/v1/namespaces/default/pods/there/status", {{"status", {{"phase", "Failed"}}}},
                               client::PatchType::kStrategicMerge);
  EXPECT_EQ(Code(status), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(status.status().message().find("can only update pod status for pods with spec.nodeName set to itself"),
            std::string::npos) << status.status();
  auto del = client_->Delete("/api/v1/namespaces/default/pods/there", json::object());
  EXPECT_EQ(del.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(del.message().find("can only delete pods with spec.nodeName set to itself"), std::string::npos) << del;
  EXPECT_TRUE(api_->Get("pods", "default", "there").has_value());
  EXPECT_TRUE(client_->Delete("/api/v1/namespaces/default/pods/mirror", json::object()).ok());
}

// Streams into pods are the API server's business, not a node's: exec, attach and portforward are refused to it
// even for its own pods.
TEST_F(NodeAuthorizerTest, ANodeOpensNoStreamsIntoPods) {
  for (const char* sub : {"exec", "attach", "portforward"}) {
    auto r = client_->Create(std::string("/api/v1/namespaces/default/pods/here/") + sub + "?command=true&stdout=true",
                             json::object());
    EXPECT_EQ(Code(r), absl::StatusCode::kPermissionDenied) << sub;
    EXPECT_NE(r.status().message().find("pods/" + std::string(sub)), std::string::npos) << r.status();
  }
}

// The Watch strategy's manager: one watch per referenced object (metadata.name field selector, which the Node
// authorizer allows), shared by the pods that use it, stopped with the last one; reads come from the watch, and an
// update reaches the pods that reference the object.
TEST_F(NodeAuthorizerTest, PerObjectWatchesServeReadsAndReportUpdates) {
  auto source = kuberuntime::NewWatchBasedEnvSource(client_.get(), kuberuntime::NewAPIEnvSource(client_.get()));
  std::mutex mu;
  std::vector<std::string> changed;
  source->SetOnChange([&](const std::vector<std::string>& uids) {
    std::lock_guard<std::mutex> l(mu);
    changed.insert(changed.end(), uids.begin(), uids.end());
  });
  auto decode = [&](const std::string& name) {
    json raw = *api_->Get("pods", "default", name);
    api::ApplyPodDefaults(raw);
    auto pod = api::DecodePod(raw);
    EXPECT_TRUE(pod.ok()) << pod.status();
    return *pod;
  };
  api::Pod here = decode("here");
  EXPECT_EQ(kuberuntime::ReferencedObjects(here),
            (std::set<std::string>{"configmaps/default/kube-root-ca.crt", "configmaps/default/mine"}));
  source->RegisterPod(here);
  EXPECT_EQ(source->WatchCount(), 2u);
  auto first = source->Get("configmaps", "default", "mine");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)["data"]["a"], "1");
  // Reads of a watched object never reach the API server (the reflectors' own list and watch go to the collection).
  const std::string object_path = "/api/v1/namespaces/default/configmaps/mine";
  int before = api_->Requests("GET", object_path);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(source->Get("configmaps", "default", "mine").ok());
  EXPECT_EQ(api_->Requests("GET", object_path), before) << "reads of a watched object go to the API server";
  // An update arrives through the watch and names the pod.
  json cm = *api_->Get("configmaps", "default", "mine");
  cm["data"]["a"] = "2";
  api_->Update("configmaps", cm);
  ASSERT_TRUE(testing::WaitUntil([&] { return (*source->Get("configmaps", "default", "mine"))["data"]["a"] == "2"; }));
  ASSERT_TRUE(testing::WaitUntil([&] {
    std::lock_guard<std::mutex> l(mu);
    return std::find(changed.begin(), changed.end(), here.metadata.uid) != changed.end();
  }));
  // A second pod of the node shares the watch; the watch goes with the last pod that uses it.
  api_->Create("pods", json::parse(R"({"metadata":{"name":"here2","namespace":"default"},"spec":{"nodeName":"node1",
    "containers":[{"name":"c","image":"x","env":[{"name":"A","valueFrom":{"configMapKeyRef":{"name":"mine","key":"a"}}}]}]}})"));
  api::Pod here2 = decode("here2");
  source->RegisterPod(here2);
  EXPECT_EQ(source->WatchCount(), 2u);
  source->UnregisterPod(here.metadata.uid);
  EXPECT_EQ(source->WatchCount(), 1u);
  source->UnregisterPod(here2.metadata.uid);
  EXPECT_EQ(source->WatchCount(), 0u);
  // A deleted object reads as not found once the watch says so.
  source->RegisterPod(here2);
  ASSERT_TRUE(source->Get("configmaps", "default", "mine").ok());
  api_->Remove("configmaps", "default", "mine");
  EXPECT_TRUE(testing::WaitUntil([&] {
    return source->Get("configmaps", "default", "mine").status().code() == absl::StatusCode::kNotFound;
  }));
  source.reset();
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
}

}  // namespace
}  // namespace kubelet

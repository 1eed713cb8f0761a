#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fake/fake_apiserver.h"
#include "kubelet/client/api_client.h"
#include "kubelet/nodestatus/node_status.h"

namespace kubelet::nodestatus {
namespace {

using json = nlohmann::json;

class NodeStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kns-" + std::to_string(getpid()));
    testing::FakeApiServer::Options o;
    o.cert_dir = dir_.string();
    api_ = std::make_unique<testing::FakeApiServer>(o);
    ASSERT_TRUE(api_->Start());
    client::RestConfig rc{api_->url(), api_->ca_pem(), false, "", "", "", "test-token", "", ""};
    client_ = client::NewApiClient(rc, client::ClientOptions{});
    opts_.node_name = "node1";
    opts_.node_ip = "192.0.2.7";
    opts_.max_pods = 30;
    opts_.node_labels = {{"role", "test"}};
    opts_.register_with_taints = {{"k", "v", "NoSchedule", std::nullopt}};
    opts_.root_dir = dir_.string();
    opts_.eviction_hard = {{"memory.available", "100Mi"}};
    opts_.system_reserved = {{"cpu", "500m"}};
    providers_.runtime_version = [] { return "containerd://1.6.20"; };
    providers_.readiness = [this] { return readiness_; };
    providers_.node_event = [this](const std::string& reason, const std::string&, const std::string&) { events_.push_back(reason); };
    readiness_ = {true, true, ""};
  }
  void TearDown() override {
    api_->Stop();
    std::filesystem::remove_all(dir_);
  }
  static std::string Cond(const json& node, const std::string& type, const char* field) {
    for (const auto& c : node["status"]["conditions"])
      if (c["type"] == type) return c[field];
    return "";
  }
  std::filesystem::path dir_;
  std::unique_ptr<testing::FakeApiServer> api_;
  std::unique_ptr<client::ApiClient> client_;
  NodeOptions opts_;
  NodeProviders providers_;
  Readiness readiness_;
  std::vector<std::string> events_;
  FakeClock clock_{std::chrono::system_clock::now()};
};

TEST_F(NodeStatusTest, RegistersTheNodeWithUpstreamFields) {
  NodeStatusManager m(client_.get(), &clock_, opts_, providers_);
  ASSERT_TRUE(m.RegisterOnce().ok());
  auto node = api_->Get("nodes", "", "node1");
  ASSERT_TRUE(node);
  const json& md = (*node)["metadata"];
  EXPECT_EQ(md["labels"]["kubernetes.io/hostname"], "node1");
  EXPECT_EQ(md["labels"]["kubernetes.io/os"], "linux");
  EXPECT_EQ(md["labels"]["kubernetes.io/arch"], "amd64");
  EXPECT_EQ(md["labels"]["role"], "test");
  EXPECT_EQ((*node)["spec"]["taints"][0]["key"], "k");
  const json& st = (*node)["status"];
  EXPECT_EQ(st["capacity"]["pods"], "30");
  EXPECT_FALSE(st["capacity"]["cpu"].get<std::string>().empty());
  auto ki = [](const json& v) { return std::stoll(v.get<std::string>()); };
  EXPECT_EQ(ki(st["allocatable"]["memory"]), ki(st["capacity"]["memory"]) - 100 * 1024);  // minus evictionHard memory.available
  EXPECT_EQ(st["allocatable"]["cpu"], std::to_string(ki(st["capacity"]["cpu"]) * 1000 - 500) + "m");  // minus systemReserved
  EXPECT_EQ(st["nodeInfo"]["kubeletVersion"], "v1.31.0");
  EXPECT_EQ(st["nodeInfo"]["containerRuntimeVersion"], "containerd://1.6.20");
  EXPECT_EQ(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
  EXPECT_EQ(st["addresses"][0]["type"], "InternalIP");
  EXPECT_EQ(st["addresses"][0]["address"], "192.0.2.7");
  EXPECT_EQ(Cond(*node, "Ready", "status"), "True");
  EXPECT_EQ(Cond(*node, "Ready", "reason"), "KubeletReady");
  EXPECT_EQ(Cond(*node, "MemoryPressure", "reason"), "KubeletHasSufficientMemory");
  EXPECT_EQ(Cond(*node, "DiskPressure", "status"), "False");
  EXPECT_EQ(Cond(*node, "PIDPressure", "reason"), "KubeletHasSufficientPID");
  EXPECT_EQ(events_, (std::vector<std::string>{"RegisteredNode", "NodeHasSufficientMemory", "NodeHasNoDiskPressure",
                                               "NodeHasSufficientPID", "NodeReady"}));
  EXPECT_EQ(m.NodeUID(), md["uid"]);
}

TEST_F(NodeStatusTest, TakesOverAnExistingNode) {
  auto pre = api_->Create("nodes", {{"metadata", {{"name", "node1"}, {"labels", {{"keep", "me"}}}}}});
  NodeStatusManager m(client_.get(), &clock_, opts_, providers_);
  ASSERT_TRUE(m.RegisterOnce().ok());
  auto node = *api_->Get("nodes", "", "node1");
  EXPECT_EQ(node["metadata"]["uid"], pre["metadata"]["uid"]);
  EXPECT_EQ(node["metadata"]["labels"]["keep"], "me");
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/hostname"], "node1");
  EXPECT_EQ(Cond(node, "Ready", "status"), "True");
}

TEST_F(NodeStatusTest, PatchesOnlyOnChangeOrReportPeriod) {
  NodeStatusManager m(client_.get(), &clock_, opts_, providers_);
  ASSERT_TRUE(m.RegisterOnce().ok());
  int patches = api_->Requests("PATCH", "nodes");
  clock_.Step(std::chrono::seconds(10));
  ASSERT_TRUE(m.SyncStatusOnce(false).ok());
  EXPECT_EQ(api_->Requests("PATCH", "nodes"), patches);  // nothing changed, report period not over
  std::string ready_since = Cond(*api_->Get("nodes", "", "node1"), "Ready", "lastTransitionTime");
  readiness_ = {true, false, "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady"};
  clock_.Step(std::chrono::seconds(10));
  ASSERT_TRUE(m.SyncStatusOnce(false).ok());
  auto node = *api_->Get("nodes", "", "node1");
  EXPECT_EQ(Cond(node, "Ready", "status"), "False");
  EXPECT_EQ(Cond(node, "Ready", "reason"), "KubeletNotReady");
  EXPECT_NE(Cond(node, "Ready", "message").find("NetworkReady=false"), std::string::npos);
  EXPECT_NE(Cond(node, "Ready", "lastTransitionTime"), ready_since);
  EXPECT_EQ(events_.back(), "NodeNotReady");
  size_t seen = events_.size();
  patches = api_->Requests("PATCH", "nodes");
  clock_.Step(std::chrono::minutes(5));
  ASSERT_TRUE(m.SyncStatusOnce(false).ok());
  EXPECT_EQ(api_->Requests("PATCH", "nodes"), patches + 1);  // nodeStatusReportFrequency
  EXPECT_EQ(events_.size(), seen);  // no transition, no event
}

// status.volumesInUse as upstream's VolumesInUse setter: nothing is reported (and what the node carried is kept)
// until the volume manager's reconciler has synced; then the list follows it, and an empty one removes the field.
TEST_F(NodeStatusTest, VolumesInUseFollowTheVolumeManagerOnceItHasSynced) {
  api_->Create("nodes", {{"metadata", {{"name", "node1"}}},
                         {"status", {{"volumesInUse", {"kubernetes.io/csi/hostpath.csi.k8s.io^vol-1"}}}}});
  std::optional<std::vector<std::string>> in_use;  // not synced yet
  providers_.volumes_in_use = [&] { return in_use; };
  NodeStatusManager m(client_.get(), &clock_, opts_, providers_);
  ASSERT_TRUE(m.RegisterOnce().ok());
  auto node = *api_->Get("nodes", "", "node1");
  EXPECT_EQ(node["status"]["volumesInUse"], json({"kubernetes.io/csi/hostpath.csi.k8s.io^vol-1"}))
      << "a kubelet whose volume manager has not synced yet dropped what the node carries";
  in_use = std::vector<std::string>{"kubernetes.io/csi/hostpath.csi.k8s.io^vol-1", "kubernetes.io/csi/hostpath.csi.k8s.io^vol-2"};
  clock_.Step(std::chrono::seconds(10));
  ASSERT_TRUE(m.SyncStatusOnce(false).ok());
  node = *api_->Get("nodes", "", "node1");
  EXPECT_EQ(node["status"]["volumesInUse"], json(*in_use));
  in_use = std::vector<std::string>{};
  clock_.Step(std::chrono::seconds(10));
  ASSERT_TRUE(m.SyncStatusOnce(false).ok());
  node = *api_->Get("nodes", "", "node1");
  EXPECT_FALSE(node["status"].contains("volumesInUse")) << node["status"].dump();
}

TEST_F(NodeStatusTest, LeaseIsCreatedThenRenewedAndOwnedByTheNode) {
  NodeStatusManager m(client_.get(), &clock_, opts_, providers_);
  ASSERT_TRUE(m.RegisterOnce().ok());
  ASSERT_TRUE(m.RenewLeaseOnce().ok());
  auto lease = api_->Get("leases", "kube-node-lease", "node1");
  ASSERT_TRUE(lease);
  EXPECT_EQ((*lease)["spec"]["holderIdentity"], "node1");
  EXPECT_EQ((*lease)["spec"]["leaseDurationSeconds"], 40);
  EXPECT_EQ((*lease)["metadata"]["ownerReferences"][0]["uid"], m.NodeUID());
  std::string first = (*lease)["spec"]["renewTime"];
  clock_.Step(std::chrono::seconds(10));
  ASSERT_TRUE(m.RenewLeaseOnce().ok());
  EXPECT_NE((*api_->Get("leases", "kube-node-lease", "node1"))["spec"]["renewTime"], first);
  // Deleted by someone: recreated on the next renewal.
  api_->Remove("leases", "kube-node-lease", "node1");
  ASSERT_TRUE(m.RenewLeaseOnce().ok());
  EXPECT_TRUE(api_->Get("leases", "kube-node-lease", "node1"));
}

TEST_F(NodeStatusTest, BackgroundLoopsRegisterAndKeepTheLeaseFresh) {
  opts_.update_frequency = std::chrono::milliseconds(100);
  opts_.lease_duration_seconds = 1;
  RealClock real;
  NodeStatusManager m(client_.get(), &real, opts_, providers_);
  api_->InjectError("POST", "nodes", 503, 2);  // the API server is not ready yet
  m.Start();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline && !(m.Registered() && api_->Get("leases", "kube-node-lease", "node1")))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  m.Stop();
  EXPECT_TRUE(m.Registered());
  EXPECT_TRUE(api_->Get("leases", "kube-node-lease", "node1"));
}

// Admission reads the Node's labels as they are now: a label added by kubectl label node shows through the watch of
// the Node, long before the next status sync (10 s here), and with no GET of the node per sync.
TEST_F(NodeStatusTest, NodeLabelsFollowTheNodeThroughAWatch) {
  opts_.update_frequency = std::chrono::seconds(10);
  RealClock real;
  NodeStatusManager m(client_.get(), &real, opts_, providers_);
  m.Start();
  auto wait = [](auto pred) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline && !pred()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return pred();
  };
  // Registered, and the Node's reflector has listed and opened its watch (two GETs; registering a new node does none).
  ASSERT_TRUE(wait([&] { return m.Registered() && m.NodeLabels().has_value() && api_->Requests("GET", "nodes") >= 2; }));
  int gets = api_->Requests("GET", "nodes");
  EXPECT_EQ(gets, 2);
  json node = *api_->Get("nodes", "", "node1");
  node["metadata"]["labels"]["disktype"] = "ssd";
  api_->Update("nodes", node);
  EXPECT_TRUE(wait([&] {
    auto l = m.NodeLabels();
    return l && l->count("disktype") && l->at("disktype") == "ssd";
  }));
  EXPECT_EQ(m.NodeLabels()->at("role"), "test");
  EXPECT_EQ(api_->Requests("GET", "nodes"), gets);
  m.Stop();
}

}  // namespace
}  // namespace kubelet::nodestatus

namespace kubelet::nodestatus {
namespace {

TEST(Readiness, FromRuntimeStatusAndKubeletCNI) {
  namespace rt = ::runtime::v1;
  auto status = [](bool runtime, bool network) {
    rt::StatusResponse r;
    auto* c = r.mutable_status()->add_conditions();
    c->set_type("RuntimeReady");
    c->set_status(runtime);
    c = r.mutable_status()->add_conditions();
    c->set_type("NetworkReady");
    c->set_status(network);
    if (!network) {
      c->set_reason("NetworkPluginNotReady");
      c->set_message("Network plugin returns error: cni plugin not initialized");
    }
    return absl::StatusOr<rt::StatusResponse>(r);
  };
  auto r = ReadinessFrom(status(true, true), nullptr);
  EXPECT_TRUE(r.runtime_ready && r.network_ready);
  r = ReadinessFrom(status(true, false), nullptr);
  EXPECT_FALSE(r.network_ready);
  EXPECT_EQ(r.message, "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                       "message:Network plugin returns error: cni plugin not initialized");
  r = ReadinessFrom(absl::UnavailableError("connection refused"), nullptr);
  EXPECT_EQ(r.message, "container runtime is down: connection refused");
  // Kubelet network mode: an empty CNI config folder means not ready, whatever the runtime says.
  auto dir = std::filesystem::temp_directory_path() / ("ready-cni-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  network::CNIOptions co;
  co.conf_dir = dir.string();
  network::CNIRunner cni(co);
  r = ReadinessFrom(status(true, true), &cni);
  EXPECT_FALSE(r.network_ready);
  EXPECT_EQ(r.message, "network plugin not ready: cni config uninitialized");
  std::ofstream(dir / "10-net.conflist") << R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]})";
  r = ReadinessFrom(status(true, false), &cni);
  EXPECT_TRUE(r.network_ready);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kubelet::nodestatus

// The kubelet as a node of a (fake) cluster: the api pod source, pod status
// writes and graceful deletion, on the fake CRI runtime.
#include <gtest/gtest.h>

#include "common/test_util.h"

#include <filesystem>
#include <thread>

#include "fake/fake_apiserver.h"
#include "fake/fake_runtime.h"
#include "kubelet/client/api_client.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kuberuntime/env.h"

namespace kubelet {
namespace {

using json = nlohmann::json;
namespace rt = ::runtime::v1;

using kubelet::testing::WaitUntil;

class KubeletAPITest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kapi-int-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "root/pods");
    fake_ = std::make_unique<testing::FakeRuntime>((dir_ / "cri.sock").string());
    ASSERT_TRUE(fake_->Start());
    fake_->AddImage("busybox:1.35");
    testing::FakeApiServer::Options ao;
    ao.cert_dir = (dir_ / "api").string();
    ao.token_user = "system:node:node1";  // the kubelet's credentials: Node authorizer and NodeRestriction apply
    apiserver_ = std::make_unique<testing::FakeApiServer>(ao);
    ASSERT_TRUE(apiserver_->Start());
    client::RestConfig rc;
    rc.server = apiserver_->url();
    rc.ca_pem = apiserver_->ca_pem();
    rc.bearer_token = "test-token";
    client::ClientOptions co;
    co.initial_backoff = std::chrono::milliseconds(50);
    co.max_retries = 2;
    co.timeout = std::chrono::seconds(5);
    api_ = client::NewApiClient(rc, co);
    cri::RemoteOptions ro;
    ro.runtime_endpoint = fake_->endpoint();
    ro.timeout = std::chrono::seconds(5);
    remote_ = cri::NewRemoteRuntime(ro);
    volumes_ = volumemanager::NewVolumeManager((dir_ / "root/pods").string());
    kuberuntime::RuntimeManagerOptions rmo;
    rmo.pod_logs_dir = (dir_ / "logs").string();
    rmo.pods_dir = (dir_ / "root/pods").string();
    recorder_ = std::make_unique<events::APIRecorder>(api_.get(), "node1", 50, 100);
    rmo.node_ip = "192.0.2.10";
    env_source_ = kuberuntime::NewAPIEnvSource(api_.get());
    runtime_ = kuberuntime::NewRuntimeManager(
        {remote_.get(), remote_.get(), volumes_.get(), recorder_.get(), &metrics_, &clock_, env_source_.get()}, rmo);
    syncer_ = std::make_unique<status::PodStatusSyncer>(api_.get());
    syncer_->Start();
    MakeKubelet();
  }

  void MakeKubelet() {
    KubeletOptions o;
    o.node_name = "node1";
    o.node_ip = "192.0.2.10";
    o.root_dir = (dir_ / "root").string();
    o.config.pod_logs_dir = (dir_ / "logs").string();
    o.pleg_period = std::chrono::milliseconds(100);
    o.housekeeping_period = std::chrono::milliseconds(200);
    o.worker_backoff = std::chrono::milliseconds(200);
    o.mirror_period = std::chrono::milliseconds(200);
    o.config.sync_frequency = std::chrono::milliseconds(200);  // frequent resyncs: they must not rewrite status
    Dependencies d{&clock_, runtime_.get(), volumes_.get(), recorder_.get(), &metrics_,
                   api_.get(), syncer_.get(), [] { return std::string("node-uid-1"); }};
    d.node_labels = [this]() -> std::optional<api::StringMap> {
      std::lock_guard<std::mutex> l(labels_mu_);
      return node_labels_;
    };
    d.refresh_node_labels = [this]() -> std::optional<api::StringMap> {
      std::lock_guard<std::mutex> l(labels_mu_);
      ++refreshes_;
      return api_labels_ ? api_labels_ : node_labels_;
    };
    kubelet_ = std::make_unique<Kubelet>(o, d);
    kubelet_->pod_config().AddSource(api::kSourceFile);
    kubelet_->Start();
  }

  void TearDown() override {
    kubelet_->Stop();
    syncer_->Stop();
    recorder_.reset();
    // Nothing the kubelet asked for was refused by the Node authorizer (no namespace-wide reads, no other node's).
    auto refused = apiserver_->Forbidden();
    EXPECT_TRUE(refused.empty()) << refused.front();
    apiserver_->Stop();
    fake_->Stop();
    std::filesystem::remove_all(dir_);
  }

  json BoundPod(const std::string& name, const std::string& node = "node1") {
    return {{"metadata", {{"name", name}, {"namespace", "default"}}},
            {"spec",
             {{"nodeName", node},
              {"terminationGracePeriodSeconds", 5},
              {"containers", {{{"name", "c"}, {"image", "busybox:1.35"}}}}}}};
  }

  std::string Phase(const std::string& name) {
    auto p = apiserver_->Get("pods", "default", name);
    return p && (*p).contains("status") ? (*p)["status"].value("phase", "") : "";
  }

  void SetNodeLabels(std::optional<api::StringMap> labels) {
    std::lock_guard<std::mutex> l(labels_mu_);
    node_labels_ = std::move(labels);
  }
  void RestartKubelet() {
    kubelet_->Stop();
    kubelet_.reset();
    MakeKubelet();
  }

  std::mutex labels_mu_;
  std::optional<api::StringMap> node_labels_;  // what the Node object says; unset: not read yet
  std::optional<api::StringMap> api_labels_;   // set: the API server has newer labels than the watch delivered
  int refreshes_ = 0;
  std::filesystem::path dir_;
  FakeClock clock_{std::chrono::system_clock::now()};
  metrics::KubeletMetrics metrics_;
  std::unique_ptr<events::APIRecorder> recorder_;
  std::unique_ptr<testing::FakeRuntime> fake_;
  std::unique_ptr<testing::FakeApiServer> apiserver_;
  std::unique_ptr<client::ApiClient> api_;
  std::unique_ptr<cri::RemoteRuntime> remote_;
  std::unique_ptr<volumemanager::VolumeManager> volumes_;
  std::unique_ptr<kuberuntime::EnvSource> env_source_;
  std::unique_ptr<kuberuntime::RuntimeManager> runtime_;
  std::unique_ptr<status::PodStatusSyncer> syncer_;
  std::unique_ptr<Kubelet> kubelet_;
};

TEST_F(KubeletAPITest, RunsBoundPodsAndWritesTheirStatus) {
  apiserver_->Create("pods", BoundPod("web"));
  apiserver_->Create("pods", BoundPod("elsewhere", "node2"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("web") == "Running"; }));
  auto pod = *apiserver_->Get("pods", "default", "web");
  const json& st = pod["status"];
  EXPECT_EQ(st["podIP"].get<std::string>().rfind("10.88.0.", 0), 0u);
  EXPECT_EQ(st["hostIP"], "192.0.2.10");
  EXPECT_EQ(st["containerStatuses"][0]["ready"], true);
  EXPECT_EQ(st["containerStatuses"][0]["containerID"].get<std::string>().rfind("fakeruntime://", 0), 0u);
  std::set<std::string> conds;
  for (const auto& c : st["conditions"])
    if (c["status"] == "True") conds.insert(c["type"]);
  EXPECT_EQ(conds, (std::set<std::string>{"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}));
  // Only the pod bound to this node runs.
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);
  EXPECT_EQ(fake_->Sandboxes()[0].metadata().name(), "web");
  EXPECT_EQ(Phase("elsewhere"), "");
  // Events went to the API server, as upstream names them.
  recorder_->Flush();
  std::set<std::string> reasons;
  for (const auto& e : apiserver_->List("events"))
    if (e["involvedObject"]["name"] == "web") {
      reasons.insert(e["reason"]);
      EXPECT_EQ(e["source"]["component"], "kubelet");
      EXPECT_EQ(e["involvedObject"]["uid"], pod["metadata"]["uid"]);
    }
  EXPECT_TRUE(reasons.count("Created") && reasons.count("Started") && reasons.count("Pulled")) << json(reasons).dump();
  // No needless writes: a steady pod's status is not patched again.
  int patches = apiserver_->Requests("PATCH", "pods");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // several resyncs
  EXPECT_EQ(apiserver_->Requests("PATCH", "pods"), patches);
}

TEST_F(KubeletAPITest, PodsTheNodeCannotRunAreRejectedWithTheUpstreamReason) {
  json picky = BoundPod("picky");
  picky["spec"]["nodeSelector"] = {{"disktype", "ssd"}};
  apiserver_->Create("pods", picky);
  apiserver_->Create("pods", BoundPod("fine"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("picky") == "Failed" && Phase("fine") == "Running"; }));
  auto pod = *apiserver_->Get("pods", "default", "picky");
  EXPECT_EQ(pod["status"]["reason"], "NodeAffinity");
  EXPECT_EQ(pod["status"]["message"], "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector");
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);
  EXPECT_EQ(fake_->Sandboxes()[0].metadata().name(), "fine");
  recorder_->Flush();
  bool event = false;
  for (const auto& e : apiserver_->List("events"))
    event |= e["involvedObject"]["name"] == "picky" && e["reason"] == "NodeAffinity" && e["type"] == "Warning";
  EXPECT_TRUE(event);
}

// A label the scheduler matched but the node watch has not delivered yet (upstream kubernetes#134445): the Node is
// read once more before the pod is rejected; a pod that matches the watched labels costs no read.
TEST_F(KubeletAPITest, ANodeAffinityMissIsCheckedAgainstTheNodeReadNow) {
  SetNodeLabels(api::StringMap{{"kubernetes.io/hostname", "node1"}});
  {
    std::lock_guard<std::mutex> l(labels_mu_);
    api_labels_ = api::StringMap{{"kubernetes.io/hostname", "node1"}, {"disktype", "ssd"}};
  }
  apiserver_->Create("pods", BoundPod("fine"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("fine") == "Running"; }));
  {
    std::lock_guard<std::mutex> l(labels_mu_);
    EXPECT_EQ(refreshes_, 0);
  }
  json picky = BoundPod("picky");
  picky["spec"]["nodeSelector"] = {{"disktype", "ssd"}};
  apiserver_->Create("pods", picky);
  json never = BoundPod("never");
  never["spec"]["nodeSelector"] = {{"disktype", "hdd"}};
  apiserver_->Create("pods", never);
  ASSERT_TRUE(WaitUntil([&] { return Phase("picky") == "Running" && Phase("never") == "Failed"; }))
      << Phase("picky") << " " << Phase("never");
  EXPECT_EQ((*apiserver_->Get("pods", "default", "never"))["status"]["reason"], "NodeAffinity");
  std::lock_guard<std::mutex> l(labels_mu_);
  EXPECT_EQ(refreshes_, 2);
}

TEST_F(KubeletAPITest, PodsFinishedInTheAPINeverStartAgain) {
  // As after a restart: the API shows the pod evicted (or completed); the kubelet must not run it again.
  // (Stopped first so the kubelet sees them only with their final status, as a restarted one would.)
  kubelet_->Stop();
  kubelet_.reset();
  auto finished = [&](const std::string& name, json status) {
    apiserver_->Create("pods", BoundPod(name));
    json obj = *apiserver_->Get("pods", "default", name);
    obj["status"] = status;
    apiserver_->Update("pods", obj);
  };
  finished("evicted", {{"phase", "Failed"}, {"reason", "Evicted"}, {"message", "The node was low on resource: memory. "}});
  finished("done", {{"phase", "Succeeded"}});
  apiserver_->Create("pods", BoundPod("live"));
  MakeKubelet();
  ASSERT_TRUE(WaitUntil([&] { return Phase("live") == "Running"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // several syncs
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);
  EXPECT_EQ(fake_->Sandboxes()[0].metadata().name(), "live");
  auto pod = *apiserver_->Get("pods", "default", "evicted");
  EXPECT_EQ(pod["status"]["phase"], "Failed");
  EXPECT_EQ(pod["status"]["reason"], "Evicted");
  EXPECT_EQ(Phase("done"), "Succeeded");
}

TEST_F(KubeletAPITest, GracefulDeletionStopsWritesFinalStatusAndDeletes) {
  apiserver_->Create("pods", BoundPod("doomed"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("doomed") == "Running"; }));
  ASSERT_TRUE(api_->Delete("/api/v1/namespaces/default/pods/doomed", json::object()).ok());  // graceful: 5s
  ASSERT_TRUE(WaitUntil([&] { return !apiserver_->Get("pods", "default", "doomed"); }));
  EXPECT_GE(fake_->CallCount("StopContainer"), 1);
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().empty() && fake_->Containers().empty(); }));
}

TEST_F(KubeletAPITest, APIServerOutageChangesNothingRunningAndStatusCatchesUp) {
  apiserver_->Create("pods", BoundPod("steady"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("steady") == "Running"; }));
  std::string id;
  for (const auto& c : fake_->Containers()) id = c.id();
  apiserver_->Stop();
  ASSERT_TRUE(fake_->ExitContainer(id, 1));  // a crash while the API server is away
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);  // nothing was torn down
  ASSERT_TRUE(apiserver_->Start());
  ASSERT_TRUE(WaitUntil([&] {
    auto p = apiserver_->Get("pods", "default", "steady");
    return p && (*p)["status"]["containerStatuses"][0].value("restartCount", 0) == 1;
  }));
  EXPECT_EQ(fake_->Sandboxes().size(), 1u);
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 1);
}

TEST_F(KubeletAPITest, WatchRelistsAfterExpiry) {
  apiserver_->Create("pods", BoundPod("first"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("first") == "Running"; }));
  apiserver_->Stop();
  apiserver_->Compact();  // events the kubelet missed are gone: its next watch gets 410
  apiserver_->Create("pods", BoundPod("second"));
  ASSERT_TRUE(apiserver_->Start());
  ASSERT_TRUE(WaitUntil([&] { return Phase("second") == "Running"; }, std::chrono::milliseconds(40000)));
}

TEST_F(KubeletAPITest, StaticPodsGetMirrorPods) {
  json manifest = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "etcd"}, {"namespace", "kube-system"}}},
                   {"spec", {{"containers", {{{"name", "etcd"}, {"image", "busybox:1.35"}}}}}}};
  auto pod = *config::PrepareStaticPod(manifest, "/etc/kubernetes/manifests/etcd.yaml", true, "node1");
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return apiserver_->Get("pods", "kube-system", "etcd-node1").has_value(); }));
  auto mirror = *apiserver_->Get("pods", "kube-system", "etcd-node1");
  EXPECT_EQ(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"], pod.metadata.uid);
  EXPECT_EQ(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
  EXPECT_EQ(mirror["metadata"]["ownerReferences"][0]["uid"], "node-uid-1");
  EXPECT_NE(mirror["metadata"]["uid"], pod.metadata.uid);
  // The static pod's status lands on its mirror.
  ASSERT_TRUE(WaitUntil([&] {
    auto m = apiserver_->Get("pods", "kube-system", "etcd-node1");
    return m && (*m).contains("status") && (*m)["status"].value("phase", "") == "Running";
  }));
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);  // the mirror itself is not run
  // Edits to the mirror change nothing; deleting it brings it back.
  auto edited = mirror;
  edited["spec"]["containers"][0]["image"] = "busybox:9.9";
  apiserver_->Update("pods", edited);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 1);
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 1);
  apiserver_->Remove("pods", "kube-system", "etcd-node1");
  ASSERT_TRUE(WaitUntil([&] { return apiserver_->Get("pods", "kube-system", "etcd-node1").has_value(); }));
  // The static pod goes: so does its mirror.
  kubelet_->OnSnapshot(api::kSourceFile, {});
  ASSERT_TRUE(WaitUntil([&] { return !apiserver_->Get("pods", "kube-system", "etcd-node1").has_value(); }));
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().empty(); }));
}

TEST_F(KubeletAPITest, EnvironmentFromConfigMapsSecretsDownwardAPIAndServices) {
  apiserver_->Create("secrets", {{"metadata", {{"name", "creds"}, {"namespace", "default"}}}, {"data", {{"password", "aHVudGVyMg=="}}}});
  apiserver_->Create("services", {{"metadata", {{"name", "kubernetes"}, {"namespace", "default"}}},
                                  {"spec", {{"clusterIP", "10.96.0.1"}, {"ports", {{{"name", "https"}, {"port", 443}, {"protocol", "TCP"}}}}}}});
  json pod = BoundPod("envy");
  pod["metadata"]["labels"] = {{"app", "envy"}};
  pod["spec"]["containers"][0]["envFrom"] = {{{"configMapRef", {{"name", "settings"}}}, {"prefix", "CFG_"}}};
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"memory", "64Mi"}}}};
  pod["spec"]["containers"][0]["env"] = json::parse(R"J([
    {"name":"PASSWORD","valueFrom":{"secretKeyRef":{"name":"creds","key":"password"}}},
    {"name":"POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}},
    {"name":"APP","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['app']"}}},
    {"name":"POD_IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}},
    {"name":"MEM_MI","valueFrom":{"resourceFieldRef":{"resource":"limits.memory","divisor":"1Mi"}}},
    {"name":"GREETING","value":"hello $(CFG_WHO) from $(POD_NAME)"},
    {"name":"OPT","valueFrom":{"configMapKeyRef":{"name":"absent","key":"k","optional":true}}}])J");
  apiserver_->Create("pods", pod);
  // The ConfigMap does not exist yet: CreateContainerConfigError, as upstream.
  ASSERT_TRUE(WaitUntil([&] {
    json p = *apiserver_->Get("pods", "default", "envy");
    return p.contains("status") && p["status"]["containerStatuses"][0]["state"].contains("waiting") &&
           p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError";
  }));
  EXPECT_EQ((*apiserver_->Get("pods", "default", "envy"))["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
            "configmap \"settings\" not found");
  apiserver_->Create("configmaps", {{"metadata", {{"name", "settings"}, {"namespace", "default"}}}, {"data", {{"WHO", "cfg"}}}});
  ASSERT_TRUE(WaitUntil([&] { return Phase("envy") == "Running"; }));
  std::map<std::string, std::string> env;
  for (const auto& c : fake_->Containers()) {
    auto config = fake_->ConfigOf(c.id());
    ASSERT_TRUE(config.has_value());
    for (const auto& kv : config->envs()) env[kv.key()] = kv.value();
  }
  EXPECT_EQ(env["CFG_WHO"], "cfg");
  EXPECT_EQ(env["PASSWORD"], "hunter2");
  EXPECT_EQ(env["POD_NAME"], "envy");
  EXPECT_EQ(env["APP"], "envy");
  EXPECT_EQ(env["POD_IP"].rfind("10.88.0.", 0), 0u);
  EXPECT_EQ(env["MEM_MI"], "64");
  EXPECT_EQ(env["GREETING"], "hello cfg from envy");
  EXPECT_FALSE(env.count("OPT"));
  EXPECT_EQ(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
  EXPECT_EQ(env["KUBERNETES_SERVICE_PORT"], "443");
  EXPECT_EQ(env["KUBERNETES_PORT_443_TCP"], "tcp://10.96.0.1:443");
}

TEST_F(KubeletAPITest, RepeatedEventsAreAggregated) {
  api::Pod pod;
  pod.metadata.name = "p";
  pod.metadata.namespace_ = "default";
  pod.metadata.uid = "u1";
  for (int i = 0; i < 3; ++i) recorder_->PodEvent(pod, "Warning", "BackOff", "Back-off restarting failed container");
  recorder_->Flush();
  int matching = 0;
  for (const auto& e : apiserver_->List("events"))
    if (e["reason"] == "BackOff") {
      ++matching;
      EXPECT_EQ(e["count"], 3);
    }
  EXPECT_EQ(matching, 1);
}

}  // namespace
}  // namespace kubelet

// Issue 10: restart correctness. A restarted kubelet never kills or restarts a pod because it restarted, misread an
// object or met a field it does not know; what was asked while it was away is done when it is back.
namespace kubelet {
namespace {

TEST_F(KubeletAPITest, PodDeletedWhileTheKubeletWasDownIsKilledAndRemoved) {
  apiserver_->Create("pods", BoundPod("gone"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("gone") == "Running"; }));
  kubelet_->Stop();
  kubelet_.reset();
  ASSERT_TRUE(api_->Delete("/api/v1/namespaces/default/pods/gone", json::object()).ok());  // graceful: a deletionTimestamp
  ASSERT_TRUE(apiserver_->Get("pods", "default", "gone").has_value());
  MakeKubelet();
  ASSERT_TRUE(WaitUntil([&] { return !apiserver_->Get("pods", "default", "gone"); }));
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().empty() && fake_->Containers().empty(); }));
}

TEST_F(KubeletAPITest, NodeLabelsAreReadLiveAndARestartKeepsPodsThatSelectThem) {
  json picky = BoundPod("picky");
  picky["spec"]["nodeSelector"] = {{"disktype", "ssd"}};
  // kubectl label node node1 disktype=ssd, after the kubelet started.
  SetNodeLabels(api::StringMap{{"kubernetes.io/hostname", "node1"}, {"disktype", "ssd"}});
  apiserver_->Create("pods", picky);
  ASSERT_TRUE(WaitUntil([&] { return Phase("picky") == "Running"; }));
  // A restart before the Node was read again (labels unknown): the running pod is re-admitted, not rejected.
  SetNodeLabels(std::nullopt);
  RestartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {});  // every source has spoken: orphans are looked for too
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // several syncs and housekeeping rounds
  EXPECT_EQ(Phase("picky"), "Running");
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 1);
  EXPECT_EQ(fake_->CallCount("StopContainer"), 0);
  // A new pod that selects a label the node does not have is still refused.
  json other = BoundPod("other");
  other["spec"]["nodeSelector"] = {{"disktype", "nvme"}};
  apiserver_->Create("pods", other);
  ASSERT_TRUE(WaitUntil([&] { return Phase("other") == "Failed"; }));
}

TEST_F(KubeletAPITest, UndecodableAPIPodIsLeftAloneNotKilled) {
  apiserver_->Create("pods", BoundPod("odd"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("odd") == "Running"; }));
  // An update the kubelet cannot decode: the running pod stays as it was.
  json obj = *apiserver_->Get("pods", "default", "odd");
  obj["spec"]["containers"][0]["securityContext"] = {{"seccompProfile", {{"type", 5}}}};
  apiserver_->Update("pods", obj);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(fake_->CallCount("StopContainer"), 0);
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);
  // After a restart the kubelet never decoded it at all: still nothing of it is killed as an orphan, once every
  // source has spoken (the file source too) and orphans are looked for.
  RestartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {});
  ASSERT_TRUE(WaitUntil([&] { return kubelet_->SourcesReady(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(fake_->CallCount("StopContainer"), 0);
  EXPECT_EQ(fake_->CallCount("StopPodSandbox"), 0);
  int running = 0;
  for (const auto& c : fake_->Containers()) running += c.state() == rt::CONTAINER_RUNNING;
  EXPECT_EQ(running, 1);
  // Its deletion is still honoured: the deletionTimestamp is read on its own and the containers go.
  ASSERT_TRUE(api_->Delete("/api/v1/namespaces/default/pods/odd", json::object()).ok());
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& c : fake_->Containers())
      if (c.state() == rt::CONTAINER_RUNNING) return false;
    return true;
  }));
}

TEST_F(KubeletAPITest, DeletionOfAPodThatBecameUndecodableIsHonoured) {
  apiserver_->Create("pods", BoundPod("odd2"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("odd2") == "Running"; }));
  json obj = *apiserver_->Get("pods", "default", "odd2");
  obj["spec"]["containers"][0]["securityContext"] = {{"seccompProfile", {{"type", 5}}}};
  apiserver_->Update("pods", obj);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(api_->Delete("/api/v1/namespaces/default/pods/odd2", json::object()).ok());
  // Killed as the last decoded version, and finalized in the API.
  ASSERT_TRUE(WaitUntil([&] { return !apiserver_->Get("pods", "default", "odd2"); }));
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().empty(); }));
}

TEST_F(KubeletAPITest, DefaultedFieldsFromANewerAPIServerRestartNothing) {
  apiserver_->Create("pods", BoundPod("stable"));
  ASSERT_TRUE(WaitUntil([&] { return Phase("stable") == "Running"; }));
  kubelet_->Stop();
  kubelet_.reset();
  // An upgraded API server defaults fields this kubelet never saw on every container.
  json obj = *apiserver_->Get("pods", "default", "stable");
  for (auto& c : obj["spec"]["containers"]) {
    c["resizePolicy"] = json::array({{{"resourceName", "cpu"}, {"restartPolicy", "NotRequired"}}});
    c["someFutureField"] = {{"enabled", true}};
  }
  apiserver_->Update("pods", obj);
  MakeKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 1);
  EXPECT_EQ(fake_->CallCount("StopContainer"), 0);
  EXPECT_EQ(Phase("stable"), "Running");
}

TEST_F(KubeletAPITest, RejectedPodFinishesItsGracefulDeletion) {
  json picky = BoundPod("refused");
  picky["spec"]["nodeSelector"] = {{"disktype", "ssd"}};
  apiserver_->Create("pods", picky);
  ASSERT_TRUE(WaitUntil([&] { return Phase("refused") == "Failed"; }));
  ASSERT_TRUE(api_->Delete("/api/v1/namespaces/default/pods/refused", json::object()).ok());
  ASSERT_TRUE(WaitUntil([&] { return !apiserver_->Get("pods", "default", "refused"); }));
}

TEST_F(KubeletAPITest, StaticPodsNeverWaitForTheAPIServer) {
  apiserver_->Stop();
  json j = {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", "apiserver"}, {"namespace", "kube-system"}}},
            {"spec", {{"containers", {{{"name", "c"}, {"image", "busybox:1.35"}, {"env", {{{"name", "A"}, {"value", "b"}}}}}}}}}};
  auto pod = config::PrepareStaticPod(j, "/manifests/apiserver.yaml", true, "node1");
  ASSERT_TRUE(pod.ok()) << pod.status();
  kubelet_->OnSnapshot(api::kSourceFile, {*pod});
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& c : fake_->Containers())
      if (c.state() == rt::CONTAINER_RUNNING) return true;
    return false;
  }));
}

}  // namespace
}  // namespace kubelet

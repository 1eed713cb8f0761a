// What the kubelet writes to the API server, read back by a real kubectl
// (Debian's kubernetes-client, unpacked by deploy/install-deps.sh): kubectl
// decodes Node, Lease, Pod and Event objects into the upstream Go types, so a
// field of the wrong type or shape fails here as it would against a real
// cluster. The API server is the project's fake; the runtime the fake CRI.
#include <gtest/gtest.h>

#include "common/test_util.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "fake/fake_apiserver.h"
#include "fake/fake_runtime.h"
#include "kubelet/client/api_client.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kuberuntime/env.h"
#include "kubelet/nodestatus/node_status.h"

namespace kubelet {
namespace {

using json = nlohmann::json;
using kubelet::testing::WaitUntil;

class KubectlCompat : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* k = std::getenv("KUBECTL");
    ASSERT_TRUE(k && *k && std::filesystem::exists(k))
        << "KUBECTL must name Debian's kubectl (kubernetes-client); deploy/install-deps.sh unpacks it";
    kubectl_ = k;
    dir_ = std::filesystem::temp_directory_path() / ("kubectl-compat-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "root/pods");
    fake_ = std::make_unique<testing::FakeRuntime>((dir_ / "cri.sock").string());
    ASSERT_TRUE(fake_->Start());
    fake_->AddImage("busybox:1.35");
    testing::FakeApiServer::Options ao;
    ao.cert_dir = (dir_ / "api").string();
    apiserver_ = std::make_unique<testing::FakeApiServer>(ao);
    ASSERT_TRUE(apiserver_->Start());
    client::RestConfig rc;
    rc.server = apiserver_->url();
    rc.ca_pem = apiserver_->ca_pem();
    rc.bearer_token = "test-token";
    api_ = client::NewApiClient(rc, client::ClientOptions{});
    cri::RemoteOptions ro;
    ro.runtime_endpoint = fake_->endpoint();
    remote_ = cri::NewRemoteRuntime(ro);
    volumes_ = volumemanager::NewVolumeManager((dir_ / "root/pods").string());
    recorder_ = std::make_unique<events::APIRecorder>(api_.get(), "node1", 50, 100);
    kuberuntime::RuntimeManagerOptions rmo;
    rmo.pod_logs_dir = (dir_ / "logs").string();
    rmo.pods_dir = (dir_ / "root/pods").string();
    rmo.node_ip = "192.0.2.10";
    env_source_ = kuberuntime::NewAPIEnvSource(api_.get());
    runtime_ = kuberuntime::NewRuntimeManager(
        {remote_.get(), remote_.get(), volumes_.get(), recorder_.get(), &metrics_, &clock_, env_source_.get()}, rmo);
    syncer_ = std::make_unique<status::PodStatusSyncer>(api_.get());
    syncer_->Start();

    nodestatus::NodeOptions no;
    no.node_name = "node1";
    no.node_ip = "192.0.2.10";
    no.root_dir = dir_.string();
    no.node_labels = {{"node-role.kubernetes.io/worker", ""}};
    no.register_with_taints = {{"dedicated", "test", "NoSchedule", std::nullopt}};
    nodestatus::NodeProviders np;
    np.runtime_version = [] { return std::string("fakeruntime://0.1.0"); };
    np.readiness = [] { return nodestatus::Readiness{true, true, ""}; };
    np.node_event = [this](const std::string& reason, const std::string& message, const std::string& type) {
      recorder_->NodeEvent(type, reason, message);
    };
    nodes_ = std::make_unique<nodestatus::NodeStatusManager>(api_.get(), &clock_, no, np);
    nodes_->Start();

    KubeletOptions o;
    o.node_name = "node1";
    o.node_ip = "192.0.2.10";
    o.root_dir = (dir_ / "root").string();
    o.config.pod_logs_dir = (dir_ / "logs").string();
    o.pleg_period = std::chrono::milliseconds(100);
    o.worker_backoff = std::chrono::milliseconds(200);
    kubelet_ = std::make_unique<Kubelet>(o, Dependencies{&clock_, runtime_.get(), volumes_.get(), recorder_.get(), &metrics_,
                                                         api_.get(), syncer_.get(), [this] { return nodes_->NodeUID(); }});
    kubelet_->Start();

    std::ofstream(dir_ / "kubeconfig") << "apiVersion: v1\nkind: Config\n"
                                       << "clusters:\n- name: fake\n  cluster:\n    server: " << apiserver_->url() << "\n"
                                       << "    certificate-authority-data: " << testing::Base64Encode(apiserver_->ca_pem()) << "\n"
                                       << "users:\n- name: admin\n  user:\n    token: test-token\n"
                                       << "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: admin\n"
                                       << "current-context: fake\n";
  }

  void TearDown() override {
    if (kubelet_) kubelet_->Stop();
    if (nodes_) nodes_->Stop();
    if (syncer_) syncer_->Stop();
    recorder_.reset();
    if (apiserver_) apiserver_->Stop();
    if (fake_) fake_->Stop();
    std::filesystem::remove_all(dir_);
  }

  // Runs kubectl with the test's kubeconfig; returns its exit code and combined output.
  std::pair<int, std::string> Kubectl(const std::string& args) {
    std::string cmd = "HOME=" + dir_.string() + " timeout 60 " + kubectl_ + " --kubeconfig=" + (dir_ / "kubeconfig").string() +
                      " --cache-dir=" + (dir_ / "cache").string() + " --request-timeout=20s " + args + " 2>&1";
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return {-1, "popen failed"};
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    int rc = ::pclose(p);
    return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
  }

  // Whether `want` appears in `out`, runs of spaces counting as one (column widths vary by kubectl version).
  static bool Has(const std::string& out, const std::string& want) {
    auto squeeze = [](const std::string& s) {
      std::string r;
      for (char c : s)
        if (!(c == ' ' && !r.empty() && r.back() == ' ')) r += c;
      return r;
    };
    return squeeze(out).find(squeeze(want)) != std::string::npos;
  }

  std::string kubectl_;
  std::filesystem::path dir_;
  RealClock clock_;
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
  std::unique_ptr<nodestatus::NodeStatusManager> nodes_;
  std::unique_ptr<Kubelet> kubelet_;
};

TEST_F(KubectlCompat, DescribeNodeGetPodsDescribePodAndDelete) {
  ASSERT_TRUE(WaitUntil([&] { return apiserver_->Get("leases", "kube-node-lease", "node1").has_value(); }));
  apiserver_->Create("pods", json::parse(R"({"metadata":{"name":"web","namespace":"default"},
    "spec":{"nodeName":"node1","terminationGracePeriodSeconds":2,"containers":[{"name":"c","image":"busybox:1.35",
      "resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}})"));
  ASSERT_TRUE(WaitUntil([&] {
    auto p = apiserver_->Get("pods", "default", "web");
    return p && p->contains("status") && (*p)["status"].value("phase", "") == "Running";
  }));
  recorder_->Flush();

  auto [rc, out] = Kubectl("describe node node1");
  ASSERT_EQ(rc, 0) << out;
  if (std::getenv("KUBECTL_COMPAT_SHOW")) std::cout << out;
  for (const char* want : {"Name:               node1", "node-role.kubernetes.io/worker=", "Taints:             dedicated=test:NoSchedule",
                           "Ready True", "KubeletReady kubelet is posting ready status",
                           "MemoryPressure   False", "InternalIP:  192.0.2.10", "Hostname:    node1",
                           "Kubelet Version:            v1.31.0", "Container Runtime Version:  fakeruntime://0.1.0",
                           "Operating System:           linux", "HolderIdentity:  node1", "Non-terminated Pods:",
                           "(1 in total)", "default                     web", "RegisteredNode",
                           "Node node1 status is now: NodeHasSufficientMemory",
                           "NodeHasNoDiskPressure", "NodeHasSufficientPID", "Node node1 status is now: NodeReady"})
    EXPECT_TRUE(Has(out, want)) << "missing \"" << want << "\" in:\n" << out;

  std::tie(rc, out) = Kubectl("get pod web -n default -o jsonpath={.status.phase}/{.status.podIP}/{.status.containerStatuses[0].ready}");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.rfind("Running/10.88.0.", 0), 0u) << out;
  EXPECT_TRUE(Has(out, "/true")) << out;

  std::tie(rc, out) = Kubectl("describe pod web -n default");
  ASSERT_EQ(rc, 0) << out;
  for (const char* want : {"Status:           Running", "Node:             node1/192.0.2.10", "IP:               10.88.0.",
                           "QoS Class:                   Burstable", "State:          Running", "Ready:          True",
                           "Restart Count:  0", "ContainersReady", "Started    ", "Created    "})
    EXPECT_TRUE(Has(out, want)) << "missing \"" << want << "\" in:\n" << out;

  // kubectl delete waits until the pod is gone: the kubelet stops it and deletes it with grace 0.
  std::tie(rc, out) = Kubectl("delete pod web -n default --timeout=40s");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(Has(out, "pod \"web\" deleted")) << out;
  EXPECT_FALSE(apiserver_->Get("pods", "default", "web").has_value());
  EXPECT_TRUE(WaitUntil([&] { return fake_->Sandboxes().empty(); }));
}

}  // namespace
}  // namespace kubelet

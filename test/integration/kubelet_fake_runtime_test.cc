// The kubelet's sync loop, pod workers, PLEG and runtime manager against the
// fake CRI runtime over real gRPC: fast, deterministic checks of behaviour
// that would take minutes on containerd.
#include <gtest/gtest.h>

#include "common/test_util.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include "../fake/fake_runtime.h"
#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/server/server.h"

#include <curl/curl.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <atomic>

namespace kubelet {
namespace {

using testing::FakeRuntime;
namespace rt = ::runtime::v1;

using kubelet::testing::WaitUntil;

class KubeletFakeRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kfr-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "root/pods");
    fake_ = std::make_unique<FakeRuntime>((dir_ / "cri.sock").string());
    ASSERT_TRUE(fake_->Start());
    fake_->AddImage("busybox:1.35");
    cri::RemoteOptions ro;
    ro.runtime_endpoint = fake_->endpoint();
    ro.timeout = std::chrono::seconds(5);
    ro.metrics = &metrics_;
    remote_ = cri::NewRemoteRuntime(ro);
    volumes_ = volumemanager::NewVolumeManager((dir_ / "root/pods").string());
    kuberuntime::RuntimeManagerOptions rmo;
    rmo.pod_logs_dir = (dir_ / "logs").string();
    rmo.pods_dir = (dir_ / "root/pods").string();
    rmo.cluster_domain = "cluster.local";
    runtime_ = kuberuntime::NewRuntimeManager({remote_.get(), remote_.get(), volumes_.get(), &recorder_, &metrics_, &clock_}, rmo);
    ASSERT_TRUE(runtime_->Version().ok());
  }

  void TearDown() override {
    if (kubelet_) kubelet_->Stop();
    kubelet_.reset();
    fake_->Stop();
    std::filesystem::remove_all(dir_);
  }

  // Declared after the locals a fake exec handler captures: stops the kubelet (its probes and hooks) when the test
  // body ends, before those locals go, so no probe runs the handler on a dead frame before TearDown.
  struct StopKubeletAtExit {
    KubeletFakeRuntimeTest* t;
    ~StopKubeletAtExit() {
      if (t->kubelet_) t->kubelet_->Stop();
      t->kubelet_.reset();
    }
  };

  void StartKubelet() {
    KubeletOptions o;
    o.node_name = "node1";
    o.node_ip = "192.0.2.10";
    o.root_dir = (dir_ / "root").string();
    o.config.pod_logs_dir = (dir_ / "logs").string();
    o.config.sync_frequency = std::chrono::seconds(2);
    o.pleg_period = std::chrono::milliseconds(100);
    o.housekeeping_period = std::chrono::milliseconds(200);
    o.worker_backoff = std::chrono::milliseconds(200);
    o.gc_period = gc_period_;
    kubelet_ = std::make_unique<Kubelet>(o, Dependencies{&clock_, runtime_.get(), volumes_.get(), &recorder_, &metrics_});
    kubelet_->pod_config().AddSource(api::kSourceFile);
    kubelet_->Start();
  }

  // A kubelet whose node has this much allocatable (admission checks it), without the file source.
  void StartKubeletWithAllocatable(int64_t milli_cpu, int64_t memory) {
    KubeletOptions o;
    o.node_name = "node1";
    o.root_dir = (dir_ / "root").string();
    o.config.pod_logs_dir = (dir_ / "logs").string();
    o.allocatable_milli_cpu = milli_cpu;
    o.allocatable_memory = memory;
    o.pleg_period = std::chrono::milliseconds(100);
    o.housekeeping_period = std::chrono::milliseconds(200);
    kubelet_ = std::make_unique<Kubelet>(o, Dependencies{&clock_, runtime_.get(), volumes_.get(), &recorder_, &metrics_});
    kubelet_->Start();
  }

  api::Pod StaticPod(const std::string& name, const std::string& image = "busybox:1.35", const std::string& restart = "Always",
                     int containers = 1) {
    nlohmann::json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}}}};
    j["spec"]["restartPolicy"] = restart;
    j["spec"]["terminationGracePeriodSeconds"] = 1;
    for (int i = 0; i < containers; ++i)
      j["spec"]["containers"].push_back({{"name", "c" + std::to_string(i)}, {"image", image}, {"command", {"sleep", "3600"}}});
    auto pod = config::PrepareStaticPod(j, "/manifests/" + name + ".yaml", true, "node1");
    EXPECT_TRUE(pod.ok()) << pod.status();
    return *pod;
  }

  // A pod from the API server (not critical: no static source, no priority unless given).
  api::Pod APIPod(const std::string& name, std::optional<int32_t> priority = std::nullopt) {
    api::Pod pod = StaticPod(name);
    pod.metadata.name = name;
    pod.metadata.uid = "api-" + name;
    pod.metadata.annotations[api::kConfigSourceAnnotation] = api::kSourceAPI;
    pod.spec.priority = priority;
    return pod;
  }

  std::optional<api::Pod> Find(const std::string& name) {
    for (auto& p : kubelet_->GetPods())
      if (p.metadata.name == name) return p;
    return std::nullopt;
  }

  std::vector<rt::Container> RunningContainers() {
    std::vector<rt::Container> out;
    for (auto& c : fake_->Containers())
      if (c.state() == rt::CONTAINER_RUNNING) out.push_back(c);
    return out;
  }

  bool IsRunning(const std::string& name, int restarts = -1) {
    auto p = Find(name);
    if (!p || p->status.phase != "Running" || p->status.container_statuses.empty()) return false;
    for (const auto& c : p->status.container_statuses)
      if (!c.state.running || (restarts >= 0 && c.restart_count != restarts)) return false;
    return true;
  }

  Duration gc_period_ = std::chrono::minutes(1);
  std::filesystem::path dir_;
  FakeClock clock_{std::chrono::system_clock::now()};
  metrics::KubeletMetrics metrics_;
  events::LoggingRecorder recorder_;
  std::unique_ptr<FakeRuntime> fake_;
  std::unique_ptr<cri::RemoteRuntime> remote_;
  std::unique_ptr<volumemanager::VolumeManager> volumes_;
  std::unique_ptr<kuberuntime::RuntimeManager> runtime_;
  std::unique_ptr<Kubelet> kubelet_;
};

TEST_F(KubeletFakeRuntimeTest, RunsAStaticPodWithUpstreamLabels) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("web", "busybox:1.35", "Always", 2)});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("web-node1", 0); }));
  auto pod = *Find("web-node1");
  EXPECT_EQ(pod.status.pod_ip.rfind("10.88.0.", 0), 0u);
  EXPECT_EQ(pod.status.host_ip, "192.0.2.10");
  ASSERT_EQ(fake_->Sandboxes().size(), 1u);
  auto sb = fake_->Sandboxes()[0];
  EXPECT_EQ(sb.labels().at("io.kubernetes.pod.name"), "web-node1");
  EXPECT_EQ(sb.labels().at("io.kubernetes.pod.namespace"), "default");
  EXPECT_EQ(sb.labels().at("io.kubernetes.pod.uid"), pod.metadata.uid);
  auto cs = RunningContainers();
  ASSERT_EQ(cs.size(), 2u);
  for (const auto& c : cs) {
    EXPECT_EQ(c.labels().at("io.kubernetes.pod.uid"), pod.metadata.uid);
    EXPECT_EQ(c.labels().at("io.kubernetes.container.name"), c.metadata().name());
    EXPECT_EQ(c.annotations().at("io.kubernetes.container.restartCount"), "0");
    EXPECT_FALSE(c.annotations().at("io.kubernetes.container.hash").empty());
  }
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 1);
  // Steady state: further syncs change nothing.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 1);
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 2);
}

TEST_F(KubeletFakeRuntimeTest, RestartsAnExitedContainerThenBacksOff) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("crash")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("crash-node1", 0); }));
  ASSERT_TRUE(fake_->ExitContainer(RunningContainers().at(0).id(), 1));
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("crash-node1", 1); }));  // first restart is immediate
  ASSERT_TRUE(fake_->ExitContainer(RunningContainers().at(0).id(), 1));
  ASSERT_TRUE(WaitUntil([&] {
    auto p = Find("crash-node1");
    return p && p->status.container_statuses[0].state.waiting &&
           p->status.container_statuses[0].state.waiting->reason == "CrashLoopBackOff";
  }));
  auto p = *Find("crash-node1");
  EXPECT_NE(p.status.container_statuses[0].state.waiting->message.find("back-off 10s"), std::string::npos);
  ASSERT_TRUE(p.status.container_statuses[0].last_termination_state.terminated);
  EXPECT_EQ(p.status.container_statuses[0].last_termination_state.terminated->exit_code, 1);
  int creates = fake_->CallCount("CreateContainer");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // several syncs, all inside the back-off
  EXPECT_EQ(fake_->CallCount("CreateContainer"), creates);
  clock_.Step(std::chrono::seconds(15));
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("crash-node1", 2); }));
}

TEST_F(KubeletFakeRuntimeTest, RuntimeErrorMidSyncIsRetried) {
  fake_->InjectError("CreateContainer", grpc::UNAVAILABLE, 2);
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("flaky")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("flaky-node1", 0); }));
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 3);
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 1);  // the sandbox made before the error is reused
  EXPECT_NE(metrics_.Serialize().find("kubelet_runtime_operations_errors_total{operation_type=\"create_container\"} 2"),
            std::string::npos);
}

TEST_F(KubeletFakeRuntimeTest, SandboxFailureIsReportedAndRetried) {
  fake_->InjectError("RunPodSandbox", grpc::UNKNOWN, 1);
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("sb")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("sb-node1", 0); }));
  bool saw = false;
  for (const auto& e : recorder_.Recent()) saw |= e.reason == "FailedCreatePodSandBox";
  EXPECT_TRUE(saw);
}

TEST_F(KubeletFakeRuntimeTest, RuntimeRestartKeepsPodsRunning) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("a"), StaticPod("b")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("a-node1", 0) && IsRunning("b-node1", 0); }));
  auto before = RunningContainers();
  fake_->Stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // PLEG relists fail meanwhile
  ASSERT_TRUE(fake_->Start());
  fake_->ResetCalls();
  ASSERT_TRUE(WaitUntil([&] { return fake_->CallCount("ListContainers") > 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto after = RunningContainers();
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(fake_->CallCount("RunPodSandbox"), 0);
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 0);
  EXPECT_TRUE(IsRunning("a-node1", 0));
}

TEST_F(KubeletFakeRuntimeTest, RemovedPodIsStoppedAndRemoved) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("keep"), StaticPod("gone")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("keep-node1") && IsRunning("gone-node1"); }));
  auto gone_uid = Find("gone-node1")->metadata.uid;
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("keep")});
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& s : fake_->Sandboxes())
      if (s.metadata().uid() == gone_uid) return false;
    for (const auto& c : fake_->Containers())
      if (c.labels().at("io.kubernetes.pod.uid") == gone_uid) return false;
    return true;
  }));
  EXPECT_FALSE(Find("gone-node1"));
  EXPECT_TRUE(IsRunning("keep-node1"));
  EXPECT_GE(fake_->CallCount("StopContainer"), 1);
  // The pod's folder goes once the pod is fully terminated, which follows the removal of its sandbox.
  EXPECT_TRUE(WaitUntil([&] { return !std::filesystem::exists(dir_ / "root/pods" / gone_uid); }));
}

TEST_F(KubeletFakeRuntimeTest, PodReaddedWhileTerminatingRunsAgain) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("back")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("back-node1"); }));
  fake_->SetDelay("StopContainer", std::chrono::milliseconds(300));
  kubelet_->OnSnapshot(api::kSourceFile, {});
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("back")});  // same manifest, same UID, back at once
  ASSERT_TRUE(WaitUntil([&] { return fake_->CallCount("StopContainer") >= 1; }));
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("back-node1") && RunningContainers().size() == 1; }));
  EXPECT_NE(metrics_.Serialize().find("kubelet_restarted_pods_total{static=\"true\"} 1"), std::string::npos);
}

TEST_F(KubeletFakeRuntimeTest, KubeletRestartAdoptsRunningPods) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("adopt")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("adopt-node1", 0); }));
  std::string id = RunningContainers().at(0).id();
  kubelet_->Stop();
  kubelet_.reset();
  fake_->ResetCalls();
  StartKubelet();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the source has not spoken yet: nothing is killed
  EXPECT_EQ(fake_->CallCount("StopContainer"), 0);
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("adopt")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("adopt-node1", 0); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(RunningContainers().size(), 1u);
  EXPECT_EQ(RunningContainers()[0].id(), id);
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 0);
  EXPECT_EQ(fake_->CallCount("StopContainer"), 0);
}

TEST_F(KubeletFakeRuntimeTest, EditedManifestReplacesThePod) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("web")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("web-node1"); }));
  auto old_uid = Find("web-node1")->metadata.uid;
  fake_->AddImage("busybox:1.36");
  // The old instance takes a while to stop; the new one must not start before it is gone.
  fake_->SetDelay("StopContainer", std::chrono::milliseconds(500));
  std::atomic<int> overlaps{0};
  fake_->SetOnStart([&](const std::string&) {
    for (const auto& c : fake_->Containers())
      if (c.labels().at("io.kubernetes.pod.uid") == old_uid && c.state() == rt::CONTAINER_RUNNING) overlaps++;
  });
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("web", "busybox:1.36")});
  ASSERT_TRUE(WaitUntil([&] {
    auto p = Find("web-node1");
    if (!p || p->metadata.uid == old_uid || !IsRunning("web-node1")) return false;
    auto cs = RunningContainers();
    return cs.size() == 1 && cs[0].labels().at("io.kubernetes.pod.uid") == p->metadata.uid;
  }));
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().size() == 1; }));
  EXPECT_EQ(overlaps.load(), 0) << "two instances of one static pod ran at once";
  fake_->SetOnStart(nullptr);
}

TEST_F(KubeletFakeRuntimeTest, OrphanedRuntimePodsAreCleanedUpOnceSourcesAreReady) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("orphan")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("orphan-node1"); }));
  kubelet_->Stop();
  kubelet_.reset();
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {});  // the manifest went away while the kubelet was down
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().empty() && fake_->Containers().empty(); }));
}

TEST_F(KubeletFakeRuntimeTest, ImageErrorsShowUpstreamReasons) {
  StartKubelet();
  auto never = StaticPod("never", "missing:1");
  never.spec.containers[0].image_pull_policy = "Never";
  kubelet_->OnSnapshot(api::kSourceFile, {never, StaticPod("pull", "absent:2")});
  auto reason = [&](const std::string& name) -> std::string {
    auto p = Find(name);
    if (!p || p->status.container_statuses.empty() || !p->status.container_statuses[0].state.waiting) return "";
    return p->status.container_statuses[0].state.waiting->reason;
  };
  ASSERT_TRUE(WaitUntil([&] { return reason("never-node1") == "ErrImageNeverPull"; }));
  ASSERT_TRUE(WaitUntil([&] {
    std::string r = reason("pull-node1");
    return r == "ErrImagePull" || r == "ImagePullBackOff";
  }));
  EXPECT_EQ(Find("pull-node1")->status.phase, "Pending");
}

TEST_F(KubeletFakeRuntimeTest, CompletedPodWithRestartNeverSucceedsAndStops) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("job", "busybox:1.35", "Never")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("job-node1"); }));
  ASSERT_TRUE(fake_->ExitContainer(RunningContainers().at(0).id(), 0));
  ASSERT_TRUE(WaitUntil([&] {
    auto p = Find("job-node1");
    return p && p->status.phase == "Succeeded";
  }));
  ASSERT_TRUE(WaitUntil([&] {
    auto s = fake_->Sandboxes();
    return s.size() == 1 && s[0].state() == rt::SANDBOX_NOTREADY;
  }));
  EXPECT_EQ(fake_->CallCount("CreateContainer"), 1);
}

TEST_F(KubeletFakeRuntimeTest, PodsThatDoNotFitAreRejected) {
  StartKubeletWithAllocatable(2000, 1LL << 30);
  auto big = StaticPod("big");
  big.spec.containers[0].resources.requests = {{"cpu", "1500m"}, {"memory", "100Mi"}};
  // API pods: a static pod is critical, and one that does not fit preempts instead (CriticalPodPreemptsLowerPods).
  auto second = APIPod("second-node1");
  second.spec.containers[0].resources.requests = {{"cpu", "600m"}};
  auto hungry = APIPod("hungry-node1");
  hungry.spec.containers[0].resources.limits = {{"memory", "2Gi"}};  // requests default to limits
  kubelet_->OnSnapshot(api::kSourceFile, {big});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("big-node1"); }));
  kubelet_->OnSnapshot(api::kSourceAPI, {second, hungry});
  std::map<std::string, std::string> rejected;
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& e : recorder_.Recent())
      if (e.reason == "OutOfcpu" || e.reason == "OutOfmemory") rejected[e.object] = e.reason + ": " + e.message;
    return rejected.size() == 2;
  }));
  EXPECT_EQ(rejected["default/second-node1"],
            "OutOfcpu: Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000");
  EXPECT_EQ(rejected["default/hungry-node1"].rfind("OutOfmemory: Node didn't have enough resource: memory", 0), 0u);
  EXPECT_EQ(fake_->Sandboxes().size(), 1u);
  // /pods lists a refused pod with its Failed status while its manifest stays, housekeeping passes included.
  std::this_thread::sleep_for(std::chrono::seconds(1));  // five housekeeping periods
  auto refused = Find("second-node1");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status.phase, "Failed");
  EXPECT_EQ(refused->status.reason, "OutOfcpu");
  EXPECT_EQ(refused->status.message, "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000");
  kubelet_->OnSnapshot(api::kSourceAPI, {hungry});
  ASSERT_TRUE(WaitUntil([&] { return !Find("second-node1"); }));
  EXPECT_TRUE(Find("hungry-node1"));
  EXPECT_TRUE(IsRunning("big-node1"));
}

TEST_F(KubeletFakeRuntimeTest, MaxPodsRejectsExtraPods) {
  KubeletOptions o;
  StartKubelet();
  kubelet_->Stop();
  kubelet_.reset();
  o.node_name = "node1";
  o.root_dir = (dir_ / "root").string();
  o.config.pod_logs_dir = (dir_ / "logs").string();
  o.config.max_pods = 1;
  o.pleg_period = std::chrono::milliseconds(100);
  o.housekeeping_period = std::chrono::milliseconds(200);
  kubelet_ = std::make_unique<Kubelet>(o, Dependencies{&clock_, runtime_.get(), volumes_.get(), &recorder_, &metrics_});
  kubelet_->Start();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("one")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("one-node1"); }));
  kubelet_->OnSnapshot(api::kSourceAPI, {APIPod("two-node1")});
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& e : recorder_.Recent())
      if (e.reason == "OutOfpods") return true;
    return false;
  }));
  EXPECT_EQ(fake_->Sandboxes().size(), 1u);
}

// Critical pod admission (upstream's CriticalPodAdmissionHandler): a static pod that does not fit preempts the
// fewest lower pods that free what it lacks, burstable before guaranteed; preempted pods end Failed / Preempting
// with a DisruptionTarget condition; when no set of pods frees enough, UnexpectedAdmissionError as upstream.
TEST_F(KubeletFakeRuntimeTest, CriticalPodPreemptsLowerPods) {
  StartKubeletWithAllocatable(2000, 1LL << 30);
  auto best_effort = APIPod("be");
  auto burstable = APIPod("burst");
  burstable.spec.containers[0].resources.requests = {{"cpu", "1200m"}};
  auto guaranteed = APIPod("guar");
  guaranteed.spec.containers[0].resources.limits = {{"cpu", "500m"}, {"memory", "100Mi"}};
  guaranteed.spec.containers[0].resources.requests = {{"cpu", "500m"}, {"memory", "100Mi"}};
  auto critical_api = APIPod("cluster-critical", 2000000000);  // system-cluster-critical: not preempted by a static pod
  kubelet_->OnSnapshot(api::kSourceAPI, {best_effort, burstable, guaranteed, critical_api});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("be") && IsRunning("burst") && IsRunning("guar") && IsRunning("cluster-critical"); }));
  // 1000m more than the 300m left: the burstable pod's 1200m suffice, the guaranteed one stays.
  auto critical = StaticPod("critical");
  critical.spec.containers[0].resources.requests = {{"cpu", "1000m"}};
  kubelet_->OnSnapshot(api::kSourceFile, {critical});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("critical-node1"); }));
  ASSERT_TRUE(WaitUntil([&] {
    auto p = Find("burst");
    return p && p->status.phase == "Failed";
  }));
  auto preempted = Find("burst");
  EXPECT_EQ(preempted->status.reason, "Preempting");
  EXPECT_EQ(preempted->status.message, "Preempted in order to admit critical pod");
  bool disruption = false;
  for (const auto& c : preempted->status.conditions)
    if (c.type == "DisruptionTarget" && c.status == "True" && c.reason == "TerminationByKubelet" &&
        c.message == "Pod was preempted by Kubelet to accommodate a critical pod.")
      disruption = true;
  EXPECT_TRUE(disruption);
  bool event = false;
  for (const auto& e : recorder_.Recent())
    if (e.object == "default/burst" && e.reason == "Preempting" && e.message == "Preempted in order to admit critical pod") event = true;
  EXPECT_TRUE(event);
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& s : fake_->Sandboxes())
      if (s.metadata().uid() == "api-burst" && s.state() == rt::SANDBOX_READY) return false;
    return true;
  }));
  EXPECT_TRUE(IsRunning("be"));
  EXPECT_TRUE(IsRunning("guar"));
  EXPECT_TRUE(IsRunning("cluster-critical"));
  EXPECT_NE(metrics_.Serialize().find("kubelet_preemptions{preemption_signal=\"cpu\"} 1"), std::string::npos);
  // Nothing preemptable frees 5 CPUs (be 0 + guar 500m of the 4500m it lacks): refused as upstream refuses it.
  auto huge = StaticPod("huge");
  huge.spec.containers[0].resources.requests = {{"cpu", "5"}};
  kubelet_->OnSnapshot(api::kSourceFile, {critical, huge});
  std::string message;
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& e : recorder_.Recent())
      if (e.object == "default/huge-node1" && e.reason == "UnexpectedAdmissionError") message = e.message;
    return !message.empty();
  }));
  EXPECT_EQ(message, "Unexpected error while attempting to recover from admission failure: preemption: error finding a set of "
                     "pods to preempt: no set of running pods found to reclaim resources: [(res: cpu, q: 4000), ]");
  EXPECT_TRUE(IsRunning("be"));
  EXPECT_TRUE(IsRunning("guar"));
}

TEST_F(KubeletFakeRuntimeTest, GarbageCollectKeepsOnlyTheNewestDeadContainer) {
  gc_period_ = std::chrono::milliseconds(300);
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("gc")});
  for (int restarts = 1; restarts <= 2; ++restarts) {
    ASSERT_TRUE(WaitUntil([&] { return IsRunning("gc-node1", restarts - 1); }));
    ASSERT_TRUE(fake_->ExitContainer(RunningContainers().at(0).id(), 1));
    clock_.Step(std::chrono::minutes(6));  // past any back-off
    ASSERT_TRUE(WaitUntil([&] { return IsRunning("gc-node1", restarts); }));
  }
  // Two dead instances existed; GC keeps the newest one beside the running one.
  ASSERT_TRUE(WaitUntil([&] { return fake_->Containers().size() == 2; }));
  EXPECT_EQ(RunningContainers().size(), 1u);
  auto p = *Find("gc-node1");
  EXPECT_TRUE(p.status.container_statuses[0].last_termination_state.terminated.has_value());
}

size_t CurlAppend(char* d, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(d, s * n);
  return s * n;
}

std::pair<long, std::string> HttpsGet(int port, const std::string& path, const std::string& method = "") {
  std::string body;
  long code = 0;
  CURL* c = curl_easy_init();
  if (!method.empty()) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  std::string url = "https://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CurlAppend);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  return {code, body};
}

TEST_F(KubeletFakeRuntimeTest, ServerAuthenticatesAndServesPods) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("srv")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("srv-node1"); }));
  auto serve = [&](const std::string& authn, const std::string& mode) {
    server::KubeletServerOptions so;
    so.cert_dir = (dir_ / "pki").string();
    so.node_name = "node1";
    so.config.address = "127.0.0.1";
    so.config.port = 0;
    so.config.healthz_port = 0;
    if (!authn.empty()) so.config.authentication = nlohmann::json::parse(authn);
    if (!mode.empty()) so.config.authorization = {{"mode", mode}};
    return std::make_unique<server::KubeletServer>(kubelet_.get(), runtime_.get(), &metrics_, so);
  };
  // Upstream defaults: anonymous off, webhook authorization: no credentials, no entry.
  auto defaults = serve("", "");
  ASSERT_TRUE(defaults->Start().ok());
  EXPECT_EQ(HttpsGet(defaults->port(), "/pods").first, 401);
  defaults->Stop();
  auto webhook = serve(R"({"anonymous":{"enabled":true}})", "Webhook");
  ASSERT_TRUE(webhook->Start().ok());
  auto denied = HttpsGet(webhook->port(), "/metrics");
  EXPECT_EQ(denied.first, 403);
  EXPECT_EQ(denied.second, "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource(s)=[metrics])");
  webhook->Stop();
  auto open = serve(R"({"anonymous":{"enabled":true}})", "AlwaysAllow");
  ASSERT_TRUE(open->Start().ok());
  auto pods = HttpsGet(open->port(), "/pods");
  ASSERT_EQ(pods.first, 200);
  auto list = nlohmann::json::parse(pods.second);
  EXPECT_EQ(list["kind"], "PodList");
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["status"]["phase"], "Running");
  EXPECT_EQ(HttpsGet(open->port(), "/healthz").second, "ok");
  auto running = nlohmann::json::parse(HttpsGet(open->port(), "/runningpods/").second);
  EXPECT_EQ(running["items"][0]["metadata"]["name"], "srv-node1");
  EXPECT_EQ(HttpsGet(open->port(), "/nope").first, 404);
  auto configz = HttpsGet(open->port(), "/configz");
  ASSERT_EQ(configz.first, 200);
  auto cz = nlohmann::json::parse(configz.second);
  EXPECT_EQ(cz["kubeletconfig"]["address"], "127.0.0.1");
  EXPECT_EQ(cz["kubeletconfig"]["authorization"]["mode"], "AlwaysAllow");
  // Made-up methods create no metric series of their own (issue 10): they count as "other".
  for (int i = 0; i < 20; ++i) EXPECT_EQ(HttpsGet(open->port(), "/pods", "BREW" + std::to_string(i)).first, 405);
  auto metrics = HttpsGet(open->port(), "/metrics");
  ASSERT_EQ(metrics.first, 200);
  EXPECT_EQ(metrics.second.find("BREW"), std::string::npos);
  EXPECT_NE(metrics.second.find("method=\"other\""), std::string::npos);
  open->Stop();
}

}  // namespace
}  // namespace kubelet

namespace kubelet {
namespace {

class LifecycleTest : public KubeletFakeRuntimeTest {
 protected:
  api::Pod Pod(const std::string& name, nlohmann::json spec) {
    nlohmann::json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}}}, {"spec", spec}};
    j["spec"]["terminationGracePeriodSeconds"] = 1;
    auto pod = config::PrepareStaticPod(j, "/manifests/" + name + ".yaml", true, "node1");
    EXPECT_TRUE(pod.ok()) << pod.status();
    return *pod;
  }
  std::vector<events::Event> EventsWith(const std::string& reason) {
    std::vector<events::Event> out;
    for (const auto& e : recorder_.Recent())
      if (e.reason == reason) out.push_back(e);
    return out;
  }
};

TEST_F(LifecycleTest, InitContainerThenSidecarThenMainAndSidecarStopsLast) {
  fake_->SetExitOnStart("setup", 0);
  std::mutex mu;
  std::vector<std::string> started, stopped;
  fake_->SetOnStart([&](const std::string& id) {
    auto cfg = fake_->ConfigOf(id);
    std::lock_guard<std::mutex> l(mu);
    started.push_back(cfg ? cfg->metadata().name() : "?");
  });
  fake_->SetOnStop([&](const std::string& name) {
    std::lock_guard<std::mutex> l(mu);
    stopped.push_back(name);
  });
  StartKubelet();
  auto pod = Pod("layered", nlohmann::json::parse(R"({
    "initContainers": [{"name": "setup", "image": "busybox:1.35"},
                       {"name": "proxy", "image": "busybox:1.35", "restartPolicy": "Always"}],
    "containers": [{"name": "app", "image": "busybox:1.35"}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("layered-node1", 0); }));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(started, (std::vector<std::string>{"setup", "proxy", "app"}));
  }
  auto p = *Find("layered-node1");
  ASSERT_EQ(p.status.init_container_statuses.size(), 2u);
  EXPECT_EQ(p.status.init_container_statuses[0].state.terminated->reason, "Completed");
  EXPECT_TRUE(p.status.init_container_statuses[0].ready);
  EXPECT_TRUE(p.status.init_container_statuses[1].state.running.has_value());
  EXPECT_TRUE(p.status.init_container_statuses[1].ready);
  for (const auto& c : p.status.conditions)
    if (c.type == "Initialized" || c.type == "Ready") EXPECT_EQ(c.status, "True") << c.type;
  // The sidecar that crashes is restarted; the completed init container is not run again.
  for (const auto& c : RunningContainers())
    if (c.metadata().name() == "proxy") fake_->ExitContainer(c.id(), 1);
  ASSERT_TRUE(WaitUntil([&] {
    auto q = Find("layered-node1");
    return q && q->status.init_container_statuses.size() == 2 && q->status.init_container_statuses[1].restart_count == 1 &&
           q->status.init_container_statuses[1].state.running;
  }));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(std::count(started.begin(), started.end(), "setup"), 1);
  }
  // Removal stops the main container before the sidecar.
  kubelet_->OnSnapshot(api::kSourceFile, {});
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().empty(); }));
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(stopped, (std::vector<std::string>{"app", "proxy"}));
}

TEST_F(LifecycleTest, FailedInitContainerWithRestartNeverFailsThePod) {
  fake_->SetExitOnStart("setup", 3);
  StartKubelet();
  auto pod = Pod("broken-init", nlohmann::json::parse(R"({"restartPolicy": "Never",
    "initContainers": [{"name": "setup", "image": "busybox:1.35"}],
    "containers": [{"name": "app", "image": "busybox:1.35"}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] {
    auto p = Find("broken-init-node1");
    return p && p->status.phase == "Failed";
  }));
  auto p = *Find("broken-init-node1");
  EXPECT_EQ(p.status.init_container_statuses[0].state.terminated->exit_code, 3);
  EXPECT_EQ(p.status.init_container_statuses[0].state.terminated->reason, "Error");
  EXPECT_EQ(p.status.container_statuses[0].state.waiting->reason, "PodInitializing");
  for (const auto& c : fake_->Containers()) EXPECT_NE(c.metadata().name(), "app") << "the main container must never start";
}

TEST_F(LifecycleTest, LivenessFailureRestartsTheContainer) {
  std::atomic<bool> healthy{true};
  std::atomic<int> probes{0};
  StopKubeletAtExit stop_at_exit{this};
  fake_->SetExec([&](const std::string& name, const std::vector<std::string>& cmd) {
    if (name == "app" && cmd == std::vector<std::string>{"check"}) {
      ++probes;
      return healthy ? std::make_pair(0, std::string("ok")) : std::make_pair(1, std::string("not healthy"));
    }
    return std::make_pair(127, std::string("unknown command"));
  });
  StartKubelet();
  auto pod = Pod("lively", nlohmann::json::parse(R"({"containers": [{"name": "app", "image": "busybox:1.35",
    "livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 2}}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("lively-node1", 0) && probes > 0; }));
  healthy = false;
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("lively-node1", 1); }, std::chrono::milliseconds(30000)));
  healthy = true;
  bool unhealthy = false, killing = false;
  for (const auto& e : EventsWith("Unhealthy")) unhealthy |= e.message == "Liveness probe failed: not healthy";
  for (const auto& e : EventsWith("Killing")) killing |= e.message.find("app") != std::string::npos;
  EXPECT_TRUE(unhealthy);
  EXPECT_TRUE(killing);
  prometheus::TextSerializer ser;
  std::string text = ser.Serialize(kubelet_->probes().registry().Collect());
  EXPECT_NE(text.find("prober_probe_total{"), std::string::npos);
  EXPECT_NE(text.find("result=\"failed\""), std::string::npos) << text;
  EXPECT_NE(text.find("probe_type=\"Liveness\""), std::string::npos) << text;
}

TEST_F(LifecycleTest, ReadinessProbeGatesReady) {
  std::atomic<bool> ready{false};
  StopKubeletAtExit stop_at_exit{this};
  fake_->SetExec([&](const std::string&, const std::vector<std::string>&) {
    return ready ? std::make_pair(0, std::string()) : std::make_pair(1, std::string("warming up"));
  });
  StartKubelet();
  auto pod = Pod("shy", nlohmann::json::parse(R"({"containers": [{"name": "app", "image": "busybox:1.35",
    "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1}}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  auto cond = [&](const char* type) {
    auto p = Find("shy-node1");
    if (!p) return std::string();
    for (const auto& c : p->status.conditions)
      if (c.type == type) return c.status + "/" + c.reason + "/" + c.message;
    return std::string();
  };
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("shy-node1", 0) && !EventsWith("Unhealthy").empty(); }));
  EXPECT_EQ(cond("Ready"), "False/ContainersNotReady/containers with unready status: [app]");
  EXPECT_FALSE(Find("shy-node1")->status.container_statuses[0].ready);
  ready = true;
  ASSERT_TRUE(WaitUntil([&] { return cond("Ready") == "True//"; }));
  EXPECT_TRUE(Find("shy-node1")->status.container_statuses[0].ready);
  EXPECT_EQ(Find("shy-node1")->status.container_statuses[0].restart_count, 0);  // readiness never restarts
}

}  // namespace
}  // namespace kubelet

namespace kubelet {
namespace {

TEST_F(LifecycleTest, PreStopRunsBeforeTheStopAndPostStartFailureRestarts) {
  std::mutex mu;
  std::vector<std::string> log;
  std::atomic<bool> post_start_ok{true};
  StopKubeletAtExit stop_at_exit{this};
  fake_->SetExec([&](const std::string& name, const std::vector<std::string>& cmd) {
    std::lock_guard<std::mutex> l(mu);
    log.push_back("exec " + name + " " + cmd[0]);
    if (cmd[0] == "poststart") return post_start_ok ? std::make_pair(0, std::string()) : std::make_pair(2, std::string("no config"));
    return std::make_pair(0, std::string());
  });
  fake_->SetOnStop([&](const std::string& name) {
    std::lock_guard<std::mutex> l(mu);
    log.push_back("stop " + name);
  });
  StartKubelet();
  auto pod = Pod("hooked", nlohmann::json::parse(R"({"containers": [{"name": "app", "image": "busybox:1.35",
    "lifecycle": {"postStart": {"exec": {"command": ["poststart"]}}, "preStop": {"exec": {"command": ["prestop"]}}}}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("hooked-node1", 0); }));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(log, (std::vector<std::string>{"exec app poststart"}));
    log.clear();
  }
  kubelet_->OnSnapshot(api::kSourceFile, {});
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().empty(); }));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(log, (std::vector<std::string>{"exec app prestop", "stop app"}));
    log.clear();
  }

  // A failing postStart hook kills the container (its preStop does not run) and it is started again.
  post_start_ok = false;
  auto again = Pod("hooked2", pod.raw["spec"]);
  kubelet_->OnSnapshot(api::kSourceFile, {again});
  ASSERT_TRUE(WaitUntil([&] { return !EventsWith("FailedPostStartHook").empty(); }));
  auto ev = EventsWith("FailedPostStartHook").front();
  EXPECT_EQ(ev.message,
            "Exec lifecycle hook ([poststart]) for Container \"app\" in Pod \"hooked2-node1_default(" + Find("hooked2-node1")->metadata.uid +
                ")\" failed - error: command 'poststart' exited with 2: , message: \"no config\"");
  post_start_ok = true;
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("hooked2-node1", 1); }, std::chrono::milliseconds(30000)));
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(std::count(log.begin(), log.end(), "exec app prestop"), 0);
}

}  // namespace
}  // namespace kubelet

namespace kubelet {
namespace {

TEST_F(LifecycleTest, ContainerLogsTerminationMessagesAndLogLinks) {
  StartKubelet();
  auto pod = Pod("talky", nlohmann::json::parse(R"({"containers": [
    {"name": "app", "image": "busybox:1.35"},
    {"name": "fallback", "image": "busybox:1.35", "terminationMessagePolicy": "FallbackToLogsOnError"}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("talky-node1", 0); }));
  std::string app_id, fb_id;
  for (const auto& c : RunningContainers()) (c.metadata().name() == "app" ? app_id : fb_id) = c.id();
  ASSERT_TRUE(fake_->WriteLog(app_id, "stdout", "one\ntwo\nthree"));
  ASSERT_TRUE(fake_->WriteLog(app_id, "stderr", "four"));

  server::KubeletServerOptions so;
  so.cert_dir = (dir_ / "pki").string();
  so.config.address = "127.0.0.1";
  so.config.port = 0;
  so.config.healthz_port = 0;
  so.config.authentication = {{"anonymous", {{"enabled", true}}}};
  so.config.authorization = {{"mode", "AlwaysAllow"}};
  server::KubeletServer srv(kubelet_.get(), runtime_.get(), &metrics_, so);
  ASSERT_TRUE(srv.Start().ok());
  std::string base = "/containerLogs/default/talky-node1/app";
  EXPECT_EQ(HttpsGet(srv.port(), base).second, "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(HttpsGet(srv.port(), base + "?tailLines=2").second, "three\nfour\n");
  EXPECT_EQ(HttpsGet(srv.port(), base + "?limitBytes=6").second, "one\ntw");
  auto ts = HttpsGet(srv.port(), base + "?timestamps=true&tailLines=1").second;
  ASSERT_GT(ts.size(), 6u);
  EXPECT_EQ(ts.substr(ts.size() - 6), " four\n") << ts;
  EXPECT_EQ(ts.substr(0, 2), "20") << ts;
  EXPECT_EQ(HttpsGet(srv.port(), "/containerLogs/default/talky-node1/nope").first, 404);
  EXPECT_EQ(HttpsGet(srv.port(), "/containerLogs/default/ghost/app").first, 404);
  auto prev = HttpsGet(srv.port(), base + "?previous=true");
  EXPECT_EQ(prev.first, 400);
  EXPECT_EQ(prev.second, "previous terminated container \"app\" in pod \"talky-node1\" not found");

  // The /var/log/containers-style link (beside podLogsDir here) points at the CRI log file.
  auto link = dir_ / "containers" / ("talky-node1_default_app-" + app_id + ".log");
  ASSERT_TRUE(std::filesystem::is_symlink(link)) << link;
  EXPECT_TRUE(std::filesystem::exists(link));

  // Termination messages: the file the container wrote, or the log's end with FallbackToLogsOnError.
  auto cfg = fake_->ConfigOf(app_id);
  ASSERT_TRUE(cfg.has_value());
  for (const auto& m : cfg->mounts())
    if (m.container_path() == "/dev/termination-log") std::ofstream(m.host_path()) << "bye from app";
  ASSERT_TRUE(fake_->WriteLog(fb_id, "stderr", "panic: no config"));
  fake_->ExitContainer(app_id, 0);
  fake_->ExitContainer(fb_id, 2);
  // Both restart once (a sanitizer build on a loaded machine can take a while to see both exits and restart both).
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("talky-node1", 1); }, std::chrono::milliseconds(60000)))
      << [&] {
           auto p = Find("talky-node1");
           std::string s;
           if (p)
             for (const auto& c : p->status.container_statuses)
               s += c.name + " running=" + std::to_string(c.state.running.has_value()) + " restarts=" + std::to_string(c.restart_count) + "; ";
           return s;
         }();
  auto p = *Find("talky-node1");
  for (const auto& c : p.status.container_statuses) {
    ASSERT_TRUE(c.last_termination_state.terminated.has_value()) << c.name;
    if (c.name == "app") EXPECT_EQ(c.last_termination_state.terminated->message, "bye from app");
    if (c.name == "fallback") EXPECT_EQ(c.last_termination_state.terminated->message, "panic: no config\n");
  }
  // The previous instance's logs are still there.
  EXPECT_EQ(HttpsGet(srv.port(), base + "?previous=true").second, "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(HttpsGet(srv.port(), base).second, "");
  srv.Stop();
  // Removing the pod removes its links.
  kubelet_->OnSnapshot(api::kSourceFile, {});
  ASSERT_TRUE(WaitUntil([&] { return fake_->Containers().empty(); }));
  EXPECT_FALSE(std::filesystem::is_symlink(link));
}

}  // namespace
}  // namespace kubelet

#include "kubelet/kuberuntime/log_manager.h"

namespace kubelet {
namespace {

TEST_F(LifecycleTest, LogsRotateBySizeKeepMaxFilesAndCompress) {
  StartKubelet();
  kubelet_->OnSnapshot(api::kSourceFile, {StaticPod("chatty")});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("chatty-node1", 0); }));
  std::string id = RunningContainers().at(0).id();
  std::string path;
  {
    auto st = remote_->ContainerStatus(id);
    ASSERT_TRUE(st.ok());
    path = st->log_path();
  }
  kuberuntime::LogRotationOptions lo;
  lo.max_size_bytes = 1024;
  lo.max_files = 3;
  FakeClock clock(std::chrono::system_clock::now());
  kuberuntime::ContainerLogManager m(remote_.get(), &clock, lo);
  std::string line(100, 'x');
  auto fill = [&] {
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(fake_->WriteLog(id, "stdout", line));
  };
  EXPECT_EQ(m.RotateOnce(), 0);  // nothing written yet
  auto rotated = [&] {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
      if (e.path().string() != path) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  };
  for (int round = 0; round < 4; ++round) {
    fill();
    EXPECT_EQ(m.RotateOnce(), 1) << "round " << round;
    EXPECT_EQ(std::filesystem::file_size(path), 0u);  // reopened by the runtime, empty
    clock.Step(std::chrono::seconds(1));
  }
  EXPECT_EQ(fake_->CallCount("ReopenContainerLog"), 4);
  // maxFiles 3: the live log and two rotated ones, the older compressed.
  auto files = rotated();
  ASSERT_EQ(files.size(), 2u) << ::testing::PrintToString(files);
  EXPECT_EQ(files[0].substr(files[0].size() - 3), ".gz");
  EXPECT_NE(files[1].substr(files[1].size() - 3), ".gz");
  // The newest rotated file holds the last round's lines, whole.
  auto p = std::filesystem::path(path).parent_path() / files[1];
  EXPECT_EQ(std::filesystem::file_size(p) > 12 * 100, true);
}

}  // namespace
}  // namespace kubelet

namespace kubelet {
namespace {

TEST_F(LifecycleTest, HostsFileHasTheFQDNAndHostAliases) {
  StartKubelet();
  auto pod = Pod("named", nlohmann::json::parse(R"({"hostname": "web", "subdomain": "front",
    "hostAliases": [{"ip": "192.0.2.50", "hostnames": ["db", "db.internal"]}],
    "containers": [{"name": "app", "image": "busybox:1.35"}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("named-node1", 0); }));
  auto p = *Find("named-node1");
  auto cfg = fake_->ConfigOf(RunningContainers().at(0).id());
  ASSERT_TRUE(cfg.has_value());
  std::string hosts;
  for (const auto& m : cfg->mounts())
    if (m.container_path() == "/etc/hosts") {
      std::ifstream in(m.host_path());
      hosts.assign(std::istreambuf_iterator<char>(in), {});
    }
  EXPECT_NE(hosts.find(p.status.pod_ip + "\tweb.front.default.svc.cluster.local\tweb\n"), std::string::npos) << hosts;
  EXPECT_NE(hosts.find("\n# Entries added by HostAliases.\n192.0.2.50\tdb\tdb.internal\n"), std::string::npos) << hosts;
}

}  // namespace
}  // namespace kubelet

// Issue 10: no pod holds back another. Each test holds some pods inside a
// runtime call (a preStop hook, a stop, a pull) on a gate that only the test
// opens, and checks that other pods' work completes while the gate is shut.
namespace kubelet {
namespace {

// A gate the fake runtime's handlers wait at; counts who is waiting.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
    --waiting_;
  }
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  int Waiting() {
    std::lock_guard<std::mutex> l(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

class HeadOfLineTest : public LifecycleTest {
 protected:
  void TearDown() override {
    gate_.Open();  // whatever happened, nothing stays blocked in the fake
    LifecycleTest::TearDown();
  }
  api::Pod Sleeper(const std::string& name, int64_t grace, const std::string& image = "busybox:1.35", bool pre_stop = false) {
    nlohmann::json c = {{"name", "app"}, {"image", image}, {"command", {"sleep", "3600"}}};
    if (pre_stop) c["lifecycle"]["preStop"]["exec"]["command"] = {"hold"};
    auto pod = Pod(name, {{"containers", {c}}});
    pod.spec.termination_grace_period_seconds = grace;
    pod.raw["spec"]["terminationGracePeriodSeconds"] = grace;
    return pod;
  }
  Gate gate_;
};

TEST_F(HeadOfLineTest, PodsInLongPreStopHooksDoNotDelayOtherPods) {
  // More pods in their preStop hooks than the old fixed pool of 16 pod worker threads had.
  constexpr int kHooked = 50;
  fake_->SetExec([&](const std::string&, const std::vector<std::string>& cmd) {
    if (!cmd.empty() && cmd[0] == "hold") gate_.Wait();
    return std::make_pair(0, std::string());
  });
  StartKubelet();
  std::vector<api::Pod> pods;
  for (int i = 0; i < kHooked; ++i) pods.push_back(Sleeper("hooked" + std::to_string(i), 60, "busybox:1.35", true));
  pods.push_back(Sleeper("victim", 60));
  kubelet_->OnSnapshot(api::kSourceFile, pods);
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().size() == kHooked + 1; }, std::chrono::seconds(30)));

  // Every hooked pod is removed and sits in its preStop hook; the victim is removed too, and a new pod arrives.
  kubelet_->OnSnapshot(api::kSourceFile, {Sleeper("fresh", 1)});
  ASSERT_TRUE(WaitUntil([&] { return gate_.Waiting() == kHooked; }, std::chrono::seconds(30))) << gate_.Waiting();
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("fresh-node1", 0); }, std::chrono::seconds(30)));
  auto victim_running = [&] {
    for (const auto& c : RunningContainers())
      if (c.labels().at("io.kubernetes.pod.name") == "victim-node1") return true;
    return false;
  };
  ASSERT_TRUE(WaitUntil([&] { return !victim_running(); }, std::chrono::seconds(30)));
  // All of that happened while every hook was still held.
  EXPECT_EQ(gate_.Waiting(), kHooked);
  gate_.Open();
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().size() == 1; }, std::chrono::seconds(30)));
}

TEST_F(HeadOfLineTest, ManyPodsTerminateAtOnce) {
  // Pods whose processes ignore SIGTERM: each stop lasts its whole grace period. They all stop in parallel,
  // bounded by nothing but the runtime (the old pool stopped 16 at a time).
  constexpr int kPods = 40;
  fake_->SetOnStop([&](const std::string&) { gate_.Wait(); });
  StartKubelet();
  std::vector<api::Pod> pods;
  for (int i = 0; i < kPods; ++i) pods.push_back(Sleeper("stubborn" + std::to_string(i), 30));
  kubelet_->OnSnapshot(api::kSourceFile, pods);
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().size() == kPods; }, std::chrono::seconds(60)));
  kubelet_->OnSnapshot(api::kSourceFile, {});
  EXPECT_TRUE(WaitUntil([&] { return gate_.Waiting() == kPods; }, std::chrono::seconds(30))) << gate_.Waiting();
  gate_.Open();
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().empty(); }, std::chrono::seconds(30)));
}

TEST_F(HeadOfLineTest, ASlowPullDelaysNoKill) {
  // serializeImagePulls (the default): one pull at a time. "slow:1" is held in the runtime; "slow:2" waits its turn.
  fake_->AddImage("slow:1");
  fake_->AddImage("slow:2");
  fake_->SetOnPull([&](const std::string& image) {
    if (image == "slow:1") gate_.Wait();
  });
  StartKubelet();
  auto pulling = Sleeper("pulling", 1, "slow:1");
  pulling.spec.containers[0].image_pull_policy = "Always";
  auto queued = Sleeper("queued", 1, "slow:2");
  queued.spec.containers[0].image_pull_policy = "Always";
  auto victim = Sleeper("victim", 1);
  kubelet_->OnSnapshot(api::kSourceFile, {victim});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("victim-node1", 0); }));
  kubelet_->OnSnapshot(api::kSourceFile, {victim, pulling});
  ASSERT_TRUE(WaitUntil([&] { return gate_.Waiting() == 1; }));
  kubelet_->OnSnapshot(api::kSourceFile, {victim, pulling, queued});
  ASSERT_TRUE(WaitUntil([&] { return fake_->Sandboxes().size() == 3; }));
  // Kill the running pod and the one waiting for its pull turn while the first pull is held.
  std::string queued_uid = queued.metadata.uid;
  kubelet_->OnSnapshot(api::kSourceFile, {pulling});
  ASSERT_TRUE(WaitUntil([&] { return RunningContainers().empty(); }));
  ASSERT_TRUE(WaitUntil([&] { return kubelet_->PodTornDown(queued_uid); }));
  EXPECT_EQ(gate_.Waiting(), 1);
  // The queued pod never pulled.
  EXPECT_EQ(fake_->CallCount("PullImage"), 1);
  // Killing the pod whose own pull is in flight cancels that pull: its sandbox goes while the runtime still holds
  // the pull, and the pull turn is free for the next pod.
  std::string pulling_uid = pulling.metadata.uid;
  kubelet_->OnSnapshot(api::kSourceFile, {});
  ASSERT_TRUE(WaitUntil([&] { return kubelet_->PodTornDown(pulling_uid); }));
  EXPECT_EQ(gate_.Waiting(), 1);
  EXPECT_TRUE(fake_->Sandboxes().empty());
  auto next = Sleeper("next", 1, "slow:2");
  next.spec.containers[0].image_pull_policy = "Always";
  kubelet_->OnSnapshot(api::kSourceFile, {next});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("next-node1", 0); }));
  gate_.Open();
}

}  // namespace
}  // namespace kubelet

namespace kubelet {
namespace {

TEST_F(HeadOfLineTest, AHungExecProbeIsAbandonedAtItsTimeout) {
  // The runtime never answers the probe's ExecSync (it ignores the timeout in the request). The kubelet gives the
  // call up a second after timeoutSeconds, counts it, and the liveness failure restarts the container, as it
  // would if the runtime had reported the timeout itself.
  fake_->SetExec([&](const std::string&, const std::vector<std::string>& cmd) {
    if (cmd == std::vector<std::string>{"check"}) gate_.Wait();
    return std::make_pair(0, std::string());
  });
  StartKubelet();
  auto pod = Pod("stuck", nlohmann::json::parse(R"({"containers": [{"name": "app", "image": "busybox:1.35",
    "livenessProbe": {"exec": {"command": ["check"]}, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}}]})"));
  kubelet_->OnSnapshot(api::kSourceFile, {pod});
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("stuck-node1", 0); }));
  ASSERT_TRUE(WaitUntil([&] { return IsRunning("stuck-node1", 1); }, std::chrono::seconds(30)));
  EXPECT_GE(kubelet_->probes().AbandonedExecs(), 1);
  bool timed_out = false;
  for (const auto& e : EventsWith("Unhealthy"))
    timed_out |= e.message == "Liveness probe failed: command \"check\" timed out";
  EXPECT_TRUE(timed_out);
}

}  // namespace
}  // namespace kubelet

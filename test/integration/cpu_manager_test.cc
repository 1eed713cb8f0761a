// The CPU manager's static policy against the fake CRI runtime (over gRPC):
// cpuset syntax, validation, exclusive CPUs for Guaranteed integer requests,
// the shared pool, upstream's admission error, the checkpoint and its
// restore, and the reconcile loop pushing cpusets with UpdateContainerResources.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fake/fake_runtime.h"
#include "kubelet/api/codec.h"
#include "kubelet/cm/cpu_manager.h"
#include "kubelet/cri/runtime_service.h"

namespace kubelet::cm {
namespace {

namespace rt = ::runtime::v1;
using kubelet::testing::FakeRuntime;
using json = nlohmann::json;

api::Pod MakePod(const std::string& uid, const std::string& resources) {
  std::string doc = "kind: Pod\nmetadata: {name: p-" + uid + ", namespace: ns, uid: " + uid +
                    "}\nspec:\n  containers:\n  - name: c\n    image: x:1\n    resources: " + resources + "\n";
  auto j = api::ParseDocument(doc);
  api::ApplyPodDefaults(*j);
  return *api::DecodePod(*j);
}

std::vector<CPUInfo> FourCPUs() { return {{0, 0, 0}, {1, 1, 0}, {2, 2, 0}, {3, 3, 0}}; }

TEST(CPUSetSyntax, ParsesAndFormats) {
  EXPECT_EQ(FormatCPUSet(*ParseCPUSet("0-3,5,7-8")), "0-3,5,7-8");
  EXPECT_EQ(FormatCPUSet(*ParseCPUSet("3,1,2")), "1-3");
  EXPECT_TRUE(ParseCPUSet("")->empty());
  EXPECT_FALSE(ParseCPUSet("3-1").ok());
  EXPECT_FALSE(ParseCPUSet("a").ok());
}

class CPUManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("cpu-manager-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    fake_ = std::make_unique<FakeRuntime>((dir_ / "cri.sock").string());
    ASSERT_TRUE(fake_->Start());
    fake_->AddImage("x:1");
    cri::RemoteOptions ro;
    ro.runtime_endpoint = fake_->endpoint();
    ro.timeout = std::chrono::seconds(5);
    remote_ = cri::NewRemoteRuntime(ro);
    o_.policy = "static";
    o_.reserved_milli_cpu = 500;
    o_.state_file = (dir_ / "cpu_manager_state").string();
    d_.runtime = remote_.get();
    d_.active_pods = [this] { return active_; };
    d_.sources_ready = [] { return true; };
  }
  void TearDown() override {
    fake_->Stop();
    std::filesystem::remove_all(dir_);
  }
  std::string RunContainer(const api::Pod& pod, const std::string& cpuset) {
    rt::PodSandboxConfig sc;
    sc.mutable_metadata()->set_name(pod.metadata.name);
    sc.mutable_metadata()->set_namespace_("ns");
    sc.mutable_metadata()->set_uid(pod.metadata.uid);
    sc.mutable_metadata()->set_attempt(0);
    auto sb = remote_->RunPodSandbox(sc, "");
    if (!sb.ok()) {
      ADD_FAILURE() << sb.status();
      return "";
    }
    rt::ContainerConfig cc;
    cc.mutable_metadata()->set_name("c");
    cc.mutable_image()->set_image("x:1");
    (*cc.mutable_labels())["io.kubernetes.pod.uid"] = pod.metadata.uid;
    cc.mutable_linux()->mutable_resources()->set_cpuset_cpus(cpuset);
    auto id = remote_->CreateContainer(*sb, cc, sc);
    if (!id.ok()) {
      ADD_FAILURE() << id.status();
      return "";
    }
    EXPECT_TRUE(remote_->StartContainer(*id).ok());
    return *id;
  }
  std::string CpusetOf(const std::string& id) { return fake_->ConfigOf(id)->linux().resources().cpuset_cpus(); }

  std::filesystem::path dir_;
  std::unique_ptr<FakeRuntime> fake_;
  std::unique_ptr<cri::RemoteRuntime> remote_;
  CPUManagerOptions o_;
  CPUManagerDeps d_;
  std::vector<api::Pod> active_;
};

TEST_F(CPUManagerTest, ValidationAsUpstream) {
  auto o = o_;
  o.reserved_milli_cpu = 0;
  auto none_reserved = CPUManager::New(FourCPUs(), o, d_);
  ASSERT_FALSE(none_reserved.ok());
  EXPECT_NE(none_reserved.status().message().find("requires systemreserved.cpu + kubereserved.cpu to be greater than zero"),
            std::string::npos);
  o.policy = "dynamic";
  EXPECT_EQ(CPUManager::New(FourCPUs(), o, d_).status().message(), "unknown policy: \"dynamic\"");
  o = o_;
  o.reserved_system_cpus = "6";
  EXPECT_FALSE(CPUManager::New(FourCPUs(), o, d_).ok());
  o.reserved_system_cpus = "0,3";
  auto m = CPUManager::New(FourCPUs(), o, d_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(FormatCPUSet((*m)->Reserved()), "0,3");
}

TEST_F(CPUManagerTest, ExclusiveCPUsForGuaranteedIntegerRequests) {
  auto m = *CPUManager::New(FourCPUs(), o_, d_);
  EXPECT_EQ(FormatCPUSet(m->Reserved()), "0");  // 500m reserved -> one CPU
  auto guaranteed = MakePod("g1", "{limits: {cpu: '2', memory: 64Mi}}");
  auto fractional = MakePod("g2", "{limits: {cpu: 1500m, memory: 64Mi}}");
  auto burstable = MakePod("b1", "{requests: {cpu: '1'}}");
  ASSERT_TRUE(m->Allocate(guaranteed).ok());
  ASSERT_TRUE(m->Allocate(fractional).ok());
  ASSERT_TRUE(m->Allocate(burstable).ok());
  EXPECT_EQ(m->ContainerCPUSet("g1", "c"), "1-2");
  EXPECT_EQ(m->ContainerCPUSet("g2", "c"), "0,3");  // the shared pool (reserved CPUs included)
  EXPECT_EQ(m->ContainerCPUSet("b1", "c"), "0,3");
  // Only CPU 3 is left for exclusive use.
  auto st = m->Allocate(MakePod("g3", "{limits: {cpu: '2', memory: 64Mi}}"));
  EXPECT_EQ(st.message(), "not enough cpus available to satisfy request: requested=2, available=1");
  // The checkpoint as upstream lays it out.
  std::ifstream in(o_.state_file);
  json state = json::parse(in);
  EXPECT_EQ(state["policyName"], "static");
  EXPECT_EQ(state["defaultCpuSet"], "0,3");
  EXPECT_EQ(state["entries"]["g1"]["c"], "1-2");
  EXPECT_TRUE(state.contains("checksum"));

  // A restarted kubelet finds the same state; another policy is refused until the file is deleted.
  m.reset();
  auto again = *CPUManager::New(FourCPUs(), o_, d_);
  EXPECT_EQ(again->ContainerCPUSet("g1", "c"), "1-2");
  EXPECT_EQ(FormatCPUSet(again->DefaultSet()), "0,3");
  auto o = o_;
  o.policy = "none";
  auto other = CPUManager::New(FourCPUs(), o, d_);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("configured policy \"none\" differs from state checkpoint policy \"static\""),
            std::string::npos);
  // A checkpoint whose CPUs do not add up to the machine's is refused.
  std::ofstream(o_.state_file) << R"({"policyName":"static","defaultCpuSet":"0-1","entries":{"x":{"c":"1"}}})";
  EXPECT_FALSE(CPUManager::New(FourCPUs(), o_, d_).ok());
}

TEST_F(CPUManagerTest, ReconcilePushesCpusetsAndReleasesFinishedPods) {
  auto m = *CPUManager::New(FourCPUs(), o_, d_);
  auto guaranteed = MakePod("g1", "{limits: {cpu: '1', memory: 64Mi}}");
  auto burstable = MakePod("b1", "{requests: {cpu: '1'}}");
  ASSERT_TRUE(m->Allocate(burstable).ok());
  std::string b = RunContainer(burstable, m->ContainerCPUSet("b1", "c"));
  EXPECT_EQ(CpusetOf(b), "0-3");
  active_ = {burstable};
  ASSERT_TRUE(m->ReconcileOnce().ok());
  // A Guaranteed pod takes CPU 1: the shared container moves off it.
  ASSERT_TRUE(m->Allocate(guaranteed).ok());
  std::string g = RunContainer(guaranteed, m->ContainerCPUSet("g1", "c"));
  active_ = {burstable, guaranteed};
  ASSERT_TRUE(m->ReconcileOnce().ok());
  EXPECT_EQ(CpusetOf(g), "1");
  EXPECT_EQ(CpusetOf(b), "0,2-3");
  int updates = fake_->CallCount("UpdateContainerResources");
  ASSERT_TRUE(m->ReconcileOnce().ok());
  EXPECT_EQ(fake_->CallCount("UpdateContainerResources"), updates);  // nothing changed, nothing sent
  // The Guaranteed pod ends: its CPU returns to the pool and the shared container gets it back.
  active_ = {burstable};
  ASSERT_TRUE(m->ReconcileOnce().ok());
  EXPECT_EQ(FormatCPUSet(m->DefaultSet()), "0-3");
  EXPECT_TRUE(m->Assignments().empty());
  EXPECT_EQ(CpusetOf(b), "0-3");
}

TEST_F(CPUManagerTest, NonePolicyLeavesCpusetsAlone) {
  auto o = o_;
  o.policy = "none";
  auto m = *CPUManager::New(FourCPUs(), o, d_);
  auto guaranteed = MakePod("g1", "{limits: {cpu: '2', memory: 64Mi}}");
  ASSERT_TRUE(m->Allocate(guaranteed).ok());
  EXPECT_EQ(m->ContainerCPUSet("g1", "c"), "");
  std::ifstream in(o.state_file);
  EXPECT_EQ(json::parse(in)["policyName"], "none");
}

}  // namespace
}  // namespace kubelet::cm

namespace kubelet::cm {
namespace {

// Found by fuzz_checkpoint: a checkpoint whose fields have the wrong type, or whose cpuset names IDs no machine has,
// is a clean error naming the file (the old code threw from nlohmann's value() or filled memory with a range).
TEST_F(CPUManagerTest, ACorruptCheckpointIsACleanError) {
  auto write = [&](const std::string& text) {
    std::ofstream(o_.state_file, std::ios::trunc) << text;
  };
  for (const char* text : {R"({"policyName": 7, "defaultCpuSet": "0-3"})", R"({"policyName": "static", "defaultCpuSet": ["0-3"]})",
                           R"({"policyName": "static", "defaultCpuSet": "0-2000000000"})", "{", "[]"}) {
    write(text);
    auto m = CPUManager::New(FourCPUs(), o_, d_);
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_NE(m.status().message().find("could not restore state from checkpoint \"" + o_.state_file + "\""),
              std::string::npos) << m.status();
  }
  EXPECT_FALSE(ParseCPUSet("8192").ok());
  EXPECT_TRUE(ParseCPUSet("8191").ok());
}

}  // namespace
}  // namespace kubelet::cm

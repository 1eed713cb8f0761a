// The device manager's registration and inventory against the project's device plugin (a separate process
// speaking deviceplugin v1beta1 over unix sockets): kubelet.sock, Register with upstream's refusals, the
// ListAndWatch stream, capacity and allocatable as devices turn unhealthy and the plugin goes; allocation
// (admission, Allocate, GetPreferredAllocation, PreStartContainer, init containers' reuse), the checkpoint and a
// restart.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/calls_log.h"
#include "common/test_util.h"
#include "kubelet/cm/cpu_manager.h"
#include "kubelet/cm/devicemanager.h"
#include "kubelet/cm/topologymanager.h"
#include "kubelet/cm/devicemanager_checkpoint.h"
#include <grpcpp/grpcpp.h>

#include "kubelet/server/podresources.h"
#include "podresources/v1/api.grpc.pb.h"

namespace kubelet::cm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool WaitFor(const std::function<bool()>& f, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

class DeviceManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("devmgr-test-" + std::to_string(getpid()));
    sockets_ = (dir_ / "device-plugins").string();
    state_ = (dir_ / "plugin").string();
    fs::create_directories(sockets_);
    fs::create_directories(state_);
  }
  void TearDown() override {
    for (pid_t p : plugins_) StopPlugin(p);
    if (m_) m_->Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void StartManager(std::chrono::milliseconds grace = std::chrono::seconds(1), std::vector<int> numa = {0},
                    const AffinityStore* affinity = nullptr) {
    DeviceManagerOptions o;
    o.numa_nodes = numa;
    o.socket_dir = sockets_;
    o.stop_grace = grace;
    o.dial_timeout = std::chrono::seconds(3);
    o.rpc_timeout = std::chrono::seconds(2);
    o.boot_id_file = (dir_ / "boot_id").string();
    DeviceManagerDeps d;
    d.active_pods = [this] {
      std::lock_guard<std::mutex> l(mu_);
      return active_;
    };
    d.sources_ready = [this] { return sources_ready_.load(); };
    d.container_running = [this](const std::string& uid, const std::string& c) {
      std::lock_guard<std::mutex> l(mu_);
      return running_.count(uid + "/" + c) > 0;
    };
    d.affinity = affinity;
    m_ = NewDeviceManager(o, d);
    ASSERT_TRUE(m_->Start().ok());
  }
  // A pod whose containers ask for `want` devices of example.com/dev each; init containers listed first.
  api::Pod Pod(const std::string& uid, std::vector<int> want, std::vector<int> init = {}, std::vector<bool> sidecar = {}) {
    api::Pod p;
    p.metadata.uid = uid;
    p.metadata.name = uid;
    p.metadata.namespace_ = "default";
    for (size_t i = 0; i < init.size(); ++i) {
      api::Container c;
      c.name = "init-" + std::to_string(i);
      if (i < sidecar.size() && sidecar[i]) c.restart_policy = "Always";
      c.resources.limits["example.com/dev"] = std::to_string(init[i]);
      p.spec.init_containers.push_back(c);
    }
    for (size_t i = 0; i < want.size(); ++i) {
      api::Container c;
      c.name = "c-" + std::to_string(i);
      c.resources.limits["example.com/dev"] = std::to_string(want[i]);
      c.resources.limits["cpu"] = "1";
      p.spec.containers.push_back(c);
    }
    std::lock_guard<std::mutex> l(mu_);
    active_.insert(uid);
    return p;
  }
  int Restore(const std::string& uid, const std::string& container, const std::string& annotation) {
    return m_->RestoreFromRuntime({{uid, container, annotation}});
  }
  std::vector<std::string> Held(const std::string& uid, const std::string& container) {
    auto all = m_->PodDevices(uid);
    std::vector<std::string> ids;
    for (const auto& s : all[container])
      if (s.resource == "example.com/dev") ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    return ids;
  }
  void Deactivate(const std::string& uid) {
    std::lock_guard<std::mutex> l(mu_);
    active_.erase(uid);
  }
  pid_t StartPlugin(std::vector<std::string> extra) {
    std::vector<std::string> args{TEST_DEVICE_PLUGIN, "--socket-dir=" + sockets_, "--state-dir=" + state_};
    for (auto& e : extra) args.push_back(e);
    pid_t p = testing::Spawn(args);
    plugins_.push_back(p);
    return p;
  }
  int StopPlugin(pid_t p, int sig = SIGTERM) {
    int st = 0;
    if (kill(p, 0) == 0) kill(p, sig);
    waitpid(p, &st, 0);
    plugins_.erase(std::remove(plugins_.begin(), plugins_.end(), p), plugins_.end());
    return st;
  }
  std::vector<json> Calls(const std::string& method) { return testing::ReadCallsLog(state_ + "/calls.log", method); }
  int64_t Capacity(const std::string& r) {
    auto c = m_->GetCapacity();
    return c.capacity.count(r) ? c.capacity[r] : -1;
  }
  int64_t Allocatable(const std::string& r) {
    auto c = m_->GetCapacity();
    return c.allocatable.count(r) ? c.allocatable[r] : -1;
  }

  std::mutex mu_;
  std::set<std::string> active_, running_;
  std::atomic<bool> sources_ready_{true};
  fs::path dir_;
  std::string sockets_, state_;
  std::unique_ptr<DeviceManager> m_;
  std::vector<pid_t> plugins_;
};

TEST(ExtendedResourceName, AsTheAPIValidatesIt) {
  for (const char* ok : {"example.com/gpu", "nvidia.com/gpu", "vendor.io/fpga-arria10", "a.b/c_d.e"}) EXPECT_TRUE(IsExtendedResourceName(ok)) << ok;
  for (const char* bad : {"gpu", "kubernetes.io/gpu", "foo.kubernetes.io/gpu", "requests.example.com/gpu", "example.com/", "/gpu",
                          "Example.com/gpu", "example.com/a/b", "example.com/-gpu", "example..com/gpu"})
    EXPECT_FALSE(IsExtendedResourceName(bad)) << bad;
}

TEST_F(DeviceManagerTest, RegistrationListAndWatchHealthAndAPluginThatGoes) {
  // A socket left from before goes at start; the checkpoint stays.
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string stale = sockets_ + "/stale.sock";
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", stale.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
    std::ofstream(sockets_ + "/" + kDeviceCheckpoint) << "{}";
  }
  StartManager();
  EXPECT_FALSE(fs::exists(sockets_ + "/stale.sock"));
  EXPECT_TRUE(fs::exists(sockets_ + "/" + kDeviceCheckpoint));
  EXPECT_TRUE(fs::exists(sockets_ + "/" + kKubeletSocket));

  pid_t p = StartPlugin({"--resource=example.com/dev", "--devices=3", "--numa=2"});
  ASSERT_TRUE(WaitFor([&] { return Capacity("example.com/dev") == 3; }));
  EXPECT_EQ(Allocatable("example.com/dev"), 3);
  auto devs = m_->Devices()["example.com/dev"];
  ASSERT_EQ(devs.size(), 3u);
  EXPECT_EQ(devs[1].id, "dev-1");
  EXPECT_EQ(devs[1].numa_nodes, std::vector<int64_t>{1});
  ASSERT_EQ(Calls("Register").size(), 1u);
  EXPECT_TRUE(Calls("Register")[0]["ok"].get<bool>());

  // One device unhealthy: capacity counts it, allocatable does not; healthy again, back.
  std::ofstream(state_ + "/unhealthy-dev-1") << "";
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  EXPECT_EQ(Capacity("example.com/dev"), 3);
  fs::remove(state_ + "/unhealthy-dev-1");
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 3; }));

  // The plugin goes: nothing allocatable at once, the resource removed after the grace period, then forgotten.
  StopPlugin(p);
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 0; }));
  EXPECT_EQ(Capacity("example.com/dev"), 3);
  bool removed = false;
  ASSERT_TRUE(WaitFor([&] {
    auto c = m_->GetCapacity();
    for (const auto& r : c.removed) removed |= r == "example.com/dev";
    return removed;
  }));
  EXPECT_EQ(Capacity("example.com/dev"), -1);

  // It comes back: registered again, its devices counted again.
  StartPlugin({"--resource=example.com/dev", "--devices=2"});
  ASSERT_TRUE(WaitFor([&] { return Capacity("example.com/dev") == 2 && Allocatable("example.com/dev") == 2; }));
}

TEST_F(DeviceManagerTest, RegistrationRefusalsReadAsUpstreams) {
  StartManager();
  pid_t p = StartPlugin({"--resource=example.com/dev", "--version=v1alpha", "--endpoint=old.sock"});
  int st = StopPlugin(p, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 3) << st;
  ASSERT_EQ(Calls("Register").size(), 1u);
  EXPECT_EQ(Calls("Register")[0]["error"],
            "requested API version \"v1alpha\" is not supported by kubelet. Supported versions are [\"v1beta1\"]");
  p = StartPlugin({"--resource=kubernetes.io/dev", "--endpoint=native.sock"});
  st = StopPlugin(p, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 3) << st;
  EXPECT_EQ(Calls("Register")[1]["error"], "the ResourceName \"kubernetes.io/dev\" is invalid");
  auto escape = m_->RegisterDevicePlugin("v1beta1", "../../elsewhere.sock", "example.com/dev");
  EXPECT_FALSE(escape.ok());
  EXPECT_NE(escape.message().find("is not a socket name in"), std::string::npos) << escape;
  auto nobody = m_->RegisterDevicePlugin("v1beta1", "nobody.sock", "example.com/dev");
  EXPECT_EQ(nobody.code(), absl::StatusCode::kUnavailable) << nobody;
  EXPECT_NE(nobody.message().find("failed to dial device plugin"), std::string::npos) << nobody;
  EXPECT_TRUE(m_->GetCapacity().capacity.empty());
  // Through the plugin manager (plugins_registry, type DevicePlugin): the same rules.
  EXPECT_FALSE(m_->ValidatePlugin("example.com/dev", "/x.sock", {"v1alpha"}).ok());
  EXPECT_FALSE(m_->ValidatePlugin("dev", "/x.sock", {"v1beta1"}).ok());
  EXPECT_TRUE(m_->ValidatePlugin("example.com/dev", "/x.sock", {"v1beta1"}).ok());
}

TEST_F(DeviceManagerTest, AllocationReachesTheContainerAndTheCheckpoint) {
  StartManager();
  StartPlugin({"--resource=example.com/dev", "--devices=2", "--preferred", "--pre-start", "--device-node=/dev/null",
               "--cdi=example.com/dev"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  auto a = Pod("pod-a", {1});
  ASSERT_TRUE(m_->Admit(a).ok());
  ASSERT_TRUE(m_->PrepareDevices(a).ok());
  // The plugin was offered both devices and preferred the last; Allocate got that one.
  auto pref = Calls("GetPreferredAllocation");
  ASSERT_EQ(pref.size(), 1u);
  EXPECT_EQ(pref[0]["requests"][0]["available"], json({"dev-1", "dev-0"}));
  EXPECT_EQ(pref[0]["requests"][0]["size"], 1);
  ASSERT_EQ(Calls("Allocate").size(), 1u);
  EXPECT_EQ(Calls("Allocate")[0]["devices"], json({{"dev-1"}}));
  EXPECT_EQ(Held("pod-a", "c-0"), std::vector<std::string>{"dev-1"});
  EXPECT_TRUE(m_->PrepareDevices(a).ok());  // done: nothing asked again
  EXPECT_EQ(Calls("Allocate").size(), 1u);

  auto opts = m_->GetDeviceRunContainerOptions(a, a.spec.containers[0]);
  ASSERT_TRUE(opts.ok()) << opts.status();
  ASSERT_EQ(opts->envs.size(), 1u);
  EXPECT_EQ(opts->envs[0], std::make_pair(std::string("TEST_DEVICES"), std::string("dev-1")));
  ASSERT_EQ(opts->mounts.size(), 1u);
  EXPECT_EQ(opts->mounts[0].container_path, "/var/run/test-devices/dev-1");
  EXPECT_EQ(opts->mounts[0].host_path, state_ + "/devices/dev-1");
  EXPECT_TRUE(opts->mounts[0].read_only);
  ASSERT_EQ(opts->devices.size(), 1u);
  EXPECT_EQ(opts->devices[0].container_path, "/dev/test-dev-1");
  EXPECT_EQ(opts->devices[0].permissions, "rw");
  EXPECT_EQ(opts->annotations.at("test.kubelet-cpp.io/devices"), "dev-1");
  EXPECT_EQ(opts->cdi_devices, std::vector<std::string>{"example.com/dev=dev-1"});
  ASSERT_EQ(Calls("PreStartContainer").size(), 1u);
  EXPECT_EQ(Calls("PreStartContainer")[0]["devices"], json({"dev-1"}));

  // Admission reserves: b is admitted (not allocated yet), c finds nothing free.
  auto b = Pod("pod-b", {1});
  ASSERT_TRUE(m_->Admit(b).ok());
  auto c = Pod("pod-c", {1});
  auto refused = m_->Admit(c);
  EXPECT_EQ(refused.message(), "requested number of devices unavailable for example.com/dev. Requested: 1, Available: 0") << refused;
  ASSERT_TRUE(m_->PrepareDevices(b).ok());
  EXPECT_EQ(Held("pod-b", "c-0"), std::vector<std::string>{"dev-0"});

  // The checkpoint holds both, with upstream's checksum (Decode verifies it).
  std::ifstream in(sockets_ + "/" + kDeviceCheckpoint);
  std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto cp = DecodeDeviceCheckpoint(blob);
  ASSERT_TRUE(cp.ok()) << cp.status() << blob;
  EXPECT_EQ(cp->entries.size(), 2u);
  EXPECT_EQ(cp->registered.at("example.com/dev").size(), 2u);

  // a ends: its device goes back to the pool at the next admission.
  Deactivate("pod-a");
  ASSERT_TRUE(m_->Admit(c).ok());
  ASSERT_TRUE(m_->PrepareDevices(c).ok());
  EXPECT_EQ(Held("pod-c", "c-0"), std::vector<std::string>{"dev-1"});
  EXPECT_TRUE(m_->PodDevices("pod-a").empty());

  // A container without device resources gets nothing, and no plugin is called for it.
  api::Container plain;
  plain.name = "plain";
  auto none = m_->GetDeviceRunContainerOptions(a, plain);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// A machine of two NUMA nodes (fake CPUs 0,1 on node 0 and 2,3 on node 1; the plugin's devices alternate between
// them): under single-numa-node the CPU manager's and the device manager's hints agree on one node, both allocate
// from it, and a pod that no single node can hold is refused with TopologyAffinityError.
TEST_F(DeviceManagerTest, TopologyManagerAlignsDevicesAndCPUsOnOneNUMANode) {
  NUMAInfo numa{{0, 1}, {}};
  TopologyManagerOptions to;
  to.policy = kTopologyPolicySingleNumaNode;
  auto tm = TopologyManager::New(numa, to);
  ASSERT_TRUE(tm.ok()) << tm.status();
  StartManager(std::chrono::seconds(1), {0, 1}, tm->get());
  CPUManagerOptions co;
  co.policy = "static";
  co.reserved_system_cpus = "0";
  co.state_file = (dir_ / "cpu_manager_state").string();
  CPUManagerDeps cd;
  cd.affinity = tm->get();
  auto cpus = CPUManager::New({{0, 0, 0, 0}, {1, 1, 0, 0}, {2, 2, 0, 1}, {3, 3, 0, 1}}, co, cd);
  ASSERT_TRUE(cpus.ok()) << cpus.status();
  (*tm)->AddHintProvider(cpus->get());
  (*tm)->AddHintProvider(m_.get());
  StartPlugin({"--resource=example.com/dev", "--devices=4", "--numa=2", "--preferred"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 4; }));
  auto guaranteed = [&](const std::string& uid, int devices, int ncpu) {
    auto p = Pod(uid, {devices});
    auto& c = p.spec.containers[0];
    for (auto* rl : {&c.resources.limits, &c.resources.requests}) {
      (*rl)["cpu"] = std::to_string(ncpu);
      (*rl)["memory"] = "64Mi";
    }
    c.resources.requests["example.com/dev"] = std::to_string(devices);
    return p;
  };
  auto on_node = [&](const std::string& uid) {
    std::set<int64_t> nodes;
    auto all = m_->PodDevices(uid);
    for (const auto& s : all["c-0"]) nodes.insert(s.numa_nodes.begin(), s.numa_nodes.end());
    return nodes;
  };

  // One device and one CPU: both on node 0 (the narrowest), the plugin offered only node 0's devices to prefer from.
  auto a = guaranteed("pod-a", 1, 1);
  auto hints = m_->GetTopologyHints(a, a.spec.containers[0]);
  ASSERT_TRUE(hints.count("example.com/dev") && hints["example.com/dev"].has_value());
  ASSERT_EQ(hints["example.com/dev"]->size(), 3u);  // {0} and {1} preferred, {0,1} not
  EXPECT_EQ((*hints["example.com/dev"])[0].String(), "{01 true}");
  EXPECT_EQ((*hints["example.com/dev"])[1].String(), "{10 true}");
  EXPECT_EQ((*hints["example.com/dev"])[2].String(), "{11 false}");
  auto r = (*tm)->Admit(a);
  ASSERT_TRUE(r.admit) << r.reason << ": " << r.message;
  EXPECT_EQ((*tm)->GetAffinity("pod-a", "c-0").String(), "{01 true}");
  ASSERT_TRUE(m_->PrepareDevices(a).ok());
  auto pref = Calls("GetPreferredAllocation");
  ASSERT_EQ(pref.size(), 1u);
  std::set<std::string> offered;
  for (const auto& id : pref[0]["requests"][0]["available"]) offered.insert(id.get<std::string>());
  EXPECT_EQ(offered, (std::set<std::string>{"dev-0", "dev-2"}));
  EXPECT_EQ(on_node("pod-a"), std::set<int64_t>{0});
  EXPECT_EQ(FormatCPUSet((*cpus)->Assignments()["pod-a"]["c-0"]), "1");

  // Two devices and two CPUs: only node 1 has both free.
  auto b = guaranteed("pod-b", 2, 2);
  r = (*tm)->Admit(b);
  ASSERT_TRUE(r.admit) << r.reason << ": " << r.message;
  ASSERT_TRUE(m_->PrepareDevices(b).ok());
  EXPECT_EQ(on_node("pod-b"), std::set<int64_t>{1});
  EXPECT_EQ(Held("pod-b", "c-0").size(), 2u);
  EXPECT_EQ(FormatCPUSet((*cpus)->Assignments()["pod-b"]["c-0"]), "2-3");

  // Two more devices: one is left (on node 0); no hint can hold them, the pod is refused as upstream refuses it.
  auto c = guaranteed("pod-c", 2, 1);
  r = (*tm)->Admit(c);
  EXPECT_FALSE(r.admit);
  EXPECT_EQ(r.reason, "TopologyAffinityError");
  EXPECT_EQ(r.message, "Resources cannot be allocated with Topology locality");
  EXPECT_TRUE(m_->PodDevices("pod-c").empty());
  EXPECT_FALSE((*cpus)->Assignments().count("pod-c"));

  // Admitted but not prepared yet, a pod's devices are set aside: the next pod's hints do not count them.
  auto d = guaranteed("pod-d", 1, 0);
  d.spec.containers[0].resources.limits.erase("cpu");
  d.spec.containers[0].resources.requests.erase("cpu");
  r = (*tm)->Admit(d);
  ASSERT_TRUE(r.admit) << r.reason << ": " << r.message;
  auto e = Pod("pod-e", {1});
  auto eh = m_->GetTopologyHints(e, e.spec.containers[0]);
  ASSERT_TRUE(eh["example.com/dev"].has_value());
  EXPECT_TRUE(eh["example.com/dev"]->empty());  // nothing free once d's device is set aside
  ASSERT_TRUE(m_->PrepareDevices(d).ok());
  EXPECT_EQ(on_node("pod-d"), std::set<int64_t>{0});
}

TEST_F(DeviceManagerTest, InitContainersDevicesAreReusedSidecarsKeepTheirs) {
  StartManager();
  StartPlugin({"--resource=example.com/dev", "--devices=3"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 3; }));
  // init(2) then app(2) on 3 devices: the app reuses the init container's two.
  auto p = Pod("pod-init", {2}, {2});
  ASSERT_TRUE(m_->Admit(p).ok());
  ASSERT_TRUE(m_->PrepareDevices(p).ok());
  auto init = Held("pod-init", "init-0"), app = Held("pod-init", "c-0");
  ASSERT_EQ(init.size(), 2u);
  std::sort(init.begin(), init.end());
  std::sort(app.begin(), app.end());
  EXPECT_EQ(app, init);
  // One device is left: two app containers of one each do not fit.
  auto q = Pod("pod-two", {1, 1});
  EXPECT_EQ(m_->Admit(q).message(), "requested number of devices unavailable for example.com/dev. Requested: 1, Available: 0");
  Deactivate("pod-init");
  // A sidecar (restartable init container) keeps its device: init(1) + sidecar(1) + app(2) needs 3.
  auto s = Pod("pod-sidecar", {2}, {1, 1}, {false, true});
  ASSERT_TRUE(m_->Admit(s).ok()) << m_->Admit(s);
  ASSERT_TRUE(m_->PrepareDevices(s).ok());
  auto side = Held("pod-sidecar", "init-1");
  auto main = Held("pod-sidecar", "c-0");
  ASSERT_EQ(side.size(), 1u);
  ASSERT_EQ(main.size(), 2u);
  EXPECT_EQ(std::count(main.begin(), main.end(), side[0]), 0) << "the sidecar's device went to the app container too";
  auto first = Held("pod-sidecar", "init-0");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(std::count(main.begin(), main.end(), first[0]) + std::count(side.begin(), side.end(), first[0]), 1);
}

TEST_F(DeviceManagerTest, AFailingAllocateReleasesThePodsDevices) {
  StartManager();
  pid_t p = StartPlugin({"--resource=example.com/dev", "--devices=2", "--fail-allocate=device dev-x is on fire"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  auto a = Pod("pod-a", {1, 1});
  ASSERT_TRUE(m_->Admit(a).ok());
  auto st = m_->PrepareDevices(a);
  EXPECT_EQ(st.message(), "rpc error: code = Unknown desc = device dev-x is on fire") << st;
  EXPECT_TRUE(m_->PodDevices("pod-a").empty());
  StopPlugin(p);
  // Nothing half-allocated: a working plugin gives both devices to the next pod.
  StartPlugin({"--resource=example.com/dev", "--devices=2", "--endpoint=again.sock"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  auto b = Pod("pod-b", {2});
  ASSERT_TRUE(m_->Admit(b).ok());
  ASSERT_TRUE(m_->PrepareDevices(b).ok());
  EXPECT_EQ(Held("pod-b", "c-0").size(), 2u);
  // A slow plugin: Allocate runs into the deadline, the pod is refused with it.
  StartPlugin({"--resource=example.com/slow", "--devices=1", "--endpoint=slow.sock", "--allocate-delay-ms=5000"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/slow") == 1; }));
  auto c = Pod("pod-c", {});
  api::Container slow;
  slow.name = "slow";
  slow.resources.limits["example.com/slow"] = "1";
  c.spec.containers.push_back(slow);
  ASSERT_TRUE(m_->Admit(c).ok());
  auto late = m_->PrepareDevices(c);
  EXPECT_EQ(late.message(), "rpc error: code = DeadlineExceeded desc = Deadline Exceeded") << late;
  EXPECT_TRUE(m_->PodDevices("pod-c").empty());
  // Refusals before any plugin call.
  auto d = Pod("pod-d", {});
  api::Container unknown;
  unknown.name = "unknown";
  unknown.resources.limits["example.com/nothing"] = "1";
  d.spec.containers.push_back(unknown);
  EXPECT_TRUE(m_->Admit(d).ok()) << "a resource no plugin registered is not the device manager's";
}

TEST_F(DeviceManagerTest, ARestartKeepsAllocationsAndTheRunningContainers) {
  StartManager();
  pid_t plugin = StartPlugin({"--resource=example.com/dev", "--devices=2"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  auto a = Pod("pod-a", {1});
  ASSERT_TRUE(m_->Admit(a).ok());
  ASSERT_TRUE(m_->PrepareDevices(a).ok());
  auto held = Held("pod-a", "c-0");
  ASSERT_EQ(held.size(), 1u);
  m_->Stop();
  m_.reset();

  // The kubelet starts again; its sources have not all spoken yet and a's container runs.
  sources_ready_ = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    running_.insert("pod-a/c-0");
  }
  StartManager();
  EXPECT_EQ(Held("pod-a", "c-0"), held);
  EXPECT_EQ(Capacity("example.com/dev"), 0);  // until the plugin registers again
  ASSERT_TRUE(m_->Admit(a).ok());              // re-admitted with the devices it has
  // The plugin saw kubelet.sock made anew and registered again.
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  EXPECT_EQ(Calls("Register").size(), 2u);
  size_t allocates = Calls("Allocate").size();
  ASSERT_TRUE(m_->PrepareDevices(a).ok());
  EXPECT_EQ(Calls("Allocate").size(), allocates);
  auto opts = m_->GetDeviceRunContainerOptions(a, a.spec.containers[0]);
  ASSERT_TRUE(opts.ok());
  ASSERT_EQ(opts->envs.size(), 1u);
  EXPECT_EQ(opts->envs[0].second, held[0]);  // from the checkpointed answer
  // One device left for a new pod, none for a second.
  sources_ready_ = true;
  auto b = Pod("pod-b", {1});
  ASSERT_TRUE(m_->Admit(b).ok());
  ASSERT_TRUE(m_->PrepareDevices(b).ok());
  EXPECT_NE(Held("pod-b", "c-0"), held);
  auto c = Pod("pod-c", {1});
  EXPECT_FALSE(m_->Admit(c).ok());
  // What each container is created with carries its allocation, in the checkpoint's format.
  auto opts_b = m_->GetDeviceRunContainerOptions(b, b.spec.containers[0]);
  ASSERT_TRUE(opts_b.ok());
  ASSERT_EQ(opts->annotations.count(kDeviceAllocationAnnotation), 1u);
  ASSERT_EQ(opts_b->annotations.count(kDeviceAllocationAnnotation), 1u);
  const std::string rec_a = opts->annotations.at(kDeviceAllocationAnnotation);
  const std::string rec_b = opts_b->annotations.at(kDeviceAllocationAnnotation);
  auto decoded = DecodeDeviceCheckpoint(rec_a);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->entries.size(), 1u);
  EXPECT_EQ(decoded->entries[0].pod_uid, "pod-a");
  EXPECT_EQ(decoded->entries[0].resource_name, "example.com/dev");
  // A request that changed since the allocation is refused.
  auto grown = a;
  grown.spec.containers[0].resources.limits["example.com/dev"] = "2";
  EXPECT_EQ(m_->Admit(grown).message(), "pod \"pod-a\" container \"c-0\" changed request for resource \"example.com/dev\" from 1 to 2");
  m_->Stop();
  m_.reset();

  // A corrupted checkpoint: said so, and the kubelet starts without it.
  {
    std::ifstream in(sockets_ + "/" + kDeviceCheckpoint);
    std::string blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    blob.replace(blob.find("pod-a"), 5, "pod-z");
    std::ofstream(sockets_ + "/" + kDeviceCheckpoint) << blob;
  }
  StartManager();
  EXPECT_TRUE(m_->PodDevices("pod-a").empty());
  EXPECT_TRUE(m_->PodDevices("pod-z").empty());
  // Rebuilt from the running containers' records: only a record of that very container, once, and one that decodes.
  EXPECT_EQ(Restore("pod-x", "c-0", rec_a), 0);
  EXPECT_EQ(Restore("pod-a", "c-1", rec_a), 0);
  EXPECT_EQ(Restore("pod-a", "c-0", "{not a record"), 0);
  std::string tampered = rec_a;
  tampered.replace(tampered.find("pod-a"), 5, "pod-q");
  EXPECT_EQ(Restore("pod-q", "c-0", tampered), 0);  // its checksum no longer matches
  EXPECT_EQ(Restore("pod-a", "c-0", rec_a), 1);
  EXPECT_EQ(Restore("pod-a", "c-0", rec_a), 0);
  // A record of another container claiming a device already restored (a copied annotation) is not given it twice;
  // nor one with no device; and records restored together are all kept.
  {
    auto copied = DecodeDeviceCheckpoint(rec_a);
    ASSERT_TRUE(copied.ok());
    copied->entries[0].pod_uid = "pod-d";
    EXPECT_EQ(Restore("pod-d", "c-0", EncodeDeviceCheckpoint(*copied)), 0);
    EXPECT_TRUE(m_->PodDevices("pod-d").empty());
    copied->entries[0].pod_uid = "pod-f";
    copied->entries[0].device_ids.clear();
    EXPECT_EQ(Restore("pod-f", "c-0", EncodeDeviceCheckpoint(*copied)), 0);
  }
  EXPECT_EQ(m_->RestoreFromRuntime({{"pod-b", "c-0", rec_b}, {"pod-b", "c-0", rec_b}}), 1);
  EXPECT_EQ(Held("pod-a", "c-0"), held);
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  {
    auto restored = m_->GetDeviceRunContainerOptions(a, a.spec.containers[0]);
    ASSERT_TRUE(restored.ok());
    ASSERT_EQ(restored->envs.size(), 1u);
    EXPECT_EQ(restored->envs[0].second, held[0]);  // the plugin's answer came back with the record
  }
  // Both devices are held again: a new pod is refused rather than given one of them.
  auto e = Pod("pod-e", {1});
  EXPECT_FALSE(m_->Admit(e).ok());
  m_->Stop();
  m_.reset();
  // And the rebuilt allocations were checkpointed.
  StartManager();
  EXPECT_EQ(Held("pod-a", "c-0"), held);
  EXPECT_FALSE(m_->PodDevices("pod-b").empty());
  m_->Stop();
  m_.reset();

  // A checkpoint from before a reboot: its allocations are not restored (from a clean start: the rebuilt one above
  // was written by managers that knew no boot ID).
  std::filesystem::remove(sockets_ + "/" + kDeviceCheckpoint);
  StopPlugin(plugin);
  std::ofstream(dir_ / "boot_id") << "first-boot\n";
  StartManager();
  StartPlugin({"--resource=example.com/dev", "--devices=2"});
  ASSERT_TRUE(WaitFor([&] { return Allocatable("example.com/dev") == 2; }));
  auto d = Pod("pod-d", {1});
  ASSERT_TRUE(m_->Admit(d).ok());
  ASSERT_TRUE(m_->PrepareDevices(d).ok());
  m_->Stop();
  m_.reset();
  std::ofstream(dir_ / "boot_id") << "second-boot\n";
  StartManager();
  EXPECT_TRUE(m_->PodDevices("pod-d").empty());
}

}  // namespace
}  // namespace kubelet::cm

namespace kubelet::server {
namespace {

class PodResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override { sock_ = (std::filesystem::temp_directory_path() / ("podres-" + std::to_string(getpid())) / "kubelet.sock").string(); }
  void TearDown() override {
    if (s_) s_->Stop();
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(sock_).parent_path(), ec);
  }
  void Start(bool get_enabled, double qps = 100, int burst = 10) {
    PodResourcesOptions o;
    o.socket = sock_;
    o.get_enabled = get_enabled;
    o.qps = qps;
    o.burst = burst;
    PodResourcesProviders p;
    p.active_pods = [] {
      api::Pod pod;
      pod.metadata.uid = "u1";
      pod.metadata.name = "gpu";
      pod.metadata.namespace_ = "ml";
      api::Container init, sidecar, app;
      init.name = "init";
      sidecar.name = "sidecar";
      sidecar.restart_policy = "Always";
      app.name = "app";
      pod.spec.init_containers = {init, sidecar};
      pod.spec.containers = {app};
      return std::vector<api::Pod>{pod};
    };
    p.pod_devices = [](const std::string& uid) {
      std::map<std::string, std::vector<ContainerDeviceSet>> out;
      if (uid == "u1") out["app"] = {{"example.com/dev", {"dev-1"}, {1}}, {"example.com/dev", {"dev-2"}, {}}};
      return out;
    };
    p.allocatable_devices = [] { return std::vector<ContainerDeviceSet>{{"example.com/dev", {"dev-1"}, {1}}}; };
    s_ = std::make_unique<PodResourcesServer>(o, p);
    ASSERT_TRUE(s_->Start().ok());
    stub_ = v1::PodResourcesLister::NewStub(grpc::CreateChannel("unix://" + sock_, grpc::InsecureChannelCredentials()));
  }
  std::string sock_;
  std::unique_ptr<PodResourcesServer> s_;
  std::unique_ptr<v1::PodResourcesLister::Stub> stub_;
};

TEST_F(PodResourcesTest, ListGetAndAllocatableAsUpstreamAnswers) {
  Start(false);
  v1::ListPodResourcesResponse r;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->List(&ctx, v1::ListPodResourcesRequest(), &r).ok());
  ASSERT_EQ(r.pod_resources_size(), 1);
  const auto& pod = r.pod_resources(0);
  EXPECT_EQ(pod.name(), "gpu");
  EXPECT_EQ(pod.namespace_(), "ml");
  ASSERT_EQ(pod.containers_size(), 2);  // the sidecar and the app; the finished init container is not listed
  EXPECT_EQ(pod.containers(0).name(), "sidecar");
  EXPECT_EQ(pod.containers(1).name(), "app");
  ASSERT_EQ(pod.containers(1).devices_size(), 2);
  EXPECT_EQ(pod.containers(1).devices(0).device_ids(0), "dev-1");
  ASSERT_EQ(pod.containers(1).devices(0).topology().nodes_size(), 1);
  EXPECT_EQ(pod.containers(1).devices(0).topology().nodes(0).id(), 1);
  EXPECT_FALSE(pod.containers(1).devices(1).has_topology());

  v1::GetPodResourcesRequest q;
  q.set_pod_name("gpu");
  q.set_pod_namespace("ml");
  v1::GetPodResourcesResponse g;
  grpc::ClientContext gctx;
  auto st = stub_->Get(&gctx, q, &g);
  EXPECT_EQ(st.error_message(), "PodResources API Get method disabled");

  v1::AllocatableResourcesResponse a;
  grpc::ClientContext actx;
  ASSERT_TRUE(stub_->GetAllocatableResources(&actx, v1::AllocatableResourcesRequest(), &a).ok());
  ASSERT_EQ(a.devices_size(), 1);
  EXPECT_EQ(a.devices(0).resource_name(), "example.com/dev");
}

TEST_F(PodResourcesTest, GetBehindItsGateAndTheRateLimit) {
  Start(true, 0.001, 3);
  v1::GetPodResourcesRequest q;
  q.set_pod_name("gpu");
  q.set_pod_namespace("ml");
  v1::GetPodResourcesResponse g;
  grpc::ClientContext c1;
  ASSERT_TRUE(stub_->Get(&c1, q, &g).ok());
  EXPECT_EQ(g.pod_resources().containers_size(), 2);
  q.set_pod_name("cpu");
  grpc::ClientContext c2;
  EXPECT_EQ(stub_->Get(&c2, q, &g).error_message(), "pod cpu in namespace ml not found");
  // The burst (3) is spent: the next call is refused as upstream refuses it.
  grpc::ClientContext c3, c4;
  v1::ListPodResourcesResponse r;
  EXPECT_TRUE(stub_->List(&c3, v1::ListPodResourcesRequest(), &r).ok());
  auto limited = stub_->List(&c4, v1::ListPodResourcesRequest(), &r);
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(limited.error_message(), "rejected by rate limit");
}

}  // namespace
}  // namespace kubelet::server

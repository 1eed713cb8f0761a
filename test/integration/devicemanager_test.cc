// The device manager's registration and inventory against the project's device plugin (a separate process
// speaking deviceplugin v1beta1 over unix sockets): kubelet.sock, Register with upstream's refusals, the
// ListAndWatch stream, capacity and allocatable as devices turn unhealthy and the plugin goes.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/calls_log.h"
#include "common/test_util.h"
#include "kubelet/cm/devicemanager.h"

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
  void StartManager(std::chrono::milliseconds grace = std::chrono::seconds(1)) {
    DeviceManagerOptions o;
    o.socket_dir = sockets_;
    o.stop_grace = grace;
    o.dial_timeout = std::chrono::seconds(3);
    m_ = NewDeviceManager(o);
    ASSERT_TRUE(m_->Start().ok());
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

}  // namespace
}  // namespace kubelet::cm

// CSI volumes, the kubelet's share: the volume manager with the CSI plugin and the plugin manager, against the
// project's test CSI driver (a separate process doing real tmpfs and bind mounts) and the fake API server as the
// node's identity. For 1, 30 and 110 pods, each with a claim of its own, all admitted at once (one pod worker
// each): per pod, the time from WaitForAttachAndMount called to NodePublishVolume done, and from
// UnmountVolumesForPod called to NodeUnstageVolume done; p50/p99 of the whole, and of the kubelet's own share
// (the whole minus the time spent inside the driver's calls, measured around each gRPC call).
// Needs root (the driver mounts).  usage: kubelet_bench_csi
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "bench_util.h"
#include "common/test_util.h"
#include "fake/fake_apiserver.h"
#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/pluginmanager/plugin_manager.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/mount.h"
#include "kubelet/volumemanager/csi.h"
#include "kubelet/volumemanager/volume_manager.h"

using namespace kubelet;
using namespace kubelet::volumemanager;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Steady = std::chrono::steady_clock;

namespace {

constexpr char kDriver[] = "csi.test.kubelet-cpp.io";

// Time inside the driver, by volume handle.
struct DriverTime {
  std::mutex mu;
  std::map<std::string, double> ms;
  void Add(const std::string& handle, Steady::time_point since) {
    double d = std::chrono::duration<double, std::milli>(Steady::now() - since).count();
    std::lock_guard<std::mutex> l(mu);
    ms[handle] += d;
  }
  double Take(const std::string& handle) {
    std::lock_guard<std::mutex> l(mu);
    double v = ms[handle];
    ms.erase(handle);
    return v;
  }
};

class TimedClient : public CSIClient {
 public:
  TimedClient(std::unique_ptr<CSIClient> c, DriverTime* t) : c_(std::move(c)), t_(t) {}
  absl::StatusOr<CSINodeInfo> NodeGetInfo(std::chrono::milliseconds to) override { return c_->NodeGetInfo(to); }
  absl::StatusOr<CSINodeCapabilities> NodeGetCapabilities(std::chrono::milliseconds to) override {
    return c_->NodeGetCapabilities(to);  // not by volume: counted in the kubelet's share (upstream asks as often)
  }
  absl::Status NodeStageVolume(const std::string& id, const std::map<std::string, std::string>& pc, const std::string& p,
                               const Capability& cap, const std::map<std::string, std::string>& s,
                               const std::map<std::string, std::string>& vc, std::chrono::milliseconds to) override {
    auto t = Steady::now();
    auto r = c_->NodeStageVolume(id, pc, p, cap, s, vc, to);
    t_->Add(id, t);
    return r;
  }
  absl::Status NodeUnstageVolume(const std::string& id, const std::string& p, std::chrono::milliseconds to) override {
    auto t = Steady::now();
    auto r = c_->NodeUnstageVolume(id, p, to);
    t_->Add(id, t);
    return r;
  }
  absl::Status NodePublishVolume(const std::string& id, const std::map<std::string, std::string>& pc, const std::string& sp,
                                 const std::string& tp, const Capability& cap, bool ro, const std::map<std::string, std::string>& s,
                                 const std::map<std::string, std::string>& vc, std::chrono::milliseconds to) override {
    auto t = Steady::now();
    auto r = c_->NodePublishVolume(id, pc, sp, tp, cap, ro, s, vc, to);
    t_->Add(id, t);
    return r;
  }
  absl::Status NodeUnpublishVolume(const std::string& id, const std::string& tp, std::chrono::milliseconds to) override {
    auto t = Steady::now();
    auto r = c_->NodeUnpublishVolume(id, tp, to);
    t_->Add(id, t);
    return r;
  }
  absl::StatusOr<CSIVolumeUsage> NodeGetVolumeStats(const std::string& id, const std::string& p, const std::string& sp,
                                                    std::chrono::milliseconds to) override {
    return c_->NodeGetVolumeStats(id, p, sp, to);
  }
  absl::StatusOr<int64_t> NodeExpandVolume(const std::string& id, const std::string& p, const std::string& sp, int64_t b,
                                           const Capability& cap, std::chrono::milliseconds to) override {
    return c_->NodeExpandVolume(id, p, sp, b, cap, to);
  }

 private:
  std::unique_ptr<CSIClient> c_;
  DriverTime* t_;
};

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "kubelet_bench_csi needs root: the test driver mounts\n");
    return 1;
  }
  log::Init(0);
  spdlog::set_level(spdlog::level::warn);
  fs::path dir = fs::temp_directory_path() / ("kcsibench-" + std::to_string(getpid()));
  std::string root = (dir / "root").string();
  fs::create_directories(root + "/pods");
  testing::FakeApiServer::Options ao;
  ao.cert_dir = (dir / "api").string();
  ao.token_user = "system:node:bench";
  testing::FakeApiServer apiserver(ao);
  apiserver.Start();
  apiserver.CreateNamespaceDefaults("default");
  apiserver.Create("nodes", {{"metadata", {{"name", "bench"}}}, {"status", json::object()}});
  apiserver.Create("csidrivers", {{"metadata", {{"name", kDriver}}}, {"spec", {{"attachRequired", false}, {"podInfoOnMount", true}}}});
  client::RestConfig rc;
  rc.server = apiserver.url();
  rc.ca_pem = apiserver.ca_pem();
  rc.bearer_token = "test-token";
  client::ClientOptions co;
  co.qps = 0;
  auto api = client::NewApiClient(rc, co);

  DriverTime driver_time;
  CSIDriverStore drivers([&](const std::string& ep) { return std::make_unique<TimedClient>(NewGrpcCSIClient(ep), &driver_time); });
  NodeInfoManager node_info(api.get(), "bench");
  CSIPluginHandler handler(&drivers, &node_info);
  CSIDeps cd;
  cd.drivers = &drivers;
  cd.root_dir = root;
  cd.node_name = "bench";
  auto* c = api.get();
  auto get = [c](const std::string& r, const std::string& ns, const std::string& n) -> absl::StatusOr<json> {
    if (r == "csidrivers" || r == "volumeattachments") return c->Get("/apis/storage.k8s.io/v1/" + r + "/" + n);
    return c->Get(ns.empty() ? "/api/v1/" + r + "/" + n : "/api/v1/namespaces/" + ns + "/" + r + "/" + n);
  };
  cd.get_object = get;
  CSIVolumes csi(cd);
  VolumeDeps vd;
  vd.get_object = get;
  vd.csi = &csi;
  vd.node_name = "bench";
  auto vm = NewVolumeManager(root + "/pods", vd);
  vm->Start();
  pluginmanager::PluginManagerOptions po;
  po.dir = root + "/plugins_registry";
  auto plugins = pluginmanager::NewPluginManager(po);
  plugins->AddHandler(pluginmanager::kCSIPlugin, &handler);
  plugins->Start();

  std::string state = (dir / "driver").string();
  std::vector<std::string> args{TEST_CSI_DRIVER, "--endpoint=" + (dir / "csi.sock").string(), "--state-dir=" + state,
                                "--registration-dir=" + root + "/plugins_registry", "--node-id=bench-id"};
  pid_t driver = testing::Spawn(args);
  auto deadline = Steady::now() + std::chrono::seconds(30);
  while (!drivers.Has(kDriver) && Steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!drivers.Has(kDriver)) {
    std::fprintf(stderr, "the test driver did not register\n");
    return 1;
  }

  std::printf("CSI volumes, one claim per pod, all pods at once (ms): set-up = WaitForAttachAndMount to NodePublish done,\n"
              "teardown = UnmountVolumesForPod to NodeUnstage done; kubelet = the whole minus the driver's calls\n");
  std::printf("%5s %-9s %9s %9s %12s %12s %9s\n", "pods", "phase", "p50", "p99", "kubelet p50", "kubelet p99", "wall");
  int serial = 0;
  for (int n : {1, 30, 110}) {
    std::vector<api::Pod> pods;
    std::vector<std::string> handles;
    for (int i = 0; i < n; ++i) {
      int id = serial++;
      std::string claim = "c-" + std::to_string(id), pv = "pv-" + std::to_string(id), handle = "vol-" + std::to_string(id);
      json made = apiserver.Create("persistentvolumeclaims", {{"metadata", {{"name", claim}, {"namespace", "default"}}},
                                                              {"spec", {{"volumeName", pv}, {"accessModes", {"ReadWriteOnce"}}}},
                                                              {"status", {{"phase", "Bound"}, {"capacity", {{"storage", "8Mi"}}}}}});
      apiserver.Create("persistentvolumes",
                       {{"metadata", {{"name", pv}}},
                        {"spec", {{"accessModes", {"ReadWriteOnce"}}, {"capacity", {{"storage", "8Mi"}}},
                                  {"csi", {{"driver", kDriver}, {"volumeHandle", handle}, {"volumeAttributes", {{"size", "8m"}}}}},
                                  {"claimRef", {{"name", claim}, {"namespace", "default"}, {"uid", made["metadata"]["uid"]}}}}}});
      json raw = apiserver.Create("pods", {{"metadata", {{"name", "p-" + std::to_string(id)}, {"namespace", "default"}}},
                                           {"spec", {{"nodeName", "bench"}, {"containers", {{{"name", "c"}, {"image", "x:1"}}}},
                                                     {"volumes", {{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", claim}}}}}}}}});
      api::ApplyPodDefaults(raw);
      auto pod = api::DecodePod(raw);
      if (!pod.ok()) return 1;
      pods.push_back(*pod);
      handles.push_back(handle);
    }
    for (const char* phase : {"set-up", "teardown"}) {
      std::vector<double> ms(n), own(n);
      std::vector<std::thread> workers;
      std::atomic<int> failed{0};
      auto t0 = Steady::now();
      for (int i = 0; i < n; ++i)
        workers.emplace_back([&, i] {
          auto s = Steady::now();
          absl::Status st = std::string(phase) == "set-up" ? vm->WaitForAttachAndMount(pods[i]).status()
                                                           : vm->UnmountVolumesForPod(pods[i].metadata.uid);
          if (!st.ok()) {
            ++failed;
            std::fprintf(stderr, "%s %s: %s\n", phase, pods[i].metadata.name.c_str(), std::string(st.message()).c_str());
          }
          ms[i] = std::chrono::duration<double, std::milli>(Steady::now() - s).count();
        });
      for (auto& w : workers) w.join();
      double wall = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
      for (int i = 0; i < n; ++i) own[i] = ms[i] - driver_time.Take(handles[i]);
      std::printf("%5d %-9s %9.2f %9.2f %12.2f %12.2f %9.1f%s\n", n, phase, Percentile(ms, 50), Percentile(ms, 99), Percentile(own, 50),
                  Percentile(own, 99), wall, failed ? "  (failures)" : "");
    }
  }
  plugins->Stop();
  vm->Stop();
  kill(driver, SIGTERM);
  int st;
  waitpid(driver, &st, 0);
  for (int i = 0; i < 2; ++i)
    for (const auto& m : mount::MountsUnder(dir.string())) ::umount2(m.c_str(), MNT_DETACH);
  apiserver.Stop();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}

// Device plugins, the kubelet's share, against the project's test device plugin (a separate process speaking
// deviceplugin v1beta1 over unix sockets):
//  - admission with device allocation for 110 pods of 2 devices each, one after another as the sync loop admits
//    them: per pod, Admit (on the loop: the reservation, no plugin call) and PrepareDevices (on the pod's worker:
//    Allocate, and GetPreferredAllocation in the second run, plus the checkpoint write); p50/p99 and the total;
//  - a device's health change to the device manager's capacity: from the plugin sending the ListAndWatch update
//    (its clock, logged) to GetCapacity showing it (the node status then carries it at its next update).
// usage: kubelet_bench_devices
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "bench_util.h"
#include "common/calls_log.h"
#include "common/test_util.h"
#include "kubelet/cm/devicemanager.h"
#include "kubelet/util/logging.h"

using namespace kubelet;
namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

namespace {

constexpr int kPods = 110, kPerPod = 2;

double Ms(Steady::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool WaitFor(const std::function<bool()>& f, std::chrono::milliseconds t = std::chrono::seconds(20)) {
  auto end = Steady::now() + t;
  while (Steady::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return f();
}

void Run(const fs::path& dir, bool preferred) {
  fs::remove_all(dir);
  fs::create_directories(dir / "sockets");
  std::set<std::string> active;
  std::mutex mu;
  cm::DeviceManagerOptions o;
  o.socket_dir = (dir / "sockets").string();
  cm::DeviceManagerDeps d;
  d.active_pods = [&] {
    std::lock_guard<std::mutex> l(mu);
    return active;
  };
  d.sources_ready = [] { return true; };
  std::vector<double> rpc;  // Allocate calls as the manager timed them (the plugin's share and the wire)
  d.on_allocation = [&](const std::string&, double secs) { rpc.push_back(secs * 1000); };
  auto m = cm::NewDeviceManager(o, d);
  if (!m->Start().ok()) return;
  std::vector<std::string> args{KUBELET_TEST_DEVICE_PLUGIN, "--socket-dir=" + o.socket_dir, "--state-dir=" + (dir / "plugin").string(),
                                "--resource=example.com/dev", "--devices=" + std::to_string(kPods * kPerPod), "--numa=2"};
  if (preferred) args.push_back("--preferred");
  pid_t plugin = testing::Spawn(args);
  if (!WaitFor([&] { return m->GetCapacity().allocatable["example.com/dev"] == kPods * kPerPod; })) {
    std::printf("the plugin did not register\n");
    kill(plugin, SIGTERM);
    waitpid(plugin, nullptr, 0);
    return;
  }
  std::vector<double> admit, prepare, whole;
  auto start_all = Steady::now();
  for (int i = 0; i < kPods; ++i) {
    api::Pod pod;
    pod.metadata.uid = "pod-" + std::to_string(i);
    pod.metadata.name = pod.metadata.uid;
    pod.metadata.namespace_ = "default";
    api::Container c;
    c.name = "c";
    c.resources.limits["example.com/dev"] = std::to_string(kPerPod);
    pod.spec.containers.push_back(c);
    {
      std::lock_guard<std::mutex> l(mu);
      active.insert(pod.metadata.uid);
    }
    auto t0 = Steady::now();
    bool ok = m->Admit(pod).ok();
    auto t1 = Steady::now();
    ok = ok && m->PrepareDevices(pod).ok();
    auto t2 = Steady::now();
    if (!ok) std::printf("pod %d refused\n", i);
    admit.push_back(Ms(t1 - t0));
    prepare.push_back(Ms(t2 - t1));
    whole.push_back(Ms(t2 - t0));
  }
  double total = Ms(Steady::now() - start_all);
  std::printf("%s: %d pods x %d devices: admit (sync loop) p50 %.3f ms p99 %.3f ms; prepare (pod worker: Allocate%s, checkpoint) "
              "p50 %.3f ms p99 %.3f ms; per pod p50 %.3f ms p99 %.3f ms; all %.1f ms\n",
              preferred ? "with GetPreferredAllocation" : "plain", kPods, kPerPod, Percentile(admit, 50), Percentile(admit, 99),
              preferred ? " + GetPreferredAllocation" : "", Percentile(prepare, 50), Percentile(prepare, 99), Percentile(whole, 50),
              Percentile(whole, 99), total);
  std::printf("  of which the Allocate calls (plugin and wire): p50 %.3f ms p99 %.3f ms\n", Percentile(rpc, 50), Percentile(rpc, 99));

  if (!preferred) {
    // Health changes: the plugin's send time to the device manager's capacity showing it.
    std::vector<double> lat;
    const std::string log = (dir / "plugin/calls.log").string();
    for (int i = 0; i < 20; ++i) {
      const std::string flag = (dir / "plugin").string() + "/unhealthy-dev-" + std::to_string(i);
      int64_t want = kPods * kPerPod - 1;
      std::ofstream(flag) << "";
      if (!WaitFor([&] { return m->GetCapacity().allocatable["example.com/dev"] == want; })) break;
      auto seen = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      // The plugin logs a send just after it: wait for the line, then take the last send before the change was seen.
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      int64_t sent = 0;
      for (const auto& e : testing::ReadCallsLog(log, "ListAndWatchUpdate"))
        if (int64_t t = e["unix_us"].get<int64_t>(); t <= seen) sent = std::max(sent, t);
      if (sent > 0) lat.push_back((seen - sent) / 1000.0);
      fs::remove(flag);
      WaitFor([&] { return m->GetCapacity().allocatable["example.com/dev"] == want + 1; });
    }
    std::printf("health change, plugin's ListAndWatch send to the device manager's capacity: p50 %.3f ms p99 %.3f ms (%zu changes; "
                "polled every 0.2 ms)\n",
                Percentile(lat, 50), Percentile(lat, 99), lat.size());
  }
  kill(plugin, SIGTERM);
  waitpid(plugin, nullptr, 0);
  m->Stop();
  fs::remove_all(dir);
}

}  // namespace

int main() {
  log::SetVerbosity(0);
  fs::path dir = fs::temp_directory_path() / ("kubelet-bench-devices-" + std::to_string(getpid()));
  Run(dir, false);
  Run(dir, true);
  return 0;
}

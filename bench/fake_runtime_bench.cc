// Pod start latency of the kubelet itself: from a manifest file written into
// staticPodPath to StartContainer reaching the (fake, in-process) CRI runtime,
// for 1, 30 and 110 pods written at once. Prints p50/p99 per size.
//   usage: kubelet_bench_fake_runtime [rounds]
#include <unistd.h>

#include <algorithm>

#include "bench_kubelet.h"
#include "bench_util.h"
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "fake/fake_runtime.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/util/logging.h"

using namespace kubelet;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 3;
  log::Init(0);
  spdlog::set_level(spdlog::level::warn);
  fs::path dir = fs::temp_directory_path() / ("kbench-" + std::to_string(getpid()));
  fs::create_directories(dir / "manifests");
  fs::create_directories(dir / "root/pods");
  testing::FakeRuntime fake((dir / "cri.sock").string());
  fake.Start();
  fake.AddImage("busybox:1.35");

  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, SteadyClock::time_point> written;  // pod name (without node suffix) -> write time
  std::vector<double> latencies;
  fake.SetOnStart([&](const std::string& id) {
    auto now = SteadyClock::now();
    for (const auto& c : fake.Containers()) {
      if (c.id() != id) continue;
      std::string pod = c.labels().at("io.kubernetes.pod.name");
      pod = pod.substr(0, pod.rfind("-bench"));
      std::lock_guard<std::mutex> l(mu);
      auto it = written.find(pod);
      if (it != written.end()) {
        latencies.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
        written.erase(it);
        cv.notify_all();
      }
    }
  });

  bench::BenchKubelet bk(fake.endpoint(), dir);
  Kubelet& kl = *bk.kubelet;
  kl.Start();

  std::printf("kubelet pod start latency on the fake CRI runtime (manifest written -> StartContainer), %d rounds\n", rounds);
  std::printf("%6s %10s %10s %10s\n", "pods", "p50 ms", "p99 ms", "max ms");
  for (int n : {1, 30, 110}) {
    std::vector<double> all;
    for (int r = 0; r < rounds; ++r) {
      {
        std::lock_guard<std::mutex> l(mu);
        latencies.clear();
      }
      for (int i = 0; i < n; ++i) {
        std::string name = "p" + std::to_string(r) + "-" + std::to_string(i);
        std::string text = "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
                           "}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - {name: c, image: 'busybox:1.35'}\n";
        std::string tmp = (dir / "manifests" / ("." + name)).string();
        std::ofstream(tmp) << text;
        {
          std::lock_guard<std::mutex> l(mu);
          written[name] = SteadyClock::now();
        }
        fs::rename(tmp, dir / "manifests" / (name + ".yaml"));
      }
      std::unique_lock<std::mutex> l(mu);
      if (!cv.wait_for(l, std::chrono::seconds(60), [&] { return latencies.size() >= static_cast<size_t>(n); })) {
        std::fprintf(stderr, "timed out: %zu of %d pods started\n", latencies.size(), n);
        return 1;
      }
      all.insert(all.end(), latencies.begin(), latencies.end());
      l.unlock();
      for (const auto& e : fs::directory_iterator(dir / "manifests")) fs::remove(e.path());
      // Wait for the teardown before the next round.
      auto deadline = SteadyClock::now() + std::chrono::seconds(60);
      while (!fake.Sandboxes().empty() && SteadyClock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::printf("%6d %10.2f %10.2f %10.2f\n", n, Percentile(all, 50), Percentile(all, 99), Percentile(all, 100));
  }
  kl.Stop();
  fake.Stop();
  fs::remove_all(dir);
  return 0;
}

// No pod holds back another (issue 10), measured on the fake CRI runtime:
//  1. teardown of 110 pods whose processes ignore SIGTERM (each StopContainer lasts the whole grace period), for
//     grace 1 s and GRACE2 s (default 30): time from the manifests' removal to the last sandbox gone;
//  2. start of 110 pods while 20 pods sit in 60 s preStop hooks: p50/p99 from manifest written to StartContainer.
// Prints the kubelet process's thread count and RSS at the busiest moment (the fake runtime shares the process).
//   usage: kubelet_bench_head_of_line [GRACE2]
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "bench_kubelet.h"
#include "bench_util.h"
#include "fake/fake_runtime.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/util/logging.h"

using namespace kubelet;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

namespace {
std::pair<long, long> ThreadsAndRssKiB() {
  std::ifstream in("/proc/self/status");
  long threads = 0, rss = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Threads:", 0) == 0) threads = std::atol(line.c_str() + 8);
    if (line.rfind("VmRSS:", 0) == 0) rss = std::atol(line.c_str() + 6);
  }
  return {threads, rss};
}

void Write(const fs::path& dir, const std::string& name, int grace, bool pre_stop) {
  std::string text = "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  terminationGracePeriodSeconds: " +
                     std::to_string(grace) + "\n  containers:\n  - name: c\n    image: 'busybox:1.35'\n";
  if (pre_stop) text += "    lifecycle: {preStop: {exec: {command: [hold]}}}\n";
  std::string tmp = (dir / ("." + name)).string();
  std::ofstream(tmp) << text;
  fs::rename(tmp, dir / (name + ".yaml"));
}
}  // namespace

int main(int argc, char** argv) {
  int grace2 = argc > 1 ? std::atoi(argv[1]) : 30;
  log::Init(0);
  spdlog::set_level(spdlog::level::err);
  fs::path dir = fs::temp_directory_path() / ("khol-" + std::to_string(getpid()));
  fs::create_directories(dir / "manifests");
  fs::create_directories(dir / "root/pods");
  testing::FakeRuntime fake((dir / "cri.sock").string());
  fake.Start();
  fake.AddImage("busybox:1.35");

  // Processes that ignore SIGTERM: the stop lasts the grace period the kubelet passes (tracked per container name).
  std::atomic<int> stop_seconds{0};
  fake.SetOnStop([&](const std::string&) { std::this_thread::sleep_for(std::chrono::seconds(stop_seconds.load())); });
  std::atomic<bool> hold{true};
  fake.SetExec([&](const std::string&, const std::vector<std::string>& cmd) {
    if (!cmd.empty() && cmd[0] == "hold")
      for (int i = 0; i < 600 && hold; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return std::make_pair(0, std::string());
  });
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, SteadyClock::time_point> written;
  std::vector<double> latencies;
  fake.SetOnStart([&](const std::string& id) {
    auto now = SteadyClock::now();
    auto cfg = fake.ConfigOf(id);
    if (!cfg) return;
    std::string pod;
    for (const auto& c : fake.Containers())
      if (c.id() == id) pod = c.labels().at("io.kubernetes.pod.name");
    pod = pod.substr(0, pod.rfind("-bench"));
    std::lock_guard<std::mutex> l(mu);
    if (auto it = written.find(pod); it != written.end()) {
      latencies.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
      written.erase(it);
      cv.notify_all();
    }
  });

  bench::BenchKubelet bk(fake.endpoint(), dir);
  Kubelet& kl = *bk.kubelet;
  kl.Start();
  auto wait_started = [&](size_t n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::seconds(120), [&] { return latencies.size() >= n; });
  };
  auto [idle_threads, idle_rss] = ThreadsAndRssKiB();
  std::printf("idle: %ld threads, RSS %.1f MiB\n", idle_threads, idle_rss / 1024.0);

  // 1. Teardown of 110 pods that ignore SIGTERM.
  for (int grace : {1, grace2}) {
    {
      std::lock_guard<std::mutex> l(mu);
      latencies.clear();
      for (int i = 0; i < 110; ++i) written["t" + std::to_string(grace) + "-" + std::to_string(i)] = SteadyClock::now();
    }
    for (int i = 0; i < 110; ++i) Write(dir / "manifests", "t" + std::to_string(grace) + "-" + std::to_string(i), grace, false);
    if (!wait_started(110)) {
      std::fprintf(stderr, "timed out starting 110 pods\n");
      return 1;
    }
    stop_seconds = grace;
    auto t0 = SteadyClock::now();
    for (const auto& e : fs::directory_iterator(dir / "manifests")) fs::remove(e.path());
    long peak_threads = 0, peak_rss = 0;
    while (!fake.Sandboxes().empty() && SteadyClock::now() - t0 < std::chrono::seconds(600)) {
      auto [t, r] = ThreadsAndRssKiB();
      peak_threads = std::max(peak_threads, t);
      peak_rss = std::max(peak_rss, r);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    double secs = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    std::printf("teardown of 110 pods, grace %d s, SIGTERM ignored: %.1f s (peak %ld threads, RSS %.1f MiB)\n", grace, secs,
                peak_threads, peak_rss / 1024.0);
    stop_seconds = 0;
  }

  // 2. 110 pods start while 20 pods sit in 60 s preStop hooks.
  {
    std::lock_guard<std::mutex> l(mu);
    latencies.clear();
    for (int i = 0; i < 20; ++i) written["hook-" + std::to_string(i)] = SteadyClock::now();
  }
  for (int i = 0; i < 20; ++i) Write(dir / "manifests", "hook-" + std::to_string(i), 60, true);
  if (!wait_started(20)) return 1;
  for (int i = 0; i < 20; ++i) fs::remove(dir / "manifests" / ("hook-" + std::to_string(i) + ".yaml"));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the hooks are running
  {
    std::lock_guard<std::mutex> l(mu);
    latencies.clear();
    for (int i = 0; i < 110; ++i) written["s-" + std::to_string(i)] = SteadyClock::now();
  }
  for (int i = 0; i < 110; ++i) Write(dir / "manifests", "s-" + std::to_string(i), 1, false);
  if (!wait_started(110)) {
    std::fprintf(stderr, "timed out starting 110 pods beside the hooks\n");
    return 1;
  }
  auto [busy_threads, busy_rss] = ThreadsAndRssKiB();
  {
    std::lock_guard<std::mutex> l(mu);
    std::printf("start of 110 pods while 20 pods are in 60 s preStop hooks: p50 %.1f ms, p99 %.1f ms (%ld threads, RSS %.1f MiB)\n",
                Percentile(latencies, 50), Percentile(latencies, 99), busy_threads, busy_rss / 1024.0);
  }
  hold = false;
  for (const auto& e : fs::directory_iterator(dir / "manifests")) fs::remove(e.path());
  auto deadline = SteadyClock::now() + std::chrono::seconds(120);
  while (!fake.Sandboxes().empty() && SteadyClock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kl.Stop();
  fake.Stop();
  fs::remove_all(dir);
  return 0;
}

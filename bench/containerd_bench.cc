// Pod start latency on the real stack (containerd + runc + CNI bridge): from a
// manifest written into staticPodPath to the container running (the runtime's
// own started_at), for 1, 30 and 110 pods written at once; and the kubelet's
// RSS and CPU seconds per minute idle and with 110 pods (every manager on:
// cgroups, stats, eviction, image GC, log rotation, probes); and, at 110 pods,
// the cost of one housekeeping round run in this process against the same
// containerd and cgroups: a stats collection, an eviction round, an image GC round.
// With "kubelet" as the second argument the pod network is attached by the
// kubelet (--network-plugin=cni, on the lab's second containerd) instead of
// by containerd.
//   usage (as root, lab started by bench/run-containerd.sh):
//     KUBELET_E2E_LAB=... KUBELET_BINARY=... kubelet_bench_containerd [window_seconds] [runtime|kubelet]
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "bench_util.h"
#include "common/test_util.h"
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "kubelet/cm/container_manager.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/eviction/eviction_manager.h"
#include "kubelet/images/image_gc_manager.h"
#include "kubelet/stats/provider.h"
#include "kubelet/util/mount.h"
#include "kubelet/util/node_info.h"
#include "runtime/v1/api.grpc.pb.h"
#include <sys/resource.h>

namespace fs = std::filesystem;
namespace rt = ::runtime::v1;

namespace {

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Usage {
  double rss_mib;
  double cpu_seconds;
};

Usage ReadUsage(pid_t pid) {
  Usage u{0, 0};
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) u.rss_mib = std::stod(line.substr(6)) / 1024.0;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), {});
  std::istringstream rest(all.substr(all.rfind(')') + 2));
  std::vector<std::string> f;
  std::string x;
  while (rest >> x) f.push_back(x);
  // utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the comm).
  if (f.size() > 12) u.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / sysconf(_SC_CLK_TCK);
  return u;
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

// One housekeeping round, as the daemon runs it, in this process: wall and CPU per part, median of 10.
void HousekeepingRound(std::map<std::string, std::string>& env, const fs::path& work) {
  using namespace kubelet;
  cri::RemoteOptions ro;
  ro.runtime_endpoint = "unix://" + env["CONTAINERD_SOCK"];
  ro.timeout = std::chrono::seconds(30);
  auto remote = cri::NewRemoteRuntime(ro);
  auto layout = cm::DetectCgroupLayout();
  if (!layout.ok()) {
    std::printf("housekeeping round: no cgroups (%s)\n", std::string(layout.status().message()).c_str());
    return;
  }
  cm::ContainerManagerOptions cmo;
  cmo.cgroup_root = env["CGROUP_ROOT"];
  cm::ContainerManager cm(std::make_unique<cm::CgroupManager>(*layout, "cgroupfs"), cmo);
  RealClock clock;
  stats::ProviderOptions so;
  so.node_name = "bench";
  so.root_dir = (work / "root").string();
  so.pod_logs_dir = (work / "logs").string();
  so.machine_memory = MachineMemoryBytes();
  stats::StatsProvider provider(remote.get(), remote.get(), &cm, &clock, so);
  eviction::EvictionDeps ed;
  ed.summary = [&] { return provider.Refresh(); };
  ed.clock = &clock;
  eviction::EvictionOptions eo;
  eo.thresholds = *eviction::ParseThresholds({{"memory.available", "100Mi"}, {"nodefs.available", "10%"},
                                              {"nodefs.inodesFree", "5%"}, {"imagefs.available", "15%"}},
                                             {}, {}, {});
  eviction::EvictionManager em(ed, eo);
  images::ImageGCDeps gd;
  gd.images = remote.get();
  gd.runtime = remote.get();
  gd.clock = &clock;
  gd.image_fs = [&]() -> absl::StatusOr<stats::FsStats> {
    auto s = provider.Get();
    if (!s.ok()) return s.status();
    if (!(*s)->node.image_fs) return absl::UnavailableError("no image fs");
    return *(*s)->node.image_fs;
  };
  images::ImageGCManager gc(gd, {});
  auto time = [](auto&& fn) {
    std::vector<double> wall, cpu;
    for (int i = 0; i < 10; ++i) {
      double c0 = CpuSeconds();
      auto t0 = std::chrono::steady_clock::now();
      fn();
      wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      cpu.push_back((CpuSeconds() - c0) * 1000);
      std::this_thread::sleep_for(std::chrono::milliseconds(600));  // past the provider's de-duplication window
    }
    return std::make_pair(Percentile(wall, 50), Percentile(cpu, 50));
  };
  size_t pods = 0;
  auto stats_t = time([&] {
    auto s = provider.Refresh();
    pods = s.ok() ? (*s)->pods.size() : 0;
  });
  auto evict_t = time([&] { em.Synchronize(); });
  auto gc_t = time([&] { (void)gc.GarbageCollect(); });
  std::printf("housekeeping round at %zu pods (in-process, median of 10): stats %.1f ms wall / %.1f ms CPU, "
              "eviction (with its stats) %.1f / %.1f, image GC %.1f / %.1f\n",
              pods, stats_t.first, stats_t.second, evict_t.first, evict_t.second, gc_t.first, gc_t.second);
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int window = argc > 1 ? std::atoi(argv[1]) : 60;
  std::string mode = argc > 2 ? argv[2] : "runtime";
  const char* lab = std::getenv("KUBELET_E2E_LAB");
  const char* bin = std::getenv("KUBELET_BINARY");
  if (!lab || !bin) {
    std::fprintf(stderr, "set KUBELET_E2E_LAB and KUBELET_BINARY (bench/run-containerd.sh does)\n");
    return 2;
  }
  auto env = kubelet::testing::ReadEnvFile(std::string(lab) + (mode == "kubelet" ? "/knet/env" : "/containerd/env"));
  fs::path work = fs::path(lab) / ("bench-" + mode);
  // The kubelet of an earlier run left its root directory mounted rshared (as upstream's does): unmount, then remove.
  for (const auto& m : kubelet::mount::MountsUnder(fs::weakly_canonical(work).string())) ::umount2(m.c_str(), MNT_DETACH);
  fs::remove_all(work);
  fs::create_directories(work / "manifests");
  std::ofstream(work / "config.yaml") << "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                                      << "staticPodPath: " << (work / "manifests").string() << "\n"
                                      << "containerRuntimeEndpoint: unix://" << env["CONTAINERD_SOCK"] << "\n"
                                      << "address: 127.0.0.1\nport: 21250\nhealthzPort: 21248\n"
                                      << "podLogsDir: " << (work / "logs").string() << "\n"
                                      << "cgroupRoot: " << env["CGROUP_ROOT"] << "\n";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open((work / "kubelet.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string conf = "--cni-conf-dir=" + env["KUBELET_CNI_CONF_DIR"];
    std::string cache = "--cni-cache-dir=" + (work / "cni-cache").string();
    if (mode == "kubelet")
      execl(bin, bin, "--config", (work / "config.yaml").c_str(), "--root-dir", (work / "root").c_str(), "--cert-dir",
            (work / "pki").c_str(), "--hostname-override", "bench", "--network-plugin=cni", conf.c_str(), "--cni-bin-dir=/usr/lib/cni",
            cache.c_str(), nullptr);
    else
      execl(bin, bin, "--config", (work / "config.yaml").c_str(), "--root-dir", (work / "root").c_str(), "--cert-dir",
            (work / "pki").c_str(), "--hostname-override", "bench", nullptr);
    _exit(127);
  }
  auto cri = rt::RuntimeService::NewStub(grpc::CreateChannel("unix:" + env["CONTAINERD_SOCK"], grpc::InsecureChannelCredentials()));
  std::this_thread::sleep_for(std::chrono::seconds(2));

  auto measure = [&](const char* what) {
    Usage a = ReadUsage(pid);
    std::this_thread::sleep_for(std::chrono::seconds(window));
    Usage b = ReadUsage(pid);
    std::printf("%-28s RSS %7.1f MiB   CPU %6.3f s/min (over %d s)\n", what, b.rss_mib,
                (b.cpu_seconds - a.cpu_seconds) * 60.0 / window, window);
  };
  measure("idle, 0 pods:");

  std::printf("\npod start latency on containerd, pod network attached by the %s (manifest written -> container started_at)\n",
              mode.c_str());
  std::printf("%6s %10s %10s %10s %14s\n", "pods", "p50 ms", "p99 ms", "max ms", "all running s");
  int round = 0;
  for (int n : {1, 30, 110}) {
    ++round;
    std::map<std::string, int64_t> written;
    int64_t t0 = NowNanos();
    for (int i = 0; i < n; ++i) {
      std::string name = "b" + std::to_string(round) + "-" + std::to_string(i);
      std::string tmp = (work / "manifests" / ("." + name)).string();
      std::ofstream(tmp) << "apiVersion: v1\nkind: Pod\nmetadata: {name: " << name
                         << "}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
                            "  - {name: c, image: 'kubelet-cpp.local/busybox:1.35', command: [sleep, '36000']}\n";
      written[name + "-bench"] = NowNanos();
      fs::rename(tmp, work / "manifests" / (name + ".yaml"));
    }
    std::vector<double> lat;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    while (std::chrono::steady_clock::now() < deadline) {
      rt::ListContainersRequest req;
      req.mutable_filter()->mutable_state()->set_state(rt::CONTAINER_RUNNING);
      rt::ListContainersResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      if (!cri->ListContainers(&ctx, req, &resp).ok()) continue;
      int found = 0;
      for (const auto& c : resp.containers())
        if (written.count(c.labels().at("io.kubernetes.pod.name"))) ++found;
      if (found == n) {
        for (const auto& c : resp.containers()) {
          auto it = written.find(c.labels().at("io.kubernetes.pod.name"));
          if (it == written.end()) continue;
          rt::ContainerStatusRequest sreq;
          sreq.set_container_id(c.id());
          rt::ContainerStatusResponse sresp;
          grpc::ClientContext sctx;
          cri->ContainerStatus(&sctx, sreq, &sresp);
          lat.push_back((sresp.status().started_at() - it->second) / 1e6);
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    double all_s = (NowNanos() - t0) / 1e9;
    if (lat.size() != static_cast<size_t>(n)) {
      std::fprintf(stderr, "only %zu of %d pods ran; see %s\n", lat.size(), n, (work / "kubelet.log").c_str());
      kill(pid, SIGTERM);
      return 1;
    }
    std::printf("%6d %10.1f %10.1f %10.1f %14.1f\n", n, Percentile(lat, 50), Percentile(lat, 99), Percentile(lat, 100), all_s);
    if (n == 110) {
      std::printf("\n");
      measure("steady, 110 pods:");
      HousekeepingRound(env, work);
    }
    for (const auto& e : fs::directory_iterator(work / "manifests")) fs::remove(e.path());
    auto t1 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < deadline) {
      rt::ListPodSandboxRequest req;
      rt::ListPodSandboxResponse resp;
      grpc::ClientContext ctx;
      if (cri->ListPodSandbox(&ctx, req, &resp).ok() && resp.items_size() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (n == 110)
      std::printf("teardown of 110 pods: %.1f s\n",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  return 0;
}

// The kubelet as a cluster node, on the fake API server and the fake CRI
// runtime (both in process): time from a pod bound in the API to its status
// Running written back, p50/p99 for 1, 30 and 110 pods; API requests per pod
// started; API requests per minute at steady state with 110 pods (node
// status and lease included).
//   usage: kubelet_bench_api [steady_window_seconds]
#include <unistd.h>

#include <algorithm>

#include "bench_util.h"
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include "fake/fake_apiserver.h"
#include "fake/fake_runtime.h"
#include "kubelet/client/api_client.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/nodestatus/node_status.h"
#include "kubelet/util/logging.h"

using namespace kubelet;
namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int window = argc > 1 ? std::atoi(argv[1]) : 60;
  log::Init(0);
  spdlog::set_level(spdlog::level::warn);
  fs::path dir = fs::temp_directory_path() / ("kapibench-" + std::to_string(getpid()));
  fs::create_directories(dir / "root/pods");
  testing::FakeRuntime fake((dir / "cri.sock").string());
  fake.Start();
  fake.AddImage("busybox:1.35");
  testing::FakeApiServer::Options ao;
  ao.cert_dir = (dir / "api").string();
  testing::FakeApiServer apiserver(ao);
  apiserver.Start();
  client::RestConfig rc;
  rc.server = apiserver.url();
  rc.ca_pem = apiserver.ca_pem();
  rc.bearer_token = "test-token";
  auto api = client::NewApiClient(rc, client::ClientOptions{});
  client::ClientOptions eo;
  eo.qps = 0;
  auto event_api = client::NewApiClient(rc, eo);  // events have their own client, as in the daemon

  metrics::KubeletMetrics metrics;
  RealClock clock;
  events::APIRecorder recorder(event_api.get(), "bench", 50, 100);
  cri::RemoteOptions ro;
  ro.runtime_endpoint = fake.endpoint();
  auto remote = cri::NewRemoteRuntime(ro);
  auto volumes = volumemanager::NewVolumeManager((dir / "root/pods").string());
  auto env = kuberuntime::NewAPIEnvSource(api.get());
  kuberuntime::RuntimeManagerOptions rmo;
  rmo.pod_logs_dir = (dir / "logs").string();
  rmo.pods_dir = (dir / "root/pods").string();
  auto runtime = kuberuntime::NewRuntimeManager({remote.get(), remote.get(), volumes.get(), &recorder, &metrics, &clock, env.get()}, rmo);
  status::PodStatusSyncer syncer(api.get());
  syncer.Start();
  nodestatus::NodeOptions no;
  no.node_name = "bench";
  no.root_dir = dir.string();
  nodestatus::NodeProviders np;
  np.runtime_version = [] { return std::string("fakeruntime://0.1.0"); };
  np.readiness = [] { return nodestatus::Readiness{true, true, ""}; };
  nodestatus::NodeStatusManager node(api.get(), &clock, no, np);
  node.Start();
  KubeletOptions o;
  o.node_name = "bench";
  o.root_dir = (dir / "root").string();
  o.config.pod_logs_dir = (dir / "logs").string();
  Kubelet kl(o, Dependencies{&clock, runtime.get(), volumes.get(), &recorder, &metrics, api.get(), &syncer,
                             [&] { return node.NodeUID(); }});
  kl.Start();
  std::this_thread::sleep_for(std::chrono::seconds(1));

  std::printf("pod bound in the API -> status Running written back (fake API server + fake CRI runtime, in process)\n");
  std::printf("%6s %10s %10s %10s %16s %12s\n", "pods", "p50 ms", "p99 ms", "max ms", "API req per pod", "events/pod");
  int round = 0;
  for (int n : {1, 30, 110}) {
    ++round;
    std::map<std::string, SteadyClock::time_point> created;
    int64_t before = api->RequestCount();
    int64_t events_before = event_api->RequestCount();
    for (int i = 0; i < n; ++i) {
      std::string name = "b" + std::to_string(round) + "-" + std::to_string(i);
      apiserver.Create("pods", {{"metadata", {{"name", name}, {"namespace", "default"}}},
                                {"spec", {{"nodeName", "bench"}, {"terminationGracePeriodSeconds", 0},
                                          {"containers", {{{"name", "c"}, {"image", "busybox:1.35"}}}}}}});
      created[name] = SteadyClock::now();
    }
    std::vector<double> lat;
    auto deadline = SteadyClock::now() + std::chrono::seconds(120);
    while (!created.empty() && SteadyClock::now() < deadline) {
      for (const auto& p : apiserver.List("pods")) {
        std::string name = p["metadata"]["name"];
        auto it = created.find(name);
        if (it == created.end() || !p.contains("status") || p["status"].value("phase", "") != "Running") continue;
        lat.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - it->second).count());
        created.erase(it);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!created.empty()) {
      std::fprintf(stderr, "%zu pods never ran\n", created.size());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));  // let the last status writes and events land
    double per_pod = static_cast<double>(api->RequestCount() - before) / n;
    double events_per_pod = static_cast<double>(event_api->RequestCount() - events_before) / n;
    std::printf("%6d %10.1f %10.1f %10.1f %16.1f %12.1f\n", n, Percentile(lat, 50), Percentile(lat, 99), Percentile(lat, 100),
                per_pod, events_per_pod);
    if (n == 110) {
      // Start the window once the events of the start burst are out (they drain at eventRecordQPS).
      recorder.Flush();
      std::this_thread::sleep_for(std::chrono::seconds(1));
      int64_t a = api->RequestCount() + event_api->RequestCount();
      std::map<std::string, int> by_kind;
      for (const char* m : {"GET", "POST", "PUT", "PATCH", "DELETE"})
        for (const char* r : {"pods", "nodes", "leases", "events", "services", "configmaps", "secrets"})
          by_kind[std::string(m) + " " + r] = apiserver.Requests(m, r);
      std::this_thread::sleep_for(std::chrono::seconds(window));
      int64_t b = api->RequestCount() + event_api->RequestCount();
      std::string detail;
      for (const auto& [k, v] : by_kind) {
        std::string m = k.substr(0, k.find(' ')), r = k.substr(k.find(' ') + 1);
        int d = apiserver.Requests(m, r) - v;
        if (d) detail += "  " + k + ": " + std::to_string(d);
      }
      std::printf("steady-state requests by kind:%s\n", detail.c_str());
      std::map<std::string, int> reasons;
      for (const auto& e : apiserver.List("events")) reasons[e.value("reason", "")]++;
      std::string rs;
      for (const auto& [r, c] : reasons) rs += " " + r + "=" + std::to_string(c);
      std::printf("events stored by reason:%s\n", rs.c_str());
      std::printf("\nsteady state, 110 pods: %.1f API requests per minute (over %d s)\n", (b - a) * 60.0 / window, window);
    }
    for (const auto& p : apiserver.List("pods")) apiserver.Remove("pods", "default", p["metadata"]["name"]);
    auto t = SteadyClock::now() + std::chrono::seconds(60);
    while (!fake.Sandboxes().empty() && SteadyClock::now() < t) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kl.Stop();
  node.Stop();
  syncer.Stop();
  apiserver.Stop();
  fake.Stop();
  fs::remove_all(dir);
  return 0;
}

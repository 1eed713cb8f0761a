// Volume set-up, the kubelet's share: the volume manager with the Watch strategy's object manager, against the
// fake API server as the node's identity (Node authorizer on). For 1, 30 and 110 pods, all set up at once (one
// pod worker each): per-pod time to WaitForAttachAndMount (p50/p99) per kind, and API requests per pod. Then
// the steady state with 110 pods of the default projected volume: API requests per minute while every pod is
// synced every few seconds, and the watches held, beside the watches upstream's design holds (one per distinct
// object referenced).
//   usage: kubelet_bench_volumes [steady_window_seconds]
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "bench_util.h"
#include "fake/fake_apiserver.h"
#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/kuberuntime/env.h"
#include "kubelet/util/logging.h"
#include "kubelet/volumemanager/volume_manager.h"

using namespace kubelet;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Steady = std::chrono::steady_clock;

namespace {

json VolumeOf(const std::string& kind, int i) {
  if (kind == "emptyDir") return {{"name", "v"}, {"emptyDir", json::object()}};
  if (kind == "configMap") return {{"name", "v"}, {"configMap", {{"name", "cm-" + std::to_string(i)}}}};
  if (kind == "secret") return {{"name", "v"}, {"secret", {{"secretName", "s-" + std::to_string(i)}}}};
  if (kind == "downwardAPI")
    return {{"name", "v"}, {"downwardAPI", {{"items", {{{"path", "labels"}, {"fieldRef", {{"fieldPath", "metadata.labels"}}}}}}}}};
  // The ServiceAccount admission plugin's volume, on every pod of a real cluster.
  return json::parse(R"({"name":"kube-api-access-b3nch","projected":{"defaultMode":420,"sources":[
    {"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},
    {"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},
    {"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}]}})");
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int window = argc > 1 ? std::atoi(argv[1]) : 30;
  log::Init(0);
  spdlog::set_level(spdlog::level::warn);
  fs::path dir = fs::temp_directory_path() / ("kvolbench-" + std::to_string(getpid()));
  fs::create_directories(dir / "pods");
  testing::FakeApiServer::Options ao;
  ao.cert_dir = (dir / "api").string();
  ao.token_user = "system:node:bench";
  testing::FakeApiServer apiserver(ao);
  apiserver.Start();
  apiserver.CreateNamespaceDefaults("default");
  client::RestConfig rc;
  rc.server = apiserver.url();
  rc.ca_pem = apiserver.ca_pem();
  rc.bearer_token = "test-token";
  client::ClientOptions co;
  co.qps = 0;
  auto api = client::NewApiClient(rc, co);
  auto objects = kuberuntime::NewWatchBasedEnvSource(api.get(), kuberuntime::NewAPIEnvSource(api.get()));
  volumemanager::VolumeDeps deps;
  auto* src = objects.get();
  deps.get_object = [src](const std::string& r, const std::string& ns, const std::string& n) { return src->Get(r, ns, n); };
  auto* client = api.get();
  deps.request_token = [client](const std::string& ns, const std::string& sa, const json& req) {
    return client->Create("/api/v1/namespaces/" + ns + "/serviceaccounts/" + sa + "/token", req);
  };
  deps.tmpfs_for_secrets = ::geteuid() == 0;
  auto vm = volumemanager::NewVolumeManager((dir / "pods").string(), deps);
  objects->SetOnChange([v = vm.get()](const std::vector<std::string>& uids) {
    for (const auto& u : uids) v->RemountPod(u);
  });

  std::printf("volume set-up per pod, all pods at once (WaitForAttachAndMount, ms) and API requests per pod\n");
  std::printf("%-14s %5s %9s %9s %9s %12s\n", "kind", "pods", "p50", "p99", "wall", "requests/pod");
  int serial = 0;
  std::vector<api::Pod> steady;
  for (const std::string kind : {"emptyDir", "downwardAPI", "configMap", "secret", "projected"}) {
    for (int n : {1, 30, 110}) {
      std::vector<api::Pod> pods;
      for (int i = 0; i < n; ++i) {
        std::string name = kind + "-" + std::to_string(n) + "-" + std::to_string(i);
        int id = serial++;
        if (kind == "configMap")
          apiserver.Create("configmaps", {{"metadata", {{"name", "cm-" + std::to_string(id)}, {"namespace", "default"}}}, {"data", {{"k", "v"}}}});
        if (kind == "secret")
          apiserver.Create("secrets", {{"metadata", {{"name", "s-" + std::to_string(id)}, {"namespace", "default"}}}, {"data", {{"k", "dg=="}}}});
        json raw = apiserver.Create("pods", {{"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", "bench"}}}}},
                                             {"spec", {{"nodeName", "bench"}, {"containers", {{{"name", "c"}, {"image", "x:1"}}}},
                                                       {"volumes", {VolumeOf(kind, id)}}}}});
        api::ApplyPodDefaults(raw);
        auto pod = api::DecodePod(raw);
        if (!pod.ok()) {
          std::fprintf(stderr, "bad pod: %s\n", std::string(pod.status().message()).c_str());
          return 1;
        }
        pods.push_back(*pod);
      }
      int64_t before = api->RequestCount();
      std::vector<double> ms(n);
      std::vector<std::thread> workers;
      auto t0 = Steady::now();
      for (int i = 0; i < n; ++i)
        workers.emplace_back([&, i] {
          auto s = Steady::now();
          objects->RegisterPod(pods[i]);  // the sync loop's ADD
          auto r = vm->WaitForAttachAndMount(pods[i]);
          if (!r.ok()) std::fprintf(stderr, "%s: %s\n", pods[i].metadata.name.c_str(), std::string(r.status().message()).c_str());
          ms[i] = std::chrono::duration<double, std::milli>(Steady::now() - s).count();
        });
      for (auto& w : workers) w.join();
      double wall = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
      double per_pod = static_cast<double>(api->RequestCount() - before) / n;
      std::printf("%-14s %5d %9.2f %9.2f %9.1f %12.2f\n", kind.c_str(), n, Percentile(ms, 50), Percentile(ms, 99), wall, per_pod);
      if (kind == "projected" && n == 110) {
        steady = pods;
      } else {
        for (const auto& p : pods) {
          objects->UnregisterPod(p.metadata.uid);
          (void)vm->UnmountVolumesForPod(p.metadata.uid);
        }
      }
    }
  }

  // Steady state: every pod synced every 5 s (the kubelet's 1 min sync, compressed), contents refreshed each time.
  std::set<std::string> distinct;
  for (const auto& p : steady)
    for (const auto& k : kuberuntime::ReferencedObjects(p)) distinct.insert(k);
  int64_t before = api->RequestCount();
  int tokens_before = apiserver.Requests("POST", "serviceaccounts");
  auto end = Steady::now() + std::chrono::seconds(window);
  while (Steady::now() < end) {
    for (const auto& p : steady) (void)vm->WaitForAttachAndMount(p);
    std::this_thread::sleep_for(std::chrono::seconds(5));
  }
  double per_min = static_cast<double>(api->RequestCount() - before) * 60.0 / window;
  std::printf("\nsteady state, %zu pods with the default projected volume, synced every 5 s for %d s\n", steady.size(), window);
  std::printf("  API requests per minute (volume sources): %.1f\n", per_min);
  std::printf("  watches held: %zu (upstream's design: one per distinct object referenced = %zu)\n", objects->WatchCount(),
              distinct.size());
  std::printf("  token requests in the window: %d for %zu pods (each is renewed only past 80%% of its 3607 s)\n",
              apiserver.Requests("POST", "serviceaccounts") - tokens_before, steady.size());
  for (const auto& p : steady) {
    objects->UnregisterPod(p.metadata.uid);
    (void)vm->UnmountVolumesForPod(p.metadata.uid);
  }
  vm->Stop();
  objects.reset();
  apiserver.Stop();
  fs::remove_all(dir);
  return 0;
}

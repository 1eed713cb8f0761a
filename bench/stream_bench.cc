// Streams through the kubelet against the floor, containerd's own streaming server reached directly: the exec
// round trip (open an exec of `true`, read to its exit status) and port-forward throughput (a 64 MiB file from an
// HTTP server in the pod). Both paths ask the CRI for the URL (Exec/PortForward); the kubelet's adds TLS to the
// kubelet, the authn/authz filter (AlwaysAllow here) and the byte proxy.
//   usage (as root, lab started by bench/run-containerd.sh streams):
//     KUBELET_E2E_LAB=... KUBELET_BINARY=... kubelet_bench_streams [exec_rounds]
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "common/test_util.h"
#include "common/stream_client.h"
#include "kubelet/util/mount.h"
#include "runtime/v1/api.grpc.pb.h"

namespace fs = std::filesystem;
namespace rt = ::runtime::v1;
using kubelet::testing::StreamClient;
using Steady = std::chrono::steady_clock;

namespace {

constexpr int kPort = 21350;
constexpr size_t kBig = 64u << 20;

size_t Append(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

std::string Get(const std::string& url) {
  std::string body;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_perform(c);
  curl_easy_cleanup(c);
  return body;
}

// "http://127.0.0.1:PORT/path" -> port and path.
bool SplitURL(const std::string& url, int* port, std::string* path) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) return false;
  size_t slash = url.find('/', scheme.size());
  size_t colon = url.rfind(':', slash);
  if (slash == std::string::npos || colon == std::string::npos || colon < scheme.size()) return false;
  *port = std::atoi(url.substr(colon + 1, slash - colon - 1).c_str());
  *path = url.substr(slash);
  return *port > 0;
}

// Reads an exec stream to its end; true when the status channel said Success.
bool ExecToEnd(StreamClient& ws) {
  int ch;
  std::string data, status;
  while (ws.Next(&ch, &data))
    if (ch == 3) status += data;
  return status.find("Success") != std::string::npos;
}

// GET /big through an open port-forward stream; the bytes of the response received.
size_t Download(StreamClient& ws) {
  if (!ws.Send(0, "GET /big HTTP/1.0\r\n\r\n")) return 0;
  size_t got = 0;
  std::map<int, int> messages;
  int ch;
  std::string data;
  while (ws.Next(&ch, &data)) {
    if (messages[ch]++ == 0) continue;  // each channel opens with its port
    if (ch == 0) got += data.size();
    if (got >= kBig) break;
  }
  return got;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int rounds = argc > 1 ? std::atoi(argv[1]) : 50;
  const char* lab = std::getenv("KUBELET_E2E_LAB");
  const char* bin = std::getenv("KUBELET_BINARY");
  if (!lab || !bin) {
    std::fprintf(stderr, "set KUBELET_E2E_LAB and KUBELET_BINARY (bench/run-containerd.sh streams does)\n");
    return 2;
  }
  auto env = kubelet::testing::ReadEnvFile(std::string(lab) + "/containerd/env");
  fs::path work = fs::path(lab) / "bench-streams";
  for (const auto& m : kubelet::mount::MountsUnder(fs::weakly_canonical(work).string())) ::umount2(m.c_str(), MNT_DETACH);
  fs::remove_all(work);
  fs::create_directories(work / "manifests");
  std::ofstream(work / "config.yaml") << "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                                      << "staticPodPath: " << (work / "manifests").string() << "\n"
                                      << "containerRuntimeEndpoint: unix://" << env["CONTAINERD_SOCK"] << "\n"
                                      << "address: 127.0.0.1\nport: " << kPort << "\nhealthzPort: 0\n"
                                      << "podLogsDir: " << (work / "logs").string() << "\n"
                                      << "cgroupRoot: " << env["CGROUP_ROOT"] << "\n"
                                      << "authentication: {anonymous: {enabled: true}}\nauthorization: {mode: AlwaysAllow}\n";
  std::ofstream(work / "manifests" / "web.yaml")
      << "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n"
         "  - name: httpd\n    image: kubelet-cpp.local/busybox:1.35\n"
         "    command: [sh, -c, 'head -c " << kBig << " /dev/zero > /tmp/big; exec httpd -f -p 8080 -h /tmp']\n";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open((work / "kubelet.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(bin, bin, "--config", (work / "config.yaml").c_str(), "--root-dir", (work / "root").c_str(), "--cert-dir",
          (work / "pki").c_str(), "--hostname-override", "bench", nullptr);
    _exit(127);
  }
  auto stop = [&](int rc) {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    return rc;
  };
  auto cri = rt::RuntimeService::NewStub(grpc::CreateChannel("unix:" + env["CONTAINERD_SOCK"], grpc::InsecureChannelCredentials()));
  std::string container_id, sandbox_id;
  auto deadline = Steady::now() + std::chrono::minutes(2);
  while (Steady::now() < deadline && container_id.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    rt::ListContainersRequest req;
    req.mutable_filter()->mutable_state()->set_state(rt::CONTAINER_RUNNING);
    (*req.mutable_filter()->mutable_label_selector())["io.kubernetes.pod.name"] = "web-bench";
    rt::ListContainersResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (cri->ListContainers(&ctx, req, &resp).ok() && resp.containers_size() > 0) {
      container_id = resp.containers(0).id();
      sandbox_id = resp.containers(0).pod_sandbox_id();
    }
  }
  // The file is written before httpd starts: wait until it serves.
  while (Steady::now() < deadline && Get("https://127.0.0.1:" + std::to_string(kPort) + "/pods").find("\"running\"") == std::string::npos)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  if (container_id.empty()) {
    std::fprintf(stderr, "the pod did not run; see %s\n", (work / "kubelet.log").c_str());
    return stop(1);
  }

  auto direct_exec = [&](StreamClient& ws) {
    rt::ExecRequest req;
    req.set_container_id(container_id);
    req.add_cmd("true");
    req.set_stdout(true);
    rt::ExecResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    int port;
    std::string path;
    if (!cri->Exec(&ctx, req, &resp).ok() || !SplitURL(resp.url(), &port, &path)) return false;
    return ws.Open(port, path, "v4.channel.k8s.io", "", "", false) == 101 && ExecToEnd(ws);
  };
  auto kubelet_exec = [&](StreamClient& ws) {
    return ws.Open(kPort, "/exec/default/web-bench/httpd?command=true&stdout=1", "v4.channel.k8s.io") == 101 && ExecToEnd(ws);
  };
  std::printf("exec round trip (open an exec of `true`, read to its exit status), %d rounds\n", rounds);
  std::printf("%-34s %10s %10s\n", "path", "p50 ms", "p99 ms");
  for (auto& [name, fn] : std::vector<std::pair<std::string, std::function<bool(StreamClient&)>>>{
           {"containerd streaming server", direct_exec}, {"through the kubelet (TLS, proxy)", kubelet_exec}}) {
    std::vector<double> ms;
    for (int i = 0; i < rounds; ++i) {
      StreamClient ws;
      auto t0 = Steady::now();
      if (!fn(ws)) {
        std::fprintf(stderr, "%s: exec %d failed\n", name.c_str(), i);
        return stop(1);
      }
      ms.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
    }
    std::printf("%-34s %10.2f %10.2f\n", name.c_str(), Percentile(ms, 50), Percentile(ms, 99));
  }

  std::printf("\nport-forward throughput (GET of a %zu MiB file from httpd in the pod), best of 3\n", kBig >> 20);
  std::printf("%-34s %10s\n", "path", "MiB/s");
  auto direct_pf = [&](StreamClient& ws) -> size_t {
    rt::PortForwardRequest req;
    req.set_pod_sandbox_id(sandbox_id);
    req.add_port(8080);
    rt::PortForwardResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    int port;
    std::string path;
    if (!cri->PortForward(&ctx, req, &resp).ok() || !SplitURL(resp.url(), &port, &path)) return 0;
    if (ws.Open(port, path + (path.find('?') == std::string::npos ? "?" : "&") + "port=8080", "v4.channel.k8s.io", "", "", false) != 101)
      return 0;
    return Download(ws);
  };
  auto kubelet_pf = [&](StreamClient& ws) -> size_t {
    if (ws.Open(kPort, "/portForward/default/web-bench?port=8080", "v4.channel.k8s.io") != 101) return 0;
    return Download(ws);
  };
  for (auto& [name, fn] : std::vector<std::pair<std::string, std::function<size_t(StreamClient&)>>>{
           {"containerd streaming server", direct_pf}, {"through the kubelet (TLS, proxy)", kubelet_pf}}) {
    double best = 0;
    for (int i = 0; i < 3; ++i) {
      StreamClient ws;
      auto t0 = Steady::now();
      size_t got = fn(ws);
      double secs = std::chrono::duration<double>(Steady::now() - t0).count();
      if (got < kBig) {
        std::fprintf(stderr, "%s: only %zu bytes came\n", name.c_str(), got);
        return stop(1);
      }
      best = std::max(best, (got / 1048576.0) / secs);
    }
    std::printf("%-34s %10.1f\n", name.c_str(), best);
  }
  return stop(0);
}

// Probe cost: the kubelet's CPU per 1,000 probes of each kind. The targets
// (an HTTP server, a TCP listener, a grpc.health.v1 server and the fake CRI
// runtime answering ExecSync) run in a child process, so only the prober's own
// work is counted: getrusage of this process over the window, divided by the
// probes the prober_probe_total counter saw.
//   usage: kubelet_bench_probes [pods=100] [window_seconds=20]
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "common/test_util.h"
#include "fake/fake_runtime.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kubelet/api/codec.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/prober/prober.h"
#include "kubelet/server/http_server.h"
#include "kubelet/util/logging.h"

namespace {

using namespace kubelet;  // NOLINT
namespace rt = ::runtime::v1;

class Health final : public grpc::health::v1::Health::Service {
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* resp) override {
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}


// The child: every target, until killed.
[[noreturn]] void Serve(int http_port, int tcp_port, int grpc_port, const std::string& cri_sock) {
  server::ServerOptions so;
  so.address = "127.0.0.1";
  so.port = http_port;
  so.max_connections = 1024;
  server::HttpServer http(so);
  http.Handle("/healthz", [](const server::Request&) { return server::Response{200, "text/plain", "ok", {}}; });
  if (!http.Start().ok()) _exit(3);
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(tcp_port));
  ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::listen(lfd, 1024);
  std::thread([lfd] {
    while (true) {
      int c = ::accept(lfd, nullptr, nullptr);
      if (c >= 0) ::close(c);
    }
  }).detach();
  Health health;
  grpc::ServerBuilder b;
  b.AddListeningPort("127.0.0.1:" + std::to_string(grpc_port), grpc::InsecureServerCredentials());
  b.RegisterService(&health);
  auto gs = b.BuildAndStart();
  testing::FakeRuntime fake(cri_sock);
  fake.AddImage("busybox:1.35");
  if (!gs || !fake.Start()) _exit(4);
  while (true) pause();
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int pods = argc > 1 ? std::atoi(argv[1]) : 100;
  int window = argc > 2 ? std::atoi(argv[2]) : 20;
  log::SetVerbosity(0);
  using kubelet::testing::FreePort;
  int http_port = FreePort(), tcp_port = FreePort(), grpc_port = FreePort();
  std::string dir = "/tmp/kcpp-probe-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::string sock = dir + "/cri.sock";
  pid_t child = fork();
  if (child == 0) Serve(http_port, tcp_port, grpc_port, sock);

  cri::RemoteOptions ro;
  ro.runtime_endpoint = "unix://" + sock;
  ro.timeout = std::chrono::seconds(10);
  auto remote = cri::NewRemoteRuntime(ro);
  for (int i = 0; i < 100 && !remote->Version().ok(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // One running container for the exec probes.
  rt::PodSandboxConfig sc;
  sc.mutable_metadata()->set_name("bench");
  sc.mutable_metadata()->set_uid("bench-uid");
  sc.mutable_metadata()->set_namespace_("default");
  sc.set_log_directory(dir);
  auto sb = remote->RunPodSandbox(sc, "");
  rt::ContainerConfig cc;
  cc.mutable_metadata()->set_name("c");
  cc.mutable_image()->set_image("busybox:1.35");
  cc.set_log_path("c.log");
  auto cid = sb.ok() ? remote->CreateContainer(*sb, cc, sc) : absl::StatusOr<std::string>(sb.status());
  if (!cid.ok() || !remote->StartContainer(*cid).ok()) {
    std::fprintf(stderr, "could not start the exec target: %s\n", std::string(cid.status().message()).c_str());
    kill(child, SIGKILL);
    return 1;
  }
  // Give the child's servers a moment to listen.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  std::printf("kubelet CPU per 1,000 probes (%d pods, one readiness probe each, periodSeconds 1, %d s per kind)\n", pods, window);
  std::printf("%-10s %12s %14s %18s\n", "kind", "probes", "CPU s", "CPU ms / 1000");
  const std::vector<std::pair<std::string, std::string>> kinds = {
      {"exec", R"({"exec":{"command":["true"]}})"},
      {"httpGet", R"({"httpGet":{"path":"/healthz","port":)" + std::to_string(http_port) + "}}"},
      {"tcpSocket", R"({"tcpSocket":{"port":)" + std::to_string(tcp_port) + "}}"},
      {"grpc", R"({"grpc":{"port":)" + std::to_string(grpc_port) + "}}"}};
  FakeClock clock(std::chrono::system_clock::now());
  for (const auto& [kind, handler] : kinds) {
    std::string id = *cid;
    prober::ProbeManager::Deps d;
    d.exec = [&remote](const std::string& c, const std::vector<std::string>& cmd, Duration t) { return remote->ExecSync(c, cmd, t); };
    d.clock = &clock;
    d.pod_view = [id](const std::string&) -> std::optional<prober::PodView> {
      prober::PodView v;
      v.phase = "Running";
      v.pod_ip = "127.0.0.1";
      v.containers["c"] = prober::ContainerView{id, true, false, true, TimePoint()};
      return v;
    };
    prober::ProbeManager::Options po;
    po.executors = 4;
    prober::ProbeManager m(d, po);
    for (int i = 0; i < pods; ++i) {
      nlohmann::json j = {{"apiVersion", "v1"},
                          {"kind", "Pod"},
                          {"metadata", {{"name", "p" + std::to_string(i)}, {"namespace", "default"}, {"uid", "uid-" + std::to_string(i)}}},
                          {"spec", {{"containers", {{{"name", "c"}, {"image", "x:1"}}}}}}};
      j["spec"]["containers"][0]["readinessProbe"] = nlohmann::json::parse(handler);
      j["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = 1;
      api::ApplyPodDefaults(j);
      m.AddPod(*api::DecodePod(j));
    }
    auto count = [&m](const char* result) {
      double n = 0;
      for (const auto& fam : m.registry().Collect())
        if (fam.name == "prober_probe_total")
          for (const auto& metric : fam.metric)
            for (const auto& l : metric.label)
              if (l.name == "result" && l.value == result) n += metric.counter.value;
      return n;
    };
    m.Start();
    std::this_thread::sleep_for(std::chrono::seconds(2));  // warm up: connections, first rounds
    double p0 = count("successful") + count("failed");
    double c0 = CpuSeconds();
    std::this_thread::sleep_for(std::chrono::seconds(window));
    double c1 = CpuSeconds();
    double p1 = count("successful") + count("failed");
    double failed = count("failed");
    m.Stop();
    double probes = p1 - p0;
    std::printf("%-10s %12.0f %14.3f %18.1f%s\n", kind.c_str(), probes, c1 - c0, probes > 0 ? (c1 - c0) * 1e6 / probes : 0.0,
                failed > 0 ? "  (some failed)" : "");
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  std::filesystem::remove_all(dir);
  return 0;
}

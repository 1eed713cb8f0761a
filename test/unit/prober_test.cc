// Each probe kind against a real endpoint on loopback (an HTTP(S) server, a
// TCP listener, a gRPC server with the standard health service), and the
// worker state machine (thresholds, on-hold, initial values, initial delay).
#include <gtest/gtest.h>

#include "common/test_util.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <prometheus/text_serializer.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "runtime/v1/api.grpc.pb.h"
#include "kubelet/api/codec.h"
#include "kubelet/prober/prober.h"
#include "kubelet/server/http_server.h"

namespace kubelet::prober {
namespace {

using kubelet::testing::WaitUntil;
using server::Request;
using server::Response;

class HTTPProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions so;
    so.address = "127.0.0.1";
    srv_ = std::make_unique<server::HttpServer>(so);
    srv_->Handle("/ok", [](const Request&) { return Response{200, "text/plain", "ok", {}}; });
    srv_->Handle("/fail", [](const Request&) { return Response{500, "text/plain", "boom", {}}; });
    srv_->Handle("/local", [](const Request&) { return Response{302, "text/plain", "", {{"Location", "/ok"}}}; });
    srv_->Handle("/local-fail", [](const Request&) { return Response{302, "text/plain", "", {{"Location", "/fail"}}}; });
    srv_->Handle("/loop", [](const Request&) { return Response{302, "text/plain", "", {{"Location", "/loop"}}}; });
    // A redirect to another host is not followed: the 3xx counts as success (upstream's warning).
    srv_->Handle("/away", [](const Request&) {
      return Response{301, "text/plain", "moved", {{"Location", "http://other.invalid/"}}};
    });
    srv_->Handle("/slow", [](const Request&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      return Response{200, "text/plain", "late", {}};
    });
    srv_->Handle("/headers", [](const Request& r) {
      auto ua = r.headers.find("user-agent");
      auto x = r.headers.find("x-probe");
      auto accept = r.headers.find("accept");
      bool ok = ua != r.headers.end() && ua->second == "kube-probe/1.31" && x != r.headers.end() && x->second == "yes" &&
                accept != r.headers.end() && accept->second == "*/*";
      return Response{ok ? 200 : 400, "text/plain", "", {}};
    });
    ASSERT_TRUE(srv_->Start().ok());
  }
  void TearDown() override { srv_->Stop(); }

  ProbeResult Get(const std::string& path, Duration timeout = std::chrono::seconds(1), std::vector<api::HTTPHeader> h = {}) {
    api::ProbeHandler::HTTPGet get;
    get.path = path;
    get.headers = std::move(h);
    return Prober::RunHTTP(get, "127.0.0.1", srv_->port(), timeout);
  }

  std::unique_ptr<server::HttpServer> srv_;
};

TEST_F(HTTPProbeTest, StatusCodesRedirectsAndTimeouts) {
  EXPECT_EQ(Get("/ok").outcome, Outcome::kSuccess);
  auto r = Get("/fail");
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_EQ(r.output, "HTTP probe failed with statuscode: 500");
  EXPECT_EQ(Get("/local").outcome, Outcome::kSuccess);
  EXPECT_EQ(Get("/local-fail").outcome, Outcome::kFailure);
  r = Get("/loop");
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_NE(r.output.find("stopped after 10 redirects"), std::string::npos) << r.output;
  r = Get("/away");
  EXPECT_EQ(r.outcome, Outcome::kWarning);
  r = Get("/slow", std::chrono::seconds(1));
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_NE(r.output.find("Client.Timeout exceeded"), std::string::npos) << r.output;
  EXPECT_EQ(Get("/headers", std::chrono::seconds(1), {{"X-Probe", "yes"}}).outcome, Outcome::kSuccess);
  EXPECT_EQ(Get("/headers").outcome, Outcome::kFailure);
  EXPECT_EQ(Get("/missing").outcome, Outcome::kFailure);  // 404
}

TEST_F(HTTPProbeTest, HTTPSWithoutVerification) {
  auto dir = std::filesystem::temp_directory_path() / ("probe-tls-" + std::to_string(getpid()));
  std::string cert, key;
  ASSERT_TRUE(server::EnsureSelfSignedCert(dir.string(), "localhost", &cert, &key).ok());
  server::ServerOptions so;
  so.address = "127.0.0.1";
  so.tls = true;
  so.tls_options = {cert, key, ""};
  server::HttpServer tls(so);
  tls.Handle("/healthz", [](const Request& r) { return Response{r.tls ? 200 : 500, "text/plain", "", {}}; });
  ASSERT_TRUE(tls.Start().ok());
  api::ProbeHandler::HTTPGet get;
  get.path = "/healthz";
  get.scheme = "HTTPS";
  EXPECT_EQ(Prober::RunHTTP(get, "127.0.0.1", tls.port(), std::chrono::seconds(2)).outcome, Outcome::kSuccess);
  tls.Stop();
  std::filesystem::remove_all(dir);
}

TEST(TCPProbe, OpenAndClosedPorts) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  EXPECT_EQ(Prober::RunTCP("127.0.0.1", port, std::chrono::seconds(1)).outcome, Outcome::kSuccess);
  ::close(fd);
  auto r = Prober::RunTCP("127.0.0.1", port, std::chrono::seconds(1));
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_EQ(r.output, "dial tcp 127.0.0.1:" + std::to_string(port) + ": connect: Connection refused");
}

// grpc.health.v1 as servers implement it: "" is the server, others by service name; unknown names are NOT_FOUND.
class TestHealth final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* resp) override {
    using S = grpc::health::v1::HealthCheckResponse;
    if (req->service().empty() || req->service() == "web") {
      resp->set_status(S::SERVING);
    } else if (req->service() == "db") {
      resp->set_status(S::NOT_SERVING);
    } else {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
    }
    return grpc::Status::OK;
  }
};

TEST(GRPCProbe, StandardHealthService) {
  TestHealth health;
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&health);
  auto server = b.BuildAndStart();
  ASSERT_TRUE(server);
  EXPECT_EQ(Prober::RunGRPC("127.0.0.1", port, std::nullopt, std::chrono::seconds(2)).outcome, Outcome::kSuccess);
  EXPECT_EQ(Prober::RunGRPC("127.0.0.1", port, std::string("web"), std::chrono::seconds(2)).outcome, Outcome::kSuccess);
  auto r = Prober::RunGRPC("127.0.0.1", port, std::string("db"), std::chrono::seconds(2));
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_EQ(r.output, "service unhealthy (responded with \"NOT_SERVING\")");
  r = Prober::RunGRPC("127.0.0.1", port, std::string("nope"), std::chrono::seconds(2));
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_EQ(r.output, "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service");
  server->Shutdown();
  r = Prober::RunGRPC("127.0.0.1", port, std::nullopt, std::chrono::seconds(1));
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_NE(r.output.find("timeout: failed to connect service"), std::string::npos) << r.output;
  // A server without the health service (a CRI runtime service answering nothing, for one).
  grpc::ServerBuilder plain;
  int plain_port = 0;
  runtime::v1::RuntimeService::Service other;
  plain.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &plain_port);
  plain.RegisterService(&other);
  auto bare = plain.BuildAndStart();
  ASSERT_TRUE(bare);
  r = Prober::RunGRPC("127.0.0.1", plain_port, std::nullopt, std::chrono::seconds(2));
  EXPECT_EQ(r.outcome, Outcome::kFailure);
  EXPECT_EQ(r.output.rfind("server does not implement the grpc health protocol (grpc.health.v1.Health): ", 0), 0u) << r.output;
  bare->Shutdown();
}

TEST(Ports, NamedAndNumeric) {
  std::vector<api::ContainerPort> ports = {{"http", 8080, 0, "TCP", ""}};
  api::IntOrString named;
  named.is_int = false;
  named.str_value = "http";
  EXPECT_EQ(*ResolvePort(named, ports), 8080);
  named.str_value = "grpc";
  EXPECT_FALSE(ResolvePort(named, ports).ok());
  api::IntOrString n;
  n.int_value = 9090;
  EXPECT_EQ(*ResolvePort(n, ports), 9090);
}

// --- the worker state machine ---------------------------------------------------

class ManagerTest : public ::testing::Test {
 protected:
  api::Pod MakePod(const std::string& probes) {
    nlohmann::json j = nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns","uid":"u1"},
      "spec":{"containers":[{"name":"c","image":"x:1"}]}})");
    j["spec"]["containers"][0].update(nlohmann::json::parse(probes));
    api::ApplyPodDefaults(j);
    return *api::DecodePod(j);
  }
  void Start() {
    ProbeManager::Deps d;
    d.exec = [this](const std::string& id, const std::vector<std::string>&, Duration) -> absl::StatusOr<cri::rt::ExecSyncResponse> {
      bool healthy = healthy_;
      ++execs_;
      if (id != container_id_) return absl::NotFoundError("no such container");
      ++(healthy ? oks_ : fails_);
      cri::rt::ExecSyncResponse r;
      r.set_exit_code(healthy ? 0 : 1);
      return r;
    };
    d.recorder = &recorder_;
    d.clock = &clock_;
    d.pod_view = [this](const std::string&) -> std::optional<PodView> {
      std::lock_guard<std::mutex> l(mu_);
      return view_;
    };
    d.on_change = [this](const std::string&) { ++changes_; };
    m_ = std::make_unique<ProbeManager>(std::move(d));
    m_->Start();
  }
  void SetRunning(const std::string& id, bool started = true) {
    std::lock_guard<std::mutex> l(mu_);
    container_id_ = id;
    PodView v;
    v.phase = "Running";
    v.pod_ip = "127.0.0.1";
    v.containers["c"] = ContainerView{id, true, false, started, clock_.Now()};
    view_ = v;
  }
  void TearDown() override {
    if (m_) m_->Stop();
  }
  std::mutex mu_;
  std::optional<PodView> view_;
  std::string container_id_;
  std::atomic<bool> healthy_{true};
  std::atomic<int> execs_{0}, changes_{0}, oks_{0}, fails_{0};
  FakeClock clock_{std::chrono::system_clock::now()};
  events::LoggingRecorder recorder_;
  std::unique_ptr<ProbeManager> m_;
};

TEST_F(ManagerTest, LivenessNeedsFailureThresholdThenHolds) {
  Start();
  auto pod = MakePod(R"({"livenessProbe":{"exec":{"command":["x"]},"periodSeconds":1,"failureThreshold":2}})");
  SetRunning("c1");
  m_->AddPod(pod);
  EXPECT_EQ(m_->WorkerCount(), 1u);
  ASSERT_TRUE(WaitUntil([&] { return m_->Liveness("c1") == std::optional<bool>(true) && execs_ >= 1; }));
  healthy_ = false;
  ASSERT_TRUE(WaitUntil([&] { return m_->Liveness("c1") == std::optional<bool>(false); }, std::chrono::milliseconds(10000)));
  EXPECT_GE(fails_.load(), 2);  // failureThreshold consecutive failures
  // On hold: no more probing of this instance.
  int held = execs_;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(execs_, held);
  // A new instance starts from the initial value (success) and is probed again.
  healthy_ = true;
  SetRunning("c2");
  m_->Poke("u1");
  ASSERT_TRUE(WaitUntil([&] { return execs_ > held && m_->Liveness("c2") == std::optional<bool>(true); }));
  EXPECT_FALSE(m_->Liveness("c1").has_value());  // the old instance's result is gone
  bool event = false;
  for (const auto& e : recorder_.Recent()) event |= e.reason == "Unhealthy" && e.message.rfind("Liveness probe failed: ", 0) == 0;
  EXPECT_TRUE(event);
  prometheus::TextSerializer ser;
  std::string text = ser.Serialize(m_->registry().Collect());
  EXPECT_NE(text.find("prober_probe_total{container=\"c\",namespace=\"ns\",pod=\"p\",pod_uid=\"u1\",probe_type=\"Liveness\",result=\"failed\"}"),
            std::string::npos) << text;
  m_->RemovePod("u1");
  EXPECT_EQ(m_->WorkerCount(), 0u);
  text = ser.Serialize(m_->registry().Collect());
  EXPECT_EQ(text.find("pod_uid=\"u1\""), std::string::npos) << "metrics of a removed pod must go";
}

TEST_F(ManagerTest, ReadinessStartsFalseAndNeedsSuccessThreshold) {
  Start();
  healthy_ = false;
  auto pod = MakePod(R"({"readinessProbe":{"exec":{"command":["x"]},"periodSeconds":1,"successThreshold":2}})");
  SetRunning("c1");
  m_->AddPod(pod);
  ASSERT_TRUE(WaitUntil([&] { return execs_ >= 1; }));
  EXPECT_EQ(m_->Readiness("c1"), std::optional<bool>(false));
  healthy_ = true;
  ASSERT_TRUE(WaitUntil([&] { return m_->Readiness("c1") == std::optional<bool>(true); }, std::chrono::milliseconds(10000)));
  EXPECT_GE(oks_.load(), 2);  // successThreshold consecutive successes
  // Readiness failure never holds: it flips back and forth.
  healthy_ = false;
  ASSERT_TRUE(WaitUntil([&] { return m_->Readiness("c1") == std::optional<bool>(false); }, std::chrono::milliseconds(10000)));
}

TEST_F(ManagerTest, StartupGatesLivenessAndInitialDelayWaits) {
  Start();
  auto pod = MakePod(R"({"startupProbe":{"exec":{"command":["x"]},"periodSeconds":1},
                         "livenessProbe":{"exec":{"command":["x"]},"periodSeconds":1,"initialDelaySeconds":30}})");
  SetRunning("c1", /*started=*/false);
  m_->AddPod(pod);
  ASSERT_TRUE(WaitUntil([&] { return m_->Startup("c1") == std::optional<bool>(true); }));
  int after_startup = execs_;
  // Started, but the liveness probe waits out its initial delay (the clock does not move).
  SetRunning("c1", /*started=*/true);
  m_->Poke("u1");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(execs_, after_startup);
  clock_.Step(std::chrono::seconds(31));
  ASSERT_TRUE(WaitUntil([&] { return execs_ > after_startup; }, std::chrono::milliseconds(5000)));
}

TEST_F(ManagerTest, TerminalPodStopsItsWorkers) {
  Start();
  auto pod = MakePod(R"({"readinessProbe":{"exec":{"command":["x"]},"periodSeconds":1}})");
  SetRunning("c1");
  m_->AddPod(pod);
  ASSERT_TRUE(WaitUntil([&] { return execs_ >= 1; }));
  {
    std::lock_guard<std::mutex> l(mu_);
    view_->phase = "Succeeded";
  }
  ASSERT_TRUE(WaitUntil([&] { return m_->WorkerCount() == 0; }, std::chrono::milliseconds(5000)));
}

// Issue 10: hung exec probes (a runtime that never answers until the deadline) take one thread each, never the
// probes of other pods: the pool grows past its base size while probes are due, and shrinks back when idle.
TEST(ProbeManagerPool, HungExecsDoNotStarveOtherProbes) {
  constexpr int kHung = 6;  // more than the base pool
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> hung{0}, healthy_runs{0};
  ProbeManager::Deps d;
  d.exec = [&](const std::string& id, const std::vector<std::string>&, Duration) -> absl::StatusOr<cri::rt::ExecSyncResponse> {
    if (id.rfind("hung", 0) == 0) {
      ++hung;
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return release; });
    } else {
      ++healthy_runs;
    }
    cri::rt::ExecSyncResponse r;
    r.set_exit_code(0);
    return r;
  };
  FakeClock clock{std::chrono::system_clock::now()};
  d.clock = &clock;
  d.pod_view = [&](const std::string& uid) -> std::optional<PodView> {
    PodView v;
    v.phase = "Running";
    v.containers["c"] = ContainerView{uid == "ok" ? "ok-c" : "hung-" + uid, true, false, true, clock.Now()};
    return v;
  };
  ProbeManager::Options o;
  o.executors = 2;
  o.idle_timeout = std::chrono::milliseconds(300);
  ProbeManager m(std::move(d), o);
  m.Start();
  auto pod = [](const std::string& uid) {
    nlohmann::json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", uid}, {"namespace", "ns"}, {"uid", uid}}}};
    j["spec"]["containers"] = {{{"name", "c"}, {"image", "x:1"},
                                {"livenessProbe", {{"exec", {{"command", {"x"}}}}, {"periodSeconds", 1}, {"timeoutSeconds", 30}}}}};
    api::ApplyPodDefaults(j);
    return *api::DecodePod(j);
  };
  for (int i = 0; i < kHung; ++i) m.AddPod(pod("p" + std::to_string(i)));
  ASSERT_TRUE(WaitUntil([&] { return hung.load() == kHung; }, std::chrono::seconds(10))) << hung.load();
  m.AddPod(pod("ok"));
  // The healthy pod is probed every period while all the others hang.
  EXPECT_TRUE(WaitUntil([&] { return healthy_runs.load() >= 3; }, std::chrono::seconds(10))) << healthy_runs.load();
  EXPECT_GT(m.ExecutorCount(), static_cast<size_t>(kHung));
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  m.RemovePod("ok");
  for (int i = 0; i < kHung; ++i) m.RemovePod("p" + std::to_string(i));
  // Idle extra threads end: back to the base pool.
  EXPECT_TRUE(WaitUntil([&] { return m.ExecutorCount() == 2; }, std::chrono::seconds(10))) << m.ExecutorCount();
  m.Stop();
}

}  // namespace
}  // namespace kubelet::prober

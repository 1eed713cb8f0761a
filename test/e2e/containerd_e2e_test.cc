// End to end on the real stack: our kubelet binary, a private containerd +
// runc started by the ctest fixture (test/e2e/lab.sh), Debian's CNI bridge
// plugin, our pause image and a busybox image made offline. Traffic goes
// only to loopback and into the pod network namespaces this run created.
#include <gtest/gtest.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include "common/calls_log.h"
#include "common/stream_client.h"
#include "common/test_util.h"
#include "fake/fake_apiserver.h"
#include "fake/fake_runtime.h"
#include "kubelet/certificate/certificate_manager.h"
#include "kubelet/server/http_server.h"
#include "kubelet/util/mount.h"
#include "podresources/v1/api.grpc.pb.h"
#include "runtime/v1/api.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
namespace rt = ::runtime::v1;
using json = nlohmann::json;

template <typename F>
bool WaitUntil(F&& pred, std::chrono::seconds limit = std::chrono::seconds(60)) {
  return kubelet::testing::WaitUntil(std::forward<F>(pred), std::chrono::duration_cast<std::chrono::milliseconds>(limit),
                                     std::chrono::milliseconds(100));
}

using kubelet::testing::FreePort;
using kubelet::testing::ReadEnvFile;
using kubelet::testing::StreamClient;

size_t Append(char* d, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(d, s * n);
  return s * n;
}

// A request with a bearer token and/or a client certificate (the kubelet's serving certificate is self-signed
// here): (status, body), status 0 when the request itself failed.
std::pair<long, std::string> HttpDo(const std::string& method, const std::string& url, const std::string& data,
                                    long timeout_s = 20, const std::string& token = "", const std::string& cert = "",
                                    const std::string& key = "") {
  std::string body;
  long code = 0;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, data.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(data.size()));
  }
  curl_slist* headers = nullptr;
  if (!token.empty()) {
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  }
  if (!cert.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, key.c_str());
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  curl_slist_free_all(headers);
  return {code, body};
}

// Runs promtool's metric lint over `file` and returns its findings, leaving out the upstream kubelet's own names
// that the lint flags (counters without "_total", a "_ms" histogram): dashboards and alerts use those names as they
// are, so they stay; anything else flagged is ours to fix.
std::string PromtoolFindingsBesideUpstreamNames(const std::string& file) {
  std::system(("promtool check metrics < " + file + " > " + file + ".lint 2>&1").c_str());
  std::ifstream lint(file + ".lint");
  std::string out, line;
  while (std::getline(lint, line))
    if (line.rfind("kubelet_certificate_manager_client_expiration_renew_errors ", 0) != 0 &&
        line.rfind("kubelet_server_expiration_renew_errors ", 0) != 0 &&
        line.rfind("kubelet_topology_manager_admission_duration_ms ", 0) != 0 &&
        line.rfind("kubelet_evictions ", 0) != 0 && line.rfind("kubelet_preemptions ", 0) != 0)
      out += line + "\n";
  return out;
}

std::pair<long, std::string> HttpGet(const std::string& url, long timeout_s = 5, const std::string& token = "",
                                     const std::string& cert = "", const std::string& key = "") {
  return HttpDo("GET", url, "", timeout_s, token, cert, key);
}

// A command's stdout (for reading host state such as iptables rules; nothing is changed through it).
std::string RunCommand(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    ::pclose(f);
  }
  return out;
}

// Removes a test folder; what a kubelet mounted under it (its root directory, which it makes rshared, and volumes)
// is unmounted first, deepest first, so nothing is deleted through a mount.
void UnmountUnder(const fs::path& dir) {
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(dir, ec);
  for (const auto& m : kubelet::mount::MountsUnder(ec ? dir.string() : canon.string())) ::umount2(m.c_str(), MNT_DETACH);
}

void RemoveTree(const fs::path& dir) {
  UnmountUnder(dir);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

class ContainerdE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* lab = std::getenv("KUBELET_E2E_LAB");
    const char* bin = std::getenv("KUBELET_BINARY");
    ASSERT_TRUE(lab && bin) << "KUBELET_E2E_LAB and KUBELET_BINARY must be set (ctest sets them)";
    env_ = ReadEnvFile(std::string(lab) + "/" + lab_containerd_ + "/env");
    ASSERT_TRUE(env_.count("CONTAINERD_SOCK")) << "the containerd fixture did not start (lab.sh up)";
    binary_ = bin;
    work_ = fs::path(lab) / WorkName();
    RemoveTree(work_);
    fs::create_directories(work_ / "manifests");
    port_ = FreePort();
    healthz_port_ = FreePort();
    std::ofstream(work_ / "config.yaml")
        << "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        << "staticPodPath: manifests\n"
        << "containerRuntimeEndpoint: unix://" << env_["CONTAINERD_SOCK"] << "\n"
        << "address: 127.0.0.1\nport: " << port_ << "\nhealthzPort: " << healthz_port_ << "\n"
        << "podLogsDir: " << (work_ / "logs").string() << "\n"
        << "cgroupRoot: " << env_["CGROUP_ROOT"] << "\n"
        << "fileCheckFrequency: 5s\n"
        // Eviction and image GC only where a test asks: a fuller disk on the test machine must not evict or GC here.
        << (extra_config_.find("evictionHard") == std::string::npos
                ? "evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}\n"
                : "")
        << (extra_config_.find("imageGCHighThresholdPercent") == std::string::npos ? "imageGCHighThresholdPercent: 100\n" : "")
        << (extra_config_.find("authentication:") == std::string::npos
                ? "authentication:\n  anonymous:\n    enabled: true\nauthorization:\n  mode: AlwaysAllow\n"
                : "");
    std::ofstream(work_ / "config.yaml", std::ios::app) << extra_config_;
    auto ch = grpc::CreateChannel("unix:" + env_["CONTAINERD_SOCK"], grpc::InsecureChannelCredentials());
    cri_ = rt::RuntimeService::NewStub(ch);
    StartKubelet();
  }

  static void TearDownTestSuite() {
    StopKubelet(SIGTERM);
    // Leave nothing running: remove every pod this run made.
    fs::remove_all(work_ / "manifests");
    if (cri_) {
      rt::ListPodSandboxRequest req;
      rt::ListPodSandboxResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      if (cri_->ListPodSandbox(&ctx, req, &resp).ok()) {
        for (const auto& s : resp.items()) {
          grpc::ClientContext c1, c2;
          rt::StopPodSandboxRequest stop;
          stop.set_pod_sandbox_id(s.id());
          rt::StopPodSandboxResponse r1;
          cri_->StopPodSandbox(&c1, stop, &r1);
          rt::RemovePodSandboxRequest rm;
          rm.set_pod_sandbox_id(s.id());
          rt::RemovePodSandboxResponse r2;
          cri_->RemovePodSandbox(&c2, rm, &r2);
        }
      }
    }
    // The kubelet's mounts (its rshared root directory, volumes of pods it did not tear down) go; logs stay.
    UnmountUnder(work_);
    // A suite's knobs end with it.
    work_name_.clear();
    extra_config_.clear();
    extra_args_.clear();
  }

  static void StartKubelet(bool wait_healthy = true) {
    std::string log = (work_ / ("kubelet-" + std::to_string(++starts_) + ".log")).string();
    std::vector<std::string> args = {binary_, "--config", (work_ / "config.yaml").string(), "--root-dir", (work_ / "root").string(),
                                     "--cert-dir", (work_ / "pki").string(), "--hostname-override", "e2e-node", "--v=2"};
    if (!kubeconfig_.empty()) {
      args.push_back("--kubeconfig");
      args.push_back(kubeconfig_);
    }
    for (const auto& a : extra_args_) args.push_back(a);
    pid_ = fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      ::chdir(work_.c_str());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary_.c_str(), argv.data());
      _exit(127);
    }
    if (!wait_healthy) return;
    ASSERT_TRUE(WaitUntil([] { return HttpGet("http://127.0.0.1:" + std::to_string(healthz_port_) + "/healthz").first == 200; },
                          std::chrono::seconds(30)))
        << "kubelet did not become healthy; log: " << log;
    // The healthz port listens before the main one: wait until the main port accepts connections too (a TCP
    // connect, not a request: with serverTLSBootstrap no handshake succeeds before the serving CSR is approved).
    ASSERT_TRUE(WaitUntil([] {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
      ::close(fd);
      return ok;
    }, std::chrono::seconds(30)))
        << "the kubelet's port " << port_ << " never listened; log: " << log;
  }

  static void StopKubelet(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  static json Pods() {
    auto [code, body] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/pods");
    if (code != 200) return json::array();
    try {
      return json::parse(body)["items"];
    } catch (...) {
      return json::array();
    }
  }

  static json Pod(const std::string& name) {
    for (const auto& p : Pods())
      if (p["metadata"]["name"] == name) return p;
    return nullptr;
  }

  static bool Running(const json& p, int restarts = -1) {
    if (p.is_null() || p["status"]["phase"] != "Running") return false;
    for (const auto& c : p["status"]["containerStatuses"]) {
      if (!c["state"].contains("running")) return false;
      if (restarts >= 0 && c["restartCount"] != restarts) return false;
    }
    return !p["status"]["containerStatuses"].empty();
  }

  static std::vector<rt::Container> Containers(const std::string& uid, bool running_only = true) {
    rt::ListContainersRequest req;
    (*req.mutable_filter()->mutable_label_selector())["io.kubernetes.pod.uid"] = uid;
    if (running_only) req.mutable_filter()->mutable_state()->set_state(rt::CONTAINER_RUNNING);
    rt::ListContainersResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.set_wait_for_ready(true);  // a containerd restarting (the lifecycle test restarts it) is waited for, not failed
    EXPECT_TRUE(cri_->ListContainers(&ctx, req, &resp).ok());
    return {resp.containers().begin(), resp.containers().end()};
  }

  static int Sandboxes(const std::string& uid) {
    rt::ListPodSandboxRequest req;
    (*req.mutable_filter()->mutable_label_selector())["io.kubernetes.pod.uid"] = uid;
    rt::ListPodSandboxResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    EXPECT_TRUE(cri_->ListPodSandbox(&ctx, req, &resp).ok());
    return resp.items_size();
  }

  static int ContainerPid(const std::string& id) {
    rt::ContainerStatusRequest req;
    req.set_container_id(id);
    req.set_verbose(true);
    rt::ContainerStatusResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!cri_->ContainerStatus(&ctx, req, &resp).ok()) return -1;
    auto it = resp.info().find("info");
    if (it == resp.info().end()) return -1;
    return json::parse(it->second).value("pid", -1);
  }

  // ExecSync through containerd: (exit code, stdout); -1 when the call itself failed.
  static std::pair<int, std::string> Exec(const std::string& id, const std::vector<std::string>& cmd) {
    rt::ExecSyncRequest req;
    req.set_container_id(id);
    for (const auto& a : cmd) req.add_cmd(a);
    req.set_timeout(5);
    rt::ExecSyncResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!cri_->ExecSync(&ctx, req, &resp).ok()) return {-1, ""};
    return {resp.exit_code(), resp.stdout()};
  }

  static void WriteManifest(const std::string& file, const std::string& text) {
    std::string tmp = (work_ / "manifests" / ("." + file)).string();
    std::ofstream(tmp) << text;
    fs::rename(tmp, work_ / "manifests" / file);
  }

  static std::string WebManifest(const std::string& greeting) {
    return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n"
           "  terminationGracePeriodSeconds: 3\n  containers:\n  - name: httpd\n"
           "    image: kubelet-cpp.local/busybox:1.35\n"
           "    command: [sh, -c, 'echo \"$GREETING\" > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']\n"
           "    env: [{name: GREETING, value: '" + greeting + "'}]\n    ports: [{containerPort: 8080}]\n";
  }

  static std::string WorkName() { return !work_name_.empty() ? work_name_ : kubeconfig_.empty() ? "kubelet" : "kubelet-cluster"; }
  static inline std::string kubeconfig_;
  static inline std::string lab_containerd_ = "containerd";  // which of the lab's containerds
  static inline std::string work_name_;
  static inline std::vector<std::string> extra_args_;
  static inline std::string extra_config_;
  static inline std::map<std::string, std::string> env_;
  static inline std::string binary_;
  static inline fs::path work_;
  static inline int port_ = 0;
  static inline int healthz_port_ = 0;
  static inline pid_t pid_ = -1;
  static inline int starts_ = 0;
  static inline std::unique_ptr<rt::RuntimeService::Stub> cri_;
};

TEST_F(ContainerdE2E, StaticPodLifecycle) {
  // A broken manifest beside the good one is skipped and changes nothing.
  WriteManifest("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: broken\nspec: [\n");
  WriteManifest("web.yaml", WebManifest("hello e2e"));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("web-e2e-node"), 0); })) << Pods().dump(2);
  json pod = Pod("web-e2e-node");
  std::string uid = pod["metadata"]["uid"];
  std::string ip = pod["status"]["podIP"];
  std::string subnet = env_["CNI_SUBNET"];
  EXPECT_EQ(ip.rfind(subnet.substr(0, subnet.rfind('.')), 0), 0u) << ip << " not in " << subnet;
  EXPECT_EQ(pod["status"]["containerStatuses"][0]["containerID"].get<std::string>().rfind("containerd://", 0), 0u);
  EXPECT_FALSE(pod["status"]["containerStatuses"][0]["imageID"].get<std::string>().empty());
  EXPECT_EQ(Pods().size(), 1u);  // the broken manifest did not become a pod

  // The container serves on the pod network (into the netns this run made).
  ASSERT_TRUE(WaitUntil([&] { return HttpGet("http://" + ip + ":8080/index.html").second == "hello e2e\n"; },
                        std::chrono::seconds(20)));

  // Labels other CRI tools read.
  auto cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].labels().at("io.kubernetes.pod.name"), "web-e2e-node");
  EXPECT_EQ(cs[0].labels().at("io.kubernetes.pod.namespace"), "default");
  EXPECT_EQ(cs[0].labels().at("io.kubernetes.container.name"), "httpd");
  std::string first_id = cs[0].id();

  // Killing the container's process restarts it with restartCount 1.
  int pid = ContainerPid(first_id);
  ASSERT_GT(pid, 1);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("web-e2e-node"), 1); })) << Pod("web-e2e-node").dump(2);
  pod = Pod("web-e2e-node");
  EXPECT_EQ(pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 137);
  cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  std::string second_id = cs[0].id();
  EXPECT_NE(second_id, first_id);

  // Killing and restarting the kubelet keeps the container.
  StopKubelet(SIGKILL);
  StartKubelet();
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("web-e2e-node"), 1); }));
  std::this_thread::sleep_for(std::chrono::seconds(3));  // several syncs and housekeeping rounds
  cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].id(), second_id);
  EXPECT_EQ(Sandboxes(uid), 1);

  // containerd restarting under the kubelet: the container keeps running and
  // the kubelet reconnects (CRI calls answer again, status stays current).
  const char* lab = std::getenv("KUBELET_E2E_LAB");
  std::string script = fs::path(__FILE__).parent_path().parent_path().parent_path() / "deploy/lab/containerd-restart.sh";
  ASSERT_EQ(std::system(("bash " + script + " " + std::string(lab) + "/containerd").c_str()), 0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_TRUE(WaitUntil([&] {
    auto now = Containers(uid);
    return now.size() == 1 && now[0].id() == second_id;
  }));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("web-e2e-node"), 1); }));
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(healthz_port_) + "/healthz").second, "ok");
  // Proof the kubelet talks to the new containerd: a crash is seen and restarted.
  pid = ContainerPid(second_id);
  ASSERT_GT(pid, 1);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("web-e2e-node"), 2); })) << Pod("web-e2e-node").dump(2);
  cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  std::string current_id = cs[0].id();

  // A broken manifest appearing now changes nothing either.
  WriteManifest("broken2.yaml", "kind: Pod\nmetadata: {name: noimage}\nspec:\n  containers: [{name: c}]\n");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].id(), current_id);

  // Editing the manifest replaces the pod.
  WriteManifest("web.yaml", WebManifest("edited"));
  std::string new_uid;
  ASSERT_TRUE(WaitUntil([&] {
    json p = Pod("web-e2e-node");
    if (!Running(p) || p["metadata"]["uid"] == uid) return false;
    new_uid = p["metadata"]["uid"];
    return true;
  }));
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; })) << "old pod not removed";
  std::string new_ip = Pod("web-e2e-node")["status"]["podIP"];
  ASSERT_TRUE(WaitUntil([&] { return HttpGet("http://" + new_ip + ":8080/index.html").second == "edited\n"; },
                        std::chrono::seconds(20)));

  // Removing it stops the pod within its grace period (3s; busybox httpd ignores SIGTERM).
  auto removed_at = std::chrono::steady_clock::now();
  fs::remove(work_ / "manifests" / "web.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Containers(new_uid).empty(); }, std::chrono::seconds(20)));
  double stop_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - removed_at).count();
  EXPECT_LT(stop_secs, 3.0 + 5.0) << "grace period 3s";
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(new_uid) == 0 && Pods().empty(); }, std::chrono::seconds(20)));
  EXPECT_FALSE(fs::exists(work_ / "root/pods" / new_uid));
}

TEST_F(ContainerdE2E, MetricsPassPromtoolAndHealthz) {
  const std::vector<std::string> names = {"kubelet_running_pods", "kubelet_running_containers", "kubelet_pod_start_duration_seconds",
                                          "kubelet_pleg_relist_duration_seconds", "kubelet_runtime_operations_total",
                                          "kubelet_runtime_operations_duration_seconds", "kubelet_started_pods_total"};
  // The running gauges come with the first housekeeping after the first relist (this test may run first).
  std::string body;
  WaitUntil([&] {
    auto [code, text] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/metrics");
    body = code == 200 ? text : "";
    return std::all_of(names.begin(), names.end(), [&](const std::string& n) { return body.find(n) != std::string::npos; });
  }, std::chrono::seconds(15));
  ASSERT_FALSE(body.empty());
  for (const auto& name : names) EXPECT_NE(body.find(name), std::string::npos) << name;
  std::string file = (work_ / "metrics.txt").string();
  std::ofstream(file) << body;
  std::string out = PromtoolFindingsBesideUpstreamNames(file);
  EXPECT_EQ(out, "") << "promtool check metrics:\n" << out;
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(healthz_port_) + "/healthz").second, "ok");
  EXPECT_EQ(HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/healthz").second, "ok");
}

// An init container, a sidecar and a main container on containerd, with
// probes of every kind the kubelet runs itself: tcpSocket (startup), httpGet
// (readiness) and exec (liveness, through CRI ExecSync).
TEST_F(ContainerdE2E, InitSidecarAndProbes) {
  fs::path out_dir = work_ / "prestop-out";
  fs::remove_all(out_dir);
  WriteManifest("layered.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: layered}
spec:
  terminationGracePeriodSeconds: 3
  volumes:
  - {name: work, emptyDir: {}}
  - {name: out, hostPath: {path: )" + out_dir.string() + R"(, type: DirectoryOrCreate}}
  initContainers:
  - name: setup
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'echo ready > /work/index.html']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: sidecar
    image: kubelet-cpp.local/busybox:1.35
    restartPolicy: Always
    command: [sh, -c, 'echo side > /tmp/side.html; echo sidecar up; exec httpd -f -p 9090 -h /tmp']
    startupProbe: {tcpSocket: {port: 9090}, periodSeconds: 1, failureThreshold: 30}
  containers:
  - name: app
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'touch /tmp/alive; echo app start; echo app warn >&2; exec httpd -f -p 8080 -h /work']
    terminationMessagePolicy: FallbackToLogsOnError
    lifecycle:
      preStop: {exec: {command: [sh, -c, 'echo stopping > /out/prestop']}}
    volumeMounts: [{name: work, mountPath: /work}, {name: out, mountPath: /out}]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
    livenessProbe: {exec: {command: [test, -f, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
)");
  auto condition = [](const json& p, const std::string& type) {
    if (p.is_null()) return std::string();
    for (const auto& c : p["status"]["conditions"])
      if (c["type"] == type) return c["status"].get<std::string>();
    return std::string();
  };
  ASSERT_TRUE(WaitUntil([&] { return Running(Pod("layered-e2e-node"), 0) && condition(Pod("layered-e2e-node"), "Ready") == "True"; },
                        std::chrono::seconds(60)))
      << Pod("layered-e2e-node").dump(2);
  json pod = Pod("layered-e2e-node");
  std::string uid = pod["metadata"]["uid"];
  std::string ip = pod["status"]["podIP"];
  const json& init = pod["status"]["initContainerStatuses"];
  ASSERT_EQ(init.size(), 2u);
  EXPECT_EQ(init[0]["state"]["terminated"]["reason"], "Completed");
  EXPECT_EQ(init[0]["state"]["terminated"]["exitCode"], 0);
  EXPECT_TRUE(init[1]["state"].contains("running"));
  EXPECT_EQ(init[1]["started"], true);
  EXPECT_EQ(condition(pod, "Initialized"), "True");
  // The init container's file is served by the main container; the sidecar serves beside it.
  EXPECT_EQ(HttpGet("http://" + ip + ":8080/index.html").second, "ready\n");
  EXPECT_EQ(HttpGet("http://" + ip + ":9090/side.html").second, "side\n");

  auto app_id = [&]() -> std::string {
    for (const auto& c : Containers(uid))
      if (c.metadata().name() == "app") return c.id();
    return "";
  };
  auto exec = [&](const std::string& id, std::vector<std::string> cmd) { return Exec(id, cmd).first == 0; };
  // Readiness: the page goes, the pod turns unready without a restart; it comes back, ready again.
  std::string first = app_id();
  ASSERT_FALSE(first.empty());
  ASSERT_TRUE(exec(first, {"mv", "/work/index.html", "/work/away.html"}));
  ASSERT_TRUE(WaitUntil([&] { return condition(Pod("layered-e2e-node"), "Ready") == "False"; }, std::chrono::seconds(20)));
  json unready = Pod("layered-e2e-node");
  ASSERT_FALSE(unready.is_null());
  EXPECT_EQ(unready["status"]["containerStatuses"][0]["restartCount"], 0) << unready.dump(2);
  ASSERT_TRUE(exec(first, {"mv", "/work/away.html", "/work/index.html"}));
  ASSERT_TRUE(WaitUntil([&] { return condition(Pod("layered-e2e-node"), "Ready") == "True"; }, std::chrono::seconds(20)));

  // Liveness: the marker goes, the kubelet kills the container and starts a new one.
  ASSERT_TRUE(exec(first, {"rm", "/tmp/alive"}));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("layered-e2e-node"), 1); }, std::chrono::seconds(60)))
      << Pod("layered-e2e-node").dump(2);
  EXPECT_NE(app_id(), first);
  // The completed init container did not run again.
  json restarted = Pod("layered-e2e-node");
  ASSERT_FALSE(restarted.is_null());
  EXPECT_EQ(restarted["status"]["initContainerStatuses"][0]["restartCount"], 0);

  // Logs: the sidecar's and the app's (both streams), the killed instance's with previous=true; the log links.
  std::string logs = "https://127.0.0.1:" + std::to_string(port_) + "/containerLogs/default/layered-e2e-node/";
  EXPECT_EQ(HttpGet(logs + "sidecar").second, "sidecar up\n");
  // stdout and stderr are separate pipes: their relative order in the log is the runtime's.
  auto sorted = [](std::string text) {
    std::vector<std::string> lines;
    std::stringstream ss(text);
    for (std::string l; std::getline(ss, l);) lines.push_back(l);
    std::sort(lines.begin(), lines.end());
    return lines;
  };
  const std::vector<std::string> both = {"app start", "app warn"};
  EXPECT_EQ(sorted(HttpGet(logs + "app").second), both);
  EXPECT_EQ(sorted(HttpGet(logs + "app?previous=true").second), both);
  EXPECT_EQ(sorted(HttpGet(logs + "app?tailLines=1").second).size(), 1u);
  std::string app_now = app_id();
  EXPECT_TRUE(fs::is_symlink(work_ / "containers" / ("layered-e2e-node_default_app-" + app_now + ".log")));
  // A liveness kill exits with SIGTERM's code, so the termination message falls back to the log's end.
  json last = restarted["status"]["containerStatuses"][0]["lastState"]["terminated"];
  EXPECT_EQ(sorted(last.value("message", "")), both) << last.dump();

  // The probes' own metrics.
  auto [code, body] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/metrics/probes");
  ASSERT_EQ(code, 200);
  EXPECT_NE(body.find("prober_probe_total{container=\"app\",namespace=\"default\",pod=\"layered-e2e-node\""), std::string::npos) << body;
  EXPECT_NE(body.find("probe_type=\"Liveness\",result=\"failed\""), std::string::npos) << body;

  // preStop runs before every kill, the liveness one too (it leaves a file in a hostPath volume), and on removal.
  EXPECT_TRUE(fs::exists(out_dir / "prestop"));
  fs::remove(out_dir / "prestop");
  fs::remove(work_ / "manifests" / "layered.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Containers(uid).empty() && Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
  std::ifstream prestop(out_dir / "prestop");
  std::string said;
  std::getline(prestop, said);
  EXPECT_EQ(said, "stopping") << "preStop did not run";
}

// securityContext reaches runc through containerd: the user and groups the
// process runs as, a read-only root filesystem, and runAsNonRoot refused
// before anything is created.
TEST_F(ContainerdE2E, SecurityContext) {
  WriteManifest("locked.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: locked}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: app
    image: kubelet-cpp.local/busybox:1.35
    command: [sleep, '3600']
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
  - name: rooted
    image: kubelet-cpp.local/busybox:1.35
    command: [sleep, '3600']
    securityContext: {runAsUser: 0, runAsNonRoot: true}
)");
  auto waiting = [](const json& p, const std::string& name) -> json {
    if (p.is_null()) return nullptr;
    for (const auto& c : p["status"]["containerStatuses"])
      if (c["name"] == name && c["state"].contains("waiting")) return c["state"]["waiting"];
    return nullptr;
  };
  ASSERT_TRUE(WaitUntil([&] {
    json p = Pod("locked-e2e-node");
    return !waiting(p, "rooted").is_null() && waiting(p, "rooted").value("reason", "") == "CreateContainerConfigError" &&
           p["status"]["containerStatuses"][0]["state"].contains("running");
  }, std::chrono::seconds(60))) << Pod("locked-e2e-node").dump(2);
  json pod = Pod("locked-e2e-node");
  std::string uid = pod["metadata"]["uid"];
  EXPECT_EQ(waiting(pod, "rooted")["message"],
            "container's runAsUser breaks non-root policy (pod: \"locked-e2e-node_default(" + uid + ")\", container: rooted)");
  std::string id;
  for (const auto& c : Containers(uid))
    if (c.metadata().name() == "app") id = c.id();
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Containers(uid).size(), 1u);  // the refused container was never created
  auto exec = [&](std::vector<std::string> cmd) { return Exec(id, cmd); };
  auto [code, out] = exec({"id"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("uid=1000 gid=3000"), std::string::npos) << out;
  EXPECT_NE(out.find("2000"), std::string::npos) << out;  // fsGroup as a supplemental group
  EXPECT_NE(exec({"touch", "/written"}).first, 0) << "the root filesystem is read-only";
  // The emptyDir belongs to fsGroup: what the process (gid 3000) writes there gets group 2000 (setgid).
  EXPECT_EQ(exec({"sh", "-c", "touch /data/f && stat -c %g /data/f"}).second, "2000\n");
  EXPECT_EQ(exec({"grep", "-c", "CapEff:\t0000000000000000", "/proc/self/status"}).second, "1\n");  // all dropped
  fs::remove(work_ / "manifests" / "locked.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
}

// Exit reasons as the runtime reports them and log rotation on containerd: a
// kubelet with a tiny containerLogMaxSize rotates a chatty container's CRI log
// (containerd reopens it), gzips older files and keeps containerLogMaxFiles.
class ExitAndRotationE2E : public ContainerdE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-rotation";
    extra_config_ = "containerLogMaxSize: 4Ki\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 3s\n";
    ContainerdE2E::SetUpTestSuite();
  }
  static json Terminated(const json& p, const std::string& name) {
    if (p.is_null()) return nullptr;
    for (const auto& c : p["status"]["containerStatuses"])
      if (c["name"] == name && c["state"].contains("terminated")) return c["state"]["terminated"];
    return nullptr;
  }
};

TEST_F(ExitAndRotationE2E, ExitReasonsFromTheRuntime) {
  WriteManifest("exits.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: exits}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: done
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'exit 0']
  - name: fails
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'exit 3']
  - name: hungry
    image: kubelet-cpp.local/busybox:1.35
    command: [dd, 'if=/dev/zero', 'of=/dev/null', 'bs=96M', 'count=1']
    resources: {limits: {memory: 24Mi}}
  - name: missing
    image: kubelet-cpp.local/busybox:1.35
    command: [/no/such/binary]
)");
  ASSERT_TRUE(WaitUntil([&] {
    json p = Pod("exits-e2e-node");
    for (const char* c : {"done", "fails", "hungry", "missing"})
      if (Terminated(p, c).is_null()) return false;
    return p["status"]["phase"] == "Failed";
  }, std::chrono::seconds(90))) << Pod("exits-e2e-node").dump(2);
  json p = Pod("exits-e2e-node");
  EXPECT_EQ(Terminated(p, "done")["reason"], "Completed");
  EXPECT_EQ(Terminated(p, "done")["exitCode"], 0);
  EXPECT_EQ(Terminated(p, "fails")["reason"], "Error");
  EXPECT_EQ(Terminated(p, "fails")["exitCode"], 3);
  // The memory cgroup's OOM killer ends dd: containerd says OOMKilled, exit 137.
  EXPECT_EQ(Terminated(p, "hungry")["reason"], "OOMKilled") << p.dump(2);
  EXPECT_EQ(Terminated(p, "hungry")["exitCode"], 137);
  // A command that cannot run: containerd's StartError, exit 128, its message kept.
  json missing = Terminated(p, "missing");
  EXPECT_EQ(missing["reason"], "StartError") << missing.dump();
  EXPECT_EQ(missing["exitCode"], 128);
  EXPECT_NE(missing.value("message", "").find("/no/such/binary"), std::string::npos) << missing.dump();
  std::string uid = p["metadata"]["uid"];
  fs::remove(work_ / "manifests" / "exits.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
}

TEST_F(ExitAndRotationE2E, RotatesContainerLogsThroughContainerd) {
  WriteManifest("chatty.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: talk
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'i=0; while true; do echo "line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); usleep 20000; done']
)");
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("chatty-e2e-node")); }, std::chrono::seconds(60)));
  std::string uid = Pod("chatty-e2e-node")["metadata"]["uid"];
  fs::path dir = work_ / "logs" / ("default_chatty-e2e-node_" + uid) / "talk";
  auto files = [&] {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  };
  auto has_gz = [&] {
    for (const auto& f : files())
      if (f.size() > 3 && f.substr(f.size() - 3) == ".gz") return true;
    return false;
  };
  // Rotated twice at least: a gzipped file exists beside the live log and the newest rotated one.
  ASSERT_TRUE(WaitUntil(has_gz, std::chrono::seconds(60))) << ::testing::PrintToString(files());
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    auto now = files();
    EXPECT_LE(now.size(), 3u) << "containerLogMaxFiles: 3 " << ::testing::PrintToString(now);
  }
  auto now = files();
  ASSERT_TRUE(std::count(now.begin(), now.end(), "0.log")) << ::testing::PrintToString(now);
  // containerd writes to the reopened 0.log: it grows and is not much larger than the limit plus a round's output.
  auto size1 = fs::file_size(dir / "0.log");
  ASSERT_TRUE(WaitUntil([&] {
    std::error_code ec;
    auto s = fs::file_size(dir / "0.log", ec);
    return !ec && s != size1;
  }, std::chrono::seconds(10)));
  std::error_code ec;
  EXPECT_LT(fs::file_size(dir / "0.log", ec), 64u * 1024);
  // The server still serves the live log's lines, newest last.
  auto [code, body] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/containerLogs/default/chatty-e2e-node/talk?tailLines=2");
  EXPECT_EQ(code, 200);
  EXPECT_NE(body.find("line-"), std::string::npos) << body;
  fs::remove(work_ / "manifests" / "chatty.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
}

// The QoS cgroup tree on real cgroups (v1 here), under the lab's cgroupRoot:
// kubepods with node allocatable, burstable/besteffort, one cgroup per pod
// with the pod's limits, the runtime's container cgroups inside it.
TEST_F(ContainerdE2E, PodsLandInTheirQoSCgroups) {
  const std::string root = env_["CGROUP_ROOT"];
  ASSERT_FALSE(root.empty());
  const fs::path mem = "/sys/fs/cgroup/memory" + root, cpu = "/sys/fs/cgroup/cpu" + root, pids = "/sys/fs/cgroup/pids" + root;
  if (!fs::is_directory(mem)) GTEST_SKIP() << "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory";
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
  };
  // kubepods: capacity (no reservations in this config): all CPUs' shares, MemTotal.
  EXPECT_EQ(slurp(cpu / "kubepods" / "cpu.shares"), std::to_string(sysconf(_SC_NPROCESSORS_ONLN) * 1024));
  EXPECT_EQ(slurp(cpu / "kubepods" / "besteffort" / "cpu.shares"), "2");
  EXPECT_TRUE(fs::is_directory(mem / "kubepods" / "burstable"));
  auto manifest = [](const std::string& name, const std::string& resources) {
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  terminationGracePeriodSeconds: 1\n"
           "  containers:\n  - name: c\n    image: kubelet-cpp.local/busybox:1.35\n    command: [sleep, '3600']\n"
           "    resources: " + resources + "\n";
  };
  WriteManifest("qos-g.yaml", manifest("qos-g", "{limits: {cpu: 500m, memory: 64Mi}}"));
  WriteManifest("qos-b.yaml", manifest("qos-b", "{requests: {cpu: 250m, memory: 32Mi}, limits: {memory: 96Mi}}"));
  WriteManifest("qos-e.yaml", manifest("qos-e", "{}"));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("qos-g-e2e-node")) && Running(Pod("qos-b-e2e-node")) && Running(Pod("qos-e-e2e-node")); },
                        std::chrono::seconds(60)))
      << Pods().dump(2);
  struct Want {
    std::string pod, qos_dir, shares, quota, memory;
  };
  std::vector<Want> wants = {{"qos-g-e2e-node", "", "512", "50000", std::to_string(64 << 20)},
                             {"qos-b-e2e-node", "burstable", "256", "-1", std::to_string(96 << 20)},
                             {"qos-e-e2e-node", "besteffort", "2", "-1", ""}};
  std::vector<fs::path> pod_dirs;
  for (const auto& w : wants) {
    json p = Pod(w.pod);
    std::string uid = p["metadata"]["uid"];
    fs::path rel = fs::path("kubepods") / w.qos_dir / ("pod" + uid);
    SCOPED_TRACE(w.pod + " -> " + rel.string());
    EXPECT_EQ(p["status"]["qosClass"], w.qos_dir.empty() ? "Guaranteed" : w.qos_dir == "burstable" ? "Burstable" : "BestEffort");
    ASSERT_TRUE(fs::is_directory(mem / rel));
    pod_dirs.push_back(mem / rel);
    EXPECT_EQ(slurp(cpu / rel / "cpu.shares"), w.shares);
    EXPECT_EQ(slurp(cpu / rel / "cpu.cfs_quota_us"), w.quota);
    if (!w.memory.empty()) EXPECT_EQ(slurp(mem / rel / "memory.limit_in_bytes"), w.memory);
    else EXPECT_NE(slurp(mem / rel / "memory.limit_in_bytes"), std::to_string(64 << 20));
    // The container's processes run in a cgroup of the runtime's inside the pod cgroup.
    auto running = Containers(uid);
    ASSERT_EQ(running.size(), 1u);
    int pid = ContainerPid(running[0].id());
    ASSERT_GT(pid, 0);
    std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line, memory_line;
    while (std::getline(cg, line))
      if (line.find(":memory:") != std::string::npos) memory_line = line;
    EXPECT_NE(memory_line.find(root + "/" + rel.string() + "/"), std::string::npos) << memory_line;
  }
  // The burstable QoS cgroup follows its pods' cpu requests.
  ASSERT_TRUE(WaitUntil([&] { return slurp(cpu / "kubepods" / "burstable" / "cpu.shares") == "256"; }, std::chrono::seconds(20)));
  // Removing the pods removes their cgroups.
  for (const char* f : {"qos-g.yaml", "qos-b.yaml", "qos-e.yaml"}) fs::remove(work_ / "manifests" / f);
  for (const auto& d : pod_dirs)
    EXPECT_TRUE(WaitUntil([&] { return !fs::exists(d); }, std::chrono::seconds(30))) << d << " outlived its pod";
}

// /stats/summary and /metrics/resource from the real runtime and cgroups.
TEST_F(ContainerdE2E, StatsSummaryAndResourceMetrics) {
  WriteManifest("stats.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: stats}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'head -c 24m /dev/zero > /dev/shm/fill; exec sleep 3600']
    resources: {limits: {memory: 128Mi}}
)");
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("stats-e2e-node")); }, std::chrono::seconds(60)));
  std::string uid = Pod("stats-e2e-node")["metadata"]["uid"];
  auto summary = [] {
    auto [code, body] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/stats/summary");
    return code == 200 ? json::parse(body, nullptr, false) : json();
  };
  auto pod_of = [&](const json& s) -> json {
    if (!s.is_object()) return nullptr;
    for (const auto& p : s["pods"])
      if (p["podRef"]["uid"] == uid) return p;
    return nullptr;
  };
  // The 24 MiB the container wrote to its shm count in its pod's working set; a rate needs a second sample.
  json s, p;
  ASSERT_TRUE(WaitUntil([&] {
    s = summary();
    p = pod_of(s);
    return !p.is_null() && p["memory"].value("workingSetBytes", 0ull) >= 24ull << 20 && p["cpu"].contains("usageNanoCores") &&
           s["node"]["cpu"].contains("usageNanoCores");
  }, std::chrono::seconds(40))) << s.dump(2);
  EXPECT_EQ(p["podRef"]["name"], "stats-e2e-node");
  EXPECT_EQ(p["podRef"]["namespace"], "default");
  ASSERT_EQ(p["containers"].size(), 1u);
  EXPECT_EQ(p["containers"][0]["name"], "hog");
  EXPECT_GE(p["containers"][0]["memory"]["workingSetBytes"].get<uint64_t>(), 24ull << 20);
  EXPECT_GT(p["cpu"]["usageCoreNanoSeconds"].get<uint64_t>(), 0u);
  EXPECT_LE(p["memory"]["workingSetBytes"].get<uint64_t>() + p["memory"]["availableBytes"].get<uint64_t>(), 128ull << 20);
  EXPECT_GE(p["process_stats"]["process_count"].get<int>(), 2);  // pause and sleep
  ASSERT_TRUE(p.contains("network")) << p.dump(2);
  EXPECT_EQ(p["network"]["name"], "eth0");
  const json& node = s["node"];
  EXPECT_EQ(node["nodeName"], "e2e-node");
  EXPECT_GT(node["memory"]["availableBytes"].get<uint64_t>(), 0u);
  EXPECT_GT(node["memory"]["workingSetBytes"].get<uint64_t>(), 24ull << 20);
  EXPECT_GT(node["fs"]["capacityBytes"].get<uint64_t>(), node["fs"]["availableBytes"].get<uint64_t>());
  EXPECT_GT(node["runtime"]["imageFs"]["usedBytes"].get<uint64_t>(), 0u);  // busybox and pause
  EXPECT_GT(node["rlimit"]["maxpid"].get<uint64_t>(), node["rlimit"]["curproc"].get<uint64_t>());
  EXPECT_EQ(node["systemContainers"][0]["name"], "pods");
  EXPECT_GE(node["systemContainers"][0]["memory"]["workingSetBytes"].get<uint64_t>(), 24ull << 20);

  auto [code, body] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/metrics/resource");
  ASSERT_EQ(code, 200);
  for (const std::string want : {"pod_memory_working_set_bytes{namespace=\"default\",pod=\"stats-e2e-node\"} ",
                                 "container_cpu_usage_seconds_total{container=\"hog\",namespace=\"default\",pod=\"stats-e2e-node\"} ",
                                 "node_memory_working_set_bytes ", "resource_scrape_error 0"})
    EXPECT_NE(body.find(want), std::string::npos) << want << "\n" << body;
  std::string file = (work_ / "resource-metrics.txt").string();
  std::ofstream(file) << body;
  int rc = std::system(("promtool check metrics < " + file + " > " + file + ".lint 2>&1").c_str());
  std::ifstream lint(file + ".lint");
  std::string out((std::istreambuf_iterator<char>(lint)), {});
  EXPECT_EQ(rc, 0) << "promtool check metrics:\n" << out;

  // /metrics/cadvisor: cAdvisor's names and labels for the same samples, the pod's and the node's cgroups included.
  auto cadvisor = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/metrics/cadvisor");
  ASSERT_EQ(cadvisor.first, 200);
  const std::string& cbody = cadvisor.second;
  auto line_of = [&](const std::string& prefix) {
    size_t at = cbody.find("\n" + prefix);
    return at == std::string::npos ? std::string() : cbody.substr(at + 1, cbody.find('\n', at + 1) - at - 1);
  };
  std::string hog_cpu = line_of("container_cpu_usage_seconds_total{container=\"hog\",cpu=\"total\",id=\"/");
  EXPECT_NE(hog_cpu.find(uid), std::string::npos) << hog_cpu << "\n" << cbody;  // the id is under the pod's cgroup
  EXPECT_NE(hog_cpu.find("image=\"kubelet-cpp.local/busybox:1.35\""), std::string::npos) << hog_cpu;
  EXPECT_NE(hog_cpu.find("namespace=\"default\",pod=\"stats-e2e-node\"}"), std::string::npos) << hog_cpu;
  std::string hog_ws = line_of("container_memory_working_set_bytes{container=\"hog\"");
  ASSERT_FALSE(hog_ws.empty()) << cbody;
  EXPECT_GE(std::stod(hog_ws.substr(hog_ws.find("} ") + 2)), double(24ull << 20)) << hog_ws;
  for (const std::string want : {"container_cpu_usage_seconds_total{container=\"\",cpu=\"total\",id=\"/\",",
                                 "container_network_receive_bytes_total{container=\"\",id=\"", "interface=\"eth0\"",
                                 "container_start_time_seconds{container=\"hog\"", "machine_cpu_cores ",
                                 "machine_memory_bytes ", "container_scrape_error 0"})
    EXPECT_NE(cbody.find(want), std::string::npos) << want << "\n" << cbody;
  std::ofstream(file) << cbody;
  rc = std::system(("promtool check metrics < " + file + " > " + file + ".lint 2>&1").c_str());
  std::ifstream clint(file + ".lint");
  std::string cout_lint((std::istreambuf_iterator<char>(clint)), {});
  EXPECT_EQ(rc, 0) << "promtool check metrics (cadvisor):\n" << cout_lint;
  fs::remove(work_ / "manifests" / "stats.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
}

// Image GC on containerd with images pulled from the lab's loopback registry:
// with the image filesystem "full" (imageGCHighThresholdPercent: 1) a kubelet
// starting up removes every unused image, keeps the one a running pod uses
// and the sandbox image (pinned).
class ImageGCE2E : public ContainerdE2E {
 protected:
  static void SetUpTestSuite() {
    lab_containerd_ = "gc";
    work_name_ = "kubelet-gc";
    extra_config_ = "imageGCHighThresholdPercent: 1\nimageGCLowThresholdPercent: 0\nimageMinimumGCAge: 0s\n";
    extra_args_ = {"--pod-infra-container-image=kubelet-cpp.local/pause:3.9"};
    ContainerdE2E::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    ContainerdE2E::TearDownTestSuite();
    lab_containerd_ = "containerd";
  }
  static std::vector<std::string> ImageTags() {
    std::vector<std::string> out;
    auto ch = grpc::CreateChannel("unix:" + env_["CONTAINERD_SOCK"], grpc::InsecureChannelCredentials());
    auto images = rt::ImageService::NewStub(ch);
    rt::ListImagesRequest req;
    rt::ListImagesResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    EXPECT_TRUE(images->ListImages(&ctx, req, &resp).ok());
    for (const auto& i : resp.images())
      for (const auto& t : i.repo_tags()) out.push_back(t);
    std::sort(out.begin(), out.end());
    return out;
  }
  static bool HasImage(const std::string& tag) {
    auto tags = ImageTags();
    return std::find(tags.begin(), tags.end(), tag) != tags.end();
  }
};

TEST_F(ImageGCE2E, FullImageFilesystemRemovesUnusedImagesAndKeepsUsedOnes) {
  const std::string reg = env_["REGISTRY"];
  ASSERT_FALSE(reg.empty()) << "the lab registry is not up";
  // At start the kubelet already removed the imported busybox nobody used; the sandbox image stays (pinned).
  ASSERT_TRUE(WaitUntil([] { return !HasImage("kubelet-cpp.local/busybox:1.35"); }, std::chrono::seconds(30)))
      << ::testing::PrintToString(ImageTags());
  EXPECT_TRUE(HasImage("kubelet-cpp.local/pause:3.9"));
  auto manifest = [&](const std::string& name, const std::string& image) {
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  terminationGracePeriodSeconds: 1\n"
           "  containers:\n  - name: c\n    image: " + image + "\n    command: [sleep, '3600']\n";
  };
  // Both images come from the registry through containerd's pull.
  WriteManifest("keeper.yaml", manifest("keeper", reg + "/busybox:1.35"));
  WriteManifest("victim.yaml", manifest("victim", reg + "/gcvictim:1"));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("keeper-e2e-node")) && Running(Pod("victim-e2e-node")); }, std::chrono::seconds(60)))
      << Pods().dump(2);
  EXPECT_TRUE(HasImage(reg + "/gcvictim:1"));
  std::string victim_uid = Pod("victim-e2e-node")["metadata"]["uid"];
  fs::remove(work_ / "manifests" / "victim.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(victim_uid) == 0; }, std::chrono::seconds(30)));
  // The next round (a restarted kubelet runs one at start) takes the now unused image, and only it.
  StopKubelet(SIGTERM);
  StartKubelet();
  ASSERT_TRUE(WaitUntil([&] { return !HasImage(reg + "/gcvictim:1"); }, std::chrono::seconds(30))) << ::testing::PrintToString(ImageTags());
  EXPECT_TRUE(HasImage(reg + "/busybox:1.35"));
  EXPECT_TRUE(HasImage("kubelet-cpp.local/pause:3.9"));
  EXPECT_TRUE(Running(Pod("keeper-e2e-node"), 0));
  fs::remove(work_ / "manifests" / "keeper.yaml");
}

// Issue 15: the kubelet as a Type=notify unit. The notification protocol is read
// on a datagram socket bound here, as systemd's manager binds its own, and
// given to the kubelet through NOTIFY_SOCKET and WATCHDOG_USEC as systemd does.
class SystemdE2E : public ContainerdE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-systemd";
    notify_path_ = "/tmp/kcpp-notify-" + std::to_string(::getpid()) + ".sock";
    ::unlink(notify_path_.c_str());
    notify_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, notify_path_.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(::bind(notify_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
    ::setenv("NOTIFY_SOCKET", notify_path_.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "1000000", 1);  // WatchdogSec=1s: a ping every half second
    ContainerdE2E::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    ContainerdE2E::TearDownTestSuite();
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::close(notify_fd_);
    ::unlink(notify_path_.c_str());
  }
  // The next notification, or "" after `limit`.
  static std::string Receive(std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    pollfd p{notify_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return "";
    char buf[4096];
    ssize_t n = ::recv(notify_fd_, buf, sizeof(buf), 0);
    return n <= 0 ? "" : std::string(buf, static_cast<size_t>(n));
  }
  // Reads notifications until `want` arrives (true) or `limit` passes; the others are counted in `seen`.
  static bool ReceiveUntil(const std::string& want, std::map<std::string, int>* seen,
                           std::chrono::seconds limit = std::chrono::seconds(30)) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      std::string m = Receive(std::chrono::milliseconds(500));
      if (m.empty()) continue;
      if (seen) ++(*seen)[m];
      if (m == want) return true;
    }
    return false;
  }
  static bool Healthy() { return HttpGet("http://127.0.0.1:" + std::to_string(healthz_port_) + "/healthz").first == 200; }
  static inline std::string notify_path_;
  static inline int notify_fd_ = -1;
};

TEST_F(SystemdE2E, ReadyWatchdogAndStoppingReachSystemdAndPodsOutliveTheKubelet) {
  // The kubelet started (it answers /healthz): READY=1 came, then the watchdog's pings every half second.
  std::map<std::string, int> seen;
  ASSERT_TRUE(ReceiveUntil("READY=1", &seen)) << ::testing::PrintToString(seen);
  // systemd restarts a unit whose pings are further apart than WatchdogSec (1 s here): none may be.
  seen.clear();
  ASSERT_TRUE(ReceiveUntil("WATCHDOG=1", &seen));
  auto last = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration widest{};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(ReceiveUntil("WATCHDOG=1", &seen));
    auto now = std::chrono::steady_clock::now();
    widest = std::max(widest, now - last);
    last = now;
  }
  EXPECT_EQ(seen.size(), 1u) << ::testing::PrintToString(seen);
  EXPECT_LT(widest, std::chrono::seconds(1)) << "WATCHDOG=1 is due every 0.5s";

  // A static pod on containerd.
  WriteManifest("sleeper.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: sleeper}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n"
                                "    image: kubelet-cpp.local/busybox:1.35\n    command: [sleep, '3600']\n");
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("sleeper-e2e-node"), 0); })) << Pods().dump(2);
  std::string uid = Pod("sleeper-e2e-node")["metadata"]["uid"];
  auto before = Containers(uid);
  ASSERT_EQ(before.size(), 1u);

  // SIGTERM (systemctl stop): STOPPING=1, the process ends, the pod keeps running.
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_TRUE(ReceiveUntil("STOPPING=1", nullptr));
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto after = Containers(uid);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].id(), before[0].id());
  EXPECT_EQ(after[0].state(), rt::CONTAINER_RUNNING);
  while (!Receive(std::chrono::milliseconds(100)).empty()) {
  }

  // Started again: READY=1 only once its servers answer (checked the moment it arrives), nothing restarted.
  StartKubelet(/*wait_healthy=*/false);
  ASSERT_TRUE(ReceiveUntil("READY=1", nullptr)) << "no READY=1 from the restarted kubelet";
  EXPECT_TRUE(Healthy()) << "READY=1 came before /healthz answered";
  {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << "READY=1 came before port " << port_ << " listened";
    ::close(fd);
  }
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("sleeper-e2e-node"), 0); })) << Pods().dump(2);
  auto again = Containers(uid);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id(), before[0].id());
  fs::remove(work_ / "manifests" / "sleeper.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
}

// The CPU manager's static policy on containerd and real cpusets: with CPU 0
// reserved, a Guaranteed pod asking for one whole CPU runs alone on the other
// (when the machine has two or more), a Burstable pod is moved off it, the
// assignment survives a kubelet restart, and the CPU comes back to the shared
// pool when the Guaranteed pod goes.
class CPUManagerE2E : public ContainerdE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-cpumanager";
    extra_config_ = "cpuManagerPolicy: static\nreservedSystemCPUs: \"0\"\ncpuManagerReconcilePeriod: 2s\n";
    ContainerdE2E::SetUpTestSuite();
  }
  static std::string CpusAllowed(const std::string& uid) {
    auto running = Containers(uid);
    if (running.empty()) return "";
    int pid = ContainerPid(running[0].id());
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Cpus_allowed_list:", 0) == 0) {
        std::string v = line.substr(18);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    return "";
  }
};

TEST_F(CPUManagerE2E, GuaranteedPodGetsAnExclusiveCPU) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 2) GTEST_SKIP() << "needs two CPUs";
  std::string all = "0-" + std::to_string(cpus - 1);
  auto manifest = [](const std::string& name, const std::string& resources) {
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  terminationGracePeriodSeconds: 1\n"
           "  containers:\n  - name: c\n    image: kubelet-cpp.local/busybox:1.35\n    command: [sleep, '3600']\n"
           "    resources: " + resources + "\n";
  };
  WriteManifest("shared.yaml", manifest("shared", "{requests: {cpu: 100m}}"));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("shared-e2e-node")); }, std::chrono::seconds(60)));
  std::string shared_uid = Pod("shared-e2e-node")["metadata"]["uid"];
  EXPECT_EQ(CpusAllowed(shared_uid), all);
  WriteManifest("exclusive.yaml", manifest("exclusive", "{limits: {cpu: '1', memory: 64Mi}}"));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("exclusive-e2e-node")); }, std::chrono::seconds(60)));
  std::string excl_uid = Pod("exclusive-e2e-node")["metadata"]["uid"];
  // CPU 1 (the first after the reserved 0) is the Guaranteed pod's alone; the shared pool is the rest.
  EXPECT_EQ(CpusAllowed(excl_uid), "1");
  std::string rest = cpus == 2 ? "0" : "0,2" + (cpus > 3 ? "-" + std::to_string(cpus - 1) : std::string());
  ASSERT_TRUE(WaitUntil([&] { return CpusAllowed(shared_uid) == rest; }, std::chrono::seconds(20))) << CpusAllowed(shared_uid);
  std::ifstream in(work_ / "root" / "cpu_manager_state");
  json state = json::parse(in, nullptr, false);
  EXPECT_EQ(state["policyName"], "static");
  EXPECT_EQ(state["entries"][excl_uid]["c"], "1") << state.dump();
  // A restarted kubelet keeps the assignment.
  StopKubelet(SIGTERM);
  StartKubelet();
  std::this_thread::sleep_for(std::chrono::seconds(5));
  EXPECT_EQ(CpusAllowed(excl_uid), "1");
  EXPECT_EQ(CpusAllowed(shared_uid), rest);
  // The Guaranteed pod goes: its CPU returns to the shared pool.
  fs::remove(work_ / "manifests" / "exclusive.yaml");
  ASSERT_TRUE(WaitUntil([&] { return CpusAllowed(shared_uid) == all; }, std::chrono::seconds(30))) << CpusAllowed(shared_uid);
  fs::remove(work_ / "manifests" / "shared.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(shared_uid) == 0; }, std::chrono::seconds(30)));
}

// Issue 14's topology manager on this machine's one NUMA node: cpuManagerPolicy static with topologyManagerPolicy
// single-numa-node; the project's device plugin gives two devices on NUMA node 0. A Guaranteed static pod with one
// CPU and one device runs on CPU 1 with a device of node 0 (the pod resources API reports both); a pod asking for
// two devices when one is left is refused with upstream's TopologyAffinityError; the admission metrics count both.
class TopologyE2E : public CPUManagerE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-topology";
    extra_config_ = "cpuManagerPolicy: static\nreservedSystemCPUs: \"0\"\ncpuManagerReconcilePeriod: 2s\n"
                    "topologyManagerPolicy: single-numa-node\ntopologyManagerScope: container\n";
    ContainerdE2E::SetUpTestSuite();
  }
};

TEST_F(TopologyE2E, CPUsAndDevicesComeFromOneNUMANodeOrThePodIsRefused) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) GTEST_SKIP() << "needs two CPUs";
  const fs::path state = work_ / "device-plugin-state";
  fs::remove_all(state);
  fs::create_directories(state);
  pid_t plugin = kubelet::testing::Spawn({TEST_DEVICE_PLUGIN, "--socket-dir=" + (work_ / "root/device-plugins").string(),
                                          "--state-dir=" + state.string(), "--resource=example.com/dev", "--devices=2", "--numa=1"});
  ASSERT_TRUE(WaitUntil([&] { return !kubelet::testing::ReadCallsLog((state / "calls.log").string(), "ListAndWatch").empty(); }))
      << "the plugin did not register";
  auto manifest = [](const std::string& name, int devices) {
    std::string d = std::to_string(devices);
    return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nspec:\n  terminationGracePeriodSeconds: 1\n"
           "  containers:\n  - name: c\n    image: kubelet-cpp.local/busybox:1.35\n    command: [sleep, '3600']\n"
           "    resources: {limits: {cpu: '1', memory: 64Mi, example.com/dev: '" + d + "'}}\n";
  };
  WriteManifest("aligned.yaml", manifest("aligned", 1));
  ASSERT_TRUE(WaitUntil([] { return Running(Pod("aligned-e2e-node")); }, std::chrono::seconds(60))) << Pod("aligned-e2e-node").dump(2);
  std::string uid = Pod("aligned-e2e-node")["metadata"]["uid"];
  EXPECT_EQ(CpusAllowed(uid), "1");
  auto running = Containers(uid);
  ASSERT_EQ(running.size(), 1u);
  auto [code, out] = Exec(running[0].id(), {"sh", "-c", "echo $TEST_DEVICES"});
  ASSERT_EQ(code, 0) << out;
  EXPECT_TRUE(out == "dev-0\n" || out == "dev-1\n") << out;

  auto channel = grpc::CreateChannel("unix://" + (work_ / "root/pod-resources/kubelet.sock").string(), grpc::InsecureChannelCredentials());
  auto lister = v1::PodResourcesLister::NewStub(channel);
  v1::ListPodResourcesResponse listed;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ASSERT_TRUE(lister->List(&ctx, v1::ListPodResourcesRequest(), &listed).ok());
  bool found = false;
  for (const auto& p : listed.pod_resources()) {
    if (p.name() != "aligned-e2e-node") continue;
    ASSERT_EQ(p.containers_size(), 1);
    const auto& c = p.containers(0);
    ASSERT_EQ(c.cpu_ids_size(), 1);
    EXPECT_EQ(c.cpu_ids(0), 1);
    ASSERT_EQ(c.devices_size(), 1);
    EXPECT_EQ(c.devices(0).resource_name(), "example.com/dev");
    ASSERT_EQ(c.devices(0).topology().nodes_size(), 1);
    EXPECT_EQ(c.devices(0).topology().nodes(0).id(), 0);
    found = true;
  }
  EXPECT_TRUE(found) << listed.ShortDebugString();

  // Two devices when one is left: no NUMA node can hold the pod; the kubelet refuses it with upstream's reason.
  WriteManifest("toobig.yaml", manifest("toobig", 2));
  auto refusal = [&] {
    std::string all;
    for (const auto& e : fs::directory_iterator(work_))
      if (e.path().filename().string().rfind("kubelet-", 0) == 0 && e.path().extension() == ".log") {
        std::ifstream in(e.path());
        all += std::string((std::istreambuf_iterator<char>(in)), {});
      }
    return all.find("Pod admission failed pod=\"default/toobig-e2e-node\" reason=\"TopologyAffinityError\" "
                    "message=\"Resources cannot be allocated with Topology locality\"") != std::string::npos;
  };
  ASSERT_TRUE(WaitUntil(refusal, std::chrono::seconds(30)));
  // /pods shows the refused static pod as upstream does: Failed, with the admission reason and message.
  json refused = Pod("toobig-e2e-node");
  ASSERT_FALSE(refused.is_null());
  EXPECT_EQ(refused["status"]["phase"], "Failed") << refused.dump();
  EXPECT_EQ(refused["status"]["reason"], "TopologyAffinityError") << refused.dump();
  EXPECT_EQ(refused["status"]["message"], "Resources cannot be allocated with Topology locality") << refused.dump();

  auto [mcode, metrics] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/metrics");
  ASSERT_EQ(mcode, 200);
  EXPECT_NE(metrics.find("kubelet_topology_manager_admission_errors_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("kubelet_topology_manager_admission_duration_ms_count"), std::string::npos);
  fs::remove(work_ / "manifests" / "aligned.yaml");
  fs::remove(work_ / "manifests" / "toobig.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
  kill(plugin, SIGTERM);
  int st;
  waitpid(plugin, &st, 0);
  fs::remove_all(state);
}

// Kubelet network mode (--network-plugin=cni): containerd only makes the
// network namespace (loopback), the kubelet runs bridge + host-local + portmap
// + loopback into it, reads the pod IP from its own CNI result, and tears the
// network down with DEL before the sandbox goes, also across a restart.
class KubeletNetworkE2E : public ContainerdE2E {
 protected:
  static void SetUpTestSuite() {
    lab_containerd_ = "knet";
    work_name_ = "kubelet-knet";
    const char* lab = std::getenv("KUBELET_E2E_LAB");
    ASSERT_TRUE(lab);
    auto env = ReadEnvFile(std::string(lab) + "/knet/env");
    ASSERT_EQ(env["CNI_MODE"], "kubelet") << "the lab's second containerd is missing (lab.sh up)";
    extra_args_ = {"--network-plugin=cni", "--cni-conf-dir=" + env["KUBELET_CNI_CONF_DIR"], "--cni-bin-dir=/nonexistent,/usr/lib/cni",
                   "--cni-cache-dir=" + (fs::path(lab) / "knet" / "kubelet-cni-cache").string()};
    ContainerdE2E::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    ContainerdE2E::TearDownTestSuite();
    lab_containerd_ = "containerd";
  }
  // The host-local IPAM store: one file per reserved IP.
  static std::vector<std::string> ReservedIPs() {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(env_["CNI_IPAM_DIR"], ec), end; !ec && it != end; it.increment(ec)) {
      std::string n = it->path().filename().string();
      if (it->is_regular_file() && std::count(n.begin(), n.end(), '.') == 3) out.push_back(n);
    }
    return out;
  }
};

TEST_F(KubeletNetworkE2E, KubeletAttachesAndReleasesThePodNetwork) {
  EXPECT_TRUE(ReservedIPs().empty());
  // An init container, a sidecar and httpd with a readiness probe on the pod IP the kubelet attached,
  // published on a host port through the portmap plugin.
  int host_port = FreePort();
  WriteManifest("web.yaml", R"(apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 3
  volumes: [{name: www, emptyDir: {}}]
  initContainers:
  - name: setup
    image: kubelet-cpp.local/busybox:1.35
    command: [sh, -c, 'echo kubelet net > /www/index.html']
    volumeMounts: [{name: www, mountPath: /www}]
  - name: sidecar
    image: kubelet-cpp.local/busybox:1.35
    restartPolicy: Always
    command: [sleep, '3600']
  containers:
  - name: httpd
    image: kubelet-cpp.local/busybox:1.35
    command: [httpd, -f, -p, '8080', -h, /www]
    volumeMounts: [{name: www, mountPath: /www}]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
    ports: [{containerPort: 8080, hostPort: )" + std::to_string(host_port) + R"(}]
)");
  auto ready = [] {
    json p = Pod("web-e2e-node");
    if (!Running(p, 0)) return false;
    for (const auto& c : p["status"]["conditions"])
      if (c["type"] == "Ready") return c["status"] == "True";
    return false;
  };
  ASSERT_TRUE(WaitUntil(ready, std::chrono::seconds(60))) << Pods().dump(2);
  json pod = Pod("web-e2e-node");
  std::string uid = pod["metadata"]["uid"];
  std::string ip = pod["status"]["podIP"];
  std::string subnet = env_["CNI_SUBNET"];
  ASSERT_EQ(ip.rfind(subnet.substr(0, subnet.rfind('.')), 0), 0u) << ip << " not in " << subnet;
  EXPECT_EQ(ReservedIPs(), std::vector<std::string>{ip});  // the kubelet's host-local reserved it
  ASSERT_TRUE(WaitUntil([&] { return HttpGet("http://" + ip + ":8080/index.html").second == "kubelet net\n"; },
                        std::chrono::seconds(20)));
  // hostPort: portmap's DNAT (with its SNAT for 127.0.0.1) takes loopback traffic to the pod.
  std::string via_host = "http://127.0.0.1:" + std::to_string(host_port) + "/index.html";
  EXPECT_TRUE(WaitUntil([&] { return HttpGet(via_host).second == "kubelet net\n"; }, std::chrono::seconds(20)))
      << "hostPort " << host_port << " did not reach the pod";
  auto nat_rules_for_port = [&] {
    std::string out = RunCommand("iptables -w -t nat -S 2>&1");
    return out.find("--dport " + std::to_string(host_port) + " ") != std::string::npos;
  };
  EXPECT_TRUE(nat_rules_for_port());
  // The runtime reports only the stub address of its own eth0: the pod IP came from the kubelet's CNI result.
  rt::PodSandboxStatusRequest req;
  rt::ListPodSandboxRequest lreq;
  (*lreq.mutable_filter()->mutable_label_selector())["io.kubernetes.pod.uid"] = uid;
  rt::ListPodSandboxResponse lresp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(cri_->ListPodSandbox(&ctx, lreq, &lresp).ok());
  }
  ASSERT_EQ(lresp.items_size(), 1);
  req.set_pod_sandbox_id(lresp.items(0).id());
  rt::PodSandboxStatusResponse sresp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(cri_->PodSandboxStatus(&ctx, req, &sresp).ok());
  }
  EXPECT_EQ(sresp.status().network().ip(), "169.254.213.2");
  EXPECT_NE(sresp.status().network().ip(), ip);

  // A kubelet restart keeps the pod and its IP (from the CNI cache).
  StopKubelet(SIGKILL);
  StartKubelet();
  ASSERT_TRUE(WaitUntil([&] { return Running(Pod("web-e2e-node"), 0) && Pod("web-e2e-node")["status"]["podIP"] == ip; }))
      << Pod("web-e2e-node").dump(2);
  EXPECT_EQ(Sandboxes(uid), 1);

  // Removal: DEL releases the IP before the sandbox goes.
  fs::remove(work_ / "manifests" / "web.yaml");
  ASSERT_TRUE(WaitUntil([&] { return Sandboxes(uid) == 0; }, std::chrono::seconds(30)));
  EXPECT_TRUE(ReservedIPs().empty()) << "host-local still holds an IP";
  EXPECT_FALSE(nat_rules_for_port()) << "portmap's DNAT rules outlived the pod:\n" << RunCommand("iptables -w -t nat -S");
  EXPECT_NE(HttpGet(via_host).second, "kubelet net\n") << "the hostPort mapping outlived its pod";
}

// The kubelet as a node of a cluster (the project's fake kube-apiserver, in
// this process) on the real runtime.
class ClusterE2E : public ContainerdE2E {
 protected:
  static void SetUpTestSuite() {
    const char* lab = std::getenv("KUBELET_E2E_LAB");
    ASSERT_TRUE(lab);
    testing_api_dir_ = fs::path(lab) / "apiserver";
    kubelet::testing::FakeApiServer::Options o;
    o.cert_dir = testing_api_dir_.string();
    // The kubelet's token is the node's identity: the Node authorizer and NodeRestriction apply, as on kubeadm.
    o.token_user = "system:node:e2e-node";
    o.kubelet_client_cert = api_kubelet_cert_;
    o.kubelet_client_key = api_kubelet_key_;
    o.csr_signing = tls_bootstrap_;
    o.signed_cert_lifetime = signed_cert_lifetime_;
    api_ = std::make_unique<kubelet::testing::FakeApiServer>(o);
    ASSERT_TRUE(api_->Start());
    std::string ca = api_->ca_pem();
    std::string b64 = kubelet::testing::Base64Encode(ca);
    kubeconfig_ = (testing_api_dir_ / "kubelet.conf").string();
    fs::remove(kubeconfig_);
    // TLS bootstrap (kubeadm join): a bootstrap token in --bootstrap-kubeconfig, the kubeconfig written by the kubelet.
    std::string user = tls_bootstrap_ ? std::string("token: ") + kBootstrapToken : "token: test-token";
    std::ofstream(tls_bootstrap_ ? testing_api_dir_ / "bootstrap-kubelet.conf" : fs::path(kubeconfig_))
        << "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
        << "clusters:\n- name: c\n  cluster:\n    server: " << api_->url()
        << "\n    certificate-authority-data: " << b64 << "\n"
        << "users:\n- name: u\n  user:\n    " << user << "\n"
        << "contexts:\n- name: k\n  context: {cluster: c, user: u}\n";
    if (tls_bootstrap_) {
      api_->AddUserToken(kBootstrapToken, "system:bootstrap:abcdef", {"system:bootstrappers"});
      extra_args_.push_back("--bootstrap-kubeconfig=" + (testing_api_dir_ / "bootstrap-kubelet.conf").string());
    }
    ContainerdE2E::SetUpTestSuite();
  }
  static void TearDownTestSuite() {
    ContainerdE2E::TearDownTestSuite();
    api_->Stop();
    kubeconfig_.clear();
    api_kubelet_cert_.clear();
    api_kubelet_key_.clear();
    tls_bootstrap_ = false;
    signed_cert_lifetime_ = std::chrono::hours(1);
  }
  static std::string NodeCondition(const std::string& type) {
    auto node = api_->Get("nodes", "", "e2e-node");
    if (!node || !(*node).contains("status")) return "";
    for (const auto& c : (*node)["status"]["conditions"])
      if (c["type"] == type) return c["status"];
    return "";
  }
  static json ApiPod(const std::string& ns, const std::string& name) {
    auto p = api_->Get("pods", ns, name);
    return p ? *p : json(nullptr);
  }
  static constexpr char kBootstrapToken[] = "abcdef.0123456789abcdef";
  static inline bool tls_bootstrap_ = false;  // the fake signs CSRs; the kubelet starts from a bootstrap token
  static inline std::chrono::seconds signed_cert_lifetime_{3600};
  static inline fs::path testing_api_dir_;
  static inline std::unique_ptr<kubelet::testing::FakeApiServer> api_;
  static inline std::string api_kubelet_cert_, api_kubelet_key_;  // the API server's kubelet client certificate
};

// The kubelet with the settings kubeadm writes (also the KubeletConfiguration v1beta1 defaults): anonymous off,
// bearer tokens through TokenReview, client certificates against the client CA, Webhook authorization through
// SubjectAccessReview; the API server (the project's fake, with a table of grants) decides, not the kubelet.
class KubeletAuthE2E : public ClusterE2E {
 protected:
  static void SetUpTestSuite() {
    const char* lab = std::getenv("KUBELET_E2E_LAB");
    ASSERT_TRUE(lab);
    pki_ = fs::path(lab) / "kubelet-auth-pki";
    RemoveTree(pki_);
    // The API server's client certificate as kubeadm makes it, and the client CA that vouches for it.
    ASSERT_TRUE(kubelet::server::MakeClientCert(pki_.string(), "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                                &client_cert_, &client_key_, {"system:masters"})
                    .ok());
    // The same names on a certificate no CA of the kubelet's signed.
    ASSERT_TRUE(kubelet::server::MakeClientCert(pki_.string(), "forged", "kube-apiserver-kubelet-client", &forged_cert_,
                                                &forged_key_, {"system:masters"})
                    .ok());
    api_kubelet_cert_ = client_cert_;
    api_kubelet_key_ = client_key_;
    // The node's InternalIP is where the API server dials the kubelet: loopback here.
    extra_args_ = {"--node-ip=127.0.0.1"};
    work_name_ = "kubelet-auth";
    extra_config_ = "authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n    cacheTTL: 2m\n"
                    "  x509:\n    clientCAFile: " + client_cert_ + "\n"
                    "authorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 5m\n    cacheUnauthorizedTTL: 30s\n"
                    "streamingConnectionIdleTimeout: 10s\n";
    ClusterE2E::SetUpTestSuite();
  }
  static std::pair<long, std::string> Get(const std::string& path, const std::string& token = "", const std::string& cert = "",
                                          const std::string& key = "") {
    return HttpGet("https://127.0.0.1:" + std::to_string(port_) + path, 10, token, cert, key);
  }
  static inline fs::path pki_;
  static inline std::string client_cert_, client_key_, forged_cert_, forged_key_;
};

TEST_F(KubeletAuthE2E, TokensAndCertificatesAreCheckedByTheAPIServerAsKubeadmSetsItUp) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->AddUserToken("reader-token", "reader", {"monitoring"});
  api_->AddUserToken("nobody-token", "nobody");
  api_->AllowNodeAccess("reader", "get", "pods");
  api_->AllowNodeAccess("group:monitoring", "get", "stats");

  auto pods = Get("/pods", "reader-token");
  ASSERT_EQ(pods.first, 200) << pods.second;
  EXPECT_EQ(json::parse(pods.second)["kind"], "PodList");
  EXPECT_EQ(Get("/stats/summary", "reader-token").first, 200) << "nodes/stats granted to the reader's group";
  auto metrics = Get("/metrics", "reader-token");
  EXPECT_EQ(metrics.first, 403);
  EXPECT_EQ(metrics.second, "Forbidden (user=reader, verb=get, resource=nodes, subresource(s)=[metrics])");
  auto nobody = Get("/pods", "nobody-token");
  EXPECT_EQ(nobody.first, 403);
  EXPECT_EQ(nobody.second, "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[pods proxy])");
  auto unknown = Get("/pods", "made-up-token");
  EXPECT_EQ(unknown.first, 401);
  EXPECT_EQ(unknown.second, "Unauthorized");
  EXPECT_EQ(Get("/pods").first, 401) << "anonymous is off";

  // The API server's own certificate: allowed because the API server says system:masters may, on any path.
  EXPECT_EQ(Get("/pods", "", client_cert_, client_key_).first, 200);
  EXPECT_EQ(Get("/metrics", "", client_cert_, client_key_).first, 200);
  EXPECT_EQ(Get("/runningpods/", "", client_cert_, client_key_).first, 200);
  EXPECT_EQ(Get("/pods", "", forged_cert_, forged_key_).first, 401) << "a certificate the client CA did not sign";

  // Decisions are cached: the same token and question within the TTLs asks the API server nothing more.
  int reviews = api_->Requests("POST", "tokenreviews");
  int sars = api_->Requests("POST", "subjectaccessreviews");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get("/pods", "reader-token").first, 200);
  EXPECT_EQ(api_->Requests("POST", "tokenreviews"), reviews);
  EXPECT_EQ(api_->Requests("POST", "subjectaccessreviews"), sars);
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
}

// Streams through the kubelet to containerd's streaming server with a WebSocket client (v4.channel.k8s.io): an
// exec with stdin, stdout, stderr and the remote exit code; a port-forward to an HTTP server in the pod; and the
// refusals (RBAC without nodes/proxy, a container that is not there, a request that is not an upgrade).
TEST_F(KubeletAuthE2E, NodeLogFilesAreServedToWhoMayGetNodesLog) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->AddUserToken("log-token", "log-reader");
  api_->AllowNodeAccess("log-reader", "get", "log");
  api_->AddUserToken("nolog-token", "not-a-log-reader");
  auto [code, listing] = Get("/logs/", "log-token");
  ASSERT_EQ(code, 200) << listing;
  EXPECT_EQ(listing.rfind("<!doctype html>\n", 0), 0u) << listing;
  // A regular file the listing of /var/log names reads back with the file's bytes.
  std::string file;
  for (const auto& e : fs::directory_iterator("/var/log"))
    if (e.is_regular_file() && e.file_size() < (1 << 20) && ::access(e.path().c_str(), R_OK) == 0) file = e.path().filename();
  ASSERT_FALSE(file.empty()) << "no readable regular file under /var/log to read back";
  {
    EXPECT_NE(listing.find(">" + file + "</a>"), std::string::npos) << file;
    auto [fcode, body] = Get("/logs/" + file, "log-token");
    EXPECT_EQ(fcode, 200);
    std::ifstream in("/var/log/" + file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(body.size(), ss.str().size());
  }
  auto [dcode, dbody] = Get("/logs", "log-token");
  EXPECT_EQ(dcode, 301);
  auto [fcode, fbody] = Get("/logs/", "nolog-token");
  EXPECT_EQ(fcode, 403);
  EXPECT_EQ(fbody, "Forbidden (user=not-a-log-reader, verb=get, resource=nodes, subresource(s)=[log])");
}

TEST_F(KubeletAuthE2E, ExecAndPortForwardStreamThroughTheKubeletToContainerd) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->AddUserToken("reader-token", "reader", {"monitoring"});
  api_->AllowNodeAccess("reader", "get", "pods");
  api_->Create("pods", json::parse(R"({"metadata":{"name":"shell","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "command":["httpd","-f","-p","8080","-h","/var/www"]}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "shell");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  })) << ApiPod("default", "shell").dump(2);

  const std::string cmd = "head -c 5; echo; echo oops >&2; exit 3";
  const std::string exec = "/exec/default/shell/c?command=sh&command=-c&command=" + kubelet::testing::QueryEscape(cmd) +
                           "&stdin=1&stdout=1&stderr=1";
  {
    StreamClient ws;
    ASSERT_EQ(ws.Open(port_, exec, "v4.channel.k8s.io", client_cert_, client_key_), 101) << ws.head() << "\n" << ws.body();
    EXPECT_NE(ws.head().find("v4.channel.k8s.io"), std::string::npos) << ws.head();
    ASSERT_TRUE(ws.Send(0, "hello"));
    std::map<int, std::string> got;
    int ch;
    std::string data;
    while (ws.Next(&ch, &data)) got[ch] += data;
    EXPECT_EQ(got[1], "hello\n");
    EXPECT_EQ(got[2], "oops\n");
    json status = json::parse(got[3], nullptr, false);
    ASSERT_TRUE(status.is_object()) << got[3];
    EXPECT_EQ(status.value("reason", ""), "NonZeroExitCode") << got[3];
    EXPECT_EQ(status["details"]["causes"][0]["message"], "3") << got[3];
  }
  {
    StreamClient ws;
    ASSERT_EQ(ws.Open(port_, "/exec/default/shell/c?command=true&stdout=1", "v4.channel.k8s.io", client_cert_, client_key_), 101);
    std::map<int, std::string> got;
    int ch;
    std::string data;
    while (ws.Next(&ch, &data)) got[ch] += data;
    EXPECT_EQ(json::parse(got[3], nullptr, false).value("status", ""), "Success") << got[3];
  }
  // Port-forward: the pod's HTTP server, reached through the kubelet.
  {
    StreamClient ws;
    ASSERT_EQ(ws.Open(port_, "/portForward/default/shell?port=8080", "v4.channel.k8s.io", client_cert_, client_key_), 101)
        << ws.head() << "\n" << ws.body();
    ASSERT_TRUE(ws.Send(0, "GET /index.html HTTP/1.0\r\n\r\n"));
    std::map<int, std::string> got;
    std::map<int, int> messages;
    int ch;
    std::string data;
    while (ws.Next(&ch, &data)) {
      if (messages[ch]++ == 0) {  // each channel opens with the port, little-endian
        EXPECT_EQ(data, std::string("\x90\x1f", 2)) << "channel " << ch;
        continue;
      }
      got[ch] += data;
      if (got[0].find("hello from kubelet-cpp busybox") != std::string::npos) break;
    }
    EXPECT_NE(got[0].find("200 OK"), std::string::npos) << got[0];
    EXPECT_NE(got[0].find("hello from kubelet-cpp busybox"), std::string::npos) << got[0];
  }
  // Refusals, with upstream's answers.
  auto no_proxy = Get(exec, "reader-token");
  EXPECT_EQ(no_proxy.first, 403);
  EXPECT_EQ(no_proxy.second, "Forbidden (user=reader, verb=get, resource=nodes, subresource(s)=[proxy])");
  {
    StreamClient ws;
    EXPECT_EQ(ws.Open(port_, "/exec/default/shell/nope?command=true&stdout=1", "v4.channel.k8s.io", client_cert_, client_key_), 500);
    EXPECT_EQ(ws.body(), "container not found (\"nope\")");
  }
  {
    StreamClient ws;
    EXPECT_EQ(ws.Open(port_, "/exec/default/missing/c?command=true&stdout=1", "v4.channel.k8s.io", client_cert_, client_key_), 404);
  }
  auto plain = Get("/exec/default/shell/c?command=true&stdout=1", "", client_cert_, client_key_);
  EXPECT_EQ(plain.first, 400);
  EXPECT_EQ(plain.second, "Upgrade request required");
  // The daemon keeps serving after all of it.
  EXPECT_EQ(Get("/pods", "", client_cert_, client_key_).first, 200);
}

// What a terminal needs (tty, resize), and what a node must survive: idle streams end after
// streamingConnectionIdleTimeout, and clients that vanish mid-stream leave no descriptor or thread behind.
TEST_F(KubeletAuthE2E, TtyResizeIdleTimeoutAndDroppedStreamsLeakNothing) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->Create("pods", json::parse(R"({"metadata":{"name":"tty","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "command":["sleep","3600"]}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "tty");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  })) << ApiPod("default", "tty").dump(2);

  // A terminal: the resize message (channel 4) reaches the container's tty before the command reads its size.
  {
    StreamClient ws;
    const std::string cmd = "sleep 1; stty size";
    ASSERT_EQ(ws.Open(port_, "/exec/default/tty/c?command=sh&command=-c&command=" + kubelet::testing::QueryEscape(cmd) +
                                 "&stdin=1&stdout=1&tty=1",
                      "v4.channel.k8s.io", client_cert_, client_key_),
              101)
        << ws.head() << "\n" << ws.body();
    ASSERT_TRUE(ws.Send(4, R"({"Width":123,"Height":45})"));
    std::map<int, std::string> got;
    int ch;
    std::string data;
    while (ws.Next(&ch, &data)) got[ch] += data;
    EXPECT_EQ(got[1], "45 123\r\n");
    EXPECT_EQ(json::parse(got[3], nullptr, false).value("status", ""), "Success") << got[3];
  }

  auto count = [](const std::string& what) {
    if (what == "fd") {
      size_t n = 0;
      for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid_) + "/fd"); it != fs::directory_iterator(); ++it) ++n;
      return n;
    }
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Threads:", 0) == 0) return static_cast<size_t>(std::stoul(line.substr(8)));
    return size_t{0};
  };
  // Idle: nothing either way for streamingConnectionIdleTimeout (10s here) and the kubelet closes the stream.
  {
    StreamClient ws;
    ASSERT_EQ(ws.Open(port_, "/exec/default/tty/c?command=sleep&command=300&stdin=1&stdout=1", "v4.channel.k8s.io", client_cert_,
                      client_key_, true, /*recv_timeout_s=*/60),
              101);
    int ch;
    std::string data;
    while (ws.Next(&ch, &data)) {
    }
    EXPECT_TRUE(ws.closed_by_peer()) << "the stream was not closed by the kubelet within 60s";
  }
  // Clients that drop their streams: the kubelet's descriptors and threads come back to where they were.
  size_t fds = count("fd"), threads = count("threads");
  {
    std::vector<std::unique_ptr<StreamClient>> streams;
    for (int i = 0; i < 8; ++i) {
      auto ws = std::make_unique<StreamClient>();
      ASSERT_EQ(ws->Open(port_, "/exec/default/tty/c?command=sleep&command=300&stdin=1&stdout=1", "v4.channel.k8s.io",
                         client_cert_, client_key_),
                101);
      streams.push_back(std::move(ws));
    }
    auto pf = std::make_unique<StreamClient>();
    ASSERT_EQ(pf->Open(port_, "/portForward/default/tty?port=8080", "v4.channel.k8s.io", client_cert_, client_key_), 101);
    streams.push_back(std::move(pf));
    EXPECT_GT(count("fd"), fds);
  }  // closed without a goodbye
  EXPECT_TRUE(WaitUntil([&] { return count("fd") <= fds && count("threads") <= threads; }, std::chrono::seconds(30)))
      << "fds " << fds << " -> " << count("fd") << ", threads " << threads << " -> " << count("threads");
  // /run (upstream's legacy ExecSync endpoint, POST) and PUT /debug/flags/v.
  const std::string base = "https://127.0.0.1:" + std::to_string(port_);
  auto run = HttpDo("POST", base + "/run/default/tty/c?cmd=echo%20run%20output", "", 20, "", client_cert_, client_key_);
  EXPECT_EQ(run.first, 200);
  EXPECT_EQ(run.second, "run output\n");
  auto run_fail = HttpDo("POST", base + "/run/default/tty/c?cmd=false", "", 20, "", client_cert_, client_key_);
  EXPECT_EQ(run_fail.first, 500);
  EXPECT_EQ(run_fail.second, "command 'false' exited with 1: ");
  EXPECT_EQ(HttpDo("GET", base + "/run/default/tty/c?cmd=true", "", 20, "", client_cert_, client_key_).first, 405);
  auto verbosity = HttpDo("PUT", base + "/debug/flags/v", "3", 20, "", client_cert_, client_key_);
  EXPECT_EQ(verbosity.first, 200);
  EXPECT_EQ(verbosity.second, "successfully set klog.logging.verbosity to 3");
  EXPECT_EQ(HttpDo("PUT", base + "/debug/flags/v", "loud", 20, "", client_cert_, client_key_).first, 400);
  EXPECT_EQ(HttpDo("PUT", base + "/debug/flags/v", "2", 20, "", client_cert_, client_key_).first, 200);
  // A port-forward to a port nothing listens on: the runtime's error on the error channel, then the end.
  {
    StreamClient ws;
    ASSERT_EQ(ws.Open(port_, "/portForward/default/tty?port=8080", "v4.channel.k8s.io", client_cert_, client_key_), 101);
    ASSERT_TRUE(ws.Send(0, "GET / HTTP/1.0\r\n\r\n"));
    std::map<int, std::string> got;
    std::map<int, int> messages;
    int ch;
    std::string data;
    while (ws.Next(&ch, &data))
      if (messages[ch]++ > 0) got[ch] += data;
    EXPECT_NE(got[1].find("8080"), std::string::npos) << got[1];
    EXPECT_EQ(got[0], "");
  }
  EXPECT_EQ(Get("/pods", "", client_cert_, client_key_).first, 200);
}

// Debian's kubectl against the project's fake API server, which proxies pods/exec and pods/portforward to the
// kubelet at the node's InternalIP with the API server's kubelet client certificate, as a real API server does:
// kubectl's SPDY streams then run through the kubelet to containerd.
TEST_F(KubeletAuthE2E, KubectlExecPortForwardCpAndAttachThroughTheAPIServersNodeProxy) {
  const char* kubectl = std::getenv("KUBECTL");
  ASSERT_TRUE(kubectl && *kubectl) << "KUBECTL must name Debian's kubectl (ctest sets it)";
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->AddUserToken("admin-token", "kubernetes-admin", {"system:masters"});
  std::string admin = (testing_api_dir_ / "admin.conf").string();
  std::ofstream(admin) << "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
                       << "clusters:\n- name: c\n  cluster:\n    server: " << api_->url()
                       << "\n    certificate-authority-data: " << kubelet::testing::Base64Encode(api_->ca_pem()) << "\n"
                       << "users:\n- name: u\n  user:\n    token: admin-token\n"
                       << "contexts:\n- name: k\n  context: {cluster: c, user: u, namespace: default}\n";
  api_->Create("pods", json::parse(R"({"metadata":{"name":"web","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "command":["httpd","-f","-p","8080","-h","/var/www"]}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "web");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  })) << ApiPod("default", "web").dump(2);
  const std::string k = std::string(kubectl) + " --kubeconfig " + admin + " --request-timeout=30s ";
  fs::path out = work_ / "kubectl-exec.out", err = work_ / "kubectl-exec.err";
  int rc = std::system((k + "exec web -- sh -c 'echo out; echo err >&2; exit 7' >" + out.string() + " 2>" + err.string()).c_str());
  std::ifstream o(out), e(err);
  std::string stdout_text((std::istreambuf_iterator<char>(o)), {}), stderr_text((std::istreambuf_iterator<char>(e)), {});
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 7) << rc << " stderr: " << stderr_text;
  EXPECT_EQ(stdout_text, "out\n");
  EXPECT_NE(stderr_text.find("err"), std::string::npos) << stderr_text;
  EXPECT_EQ(RunCommand("echo hello | " + k + "exec -i web -- head -c 5"), "hello");

  // kubectl port-forward: a local port reaches the pod's HTTP server, for several connections.
  int local = FreePort();
  fs::path pf_log = work_ / "kubectl-port-forward.log";
  pid_t pf = fork();
  if (pf == 0) {
    int fd = ::open(pf_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/bin/sh", "sh", "-c", (k + "port-forward pod/web " + std::to_string(local) + ":8080").c_str(), nullptr);
    _exit(127);
  }
  std::string url = "http://127.0.0.1:" + std::to_string(local) + "/index.html";
  EXPECT_TRUE(WaitUntil([&] { return HttpGet(url).second == "hello from kubelet-cpp busybox\n"; }, std::chrono::seconds(30)))
      << RunCommand("cat " + pf_log.string());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(HttpGet(url).second, "hello from kubelet-cpp busybox\n") << i;
  ::kill(-pf, SIGTERM);
  ::kill(pf, SIGTERM);
  ::waitpid(pf, nullptr, 0);
  RunCommand("pkill -f 'port-forward pod/web " + std::to_string(local) + "'");

  // kubectl cp: tar over exec, both ways.
  fs::path src = work_ / "cp-src.txt", back = work_ / "cp-back.txt";
  std::ofstream(src) << "copied through the kubelet\n" << std::string(100000, 'x') << "\n";
  fs::remove(back);
  std::string cp_in = RunCommand("cd " + work_.string() + " && " + k + "cp cp-src.txt web:/tmp/cp.txt 2>&1; echo rc=$?");
  EXPECT_NE(cp_in.find("rc=0"), std::string::npos) << cp_in;
  EXPECT_EQ(RunCommand(k + "exec web -- head -n 1 /tmp/cp.txt"), "copied through the kubelet\n");
  std::string cp_out = RunCommand("cd " + work_.string() + " && " + k + "cp web:/tmp/cp.txt cp-back.txt 2>&1; echo rc=$?");
  EXPECT_NE(cp_out.find("rc=0"), std::string::npos) << cp_out;
  EXPECT_EQ(RunCommand("cmp " + src.string() + " " + back.string() + " && echo same"), "same\n");

  // kubectl attach: the output of a running container's main process.
  api_->Create("pods", json::parse(R"({"metadata":{"name":"ticker","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "command":["sh","-c","while true; do echo tick; sleep 1; done"]}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "ticker");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  }));
  std::string attached = RunCommand("timeout 5 " + k + "attach ticker 2>/dev/null");
  EXPECT_NE(attached.find("tick\n"), std::string::npos) << attached;
}

// TLS bootstrap and certificate rotation as kubeadm join sets a node up (rotateCertificates, serverTLSBootstrap):
// the fake API server's approver and signer stand in for kube-controller-manager's, with 40 s certificates.
class KubeletBootstrapE2E : public ClusterE2E {
 protected:
  static void SetUpTestSuite() {
    tls_bootstrap_ = true;
    signed_cert_lifetime_ = std::chrono::seconds(40);
    work_name_ = "kubelet-bootstrap";
    extra_args_ = {"--node-ip=127.0.0.1"};
    extra_config_ = "rotateCertificates: true\nserverTLSBootstrap: true\n";
    ClusterE2E::SetUpTestSuite();
  }
  static std::vector<json> CSRs(const std::string& signer, const std::string& user = "") {
    std::vector<json> out;
    for (const auto& c : api_->List("certificatesigningrequests"))
      if (c["spec"]["signerName"] == signer && (user.empty() || c["spec"]["username"] == user)) out.push_back(c);
    return out;
  }
  static bool Approved(const json& csr) {
    for (const auto& c : csr["status"].value("conditions", json::array()))
      if (c["type"] == "Approved") return true;
    return false;
  }
  // The serving certificate's serial as a client that verifies it against the cluster CA for 127.0.0.1 sees it;
  // empty when the handshake or the verification fails.
  static std::string ServingSerial() {
    return RunCommand("echo | timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port_) + " -CAfile " +
                      api_->signing_ca_file() + " -verify_ip 127.0.0.1 -verify_return_error 2>/dev/null | "
                      "openssl x509 -noout -serial 2>/dev/null");
  }
  static kubelet::TimePoint LeaseRenewTime() {
    auto lease = api_->Get("leases", "kube-node-lease", "e2e-node");
    kubelet::TimePoint t{};
    if (lease) kubelet::ParseRFC3339((*lease)["spec"].value("renewTime", ""), &t);
    return t;
  }
};

TEST_F(KubeletBootstrapE2E, ABootstrapTokenBecomesRotatingClientAndServingCertificates) {
  // The node registers with a certificate bought with the bootstrap token.
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }, std::chrono::seconds(60)));
  auto client_csrs = CSRs("kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:abcdef");
  ASSERT_EQ(client_csrs.size(), 1u);
  EXPECT_EQ(client_csrs[0]["spec"]["usages"], json({"digital signature", "client auth"}));
  std::string kubeconfig;
  {
    std::ifstream in(kubeconfig_);
    std::stringstream ss;
    ss << in.rdbuf();
    kubeconfig = ss.str();
  }
  const std::string current = (work_ / "pki" / "kubelet-client-current.pem").string();
  EXPECT_NE(kubeconfig.find("client-certificate: \"" + current + "\""), std::string::npos) << kubeconfig;
  EXPECT_TRUE(fs::is_symlink(current));
  auto users = api_->Users();
  EXPECT_NE(std::find(users.begin(), users.end(), "system:node:e2e-node"), users.end());
  auto first_client = kubelet::certificate::ParseCombinedPEM(RunCommand("cat " + current));
  ASSERT_TRUE(first_client.ok()) << first_client.status();

  // The serving certificate waits for an approver, as on a real cluster; until then no handshake succeeds.
  ASSERT_TRUE(WaitUntil([] { return !CSRs("kubernetes.io/kubelet-serving").empty(); }, std::chrono::seconds(30)));
  EXPECT_EQ(ServingSerial(), "");
  json serving = CSRs("kubernetes.io/kubelet-serving")[0];
  EXPECT_EQ(serving["spec"]["username"], "system:node:e2e-node");
  EXPECT_EQ(serving["spec"]["usages"], json({"digital signature", "server auth"}));
  ASSERT_TRUE(api_->ApproveCSR(serving["metadata"]["name"]));
  std::string serial1;
  ASSERT_TRUE(WaitUntil([&] { return !(serial1 = ServingSerial()).empty(); }, std::chrono::seconds(30)));
  EXPECT_EQ(serial1.rfind("serial=", 0), 0u) << serial1;
  // The managers' TTL gauges, as upstream names them: seconds left on certificates of 40 s.
  auto ttl = [](const std::string& name) {
    auto [code, body] = HttpGet("https://127.0.0.1:" + std::to_string(port_) + "/metrics");
    size_t at = body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(body.substr(at + name.size() + 2));
  };
  ASSERT_TRUE(WaitUntil([&] { double t = ttl("kubelet_certificate_manager_server_ttl_seconds"); return t > 0 && t <= 40; },
                        std::chrono::seconds(70)));
  double client_ttl = ttl("kubelet_certificate_manager_client_ttl_seconds");
  EXPECT_GT(client_ttl, 0);
  EXPECT_LE(client_ttl, 40);

  // Rotation between 70% and 90% of 40 s: the node renews its client certificate itself, and the serving one
  // (approved again), with no restart: the lease goes on being renewed after the first client certificate expired.
  ASSERT_TRUE(WaitUntil([] { return CSRs("kubernetes.io/kubelet-serving").size() >= 2; }, std::chrono::seconds(60)));
  for (const auto& c : CSRs("kubernetes.io/kubelet-serving"))
    if (!Approved(c)) api_->ApproveCSR(c["metadata"]["name"]);
  ASSERT_TRUE(WaitUntil([] { return !CSRs("kubernetes.io/kube-apiserver-client-kubelet", "system:node:e2e-node").empty(); },
                        std::chrono::seconds(60)));
  std::string serial2;
  ASSERT_TRUE(WaitUntil([&] { serial2 = ServingSerial(); return !serial2.empty() && serial2 != serial1; }, std::chrono::seconds(30)))
      << serial1 << " " << serial2;
  ASSERT_TRUE(WaitUntil([&] { return LeaseRenewTime() > first_client->not_after + std::chrono::seconds(1); },
                        std::chrono::seconds(60)))
      << "the lease was not renewed after the first client certificate expired";
  EXPECT_EQ(NodeCondition("Ready"), "True");
  EXPECT_EQ(CSRs("kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:abcdef").size(), 1u);

  // A restart with valid certificates asks for nothing new and serves at once.
  StopKubelet(SIGTERM);
  size_t before = api_->List("certificatesigningrequests").size();
  StartKubelet();
  ASSERT_TRUE(WaitUntil([] { return !ServingSerial().empty(); }, std::chrono::seconds(20)));
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  EXPECT_EQ(CSRs("kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:abcdef").size(), 1u);
  EXPECT_LE(api_->List("certificatesigningrequests").size(), before + 2);  // at most a rotation that fell due
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden().front();
}

// Memory pressure on real cgroups: a memory.available threshold a little
// below what the node has now; a BestEffort pod that then takes 900 MB is
// evicted first (Failed / Evicted with upstream's message), the Burstable and
// Guaranteed pods within their requests stay; MemoryPressure and its taint
// come and go; a BestEffort pod arriving under pressure is refused.
class EvictionE2E : public ClusterE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-eviction";
    // Node allocatable not enforced on pods: else upstream's allocatableMemory.available (at memory.available's
    // value against capacity minus that same value) would be crossed from the start with the large threshold below.
    extra_config_ = "evictionHard: {memory.available: 100Mi}\nevictionPressureTransitionPeriod: 20s\nenforceNodeAllocatable: []\n";
    ClusterE2E::SetUpTestSuite();
  }
  // The kubelet's memory.available: MemTotal - (root cgroup usage - inactive file), as cAdvisor computes it.
  static int64_t NodeMemoryAvailable() {
    auto read = [](const std::string& path, const std::string& key) -> int64_t {
      std::ifstream in(path);
      std::string k;
      int64_t v = 0;
      if (key.empty()) {
        in >> v;
        return v;
      }
      while (in >> k >> v)
        if (k == key) return v;
      return 0;
    };
    int64_t total = read("/proc/meminfo", "MemTotal:") * 1024;
    int64_t usage = read("/sys/fs/cgroup/memory/memory.usage_in_bytes", "");
    int64_t inactive = read("/sys/fs/cgroup/memory/memory.stat", "total_inactive_file");
    if (usage <= 0) return -1;
    return total - (usage - inactive);
  }
  static bool HasTaint(const std::string& key) {
    auto node = api_->Get("nodes", "", "e2e-node");
    if (!node || !(*node)["spec"].contains("taints")) return false;
    for (const auto& t : (*node)["spec"]["taints"])
      if (t["key"] == key) return true;
    return false;
  }
};

TEST_F(EvictionE2E, BestEffortPodIsEvictedFirstUnderMemoryPressure) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  EXPECT_EQ(NodeCondition("MemoryPressure"), "False");
  auto create = [](const std::string& name, const std::string& resources, const std::string& command) {
    api_->Create("pods", json::parse(R"({"metadata":{"name":")" + name + R"(","namespace":"default"},
      "spec":{"nodeName":"e2e-node","terminationGracePeriodSeconds":1,"containers":[{"name":")" + name + R"(",
      "image":"kubelet-cpp.local/busybox:1.35","command":)" + command + R"(,"resources":)" + resources + "}]}}"));
  };
  const std::string idle = R"(["sleep","3600"])";
  create("guaranteed", R"({"limits":{"cpu":"100m","memory":"64Mi"},"requests":{"cpu":"100m","memory":"64Mi"}})", idle);
  create("burstable", R"({"requests":{"memory":"64Mi"}})", idle);
  // Takes 1.5 GB once the test says so (busybox awk holds the string); the signal comes through a hostPath.
  fs::create_directories(work_ / "signal");
  api_->Create("pods", json::parse(R"({"metadata":{"name":"hog","namespace":"default"},
    "spec":{"nodeName":"e2e-node","terminationGracePeriodSeconds":1,
    "volumes":[{"name":"signal","hostPath":{"path":")" + (work_ / "signal").string() + R"("}}],
    "containers":[{"name":"hog","image":"kubelet-cpp.local/busybox:1.35","volumeMounts":[{"name":"signal","mountPath":"/signal"}],
    "command":["sh","-c","while [ ! -e /signal/go ]; do sleep 0.5; done; exec awk 'BEGIN { s = sprintf(\"%1500000000s\", \"\"); system(\"sleep 3600\") }'"]}]}})"));
  auto phase = [](const std::string& name) {
    json p = ApiPod("default", name);
    return p.is_null() || !p.contains("status") ? std::string() : p["status"].value("phase", "");
  };
  ASSERT_TRUE(WaitUntil([&] { return phase("guaranteed") == "Running" && phase("burstable") == "Running" && phase("hog") == "Running"; },
                        std::chrono::seconds(60)));
  std::string hog_uid = ApiPod("default", "hog")["metadata"]["uid"];
  // Now that everything runs: a threshold 700 MiB below what the node has, and a restarted kubelet to read it
  // (the pods keep running across the restart).
  int64_t available = NodeMemoryAvailable();
  ASSERT_GT(available, 0) << "needs the cgroup v1 memory hierarchy";
  std::string threshold = std::to_string((available - (700LL << 20)) >> 20) + "Mi";
  {
    std::ifstream in(work_ / "config.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    size_t at = text.find("evictionHard: {memory.available: 100Mi}");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, std::string("evictionHard: {memory.available: 100Mi}").size(),
                 "evictionHard: {memory.available: \"" + threshold + "\"}");
    std::ofstream(work_ / "config.yaml") << text;
  }
  StopKubelet(SIGTERM);
  StartKubelet();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(NodeCondition("MemoryPressure"), "False");
  for (const char* name : {"guaranteed", "burstable", "hog"}) ASSERT_EQ(phase(name), "Running") << name;
  std::ofstream(work_ / "signal" / "go") << "go";

  // Pressure: the node says so (condition and taint) and the BestEffort pod goes.
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("MemoryPressure") == "True"; }, std::chrono::seconds(60)));
  ASSERT_TRUE(WaitUntil([] { return HasTaint("node.kubernetes.io/memory-pressure"); }, std::chrono::seconds(20)));
  // A BestEffort pod arriving now is refused; a Burstable one would not be.
  create("latecomer", "{}", idle);
  ASSERT_TRUE(WaitUntil([&] { return phase("latecomer") == "Failed"; }, std::chrono::seconds(20)));
  json late = ApiPod("default", "latecomer");
  EXPECT_EQ(late["status"]["reason"], "Evicted");
  EXPECT_EQ(late["status"]["message"], "The node had condition: [MemoryPressure]. ");

  ASSERT_TRUE(WaitUntil([&] { return phase("hog") == "Failed"; }, std::chrono::seconds(60))) << ApiPod("default", "hog").dump(2);
  json hog = ApiPod("default", "hog");
  EXPECT_EQ(hog["status"]["reason"], "Evicted");
  std::string msg = hog["status"]["message"];
  EXPECT_EQ(msg.rfind("The node was low on resource: memory. Threshold quantity: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("Container hog was using "), std::string::npos) << msg;
  EXPECT_NE(msg.find(", request is 0, has larger consumption of memory. "), std::string::npos) << msg;
  bool disruption = false;
  for (const auto& c : hog["status"]["conditions"])
    disruption |= c["type"] == "DisruptionTarget" && c["status"] == "True" && c["reason"] == "TerminationByKubelet";
  EXPECT_TRUE(disruption) << hog["status"].dump(2);
  EXPECT_TRUE(WaitUntil([&] { return Containers(hog_uid).empty(); }, std::chrono::seconds(30)));
  bool event = false;
  for (const auto& e : api_->List("events"))
    event |= e["reason"] == "Evicted" && e["involvedObject"]["name"] == "hog" && e["type"] == "Warning";
  EXPECT_TRUE(event);

  // With the memory back, the condition and taint clear after the transition period; the others never moved.
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("MemoryPressure") == "False"; }, std::chrono::seconds(90)));
  ASSERT_TRUE(WaitUntil([] { return !HasTaint("node.kubernetes.io/memory-pressure"); }, std::chrono::seconds(20)));
  for (const char* name : {"guaranteed", "burstable"}) {
    json p = ApiPod("default", name);
    EXPECT_EQ(p["status"]["phase"], "Running") << name;
    EXPECT_EQ(p["status"]["containerStatuses"][0]["restartCount"], 0) << name;
  }
}

// Local ephemeral storage: an emptyDir written past its sizeLimit gets its
// pod evicted with upstream's message; a pod within its limits stays.
TEST_F(EvictionE2E, EmptyDirOverItsSizeLimitIsEvicted) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->Create("pods", json::parse(R"({"metadata":{"name":"filler","namespace":"default"},
    "spec":{"nodeName":"e2e-node","terminationGracePeriodSeconds":1,
    "volumes":[{"name":"data","emptyDir":{"sizeLimit":"5Mi"}}],
    "containers":[{"name":"filler","image":"kubelet-cpp.local/busybox:1.35","volumeMounts":[{"name":"data","mountPath":"/data"}],
    "command":["sh","-c","dd if=/dev/zero of=/data/f bs=1M count=12; exec sleep 3600"]}]}})"));
  api_->Create("pods", json::parse(R"({"metadata":{"name":"modest","namespace":"default"},
    "spec":{"nodeName":"e2e-node","terminationGracePeriodSeconds":1,
    "volumes":[{"name":"data","emptyDir":{"sizeLimit":"50Mi"}}],
    "containers":[{"name":"modest","image":"kubelet-cpp.local/busybox:1.35","volumeMounts":[{"name":"data","mountPath":"/data"}],
    "resources":{"limits":{"ephemeral-storage":"100Mi"}},
    "command":["sh","-c","dd if=/dev/zero of=/data/f bs=1M count=2; exec sleep 3600"]}]}})"));
  auto phase = [](const std::string& name) {
    json p = ApiPod("default", name);
    return p.is_null() || !p.contains("status") ? std::string() : p["status"].value("phase", "");
  };
  ASSERT_TRUE(WaitUntil([&] { return phase("filler") == "Failed"; }, std::chrono::seconds(60))) << ApiPod("default", "filler").dump(2);
  json filler = ApiPod("default", "filler");
  EXPECT_EQ(filler["status"]["reason"], "Evicted");
  EXPECT_EQ(filler["status"]["message"], "Usage of EmptyDir volume \"data\" exceeds the limit \"5Mi\". ");
  EXPECT_EQ(phase("modest"), "Running");
  std::string uid = filler["metadata"]["uid"];
  EXPECT_TRUE(WaitUntil([&] { return Containers(uid).empty(); }, std::chrono::seconds(30)));
}

TEST_F(ClusterE2E, NodeRegistersRunsBoundPodsMirrorsStaticPodsAndSurvivesAnOutage) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; })) << (api_->Get("nodes", "", "e2e-node") ? api_->Get("nodes", "", "e2e-node")->dump(2) : "no node");
  auto node = *api_->Get("nodes", "", "e2e-node");
  EXPECT_EQ(node["status"]["nodeInfo"]["containerRuntimeVersion"].get<std::string>().rfind("containerd://", 0), 0u);
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/hostname"], "e2e-node");
  ASSERT_TRUE(WaitUntil([] { return api_->Get("leases", "kube-node-lease", "e2e-node").has_value(); }));

  // A pod bound to this node runs and its status reads Running with a pod IP.
  api_->Create("pods", json::parse(R"({"metadata":{"name":"bound","namespace":"default"},
    "spec":{"nodeName":"e2e-node","terminationGracePeriodSeconds":2,"containers":[{"name":"c",
    "image":"kubelet-cpp.local/busybox:1.35","command":["sleep","3600"]}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "bound");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running" && p["status"].contains("podIP");
  })) << ApiPod("default", "bound").dump(2);
  std::string bound_uid = ApiPod("default", "bound")["metadata"]["uid"];
  ASSERT_EQ(Containers(bound_uid).size(), 1u);
  std::string bound_id = Containers(bound_uid)[0].id();

  // A static pod shows a mirror pod.
  WriteManifest("static.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: static, namespace: kube-system}\nspec:\n"
                               "  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n"
                               "    image: kubelet-cpp.local/busybox:1.35\n    command: [sleep, '3600']\n");
  ASSERT_TRUE(WaitUntil([] {
    json m = ApiPod("kube-system", "static-e2e-node");
    return !m.is_null() && m["metadata"]["annotations"].contains("kubernetes.io/config.mirror") && m.contains("status") &&
           m["status"].value("phase", "") == "Running";
  }));

  // The API server away for 30 s changes nothing running.
  api_->Stop();
  std::this_thread::sleep_for(std::chrono::seconds(30));
  ASSERT_EQ(Containers(bound_uid).size(), 1u);
  EXPECT_EQ(Containers(bound_uid)[0].id(), bound_id);
  ASSERT_TRUE(api_->Start());
  std::string renew = (*api_->Get("leases", "kube-node-lease", "e2e-node"))["spec"]["renewTime"];
  ASSERT_TRUE(WaitUntil([&] { return (*api_->Get("leases", "kube-node-lease", "e2e-node"))["spec"]["renewTime"] != renew; }));
  EXPECT_EQ(NodeCondition("Ready"), "True");
  EXPECT_EQ(Containers(bound_uid)[0].id(), bound_id);

  // Deleting the pod (as kubectl delete pod does) stops its container and removes it.
  std::string del = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                    "/api/v1/namespaces/default/pods/bound > /dev/null";
  ASSERT_EQ(std::system(del.c_str()), 0);
  ASSERT_TRUE(WaitUntil([] { return ApiPod("default", "bound").is_null(); }));
  ASSERT_TRUE(WaitUntil([&] { return Containers(bound_uid).empty() && Sandboxes(bound_uid) == 0; }));
  fs::remove(work_ / "manifests" / "static.yaml");
  ASSERT_TRUE(WaitUntil([] { return ApiPod("kube-system", "static-e2e-node").is_null(); }));
}

// Issue 13 on the real runtime: the project's CSI node plugin (a separate process speaking csi.v1 and plugin
// registration, doing real tmpfs and bind mounts) registers through <root>/plugins_registry; pods on containerd
// use its volumes through a claim, inline, and attached through a VolumeAttachment. A kubelet restart keeps the
// mounts and the containers; a driver that crashes mid-publish, a missing driver and a missing attachment are
// reported as FailedMount and retried until they are right.
class CSIE2E : public ClusterE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-csi";
    // Volumes measured every 2 s (upstream's default is a minute), and their health read (upstream's alpha gate).
    // Pods synced every 3 s (upstream's default is a minute): a claim's growth is seen at the pod's next sync.
    extra_config_ = "volumeStatsAggPeriod: 2s\nsyncFrequency: 3s\nfeatureGates:\n  CSIVolumeHealth: true\n";
    ClusterE2E::SetUpTestSuite();
  }
};

TEST_F(CSIE2E, CSIVolumesThroughTheRegisteredDriver) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->CreateNamespaceDefaults("default");
  const std::string driver = "csi.test.kubelet-cpp.io";
  const fs::path state = work_ / "csi-state";
  RemoveTree(state);
  fs::create_directories(state);
  struct Driver {
    pid_t pid = -1;
    void Start(const fs::path& state, const fs::path& reg) {
      std::vector<std::string> args{TEST_CSI_DRIVER, "--endpoint=" + (state / "csi.sock").string(),
                                    "--state-dir=" + state.string(), "--registration-dir=" + reg.string(),
                                    "--node-id=e2e-node-id", "--max-volumes=9",
                                    "--topology=topology.csi.test.kubelet-cpp.io/zone=z1"};
      pid = kubelet::testing::Spawn(args);
    }
    void Stop() {
      if (pid <= 0) return;
      kill(pid, SIGTERM);
      int st;
      waitpid(pid, &st, 0);
      pid = -1;
    }
    // The driver exited by itself (a crash switch): reaped.
    bool Exited() {
      int st;
      if (pid > 0 && waitpid(pid, &st, WNOHANG) == pid) pid = -1;
      return pid <= 0;
    }
    ~Driver() { Stop(); }
  } drv;
  auto calls = [&](const std::string& method) { return kubelet::testing::ReadCallsLog((state / "calls.log").string(), method); };
  auto csinode_drivers = [] {
    auto n = api_->Get("csinodes", "", "e2e-node");
    return n ? (*n)["spec"].value("drivers", json::array()) : json::array();
  };
  auto running = [](const std::string& name) {
    return WaitUntil([&] {
      json p = ApiPod("default", name);
      return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
    });
  };
  auto event = [](const std::string& pod, const std::string& reason, const std::string& text) {
    return WaitUntil([&] {
      for (const auto& e : api_->List("events"))
        if (e["involvedObject"].value("name", "") == pod && e.value("reason", "") == reason &&
            e.value("message", "").find(text) != std::string::npos)
          return true;
      return false;
    });
  };
  auto del = [&](const std::string& name) {
    std::string cmd = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                      "/api/v1/namespaces/default/pods/" + name + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  };
  auto pod_with = [](const std::string& name, const json& volume, const std::string& cmd) {
    json p = json::parse(R"({"metadata":{"namespace":"default"},"spec":{"nodeName":"e2e-node",
      "terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "volumeMounts":[{"name":"data","mountPath":"/data"}]}]}})");
    p["metadata"]["name"] = name;
    json v = volume;
    v["name"] = "data";
    p["spec"]["volumes"] = json::array({v});
    p["spec"]["containers"][0]["command"] = {"sh", "-c", cmd};
    return p;
  };
  auto claim = [&](const std::string& name, const std::string& handle) {
    json made = api_->Create("persistentvolumeclaims",
                             {{"metadata", {{"name", name}, {"namespace", "default"}}},
                              {"spec", {{"volumeName", "pv-" + name}, {"accessModes", {"ReadWriteOnce"}}}},
                              {"status", {{"phase", "Bound"}, {"capacity", {{"storage", "16Mi"}}}}}});
    api_->Create("persistentvolumes",
                 {{"metadata", {{"name", "pv-" + name}}},
                  {"spec",
                   {{"accessModes", {"ReadWriteOnce"}},
                    {"capacity", {{"storage", "16Mi"}}},
                    {"csi", {{"driver", driver}, {"volumeHandle", handle}, {"volumeAttributes", {{"size", "16m"}}}}},
                    {"claimRef", {{"name", name}, {"namespace", "default"}, {"uid", made["metadata"]["uid"]}}}}},
                  {"status", {{"phase", "Bound"}}}});
  };

  // Before any driver registered: the pod waits with the upstream message, and runs once the driver comes.
  api_->Create("csidrivers", {{"metadata", {{"name", driver}}},
                              {"spec", {{"attachRequired", false}, {"podInfoOnMount", true},
                                        {"volumeLifecycleModes", {"Persistent", "Ephemeral"}}}}});
  claim("store", "vol-store");
  api_->Create("pods", pod_with("early", {{"persistentVolumeClaim", {{"claimName", "store"}}}},
                                "echo kept > /data/file; sleep 3600"));
  EXPECT_TRUE(event("early", "FailedMount", "driver name " + driver + " not found in the list of registered CSI drivers"));

  drv.Start(state, work_ / "root/plugins_registry");
  ASSERT_TRUE(WaitUntil([&] { return csinode_drivers().size() == 1; })) << api_->Get("csinodes", "", "e2e-node")->dump();
  json d = csinode_drivers()[0];
  EXPECT_EQ(d["name"], driver);
  EXPECT_EQ(d["nodeID"], "e2e-node-id");
  EXPECT_EQ(d["allocatable"]["count"], 9);
  json node = *api_->Get("nodes", "", "e2e-node");
  EXPECT_EQ(json::parse(node["metadata"]["annotations"].value("csi.volume.kubernetes.io/nodeid", "{}")).value(driver, ""),
            "e2e-node-id");
  EXPECT_EQ(node["metadata"]["labels"].value("topology.csi.test.kubelet-cpp.io/zone", ""), "z1");

  ASSERT_TRUE(running("early")) << ApiPod("default", "early").dump(2);
  std::string uid = ApiPod("default", "early")["metadata"]["uid"];
  ASSERT_EQ(Containers(uid).size(), 1u);
  std::string id = Containers(uid)[0].id();
  ASSERT_TRUE(WaitUntil([&] { return Exec(id, {"cat", "/data/file"}).second == "kept\n"; }));
  {
    std::ifstream backing(state / "volumes/vol-store/file");
    std::string got;
    backing >> got;
    EXPECT_EQ(got, "kept") << "the container wrote into the driver's volume";
  }
  ASSERT_EQ(calls("NodeStageVolume").size(), 1u);
  ASSERT_EQ(calls("NodePublishVolume").size(), 1u);
  json publish = calls("NodePublishVolume")[0];
  EXPECT_EQ(publish["volume_context"].value("csi.storage.k8s.io/pod.name", ""), "early");
  EXPECT_EQ(publish["volume_context"].value("csi.storage.k8s.io/pod.uid", ""), uid);
  fs::path target = work_ / "root/pods" / uid / "volumes/kubernetes.io~csi/pv-store/mount";
  EXPECT_EQ(publish.value("target_path", ""), target.string());
  EXPECT_NE(RunCommand("findmnt -n -o TARGET " + target.string()), "");

  // Usage from NodeGetVolumeStats: the summary's volume entry of the claim, and the kubelet_volume_stats_* series.
  const std::string base = "https://127.0.0.1:" + std::to_string(port_);
  json vol;
  ASSERT_TRUE(WaitUntil([&] {
    auto [code, body] = HttpGet(base + "/stats/summary");
    json sum = json::parse(body, nullptr, false);
    if (code != 200 || !sum.is_object()) return false;
    for (const auto& p : sum.value("pods", json::array()))
      if (p["podRef"].value("uid", "") == uid)
        for (const auto& v : p.value("volume", json::array()))
          if (v.value("name", "") == "data") vol = v;
    return !vol.is_null();
  })) << "no volume entry for the CSI claim in /stats/summary";
  EXPECT_EQ(vol["pvcRef"], json({{"name", "store"}, {"namespace", "default"}}));
  EXPECT_EQ(vol.value("capacityBytes", 0), 16u << 20) << vol.dump();
  EXPECT_GT(vol.value("usedBytes", 0), 0u) << vol.dump();
  EXPECT_EQ(vol.value("availableBytes", 0) + vol.value("usedBytes", 0), 16u << 20) << vol.dump();
  EXPECT_GT(vol.value("inodes", 0), 0u);
  EXPECT_EQ(vol["volumeHealthStats"], json({{"abnormal", false}}));
  std::string metrics = HttpGet(base + "/metrics").second;
  EXPECT_NE(metrics.find("kubelet_volume_stats_capacity_bytes{namespace=\"default\",persistentvolumeclaim=\"store\"} " +
                         std::to_string(16u << 20)),
            std::string::npos)
      << metrics.substr(metrics.find("kubelet_volume_stats"), 2000);
  for (const char* m : {"kubelet_volume_stats_available_bytes", "kubelet_volume_stats_used_bytes", "kubelet_volume_stats_inodes",
                        "kubelet_volume_stats_inodes_free", "kubelet_volume_stats_inodes_used"})
    EXPECT_NE(metrics.find(std::string(m) + "{namespace=\"default\",persistentvolumeclaim=\"store\"} "), std::string::npos) << m;
  EXPECT_NE(metrics.find("kubelet_volume_stats_health_status_abnormal{namespace=\"default\",persistentvolumeclaim=\"store\"} 0"),
            std::string::npos);
  // The driver says the volume is abnormal: the series turns 1 and the pod gets upstream's warning.
  std::ofstream(state / "abnormal") << "";
  EXPECT_TRUE(event("early", "VolumeConditionAbnormal", "Volume data: the test marked the volume abnormal"));
  EXPECT_TRUE(WaitUntil([&] {
    return HttpGet(base + "/metrics").second.find(
               "kubelet_volume_stats_health_status_abnormal{namespace=\"default\",persistentvolumeclaim=\"store\"} 1") !=
           std::string::npos;
  }));
  fs::remove(state / "abnormal");
  {
    std::string file = (work_ / "csi-metrics.txt").string();
    std::ofstream(file) << HttpGet(base + "/metrics").second;
    std::string out = PromtoolFindingsBesideUpstreamNames(file);
    EXPECT_EQ(out, "") << "promtool check metrics:\n" << out;
  }

  // The controller grew the volume (the PV says 32Mi, the claim still 16Mi, resize pending on the node): the kubelet
  // calls NodeExpandVolume, the container sees the larger filesystem, and the claim's status says so.
  {
    json pvc = *api_->Get("persistentvolumeclaims", "default", "store");
    pvc["spec"]["resources"] = {{"requests", {{"storage", "32Mi"}}}};
    pvc["status"]["conditions"] = {{{"type", "FileSystemResizePending"}, {"status", "True"}}};
    api_->Update("persistentvolumeclaims", pvc);
    json pv = *api_->Get("persistentvolumes", "", "pv-store");
    pv["spec"]["capacity"]["storage"] = "32Mi";
    api_->Update("persistentvolumes", pv);
  }
  ASSERT_TRUE(WaitUntil([&] { return calls("NodeExpandVolume").size() == 1; })) << "no NodeExpandVolume";
  EXPECT_EQ(calls("NodeExpandVolume")[0].value("required_bytes", 0), 32 << 20);
  ASSERT_TRUE(WaitUntil([&] {
    json pvc = *api_->Get("persistentvolumeclaims", "default", "store");
    return pvc["status"]["capacity"].value("storage", "") == "32Mi";
  })) << api_->Get("persistentvolumeclaims", "default", "store")->dump();
  EXPECT_EQ((*api_->Get("persistentvolumeclaims", "default", "store"))["status"]["conditions"], json::array());
  EXPECT_TRUE(event("early", "FileSystemResizeSuccessful", "MountVolume.NodeExpandVolume succeeded for volume \"pv-store\""));
  EXPECT_EQ(Exec(id, {"sh", "-c", "df -k /data | tail -1 | awk '{print $2}'"}).second, std::to_string(32 * 1024) + "\n");
  std::this_thread::sleep_for(std::chrono::seconds(4));  // another sync: nothing left to expand
  EXPECT_EQ(calls("NodeExpandVolume").size(), 1u);

  // A second pod on the same claim reuses the staging; a restart keeps mounts and containers.
  api_->Create("pods", pod_with("later", {{"persistentVolumeClaim", {{"claimName", "store"}}}}, "sleep 3600"));
  ASSERT_TRUE(running("later")) << ApiPod("default", "later").dump(2);
  std::string uid2 = ApiPod("default", "later")["metadata"]["uid"];
  ASSERT_EQ(Containers(uid2).size(), 1u);
  EXPECT_EQ(Exec(Containers(uid2)[0].id(), {"cat", "/data/file"}).second, "kept\n");
  EXPECT_EQ(calls("NodeStageVolume").size(), 1u);
  EXPECT_EQ(calls("NodePublishVolume").size(), 2u);
  std::string mounts_before = RunCommand("grep -e " + uid + " -e " + uid2 + " -e vol-store /proc/mounts | sort");
  StopKubelet(SIGTERM);
  StartKubelet();
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  std::this_thread::sleep_for(std::chrono::seconds(5));  // several syncs and reconciler rounds
  ASSERT_EQ(Containers(uid).size(), 1u);
  EXPECT_EQ(Containers(uid)[0].id(), id) << "the restart restarted the container";
  EXPECT_EQ(RunCommand("grep -e " + uid + " -e " + uid2 + " -e vol-store /proc/mounts | sort"), mounts_before)
      << "the restart changed the CSI mounts";
  EXPECT_EQ(calls("NodeUnpublishVolume").size(), 0u);
  EXPECT_EQ(calls("NodeUnstageVolume").size(), 0u);

  // Deleting the pods: each unpublished, the volume unstaged after the last.
  del("early");
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid); }));
  EXPECT_EQ(calls("NodeUnpublishVolume").size(), 1u);
  EXPECT_EQ(calls("NodeUnstageVolume").size(), 0u) << "unstaged while another pod uses the volume";
  del("later");
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid2); }));
  EXPECT_EQ(calls("NodeUnpublishVolume").size(), 2u);
  ASSERT_TRUE(WaitUntil([&] { return calls("NodeUnstageVolume").size() == 1u; }));
  EXPECT_EQ(RunCommand("grep -c -e " + uid + " -e " + uid2 + " /proc/mounts"), "0\n");

  // An inline ephemeral volume: published with the pod's information, no staging, gone with the pod.
  api_->Create("pods", pod_with("inline", {{"csi", {{"driver", driver}, {"volumeAttributes", {{"size", "8m"}}}}}},
                                "echo mine > /data/f; sleep 3600"));
  ASSERT_TRUE(running("inline")) << ApiPod("default", "inline").dump(2);
  std::string uid3 = ApiPod("default", "inline")["metadata"]["uid"];
  ASSERT_EQ(calls("NodePublishVolume").size(), 3u);
  json eph = calls("NodePublishVolume")[2];
  EXPECT_EQ(eph["volume_context"].value("csi.storage.k8s.io/ephemeral", ""), "true");
  EXPECT_EQ(eph["volume_context"].value("csi.storage.k8s.io/pod.name", ""), "inline");
  EXPECT_EQ(calls("NodeStageVolume").size(), 1u);
  del("inline");
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid3); }));
  EXPECT_EQ(calls("NodeUnpublishVolume").size(), 3u);

  // A claim not bound and a PV of another zone: each pod waits with an event naming why; the others run on.
  api_->Create("persistentvolumeclaims", {{"metadata", {{"name", "unbound"}, {"namespace", "default"}}},
                                          {"spec", {{"accessModes", {"ReadWriteOnce"}}}}, {"status", {{"phase", "Pending"}}}});
  api_->Create("pods", pod_with("waits", {{"persistentVolumeClaim", {{"claimName", "unbound"}}}}, "sleep 3600"));
  claim("far", "vol-far");
  {
    json pv = *api_->Get("persistentvolumes", "", "pv-far");
    pv["spec"]["nodeAffinity"] = json::parse(R"({"required":{"nodeSelectorTerms":[{"matchExpressions":[
      {"key":"topology.kubernetes.io/zone","operator":"In","values":["far-away"]}]}]}})");
    api_->Update("persistentvolumes", pv);
  }
  api_->Create("pods", pod_with("far", {{"persistentVolumeClaim", {{"claimName", "far"}}}}, "sleep 3600"));
  api_->Create("pods", pod_with("bystander", {{"emptyDir", json::object()}}, "sleep 3600"));
  EXPECT_TRUE(event("waits", "FailedMount", "error processing PVC default/unbound: PVC is not bound"));
  EXPECT_TRUE(event("far", "FailedMount", "MountVolume.NodeAffinity check failed for volume \"pv-far\" : no matching NodeSelectorTerms"));
  EXPECT_TRUE(running("bystander"));
  EXPECT_EQ(ApiPod("default", "waits")["status"].value("phase", ""), "Pending");
  EXPECT_EQ(ApiPod("default", "far")["status"].value("phase", ""), "Pending");
  for (const auto& c : calls("NodeStageVolume")) EXPECT_NE(c.value("volume_id", ""), "vol-far") << "staged on the wrong node";
  // The zone the PV wants: the node is labelled into it, and the pod runs at its next try.
  {
    json n = *api_->Get("nodes", "", "e2e-node");
    n["metadata"]["labels"]["topology.kubernetes.io/zone"] = "far-away";
    api_->Update("nodes", n);
  }
  EXPECT_TRUE(running("far")) << ApiPod("default", "far").dump(2);
  for (const char* p : {"waits", "far", "bystander"}) del(p);
  ASSERT_TRUE(WaitUntil([&] { return ApiPod("default", "far").is_null() && ApiPod("default", "bystander").is_null(); }));

  // A driver that crashes in the middle of a publish: FailedMount, retried against the restarted driver.
  claim("crashy", "vol-crashy");
  std::ofstream(state / "crash-NodePublishVolume") << "";
  api_->Create("pods", pod_with("crashy", {{"persistentVolumeClaim", {{"claimName", "crashy"}}}}, "sleep 3600"));
  ASSERT_TRUE(WaitUntil([&] { return drv.Exited(); })) << "the crash switch did not crash the driver";
  EXPECT_TRUE(event("crashy", "FailedMount", "MountVolume.SetUp failed for volume \"pv-crashy\""));
  drv.Start(state, work_ / "root/plugins_registry");
  ASSERT_TRUE(running("crashy")) << ApiPod("default", "crashy").dump(2);
  std::string uid4 = ApiPod("default", "crashy")["metadata"]["uid"];
  del("crashy");
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid4); }));

  // Attach required: the pod waits for the VolumeAttachment the attach/detach controller would make, and gets its
  // attachment metadata as the publish context.
  json csidriver = *api_->Get("csidrivers", "", driver);
  csidriver["spec"]["attachRequired"] = true;
  api_->Update("csidrivers", csidriver);
  claim("attached", "vol-attached");
  api_->Create("pods", pod_with("attached", {{"persistentVolumeClaim", {{"claimName", "attached"}}}}, "sleep 3600"));
  std::string sha = RunCommand("printf '%s' 'vol-attached" + driver + "e2e-node' | sha256sum | cut -d' ' -f1");
  std::string va_name = "csi-" + sha.substr(0, sha.find('\n'));
  // Until the attach/detach controller lists the volume in the Node's status.volumesAttached the kubelet waits
  // (upstream's VerifyControllerAttachedVolume); then for the VolumeAttachment to say attached.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(ApiPod("default", "attached")["status"].value("phase", ""), "Pending") << "set up before volumesAttached";
  for (const auto& c : calls("NodeStageVolume")) EXPECT_NE(c.value("volume_id", ""), "vol-attached") << "staged before attached";
  {
    json n = *api_->Get("nodes", "", "e2e-node");
    n["status"]["volumesAttached"] = {{{"name", "kubernetes.io/csi/" + driver + "^vol-attached"}, {"devicePath", ""}}};
    api_->Update("nodes", n);
  }
  EXPECT_TRUE(event("attached", "FailedMount", "attacher.WaitForAttach failed for volume [vol-attached]"));
  EXPECT_EQ(ApiPod("default", "attached")["status"].value("phase", ""), "Pending");
  api_->Create("volumeattachments",
               {{"metadata", {{"name", va_name}}},
                {"spec", {{"attacher", driver}, {"nodeName", "e2e-node"}, {"source", {{"persistentVolumeName", "pv-attached"}}}}},
                {"status", {{"attached", true}, {"attachmentMetadata", {{"device", "/dev/test-attached"}}}}}});
  ASSERT_TRUE(running("attached")) << ApiPod("default", "attached").dump(2);
  std::string uid5 = ApiPod("default", "attached")["metadata"]["uid"];
  bool got_context = false;
  for (const auto& c : calls("NodeStageVolume"))
    if (c.value("volume_id", "") == "vol-attached") got_context = c["publish_context"].value("device", "") == "/dev/test-attached";
  EXPECT_TRUE(got_context) << "the attachment metadata is the publish context";
  EXPECT_TRUE(WaitUntil([&] {
    bool in_use = false;
    for (const auto& v : (*api_->Get("nodes", "", "e2e-node"))["status"].value("volumesInUse", json::array()))
      in_use |= v == "kubernetes.io/csi/" + driver + "^vol-attached";
    return in_use;
  })) << "the attached volume is in the node's volumesInUse";
  del("attached");
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid5); }));

  // The driver goes: deregistered, its CSINode entry and node annotation removed.
  drv.Stop();
  ASSERT_TRUE(WaitUntil([&] { return csinode_drivers().empty(); }));
  EXPECT_TRUE(WaitUntil([&] {
    return (*api_->Get("nodes", "", "e2e-node"))["metadata"]["annotations"].count("csi.volume.kubernetes.io/nodeid") == 0;
  })) << "the nodeid annotation stayed";
  // Only the VolumeAttachment the kubelet read before it existed was refused (as the Node authorizer does).
  for (const auto& f : api_->Forbidden()) EXPECT_NE(f.find("/volumeattachments/" + va_name), std::string::npos) << f;
  RemoveTree(state);
}

// Issue 14: a device plugin (the project's, a separate process) registers through the kubelet's
// <root-dir>/device-plugins/kubelet.sock with two devices; they become the Node's extended resource. Two pods get
// one each on containerd (the plugin's env var, its mounted file and a device node inside the container), a third
// is refused (UnexpectedAdmissionError), a device turning unhealthy drops allocatable; a kubelet restart keeps both
// pods and their devices and the plugin registers again; the pod resources API (a gRPC client here) reports the
// assignment throughout; a plugin that goes leaves nothing allocatable.
class DevicePluginE2E : public ClusterE2E {
 protected:
  static void SetUpTestSuite() {
    work_name_ = "kubelet-devices";
    extra_config_ = "featureGates:\n  KubeletPodResourcesGet: true\n";
    ClusterE2E::SetUpTestSuite();
  }
};

TEST_F(DevicePluginE2E, DevicesReachPodsThroughCRIAndThePodResourcesAPI) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  const fs::path state = work_ / "device-plugin-state";
  fs::remove_all(state);
  fs::create_directories(state);
  std::vector<std::string> args{TEST_DEVICE_PLUGIN, "--socket-dir=" + (work_ / "root/device-plugins").string(),
                                "--state-dir=" + state.string(), "--resource=example.com/dev", "--devices=2",
                                "--device-node=/dev/null"};
  pid_t plugin = kubelet::testing::Spawn(args);
  auto status = [](const char* part) {
    auto n = api_->Get("nodes", "", "e2e-node");
    return n && (*n)["status"].contains(part) ? (*n)["status"][part].value("example.com/dev", "") : std::string();
  };
  ASSERT_TRUE(WaitUntil([&] { return status("capacity") == "2" && status("allocatable") == "2"; }))
      << status("capacity") << "/" << status("allocatable");

  auto make = [](const std::string& name) {
    json p = json::parse(R"({"metadata":{"namespace":"default"},"spec":{"nodeName":"e2e-node",
      "terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "command":["sleep","3600"],"resources":{"limits":{"example.com/dev":"1"},"requests":{"example.com/dev":"1"}}}]}})");
    p["metadata"]["name"] = name;
    return p;
  };
  auto phase = [](const std::string& name) {
    json p = ApiPod("default", name);
    return p.is_null() || !p.contains("status") ? std::string() : p["status"].value("phase", "");
  };
  std::map<std::string, std::string> uid, id, dev;
  for (const char* name : {"dev-a", "dev-b"}) {
    api_->Create("pods", make(name));
    ASSERT_TRUE(WaitUntil([&] { return phase(name) == "Running"; })) << ApiPod("default", name).dump(2);
    uid[name] = ApiPod("default", name)["metadata"]["uid"];
    auto cs = Containers(uid[name]);
    ASSERT_EQ(cs.size(), 1u);
    id[name] = cs[0].id();
    // Inside the container: the plugin's env var, the device's file it mounted, the device node it asked for.
    auto [code, out] = Exec(id[name], {"sh", "-c", "echo $TEST_DEVICES; cat /var/run/test-devices/$TEST_DEVICES; "
                                                   "test -c /dev/test-$TEST_DEVICES && echo node"});
    ASSERT_EQ(code, 0) << out;
    std::istringstream lines(out);
    std::string env, file, node;
    std::getline(lines, env);
    std::getline(lines, file);
    std::getline(lines, node);
    EXPECT_TRUE(env == "dev-0" || env == "dev-1") << out;
    EXPECT_EQ(file, env) << "the mounted device file is the device's";
    EXPECT_EQ(node, "node") << out;
    dev[name] = env;
  }
  EXPECT_NE(dev["dev-a"], dev["dev-b"]);
  // No device is left: the third pod is refused as upstream refuses it.
  api_->Create("pods", make("dev-c"));
  ASSERT_TRUE(WaitUntil([&] { return phase("dev-c") == "Failed"; })) << ApiPod("default", "dev-c").dump(2);
  json refused = ApiPod("default", "dev-c")["status"];
  EXPECT_EQ(refused.value("reason", ""), "UnexpectedAdmissionError");
  EXPECT_EQ(refused.value("message", ""),
            "Allocate failed due to requested number of devices unavailable for example.com/dev. Requested: 1, Available: 0, "
            "which is unexpected");

  // The pod resources API, read as a monitoring agent reads it.
  auto channel = grpc::CreateChannel("unix://" + (work_ / "root/pod-resources/kubelet.sock").string(), grpc::InsecureChannelCredentials());
  auto lister = v1::PodResourcesLister::NewStub(channel);
  auto listed = [&]() {
    std::map<std::string, std::string> out;  // pod -> its container's device
    v1::ListPodResourcesResponse r;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!lister->List(&ctx, v1::ListPodResourcesRequest(), &r).ok()) return out;
    for (const auto& p : r.pod_resources())
      for (const auto& c : p.containers())
        for (const auto& d : c.devices())
          if (d.resource_name() == "example.com/dev" && d.device_ids_size() == 1 && p.namespace_() == "default")
            out[p.name()] = d.device_ids(0);
    return out;
  };
  auto assigned = listed();
  EXPECT_EQ(assigned["dev-a"], dev["dev-a"]);
  EXPECT_EQ(assigned["dev-b"], dev["dev-b"]);
  EXPECT_EQ(assigned.count("dev-c"), 0u);
  {
    v1::GetPodResourcesRequest q;
    q.set_pod_name("dev-b");
    q.set_pod_namespace("default");
    v1::GetPodResourcesResponse r;
    grpc::ClientContext ctx;
    ASSERT_TRUE(lister->Get(&ctx, q, &r).ok());
    ASSERT_EQ(r.pod_resources().containers_size(), 1);
    ASSERT_EQ(r.pod_resources().containers(0).devices_size(), 1);
    EXPECT_EQ(r.pod_resources().containers(0).devices(0).device_ids(0), dev["dev-b"]);
    v1::AllocatableResourcesResponse a;
    grpc::ClientContext actx;
    ASSERT_TRUE(lister->GetAllocatableResources(&actx, v1::AllocatableResourcesRequest(), &a).ok());
    EXPECT_EQ(a.devices_size(), 2);
  }

  // A device turns unhealthy: allocatable 1, capacity 2; the pod holding it keeps running.
  std::ofstream(state / ("unhealthy-" + dev["dev-a"])) << "";
  EXPECT_TRUE(WaitUntil([&] { return status("allocatable") == "1"; })) << status("allocatable");
  EXPECT_EQ(status("capacity"), "2");

  // The kubelet restarts: both pods keep their containers and devices, the plugin registers again.
  StopKubelet(SIGTERM);
  StartKubelet();
  EXPECT_TRUE(WaitUntil([&] { return kubelet::testing::ReadCallsLog((state / "calls.log").string(), "Register").size() >= 2; }))
      << "the plugin did not register again";
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  for (const char* name : {"dev-a", "dev-b"}) {
    auto cs = Containers(uid[name]);
    ASSERT_EQ(cs.size(), 1u) << name;
    EXPECT_EQ(cs[0].id(), id[name]) << name << " was restarted";
    EXPECT_EQ(phase(name), "Running");
  }
  EXPECT_TRUE(WaitUntil([&] {
    auto now = listed();
    return now["dev-a"] == dev["dev-a"] && now["dev-b"] == dev["dev-b"];
  })) << "the pod resources API lost the assignment over the restart";
  EXPECT_TRUE(WaitUntil([&] { return status("allocatable") == "1" && status("capacity") == "2"; }))
      << status("capacity") << "/" << status("allocatable");
  EXPECT_EQ(kubelet::testing::ReadCallsLog((state / "calls.log").string(), "Allocate").size(), 2u)
      << "devices were allocated again after the restart";

  // Another restart, with the checkpoint corrupted: said so, and the allocations are rebuilt from what the running
  // containers were created with, so the healthy device dev-b holds is not given to a new pod.
  StopKubelet(SIGTERM);
  {
    const fs::path cp = work_ / "root/device-plugins/kubelet_internal_checkpoint";
    std::ifstream in(cp);
    std::string blob((std::istreambuf_iterator<char>(in)), {});
    auto at = blob.find(uid["dev-a"]);
    ASSERT_NE(at, std::string::npos) << blob;
    blob[at] = blob[at] == 'f' ? '0' : 'f';  // another pod UID: still JSON, the checksum no longer matches
    std::ofstream(cp, std::ios::trunc) << blob;
  }
  StartKubelet();
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  {
    // The Node's Ready may still be the last kubelet's: read the log once the restore has been logged.
    std::string log;
    WaitUntil([&] {
      std::ifstream in(work_ / ("kubelet-" + std::to_string(starts_) + ".log"));
      log.assign((std::istreambuf_iterator<char>(in)), {});
      return log.find("Restored device allocation from the running container podUID=\"" + uid["dev-b"] + "\"") != std::string::npos &&
             log.find("Restored device allocation from the running container podUID=\"" + uid["dev-a"] + "\"") != std::string::npos;
    }, std::chrono::seconds(30));
    EXPECT_NE(log.find("Continue after failing to read checkpoint file. Device allocation info may NOT be up-to-date "
                       "err=\"device plugin checkpoint file \"kubelet_internal_checkpoint\" is corrupted\""),
              std::string::npos)
        << log;
    for (const char* name : {"dev-a", "dev-b"})
      EXPECT_NE(log.find("Restored device allocation from the running container podUID=\"" + uid[name] + "\""), std::string::npos)
          << name << "\n" << log;
  }
  EXPECT_TRUE(WaitUntil([&] {
    auto now = listed();
    return now["dev-a"] == dev["dev-a"] && now["dev-b"] == dev["dev-b"];
  })) << "the rebuilt assignment is not what the pods hold";
  ASSERT_TRUE(WaitUntil([&] { return status("allocatable") == "1"; })) << status("allocatable");
  // The Node's allocatable may still be the last kubelet's: wait until this one has the plugin's devices again (it
  // re-registers and lists them; slower under the sanitizers), so dev-d meets the rebuilt allocations, not no plugin.
  ASSERT_TRUE(WaitUntil([&] {
    v1::AllocatableResourcesResponse a;
    grpc::ClientContext actx;
    actx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return lister->GetAllocatableResources(&actx, v1::AllocatableResourcesRequest(), &a).ok() && a.devices_size() > 0;
  })) << "the device plugin did not register with the restarted kubelet";
  api_->Create("pods", make("dev-d"));
  ASSERT_TRUE(WaitUntil([&] { return phase("dev-d") == "Failed"; })) << ApiPod("default", "dev-d").dump(2);
  EXPECT_EQ(ApiPod("default", "dev-d")["status"].value("message", ""),
            "Allocate failed due to requested number of devices unavailable for example.com/dev. Requested: 1, Available: 0, "
            "which is unexpected");
  for (const char* name : {"dev-a", "dev-b"}) {
    auto cs = Containers(uid[name]);
    ASSERT_EQ(cs.size(), 1u) << name;
    EXPECT_EQ(cs[0].id(), id[name]) << name << " was restarted";
  }

  // The plugin goes: nothing allocatable.
  kill(plugin, SIGTERM);
  int st;
  waitpid(plugin, &st, 0);
  EXPECT_TRUE(WaitUntil([&] { return status("allocatable") == "0"; })) << status("allocatable");
  for (const char* name : {"dev-a", "dev-b", "dev-c", "dev-d"}) {
    std::string cmd = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() + "/api/v1/namespaces/default/pods/" +
                      name + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  for (const char* name : {"dev-a", "dev-b"})
    EXPECT_TRUE(WaitUntil([&] { return Containers(uid[name], false).empty(); })) << name;
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
  fs::remove_all(state);
}

// Issue 10 on the real runtime: a restarted kubelet kills nothing because it restarted, misread an object or met a
// field it does not know, and does what was asked while it was away. Four pods run on containerd: one selects a
// node label added after the kubelet started, one is updated with a field the kubelet cannot decode. While the
// kubelet is down one pod is deleted and the API server adds defaulted fields to another's containers. After the
// restart the deleted pod's containers and sandbox go and its API object is finalized; the other three keep the
// same running containers, with no restart.
TEST_F(ClusterE2E, ARestartKillsNothingAndCatchesUpWithTheAPI) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  json node = *api_->Get("nodes", "", "e2e-node");
  node["metadata"]["labels"]["disktype"] = "ssd";  // kubectl label node e2e-node disktype=ssd
  api_->Update("nodes", node);
  auto make = [](const std::string& name, const json& extra) {
    json p = json::parse(R"({"metadata":{"namespace":"default"},"spec":{"nodeName":"e2e-node",
      "terminationGracePeriodSeconds":2,"containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
      "command":["sleep","3600"]}]}})");
    p["metadata"]["name"] = name;
    p["spec"].update(extra);
    return p;
  };
  for (const auto& [name, extra] : std::vector<std::pair<std::string, json>>{
           {"keep", json::object()}, {"gone", json::object()}, {"picky", {{"nodeSelector", {{"disktype", "ssd"}}}}},
           {"odd", json::object()}})
    api_->Create("pods", make(name, extra));
  std::map<std::string, std::string> uid, id;
  for (const char* name : {"keep", "gone", "picky", "odd"}) {
    ASSERT_TRUE(WaitUntil([&] {
      json p = ApiPod("default", name);
      return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
    })) << name << ": " << ApiPod("default", name).dump(2);
    uid[name] = ApiPod("default", name)["metadata"]["uid"];
    auto cs = Containers(uid[name]);
    ASSERT_EQ(cs.size(), 1u) << name;
    id[name] = cs[0].id();
  }
  // An update the kubelet cannot decode: reported, the running pod left alone.
  json odd = ApiPod("default", "odd");
  odd["spec"]["containers"][0]["securityContext"] = {{"seccompProfile", {{"type", 5}}}};
  api_->Update("pods", odd);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(Containers(uid["odd"]).size(), 1u);

  StopKubelet(SIGTERM);
  for (const auto& [name, cid] : id) ASSERT_EQ(Containers(uid[name]).size(), 1u) << name << " stopped with the kubelet";
  // While the kubelet is down: kubectl delete pod gone (graceful), and an upgraded API server defaults new fields.
  std::string del = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                    "/api/v1/namespaces/default/pods/gone > /dev/null";
  ASSERT_EQ(std::system(del.c_str()), 0);
  json keep = ApiPod("default", "keep");
  for (auto& c : keep["spec"]["containers"]) {
    c["resizePolicy"] = json::array({{{"resourceName", "cpu"}, {"restartPolicy", "NotRequired"}}});
    c["someFutureField"] = {{"enabled", true}};
  }
  api_->Update("pods", keep);
  StartKubelet();

  ASSERT_TRUE(WaitUntil([&] { return Containers(uid["gone"], false).empty() && Sandboxes(uid["gone"]) == 0; }))
      << "the pod deleted while the kubelet was down still runs";
  ASSERT_TRUE(WaitUntil([] { return ApiPod("default", "gone").is_null(); }));
  std::this_thread::sleep_for(std::chrono::seconds(5));  // several syncs, relists and housekeeping rounds
  for (const char* name : {"keep", "picky", "odd"}) {
    auto cs = Containers(uid[name]);
    ASSERT_EQ(cs.size(), 1u) << name;
    EXPECT_EQ(cs[0].id(), id[name]) << name << " was restarted";
    EXPECT_EQ(Containers(uid[name], false).size(), 1u) << name << " got a second container";
  }
  EXPECT_EQ(ApiPod("default", "keep")["status"].value("phase", ""), "Running");
  EXPECT_EQ(ApiPod("default", "picky")["status"].value("phase", ""), "Running");
  for (const char* name : {"keep", "picky", "odd"}) {
    std::string d = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                    "/api/v1/namespaces/default/pods/" + name + " > /dev/null";
    EXPECT_EQ(std::system(d.c_str()), 0);
  }
  ASSERT_TRUE(WaitUntil([&] { return Containers(uid["keep"]).empty() && Containers(uid["picky"]).empty(); }));
}

// Issue 11 on the real runtime: a pod shaped exactly as a real API server's ServiceAccount admission shapes it (the
// projected kube-api-access volume and its mount in every container) runs, and its container reads the token, ca.crt
// and namespace; a configMap update reaches the mounted file without a restart; the secret volume is tmpfs; deleting
// the pod unmounts everything and leaves no folder behind. The kubelet acts as system:node:e2e-node under the Node
// authorizer, so a namespace-wide read or a token for another node's pod would fail the test.
TEST_F(ClusterE2E, TheServiceAccountVolumeConfigMapsAndSecretsOfARealClusterPod) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->CreateNamespaceDefaults("default");
  api_->Create("configmaps", json::parse(R"({"metadata":{"name":"settings","namespace":"default"},"data":{"level":"debug"}})"));
  api_->Create("secrets", json::parse(R"({"metadata":{"name":"db","namespace":"default"},"data":{"password":"czNjcmV0"}})"));
  api_->Create("pods", json::parse(R"({"metadata":{"name":"sa-pod","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "serviceAccountName":"default","terminationGracePeriodSeconds":1,
    "containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35","command":["sleep","3600"],
      "volumeMounts":[{"name":"kube-api-access-q8z4m","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","readOnly":true},
                      {"name":"cfg","mountPath":"/etc/app"},{"name":"creds","mountPath":"/etc/creds","readOnly":true}]}],
    "volumes":[{"name":"kube-api-access-q8z4m","projected":{"defaultMode":420,"sources":[
        {"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},
        {"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},
        {"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}]}},
      {"name":"cfg","configMap":{"name":"settings"}},
      {"name":"creds","secret":{"secretName":"db","defaultMode":256}}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "sa-pod");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  })) << ApiPod("default", "sa-pod").dump(2);
  std::string uid = ApiPod("default", "sa-pod")["metadata"]["uid"];
  auto cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  std::string id = cs[0].id();
  auto [rc, token] = Exec(id, {"cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"});
  ASSERT_EQ(rc, 0);
  json claims = api_->TokenClaims(token);
  ASSERT_FALSE(claims.is_null()) << "the container's token was not issued by the API server: " << token;
  EXPECT_EQ(claims["sub"], "system:serviceaccount:default:default");
  EXPECT_EQ(claims["pod"]["uid"], uid);
  EXPECT_EQ(Exec(id, {"cat", "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}).second, api_->ca_pem());
  EXPECT_EQ(Exec(id, {"cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"}).second, "default");
  EXPECT_EQ(Exec(id, {"cat", "/etc/app/level"}).second, "debug");
  EXPECT_EQ(Exec(id, {"cat", "/etc/creds/password"}).second, "s3cret");
  // Secrets never touch the node's disk.
  fs::path creds = work_ / "root/pods" / uid / "volumes/kubernetes.io~secret/creds";
  EXPECT_NE(RunCommand("findmnt -n -o FSTYPE " + creds.string()).find("tmpfs"), std::string::npos);
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];

  // An update of the configMap reaches the mounted file within the sync period plus the cache delay, no restart.
  json cm = *api_->Get("configmaps", "default", "settings");
  cm["data"]["level"] = "info";
  api_->Update("configmaps", cm);
  EXPECT_TRUE(WaitUntil([&] { return Exec(id, {"cat", "/etc/app/level"}).second == "info"; }, std::chrono::seconds(90)));
  ASSERT_EQ(Containers(uid).size(), 1u);
  EXPECT_EQ(Containers(uid)[0].id(), id);

  // Deleting the pod unmounts everything and leaves no folder behind.
  std::string del = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                    "/api/v1/namespaces/default/pods/sa-pod > /dev/null";
  ASSERT_EQ(std::system(del.c_str()), 0);
  ASSERT_TRUE(WaitUntil([] { return ApiPod("default", "sa-pod").is_null(); }));
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid); }));
  EXPECT_EQ(RunCommand("grep -c " + uid + " /proc/mounts"), "0\n");
}

// Issue 11, the rest on the real runtime: a claim bound to a hostPath PersistentVolume keeps its data across the
// pod's replacement; a configMap key mounted with subPath and an emptyDir folder named by subPathExpr reach the
// container; a subPath the container itself pointed out of its volume (a symlink to /) is refused with
// CreateContainerConfigError; a kubelet restart remounts and rewrites nothing and restarts no container.
// Issue 15: RuntimeClasses from the API. The lab's containerd has a second
// handler (kcpp-alt, runc under another name): a pod of the class naming it
// runs under it (as containerd reports the sandbox), its overhead (what
// RuntimeClass admission copies into spec.overhead) sizes the pod cgroup; a
// class that does not exist, or names a handler containerd does not have, fails
// the sandbox with upstream's event and leaves the pod Pending.
TEST_F(ClusterE2E, RuntimeClassesChooseTheSandboxHandlerAndOverheadSizesThePodCgroup) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->Create("runtimeclasses", json::parse(R"({"metadata":{"name":"alt"},"handler":"kcpp-alt",
    "overhead":{"podFixed":{"cpu":"250m","memory":"32Mi"}}})"));
  api_->Create("runtimeclasses", json::parse(R"({"metadata":{"name":"missing"},"handler":"kcpp-missing"})"));
  auto pod = [](const std::string& name, const std::string& cls, const std::string& overhead) {
    return json::parse(R"({"metadata":{"name":")" + name + R"(","namespace":"default"},"spec":{"nodeName":"e2e-node",
      "runtimeClassName":")" + cls + R"(",)" + overhead + R"("terminationGracePeriodSeconds":1,
      "containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35","command":["sleep","3600"],
        "resources":{"limits":{"cpu":"250m","memory":"64Mi"}}}]}})");
  };
  api_->Create("pods", pod("alt-pod", "alt", R"("overhead":{"cpu":"250m","memory":"32Mi"},)"));
  api_->Create("pods", pod("ghost-pod", "nope", ""));
  api_->Create("pods", pod("nohandler-pod", "missing", ""));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "alt-pod");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  })) << ApiPod("default", "alt-pod").dump(2);
  std::string uid = ApiPod("default", "alt-pod")["metadata"]["uid"];
  // The sandbox runs under kcpp-alt, as containerd says.
  {
    rt::ListPodSandboxRequest req;
    req.mutable_filter()->mutable_label_selector()->insert({"io.kubernetes.pod.uid", uid});
    rt::ListPodSandboxResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(cri_->ListPodSandbox(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.items_size(), 1);
    rt::PodSandboxStatusRequest sreq;
    sreq.set_pod_sandbox_id(resp.items(0).id());
    sreq.set_verbose(true);
    rt::PodSandboxStatusResponse sresp;
    grpc::ClientContext sctx;
    sctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(cri_->PodSandboxStatus(&sctx, sreq, &sresp).ok());
    json info = sresp.info().count("info") ? json::parse(sresp.info().at("info"), nullptr, false) : json();
    ASSERT_TRUE(info.is_object()) << "containerd gave no verbose sandbox info";
    EXPECT_EQ(info.value("runtimeHandler", ""), "kcpp-alt") << info.dump(2).substr(0, 2000);
  }
  // The pod cgroup: the containers' limits plus the overhead (cpu 250m+250m, memory 64Mi+32Mi).
  const std::string root = env_["CGROUP_ROOT"];
  const fs::path rel = fs::path("kubepods") / ("pod" + uid);
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    std::string v;
    std::getline(in, v);
    return v;
  };
  if (fs::is_directory("/sys/fs/cgroup/memory" + root)) {
    const fs::path mem = "/sys/fs/cgroup/memory" + root, cpu = "/sys/fs/cgroup/cpu" + root;
    EXPECT_EQ(slurp(mem / rel / "memory.limit_in_bytes"), std::to_string(96 << 20));
    EXPECT_EQ(slurp(cpu / rel / "cpu.cfs_quota_us"), "50000");
    EXPECT_EQ(slurp(cpu / rel / "cpu.shares"), "512");
  }
  // The other two: upstream's FailedCreatePodSandBox event, no sandbox, Pending.
  auto event_for = [](const std::string& name, const std::string& text) {
    for (const auto& e : api_->List("events"))
      if (e["involvedObject"].value("name", "") == name && e.value("reason", "") == "FailedCreatePodSandBox" &&
          e.value("message", "").find(text) != std::string::npos)
        return true;
    return false;
  };
  EXPECT_TRUE(WaitUntil([&] {
    return event_for("ghost-pod", "Failed to create pod sandbox: runtimeclasses.node.k8s.io \"nope\" not found");
  }, std::chrono::seconds(30)));
  EXPECT_TRUE(WaitUntil([&] { return event_for("nohandler-pod", "Failed to create pod sandbox: "); }, std::chrono::seconds(30)));
  for (const auto& e : api_->List("events"))
    if (e["involvedObject"].value("name", "") == "nohandler-pod" && e.value("reason", "") == "FailedCreatePodSandBox")
      EXPECT_NE(e.value("message", "").find("kcpp-missing"), std::string::npos) << e.dump();
  for (const char* name : {"ghost-pod", "nohandler-pod"}) {
    json p = ApiPod("default", name);
    EXPECT_EQ(Sandboxes(p["metadata"]["uid"]), 0) << name;
    EXPECT_EQ(p["status"].value("phase", ""), "Pending") << p.dump(2);
  }
  // The class appearing later lets the pod start (the informer watches; the pod worker retries).
  api_->Create("runtimeclasses", json::parse(R"({"metadata":{"name":"nope"},"handler":"kcpp-alt"})"));
  EXPECT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "ghost-pod");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  }, std::chrono::seconds(60))) << ApiPod("default", "ghost-pod").dump(2);
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
  for (const char* name : {"alt-pod", "ghost-pod", "nohandler-pod"}) {
    std::string u = ApiPod("default", name)["metadata"]["uid"];
    api_->Remove("pods", "default", name);
    EXPECT_TRUE(WaitUntil([&] { return Sandboxes(u) == 0; }, std::chrono::seconds(30))) << name;
  }
}

TEST_F(ClusterE2E, ClaimsSubPathsAndARestartKeepMountsAndContents) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->CreateNamespaceDefaults("default");
  fs::path pv_dir = work_ / "pv-data";
  fs::create_directories(pv_dir);
  api_->Create("configmaps", json::parse(R"({"metadata":{"name":"app","namespace":"default"},"data":{"app.conf":"mode=fast\n"}})"));
  api_->Create("persistentvolumeclaims", json::parse(R"({"metadata":{"name":"store","namespace":"default"},
    "spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},"volumeName":"pv-store"},
    "status":{"phase":"Bound"}})"));
  std::string claim_uid = (*api_->Get("persistentvolumeclaims", "default", "store"))["metadata"]["uid"];
  json pv = {{"metadata", {{"name", "pv-store"}}},
             {"spec", {{"capacity", {{"storage", "1Gi"}}}, {"accessModes", {"ReadWriteOnce"}},
                       {"hostPath", {{"path", pv_dir.string()}, {"type", "Directory"}}},
                       {"claimRef", {{"namespace", "default"}, {"name", "store"}, {"uid", claim_uid}}}}},
             {"status", {{"phase", "Bound"}}}};
  api_->Create("persistentvolumes", pv);
  auto writer = [](const std::string& name, const std::string& cmd) {
    json p = json::parse(R"J({"metadata":{"namespace":"default"},"spec":{"nodeName":"e2e-node","terminationGracePeriodSeconds":1,
      "containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35",
        "env":[{"name":"POD_NAME","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
        "volumeMounts":[{"name":"data","mountPath":"/data"},
                        {"name":"cfg","mountPath":"/etc/app.conf","subPath":"app.conf"},
                        {"name":"scratch","mountPath":"/scratch","subPathExpr":"$(POD_NAME)"}]}],
      "volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"store"}},
                 {"name":"cfg","configMap":{"name":"app"}},{"name":"scratch","emptyDir":{}}]}})J");
    p["metadata"]["name"] = name;
    p["spec"]["containers"][0]["command"] = {"sh", "-c", cmd};
    return p;
  };
  auto running = [](const std::string& name) {
    return WaitUntil([&] {
      json p = ApiPod("default", name);
      return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
    });
  };
  api_->Create("pods", writer("first", "echo kept > /data/file; echo mine > /scratch/f; sleep 3600"));
  ASSERT_TRUE(running("first")) << ApiPod("default", "first").dump(2);
  std::string uid = ApiPod("default", "first")["metadata"]["uid"];
  auto cs = Containers(uid);
  ASSERT_EQ(cs.size(), 1u);
  std::string id = cs[0].id();
  EXPECT_EQ(Exec(id, {"cat", "/etc/app.conf"}).second, "mode=fast\n");
  ASSERT_TRUE(WaitUntil([&] { return Exec(id, {"cat", "/data/file"}).second == "kept\n"; }));
  std::ifstream host_file(pv_dir / "file");
  std::string got;
  host_file >> got;
  EXPECT_EQ(got, "kept") << "the claim's data is on its PersistentVolume";
  fs::path scratch = work_ / "root/pods" / uid / "volumes/kubernetes.io~empty-dir/scratch/first";
  EXPECT_TRUE(WaitUntil([&] { return fs::exists(scratch / "f"); })) << "subPathExpr names the folder by the pod";
  fs::path sub_target = work_ / "root/pods" / uid / "volume-subpaths/cfg/c/1";
  EXPECT_NE(RunCommand("findmnt -n -o TARGET " + sub_target.string()), "") << "the subPath is a bind mount the kubelet pinned";

  // A container that points its own volume at the host: the subPath is refused, the container not created.
  api_->Create("pods", json::parse(R"({"metadata":{"name":"escape","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "terminationGracePeriodSeconds":1,
    "initContainers":[{"name":"plant","image":"kubelet-cpp.local/busybox:1.35","command":["ln","-s","/","/vol/escape"],
      "volumeMounts":[{"name":"vol","mountPath":"/vol"}]}],
    "containers":[{"name":"c","image":"kubelet-cpp.local/busybox:1.35","command":["sleep","3600"],
      "volumeMounts":[{"name":"vol","mountPath":"/host","subPath":"escape"}]}],
    "volumes":[{"name":"vol","emptyDir":{}}]}})"));
  json waiting;
  ASSERT_TRUE(WaitUntil([&] {
    json p = ApiPod("default", "escape");
    if (p.is_null() || !p.contains("status") || !p["status"].contains("containerStatuses")) return false;
    for (const auto& c : p["status"]["containerStatuses"])
      if (c["name"] == "c" && c["state"].contains("waiting") && c["state"]["waiting"].value("reason", "") == "CreateContainerConfigError")
        waiting = c["state"]["waiting"];
    return !waiting.is_null();
  })) << ApiPod("default", "escape").dump(2);
  EXPECT_EQ(waiting.value("message", ""), "failed to prepare subPath for volumeMount \"vol\" of container \"c\"");
  std::string escape_uid = ApiPod("default", "escape")["metadata"]["uid"];
  for (const auto& c : Containers(escape_uid, false)) EXPECT_NE(c.metadata().name(), "c") << "the escaping container was created";

  // A restart: nothing remounted or rewritten, no container restarted.
  fs::path cfg_dir = work_ / "root/pods" / uid / "volumes/kubernetes.io~configmap/cfg";
  fs::path data_link = fs::read_symlink(cfg_dir / "..data");
  std::string mounts_before = RunCommand("grep " + uid + " /proc/mounts | sort");
  StopKubelet(SIGTERM);
  StartKubelet();
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  std::this_thread::sleep_for(std::chrono::seconds(5));  // several syncs and reconciler rounds
  ASSERT_EQ(Containers(uid).size(), 1u);
  EXPECT_EQ(Containers(uid)[0].id(), id) << "the restart restarted the container";
  EXPECT_EQ(fs::read_symlink(cfg_dir / "..data"), data_link) << "the restart rewrote the configMap volume";
  EXPECT_EQ(RunCommand("grep " + uid + " /proc/mounts | sort"), mounts_before) << "the restart changed the pod's mounts";
  EXPECT_EQ(Exec(id, {"cat", "/etc/app.conf"}).second, "mode=fast\n");

  // The pod replaced: the claim's data is still there for the next one.
  auto del = [&](const std::string& name) {
    std::string cmd = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                      "/api/v1/namespaces/default/pods/" + name + " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  };
  del("first");
  ASSERT_TRUE(WaitUntil([] { return ApiPod("default", "first").is_null(); }));
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid); }));
  EXPECT_EQ(RunCommand("grep -c " + uid + " /proc/mounts"), "0\n");
  api_->Create("pods", writer("second", "sleep 3600"));
  ASSERT_TRUE(running("second")) << ApiPod("default", "second").dump(2);
  std::string uid2 = ApiPod("default", "second")["metadata"]["uid"];
  auto cs2 = Containers(uid2);
  ASSERT_EQ(cs2.size(), 1u);
  EXPECT_EQ(Exec(cs2[0].id(), {"cat", "/data/file"}).second, "kept\n");
  del("second");
  del("escape");
  ASSERT_TRUE(WaitUntil([&] { return !fs::exists(work_ / "root/pods" / uid2) && !fs::exists(work_ / "root/pods" / escape_uid); }));
  EXPECT_EQ(RunCommand("grep -c -e " + uid2 + " -e " + escape_uid + " /proc/mounts"), "0\n");
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
}

// mountPropagation on the real runtime: the kubelet's root directory is rshared (as upstream's), so a privileged
// container's Bidirectional mount inside an emptyDir reaches the host and, through it, a sibling's HostToContainer
// mount of the same volume, while a sibling without propagation sees none of it; a mount the host makes there
// reaches the HostToContainer container too. Deleting the pod unmounts what the container mounted.
TEST_F(ClusterE2E, MountPropagationBetweenContainersAndTheHost) {
  ASSERT_TRUE(WaitUntil([] { return NodeCondition("Ready") == "True"; }));
  api_->CreateNamespaceDefaults("default");
  std::string root_dir = fs::weakly_canonical(work_ / "root").string();
  EXPECT_NE(RunCommand("findmnt -n -o PROPAGATION " + root_dir).find("shared"), std::string::npos)
      << "the root directory is not a shared mount: " << RunCommand("findmnt -n -o TARGET,PROPAGATION " + root_dir);
  api_->Create("pods", json::parse(R"({"metadata":{"name":"propagation","namespace":"default"},"spec":{"nodeName":"e2e-node",
    "terminationGracePeriodSeconds":1,
    "containers":[
      {"name":"master","image":"kubelet-cpp.local/busybox:1.35","securityContext":{"privileged":true},
       "command":["sh","-c","until [ -f /mnt/shared/go ]; do sleep 0.2; done; mkdir -p /mnt/shared/sub && mount -t tmpfs tmpfs /mnt/shared/sub && echo hello > /mnt/shared/sub/file && sleep 3600"],
       "volumeMounts":[{"name":"shared","mountPath":"/mnt/shared","mountPropagation":"Bidirectional"}]},
      {"name":"slave","image":"kubelet-cpp.local/busybox:1.35","command":["sleep","3600"],
       "volumeMounts":[{"name":"shared","mountPath":"/mnt/shared","mountPropagation":"HostToContainer"}]},
      {"name":"private","image":"kubelet-cpp.local/busybox:1.35","command":["sleep","3600"],
       "volumeMounts":[{"name":"shared","mountPath":"/mnt/shared"}]}],
    "volumes":[{"name":"shared","emptyDir":{}}]}})"));
  ASSERT_TRUE(WaitUntil([] {
    json p = ApiPod("default", "propagation");
    return !p.is_null() && p.contains("status") && p["status"].value("phase", "") == "Running";
  })) << ApiPod("default", "propagation").dump(2);
  std::string uid = ApiPod("default", "propagation")["metadata"]["uid"];
  std::map<std::string, std::string> ids;
  for (const auto& c : Containers(uid)) ids[c.metadata().name()] = c.id();
  ASSERT_EQ(ids.size(), 3u);
  fs::path vol = fs::path(root_dir) / "pods" / uid / "volumes/kubernetes.io~empty-dir/shared";
  // Every container runs: the privileged one mounts now (a container sees the mounts that exist when it starts).
  std::ofstream(vol / "go") << "";
  EXPECT_TRUE(WaitUntil([&] { return RunCommand("findmnt -n -o FSTYPE " + (vol / "sub").string()).find("tmpfs") != std::string::npos; }))
      << "the Bidirectional mount did not reach the host";
  EXPECT_TRUE(WaitUntil([&] { return Exec(ids["slave"], {"cat", "/mnt/shared/sub/file"}).second == "hello\n"; }))
      << "the HostToContainer container does not see the sibling's mount";
  EXPECT_NE(Exec(ids["private"], {"cat", "/mnt/shared/sub/file"}).first, 0) << "a container without propagation saw the mount";

  // A mount the host makes in the volume.
  fs::create_directories(vol / "fromhost");
  ASSERT_EQ(::mount("tmpfs", (vol / "fromhost").c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  std::ofstream(vol / "fromhost/note") << "host";
  EXPECT_TRUE(WaitUntil([&] { return Exec(ids["slave"], {"cat", "/mnt/shared/fromhost/note"}).second == "host"; }));
  EXPECT_TRUE(WaitUntil([&] { return Exec(ids["master"], {"cat", "/mnt/shared/fromhost/note"}).second == "host"; }));
  EXPECT_NE(Exec(ids["private"], {"cat", "/mnt/shared/fromhost/note"}).first, 0);

  std::string del = "curl -sk -X DELETE -H 'Authorization: Bearer test-token' " + api_->url() +
                    "/api/v1/namespaces/default/pods/propagation > /dev/null";
  ASSERT_EQ(std::system(del.c_str()), 0);
  ASSERT_TRUE(WaitUntil([] { return ApiPod("default", "propagation").is_null(); }));
  EXPECT_TRUE(WaitUntil([&] { return !fs::exists(fs::path(root_dir) / "pods" / uid); }));
  EXPECT_EQ(RunCommand("grep -c " + uid + " /proc/mounts"), "0\n");
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
}

// The daemon against a runtime that reports a different cgroup driver (CRI
// RuntimeConfig): it stops with an error that says so, before touching any
// cgroup (the cgroupRoot here does not even exist).
TEST(DaemonE2E, CgroupDriverMismatchStopsTheKubelet) {
  const char* bin = std::getenv("KUBELET_BINARY");
  ASSERT_TRUE(bin) << "KUBELET_BINARY must be set (ctest sets it)";
  fs::path dir = fs::temp_directory_path() / ("kcpp-driver-" + std::to_string(getpid()));
  RemoveTree(dir);
  fs::create_directories(dir / "manifests");
  kubelet::testing::FakeRuntime fake((dir / "cri.sock").string());
  ASSERT_TRUE(fake.Start());
  fake.SetCgroupDriver(rt::SYSTEMD);
  std::ofstream(dir / "config.yaml") << "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                                     << "containerRuntimeEndpoint: " << fake.endpoint() << "\n"
                                     << "cgroupDriver: cgroupfs\ncgroupRoot: /kcpp-no-such-root\n"
                                     << "staticPodPath: " << (dir / "manifests").string() << "\n"
                                     << "address: 127.0.0.1\nport: " << FreePort() << "\nhealthzPort: " << FreePort() << "\n";
  std::string log = (dir / "kubelet.log").string();
  std::string cmd = std::string(bin) + " --config " + (dir / "config.yaml").string() + " --root-dir " + (dir / "root").string() +
                    " --cert-dir " + (dir / "pki").string() + " --hostname-override driver-test > " + log + " 2>&1";
  int rc = std::system(("timeout 60 " + cmd).c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << rc;
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(text.find("misconfiguration: kubelet cgroup driver: \"cgroupfs\" is different from the container runtime's cgroup "
                      "driver: \"systemd\""),
            std::string::npos)
      << text;
  EXPECT_GE(fake.CallCount("RuntimeConfig"), 1);
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/memory/kcpp-no-such-root"));
  fake.Stop();
  RemoveTree(dir);
}

// Issue 10: a kubelet whose API server is one of its own static pods (kubeadm's
// control plane) or simply not up yet runs its static pods at once, registers
// once the server answers, and ends within seconds of SIGTERM while the
// server is down, leaving the pods running.
TEST(DaemonE2E, StaticPodsRunBeforeTheAPIServerAndSIGTERMEndsTheKubelet) {
  const char* bin = std::getenv("KUBELET_BINARY");
  ASSERT_TRUE(bin) << "KUBELET_BINARY must be set (ctest sets it)";
  fs::path dir = fs::temp_directory_path() / ("kcpp-noapi-" + std::to_string(getpid()));
  RemoveTree(dir);
  fs::create_directories(dir / "manifests");
  kubelet::testing::FakeRuntime fake((dir / "cri.sock").string());
  ASSERT_TRUE(fake.Start());
  fake.AddImage("registry.k8s.io/etcd:3.5.15-0");
  int api_port = FreePort();
  kubelet::testing::FakeApiServer::Options ao;
  ao.cert_dir = (dir / "api").string();
  ao.port = api_port;
  kubelet::testing::FakeApiServer apiserver(ao);
  std::ofstream(dir / "kubeconfig") << "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:"
                                    << api_port << "\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: test-token\n"
                                    << "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";
  std::ofstream(dir / "config.yaml") << "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                                     << "containerRuntimeEndpoint: " << fake.endpoint() << "\n"
                                     << "cgroupsPerQOS: false\nenforceNodeAllocatable: []\n"
                                     << "staticPodPath: " << (dir / "manifests").string() << "\n"
                                     << "address: 127.0.0.1\nport: " << FreePort() << "\nhealthzPort: " << FreePort() << "\n";
  // A static pod as kubeadm writes etcd's: host network, an env var, service links on (the default).
  std::ofstream(dir / "manifests" / "etcd.yaml")
      << "apiVersion: v1\nkind: Pod\nmetadata: {name: etcd, namespace: kube-system}\nspec:\n  hostNetwork: true\n"
      << "  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.15-0\n    command: [etcd]\n"
      << "    env: [{name: ETCD_NAME, value: node}]\n";
  std::string log = (dir / "kubelet.log").string();
  std::string cmd = std::string(bin) + " --config " + (dir / "config.yaml").string() + " --kubeconfig " +
                    (dir / "kubeconfig").string() + " --root-dir " + (dir / "root").string() + " --cert-dir " +
                    (dir / "pki").string() + " --hostname-override noapi-node --node-ip 127.0.0.1 > " + log + " 2>&1 & echo $! > " +
                    (dir / "pid").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  int pid = 0;
  ASSERT_TRUE(WaitUntil([&] { return (std::ifstream(dir / "pid") >> pid) && pid > 0; }));
  auto running = [&] {
    for (const auto& c : fake.Containers())
      if (c.state() == rt::CONTAINER_RUNNING && c.metadata().name() == "etcd") return true;
    return false;
  };
  auto text = [&] {
    std::ifstream in(log);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  // The static pod runs while nothing answers at the API server's address.
  EXPECT_TRUE(WaitUntil(running, std::chrono::seconds(30))) << text();
  // The server comes up: the node registers.
  ASSERT_TRUE(apiserver.Start());
  EXPECT_TRUE(WaitUntil([&] { return apiserver.Get("nodes", "", "noapi-node").has_value(); }, std::chrono::seconds(60))) << text();
  // Down again: SIGTERM still ends the kubelet within seconds, and the pod keeps running.
  apiserver.Stop();
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  // Gone, or a zombie nobody reaped yet (the shell that started it has exited).
  auto gone = [&] {
    if (::kill(pid, 0) != 0) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    size_t paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
  };
  bool exited = WaitUntil(gone, std::chrono::seconds(15));
  if (!exited) ::kill(pid, SIGKILL);
  EXPECT_TRUE(exited) << text();
  EXPECT_TRUE(running());
  fake.Stop();
  RemoveTree(dir);
}

}  // namespace

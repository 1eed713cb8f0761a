#include "fake_runtime.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace kubelet::testing {

namespace {
int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}
std::string RandomID() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  char buf[65];
  for (int i = 0; i < 4; ++i) std::snprintf(buf + i * 16, 17, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(buf, 64);
}
bool Matches(const google::protobuf::Map<std::string, std::string>& labels,
             const google::protobuf::Map<std::string, std::string>& selector) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}
}  // namespace

struct FakeRuntime::State {
  mutable std::mutex mu;
  std::map<std::string, int> calls;
  std::map<std::string, std::pair<grpc::StatusCode, int>> errors;
  std::map<std::string, Duration> delays;
  std::map<std::string, rt::PodSandboxStatus> sandboxes;
  std::map<std::string, rt::ContainerStatus> containers;
  std::map<std::string, std::string> container_sandbox;
  std::map<std::string, rt::ContainerConfig> configs;
  std::set<std::string> sandbox_names;  // reserved names, as containerd's name index
  std::map<std::string, std::string> sandbox_log_dirs;  // sandbox ID -> config.log_directory
  std::map<std::string, rt::Image> images;  // by ref
  std::function<void(const std::string&)> on_start;
  std::map<std::string, int> exit_on_start;  // container name -> exit code
  FakeRuntime::ExecFn exec;
  std::function<void(const std::string&)> on_stop;
  std::function<void(const std::string&)> on_pull;
  std::optional<rt::CgroupDriver> cgroup_driver;

  // Records the call; returns an injected error if any. Sleeps for an injected delay.
  grpc::Status Enter(const char* method) {
    Duration delay{};
    {
      std::lock_guard<std::mutex> l(mu);
      calls[method]++;
      auto d = delays.find(method);
      if (d != delays.end()) delay = d->second;
      auto e = errors.find(method);
      if (e != errors.end() && e->second.second > 0) {
        e->second.second--;
        return grpc::Status(e->second.first, std::string("injected error for ") + method);
      }
    }
    if (delay > Duration::zero()) std::this_thread::sleep_for(delay);
    return grpc::Status::OK;
  }
};

class FakeRuntime::RuntimeImpl final : public rt::RuntimeService::Service {
 public:
  explicit RuntimeImpl(std::shared_ptr<State> s) : s_(std::move(s)) {}

  grpc::Status RuntimeConfig(grpc::ServerContext*, const rt::RuntimeConfigRequest*, rt::RuntimeConfigResponse* resp) override {
    if (auto st = s_->Enter("RuntimeConfig"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    if (!s_->cgroup_driver) return grpc::Status(grpc::UNIMPLEMENTED, "unknown method RuntimeConfig for service runtime.v1.RuntimeService");
    resp->mutable_linux()->set_cgroup_driver(*s_->cgroup_driver);
    return grpc::Status::OK;
  }

  grpc::Status Version(grpc::ServerContext*, const rt::VersionRequest*, rt::VersionResponse* resp) override {
    if (auto st = s_->Enter("Version"); !st.ok()) return st;
    resp->set_version("0.1.0");
    resp->set_runtime_name("fakeruntime");
    resp->set_runtime_version("0.1.0");
    resp->set_runtime_api_version("v1");
    return grpc::Status::OK;
  }

  grpc::Status RunPodSandbox(grpc::ServerContext*, const rt::RunPodSandboxRequest* req, rt::RunPodSandboxResponse* resp) override {
    if (auto st = s_->Enter("RunPodSandbox"); !st.ok()) return st;
    const auto& md = req->config().metadata();
    if (md.name().empty() || md.uid().empty() || md.namespace_().empty())
      return grpc::Status(grpc::INVALID_ARGUMENT, "sandbox config must include metadata name, uid and namespace");
    std::string name = md.name() + "_" + md.namespace_() + "_" + md.uid() + "_" + std::to_string(md.attempt());
    std::lock_guard<std::mutex> l(s_->mu);
    if (!s_->sandbox_names.insert(name).second)
      return grpc::Status(grpc::UNKNOWN, "failed to reserve sandbox name \"" + name + "\": name is reserved");
    rt::PodSandboxStatus st;
    st.set_id(RandomID());
    *st.mutable_metadata() = md;
    st.set_state(rt::SANDBOX_READY);
    st.set_created_at(NowNanos());
    bool host = req->config().linux().security_context().namespace_options().network() == rt::NODE;
    if (!host) st.mutable_network()->set_ip("10.88.0." + std::to_string(s_->sandboxes.size() % 250 + 2));
    *st.mutable_linux()->mutable_namespaces()->mutable_options() = req->config().linux().security_context().namespace_options();
    *st.mutable_labels() = req->config().labels();
    *st.mutable_annotations() = req->config().annotations();
    s_->sandboxes[st.id()] = st;
    s_->sandbox_log_dirs[st.id()] = req->config().log_directory();
    resp->set_pod_sandbox_id(st.id());
    return grpc::Status::OK;
  }

  grpc::Status StopPodSandbox(grpc::ServerContext*, const rt::StopPodSandboxRequest* req, rt::StopPodSandboxResponse*) override {
    if (auto st = s_->Enter("StopPodSandbox"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->sandboxes.find(req->pod_sandbox_id());
    if (it == s_->sandboxes.end()) return grpc::Status(grpc::NOT_FOUND, "an error occurred when try to find sandbox: not found");
    for (auto& [id, c] : s_->containers)
      if (s_->container_sandbox[id] == it->first && c.state() == rt::CONTAINER_RUNNING) Exit(c, 137);
    it->second.set_state(rt::SANDBOX_NOTREADY);
    return grpc::Status::OK;
  }

  grpc::Status RemovePodSandbox(grpc::ServerContext*, const rt::RemovePodSandboxRequest* req, rt::RemovePodSandboxResponse*) override {
    if (auto st = s_->Enter("RemovePodSandbox"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->sandboxes.find(req->pod_sandbox_id());
    if (it == s_->sandboxes.end()) return grpc::Status::OK;  // idempotent
    if (it->second.state() == rt::SANDBOX_READY)
      return grpc::Status(grpc::UNKNOWN, "sandbox container \"" + it->first + "\" is not fully stopped");
    for (auto c = s_->containers.begin(); c != s_->containers.end();) {
      if (s_->container_sandbox[c->first] == it->first) {
        s_->container_sandbox.erase(c->first);
        c = s_->containers.erase(c);
      } else {
        ++c;
      }
    }
    const auto& md = it->second.metadata();
    s_->sandbox_names.erase(md.name() + "_" + md.namespace_() + "_" + md.uid() + "_" + std::to_string(md.attempt()));
    s_->sandboxes.erase(it);
    return grpc::Status::OK;
  }

  grpc::Status PodSandboxStatus(grpc::ServerContext*, const rt::PodSandboxStatusRequest* req, rt::PodSandboxStatusResponse* resp) override {
    if (auto st = s_->Enter("PodSandboxStatus"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->sandboxes.find(req->pod_sandbox_id());
    if (it == s_->sandboxes.end()) return grpc::Status(grpc::NOT_FOUND, "an error occurred when try to find sandbox: not found");
    *resp->mutable_status() = it->second;
    if (req->verbose()) {
      // containerd's verbose info: the sandbox's runtime spec names its network namespace.
      nlohmann::json info = {{"pid", 4242},
                             {"runtimeSpec", {{"linux", {{"namespaces", {{{"type", "network"}, {"path", "/var/run/netns/fake-" + it->first}}}}}}}}};
      (*resp->mutable_info())["info"] = info.dump();
    }
    return grpc::Status::OK;
  }

  grpc::Status ListPodSandbox(grpc::ServerContext*, const rt::ListPodSandboxRequest* req, rt::ListPodSandboxResponse* resp) override {
    if (auto st = s_->Enter("ListPodSandbox"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    for (const auto& [id, s] : s_->sandboxes) {
      const auto& f = req->filter();
      if (!f.id().empty() && f.id() != id) continue;
      if (f.has_state() && f.state().state() != s.state()) continue;
      if (!Matches(s.labels(), f.label_selector())) continue;
      auto* out = resp->add_items();
      out->set_id(id);
      *out->mutable_metadata() = s.metadata();
      out->set_state(s.state());
      out->set_created_at(s.created_at());
      *out->mutable_labels() = s.labels();
      *out->mutable_annotations() = s.annotations();
    }
    return grpc::Status::OK;
  }

  grpc::Status CreateContainer(grpc::ServerContext*, const rt::CreateContainerRequest* req, rt::CreateContainerResponse* resp) override {
    if (auto st = s_->Enter("CreateContainer"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto sb = s_->sandboxes.find(req->pod_sandbox_id());
    if (sb == s_->sandboxes.end()) return grpc::Status(grpc::NOT_FOUND, "failed to find sandbox id \"" + req->pod_sandbox_id() + "\"");
    if (sb->second.state() != rt::SANDBOX_READY)
      return grpc::Status(grpc::UNKNOWN, "failed to create containerd container: sandbox is not ready");
    const auto& cfg = req->config();
    if (cfg.metadata().name().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "container config must include metadata");
    for (const auto& [id, c] : s_->containers)
      if (s_->container_sandbox[id] == sb->first && c.metadata().name() == cfg.metadata().name() &&
          c.metadata().attempt() == cfg.metadata().attempt())
        return grpc::Status(grpc::UNKNOWN, "failed to reserve container name: name is reserved");
    bool found = false;
    for (const auto& [ref, img] : s_->images)
      if (img.id() == cfg.image().image() || ref == cfg.image().image()) found = true;
    if (!found) return grpc::Status(grpc::NOT_FOUND, "failed to get image \"" + cfg.image().image() + "\": not found");
    rt::ContainerStatus c;
    c.set_id(RandomID());
    *c.mutable_metadata() = cfg.metadata();
    c.set_state(rt::CONTAINER_CREATED);
    c.set_created_at(NowNanos());
    *c.mutable_image() = cfg.image();
    c.set_image_ref(cfg.image().image());
    *c.mutable_labels() = cfg.labels();
    *c.mutable_annotations() = cfg.annotations();
    // As containerd: the log path is the sandbox's log directory joined with the container's, and the status lists the mounts.
    c.set_log_path(s_->sandbox_log_dirs[sb->first] + "/" + cfg.log_path());
    *c.mutable_mounts() = cfg.mounts();
    s_->containers[c.id()] = c;
    s_->container_sandbox[c.id()] = sb->first;
    s_->configs[c.id()] = cfg;
    resp->set_container_id(c.id());
    return grpc::Status::OK;
  }

  grpc::Status StartContainer(grpc::ServerContext*, const rt::StartContainerRequest* req, rt::StartContainerResponse*) override {
    if (auto st = s_->Enter("StartContainer"); !st.ok()) return st;
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard<std::mutex> l(s_->mu);
      auto it = s_->containers.find(req->container_id());
      if (it == s_->containers.end()) return grpc::Status(grpc::NOT_FOUND, "container \"" + req->container_id() + "\" not found");
      if (it->second.state() != rt::CONTAINER_CREATED)
        return grpc::Status(grpc::UNKNOWN, "container is in " + rt::ContainerState_Name(it->second.state()) + " state");
      it->second.set_state(rt::CONTAINER_RUNNING);
      it->second.set_started_at(NowNanos());
      auto ex = s_->exit_on_start.find(it->second.metadata().name());
      if (ex != s_->exit_on_start.end()) Exit(it->second, ex->second);
      hook = s_->on_start;
    }
    if (hook) hook(req->container_id());
    return grpc::Status::OK;
  }

  grpc::Status StopContainer(grpc::ServerContext*, const rt::StopContainerRequest* req, rt::StopContainerResponse*) override {
    if (auto st = s_->Enter("StopContainer"); !st.ok()) return st;
    std::function<void(const std::string&)> hook;
    std::string name;
    {
      std::lock_guard<std::mutex> l(s_->mu);
      auto it = s_->containers.find(req->container_id());
      if (it != s_->containers.end() && it->second.state() == rt::CONTAINER_RUNNING) {
        hook = s_->on_stop;
        name = it->second.metadata().name();
      }
    }
    if (hook) hook(name);
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->containers.find(req->container_id());
    if (it == s_->containers.end()) return grpc::Status(grpc::NOT_FOUND, "container \"" + req->container_id() + "\" not found");
    if (it->second.state() == rt::CONTAINER_RUNNING) Exit(it->second, 0);
    return grpc::Status::OK;
  }

  grpc::Status RemoveContainer(grpc::ServerContext*, const rt::RemoveContainerRequest* req, rt::RemoveContainerResponse*) override {
    if (auto st = s_->Enter("RemoveContainer"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->containers.find(req->container_id());
    if (it == s_->containers.end()) return grpc::Status::OK;
    if (it->second.state() == rt::CONTAINER_RUNNING)
      return grpc::Status(grpc::UNKNOWN, "container \"" + it->first + "\" is running, stop it first");
    s_->container_sandbox.erase(it->first);
    s_->containers.erase(it);
    return grpc::Status::OK;
  }

  grpc::Status ListContainers(grpc::ServerContext*, const rt::ListContainersRequest* req, rt::ListContainersResponse* resp) override {
    if (auto st = s_->Enter("ListContainers"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    for (const auto& [id, c] : s_->containers) {
      const auto& f = req->filter();
      if (!f.id().empty() && f.id() != id) continue;
      if (f.has_state() && f.state().state() != c.state()) continue;
      if (!f.pod_sandbox_id().empty() && f.pod_sandbox_id() != s_->container_sandbox[id]) continue;
      if (!Matches(c.labels(), f.label_selector())) continue;
      auto* out = resp->add_containers();
      out->set_id(id);
      out->set_pod_sandbox_id(s_->container_sandbox[id]);
      *out->mutable_metadata() = c.metadata();
      *out->mutable_image() = c.image();
      out->set_image_ref(c.image_ref());
      out->set_state(c.state());
      out->set_created_at(c.created_at());
      *out->mutable_labels() = c.labels();
      *out->mutable_annotations() = c.annotations();
    }
    return grpc::Status::OK;
  }

  grpc::Status ContainerStatus(grpc::ServerContext*, const rt::ContainerStatusRequest* req, rt::ContainerStatusResponse* resp) override {
    if (auto st = s_->Enter("ContainerStatus"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->containers.find(req->container_id());
    if (it == s_->containers.end()) return grpc::Status(grpc::NOT_FOUND, "an error occurred when try to find container \"" + req->container_id() + "\": not found");
    *resp->mutable_status() = it->second;
    return grpc::Status::OK;
  }

  grpc::Status ExecSync(grpc::ServerContext*, const rt::ExecSyncRequest* req, rt::ExecSyncResponse* resp) override {
    if (auto st = s_->Enter("ExecSync"); !st.ok()) return st;
    FakeRuntime::ExecFn fn;
    std::string name;
    {
      std::lock_guard<std::mutex> l(s_->mu);
      auto it = s_->containers.find(req->container_id());
      if (it == s_->containers.end()) return grpc::Status(grpc::NOT_FOUND, "container \"" + req->container_id() + "\" not found");
      if (it->second.state() != rt::CONTAINER_RUNNING)
        return grpc::Status(grpc::UNKNOWN, "cannot exec in a stopped state: unknown");
      if (req->cmd().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "cmd must not be empty");
      fn = s_->exec;
      name = it->second.metadata().name();
    }
    std::vector<std::string> cmd(req->cmd().begin(), req->cmd().end());
    auto [code, out] = fn ? fn(name, cmd) : std::make_pair(0, std::string());
    resp->set_exit_code(code);
    resp->set_stdout(out);
    return grpc::Status::OK;
  }

  grpc::Status UpdateContainerResources(grpc::ServerContext*, const rt::UpdateContainerResourcesRequest* req,
                                        rt::UpdateContainerResourcesResponse*) override {
    if (auto st = s_->Enter("UpdateContainerResources"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->containers.find(req->container_id());
    if (it == s_->containers.end()) return grpc::Status(grpc::NOT_FOUND, "container \"" + req->container_id() + "\" not found");
    if (it->second.state() != rt::CONTAINER_RUNNING && it->second.state() != rt::CONTAINER_CREATED)
      return grpc::Status(grpc::UNKNOWN, "container is not running or created");
    // As containerd: only what the request sets changes.
    auto* r = s_->configs[req->container_id()].mutable_linux()->mutable_resources();
    const auto& in = req->linux();
    if (!in.cpuset_cpus().empty()) r->set_cpuset_cpus(in.cpuset_cpus());
    if (in.cpu_shares() != 0) r->set_cpu_shares(in.cpu_shares());
    if (in.cpu_quota() != 0) r->set_cpu_quota(in.cpu_quota());
    if (in.memory_limit_in_bytes() != 0) r->set_memory_limit_in_bytes(in.memory_limit_in_bytes());
    return grpc::Status::OK;
  }

  grpc::Status ReopenContainerLog(grpc::ServerContext*, const rt::ReopenContainerLogRequest* req, rt::ReopenContainerLogResponse*) override {
    if (auto st = s_->Enter("ReopenContainerLog"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->containers.find(req->container_id());
    if (it == s_->containers.end()) return grpc::Status(grpc::NOT_FOUND, "container \"" + req->container_id() + "\" not found");
    if (it->second.state() != rt::CONTAINER_RUNNING) return grpc::Status(grpc::UNKNOWN, "container is not running");
    // As containerd: the log file is opened again at its path (created if it was moved away).
    std::ofstream(it->second.log_path(), std::ios::app);
    return grpc::Status::OK;
  }

  grpc::Status Status(grpc::ServerContext*, const rt::StatusRequest*, rt::StatusResponse* resp) override {
    if (auto st = s_->Enter("Status"); !st.ok()) return st;
    for (const char* t : {"RuntimeReady", "NetworkReady"}) {
      auto* c = resp->mutable_status()->add_conditions();
      c->set_type(t);
      c->set_status(true);
    }
    return grpc::Status::OK;
  }

  static void Exit(rt::ContainerStatus& c, int code) {
    c.set_state(rt::CONTAINER_EXITED);
    c.set_exit_code(code);
    c.set_finished_at(NowNanos());
    c.set_reason(code == 0 ? "Completed" : "Error");
  }

 private:
  std::shared_ptr<State> s_;
};

class FakeRuntime::ImageImpl final : public rt::ImageService::Service {
 public:
  explicit ImageImpl(std::shared_ptr<State> s) : s_(std::move(s)) {}

  grpc::Status ImageStatus(grpc::ServerContext*, const rt::ImageStatusRequest* req, rt::ImageStatusResponse* resp) override {
    if (auto st = s_->Enter("ImageStatus"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    for (const auto& [ref, img] : s_->images)
      if (ref == req->image().image() || img.id() == req->image().image()) *resp->mutable_image() = img;
    return grpc::Status::OK;
  }
  grpc::Status PullImage(grpc::ServerContext*, const rt::PullImageRequest* req, rt::PullImageResponse* resp) override {
    if (auto st = s_->Enter("PullImage"); !st.ok()) return st;
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard<std::mutex> l(s_->mu);
      hook = s_->on_pull;
    }
    if (hook) hook(req->image().image());
    std::lock_guard<std::mutex> l(s_->mu);
    auto it = s_->images.find(req->image().image());
    if (it == s_->images.end())
      return grpc::Status(grpc::NOT_FOUND, "failed to resolve reference \"" + req->image().image() + "\": not found");
    resp->set_image_ref(it->second.id());
    return grpc::Status::OK;
  }
  grpc::Status ListImages(grpc::ServerContext*, const rt::ListImagesRequest*, rt::ListImagesResponse* resp) override {
    if (auto st = s_->Enter("ListImages"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    for (const auto& [_, img] : s_->images) *resp->add_images() = img;
    return grpc::Status::OK;
  }
  grpc::Status RemoveImage(grpc::ServerContext*, const rt::RemoveImageRequest* req, rt::RemoveImageResponse*) override {
    if (auto st = s_->Enter("RemoveImage"); !st.ok()) return st;
    std::lock_guard<std::mutex> l(s_->mu);
    // By reference or by ID (every tag of the image goes, as containerd removes them).
    const std::string& want = req->image().image();
    std::string id = want;
    if (auto it = s_->images.find(want); it != s_->images.end()) id = it->second.id();
    for (auto it = s_->images.begin(); it != s_->images.end();)
      it = it->second.id() == id ? s_->images.erase(it) : std::next(it);
    return grpc::Status::OK;
  }
  grpc::Status ImageFsInfo(grpc::ServerContext*, const rt::ImageFsInfoRequest*, rt::ImageFsInfoResponse* resp) override {
    if (auto st = s_->Enter("ImageFsInfo"); !st.ok()) return st;
    auto* fs = resp->add_image_filesystems();
    fs->set_timestamp(NowNanos());
    fs->mutable_fs_id()->set_mountpoint("/var/lib/fakeruntime");
    fs->mutable_used_bytes()->set_value(1 << 20);
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<State> s_;
};

FakeRuntime::FakeRuntime(std::string socket_path) : socket_(std::move(socket_path)), state_(std::make_shared<State>()) {
  runtime_ = std::make_unique<RuntimeImpl>(state_);
  image_ = std::make_unique<ImageImpl>(state_);
}

FakeRuntime::~FakeRuntime() { Stop(); }

bool FakeRuntime::Start() {
  ::unlink(socket_.c_str());
  grpc::ServerBuilder b;
  b.AddListeningPort("unix:" + socket_, grpc::InsecureServerCredentials());
  b.RegisterService(runtime_.get());
  b.RegisterService(image_.get());
  server_ = b.BuildAndStart();
  return server_ != nullptr;
}

void FakeRuntime::Stop() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }
  ::unlink(socket_.c_str());
}

void FakeRuntime::InjectError(const std::string& method, grpc::StatusCode code, int times) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->errors[method] = {code, times};
}

void FakeRuntime::SetDelay(const std::string& method, Duration d) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->delays[method] = d;
}

int FakeRuntime::CallCount(const std::string& method) const {
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->calls.find(method);
  return it == state_->calls.end() ? 0 : it->second;
}

void FakeRuntime::ResetCalls() {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->calls.clear();
}

void FakeRuntime::SetCgroupDriver(rt::CgroupDriver driver) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->cgroup_driver = driver;
}

bool FakeRuntime::HasImage(const std::string& ref) const {
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->images.count(ref) > 0;
}

void FakeRuntime::AddImage(const std::string& ref, uint64_t size, bool pinned) {
  std::lock_guard<std::mutex> l(state_->mu);
  rt::Image img;
  std::hash<std::string> h;
  char buf[80];
  std::snprintf(buf, sizeof(buf), "sha256:%016zx%016zx", h(ref), h(ref + "x"));
  img.set_id(buf);
  img.add_repo_tags(ref);
  img.set_size(size);
  img.set_pinned(pinned);
  state_->images[ref] = img;
}

bool FakeRuntime::ExitContainer(const std::string& id, int exit_code) {
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->containers.find(id);
  if (it == state_->containers.end() || it->second.state() != rt::CONTAINER_RUNNING) return false;
  RuntimeImpl::Exit(it->second, exit_code);
  return true;
}

std::vector<rt::Container> FakeRuntime::Containers() const {
  std::lock_guard<std::mutex> l(state_->mu);
  std::vector<rt::Container> out;
  for (const auto& [id, c] : state_->containers) {
    rt::Container x;
    x.set_id(id);
    x.set_pod_sandbox_id(state_->container_sandbox.at(id));
    *x.mutable_metadata() = c.metadata();
    x.set_state(c.state());
    *x.mutable_labels() = c.labels();
    *x.mutable_annotations() = c.annotations();
    out.push_back(x);
  }
  return out;
}

std::vector<rt::PodSandbox> FakeRuntime::Sandboxes() const {
  std::lock_guard<std::mutex> l(state_->mu);
  std::vector<rt::PodSandbox> out;
  for (const auto& [id, s] : state_->sandboxes) {
    rt::PodSandbox x;
    x.set_id(id);
    *x.mutable_metadata() = s.metadata();
    x.set_state(s.state());
    *x.mutable_labels() = s.labels();
    out.push_back(x);
  }
  return out;
}

std::optional<rt::ContainerConfig> FakeRuntime::ConfigOf(const std::string& id) const {
  std::lock_guard<std::mutex> l(state_->mu);
  auto it = state_->configs.find(id);
  if (it == state_->configs.end()) return std::nullopt;
  return it->second;
}

bool FakeRuntime::WriteLog(const std::string& id, const std::string& stream, const std::string& text) {
  std::string path;
  {
    std::lock_guard<std::mutex> l(state_->mu);
    auto it = state_->containers.find(id);
    if (it == state_->containers.end()) return false;
    path = it->second.log_path();
  }
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::app);
  // One CRI record per line, as the runtime writes them.
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out << FormatRFC3339Nano(std::chrono::system_clock::now()) << " " << stream << " F " << line << "\n";
  return static_cast<bool>(out);
}

void FakeRuntime::SetExitOnStart(const std::string& container_name, int code) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->exit_on_start[container_name] = code;
}

void FakeRuntime::SetOnPull(std::function<void(const std::string&)> fn) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->on_pull = std::move(fn);
}

void FakeRuntime::SetOnStop(std::function<void(const std::string&)> fn) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->on_stop = std::move(fn);
}

void FakeRuntime::SetExec(ExecFn fn) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->exec = std::move(fn);
}

void FakeRuntime::SetOnStart(std::function<void(const std::string&)> fn) {
  std::lock_guard<std::mutex> l(state_->mu);
  state_->on_start = std::move(fn);
}

}  // namespace kubelet::testing

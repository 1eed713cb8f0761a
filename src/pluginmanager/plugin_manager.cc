#include "kubelet/pluginmanager/plugin_manager.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/operation_executor.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace kubelet::pluginmanager {
namespace {

namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;

// A socket as the desired state holds it: re-created (new inode or change time) means re-registered.
struct DesiredPlugin {
  std::string stamp;
};

struct ActualPlugin {
  RegisteredPlugin info;
  std::string stamp;
  PluginHandler* handler = nullptr;
  int failures = 0;
  Steady::time_point next_health{};
};

std::unique_ptr<pluginregistration::Registration::Stub> Dial(const std::string& socket) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto ch = grpc::CreateCustomChannel("unix://" + socket, grpc::InsecureChannelCredentials(), args);
  return pluginregistration::Registration::NewStub(ch);
}

void Deadline(grpc::ClientContext* ctx, std::chrono::milliseconds timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}

class PluginManagerImpl : public PluginManager {
 public:
  explicit PluginManagerImpl(PluginManagerOptions o) : o_(std::move(o)), ops_("plugin registration"), log_(log::Get("pluginmanager")) {}
  ~PluginManagerImpl() override { Stop(); }

  void AddHandler(const std::string& type, PluginHandler* handler) override {
    std::lock_guard<std::mutex> l(mu_);
    handlers_[type] = handler;
  }

  void Start() override {
    std::error_code ec;
    fs::create_directories(o_.dir, ec);
    if (ec) log_->error("Failed to create the plugin registration folder path=\"{}\" err=\"{}\"", o_.dir, ec.message());
    ::chmod(o_.dir.c_str(), 0750);
    inotify_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_ < 0) log_->error("inotify_init1: {}; the folder is rescanned each {}ms only", std::strerror(errno), o_.reconcile_period.count());
    log_->info("Starting Kubelet Plugin Manager path=\"{}\"", o_.dir);
    loop_ = std::thread([this] { GuardedRun("plugin manager", [this] { Loop(); }); });
  }

  void Stop() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    if (loop_.joinable()) loop_.join();
    ops_.Stop();
    if (inotify_ >= 0) ::close(inotify_);
    inotify_ = -1;
  }

  std::vector<RegisteredPlugin> Registered() const override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<RegisteredPlugin> out;
    for (const auto& [socket, a] : actual_) out.push_back(a.info);
    return out;
  }

 private:
  // Watches every folder under the registration folder (plugins may put their socket in a sub-folder).
  void WatchFolders() {
    if (inotify_ < 0) return;
    std::vector<std::string> dirs{o_.dir};
    std::error_code ec;
    for (fs::recursive_directory_iterator it(o_.dir, fs::directory_options::skip_permission_denied, ec), end; !ec && it != end;
         it.increment(ec)) {
      if (it.depth() > 4) it.disable_recursion_pending();  // bounded: nothing legitimate nests deeper
      if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path().string());
    }
    for (const auto& d : dirs) {
      if (watched_.count(d)) continue;
      if (watched_.size() >= 1024) break;
      int wd = ::inotify_add_watch(inotify_, d.c_str(), IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE_SELF);
      if (wd >= 0) watched_[d] = wd;
    }
  }

  // The sockets under the folder now; files and folders whose name starts with "." are ignored, as upstream.
  std::map<std::string, DesiredPlugin> Scan() {
    std::map<std::string, DesiredPlugin> out;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(o_.dir, fs::directory_options::skip_permission_denied, ec), end; !ec && it != end;
         it.increment(ec)) {
      if (it.depth() > 4) it.disable_recursion_pending();
      std::string base = it->path().filename().string();
      if (!base.empty() && base[0] == '.') {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      out[it->path().string()] = {std::to_string(st.st_ino) + "/" + std::to_string(st.st_ctim.tv_sec) + "." +
                                  std::to_string(st.st_ctim.tv_nsec)};
      if (out.size() >= 4096) break;
    }
    return out;
  }

  void Loop() {
    for (;;) {
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stop_) return;
      }
      WatchFolders();
      Reconcile(Scan());
      // inotify wakes the loop at once; the period is the rescan's.
      if (inotify_ >= 0) {
        pollfd p{inotify_, POLLIN, 0};
        int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(o_.reconcile_period.count(), 200)));
        if (n > 0) {
          char buf[4096];
          while (::read(inotify_, buf, sizeof(buf)) > 0) {
          }
          // Folders that went away: forget their watches (the kernel dropped them).
          std::error_code ec;
          for (auto it = watched_.begin(); it != watched_.end();)
            it = fs::exists(it->first, ec) ? std::next(it) : watched_.erase(it);
          continue;
        }
      }
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, o_.reconcile_period, [this] { return stop_; });
    }
  }

  void Reconcile(const std::map<std::string, DesiredPlugin>& desired) {
    std::vector<std::pair<std::string, ActualPlugin>> gone;
    std::vector<std::string> to_register, to_check;
    auto now = Steady::now();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto it = actual_.begin(); it != actual_.end();) {
        auto d = desired.find(it->first);
        bool stale = d == desired.end() || d->second.stamp != it->second.stamp || it->second.failures >= o_.health_failures;
        if (stale && !ops_.IsRunning(it->first)) {
          gone.emplace_back(it->first, it->second);
          it = actual_.erase(it);
          continue;
        }
        if (now >= it->second.next_health) to_check.push_back(it->first);
        ++it;
      }
      for (const auto& [socket, d] : desired)
        if (!actual_.count(socket)) to_register.push_back(socket);
    }
    for (auto& entry : gone) {
      const std::string& socket = entry.first;
      auto& a = entry.second;  // a plain reference: clang does not capture structured bindings (C++17)
      std::string why = desired.count(socket) ? (a.failures >= o_.health_failures ? "it stopped answering" : "its socket was re-created")
                                              : "its socket was removed";
      log_->info("Deregistering plugin plugin=\"{}\" type=\"{}\" socket=\"{}\" reason=\"{}\"", a.info.name, a.info.type, socket, why);
      (void)Guarded("DeRegisterPlugin", [&] {
        a.handler->DeRegisterPlugin(a.info.name, a.info.endpoint);
        return absl::OkStatus();
      });
    }
    for (const auto& socket : to_register) {
      std::string stamp = desired.at(socket).stamp;
      auto st = ops_.Run(socket, [this, socket, stamp] { return Register(socket, stamp); });
      (void)st;  // running already or in back-off: a later round starts it
    }
    for (const auto& socket : to_check) {
      auto st = ops_.Run(socket, [this, socket] { return Check(socket); });
      (void)st;
    }
  }

  absl::Status Register(const std::string& socket, const std::string& stamp) {
    auto stub = Dial(socket);
    pluginregistration::PluginInfo info;
    {
      grpc::ClientContext ctx;
      Deadline(&ctx, o_.call_timeout);
      grpc::Status gs = stub->GetInfo(&ctx, pluginregistration::InfoRequest(), &info);
      if (!gs.ok()) {
        log_->error("RegisterPlugin error -- failed to get plugin info using RPC GetInfo at socket {}, err: {}", socket, gs.error_message());
        return absl::UnavailableError("GetInfo at " + socket + ": " + gs.error_message());
      }
    }
    auto notify = [&](bool ok, const std::string& err) {
      grpc::ClientContext ctx;
      Deadline(&ctx, o_.call_timeout);
      pluginregistration::RegistrationStatus rs;
      rs.set_plugin_registered(ok);
      rs.set_error(err);
      pluginregistration::RegistrationStatusResponse resp;
      grpc::Status gs = stub->NotifyRegistrationStatus(&ctx, rs, &resp);
      if (!gs.ok()) log_->error("Failed to send registration status socket=\"{}\" err=\"{}\"", socket, gs.error_message());
    };
    PluginHandler* handler = nullptr;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (auto h = handlers_.find(info.type()); h != handlers_.end()) handler = h->second;
    }
    std::vector<std::string> versions(info.supported_versions().begin(), info.supported_versions().end());
    std::string endpoint = info.endpoint().empty() ? socket : info.endpoint();
    auto refuse = [&](const std::string& err) {
      log_->error("{} plugin=\"{}\" socket=\"{}\"", err, info.name(), socket);
      notify(false, err);
      return absl::FailedPreconditionError(err);
    };
    if (!handler) return refuse("no handler registered for plugin type: " + info.type() + " at socket " + socket);
    if (info.name().empty()) return refuse("RegisterPlugin error -- plugin validation failed with err: the plugin's name is empty");
    if (auto st = handler->ValidatePlugin(info.name(), endpoint, versions); !st.ok())
      return refuse("RegisterPlugin error -- plugin validation failed with err: " + std::string(st.message()));
    if (auto st = handler->RegisterPlugin(info.name(), endpoint, versions, o_.call_timeout); !st.ok())
      return refuse("RegisterPlugin error -- plugin registration failed with err: " + std::string(st.message()));
    {
      std::lock_guard<std::mutex> l(mu_);
      ActualPlugin a;
      a.info = {socket, info.type(), info.name(), endpoint, versions};
      a.stamp = stamp;
      a.handler = handler;
      a.next_health = Steady::now() + o_.health_period;
      actual_[socket] = std::move(a);
    }
    notify(true, "");
    log_->info("Registered plugin plugin=\"{}\" type=\"{}\" endpoint=\"{}\" versions=[{}]", info.name(), info.type(), endpoint, [&] {
      std::string all;
      for (const auto& v : versions) all += (all.empty() ? "" : " ") + v;
      return all;
    }());
    return absl::OkStatus();
  }

  // A registered plugin still answers GetInfo; after health_failures misses in a row the reconciler deregisters it
  // (and registers it again once it answers).
  absl::Status Check(const std::string& socket) {
    auto stub = Dial(socket);
    grpc::ClientContext ctx;
    Deadline(&ctx, std::min(o_.call_timeout, std::chrono::milliseconds(2000)));
    pluginregistration::PluginInfo info;
    grpc::Status gs = stub->GetInfo(&ctx, pluginregistration::InfoRequest(), &info);
    std::lock_guard<std::mutex> l(mu_);
    auto it = actual_.find(socket);
    if (it == actual_.end()) return absl::OkStatus();
    it->second.next_health = Steady::now() + o_.health_period;
    if (gs.ok()) {
      it->second.failures = 0;
      return absl::OkStatus();
    }
    ++it->second.failures;
    log_->warn("Plugin did not answer GetInfo plugin=\"{}\" socket=\"{}\" failures={} err=\"{}\"", it->second.info.name, socket,
               it->second.failures, gs.error_message());
    return absl::OkStatus();  // not an operation failure: the next check is not held back
  }

  PluginManagerOptions o_;
  OperationExecutor ops_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int inotify_ = -1;
  std::map<std::string, int> watched_;
  std::map<std::string, PluginHandler*> handlers_;
  std::map<std::string, ActualPlugin> actual_;
  std::thread loop_;
};

}  // namespace

std::unique_ptr<PluginManager> NewPluginManager(PluginManagerOptions options) {
  return std::make_unique<PluginManagerImpl>(std::move(options));
}

}  // namespace kubelet::pluginmanager

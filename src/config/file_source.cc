#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/guard.h"

namespace kubelet::config {
namespace {

namespace fs = std::filesystem;

bool HasManifestExtension(const std::string& name) {
  auto ends = [&](const char* ext) {
    size_t n = strlen(ext);
    return name.size() > n && name.compare(name.size() - n, n, ext) == 0;
  };
  return ends(".yaml") || ends(".yml") || ends(".json");
}

class FileSource : public PodSource {
 public:
  FileSource(std::string path, std::string node, Duration period, SnapshotFn fn)
      : path_(std::move(path)), node_(std::move(node)), period_(period), fn_(std::move(fn)), log_(log::Get("file_source")) {}
  ~FileSource() override { Stop(); }

  void Start() override {
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
    thread_ = std::thread([this] { GuardedRun("file_source Run", [this] { Run(); }); });
  }

  void Stop() override {
    if (!thread_.joinable()) return;
    stop_ = true;
    if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
    thread_.join();
    for (int fd : wake_)
      if (fd >= 0) ::close(fd);
    if (inotify_ >= 0) ::close(inotify_);
  }

 private:
  void Run() {
    log_->info("Watching path path=\"{}\"", path_);
    inotify_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    auto next_scan = std::chrono::steady_clock::now();
    bool dirty = true;
    while (!stop_) {
      if (watch_ < 0) AddWatch();
      auto now = std::chrono::steady_clock::now();
      if (dirty || now >= next_scan) {
        Scan();
        dirty = false;
        next_scan = now + period_;
      }
      int timeout = static_cast<int>(
          std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(next_scan - now).count()));
      pollfd fds[2] = {{inotify_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      int n = ::poll(fds, 2, timeout);
      if (n <= 0) continue;
      if (fds[0].revents & POLLIN) {
        Drain();
        // Coalesce a burst of events (many files written at once) into one scan.
        ::poll(nullptr, 0, 5);
        Drain();
        dirty = true;
      }
    }
  }

  void Drain() {
    alignas(inotify_event) char buf[8192];
    for (;;) {
      ssize_t r = ::read(inotify_, buf, sizeof(buf));
      if (r <= 0) break;
      for (char* p = buf; p < buf + r;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
          watch_ = -1;  // the folder went away: re-add the watch on the next round
        }
        p += sizeof(inotify_event) + ev->len;
      }
    }
  }

  void AddWatch() {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return;
    std::string dir = S_ISDIR(st.st_mode) ? path_ : fs::path(path_).parent_path().string();
    watch_ = inotify_add_watch(inotify_, dir.c_str(),
                               IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE |
                                   IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
    if (watch_ < 0) log_->error("Unable to watch path path=\"{}\" err=\"{}\"", dir, std::strerror(errno));
  }

  void Scan() {
    std::vector<std::string> files;
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      if (!missing_logged_) {
        log_->error("Unable to read config path path=\"{}\" err=\"{}\"", path_, std::strerror(errno));
        missing_logged_ = true;
      }
      fn_(api::kSourceFile, {});
      return;
    }
    missing_logged_ = false;
    if (S_ISDIR(st.st_mode)) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(path_, ec)) {
        std::string name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (!e.is_regular_file(ec)) continue;
        if (!HasManifestExtension(name)) {
          KLOG_V(log_, 4)("Ignoring file without a manifest extension path=\"{}\"", e.path().string());
          continue;
        }
        files.push_back(e.path().string());
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path_);
    }
    std::vector<api::Pod> pods;
    std::map<std::string, std::string> seen_names;  // full name -> file
    std::map<std::string, std::string> errors;
    std::map<std::string, api::Pod> good;
    for (const auto& f : files) {
      auto pod = ReadManifest(f);
      // Removed between the listing and the read: simply gone, not an error (the next event or scan confirms it).
      if (pod.status().code() == absl::StatusCode::kNotFound) continue;
      if (!pod.ok()) {
        errors[f] = std::string(pod.status().message());
        // A manifest that breaks (or is caught half-written) keeps its last good
        // pod running, as upstream's file source keeps it in its store.
        auto last = last_good_.find(f);
        if (last == last_good_.end()) continue;
        pod = last->second;
      } else {
        good[f] = *pod;
      }
      auto [it, inserted] = seen_names.emplace(pod->FullName(), f);
      if (!inserted) {
        errors[f] = "duplicate pod name \"" + pod->metadata.name + "\" in namespace \"" + pod->metadata.namespace_ +
                    "\": already defined by " + it->second;
        continue;
      }
      pods.push_back(std::move(*pod));
    }
    // Log each broken file once per distinct error, not on every rescan.
    for (const auto& [f, e] : errors) {
      auto prev = last_errors_.find(f);
      if (prev == last_errors_.end() || prev->second != e)
        log_->error("Could not process manifest file, skipping it path=\"{}\" err=\"{}\"", f, e);
    }
    last_errors_ = errors;
    for (const auto& [f, _] : errors)
      if (auto it = last_good_.find(f); it != last_good_.end() && !good.count(f)) good[f] = it->second;
    last_good_ = std::move(good);
    fn_(api::kSourceFile, std::move(pods));
  }

  absl::StatusOr<api::Pod> ReadManifest(const std::string& file) {
    std::ifstream in(file);
    if (!in) {
      int err = errno;
      if (err == ENOENT) return absl::NotFoundError("removed");
      return absl::PermissionDeniedError(std::string("cannot read: ") + std::strerror(err));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) return absl::InvalidArgumentError("empty file");
    auto doc = api::ParseDocument(text);
    if (!doc.ok()) return doc.status();
    return PrepareStaticPod(std::move(*doc), file, true, node_);
  }

  std::string path_;
  std::string node_;
  Duration period_;
  SnapshotFn fn_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  int wake_[2] = {-1, -1};
  int inotify_ = -1;
  int watch_ = -1;
  bool missing_logged_ = false;
  std::map<std::string, std::string> last_errors_;
  std::map<std::string, api::Pod> last_good_;  // file -> last pod it described without error
};

}  // namespace

std::unique_ptr<PodSource> NewFileSource(const std::string& path, const std::string& node_name, Duration period,
                                         SnapshotFn fn) {
  return std::make_unique<FileSource>(path, node_name, period, std::move(fn));
}

}  // namespace kubelet::config

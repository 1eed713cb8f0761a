#include "kubelet/kuberuntime/log_manager.h"
#include "kubelet/util/guard.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <vector>

namespace kubelet::kuberuntime {

namespace fs = std::filesystem;

namespace {

// gzip src to src.gz (through a temporary), then remove src.
absl::Status Compress(const std::string& src) {
  std::string tmp = src + ".gz.tmp";
  std::ifstream in(src, std::ios::binary);
  if (!in) return absl::NotFoundError("open " + src);
  gzFile out = gzopen(tmp.c_str(), "wb");
  if (!out) return absl::InternalError("gzopen " + tmp);
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    if (gzwrite(out, buf, static_cast<unsigned>(in.gcount())) <= 0) {
      gzclose(out);
      return absl::InternalError("gzwrite " + tmp);
    }
  }
  if (gzclose(out) != Z_OK) return absl::InternalError("gzclose " + tmp);
  std::error_code ec;
  fs::rename(tmp, src + ".gz", ec);
  if (ec) return absl::InternalError("rename " + tmp + ": " + ec.message());
  fs::remove(src, ec);
  return absl::OkStatus();
}

}  // namespace

ContainerLogManager::ContainerLogManager(cri::RuntimeService* runtime, const Clock* clock, LogRotationOptions o)
    : runtime_(runtime), clock_(clock), o_(o), log_(log::Get("container_log_manager")) {}

ContainerLogManager::~ContainerLogManager() { Stop(); }

void ContainerLogManager::Start() { thread_ = std::thread([this] { GuardedRun("log_manager Loop", [this] { Loop(); }); }); }

void ContainerLogManager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ContainerLogManager::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!cv_.wait_for(l, o_.interval, [&] { return stop_; })) {
    l.unlock();
    RotateOnce();
    l.lock();
  }
}

int ContainerLogManager::RotateOnce() {
  cri::rt::ContainerFilter f;
  f.mutable_state()->set_state(cri::rt::CONTAINER_RUNNING);
  auto cs = runtime_->ListContainers(&f);
  if (!cs.ok()) {
    log_->error("Failed to list containers for log rotation err=\"{}\"", cs.status().message());
    return 0;
  }
  int rotated = 0;
  for (const auto& c : *cs) {
    auto st = runtime_->ContainerStatus(c.id());
    if (!st.ok() || st->log_path().empty()) continue;
    struct stat sb {};
    if (::stat(st->log_path().c_str(), &sb) != 0 || sb.st_size < o_.max_size_bytes) continue;
    if (auto r = RotateIfNeeded(c.id(), st->log_path()); !r.ok()) {
      log_->error("Failed to rotate log for container path=\"{}\" containerID=\"{}\" err=\"{}\"", st->log_path(), c.id(), r.message());
    } else {
      ++rotated;
    }
  }
  return rotated;
}

absl::Status ContainerLogManager::RotateIfNeeded(const std::string& id, const std::string& path) {
  struct stat sb {};
  if (::stat(path.c_str(), &sb) != 0) return absl::NotFoundError("stat " + path);
  if (sb.st_size < o_.max_size_bytes) return absl::OkStatus();
  fs::path p(path);
  std::string prefix = p.filename().string() + ".";
  // Rotated files, oldest first (their suffix is a sortable timestamp).
  std::vector<std::string> rotated;
  std::error_code ec;
  for (fs::directory_iterator it(p.parent_path(), ec), end; !ec && it != end; it.increment(ec)) {
    std::string n = it->path().filename().string();
    if (n.rfind(prefix, 0) != 0) continue;
    if (n.size() > 4 && n.substr(n.size() - 4) == ".tmp") {
      fs::remove(it->path(), ec);  // a compression that never finished
      continue;
    }
    rotated.push_back(it->path().string());
  }
  std::sort(rotated.begin(), rotated.end());
  // After this rotation there are the live log and the rotated ones: at most max_files in all.
  size_t keep = o_.max_files > 1 ? static_cast<size_t>(o_.max_files - 2) : 0;
  while (rotated.size() > keep) {
    fs::remove(rotated.front(), ec);
    rotated.erase(rotated.begin());
  }
  // The rotated files left are compressed; the one rotated now stays plain (a log shipper may still read it).
  for (size_t i = 0; i < rotated.size(); ++i)
    if (rotated[i].size() < 3 || rotated[i].substr(rotated[i].size() - 3) != ".gz")
      if (auto st = Compress(rotated[i]); !st.ok()) return st;
  std::time_t now = std::chrono::system_clock::to_time_t(clock_->Now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char ts[32];
  std::strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", &tm);
  std::string target = path + "." + ts;
  for (int i = 1; fs::exists(target); ++i) target = path + "." + ts + "-" + std::to_string(i);  // same second
  fs::rename(path, target, ec);
  if (ec) return absl::InternalError("rename " + path + ": " + ec.message());
  if (auto st = runtime_->ReopenContainerLog(id); !st.ok()) {
    // Put it back so the runtime keeps writing where the kubelet reads.
    fs::rename(target, path, ec);
    return absl::Status(st.code(), "failed to reopen container log " + id + ": " + std::string(st.message()));
  }
  KLOG_V(log_, 2)("Rotated container log containerID=\"{}\" path=\"{}\" rotated=\"{}\"", id, path, target);
  return absl::OkStatus();
}

}  // namespace kubelet::kuberuntime

#include "kubelet/volumemanager/atomic_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <set>

namespace kubelet::volumemanager {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDataDir = "..data";
constexpr const char* kDataDirTmp = "..data_tmp";

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(what + " " + path + ": " + std::strerror(errno));
}

std::string FirstElement(const std::string& path) { return path.substr(0, path.find('/')); }

bool ReadFile(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  out->clear();
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out->append(buf, static_cast<size_t>(n));
  ::close(fd);
  return n == 0;
}

// True when `ts_dir` holds exactly the payload (same files, contents and modes).
bool SameContents(const std::string& ts_dir, const std::map<std::string, FileProjection>& payload) {
  size_t files = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(ts_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    ++files;
    std::string rel = it->path().lexically_relative(ts_dir).string();
    auto p = payload.find(rel);
    if (p == payload.end()) return false;
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<int>(st.st_mode & 07777) != p->second.mode)
      return false;
    std::string data;
    if (!ReadFile(it->path().string(), &data) || data != p->second.data) return false;
  }
  return !ec && files == payload.size();
}

std::string NewTimestampedName() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "..%Y_%m_%d_%H_%M_%S.", &tm);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::string(buf) + std::to_string(rng() % 1000000000ULL);
}

absl::Status WriteFile(const std::string& path, const FileProjection& f) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("create", path);
  size_t off = 0;
  while (off < f.data.size()) {
    ssize_t n = ::write(fd, f.data.data() + off, f.data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      auto st = Errno("write", path);
      ::close(fd);
      return st;
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(f.mode)) != 0) {
    auto st = Errno("chmod", path);
    ::close(fd);
    return st;
  }
  if (::close(fd) != 0) return Errno("close", path);
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePayloadPath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("invalid path: must not be empty");
  if (path[0] == '/') return absl::InvalidArgumentError("invalid path \"" + path + "\": must be relative path");
  if (path.size() > 4096) return absl::InvalidArgumentError("invalid path \"" + path + "\": too long");
  if (path.rfind("..", 0) == 0) return absl::InvalidArgumentError("invalid path \"" + path + "\": must not start with '..'");
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string el = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (el.empty() && slash != std::string::npos) return absl::InvalidArgumentError("invalid path \"" + path + "\": empty element");
    if (el == "..") return absl::InvalidArgumentError("invalid path \"" + path + "\": must not contain '..'");
    if (el.empty()) return absl::InvalidArgumentError("invalid path \"" + path + "\": must not end with '/'");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (path.find('\0') != std::string::npos) return absl::InvalidArgumentError("invalid path: contains NUL");
  return absl::OkStatus();
}

absl::Status WriteAtomic(const std::string& dir, const std::map<std::string, FileProjection>& payload, bool* changed,
                         const std::function<absl::Status(const std::string&)>& set_perms) {
  if (changed) *changed = false;
  for (const auto& [path, f] : payload) {
    if (auto st = ValidatePayloadPath(path); !st.ok()) return st;
    if (f.mode < 0 || f.mode > 0777) return absl::InvalidArgumentError("invalid mode for \"" + path + "\"");
  }
  // 1. What is there now.
  std::string old_ts;
  char target[4096];
  ssize_t n = ::readlink((dir + "/" + kDataDir).c_str(), target, sizeof target - 1);
  if (n > 0) {
    old_ts.assign(target, static_cast<size_t>(n));
    if (old_ts.find('/') != std::string::npos || old_ts.rfind("..", 0) != 0) old_ts.clear();  // not ours: replace it
  }
  std::set<std::string> wanted;
  for (const auto& [path, _] : payload) wanted.insert(FirstElement(path));
  auto user_links_ok = [&] {
    for (const auto& name : wanted) {
      char t[4096];
      ssize_t m = ::readlink((dir + "/" + name).c_str(), t, sizeof t - 1);
      if (m <= 0 || std::string(t, static_cast<size_t>(m)) != std::string(kDataDir) + "/" + name) return false;
    }
    return true;
  };
  if (!old_ts.empty() && SameContents(dir + "/" + old_ts, payload) && user_links_ok()) return absl::OkStatus();

  // 2. The new payload in a timestamped folder of its own.
  std::string ts = NewTimestampedName();
  std::string ts_path = dir + "/" + ts;
  if (::mkdir(ts_path.c_str(), 0755) != 0) return Errno("mkdir", ts_path);
  ::chmod(ts_path.c_str(), 0755);
  auto fail = [&](absl::Status st) {
    std::error_code ec;
    fs::remove_all(ts_path, ec);
    return st;
  };
  for (const auto& [path, f] : payload) {
    std::string full = ts_path + "/" + path;
    std::error_code ec;
    fs::create_directories(fs::path(full).parent_path(), ec);
    if (ec) return fail(absl::InternalError("mkdir " + fs::path(full).parent_path().string() + ": " + ec.message()));
    if (auto st = WriteFile(full, f); !st.ok()) return fail(st);
  }
  if (set_perms)
    if (auto st = set_perms(ts_path); !st.ok()) return fail(st);
  // 3. ..data points at it, by one rename.
  std::string tmp_link = dir + "/" + kDataDirTmp;
  ::unlink(tmp_link.c_str());
  if (::symlink(ts.c_str(), tmp_link.c_str()) != 0) return fail(Errno("symlink", tmp_link));
  if (::rename(tmp_link.c_str(), (dir + "/" + kDataDir).c_str()) != 0) {
    auto st = Errno("rename", tmp_link);
    ::unlink(tmp_link.c_str());
    return fail(st);
  }
  if (changed) *changed = true;
  // 4. The names users see, through ..data.
  for (const auto& name : wanted) {
    std::string link = dir + "/" + name;
    std::string want = std::string(kDataDir) + "/" + name;
    char t[4096];
    ssize_t m = ::readlink(link.c_str(), t, sizeof t - 1);
    if (m > 0 && std::string(t, static_cast<size_t>(m)) == want) continue;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(link, ec))) ::unlink(link.c_str());
    if (::symlink(want.c_str(), link.c_str()) != 0) return Errno("symlink", link);
  }
  // 5. Names no longer in the payload go (only our symlinks: nothing else in the folder is touched), then the old
  // folder.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("..", 0) == 0 || wanted.count(name)) continue;
    if (!fs::is_symlink(e.symlink_status(ec))) continue;
    char t[4096];
    ssize_t m = ::readlink(e.path().c_str(), t, sizeof t - 1);
    if (m > 0 && std::string(t, static_cast<size_t>(m)).rfind(std::string(kDataDir) + "/", 0) == 0) ::unlink(e.path().c_str());
  }
  if (!old_ts.empty() && old_ts != ts) fs::remove_all(dir + "/" + old_ts, ec);
  return absl::OkStatus();
}

}  // namespace kubelet::volumemanager

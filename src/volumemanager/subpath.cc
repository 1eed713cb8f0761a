#include "kubelet/volumemanager/subpath.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include "kubelet/util/mount.h"

namespace kubelet::volumemanager {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::vector<std::string> Segments(const std::string& rel) {
  std::vector<std::string> out;
  std::stringstream ss(rel);
  for (std::string seg; std::getline(ss, seg, '/');)
    if (!seg.empty() && seg != ".") out.push_back(seg);
  return out;
}

// Closes an fd on every path out.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void Reset(int f) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
  int Release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

absl::StatusOr<std::string> RealPath(const std::string& p) {
  char buf[PATH_MAX];
  if (!::realpath(p.c_str(), buf)) return absl::NotFoundError(Errno("error resolving symlinks in \"" + p + "\""));
  return std::string(buf);
}

// Opens `path` (under `base`) one element at a time without following any symlink; an fd with O_PATH.
absl::StatusOr<int> SafeOpen(const std::string& path, const std::string& base) {
  if (!PathWithinBase(path, base)) return absl::PermissionDeniedError("path " + path + " is outside of allowed base " + base);
  Fd parent(::open(base.c_str(), O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
  if (parent.fd < 0) return absl::InternalError(Errno("cannot open " + base));
  std::string current = base;
  for (const auto& seg : Segments(path.substr(base.size()))) {
    if (seg == "..") return absl::PermissionDeniedError("path " + path + " contains '..'");
    current += "/" + seg;
    int child = ::openat(parent.fd, seg.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) return absl::InternalError(Errno("cannot open " + current));
    parent.Reset(child);
    struct stat st {};
    if (::fstat(parent.fd, &st) != 0) return absl::InternalError(Errno("cannot stat " + current));
    if (S_ISLNK(st.st_mode)) return absl::PermissionDeniedError("symlink " + current + " is not allowed");
  }
  return parent.Release();
}

}  // namespace

bool PathWithinBase(const std::string& full, const std::string& base) {
  if (base == "/") return !full.empty() && full[0] == '/';
  return full == base || (full.size() > base.size() && full.compare(0, base.size(), base) == 0 && full[base.size()] == '/');
}

std::string ExpandSubPathExpr(const std::string& in, const std::map<std::string, std::string>& env,
                              std::set<std::string>* missing) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '$') {
      out += '$';
      ++i;
    } else if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '(' && in.find(')', i + 2) != std::string::npos) {
      size_t close = in.find(')', i + 2);
      std::string key = in.substr(i + 2, close - i - 2);
      auto it = env.find(key);
      if (it == env.end() || it->second.empty()) {
        missing->insert(key);
      } else {
        out += it->second;
      }
      i = close;
    } else {
      out += in[i];
    }
  }
  return out;
}

absl::Status ValidateSubPath(const std::string& sub_path) {
  if (!sub_path.empty() && sub_path[0] == '/')
    return absl::InvalidArgumentError("error SubPath `" + sub_path + "` must not be an absolute path");
  for (const auto& seg : Segments(sub_path))
    if (seg == "..") return absl::InvalidArgumentError("unable to provision SubPath `" + sub_path + "`: must not contain '..'");
  return absl::OkStatus();
}

absl::Status SafeMakeDir(const std::string& sub_dir, const std::string& base_in, mode_t perm) {
  if (auto st = ValidateSubPath(sub_dir); !st.ok()) return st;
  auto base = RealPath(base_in);
  if (!base.ok()) return base.status();
  // The longest part of the path that exists, its symlinks resolved, must stay inside base.
  std::vector<std::string> segs = Segments(sub_dir);
  size_t existing = 0;
  std::string probe = *base;
  for (; existing < segs.size(); ++existing) {
    struct stat st {};
    std::string next = probe + "/" + segs[existing];
    if (::lstat(next.c_str(), &st) != 0) break;
    probe = next;
  }
  auto resolved = RealPath(probe);
  if (!resolved.ok()) return resolved.status();
  if (!PathWithinBase(*resolved, *base))
    return absl::PermissionDeniedError("path " + *resolved + " is outside of allowed base " + *base);
  auto fd = SafeOpen(*resolved, *base);
  if (!fd.ok()) return fd.status();
  Fd parent(*fd);
  std::string current = *resolved;
  for (size_t i = existing; i < segs.size(); ++i) {
    current += "/" + segs[i];
    if (::mkdirat(parent.fd, segs[i].c_str(), perm) != 0 && errno != EEXIST)
      return absl::InternalError(Errno("cannot create directory " + current));
    int child = ::openat(parent.fd, segs[i].c_str(), O_NOFOLLOW | O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (child < 0) return absl::InternalError(Errno("cannot open " + current));
    parent.Reset(child);
    if (::fchmod(parent.fd, perm) != 0) return absl::InternalError(Errno("chmod " + current));  // the umask took bits
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> PrepareSafeSubpath(const Subpath& sp) {
  auto volume_path = RealPath(sp.volume_path);
  if (!volume_path.ok()) return volume_path.status();
  auto path = RealPath(sp.path);
  if (!path.ok()) return path.status();
  if (!PathWithinBase(*path, *volume_path))
    return absl::PermissionDeniedError("subpath \"" + *path + "\" not within volume path \"" + *volume_path + "\"");
  auto fd = SafeOpen(*path, *volume_path);
  if (!fd.ok()) return fd.status();
  Fd source(*fd);
  struct stat st {};
  if (::fstat(source.fd, &st) != 0) return absl::InternalError(Errno("cannot stat " + *path));

  std::string dir = sp.pod_dir + "/volume-subpaths/" + sp.volume_name + "/" + sp.container_name;
  std::string target = dir + "/" + std::to_string(sp.volume_mount_index);
  if (mount::IsMountPoint(target)) return target;  // the container's earlier instance: reuse the mount
  for (const std::string& d : {sp.pod_dir + "/volume-subpaths", sp.pod_dir + "/volume-subpaths/" + sp.volume_name, dir})
    if (::mkdir(d.c_str(), 0750) != 0 && errno != EEXIST) return absl::InternalError(Errno("cannot create " + d));
  struct stat tst {};
  bool exists = ::lstat(target.c_str(), &tst) == 0;
  if (exists && S_ISDIR(tst.st_mode) != S_ISDIR(st.st_mode)) {
    // A stale target of the other kind (the subPath changed from file to directory): replace it.
    if ((S_ISDIR(tst.st_mode) ? ::rmdir(target.c_str()) : ::unlink(target.c_str())) != 0)
      return absl::InternalError(Errno("cannot remove stale " + target));
    exists = false;
  }
  if (!exists) {
    if (S_ISDIR(st.st_mode)) {
      if (::mkdir(target.c_str(), 0750) != 0) return absl::InternalError(Errno("cannot create " + target));
    } else {
      int f = ::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
      if (f < 0) return absl::InternalError(Errno("cannot create " + target));
      ::close(f);
    }
  }
  std::string source_path = "/proc/self/fd/" + std::to_string(source.fd);
  if (::mount(source_path.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    std::string err = Errno("error mounting " + *path);
    S_ISDIR(st.st_mode) ? ::rmdir(target.c_str()) : ::unlink(target.c_str());
    return absl::InternalError(err);
  }
  return target;
}

}  // namespace kubelet::volumemanager

#include "kubelet/volumemanager/volume_manager.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "kubelet/api/quantity.h"
#include "kubelet/util/logging.h"

namespace kubelet::volumemanager {
namespace {

namespace fs = std::filesystem;

bool IsMountPoint(const std::string& path) {
  std::ifstream mounts("/proc/mounts");
  std::string dev, mnt, rest;
  while (mounts >> dev >> mnt) {
    std::getline(mounts, rest);
    if (mnt == path) return true;
  }
  return false;
}

absl::Status CheckHostPath(const api::HostPathVolumeSource& hp) {
  struct stat st {};
  bool exists = ::stat(hp.path.c_str(), &st) == 0;
  const std::string& t = hp.type;
  auto wrong = [&](const char* what) {
    return absl::FailedPreconditionError("hostPath type check failed: " + hp.path + " is not a " + what);
  };
  if (t.empty()) return absl::OkStatus();
  if (t == "DirectoryOrCreate") {
    if (!exists) {
      std::error_code ec;
      fs::create_directories(hp.path, ec);
      if (ec) return absl::InternalError("hostPath: cannot create directory " + hp.path + ": " + ec.message());
      ::chmod(hp.path.c_str(), 0755);
      return absl::OkStatus();
    }
    return S_ISDIR(st.st_mode) ? absl::OkStatus() : wrong("directory");
  }
  if (t == "FileOrCreate") {
    if (!exists) {
      int fd = ::open(hp.path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return absl::InternalError("hostPath: cannot create file " + hp.path + ": " + std::strerror(errno));
      ::close(fd);
      return absl::OkStatus();
    }
    return S_ISREG(st.st_mode) ? absl::OkStatus() : wrong("file");
  }
  if (!exists) return absl::NotFoundError("hostPath type check failed: " + hp.path + " does not exist");
  if (t == "Directory") return S_ISDIR(st.st_mode) ? absl::OkStatus() : wrong("directory");
  if (t == "File") return S_ISREG(st.st_mode) ? absl::OkStatus() : wrong("file");
  if (t == "Socket") return S_ISSOCK(st.st_mode) ? absl::OkStatus() : wrong("socket");
  if (t == "CharDevice") return S_ISCHR(st.st_mode) ? absl::OkStatus() : wrong("character device");
  if (t == "BlockDevice") return S_ISBLK(st.st_mode) ? absl::OkStatus() : wrong("block device");
  return absl::InvalidArgumentError("hostPath: unknown type " + t);
}

// fsGroup ownership, as upstream's SetVolumeOwnership: group fsGroup, group read/write (and execute where the owner
// has it), setgid on directories so new files inherit the group. Done when the volume's root does not show it yet
// (its setup), not on every container start.
absl::Status ApplyFSGroup(const api::Pod& pod, const std::string& dir) {
  if (!pod.spec.security_context.fs_group) return absl::OkStatus();
  gid_t gid = static_cast<gid_t>(*pod.spec.security_context.fs_group);
  struct stat root {};
  if (::stat(dir.c_str(), &root) != 0) return absl::InternalError("stat " + dir + ": " + std::strerror(errno));
  if (root.st_gid == gid && (root.st_mode & S_ISGID) && (root.st_mode & S_IRWXG) == S_IRWXG) return absl::OkStatus();
  auto fix = [&](const std::string& path) -> absl::Status {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return absl::InternalError("stat " + path + ": " + std::strerror(errno));
    if (::lchown(path.c_str(), static_cast<uid_t>(-1), gid) != 0)
      return absl::InternalError("chown " + path + ": " + std::strerror(errno));
    if (S_ISLNK(st.st_mode)) return absl::OkStatus();
    mode_t mode = st.st_mode | S_IRGRP | S_IWGRP;
    if (st.st_mode & S_IXUSR) mode |= S_IXGRP;
    if (S_ISDIR(st.st_mode)) mode |= S_IXGRP | S_ISGID;
    if (::chmod(path.c_str(), mode & 07777) != 0) return absl::InternalError("chmod " + path + ": " + std::strerror(errno));
    return absl::OkStatus();
  };
  if (auto st = fix(dir); !st.ok()) return st;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end; !ec && it != end; it.increment(ec))
    if (auto st = fix(it->path().string()); !st.ok()) return st;
  return absl::OkStatus();
}

class VolumeManagerImpl : public VolumeManager {
 public:
  explicit VolumeManagerImpl(std::string pods_dir) : pods_dir_(std::move(pods_dir)), log_(log::Get("volumemanager")) {}

  absl::StatusOr<std::map<std::string, std::string>> MountVolumesForPod(const api::Pod& pod) override {
    std::map<std::string, std::string> out;
    for (const auto& v : pod.spec.volumes) {
      if (v.host_path) {
        if (auto st = CheckHostPath(*v.host_path); !st.ok())
          return absl::Status(st.code(), "volume \"" + v.name + "\": " + std::string(st.message()));
        out[v.name] = v.host_path->path;
      } else if (v.empty_dir) {
        std::string dir = pods_dir_ + "/" + pod.metadata.uid + "/volumes/kubernetes.io~empty-dir/" + v.name;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) return absl::InternalError("volume \"" + v.name + "\": cannot create " + dir + ": " + ec.message());
        ::chmod(dir.c_str(), 0777);
        if (v.empty_dir->medium == "Memory" && !IsMountPoint(dir)) {
          std::string opts = "mode=0777";
          // tmpfs takes bytes (or k/m/g suffixes), not Kubernetes quantities such as 1Gi.
          if (!v.empty_dir->size_limit.empty()) {
            auto q = api::ParseQuantity(v.empty_dir->size_limit);
            if (!q.ok() || q->Value() <= 0)
              return absl::InvalidArgumentError("volume \"" + v.name + "\": invalid sizeLimit \"" + v.empty_dir->size_limit + "\"");
            opts += ",size=" + std::to_string(q->Value());
          }
          if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
            return absl::InternalError("volume \"" + v.name + "\": mount tmpfs on " + dir + ": " + std::strerror(errno));
        }
        if (auto st = ApplyFSGroup(pod, dir); !st.ok())
          return absl::Status(st.code(), "volume \"" + v.name + "\": " + std::string(st.message()));
        out[v.name] = dir;
      } else {
        std::string kind;
        for (auto it = v.raw.begin(); it != v.raw.end(); ++it)
          if (it.key() != "name") kind = it.key();
        return absl::UnimplementedError("volume \"" + v.name + "\": volume type \"" + kind +
                                        "\" is not supported by this kubelet yet");
      }
    }
    return out;
  }

  absl::Status UnmountVolumesForPod(const std::string& uid) override {
    if (uid.empty() || uid.find('/') != std::string::npos) return absl::InvalidArgumentError("bad pod uid");
    std::string vols = pods_dir_ + "/" + uid + "/volumes/kubernetes.io~empty-dir";
    std::error_code ec;
    if (fs::exists(vols, ec)) {
      for (const auto& e : fs::directory_iterator(vols, ec)) {
        std::string p = e.path().string();
        if (IsMountPoint(p) && ::umount2(p.c_str(), MNT_DETACH) != 0)
          return absl::InternalError("unmount " + p + ": " + std::strerror(errno));
      }
    }
    fs::remove_all(pods_dir_ + "/" + uid, ec);
    if (ec) return absl::InternalError("remove pod dir for " + uid + ": " + ec.message());
    return absl::OkStatus();
  }

 private:
  std::string pods_dir_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

std::unique_ptr<VolumeManager> NewVolumeManager(const std::string& pods_dir) {
  return std::make_unique<VolumeManagerImpl>(pods_dir);
}

}  // namespace kubelet::volumemanager

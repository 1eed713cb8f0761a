#pragma once
// The node's mount table, as upstream's mount-utils reads it: /proc/self/mountinfo parsed once into entries (octal
// escapes such as \040 in paths undone), and the questions the kubelet asks of it (is this a mount point, what is
// mounted under a pod's folder, is a path on a shared mount) answered from one parser.
#include <string>
#include <string_view>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace kubelet::mount {

inline constexpr const char* kMountInfoPath = "/proc/self/mountinfo";

struct MountInfo {
  int id = 0;
  int parent_id = 0;
  std::string root;                          // the root of the mount within its filesystem
  std::string mount_point;                   // where it is mounted
  std::vector<std::string> options;          // per-mount options (rw, nosuid, ...)
  std::vector<std::string> optional_fields;  // shared:N, master:N, propagate_from:N, unbindable
  std::string fs_type;
  std::string source;
  std::vector<std::string> super_options;
};

/** Entries of a mountinfo text in its order; malformed lines are skipped. */
std::vector<MountInfo> ParseMountInfo(std::string_view text);

/** The entries of a mountinfo file (normally this process's). */
absl::StatusOr<std::vector<MountInfo>> ListMountInfo(const std::string& file = kMountInfoPath);

/** Whether something is mounted exactly at `path` (a cleaned absolute path). */
bool IsMountPoint(const std::string& path, const std::string& file = kMountInfoPath);

/** Mount points at or under `prefix`, deepest first, so they can be unmounted in that order. */
std::vector<std::string> MountsUnder(const std::string& prefix, const std::string& file = kMountInfoPath);

/** The mount `path` resides on: the last entry whose mount point is `path` or one of its parents. */
absl::StatusOr<MountInfo> FindMountInfo(const std::string& path, const std::string& file = kMountInfoPath);

/**
 * Makes `path` a recursively shared mount, as upstream's MakeRShared does for the kubelet's root directory so
 * that mounts with Bidirectional and HostToContainer propagation work: nothing is done when the mount it resides on
 * is shared already; otherwise it is bind-mounted onto itself (recursively, so mounts beneath it stay visible) and
 * marked rshared.
 */
absl::Status MakeRShared(const std::string& path, const std::string& file = kMountInfoPath);

}  // namespace kubelet::mount

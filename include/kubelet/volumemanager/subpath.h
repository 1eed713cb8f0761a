#pragma once
// subPath mounts done safely, as upstream's mount-utils subpath package: a
// container's subPath of a volume is resolved inside the volume (symlinks
// evaluated once, then refused when the result leaves the volume), missing
// directories are created by walking the volume with openat and O_NOFOLLOW,
// and the result is bind-mounted from an fd opened inside the volume at
// <pod-dir>/volume-subpaths/<volume>/<container>/<index>, so a symlink swapped
// in after the check cannot send the mount elsewhere.
#include <sys/types.h>

#include <map>
#include <set>
#include <string>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

namespace kubelet::volumemanager {

struct Subpath {
  int volume_mount_index = 0;  // index of the mount in the container's volumeMounts
  std::string path;            // <volume path>/<subPath>
  std::string volume_name;
  std::string volume_path;
  std::string pod_dir;  // <pods-dir>/<uid>
  std::string container_name;
};

/** full == base or under it, both already cleaned (no "." or ".." elements, no trailing slash). */
bool PathWithinBase(const std::string& full, const std::string& base);

/**
 * Creates base/sub_dir and every missing directory on the way with mode `perm`, refusing to follow a symlink and
 * refusing a path that leaves base ("path ... is outside of allowed base ...").
 */
absl::Status SafeMakeDir(const std::string& sub_dir, const std::string& base, mode_t perm);

/**
 * Bind-mounts the subpath at its target and returns the target; a target already mounted (the container's earlier
 * instance) is reused. "subpath ... not within volume path ..." for one that leaves its volume.
 */
absl::StatusOr<std::string> PrepareSafeSubpath(const Subpath& sp);

/** Expands as subPathExpr does: every $(VAR) that is unset or empty becomes "" and is added to *missing. */
std::string ExpandSubPathExpr(const std::string& in, const std::map<std::string, std::string>& env,
                              std::set<std::string>* missing);

/** A subPath with no absolute start and no ".." element (ValidatePathNoBacksteps); the error names the problem. */
absl::Status ValidateSubPath(const std::string& sub_path);

}  // namespace kubelet::volumemanager

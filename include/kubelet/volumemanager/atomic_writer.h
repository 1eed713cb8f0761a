#pragma once
// Writes the files of a configMap, secret, downwardAPI or projected volume so
// that a container never sees a half-written update, as upstream's
// AtomicWriter: the payload goes into a new timestamped folder
// (..2026_12_01_18_30_00.123456789), a "..data" symlink is pointed at it by
// one rename, and each top-level name the user sees is a symlink through
// "..data" (key -> ..data/key). The old folder is removed afterwards; names
// no longer in the payload are removed. A payload equal to what is there
// changes nothing.
#include <functional>
#include <map>
#include <string>

#include <absl/status/status.h>

namespace kubelet::volumemanager {

struct FileProjection {
  std::string data;
  int mode = 0644;
};

/** Payload paths: relative, no ".." element, not starting with "..", no empty element. Error names the path. */
absl::Status ValidatePayloadPath(const std::string& path);

/**
 * Writes `payload` (path -> file) into `dir`, which must exist. `log_context` names the volume in errors.
 * Returns OK without touching anything when the payload is what `dir` already holds. `set_perms` (fsGroup
 * ownership) runs on the new timestamped folder before it becomes visible.
 */
absl::Status WriteAtomic(const std::string& dir, const std::map<std::string, FileProjection>& payload,
                         bool* changed = nullptr,
                         const std::function<absl::Status(const std::string& new_dir)>& set_perms = nullptr);

}  // namespace kubelet::volumemanager

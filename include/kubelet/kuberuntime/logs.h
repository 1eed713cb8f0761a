#pragma once
// Container logs in the CRI format the runtime writes
// ("<RFC3339Nano> <stdout|stderr> <P|F> <content>", one record per line, P
// for a partial line continued by the next record): reading them back for
// /containerLogs (tail, since, limit, timestamps, follow across rotation),
// the last lines for FallbackToLogsOnError termination messages, and the
// /var/log/containers symlink names.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <absl/status/status.h>

#include "kubelet/util/clock.h"

namespace kubelet::kuberuntime {

struct CRILogRecord {
  TimePoint time;
  std::string stream;  // stdout, stderr
  bool partial = false;
  std::string content;  // without the trailing newline
};

/** One line of a CRI log file; false when it is not in the format. */
bool ParseCRILogLine(const std::string& line, CRILogRecord* out);

struct LogOptions {
  std::optional<int64_t> tail_lines;
  std::optional<int64_t> limit_bytes;
  std::optional<TimePoint> since_time;
  bool timestamps = false;
  bool follow = false;
  Duration poll = std::chrono::milliseconds(200);
};

/**
 * Writes the log's content through `write` (false from it stops). With
 * follow, keeps reading as the runtime appends, reopens the file when it is
 * rotated (renamed away and recreated), and returns once `running` says the
 * container stopped and the end was reached, or `write` fails.
 */
absl::Status ReadLogs(const std::string& path, const LogOptions& o, const std::function<bool(const std::string&)>& write,
                      const std::function<bool()>& running = nullptr);

/** The last `lines` lines (at most `max_bytes`) of a CRI log as plain text: upstream's FallbackToLogsOnError message. */
std::string TailLogText(const std::string& path, int lines = 80, size_t max_bytes = 2048);

/** <pod>_<namespace>_<container>-<containerID>.log, the name upstream links in /var/log/containers. */
std::string ContainerLogLinkName(const std::string& pod, const std::string& ns, const std::string& container,
                                 const std::string& container_id);

}  // namespace kubelet::kuberuntime

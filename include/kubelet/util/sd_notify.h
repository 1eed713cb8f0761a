#pragma once
// systemd's service notification protocol (sd_notify(3)) without libsystemd: a datagram of "KEY=VALUE" lines sent to
// the unix socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). With Type=notify the unit
// is started once READY=1 arrives; with WatchdogSec=, $WATCHDOG_USEC says how often WATCHDOG=1 must come (we send it
// at half that, as sd_watchdog_enabled(3) advises), and $WATCHDOG_PID, when set, names the process it is meant for.
// Without $NOTIFY_SOCKET every call does nothing.
#include <chrono>
#include <optional>
#include <string>

#include <absl/status/status.h>

namespace kubelet::util {

class SystemdNotifier {
 public:
  /** From the environment: NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID (for this process or none). */
  static SystemdNotifier FromEnvironment();
  SystemdNotifier() = default;
  SystemdNotifier(std::string socket, std::optional<std::chrono::microseconds> watchdog)
      : socket_(std::move(socket)), watchdog_(watchdog) {}

  bool Enabled() const { return !socket_.empty(); }
  /** How often to send WATCHDOG=1 (half of WATCHDOG_USEC); none when the unit has no watchdog for us. */
  std::optional<std::chrono::milliseconds> WatchdogInterval() const;
  /** Sends one notification ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."); never blocks (a full socket
   *  buffer is an error, not a wait). Ok and nothing sent when notifications are off. */
  absl::Status Notify(const std::string& state) const;

 private:
  std::string socket_;
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace kubelet::util

#pragma once
// The kubelet's stop: after the first SIGTERM/SIGINT the managers stop in order, which is quick; whatever still holds
// it up (a call waiting out its deadline, a plugin that does not answer) does not keep the process: a second signal
// of the set, or the deadline, ends it at once. Pods keep running either way.
#include <signal.h>

#include <chrono>
#include <functional>
#include <string>

namespace kubelet::util {

/** The kubelet's stop deadline: nothing in its stop needs longer (pods keep running), and a kubelet whose API server
 *  is down must still end within seconds (the DaemonE2E test; under ASan some manager's stop waits on the dead
 *  server for longer). Well inside the 30 s the issue allows and systemd's TimeoutStopSec. */
inline constexpr std::chrono::seconds kForcedExitDeadline{5};

/** Called with "signal" or "deadline"; the default flushes the logs and _Exit(0)s. */
using ForcedExitFn = std::function<void(const std::string& why)>;

/** Starts a detached thread that waits on `set` (blocked in every thread, as the kubelet blocks it) until a signal
 *  or `deadline`, then calls `exit_fn`. */
void ArmForcedExit(const sigset_t& set, std::chrono::milliseconds deadline, ForcedExitFn exit_fn = nullptr);

}  // namespace kubelet::util

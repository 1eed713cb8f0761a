#include "kubelet/util/forced_exit.h"

#include <cerrno>
#include <cstdlib>
#include <thread>

#include "kubelet/util/logging.h"

namespace kubelet::util {

void ArmForcedExit(const sigset_t& set, std::chrono::milliseconds deadline, ForcedExitFn exit_fn) {
  if (!exit_fn)
    exit_fn = [](const std::string& why) {
      auto logger = log::Get("kubelet");
      if (why == "signal") {
        logger->warn("Received a second signal, exiting now (pods keep running)");
      } else {
        logger->warn("Shutdown did not finish in time, exiting now (pods keep running)");
      }
      spdlog::shutdown();
      std::_Exit(0);
    };
  std::thread([set, deadline, exit_fn = std::move(exit_fn)] {
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      timespec ts{static_cast<time_t>(left.count() / 1000), static_cast<long>((left.count() % 1000) * 1000000)};
      if (sigtimedwait(&set, nullptr, &ts) > 0) {
        exit_fn("signal");
        return;
      }
      // EAGAIN: the deadline; EINTR: another signal, wait on.
    }
    exit_fn("deadline");
  }).detach();
}

}  // namespace kubelet::util

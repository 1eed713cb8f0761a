#include "kubelet/util/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace kubelet::util {

namespace {

std::optional<long long> ParsePositive(const char* s) {
  if (!s || !*s) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v <= 0) return std::nullopt;
  return v;
}

}  // namespace

SystemdNotifier SystemdNotifier::FromEnvironment() {
  const char* sock = std::getenv("NOTIFY_SOCKET");
  std::optional<std::chrono::microseconds> watchdog;
  if (auto usec = ParsePositive(std::getenv("WATCHDOG_USEC"))) {
    const char* pid_env = std::getenv("WATCHDOG_PID");
    auto pid = ParsePositive(pid_env);
    // WATCHDOG_PID names the process the watchdog is for; a value that is not ours (or not a number) means not us.
    if (!pid_env || (pid && *pid == static_cast<long long>(getpid()))) watchdog = std::chrono::microseconds(*usec);
  }
  return SystemdNotifier(sock ? sock : "", watchdog);
}

std::optional<std::chrono::milliseconds> SystemdNotifier::WatchdogInterval() const {
  if (!Enabled() || !watchdog_) return std::nullopt;
  auto half = std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_ / 2);
  return half.count() > 0 ? half : std::chrono::milliseconds(1);
}

absl::Status SystemdNotifier::Notify(const std::string& state) const {
  if (!Enabled()) return absl::OkStatus();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.size() < 2 || (socket_[0] != '/' && socket_[0] != '@'))
    return absl::InvalidArgumentError("NOTIFY_SOCKET \"" + socket_ + "\" is neither a path nor an abstract socket name");
  if (socket_.size() >= sizeof(addr.sun_path)) return absl::InvalidArgumentError("NOTIFY_SOCKET \"" + socket_ + "\" is too long");
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(std::string("notify socket: ") + std::strerror(errno));
  ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&addr), len);
  int err = errno;
  ::close(fd);
  if (n < 0) return absl::UnavailableError("notify " + socket_ + ": " + std::strerror(err));
  return absl::OkStatus();
}

}  // namespace kubelet::util

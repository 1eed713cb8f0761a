// The notification protocol as systemd reads it: a datagram on the unix socket named by NOTIFY_SOCKET (a path or an
// abstract name), received here on a socket the test binds, as systemd's manager binds its own.
#include "kubelet/util/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace kubelet::util {
namespace {

class Listener {
 public:
  explicit Listener(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    if (name[0] == '@') a.sun_path[0] = '\0';
    ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0;
    timeval tv{2, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Listener() { ::close(fd_); }
  bool ok() const { return ok_; }
  std::string Receive() {
    char buf[512];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

struct EnvGuard {
  ~EnvGuard() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
};

TEST(SystemdNotifier, SendsToAPathSocket) {
  auto path = (std::filesystem::temp_directory_path() / ("sdnotify-" + std::to_string(getpid()))).string();
  std::filesystem::remove(path);
  Listener l(path);
  ASSERT_TRUE(l.ok());
  SystemdNotifier n(path, std::nullopt);
  ASSERT_TRUE(n.Notify("READY=1").ok());
  EXPECT_EQ(l.Receive(), "READY=1");
  ASSERT_TRUE(n.Notify("STOPPING=1\nSTATUS=Shutting down").ok());
  EXPECT_EQ(l.Receive(), "STOPPING=1\nSTATUS=Shutting down");
  std::filesystem::remove(path);
}

TEST(SystemdNotifier, SendsToAnAbstractSocket) {
  std::string name = "@kubelet-cpp-sdnotify-" + std::to_string(getpid());
  Listener l(name);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(SystemdNotifier(name, std::nullopt).Notify("WATCHDOG=1").ok());
  EXPECT_EQ(l.Receive(), "WATCHDOG=1");
}

TEST(SystemdNotifier, ErrorsNameTheSocketAndNeverBlock) {
  auto gone = (std::filesystem::temp_directory_path() / ("sdnotify-gone-" + std::to_string(getpid()))).string();
  auto st = SystemdNotifier(gone, std::nullopt).Notify("READY=1");
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_NE(st.message().find(gone), std::string::npos);
  EXPECT_TRUE(absl::IsInvalidArgument(SystemdNotifier("relative/sock", std::nullopt).Notify("READY=1")));
  EXPECT_TRUE(absl::IsInvalidArgument(SystemdNotifier("/" + std::string(200, 'x'), std::nullopt).Notify("READY=1")));
}

TEST(SystemdNotifier, FromTheEnvironmentAsSystemdSetsIt) {
  EnvGuard g;
  unsetenv("NOTIFY_SOCKET");
  auto off = SystemdNotifier::FromEnvironment();
  EXPECT_FALSE(off.Enabled());
  EXPECT_TRUE(off.Notify("READY=1").ok());  // nothing to tell
  EXPECT_FALSE(off.WatchdogInterval());

  setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  EXPECT_TRUE(SystemdNotifier::FromEnvironment().Enabled());
  EXPECT_FALSE(SystemdNotifier::FromEnvironment().WatchdogInterval());  // no WatchdogSec
  setenv("WATCHDOG_USEC", "20000000", 1);
  EXPECT_EQ(SystemdNotifier::FromEnvironment().WatchdogInterval(), std::chrono::milliseconds(10000));
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(SystemdNotifier::FromEnvironment().WatchdogInterval(), std::chrono::milliseconds(10000));
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_FALSE(SystemdNotifier::FromEnvironment().WatchdogInterval());  // meant for another process
  unsetenv("WATCHDOG_PID");
  setenv("WATCHDOG_USEC", "soon", 1);
  EXPECT_FALSE(SystemdNotifier::FromEnvironment().WatchdogInterval());
}

}  // namespace
}  // namespace kubelet::util

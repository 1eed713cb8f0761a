// The daemon's own machinery: the forced exit after a stop signal, and log records that stay one line each.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>

#include "kubelet/util/forced_exit.h"
#include "kubelet/util/logging.h"

namespace kubelet::util {
namespace {

// Runs `body` in a forked child (a single-threaded process: it starts no thread) and returns its exit code, or -1.
template <typename F>
int InChild(F body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    body();
    _exit(99);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(ForcedExitTest, ASecondSignalEndsTheProcessAtOnce) {
  // A child of its own, re-executed (threadsafe style): the signal reaches it alone, and it starts a thread.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT({
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ArmForcedExit(set, std::chrono::seconds(60), [](const std::string& why) { _exit(why == "signal" ? 3 : 4); });
    ::kill(::getpid(), SIGTERM);
    ::sleep(30);  // a shutdown that hangs
    _exit(5);
  }, ::testing::ExitedWithCode(3), "");
}

TEST(ForcedExitTest, TheDeadlineEndsAShutdownThatHangs) {
  // A child of its own, re-executed (threadsafe style): the signal reaches it alone, and it starts a thread.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT({
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    ArmForcedExit(set, std::chrono::milliseconds(200), [](const std::string& why) { _exit(why == "signal" ? 3 : 4); });
    ::sleep(30);
    _exit(5);
  }, ::testing::ExitedWithCode(4), "");
}

TEST(ForcedExitTest, OtherSignalsDoNotCount) {
  // A child of its own, re-executed (threadsafe style): the signal reaches it alone, and it starts a thread.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT({
    sigset_t set;
    sigset_t other;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigemptyset(&other);
    sigaddset(&other, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    pthread_sigmask(SIG_BLOCK, &other, nullptr);
    ArmForcedExit(set, std::chrono::milliseconds(300), [](const std::string& why) { _exit(why == "signal" ? 3 : 4); });
    ::kill(::getpid(), SIGUSR1);  // pending, not waited for
    ::sleep(30);
    _exit(5);
  }, ::testing::ExitedWithCode(4), "");
}

TEST(LoggingTest, ARecordIsOneLineWhateverItsMessageHolds) {
  char path[] = "/tmp/kcpp-log-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  int rc = InChild([&] {
    ::dup2(fd, 2);
    log::Init(0);
    auto logger = log::Get("logtest");
    logger->error("Failed to pull image err=\"{}\"", "first line\nsecond line\r\nthird");
    logger->info("plain");
    logger->flush();
    _exit(0);
  });
  ::close(fd);
  ASSERT_EQ(rc, 0);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  ::unlink(path);
  // Two records, two lines, klog's header on each, the inner line breaks escaped.
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_EQ(text[0], 'E');
  EXPECT_NE(text.find(" logtest] Failed to pull image err=\"first line\\nsecond line\\r\\nthird\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nI"), std::string::npos) << text;
  EXPECT_NE(text.find(" logtest] plain\n"), std::string::npos) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << "no colour codes";
}

}  // namespace
}  // namespace kubelet::util

// Reading CRI-format logs: parsing, tail, limit, since, timestamps, partial
// lines, follow across a rotation, and the FallbackToLogsOnError tail.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "kubelet/kuberuntime/logs.h"

namespace kubelet::kuberuntime {
namespace {

class LogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("logs-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "0.log").string();
    std::ofstream(path_) << "2026-01-02T03:04:05.000000001Z stdout F one\n"
                         << "2026-01-02T03:04:06.5Z stderr P tw\n"
                         << "2026-01-02T03:04:06.6Z stderr F o\n"
                         << "not a log line\n"
                         << "2026-01-02T03:04:07Z stdout F three\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Read(LogOptions o) {
    std::string out;
    EXPECT_TRUE(ReadLogs(path_, o, [&](const std::string& s) {
                  out += s;
                  return true;
                }).ok());
    return out;
  }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(LogsTest, ParsesRecords) {
  CRILogRecord r;
  ASSERT_TRUE(ParseCRILogLine("2026-01-02T03:04:05.123Z stderr P partial text", &r));
  EXPECT_EQ(r.stream, "stderr");
  EXPECT_TRUE(r.partial);
  EXPECT_EQ(r.content, "partial text");
  ASSERT_TRUE(ParseCRILogLine("2026-01-02T03:04:05Z stdout F ", &r));
  EXPECT_EQ(r.content, "");
  EXPECT_FALSE(ParseCRILogLine("garbage", &r));
  EXPECT_FALSE(ParseCRILogLine("2026-01-02T03:04:05Z stdin F x", &r));
}

TEST_F(LogsTest, WholeTailLimitSinceAndTimestamps) {
  EXPECT_EQ(Read({}), "one\ntwo\nthree\n");
  LogOptions tail;
  tail.tail_lines = 2;
  EXPECT_EQ(Read(tail), "two\nthree\n");  // a partial record joins its line
  tail.tail_lines = 0;
  EXPECT_EQ(Read(tail), "");
  tail.tail_lines = 10;
  EXPECT_EQ(Read(tail), "one\ntwo\nthree\n");
  LogOptions limit;
  limit.limit_bytes = 5;
  EXPECT_EQ(Read(limit), "one\nt");
  LogOptions since;
  TimePoint t;
  ASSERT_TRUE(ParseRFC3339("2026-01-02T03:04:06.55Z", &t));
  since.since_time = t;
  EXPECT_EQ(Read(since), "o\nthree\n");
  LogOptions ts;
  ts.timestamps = true;
  ts.tail_lines = 1;
  EXPECT_EQ(Read(ts), "2026-01-02T03:04:07Z three\n");
  ts.tail_lines.reset();
  EXPECT_EQ(Read(ts).substr(0, 37), "2026-01-02T03:04:05.000000001Z one\n20");
}

TEST_F(LogsTest, FollowReadsAppendsAndRotations) {
  std::atomic<bool> running{true};
  std::string out;
  std::mutex mu;
  LogOptions o;
  o.follow = true;
  o.poll = std::chrono::milliseconds(20);
  std::thread reader([&] {
    (void)ReadLogs(path_, o, [&](const std::string& s) {
      std::lock_guard<std::mutex> l(mu);
      out += s;
      return true;
    }, [&] { return running.load(); });
  });
  auto has = [&](const std::string& want) {
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> l(mu);
        if (out.find(want) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  ASSERT_TRUE(has("three\n"));
  std::ofstream(path_, std::ios::app) << "2026-01-02T03:04:08Z stdout F four\n";
  ASSERT_TRUE(has("four\n"));
  // Rotation: the runtime's file is renamed away and a new one appears at the path.
  std::filesystem::rename(path_, path_ + ".20260102-030409");
  std::ofstream(path_) << "2026-01-02T03:04:09Z stdout F five\n";
  ASSERT_TRUE(has("five\n"));
  running = false;
  reader.join();
  EXPECT_EQ(out, "one\ntwo\nthree\nfour\nfive\n");
}

TEST_F(LogsTest, TailTextForTerminationMessages) {
  EXPECT_EQ(TailLogText(path_, 2), "two\nthree\n");
  EXPECT_EQ(TailLogText(path_, 80, 4), "ree\n");
  EXPECT_EQ(TailLogText((dir_ / "missing.log").string()), "");
  EXPECT_EQ(ContainerLogLinkName("web", "default", "app", "abc"), "web_default_app-abc.log");
}

}  // namespace
}  // namespace kubelet::kuberuntime

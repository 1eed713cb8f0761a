// /logs/ as upstream's http.FileServer over /var/log serves it.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kubelet/server/node_logs.h"

namespace kubelet::server {
namespace {

namespace fs = std::filesystem;

std::string Body(const Response& r) {
  if (!r.stream) return r.body;
  std::string out;
  r.stream([&out](const std::string& c) {
    out += c;
    return true;
  });
  return out;
}

class NodeLogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("node-logs-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "pods" / "ns_pod_uid");
    std::ofstream(root_ / "syslog") << "line one\nline two\n";
    std::ofstream(root_ / "pods" / "ns_pod_uid" / "0.log") << "container log\n";
    std::ofstream(root_ / "a<b>.log") << "x";
    std::ofstream(root_ / "wtmp", std::ios::binary) << std::string("\x01\x02\x00\x03", 4);
    ::mkfifo((root_ / "pipe").c_str(), 0644);
    fs::create_directories(root_.parent_path() / ("outside-" + std::to_string(getpid())));
    std::ofstream(root_.parent_path() / ("outside-" + std::to_string(getpid())) / "secret") << "secret";
  }
  void TearDown() override {
    fs::remove_all(root_);
    fs::remove_all(root_.parent_path() / ("outside-" + std::to_string(getpid())));
  }
  fs::path root_;
};

TEST_F(NodeLogsTest, FilesStreamWithTheirContentType) {
  auto r = ServeNodeLogs(root_.string(), "/syslog");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(Body(r), "line one\nline two\n");
  EXPECT_TRUE(r.headers.count("Last-Modified"));
  EXPECT_EQ(Body(ServeNodeLogs(root_.string(), "/pods/ns_pod_uid/0.log")), "container log\n");
  EXPECT_EQ(ServeNodeLogs(root_.string(), "/wtmp").content_type, "application/octet-stream");
}

TEST_F(NodeLogsTest, DirectoriesAreListedAsGoListsThem) {
  auto r = ServeNodeLogs(root_.string(), "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(r.body,
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n"
            "<a href=\"a%3Cb%3E.log\">a&lt;b&gt;.log</a>\n<a href=\"pipe\">pipe</a>\n<a href=\"pods/\">pods/</a>\n"
            "<a href=\"syslog\">syslog</a>\n<a href=\"wtmp\">wtmp</a>\n</pre>\n");
  // A directory needs its slash, a file must not have one: 301s as Go's FileServer sends them.
  auto d = ServeNodeLogs(root_.string(), "/pods");
  EXPECT_EQ(d.status, 301);
  EXPECT_EQ(d.headers["Location"], "pods/");
  auto f = ServeNodeLogs(root_.string(), "/syslog/");
  EXPECT_EQ(f.status, 301);
  EXPECT_EQ(f.headers["Location"], "../syslog");
  EXPECT_EQ(ServeNodeLogs(root_.string(), "/pods/index.html").headers["Location"], "./");
}

TEST_F(NodeLogsTest, PathsNeverLeaveTheRoot) {
  std::string outside = "outside-" + std::to_string(getpid());
  for (const std::string& p : std::vector<std::string>{"/../" + outside + "/secret", "/pods/../../" + outside + "/secret", "/./../../etc/passwd"}) {
    auto r = ServeNodeLogs(root_.string(), p);
    EXPECT_EQ(r.status, 404) << p;
    EXPECT_EQ(r.body, "404 page not found\n") << p;
  }
  // ".." inside the root cleans to the file it names.
  EXPECT_EQ(Body(ServeNodeLogs(root_.string(), "/pods/../syslog")), "line one\nline two\n");
  EXPECT_EQ(ServeNodeLogs(root_.string(), std::string("/sys\0log", 8)).status, 400);
  // A FIFO would block a reader forever: refused.
  EXPECT_EQ(ServeNodeLogs(root_.string(), "/pipe").status, 403);
  EXPECT_EQ(ServeNodeLogs(root_.string(), "/missing").status, 404);
  EXPECT_EQ(ServeNodeLogs((root_ / "nope").string(), "/").status, 404);
}

}  // namespace
}  // namespace kubelet::server

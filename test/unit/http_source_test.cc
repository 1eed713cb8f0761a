#include <gtest/gtest.h>

#include <condition_variable>
#include <thread>

#include "kubelet/config/pod_source.h"
#include "kubelet/server/http_server.h"

namespace kubelet::config {
namespace {

class HTTPSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions o;
    o.address = "127.0.0.1";
    srv_ = std::make_unique<server::HttpServer>(o);
    srv_->Handle("/pods", [this](const server::Request& r) {
      std::lock_guard<std::mutex> l(mu_);
      last_header_ = r.headers.count("x-token") ? r.headers.at("x-token") : "";
      return server::Response{status_, "application/json", body_, {}};
    });
    ASSERT_TRUE(srv_->Start().ok());
    url_ = "http://127.0.0.1:" + std::to_string(srv_->port()) + "/pods";
  }
  void TearDown() override {
    if (source_) source_->Stop();
    srv_->Stop();
  }
  void Serve(int status, const std::string& body) {
    std::lock_guard<std::mutex> l(mu_);
    status_ = status;
    body_ = body;
  }
  void Start() {
    source_ = NewHTTPSource(url_, {{"X-Token", {"abc"}}}, "n1", std::chrono::milliseconds(100),
                            [this](const std::string&, std::vector<api::Pod> pods) {
                              std::lock_guard<std::mutex> l(mu_);
                              snapshots_.push_back(std::move(pods));
                              cv_.notify_all();
                            });
    source_->Start();
  }
  bool WaitFor(const std::function<bool(const std::vector<api::Pod>&)>& pred) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(10), [&] { return !snapshots_.empty() && pred(snapshots_.back()); });
  }
  size_t Count() {
    std::lock_guard<std::mutex> l(mu_);
    return snapshots_.size();
  }

  std::unique_ptr<server::HttpServer> srv_;
  std::unique_ptr<PodSource> source_;
  std::string url_;
  std::mutex mu_;
  std::condition_variable cv_;
  int status_ = 200;
  std::string body_;
  std::string last_header_;
  std::vector<std::vector<api::Pod>> snapshots_;
};

const char kPodList[] = R"({"kind":"PodList","apiVersion":"v1","items":[
  {"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"x:1"}]}},
  {"metadata":{"name":"b","namespace":"kube-system"},"spec":{"containers":[{"name":"c","image":"x:1"}]}}]})";

TEST_F(HTTPSourceTest, ReadsAPodListWithHeaders) {
  Serve(200, kPodList);
  Start();
  ASSERT_TRUE(WaitFor([](const auto& pods) { return pods.size() == 2; }));
  {
    std::lock_guard<std::mutex> l(mu_);
    EXPECT_EQ(last_header_, "abc");
    const auto& pods = snapshots_.back();
    EXPECT_EQ(pods[0].metadata.name, "a-n1");
    EXPECT_EQ(pods[1].metadata.namespace_, "kube-system");
    EXPECT_EQ(pods[0].metadata.annotations.at(api::kConfigSourceAnnotation), "http");
  }
  // A single Pod (YAML) replaces the list.
  Serve(200, "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\nspec:\n  containers: [{name: c, image: 'x:1'}]\n");
  ASSERT_TRUE(WaitFor([](const auto& pods) { return pods.size() == 1 && pods[0].metadata.name == "solo-n1"; }));
}

TEST_F(HTTPSourceTest, ErrorsKeepTheLastPods) {
  Serve(200, kPodList);
  Start();
  ASSERT_TRUE(WaitFor([](const auto& pods) { return pods.size() == 2; }));
  Serve(500, "boom");
  size_t before = Count();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(Count(), before) << "a failing URL must not deliver a snapshot";
  Serve(200, R"({"kind":"PodList","items":[{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c"}]}}]})");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(Count(), before) << "an invalid pod rejects the whole response";
}

}  // namespace
}  // namespace kubelet::config

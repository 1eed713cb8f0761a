#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/test_util.h"
#include "fake/fake_apiserver.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/kubeconfig.h"
#include "kubelet/server/http_server.h"

namespace kubelet::client {
namespace {

using json = nlohmann::json;

using kubelet::testing::Base64Encode;

TEST(Kubeconfig, ReadsTheCurrentContext) {
  auto dir = std::filesystem::temp_directory_path() / ("kkc-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "ca.crt") << "CA-PEM";
  std::ofstream(dir / "token") << "file-token\n";
  std::string text = "apiVersion: v1\nkind: Config\ncurrent-context: b\n"
                     "clusters:\n- name: one\n  cluster: {server: 'https://a:6443/', certificate-authority: ca.crt}\n"
                     "- name: two\n  cluster: {server: 'https://b:6443', certificate-authority-data: " + Base64Encode("CA2") + "}\n"
                     "users:\n- name: u\n  user: {client-certificate-data: " + Base64Encode("CERT") + ", client-key-data: " + Base64Encode("KEY") + "}\n"
                     "- name: t\n  user: {tokenFile: token}\n"
                     "contexts:\n- name: a\n  context: {cluster: one, user: t}\n- name: b\n  context: {cluster: two, user: u, namespace: ns1}\n";
  auto b = ParseKubeconfig(text, dir.string());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->server, "https://b:6443");
  EXPECT_EQ(b->ca_pem, "CA2");
  EXPECT_EQ(b->client_cert_pem, "CERT");
  EXPECT_EQ(b->client_key_pem, "KEY");
  EXPECT_EQ(b->namespace_, "ns1");
  std::string a_text = text;
  a_text.replace(a_text.find("current-context: b"), 18, "current-context: a");
  auto a = ParseKubeconfig(a_text, dir.string());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->server, "https://a:6443");  // trailing slash dropped
  EXPECT_EQ(a->ca_pem, "CA-PEM");          // path relative to the kubeconfig
  EXPECT_EQ(a->token_file, (dir / "token").string());
  std::filesystem::remove_all(dir);
}

TEST(Kubeconfig, ErrorsNameWhatIsMissing) {
  auto e1 = ParseKubeconfig("current-context: x\ncontexts: []\n", "");
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(e1.status().message().find("context \"x\" not found"), std::string::npos);
  auto e2 = ParseKubeconfig("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n", "");
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(e2.status().message().find("cluster \"c\" not found"), std::string::npos);
  auto e3 = ParseKubeconfig("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                            "clusters: [{name: c, cluster: {server: 'https://a', certificate-authority: /nonexistent/ca}}]\n", "");
  ASSERT_FALSE(e3.ok());
  EXPECT_NE(e3.status().message().find("/nonexistent/ca"), std::string::npos);
  EXPECT_FALSE(LoadKubeconfig("/nonexistent/kubeconfig").ok());
}

class ApiClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("kapi-" + std::to_string(getpid()));
    testing::FakeApiServer::Options o;
    o.cert_dir = dir_.string();
    api_ = std::make_unique<testing::FakeApiServer>(o);
    ASSERT_TRUE(api_->Start());
    RestConfig rc;
    rc.server = api_->url();
    rc.ca_pem = api_->ca_pem();
    rc.tls_server_name = "localhost";
    rc.bearer_token = "test-token";
    ClientOptions co;
    co.initial_backoff = std::chrono::milliseconds(20);
    client_ = NewApiClient(rc, co);
  }
  void TearDown() override {
    api_->Stop();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<testing::FakeApiServer> api_;
  std::unique_ptr<ApiClient> client_;
};

TEST_F(ApiClientTest, CreateGetUpdatePatchDelete) {
  auto created = client_->Create("/api/v1/nodes", {{"metadata", {{"name", "n1"}}}, {"spec", json::object()}});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE((*created)["metadata"]["uid"].get<std::string>().empty());
  auto dup = client_->Create("/api/v1/nodes", {{"metadata", {{"name", "n1"}}}});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(StatusReason(dup.status()), "AlreadyExists");
  auto got = client_->Get("/api/v1/nodes/n1");
  ASSERT_TRUE(got.ok());
  json stale = *got;
  (*got)["metadata"]["labels"] = {{"a", "b"}};
  ASSERT_TRUE(client_->Update("/api/v1/nodes/n1", *got).ok());
  auto conflict = client_->Update("/api/v1/nodes/n1", stale);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(StatusReason(conflict.status()), "Conflict");
  auto patched = client_->Patch("/api/v1/nodes/n1/status",
                                {{"status", {{"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}},
                                PatchType::kStrategicMerge);
  ASSERT_TRUE(patched.ok()) << patched.status();
  patched = client_->Patch("/api/v1/nodes/n1/status",
                           {{"status", {{"conditions", {{{"type", "MemoryPressure"}, {"status", "False"}}}}}}},
                           PatchType::kStrategicMerge);
  ASSERT_TRUE(patched.ok());
  EXPECT_EQ((*patched)["status"]["conditions"].size(), 2u);  // merged by type
  EXPECT_EQ((*patched)["metadata"]["labels"]["a"], "b");
  auto missing = client_->Get("/api/v1/nodes/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nodes \"nope\" not found"), std::string::npos);
  ASSERT_TRUE(client_->Delete("/api/v1/nodes/n1", nullptr).ok());
  EXPECT_FALSE(api_->Get("nodes", "", "n1"));
}

TEST_F(ApiClientTest, RetriesTooManyRequestsHonouringRetryAfter) {
  api_->InjectError("GET", "nodes", 429, 2, 1);
  api_->Create("nodes", {{"metadata", {{"name", "n1"}}}});
  auto start = std::chrono::steady_clock::now();
  auto got = client_->Get("/api/v1/nodes/n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));  // two Retry-After: 1
  EXPECT_EQ(api_->Requests("GET", "nodes"), 3);
  api_->InjectError("GET", "nodes", 500, 100);
  auto failed = client_->Get("/api/v1/nodes/n1");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ApiClientTest, RejectsWithoutCredentials) {
  RestConfig rc;
  rc.server = api_->url();
  rc.ca_pem = api_->ca_pem();
  auto anon = NewApiClient(rc, ClientOptions{});
  auto r = anon->Get("/api/v1/nodes");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  RestConfig wrong_ca = rc;
  wrong_ca.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  wrong_ca.bearer_token = "test-token";
  ClientOptions fast;
  fast.max_retries = 0;
  EXPECT_FALSE(NewApiClient(wrong_ca, fast)->Get("/api/v1/nodes").ok());
}

TEST(ApiClientCerts, ClientCertificateAuthenticates) {
  auto dir = std::filesystem::temp_directory_path() / ("kapicert-" + std::to_string(getpid()));
  std::string cert, key;
  ASSERT_TRUE(server::MakeClientCert(dir.string(), "node1", "system:node:node1", &cert, &key).ok());
  testing::FakeApiServer::Options o;
  o.cert_dir = dir.string();
  o.client_ca_file = cert;  // the self-signed client certificate is its own CA
  testing::FakeApiServer api(o);
  ASSERT_TRUE(api.Start());
  std::ofstream(dir / "kubeconfig") << "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                    << "clusters: [{name: k, cluster: {server: '" << api.url() << "', certificate-authority-data: "
                                    << Base64Encode(api.ca_pem()) << "}}]\n"
                                    << "users: [{name: n, user: {client-certificate: node1.crt, client-key: node1.key}}]\n"
                                    << "contexts: [{name: c, context: {cluster: k, user: n}}]\n";
  auto rc = LoadKubeconfig((dir / "kubeconfig").string());
  ASSERT_TRUE(rc.ok()) << rc.status();
  auto client = NewApiClient(*rc, ClientOptions{});
  auto r = client->Get("/api/v1/nodes");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(api.Users().back(), "system:node:node1");
  // Without the certificate (and no token) the same server says 401.
  RestConfig anon = *rc;
  anon.client_cert_pem.clear();
  anon.client_key_pem.clear();
  auto denied = NewApiClient(anon, ClientOptions{})->Get("/api/v1/nodes");
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kUnauthenticated);
  api.Stop();
  std::filesystem::remove_all(dir);
}

TEST_F(ApiClientTest, WatchStreamsEventsAndBookmarks) {
  api_->Create("pods", {{"metadata", {{"name", "mine"}, {"namespace", "default"}}}, {"spec", {{"nodeName", "n1"}}}});
  auto list = client_->Get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ((*list)["items"].size(), 1u);
  std::string rv = (*list)["metadata"]["resourceVersion"];
  std::vector<json> events;
  std::atomic<bool> stop{false};
  std::thread w([&] {
    auto st = client_->Watch("/api/v1/pods?watch=true&allowWatchBookmarks=true&timeoutSeconds=5&resourceVersion=" + rv +
                                 "&fieldSelector=spec.nodeName%3Dn1",
                             [&](const json& ev) {
                               events.push_back(ev);
                               return !(ev["type"] == "DELETED");
                             },
                             &stop);
    EXPECT_TRUE(st.ok()) << st;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  api_->Create("pods", {{"metadata", {{"name", "other"}, {"namespace", "default"}}}, {"spec", {{"nodeName", "n2"}}}});
  api_->Create("pods", {{"metadata", {{"name", "second"}, {"namespace", "default"}}}, {"spec", {{"nodeName", "n1"}}}});
  std::this_thread::sleep_for(std::chrono::milliseconds(1600));  // a bookmark comes every second
  api_->Remove("pods", "default", "mine");
  w.join();
  std::vector<std::string> types;
  for (const auto& e : events)
    if (e["type"] != "BOOKMARK") types.push_back(e["type"].get<std::string>() + ":" + e["object"]["metadata"]["name"].get<std::string>());
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED:second", "DELETED:mine"}));  // n2's pod filtered out
  bool bookmark = false;
  for (const auto& e : events) bookmark |= e["type"] == "BOOKMARK";
  EXPECT_TRUE(bookmark);
}

TEST_F(ApiClientTest, WatchFromACompactedVersionGetsExpired) {
  api_->Create("pods", {{"metadata", {{"name", "a"}}}, {"spec", {{"nodeName", "n1"}}}});
  api_->Compact();
  json error;
  std::atomic<bool> stop{false};
  auto st = client_->Watch("/api/v1/pods?watch=true&resourceVersion=1", [&](const json& ev) {
    error = ev;
    return true;
  }, &stop);
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(error["type"], "ERROR");
  EXPECT_EQ(error["object"]["code"], 410);
  EXPECT_EQ(error["object"]["reason"], "Expired");
}

TEST_F(ApiClientTest, GracefulPodDeletion) {
  api_->Create("pods", {{"metadata", {{"name", "p"}, {"namespace", "default"}}},
                        {"spec", {{"nodeName", "n1"}, {"terminationGracePeriodSeconds", 7}}}});
  ASSERT_TRUE(client_->Delete("/api/v1/namespaces/default/pods/p", json::object()).ok());
  auto p = api_->Get("pods", "default", "p");
  ASSERT_TRUE(p);
  EXPECT_EQ((*p)["metadata"]["deletionGracePeriodSeconds"], 7);
  ASSERT_TRUE(client_->Delete("/api/v1/namespaces/default/pods/p", {{"gracePeriodSeconds", 0}}).ok());
  EXPECT_FALSE(api_->Get("pods", "default", "p"));
}

// Issue 10: a watch whose connection goes silent (a half-open TCP connection, a stuck proxy) ends within
// watch_idle_timeout, so the api source re-opens it instead of waiting for minutes. Here a listener on loopback
// accepts the connection and never answers; nothing in the test waits on the clock beyond that bound.
TEST(ApiClientWatch, ASilentConnectionEndsWithinTheIdleTimeout) {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof(a);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  RestConfig rc;
  rc.server = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  ClientOptions co;
  co.watch_idle_timeout = std::chrono::seconds(2);
  auto client = NewApiClient(rc, co);
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  absl::Status st;
  std::thread t([&] {
    st = client->Watch("/api/v1/pods?watch=true", [](const json&) { return true; }, &stop);
    done = true;
  });
  bool ended = kubelet::testing::WaitUntil([&] { return done.load(); }, std::chrono::seconds(20));
  if (!ended) stop = true;  // let the thread finish either way
  t.join();
  ::close(lfd);
  EXPECT_TRUE(ended) << "the watch waited on a silent connection";
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
}

TEST(ApiClientWatch, AThrowingHandlerEndsTheWatchWithAnError) {
  testing::FakeApiServer::Options ao;
  ao.cert_dir = (std::filesystem::temp_directory_path() / ("kapi-throw-" + std::to_string(::getpid()))).string();
  testing::FakeApiServer api(ao);
  ASSERT_TRUE(api.Start());
  api.Create("pods", {{"metadata", {{"name", "a"}, {"namespace", "default"}}}, {"spec", {{"nodeName", "n"}}}});
  RestConfig rc;
  rc.server = api.url();
  rc.ca_pem = api.ca_pem();
  rc.bearer_token = "test-token";
  auto client = NewApiClient(rc, ClientOptions{});
  std::atomic<bool> stop{false};
  auto st = client->Watch("/api/v1/pods?watch=true&resourceVersion=0", [](const json&) -> bool { throw std::runtime_error("bad"); },
                          &stop);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("event handler failed: bad"), std::string::npos) << st;
  api.Stop();
  std::filesystem::remove_all(ao.cert_dir);
}

}  // namespace
}  // namespace kubelet::client

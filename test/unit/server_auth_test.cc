// The kubelet API's authn/authz as upstream's: the request-to-attributes table, the webhook caches on simulated
// time, and the filter's answers (401, 403 with upstream's body, 500 when the authorizer cannot tell).
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "kubelet/client/api_client.h"
#include "kubelet/server/auth.h"
#include "kubelet/server/http_server.h"

namespace kubelet::server {
namespace {

using json = nlohmann::json;

// An API client whose reviews answer from functions; counts what it was asked.
class FakeReviews : public client::ApiClient {
 public:
  std::function<absl::StatusOr<json>(const json&)> token_review;
  std::function<absl::StatusOr<json>(const json&)> access_review;
  std::atomic<int> token_calls{0}, access_calls{0};
  json last_access;

  absl::StatusOr<json> Get(const std::string&) override { return absl::UnimplementedError("get"); }
  absl::StatusOr<json> Create(const std::string& path, const json& obj) override {
    if (path == "/apis/authentication.k8s.io/v1/tokenreviews") {
      ++token_calls;
      return token_review(obj);
    }
    if (path == "/apis/authorization.k8s.io/v1/subjectaccessreviews") {
      ++access_calls;
      last_access = obj;
      return access_review(obj);
    }
    return absl::NotFoundError(path);
  }
  absl::StatusOr<json> Update(const std::string&, const json&) override { return absl::UnimplementedError("update"); }
  absl::StatusOr<json> Patch(const std::string&, const json&, client::PatchType) override {
    return absl::UnimplementedError("patch");
  }
  absl::Status Delete(const std::string&, const json&) override { return absl::UnimplementedError("delete"); }
  absl::Status Watch(const std::string&, const std::function<bool(const json&)>&, const std::atomic<bool>*) override {
    return absl::UnimplementedError("watch");
  }
  int64_t RequestCount() const override { return token_calls + access_calls; }
};

std::vector<std::string> Subresources(const std::string& method, const std::string& path) {
  std::vector<std::string> out;
  for (const auto& a : GetRequestAttributes(UserInfo{"u", "", {}, {}}, method, path, "node-1")) {
    EXPECT_EQ(a.resource, "nodes");
    EXPECT_EQ(a.name, "node-1");
    EXPECT_EQ(a.api_version, "v1");
    EXPECT_EQ(a.path, path);
    out.push_back(a.subresource);
  }
  return out;
}

TEST(RequestAttributes, PathsMapToUpstreamsSubresourcesWithProxyAsTheSecondChance) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Subresources("GET", "/stats/summary"), V{"stats"});
  EXPECT_EQ(Subresources("GET", "/stats"), V{"stats"});
  EXPECT_EQ(Subresources("GET", "/metrics"), V{"metrics"});
  EXPECT_EQ(Subresources("GET", "/metrics/cadvisor"), V{"metrics"});
  EXPECT_EQ(Subresources("GET", "/metrics/resource"), V{"metrics"});
  EXPECT_EQ(Subresources("GET", "/logs/syslog"), V{"log"});
  EXPECT_EQ(Subresources("GET", "/spec/"), V{"spec"});
  EXPECT_EQ(Subresources("POST", "/checkpoint/ns/pod/c"), V{"checkpoint"});
  EXPECT_EQ(Subresources("GET", "/pods"), (V{"pods", "proxy"}));
  EXPECT_EQ(Subresources("GET", "/pods/"), (V{"pods", "proxy"}));
  EXPECT_EQ(Subresources("GET", "/runningpods/"), (V{"pods", "proxy"}));
  EXPECT_EQ(Subresources("GET", "/healthz"), (V{"healthz", "proxy"}));
  EXPECT_EQ(Subresources("GET", "/configz"), (V{"configz", "proxy"}));
  for (const char* p : {"/exec/ns/pod/c", "/attach/ns/pod/c", "/portForward/ns/pod", "/run/ns/pod/c",
                        "/containerLogs/ns/pod/c", "/debug/pprof", "/", "/podsx", "/statsx", "/metricsfoo"})
    EXPECT_EQ(Subresources("GET", p), V{"proxy"}) << p;
  auto verb = [](const std::string& m) { return GetRequestAttributes(UserInfo{}, m, "/pods", "n")[0].verb; };
  EXPECT_EQ(verb("GET"), "get");
  EXPECT_EQ(verb("POST"), "create");
  EXPECT_EQ(verb("PUT"), "update");
  EXPECT_EQ(verb("PATCH"), "patch");
  EXPECT_EQ(verb("DELETE"), "delete");
  EXPECT_EQ(verb("HEAD"), "") << "upstream maps only those five methods";
}

TEST(WebhookTokenAuthenticator, CachesAnswersForTheTTLAndNotErrors) {
  FakeClock clock;
  FakeReviews api;
  bool up = true;
  api.token_review = [&](const json& r) -> absl::StatusOr<json> {
    if (!up) return absl::UnavailableError("connection refused");
    EXPECT_EQ(r["kind"], "TokenReview");
    EXPECT_FALSE(r["spec"].contains("audiences")) << "the kubelet asks for the API server's own audiences";
    if (r["spec"]["token"] == "good")
      return json{{"status", {{"authenticated", true},
                              {"user", {{"username", "alice"}, {"uid", "u-1"}, {"groups", {"dev"}},
                                        {"extra", {{"scopes", {"a", "b"}}}}}}}}};
    return json{{"status", {{"user", json::object()}, {"error", "invalid bearer token"}}}};
  };
  auto tokens = NewWebhookTokenAuthenticator(&api, std::chrono::minutes(2), &clock);
  auto u = tokens->AuthenticateToken("good");
  ASSERT_TRUE(u.ok() && u->has_value());
  EXPECT_EQ((*u)->name, "alice");
  EXPECT_EQ((*u)->uid, "u-1");
  EXPECT_EQ((*u)->groups, std::vector<std::string>{"dev"});
  EXPECT_EQ((*u)->extra.at("scopes"), (std::vector<std::string>{"a", "b"}));
  auto bad = tokens->AuthenticateToken("bad");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->has_value());
  EXPECT_EQ(api.token_calls, 2);
  clock.Step(std::chrono::seconds(119));
  up = false;  // both answers come from the cache while the API is down
  EXPECT_TRUE(tokens->AuthenticateToken("good")->has_value());
  EXPECT_FALSE(tokens->AuthenticateToken("bad")->has_value());
  EXPECT_EQ(api.token_calls, 2);
  clock.Step(std::chrono::seconds(2));  // past cacheTTL: asked again, and the error is not cached
  EXPECT_FALSE(tokens->AuthenticateToken("good").ok());
  EXPECT_FALSE(tokens->AuthenticateToken("good").ok());
  EXPECT_EQ(api.token_calls, 4);
  up = true;
  EXPECT_TRUE(tokens->AuthenticateToken("good")->has_value());
}

TEST(WebhookAuthorizer, AllowedFor5mDeniedFor30sAndTheReviewCarriesTheUser) {
  FakeClock clock;
  FakeReviews api;
  std::atomic<bool> allow{false};
  api.access_review = [&](const json&) -> absl::StatusOr<json> { return json{{"status", {{"allowed", allow.load()}}}}; };
  auto authz = NewWebhookAuthorizer(&api, std::chrono::minutes(5), std::chrono::seconds(30), &clock);
  UserInfo alice{"alice", "u-1", {"dev", "system:authenticated"}, {{"scopes", {"a"}}}};
  auto attrs = GetRequestAttributes(alice, "GET", "/stats/summary", "node-1")[0];
  EXPECT_FALSE(*authz->Authorize(attrs));
  const json& spec = api.last_access["spec"];
  EXPECT_EQ(api.last_access["kind"], "SubjectAccessReview");
  EXPECT_EQ(api.last_access["apiVersion"], "authorization.k8s.io/v1");
  EXPECT_EQ(spec["user"], "alice");
  EXPECT_EQ(spec["uid"], "u-1");
  EXPECT_EQ(spec["groups"], json({"dev", "system:authenticated"}));
  EXPECT_EQ(spec["extra"]["scopes"], json({"a"}));
  EXPECT_EQ(spec["resourceAttributes"], json({{"namespace", ""}, {"verb", "get"}, {"group", ""}, {"version", "v1"},
                                              {"resource", "nodes"}, {"subresource", "stats"}, {"name", "node-1"}}));
  allow = true;
  clock.Step(std::chrono::seconds(29));
  EXPECT_FALSE(*authz->Authorize(attrs)) << "a denial is cached for cacheUnauthorizedTTL";
  EXPECT_EQ(api.access_calls, 1);
  clock.Step(std::chrono::seconds(2));
  EXPECT_TRUE(*authz->Authorize(attrs));
  EXPECT_EQ(api.access_calls, 2);
  allow = false;
  clock.Step(std::chrono::seconds(299));
  EXPECT_TRUE(*authz->Authorize(attrs)) << "an allow is cached for cacheAuthorizedTTL";
  clock.Step(std::chrono::seconds(2));
  EXPECT_FALSE(*authz->Authorize(attrs));
  EXPECT_EQ(api.access_calls, 3);
  // Another question is asked on its own; the cache stays bounded however many users come.
  for (int i = 0; i < static_cast<int>(kAuthCacheEntries) + 100; ++i) {
    UserInfo u{"user-" + std::to_string(i), "", {}, {}};
    (void)authz->Authorize(GetRequestAttributes(u, "GET", "/pods", "node-1")[0]);
  }
  EXPECT_EQ(api.access_calls, 3 + static_cast<int>(kAuthCacheEntries) + 100);
  (void)authz->Authorize(GetRequestAttributes(UserInfo{"user-0", "", {}, {}}, "GET", "/pods", "node-1")[0]);
  EXPECT_EQ(api.access_calls, 4 + static_cast<int>(kAuthCacheEntries) + 100) << "the oldest entry was evicted";
}

struct Filter {
  FakeClock clock;
  FakeReviews api;
  std::function<bool(const json& spec)> allow = [](const json&) { return false; };
  bool sar_up = true;
  std::unique_ptr<KubeletAuth> auth;
  explicit Filter(KubeletAuthOptions o, bool webhook_tokens = true) {
    o.node_name = "node-1";
    api.token_review = [](const json& r) -> absl::StatusOr<json> {
      if (r["spec"]["token"] == "reader-token")
        return json{{"status", {{"authenticated", true}, {"user", {{"username", "reader"}, {"groups", {"monitoring"}}}}}}};
      return json{{"status", {{"user", json::object()}}}};
    };
    api.access_review = [this](const json& r) -> absl::StatusOr<json> {
      if (!sar_up) return absl::UnavailableError("connection refused");
      return json{{"status", {{"allowed", allow(r["spec"])}}}};
    };
    auth = std::make_unique<KubeletAuth>(
        o, webhook_tokens ? NewWebhookTokenAuthenticator(&api, std::chrono::minutes(2), &clock) : nullptr,
        NewWebhookAuthorizer(&api, std::chrono::minutes(5), std::chrono::seconds(30), &clock));
  }
  static Request Req(const std::string& path, const std::string& token = "", const std::string& cn = "",
                     std::vector<std::string> orgs = {}) {
    Request r;
    r.method = "GET";
    r.path = path;
    if (!token.empty()) r.headers["authorization"] = "Bearer " + token;
    r.client_cn = cn;
    r.client_groups = std::move(orgs);
    return r;
  }
};

TEST(KubeletAuth, UpstreamsAnswersForEachKindOfCaller) {
  Filter f({"", false, true, false});
  // Nobody: 401 with anonymous off.
  auto none = f.auth->Check(Filter::Req("/pods"));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->body, "Unauthorized");
  // A token the API server does not vouch for: 401.
  EXPECT_EQ(f.auth->Check(Filter::Req("/pods", "made-up"))->status, 401);
  // A vouched-for token that RBAC does not allow: upstream's 403 body, both subresources tried.
  auto denied = f.auth->Check(Filter::Req("/pods", "reader-token"));
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403);
  EXPECT_EQ(denied->body, "Forbidden (user=reader, verb=get, resource=nodes, subresource(s)=[pods proxy])");
  EXPECT_EQ(f.api.last_access["spec"]["groups"], json({"monitoring", "system:authenticated"}));
  // nodes/stats granted: /stats passes, /pods does not.
  f.allow = [](const json& s) { return s["user"] == "reader" && s["resourceAttributes"]["subresource"] == "stats"; };
  f.clock.Step(std::chrono::seconds(31));
  EXPECT_FALSE(f.auth->Check(Filter::Req("/stats/summary", "reader-token")));
  EXPECT_EQ(f.auth->Check(Filter::Req("/pods", "reader-token"))->status, 403);
  // nodes/proxy is the second chance for /pods.
  f.allow = [](const json& s) { return s["resourceAttributes"]["subresource"] == "proxy"; };
  f.clock.Step(std::chrono::seconds(31));
  EXPECT_FALSE(f.auth->Check(Filter::Req("/pods", "reader-token")));
  // The API server's client certificate: user = CN, groups = O, allowed because the authorizer says so.
  f.allow = [](const json& s) {
    for (const auto& g : s.value("groups", json::array()))
      if (g == "system:masters") return true;
    return false;
  };
  EXPECT_FALSE(f.auth->Check(Filter::Req("/exec/ns/p/c", "", "kube-apiserver-kubelet-client", {"system:masters"})));
  EXPECT_EQ(f.api.last_access["spec"]["user"], "kube-apiserver-kubelet-client");
  auto other = f.auth->Check(Filter::Req("/exec/ns/p/c", "", "someone", {"dev"}));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->body, "Forbidden (user=someone, verb=get, resource=nodes, subresource(s)=[proxy])");
  // A certificate the client CA did not verify: 401, even though it names a CN.
  Request forged = Filter::Req("/pods", "", "kube-apiserver-kubelet-client", {"system:masters"});
  forged.client_cn.clear();
  forged.client_cert_invalid = true;
  EXPECT_EQ(f.auth->Check(forged)->status, 401);
  // The authorizer cannot be reached and nothing is cached: 500, as upstream's "Authorization error".
  f.sar_up = false;
  auto broken = f.auth->Check(Filter::Req("/metrics", "reader-token"));
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->status, 500);
  EXPECT_EQ(broken->body, "Authorization error (user=reader, verb=get, resource=nodes, subresource=metrics)");
}

TEST(KubeletAuth, AnonymousAndAlwaysAllow) {
  Filter anon({"", true, false, false});
  auto r = anon.auth->Check(Filter::Req("/metrics"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource(s)=[metrics])");
  EXPECT_EQ(anon.api.last_access["spec"]["groups"], json({"system:unauthenticated"}));
  EXPECT_EQ(anon.auth->Check(Filter::Req("/metrics", "made-up"))->status, 401) << "an invalid token never falls back to anonymous";
  EXPECT_EQ(anon.auth->Check(Filter::Req("/metrics", "", "cn-without-x509"))->body,
            "Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource(s)=[metrics])")
      << "without a client CA, certificates name nobody";
  Filter open({"", true, false, true}, /*webhook_tokens=*/false);
  EXPECT_FALSE(open.auth->Check(Filter::Req("/pods")));
  EXPECT_FALSE(open.auth->Check(Filter::Req("/pods", "any-token"))) << "no token webhook: the header is not examined";
  EXPECT_EQ(open.api.RequestCount(), 0);
}

}  // namespace
}  // namespace kubelet::server

namespace kubelet::server {
namespace {

// Answers of the wrong shape are not a user and not an allow, and never throw.
TEST(WebhookReviews, AnswersOfTheWrongShapeAreNeitherAUserNorAnAllow) {
  FakeClock clock;
  for (const char* answer : {R"({"status":{"authenticated":"yes","user":{"username":"x"}}})", R"({"status":[]})", R"([])",
                             R"({"status":{"authenticated":true,"user":{"username":7}}})",
                             R"({"status":{"authenticated":true,"user":"alice"}})"}) {
    FakeReviews api;
    api.token_review = [&](const json&) -> absl::StatusOr<json> { return json::parse(answer); };
    auto r = NewWebhookTokenAuthenticator(&api, std::chrono::minutes(2), &clock)->AuthenticateToken("t");
    ASSERT_TRUE(r.ok()) << answer;
    EXPECT_FALSE(r->has_value()) << answer;
  }
  for (const char* answer : {R"({"status":{"allowed":"true"}})", R"({"status":{"allowed":true,"denied":true}})", R"({"status":7})"}) {
    FakeReviews api;
    api.access_review = [&](const json&) -> absl::StatusOr<json> { return json::parse(answer); };
    auto r = NewWebhookAuthorizer(&api, std::chrono::minutes(5), std::chrono::seconds(30), &clock)
                 ->Authorize(GetRequestAttributes(UserInfo{"u", "", {}, {}}, "GET", "/pods", "n")[0]);
    ASSERT_TRUE(r.ok()) << answer;
    EXPECT_FALSE(*r) << answer;
  }
}

}  // namespace
}  // namespace kubelet::server

#include "kubelet/server/streaming.h"

namespace kubelet::server {
namespace {

// The runtime's streaming URL is outside input: a bad one is an error naming it, never a throw.
TEST(StreamURL, ParsesTheRuntimesURLAndRefusesBadOnes) {
  auto u = ParseStreamURL("http://127.0.0.1:40123/exec/AbC");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 40123);
  EXPECT_EQ(u->target, "/exec/AbC");
  auto v6 = ParseStreamURL("https://[::1]:10250/portForward/ns/p?port=80");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_TRUE(v6->tls);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->target, "/portForward/ns/p?port=80");
  for (const char* bad : {"", "ftp://x/", "http://", "http://:80/x", "http://h:0/x", "http://h:99999/x", "http://[::1/x",
                          "http://h:port/x"}) {
    auto r = ParseStreamURL(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace kubelet::server

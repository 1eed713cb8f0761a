#include "kubelet/server/auth.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <deque>
#include <mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "kubelet/client/api_client.h"
#include "kubelet/server/http_server.h"
#include "kubelet/util/json.h"
#include "kubelet/util/logging.h"

namespace kubelet::server {
namespace {

using json = nlohmann::json;

constexpr const char* kAuthenticatedGroup = "system:authenticated";

// Reads of the API's review answers that never throw on a field of the wrong type (it then counts as unset).
bool BoolField(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && obj[key].is_boolean() && obj[key].get<bool>();
}
std::string StrField(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && obj[key].is_string() ? obj[key].get<std::string>() : "";
}

bool IsSubpath(const std::string& sub, std::string path) {
  while (!path.empty() && path.back() == '/') path.pop_back();
  return sub == path || (sub.size() > path.size() && sub.compare(0, path.size(), path) == 0 && sub[path.size()] == '/');
}

std::string Sha256Hex(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

// Answers kept until they expire, bounded: the oldest insert goes first when full. Shared by both webhooks.
template <typename V>
class TTLCache {
 public:
  TTLCache(const Clock* clock, size_t max) : clock_(clock), max_(max) {}
  std::optional<V> Get(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    if (Now() >= it->second.expires) {
      entries_.erase(it);
      return std::nullopt;
    }
    return it->second.value;
  }
  void Put(const std::string& key, V value, Duration ttl) {
    if (ttl <= Duration::zero()) return;
    std::lock_guard<std::mutex> l(mu_);
    uint64_t seq = ++seq_;
    entries_[key] = {std::move(value), Now() + ttl, seq};
    order_.emplace_back(key, seq);
    // Oldest first out; an order entry whose key was written again since (or is gone) is skipped.
    while (entries_.size() > max_ && !order_.empty()) {
      auto [k, s] = order_.front();
      order_.pop_front();
      if (auto it = entries_.find(k); it != entries_.end() && it->second.seq == s) entries_.erase(it);
    }
    if (order_.size() > 2 * max_) {  // stale order entries: rebuilt from what is kept
      std::vector<std::pair<std::string, uint64_t>> live;
      for (const auto& [k, e] : entries_) live.emplace_back(k, e.seq);
      std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
      order_.assign(live.begin(), live.end());
    }
  }
  size_t Size() {
    std::lock_guard<std::mutex> l(mu_);
    return entries_.size();
  }

 private:
  struct Entry {
    V value;
    TimePoint expires;
    uint64_t seq = 0;
  };
  TimePoint Now() const { return clock_ ? clock_->Now() : std::chrono::system_clock::now(); }
  const Clock* clock_;
  size_t max_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::deque<std::pair<std::string, uint64_t>> order_;
  uint64_t seq_ = 0;
};

class WebhookTokenAuthenticator : public TokenAuthenticator {
 public:
  WebhookTokenAuthenticator(client::ApiClient* api, Duration ttl, const Clock* clock, std::vector<std::string> audiences)
      : api_(api), ttl_(ttl), audiences_(std::move(audiences)), cache_(clock, kAuthCacheEntries), log_(log::Get("auth")) {}

  absl::StatusOr<std::optional<UserInfo>> AuthenticateToken(const std::string& token) override {
    const std::string key = Sha256Hex(token);
    if (auto hit = cache_.Get(key)) return *hit;
    json review = {{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenReview"}, {"spec", {{"token", token}}}};
    if (!audiences_.empty()) review["spec"]["audiences"] = audiences_;
    auto r = api_->Create("/apis/authentication.k8s.io/v1/tokenreviews", review);
    if (!r.ok()) return absl::UnavailableError("TokenReview: " + std::string(r.status().message()));
    const json& status = ObjectField(*r, "status");
    std::optional<UserInfo> out;
    if (BoolField(status, "authenticated")) {
      const json& user = ObjectField(status, "user");
      UserInfo u;
      {
        u.name = StrField(user, "username");
        u.uid = StrField(user, "uid");
        if (user.contains("groups") && user["groups"].is_array())
          for (const auto& g : user["groups"])
            if (g.is_string()) u.groups.push_back(g.get<std::string>());
        if (user.contains("extra") && user["extra"].is_object())
          for (auto it = user["extra"].begin(); it != user["extra"].end(); ++it)
            if (it.value().is_array())
              for (const auto& v : it.value())
                if (v.is_string()) u.extra[it.key()].push_back(v.get<std::string>());
      }
      if (!u.name.empty()) out = std::move(u);
    } else if (!StrField(status, "error").empty()) {
      KLOG_V(log_, 2)("Token review refused the token err=\"{}\"", StrField(status, "error"));
    }
    cache_.Put(key, out, ttl_);
    return out;
  }

 private:
  client::ApiClient* api_;
  Duration ttl_;
  std::vector<std::string> audiences_;
  TTLCache<std::optional<UserInfo>> cache_;
  std::shared_ptr<spdlog::logger> log_;
};

json SubjectAccessReviewSpec(const AuthorizationAttributes& a) {
  json spec = {{"resourceAttributes",
                {{"namespace", ""},
                 {"verb", a.verb},
                 {"group", ""},
                 {"version", a.api_version},
                 {"resource", a.resource},
                 {"subresource", a.subresource},
                 {"name", a.name}}},
               {"user", a.user.name}};
  if (!a.user.groups.empty()) spec["groups"] = a.user.groups;
  if (!a.user.uid.empty()) spec["uid"] = a.user.uid;
  if (!a.user.extra.empty()) spec["extra"] = a.user.extra;
  return spec;
}

class WebhookAuthorizer : public Authorizer {
 public:
  WebhookAuthorizer(client::ApiClient* api, Duration authorized_ttl, Duration unauthorized_ttl, const Clock* clock)
      : api_(api), authorized_ttl_(authorized_ttl), unauthorized_ttl_(unauthorized_ttl), cache_(clock, kAuthCacheEntries) {}

  absl::StatusOr<bool> Authorize(const AuthorizationAttributes& attrs) override {
    json spec = SubjectAccessReviewSpec(attrs);
    const std::string key = spec.dump();
    if (auto hit = cache_.Get(key)) return *hit;
    json review = {{"apiVersion", "authorization.k8s.io/v1"}, {"kind", "SubjectAccessReview"}, {"spec", spec}};
    auto r = api_->Create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review);
    if (!r.ok()) return absl::UnavailableError("SubjectAccessReview: " + std::string(r.status().message()));
    const json& status = ObjectField(*r, "status");
    bool allowed = BoolField(status, "allowed") && !BoolField(status, "denied");
    cache_.Put(key, allowed, allowed ? authorized_ttl_ : unauthorized_ttl_);
    return allowed;
  }

 private:
  client::ApiClient* api_;
  Duration authorized_ttl_;
  Duration unauthorized_ttl_;
  TTLCache<bool> cache_;
};

void AddAuthenticatedGroup(UserInfo* u) {
  if (std::find(u->groups.begin(), u->groups.end(), kAuthenticatedGroup) == u->groups.end())
    u->groups.push_back(kAuthenticatedGroup);
}

Response Text(int code, const std::string& body) { return Response{code, "text/plain; charset=utf-8", body, {}}; }

}  // namespace

std::vector<AuthorizationAttributes> GetRequestAttributes(const UserInfo& user, const std::string& method,
                                                          const std::string& path, const std::string& node_name) {
  static const std::map<std::string, std::string> kVerbs = {
      {"POST", "create"}, {"GET", "get"}, {"PUT", "update"}, {"PATCH", "patch"}, {"DELETE", "delete"}};
  std::string verb = kVerbs.count(method) ? kVerbs.at(method) : "";
  std::vector<std::string> subresources;
  // Fine-grained first (these fall back to proxy).
  if (IsSubpath(path, "/pods") || IsSubpath(path, "/runningpods/")) {
    subresources.push_back("pods");
  } else if (IsSubpath(path, "/healthz")) {
    subresources.push_back("healthz");
  } else if (IsSubpath(path, "/configz")) {
    subresources.push_back("configz");
  }
  if (IsSubpath(path, "/stats")) {
    subresources.push_back("stats");
  } else if (IsSubpath(path, "/metrics")) {
    subresources.push_back("metrics");
  } else if (IsSubpath(path, "/logs")) {
    subresources.push_back("log");  // as other log subresources (pods/log)
  } else if (IsSubpath(path, "/spec")) {
    subresources.push_back("spec");
  } else if (IsSubpath(path, "/checkpoint")) {
    subresources.push_back("checkpoint");
  } else {
    subresources.push_back("proxy");
  }
  std::vector<AuthorizationAttributes> out;
  for (const auto& sub : subresources) {
    AuthorizationAttributes a;
    a.user = user;
    a.verb = verb;
    a.subresource = sub;
    a.name = node_name;
    a.path = path;
    out.push_back(std::move(a));
  }
  return out;
}

std::unique_ptr<TokenAuthenticator> NewWebhookTokenAuthenticator(client::ApiClient* api, Duration ttl, const Clock* clock,
                                                                 std::vector<std::string> audiences) {
  return std::make_unique<WebhookTokenAuthenticator>(api, ttl, clock, std::move(audiences));
}

std::unique_ptr<Authorizer> NewWebhookAuthorizer(client::ApiClient* api, Duration authorized_ttl, Duration unauthorized_ttl,
                                                 const Clock* clock) {
  return std::make_unique<WebhookAuthorizer>(api, authorized_ttl, unauthorized_ttl, clock);
}

KubeletAuth::KubeletAuth(KubeletAuthOptions o, std::unique_ptr<TokenAuthenticator> tokens, std::unique_ptr<Authorizer> authorizer)
    : o_(std::move(o)), tokens_(std::move(tokens)), authorizer_(std::move(authorizer)) {}

std::optional<UserInfo> KubeletAuth::Authenticate(const Request& req) const {
  static auto log = log::Get("auth");
  // A certificate the client CA does not verify is an error, which no anonymous fallback covers.
  if (req.client_cert_invalid) return std::nullopt;
  if (o_.x509 && !req.client_cn.empty()) {
    UserInfo u{req.client_cn, "", req.client_groups, {}};
    AddAuthenticatedGroup(&u);
    return u;
  }
  if (tokens_) {
    if (auto h = req.headers.find("authorization"); h != req.headers.end()) {
      const std::string& v = h->second;
      size_t sp = v.find(' ');
      std::string scheme = v.substr(0, sp);
      std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
      std::string token = sp == std::string::npos ? "" : v.substr(sp + 1);
      if (size_t sp2 = token.find(' '); sp2 != std::string::npos) token.resize(sp2);
      if (scheme == "bearer" && !token.empty()) {
        auto r = tokens_->AuthenticateToken(token);
        if (!r.ok()) {
          log->error("Unable to authenticate the request due to an error err=\"{}\"", r.status().message());
          return std::nullopt;
        }
        if (!*r) return std::nullopt;  // an invalid bearer token fails, never falls back to anonymous
        UserInfo u = **r;
        AddAuthenticatedGroup(&u);
        return u;
      }
    }
  }
  if (o_.anonymous) return UserInfo{"system:anonymous", "", {"system:unauthenticated"}, {}};
  return std::nullopt;
}

std::optional<Response> KubeletAuth::Check(const Request& req) const {
  static auto log = log::Get("auth");
  auto user = Authenticate(req);
  if (!user) return Text(401, "Unauthorized");
  if (o_.always_allow) return std::nullopt;
  auto attrs = GetRequestAttributes(*user, req.method, req.path, o_.node_name);
  std::string subresources;
  for (const auto& a : attrs) {
    subresources += (subresources.empty() ? "" : " ") + a.subresource;
    if (!authorizer_) continue;
    auto allowed = authorizer_->Authorize(a);
    if (!allowed.ok()) {
      log->error("Authorization error user=\"{}\" verb=\"{}\" resource=\"{}\" subresource=\"{}\" err=\"{}\"", user->name, a.verb,
                 a.resource, a.subresource, allowed.status().message());
      return Text(500, "Authorization error (user=" + user->name + ", verb=" + a.verb + ", resource=" + a.resource +
                           ", subresource=" + a.subresource + ")");
    }
    if (*allowed) return std::nullopt;
  }
  KLOG_V(log, 2)("Forbidden user=\"{}\" verb=\"{}\" resource=\"nodes\" subresource(s)=\"[{}]\"", user->name, attrs[0].verb, subresources);
  return Text(403, "Forbidden (user=" + user->name + ", verb=" + attrs[0].verb + ", resource=nodes, subresource(s)=[" +
                       subresources + "])");
}

}  // namespace kubelet::server

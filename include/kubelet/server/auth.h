#pragma once
// Authentication and authorization of the kubelet's API, as upstream's KubeletAuth: an authenticator (verified
// client certificates, bearer tokens through the TokenReview API, anonymous when enabled), the request-to-attributes
// mapping of nodes/<subresource> (fine-grained subresources first, then proxy), and an authorizer (AlwaysAllow, or
// SubjectAccessReview through the API) whose decisions, like the token reviews, are cached with TTLs.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include "kubelet/util/clock.h"

namespace kubelet::client {
class ApiClient;
}

namespace kubelet::server {

struct Request;
struct Response;

struct UserInfo {
  std::string name;
  std::string uid;
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> extra;
};

/** One authorization question: may `user` <verb> nodes/<subresource> of this node. */
struct AuthorizationAttributes {
  UserInfo user;
  std::string verb;  // from the HTTP method: get, create, update, patch, delete ("" for any other method)
  std::string api_version = "v1";
  std::string resource = "nodes";
  std::string subresource;
  std::string name;  // the node
  std::string path;
};

/**
 * The attributes upstream's nodeAuthorizerAttributesGetter gives a request: /stats, /metrics, /logs, /spec and
 * /checkpoint map to their own subresource; /pods, /runningpods, /healthz and /configz to their own and then, as a
 * second chance, to proxy; everything else (exec, attach, portForward, run, containerLogs, ...) to proxy.
 */
std::vector<AuthorizationAttributes> GetRequestAttributes(const UserInfo& user, const std::string& method,
                                                          const std::string& path, const std::string& node_name);

/** Authenticates bearer tokens: the user, nullopt when the token is not valid, an error when nobody could tell. */
class TokenAuthenticator {
 public:
  virtual ~TokenAuthenticator() = default;
  virtual absl::StatusOr<std::optional<UserInfo>> AuthenticateToken(const std::string& token) = 0;
};

/** Decides one question: true when allowed; an error when nobody could tell. */
class Authorizer {
 public:
  virtual ~Authorizer() = default;
  virtual absl::StatusOr<bool> Authorize(const AuthorizationAttributes& attrs) = 0;
};

/** Bounds of the decision caches (entries beyond it evict the oldest). */
inline constexpr size_t kAuthCacheEntries = 4096;

/**
 * TokenReview through the API (POST /apis/authentication.k8s.io/v1/tokenreviews), answers cached for `ttl` (the
 * upstream default cacheTTL is 2m) whether authenticated or not; errors are not cached.
 */
std::unique_ptr<TokenAuthenticator> NewWebhookTokenAuthenticator(client::ApiClient* api, Duration ttl, const Clock* clock,
                                                                 std::vector<std::string> audiences = {});

/**
 * SubjectAccessReview through the API (POST /apis/authorization.k8s.io/v1/subjectaccessreviews), allowed answers
 * cached for `authorized_ttl` (5m by default), denied ones for `unauthorized_ttl` (30s); errors are not cached.
 */
std::unique_ptr<Authorizer> NewWebhookAuthorizer(client::ApiClient* api, Duration authorized_ttl, Duration unauthorized_ttl,
                                                 const Clock* clock);

struct KubeletAuthOptions {
  std::string node_name;
  bool anonymous = false;      // authentication.anonymous.enabled
  bool x509 = false;           // authentication.x509.clientCAFile is set
  bool always_allow = false;   // authorization.mode: AlwaysAllow
};

/** The filter every request to the authenticated port passes, as upstream's InstallAuthFilter. */
class KubeletAuth {
 public:
  /** `tokens` null: bearer tokens are not authenticated (webhook disabled); `authorizer` null with Webhook mode: deny. */
  KubeletAuth(KubeletAuthOptions o, std::unique_ptr<TokenAuthenticator> tokens, std::unique_ptr<Authorizer> authorizer);
  /** The user a request authenticates as; nullopt: 401. */
  std::optional<UserInfo> Authenticate(const Request& req) const;
  /** Nothing when the request may go on; otherwise upstream's answer: 401 Unauthorized, 403 Forbidden (...), 500. */
  std::optional<Response> Check(const Request& req) const;

 private:
  KubeletAuthOptions o_;
  std::unique_ptr<TokenAuthenticator> tokens_;
  std::unique_ptr<Authorizer> authorizer_;
};

}  // namespace kubelet::server

#pragma once
// A small, faithful kube-apiserver for tests: HTTPS with bearer-token or
// client-certificate authentication, resourceVersion on every object, list
// and chunked watch streams (ADDED/MODIFIED/DELETED, BOOKMARK, ERROR with
// 410 Expired for a compacted resourceVersion), fieldSelectors (=, ==, !=)
// on the field labels the real server supports per resource (others are a
// 400), discovery (/api, /apis, /api/v1, /version) for kubectl, 409 AlreadyExists/Conflict, JSON merge and
// strategic merge patch (conditions by type, container statuses by name) on
// the main resource and the status subresource, graceful pod deletion, Status
// error objects, and injected errors with Retry-After. Resources: nodes,
// pods, leases, events, configmaps, secrets, services.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "kubelet/server/http_server.h"

namespace kubelet::testing {

class TestCA;

/** One term of a fieldSelector: field=value or field!=value. */
struct FieldTerm {
  std::string field, value;
  bool negate = false;
};

class FakeApiServer {
 public:
  struct Options {
    std::string token = "test-token";
    std::string cert_dir;  // where the serving certificate is made
    int port = 0;
    std::string client_ca_file;  // when set, client certificates signed by it authenticate
    /**
     * Who the bearer token is. "system:node:<name>" (or a client certificate with that CN) puts the request under
     * the Node authorizer and NodeRestriction, as kubeadm's API server: the node reads only the ConfigMaps, Secrets,
     * PVCs and PVs its own pods reference (a list or watch only with fieldSelector metadata.name=<one of them>),
     * requests tokens only for its own pods' service accounts, bound to that pod, and writes only its own Node and
     * Lease. Empty: an administrator, allowed everything (tests acting as kubectl).
     */
    std::string token_user;
    /**
     * The API server's kubelet client certificate (kubeadm: CN kube-apiserver-kubelet-client, O system:masters):
     * pods/exec, pods/attach and pods/portforward are proxied with it to the pod's node, at its InternalIP and
     * daemonEndpoints port, as the API server's node proxy does. Empty: those subresources answer 503.
     */
    std::string kubelet_client_cert;
    std::string kubelet_client_key;
    /**
     * The CertificateSigningRequest API (certificates.k8s.io/v1) with kube-controller-manager's approver and signer:
     * a CA made in cert_dir/csr-ca (signing_ca_file(); the client CA too when client_ca_file is unset); node client
     * CSRs from a bootstrap token (group system:bootstrappers) or from the node itself approved as csrapproving does;
     * approved kube-apiserver-client-kubelet and kubelet-serving CSRs checked as the signer checks them (Failed,
     * SignerValidationFailure otherwise) and signed for signed_cert_lifetime (or spec.expirationSeconds, if shorter).
     * Serving CSRs wait for ApproveCSR, as a real cluster's wait for an administrator.
     */
    bool csr_signing = false;
    std::chrono::seconds signed_cert_lifetime{3600};
    bool auto_approve_node_client_csrs = true;
  };
  explicit FakeApiServer(Options o);
  ~FakeApiServer();
  bool Start();
  void Stop();
  std::string url() const;
  /** PEM of the serving certificate, for the kubeconfig's certificate-authority-data. */
  std::string ca_pem() const;
  int port() const { return port_; }

  /** Direct access for tests, as an admin client would (bumps resourceVersion, notifies watches). */
  nlohmann::json Create(const std::string& resource, const nlohmann::json& obj);
  std::optional<nlohmann::json> Get(const std::string& resource, const std::string& ns, const std::string& name) const;
  std::vector<nlohmann::json> List(const std::string& resource) const;
  void Update(const std::string& resource, const nlohmann::json& obj);
  void Remove(const std::string& resource, const std::string& ns, const std::string& name);
  /** Watches from a resourceVersion older than this get 410 Expired. */
  void Compact();
  /** The next `times` requests with this method on this resource answer `code` (with Retry-After when > 0). */
  void InjectError(const std::string& method, const std::string& resource, int code, int times, int retry_after = 0);
  /** Requests with this method on this resource, or (a path with a name, "/api/v1/.../configmaps/x") on one object. */
  int Requests(const std::string& method, const std::string& resource) const;
  /** The user each request authenticated as, most recent last (bounded). */
  std::vector<std::string> Users() const;
  /** Requests the authorizer refused (403), most recent last (bounded): "METHOD path: reason". */
  std::vector<std::string> Forbidden() const;
  /** What a cluster's controllers make in a namespace: the "default" ServiceAccount and the kube-root-ca.crt ConfigMap. */
  void CreateNamespaceDefaults(const std::string& ns);
  /** Claims of a token this server issued (sub, aud, exp, pod), or null when it did not issue it. */
  nlohmann::json TokenClaims(const std::string& token) const;
  /**
   * A bearer token the TokenReview API vouches for as `user` in `groups` (system:authenticated is added), besides
   * the service account tokens this server issued (unexpired ones review as their service account, with the pod's
   * name and uid in extra). Any other token reviews as not authenticated.
   */
  void AddUserToken(const std::string& token, const std::string& user, std::vector<std::string> groups = {});
  // (Such a token also authenticates to this server, as that user: an administrator unless it is system:node:<name>.)
  /**
   * The SubjectAccessReview table: `subject` (a user name, or "group:<name>") may `verb` nodes/`subresource` ("*"
   * for any verb or subresource). Members of system:masters are allowed everything, as by the API server's
   * authorizer; anything else is denied.
   */
  void AllowNodeAccess(const std::string& subject, const std::string& verb, const std::string& subresource);
  /** The CA that signs CSRs (csr_signing). */
  std::string signing_ca_file() const;
  /** As `kubectl certificate approve|deny`; an approved CSR is then signed. False when there is no such CSR. */
  bool ApproveCSR(const std::string& name, bool approve = true);

 private:
  struct Event {
    int64_t rv;
    std::string type;
    std::string resource;
    nlohmann::json object;
  };
  server::Response Handle(const server::Request& req);
  server::Response Watch(const std::string& resource, const std::string& ns, const std::vector<FieldTerm>& fs,
                         const server::Request& req);
  nlohmann::json Stamp(const std::string& resource, nlohmann::json obj, bool create);
  void Emit(const std::string& type, const std::string& resource, const nlohmann::json& obj);
  static std::string Key(const std::string& ns, const std::string& name) { return ns + "/" + name; }
  /** The Node authorizer's verdict for a node identity: empty when allowed, else the reason. With mu_ held. */
  static void TaintNodeByConditions(nlohmann::json& node);
  static bool NodeRestrictionForbidsLabel(const std::string& key);
  std::string AuthorizeNode(const std::string& node, const server::Request& req, const std::string& resource,
                            const std::string& ns, const std::string& name, const std::string& sub,
                            const std::vector<FieldTerm>& terms) const;
  // NodeRestriction's admission of a node's pod writes: "" when admitted, else why not.
  std::string AdmitNode(const std::string& node, const server::Request& req, const std::string& ns, const std::string& name,
                        const std::string& sub) const;
  bool PodOnNodeReferences(const std::string& node, const std::string& resource, const std::string& ns,
                           const std::string& name) const;
  server::Response TokenRequest(const std::string& user, const std::string& ns, const std::string& sa,
                                const server::Request& req);
  server::Response TokenReview(const server::Request& req);
  server::Response StreamToNode(const server::Request& req, const std::string& ns, const std::string& name,
                                const std::string& sub);
  server::Response SubjectAccessReview(const server::Request& req);
  server::Response CreateCSR(const std::string& user, const std::vector<std::string>& groups, const server::Request& req);
  // Appends the Approved/Denied condition and, when approved, signs (or fails) as the signer would. With mu_ held.
  void DecideCSR(nlohmann::json& csr, bool approve, const std::string& reason, const std::string& message);

  Options o_;
  std::atomic<int> port_{0};  // read by request handlers while Start() sets it
  std::string cert_file_, key_file_;
  std::unique_ptr<server::HttpServer> srv_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t rv_ = 100;
  int64_t compacted_ = 0;
  std::map<std::string, std::map<std::string, nlohmann::json>> store_;  // resource -> ns/name -> object
  std::deque<Event> events_;
  std::map<std::string, std::tuple<int, int, int>> errors_;  // "METHOD resource" -> code, times, retry-after
  std::map<std::string, int> requests_;
  std::deque<std::string> users_;
  std::deque<std::string> forbidden_;
  std::map<std::string, nlohmann::json> tokens_;  // issued token -> claims
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> user_tokens_;  // token -> user, groups
  std::set<std::tuple<std::string, std::string, std::string>> node_access_;            // subject, verb, subresource
  std::atomic<bool> stopping_{false};
  std::shared_ptr<TestCA> signer_;
};

}  // namespace kubelet::testing

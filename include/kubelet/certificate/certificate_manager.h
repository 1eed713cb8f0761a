#pragma once
// The node's certificates, as upstream's certificate manager and TLS bootstrap
// (client-go util/certificate, pkg/kubelet/certificate): ECDSA P-256 keys,
// CertificateSigningRequests through certificates.k8s.io/v1, a file store of
// <prefix>-<time>.pem files (certificate and key together) with a
// <prefix>-current.pem link, and rotation at a random point between 70% and
// 90% of the certificate's lifetime, retried with back-off on failure.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/client/api_client.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/tls_certificate.h"

namespace kubelet::certificate {

inline constexpr char kKubeAPIServerClientKubeletSigner[] = "kubernetes.io/kube-apiserver-client-kubelet";
inline constexpr char kKubeletServingSigner[] = "kubernetes.io/kubelet-serving";

/** A parsed certificate with its key. */
struct KeyPair : TLSCertificate {
  TimePoint not_before, not_after;
  std::string common_name;
  std::vector<std::string> organizations;
};

/** Parses a PEM certificate (chain) and its key; the key must be the certificate's. */
absl::StatusOr<KeyPair> ParseKeyPair(const std::string& cert_pem, const std::string& key_pem);
/** Parses a file holding both (the store's format, and a kubeconfig whose cert and key name one file). */
absl::StatusOr<KeyPair> ParseCombinedPEM(const std::string& pem);

/** A new ECDSA P-256 private key, PEM ("EC PRIVATE KEY"), as upstream's kubelet makes them. */
absl::StatusOr<std::string> GenerateECKey();

struct Subject {
  std::string common_name;
  std::vector<std::string> organizations;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries (serving certificates)
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
};

/** A PEM "CERTIFICATE REQUEST" for the key with this subject, signed with it (SHA-256). */
absl::StatusOr<std::string> MakeCSR(const std::string& key_pem, const Subject& subject);
/**
 * Upstream's deterministic CSR name: "node-csr-" and the unpadded base64url SHA-512/256 of the public key (PKIX
 * DER), the CN, the organizations and the usages, each base64url-encoded and '|'-terminated. A kubelet restarted
 * with the same key asks under the same name, so a pending request is found again, not duplicated.
 */
absl::StatusOr<std::string> DigestedName(const std::string& key_pem, const Subject& subject,
                                         const std::vector<std::string>& usages);

/** notBefore + (70% + jitter*20%) of the lifetime; jitter in [0, 1). */
TimePoint NextRotationDeadline(const KeyPair& cert, double jitter);

/** Certificates on disk as upstream's FileStore keeps them. */
class FileStore {
 public:
  /** cert_file/key_file: an older pair to fall back to (tlsCertFile/tlsPrivateKeyFile), may be empty. */
  FileStore(std::string prefix, std::string cert_dir, std::string cert_file = "", std::string key_file = "");
  /** The current pair: the -current.pem link, else the fallback pair; NotFound when there is none. */
  absl::StatusOr<KeyPair> Current() const;
  /** Writes <prefix>-<YYYY-MM-DD-HH-MM-SS>.pem (0600) and points the -current.pem link at it. */
  absl::StatusOr<KeyPair> Update(const std::string& cert_pem, const std::string& key_pem);
  std::string CurrentPath() const;

 private:
  std::string prefix_, dir_, cert_file_, key_file_;
};

/**
 * Upstream's WaitForCertificate verdict on one CSR object as the API returned it: the issued certificate (PEM) once
 * Approved with status.certificate, an error for Denied, Failed, a changed UID or an undecodable certificate, and
 * nothing while it is pending. Never throws on a malformed object.
 */
std::optional<absl::StatusOr<std::string>> IssuedCertificate(const nlohmann::json& csr, const std::string& uid);

/**
 * Creates the CSR (or finds the one a restarted kubelet made under the same name) and waits, through a watch on
 * that name, until it is approved and issued; Denied and Failed conditions end the wait with their reason and
 * message. Returns the issued certificate, PEM.
 */
absl::StatusOr<std::string> RequestCertificate(client::ApiClient* api, const std::string& csr_pem, const std::string& name,
                                               const std::string& signer, const std::vector<std::string>& usages,
                                               Duration timeout, const std::atomic<bool>* stop);

struct ManagerOptions {
  std::string name;  // "client" or "server": log lines and errors
  std::string signer_name;
  std::function<Subject()> subject;  // read at each request (a server's addresses may change)
  std::vector<std::string> usages;
  /** The client a request goes through, given the certificate in use now (null when none or expired). */
  std::function<client::ApiClient*(const KeyPair* current)> client;
  std::unique_ptr<FileStore> store;
  /** Used when the store holds nothing (the client certificate the kubeconfig names). */
  std::optional<KeyPair> initial;
  const Clock* clock = nullptr;
  Duration request_timeout = std::chrono::minutes(15);  // upstream's wait for a CSR to be issued
  Duration initial_backoff = std::chrono::seconds(2);
  Duration max_backoff = std::chrono::minutes(5);
  std::function<void(const KeyPair* previous, const KeyPair& next)> on_rotate;  // a new certificate is in use
  std::function<void()> on_error;                 // a failed rotation (for the renew-errors counter)
  /** Seconds until the certificate in use expires (+Inf with none), set at least once a minute. */
  std::function<void(double)> on_ttl;
};

/** One certificate kept fresh: a thread that sleeps until the rotation deadline and asks for a new one. */
class Manager {
 public:
  explicit Manager(ManagerOptions o);
  ~Manager();
  void Start();
  void Stop();
  /** The certificate in use, or null when there is none or it has expired (as upstream's Current). */
  std::shared_ptr<const KeyPair> Current() const;
  /** When the current certificate will be replaced (the epoch when there is none yet). */
  TimePoint Deadline() const;
  /** Rotations that succeeded since start. */
  int Rotations() const { return rotations_.load(); }

 private:
  void Run();
  absl::Status Rotate();

  ManagerOptions o_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const KeyPair> current_;
  TimePoint deadline_{};
  bool stop_ = false;
  std::atomic<bool> stop_flag_{false};
  std::atomic<int> rotations_{0};
  std::thread thread_;
};

/**
 * True when the kubeconfig exists and its client certificate is readable and unexpired (upstream's
 * isClientConfigStillValid); what is wrong with it is logged.
 */
bool ClientConfigStillValid(const std::string& kubeconfig_path);
/** The kubeconfig upstream writes after bootstrapping: the bootstrap cluster, cert and key both from pem_path. */
absl::Status WriteBootstrappedKubeconfig(const client::RestConfig& bootstrap, const std::string& kubeconfig_path,
                                         const std::string& pem_path);

/**
 * Upstream's LoadClientCert: when the kubeconfig is missing or its client certificate unreadable or expired,
 * request a node client certificate (CN system:node:<node>, O system:nodes) with the bootstrap kubeconfig's
 * credentials, store it in cert_dir (the key waits in kubelet-client.key.tmp until the request is issued, so a
 * restart reuses it) and write the kubeconfig, pointing at kubelet-client-current.pem. A kubeconfig still valid is
 * left alone.
 */
absl::Status LoadClientCert(const std::string& kubeconfig_path, const std::string& bootstrap_path,
                            const std::string& cert_dir, const std::string& node_name, Duration timeout,
                            const std::atomic<bool>* stop);

}  // namespace kubelet::certificate

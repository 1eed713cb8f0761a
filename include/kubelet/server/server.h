#pragma once
// The kubelet's servers: the authenticated HTTPS API on address:port
// (/healthz, /pods, /metrics, /runningpods/), the plain healthz endpoint on
// healthzBindAddress:healthzPort and, when readOnlyPort is set, the
// unauthenticated read-only port.
#include <memory>
#include <string>

#include <absl/status/status.h>

#include "kubelet/config/kubelet_config.h"
#include "kubelet/server/auth.h"
#include "kubelet/server/http_server.h"

namespace kubelet {
class Kubelet;
namespace kuberuntime {
class RuntimeManager;
}
namespace metrics {
class KubeletMetrics;
}
namespace stats {
class StatsProvider;
}
namespace cri {
class RuntimeService;
}
}  // namespace kubelet

namespace kubelet::server {

struct KubeletServerOptions {
  config::KubeletConfiguration config;
  std::string cert_dir;
  std::string node_name;
  stats::StatsProvider* stats = nullptr;  // /stats/summary and /metrics/resource; null: not served
  /** TokenReview and SubjectAccessReview go here (authentication.webhook, authorization.mode Webhook); null: none
   *  (standalone): bearer tokens get 401 and Webhook mode denies everything. */
  client::ApiClient* auth_api = nullptr;
  const Clock* clock = nullptr;  // the decision caches' TTLs; the real clock when null
  /** exec, attach and portForward (the CRI's streaming calls); null: those paths answer 501. */
  cri::RuntimeService* cri = nullptr;
  /** /logs/ serves this folder (enableSystemLogHandler). */
  std::string log_dir = "/var/log";
  /** serverTLSBootstrap: the serving certificate from the server certificate manager (tlsCertFile is then unused). */
  TLSCertificateProvider serving_certificate;
};

class KubeletServer {
 public:
  KubeletServer(Kubelet* kubelet, kuberuntime::RuntimeManager* runtime, metrics::KubeletMetrics* metrics,
                KubeletServerOptions options);
  ~KubeletServer();
  absl::Status Start();
  void Stop();
  int port() const;
  int healthz_port() const;
  int read_only_port() const;

 private:
  Response ContainerLogs(const Request& req) const;
  /** /exec, /attach, /portForward: the CRI's streaming URL, then the client's upgraded connection proxied to it. */
  Response Run(const std::string& container_id, const Request& req) const;
  Response Stream(const std::string& kind, const Request& req) const;
  void Install(HttpServer* s, bool authenticated);

  Kubelet* kubelet_;
  kuberuntime::RuntimeManager* runtime_;
  metrics::KubeletMetrics* metrics_;
  KubeletServerOptions o_;
  std::unique_ptr<KubeletAuth> auth_;
  std::unique_ptr<HttpServer> main_;
  std::unique_ptr<HttpServer> healthz_;
  std::unique_ptr<HttpServer> read_only_;
};

}  // namespace kubelet::server

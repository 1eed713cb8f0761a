// The kubelet server's authentication and authorization cost per request, as kubeadm configures it (bearer tokens
// through TokenReview, Webhook authorization through SubjectAccessReview), against the fake API server over HTTPS:
// with upstream's caches (cacheTTL 2m, cacheAuthorizedTTL 5m) and with none (TTLs 0: two API round trips per
// request). Also a client certificate (no TokenReview), cached and not.
//   usage: kubelet_bench_auth [requests]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "bench_util.h"
#include "fake/fake_apiserver.h"
#include "kubelet/client/api_client.h"
#include "kubelet/server/auth.h"
#include "kubelet/server/http_server.h"
#include "kubelet/util/logging.h"

using namespace kubelet;
using Steady = std::chrono::steady_clock;

namespace {

struct Run {
  double p50_us, p99_us, per_second;
  int64_t api_requests;
};

Run Measure(client::ApiClient* api, Duration ttl, const server::Request& req, int n) {
  RealClock clock;
  server::KubeletAuthOptions ao;
  ao.node_name = "bench-node";
  ao.x509 = true;
  server::KubeletAuth auth(ao, server::NewWebhookTokenAuthenticator(api, ttl, &clock),
                           server::NewWebhookAuthorizer(api, ttl, ttl, &clock));
  if (auth.Check(req)) {  // warm: the first request fills the caches
    std::fprintf(stderr, "the request was refused\n");
    std::exit(1);
  }
  int64_t before = api->RequestCount();
  std::vector<double> us;
  auto start = Steady::now();
  for (int i = 0; i < n; ++i) {
    auto t0 = Steady::now();
    auto denied = auth.Check(req);
    us.push_back(std::chrono::duration<double, std::micro>(Steady::now() - t0).count());
    if (denied) {
      std::fprintf(stderr, "request %d refused: %d\n", i, denied->status);
      std::exit(1);
    }
  }
  double secs = std::chrono::duration<double>(Steady::now() - start).count();
  return {Percentile(us, 50), Percentile(us, 99), n / secs, api->RequestCount() - before};
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  log::Init(0);
  auto dir = std::filesystem::temp_directory_path() / ("kbench-auth-" + std::to_string(getpid()));
  testing::FakeApiServer::Options o;
  o.cert_dir = dir.string();
  testing::FakeApiServer api_server(o);
  if (!api_server.Start()) return 1;
  api_server.AddUserToken("reader-token", "reader", {"monitoring"});
  api_server.AllowNodeAccess("group:monitoring", "get", "pods");
  api_server.AllowNodeAccess("kube-apiserver-kubelet-client", "*", "*");
  client::RestConfig rc;
  rc.server = api_server.url();
  rc.ca_pem = api_server.ca_pem();
  rc.bearer_token = "test-token";
  client::ClientOptions co;
  co.qps = 0;
  co.timeout = std::chrono::seconds(5);
  co.max_retries = 1;
  auto api = client::NewApiClient(rc, co);

  server::Request token_req;
  token_req.method = "GET";
  token_req.path = "/pods";
  token_req.tls = true;
  token_req.headers["authorization"] = "Bearer reader-token";
  server::Request cert_req;
  cert_req.method = "GET";
  cert_req.path = "/exec/default/pod/c";
  cert_req.tls = true;
  cert_req.client_cn = "kube-apiserver-kubelet-client";
  cert_req.client_groups = {"system:masters"};

  std::printf("kubelet server authn/authz per request, %d requests each (fake API server over HTTPS, loopback)\n", n);
  std::printf("%-44s %10s %10s %12s %14s\n", "case", "p50 us", "p99 us", "requests/s", "API calls/req");
  struct Case {
    const char* name;
    Duration ttl;
    const server::Request* req;
    int n;
  };
  for (const Case& c : {Case{"token, cached (2m/5m TTLs)", std::chrono::minutes(5), &token_req, n},
                        Case{"token, no cache (TokenReview + SAR each)", Duration::zero(), &token_req, std::max(1, n / 10)},
                        Case{"client cert, cached", std::chrono::minutes(5), &cert_req, n},
                        Case{"client cert, no cache (SAR each)", Duration::zero(), &cert_req, std::max(1, n / 10)}}) {
    Run r = Measure(api.get(), c.ttl, *c.req, c.n);
    std::printf("%-44s %10.1f %10.1f %12.0f %14.2f\n", c.name, r.p50_us, r.p99_us, r.per_second,
                static_cast<double>(r.api_requests) / c.n);
  }
  api_server.Stop();
  std::filesystem::remove_all(dir);
  return 0;
}

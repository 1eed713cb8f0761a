#include "kubelet/util/grpc_error.h"
#include "kubelet/prober/prober.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>

#include "grpc/health/v1/health.grpc.pb.h"

namespace kubelet::prober {

const char* ProbeTypeName(ProbeType t) {
  switch (t) {
    case ProbeType::kLiveness: return "Liveness";
    case ProbeType::kReadiness: return "Readiness";
    default: return "Startup";
  }
}

absl::StatusOr<int> ResolvePort(const api::IntOrString& port, const std::vector<api::ContainerPort>& ports) {
  if (port.is_int) {
    if (port.int_value < 1 || port.int_value > 65535) return absl::InvalidArgumentError("invalid port number: " + std::to_string(port.int_value));
    return port.int_value;
  }
  for (const auto& p : ports)
    if (p.name == port.str_value) return p.container_port;
  // A numeric string is a number, as upstream's findPortByName fallback parses it.
  char* end = nullptr;
  long v = std::strtol(port.str_value.c_str(), &end, 10);
  if (!port.str_value.empty() && *end == '\0' && v >= 1 && v <= 65535) return static_cast<int>(v);
  return absl::NotFoundError("couldn't find port: " + port.str_value);
}

namespace {

std::string HostPort(const std::string& host, int port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

size_t KeepBody(char* data, size_t size, size_t n, void* userdata) {
  // Keep at most 10 KiB of the body, as upstream reads it.
  auto* body = static_cast<std::string*>(userdata);
  size_t len = size * n;
  if (body->size() < 10240) body->append(data, std::min(len, 10240 - body->size()));
  return len;
}

std::string UrlHost(const std::string& url) {
  // scheme://host[:port]/...
  size_t start = url.find("://");
  if (start == std::string::npos) return "";
  start += 3;
  size_t end = url.find_first_of("/?#", start);
  std::string hp = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (!hp.empty() && hp[0] == '[') return hp.substr(1, hp.find(']') - 1);
  return hp.substr(0, hp.find(':'));
}

}  // namespace

ProbeResult Prober::RunHTTP(const api::ProbeHandler::HTTPGet& get, const std::string& host, int port, Duration timeout) {
  std::string scheme = get.scheme == "HTTPS" ? "https" : "http";
  std::string path = get.path.empty() ? "/" : get.path;
  if (path[0] != '/') path = "/" + path;
  std::string url = scheme + "://" + HostPort(host, port) + path;
  std::string first_host = host;
  CURL* h = curl_easy_init();
  if (!h) return {Outcome::kUnknown, "curl_easy_init failed"};
  curl_slist* headers = nullptr;
  bool has_ua = false, has_accept = false;
  for (const auto& hdr : get.headers) {
    std::string name = hdr.name;
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == "user-agent") has_ua = true;
    if (name == "accept") has_accept = true;
    headers = curl_slist_append(headers, (hdr.name + ": " + hdr.value).c_str());
  }
  if (!has_ua) headers = curl_slist_append(headers, "User-Agent: kube-probe/1.31");
  if (!has_accept) headers = curl_slist_append(headers, "Accept: */*");
  std::string body;
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);  // probes do not verify, as upstream
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, KeepBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // never through a proxy from the environment
  auto deadline = std::chrono::steady_clock::now() + timeout;
  ProbeResult result;
  for (int redirects = 0;; ++redirects) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      result = {Outcome::kFailure, "Get \"" + url + "\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"};
      break;
    }
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
      std::string why = rc == CURLE_OPERATION_TIMEDOUT
                            ? "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                            : curl_easy_strerror(rc);
      result = {Outcome::kFailure, "Get \"" + url + "\": " + why};
      break;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300 && code < 400) {
      char* next = nullptr;
      curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &next);
      // Redirects are followed on the same host only; elsewhere the 3xx itself counts (a warning, not a failure).
      if (next && UrlHost(next) == first_host) {
        if (redirects >= 10) {
          result = {Outcome::kFailure, "Get \"" + std::string(next) + "\": stopped after 10 redirects"};
          break;
        }
        url = next;
        continue;
      }
      result = {Outcome::kWarning, "Probe terminated redirects, Response body: " + body};
      break;
    }
    if (code >= 200 && code < 400) {
      result = {Outcome::kSuccess, ""};
    } else {
      result = {Outcome::kFailure, "HTTP probe failed with statuscode: " + std::to_string(code)};
    }
    break;
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  return result;
}

ProbeResult Prober::RunTCP(const std::string& host, int port, Duration timeout) {
  std::string target = "dial tcp " + HostPort(host, port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    return {Outcome::kFailure, target + ": " + gai_strerror(rc)};
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return {Outcome::kFailure, target + ": socket: " + std::strerror(errno)};
  }
  int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  ProbeResult result{Outcome::kSuccess, ""};
  if (rc != 0 && errno != EINPROGRESS) {
    result = {Outcome::kFailure, target + ": connect: " + std::strerror(errno)};
  } else if (rc != 0) {
    pollfd p{fd, POLLOUT, 0};
    int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
    int n = ::poll(&p, 1, ms);
    if (n == 0) {
      result = {Outcome::kFailure, target + ": i/o timeout"};
    } else {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (n < 0 || err != 0) result = {Outcome::kFailure, target + ": connect: " + std::strerror(n < 0 ? errno : err)};
    }
  }
  ::close(fd);
  return result;
}

ProbeResult Prober::RunGRPC(const std::string& host, int port, const std::optional<std::string>& service, Duration timeout) {
  std::string target = HostPort(host, port);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  ctx.set_wait_for_ready(false);
  ctx.AddMetadata("user-agent", "kube-probe/1.31");
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service.value_or(""));
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  if (!st.ok()) {
    // Upstream's probe/grpc texts: no connection within the timeout; a server without the health service; a call
    // that did not finish in time on a connection that was up; anything else as Go prints a gRPC error.
    const std::string within = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) + "s";
    const bool connected = channel->GetState(false) == GRPC_CHANNEL_READY;
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE || (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !connected))
      return {Outcome::kFailure, "timeout: failed to connect service \"" + target + "\" within " + within + ": " + st.error_message()};
    if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED)
      return {Outcome::kFailure, "server does not implement the grpc health protocol (grpc.health.v1.Health): " + st.error_message()};
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      return {Outcome::kFailure, "timeout: health rpc did not complete within " + within};
    return {Outcome::kFailure, "error: health rpc probe failed: " + GoGrpcError(st)};
  }
  if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING)
    return {Outcome::kFailure, "service unhealthy (responded with \"" +
                                   grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) + "\")"};
  return {Outcome::kSuccess, ""};
}

absl::StatusOr<ProbeResult> Prober::Run(const api::ProbeHandler& h, const ProbeTarget& t, Duration timeout) {
  if (h.exec_command) {
    if (!exec_) return absl::FailedPreconditionError("no runtime to exec in");
    auto r = exec_(t.container_id, *h.exec_command, timeout);
    if (!r.ok()) {
      if (r.status().code() == absl::StatusCode::kDeadlineExceeded) {
        abandoned_execs_.fetch_add(1);
        std::string cmd;
        for (const auto& a : *h.exec_command) cmd += (cmd.empty() ? "" : " ") + a;
        return ProbeResult{Outcome::kFailure, "command \"" + cmd + "\" timed out"};
      }
      return r.status();
    }
    if (r->exit_code() == 0) return ProbeResult{Outcome::kSuccess, r->stdout() + r->stderr()};
    return ProbeResult{Outcome::kFailure, r->stdout() + r->stderr()};
  }
  if (h.http_get) {
    auto port = ResolvePort(h.http_get->port, t.ports);
    if (!port.ok()) return port.status();
    std::string host = !h.http_get->host.empty() ? h.http_get->host : t.pod_ip;
    if (host.empty()) return absl::FailedPreconditionError("pod has no IP yet");
    return RunHTTP(*h.http_get, host, *port, timeout);
  }
  if (h.tcp_socket) {
    auto port = ResolvePort(h.tcp_socket->port, t.ports);
    if (!port.ok()) return port.status();
    std::string host = !h.tcp_socket->host.empty() ? h.tcp_socket->host : t.pod_ip;
    if (host.empty()) return absl::FailedPreconditionError("pod has no IP yet");
    return RunTCP(host, *port, timeout);
  }
  if (h.grpc) {
    if (t.pod_ip.empty()) return absl::FailedPreconditionError("pod has no IP yet");
    return RunGRPC(t.pod_ip, h.grpc->port, h.grpc->service, timeout);
  }
  return absl::InvalidArgumentError("missing probe handler");
}

}  // namespace kubelet::prober

#include "kubelet/client/api_client.h"
#include "kubelet/util/json.h"

#include "kubelet/api/objects.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <absl/strings/cord.h>

#include "kubelet/util/logging.h"

namespace kubelet::client {
namespace {

using json = nlohmann::json;
constexpr char kReasonPayload[] = "type.kubelet-cpp/status-reason";

// Token bucket: `burst` requests at once, then `qps` per second; waiters queue in order.
class RateLimiter {
 public:
  RateLimiter(double qps, int burst) : qps_(qps), burst_(std::max(1, burst)), tokens_(std::max(1, burst)) {}
  void Acquire() {
    if (qps_ <= 0) return;
    std::chrono::duration<double> wait{0};
    {
      std::lock_guard<std::mutex> l(mu_);
      auto now = std::chrono::steady_clock::now();
      tokens_ = std::min<double>(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * qps_);
      last_ = now;
      tokens_ -= 1;
      if (tokens_ < 0) wait = std::chrono::duration<double>(-tokens_ / qps_);
    }
    if (wait.count() > 0) std::this_thread::sleep_for(wait);
  }

 private:
  double qps_;
  int burst_;
  std::mutex mu_;
  double tokens_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

absl::StatusCode CodeFor(long http) {
  switch (http) {
    case 400: return absl::StatusCode::kInvalidArgument;
    case 401: return absl::StatusCode::kUnauthenticated;
    case 403: return absl::StatusCode::kPermissionDenied;
    case 404: return absl::StatusCode::kNotFound;
    case 405: return absl::StatusCode::kUnimplemented;
    case 409: return absl::StatusCode::kAborted;
    case 410: return absl::StatusCode::kOutOfRange;
    case 415: return absl::StatusCode::kInvalidArgument;
    case 422: return absl::StatusCode::kInvalidArgument;
    case 429: return absl::StatusCode::kResourceExhausted;
    case 504: return absl::StatusCode::kDeadlineExceeded;
    default: return http >= 500 ? absl::StatusCode::kUnavailable : absl::StatusCode::kUnknown;
  }
}

absl::Status FromResponse(const std::string& method, const std::string& path, long code, const std::string& body) {
  std::string reason, message;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (auto status = api::DecodeStatus(j); status.ok()) {
    reason = status->reason;
    message = status->message;
  }
  if (message.empty()) message = body.substr(0, 256);
  absl::StatusCode c = CodeFor(code);
  if (code == 409 && reason == "AlreadyExists") c = absl::StatusCode::kAlreadyExists;
  absl::Status st(c, method + " " + path + ": " + std::to_string(code) + (reason.empty() ? "" : " " + reason) + ": " + message);
  st.SetPayload(kReasonPayload, absl::Cord(reason.empty() ? std::to_string(code) : reason));
  return st;
}

// Runs the transfer on h; returns curl's result and the HTTP status, and frees the header list.
std::pair<CURLcode, long> Perform(CURL* h, curl_slist* headers) {
  CURLcode rc = curl_easy_perform(h);
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(headers);
  return {rc, code};
}

size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t CaptureHeader(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& ch : name) ch = static_cast<char>(::tolower(ch));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

struct WatchState {
  std::string buf;
  const std::function<bool(const json&)>* on_event = nullptr;
  const std::atomic<bool>* stop = nullptr;
  bool ended_by_caller = false;
  std::string parse_error;
  // The client certificate the watch was opened with: once another is in use, the watch ends (and is reopened).
  const TLSCertificateProvider* provider = nullptr;
  std::shared_ptr<const TLSCertificate> cert;
};

size_t WatchWrite(char* data, size_t size, size_t n, void* p) {
  auto* w = static_cast<WatchState*>(p);
  w->buf.append(data, size * n);
  size_t nl;
  while ((nl = w->buf.find('\n')) != std::string::npos) {
    std::string line = w->buf.substr(0, nl);
    w->buf.erase(0, nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    json ev;
    try {
      ev = json::parse(line);
    } catch (const json::exception& e) {
      w->parse_error = e.what();
      return 0;
    }
    // No exception may cross libcurl's C frames: a throwing handler ends the watch with an error.
    bool more = false;
    try {
      more = (*w->on_event)(ev);
    } catch (const std::exception& e) {
      w->parse_error = std::string("event handler failed: ") + e.what();
      return 0;
    } catch (...) {
      w->parse_error = "event handler failed";
      return 0;
    }
    if (!more) {
      w->ended_by_caller = true;
      return 0;
    }
  }
  if (w->buf.size() > 16 * 1024 * 1024) return 0;  // one event this large is not an API object
  return size * n;
}

int WatchProgress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* w = static_cast<WatchState*>(p);
  if (w->stop && w->stop->load()) return 1;
  if (w->provider && (*w->provider)() != w->cert) {
    w->ended_by_caller = true;
    return 1;
  }
  return 0;
}

class ApiClientImpl : public ApiClient {
 public:
  ApiClientImpl(RestConfig c, ClientOptions o)
      : c_(std::move(c)), o_(std::move(o)), limiter_(o_.qps, o_.burst), log_(log::Get("api_client")) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  ~ApiClientImpl() override {
    for (CURL* h : pool_) curl_easy_cleanup(h);
  }

  absl::StatusOr<json> Get(const std::string& path) override { return Do("GET", path, "", ""); }
  absl::StatusOr<json> Create(const std::string& path, const json& obj) override {
    return Do("POST", path, DumpJSON(obj), "application/json");
  }
  absl::StatusOr<json> Update(const std::string& path, const json& obj) override {
    return Do("PUT", path, DumpJSON(obj), "application/json");
  }
  absl::StatusOr<json> Patch(const std::string& path, const json& patch, PatchType type) override {
    const char* ct = type == PatchType::kMerge            ? "application/merge-patch+json"
                     : type == PatchType::kStrategicMerge ? "application/strategic-merge-patch+json"
                                                          : "application/json-patch+json";
    return Do("PATCH", path, DumpJSON(patch), ct);
  }
  absl::Status Delete(const std::string& path, const json& options) override {
    auto r = Do("DELETE", path, options.is_null() ? "" : DumpJSON(options), options.is_null() ? "" : "application/json");
    return r.status();
  }

  absl::Status Watch(const std::string& path, const std::function<bool(const json&)>& on_event,
                     const std::atomic<bool>* stop) override {
    limiter_.Acquire();
    ++requests_;
    CURL* h = curl_easy_init();
    WatchState w;
    w.on_event = &on_event;
    w.stop = stop;
    if (c_.cert_provider) {
      w.provider = &c_.cert_provider;
      w.cert = c_.cert_provider();
    }
    curl_slist* headers = Setup(h, "GET", path, "", "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 0L);
    // A silent, dead connection is noticed within watch_idle_timeout (the caller re-opens the watch from its
    // resourceVersion); TCP keepalive probes catch a peer that vanished sooner still.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     std::max<long>(1, static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(o_.watch_idle_timeout).count())));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WatchWrite);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, WatchProgress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &w);
    auto [rc, code] = Perform(h, headers);
    curl_easy_cleanup(h);
    if (w.ended_by_caller || (stop && stop->load())) return absl::OkStatus();
    if (!w.parse_error.empty()) return absl::DataLossError("watch " + path + ": bad event: " + w.parse_error);
    if (rc == CURLE_OPERATION_TIMEDOUT)
      return absl::DeadlineExceededError("watch " + path + ": nothing received for " +
                                         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(o_.watch_idle_timeout).count()) + "s");
    if (code >= 400) return FromResponse("GET", path, code, w.buf);
    if (rc != CURLE_OK) return absl::UnavailableError("watch " + path + ": " + curl_easy_strerror(rc));
    return absl::OkStatus();
  }

  int64_t RequestCount() const override { return requests_.load(); }

 private:
  static inline const std::string kNone;
  curl_slist* Setup(CURL* h, const std::string& method, const std::string& path, const std::string& body,
                    const std::string& content_type) {
    std::string url = c_.server + path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (getenv("KUBELET_CURL_VERBOSE")) curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "GET") curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
      curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body.c_str());
    }
    curl_easy_setopt(h, CURLOPT_USERAGENT, o_.user_agent.c_str());
    if (c_.insecure_skip_tls_verify) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (!c_.ca_pem.empty()) {
      curl_blob ca{const_cast<char*>(c_.ca_pem.data()), c_.ca_pem.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    }
    // A rotating certificate is read now; curl keys connection reuse on it, so a new one gets new connections.
    std::shared_ptr<const TLSCertificate> rotating = c_.cert_provider ? c_.cert_provider() : nullptr;
    const std::string& cert_pem = c_.cert_provider ? (rotating ? rotating->cert_pem : kNone) : c_.client_cert_pem;
    const std::string& key_pem = c_.cert_provider ? (rotating ? rotating->key_pem : kNone) : c_.client_key_pem;
    if (!cert_pem.empty()) {
      curl_blob cert{const_cast<char*>(cert_pem.data()), cert_pem.size(), CURL_BLOB_COPY};
      curl_blob key{const_cast<char*>(key_pem.data()), key_pem.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
      curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
    // No "Expect: 100-continue" round trip before larger bodies (status patches): it costs a wait per request.
    headers = curl_slist_append(headers, "Expect:");
    if (!content_type.empty()) headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
    std::string token = c_.bearer_token;
    if (!c_.token_file.empty()) {
      // Re-read each time: projected and rotated tokens change under us.
      std::ifstream in(c_.token_file);
      std::stringstream ss;
      ss << in.rdbuf();
      token = ss.str();
      while (!token.empty() && isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
    }
    if (!token.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    return headers;
  }

  CURL* Take() {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (pool_.empty()) return curl_easy_init();
    CURL* h = pool_.back();
    pool_.pop_back();
    curl_easy_reset(h);  // keeps the handle's open connections for reuse
    return h;
  }
  void Give(CURL* h) {
    std::lock_guard<std::mutex> l(pool_mu_);
    if (pool_.size() < 8) {
      pool_.push_back(h);
    } else {
      curl_easy_cleanup(h);
    }
  }

  absl::StatusOr<json> Do(const std::string& method, const std::string& path, const std::string& body,
                          const std::string& content_type) {
    Duration backoff = o_.initial_backoff;
    thread_local std::mt19937 rng{std::random_device{}()};
    for (int attempt = 0;; ++attempt) {
      limiter_.Acquire();
      ++requests_;
      CURL* h = Take();
      std::string resp;
      std::map<std::string, std::string> headers;
      curl_slist* hl = Setup(h, method, path, body, content_type);
      curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(o_.timeout).count()));
      curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, AppendBody);
      curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
      curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, CaptureHeader);
      curl_easy_setopt(h, CURLOPT_HEADERDATA, &headers);
      auto [rc, code] = Perform(h, hl);
      Give(h);
      bool retry = rc != CURLE_OK || code == 429 || (code >= 500 && code != 501);
      if (!retry) {
        if (code >= 200 && code < 300) {
          if (resp.empty()) return json(nullptr);
          try {
            return json::parse(resp);
          } catch (const json::exception& e) {
            return absl::DataLossError(method + " " + path + ": response is not JSON: " + e.what());
          }
        }
        return FromResponse(method, path, code, resp);
      }
      absl::Status err = rc != CURLE_OK ? absl::UnavailableError(method + " " + path + ": " + curl_easy_strerror(rc))
                                        : FromResponse(method, path, code, resp);
      if (attempt >= o_.max_retries) return err;
      Duration wait = std::chrono::duration_cast<Duration>(backoff * std::uniform_real_distribution<double>(1.0, 1.5)(rng));
      if (auto it = headers.find("retry-after"); it != headers.end()) {
        long secs = std::strtol(it->second.c_str(), nullptr, 10);
        if (secs > 0) wait = std::max<Duration>(wait, std::chrono::seconds(std::min(secs, 60L)));
      }
      KLOG_V(log_, 2)("Retrying API request method={} path=\"{}\" attempt={} wait={}ms err=\"{}\"", method, path, attempt + 1,
                      std::chrono::duration_cast<std::chrono::milliseconds>(wait).count(), err.message());
      std::this_thread::sleep_for(wait);
      backoff = std::min<Duration>(backoff * 2, o_.max_backoff);
    }
  }

  RestConfig c_;
  ClientOptions o_;
  RateLimiter limiter_;
  std::shared_ptr<spdlog::logger> log_;
  std::mutex pool_mu_;
  std::vector<CURL*> pool_;
  std::atomic<int64_t> requests_{0};
};

}  // namespace

std::string StatusReason(const absl::Status& st) {
  auto p = st.GetPayload(kReasonPayload);
  return p ? std::string(*p) : "";
}

std::unique_ptr<ApiClient> NewApiClient(const RestConfig& config, const ClientOptions& options) {
  return std::make_unique<ApiClientImpl>(config, options);
}

}  // namespace kubelet::client

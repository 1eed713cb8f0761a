#include <curl/curl.h>

#include <condition_variable>

#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/util/logging.h"

namespace kubelet::config {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  // Guard against an endless or huge body: a PodList of 110 pods is far below this.
  if (s->size() + size * n > 64 * 1024 * 1024) return 0;
  s->append(data, size * n);
  return size * n;
}

class HTTPSource : public PodSource {
 public:
  HTTPSource(std::string url, std::map<std::string, std::vector<std::string>> headers, std::string node,
             Duration period, SnapshotFn fn)
      : url_(std::move(url)), headers_(std::move(headers)), node_(std::move(node)), period_(period), fn_(std::move(fn)),
        log_(log::Get("http_source")) {}
  ~HTTPSource() override { Stop(); }

  void Start() override {
    thread_ = std::thread([this] {
      log_->info("Adding pod source source=\"http\" url=\"{}\"", url_);
      while (true) {
        auto st = Poll();
        if (!st.ok() && st.message() != last_error_) {
          log_->error("Unable to read config from URL url=\"{}\" err=\"{}\"", url_, st.message());
        }
        last_error_ = st.ok() ? "" : std::string(st.message());
        std::unique_lock<std::mutex> l(mu_);
        if (cv_.wait_for(l, period_, [&] { return stop_; })) return;
      }
    });
  }

  void Stop() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  absl::Status Poll() {
    CURL* curl = curl_easy_init();
    if (!curl) return absl::InternalError("curl_easy_init failed");
    std::string body;
    curl_slist* hdrs = nullptr;
    for (const auto& [k, vs] : headers_)
      for (const auto& v : vs) hdrs = curl_slist_append(hdrs, (k + ": " + v).c_str());
    curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) return absl::UnavailableError(std::string("GET failed: ") + curl_easy_strerror(rc));
    if (code != 200) return absl::UnavailableError(url_ + " returned HTTP status " + std::to_string(code));
    if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
      // An empty answer still marks the source as seen, as upstream.
      fn_(api::kSourceHTTP, {});
      return absl::InvalidArgumentError("zero-length data received from " + url_);
    }
    auto doc = api::ParseDocument(body);
    if (!doc.ok()) return doc.status();
    std::vector<nlohmann::json> items;
    if (doc->is_object() && (api::StringField(*doc, "kind") == "PodList" || doc->contains("items"))) {
      const auto& arr = (*doc)["items"];
      if (!arr.is_array()) return absl::InvalidArgumentError("items: expected an array");
      for (const auto& it : arr) {
        nlohmann::json p = it;
        if (p.is_object() && !p.contains("kind")) p["kind"] = "Pod";
        if (p.is_object() && !p.contains("apiVersion")) p["apiVersion"] = "v1";
        items.push_back(p);
      }
    } else {
      items.push_back(*doc);
    }
    std::vector<api::Pod> pods;
    for (size_t i = 0; i < items.size(); ++i) {
      auto pod = PrepareStaticPod(items[i], url_, false, node_);
      if (!pod.ok()) {
        // Upstream rejects the whole response when one pod is invalid.
        return absl::InvalidArgumentError("pod " + std::to_string(i) + ": " + std::string(pod.status().message()));
      }
      pods.push_back(std::move(*pod));
    }
    fn_(api::kSourceHTTP, std::move(pods));
    return absl::OkStatus();
  }

  std::string url_;
  std::map<std::string, std::vector<std::string>> headers_;
  std::string node_;
  Duration period_;
  SnapshotFn fn_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string last_error_;
};

}  // namespace

std::unique_ptr<PodSource> NewHTTPSource(const std::string& url, const std::map<std::string, std::vector<std::string>>& headers,
                                         const std::string& node_name, Duration period, SnapshotFn fn) {
  return std::make_unique<HTTPSource>(url, headers, node_name, period, std::move(fn));
}

}  // namespace kubelet::config

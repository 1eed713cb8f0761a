#include "kubelet/client/reflector.h"

#include <random>

#include "kubelet/api/codec.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"

namespace kubelet::client {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;


constexpr milliseconds kInitialBackoff{500};
constexpr milliseconds kMaxBackoff{30000};

}  // namespace

Reflector::Reflector(ApiClient* api, std::string path, std::string selector, std::string what,
                     std::function<void(const Store&)> on_change)
    : api_(api),
      path_(std::move(path)),
      selector_(std::move(selector)),
      what_(std::move(what)),
      on_change_(std::move(on_change)),
      log_(log::Get("reflector")) {}

Reflector::~Reflector() { Stop(); }

void Reflector::Start() {
  thread_ = std::thread([this] {
    // An exception out of one round must not end the reflector: the next round lists again.
    while (!stop_flag_) {
      GuardedRun("reflector of " + what_, [this] { Run(); });
      if (!stop_flag_ && Sleep(milliseconds(1000))) break;
    }
  });
}

void Reflector::RequestStop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  stop_flag_ = true;
  cv_.notify_all();
}

void Reflector::Stop() {
  RequestStop();
  if (thread_.joinable()) thread_.join();
}

bool Reflector::Sleep(milliseconds d) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, d, [&] { return stop_; });
}

bool Reflector::List() {
  auto list = api_->Get(path_ + (selector_.empty() ? "" : "?" + selector_));
  if (!list.ok()) {
    log_->error("Failed to list {} from the API server err=\"{}\"", what_, list.status().message());
    return false;
  }
  objects_.clear();
  if (list->is_object() && list->contains("items") && (*list)["items"].is_array())
    for (const auto& o : (*list)["items"])
      if (std::string uid = api::MetaField(o, "uid"); !uid.empty()) objects_[uid] = o;
  rv_ = api::MetaField(*list, "resourceVersion");
  on_change_(objects_);
  return true;
}

void Reflector::Run() {
  std::mt19937 rng{std::random_device{}()};
  milliseconds backoff = kInitialBackoff;
  bool need_list = true;
  while (!stop_flag_) {
    if (need_list) {
      if (!List()) {
        if (Sleep(backoff)) return;
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      need_list = false;
      backoff = kInitialBackoff;
    }
    bool expired = false;
    // Upstream picks a watch timeout between 5 and 10 minutes so reflectors do not resync in step.
    int timeout = 300 + static_cast<int>(rng() % 300);
    std::string query = "watch=true&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout) +
                        "&resourceVersion=" + rv_ + (selector_.empty() ? "" : "&" + selector_);
    auto st = api_->Watch(
        path_ + "?" + query,
        [&](const json& ev) {
          static const json kNone = json::object();
          std::string type = api::StringField(ev, "type");
          const json& obj = ev.is_object() && ev.contains("object") && ev["object"].is_object() ? ev["object"] : kNone;
          if (type == "ERROR") {
            auto code = obj.find("code");
            if (code != obj.end() && code->is_number_integer() && code->get<int64_t>() == 410) expired = true;
            log_->info("Watch of {} ended by the API server reason=\"{}\" message=\"{}\"", what_,
                       api::StringField(obj, "reason"), api::StringField(obj, "message"));
            return false;
          }
          if (std::string rv = api::MetaField(obj, "resourceVersion"); !rv.empty()) rv_ = rv;
          if (type == "BOOKMARK") return true;
          std::string uid = api::MetaField(obj, "uid");
          if (uid.empty() || (type != "ADDED" && type != "MODIFIED" && type != "DELETED")) {
            log_->error("Watch of {} sent an event that is not an object event, skipping it type=\"{}\"", what_, type);
            return true;
          }
          if (type == "DELETED") {
            objects_.erase(uid);
          } else {
            objects_[uid] = obj;
          }
          on_change_(objects_);
          return true;
        },
        &stop_flag_);
    if (stop_flag_) return;
    if (expired) {
      need_list = true;
      continue;
    }
    if (st.code() == absl::StatusCode::kDeadlineExceeded) {
      // Nothing came for the idle timeout (a quiet cluster, or a dead connection): re-open from the same
      // resourceVersion at once, as a watch the server ended.
      KLOG_V(log_, 2)("Watch of {} was idle, re-opening it err=\"{}\"", what_, st.message());
      backoff = kInitialBackoff;
      continue;
    }
    if (!st.ok()) {
      log_->warn("Watch of {} failed, will retry err=\"{}\" retryIn=\"{}ms\"", what_, st.message(), backoff.count());
      if (StatusReason(st) == "Expired" || st.code() == absl::StatusCode::kOutOfRange) need_list = true;
      if (Sleep(backoff)) return;
      backoff = std::min(backoff * 2, kMaxBackoff);
    } else {
      backoff = kInitialBackoff;
    }
  }
}

}  // namespace kubelet::client

#include "kubelet/events/recorder.h"

#include "kubelet/util/logging.h"

namespace kubelet::events {

LoggingRecorder::LoggingRecorder(size_t capacity) : capacity_(capacity) {}

void LoggingRecorder::PodEvent(const api::Pod& pod, const std::string& type, const std::string& reason,
                               const std::string& message) {
  static auto logger = log::Get("events");
  std::string object = pod.metadata.namespace_ + "/" + pod.metadata.name;
  if (type == kWarning) {
    logger->warn("Event occurred object=\"{}\" kind=\"Pod\" type=\"{}\" reason=\"{}\" message=\"{}\"", object, type, reason, message);
  } else {
    KLOG_V(logger, 2)("Event occurred object=\"{}\" kind=\"Pod\" type=\"{}\" reason=\"{}\" message=\"{}\"", object, type, reason, message);
  }
  std::lock_guard<std::mutex> l(mu_);
  events_.push_back(Event{object, pod.metadata.uid, type, reason, message, std::chrono::system_clock::now()});
  while (events_.size() > capacity_) events_.pop_front();
}

std::vector<Event> LoggingRecorder::Recent() const {
  std::lock_guard<std::mutex> l(mu_);
  return {events_.begin(), events_.end()};
}

}  // namespace kubelet::events

#include <cstdio>

#include "kubelet/client/api_client.h"

namespace kubelet::events {

APIRecorder::APIRecorder(client::ApiClient* api, std::string node_name, double qps, int burst)
    : LoggingRecorder(256), api_(api), node_(std::move(node_name)), qps_(qps), tokens_(burst), burst_(burst) {
  thread_ = std::thread([this] { Loop(); });
}

APIRecorder::~APIRecorder() {
  {
    std::lock_guard<std::mutex> l(qmu_);
    stop_ = true;
  }
  qcv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void APIRecorder::PodEvent(const api::Pod& pod, const std::string& type, const std::string& reason,
                           const std::string& message) {
  LoggingRecorder::PodEvent(pod, type, reason, message);
  nlohmann::json involved = {{"kind", "Pod"}, {"namespace", pod.metadata.namespace_}, {"name", pod.metadata.name},
                             {"uid", pod.metadata.uid}, {"apiVersion", "v1"}};
  Enqueue({involved, pod.metadata.namespace_, type, reason, message, std::chrono::system_clock::now()});
}

void APIRecorder::NodeEvent(const std::string& node_uid, const std::string& type, const std::string& reason,
                            const std::string& message) {
  nlohmann::json involved = {{"kind", "Node"}, {"name", node_}, {"uid", node_uid.empty() ? node_ : node_uid}};
  Enqueue({involved, "default", type, reason, message, std::chrono::system_clock::now()});
}

void APIRecorder::Enqueue(Pending p) {
  static auto logger = log::Get("events");
  std::lock_guard<std::mutex> l(qmu_);
  if (queue_.size() >= 1000) {
    logger->warn("Event queue is full, dropping event reason=\"{}\" object=\"{}\"", p.reason, p.involved.value("name", ""));
    return;
  }
  queue_.push_back(std::move(p));
  qcv_.notify_all();
}

void APIRecorder::Flush() {
  std::unique_lock<std::mutex> l(qmu_);
  qcv_.wait_for(l, std::chrono::seconds(60), [&] { return queue_.empty() && !busy_; });
}

void APIRecorder::Loop() {
  std::unique_lock<std::mutex> l(qmu_);
  while (true) {
    qcv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    l.unlock();
    // Token bucket: eventRecordQPS with eventBurst.
    auto now = std::chrono::steady_clock::now();
    tokens_ = std::min<double>(burst_, tokens_ + std::chrono::duration<double>(now - last_refill_).count() * qps_);
    last_refill_ = now;
    if (tokens_ < 1 && qps_ > 0) std::this_thread::sleep_for(std::chrono::duration<double>((1 - tokens_) / qps_));
    tokens_ -= 1;
    Send(p);
    l.lock();
    busy_ = false;
    qcv_.notify_all();
  }
}

void APIRecorder::Send(const Pending& p) {
  static auto logger = log::Get("events");
  std::string key = p.involved.dump() + "|" + p.type + "|" + p.reason + "|" + p.message;
  std::string base = "/api/v1/namespaces/" + p.ns + "/events";
  std::string ts = FormatRFC3339(p.time);
  auto it = seen_.find(key);
  if (it != seen_.end() && p.time - std::get<2>(it->second) < std::chrono::minutes(10)) {
    int count = ++std::get<1>(it->second);
    auto r = api_->Patch(base + "/" + std::get<0>(it->second), {{"count", count}, {"lastTimestamp", ts}},
                         client::PatchType::kMerge);
    if (r.ok()) return;
    if (r.status().code() != absl::StatusCode::kNotFound) {
      logger->warn("Unable to update event reason=\"{}\" err=\"{}\"", p.reason, r.status().message());
      return;
    }
    seen_.erase(it);  // expired on the server: create it anew
  }
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), ".%llx", static_cast<unsigned long long>(ToUnixNanos(p.time)));
  std::string name = p.involved.value("name", "") + suffix;
  nlohmann::json ev = {{"apiVersion", "v1"},
                       {"kind", "Event"},
                       {"metadata", {{"name", name}, {"namespace", p.ns}}},
                       {"involvedObject", p.involved},
                       {"reason", p.reason},
                       {"message", p.message},
                       {"type", p.type},
                       {"source", {{"component", "kubelet"}, {"host", node_}}},
                       {"firstTimestamp", ts},
                       {"lastTimestamp", ts},
                       {"count", 1},
                       {"reportingComponent", "kubelet"},
                       {"reportingInstance", node_}};
  auto r = api_->Create(base, ev);
  if (!r.ok()) {
    logger->warn("Unable to write event reason=\"{}\" err=\"{}\"", p.reason, r.status().message());
    return;
  }
  if (seen_.size() > 4096) seen_.clear();
  seen_[key] = {name, 1, p.time};
}

}  // namespace kubelet::events

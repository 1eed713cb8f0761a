#include "kubelet/events/recorder.h"
#include "kubelet/util/guard.h"

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
  thread_ = std::thread([this] { GuardedRun("recorder Loop", [this] { Loop(); }); });
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
  api::ObjectReference involved;
  involved.kind = "Pod";
  involved.namespace_ = pod.metadata.namespace_;
  involved.name = pod.metadata.name;
  involved.uid = pod.metadata.uid;
  involved.api_version = "v1";
  Enqueue({involved, pod.metadata.namespace_, type, reason, message, std::chrono::system_clock::now()});
}

void APIRecorder::NodeEvent(const std::string& type, const std::string& reason, const std::string& message) {
  api::ObjectReference involved;
  involved.kind = "Node";
  involved.name = node_;
  involved.uid = node_;
  Enqueue({involved, "default", type, reason, message, std::chrono::system_clock::now()});
}

void APIRecorder::Enqueue(Pending p) {
  static auto logger = log::Get("events");
  std::lock_guard<std::mutex> l(qmu_);
  if (queue_.size() >= 1000) {
    logger->warn("Event queue is full, dropping event reason=\"{}\" object=\"{}\"", p.reason, p.involved.name);
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
  const api::ObjectReference& o = p.involved;
  std::string key = o.kind + "|" + o.namespace_ + "|" + o.name + "|" + o.uid + "|" + p.type + "|" + p.reason + "|" + p.message;
  std::string base = "/api/v1/namespaces/" + p.ns + "/events";
  auto it = seen_.find(key);
  if (it != seen_.end() && p.time - std::get<2>(it->second) < std::chrono::minutes(10)) {
    int count = ++std::get<1>(it->second);
    auto r = api_->Patch(base + "/" + std::get<0>(it->second), {{"count", count}, {"lastTimestamp", FormatRFC3339(p.time)}},
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
  api::Event ev;
  ev.metadata.name = o.name + suffix;
  ev.metadata.namespace_ = p.ns;
  ev.involved_object = o;
  ev.reason = p.reason;
  ev.message = p.message;
  ev.type = p.type;
  ev.source = {"kubelet", node_};
  ev.first_timestamp = ev.last_timestamp = p.time;
  ev.count = 1;
  ev.reporting_component = "kubelet";
  ev.reporting_instance = node_;
  auto r = api_->Create(base, api::EncodeEvent(ev));
  if (!r.ok()) {
    logger->warn("Unable to write event reason=\"{}\" err=\"{}\"", p.reason, r.status().message());
    return;
  }
  if (seen_.size() > 4096) seen_.clear();
  seen_[key] = {ev.metadata.name, 1, p.time};
}

}  // namespace kubelet::events

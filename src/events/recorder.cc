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

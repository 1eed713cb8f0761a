#pragma once
// Where pod and node events go. Standalone, events are logged and the latest
// few kept for inspection; with an API server (a later manager) they become
// core/v1 Events.
#include <condition_variable>
#include <deque>
#include <map>
#include <thread>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kubelet/api/objects.h"
#include "kubelet/api/types.h"

namespace kubelet::events {

inline constexpr char kNormal[] = "Normal";
inline constexpr char kWarning[] = "Warning";

// Upstream event reasons (pkg/kubelet/events).
inline constexpr char kPulling[] = "Pulling";
inline constexpr char kPulled[] = "Pulled";
inline constexpr char kFailed[] = "Failed";
inline constexpr char kBackOff[] = "BackOff";
inline constexpr char kErrImageNeverPull[] = "ErrImageNeverPull";
inline constexpr char kCreated[] = "Created";
inline constexpr char kStarted[] = "Started";
inline constexpr char kKilling[] = "Killing";
inline constexpr char kSandboxChanged[] = "SandboxChanged";
inline constexpr char kFailedCreatePodSandBox[] = "FailedCreatePodSandBox";
inline constexpr char kFailedMount[] = "FailedMount";
inline constexpr char kFailedValidation[] = "FailedValidation";
inline constexpr char kMissingClusterDNS[] = "MissingClusterDNS";

struct Event {
  std::string object;  // "namespace/name"
  std::string uid;
  std::string type;
  std::string reason;
  std::string message;
  TimePoint time;
};

class EventRecorder {
 public:
  virtual ~EventRecorder() = default;
  virtual void PodEvent(const api::Pod& pod, const std::string& type, const std::string& reason,
                        const std::string& message) = 0;
};

/** Logs each event and keeps the newest `capacity` in memory. */
class LoggingRecorder : public EventRecorder {
 public:
  explicit LoggingRecorder(size_t capacity = 256);
  void PodEvent(const api::Pod& pod, const std::string& type, const std::string& reason,
                const std::string& message) override;
  std::vector<Event> Recent() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::deque<Event> events_;
};

}  // namespace kubelet::events

namespace kubelet::client {
class ApiClient;
}

namespace kubelet::events {

/**
 * Events to the API server as core/v1 Events (source component "kubelet"),
 * aggregated as upstream's correlator does (the same object, reason and
 * message within 10 minutes bump count and lastTimestamp of one Event),
 * rate-limited by eventRecordQPS/eventBurst, sent from a bounded queue (past
 * 1000 queued events new ones are dropped with a log line). Also logs and
 * keeps recent events like LoggingRecorder.
 */
class APIRecorder : public LoggingRecorder {
 public:
  APIRecorder(client::ApiClient* api, std::string node_name, double qps, int burst);
  ~APIRecorder() override;
  void PodEvent(const api::Pod& pod, const std::string& type, const std::string& reason,
                const std::string& message) override;
  /** An event about this node; as upstream, its involvedObject's uid is the node's name, not the Node's UID. */
  void NodeEvent(const std::string& type, const std::string& reason, const std::string& message);
  /** Sends what is queued; for tests. */
  void Flush();

 private:
  struct Pending {
    api::ObjectReference involved;
    std::string ns, type, reason, message;
    TimePoint time;
  };
  void Enqueue(Pending p);
  void Loop();
  void Send(const Pending& p);

  client::ApiClient* api_;
  std::string node_;
  double qps_;
  double tokens_;
  int burst_;
  std::chrono::steady_clock::time_point last_refill_ = std::chrono::steady_clock::now();
  std::mutex qmu_;
  std::condition_variable qcv_;
  std::deque<Pending> queue_;
  bool stop_ = false;
  bool busy_ = false;
  // key -> (event name, count, first time): the correlator's cache, bounded.
  std::map<std::string, std::tuple<std::string, int, TimePoint>> seen_;
  std::thread thread_;
};

}  // namespace kubelet::events

#pragma once
// Where pod and node events go. Standalone, events are logged and the latest
// few kept for inspection; with an API server (a later manager) they become
// core/v1 Events.
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

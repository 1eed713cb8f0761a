#pragma once
// Image garbage collection, as upstream's image GC manager: the kubelet
// remembers when it first saw each image and when a container last used it;
// when the image filesystem is fuller than imageGCHighThresholdPercent it
// removes unused images, least recently used first, until usage is back to
// imageGCLowThresholdPercent. Images younger than imageMinimumGCAge, images a
// container (running or not) refers to, and pinned images (the CRI pinned
// flag, the sandbox image) are never removed. imageMaximumGCAge removes
// images unused for that long whatever the usage. A round runs at start and
// every 5 minutes after.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <absl/status/statusor.h>

#include "kubelet/cri/runtime_service.h"
#include "kubelet/stats/provider.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/logging.h"

namespace kubelet::images {

struct ImageGCPolicy {
  int high_threshold_percent = 85;
  int low_threshold_percent = 80;
  Duration min_age = std::chrono::minutes(2);
  Duration max_age = Duration::zero();  // 0: off
  Duration period = std::chrono::minutes(5);
};

struct ImageGCDeps {
  cri::ImageService* images = nullptr;
  cri::RuntimeService* runtime = nullptr;
  const Clock* clock = nullptr;
  /** The image filesystem's capacity and availability (the stats provider's imageFs). */
  std::function<absl::StatusOr<stats::FsStats>()> image_fs;
  /** Node events (FreeDiskSpaceFailed). */
  std::function<void(const std::string& type, const std::string& reason, const std::string& message)> node_event;
  /** Image references never removed besides those the runtime pins (the sandbox image). */
  std::vector<std::string> pinned;
};

class ImageGCManager {
 public:
  ImageGCManager(ImageGCDeps deps, ImageGCPolicy policy);
  ~ImageGCManager();
  void Start();
  void Stop();
  /** Records the images the runtime has and those containers use. */
  absl::Status DetectImages();
  /** One round of the threshold policy (and the maximum age). */
  absl::Status GarbageCollect();
  /** Every unused image past the minimum age (the eviction manager's disk reclaim); bytes freed. */
  absl::StatusOr<int64_t> DeleteUnusedImages();
  /** How many images the manager remembers (bounded by what the runtime has). */
  size_t Records() const;

 private:
  struct Record {
    TimePoint first_detected{};
    TimePoint last_used{};
    int64_t size = 0;
    bool pinned = false;
    std::string name;  // first repo tag, for logs
  };
  // Images not in use now, with their records.
  absl::StatusOr<std::vector<std::pair<std::string, Record>>> Unused(TimePoint now);
  absl::Status DetectImagesAt(TimePoint now);
  absl::StatusOr<int64_t> FreeSpace(int64_t bytes, TimePoint now);
  void Loop();
  ImageGCDeps d_;
  ImageGCPolicy p_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::map<std::string, Record> records_;  // image ID -> record
  std::set<std::string> in_use_;
  std::mutex loop_mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kubelet::images

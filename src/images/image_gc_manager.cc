#include "kubelet/images/image_gc_manager.h"
#include "kubelet/util/guard.h"

#include <algorithm>
#include <limits>

namespace kubelet::images {

namespace rt = ::runtime::v1;

ImageGCManager::ImageGCManager(ImageGCDeps deps, ImageGCPolicy policy)
    : d_(std::move(deps)), p_(policy), log_(log::Get("image_gc_manager")) {}

ImageGCManager::~ImageGCManager() { Stop(); }

void ImageGCManager::Start() {
  thread_ = std::thread([this] { GuardedRun("image_gc_manager Loop", [this] { Loop(); }); });
}

void ImageGCManager::Stop() {
  {
    std::lock_guard<std::mutex> l(loop_mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ImageGCManager::Loop() {
  // As upstream: a round at start, then one every period.
  std::unique_lock<std::mutex> l(loop_mu_);
  while (!stop_) {
    l.unlock();
    if (auto st = GarbageCollect(); !st.ok()) log_->error("Image garbage collection failed err=\"{}\"", st.message());
    l.lock();
    cv_.wait_for(l, p_.period, [this] { return stop_; });
  }
}

size_t ImageGCManager::Records() const {
  std::lock_guard<std::mutex> l(mu_);
  return records_.size();
}

absl::Status ImageGCManager::DetectImages() { return DetectImagesAt(d_.clock->Now()); }

absl::Status ImageGCManager::DetectImagesAt(TimePoint now) {
  auto images = d_.images->ListImages();
  if (!images.ok()) return images.status();
  auto containers = d_.runtime->ListContainers(nullptr);  // every container, running or not, pins its image
  if (!containers.ok()) return containers.status();
  std::set<std::string> used_refs;
  for (const auto& c : *containers) {
    used_refs.insert(c.image_ref());
    used_refs.insert(c.image().image());
  }
  std::lock_guard<std::mutex> l(mu_);
  std::map<std::string, Record> next;
  std::set<std::string> in_use;
  for (const auto& img : *images) {
    Record r;
    auto old = records_.find(img.id());
    if (old != records_.end()) r = old->second;
    else r.first_detected = now;
    r.size = static_cast<int64_t>(img.size());
    r.pinned = img.pinned();
    r.name = img.repo_tags_size() > 0 ? img.repo_tags(0) : img.id();
    bool used = used_refs.count(img.id()) > 0;
    for (const auto& tag : img.repo_tags()) {
      used |= used_refs.count(tag) > 0;
      for (const auto& p : d_.pinned) r.pinned |= tag == p;
    }
    for (const auto& digest : img.repo_digests()) used |= used_refs.count(digest) > 0;
    if (used) {
      r.last_used = now;
      in_use.insert(img.id());
    }
    next[img.id()] = r;
  }
  records_ = std::move(next);  // images the runtime no longer has are forgotten
  in_use_ = std::move(in_use);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, ImageGCManager::Record>>> ImageGCManager::Unused(TimePoint now) {
  // Detected at the same instant the ages are measured against, as upstream (a minimum age of 0 frees new images).
  if (auto st = DetectImagesAt(now); !st.ok()) return st;
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::pair<std::string, Record>> out;
  for (const auto& [id, r] : records_)
    if (!in_use_.count(id) && !r.pinned) out.emplace_back(id, r);
  // Least recently used first; never-used ones by when they were first seen.
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    if (a.second.last_used != b.second.last_used) return a.second.last_used < b.second.last_used;
    return a.second.first_detected < b.second.first_detected;
  });
  return out;
}

absl::StatusOr<int64_t> ImageGCManager::FreeSpace(int64_t bytes, TimePoint now) {
  auto unused = Unused(now);
  if (!unused.ok()) return unused.status();
  int64_t freed = 0;
  absl::Status first;
  for (const auto& [id, r] : *unused) {
    if (freed >= bytes) break;
    if (now - r.first_detected < p_.min_age) {
      KLOG_V(log_, 4)("Image ID was first detected too recently to remove imageID=\"{}\"", id);
      continue;
    }
    log_->info("Removing image to free bytes imageID=\"{}\" image=\"{}\" size={}", id, r.name, r.size);
    rt::ImageSpec spec;
    spec.set_image(id);
    if (auto st = d_.images->RemoveImage(spec); !st.ok()) {
      log_->error("Failed to remove image imageID=\"{}\" err=\"{}\"", id, st.message());
      if (first.ok()) first = st;
      continue;
    }
    freed += r.size;
    std::lock_guard<std::mutex> l(mu_);
    records_.erase(id);
  }
  if (freed == 0 && !first.ok()) return first;
  return freed;
}

absl::Status ImageGCManager::GarbageCollect() {
  TimePoint now = d_.clock->Now();
  // Images unused for longer than the maximum age go first, whatever the usage.
  if (p_.max_age > Duration::zero()) {
    auto unused = Unused(now);
    if (!unused.ok()) return unused.status();
    for (const auto& [id, r] : *unused) {
      TimePoint since = r.last_used == TimePoint{} ? r.first_detected : r.last_used;
      if (now - since <= p_.max_age) continue;
      log_->info("Removing image over the maximum GC age imageID=\"{}\" image=\"{}\"", id, r.name);
      rt::ImageSpec spec;
      spec.set_image(id);
      if (auto st = d_.images->RemoveImage(spec); !st.ok())
        log_->error("Failed to remove image imageID=\"{}\" err=\"{}\"", id, st.message());
    }
  }
  auto fs = d_.image_fs();
  if (!fs.ok()) return fs.status();
  if (fs->capacity_bytes == 0) return absl::FailedPreconditionError("invalid capacity 0 on image filesystem");
  int64_t capacity = static_cast<int64_t>(fs->capacity_bytes), available = static_cast<int64_t>(fs->available_bytes);
  if (available > capacity) available = capacity;
  int64_t usage_percent = 100 - available * 100 / capacity;
  if (usage_percent < p_.high_threshold_percent) {
    if (auto st = DetectImagesAt(now); !st.ok()) return st;
    return absl::OkStatus();
  }
  int64_t to_free = capacity * (100 - p_.low_threshold_percent) / 100 - available;
  log_->info("Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold "
             "usage={} highThreshold={} amountToFree={} lowThreshold={}",
             usage_percent, p_.high_threshold_percent, to_free, p_.low_threshold_percent);
  auto freed = FreeSpace(to_free, now);
  if (!freed.ok()) return freed.status();
  if (*freed < to_free) {
    std::string msg = "Failed to garbage collect required amount of images. Attempted to free " + std::to_string(to_free) +
                      " bytes, but only found " + std::to_string(*freed) + " bytes eligible to free.";
    if (d_.node_event) d_.node_event("Warning", "FreeDiskSpaceFailed", msg);
    return absl::ResourceExhaustedError(msg);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ImageGCManager::DeleteUnusedImages() {
  log_->info("Attempting to delete unused images");
  return FreeSpace(std::numeric_limits<int64_t>::max(), d_.clock->Now());
}

}  // namespace kubelet::images

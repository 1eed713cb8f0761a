#include "kubelet/volumemanager/volume_manager.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <thread>
#include <cstring>
#include <filesystem>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <set>

#include "kubelet/api/fieldpath.h"
#include "kubelet/api/node_selector.h"
#include "kubelet/api/quantity.h"
#include "kubelet/api/codec.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/file.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/logging.h"
#include "kubelet/util/mount.h"
#include "kubelet/volumemanager/atomic_writer.h"
#include "kubelet/volumemanager/csi.h"

namespace kubelet::volumemanager {
namespace {

namespace fs = std::filesystem;

using mount::IsMountPoint;
using mount::MountsUnder;

absl::Status CheckHostPath(const api::HostPathVolumeSource& hp) {
  struct stat st {};
  bool exists = ::stat(hp.path.c_str(), &st) == 0;
  const std::string& t = hp.type;
  auto wrong = [&](const char* what) {
    return absl::FailedPreconditionError("hostPath type check failed: " + hp.path + " is not a " + what);
  };
  if (t.empty()) return absl::OkStatus();
  if (t == "DirectoryOrCreate") {
    if (!exists) {
      std::error_code ec;
      fs::create_directories(hp.path, ec);
      if (ec) return absl::InternalError("hostPath: cannot create directory " + hp.path + ": " + ec.message());
      ::chmod(hp.path.c_str(), 0755);
      return absl::OkStatus();
    }
    return S_ISDIR(st.st_mode) ? absl::OkStatus() : wrong("directory");
  }
  if (t == "FileOrCreate") {
    if (!exists) {
      int fd = ::open(hp.path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return absl::InternalError("hostPath: cannot create file " + hp.path + ": " + std::strerror(errno));
      ::close(fd);
      return absl::OkStatus();
    }
    return S_ISREG(st.st_mode) ? absl::OkStatus() : wrong("file");
  }
  if (!exists) return absl::NotFoundError("hostPath type check failed: " + hp.path + " does not exist");
  if (t == "Directory") return S_ISDIR(st.st_mode) ? absl::OkStatus() : wrong("directory");
  if (t == "File") return S_ISREG(st.st_mode) ? absl::OkStatus() : wrong("file");
  if (t == "Socket") return S_ISSOCK(st.st_mode) ? absl::OkStatus() : wrong("socket");
  if (t == "CharDevice") return S_ISCHR(st.st_mode) ? absl::OkStatus() : wrong("character device");
  if (t == "BlockDevice") return S_ISBLK(st.st_mode) ? absl::OkStatus() : wrong("block device");
  return absl::InvalidArgumentError("hostPath: unknown type " + t);
}

bool IsHugePagesMedium(const std::string& medium) { return medium == "HugePages" || medium.rfind("HugePages-", 0) == 0; }

// The hugetlbfs pagesize option for an emptyDir of medium HugePages or HugePages-<size>, from the pod's requests of
// hugepages-<size> (init containers too), with upstream's errors.
absl::StatusOr<std::string> HugePageSizeMountOption(const std::string& medium, const api::Pod& pod) {
  std::optional<int64_t> medium_size;
  if (medium != "HugePages") {
    std::string text = medium.substr(std::string("HugePages-").size());
    auto q = api::ParseQuantity(text);
    if (!q.ok()) return absl::InvalidArgumentError("invalid hugepages medium size " + text + ": " + std::string(q.status().message()));
    medium_size = q->Value();
  }
  std::optional<std::pair<int64_t, std::string>> found;  // bytes, as the resource name writes it
  for (const auto* list : {&pod.spec.containers, &pod.spec.init_containers}) {
    for (const auto& c : *list) {
      for (const auto& [name, value] : c.resources.requests) {
        if (name.rfind("hugepages-", 0) != 0) continue;
        std::string text = name.substr(std::string("hugepages-").size());
        auto size = api::ParseQuantity(text);
        if (!size.ok()) return absl::InvalidArgumentError("invalid hugepages resource name " + name);
        if (!medium_size) {
          if (found && found->first != size->Value())
            return absl::InvalidArgumentError("medium: " + medium + " can't be used if container requests multiple huge page sizes");
          found = {size->Value(), text};
        } else if (size->Value() == *medium_size) {
          found = {size->Value(), text};
        }
      }
    }
  }
  if (!found)
    return absl::InvalidArgumentError("medium " + medium + ": hugePages storage requested, but there is no resource request for huge pages");
  return "pagesize=" + found->second;
}

// fsGroup ownership, as upstream's SetVolumeOwnership: group fsGroup, group read (and write, unless the volume is
// read-only by nature, as configMap and secret volumes are; execute where the owner has it), setgid on directories
// so new files inherit the group. fsGroupChangePolicy OnRootMismatch skips the walk when the root already shows it.
absl::Status ApplyFSGroup(const api::Pod& pod, const std::string& dir, bool read_only = false) {
  if (!pod.spec.security_context.fs_group) return absl::OkStatus();
  gid_t gid = static_cast<gid_t>(*pod.spec.security_context.fs_group);
  const mode_t mask = read_only ? (S_IRGRP | S_IXGRP) : (S_IRGRP | S_IWGRP | S_IXGRP);
  struct stat root {};
  if (::stat(dir.c_str(), &root) != 0) return absl::InternalError("stat " + dir + ": " + std::strerror(errno));
  if (pod.spec.security_context.fs_group_change_policy == "OnRootMismatch" && root.st_gid == gid &&
      (root.st_mode & S_ISGID) && (root.st_mode & mask) == mask)
    return absl::OkStatus();
  auto fix = [&](const std::string& path) -> absl::Status {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return absl::InternalError("stat " + path + ": " + std::strerror(errno));
    if (::lchown(path.c_str(), static_cast<uid_t>(-1), gid) != 0)
      return absl::InternalError("chown " + path + ": " + std::strerror(errno));
    if (S_ISLNK(st.st_mode)) return absl::OkStatus();
    mode_t mode = st.st_mode | S_IRGRP | (read_only ? 0 : S_IWGRP);
    if (st.st_mode & S_IXUSR) mode |= S_IXGRP;
    if (S_ISDIR(st.st_mode)) mode |= S_IXGRP | S_ISGID;
    if (::chmod(path.c_str(), mode & 07777) != 0) return absl::InternalError("chmod " + path + ": " + std::strerror(errno));
    return absl::OkStatus();
  };
  if (auto st = fix(dir); !st.ok()) return st;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end; !ec && it != end; it.increment(ec))
    if (auto st = fix(it->path().string()); !st.ok()) return st;
  return absl::OkStatus();
}

using json = nlohmann::json;
using Payload = std::map<std::string, FileProjection>;

TimePoint Now(const VolumeDeps& d) { return d.clock ? d.clock->Now() : std::chrono::system_clock::now(); }

int ModeOf(const std::optional<int32_t>& item, const std::optional<int32_t>& fallback) {
  return item ? *item : fallback ? *fallback : 0644;
}

// The object's files as upstream's configMap/secret volume plugins make them: every key (or the listed items),
// configMap data and binaryData, secret data base64-decoded.
absl::Status ObjectPayload(const VolumeDeps& d, bool secret, const std::string& ns, const std::string& name,
                           const std::vector<api::KeyToPath>& items, bool optional, std::optional<int32_t> default_mode,
                           Payload* out) {
  const std::string kind = secret ? "secret" : "configmap";
  if (!d.get_object) return absl::FailedPreconditionError("no API server to read " + kind + " \"" + name + "\" from");
  auto obj = d.get_object(secret ? "secrets" : "configmaps", ns, name);
  if (!obj.ok()) {
    if (obj.status().code() == absl::StatusCode::kNotFound) {
      if (optional) return absl::OkStatus();
      return absl::NotFoundError(kind + " \"" + name + "\" not found");
    }
    return obj.status();
  }
  std::map<std::string, std::string> data;
  auto take = [&](const char* field, bool base64) -> absl::Status {
    if (!obj->is_object() || !obj->contains(field) || !(*obj)[field].is_object()) return absl::OkStatus();
    for (auto it = (*obj)[field].begin(); it != (*obj)[field].end(); ++it) {
      if (!it.value().is_string()) return absl::InvalidArgumentError(kind + " \"" + name + "\": " + field + "." + it.key() + " is not a string");
      if (!base64) {
        data[it.key()] = it.value().get<std::string>();
        continue;
      }
      auto raw = Base64Decode(it.value().get<std::string>());
      if (!raw.ok()) return absl::InvalidArgumentError(kind + " \"" + name + "\": " + field + "." + it.key() + " is not base64");
      data[it.key()] = *raw;
    }
    return absl::OkStatus();
  };
  if (auto st = take("data", secret); !st.ok()) return st;
  if (!secret)
    if (auto st = take("binaryData", true); !st.ok()) return st;
  if (items.empty()) {
    for (const auto& [key, value] : data) (*out)[key] = {value, ModeOf(std::nullopt, default_mode)};
    return absl::OkStatus();
  }
  for (const auto& item : items) {
    auto it = data.find(item.key);
    if (it == data.end()) {
      if (optional) continue;
      return absl::NotFoundError(secret ? "secret references non-existent secret key: " + item.key
                                        : "configmap references non-existent config key: " + item.key);
    }
    (*out)[item.path] = {it->second, ModeOf(item.mode, default_mode)};
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DownwardValue(const VolumeDeps& d, const api::Pod& pod, const api::DownwardAPIVolumeFile& f) {
  if (!f.field_path.empty()) return api::ExtractFieldPathAsString(pod, f.field_path);
  if (!f.resource.empty()) {
    const api::Container* c = api::FindContainer(pod, f.resource_container);
    if (!c) return absl::InvalidArgumentError("resourceFieldRef: container \"" + f.resource_container + "\" not found");
    auto [milli, mem] = d.node_allocatable ? d.node_allocatable() : std::pair<int64_t, int64_t>{0, 0};
    return api::ExtractContainerResourceValue(*c, f.resource, f.divisor, milli, mem);
  }
  return absl::InvalidArgumentError("item \"" + f.path + "\" has neither fieldRef nor resourceFieldRef");
}

absl::Status DownwardPayload(const VolumeDeps& d, const api::Pod& pod, const api::DownwardAPIVolumeSource& src,
                             std::optional<int32_t> default_mode, Payload* out) {
  for (const auto& f : src.items) {
    auto v = DownwardValue(d, pod, f);
    if (!v.ok()) return v.status();
    (*out)[f.path] = {*v, ModeOf(f.mode, default_mode)};
  }
  return absl::OkStatus();
}

// The bound PersistentVolume of a claim, checked as upstream's desired-state populator checks it.
// The claim's bound PV; the claim itself in *claim_out when asked for (one read of it serves both).
absl::StatusOr<json> ClaimedVolume(const VolumeDeps& d, const std::string& ns, const api::PersistentVolumeClaimVolumeSource& src,
                                   json* claim_out = nullptr) {
  auto wrap = [&](const std::string& why) {
    return absl::FailedPreconditionError("error processing PVC " + ns + "/" + src.claim_name + ": " + why);
  };
  if (!d.get_object) return wrap("failed to fetch PVC from API server: no API server");
  auto pvc = d.get_object("persistentvolumeclaims", ns, src.claim_name);
  if (!pvc.ok()) return wrap("failed to fetch PVC from API server: " + std::string(pvc.status().message()));
  if (!pvc->is_object()) return wrap("failed to fetch PVC from API server: not an object");
  const json meta = pvc->value("metadata", json::object());
  if (meta.is_object() && meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null()) return wrap("PVC is being deleted");
  const json status = pvc->value("status", json::object());
  if (!status.is_object() || api::StringField(status, "phase") != "Bound") return wrap("PVC is not bound");
  const json spec = pvc->value("spec", json::object());
  std::string pv_name = spec.is_object() ? api::StringField(spec, "volumeName") : "";
  if (pv_name.empty()) return wrap("PVC has empty pvc.Spec.VolumeName");
  auto pv = d.get_object("persistentvolumes", "", pv_name);
  if (!pv.ok()) return wrap("failed to fetch PV " + pv_name + " from API server: " + std::string(pv.status().message()));
  const json pv_spec = pv->is_object() ? pv->value("spec", json::object()) : json::object();
  const json ref = pv_spec.is_object() ? pv_spec.value("claimRef", json(nullptr)) : json(nullptr);
  if (!ref.is_object())
    return wrap("found PV object " + pv_name + " but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim");
  std::string claim_uid = api::MetaField(*pvc, "uid");
  if (api::StringField(ref, "uid") != claim_uid)
    return wrap("found PV object " + pv_name + " but its pv.Spec.ClaimRef.UID " + api::StringField(ref, "uid") +
                " does not point to claim.UID " + claim_uid);
  if (claim_out) *claim_out = *pvc;
  return *pv;
}

constexpr auto kReconcilerPeriod = std::chrono::milliseconds(100);
constexpr auto kRetryInterval = std::chrono::milliseconds(300);  // upstream's podAttachAndMountRetryInterval
constexpr auto kInitialBackoff = std::chrono::milliseconds(500);
constexpr auto kMaxBackoff = std::chrono::milliseconds(2 * 60 * 1000 + 2000);
using Steady = std::chrono::steady_clock;

std::string GoList(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + v[i];
  return out + "]";
}

class VolumeManagerImpl : public VolumeManager {
 public:
  VolumeManagerImpl(std::string pods_dir, VolumeDeps deps)
      : pods_dir_(std::move(pods_dir)), deps_(std::move(deps)), tokens_(&deps_), log_(log::Get("volumemanager")) {
    Reconstruct();
    reconciler_ = std::thread([this] { GuardedRun("volume reconciler", [this] { Reconcile(); }); });
  }
  ~VolumeManagerImpl() override { Stop(); }

  void Stop() override {
    std::map<std::string, std::thread> ops;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      stop_ = true;
    }
    cv_.notify_all();
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [uid, a] : actual_) a.changed->notify_all();
    }
    if (reconciler_.joinable()) reconciler_.join();
    {
      std::lock_guard<std::mutex> l(mu_);
      ops.swap(ops_);
    }
    for (auto& [uid, t] : ops)
      if (t.joinable()) t.join();
  }

  absl::StatusOr<PodVolumes> WaitForAttachAndMount(const api::Pod& pod, std::chrono::milliseconds timeout) override {
    const std::string& uid = pod.metadata.uid;
    if (uid.empty() || uid.find('/') != std::string::npos) return absl::InvalidArgumentError("bad pod uid");
    auto deadline = Steady::now() + timeout;
    uint64_t generation;
    std::unique_lock<std::mutex> l(mu_);
    {
      DesiredPod& d = desired_[uid];
      d.pod = pod;
      generation = ++d.generation;
      ActualPod& a = actual_[uid];
      // A sync asks now: what it asks for is not held back by the reconciler's own retry back-off.
      if (a.retry_at > Steady::now()) a.retry_at = Steady::now();
      kicked_ = true;
    }
    cv_.notify_all();
    if (pod.spec.volumes.empty()) return PodVolumes{};
    std::shared_ptr<std::condition_variable> changed = actual_[uid].changed;
    OnCancel wake([changed] { changed->notify_all(); });
    for (;;) {
      ActualPod& a = actual_[uid];
      PodVolumes out;
      std::vector<std::string> unmounted;
      for (const auto& v : pod.spec.volumes) {
        auto it = a.mounted.find(v.name);
        if (it == a.mounted.end()) {
          unmounted.push_back(v.name);
        } else {
          out[v.name] = it->second;
        }
      }
      if (unmounted.empty()) return out;
      std::vector<std::string> not_processed;
      std::string pod_errors;
      for (const auto& [name, why] : a.failed_to_process) {
        not_processed.push_back(name);
        pod_errors += (pod_errors.empty() ? "" : "; ") + why;
      }
      std::vector<std::string> unattached;
      for (const auto& name : unmounted)
        if (a.unattached.count(name)) unattached.push_back(name);
      auto fail = [&](const std::string& why) {
        return absl::DeadlineExceededError("unmounted volumes=" + GoList(unmounted) + ", unattached volumes=" + GoList(unattached) +
                                           ", failed to process volumes=" + GoList(not_processed) + ": " + why);
      };
      // The populator's errors for this pod end the wait at once, as upstream's PopPodErrors.
      if (!pod_errors.empty() && a.processed_generation >= generation) return fail(pod_errors);
      if (CancelScope::Cancelled()) return absl::CancelledError("the pod's sync was cancelled while waiting for its volumes");
      if (stop_) return absl::CancelledError("volume manager stopped");
      if (Steady::now() >= deadline) return fail("timed out waiting for the condition");
      changed->wait_until(l, std::min(deadline, Steady::now() + kRetryInterval));
    }
  }

  void RemountPod(const std::string& uid) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = desired_.find(uid);
      if (it == desired_.end()) return;
      ++it->second.generation;
      kicked_ = true;
    }
    cv_.notify_all();
  }

  absl::Status UnmountVolumesForPod(const std::string& uid) override {
    if (uid.empty() || uid.find('/') != std::string::npos || uid == "." || uid == "..")
      return absl::InvalidArgumentError("bad pod uid");
    {
      std::lock_guard<std::mutex> l(mu_);
      desired_.erase(uid);
      if (auto it = actual_.find(uid); it != actual_.end() && it->second.busy)
        return absl::UnavailableError("volume operations of pod " + uid + " are still running");
      actual_.erase(uid);
    }
    tokens_.DeleteServiceAccountTokens(uid);
    std::string pod_dir = pods_dir_ + "/" + uid;
    // CSI volumes first, through their drivers (NodeUnpublishVolume, NodeUnstageVolume): a driver that is not
    // there makes the tear-down wait, and nothing below unmounts or removes what it published.
    if (deps_.csi)
      if (auto st = deps_.csi->TearDownPod(uid); !st.ok()) return absl::UnavailableError(st.message());
    // Never delete through a mount point: unmount what is mounted under the pod's folder, check, then remove.
    for (const auto& m : MountsUnder(pod_dir))
      if (::umount2(m.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
        return absl::InternalError("unmount " + m + ": " + std::strerror(errno));
    if (auto left = MountsUnder(pod_dir); !left.empty())
      return absl::FailedPreconditionError("pod " + uid + ": " + left[0] + " is still mounted, not removing the pod's folder");
    std::error_code ec;
    fs::remove_all(pod_dir, ec);
    if (ec) return absl::InternalError("remove pod dir for " + uid + ": " + ec.message());
    return absl::OkStatus();
  }

  bool ReconcilerStatesHasBeenSynced() const override { return synced_.load(); }

  std::vector<std::string> GetVolumesInUse() const override {
    std::lock_guard<std::mutex> l(mu_);
    std::set<std::string> names;
    for (const auto& [uid, a] : actual_) {
      for (const auto& [name, mv] : a.mounted)
        if (!mv.unique_name.empty()) names.insert(mv.unique_name);
      names.insert(a.in_use.begin(), a.in_use.end());
    }
    return {names.begin(), names.end()};
  }

  std::vector<VolumeStatsTarget> StatsTargets() const override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<VolumeStatsTarget> out;
    const std::string csi_dir = "/volumes/kubernetes.io~csi/";
    for (const auto& [uid, d] : desired_) {
      auto a = actual_.find(uid);
      if (a == actual_.end()) continue;
      for (const auto& v : d.pod.spec.volumes) {
        auto m = a->second.mounted.find(v.name);
        if (m == a->second.mounted.end()) continue;
        auto at = m->second.path.find(csi_dir);
        if (at == std::string::npos) continue;
        std::string rest = m->second.path.substr(at + csi_dir.size());
        VolumeStatsTarget t;
        t.pod_uid = uid;
        t.pod_namespace = d.pod.metadata.namespace_;
        t.pod_name = d.pod.metadata.name;
        t.name = v.name;
        if (v.persistent_volume_claim) t.pvc_name = v.persistent_volume_claim->claim_name;
        t.csi_spec_name = rest.substr(0, rest.find('/'));
        out.push_back(std::move(t));
      }
    }
    return out;
  }

  std::vector<std::string> PodsWithVolumes() const override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::string> out;
    for (const auto& [uid, a] : actual_)
      if (!a.mounted.empty()) out.push_back(uid);
    return out;
  }

 private:
  struct DesiredPod {
    api::Pod pod;
    uint64_t generation = 0;  // bumped by each sync's wait: contents to bring up to date
  };
  struct ActualPod {
    PodVolumes mounted;
    std::map<std::string, std::string> failed_to_process;  // volume -> why (claims not resolved, unknown kinds)
    std::map<std::string, std::string> errors;             // volume -> its last set-up error
    std::set<std::string> unattached;                      // volumes waiting for their VolumeAttachment
    std::set<std::string> in_use;                          // attachable volumes being set up (unique names)
    std::map<std::string, int64_t> expanded;               // volume -> the size NodeExpandVolume grew it to
    uint64_t synced_generation = 0;                        // the last generation every volume was set up for
    uint64_t processed_generation = 0;                     // the last generation an operation finished for
    bool busy = false;
    Steady::time_point retry_at{};
    std::chrono::milliseconds backoff{0};
    // The pod's waiters: woken when its operation ends, not by every other pod's.
    std::shared_ptr<std::condition_variable> changed = std::make_shared<std::condition_variable>();
  };

  // What is set up already, from the pod folders (upstream's reconstruction): a volume whose content or mount is
  // in place counts as mounted, so a restarted kubelet remounts and rewrites nothing, and containers keep running.
  void Reconstruct() {
    std::error_code ec;
    std::set<std::string> mounts;
    if (auto infos = mount::ListMountInfo(); infos.ok())
      for (const auto& m : *infos) mounts.insert(m.mount_point);
    size_t found = 0;
    for (fs::directory_iterator pods(pods_dir_, ec), end; !ec && pods != end; pods.increment(ec)) {
      std::string uid = pods->path().filename().string();
      std::error_code ec2;
      for (fs::directory_iterator plugins(pods->path() / "volumes", ec2); !ec2 && plugins != end; plugins.increment(ec2)) {
        std::string plugin = plugins->path().filename().string();
        std::error_code ec3;
        for (fs::directory_iterator vols(plugins->path(), ec3); !ec3 && vols != end; vols.increment(ec3)) {
          std::string dir = vols->path().string();
          bool tmpfs_kind = plugin == "kubernetes.io~secret" || plugin == "kubernetes.io~projected";
          bool ok = plugin == "kubernetes.io~empty-dir"
                        ? true
                        : (plugin == "kubernetes.io~configmap" || plugin == "kubernetes.io~downward-api" || tmpfs_kind) &&
                              fs::is_symlink(vols->path() / "..data", ec3) &&
                              (!tmpfs_kind || !deps_.tmpfs_for_secrets || mounts.count(dir));
          if (plugin == "kubernetes.io~local-volume") ok = mounts.count(dir) > 0;
          std::string volume_name = vols->path().filename().string();
          MountedVolume mv{dir, false, ""};
          if (plugin == "kubernetes.io~csi") {
            // Published by a driver: vol_data.json names the pod's volume, the driver and the handle.
            auto text = ReadFileToString(dir + "/vol_data.json");
            json data = text.ok() ? json::parse(*text, nullptr, false) : json();
            ok = data.is_object() && mounts.count(dir + "/mount") > 0 && !api::StringField(data, "podVolumeName").empty();
            if (ok) {
              volume_name = api::StringField(data, "podVolumeName");
              mv.path = dir + "/mount";
              mv.read_only = data.value("readOnly", false);
              mv.csi_driver = api::StringField(data, "driverName");
              if (!api::StringField(data, "attachmentID").empty())
                mv.unique_name = CSIUniqueVolumeName(api::StringField(data, "driverName"), api::StringField(data, "volumeHandle"));
            }
          }
          if (!ok) continue;
          actual_[uid].mounted[volume_name] = mv;
          ++found;
        }
      }
    }
    if (found) log_->info("Reconstructed volumes from disk pods={} volumes={}", actual_.size(), found);
  }

  void Reconcile() {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      // Finished operations are joined here, off the lock (operations finishing meanwhile go to the next round).
      std::vector<std::string> finished;
      finished.swap(finished_);
      for (const auto& uid : finished) {
        auto it = ops_.find(uid);
        if (it == ops_.end()) continue;
        std::thread t = std::move(it->second);
        ops_.erase(it);
        l.unlock();
        if (t.joinable()) t.join();
        l.lock();
      }
      auto now = Steady::now();
      for (auto& [uid, d] : desired_) {
        ActualPod& a = actual_[uid];
        if (a.busy || ops_.count(uid)) continue;
        bool all = true;
        for (const auto& v : d.pod.spec.volumes) all &= a.mounted.count(v.name) > 0;
        if ((all && a.synced_generation >= d.generation) || now < a.retry_at) continue;
        if (d.pod.spec.volumes.empty()) {
          a.synced_generation = a.processed_generation = d.generation;
          continue;
        }
        a.busy = true;
        ops_[uid] = std::thread([this, pod = d.pod, gen = d.generation, mounted = a.mounted] { Operate(pod, gen, mounted); });
      }
      synced_ = true;  // reconstruction and a first round are done
      cv_.wait_for(l, kReconcilerPeriod, [this] { return stop_ || kicked_ || !finished_.empty(); });
      kicked_ = false;
    }
  }

  // One pod's set-up, on its own thread: each volume is set up (or its content brought up to date); a failure is
  // reported by name and leaves what was set up before in place.
  void Operate(const api::Pod& pod, uint64_t generation, const PodVolumes& mounted) {
    PodVolumes done;
    std::map<std::string, std::string> failed, errors;
    std::set<std::string> unattached, in_use;
    for (const auto& v : pod.spec.volumes) {
      // Set up once: only the API-backed kinds follow their sources, and CSI volumes whose driver asks to be
      // published again (upstream's RequiresRemount).
      auto m = mounted.find(v.name);
      bool remount = v.config_map || v.secret || v.downward_api || v.projected ||
                     (m != mounted.end() && !m->second.csi_driver.empty() && deps_.csi &&
                      deps_.csi->RequiresRepublish(m->second.csi_driver));
      if (!remount && m != mounted.end()) {
        // A mounted claim whose PV the controller grew: the filesystem follows (upstream's in-use expansion).
        if (v.persistent_volume_claim && !m->second.csi_driver.empty()) {
          if (auto st = Guarded("volume expansion", [&] { return ExpandIfGrown(pod, v); }); !st.ok())
            log_->error("Volume expansion failed pod=\"{}/{}\" volume=\"{}\" err=\"{}\"", pod.metadata.namespace_,
                        pod.metadata.name, v.name, st.message());
        }
        if (m->second.unique_name.size()) in_use.insert(m->second.unique_name);
        continue;
      }
      bool processing = false;
      SetUpInfo info;
      absl::StatusOr<MountedVolume> mv = absl::InternalError("not set up");
      // Nothing thrown below a volume's set-up leaves this thread: it is that volume's error.
      if (auto st = Guarded("volume set-up", [&] {
            mv = SetUpVolume(pod, v, m != mounted.end(), &processing, &info);
            return absl::OkStatus();
          });
          !st.ok())
        mv = st;
      if (!info.unique_name.empty()) in_use.insert(info.unique_name);
      if (info.unattached) unattached.insert(v.name);
      if (mv.ok()) {
        done[v.name] = *mv;
        continue;
      }
      // Messages of the CSI plugin name their operation already (MountVolume.MountDevice, .WaitForAttach, ...).
      std::string text(mv.status().message());
      // Waiting for the attach/detach controller to list the volume on the Node is logged, not an event (upstream).
      const bool verify = text.rfind("VerifyControllerAttachedVolume", 0) == 0;
      std::string msg = processing || verify || text.rfind("MountVolume.", 0) == 0
                            ? text
                            : "MountVolume.SetUp failed for volume \"" + v.name + "\" : " + text;
      (processing ? failed : errors)[v.name] = msg;
      if (!processing && !verify) {
        if (deps_.record_event) deps_.record_event(pod, "Warning", "FailedMount", msg);
      }
    }
    std::lock_guard<std::mutex> l(mu_);
    ActualPod& a = actual_[pod.metadata.uid];
    for (auto& [name, mv] : done) a.mounted[name] = std::move(mv);
    a.failed_to_process = failed;
    a.errors = errors;
    a.unattached = unattached;
    a.in_use = in_use;
    a.busy = false;
    a.processed_generation = std::max(a.processed_generation, generation);
    if (failed.empty() && errors.empty()) {
      a.synced_generation = std::max(a.synced_generation, generation);
      a.backoff = std::chrono::milliseconds(0);
      a.retry_at = {};
    } else {
      a.backoff = a.backoff.count() == 0 ? kInitialBackoff : std::min(kMaxBackoff, a.backoff * 2);
      a.retry_at = Steady::now() + a.backoff;
      std::string all;
      for (const auto* m : {&failed, &errors})
        for (const auto& [name, why] : *m) all += (all.empty() ? "" : "; ") + why;
      log_->error("Volume operation failed pod=\"{}/{}\" podUID=\"{}\" durationBeforeRetry=\"{}ms\" err=\"{}\"",
                  pod.metadata.namespace_, pod.metadata.name, pod.metadata.uid, a.backoff.count(), all);
    }
    a.changed->notify_all();
    if (!desired_.count(pod.metadata.uid) && a.mounted.empty()) actual_.erase(pod.metadata.uid);
    finished_.push_back(pod.metadata.uid);
    cv_.notify_all();
  }

  // One volume. *processing is set for what upstream's populator refuses before any set-up (claims that do not
  // resolve, kinds it has no plugin for): those end a pod's wait at once.
  // `set_up_before`: the actual state holds the volume already (its tmpfs is mounted), so only its content is
  // brought up to date and the mount table is not read again.
  struct SetUpInfo {
    bool unattached = false;
    std::string unique_name;
  };
  absl::StatusOr<MountedVolume> SetUpCSI(const api::Pod& pod, const api::Volume& v, const CSIVolumeSpec& spec, bool* processing,
                                         SetUpInfo* info) {
    if (!deps_.csi) {
      *processing = true;
      return absl::UnimplementedError("volume \"" + v.name + "\": CSI volumes need the CSI volume plugin, which this kubelet was started without");
    }
    bool attachable = false;
    auto path = deps_.csi->SetUp(pod, spec, v.name, &info->unattached, &attachable);
    if (attachable) info->unique_name = CSIUniqueVolumeName(spec.driver, spec.volume_handle);
    if (!path.ok()) return path.status();
    return MountedVolume{*path, spec.read_only, info->unique_name, spec.driver};
  }

  // A PV whose nodeAffinity this node does not match (another node's local disk, another zone's volume): upstream's
  // "MountVolume.NodeAffinity check failed", retried as any set-up (the node's labels may change).
  absl::Status CheckNodeAffinity(const json& pv) {
    const json spec = pv.value("spec", json::object());
    const json na = spec.is_object() ? spec.value("nodeAffinity", json(nullptr)) : json(nullptr);
    if (!na.is_object() || !na.contains("required") || na["required"].is_null() || !deps_.node_labels) return absl::OkStatus();
    const std::string name = api::MetaField(pv, "name");
    auto fail = [&](const std::string& why) {
      return absl::FailedPreconditionError("MountVolume.NodeAffinity check failed for volume \"" + name + "\" : " + why);
    };
    auto terms = api::DecodeNodeSelector(na["required"], "spec.nodeAffinity.required");
    if (!terms.ok()) return fail(std::string(terms.status().message()));
    auto labels = deps_.node_labels();
    if (!labels) return fail("the node's labels are not known yet");
    if (!api::NodeSelectorTermsMatch(*terms, *labels, deps_.node_name)) return fail("no matching NodeSelectorTerms");
    return absl::OkStatus();
  }

  // The claim's PV is larger than the claim's status says (the controller expanded the volume): NodeExpandVolume,
  // then the claim's status.capacity, as upstream's MarkFSResizeFinished. Reported as FileSystemResizeSuccessful or
  // FileSystemResizeFailed on the pod; a failure is tried again at the pod's next sync.
  absl::Status ExpandIfGrown(const api::Pod& pod, const api::Volume& v) {
    if (!deps_.csi || !deps_.get_object) return absl::OkStatus();
    const std::string& ns = pod.metadata.namespace_;
    json claim;
    auto pv = ClaimedVolume(deps_, ns, *v.persistent_volume_claim, &claim);
    if (!pv.ok()) return pv.status();
    const json* pvc = &claim;
    auto storage = [](const json& obj, const char* part, const char* field) -> std::optional<api::Quantity> {
      const json p = obj.is_object() ? obj.value(part, json::object()) : json::object();
      const json f = p.is_object() ? p.value(field, json::object()) : json::object();
      if (!f.is_object() || !f.contains("storage") || !f["storage"].is_string()) return std::nullopt;
      auto q = api::ParseQuantity(f["storage"].get<std::string>());
      return q.ok() ? std::optional<api::Quantity>(*q) : std::nullopt;
    };
    auto pv_size = storage(*pv, "spec", "capacity");
    auto claim_size = storage(*pvc, "status", "capacity");
    if (!pv_size || !claim_size || pv_size->Value() <= claim_size->Value()) return absl::OkStatus();
    {
      // Grown already; the claim read may be older than our own status update (reads are cached for seconds).
      std::lock_guard<std::mutex> l(mu_);
      auto a = actual_.find(pod.metadata.uid);
      if (a != actual_.end())
        if (auto e = a->second.expanded.find(v.name); e != a->second.expanded.end() && e->second >= pv_size->Value())
          return absl::OkStatus();
    }
    auto spec = CSIVolumeFromPV(*pv, v.persistent_volume_claim->read_only);
    if (!spec.ok()) return spec.status();
    const std::string pv_name = api::MetaField(*pv, "name");
    auto done = deps_.csi->Expand(pod, *spec, pv_size->Value());
    if (!done.ok()) {
      if (deps_.record_event) deps_.record_event(pod, "Warning", "FileSystemResizeFailed", std::string(done.status().message()));
      return done.status();
    }
    if (!*done) return absl::OkStatus();  // the driver does not expand on the node
    json status = {{"capacity", {{"storage", (*pv)["spec"]["capacity"]["storage"]}}}};
    const json old_status = pvc->value("status", json::object());
    if (old_status.is_object() && old_status.contains("conditions") && old_status["conditions"].is_array()) {
      json kept = json::array();
      for (const auto& c : old_status["conditions"])
        if (!c.is_object() || (api::StringField(c, "type") != "FileSystemResizePending" && api::StringField(c, "type") != "Resizing"))
          kept.push_back(c);
      status["conditions"] = kept;
    }
    if (old_status.is_object() && old_status.contains("allocatedResourceStatuses") && old_status["allocatedResourceStatuses"].is_object() &&
        old_status["allocatedResourceStatuses"].contains("storage"))
      status["allocatedResourceStatuses"] = {{"storage", nullptr}};
    if (deps_.patch_pvc_status)
      if (auto st = deps_.patch_pvc_status(ns, v.persistent_volume_claim->claim_name, {{"status", status}}); !st.ok())
        return absl::Status(st.code(), "MountVolume.NodeExpandVolume failed to mark the resize of claim " + ns + "/" +
                                           v.persistent_volume_claim->claim_name + " finished: " + std::string(st.message()));
    {
      std::lock_guard<std::mutex> l(mu_);
      if (auto a = actual_.find(pod.metadata.uid); a != actual_.end()) a->second.expanded[v.name] = pv_size->Value();
    }
    if (deps_.record_event)
      deps_.record_event(pod, "Normal", "FileSystemResizeSuccessful",
                         "MountVolume.NodeExpandVolume succeeded for volume \"" + pv_name + "\" " + deps_.node_name);
    log_->info("MountVolume.NodeExpandVolume succeeded for volume \"{}\" pod=\"{}/{}\" size={}", pv_name, ns, pod.metadata.name,
               pv_size->Value());
    return absl::OkStatus();
  }

  absl::StatusOr<MountedVolume> SetUpVolume(const api::Pod& pod, const api::Volume& v, bool set_up_before, bool* processing,
                                            SetUpInfo* info) {
    if (v.raw.is_object() && v.raw.contains("csi")) {
      auto spec = CSIVolumeFromInline(pod, v);
      if (!spec.ok()) {
        *processing = true;
        return spec.status();
      }
      return SetUpCSI(pod, v, *spec, processing, info);
    }
    if (v.host_path) {
      if (auto st = CheckHostPath(*v.host_path); !st.ok()) return st;
      return MountedVolume{v.host_path->path, false};
    }
    if (v.empty_dir) {
      std::string dir = pods_dir_ + "/" + pod.metadata.uid + "/volumes/kubernetes.io~empty-dir/" + v.name;
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) return absl::InternalError("cannot create " + dir + ": " + ec.message());
      const std::string& medium = v.empty_dir->medium;
      if (!medium.empty() && medium != "Memory" && !IsHugePagesMedium(medium))
        return absl::InvalidArgumentError("unknown storage medium \"" + medium + "\"");
      if (IsHugePagesMedium(medium) && !IsMountPoint(dir)) {
        auto opt = HugePageSizeMountOption(medium, pod);
        if (!opt.ok()) return opt.status();
        KLOG_V(log_, 3)("Mounting hugepages pod=\"{}/{}\" volume=\"{}\" option=\"{}\"", pod.metadata.namespace_, pod.metadata.name,
                        v.name, *opt);
        if (::mount("nodev", dir.c_str(), "hugetlbfs", 0, opt->c_str()) != 0)
          return absl::InternalError("mount hugetlbfs on " + dir + ": " + std::strerror(errno));
      }
      if (medium == "Memory" && !IsMountPoint(dir)) {
        ::chmod(dir.c_str(), 0777);
        std::string opts = "mode=0777";
        // tmpfs takes bytes (or k/m/g suffixes), not Kubernetes quantities such as 1Gi.
        if (!v.empty_dir->size_limit.empty()) {
          auto q = api::ParseQuantity(v.empty_dir->size_limit);
          if (!q.ok() || q->Value() <= 0) return absl::InvalidArgumentError("invalid sizeLimit \"" + v.empty_dir->size_limit + "\"");
          opts += ",size=" + std::to_string(q->Value());
        }
        if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
          return absl::InternalError("mount tmpfs on " + dir + ": " + std::strerror(errno));
      }
      struct stat st {};
      if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & 0777) != 0777) ::chmod(dir.c_str(), 0777);
      if (auto fst = ApplyFSGroup(pod, dir); !fst.ok()) return fst;
      return MountedVolume{dir, false};
    }
    if (v.config_map || v.secret || v.downward_api || v.projected) {
      auto dir = SetUpAPIVolume(pod, v, set_up_before);
      if (!dir.ok()) return dir.status();
      return MountedVolume{*dir, false};
    }
    if (v.persistent_volume_claim) {
      auto pv = ClaimedVolume(deps_, pod.metadata.namespace_, *v.persistent_volume_claim);
      if (!pv.ok()) {
        *processing = true;
        return pv.status();
      }
      bool ro = v.persistent_volume_claim->read_only;
      const json& spec = (*pv)["spec"];
      std::string pv_name = api::MetaField(*pv, "name");
      if (auto st = CheckNodeAffinity(*pv); !st.ok()) return st;
      if (spec.contains("hostPath") && spec["hostPath"].is_object()) {
        api::HostPathVolumeSource hp;
        hp.path = api::StringField(spec["hostPath"], "path");
        hp.type = api::StringField(spec["hostPath"], "type");
        if (hp.path.empty() || hp.path[0] != '/') return absl::InvalidArgumentError("persistent volume " + pv_name + ": hostPath.path must be absolute");
        if (auto st = CheckHostPath(hp); !st.ok()) return st;
        return MountedVolume{hp.path, ro};
      }
      if (spec.contains("local") && spec["local"].is_object()) {
        // As upstream's local volume plugin: the node's path bind-mounted at the pod's volume folder.
        std::string path = api::StringField(spec["local"], "path");
        struct stat st {};
        if (path.empty() || path[0] != '/' || ::stat(path.c_str(), &st) != 0)
          return absl::NotFoundError("path \"" + path + "\" does not exist");
        std::string dir = pods_dir_ + "/" + pod.metadata.uid + "/volumes/kubernetes.io~local-volume/" + v.name;
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) return absl::InternalError("cannot create " + dir + ": " + ec.message());
        if (!IsMountPoint(dir)) {
          if (::mount(path.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0)
            return absl::InternalError("bind mount " + path + " at " + dir + ": " + std::strerror(errno));
          if (ro && ::mount(nullptr, dir.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
            return absl::InternalError("remount " + dir + " read-only: " + std::strerror(errno));
        }
        if (!ro)
          if (auto fst = ApplyFSGroup(pod, dir); !fst.ok()) return fst;
        return MountedVolume{dir, ro};
      }
      if (spec.contains("csi") && spec["csi"].is_object()) {
        auto cs = CSIVolumeFromPV(*pv, ro);
        if (!cs.ok()) {
          *processing = true;
          return cs.status();
        }
        return SetUpCSI(pod, v, *cs, processing, info);
      }
      std::string kind;
      for (auto it = spec.begin(); it != spec.end(); ++it)
        if (it.value().is_object() && it.key() != "claimRef" && it.key() != "nodeAffinity" && it.key() != "capacity") kind = it.key();
      *processing = true;
      return absl::UnimplementedError("volume \"" + v.name + "\": persistent volume " + pv_name + " of type \"" + kind +
                                      "\" is not supported by this kubelet yet");
    }
    std::string kind;
    for (auto it = v.raw.begin(); it != v.raw.end(); ++it)
      if (it.key() != "name") kind = it.key();
    *processing = true;
    return absl::UnimplementedError("volume \"" + v.name + "\": volume type \"" + kind + "\" is not supported by this kubelet yet");
  }

  // configMap, secret, downwardAPI, projected: the payload from the API (or the pod), written atomically.
  absl::StatusOr<std::string> SetUpAPIVolume(const api::Pod& pod, const api::Volume& v, bool set_up_before) {
    const char* plugin = v.config_map ? "kubernetes.io~configmap"
                         : v.secret   ? "kubernetes.io~secret"
                         : v.downward_api ? "kubernetes.io~downward-api"
                                          : "kubernetes.io~projected";
    Payload payload;
    const std::string& ns = pod.metadata.namespace_;
    absl::Status st;
    if (v.config_map) {
      const auto& c = *v.config_map;
      st = ObjectPayload(deps_, false, ns, c.name, c.items, c.optional, c.default_mode, &payload);
    } else if (v.secret) {
      const auto& c = *v.secret;
      st = ObjectPayload(deps_, true, ns, c.secret_name, c.items, c.optional, c.default_mode, &payload);
    } else if (v.downward_api) {
      st = DownwardPayload(deps_, pod, *v.downward_api, v.downward_api->default_mode, &payload);
    } else {
      const auto& pr = *v.projected;
      for (const auto& src : pr.sources) {
        if (src.config_map) {
          const auto& c = *src.config_map;
          st = ObjectPayload(deps_, false, ns, c.name, c.items, c.optional, pr.default_mode, &payload);
        } else if (src.secret) {
          const auto& c = *src.secret;
          st = ObjectPayload(deps_, true, ns, c.secret_name, c.items, c.optional, pr.default_mode, &payload);
        } else if (src.downward_api) {
          st = DownwardPayload(deps_, pod, *src.downward_api, pr.default_mode, &payload);
        } else if (src.service_account_token) {
          auto tok = tokens_.GetServiceAccountToken(pod, *src.service_account_token);
          if (tok.ok()) {
            payload[src.service_account_token->path] = {*tok, ModeOf(std::nullopt, pr.default_mode)};
          } else {
            st = tok.status();
          }
        }
        if (!st.ok()) break;
      }
    }
    if (!st.ok()) return st;
    std::string dir = pods_dir_ + "/" + pod.metadata.uid + "/volumes/" + plugin + "/" + v.name;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError("cannot create " + dir + ": " + ec.message());
    // Secrets never touch the node's disk: secret and projected volumes are tmpfs, as upstream's.
    if ((v.secret || v.projected) && deps_.tmpfs_for_secrets && !set_up_before && !IsMountPoint(dir)) {
      if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0777") != 0)
        return absl::InternalError("mount tmpfs on " + dir + ": " + std::strerror(errno));
    }
    ::chmod(dir.c_str(), 0777);
    bool changed = false;
    // fsGroup on the new content before it is visible (configMap, secret and projected volumes are read-only).
    auto set_perms = [&](const std::string& new_dir) { return ApplyFSGroup(pod, new_dir, true); };
    if (auto w = WriteAtomic(dir, payload, &changed, set_perms); !w.ok()) return w;
    if (changed && pod.spec.security_context.fs_group) {
      // The volume's root and the user-visible names through ..data follow too.
      if (::lchown(dir.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(*pod.spec.security_context.fs_group)) != 0)
        return absl::InternalError("chown " + dir + ": " + std::strerror(errno));
    }
    if (changed) KLOG_V(log_, 3)("Volume content written pod=\"{}/{}\" volume=\"{}\" files={}", ns, pod.metadata.name, v.name, payload.size());
    return dir;
  }

  std::string pods_dir_;
  VolumeDeps deps_;
  TokenManager tokens_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool kicked_ = false;
  std::atomic<bool> synced_{false};
  std::map<std::string, DesiredPod> desired_;    // by UID: the pods being synced
  std::map<std::string, ActualPod> actual_;      // by UID: what is set up; entries go with the pod's teardown
  std::map<std::string, std::thread> ops_;       // one operation per pod at a time
  std::vector<std::string> finished_;            // operations to join
  std::thread reconciler_;
};

}  // namespace

std::unique_ptr<VolumeManager> NewVolumeManager(const std::string& pods_dir, VolumeDeps deps) {
  return std::make_unique<VolumeManagerImpl>(pods_dir, std::move(deps));
}

namespace {
constexpr auto kMaxTTL = std::chrono::hours(24);
constexpr int kMaxJitterSeconds = 10;
}  // namespace

bool TokenManager::RequiresRefresh(const Entry& e, TimePoint now) const {
  static thread_local std::mt19937 rng{std::random_device{}()};
  auto jitter = std::chrono::seconds(std::uniform_int_distribution<int>(0, kMaxJitterSeconds)(rng));
  auto issued = e.expires - std::chrono::seconds(e.expiration_seconds);
  if (now > issued + kMaxTTL - jitter) return true;
  // Within 20% of its lifetime (plus a jitter) of expiring.
  return now > e.expires - std::chrono::seconds(e.expiration_seconds * 20 / 100) - jitter;
}

absl::StatusOr<std::string> TokenManager::GetServiceAccountToken(const api::Pod& pod,
                                                                 const api::ServiceAccountTokenProjection& p) {
  const std::string sa = pod.spec.service_account_name.empty() ? "default" : pod.spec.service_account_name;
  const std::string key = pod.metadata.namespace_ + "/" + sa + "/" + p.audience + "/" + std::to_string(p.expiration_seconds) +
                          "/" + pod.metadata.uid;
  TimePoint now = Now(*deps_);
  std::optional<Entry> cached;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      if (!RequiresRefresh(it->second, now)) return it->second.token;
      cached = it->second;
    }
  }
  auto fail = [&](const std::string& why) -> absl::StatusOr<std::string> {
    // A token that has not expired yet is still good while the API server does not answer, as upstream's.
    if (cached && now < cached->expires) return cached->token;
    return absl::UnavailableError("failed to fetch token: " + why);
  };
  if (!deps_->request_token) return fail("no API server to request a token from");
  json req = {{"apiVersion", "authentication.k8s.io/v1"},
              {"kind", "TokenRequest"},
              {"spec",
               {{"expirationSeconds", p.expiration_seconds},
                {"boundObjectRef", {{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", pod.metadata.name}, {"uid", pod.metadata.uid}}}}}};
  req["spec"]["audiences"] = p.audience.empty() ? json(nullptr) : json::array({p.audience});
  auto resp = deps_->request_token(pod.metadata.namespace_, sa, req);
  if (!resp.ok()) return fail(std::string(resp.status().message()));
  const json* status = resp->is_object() && resp->contains("status") ? &(*resp)["status"] : nullptr;
  if (!status || !status->is_object() || !status->contains("token") || !(*status)["token"].is_string() ||
      (*status)["token"].get<std::string>().empty())
    return fail("the TokenRequest answer carries no token");
  Entry e;
  e.token = (*status)["token"].get<std::string>();
  e.expiration_seconds = p.expiration_seconds;
  e.pod_uid = pod.metadata.uid;
  // The API may shorten or lengthen the lifetime: its expirationTimestamp is what counts.
  if (resp->contains("spec") && (*resp)["spec"].is_object() && (*resp)["spec"].contains("expirationSeconds") &&
      (*resp)["spec"]["expirationSeconds"].is_number_integer() && (*resp)["spec"]["expirationSeconds"].get<int64_t>() > 0)
    e.expiration_seconds = (*resp)["spec"]["expirationSeconds"].get<int64_t>();
  TimePoint exp;
  if (!status->contains("expirationTimestamp") || !(*status)["expirationTimestamp"].is_string() ||
      !ParseRFC3339((*status)["expirationTimestamp"].get<std::string>(), &exp))
    return fail("the TokenRequest answer carries no expirationTimestamp");
  e.expires = exp;
  std::lock_guard<std::mutex> l(mu_);
  cache_[key] = e;
  return e.token;
}

void TokenManager::DeleteServiceAccountTokens(const std::string& pod_uid) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = cache_.begin(); it != cache_.end();) it = it->second.pod_uid == pod_uid ? cache_.erase(it) : std::next(it);
}

size_t TokenManager::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return cache_.size();
}

}  // namespace kubelet::volumemanager

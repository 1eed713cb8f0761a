// Issue 11: the atomic writer, the API-backed volume kinds (configMap, secret, downwardAPI, projected with a
// service account token) and the token manager's refresh, on a temporary folder with fake API answers.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <fstream>
#include <sstream>

#include "common/test_util.h"
#include "kubelet/api/codec.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/clock.h"
#include "kubelet/util/mount.h"
#include "kubelet/volumemanager/atomic_writer.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace kubelet::volumemanager {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string LinkTarget(const fs::path& p) {
  std::error_code ec;
  auto t = fs::read_symlink(p, ec);
  return ec ? "" : t.string();
}

class TempDir {
 public:
  explicit TempDir(const std::string& name) : path_(fs::temp_directory_path() / (name + "-" + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(AtomicWriter, WritesThroughDataSymlinkAndSwapsUpdatesInOneRename) {
  TempDir d("atomic");
  bool changed = false;
  ASSERT_TRUE(WriteAtomic(d.path(), {{"a", {"one", 0644}}, {"dir/b", {"two", 0400}}}, &changed).ok());
  EXPECT_TRUE(changed);
  EXPECT_EQ(LinkTarget(d.path() / "a"), "..data/a");
  EXPECT_EQ(LinkTarget(d.path() / "dir"), "..data/dir");
  std::string ts = LinkTarget(d.path() / "..data");
  EXPECT_EQ(ts.rfind("..", 0), 0u);
  EXPECT_EQ(Read(d.path() / "a"), "one");
  EXPECT_EQ(Read(d.path() / "dir/b"), "two");
  struct stat st {};
  ASSERT_EQ(::stat((d.path() / "dir/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  // The same payload again changes nothing, not even the timestamped folder.
  ASSERT_TRUE(WriteAtomic(d.path(), {{"a", {"one", 0644}}, {"dir/b", {"two", 0400}}}, &changed).ok());
  EXPECT_FALSE(changed);
  EXPECT_EQ(LinkTarget(d.path() / "..data"), ts);
  // An update: new content, a key gone; the old folder and the removed name go.
  ASSERT_TRUE(WriteAtomic(d.path(), {{"a", {"uno", 0644}}}, &changed).ok());
  EXPECT_TRUE(changed);
  EXPECT_NE(LinkTarget(d.path() / "..data"), ts);
  EXPECT_EQ(Read(d.path() / "a"), "uno");
  EXPECT_FALSE(fs::exists(fs::symlink_status(d.path() / "dir")));
  EXPECT_FALSE(fs::exists(d.path() / ts));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d.path())) entries += e.path().filename() != ".." ? 1 : 0;
  EXPECT_EQ(entries, 3);  // a, ..data, the timestamped folder
}

TEST(AtomicWriter, AnInterruptedWriteKeepsTheOldContent) {
  TempDir d("atomic-int");
  ASSERT_TRUE(WriteAtomic(d.path(), {{"a", {"old", 0644}}}).ok());
  std::string ts = LinkTarget(d.path() / "..data");
  // A payload that cannot be written (its file path collides with a folder of the same payload): the write fails
  // before ..data moves, so readers still see the old content, and the half-written folder is gone.
  auto st = WriteAtomic(d.path(), {{"a", {"new", 0644}}, {"a/b", {"x", 0644}}});
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(LinkTarget(d.path() / "..data"), ts);
  EXPECT_EQ(Read(d.path() / "a"), "old");
  int dirs = 0;
  for (const auto& e : fs::directory_iterator(d.path())) dirs += e.is_directory() && !e.is_symlink() ? 1 : 0;
  EXPECT_EQ(dirs, 1);
}

TEST(AtomicWriter, RefusesPathsThatLeaveTheVolume) {
  for (const char* bad : {"../x", "a/../../x", "/etc/passwd", "..data", "..x", "a//b", "a/", ""}) {
    TempDir d("atomic-bad");
    EXPECT_FALSE(WriteAtomic(d.path(), {{bad, {"x", 0644}}}).ok()) << bad;
    EXPECT_FALSE(fs::exists(fs::symlink_status(d.path() / "..data"))) << bad;
  }
  EXPECT_TRUE(ValidatePayloadPath("a/b/c").ok());
  EXPECT_TRUE(ValidatePayloadPath("a..b").ok());
}

// Teardown waits for nothing: while a pod's volume operation runs it answers Unavailable and the caller (the
// kubelet's housekeeping) comes back. Tests come back too.
bool TornDown(VolumeManager& vm, const std::string& uid) {
  return testing::WaitUntil([&] { return vm.UnmountVolumesForPod(uid).ok(); });
}

api::Pod DecodeWithDefaults(json j) {
  api::ApplyPodDefaults(j);
  auto pod = api::DecodePod(j);
  EXPECT_TRUE(pod.ok()) << pod.status();
  return *pod;
}

// The pod as a real API server's ServiceAccount admission shapes it.
json AdmittedPod(const std::string& uid) {
  return json::parse(R"({"apiVersion":"v1","kind":"Pod",
    "metadata":{"name":"web","namespace":"team","uid":")" + uid + R"(","labels":{"app":"web","tier":"a\"b"}},
    "spec":{"serviceAccountName":"builder","containers":[{"name":"c","image":"x:1",
      "resources":{"limits":{"memory":"64Mi"}},
      "volumeMounts":[{"name":"kube-api-access-x7k2p","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","readOnly":true}]}],
     "volumes":[{"name":"kube-api-access-x7k2p","projected":{"defaultMode":420,"sources":[
        {"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},
        {"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},
        {"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}]}},
      {"name":"cfg","configMap":{"name":"settings","items":[{"key":"level","path":"conf/level","mode":384}]}},
      {"name":"creds","secret":{"secretName":"db","defaultMode":256}},
      {"name":"info","downwardAPI":{"items":[{"path":"labels","fieldRef":{"fieldPath":"metadata.labels"}},
        {"path":"mem","resourceFieldRef":{"containerName":"c","resource":"limits.memory","divisor":"1Mi"}}]}}]}})");
}

// What the volume manager reads, shared with its operation threads: every field behind the mutex or atomic.
struct FakeAPI {
  std::mutex mu;
  std::map<std::string, json> objects;  // "resource/ns/name"
  std::vector<std::string> events;      // "reason: message"
  std::atomic<int> token_requests{0};
  json last_token_request;
  std::atomic<int> token_status{0};  // non-zero: the TokenRequest fails
  std::function<void(const std::string& key)> on_get;  // called (unlocked) before each read
  FakeClock* clock = nullptr;

  void Set(const std::string& key, json obj) {
    std::lock_guard<std::mutex> l(mu);
    objects[key] = std::move(obj);
  }
  void SetData(const std::string& key, const std::string& k, const std::string& v) {
    std::lock_guard<std::mutex> l(mu);
    objects[key]["data"][k] = v;
  }
  size_t EventCount() {
    std::lock_guard<std::mutex> l(mu);
    return events.size();
  }
  std::string LastEvent() {
    std::lock_guard<std::mutex> l(mu);
    return events.empty() ? "" : events.back();
  }
  json LastTokenRequest() {
    std::lock_guard<std::mutex> l(mu);
    return last_token_request;
  }
  VolumeDeps Deps() {
    VolumeDeps d;
    d.get_object = [this](const std::string& r, const std::string& ns, const std::string& n) -> absl::StatusOr<json> {
      if (on_get) on_get(r + "/" + ns + "/" + n);
      std::lock_guard<std::mutex> l(mu);
      auto it = objects.find(r + "/" + ns + "/" + n);
      if (it == objects.end()) return absl::NotFoundError(r + " \"" + n + "\" not found");
      return it->second;
    };
    d.request_token = [this](const std::string& ns, const std::string& sa, const json& req) -> absl::StatusOr<json> {
      int n = ++token_requests;
      {
        std::lock_guard<std::mutex> l(mu);
        last_token_request = req;
      }
      if (token_status) return absl::PermissionDeniedError("serviceaccounts \"" + sa + "\" is forbidden");
      int64_t exp = req["spec"]["expirationSeconds"];
      json out = req;
      out["status"] = {{"token", "tok-" + std::to_string(n) + "-" + ns + "-" + sa},
                       {"expirationTimestamp", FormatRFC3339(clock->Now() + std::chrono::seconds(exp))}};
      return out;
    };
    d.record_event = [this](const api::Pod&, const std::string&, const std::string& reason, const std::string& message) {
      std::lock_guard<std::mutex> l(mu);
      events.push_back(message);
      (void)reason;
    };
    d.clock = clock;
    d.tmpfs_for_secrets = ::geteuid() == 0;
    return d;
  }
};

TEST(APIVolumes, ConfigMapSecretDownwardAPIAndTheServiceAccountVolume) {
  TempDir d("apivol");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  api.objects["configmaps/team/kube-root-ca.crt"] = {{"data", {{"ca.crt", "PEM"}}}};
  api.objects["configmaps/team/settings"] = {{"data", {{"level", "debug"}, {"other", "x"}}}};
  api.objects["secrets/team/db"] = {{"data", {{"password", Base64Encode("s3cret")}}}};
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  auto pod = DecodeWithDefaults(AdmittedPod("u1"));
  auto mounts = vm->WaitForAttachAndMount(pod);
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  fs::path sa = mounts->at("kube-api-access-x7k2p").path;
  EXPECT_EQ(sa, d.path() / "u1/volumes/kubernetes.io~projected/kube-api-access-x7k2p");
  EXPECT_EQ(Read(sa / "token"), "tok-1-team-builder");
  EXPECT_EQ(Read(sa / "ca.crt"), "PEM");
  EXPECT_EQ(Read(sa / "namespace"), "team");
  struct stat st {};
  ASSERT_EQ(::stat((sa / "token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // The TokenRequest as upstream's token manager sends it: bound to the pod, with the projection's lifetime.
  EXPECT_EQ(api.LastTokenRequest()["kind"], "TokenRequest");
  EXPECT_EQ(api.LastTokenRequest()["spec"]["expirationSeconds"], 3607);
  EXPECT_EQ(api.LastTokenRequest()["spec"]["boundObjectRef"]["kind"], "Pod");
  EXPECT_EQ(api.LastTokenRequest()["spec"]["boundObjectRef"]["uid"], "u1");
  fs::path cfg = mounts->at("cfg").path;
  EXPECT_EQ(cfg, d.path() / "u1/volumes/kubernetes.io~configmap/cfg");
  EXPECT_EQ(Read(cfg / "conf/level"), "debug");
  EXPECT_FALSE(fs::exists(cfg / "other"));
  ASSERT_EQ(::stat((cfg / "conf/level").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  fs::path creds = mounts->at("creds").path;
  EXPECT_EQ(Read(creds / "password"), "s3cret");
  ASSERT_EQ(::stat((creds / "password").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  if (::geteuid() == 0) {
    struct statfs fs_info {};
    ASSERT_EQ(::statfs(creds.c_str(), &fs_info), 0);
    EXPECT_EQ(fs_info.f_type, 0x01021994) << "secret volumes are tmpfs";  // TMPFS_MAGIC
  }
  fs::path info = mounts->at("info").path;
  EXPECT_EQ(Read(info / "labels"), "app=\"web\"\ntier=\"a\\\"b\"");
  EXPECT_EQ(Read(info / "mem"), "64");

  // An update reaches the mounted file: the next sync's wait returns at once (all is set up) and the reconciler
  // brings the contents up to date on its own thread. The token is reused while fresh.
  api.SetData("configmaps/team/settings", "level", "info");
  ASSERT_TRUE(vm->WaitForAttachAndMount(pod).ok());
  EXPECT_TRUE(testing::WaitUntil([&] { return Read(cfg / "conf/level") == "info"; })) << Read(cfg / "conf/level");
  EXPECT_EQ(api.token_requests.load(), 1);
  // Past 80% of its lifetime the token is requested again and rewritten.
  clock.Step(std::chrono::seconds(3607 * 81 / 100 + 11));
  ASSERT_TRUE(vm->WaitForAttachAndMount(pod).ok());
  EXPECT_TRUE(testing::WaitUntil([&] { return Read(sa / "token") == "tok-2-team-builder"; })) << Read(sa / "token");
  EXPECT_EQ(api.token_requests.load(), 2);

  // Teardown unmounts and leaves no folder behind.
  ASSERT_TRUE(TornDown(*vm, "u1"));
  EXPECT_FALSE(fs::exists(d.path() / "u1"));
}

TEST(APIVolumes, MissingObjectsKeysAndRefusedTokensAreClearErrors) {
  TempDir d("apivol-bad");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  auto pod = [](const json& volume) {
    json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"namespace", "ns"}, {"uid", "u9"}}},
              {"spec", {{"containers", {{{"name", "c"}, {"image", "x:1"}}}}, {"volumes", {volume}}}}};
    return DecodeWithDefaults(j);
  };
  // The reconciler reports each failed set-up as a FailedMount event; the pod's wait ends at its timeout.
  int n = 0;
  auto err = [&](const json& volume) {
    api::Pod p = pod(volume);
    p.metadata.uid = "u" + std::to_string(++n);
    size_t before = api.EventCount();
    auto r = vm->WaitForAttachAndMount(p, std::chrono::milliseconds(50));
    if (r.ok()) return std::string("ok");
    EXPECT_TRUE(testing::WaitUntil([&] { return api.EventCount() > before; }));
    return api.LastEvent();
  };
  EXPECT_EQ(err({{"name", "v"}, {"configMap", {{"name", "absent"}}}}),
            "MountVolume.SetUp failed for volume \"v\" : configmap \"absent\" not found");
  EXPECT_EQ(err({{"name", "v"}, {"configMap", {{"name", "absent"}, {"optional", true}}}}), "ok");
  EXPECT_EQ(err({{"name", "s"}, {"secret", {{"secretName", "gone"}}}}),
            "MountVolume.SetUp failed for volume \"s\" : secret \"gone\" not found");
  api.Set("configmaps/ns/half", {{"data", {{"a", "1"}}}});
  EXPECT_EQ(err({{"name", "v"}, {"configMap", {{"name", "half"}, {"items", {{{"key", "b"}, {"path", "b"}}}}}}}),
            "MountVolume.SetUp failed for volume \"v\" : configmap references non-existent config key: b");
  EXPECT_EQ(err({{"name", "v"}, {"configMap", {{"name", "half"}, {"items", {{{"key", "a"}, {"path", "../../etc/x"}}}}}}}),
            "MountVolume.SetUp failed for volume \"v\" : invalid path \"../../etc/x\": must not start with '..'");
  api.token_status = 403;
  std::string refused = err({{"name", "t"},
                             {"projected", {{"sources", {{{"serviceAccountToken", {{"path", "token"}, {"expirationSeconds", 3600}}}}}}}}});
  EXPECT_EQ(refused, "MountVolume.SetUp failed for volume \"t\" : failed to fetch token: serviceaccounts \"default\" is forbidden");
  // A mode out of range is refused by the decoder, naming the field.
  json bad = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"uid", "u8"}}},
              {"spec", {{"containers", {{{"name", "c"}, {"image", "x:1"}}}},
                        {"volumes", {{{"name", "v"}, {"configMap", {{"name", "c"}, {"defaultMode", 01000}}}}}}}}};
  auto decoded = api::DecodePod(bad);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("spec.volumes[0].configMap.defaultMode"), std::string::npos) << decoded.status();
}

api::Pod PodWith(const std::string& uid, const json& volumes) {
  json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p-" + uid}, {"namespace", "ns"}, {"uid", uid}}},
            {"spec", {{"containers", {{{"name", "c"}, {"image", "x:1"}}}}, {"volumes", volumes}}}};
  return DecodeWithDefaults(j);
}

TEST(APIVolumes, FSGroupOwnsAPIVolumesAcrossUpdates) {
  TempDir d("apivol-fsgroup");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  api.Set("configmaps/ns/cfg", {{"data", {{"a", "1"}}}});
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"namespace", "ns"}, {"uid", "g1"}}},
            {"spec", {{"securityContext", {{"fsGroup", 3456}}}, {"containers", {{{"name", "c"}, {"image", "x:1"}}}},
                      {"volumes", {{{"name", "v"}, {"configMap", {{"name", "cfg"}, {"defaultMode", 0600}}}}}}}}};
  api::Pod pod = DecodeWithDefaults(j);
  auto r = vm->WaitForAttachAndMount(pod);
  ASSERT_TRUE(r.ok()) << r.status();
  fs::path v = r->at("v").path;
  auto check = [&](const fs::path& file) {
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_gid, 3456u) << file;
    EXPECT_EQ(st.st_mode & 0777, 0640u) << file << ": group-readable, not group-writable (the volume is read-only)";
  };
  check(v / "a");
  // An update is written into a new folder: it carries the group before it becomes visible.
  api.Set("configmaps/ns/cfg", {{"data", {{"a", "2"}, {"b", "3"}}}});
  ASSERT_TRUE(vm->WaitForAttachAndMount(pod).ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return Read(v / "b") == "3"; }));
  check(v / "a");
  check(v / "b");
  ASSERT_TRUE(TornDown(*vm, "g1"));
}

TEST(VolumeManager, TheWaitNamesWhatIsNotMountedAsUpstreamDoes) {
  TempDir d("vm-wait");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  api::Pod pod = PodWith("w1", {{{"name", "scratch"}, {"emptyDir", json::object()}},
                                {{"name", "cfg"}, {"configMap", {{"name", "later"}}}}});
  auto r = vm->WaitForAttachAndMount(pod, std::chrono::milliseconds(300));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "unmounted volumes=[cfg], unattached volumes=[], failed to process volumes=[]: timed out waiting for the condition");
  EXPECT_TRUE(testing::WaitUntil([&] { return api.EventCount() > 0; }));
  EXPECT_EQ(api.LastEvent(), "MountVolume.SetUp failed for volume \"cfg\" : configmap \"later\" not found");
  // The object appears: the pod's next wait is answered (no back-off holds a sync's own request).
  api.Set("configmaps/ns/later", {{"data", {{"k", "v"}}}});
  auto ok = vm->WaitForAttachAndMount(pod);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(Read(fs::path(ok->at("cfg").path) / "k"), "v");
  EXPECT_EQ(ok->at("scratch").path, (d.path() / "w1/volumes/kubernetes.io~empty-dir/scratch").string());
  ASSERT_TRUE(TornDown(*vm, "w1"));
  EXPECT_FALSE(fs::exists(d.path() / "w1"));
}

TEST(VolumeManager, ClaimsResolveToTheirBoundHostPathOrLocalVolume) {
  TempDir d("vm-pvc");
  TempDir data("vm-pvc-data");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  auto claim = [](const std::string& name, bool ro = false) {
    return json{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", name}, {"readOnly", ro}}}};
  };
  auto wait = [&](const std::string& uid, const json& volume) {
    return vm->WaitForAttachAndMount(PodWith(uid, json::array({volume})), std::chrono::milliseconds(2000));
  };
  // Not there, not bound, bound to a volume that points elsewhere: the wait ends at once with upstream's reason.
  auto missing = wait("c1", claim("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(),
            "unmounted volumes=[data], unattached volumes=[], failed to process volumes=[data]: error processing PVC ns/nope: "
            "failed to fetch PVC from API server: persistentvolumeclaims \"nope\" not found");
  api.Set("persistentvolumeclaims/ns/pending", {{"metadata", {{"name", "pending"}, {"uid", "claim-0"}}}, {"status", {{"phase", "Pending"}}}});
  auto pending = wait("c2", claim("pending"));
  EXPECT_NE(pending.status().message().find("error processing PVC ns/pending: PVC is not bound"), std::string::npos) << pending.status();
  api.Set("persistentvolumeclaims/ns/web", {{"metadata", {{"name", "web"}, {"uid", "claim-1"}}},
                                          {"spec", {{"volumeName", "pv-1"}}}, {"status", {{"phase", "Bound"}}}});
  api.Set("persistentvolumes//pv-1", {{"metadata", {{"name", "pv-1"}}},
                                      {"spec", {{"claimRef", {{"name", "web"}, {"uid", "someone-else"}}},
                                                {"hostPath", {{"path", data.path().string()}}}}}});
  auto stolen = wait("c3", claim("web"));
  EXPECT_NE(stolen.status().message().find("found PV object pv-1 but its pv.Spec.ClaimRef.UID someone-else does not point to claim.UID claim-1"),
            std::string::npos) << stolen.status();
  // Bound both ways: the hostPath PV is the volume, read-only when the claim says so.
  api.Set("persistentvolumes//pv-1", {{"metadata", {{"name", "pv-1"}}},
                                      {"spec", {{"claimRef", {{"name", "web"}, {"uid", "claim-1"}}},
                                                {"hostPath", {{"path", data.path().string()}, {"type", "Directory"}}}}}});
  auto bound = wait("c4", claim("web", true));
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(bound->at("data").path, data.path().string());
  EXPECT_TRUE(bound->at("data").read_only);
  // A local PV is bind-mounted at the pod's volume folder, as upstream's local plugin does.
  if (::geteuid() == 0) {
    std::ofstream(data.path() / "kept") << "across pods";
    api.Set("persistentvolumes//pv-1", {{"metadata", {{"name", "pv-1"}}},
                                        {"spec", {{"claimRef", {{"name", "web"}, {"uid", "claim-1"}}},
                                                  {"local", {{"path", data.path().string()}}}}}});
    auto local = wait("c5", claim("web"));
    ASSERT_TRUE(local.ok()) << local.status();
    EXPECT_EQ(local->at("data").path, (d.path() / "c5/volumes/kubernetes.io~local-volume/data").string());
    EXPECT_EQ(Read(fs::path(local->at("data").path) / "kept"), "across pods");
    ASSERT_TRUE(TornDown(*vm, "c5"));
    EXPECT_EQ(Read(data.path() / "kept"), "across pods") << "the teardown unmounts, it does not delete the PV's data";
  }
  // A kind this kubelet has no plugin for: refused at once, naming the volume.
  auto odd = wait("c6", {{"name", "odd"}, {"nfs", {{"server", "x"}, {"path", "/"}}}});
  EXPECT_NE(odd.status().message().find("volume \"odd\": volume type \"nfs\" is not supported by this kubelet yet"), std::string::npos)
      << odd.status();
  for (const char* uid : {"c1", "c2", "c3", "c4", "c6"}) EXPECT_TRUE(TornDown(*vm, uid)) << uid;
}

TEST(VolumeManager, OnePodsSlowObjectHoldsBackNoOtherPod) {
  TempDir d("vm-hol");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  api.on_get = [&](const std::string& key) {
    if (key != "configmaps/ns/slow") return;
    std::unique_lock<std::mutex> l(gate_mu);
    gate_cv.wait(l, [&] { return open; });
  };
  api.Set("configmaps/ns/slow", {{"data", {{"a", "1"}}}});
  api.Set("configmaps/ns/fast", {{"data", {{"a", "2"}}}});
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  api::Pod slow = PodWith("s1", {{{"name", "v"}, {"configMap", {{"name", "slow"}}}}});
  api::Pod fast = PodWith("f1", {{{"name", "v"}, {"configMap", {{"name", "fast"}}}}});
  std::thread waiter([&] { EXPECT_TRUE(vm->WaitForAttachAndMount(slow).ok()); });
  // The slow pod's read is held; the other pod's volumes are set up all the same.
  auto r = vm->WaitForAttachAndMount(fast, std::chrono::milliseconds(10000));
  EXPECT_TRUE(r.ok()) << r.status();
  {
    std::lock_guard<std::mutex> l(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  waiter.join();
  EXPECT_TRUE(TornDown(*vm, "s1"));
  EXPECT_TRUE(TornDown(*vm, "f1"));
}

// emptyDir medium HugePages and HugePages-<size>: hugetlbfs with the page size the pod requests (root only, as
// mounting is); the media upstream refuses, with its messages.
TEST(VolumeManager, HugePagesEmptyDirsMountHugetlbfsWithThePodsPageSize) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount";
  TempDir d("vm-huge");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  auto pod = [](const std::string& uid, const std::string& medium, const json& requests) {
    json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p-" + uid}, {"namespace", "ns"}, {"uid", uid}}},
              {"spec", {{"containers", {{{"name", "c"}, {"image", "x:1"},
                                         {"resources", {{"requests", requests}, {"limits", requests}}}}}},
                        {"volumes", {{{"name", "huge"}, {"emptyDir", {{"medium", medium}}}}}}}}};
    return DecodeWithDefaults(j);
  };
  auto fstype_and_options = [](const std::string& path) -> std::pair<std::string, std::vector<std::string>> {
    auto m = mount::FindMountInfo(path);
    if (!m.ok() || m->mount_point != path) return {};
    return {m->fs_type, m->super_options};
  };
  auto has = [](const std::vector<std::string>& opts, const std::string& o) {
    return std::find(opts.begin(), opts.end(), o) != opts.end();
  };
  auto two = vm->WaitForAttachAndMount(pod("h1", "HugePages", {{"hugepages-2Mi", "4Mi"}, {"memory", "64Mi"}}));
  ASSERT_TRUE(two.ok()) << two.status();
  auto [type, opts] = fstype_and_options(two->at("huge").path);
  EXPECT_EQ(type, "hugetlbfs");
  EXPECT_TRUE(has(opts, "pagesize=2M")) << ::testing::PrintToString(opts);
  auto sized = vm->WaitForAttachAndMount(pod("h2", "HugePages-2Mi", {{"hugepages-2Mi", "2Mi"}, {"hugepages-1Gi", "1Gi"}}));
  ASSERT_TRUE(sized.ok()) << sized.status();
  EXPECT_TRUE(has(fstype_and_options(sized->at("huge").path).second, "pagesize=2M"));

  auto refused = [&](const std::string& uid, const std::string& medium, const json& requests, const std::string& why) {
    auto r = vm->WaitForAttachAndMount(pod(uid, medium, requests), std::chrono::milliseconds(300));
    EXPECT_FALSE(r.ok()) << uid;
    const std::string event = "MountVolume.SetUp failed for volume \"huge\" : " + why;
    EXPECT_TRUE(testing::WaitUntil([&] {
      std::lock_guard<std::mutex> l(api.mu);
      return std::find(api.events.begin(), api.events.end(), event) != api.events.end();
    })) << "no event: " << event << "; last: " << api.LastEvent();
  };
  refused("h3", "HugePages-1Gi", {{"hugepages-2Mi", "2Mi"}},
          "medium HugePages-1Gi: hugePages storage requested, but there is no resource request for huge pages");
  refused("h4", "HugePages", {{"hugepages-2Mi", "2Mi"}, {"hugepages-1Gi", "1Gi"}},
          "medium: HugePages can't be used if container requests multiple huge page sizes");
  for (const char* uid : {"h1", "h2", "h3", "h4"}) EXPECT_TRUE(TornDown(*vm, uid)) << uid;
  EXPECT_TRUE(mount::MountsUnder(d.path().string()).empty());
}

TEST(VolumeManager, ARestartedManagerReconstructsWhatIsSetUpAndRewritesNothing) {
  TempDir d("vm-reconstruct");
  FakeClock clock{std::chrono::system_clock::now()};
  FakeAPI api;
  api.clock = &clock;
  api.Set("configmaps/ns/cfg", {{"data", {{"a", "1"}}}});
  api::Pod pod = PodWith("r1", {{{"name", "v"}, {"configMap", {{"name", "cfg"}}}}, {{"name", "e"}, {"emptyDir", json::object()}}});
  fs::path target;
  {
    auto vm = NewVolumeManager(d.path().string(), api.Deps());
    auto r = vm->WaitForAttachAndMount(pod);
    ASSERT_TRUE(r.ok()) << r.status();
    target = fs::read_symlink(fs::path(r->at("v").path) / "..data");
    std::ofstream(fs::path(r->at("e").path) / "work") << "in progress";
  }
  // The API does not answer after the restart: what is on disk is what the pod had, and it is kept as it is.
  api.on_get = [](const std::string&) {};
  {
    std::lock_guard<std::mutex> l(api.mu);
    api.objects.clear();
  }
  auto vm = NewVolumeManager(d.path().string(), api.Deps());
  auto pods = vm->PodsWithVolumes();
  EXPECT_EQ(pods, std::vector<std::string>{"r1"});
  auto r = vm->WaitForAttachAndMount(pod, std::chrono::milliseconds(2000));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fs::read_symlink(fs::path(r->at("v").path) / "..data"), target) << "nothing rewritten";
  EXPECT_EQ(Read(fs::path(r->at("v").path) / "a"), "1");
  EXPECT_EQ(Read(fs::path(r->at("e").path) / "work"), "in progress");
  ASSERT_TRUE(TornDown(*vm, "r1"));
}

}  // namespace
}  // namespace kubelet::volumemanager

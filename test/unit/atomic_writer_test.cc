// Issue 11: the atomic writer, the API-backed volume kinds (configMap, secret, downwardAPI, projected with a
// service account token) and the token manager's refresh, on a temporary folder with fake API answers.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kubelet/api/codec.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/clock.h"
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

struct FakeAPI {
  std::map<std::string, json> objects;  // "resource/ns/name"
  int token_requests = 0;
  json last_token_request;
  int token_status = 0;  // non-zero: the TokenRequest fails
  FakeClock* clock = nullptr;
  VolumeDeps Deps() {
    VolumeDeps d;
    d.get_object = [this](const std::string& r, const std::string& ns, const std::string& n) -> absl::StatusOr<json> {
      auto it = objects.find(r + "/" + ns + "/" + n);
      if (it == objects.end()) return absl::NotFoundError(r + " \"" + n + "\" not found");
      return it->second;
    };
    d.request_token = [this](const std::string& ns, const std::string& sa, const json& req) -> absl::StatusOr<json> {
      ++token_requests;
      last_token_request = req;
      if (token_status) return absl::PermissionDeniedError("serviceaccounts \"" + sa + "\" is forbidden");
      int64_t exp = req["spec"]["expirationSeconds"];
      json out = req;
      out["status"] = {{"token", "tok-" + std::to_string(token_requests) + "-" + ns + "-" + sa},
                       {"expirationTimestamp", FormatRFC3339(clock->Now() + std::chrono::seconds(exp))}};
      return out;
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
  auto mounts = vm->MountVolumesForPod(pod);
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  fs::path sa = mounts->at("kube-api-access-x7k2p");
  EXPECT_EQ(sa, d.path() / "u1/volumes/kubernetes.io~projected/kube-api-access-x7k2p");
  EXPECT_EQ(Read(sa / "token"), "tok-1-team-builder");
  EXPECT_EQ(Read(sa / "ca.crt"), "PEM");
  EXPECT_EQ(Read(sa / "namespace"), "team");
  struct stat st {};
  ASSERT_EQ(::stat((sa / "token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // The TokenRequest as upstream's token manager sends it: bound to the pod, with the projection's lifetime.
  EXPECT_EQ(api.last_token_request["kind"], "TokenRequest");
  EXPECT_EQ(api.last_token_request["spec"]["expirationSeconds"], 3607);
  EXPECT_EQ(api.last_token_request["spec"]["boundObjectRef"]["kind"], "Pod");
  EXPECT_EQ(api.last_token_request["spec"]["boundObjectRef"]["uid"], "u1");
  fs::path cfg = mounts->at("cfg");
  EXPECT_EQ(cfg, d.path() / "u1/volumes/kubernetes.io~configmap/cfg");
  EXPECT_EQ(Read(cfg / "conf/level"), "debug");
  EXPECT_FALSE(fs::exists(cfg / "other"));
  ASSERT_EQ(::stat((cfg / "conf/level").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  fs::path creds = mounts->at("creds");
  EXPECT_EQ(Read(creds / "password"), "s3cret");
  ASSERT_EQ(::stat((creds / "password").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);
  if (::geteuid() == 0) {
    struct statfs fs_info {};
    ASSERT_EQ(::statfs(creds.c_str(), &fs_info), 0);
    EXPECT_EQ(fs_info.f_type, 0x01021994) << "secret volumes are tmpfs";  // TMPFS_MAGIC
  }
  fs::path info = mounts->at("info");
  EXPECT_EQ(Read(info / "labels"), "app=\"web\"\ntier=\"a\\\"b\"");
  EXPECT_EQ(Read(info / "mem"), "64");

  // An update reaches the mounted file; the token is reused while fresh.
  api.objects["configmaps/team/settings"]["data"]["level"] = "info";
  ASSERT_TRUE(vm->MountVolumesForPod(pod).ok());
  EXPECT_EQ(Read(cfg / "conf/level"), "info");
  EXPECT_EQ(api.token_requests, 1);
  // Past 80% of its lifetime the token is requested again and rewritten.
  clock.Step(std::chrono::seconds(3607 * 81 / 100 + 11));
  ASSERT_TRUE(vm->MountVolumesForPod(pod).ok());
  EXPECT_EQ(api.token_requests, 2);
  EXPECT_EQ(Read(sa / "token"), "tok-2-team-builder");

  // Teardown unmounts and leaves no folder behind.
  ASSERT_TRUE(vm->UnmountVolumesForPod("u1").ok());
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
  auto err = [&](const json& volume) {
    auto r = vm->MountVolumesForPod(pod(volume));
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_EQ(err({{"name", "v"}, {"configMap", {{"name", "absent"}}}}),
            "MountVolume.SetUp failed for volume \"v\" : configmap \"absent\" not found");
  EXPECT_EQ(err({{"name", "v"}, {"configMap", {{"name", "absent"}, {"optional", true}}}}), "ok");
  EXPECT_EQ(err({{"name", "s"}, {"secret", {{"secretName", "gone"}}}}),
            "MountVolume.SetUp failed for volume \"s\" : secret \"gone\" not found");
  api.objects["configmaps/ns/half"] = {{"data", {{"a", "1"}}}};
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

}  // namespace
}  // namespace kubelet::volumemanager

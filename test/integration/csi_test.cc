// The plugin manager and the CSI volume plugin against the project's test CSI driver (a separate
// process speaking csi.v1 and the plugin registration API for real, doing real mounts) and the fake
// API server with the Node authorizer's rules. Needs root (mounts).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <fstream>
#include <thread>

#include "common/calls_log.h"
#include "common/test_util.h"
#include "fake/fake_apiserver.h"
#include "kubelet/api/codec.h"
#include "kubelet/client/api_client.h"
#include "kubelet/pluginmanager/plugin_manager.h"
#include "kubelet/util/file.h"
#include "kubelet/util/mount.h"
#include "kubelet/util/operation_executor.h"
#include "kubelet/volumemanager/csi.h"
#include "kubelet/volumemanager/volume_manager.h"

namespace kubelet {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using volumemanager::CSIVolumes;

constexpr char kDriver[] = "csi.test.kubelet-cpp.io";
constexpr char kNode[] = "csi-node";

bool WaitFor(const std::function<bool()>& f, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return f();
}

std::vector<json> Calls(const std::string& state, const std::string& method) {
  return testing::ReadCallsLog(state + "/calls.log", method);
}

class CSITest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for mounts";
    dir_ = fs::temp_directory_path() / ("csi-test-" + std::to_string(getpid()));
    root_ = (dir_ / "root").string();
    state_ = (dir_ / "driver").string();
    fs::create_directories(root_ + "/pods");
    fs::create_directories(state_);
    testing::FakeApiServer::Options o;
    o.cert_dir = (dir_ / "certs").string();
    o.token_user = std::string("system:node:") + kNode;
    api_ = std::make_unique<testing::FakeApiServer>(o);
    ASSERT_TRUE(api_->Start());
    client::RestConfig rc{api_->url(), api_->ca_pem(), false, "", "", "", "test-token", "", ""};
    client::ClientOptions co;
    co.max_retries = 1;
    client_ = client::NewApiClient(rc, co);
    api_->Create("nodes", {{"metadata", {{"name", kNode}}}, {"status", json::object()}});
    api_->CreateNamespaceDefaults("default");
    node_info_ = std::make_unique<volumemanager::NodeInfoManager>(client_.get(), kNode);
    handler_ = std::make_unique<volumemanager::CSIPluginHandler>(&drivers_, node_info_.get());
    volumemanager::CSIDeps d;
    d.drivers = &drivers_;
    d.root_dir = root_;
    d.node_name = kNode;
    d.timeout = std::chrono::seconds(3);
    auto* c = client_.get();
    d.get_object = [c](const std::string& resource, const std::string& ns, const std::string& name) -> absl::StatusOr<json> {
      if (resource == "csidrivers" || resource == "volumeattachments") return c->Get("/apis/storage.k8s.io/v1/" + resource + "/" + name);
      return c->Get(ns.empty() ? "/api/v1/" + resource + "/" + name : "/api/v1/namespaces/" + ns + "/" + resource + "/" + name);
    };
    csi_ = std::make_unique<CSIVolumes>(d);
    pluginmanager::PluginManagerOptions po;
    po.dir = root_ + "/plugins_registry";
    po.reconcile_period = std::chrono::milliseconds(200);
    po.call_timeout = std::chrono::seconds(2);
    po.health_period = std::chrono::milliseconds(500);
    plugins_ = pluginmanager::NewPluginManager(po);
    plugins_->AddHandler(pluginmanager::kCSIPlugin, handler_.get());
    plugins_->Start();
  }

  void TearDown() override {
    if (!api_) return;
    plugins_->Stop();
    StopDriver();
    for (const auto& m : mount::MountsUnder(dir_.string())) ::umount2(m.c_str(), MNT_DETACH);
    for (const auto& m : mount::MountsUnder(dir_.string())) ::umount2(m.c_str(), MNT_DETACH);
    api_->Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void StartDriver(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{TEST_CSI_DRIVER, "--endpoint=" + (dir_ / "csi.sock").string(), "--state-dir=" + state_,
                                  "--registration-dir=" + root_ + "/plugins_registry", std::string("--node-id=") + kNode + "-id",
                                  "--max-volumes=7", "--topology=topology.csi.test.kubelet-cpp.io/zone=z1"};
    for (auto& e : extra) args.push_back(e);
    driver_ = testing::Spawn(args);
  }
  // Restarts the driver and waits until the new one was told it is registered.
  void RestartDriver(int sig = SIGTERM) {
    StopDriver(sig);
    size_t before = Calls(state_, "NotifyRegistrationStatus").size();
    StartDriver();
    ASSERT_TRUE(WaitFor([&] { return Calls(state_, "NotifyRegistrationStatus").size() > before && Registered(); }));
  }
  void StopDriver(int sig = SIGTERM) {
    if (driver_ <= 0) return;
    kill(driver_, sig);
    int st;
    waitpid(driver_, &st, 0);
    driver_ = -1;
  }

  json CSINodeDrivers() {
    auto n = api_->Get("csinodes", "", kNode);
    return n ? (*n)["spec"].value("drivers", json::array()) : json(nullptr);
  }
  bool Registered() {
    json d = CSINodeDrivers();
    return d.is_array() && d.size() == 1 && drivers_.Has(kDriver);
  }

  // A bound claim "data" with PV "pv-data" of the test driver, and a pod on the node using it.
  api::Pod MakePVAndPod(const std::string& pod_name, json csi_extra = json::object()) {
    if (!api_->Get("persistentvolumes", "", "pv-data")) {
      json pvc = {{"metadata", {{"name", "data"}, {"namespace", "default"}}},
                  {"spec", {{"volumeName", "pv-data"}, {"accessModes", {"ReadWriteOnce"}}}},
                  {"status", {{"phase", "Bound"}}}};
      json made = api_->Create("persistentvolumeclaims", pvc);
      json csi = {{"driver", kDriver}, {"volumeHandle", "vol-1"}, {"volumeAttributes", {{"size", "16m"}}}};
      csi.update(csi_extra);
      api_->Create("persistentvolumes",
                   {{"metadata", {{"name", "pv-data"}}},
                    {"spec",
                     {{"accessModes", {"ReadWriteOnce"}},
                      {"mountOptions", {"noatime"}},
                      {"csi", csi},
                      {"claimRef", {{"name", "data"}, {"namespace", "default"}, {"uid", made["metadata"]["uid"]}}}}}});
    }
    json pod = {{"metadata", {{"name", pod_name}, {"namespace", "default"}}},
                {"spec",
                 {{"nodeName", kNode},
                  {"containers", {{{"name", "c"}, {"image", "x"}}}},
                  {"volumes", {{{"name", "store"}, {"persistentVolumeClaim", {{"claimName", "data"}}}}}}}}};
    json made = api_->Create("pods", pod);
    auto decoded = api::DecodePod(made);
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    return *decoded;
  }

  absl::StatusOr<json> PV() { return client_->Get("/api/v1/persistentvolumes/pv-data"); }

  absl::StatusOr<std::string> SetUpPV(const api::Pod& pod, bool* unattached = nullptr) {
    auto pv = PV();
    if (!pv.ok()) return pv.status();
    auto spec = volumemanager::CSIVolumeFromPV(*pv, false);
    if (!spec.ok()) return spec.status();
    bool u = false, attachable = false;
    auto r = csi_->SetUp(pod, *spec, "store", &u, &attachable);
    if (unattached) *unattached = u;
    return r;
  }

  fs::path dir_;
  std::string root_, state_;
  pid_t driver_ = -1;
  std::unique_ptr<testing::FakeApiServer> api_;
  std::unique_ptr<client::ApiClient> client_;
  volumemanager::CSIDriverStore drivers_;
  std::unique_ptr<volumemanager::NodeInfoManager> node_info_;
  std::unique_ptr<volumemanager::CSIPluginHandler> handler_;
  std::unique_ptr<CSIVolumes> csi_;
  std::unique_ptr<pluginmanager::PluginManager> plugins_;
};

TEST_F(CSITest, DriverRegistersCSINodeAnnotationAndLabelsThenDeregisters) {
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); })) << CSINodeDrivers().dump();
  json d = CSINodeDrivers()[0];
  EXPECT_EQ(d["name"], kDriver);
  EXPECT_EQ(d["nodeID"], std::string(kNode) + "-id");
  EXPECT_EQ(d["topologyKeys"], json::array({"topology.csi.test.kubelet-cpp.io/zone"}));
  EXPECT_EQ(d["allocatable"]["count"], 7);
  auto csinode = api_->Get("csinodes", "", kNode);
  EXPECT_EQ((*csinode)["metadata"]["ownerReferences"][0]["kind"], "Node");
  auto node = api_->Get("nodes", "", kNode);
  json ids = json::parse((*node)["metadata"]["annotations"].value(volumemanager::kCSINodeIDAnnotation, "{}"));
  EXPECT_EQ(ids[kDriver], std::string(kNode) + "-id");
  EXPECT_EQ((*node)["metadata"]["labels"]["topology.csi.test.kubelet-cpp.io/zone"], "z1");
  // The plugin was told it is registered.
  ASSERT_TRUE(WaitFor([&] { return !Calls(state_, "NotifyRegistrationStatus").empty(); }));
  EXPECT_TRUE(Calls(state_, "NotifyRegistrationStatus")[0]["plugin_registered"].get<bool>());
  EXPECT_EQ(plugins_->Registered().size(), 1u);

  // The registrar goes (its socket is removed): the driver leaves the store, the CSINode and the annotation.
  StopDriver();
  ASSERT_TRUE(WaitFor([&] { return !drivers_.Has(kDriver); }));
  ASSERT_TRUE(WaitFor([&] { return CSINodeDrivers().is_array() && CSINodeDrivers().empty(); })) << CSINodeDrivers().dump();
  // The CSINode is written first, then the Node: the annotation goes right after.
  EXPECT_TRUE(WaitFor([&] {
    auto n = api_->Get("nodes", "", kNode);
    return !(*n)["metadata"].value("annotations", json::object()).contains(volumemanager::kCSINodeIDAnnotation);
  }));
  EXPECT_TRUE(plugins_->Registered().empty());

  // A restarted driver registers again.
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
}

TEST_F(CSITest, UnsupportedVersionIsRefusedThroughNotifyRegistrationStatus) {
  StartDriver({"--versions=0.3.0,2.0.0"});
  ASSERT_TRUE(WaitFor([&] { return !Calls(state_, "NotifyRegistrationStatus").empty(); }));
  json n = Calls(state_, "NotifyRegistrationStatus")[0];
  EXPECT_FALSE(n["plugin_registered"].get<bool>());
  EXPECT_NE(n["error"].get<std::string>().find("none of the CSI versions reported by this driver are supported"), std::string::npos)
      << n.dump();
  EXPECT_FALSE(drivers_.Has(kDriver));
  EXPECT_TRUE(plugins_->Registered().empty());
}

TEST_F(CSITest, PublishStagesOnceSharesStagingAndTearsDownInOrder) {
  // No CSIDriver object: attach is required, as upstream's default.
  api::Pod p1 = MakePVAndPod("p1");
  auto early = SetUpPV(p1);
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.status().message().find("driver name csi.test.kubelet-cpp.io not found in the list of registered CSI drivers"),
            std::string::npos)
      << early.status();
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  bool unattached = false;
  auto waiting = SetUpPV(p1, &unattached);
  ASSERT_FALSE(waiting.ok());
  EXPECT_TRUE(unattached);
  std::string va_name = volumemanager::CSIAttachmentID("vol-1", kDriver, kNode);
  EXPECT_NE(waiting.status().message().find("MountVolume.WaitForAttach failed for volume \"pv-data\""), std::string::npos)
      << waiting.status();
  // The attach/detach controller's part, done by the test: the attachment, then attached with metadata.
  api_->Create("volumeattachments", {{"metadata", {{"name", va_name}}},
                                     {"spec", {{"attacher", kDriver}, {"nodeName", kNode}, {"source", {{"persistentVolumeName", "pv-data"}}}}},
                                     {"status", {{"attached", true}, {"attachmentMetadata", {{"lun", "3"}}}}}});
  auto path = SetUpPV(p1);
  ASSERT_TRUE(path.ok()) << path.status();
  std::string staging = volumemanager::CSIStagingPath(root_, kDriver, "vol-1");
  EXPECT_EQ(*path, root_ + "/pods/" + p1.metadata.uid + "/volumes/kubernetes.io~csi/pv-data/mount");
  EXPECT_TRUE(mount::IsMountPoint(staging));
  EXPECT_TRUE(mount::IsMountPoint(*path));
  json vd = json::parse(*ReadFileToString(fs::path(*path).parent_path().string() + "/vol_data.json"));
  EXPECT_EQ(vd["driverName"], kDriver);
  EXPECT_EQ(vd["volumeHandle"], "vol-1");
  EXPECT_EQ(vd["attachmentID"], va_name);
  EXPECT_EQ(vd["volumeLifecycleMode"], "Persistent");
  EXPECT_TRUE(fs::exists(fs::path(staging).parent_path() / "vol_data.json"));
  // What the pod writes lands in the driver's backing store.
  { std::ofstream(*path + "/hello") << "from p1"; }
  EXPECT_EQ(*ReadFileToString(state_ + "/volumes/vol-1/hello"), "from p1");
  auto publish = Calls(state_, "NodePublishVolume");
  ASSERT_EQ(publish.size(), 1u);
  EXPECT_EQ(publish[0]["staging_target_path"], staging);
  EXPECT_EQ(publish[0]["publish_context"]["lun"], "3");
  EXPECT_EQ(publish[0]["access_mode"], 1);  // SINGLE_NODE_WRITER
  EXPECT_EQ(publish[0]["mount_flags"], json::array({"noatime"}));
  EXPECT_FALSE(publish[0]["volume_context"].contains("csi.storage.k8s.io/pod.name"));  // podInfoOnMount unset

  // A second pod on the same volume reuses the staging.
  api::Pod p2 = MakePVAndPod("p2");
  auto path2 = SetUpPV(p2);
  ASSERT_TRUE(path2.ok()) << path2.status();
  EXPECT_EQ(*ReadFileToString(*path2 + "/hello"), "from p1");
  EXPECT_EQ(Calls(state_, "NodeStageVolume").size(), 1u);
  EXPECT_EQ(Calls(state_, "NodePublishVolume").size(), 2u);
  // A set-up of what is published already calls nothing.
  ASSERT_TRUE(SetUpPV(p2).ok());
  EXPECT_EQ(Calls(state_, "NodePublishVolume").size(), 2u);

  // p1 goes: unpublished, the staging stays for p2.
  ASSERT_TRUE(csi_->TearDownPod(p1.metadata.uid).ok());
  EXPECT_FALSE(fs::exists(root_ + "/pods/" + p1.metadata.uid + "/volumes/kubernetes.io~csi"));
  EXPECT_TRUE(Calls(state_, "NodeUnstageVolume").empty());
  EXPECT_TRUE(mount::IsMountPoint(staging));
  // p2 goes: unpublished and unstaged, nothing left but the backing store.
  ASSERT_TRUE(csi_->TearDownPod(p2.metadata.uid).ok());
  EXPECT_EQ(Calls(state_, "NodeUnstageVolume").size(), 1u);
  EXPECT_FALSE(fs::exists(fs::path(staging).parent_path()));
  EXPECT_EQ(*ReadFileToString(state_ + "/volumes/vol-1/hello"), "from p1");
  EXPECT_EQ(csi_->StagedCount(), 0u);
  // Only the wait for the attachment was refused (a VolumeAttachment not yet in the graph is forbidden, as upstream).
  for (const auto& f : api_->Forbidden()) EXPECT_NE(f.find("/volumeattachments/" + va_name), std::string::npos) << f;
}

TEST_F(CSITest, FailuresLeaveNothingBehindAndRetriesSucceed) {
  api_->Create("csidrivers", {{"metadata", {{"name", kDriver}}}, {"spec", {{"attachRequired", false}}}});
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  api::Pod p = MakePVAndPod("p");
  const std::string vol_dir = root_ + "/pods/" + p.metadata.uid + "/volumes/kubernetes.io~csi/pv-data";
  std::string staging = volumemanager::CSIStagingPath(root_, kDriver, "vol-1");
  // Stage fails: its folder and data file are gone again.
  { std::ofstream(state_ + "/fail-NodeStageVolume") << "1\nthe backend is not ready"; }
  auto r = SetUpPV(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("MountVolume.MountDevice failed for volume \"pv-data\""), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("the backend is not ready"), std::string::npos) << r.status();
  EXPECT_FALSE(fs::exists(fs::path(staging).parent_path()));
  // Publish hangs past the deadline: DeadlineExceeded, no folder left.
  { std::ofstream(state_ + "/hang-NodePublishVolume") << ""; }
  r = SetUpPV(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("DeadlineExceeded"), std::string::npos) << r.status();
  EXPECT_FALSE(fs::exists(vol_dir));
  fs::remove(state_ + "/hang-NodePublishVolume");
  // The driver crashes mid-publish (after its mount): the retry against the restarted driver is idempotent.
  RestartDriver();
  { std::ofstream(state_ + "/crash-NodePublishVolume") << ""; }
  r = SetUpPV(p);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(Calls(state_, "crash").empty());
  RestartDriver(SIGKILL);
  r = SetUpPV(p);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(mount::IsMountPoint(*r));
  // The driver disappears while the volume is mounted: tear-down waits, the mount and folder stay.
  StopDriver();
  ASSERT_TRUE(WaitFor([&] { return !drivers_.Has(kDriver); }));
  auto td = csi_->TearDownPod(p.metadata.uid);
  ASSERT_FALSE(td.ok());
  EXPECT_NE(td.message().find("not found in the list of registered CSI drivers"), std::string::npos) << td;
  EXPECT_TRUE(mount::IsMountPoint(*r));
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  ASSERT_TRUE(csi_->TearDownPod(p.metadata.uid).ok());
  EXPECT_FALSE(fs::exists(vol_dir));
  EXPECT_FALSE(mount::IsMountPoint(staging));
}

TEST_F(CSITest, InlineEphemeralVolumeWithPodInfoAndSecret) {
  api::Pod pod;
  api_->Create("secrets", {{"metadata", {{"name", "creds"}, {"namespace", "default"}}}, {"data", {{"password", "aHVudGVyMg=="}}}});
  json made = api_->Create(
      "pods", {{"metadata", {{"name", "eph"}, {"namespace", "default"}}},
               {"spec",
                {{"nodeName", kNode},
                 {"containers", {{{"name", "c"}, {"image", "x"}}}},
                 {"volumes",
                  {{{"name", "scratch"},
                    {"csi", {{"driver", kDriver}, {"volumeAttributes", {{"size", "8m"}}}, {"nodePublishSecretRef", {{"name", "creds"}}}}}}}}}}});
  pod = *api::DecodePod(made);
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  auto spec = volumemanager::CSIVolumeFromInline(pod, pod.spec.volumes[0]);
  ASSERT_TRUE(spec.ok()) << spec.status();
  bool unattached = false, attachable = false;
  // A driver without Ephemeral in its lifecycle modes (no CSIDriver object: Persistent only) refuses.
  auto r = csi_->SetUp(pod, *spec, "scratch", &unattached, &attachable);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("volume mode \"Ephemeral\" not supported by driver csi.test.kubelet-cpp.io (only supports [\"Persistent\"])"),
            std::string::npos)
      << r.status();
  api_->Create("csidrivers", {{"metadata", {{"name", kDriver}}},
                              {"spec", {{"attachRequired", true}, {"podInfoOnMount", true}, {"volumeLifecycleModes", {"Ephemeral"}}}}});
  r = csi_->SetUp(pod, *spec, "scratch", &unattached, &attachable);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(attachable);  // inline volumes are never attached
  EXPECT_TRUE(mount::IsMountPoint(*r));
  EXPECT_TRUE(Calls(state_, "NodeStageVolume").empty());
  auto pub = Calls(state_, "NodePublishVolume");
  ASSERT_EQ(pub.size(), 1u);
  const json& ctx = pub[0]["volume_context"];
  EXPECT_EQ(ctx["csi.storage.k8s.io/pod.name"], "eph");
  EXPECT_EQ(ctx["csi.storage.k8s.io/pod.namespace"], "default");
  EXPECT_EQ(ctx["csi.storage.k8s.io/pod.uid"], pod.metadata.uid);
  EXPECT_EQ(ctx["csi.storage.k8s.io/serviceAccount.name"], "default");
  EXPECT_EQ(ctx["csi.storage.k8s.io/ephemeral"], "true");
  EXPECT_EQ(ctx["size"], "8m");
  EXPECT_EQ(pub[0]["secrets"]["password"], "hunter2");
  EXPECT_EQ(pub[0]["volume_id"], volumemanager::CSIEphemeralVolumeHandle(pod.metadata.uid, "scratch"));
  ASSERT_TRUE(csi_->TearDownPod(pod.metadata.uid).ok());
  EXPECT_FALSE(mount::IsMountPoint(*r));
  EXPECT_TRUE(api_->Forbidden().empty()) << api_->Forbidden()[0];
}

TEST_F(CSITest, NodeAuthorizerLimitsStorageObjects) {
  api_->Create("nodes", {{"metadata", {{"name", "other"}}}});
  api_->Create("csinodes", {{"metadata", {{"name", "other"}}}, {"spec", {{"drivers", json::array()}}}});
  api_->Create("volumeattachments", {{"metadata", {{"name", "va-other"}}}, {"spec", {{"nodeName", "other"}}}});
  EXPECT_EQ(client_->Get("/apis/storage.k8s.io/v1/csinodes/other").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client_->Get("/apis/storage.k8s.io/v1/csinodes").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client_->Get("/apis/storage.k8s.io/v1/volumeattachments/va-other").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client_->Get("/apis/storage.k8s.io/v1/volumeattachments").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(client_->Get("/apis/storage.k8s.io/v1/csidrivers").ok());
  EXPECT_EQ(client_->Create("/apis/storage.k8s.io/v1/csidrivers", {{"metadata", {{"name", "x"}}}}).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// A node updates the status of the claims its pods use (volume expansion), and only their capacity and conditions.
TEST_F(CSITest, NodeAuthorizerAndNodeRestrictionOnClaimStatus) {
  api::Pod pod = MakePVAndPod("user");
  api_->Create("persistentvolumeclaims", {{"metadata", {{"name", "unused"}, {"namespace", "default"}}}, {"status", {{"phase", "Bound"}}}});
  auto patch = [&](const std::string& claim, const json& body) {
    return client_->Patch("/api/v1/namespaces/default/persistentvolumeclaims/" + claim + "/status", body, client::PatchType::kMerge).status();
  };
  EXPECT_TRUE(patch("data", {{"status", {{"capacity", {{"storage", "2Gi"}}}, {"conditions", json::array()}}}}).ok());
  EXPECT_EQ((*api_->Get("persistentvolumeclaims", "default", "data"))["status"]["capacity"]["storage"], "2Gi");
  EXPECT_EQ(patch("unused", {{"status", {{"capacity", {{"storage", "2Gi"}}}}}}).code(), absl::StatusCode::kPermissionDenied);
  auto phase = patch("data", {{"status", {{"phase", "Lost"}}}});
  EXPECT_EQ(phase.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(phase.message().find("is not allowed to update fields other than status.capacity and status.conditions"), std::string::npos) << phase;
  EXPECT_EQ((*api_->Get("persistentvolumeclaims", "default", "data"))["status"]["phase"], "Bound");
  // The claim itself (not its status) stays read-only to a node.
  EXPECT_EQ(client_->Patch("/api/v1/namespaces/default/persistentvolumeclaims/data", {{"metadata", {{"labels", {{"a", "b"}}}}}},
                           client::PatchType::kMerge).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// NodeExpandVolume of a published volume to the PV's new size; a driver without EXPAND_VOLUME is not asked.
TEST_F(CSITest, ExpandGrowsThePublishedVolume) {
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  api_->Create("csidrivers", {{"metadata", {{"name", kDriver}}}, {"spec", {{"attachRequired", false}}}});
  api::Pod pod = MakePVAndPod("grow");
  auto target = SetUpPV(pod);
  ASSERT_TRUE(target.ok()) << target.status();
  auto spec = volumemanager::CSIVolumeFromPV(*PV(), false);
  ASSERT_TRUE(spec.ok());
  auto grown = csi_->Expand(pod, *spec, 32 << 20);
  ASSERT_TRUE(grown.ok()) << grown.status();
  EXPECT_TRUE(*grown);
  auto calls = Calls(state_, "NodeExpandVolume");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["required_bytes"], 32 << 20);
  struct statvfs v {};
  ASSERT_EQ(::statvfs(target->c_str(), &v), 0);
  EXPECT_EQ(static_cast<uint64_t>(v.f_blocks) * v.f_frsize, 32u << 20) << "the pod's mount sees the grown filesystem";
  // A failing expansion reads as upstream's message.
  std::ofstream(state_ + "/fail-NodeExpandVolume") << "out of space";
  auto failed = csi_->Expand(pod, *spec, 64 << 20);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message().rfind("MountVolume.NodeExpandVolume failed for volume \"pv-data\" : ", 0), 0u) << failed.status();
  EXPECT_NE(failed.status().message().find("out of space"), std::string::npos) << failed.status();
  fs::remove(state_ + "/fail-NodeExpandVolume");
  ASSERT_TRUE(csi_->TearDownPod(pod.metadata.uid).ok());
}

// requiresRepublish: each set-up of a published volume calls NodePublishVolume again; without it, only the first.
TEST_F(CSITest, RequiresRepublishPublishesAgain) {
  StartDriver();
  ASSERT_TRUE(WaitFor([&] { return Registered(); }));
  api_->Create("csidrivers", {{"metadata", {{"name", kDriver}}}, {"spec", {{"attachRequired", false}}}});
  api::Pod pod = MakePVAndPod("again");
  ASSERT_TRUE(SetUpPV(pod).ok());
  ASSERT_TRUE(SetUpPV(pod).ok());
  EXPECT_EQ(Calls(state_, "NodePublishVolume").size(), 1u);
  EXPECT_FALSE(csi_->RequiresRepublish(kDriver));
  json d = *api_->Get("csidrivers", "", kDriver);
  d["spec"]["requiresRepublish"] = true;
  api_->Update("csidrivers", d);
  ASSERT_TRUE(SetUpPV(pod).ok());
  EXPECT_TRUE(csi_->RequiresRepublish(kDriver));
  EXPECT_EQ(Calls(state_, "NodePublishVolume").size(), 2u);
  // A republish that fails leaves the published volume as it was.
  std::ofstream(state_ + "/fail-NodePublishVolume") << "busy";
  auto again = SetUpPV(pod);
  EXPECT_FALSE(again.ok());
  EXPECT_TRUE(mount::IsMountPoint(root_ + "/pods/" + pod.metadata.uid + "/volumes/kubernetes.io~csi/pv-data/mount"));
  fs::remove(state_ + "/fail-NodePublishVolume");
  ASSERT_TRUE(csi_->TearDownPod(pod.metadata.uid).ok());
}

TEST(OperationExecutor, OneOperationPerKeyAndBackOffAfterFailure) {
  OperationExecutor ex("test", std::chrono::milliseconds(200), std::chrono::milliseconds(1000));
  std::atomic<int> runs{0};
  std::promise<void> release;
  auto gate = release.get_future().share();
  ASSERT_TRUE(ex.Run("a", [&, gate] {
                  ++runs;
                  gate.wait();
                  return absl::InternalError("failed");
                }).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(ex.Run("a", [] { return absl::OkStatus(); })));
  // Another key is not held back.
  ASSERT_TRUE(ex.Run("b", [&] {
                  ++runs;
                  return absl::OkStatus();
                }).ok());
  ASSERT_TRUE(WaitFor([&] { return runs.load() == 2; }));
  release.set_value();
  ASSERT_TRUE(WaitFor([&] { return !ex.IsRunning("a"); }));
  EXPECT_TRUE(absl::IsUnavailable(ex.Run("a", [] { return absl::OkStatus(); })));
  ASSERT_TRUE(WaitFor([&] { return ex.Run("a", [] { return absl::OkStatus(); }).ok(); }, std::chrono::seconds(2)));
  ex.Stop();
  EXPECT_TRUE(absl::IsCancelled(ex.Run("c", [] { return absl::OkStatus(); })));
}

}  // namespace
}  // namespace kubelet

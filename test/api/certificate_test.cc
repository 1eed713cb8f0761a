// The node's certificates: keys and CSRs, the file store, TLS bootstrap with a
// bootstrap token and rotation, against the fake API server's CSR API (its
// approver and signer stand in for kube-controller-manager's).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/test_util.h"
#include "fake/fake_apiserver.h"
#include "fake/test_ca.h"
#include "kubelet/certificate/certificate_manager.h"
#include "kubelet/client/api_client.h"
#include "kubelet/client/kubeconfig.h"

namespace kubelet {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using kubelet::testing::WaitUntil;

constexpr char kBootstrapToken[] = "abcdef.0123456789abcdef";

fs::path TempDir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kcert-" + std::to_string(getpid()) + "-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Certificates, KeysAndRequestsCarryWhatUpstreamAsks) {
  auto key = certificate::GenerateECKey();
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_NE(key->find("BEGIN EC PRIVATE KEY"), std::string::npos);
  certificate::Subject s{"system:node:n1", {"system:nodes"}, {"n1.example"}, {"192.0.2.7"}};
  auto csr = certificate::MakeCSR(*key, s);
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto info = testing::ParseCSR(*csr);  // the signature verifies
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "system:node:n1");
  EXPECT_EQ(info->organizations, std::vector<std::string>{"system:nodes"});
  EXPECT_EQ(info->dns_names, std::vector<std::string>{"n1.example"});
  EXPECT_EQ(info->ip_addresses, std::vector<std::string>{"192.0.2.7"});
  EXPECT_FALSE(info->rsa_key);

  // The name is the same for the same key, subject and usages, and changes with any of them.
  std::vector<std::string> usages = {"digital signature", "client auth"};
  auto n1 = certificate::DigestedName(*key, s, usages);
  auto n2 = certificate::DigestedName(*key, s, usages);
  ASSERT_TRUE(n1.ok() && n2.ok());
  EXPECT_EQ(*n1, *n2);
  EXPECT_EQ(n1->rfind("node-csr-", 0), 0u);
  EXPECT_EQ(n1->size(), std::string("node-csr-").size() + 43);  // 32 bytes, unpadded base64url
  EXPECT_EQ(n1->find_first_of("+/="), std::string::npos);
  EXPECT_NE(*n1, *certificate::DigestedName(*key, s, {"digital signature", "server auth"}));
  EXPECT_NE(*n1, *certificate::DigestedName(*certificate::GenerateECKey(), s, usages));
  EXPECT_FALSE(certificate::MakeCSR("not a key", s).ok());
}

TEST(Certificates, TheVerdictOnACSRObjectNeverThrowsOnWhatTheAPIReturns) {
  using certificate::IssuedCertificate;
  EXPECT_FALSE(IssuedCertificate(json::array(), ""));
  EXPECT_FALSE(IssuedCertificate({{"metadata", json::array()}, {"status", "x"}}, "u"));
  EXPECT_FALSE(IssuedCertificate({{"status", {{"conditions", "Approved"}}}}, "u"));
  EXPECT_FALSE(IssuedCertificate({{"status", {{"conditions", {{{"type", "Approved"}}}}, {"certificate", 7}}}}, "u"));
  // Found by fuzz_certificates: fields of the wrong type (value() would throw on them).
  EXPECT_FALSE(IssuedCertificate({{"status", {{"conditions", {{{"type", json::array()}, {"reason", 1}}}}}}}, "u"));
  EXPECT_FALSE(IssuedCertificate({{"metadata", {{"uid", json::array()}, {"name", 3}}}}, "u"));
  auto bad = IssuedCertificate({{"status", {{"conditions", {{{"type", "Approved"}}}}, {"certificate", "!!"}}}}, "u");
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->ok());
  auto moved = IssuedCertificate({{"metadata", {{"name", "n"}, {"uid", "other"}}}}, "u");
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->status().message(), "csr \"n\" changed UIDs");
  auto failed = IssuedCertificate({{"status", {{"conditions", {{{"type", "Failed"}, {"reason", "SignerValidationFailure"}, {"message", "m"}}}}}}}, "");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status().message(), "certificate signing request failed, reason: SignerValidationFailure, message: m");
  auto issued = IssuedCertificate({{"status", {{"conditions", {{{"type", "Approved"}}}}, {"certificate", testing::Base64Encode("PEM")}}}}, "");
  ASSERT_TRUE(issued && issued->ok());
  EXPECT_EQ(**issued, "PEM");
}

TEST(Certificates, RotationDeadlineFallsBetween70And90PercentOfTheLifetime) {
  certificate::KeyPair kp;
  kp.not_before = TimePoint(std::chrono::seconds(1'000'000));
  kp.not_after = kp.not_before + std::chrono::hours(100);
  EXPECT_EQ(certificate::NextRotationDeadline(kp, 0.0), kp.not_before + std::chrono::hours(70));
  EXPECT_EQ(certificate::NextRotationDeadline(kp, 0.5), kp.not_before + std::chrono::hours(80));
  auto late = certificate::NextRotationDeadline(kp, 0.999999);
  EXPECT_LT(late, kp.not_before + std::chrono::hours(90));
  EXPECT_GT(late, kp.not_before + std::chrono::minutes(89 * 60 + 59));
  EXPECT_EQ(certificate::NextRotationDeadline(kp, 7.0), kp.not_before + std::chrono::hours(90));  // clamped
}

TEST(Certificates, FileStoreKeepsTimestampedPairsBehindTheCurrentLink) {
  auto dir = TempDir("store");
  auto ca = testing::TestCA::Create((dir / "ca").string());
  ASSERT_TRUE(ca.ok());
  certificate::FileStore store("kubelet-client", (dir / "pki").string());
  EXPECT_TRUE(absl::IsNotFound(store.Current().status()));
  auto key = certificate::GenerateECKey();
  auto csr = certificate::MakeCSR(*key, {"system:node:n1", {"system:nodes"}, {}, {}});
  auto cert = (*ca)->Sign(*csr, {"digital signature", "client auth"}, std::chrono::hours(1));
  ASSERT_TRUE(cert.ok()) << cert.status();
  // A key that is not the certificate's is refused, and nothing is written.
  EXPECT_FALSE(store.Update(*cert, *certificate::GenerateECKey()).ok());
  EXPECT_FALSE(fs::exists(store.CurrentPath()));
  auto kp = store.Update(*cert, *key);
  ASSERT_TRUE(kp.ok()) << kp.status();
  EXPECT_EQ(kp->common_name, "system:node:n1");
  EXPECT_EQ(kp->organizations, std::vector<std::string>{"system:nodes"});
  ASSERT_TRUE(fs::is_symlink(store.CurrentPath()));
  fs::path target = fs::read_symlink(store.CurrentPath());
  EXPECT_EQ(target.filename().string().rfind("kubelet-client-20", 0), 0u) << target;
  EXPECT_EQ(fs::status(target).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  auto back = store.Current();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->cert_pem, kp->cert_pem);
  EXPECT_EQ(back->key_pem, kp->key_pem);
  // A kubeconfig naming the one file for cert and key reads it (what bootstrapping writes).
  client::RestConfig boot;
  boot.server = "https://127.0.0.1:1";
  boot.ca_pem = (*ca)->cert_pem();
  ASSERT_TRUE(certificate::WriteBootstrappedKubeconfig(boot, (dir / "kubelet.conf").string(), store.CurrentPath()).ok());
  auto rc = client::LoadKubeconfig((dir / "kubelet.conf").string());
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->ca_pem, (*ca)->cert_pem());
  EXPECT_TRUE(certificate::ParseKeyPair(rc->client_cert_pem, rc->client_key_pem).ok());
  EXPECT_TRUE(certificate::ClientConfigStillValid((dir / "kubelet.conf").string()));
  // A damaged current file is an error naming it, not a crash or an empty pair.
  fs::remove(target);
  std::ofstream(target) << "garbage";
  auto bad = store.Current();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(store.CurrentPath()), std::string::npos) << bad.status();
  EXPECT_FALSE(certificate::ClientConfigStillValid((dir / "kubelet.conf").string()));
  fs::remove_all(dir);
}

class CertificateAPITest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    StartServer(std::chrono::hours(1), true);
  }
  void StartServer(std::chrono::seconds lifetime, bool auto_approve) {
    if (api_) api_->Stop();
    testing::FakeApiServer::Options o;
    o.cert_dir = (dir_ / "api").string();
    o.csr_signing = true;
    o.signed_cert_lifetime = lifetime;
    o.auto_approve_node_client_csrs = auto_approve;
    api_ = std::make_unique<testing::FakeApiServer>(o);
    ASSERT_TRUE(api_->Start());
    api_->AddUserToken(kBootstrapToken, "system:bootstrap:abcdef", {"system:bootstrappers"});
    std::ofstream(dir_ / "bootstrap.conf") << "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: c\n"
                                           << "  cluster:\n    server: " << api_->url() << "\n    certificate-authority-data: "
                                           << testing::Base64Encode(api_->ca_pem()) << "\nusers:\n- name: u\n  user:\n"
                                           << "    token: " << kBootstrapToken << "\ncontexts:\n- name: b\n"
                                           << "  context: {cluster: c, user: u}\n";
  }
  void TearDown() override {
    api_->Stop();
    fs::remove_all(dir_);
  }
  std::string Kubeconfig() const { return (dir_ / "kubelet.conf").string(); }
  std::string CertDir() const { return (dir_ / "pki").string(); }
  absl::Status Bootstrap(const std::atomic<bool>* stop = nullptr) {
    return certificate::LoadClientCert(Kubeconfig(), (dir_ / "bootstrap.conf").string(), CertDir(), "node1",
                                       std::chrono::seconds(20), stop);
  }
  static std::unique_ptr<client::ApiClient> Client(const client::RestConfig& rc) {
    client::ClientOptions co;
    co.max_retries = 0;
    co.timeout = std::chrono::seconds(5);
    return client::NewApiClient(rc, co);
  }

  fs::path dir_;
  std::unique_ptr<testing::FakeApiServer> api_;
};

TEST_F(CertificateAPITest, BootstrapTokenBuysANodeClientCertificateAndAKubeconfig) {
  ASSERT_TRUE(Bootstrap().ok());
  auto csrs = api_->List("certificatesigningrequests");
  ASSERT_EQ(csrs.size(), 1u);
  const json& csr = csrs[0];
  EXPECT_EQ(csr["metadata"]["name"].get<std::string>().rfind("node-csr-", 0), 0u);
  EXPECT_EQ(csr["spec"]["signerName"], "kubernetes.io/kube-apiserver-client-kubelet");
  EXPECT_EQ(csr["spec"]["usages"], json({"digital signature", "client auth"}));
  EXPECT_EQ(csr["spec"]["username"], "system:bootstrap:abcdef");
  EXPECT_FALSE(fs::exists(CertDir() + "/kubelet-client.key.tmp"));  // the key moved into the store
  EXPECT_TRUE(fs::is_symlink(CertDir() + "/kubelet-client-current.pem"));

  // The written kubeconfig is the node: the API server sees system:node:node1 in system:nodes.
  auto rc = client::LoadKubeconfig(Kubeconfig());
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_TRUE(rc->bearer_token.empty());
  auto kp = certificate::ParseKeyPair(rc->client_cert_pem, rc->client_key_pem);
  ASSERT_TRUE(kp.ok());
  EXPECT_EQ(kp->common_name, "system:node:node1");
  auto node = Client(*rc);
  auto lease = node->Create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                            {{"metadata", {{"name", "node1"}, {"namespace", "kube-node-lease"}}}, {"spec", json::object()}});
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(api_->Users().back(), "system:node:node1");
  // ... and the Node authorizer holds it to its own objects.
  auto other = node->Create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                            {{"metadata", {{"name", "node2"}, {"namespace", "kube-node-lease"}}}, {"spec", json::object()}});
  EXPECT_TRUE(absl::IsPermissionDenied(other.status())) << other.status();

  // A restart with a valid kubeconfig skips bootstrap: no second request.
  ASSERT_TRUE(Bootstrap().ok());
  EXPECT_EQ(api_->List("certificatesigningrequests").size(), 1u);
}

TEST_F(CertificateAPITest, ABootstrapTokenMayOnlyAskForCertificates) {
  auto rc = client::LoadKubeconfig((dir_ / "bootstrap.conf").string());
  ASSERT_TRUE(rc.ok());
  auto boot = Client(*rc);
  EXPECT_TRUE(absl::IsPermissionDenied(boot->Get("/api/v1/nodes/node1").status()));
  EXPECT_TRUE(absl::IsPermissionDenied(boot->Get("/api/v1/namespaces/default/pods").status()));
  // A CSR the signer's rules refuse (a client certificate with a SAN) is not approved for it.
  auto key = certificate::GenerateECKey();
  auto csr = certificate::MakeCSR(*key, {"system:node:node1", {"system:nodes"}, {"evil.example"}, {}});
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    stop = true;
  });
  auto got = certificate::RequestCertificate(boot.get(), *csr, "odd", certificate::kKubeAPIServerClientKubeletSigner,
                                             {"digital signature", "client auth"}, std::chrono::seconds(30), &stop);
  stopper.join();
  EXPECT_TRUE(absl::IsCancelled(got.status())) << got.status();
  auto obj = api_->Get("certificatesigningrequests", "", "odd");
  ASSERT_TRUE(obj);
  EXPECT_FALSE((*obj)["status"].contains("conditions"));
  // A request that is not a CSR is refused by the API's validation.
  auto bad = boot->Create("/apis/certificates.k8s.io/v1/certificatesigningrequests",
                          {{"metadata", {{"name", "junk"}}},
                           {"spec", {{"request", testing::Base64Encode("junk")}, {"signerName", "x/y"}, {"usages", {"client auth"}}}}});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()) || bad.status().code() == absl::StatusCode::kFailedPrecondition) << bad.status();
  EXPECT_NE(bad.status().message().find("spec.request"), std::string::npos) << bad.status();
  auto unsigned_name = boot->Create("/apis/certificates.k8s.io/v1/certificatesigningrequests",
                                    {{"metadata", {{"name", "nosigner"}}},
                                     {"spec", {{"request", testing::Base64Encode(*csr)}, {"signerName", "kubelet"}, {"usages", {"client auth"}}}}});
  EXPECT_NE(unsigned_name.status().message().find("must be a fully qualified domain and path"), std::string::npos)
      << unsigned_name.status();
}

TEST_F(CertificateAPITest, ADeniedRequestEndsTheWaitWithItsReasonAndARestartReusesTheKey) {
  StartServer(std::chrono::hours(1), /*auto_approve=*/false);
  std::thread denier([&] {
    WaitUntil([&] { return !api_->List("certificatesigningrequests").empty(); });
    auto csrs = api_->List("certificatesigningrequests");
    if (!csrs.empty()) api_->ApproveCSR(csrs[0]["metadata"]["name"], false);
  });
  auto st = Bootstrap();
  denier.join();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("certificate signing request is denied, reason: KubectlDeny"), std::string::npos) << st;
  EXPECT_FALSE(fs::exists(Kubeconfig()));
  // The key waits for the next try, which asks under the same name and finds the (denied) request again.
  ASSERT_TRUE(fs::exists(CertDir() + "/kubelet-client.key.tmp"));
  auto again = Bootstrap();
  EXPECT_NE(again.message().find("denied"), std::string::npos) << again;
  EXPECT_EQ(api_->List("certificatesigningrequests").size(), 1u);
  // Approved by hand this time (a new request: the denied one is deleted first, as an administrator would).
  api_->Remove("certificatesigningrequests", "", api_->List("certificatesigningrequests")[0]["metadata"]["name"]);
  std::thread approver([&] {
    WaitUntil([&] { return !api_->List("certificatesigningrequests").empty(); });
    auto csrs = api_->List("certificatesigningrequests");
    if (!csrs.empty()) api_->ApproveCSR(csrs[0]["metadata"]["name"], true);
  });
  auto ok = Bootstrap();
  approver.join();
  EXPECT_TRUE(ok.ok()) << ok;
  EXPECT_TRUE(certificate::ClientConfigStillValid(Kubeconfig()));
}

TEST_F(CertificateAPITest, TheManagerRotatesBeforeExpiryAndClientsSwitchWithoutARestart) {
  // Certificates of 6 s: the rotation falls between 4.2 and 5.4 s into each one's life.
  StartServer(std::chrono::seconds(6), true);
  ASSERT_TRUE(Bootstrap().ok());
  auto rc = client::LoadKubeconfig(Kubeconfig());
  ASSERT_TRUE(rc.ok());
  auto first = certificate::ParseKeyPair(rc->client_cert_pem, rc->client_key_pem);
  ASSERT_TRUE(first.ok());

  RealClock clock;
  std::unique_ptr<client::ApiClient> node;
  certificate::ManagerOptions mo;
  mo.name = "client";
  mo.signer_name = certificate::kKubeAPIServerClientKubeletSigner;
  mo.subject = [] { return certificate::Subject{"system:node:node1", {"system:nodes"}, {}, {}}; };
  mo.usages = {"digital signature", "client auth"};
  mo.store = std::make_unique<certificate::FileStore>("kubelet-client", CertDir());
  mo.clock = &clock;
  mo.initial_backoff = std::chrono::milliseconds(200);
  mo.client = [&node](const certificate::KeyPair*) { return node.get(); };
  certificate::Manager mgr(std::move(mo));
  ASSERT_TRUE(mgr.Current());
  EXPECT_EQ(mgr.Current()->cert_pem, first->cert_pem);
  client::RestConfig dynamic = *rc;
  dynamic.cert_provider = [&mgr]() -> std::shared_ptr<const TLSCertificate> { return mgr.Current(); };
  node = Client(dynamic);
  auto fixed = Client(*rc);  // the first certificate, never rotated
  mgr.Start();
  // Two rotations, each renewed by the node itself (selfnodeclient), each before the previous one expired.
  ASSERT_TRUE(WaitUntil([&] { return mgr.Rotations() >= 2; }, std::chrono::seconds(30))) << mgr.Rotations();
  auto now = mgr.Current();
  ASSERT_TRUE(now);
  EXPECT_GT(now->not_after, first->not_after);
  auto csrs = api_->List("certificatesigningrequests");
  ASSERT_GE(csrs.size(), 3u);
  int renewals = 0;
  for (const auto& c : csrs) renewals += c["spec"]["username"] == "system:node:node1";
  EXPECT_GE(renewals, 2);
  // Past the first certificate's expiry the API server refuses it; the rotating client goes on.
  ASSERT_TRUE(WaitUntil([&] { return clock.Now() > first->not_after + std::chrono::seconds(1); }, std::chrono::seconds(10)));
  EXPECT_TRUE(absl::IsUnauthenticated(fixed->Get("/api/v1/nodes/node1").status()));
  auto got = node->Get("/api/v1/nodes/node1");
  EXPECT_TRUE(got.ok() || absl::IsNotFound(got.status())) << got.status();
  // A watch opened with one certificate ends once another is in use (and is reopened with it by its reflector).
  std::atomic<bool> stop{false};
  int rotations_before = mgr.Rotations();
  auto st = node->Watch("/api/v1/nodes?fieldSelector=metadata.name%3Dnode1&watch=true", [](const json&) { return true; }, &stop);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_GT(mgr.Rotations(), rotations_before);
  mgr.Stop();
}

TEST_F(CertificateAPITest, AnExpiredClientCertificateIsRefusedNotAnonymous) {
  StartServer(std::chrono::seconds(2), true);
  ASSERT_TRUE(Bootstrap().ok());
  auto rc = client::LoadKubeconfig(Kubeconfig());
  ASSERT_TRUE(rc.ok());
  auto node = Client(*rc);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(absl::IsUnauthenticated(node->Get("/api/v1/nodes/node1").status()));
  // The kubeconfig is no longer valid: the next start bootstraps again.
  EXPECT_FALSE(certificate::ClientConfigStillValid(Kubeconfig()));
}

}  // namespace
}  // namespace kubelet

// The CNI exec runner against small plugins written for the test (shell
// scripts that record their environment and stdin): config selection, the
// CNI_* environment, chaining with prevResult, runtimeConfig by capability,
// the result cache for DEL, error objects, timeouts and VERSION.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kubelet/network/cni.h"

namespace kubelet::network {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class CNITest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cni-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    for (const char* d : {"conf", "bin", "cache", "rec"}) fs::create_directories(dir_ / d);
    // Records what it was given; ADD answers with a fixed IP (or the prevResult it got when chained).
    Plugin("recorder", R"(#!/bin/sh
in=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS" >> )" + (dir_ / "rec").string() + R"(/$(basename $0).env
printf '%s\n' "$in" >> )" + (dir_ / "rec").string() + R"(/$(basename $0).stdin
case "$CNI_COMMAND" in
  ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"10.99.0.5/24","gateway":"10.99.0.1"},{"address":"fd00::5/64"}]}' ;;
  VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}' ;;
esac
exit 0
)");
    fs::copy_file(dir_ / "bin" / "recorder", dir_ / "bin" / "chained");
    Plugin("failing", R"(#!/bin/sh
cat > /dev/null
printf '{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available in range set","details":"10.99.0.0/30"}'
exit 1
)");
    Plugin("slow", "#!/bin/sh\ncat > /dev/null\nexec sleep 30\n");
    CNIOptions o;
    o.conf_dir = (dir_ / "conf").string();
    o.bin_dirs = {(dir_ / "nowhere").string(), (dir_ / "bin").string()};
    o.cache_dir = (dir_ / "cache").string();
    o.timeout = std::chrono::seconds(2);
    cni_ = std::make_unique<CNIRunner>(o);
    a_.container_id = "sb123";
    a_.netns = "/var/run/netns/test";
    a_.pod_name = "web";
    a_.pod_namespace = "default";
    a_.pod_uid = "uid-1";
    a_.port_mappings = {{8080, 80, "tcp", ""}};
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Plugin(const std::string& name, const std::string& script) {
    fs::path p = dir_ / "bin" / name;
    std::ofstream(p) << script;
    fs::permissions(p, fs::perms::owner_all);
  }
  void Conf(const std::string& name, const std::string& text) { std::ofstream(dir_ / "conf" / name) << text; }
  std::vector<std::string> Lines(const std::string& file) {
    std::ifstream in(dir_ / "rec" / file);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }

  fs::path dir_;
  std::unique_ptr<CNIRunner> cni_;
  Attachment a_;
};

TEST_F(CNITest, NoConfigMeansNotReady) {
  auto st = cni_->Ready();
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "cni config uninitialized");
  EXPECT_FALSE(cni_->Add(a_).ok());
}

TEST_F(CNITest, LexicallyFirstUsableConfigWins) {
  Conf("00-broken.conflist", R"({"cniVersion":"1.0.0","name":"broken","plugins":[]})");
  Conf("10-single.conf", R"({"cniVersion":"0.4.0","name":"single","type":"recorder"})");
  Conf("20-list.conflist", R"({"cniVersion":"1.0.0","name":"list","plugins":[{"type":"recorder"}]})");
  Conf("05-notes.txt", "ignored");
  auto n = LoadNetworkList((dir_ / "conf").string());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->name, "single");
  EXPECT_EQ(n->plugins.size(), 1u);
  EXPECT_TRUE(cni_->Ready().ok());
}

TEST_F(CNITest, AddChainsPluginsAndDelUsesTheCachedResult) {
  Conf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"podnet","plugins":[
    {"type":"recorder","bridge":"cni0"},
    {"type":"chained","capabilities":{"portMappings":true}}]})");
  auto r = cni_->Add(a_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->ips, (std::vector<std::string>{"10.99.0.5", "fd00::5"}));
  // The CNI_* environment, as the spec names it.
  auto env = Lines("recorder.env");
  ASSERT_EQ(env.size(), 1u);
  EXPECT_EQ(env[0], "ADD sb123 /var/run/netns/test eth0 IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                    "K8S_POD_INFRA_CONTAINER_ID=sb123;K8S_POD_UID=uid-1");
  // The first plugin gets its config with name and version, no prevResult, no runtimeConfig (no capability).
  json first = json::parse(Lines("recorder.stdin")[0]);
  EXPECT_EQ(first["name"], "podnet");
  EXPECT_EQ(first["cniVersion"], "1.0.0");
  EXPECT_EQ(first["bridge"], "cni0");
  EXPECT_FALSE(first.contains("prevResult"));
  EXPECT_FALSE(first.contains("runtimeConfig"));
  // The second gets the first's result and the port mappings it asked for.
  json second = json::parse(Lines("chained.stdin")[0]);
  EXPECT_EQ(second["prevResult"]["ips"][0]["address"], "10.99.0.5/24");
  EXPECT_EQ(second["runtimeConfig"]["portMappings"][0], json::parse(R"({"hostPort":8080,"containerPort":80,"protocol":"tcp"})"));
  EXPECT_FALSE(second.contains("capabilities"));
  // Cached as libcni does, for DEL and for a restarted kubelet.
  EXPECT_TRUE(fs::exists(dir_ / "cache" / "results" / "podnet-sb123-eth0"));
  auto cached = cni_->Cached("sb123");
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->ips[0], "10.99.0.5");

  // DEL in reverse order, with prevResult from the cache, even if the config changed meanwhile, and the
  // port mappings of the ADD (a restarted kubelet's DEL knows only the sandbox): portmap needs them to clean up.
  fs::remove(dir_ / "conf" / "10-net.conflist");
  Attachment after_restart = a_;
  after_restart.port_mappings.clear();
  ASSERT_TRUE(cni_->Del(after_restart).ok());
  json chained_del = json::parse(Lines("chained.stdin").back());
  EXPECT_EQ(chained_del["runtimeConfig"]["portMappings"][0],
            json::parse(R"({"hostPort":8080,"containerPort":80,"protocol":"tcp"})"));
  EXPECT_EQ(Lines("chained.env").back().substr(0, 4), "DEL ");
  EXPECT_EQ(Lines("recorder.env").back().substr(0, 4), "DEL ");
  json del = json::parse(Lines("recorder.stdin").back());
  EXPECT_EQ(del["prevResult"]["ips"][0]["address"], "10.99.0.5/24");
  EXPECT_FALSE(fs::exists(dir_ / "cache" / "results" / "podnet-sb123-eth0"));
  // A second DEL (nothing cached, no config) is not an error.
  EXPECT_TRUE(cni_->Del(a_).ok());
}

TEST_F(CNITest, PluginErrorObjectBecomesTheErrorAndEarlierPluginsAreUndone) {
  Conf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"recorder"},{"type":"failing"}]})");
  auto r = cni_->Add(a_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "plugin type=\"failing\" failed (add): no IP addresses available in range set; 10.99.0.0/30");
  auto env = Lines("recorder.env");
  ASSERT_EQ(env.size(), 2u);
  EXPECT_EQ(env[1].substr(0, 4), "DEL ");
  EXPECT_FALSE(cni_->Cached("sb123").has_value());
}

TEST_F(CNITest, MissingPluginAndTimeout) {
  Conf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"absent"}]})");
  auto r = cni_->Add(a_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("failed to find plugin \"absent\" in path ["), std::string::npos) << r.status();
  Conf("10-net.conflist", R"({"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"slow"}]})");
  auto start = std::chrono::steady_clock::now();
  r = cni_->Add(a_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));  // killed, not waited out
}

TEST_F(CNITest, VersionAndResultIPs) {
  auto v = cni_->Version("recorder");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->back(), "1.0.0");
  EXPECT_EQ(Lines("recorder.env")[0].substr(0, 8), "VERSION ");
  EXPECT_EQ(CNIRunner::ResultIPs(json::parse(R"({"ip4":{"ip":"10.1.0.2/16"}})")), (std::vector<std::string>{"10.1.0.2"}));
  EXPECT_EQ(CNIRunner::ResultIPs(json::parse(R"({"ips":[{"address":"fd00::1/64"},{"address":"10.0.0.1/24"}]})")),
            (std::vector<std::string>{"10.0.0.1", "fd00::1"}));
}

}  // namespace
}  // namespace kubelet::network

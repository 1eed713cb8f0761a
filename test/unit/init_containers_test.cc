// Init containers and sidecars: which start when (upstream's
// computeInitContainerActions), the pod phase and conditions they produce,
// and liveness/startup results turning into kills.
#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/status/status_manager.h"

namespace kubelet::kuberuntime {
namespace {

using json = nlohmann::json;

// init: list of (name, sidecar); main containers m0..m(n-1).
api::Pod MakePod(const std::vector<std::pair<std::string, bool>>& init, int mains = 1, const std::string& restart = "Always",
                 json extra_main = json::object()) {
  json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"uid", "u"}}}};
  j["spec"]["restartPolicy"] = restart;
  for (const auto& [name, sidecar] : init) {
    json c = {{"name", name}, {"image", "x:1"}};
    if (sidecar) c["restartPolicy"] = "Always";
    j["spec"]["initContainers"].push_back(c);
  }
  for (int i = 0; i < mains; ++i) {
    json c = {{"name", "m" + std::to_string(i)}, {"image", "x:1"}};
    c.update(extra_main);
    j["spec"]["containers"].push_back(c);
  }
  api::ApplyPodDefaults(j);
  auto pod = api::DecodePod(j);
  EXPECT_TRUE(pod.ok()) << pod.status();
  EXPECT_TRUE(api::ValidatePod(*pod).ok()) << api::ValidatePod(*pod);
  return *pod;
}

const api::Container& Spec(const api::Pod& pod, const std::string& name) {
  for (const auto* l : {&pod.spec.init_containers, &pod.spec.containers})
    for (const auto& c : *l)
      if (c.name == name) return c;
  throw std::runtime_error("no container " + name);
}

// A pod with a ready sandbox and containers in the given states (newest first in the list order given).
PodStatus State(const api::Pod& pod, const std::vector<std::tuple<std::string, ContainerState, int>>& cs) {
  PodStatus s;
  s.sandboxes.push_back({"sb1", true, TimePoint(), 0, "10.0.0.2", {}, false});
  s.ips = {"10.0.0.2"};
  for (const auto& [name, state, code] : cs) {
    ContainerStatus c;
    c.id = "id-" + name;
    c.name = name;
    c.state = state;
    c.exit_code = code;
    c.hash = HashContainer(Spec(pod, name));
    s.containers.push_back(c);
  }
  return s;
}

constexpr auto kRun = ContainerState::kRunning;
constexpr auto kExit = ContainerState::kExited;

TEST(InitContainers, NewPodStartsTheFirstInitContainerOnly) {
  auto pod = MakePod({{"i0", false}, {"i1", false}});
  PodActions a = ComputePodActions(pod, PodStatus{});
  EXPECT_TRUE(a.create_sandbox);
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{0}));
  EXPECT_TRUE(a.containers_to_start.empty());
}

TEST(InitContainers, RunOneAfterAnotherThenTheMainContainers) {
  auto pod = MakePod({{"i0", false}, {"i1", false}});
  // i0 still running: wait.
  PodActions a = ComputePodActions(pod, State(pod, {{"i0", kRun, 0}}));
  EXPECT_TRUE(a.init_containers_to_start.empty());
  EXPECT_TRUE(a.containers_to_start.empty());
  EXPECT_FALSE(a.kill_pod);
  // i0 done: start i1.
  a = ComputePodActions(pod, State(pod, {{"i0", kExit, 0}}));
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{1}));
  EXPECT_TRUE(a.containers_to_start.empty());
  // i1 done: start the main containers.
  a = ComputePodActions(pod, State(pod, {{"i1", kExit, 0}, {"i0", kExit, 0}}));
  EXPECT_TRUE(a.init_containers_to_start.empty());
  EXPECT_EQ(a.containers_to_start, (std::vector<size_t>{0}));
  // i0 garbage collected: the last one tells initialization finished.
  a = ComputePodActions(pod, State(pod, {{"i1", kExit, 0}}));
  EXPECT_EQ(a.containers_to_start, (std::vector<size_t>{0}));
  // Main container running: init containers are never run again.
  a = ComputePodActions(pod, State(pod, {{"m0", kRun, 0}}));
  EXPECT_TRUE(a.init_containers_to_start.empty());
  EXPECT_TRUE(a.containers_to_start.empty());
  EXPECT_FALSE(a.kill_pod);
}

TEST(InitContainers, FailedInitContainerRestartsOrFailsThePod) {
  auto pod = MakePod({{"i0", false}}, 1, "Always");
  PodActions a = ComputePodActions(pod, State(pod, {{"i0", kExit, 1}}));
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{0}));
  EXPECT_FALSE(a.kill_pod);
  auto never = MakePod({{"i0", false}}, 1, "Never");
  a = ComputePodActions(never, State(never, {{"i0", kExit, 1}}));
  EXPECT_TRUE(a.kill_pod);
  EXPECT_TRUE(a.init_containers_to_start.empty());
  EXPECT_TRUE(a.containers_to_start.empty());
}

TEST(Sidecars, StartInOrderAndKeepRunning) {
  auto pod = MakePod({{"s0", true}, {"i1", false}});
  // The sidecar runs (no startup probe): on to the plain init container.
  PodActions a = ComputePodActions(pod, State(pod, {{"s0", kRun, 0}}));
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{1}));
  // Both done: the main container starts, the sidecar stays.
  a = ComputePodActions(pod, State(pod, {{"i1", kExit, 0}, {"s0", kRun, 0}}));
  EXPECT_TRUE(a.init_containers_to_start.empty());
  EXPECT_EQ(a.containers_to_start, (std::vector<size_t>{0}));
  // A sidecar that exits is restarted, even after initialization.
  a = ComputePodActions(pod, State(pod, {{"m0", kRun, 0}, {"i1", kExit, 0}, {"s0", kExit, 1}}));
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{0}));
  EXPECT_FALSE(a.kill_pod);
  // A sidecar that vanished after initialization comes back; the plain one does not.
  a = ComputePodActions(pod, State(pod, {{"m0", kRun, 0}}));
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{0}));
}

TEST(Sidecars, StartupProbeHoldsTheNextOneBack) {
  auto pod = MakePod({{"s0", true}, {"i1", false}});
  json j = pod.raw;
  j["spec"]["initContainers"][0]["startupProbe"] = {{"exec", {{"command", {"true"}}}}};
  api::ApplyPodDefaults(j);
  pod = *api::DecodePod(j);
  std::optional<bool> startup;
  ProbeLookup probes;
  probes.startup = [&](const std::string&) { return startup; };
  PodActions a = ComputePodActions(pod, State(pod, {{"s0", kRun, 0}}), probes);
  EXPECT_TRUE(a.init_containers_to_start.empty());  // not probed yet
  startup = true;
  a = ComputePodActions(pod, State(pod, {{"s0", kRun, 0}}), probes);
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{1}));
  startup = false;
  a = ComputePodActions(pod, State(pod, {{"s0", kRun, 0}}), probes);
  EXPECT_EQ(a.init_containers_to_start, (std::vector<size_t>{0}));
  ASSERT_EQ(a.containers_to_kill.count("id-s0"), 1u);
  EXPECT_EQ(a.containers_to_kill["id-s0"].message, "Init container s0 failed startup probe");
}

TEST(Sidecars, DoNotKeepAFinishedPodAlive) {
  auto pod = MakePod({{"s0", true}}, 1, "Never");
  PodActions a = ComputePodActions(pod, State(pod, {{"m0", kExit, 0}, {"s0", kRun, 0}}));
  EXPECT_TRUE(a.kill_pod);
  EXPECT_TRUE(a.init_containers_to_start.empty());
}

TEST(Probes, LivenessFailureKillsAndRestartsPerPolicy) {
  auto pod = MakePod({}, 1, "Always");
  std::optional<bool> live = false;
  ProbeLookup probes;
  probes.liveness = [&](const std::string&) { return live; };
  PodActions a = ComputePodActions(pod, State(pod, {{"m0", kRun, 0}}), probes);
  ASSERT_EQ(a.containers_to_kill.count("id-m0"), 1u);
  EXPECT_EQ(a.containers_to_kill["id-m0"].message, "Container m0 failed liveness probe, will be restarted");
  EXPECT_EQ(a.containers_to_kill["id-m0"].reason, "LivenessProbe");
  EXPECT_EQ(a.containers_to_start, (std::vector<size_t>{0}));
  auto never = MakePod({}, 1, "Never");
  a = ComputePodActions(never, State(never, {{"m0", kRun, 0}}), probes);
  EXPECT_EQ(a.containers_to_kill["id-m0"].message, "Container m0 failed liveness probe");
  EXPECT_TRUE(a.containers_to_start.empty());
  live = true;
  a = ComputePodActions(pod, State(pod, {{"m0", kRun, 0}}), probes);
  EXPECT_TRUE(a.containers_to_kill.empty());
}

}  // namespace
}  // namespace kubelet::kuberuntime

namespace kubelet::status {
namespace {

using json = nlohmann::json;
using kuberuntime::ContainerState;

api::Pod PodWith(json init, std::string restart = "Always") {
  json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"uid", "u"}}},
            {"spec", {{"restartPolicy", restart}, {"initContainers", init}, {"containers", {{{"name", "m0"}, {"image", "x:1"}}}}}}};
  api::ApplyPodDefaults(j);
  return *api::DecodePod(j);
}

kuberuntime::PodStatus Runtime(std::vector<std::tuple<std::string, ContainerState, int>> cs) {
  kuberuntime::PodStatus s;
  s.sandboxes.push_back({"sb1", true, TimePoint(), 0, "10.0.0.2", {}, false});
  s.ips = {"10.0.0.2"};
  for (const auto& [name, state, code] : cs) {
    kuberuntime::ContainerStatus c;
    c.id = "id-" + name;
    c.name = name;
    c.state = state;
    c.exit_code = code;
    s.containers.push_back(c);
  }
  return s;
}

const api::PodCondition& Condition(const api::PodStatus& s, const std::string& type) {
  for (const auto& c : s.conditions)
    if (c.type == type) return c;
  throw std::runtime_error("no condition " + type);
}

TEST(InitStatus, PendingWhileInitializing) {
  auto pod = PodWith(json::parse(R"([{"name":"i0","image":"x:1"},{"name":"i1","image":"x:1"}])"));
  StatusInputs in;
  auto s = GenerateAPIPodStatus(pod, Runtime({{"i0", ContainerState::kRunning, 0}}), std::nullopt, in);
  EXPECT_EQ(s.phase, "Pending");
  ASSERT_EQ(s.init_container_statuses.size(), 2u);
  EXPECT_TRUE(s.init_container_statuses[0].state.running.has_value());
  EXPECT_FALSE(s.init_container_statuses[0].ready);
  EXPECT_EQ(s.init_container_statuses[1].state.waiting->reason, "PodInitializing");
  EXPECT_EQ(s.container_statuses[0].state.waiting->reason, "PodInitializing");
  EXPECT_EQ(Condition(s, "Initialized").status, "False");
  EXPECT_EQ(Condition(s, "Initialized").reason, "ContainersNotInitialized");
  EXPECT_EQ(Condition(s, "Initialized").message, "containers with incomplete status: [i0 i1]");
  // Both done, main running.
  s = GenerateAPIPodStatus(pod, Runtime({{"m0", ContainerState::kRunning, 0}, {"i1", ContainerState::kExited, 0},
                                          {"i0", ContainerState::kExited, 0}}), std::nullopt, in);
  EXPECT_EQ(s.phase, "Running");
  EXPECT_TRUE(s.init_container_statuses[0].ready);
  EXPECT_EQ(s.init_container_statuses[0].state.terminated->reason, "Completed");
  EXPECT_EQ(Condition(s, "Initialized").status, "True");
  EXPECT_EQ(Condition(s, "Ready").status, "True");
}

TEST(InitStatus, FailedInitWithNeverFailsThePod) {
  auto pod = PodWith(json::parse(R"([{"name":"i0","image":"x:1"}])"), "Never");
  auto s = GenerateAPIPodStatus(pod, Runtime({{"i0", ContainerState::kExited, 2}}), std::nullopt, StatusInputs{});
  EXPECT_EQ(s.phase, "Failed");
  EXPECT_EQ(s.init_container_statuses[0].state.terminated->reason, "Error");
}

TEST(InitStatus, SidecarReadinessCountsForThePod) {
  auto pod = PodWith(json::parse(R"([{"name":"s0","image":"x:1","restartPolicy":"Always",
                                      "readinessProbe":{"exec":{"command":["true"]}}}])"));
  std::optional<bool> ready;
  StatusInputs in;
  in.readiness = [&](const std::string&) { return ready; };
  auto rt = Runtime({{"m0", ContainerState::kRunning, 0}, {"s0", ContainerState::kRunning, 0}});
  auto s = GenerateAPIPodStatus(pod, rt, std::nullopt, in);
  EXPECT_EQ(s.phase, "Running");
  EXPECT_EQ(Condition(s, "Initialized").status, "True");
  EXPECT_TRUE(s.init_container_statuses[0].started.value_or(false));
  EXPECT_FALSE(s.init_container_statuses[0].ready);  // probe not run yet
  EXPECT_EQ(Condition(s, "ContainersReady").message, "containers with unready status: [s0]");
  ready = true;
  s = GenerateAPIPodStatus(pod, rt, std::nullopt, in);
  EXPECT_EQ(Condition(s, "Ready").status, "True");
}

TEST(InitStatus, ReadinessAndStartupProbesGateReady) {
  json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}, {"uid", "u"}}},
            {"spec", {{"containers", {{{"name", "m0"}, {"image", "x:1"},
                                       {"readinessProbe", {{"tcpSocket", {{"port", 80}}}}},
                                       {"startupProbe", {{"tcpSocket", {{"port", 80}}}}}}}}}}};
  api::ApplyPodDefaults(j);
  auto pod = *api::DecodePod(j);
  std::optional<bool> ready = true, started;
  StatusInputs in;
  in.readiness = [&](const std::string&) { return ready; };
  in.startup = [&](const std::string&) { return started; };
  auto rt = Runtime({{"m0", ContainerState::kRunning, 0}});
  auto s = GenerateAPIPodStatus(pod, rt, std::nullopt, in);
  EXPECT_FALSE(*s.container_statuses[0].started);
  EXPECT_FALSE(s.container_statuses[0].ready);  // not started: not ready, whatever readiness says
  started = true;
  s = GenerateAPIPodStatus(pod, rt, std::nullopt, in);
  EXPECT_TRUE(s.container_statuses[0].ready);
  ready = false;
  s = GenerateAPIPodStatus(pod, rt, std::nullopt, in);
  EXPECT_FALSE(s.container_statuses[0].ready);
  EXPECT_EQ(Condition(s, "Ready").reason, "ContainersNotReady");
  EXPECT_EQ(s.phase, "Running");
}

TEST(Validation, InitContainerRules) {
  auto check = [](const std::string& spec) {
    json j = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "p"}}}, {"spec", json::parse(spec)}};
    api::ApplyPodDefaults(j);
    auto pod = api::DecodePod(j);
    EXPECT_TRUE(pod.ok()) << pod.status();
    return std::string(api::ValidatePod(*pod).message());
  };
  EXPECT_EQ(check(R"({"containers":[{"name":"m","image":"x:1","restartPolicy":"Always"}]})"),
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers");
  EXPECT_EQ(check(R"({"initContainers":[{"name":"i","image":"x:1","readinessProbe":{"exec":{"command":["true"]}}}],
                     "containers":[{"name":"m","image":"x:1"}]})"),
            "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always");
  EXPECT_EQ(check(R"({"containers":[{"name":"m","image":"x:1","livenessProbe":{"exec":{"command":["true"]},"successThreshold":2}}]})"),
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: \"2\": must be 1");
  EXPECT_EQ(check(R"({"containers":[{"name":"m","image":"x:1","readinessProbe":{"periodSeconds":5}}]})"),
            "spec.containers[0].readinessProbe: Required value: must specify a handler type");
  EXPECT_EQ(check(R"({"initContainers":[{"name":"s","image":"x:1","restartPolicy":"Always",
                      "readinessProbe":{"httpGet":{"port":8080}}}],"containers":[{"name":"m","image":"x:1"}]})"), "");
}

}  // namespace
}  // namespace kubelet::status

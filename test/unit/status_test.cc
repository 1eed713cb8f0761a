#include <gtest/gtest.h>

#include "kubelet/api/codec.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/status/status_manager.h"

namespace kubelet::status {
namespace {

using kuberuntime::ContainerState;

api::Pod MakePod(const std::string& restart, int n) {
  nlohmann::json j = {{"kind", "Pod"}, {"metadata", {{"name", "p"}, {"uid", "u"}}}};
  j["spec"]["restartPolicy"] = restart;
  for (int i = 0; i < n; ++i) j["spec"]["containers"].push_back({{"name", "c" + std::to_string(i)}, {"image", "x:1"}});
  api::ApplyPodDefaults(j);
  return *api::DecodePod(j);
}

api::ContainerStatus Running(const std::string& n) {
  api::ContainerStatus s;
  s.name = n;
  s.state.running = api::ContainerStateRunning{};
  return s;
}
api::ContainerStatus Exited(const std::string& n, int code) {
  api::ContainerStatus s;
  s.name = n;
  s.state.terminated = api::ContainerStateTerminated{};
  s.state.terminated->exit_code = code;
  return s;
}
api::ContainerStatus Waiting(const std::string& n, bool ran_before) {
  api::ContainerStatus s;
  s.name = n;
  s.state.waiting = api::ContainerStateWaiting{"CrashLoopBackOff", ""};
  if (ran_before) s.last_termination_state.terminated = api::ContainerStateTerminated{};
  return s;
}

TEST(GetPhase, MatchesUpstreamTable) {
  EXPECT_EQ(GetPhase(MakePod("Always", 2), {Running("c0"), Running("c1")}), "Running");
  EXPECT_EQ(GetPhase(MakePod("Always", 2), {Running("c0")}), "Pending");  // one unknown
  EXPECT_EQ(GetPhase(MakePod("Always", 1), {Waiting("c0", false)}), "Pending");
  EXPECT_EQ(GetPhase(MakePod("Always", 1), {Waiting("c0", true)}), "Running");  // crash looping
  EXPECT_EQ(GetPhase(MakePod("Always", 1), {Exited("c0", 0)}), "Running");
  EXPECT_EQ(GetPhase(MakePod("Never", 2), {Exited("c0", 0), Exited("c1", 0)}), "Succeeded");
  EXPECT_EQ(GetPhase(MakePod("Never", 2), {Exited("c0", 0), Exited("c1", 1)}), "Failed");
  EXPECT_EQ(GetPhase(MakePod("OnFailure", 1), {Exited("c0", 1)}), "Running");
  EXPECT_EQ(GetPhase(MakePod("OnFailure", 1), {Exited("c0", 0)}), "Succeeded");
  EXPECT_EQ(GetPhase(MakePod("Never", 2), {Running("c0"), Exited("c1", 1)}), "Running");
}

kuberuntime::PodStatus RuntimeStatus() {
  kuberuntime::PodStatus rs;
  rs.sandboxes.push_back({"sb", true, TimePoint(), 0, "10.1.0.5", {}, false});
  rs.ips = {"10.1.0.5"};
  kuberuntime::ContainerStatus now;
  now.id = "new";
  now.name = "c0";
  now.state = ContainerState::kRunning;
  now.restart_count = 2;
  now.image_ref = "sha256:abc";
  now.image = "x:1";
  now.created_at = TimePoint(std::chrono::seconds(20));
  kuberuntime::ContainerStatus before = now;
  before.id = "old";
  before.state = ContainerState::kExited;
  before.exit_code = 137;
  before.created_at = TimePoint(std::chrono::seconds(10));
  rs.containers = {now, before};
  return rs;
}

TEST(GenerateAPIPodStatus, RunningPodWithRestarts) {
  auto pod = MakePod("Always", 1);
  StatusInputs in;
  in.runtime_type = "containerd";
  in.host_ip = "192.168.1.10";
  in.now = TimePoint(std::chrono::seconds(1000));
  auto s = GenerateAPIPodStatus(pod, RuntimeStatus(), std::nullopt, in);
  EXPECT_EQ(s.phase, "Running");
  EXPECT_EQ(s.pod_ip, "10.1.0.5");
  EXPECT_EQ(s.host_ip, "192.168.1.10");
  EXPECT_EQ(s.qos_class, "BestEffort");
  ASSERT_EQ(s.container_statuses.size(), 1u);
  const auto& c = s.container_statuses[0];
  EXPECT_EQ(c.container_id, "containerd://new");
  EXPECT_EQ(c.restart_count, 2);
  EXPECT_EQ(c.image_id, "sha256:abc");
  EXPECT_TRUE(c.ready);
  ASSERT_TRUE(c.last_termination_state.terminated);
  EXPECT_EQ(c.last_termination_state.terminated->exit_code, 137);
  EXPECT_EQ(c.last_termination_state.terminated->reason, "Error");
  std::map<std::string, std::string> conds;
  for (const auto& x : s.conditions) conds[x.type] = x.status;
  EXPECT_EQ(conds["Ready"], "True");
  EXPECT_EQ(conds["ContainersReady"], "True");
  EXPECT_EQ(conds["PodReadyToStartContainers"], "True");
  EXPECT_EQ(conds["PodScheduled"], "True");
  EXPECT_EQ(conds["Initialized"], "True");
  EXPECT_EQ(s.start_time, in.now);
}

TEST(GenerateAPIPodStatus, CrashLoopShowsWaitingWithLastState) {
  auto pod = MakePod("Always", 1);
  auto rs = RuntimeStatus();
  rs.containers[0].state = ContainerState::kExited;
  rs.containers[0].exit_code = 1;
  StatusInputs in;
  in.waiting_reason = [](const std::string&) {
    return std::optional<kuberuntime::WaitingReason>({"CrashLoopBackOff", "back-off 20s restarting failed container"});
  };
  auto s = GenerateAPIPodStatus(pod, rs, std::nullopt, in);
  const auto& c = s.container_statuses[0];
  ASSERT_TRUE(c.state.waiting);
  EXPECT_EQ(c.state.waiting->reason, "CrashLoopBackOff");
  ASSERT_TRUE(c.last_termination_state.terminated);
  EXPECT_EQ(c.last_termination_state.terminated->exit_code, 1);
  EXPECT_FALSE(c.ready);
  EXPECT_EQ(s.phase, "Running");
  for (const auto& x : s.conditions)
    if (x.type == "Ready") {
      EXPECT_EQ(x.status, "False");
      EXPECT_EQ(x.reason, "ContainersNotReady");
      EXPECT_EQ(x.message, "containers with unready status: [c0]");
    }
}

TEST(GenerateAPIPodStatus, NewPodIsPendingContainerCreating) {
  auto pod = MakePod("Always", 1);
  auto s = GenerateAPIPodStatus(pod, kuberuntime::PodStatus{}, std::nullopt, StatusInputs{});
  EXPECT_EQ(s.phase, "Pending");
  ASSERT_TRUE(s.container_statuses[0].state.waiting);
  EXPECT_EQ(s.container_statuses[0].state.waiting->reason, "ContainerCreating");
}

TEST(StatusManager, KeepsTransitionTimesAndStartTime) {
  StatusManager m;
  api::PodStatus a;
  a.phase = "Running";
  a.start_time = TimePoint(std::chrono::seconds(5));
  a.conditions.push_back({"Ready", "True", std::nullopt, TimePoint(std::chrono::seconds(5)), "", ""});
  EXPECT_TRUE(m.SetPodStatus("u", a));
  api::PodStatus b = a;
  b.conditions[0].last_transition_time = TimePoint(std::chrono::seconds(50));
  EXPECT_FALSE(m.SetPodStatus("u", b));  // same status: no change
  EXPECT_EQ(m.GetPodStatus("u")->conditions[0].last_transition_time, TimePoint(std::chrono::seconds(5)));
  EXPECT_EQ(b.conditions[0].last_transition_time, TimePoint(std::chrono::seconds(5)));  // the caller sees what was stored
  b.conditions[0].last_transition_time = TimePoint(std::chrono::seconds(50));
  b.conditions[0].status = "False";
  EXPECT_TRUE(m.SetPodStatus("u", b));
  EXPECT_EQ(m.GetPodStatus("u")->conditions[0].last_transition_time, TimePoint(std::chrono::seconds(50)));
  m.RemoveOrphanedStatuses({});
  EXPECT_EQ(m.Size(), 0u);
}

}  // namespace
}  // namespace kubelet::status

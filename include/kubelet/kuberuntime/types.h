#pragma once
// The runtime's view of pods (kubecontainer equivalents): what is really
// running, grouped by pod UID from the labels the kubelet put on it.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kubelet/util/clock.h"

namespace kubelet::kuberuntime {

// Labels and annotations the kubelet writes on sandboxes and containers; other
// CRI tools (crictl, the upstream kubelet) read the same ones.
inline constexpr char kPodNameLabel[] = "io.kubernetes.pod.name";
inline constexpr char kPodNamespaceLabel[] = "io.kubernetes.pod.namespace";
inline constexpr char kPodUIDLabel[] = "io.kubernetes.pod.uid";
inline constexpr char kContainerNameLabel[] = "io.kubernetes.container.name";
inline constexpr char kContainerHashAnnotation[] = "io.kubernetes.container.hash";
inline constexpr char kContainerRestartCountAnnotation[] = "io.kubernetes.container.restartCount";
inline constexpr char kContainerTerminationMessagePathAnnotation[] = "io.kubernetes.container.terminationMessagePath";
inline constexpr char kContainerTerminationMessagePolicyAnnotation[] =
    "io.kubernetes.container.terminationMessagePolicy";
inline constexpr char kContainerPortsAnnotation[] = "io.kubernetes.container.ports";
inline constexpr char kPodDeletionGracePeriodAnnotation[] = "io.kubernetes.pod.deletionGracePeriod";
inline constexpr char kPodTerminationGracePeriodAnnotation[] = "io.kubernetes.pod.terminationGracePeriod";

enum class ContainerState { kCreated, kRunning, kExited, kUnknown };
const char* ContainerStateName(ContainerState s);

struct ContainerStatus {
  std::string id;  // runtime ID without the type prefix
  std::string name;
  ContainerState state = ContainerState::kUnknown;
  TimePoint created_at;
  TimePoint started_at;
  TimePoint finished_at;
  int32_t exit_code = 0;
  std::string image;
  std::string image_ref;
  std::string hash;
  int32_t restart_count = 0;
  std::string reason;
  std::string message;
  std::string termination_message_path;
};

struct SandboxStatus {
  std::string id;
  bool ready = false;
  TimePoint created_at;
  uint32_t attempt = 0;
  std::string ip;
  std::vector<std::string> additional_ips;
  bool host_network = false;
};

/** One pod's runtime state: sandboxes and containers, newest first. */
struct PodStatus {
  std::string uid;
  std::string name;
  std::string namespace_;
  std::vector<SandboxStatus> sandboxes;
  std::vector<ContainerStatus> containers;
  std::vector<std::string> ips;
  TimePoint timestamp;

  /** The newest container with this name, or nullptr. */
  const ContainerStatus* FindContainer(const std::string& name) const;
};

/** Light runtime listing (from PLEG's relist): IDs and states only. */
struct RuntimeContainer {
  std::string id;
  std::string name;
  std::string sandbox_id;
  ContainerState state = ContainerState::kUnknown;
  TimePoint created_at;
};

struct RuntimeSandbox {
  std::string id;
  bool ready = false;
  TimePoint created_at;
};

struct RuntimePod {
  std::string uid;
  std::string name;
  std::string namespace_;
  std::vector<RuntimeSandbox> sandboxes;
  std::vector<RuntimeContainer> containers;
  bool IsRunning() const;
};

}  // namespace kubelet::kuberuntime

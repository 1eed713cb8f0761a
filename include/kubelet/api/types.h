#pragma once
// The subset of core/v1 the kubelet acts on, as typed structs. Each object
// keeps the JSON it was decoded from (`raw`), so fields the kubelet does not
// model survive a round trip to /pods and, later, to the API server.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kubelet/util/clock.h"

namespace kubelet::api {

using StringMap = std::map<std::string, std::string>;

struct EnvVar {
  std::string name;
  std::string value;
  nlohmann::json value_from;  // null unless valueFrom is set
};

struct ContainerPort {
  std::string name;
  int32_t container_port = 0;
  int32_t host_port = 0;
  std::string protocol = "TCP";
  std::string host_ip;
};

struct VolumeMount {
  std::string name;
  std::string mount_path;
  std::string sub_path;
  std::string sub_path_expr;  // $(VAR) expanded from the container's environment
  bool read_only = false;
  std::string mount_propagation;
};

struct ResourceRequirements {
  StringMap requests;
  StringMap limits;
};

/** A port given as a number or as the name of a container port. */
struct IntOrString {
  bool is_int = true;
  int32_t int_value = 0;
  std::string str_value;
};

struct HTTPHeader {
  std::string name;
  std::string value;
};

/** What a probe or a lifecycle hook does: exactly one of these is set. */
struct ProbeHandler {
  std::optional<std::vector<std::string>> exec_command;
  struct HTTPGet {
    std::string path = "/";
    IntOrString port;
    std::string host;
    std::string scheme = "HTTP";
    std::vector<HTTPHeader> headers;
  };
  std::optional<HTTPGet> http_get;
  struct TCPSocket {
    IntOrString port;
    std::string host;
  };
  std::optional<TCPSocket> tcp_socket;
  struct GRPC {
    int32_t port = 0;
    std::optional<std::string> service;
  };
  std::optional<GRPC> grpc;
  std::optional<int64_t> sleep_seconds;  // lifecycle hooks only
};

struct Probe {
  ProbeHandler handler;
  int32_t initial_delay_seconds = 0;
  int32_t timeout_seconds = 1;
  int32_t period_seconds = 10;
  int32_t success_threshold = 1;
  int32_t failure_threshold = 3;
  std::optional<int64_t> termination_grace_period_seconds;
};

struct Lifecycle {
  std::optional<ProbeHandler> post_start;
  std::optional<ProbeHandler> pre_stop;
};

struct Capabilities {
  std::vector<std::string> add;
  std::vector<std::string> drop;
};

/** seccompProfile / appArmorProfile. */
struct SecurityProfile {
  std::string type;  // RuntimeDefault, Unconfined, Localhost
  std::string localhost_profile;
};

struct SELinuxOptions {
  std::string user, role, type, level;
};

/** The container's securityContext. */
struct SecurityContext {
  std::optional<int64_t> run_as_user;
  std::optional<int64_t> run_as_group;
  std::optional<bool> run_as_non_root;
  std::optional<bool> privileged;
  std::optional<bool> read_only_root_filesystem;
  std::optional<bool> allow_privilege_escalation;
  std::optional<Capabilities> capabilities;
  std::optional<SecurityProfile> seccomp_profile;
  std::optional<SecurityProfile> app_armor_profile;
  std::optional<SELinuxOptions> se_linux_options;
  std::string proc_mount;  // Default, Unmasked
};

struct Sysctl {
  std::string name;
  std::string value;
};

/** The pod's securityContext. */
struct PodSecurityContext {
  std::optional<int64_t> run_as_user;
  std::optional<int64_t> run_as_group;
  std::optional<bool> run_as_non_root;
  std::optional<int64_t> fs_group;
  std::vector<int64_t> supplemental_groups;
  std::string fs_group_change_policy;
  std::optional<SecurityProfile> seccomp_profile;
  std::optional<SecurityProfile> app_armor_profile;
  std::optional<SELinuxOptions> se_linux_options;
  std::vector<Sysctl> sysctls;
};

struct NodeSelectorRequirement {
  std::string key;
  std::string op;  // In, NotIn, Exists, DoesNotExist, Gt, Lt
  std::vector<std::string> values;
};

struct NodeSelectorTerm {
  std::vector<NodeSelectorRequirement> match_expressions;
  std::vector<NodeSelectorRequirement> match_fields;
};

struct Toleration {
  std::string key;
  std::string op;  // Equal (default), Exists
  std::string value;
  std::string effect;
  std::optional<int64_t> toleration_seconds;
};

struct HostAlias {
  std::string ip;
  std::vector<std::string> hostnames;
};

struct Container {
  std::string name;
  std::string image;
  std::vector<std::string> command;
  std::vector<std::string> args;
  std::string working_dir;
  std::vector<EnvVar> env;
  nlohmann::json env_from = nlohmann::json::array();  // envFrom sources, as given
  std::vector<ContainerPort> ports;
  std::vector<VolumeMount> volume_mounts;
  ResourceRequirements resources;
  std::string image_pull_policy;  // Always, IfNotPresent, Never
  std::string termination_message_path;
  std::string termination_message_policy;
  bool stdin = false;
  bool stdin_once = false;
  bool tty = false;
  std::string restart_policy;  // init containers only: "Always" makes a sidecar
  std::optional<Probe> liveness_probe;
  std::optional<Probe> readiness_probe;
  std::optional<Probe> startup_probe;
  std::optional<Lifecycle> lifecycle;
  std::optional<SecurityContext> security_context;
  nlohmann::json raw;
};

/** An init container with restartPolicy Always: a sidecar, kept running beside the main containers. */
inline bool IsRestartableInitContainer(const Container& c) { return c.restart_policy == "Always"; }

struct HostPathVolumeSource {
  std::string path;
  std::string type;
};

struct EmptyDirVolumeSource {
  std::string medium;
  std::string size_limit;
};

/** One file of a configMap/secret volume: the object's key written at path (relative to the volume), with mode. */
struct KeyToPath {
  std::string key;
  std::string path;
  std::optional<int32_t> mode;
};

struct ConfigMapVolumeSource {
  std::string name;
  std::vector<KeyToPath> items;  // empty: every key, each at a path of its own name
  std::optional<int32_t> default_mode;
  bool optional = false;
};

struct SecretVolumeSource {
  std::string secret_name;
  std::vector<KeyToPath> items;
  std::optional<int32_t> default_mode;
  bool optional = false;
};

struct DownwardAPIVolumeFile {
  std::string path;
  std::string field_path;  // fieldRef.fieldPath
  std::string resource_container, resource, divisor;  // resourceFieldRef
  std::optional<int32_t> mode;
};

struct DownwardAPIVolumeSource {
  std::vector<DownwardAPIVolumeFile> items;
  std::optional<int32_t> default_mode;
};

struct ServiceAccountTokenProjection {
  std::string audience;  // empty: the API server's own audiences
  int64_t expiration_seconds = 3600;
  std::string path;
};

/** One source of a projected volume: exactly one member is set. */
struct VolumeProjection {
  std::optional<SecretVolumeSource> secret;
  std::optional<ConfigMapVolumeSource> config_map;
  std::optional<DownwardAPIVolumeSource> downward_api;
  std::optional<ServiceAccountTokenProjection> service_account_token;
};

struct ProjectedVolumeSource {
  std::vector<VolumeProjection> sources;
  std::optional<int32_t> default_mode;
};

struct PersistentVolumeClaimVolumeSource {
  std::string claim_name;
  bool read_only = false;
};

struct Volume {
  std::string name;
  std::optional<HostPathVolumeSource> host_path;
  std::optional<EmptyDirVolumeSource> empty_dir;
  std::optional<ConfigMapVolumeSource> config_map;
  std::optional<SecretVolumeSource> secret;
  std::optional<DownwardAPIVolumeSource> downward_api;
  std::optional<ProjectedVolumeSource> projected;
  std::optional<PersistentVolumeClaimVolumeSource> persistent_volume_claim;
  nlohmann::json raw;
};

struct PodDNSConfig {
  std::vector<std::string> nameservers;
  std::vector<std::string> searches;
  std::vector<std::pair<std::string, std::optional<std::string>>> options;
};

struct PodSpec {
  std::vector<Container> init_containers;
  std::vector<Container> containers;
  std::vector<Volume> volumes;
  std::string restart_policy = "Always";
  int64_t termination_grace_period_seconds = 30;
  std::string dns_policy = "ClusterFirst";
  std::optional<PodDNSConfig> dns_config;
  std::string node_name;
  bool host_network = false;
  bool host_pid = false;
  bool host_ipc = false;
  std::string hostname;
  std::string subdomain;
  std::string runtime_class_name;
  std::map<std::string, std::string> overhead;  // spec.overhead (RuntimeClass admission copies the class's podFixed)
  std::string service_account_name;
  bool enable_service_links = true;
  std::optional<int32_t> priority;
  std::string priority_class_name;
  PodSecurityContext security_context;
  StringMap node_selector;
  // affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms; unset: no requirement.
  std::optional<std::vector<NodeSelectorTerm>> required_node_affinity;
  std::vector<Toleration> tolerations;
  std::vector<HostAlias> host_aliases;
  std::string os_name;  // spec.os.name
};

struct ObjectMeta {
  std::string name;
  std::string namespace_ = "default";
  std::string uid;
  std::string resource_version;
  StringMap labels;
  StringMap annotations;
  std::optional<TimePoint> creation_timestamp;
  std::optional<TimePoint> deletion_timestamp;
  std::optional<int64_t> deletion_grace_period_seconds;
};

struct ContainerStateWaiting {
  std::string reason;
  std::string message;
};
struct ContainerStateRunning {
  TimePoint started_at;
};
struct ContainerStateTerminated {
  int32_t exit_code = 0;
  int32_t signal = 0;
  std::string reason;
  std::string message;
  TimePoint started_at;
  TimePoint finished_at;
  std::string container_id;
};

struct ContainerState {
  std::optional<ContainerStateWaiting> waiting;
  std::optional<ContainerStateRunning> running;
  std::optional<ContainerStateTerminated> terminated;
  bool operator==(const ContainerState& o) const;
};

struct ContainerStatus {
  std::string name;
  ContainerState state;
  ContainerState last_termination_state;
  bool ready = false;
  int32_t restart_count = 0;
  std::string image;
  std::string image_id;
  std::string container_id;
  std::optional<bool> started;
  bool operator==(const ContainerStatus& o) const;
};

struct PodCondition {
  std::string type;
  std::string status;  // True, False, Unknown
  std::optional<TimePoint> last_probe_time;
  TimePoint last_transition_time;
  std::string reason;
  std::string message;
};

struct PodStatus {
  std::string phase = "Pending";
  std::vector<PodCondition> conditions;
  std::string message;
  std::string reason;
  std::string host_ip;
  std::vector<std::string> host_ips;
  std::string pod_ip;
  std::vector<std::string> pod_ips;
  std::optional<TimePoint> start_time;
  std::vector<ContainerStatus> init_container_statuses;
  std::vector<ContainerStatus> container_statuses;
  std::string qos_class;
};

struct Pod {
  ObjectMeta metadata;
  PodSpec spec;
  PodStatus status;
  nlohmann::json raw;  // the object as received, defaults applied

  /** "name_namespace", the kubelet's key for a pod across UIDs. */
  std::string FullName() const { return metadata.name + "_" + metadata.namespace_; }
};

// Well-known annotations and labels.
inline constexpr char kConfigSourceAnnotation[] = "kubernetes.io/config.source";
inline constexpr char kConfigHashAnnotation[] = "kubernetes.io/config.hash";
inline constexpr char kConfigSeenAnnotation[] = "kubernetes.io/config.seen";
inline constexpr char kConfigMirrorAnnotation[] = "kubernetes.io/config.mirror";
inline constexpr char kSourceFile[] = "file";
inline constexpr char kSourceHTTP[] = "http";
inline constexpr char kSourceAPI[] = "api";

bool IsStaticPod(const Pod& pod);
std::string QOSClass(const Pod& pod);

}  // namespace kubelet::api

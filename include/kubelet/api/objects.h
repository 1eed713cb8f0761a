#pragma once
// The cluster objects the kubelet writes besides pods: core/v1 Node and
// Event, coordination.k8s.io/v1 Lease, and the meta/v1 Status the API server
// answers errors with. Typed structs with encoders and decoders; decoding is
// tolerant of fields the kubelet does not model (kept in `raw` and written
// back on update) and strict on the types of those it does (a wrong type is an
// error naming the field).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"

namespace kubelet::api {

struct OwnerReference {
  std::string api_version;
  std::string kind;
  std::string name;
  std::string uid;
  std::optional<bool> controller;
  std::optional<bool> block_owner_deletion;
};

/** Metadata of a cluster object (cluster-scoped ones leave `namespace_` empty). */
struct ObjectMetaFull {
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string resource_version;
  StringMap labels;
  StringMap annotations;
  std::vector<OwnerReference> owner_references;
  std::optional<TimePoint> creation_timestamp;
};

struct ObjectReference {
  std::string kind;
  std::string namespace_;
  std::string name;
  std::string uid;
  std::string api_version;
  std::string resource_version;
  std::string field_path;
};

// --- Node ------------------------------------------------------------------

struct Taint {
  std::string key;
  std::string value;
  std::string effect;  // NoSchedule, PreferNoSchedule, NoExecute
  std::optional<TimePoint> time_added;
};

struct NodeSpec {
  std::string pod_cidr;
  std::vector<std::string> pod_cidrs;
  std::string provider_id;
  bool unschedulable = false;
  std::vector<Taint> taints;
};

struct NodeCondition {
  std::string type;
  std::string status;
  TimePoint last_heartbeat_time;
  TimePoint last_transition_time;
  std::string reason;
  std::string message;
};

struct NodeAddress {
  std::string type;  // InternalIP, ExternalIP, Hostname, ...
  std::string address;
};

struct NodeSystemInfo {
  std::string machine_id;
  std::string system_uuid;
  std::string boot_id;
  std::string kernel_version;
  std::string os_image;
  std::string container_runtime_version;
  std::string kubelet_version;
  std::string kube_proxy_version;
  std::string operating_system;
  std::string architecture;
};

struct NodeStatus {
  StringMap capacity;     // quantities as strings
  StringMap allocatable;
  std::vector<NodeCondition> conditions;
  std::vector<NodeAddress> addresses;
  int32_t kubelet_endpoint_port = 0;
  NodeSystemInfo node_info;
  std::vector<std::string> volumes_in_use;  // attachable volumes mounted or to be mounted (unique names, sorted)
};

struct Node {
  ObjectMetaFull metadata;
  NodeSpec spec;
  NodeStatus status;
  nlohmann::json raw = nlohmann::json::object();
};

/** A list of taints (registerWithTaints); errors name the index and field, e.g. "[0].effect: expected string, got integer". */
absl::StatusOr<std::vector<Taint>> DecodeTaints(const nlohmann::json& list);
nlohmann::json EncodeNodeStatus(const NodeStatus& s);
nlohmann::json EncodeNode(const Node& n);
absl::StatusOr<Node> DecodeNode(const nlohmann::json& obj);
absl::StatusOr<NodeStatus> DecodeNodeStatus(const nlohmann::json& obj);
/** Equal but for the conditions' heartbeat times (which change every round). */
bool SameNodeStatusIgnoringHeartbeat(const NodeStatus& a, const NodeStatus& b);

// --- Lease -----------------------------------------------------------------

struct LeaseSpec {
  std::optional<std::string> holder_identity;
  std::optional<int32_t> lease_duration_seconds;
  std::optional<TimePoint> acquire_time;  // MicroTime on the wire
  std::optional<TimePoint> renew_time;    // MicroTime on the wire
  std::optional<int32_t> lease_transitions;
};

struct Lease {
  ObjectMetaFull metadata;
  LeaseSpec spec;
  nlohmann::json raw = nlohmann::json::object();
};

nlohmann::json EncodeLease(const Lease& l);
absl::StatusOr<Lease> DecodeLease(const nlohmann::json& obj);

// --- Event -----------------------------------------------------------------

struct EventSource {
  std::string component;
  std::string host;
};

struct Event {
  ObjectMetaFull metadata;
  ObjectReference involved_object;
  std::string reason;
  std::string message;
  std::string type;  // Normal, Warning
  EventSource source;
  std::optional<TimePoint> first_timestamp;
  std::optional<TimePoint> last_timestamp;
  int32_t count = 0;
  std::string reporting_component;
  std::string reporting_instance;
  nlohmann::json raw = nlohmann::json::object();
};

nlohmann::json EncodeEvent(const Event& e);
absl::StatusOr<Event> DecodeEvent(const nlohmann::json& obj);

// --- meta/v1 Status ----------------------------------------------------------

struct StatusCause {
  std::string reason;
  std::string message;
  std::string field;
};

struct StatusDetails {
  std::string name;
  std::string group;
  std::string kind;
  std::string uid;
  std::vector<StatusCause> causes;
  int32_t retry_after_seconds = 0;
};

struct Status {
  std::string status;  // Success, Failure
  std::string message;
  std::string reason;  // NotFound, AlreadyExists, Conflict, Expired, ...
  std::optional<StatusDetails> details;
  int32_t code = 0;
};

nlohmann::json EncodeStatus(const Status& s);
/** A Status object (kind "Status"); anything else is an error. */
absl::StatusOr<Status> DecodeStatus(const nlohmann::json& obj);

}  // namespace kubelet::api

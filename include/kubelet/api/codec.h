#pragma once
// Decoding of pod manifests and API objects: YAML or JSON text to typed
// structs, with the upstream defaults applied and every error naming the
// field it is about.
#include <string>
#include <string_view>

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"

namespace kubelet::api {

/** YAML (1.1 scalars, as Kubernetes' YAML-to-JSON reads them) to JSON. One document only. */
absl::StatusOr<nlohmann::json> YamlToJson(std::string_view text);
/** JSON when the text parses as JSON, YAML otherwise. */
absl::StatusOr<nlohmann::json> ParseDocument(std::string_view text);

/** Fills in core/v1 defaults (restartPolicy, dnsPolicy, imagePullPolicy, ...) in place. */
void ApplyPodDefaults(nlohmann::json& pod);
/** Typed view of a pod object; a wrong type names its field, e.g. "spec.containers[0].ports[0].containerPort". */
absl::StatusOr<Pod> DecodePod(const nlohmann::json& obj);
/** The validation upstream applies to a pod the kubelet is given (names, images, duplicates, ...). */
absl::Status ValidatePod(const Pod& pod);

nlohmann::json EncodeContainerStatus(const ContainerStatus& s);
nlohmann::json EncodePodStatus(const PodStatus& s);
/** The pod as the API shows it: the raw object with current metadata and status. */
nlohmann::json EncodePod(const Pod& pod);

/** obj[key] when it is a string, else "" (never throws). */
std::string StringField(const nlohmann::json& obj, const char* key);

/** obj.metadata[key] when both are of the right type, else "" (API objects are outside input: never throws). */
std::string MetaField(const nlohmann::json& obj, const char* key);

/** Canonical serialisation (sorted keys, no spaces) used for hashing. */
std::string CanonicalJson(const nlohmann::json& j);

}  // namespace kubelet::api

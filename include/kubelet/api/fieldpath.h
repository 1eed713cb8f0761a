#pragma once
// The downward API's values, shared by environment variables and downwardAPI volumes (upstream's fieldpath package
// and its resource helpers).
#include <cstdint>
#include <string>

#include <absl/status/statusor.h>

#include "kubelet/api/types.h"

namespace kubelet::api {

/**
 * metadata.name, namespace, uid, labels, annotations (whole maps as key="value" lines, sorted by key) and
 * metadata.labels['k'] / metadata.annotations['k']; InvalidArgument for any other path.
 */
absl::StatusOr<std::string> ExtractFieldPathAsString(const Pod& pod, const std::string& field_path);

/** The whole map in fieldpath.FormatMap's form: one key="value" per line (Go's %q quoting), sorted by key. */
std::string FormatMap(const StringMap& m);

/**
 * limits.<r> / requests.<r> of a container divided by divisor (a quantity, "" = 1), rounded up as upstream. A
 * container without a cpu or memory limit reads the node's allocatable.
 */
absl::StatusOr<std::string> ExtractContainerResourceValue(const Container& c, const std::string& resource,
                                                          const std::string& divisor, int64_t allocatable_milli_cpu,
                                                          int64_t allocatable_memory);

/** The container named `name` among the pod's containers, or nullptr. */
const Container* FindContainer(const Pod& pod, const std::string& name);

}  // namespace kubelet::api

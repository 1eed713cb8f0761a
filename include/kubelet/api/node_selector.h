#pragma once
// Node selector terms (pod nodeAffinity, PV nodeAffinity) against a node's labels and name, as upstream's
// MatchNodeSelectorTerms: a node matches when one term matches; a term matches when all its expressions and
// fields do; an empty term matches nothing; only metadata.name is a field.
#include <map>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/api/types.h"

namespace kubelet::api {

bool NodeSelectorTermMatches(const NodeSelectorTerm& term, const std::map<std::string, std::string>& labels,
                             const std::string& node_name);
bool NodeSelectorTermsMatch(const std::vector<NodeSelectorTerm>& terms, const std::map<std::string, std::string>& labels,
                            const std::string& node_name);
/** A NodeSelector object ({"nodeSelectorTerms": [...]}), or why it is not one (naming the field). */
absl::StatusOr<std::vector<NodeSelectorTerm>> DecodeNodeSelector(const nlohmann::json& selector, const std::string& path);

}  // namespace kubelet::api

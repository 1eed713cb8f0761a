#include "kubelet/api/node_selector.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace kubelet::api {
namespace {

// One requirement against a value (absent: nullptr), as upstream's labels.Selector.
bool RequirementMatches(const NodeSelectorRequirement& req, const std::string* value) {
  const std::string& op = req.op;
  const auto& values = req.values;
  auto in = [&](const std::string& v) { return std::find(values.begin(), values.end(), v) != values.end(); };
  if (op == "In") return value && in(*value);
  if (op == "NotIn") return !value || !in(*value);
  if (op == "Exists") return value != nullptr;
  if (op == "DoesNotExist") return value == nullptr;
  if (op == "Gt" || op == "Lt") {
    if (!value || values.size() != 1) return false;
    char* end = nullptr;
    errno = 0;
    long long have = std::strtoll(value->c_str(), &end, 10);
    if (end == value->c_str() || *end || errno) return false;
    long long want = std::strtoll(values[0].c_str(), &end, 10);
    if (end == values[0].c_str() || *end || errno) return false;
    return op == "Gt" ? have > want : have < want;
  }
  return false;  // an unknown operator matches nothing
}

absl::Status DecodeRequirements(const nlohmann::json& term, const char* key, const std::string& path,
                                std::vector<NodeSelectorRequirement>* out) {
  if (!term.contains(key) || term[key].is_null()) return absl::OkStatus();
  const std::string p = path + "." + key;
  if (!term[key].is_array()) return absl::InvalidArgumentError(p + ": must be a list");
  for (size_t i = 0; i < term[key].size(); ++i) {
    const auto& e = term[key][i];
    const std::string ep = p + "[" + std::to_string(i) + "]";
    if (!e.is_object()) return absl::InvalidArgumentError(ep + ": must be an object");
    NodeSelectorRequirement r;
    for (auto [field, dst] : {std::pair<const char*, std::string*>{"key", &r.key}, {"operator", &r.op}}) {
      if (e.contains(field) && !e[field].is_string()) return absl::InvalidArgumentError(ep + "." + field + ": must be a string");
      if (e.contains(field)) *dst = e[field].get<std::string>();
    }
    if (e.contains("values") && !e["values"].is_null()) {
      if (!e["values"].is_array()) return absl::InvalidArgumentError(ep + ".values: must be a list");
      for (const auto& v : e["values"]) {
        if (!v.is_string()) return absl::InvalidArgumentError(ep + ".values: must be strings");
        r.values.push_back(v.get<std::string>());
      }
    }
    out->push_back(std::move(r));
  }
  return absl::OkStatus();
}

}  // namespace

bool NodeSelectorTermMatches(const NodeSelectorTerm& term, const std::map<std::string, std::string>& labels,
                             const std::string& node_name) {
  if (term.match_expressions.empty() && term.match_fields.empty()) return false;
  for (const auto& e : term.match_expressions) {
    auto it = labels.find(e.key);
    if (!RequirementMatches(e, it == labels.end() ? nullptr : &it->second)) return false;
  }
  for (const auto& f : term.match_fields)
    if (f.key != "metadata.name" || !RequirementMatches(f, &node_name)) return false;
  return true;
}

bool NodeSelectorTermsMatch(const std::vector<NodeSelectorTerm>& terms, const std::map<std::string, std::string>& labels,
                            const std::string& node_name) {
  for (const auto& t : terms)
    if (NodeSelectorTermMatches(t, labels, node_name)) return true;
  return false;
}

absl::StatusOr<std::vector<NodeSelectorTerm>> DecodeNodeSelector(const nlohmann::json& selector, const std::string& path) {
  if (!selector.is_object()) return absl::InvalidArgumentError(path + ": must be an object");
  std::vector<NodeSelectorTerm> out;
  if (!selector.contains("nodeSelectorTerms") || selector["nodeSelectorTerms"].is_null()) return out;
  const auto& terms = selector["nodeSelectorTerms"];
  if (!terms.is_array()) return absl::InvalidArgumentError(path + ".nodeSelectorTerms: must be a list");
  for (size_t i = 0; i < terms.size(); ++i) {
    const std::string tp = path + ".nodeSelectorTerms[" + std::to_string(i) + "]";
    if (!terms[i].is_object()) return absl::InvalidArgumentError(tp + ": must be an object");
    NodeSelectorTerm t;
    if (auto st = DecodeRequirements(terms[i], "matchExpressions", tp, &t.match_expressions); !st.ok()) return st;
    if (auto st = DecodeRequirements(terms[i], "matchFields", tp, &t.match_fields); !st.ok()) return st;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace kubelet::api

#include "kubelet/api/fieldpath.h"

#include <cmath>
#include <cstdio>

#include "kubelet/api/quantity.h"

namespace kubelet::api {
namespace {

// Go's %q of a string, which FormatMap uses for values.
std::string GoQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// "metadata.labels['k']" -> k when `path` has that shape for `prefix` ("metadata.labels").
bool SubscriptKey(const std::string& path, const std::string& prefix, std::string* key) {
  const std::string open = prefix + "['";
  if (path.size() <= open.size() + 2 || path.compare(0, open.size(), open) != 0 ||
      path.compare(path.size() - 2, 2, "']") != 0)
    return false;
  *key = path.substr(open.size(), path.size() - open.size() - 2);
  return !key->empty();
}

}  // namespace

std::string FormatMap(const StringMap& m) {
  std::string out;
  for (const auto& [k, v] : m) out += k + "=" + GoQuote(v) + "\n";  // StringMap is ordered: keys sorted
  if (!out.empty()) out.pop_back();
  return out;
}

absl::StatusOr<std::string> ExtractFieldPathAsString(const Pod& pod, const std::string& p) {
  std::string key;
  if (SubscriptKey(p, "metadata.labels", &key)) {
    auto it = pod.metadata.labels.find(key);
    return it == pod.metadata.labels.end() ? std::string() : it->second;
  }
  if (SubscriptKey(p, "metadata.annotations", &key)) {
    auto it = pod.metadata.annotations.find(key);
    return it == pod.metadata.annotations.end() ? std::string() : it->second;
  }
  if (p == "metadata.name") return pod.metadata.name;
  if (p == "metadata.namespace") return pod.metadata.namespace_;
  if (p == "metadata.uid") return pod.metadata.uid;
  if (p == "metadata.labels") return FormatMap(pod.metadata.labels);
  if (p == "metadata.annotations") return FormatMap(pod.metadata.annotations);
  return absl::InvalidArgumentError("unsupported fieldPath: " + p);
}

const Container* FindContainer(const Pod& pod, const std::string& name) {
  for (const auto& c : pod.spec.containers)
    if (c.name == name) return &c;
  return nullptr;
}

absl::StatusOr<std::string> ExtractContainerResourceValue(const Container& c, const std::string& resource,
                                                          const std::string& divisor_text, int64_t allocatable_milli_cpu,
                                                          int64_t allocatable_memory) {
  auto divisor = ParseQuantity(divisor_text.empty() ? "1" : divisor_text);
  if (!divisor.ok() || divisor->value <= 0) return absl::InvalidArgumentError("resourceFieldRef: invalid divisor " + divisor_text);
  bool limits = resource.rfind("limits.", 0) == 0;
  if (!limits && resource.rfind("requests.", 0) != 0) return absl::InvalidArgumentError("unsupported resource: " + resource);
  std::string name = resource.substr(resource.find('.') + 1);
  const auto& m = limits ? c.resources.limits : c.resources.requests;
  long double value = 0;
  if (auto it = m.find(name); it != m.end()) {
    auto q = ParseQuantity(it->second);
    if (q.ok()) value = q->value;
  } else if (limits && name == "cpu") {
    value = allocatable_milli_cpu / 1000.0L;  // no limit: the node's allocatable, as upstream
  } else if (limits && name == "memory") {
    value = static_cast<long double>(allocatable_memory);
  }
  return std::to_string(static_cast<int64_t>(std::ceil(value / divisor->value - 1e-9L)));
}

}  // namespace kubelet::api

#pragma once
// JSON text as Go's encoding/json writes it: invalid UTF-8 (a container's
// termination message, a log line) becomes U+FFFD instead of throwing.
#include <string>

#include <nlohmann/json.hpp>

namespace kubelet {

inline std::string DumpJSON(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

/** obj[key] when both are JSON objects, else an empty object: nested settings and answers read without throwing. */
inline const nlohmann::json& ObjectField(const nlohmann::json& obj, const char* key) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return obj.is_object() && obj.contains(key) && obj[key].is_object() ? obj[key] : kEmpty;
}

}  // namespace kubelet

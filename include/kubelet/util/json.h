#pragma once
// JSON text as Go's encoding/json writes it: invalid UTF-8 (a container's
// termination message, a log line) becomes U+FFFD instead of throwing.
#include <string>

#include <nlohmann/json.hpp>

namespace kubelet {

inline std::string DumpJSON(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace kubelet

#pragma once
#include <string>

#include <absl/status/statusor.h>

namespace kubelet {

/** Standard base64 (padding required, whitespace ignored), as Kubernetes' []byte fields are encoded. */
absl::StatusOr<std::string> Base64Decode(const std::string& in);
/** Standard base64 with padding. */
std::string Base64Encode(const std::string& in);

}  // namespace kubelet

#pragma once
// Reading a whole file, with an error that names it.
#include <string>

#include <absl/status/statusor.h>

namespace kubelet {

/** The file's contents; NotFound "cannot read <path>: <reason>" when it cannot be opened. */
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace kubelet

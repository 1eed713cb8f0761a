#include "kubelet/util/file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kubelet {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kubelet

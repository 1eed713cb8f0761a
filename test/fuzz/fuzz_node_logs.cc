// /logs/<path>: the request path names a file under the log folder; whatever it says, nothing outside the folder is
// opened and nothing crashes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "kubelet/server/node_logs.h"

namespace {
const std::string& Root() {
  static const std::string root = [] {
    auto base = std::filesystem::temp_directory_path() / ("fuzz-node-logs-" + std::to_string(getpid()));
    std::filesystem::create_directories(base / "log" / "pods" / "ns_pod_uid");
    std::ofstream(base / "log" / "syslog") << "line\n";
    std::ofstream(base / "log" / "pods" / "ns_pod_uid" / "0.log") << "container\n";
    std::ofstream(base / "outside") << "secret";
    return (base / "log").string();
  }();
  return root;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path(reinterpret_cast<const char*>(data), size);
  auto r = kubelet::server::ServeNodeLogs(Root(), path);
  std::string body = r.body;
  if (r.stream) r.stream([&body](const std::string& c) {
    body += c;
    return true;
  });
  if (body.find("secret") != std::string::npos) std::abort();  // read from outside the folder
  return 0;
}

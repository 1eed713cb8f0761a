// Paths that come from API objects and pod specs and end up on the node's disk: configMap/secret item paths (the
// atomic writer), subPath and subPathExpr (validation, expansion, SafeMakeDir). Whatever the input, nothing is
// written outside the volume's folder: a write that lands outside aborts the run.
#include <limits.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kubelet/volumemanager/atomic_writer.h"
#include "kubelet/volumemanager/subpath.h"

namespace fs = std::filesystem;
using namespace kubelet;

namespace {

const fs::path& Base() {
  static const fs::path base = [] {
    fs::path p = fs::temp_directory_path() / ("fuzz-volpaths-" + std::to_string(getpid()));
    fs::create_directories(p / "volume");
    return p;
  }();
  return base;
}

// Every entry under the volume resolves inside it; and nothing appeared beside it.
void CheckContained() {
  const fs::path volume = Base() / "volume";
  std::error_code ec;
  for (fs::recursive_directory_iterator it(volume, fs::directory_options::none, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_symlink(ec)) continue;  // the writer's own links point at names inside the volume
    char buf[PATH_MAX];
    if (::realpath(it->path().c_str(), buf) == nullptr) continue;
    if (!volumemanager::PathWithinBase(buf, volume.string())) std::abort();
  }
  for (fs::directory_iterator it(Base(), ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename() != "volume") std::abort();
}

void Reset() {
  std::error_code ec;
  fs::remove_all(Base() / "volume", ec);
  fs::create_directories(Base() / "volume", ec);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 4096) return 0;
  const char mode = static_cast<char>(data[0] % 3);
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string> lines;
  for (size_t start = 0; start <= text.size();) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
    if (lines.size() > 16) break;
  }
  const std::string volume = (Base() / "volume").string();
  if (mode == 0) {
    std::map<std::string, volumemanager::FileProjection> payload;
    for (const auto& l : lines) payload[l] = {"x", 0644};
    (void)volumemanager::WriteAtomic(volume, payload);
    CheckContained();
    Reset();
  } else if (mode == 1) {
    std::map<std::string, std::string> env = {{"A", "a"}, {"UP", ".."}, {"ABS", "/etc"}, {"E", ""}};
    // What a container may plant in its own volume: a symlink out of it.
    std::error_code ec;
    fs::create_directory_symlink(Base(), Base() / "volume" / "out", ec);
    for (const auto& l : lines) {
      std::set<std::string> missing;
      std::string expanded = volumemanager::ExpandSubPathExpr(l, env, &missing);
      for (const auto& sub : {l, expanded}) {
        if (!volumemanager::ValidateSubPath(sub).ok()) continue;
        if (sub.find('\0') != std::string::npos) continue;
        (void)volumemanager::SafeMakeDir(sub, volume, 0755);
      }
    }
    CheckContained();
    Reset();
  } else {
    for (size_t i = 0; i + 1 < lines.size(); i += 2) (void)volumemanager::PathWithinBase(lines[i], lines[i + 1]);
  }
  return 0;
}

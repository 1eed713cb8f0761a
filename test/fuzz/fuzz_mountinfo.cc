// The mount table: containers with Bidirectional propagation choose mount point names on the host, so mountinfo
// lines carry outside input. Whatever the text, parsing ends, and every entry it yields has a mount point and a
// filesystem type; escapes never grow a path.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kubelet/util/mount.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  for (const auto& m : kubelet::mount::ParseMountInfo(text)) {
    if (m.mount_point.empty() || m.fs_type.empty()) std::abort();
    if (m.mount_point.size() > text.size() || m.source.size() > text.size()) std::abort();
  }
  return 0;
}

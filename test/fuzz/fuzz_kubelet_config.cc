// /var/lib/kubelet/config.yaml (KubeletConfiguration v1beta1) and Go durations.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kubelet/config/kubelet_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)kubelet::config::ParseKubeletConfiguration(text, "/var/lib/kubelet");
  if (size < 64) (void)kubelet::config::ParseGoDuration(text);
  return 0;
}

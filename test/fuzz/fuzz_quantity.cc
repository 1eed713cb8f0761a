// Resource quantities (requests, limits, eviction thresholds, sizeLimit).
#include <cstddef>
#include <cstdint>
#include <string>

#include "kubelet/api/quantity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  if (auto q = kubelet::api::ParseQuantity(text); q.ok()) {
    (void)q->Value();
    (void)q->MilliValue();
  }
  return 0;
}

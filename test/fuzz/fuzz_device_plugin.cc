// What reaches the device manager from outside: the checkpoint file (<root-dir>/device-plugins/
// kubelet_internal_checkpoint, which anything with root can edit, and the same format recorded on each container
// as its kubelet-cpp.io/device-allocation annotation) and a device plugin's replies (its ListAndWatch
// device lists and the Allocate answers stored and given to containers). The first byte chooses which; the rest is
// the input. No exception or crash; a checkpoint that decodes is written back to one that decodes to the same.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "kubelet/cm/devicemanager.h"
#include "kubelet/cm/devicemanager_checkpoint.h"

using namespace kubelet::cm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto cp = DecodeDeviceCheckpoint(in);
      if (!cp.ok()) return 0;
      auto again = DecodeDeviceCheckpoint(EncodeDeviceCheckpoint(*cp));
      if (!again.ok() || again->entries.size() != cp->entries.size() || again->registered != cp->registered) std::abort();
      for (size_t i = 0; i < cp->entries.size(); ++i)
        if (again->entries[i].device_ids != cp->entries[i].device_ids || again->entries[i].alloc_resp != cp->entries[i].alloc_resp)
          std::abort();
      break;
    }
    case 1: {
      auto devs = DevicesFromListAndWatch("example.com/dev", in);
      for (const auto& d : devs)
        if (d.id.empty()) std::abort();
      break;
    }
    default: {
      DeviceRunContainerOptions out;
      if (MergeAllocateResponse(in, &out)) MergeAllocateResponse(in, &out);  // twice: the second adds no name again
      break;
    }
  }
  return 0;
}

// API objects the kubelet decodes from the API server: Node, Lease, Event,
// Status, taints, RuntimeClass. JSON only (the client speaks JSON).
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "kubelet/api/codec.h"
#include "kubelet/api/objects.h"
#include "kubelet/runtimeclass/runtimeclass_manager.h"
#include "kubelet/util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  if (auto n = kubelet::api::DecodeNode(j); n.ok()) (void)kubelet::DumpJSON(kubelet::api::EncodeNode(*n));
  (void)kubelet::api::DecodeNodeStatus(j);
  (void)kubelet::api::DecodeLease(j);
  (void)kubelet::api::DecodeEvent(j);
  (void)kubelet::api::DecodeStatus(j);
  if (j.is_object() && j.contains("taints")) (void)kubelet::api::DecodeTaints(j["taints"]);
  {
    // A RuntimeClass as the informer stores it: kept with its handler, or left out with a reason; never a throw.
    kubelet::runtimeclass::RuntimeClassStore store;
    auto skipped = store.Replace({{"uid-1", j}});
    std::string name = kubelet::api::MetaField(j, "name");
    auto h = store.LookupRuntimeHandler(name);
    if (!name.empty() && skipped.empty() && !h.ok()) __builtin_trap();  // a kept class must be found
  }
  return 0;
}

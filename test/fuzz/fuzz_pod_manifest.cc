// A static pod manifest or an API pod as the kubelet reads it: parse (YAML or
// JSON), default, decode, validate, prepare as the file and api sources do, and
// write it back out. Nothing may throw or crash, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"
#include "kubelet/util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto doc = kubelet::api::ParseDocument(text);
  if (!doc.ok()) return 0;
  (void)kubelet::config::PrepareStaticPod(*doc, "/etc/kubernetes/manifests/fuzz.yaml", true, "node");
  (void)kubelet::config::PrepareAPIPod(*doc);
  kubelet::api::ApplyPodDefaults(*doc);
  auto pod = kubelet::api::DecodePod(*doc);
  if (!pod.ok()) return 0;
  if (!kubelet::api::ValidatePod(*pod).ok()) return 0;
  (void)kubelet::api::QOSClass(*pod);
  (void)kubelet::DumpJSON(kubelet::api::EncodePod(*pod));
  return 0;
}

// The kubeconfig (--kubeconfig): clusters, users, contexts, inline data.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kubelet/client/kubeconfig.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)kubelet::client::ParseKubeconfig(text, "/etc/kubernetes");
  return 0;
}

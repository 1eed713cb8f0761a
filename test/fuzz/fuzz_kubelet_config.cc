// /var/lib/kubelet/config.yaml (KubeletConfiguration v1beta1) and Go durations; a config that parses has its
// topology manager policy, scope and policy options checked as the kubelet checks them at start (an error, never a
// crash or an exception).
#include <cstddef>
#include <cstdint>
#include <string>

#include "kubelet/cm/topologymanager.h"
#include "kubelet/config/kubelet_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = kubelet::config::ParseKubeletConfiguration(text, "/var/lib/kubelet");
  if (cfg.ok()) {
    kubelet::cm::NUMAInfo numa;
    numa.nodes = {0, 1};
    numa.distances = {{0, {10, 21}}, {1, {21, 10}}};
    kubelet::cm::TopologyManagerOptions o;
    o.policy = cfg->topology_manager_policy;
    o.scope = cfg->topology_manager_scope;
    o.policy_options = cfg->topology_manager_policy_options;
    (void)kubelet::cm::TopologyManager::New(numa, o);
  }
  if (size < 64) (void)kubelet::config::ParseGoDuration(text);
  return 0;
}

// Checkpoint files the kubelet reads back after a restart: <root-dir>/cpu_manager_state. Whatever the file holds,
// restoring it is a clean error or a consistent state, never a crash, an exception or a runaway allocation.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "kubelet/cm/cpu_manager.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/fuzz_checkpoint." + std::to_string(::getpid());
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  std::vector<kubelet::cm::CPUInfo> cpus;
  for (int i = 0; i < 8; ++i) cpus.push_back({i, i / 2, i / 4});
  for (const char* policy : {"static", "none"}) {
    kubelet::cm::CPUManagerOptions o;
    o.policy = policy;
    o.reserved_milli_cpu = 1000;
    o.state_file = path;
    auto m = kubelet::cm::CPUManager::New(cpus, o, {});
    if (m.ok()) {
      // A restored state accounts for every CPU exactly once.
      size_t n = (*m)->DefaultSet().size();
      for (const auto& [uid, containers] : (*m)->Assignments())
        for (const auto& [name, set] : containers) n += set.size();
      if (std::string(policy) == "static" && n != cpus.size()) __builtin_trap();
    }
    // Restoring may rewrite the file: put the input back for the next policy.
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
      std::fwrite(data, 1, size, f);
      std::fclose(f);
    }
  }
  return 0;
}

#pragma once
// FNV-32a, the hash upstream uses for container hashes and checkpoint checksums.
#include <cstdint>
#include <string>

namespace kubelet {

inline uint32_t Fnv32a(const std::string& data) {
  uint32_t h = 2166136261u;
  for (unsigned char c : data) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

}  // namespace kubelet

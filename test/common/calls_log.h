#pragma once
// The test drivers' and plugins' call logs (one JSON object per line, "method" naming the call).
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kubelet::testing {

inline std::vector<nlohmann::json> ReadCallsLog(const std::string& path, const std::string& method) {
  std::vector<nlohmann::json> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("method", "") == method) out.push_back(j);
  }
  return out;
}

}  // namespace kubelet::testing

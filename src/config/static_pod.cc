#include <openssl/evp.h>

#include <cstdio>

#include "kubelet/api/codec.h"
#include "kubelet/config/pod_source.h"

namespace kubelet::config {
namespace {

std::string Md5Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr);
  std::string out;
  char buf[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", md[i]);
    out += buf;
  }
  return out;
}

}  // namespace

absl::StatusOr<api::Pod> PrepareStaticPod(nlohmann::json manifest, const std::string& source_id, bool is_file,
                                          const std::string& node_name) {
  if (!manifest.is_object()) return absl::InvalidArgumentError("manifest is not an object");
  std::string kind = api::StringField(manifest, "kind");
  if (kind != "Pod") return absl::InvalidArgumentError("kind: expected \"Pod\", got \"" + kind + "\"");
  api::ApplyPodDefaults(manifest);
  nlohmann::json& meta = manifest["metadata"];
  if (!meta.contains("namespace") || (meta["namespace"].is_string() && meta["namespace"].get<std::string>().empty()))
    meta["namespace"] = "default";
  if (!meta.contains("uid") || !meta["uid"].is_string() || meta["uid"].get<std::string>().empty()) {
    // The same manifest on the same node always gives the same UID; any edit gives a new one.
    std::string seed = api::CanonicalJson(manifest);
    seed += is_file ? "host:" + node_name + "file:" + source_id : "url:" + source_id;
    meta["uid"] = Md5Hex(seed);
  }
  std::string uid = meta["uid"].is_string() ? meta["uid"].get<std::string>() : "";
  if (meta.contains("name") && meta["name"].is_string() && !meta["name"].get<std::string>().empty())
    meta["name"] = meta["name"].get<std::string>() + "-" + node_name;
  if (!meta.contains("annotations") || !meta["annotations"].is_object()) meta["annotations"] = nlohmann::json::object();
  meta["annotations"]["kubernetes.io/config.hash"] = uid;
  meta["annotations"]["kubernetes.io/config.source"] = is_file ? api::kSourceFile : api::kSourceHTTP;
  manifest["spec"]["nodeName"] = node_name;
  // Static pods tolerate every NoExecute taint, as upstream adds.
  nlohmann::json& tol = manifest["spec"]["tolerations"];
  if (!tol.is_array()) tol = nlohmann::json::array();
  tol.push_back({{"operator", "Exists"}, {"effect", "NoExecute"}});
  auto pod = api::DecodePod(manifest);
  if (!pod.ok()) return pod.status();
  if (auto st = api::ValidatePod(*pod); !st.ok()) return st;
  return pod;
}

}  // namespace kubelet::config

#include "kubelet/client/kubeconfig.h"

#include <fstream>
#include <sstream>

#include "kubelet/api/codec.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/file.h"

namespace kubelet::client {
namespace {

using json = nlohmann::json;

const json* Named(const json& doc, const char* list, const std::string& name) {
  if (!doc.contains(list) || !doc[list].is_array()) return nullptr;
  for (const auto& item : doc[list])
    if (item.is_object() && api::StringField(item, "name") == name) {
      auto it = item.find(list == std::string("clusters") ? "cluster" : list == std::string("users") ? "user" : "context");
      return it == item.end() ? nullptr : &*it;
    }
  return nullptr;
}

std::string Resolve(const std::string& p, const std::string& base) {
  if (p.empty() || p[0] == '/' || base.empty()) return p;
  return base + "/" + p;
}

// A PEM from a *-data field (base64) or a file path field.
absl::Status Pem(const json& obj, const char* data_key, const char* file_key, const std::string& base, std::string* out) {
  std::string data = api::StringField(obj, data_key);
  if (!data.empty()) {
    auto d = Base64Decode(data);
    if (!d.ok()) return absl::InvalidArgumentError(std::string(data_key) + ": " + std::string(d.status().message()));
    *out = *d;
    return absl::OkStatus();
  }
  std::string file = api::StringField(obj, file_key);
  if (!file.empty()) {
    auto d = ReadFileToString(Resolve(file, base));
    if (!d.ok()) return absl::Status(d.status().code(), std::string(file_key) + ": " + std::string(d.status().message()));
    *out = *d;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RestConfig> ParseKubeconfig(const std::string& text, const std::string& base_dir) {
  auto doc = api::ParseDocument(text);
  if (!doc.ok()) return absl::InvalidArgumentError("kubeconfig: " + std::string(doc.status().message()));
  if (!doc->is_object()) return absl::InvalidArgumentError("kubeconfig: expected an object");
  std::string current = api::StringField(*doc, "current-context");
  if (current.empty()) return absl::InvalidArgumentError("kubeconfig: current-context is not set");
  const json* ctx = Named(*doc, "contexts", current);
  if (!ctx) return absl::InvalidArgumentError("kubeconfig: context \"" + current + "\" not found");
  std::string cluster_name = api::StringField(*ctx, "cluster");
  std::string user_name = api::StringField(*ctx, "user");
  const json* cluster = Named(*doc, "clusters", cluster_name);
  if (!cluster) return absl::InvalidArgumentError("kubeconfig: cluster \"" + cluster_name + "\" not found");
  RestConfig c;
  c.namespace_ = api::StringField(*ctx, "namespace");
  c.server = api::StringField(*cluster, "server");
  if (c.server.empty()) return absl::InvalidArgumentError("kubeconfig: cluster \"" + cluster_name + "\" has no server");
  while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
  c.tls_server_name = api::StringField(*cluster, "tls-server-name");
  if (cluster->contains("insecure-skip-tls-verify") && (*cluster)["insecure-skip-tls-verify"].is_boolean())
    c.insecure_skip_tls_verify = (*cluster)["insecure-skip-tls-verify"].get<bool>();
  if (auto st = Pem(*cluster, "certificate-authority-data", "certificate-authority", base_dir, &c.ca_pem); !st.ok())
    return absl::Status(st.code(), "kubeconfig: cluster \"" + cluster_name + "\": " + std::string(st.message()));
  if (api::StringField(*cluster, "certificate-authority-data").empty() && !api::StringField(*cluster, "certificate-authority").empty())
    c.ca_file = Resolve(api::StringField(*cluster, "certificate-authority"), base_dir);
  if (!user_name.empty()) {
    const json* user = Named(*doc, "users", user_name);
    if (!user) return absl::InvalidArgumentError("kubeconfig: user \"" + user_name + "\" not found");
    std::string who = "kubeconfig: user \"" + user_name + "\": ";
    if (auto st = Pem(*user, "client-certificate-data", "client-certificate", base_dir, &c.client_cert_pem); !st.ok())
      return absl::Status(st.code(), who + std::string(st.message()));
    if (auto st = Pem(*user, "client-key-data", "client-key", base_dir, &c.client_key_pem); !st.ok())
      return absl::Status(st.code(), who + std::string(st.message()));
    if (c.client_cert_pem.empty() != c.client_key_pem.empty())
      return absl::InvalidArgumentError(who + "client certificate and key must be given together");
    c.bearer_token = api::StringField(*user, "token");
    std::string token_file = api::StringField(*user, "tokenFile");
    if (!token_file.empty()) c.token_file = Resolve(token_file, base_dir);
  }
  return c;
}

absl::StatusOr<RestConfig> LoadKubeconfig(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return absl::Status(text.status().code(), "kubeconfig: " + std::string(text.status().message()));
  std::string base = path.find('/') == std::string::npos ? "." : path.substr(0, path.find_last_of('/'));
  auto c = ParseKubeconfig(*text, base.empty() ? "/" : base);
  if (!c.ok()) return absl::Status(c.status().code(), path + ": " + std::string(c.status().message()));
  return c;
}

}  // namespace kubelet::client

#include "kubelet/kuberuntime/env.h"

#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <set>

#include "kubelet/api/codec.h"
#include "kubelet/api/fieldpath.h"
#include "kubelet/api/quantity.h"
#include "kubelet/client/api_client.h"
#include "kubelet/util/base64.h"

namespace kubelet::kuberuntime {
namespace {

using json = nlohmann::json;
using Env = std::vector<std::pair<std::string, std::string>>;

bool ValidEnvName(const std::string& s) {
  static const std::regex re("^[-._a-zA-Z][-._a-zA-Z0-9]*$");
  return !s.empty() && std::regex_match(s, re);
}

// The object's data as strings (secrets base64-decoded).
absl::StatusOr<std::map<std::string, std::string>> Data(EnvSource* src, const std::string& resource, const std::string& ns,
                                                        const std::string& name) {
  const char* what = resource == "secrets" ? "secret" : "configmap";
  if (!src) return absl::NotFoundError(std::string(what) + " \"" + name + "\" not found");
  auto obj = src->Get(resource, ns, name);
  if (!obj.ok()) {
    if (obj.status().code() == absl::StatusCode::kNotFound)
      return absl::NotFoundError(std::string(what) + " \"" + name + "\" not found");
    return obj.status();
  }
  std::map<std::string, std::string> out;
  if (obj->contains("data") && (*obj)["data"].is_object())
    for (auto it = (*obj)["data"].begin(); it != (*obj)["data"].end(); ++it)
      if (it.value().is_string()) out[it.key()] = resource == "secrets" ? Base64Decode(it.value().get<std::string>()).value_or("") : it.value().get<std::string>();
  return out;
}

// Env's fieldRef: the pod's spec and status paths here, the metadata ones as the downward API volume reads them.
absl::StatusOr<std::string> FieldValue(const api::Pod& pod, const std::string& path, const PodEnvContext& ctx) {
  if (path == "spec.nodeName") return pod.spec.node_name;
  if (path == "spec.serviceAccountName") return pod.spec.service_account_name;
  if (path == "status.hostIP") return ctx.host_ip;
  if (path == "status.hostIPs") return ctx.host_ip;
  if (path == "status.podIP") return ctx.pod_ips.empty() ? "" : ctx.pod_ips[0];
  if (path == "status.podIPs") {
    std::string all;
    for (const auto& ip : ctx.pod_ips) all += (all.empty() ? "" : ",") + ip;
    return all;
  }
  if (path == "metadata.labels" || path == "metadata.annotations") return absl::InvalidArgumentError("unsupported fieldRef " + path);
  auto v = api::ExtractFieldPathAsString(pod, path);
  if (!v.ok()) return absl::InvalidArgumentError("unsupported fieldRef " + path);
  return v;
}

absl::StatusOr<std::string> ResourceValue(const api::Pod& pod, const api::Container& self, const json& ref,
                                          const PodEnvContext& ctx) {
  std::string cname = api::StringField(ref, "containerName");
  const api::Container* c = cname.empty() ? &self : api::FindContainer(pod, cname);
  if (!c) return absl::InvalidArgumentError("resourceFieldRef: container \"" + cname + "\" not found");
  std::string divisor;
  if (ref.contains("divisor")) divisor = ref["divisor"].is_string() ? ref["divisor"].get<std::string>() : ref["divisor"].dump();
  return api::ExtractContainerResourceValue(*c, api::StringField(ref, "resource"), divisor, ctx.node_allocatable_milli_cpu,
                                            ctx.node_allocatable_memory);
}

void ServiceLinks(const json& svc, std::map<std::string, std::string>* out) {
  std::string ip = svc["spec"].value("clusterIP", "");
  if (ip.empty() || ip == "None") return;
  std::string name = svc["metadata"].value("name", "");
  for (auto& ch : name) ch = ch == '-' ? '_' : static_cast<char>(::toupper(ch));
  const json& ports = svc["spec"].contains("ports") ? svc["spec"]["ports"] : json::array();
  if (ports.empty()) return;
  (*out)[name + "_SERVICE_HOST"] = ip;
  (*out)[name + "_SERVICE_PORT"] = std::to_string(ports[0].value("port", 0));
  for (size_t i = 0; i < ports.size(); ++i) {
    const json& p = ports[i];
    std::string port = std::to_string(p.value("port", 0));
    std::string proto = p.value("protocol", "TCP");
    std::string lproto = proto;
    for (auto& ch : lproto) ch = static_cast<char>(::tolower(ch));
    if (p.contains("name") && p["name"].is_string() && !p["name"].get<std::string>().empty()) {
      std::string pn = p["name"];
      for (auto& ch : pn) ch = ch == '-' ? '_' : static_cast<char>(::toupper(ch));
      (*out)[name + "_SERVICE_PORT_" + pn] = port;
    }
    std::string prefix = name + "_PORT_" + port + "_" + proto;
    if (i == 0) (*out)[name + "_PORT"] = lproto + "://" + ip + ":" + port;
    (*out)[prefix] = lproto + "://" + ip + ":" + port;
    (*out)[prefix + "_PROTO"] = lproto;
    (*out)[prefix + "_PORT"] = port;
    (*out)[prefix + "_ADDR"] = ip;
  }
}

}  // namespace

std::string ExpandEnv(const std::string& in, const std::map<std::string, std::string>& env) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '$') {
      out += '$';
      ++i;
    } else if (in[i] == '$' && i + 1 < in.size() && in[i + 1] == '(') {
      size_t close = in.find(')', i + 2);
      if (close == std::string::npos) {
        out += in.substr(i);
        break;
      }
      auto it = env.find(in.substr(i + 2, close - i - 2));
      out += it != env.end() ? it->second : in.substr(i, close - i + 1);
      i = close;
    } else {
      out += in[i];
    }
  }
  return out;
}

absl::StatusOr<Env> MakeEnvironment(const api::Pod& pod, const api::Container& c, EnvSource* source, const PodEnvContext& ctx) {
  const std::string& ns = pod.metadata.namespace_;
  std::map<std::string, std::string> service_env;
  if (source) {
    // The "kubernetes" service of the default namespace always; the pod's namespace with enableServiceLinks.
    std::vector<std::string> namespaces = {"default"};
    if (pod.spec.enable_service_links && ns != "default") namespaces.push_back(ns);
    for (const auto& n : namespaces) {
      // A static pod never waits on the API server: only what is already known.
      auto svcs = source->Services(n, !api::IsStaticPod(pod));
      if (!svcs.ok()) {
        // Static pods never wait for the API server (it may be one of them, as in a kubeadm control plane): they
        // start with the service links known so far, as upstream's getServiceEnvVarMap lets them.
        if (api::IsStaticPod(pod)) continue;
        return absl::Status(svcs.status().code(), "failed to list services: " + std::string(svcs.status().message()));
      }
      for (const auto& s : *svcs) {
        bool master = n == "default" && s["metadata"].value("name", "") == "kubernetes";
        if (n == ns && !pod.spec.enable_service_links && !master) continue;
        if (n == "default" && ns != "default" && !master) continue;
        ServiceLinks(s, &service_env);
      }
    }
  }
  Env out;
  std::map<std::string, std::string> current;
  auto set = [&](const std::string& k, const std::string& v) {
    for (auto& kv : out)
      if (kv.first == k) {
        kv.second = v;
        current[k] = v;
        return;
      }
    out.emplace_back(k, v);
    current[k] = v;
  };
  for (const auto& src : c.env_from) {
    std::string prefix = api::StringField(src, "prefix");
    bool is_secret = src.contains("secretRef");
    const json& ref = is_secret ? src["secretRef"] : src.contains("configMapRef") ? src["configMapRef"] : json();
    if (!ref.is_object()) continue;
    bool optional = ref.contains("optional") && ref["optional"].is_boolean() && ref["optional"].get<bool>();
    auto data = Data(source, is_secret ? "secrets" : "configmaps", ns, api::StringField(ref, "name"));
    if (!data.ok()) {
      if (optional && data.status().code() == absl::StatusCode::kNotFound) continue;
      return data.status();
    }
    for (const auto& [k, v] : *data)
      if (ValidEnvName(prefix + k)) set(prefix + k, v);
  }
  for (const auto& e : c.env) {
    std::map<std::string, std::string> mapping = service_env;
    for (const auto& [k, v] : current) mapping[k] = v;
    if (e.value_from.is_null()) {
      set(e.name, ExpandEnv(e.value, mapping));
      continue;
    }
    const json& vf = e.value_from;
    if (vf.contains("fieldRef")) {
      auto v = FieldValue(pod, api::StringField(vf["fieldRef"], "fieldPath"), ctx);
      if (!v.ok()) return v.status();
      set(e.name, *v);
    } else if (vf.contains("resourceFieldRef")) {
      auto v = ResourceValue(pod, c, vf["resourceFieldRef"], ctx);
      if (!v.ok()) return v.status();
      set(e.name, *v);
    } else if (vf.contains("configMapKeyRef") || vf.contains("secretKeyRef")) {
      bool is_secret = vf.contains("secretKeyRef");
      const json& ref = is_secret ? vf["secretKeyRef"] : vf["configMapKeyRef"];
      bool optional = ref.contains("optional") && ref["optional"].is_boolean() && ref["optional"].get<bool>();
      std::string name = api::StringField(ref, "name"), key = api::StringField(ref, "key");
      auto data = Data(source, is_secret ? "secrets" : "configmaps", ns, name);
      if (!data.ok()) {
        if (optional && data.status().code() == absl::StatusCode::kNotFound) continue;
        return data.status();
      }
      auto it = data->find(key);
      if (it == data->end()) {
        if (optional) continue;
        return absl::NotFoundError("couldn't find key " + key + " in " + (is_secret ? "Secret " : "ConfigMap ") + ns + "/" + name);
      }
      set(e.name, it->second);
    }
  }
  for (const auto& [k, v] : service_env)
    if (!current.count(k)) out.emplace_back(k, v);
  return out;
}

namespace {
// Reads through to the API server and keeps the last answer, so containers
// still (re)start with their environment while the API server is away.
class APIEnvSource : public EnvSource {
 public:
  APIEnvSource(client::ApiClient* api, Duration fresh_for) : api_(api), fresh_for_(fresh_for) {}
  absl::StatusOr<json> Get(const std::string& resource, const std::string& ns, const std::string& name) override {
    // Cluster-scoped objects (persistentvolumes) have no namespace in their path.
    std::string path = ns.empty() ? "/api/v1/" + resource + "/" + name : "/api/v1/namespaces/" + ns + "/" + resource + "/" + name;
    if (auto fresh = Fresh(path)) return *fresh;
    auto r = api_->Get(path);
    std::lock_guard<std::mutex> l(mu_);
    if (r.ok()) {
      Remember(path, *r);
      return r;
    }
    if (r.status().code() == absl::StatusCode::kNotFound) {
      cache_.erase(path);
      read_at_.erase(path);
      return r.status();
    }
    auto it = cache_.find(path);
    if (it != cache_.end()) return it->second;
    return r.status();
  }
  absl::StatusOr<std::vector<json>> Services(const std::string& ns, bool may_wait) override {
    std::string path = "/api/v1/namespaces/" + ns + "/services";
    json items;
    if (auto fresh = Fresh(path)) {
      std::vector<json> out;
      if (fresh->is_array())
        for (const auto& s : *fresh) out.push_back(s);
      return out;
    }
    if (!may_wait) {
      std::lock_guard<std::mutex> l(mu_);
      auto it = cache_.find(path);
      if (it == cache_.end()) return absl::UnavailableError("services have not yet been read at least once");
      std::vector<json> out;
      if (it->second.is_array())
        for (const auto& s : it->second) out.push_back(s);
      return out;
    }
    auto list = api_->Get(path);
    std::lock_guard<std::mutex> l(mu_);
    if (list.ok()) {
      items = list->contains("items") ? (*list)["items"] : json::array();
      Remember(path, items);
    } else if (auto it = cache_.find(path); it != cache_.end()) {
      items = it->second;
    } else {
      return absl::Status(list.status().code(), "services have not yet been read at least once, cannot construct envvars: " +
                                                    std::string(list.status().message()));
    }
    std::vector<json> out;
    if (items.is_array())
      for (const auto& s : items) out.push_back(s);
    return out;
  }

 private:
  // Answers younger than fresh_for_ are reused: many containers starting at once read the same objects.
  std::optional<json> Fresh(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = cache_.find(key);
    auto at = read_at_.find(key);
    if (it == cache_.end() || at == read_at_.end() || std::chrono::steady_clock::now() - at->second >= fresh_for_) return std::nullopt;
    return it->second;
  }
  void Remember(const std::string& key, const json& value) {
    if (cache_.size() > 4096) {  // bounded
      cache_.clear();
      read_at_.clear();
    }
    cache_[key] = value;
    read_at_[key] = std::chrono::steady_clock::now();
  }
  client::ApiClient* api_;
  Duration fresh_for_;
  std::mutex mu_;
  std::map<std::string, json> cache_;
  std::map<std::string, std::chrono::steady_clock::time_point> read_at_;
};
}  // namespace

std::unique_ptr<EnvSource> NewAPIEnvSource(client::ApiClient* api, Duration fresh_for) {
  return std::make_unique<APIEnvSource>(api, fresh_for);
}

Duration EnvFreshness(const std::string& strategy) {
  if (strategy == "Get") return Duration::zero();
  if (strategy == "Cache") return std::chrono::minutes(1);
  return std::chrono::seconds(5);
}

}  // namespace kubelet::kuberuntime

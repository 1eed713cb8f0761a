#include "fake_apiserver.h"
#include "test_ca.h"

#include <openssl/rand.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "kubelet/api/codec.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/clock.h"
#include "kubelet/server/streaming.h"
#include "common/test_util.h"

namespace kubelet::testing {
namespace {

using json = nlohmann::json;
using server::Request;
using server::Response;

const std::map<std::string, std::pair<std::string, std::string>>& Kinds() {
  static const std::map<std::string, std::pair<std::string, std::string>> k = {
      {"nodes", {"Node", "v1"}},         {"pods", {"Pod", "v1"}},         {"events", {"Event", "v1"}},
      {"configmaps", {"ConfigMap", "v1"}}, {"secrets", {"Secret", "v1"}}, {"services", {"Service", "v1"}},
      {"leases", {"Lease", "coordination.k8s.io/v1"}}, {"serviceaccounts", {"ServiceAccount", "v1"}},
      {"persistentvolumeclaims", {"PersistentVolumeClaim", "v1"}}, {"persistentvolumes", {"PersistentVolume", "v1"}},
      {"tokenreviews", {"TokenReview", "authentication.k8s.io/v1"}},
      {"subjectaccessreviews", {"SubjectAccessReview", "authorization.k8s.io/v1"}},
      {"certificatesigningrequests", {"CertificateSigningRequest", "certificates.k8s.io/v1"}},
      {"csinodes", {"CSINode", "storage.k8s.io/v1"}}, {"csidrivers", {"CSIDriver", "storage.k8s.io/v1"}},
      {"volumeattachments", {"VolumeAttachment", "storage.k8s.io/v1"}},
      {"runtimeclasses", {"RuntimeClass", "node.k8s.io/v1"}}};
  return k;
}

bool ClusterScoped(const std::string& r) {
  return r == "nodes" || r == "persistentvolumes" || r == "tokenreviews" || r == "subjectaccessreviews" ||
         r == "certificatesigningrequests" || r == "csinodes" || r == "csidrivers" || r == "volumeattachments" ||
         r == "runtimeclasses";
}

Response StatusError(int code, const std::string& reason, const std::string& message) {
  json st = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Failure"},
             {"message", message}, {"reason", reason}, {"code", code}};
  return Response{code, "application/json", st.dump(), {}};
}

Response Ok(const json& j, int code = 200) { return Response{code, "application/json", j.dump(), {}}; }

std::string NewUID() {
  unsigned char b[16];
  RAND_bytes(b, sizeof(b));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof(out), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

json MergePatch(json target, const json& patch, bool strategic) {
  if (!patch.is_object()) return patch;
  if (!target.is_object()) target = json::object();
  static const std::map<std::string, std::string> kMergeKeys = {
      {"conditions", "type"}, {"containerStatuses", "name"}, {"initContainerStatuses", "name"},
      {"ephemeralContainerStatuses", "name"}};
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    const std::string& k = it.key();
    if (!k.empty() && k[0] == '$') continue;  // strategic-merge directives
    if (it.value().is_null()) {
      target.erase(k);
      continue;
    }
    auto mk = kMergeKeys.find(k);
    if (strategic && mk != kMergeKeys.end() && it.value().is_array() && target.contains(k) && target[k].is_array()) {
      json merged = target[k];
      for (const auto& item : it.value()) {
        bool found = false;
        for (auto& existing : merged)
          if (existing.is_object() && item.is_object() && existing.value(mk->second, "") == item.value(mk->second, "")) {
            existing = MergePatch(existing, item, true);
            found = true;
          }
        if (!found) merged.push_back(item);
      }
      target[k] = merged;
      continue;
    }
    target[k] = MergePatch(target.contains(k) ? target[k] : json(nullptr), it.value(), strategic);
  }
  return target;
}

// The field labels the real API server accepts in a fieldSelector, per resource
// (metadata.name and metadata.namespace everywhere); others are a 400.
bool FieldSupported(const std::string& resource, const std::string& field) {
  static const std::map<std::string, std::set<std::string>> kFields = {
      {"pods", {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
                "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"}},
      {"events", {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                  "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                  "reportingComponent", "source", "type"}},
      {"nodes", {"spec.unschedulable"}},
      {"secrets", {"type"}},
  };
  if (field == "metadata.name" || field == "metadata.namespace") return true;
  auto it = kFields.find(resource);
  return it != kFields.end() && it->second.count(field);
}

std::string FieldValue(const json& obj, const std::string& field) {
  if (field == "source") return obj.contains("source") && obj["source"].is_object() ? obj["source"].value("component", "") : "";
  const json* cur = &obj;
  std::stringstream fs(field);
  std::string part;
  while (std::getline(fs, part, '.')) {
    if (!cur->is_object() || !cur->contains(part)) return "";
    cur = &(*cur)[part];
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_boolean()) return cur->get<bool>() ? "true" : "false";
  return "";
}

// Parses "a=b,c!=d,e==f"; an unsupported field label is the server's 400.
std::optional<std::string> ParseFieldSelector(const std::string& resource, const std::string& selector,
                                              std::vector<FieldTerm>* out) {
  std::stringstream ss(selector);
  std::string term;
  while (std::getline(ss, term, ',')) {
    if (term.empty()) continue;
    size_t eq = term.find('=');
    if (eq == std::string::npos || eq == 0) return "invalid selector: '" + selector + "'; can't understand '" + term + "'";
    FieldTerm t;
    t.negate = term[eq - 1] == '!';
    t.field = term.substr(0, t.negate ? eq - 1 : eq);
    t.value = term.substr(eq + 1);
    if (!t.value.empty() && t.value[0] == '=') t.value.erase(0, 1);
    if (!FieldSupported(resource, t.field)) return "field label not supported: " + t.field;
    out->push_back(std::move(t));
  }
  return std::nullopt;
}

bool FieldsMatch(const json& obj, const std::vector<FieldTerm>& terms) {
  for (const auto& t : terms)
    if ((FieldValue(obj, t.field) == t.value) == t.negate) return false;
  return true;
}

// Discovery documents for the groups this server serves.
std::optional<json> Discovery(const std::vector<std::string>& seg, int port) {
  auto resource = [](const char* name, const char* singular, bool namespaced, const char* kind, json verbs,
                     json short_names = json::array()) {
    json r = {{"name", name}, {"singularName", singular}, {"namespaced", namespaced}, {"kind", kind}, {"verbs", verbs}};
    if (!short_names.empty()) r["shortNames"] = short_names;
    return r;
  };
  json all = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"};
  if (seg.size() == 1 && seg[0] == "api")
    return json{{"kind", "APIVersions"},
                {"versions", {"v1"}},
                {"serverAddressByClientCIDRs", {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", "127.0.0.1:" + std::to_string(port)}}}}};
  if (seg.size() == 1 && seg[0] == "apis")
    return json{{"kind", "APIGroupList"},
                {"apiVersion", "v1"},
                {"groups",
                 {{{"name", "coordination.k8s.io"},
                   {"versions", {{{"groupVersion", "coordination.k8s.io/v1"}, {"version", "v1"}}}},
                   {"preferredVersion", {{"groupVersion", "coordination.k8s.io/v1"}, {"version", "v1"}}}},
                  {{"name", "storage.k8s.io"},
                   {"versions", {{{"groupVersion", "storage.k8s.io/v1"}, {"version", "v1"}}}},
                   {"preferredVersion", {{"groupVersion", "storage.k8s.io/v1"}, {"version", "v1"}}}},
                  {{"name", "node.k8s.io"},
                   {"versions", {{{"groupVersion", "node.k8s.io/v1"}, {"version", "v1"}}}},
                   {"preferredVersion", {{"groupVersion", "node.k8s.io/v1"}, {"version", "v1"}}}}}}};
  if (seg.size() == 2 && seg[0] == "api" && seg[1] == "v1")
    return json{{"kind", "APIResourceList"},
                {"groupVersion", "v1"},
                {"resources",
                 {resource("pods", "pod", true, "Pod", all, {"po"}),
                  resource("pods/status", "", true, "Pod", {"get", "patch", "update"}),
                  resource("nodes", "node", false, "Node", all, {"no"}),
                  resource("nodes/status", "", false, "Node", {"get", "patch", "update"}),
                  resource("events", "event", true, "Event", all, {"ev"}),
                  resource("configmaps", "configmap", true, "ConfigMap", all, {"cm"}),
                  resource("secrets", "secret", true, "Secret", all),
                  resource("services", "service", true, "Service", all, {"svc"})}}};
  if (seg.size() == 3 && seg[0] == "apis" && seg[1] == "coordination.k8s.io" && seg[2] == "v1")
    return json{{"kind", "APIResourceList"},
                {"apiVersion", "v1"},
                {"groupVersion", "coordination.k8s.io/v1"},
                {"resources", {resource("leases", "lease", true, "Lease", all)}}};
  if (seg.size() == 3 && seg[0] == "apis" && seg[1] == "storage.k8s.io" && seg[2] == "v1")
    return json{{"kind", "APIResourceList"},
                {"apiVersion", "v1"},
                {"groupVersion", "storage.k8s.io/v1"},
                {"resources",
                 {resource("csinodes", "csinode", false, "CSINode", all), resource("csidrivers", "csidriver", false, "CSIDriver", all),
                  resource("volumeattachments", "volumeattachment", false, "VolumeAttachment", all)}}};
  if (seg.size() == 3 && seg[0] == "apis" && seg[1] == "node.k8s.io" && seg[2] == "v1")
    return json{{"kind", "APIResourceList"},
                {"apiVersion", "v1"},
                {"groupVersion", "node.k8s.io/v1"},
                {"resources", {resource("runtimeclasses", "runtimeclass", false, "RuntimeClass", all)}}};
  return std::nullopt;
}

}  // namespace

FakeApiServer::FakeApiServer(Options o) : o_(std::move(o)) {}
FakeApiServer::~FakeApiServer() { Stop(); }

bool FakeApiServer::Start() {
  if (cert_file_.empty() && !server::EnsureSelfSignedCert(o_.cert_dir, "localhost", &cert_file_, &key_file_).ok()) return false;
  if (o_.csr_signing && !signer_) {
    auto ca = TestCA::Create(o_.cert_dir + "/csr-ca");
    if (!ca.ok()) return false;
    signer_ = std::move(*ca);
    if (o_.client_ca_file.empty()) o_.client_ca_file = signer_->cert_file();
  }
  server::ServerOptions so;
  so.address = "127.0.0.1";
  so.port = port_.load() ? port_.load() : o_.port;
  so.tls = true;
  so.tls_options = {cert_file_, key_file_, o_.client_ca_file};
  // kube-apiserver caps no client's connections: a node holds one watch per object its pods reference.
  so.max_connections = 4096;
  so.max_connections_per_client = 4096;
  stopping_ = false;
  srv_ = std::make_unique<server::HttpServer>(so);
  srv_->Handle("/api/", [this](const Request& r) { return Handle(r); });
  srv_->Handle("/apis/", [this](const Request& r) { return Handle(r); });
  srv_->Handle("/api", [this](const Request& r) { return Handle(r); });
  srv_->Handle("/apis", [this](const Request& r) { return Handle(r); });
  srv_->Handle("/version", [this](const Request& r) {
    if (r.method != "GET") return StatusError(405, "MethodNotAllowed", "method not allowed");
    return Ok({{"major", "1"}, {"minor", "31"}, {"gitVersion", "v1.31.0"}, {"platform", "linux/amd64"}});
  });
  if (!srv_->Start().ok()) return false;
  port_ = srv_->port();
  return true;
}

void FakeApiServer::Stop() {
  stopping_ = true;
  cv_.notify_all();
  if (srv_) srv_->Stop();
  srv_.reset();
}

std::string FakeApiServer::url() const { return "https://127.0.0.1:" + std::to_string(port_); }

std::string FakeApiServer::ca_pem() const {
  std::ifstream in(cert_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json FakeApiServer::Stamp(const std::string& resource, json obj, bool create) {
  auto [kind, version] = Kinds().at(resource);
  obj["kind"] = kind;
  obj["apiVersion"] = version;
  json& m = obj["metadata"];
  if (create) {
    m["uid"] = NewUID();
    m["creationTimestamp"] = FormatRFC3339(std::chrono::system_clock::now());
    if (!ClusterScoped(resource) && !m.contains("namespace")) m["namespace"] = "default";
  }
  m["resourceVersion"] = std::to_string(++rv_);
  return obj;
}

void FakeApiServer::Emit(const std::string& type, const std::string& resource, const json& obj) {
  events_.push_back({rv_, type, resource, obj});
  while (events_.size() > 10000) {
    compacted_ = events_.front().rv;
    events_.pop_front();
  }
  cv_.notify_all();
}

json FakeApiServer::Create(const std::string& resource, const json& obj) {
  std::lock_guard<std::mutex> l(mu_);
  json o = Stamp(resource, obj, true);
  std::string ns = ClusterScoped(resource) ? "" : o["metadata"].value("namespace", "default");
  store_[resource][Key(ns, o["metadata"]["name"])] = o;
  Emit("ADDED", resource, o);
  return o;
}

std::optional<json> FakeApiServer::Get(const std::string& resource, const std::string& ns, const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto r = store_.find(resource);
  if (r == store_.end()) return std::nullopt;
  auto it = r->second.find(Key(ClusterScoped(resource) ? "" : ns, name));
  if (it == r->second.end()) return std::nullopt;
  return it->second;
}

std::vector<json> FakeApiServer::List(const std::string& resource) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<json> out;
  auto r = store_.find(resource);
  if (r != store_.end())
    for (const auto& [_, o] : r->second) out.push_back(o);
  return out;
}

// The node lifecycle controller's TaintNodesByCondition, for the pressure conditions: a NoSchedule taint
// node.kubernetes.io/{memory,disk,pid}-pressure while the condition is True.
void FakeApiServer::TaintNodeByConditions(json& node) {
  static const std::map<std::string, std::string> kTaints = {{"MemoryPressure", "node.kubernetes.io/memory-pressure"},
                                                             {"DiskPressure", "node.kubernetes.io/disk-pressure"},
                                                             {"PIDPressure", "node.kubernetes.io/pid-pressure"}};
  std::set<std::string> want;
  const json st = node.contains("status") && node["status"].is_object() ? node["status"] : json::object();
  if (st.contains("conditions") && st["conditions"].is_array())
    for (const auto& c : st["conditions"])
      if (c.is_object() && c.value("status", "") == "True")
        if (auto t = kTaints.find(c.value("type", "")); t != kTaints.end()) want.insert(t->second);
  if (!node.contains("spec") || !node["spec"].is_object()) node["spec"] = json::object();
  json taints = node["spec"].contains("taints") && node["spec"]["taints"].is_array() ? node["spec"]["taints"] : json::array();
  json out = json::array();
  std::set<std::string> have;
  for (const auto& t : taints) {
    std::string key = t.is_object() ? t.value("key", "") : "";
    bool pressure = false;
    for (const auto& [_, k] : kTaints) pressure |= k == key;
    if (pressure && !want.count(key)) continue;
    if (pressure) have.insert(key);
    out.push_back(t);
  }
  for (const auto& k : want)
    if (!have.count(k)) out.push_back({{"key", k}, {"effect", "NoSchedule"}, {"timeAdded", FormatRFC3339(std::chrono::system_clock::now())}});
  if (out.empty())
    node["spec"].erase("taints");
  else
    node["spec"]["taints"] = out;
}

// NodeRestriction's label rule: node-restriction.kubernetes.io labels never; other kubernetes.io and k8s.io
// labels only the kubelet's own (hostname, os, arch, instance type, zone and region, and the kubelet.kubernetes.io
// and node.kubernetes.io namespaces).
bool FakeApiServer::NodeRestrictionForbidsLabel(const std::string& key) {
  auto slash = key.find('/');
  if (slash == std::string::npos) return false;
  std::string domain = key.substr(0, slash);
  auto is_or_under = [&](const std::string& d) {
    return domain == d || (domain.size() > d.size() && domain.compare(domain.size() - d.size() - 1, d.size() + 1, "." + d) == 0);
  };
  if (is_or_under("node-restriction.kubernetes.io")) return true;
  if (!is_or_under("kubernetes.io") && !is_or_under("k8s.io")) return false;
  static const std::set<std::string> kKubelet = {
      "kubernetes.io/hostname", "kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
      "beta.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
      "topology.kubernetes.io/zone", "topology.kubernetes.io/region", "kubernetes.io/os", "kubernetes.io/arch",
      "beta.kubernetes.io/os", "beta.kubernetes.io/arch"};
  if (kKubelet.count(key)) return false;
  if (is_or_under("kubelet.kubernetes.io") || is_or_under("node.kubernetes.io")) return false;
  return true;
}

void FakeApiServer::Update(const std::string& resource, const json& obj) {
  std::lock_guard<std::mutex> l(mu_);
  json o = Stamp(resource, obj, false);
  std::string ns = ClusterScoped(resource) ? "" : o["metadata"].value("namespace", "default");
  store_[resource][Key(ns, o["metadata"]["name"])] = o;
  Emit("MODIFIED", resource, o);
}

void FakeApiServer::Remove(const std::string& resource, const std::string& ns, const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto& m = store_[resource];
  auto it = m.find(Key(ClusterScoped(resource) ? "" : ns, name));
  if (it == m.end()) return;
  json o = it->second;
  m.erase(it);
  o["metadata"]["resourceVersion"] = std::to_string(++rv_);
  Emit("DELETED", resource, o);
}

void FakeApiServer::Compact() {
  std::lock_guard<std::mutex> l(mu_);
  compacted_ = rv_;
  events_.clear();
}

void FakeApiServer::InjectError(const std::string& method, const std::string& resource, int code, int times, int retry_after) {
  std::lock_guard<std::mutex> l(mu_);
  errors_[method + " " + resource] = {code, times, retry_after};
}

int FakeApiServer::Requests(const std::string& method, const std::string& resource) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = requests_.find(method + " " + resource);
  return it == requests_.end() ? 0 : it->second;
}

std::vector<std::string> FakeApiServer::Users() const {
  std::lock_guard<std::mutex> l(mu_);
  return {users_.begin(), users_.end()};
}

std::vector<std::string> FakeApiServer::Forbidden() const {
  std::lock_guard<std::mutex> l(mu_);
  return {forbidden_.begin(), forbidden_.end()};
}

json FakeApiServer::TokenClaims(const std::string& token) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = tokens_.find(token);
  return it == tokens_.end() ? json(nullptr) : it->second;
}

void FakeApiServer::AddUserToken(const std::string& token, const std::string& user, std::vector<std::string> groups) {
  std::lock_guard<std::mutex> l(mu_);
  user_tokens_[token] = {user, std::move(groups)};
}

void FakeApiServer::AllowNodeAccess(const std::string& subject, const std::string& verb, const std::string& subresource) {
  std::lock_guard<std::mutex> l(mu_);
  node_access_.insert({subject, verb, subresource});
}

Response FakeApiServer::TokenReview(const Request& req) {
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object() || body.value("kind", "") != "TokenReview" || !body.contains("spec") || !body["spec"].is_object() ||
      !body["spec"].contains("token") || !body["spec"]["token"].is_string())
    return StatusError(400, "BadRequest", "the body is not a TokenReview with spec.token");
  const std::string token = body["spec"]["token"];
  json want = body["spec"].contains("audiences") && body["spec"]["audiences"].is_array() ? body["spec"]["audiences"] : json::array();
  json out = body;
  out["apiVersion"] = "authentication.k8s.io/v1";
  out["metadata"] = {{"creationTimestamp", nullptr}};
  json status = {{"user", json::object()}};
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = user_tokens_.find(token); it != user_tokens_.end()) {
    json groups = it->second.second;
    groups.push_back("system:authenticated");
    status = {{"authenticated", true}, {"user", {{"username", it->second.first}, {"groups", groups}}}};
  } else if (auto t = tokens_.find(token); t != tokens_.end()) {
    const json& c = t->second;
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    bool audience_ok = want.empty();
    for (const auto& a : want)
      for (const auto& have : c["aud"]) audience_ok |= a == have;
    if (c["exp"].get<int64_t>() <= now) {
      status["error"] = "[invalid bearer token, service account token has expired]";
    } else if (!audience_ok) {
      status["error"] = "[invalid bearer token, token audiences " + c["aud"].dump() + " is invalid for the target audiences " +
                        want.dump() + "]";
    } else {
      std::string sub = c["sub"];  // system:serviceaccount:<ns>:<name>
      std::string ns = sub.substr(std::string("system:serviceaccount:").size());
      ns = ns.substr(0, ns.find(':'));
      json user = {{"username", sub},
                   {"groups", {"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}};
      if (c["pod"].is_object())
        user["extra"] = {{"authentication.kubernetes.io/pod-name", {c["pod"]["name"]}},
                         {"authentication.kubernetes.io/pod-uid", {c["pod"]["uid"]}}};
      status = {{"authenticated", true}, {"user", user}, {"audiences", want.empty() ? c["aud"] : want}};
    }
  } else {
    status["error"] = "[invalid bearer token, Token has been invalidated]";
  }
  out["status"] = status;
  return Ok(out, 201);
}

Response FakeApiServer::SubjectAccessReview(const Request& req) {
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object() || body.value("kind", "") != "SubjectAccessReview" || !body.contains("spec") || !body["spec"].is_object())
    return StatusError(400, "BadRequest", "the body is not a SubjectAccessReview");
  const json& spec = body["spec"];
  if (!spec.contains("resourceAttributes") || !spec["resourceAttributes"].is_object())
    return StatusError(422, "Invalid", "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: "
                                       "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified");
  const json& ra = spec["resourceAttributes"];
  std::string user = spec.value("user", "");
  std::vector<std::string> subjects = {user};
  bool master = false;
  if (spec.contains("groups") && spec["groups"].is_array())
    for (const auto& g : spec["groups"])
      if (g.is_string()) {
        subjects.push_back("group:" + g.get<std::string>());
        master |= g == "system:masters";
      }
  bool allowed = master;
  std::string verb = ra.value("verb", ""), sub = ra.value("subresource", "");
  std::lock_guard<std::mutex> l(mu_);
  if (ra.value("resource", "") == "nodes" && ra.value("group", "") == "")
    for (const auto& s : subjects)
      for (const auto& v : {verb, std::string("*")})
        for (const auto& r : {sub, std::string("*")}) allowed |= node_access_.count({s, v, r}) > 0;
  json out = body;
  out["apiVersion"] = "authorization.k8s.io/v1";
  out["metadata"] = {{"creationTimestamp", nullptr}};
  out["status"] = {{"allowed", allowed}};
  if (!allowed) out["status"]["reason"] = "";
  return Ok(out, 201);
}

// The node proxy of pods/exec, attach and portforward: the kubelet URL as the API server's streamLocation builds it
// (options as "1", the only container when none is named), the client's upgraded connection relayed with the
// API server's kubelet client certificate.
Response FakeApiServer::StreamToNode(const Request& req, const std::string& ns, const std::string& name, const std::string& sub) {
  if (o_.kubelet_client_cert.empty()) return StatusError(503, "ServiceUnavailable", "no kubelet client certificate configured");
  std::string node_name, host, container;
  int port = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto pod = store_["pods"].find(Key(ns, name));
    if (pod == store_["pods"].end()) return StatusError(404, "NotFound", "pods \"" + name + "\" not found");
    node_name = pod->second["spec"].value("nodeName", "");
    const json& cs = pod->second["spec"]["containers"];
    container = req.query.count("container") ? req.query.at("container") : "";
    if (container.empty() && cs.is_array() && cs.size() == 1) container = cs[0].value("name", "");
    auto node = store_["nodes"].find(Key("", node_name));
    if (node == store_["nodes"].end()) return StatusError(400, "BadRequest", "pod " + name + " is not bound to a node that exists");
    const json st = node->second.value("status", json::object());
    for (const auto& a : st.value("addresses", json::array()))
      if (a.value("type", "") == "InternalIP" && host.empty()) host = a.value("address", "");
    port = st.value("daemonEndpoints", json::object()).value("kubeletEndpoint", json::object()).value("Port", 0);
  }
  if (host.empty() || port <= 0) return StatusError(400, "BadRequest", "node " + node_name + " has no InternalIP or kubelet port");
  if (sub != "portforward" && container.empty())
    return StatusError(400, "BadRequest", "a container name must be specified for pod " + name);
  std::string query;
  auto add = [&](const std::string& k, const std::string& v) { query += (query.empty() ? "?" : "&") + k + "=" + QueryEscape(v); };
  if (auto cmd = req.query_values.find("command"); cmd != req.query_values.end())
    for (const auto& c : cmd->second) add("command", c);
  for (const char* opt : {"stdin", "stdout", "stderr", "tty"})
    if (auto it = req.query.find(opt); it != req.query.end() && (it->second == "true" || it->second == "1")) add(opt, "1");
  if (auto ports = req.query_values.find("ports"); ports != req.query_values.end())
    for (const auto& p : ports->second) add("port", p);
  std::string path = sub == "portforward" ? "/portForward/" + ns + "/" + name : "/" + sub + "/" + ns + "/" + name + "/" + container;
  std::string url = "https://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port) + path + query;
  Response r;
  server::StreamTLS tls{o_.kubelet_client_cert, o_.kubelet_client_key};
  r.upgrade = [req, url, tls](server::UpgradedConn& conn) { server::ProxyStream(req, url, conn, std::chrono::hours(4), &tls); };
  return r;
}

void FakeApiServer::CreateNamespaceDefaults(const std::string& ns) {
  if (!Get("serviceaccounts", ns, "default"))
    Create("serviceaccounts", {{"metadata", {{"name", "default"}, {"namespace", ns}}}});
  if (!Get("configmaps", ns, "kube-root-ca.crt"))
    Create("configmaps", {{"metadata", {{"name", "kube-root-ca.crt"}, {"namespace", ns}}}, {"data", {{"ca.crt", ca_pem()}}}});
}

// Objects a pod references, by resource: what the Node authorizer's graph holds for a pod bound to a node.
bool FakeApiServer::PodOnNodeReferences(const std::string& node, const std::string& resource, const std::string& ns,
                                        const std::string& name) const {
  auto pods = store_.find("pods");
  if (pods == store_.end()) return false;
  std::set<std::string> claims;  // for persistentvolumes: the claims of the node's pods, resolved below
  for (const auto& [key, pod] : pods->second) {
    const json& spec = pod.contains("spec") ? pod["spec"] : json::object();
    if (spec.value("nodeName", "") != node) continue;
    std::string pns = pod["metadata"].value("namespace", "");
    if (resource != "persistentvolumes" && pns != ns) continue;
    auto refs = [&](const json& j, auto&& self) -> bool {
      // Walks the spec for references of the kind asked about.
      if (j.is_object()) {
        for (auto it = j.begin(); it != j.end(); ++it) {
          const std::string& k = it.key();
          const json& v = it.value();
          if (resource == "configmaps" && (k == "configMap" || k == "configMapRef" || k == "configMapKeyRef") && v.is_object() &&
              v.value("name", "") == name)
            return true;
          if (resource == "secrets" && k == "nodePublishSecretRef" && v.is_object() && v.value("name", "") == name) return true;
          if (resource == "secrets" && k == "persistentVolumeClaim" && v.is_object()) claims.insert(pns + "/" + v.value("claimName", ""));
          if (resource == "secrets" && (k == "secret" || k == "secretRef" || k == "secretKeyRef") && v.is_object() &&
              (v.value("name", "") == name || v.value("secretName", "") == name))
            return true;
          if (resource == "secrets" && k == "imagePullSecrets" && v.is_array())
            for (const auto& s : v)
              if (s.is_object() && s.value("name", "") == name) return true;
          if ((resource == "persistentvolumeclaims" || resource == "persistentvolumes") && k == "persistentVolumeClaim" &&
              v.is_object()) {
            if (resource == "persistentvolumeclaims" && v.value("claimName", "") == name) return true;
            claims.insert(pns + "/" + v.value("claimName", ""));
          }
          if (self(v, self)) return true;
        }
      } else if (j.is_array()) {
        for (const auto& v : j)
          if (self(v, self)) return true;
      }
      return false;
    };
    if (refs(spec, refs)) return true;
  }
  if (resource == "secrets") {
    // The graph's PV -> secret edges: a CSI PV's node stage/publish secrets, of the claims of the node's pods.
    auto pvcs = store_.find("persistentvolumeclaims");
    auto pvs = store_.find("persistentvolumes");
    if (pvcs != store_.end() && pvs != store_.end())
      for (const auto& c : claims) {
        auto claim = pvcs->second.find(c);
        if (claim == pvcs->second.end() || !claim->second.contains("spec")) continue;
        auto pv = pvs->second.find(Key("", claim->second["spec"].value("volumeName", "")));
        if (pv == pvs->second.end() || !pv->second.contains("spec") || !pv->second["spec"].contains("csi")) continue;
        const json& csi = pv->second["spec"]["csi"];
        for (const char* ref : {"nodeStageSecretRef", "nodePublishSecretRef", "nodeExpandSecretRef"})
          if (csi.contains(ref) && csi[ref].is_object() && csi[ref].value("name", "") == name && csi[ref].value("namespace", "") == ns)
            return true;
      }
    return false;
  }
  if (resource == "persistentvolumes") {
    auto pvcs = store_.find("persistentvolumeclaims");
    if (pvcs != store_.end())
      for (const auto& c : claims)
        if (auto it = pvcs->second.find(c); it != pvcs->second.end() && it->second.contains("spec") &&
                                            it->second["spec"].value("volumeName", "") == name)
          return true;
  }
  return false;
}

std::string FakeApiServer::AuthorizeNode(const std::string& node, const Request& req, const std::string& resource,
                                         const std::string& ns, const std::string& name, const std::string& sub,
                                         const std::vector<FieldTerm>& terms) const {
  const std::string no_relationship = "no relationship found between node '" + node + "' and this object";
  bool read = req.method == "GET";
  if (resource == "configmaps" || resource == "secrets" || resource == "persistentvolumeclaims" ||
      resource == "persistentvolumes") {
    // A claim's status is the node's to update once its pods use the claim (volume expansion on the node).
    if (resource == "persistentvolumeclaims" && sub == "status") {
      if (req.method != "PUT" && req.method != "PATCH") return "can only get/update/patch this type";
      return PodOnNodeReferences(node, resource, ns, name) ? "" : no_relationship;
    }
    if (!read) return "a node may only read " + resource;
    std::string target = name;
    if (target.empty()) {
      // A list or watch: only of one object, named by fieldSelector metadata.name=<name>.
      for (const auto& t : terms)
        if (t.field == "metadata.name" && !t.negate) target = t.value;
      if (target.empty()) return "can only read individual " + resource + " (a list needs fieldSelector metadata.name)";
    }
    if (!PodOnNodeReferences(node, resource, ns, target)) return no_relationship;
    return "";
  }
  // CSINode: a node reads and writes its own (the authorizer, then NodeRestriction); never lists or watches.
  if (resource == "csinodes") {
    if (name.empty() && req.method == "GET") return "can only get, create, update, patch, or delete a CSINode";
    std::string target = name;
    if (target.empty() && req.method == "POST") {
      json body = json::parse(req.body, nullptr, false);
      if (body.is_object()) target = api::MetaField(body, "name");
    }
    if (target != node) return "node '" + node + "' cannot modify CSINode '" + target + "'";
    return "";
  }
  // RBAC's system:node: CSIDrivers are read (get, list, watch), never written.
  if (resource == "csidrivers") return read ? "" : "a node may only read csidrivers";
  // RBAC's system:node: RuntimeClasses too (get, list, watch).
  if (resource == "runtimeclasses") return read ? "" : "a node may only read runtimeclasses";
  // VolumeAttachments: get only, of an attachment to this node.
  if (resource == "volumeattachments") {
    if (!read || name.empty()) return "can only get individual resources of this type";
    auto vas = store_.find("volumeattachments");
    if (vas == store_.end()) return no_relationship;
    auto it = vas->second.find(Key("", name));
    if (it == vas->second.end()) return no_relationship;  // the graph holds no such attachment: 403, not 404
    return it->second.contains("spec") && it->second["spec"].value("nodeName", "") == node ? "" : no_relationship;
  }
  if (resource == "serviceaccounts") {
    if (sub != "token" || req.method != "POST") return read && !name.empty() ? "" : "a node may only request tokens";
    // The authorizer: a pod on this node runs as this service account. NodeRestriction then checks the binding.
    auto pods = store_.find("pods");
    bool used = false;
    if (pods != store_.end())
      for (const auto& [key, pod] : pods->second)
        if (pod["spec"].value("nodeName", "") == node && pod["metadata"].value("namespace", "") == ns &&
            pod["spec"].value("serviceAccountName", "default") == name)
          used = true;
    return used ? "" : no_relationship;
  }
  if (resource == "nodes" && !read) {
    if (name != node && !(req.method == "POST" && name.empty())) return "node '" + node + "' cannot modify node '" + name + "'";
    return "";
  }
  if (resource == "leases" && !read) {
    std::string target = name;
    if (target.empty() && req.method == "POST") {
      json body = json::parse(req.body, nullptr, false);
      if (body.is_object()) target = api::MetaField(body, "name");
    }
    if (ns != "kube-node-lease" || target != node) return "node '" + node + "' cannot modify this lease";
    return "";
  }
  if (resource == "pods" && (sub == "exec" || sub == "attach" || sub == "portforward"))
    return "a node may not open " + sub + " streams into pods";
  // RBAC's system:node role: create, get, list and watch CSRs; approving or signing them is not a node's.
  if (resource == "certificatesigningrequests" && !read && !(req.method == "POST" && name.empty()))
    return "a node may only create and read certificatesigningrequests";
  if (resource == "pods" && (req.method == "PUT" || req.method == "PATCH") && sub != "status") {
    return "a node may only update the status of its pods";
  }
  if (resource == "pods" && read) {
    // The Node authorizer with selectors: one pod bound to the node, or a list/watch selecting spec.nodeName=<node>.
    if (!name.empty()) {
      auto pods = store_.find("pods");
      if (pods == store_.end()) return "";  // a pod that does not exist: 404 follows
      auto it = pods->second.find(Key(ns, name));
      if (it == pods->second.end()) return "";
      return it->second["spec"].value("nodeName", "") == node ? "" : no_relationship;
    }
    for (const auto& t : terms)
      if (t.field == "spec.nodeName" && !t.negate && t.value == node) return "";
    return "can only list/watch pods with spec.nodeName field selector";
  }
  return "";
}

std::string FakeApiServer::AdmitNode(const std::string& node, const Request& req, const std::string& ns,
                                     const std::string& name, const std::string& sub) const {
  auto pods = store_.find("pods");
  const json* existing = nullptr;
  if (pods != store_.end() && !name.empty())
    if (auto it = pods->second.find(Key(ns, name)); it != pods->second.end()) existing = &it->second;
  if (req.method == "POST" && sub.empty()) {
    json pod = json::parse(req.body, nullptr, false);
    if (!pod.is_object()) return "";  // 400 follows
    const json meta = pod.contains("metadata") && pod["metadata"].is_object() ? pod["metadata"] : json::object();
    const json spec = pod.contains("spec") && pod["spec"].is_object() ? pod["spec"] : json::object();
    if (!meta.contains("annotations") || !meta["annotations"].is_object() ||
        !meta["annotations"].contains("kubernetes.io/config.mirror"))
      return "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"" + node + "\" can only create mirror pods";
    if (spec.value("nodeName", "") != node)
      return "node \"" + node + "\" can only create pods with spec.nodeName set to itself";
    if (!spec.value("serviceAccountName", "").empty()) return "node \"" + node + "\" can not create pods that use service accounts";
    std::string d = spec.dump();
    for (const char* k : {"\"secret\"", "\"secretRef\"", "\"secretKeyRef\""})
      if (d.find(k) != std::string::npos) return "node \"" + node + "\" can not create pods that reference secrets";
    for (const char* k : {"\"configMap\"", "\"configMapRef\"", "\"configMapKeyRef\""})
      if (d.find(k) != std::string::npos) return "node \"" + node + "\" can not create pods that reference configmaps";
    if (d.find("\"persistentVolumeClaim\"") != std::string::npos)
      return "node \"" + node + "\" can not create pods that reference persistentvolumeclaims";
    return "";
  }
  if (!existing) return "";  // 404 follows
  const bool own = (*existing)["spec"].value("nodeName", "") == node;
  if (req.method == "DELETE" && !own) return "node \"" + node + "\" can only delete pods with spec.nodeName set to itself";
  if ((req.method == "PUT" || req.method == "PATCH") && sub == "status" && !own)
    return "node \"" + node + "\" can only update pod status for pods with spec.nodeName set to itself";
  return "";
}

Response FakeApiServer::TokenRequest(const std::string& user, const std::string& ns, const std::string& sa,
                                     const Request& req) {
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object() || body.value("kind", "") != "TokenRequest" || !body.contains("spec") || !body["spec"].is_object())
    return StatusError(400, "BadRequest", "the body is not a TokenRequest");
  const json& spec = body["spec"];
  int64_t exp = spec.contains("expirationSeconds") && spec["expirationSeconds"].is_number_integer()
                    ? spec["expirationSeconds"].get<int64_t>()
                    : 3600;
  if (exp < 600) return StatusError(422, "Invalid", "TokenRequest is invalid: spec.expirationSeconds: may not specify a duration less than 10 minutes");
  std::lock_guard<std::mutex> l(mu_);
  if (!store_["serviceaccounts"].count(Key(ns, sa))) return StatusError(404, "NotFound", "serviceaccounts \"" + sa + "\" not found");
  const json ref = spec.contains("boundObjectRef") && spec["boundObjectRef"].is_object() ? spec["boundObjectRef"] : json(nullptr);
  json pod;
  if (!ref.is_null()) {
    if (ref.value("kind", "") != "Pod") return StatusError(400, "BadRequest", "cannot bind token to object of type " + ref.value("kind", ""));
    auto it = store_["pods"].find(Key(ns, ref.value("name", "")));
    if (it == store_["pods"].end()) return StatusError(404, "NotFound", "pods \"" + ref.value("name", "") + "\" not found");
    if (!ref.value("uid", "").empty() && ref.value("uid", "") != it->second["metadata"].value("uid", ""))
      return StatusError(409, "Conflict", "the UID in the bound object reference (" + ref.value("uid", "") +
                                              ") does not match the UID in record. The object might have been deleted and then recreated");
    pod = it->second;
  }
  // NodeRestriction: a node's token must be bound to a pod scheduled on that node.
  const std::string node_prefix = "system:node:";
  if (user.rfind(node_prefix, 0) == 0) {
    std::string node = user.substr(node_prefix.size());
    if (pod.is_null())
      return StatusError(403, "Forbidden", "serviceaccounts \"" + sa + "\" is forbidden: node requested token not bound to a pod");
    if (pod["spec"].value("nodeName", "") != node)
      return StatusError(403, "Forbidden", "serviceaccounts \"" + sa + "\" is forbidden: node requested token bound to a pod scheduled on a different node");
  }
  auto expires = std::chrono::system_clock::now() + std::chrono::seconds(exp);
  json aud = spec.contains("audiences") && spec["audiences"].is_array() && !spec["audiences"].empty()
                 ? spec["audiences"]
                 : json::array({"https://kubernetes.default.svc.cluster.local"});
  json claims = {{"sub", "system:serviceaccount:" + ns + ":" + sa},
                 {"aud", aud},
                 {"exp", std::chrono::duration_cast<std::chrono::seconds>(expires.time_since_epoch()).count()},
                 {"pod", pod.is_null() ? json(nullptr) : json({{"name", pod["metadata"]["name"]}, {"uid", pod["metadata"]["uid"]}})}};
  std::string token = "fake." + kubelet::Base64Encode(claims.dump()) + "." + NewUID();
  tokens_[token] = claims;
  if (tokens_.size() > 10000) tokens_.erase(tokens_.begin());
  json out = body;
  out["apiVersion"] = "authentication.k8s.io/v1";
  out["metadata"] = {{"name", sa}, {"namespace", ns}, {"creationTimestamp", FormatRFC3339(std::chrono::system_clock::now())}};
  out["spec"]["expirationSeconds"] = exp;
  out["spec"]["audiences"] = aud;
  out["status"] = {{"token", token}, {"expirationTimestamp", FormatRFC3339(expires)}};
  return Ok(out, 201);
}

Response FakeApiServer::Handle(const Request& req) {
  // Authentication: the configured bearer token or a verified client certificate.
  auto auth = req.headers.find("authorization");
  bool token_ok = auth != req.headers.end() && auth->second == "Bearer " + o_.token;
  std::string token_user;
  if (!token_ok && auth != req.headers.end() && auth->second.rfind("Bearer ", 0) == 0) {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = user_tokens_.find(auth->second.substr(7)); it != user_tokens_.end()) token_user = it->second.first;
  }
  std::vector<std::string> groups;
  if (!token_ok && !token_user.empty()) {
    std::lock_guard<std::mutex> l(mu_);
    groups = user_tokens_[auth->second.substr(7)].second;
  }
  // A client certificate the client CA does not verify (or one that has expired) is refused, never anonymous.
  if (req.client_cert_invalid) return StatusError(401, "Unauthorized", "Unauthorized");
  if (!req.client_cn.empty()) groups = req.client_groups;
  bool authed = !req.client_cn.empty() || token_ok || !token_user.empty();
  if (!authed) return StatusError(401, "Unauthorized", "Unauthorized");
  const std::string user = !req.client_cn.empty() ? req.client_cn
                           : !token_user.empty()   ? token_user
                           : !o_.token_user.empty() ? o_.token_user
                                                    : "token";
  {
    std::lock_guard<std::mutex> l(mu_);
    users_.push_back(user);
    if (users_.size() > 1000) users_.pop_front();
  }
  const std::string node_prefix = "system:node:";
  const std::string node = user.rfind(node_prefix, 0) == 0 ? user.substr(node_prefix.size()) : "";

  // /api/v1/... or /apis/<group>/<version>/...
  std::vector<std::string> seg;
  std::stringstream ss(req.path);
  std::string s;
  while (std::getline(ss, s, '/'))
    if (!s.empty()) seg.push_back(s);
  if (req.method == "GET")
    if (auto d = Discovery(seg, port_)) return Ok(*d);
  size_t i = seg.size() > 0 && seg[0] == "api" ? 2 : 3;
  if (seg.size() <= i) return StatusError(404, "NotFound", "the server could not find the requested resource");
  std::string ns, resource, name, sub;
  if (seg[i] == "namespaces" && seg.size() > i + 2) {
    ns = seg[i + 1];
    i += 2;
  }
  resource = seg[i];
  if (seg.size() > i + 1) name = seg[i + 1];
  if (seg.size() > i + 2) sub = seg[i + 2];
  // A resource is served under its own group and version only.
  if (!Kinds().count(resource)) return StatusError(404, "NotFound", "the server could not find the requested resource");
  {
    const std::string gv = seg[0] == "api" ? (seg.size() > 1 ? seg[1] : "") : seg[1] + "/" + seg[2];
    if (Kinds().at(resource).second != gv) return StatusError(404, "NotFound", "the server could not find the requested resource");
  }
  if (ClusterScoped(resource)) ns = "";
  bool namespaced_path = !ns.empty();

  std::vector<FieldTerm> terms;
  if (req.query.count("fieldSelector"))
    if (auto err = ParseFieldSelector(resource, req.query.at("fieldSelector"), &terms)) return StatusError(400, "BadRequest", *err);
  // A bootstrap token (RBAC's system:node-bootstrapper): certificate signing requests only.
  if (user.rfind("system:bootstrap:", 0) == 0 &&
      !(resource == "certificatesigningrequests" && (req.method == "GET" || (req.method == "POST" && name.empty())))) {
    std::lock_guard<std::mutex> l(mu_);
    forbidden_.push_back(req.method + " " + req.path + ": bootstrap token");
    if (forbidden_.size() > 1000) forbidden_.pop_front();
    return StatusError(403, "Forbidden", resource + " \"" + name + "\" is forbidden: User \"" + user + "\" cannot " +
                                             (req.method == "GET" ? "get" : req.method == "POST" ? "create" : "update") +
                                             " resource \"" + resource + "\"");
  }
  if (!node.empty()) {
    std::lock_guard<std::mutex> l(mu_);
    std::string why = AuthorizeNode(node, req, resource, ns, name, sub, terms);
    if (!why.empty()) {
      forbidden_.push_back(req.method + " " + req.path + ": " + why);
      if (forbidden_.size() > 1000) forbidden_.pop_front();
      std::string verb = req.method == "GET" ? (name.empty() ? (req.query.count("watch") ? "watch" : "list") : "get")
                         : req.method == "POST"  ? "create"
                         : req.method == "PUT"   ? "update"
                         : req.method == "PATCH" ? "patch"
                                                 : "delete";
      std::string what = sub.empty() ? resource : resource + "/" + sub;
      return StatusError(403, "Forbidden",
                         what + " \"" + name + "\" is forbidden: User \"" + user + "\" cannot " + verb + " resource \"" +
                             what + "\" in API group \"\"" + (ns.empty() ? " at the cluster scope" : " in the namespace \"" + ns + "\"") +
                             ": " + why);
    }
  }
  // NodeRestriction on a node's own Node at create: no label outside what the kubelet may set.
  if (!node.empty() && resource == "nodes" && req.method == "POST") {
    json body = json::parse(req.body, nullptr, false);
    std::string refused;
    if (body.is_object() && body.contains("metadata") && body["metadata"].is_object() && body["metadata"].contains("labels") &&
        body["metadata"]["labels"].is_object())
      for (const auto& l : body["metadata"]["labels"].items())  // sorted, as upstream lists them
        if (NodeRestrictionForbidsLabel(l.key())) refused += (refused.empty() ? "" : ", ") + l.key();
    if (!refused.empty()) {
      std::lock_guard<std::mutex> l(mu_);
      forbidden_.push_back(req.method + " " + req.path + ": labels " + refused);
      if (forbidden_.size() > 1000) forbidden_.pop_front();
      std::string target = body.is_object() ? api::MetaField(body, "name") : "";
      return StatusError(403, "Forbidden", "nodes \"" + target + "\" is forbidden: node \"" + node +
                                               "\" is not allowed to set the following labels: " + refused);
    }
  }
  if (!node.empty() && resource == "pods" && req.method != "GET") {
    std::lock_guard<std::mutex> l(mu_);
    std::string why = AdmitNode(node, req, ns, name, sub);
    if (!why.empty()) {
      forbidden_.push_back(req.method + " " + req.path + ": " + why);
      if (forbidden_.size() > 1000) forbidden_.pop_front();
      std::string pod_name = name;
      if (pod_name.empty()) {
        json body = json::parse(req.body, nullptr, false);
        if (body.is_object()) pod_name = api::MetaField(body, "name");
      }
      return StatusError(403, "Forbidden", "pods \"" + pod_name + "\" is forbidden: " + why);
    }
  }

  {
    std::lock_guard<std::mutex> l(mu_);
    requests_[req.method + " " + resource]++;
    if (!name.empty() && requests_.size() < 100000) requests_[req.method + " " + req.path]++;  // reads of one object
    auto e = errors_.find(req.method + " " + resource);
    if (e != errors_.end() && std::get<1>(e->second) > 0) {
      std::get<1>(e->second)--;
      Response r = StatusError(std::get<0>(e->second), std::get<0>(e->second) == 429 ? "TooManyRequests" : "InternalError",
                               "injected error");
      if (std::get<2>(e->second) > 0) r.headers["Retry-After"] = std::to_string(std::get<2>(e->second));
      return r;
    }
  }

  // Counted (and open to injected errors) as any other request.
  if (resource == "serviceaccounts" && sub == "token" && req.method == "POST") return TokenRequest(user, ns, name, req);
  if (resource == "pods" && (sub == "exec" || sub == "attach" || sub == "portforward")) return StreamToNode(req, ns, name, sub);
  if (resource == "certificatesigningrequests" && req.method == "POST" && name.empty()) return CreateCSR(user, groups, req);
  if (resource == "certificatesigningrequests" && !sub.empty() && req.method != "GET" && !node.empty())
    return StatusError(403, "Forbidden", "a node may not approve or sign certificatesigningrequests");
  if (resource == "tokenreviews" || resource == "subjectaccessreviews") {
    if (req.method != "POST" || !name.empty())
      return StatusError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    return resource == "tokenreviews" ? TokenReview(req) : SubjectAccessReview(req);
  }

  if (req.method == "GET" && name.empty()) {
    if (req.query.count("watch") && (req.query.at("watch") == "true" || req.query.at("watch") == "1"))
      return Watch(resource, ns, terms, req);
    std::lock_guard<std::mutex> l(mu_);
    json items = json::array();
    for (const auto& [key, o] : store_[resource]) {
      if (namespaced_path && o["metadata"].value("namespace", "") != ns) continue;
      if (!FieldsMatch(o, terms)) continue;
      items.push_back(o);
    }
    auto [kind, version] = Kinds().at(resource);
    return Ok({{"kind", kind + "List"}, {"apiVersion", version},
               {"metadata", {{"resourceVersion", std::to_string(rv_)}}}, {"items", items}});
  }

  std::unique_lock<std::mutex> l(mu_);
  auto& objs = store_[resource];
  if (req.method == "POST" && name.empty()) {
    json body;
    try {
      body = json::parse(req.body);
    } catch (...) {
      return StatusError(400, "BadRequest", "invalid JSON body");
    }
    std::string n = body["metadata"].value("name", "");
    if (n.empty() && body["metadata"].contains("generateName"))
      n = body["metadata"]["generateName"].get<std::string>() + NewUID().substr(0, 5);
    if (n.empty()) return StatusError(422, "Invalid", resource + " \"\" is invalid: metadata.name: Required value");
    body["metadata"]["name"] = n;
    if (!ClusterScoped(resource)) body["metadata"]["namespace"] = namespaced_path ? ns : body["metadata"].value("namespace", "default");
    std::string key = Key(ClusterScoped(resource) ? "" : body["metadata"]["namespace"].get<std::string>(), n);
    if (objs.count(key)) return StatusError(409, "AlreadyExists", resource + " \"" + n + "\" already exists");
    json o = Stamp(resource, body, true);
    objs[key] = o;
    Emit("ADDED", resource, o);
    return Ok(o, 201);
  }
  std::string key = Key(ns, name);
  auto it = objs.find(key);
  if (it == objs.end()) return StatusError(404, "NotFound", resource + " \"" + name + "\" not found");
  if (req.method == "GET") return Ok(it->second);
  if (req.method == "PUT" || req.method == "PATCH") {
    json body;
    try {
      body = json::parse(req.body);
    } catch (...) {
      return StatusError(400, "BadRequest", "invalid JSON body");
    }
    json next;
    if (req.method == "PUT") {
      std::string want = body["metadata"].value("resourceVersion", "");
      if (!want.empty() && want != it->second["metadata"].value("resourceVersion", ""))
        return StatusError(409, "Conflict",
                           "Operation cannot be fulfilled on " + resource + " \"" + name +
                               "\": the object has been modified; please apply your changes to the latest version and try again");
      next = body;
    } else {
      std::string ct = req.headers.count("content-type") ? req.headers.at("content-type") : "";
      if (ct != "application/merge-patch+json" && ct != "application/strategic-merge-patch+json")
        return StatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json");
      next = MergePatch(it->second, body, ct == "application/strategic-merge-patch+json");
    }
    // The status subresource changes only status; the main resource never does (pods, nodes).
    if (sub == "status") {
      json keep = it->second;
      keep["status"] = next.contains("status") ? next["status"] : json::object();
      next = keep;
      // NodeRestriction: of a claim's status a node changes only capacity, conditions and the allocated fields.
      if (resource == "persistentvolumeclaims" && !node.empty()) {
        auto strip = [](json o) {
          if (o.contains("status") && o["status"].is_object())
            for (const char* f : {"capacity", "conditions", "allocatedResourceStatuses", "allocatedResources"}) o["status"].erase(f);
          if (o.contains("metadata") && o["metadata"].is_object()) o["metadata"].erase("resourceVersion");
          return o;
        };
        if (strip(next) != strip(it->second)) {
          forbidden_.push_back(req.method + " " + req.path + ": fields other than status.capacity and status.conditions");
          return StatusError(403, "Forbidden", "persistentvolumeclaims \"" + name + "\" is forbidden: node \"" + node +
                                                   "\" is not allowed to update fields other than status.capacity and status.conditions");
        }
      }
    } else if (resource == "pods" || resource == "nodes") {
      next["status"] = it->second.contains("status") ? it->second["status"] : json::object();
    }
    // NodeRestriction on a node's own Node: its taints are the control plane's, and of the kubernetes.io and
    // k8s.io labels it may change only the kubelet's own.
    if (resource == "nodes" && !node.empty() && sub.empty()) {
      const json no = json::object();
      auto part = [&](const json& o, const char* a, const char* b) {
        const json& x = o.contains(a) && o[a].is_object() ? o[a] : no;
        return x.contains(b) ? x[b] : json(nullptr);
      };
      json old_taints = part(it->second, "spec", "taints"), new_taints = part(next, "spec", "taints");
      if (old_taints.is_null()) old_taints = json::array();
      if (new_taints.is_null()) new_taints = json::array();
      if (old_taints != new_taints) {
        forbidden_.push_back(req.method + " " + req.path + ": taints");
        return StatusError(403, "Forbidden", "nodes \"" + name + "\" is forbidden: node \"" + node + "\" is not allowed to modify taints");
      }
      json old_labels = part(it->second, "metadata", "labels"), new_labels = part(next, "metadata", "labels");
      if (!old_labels.is_object()) old_labels = json::object();
      if (!new_labels.is_object()) new_labels = json::object();
      std::set<std::string> modified;
      for (auto l = new_labels.begin(); l != new_labels.end(); ++l)
        if (!old_labels.contains(l.key()) || old_labels[l.key()] != l.value()) modified.insert(l.key());
      for (auto l = old_labels.begin(); l != old_labels.end(); ++l)
        if (!new_labels.contains(l.key())) modified.insert(l.key());
      std::string refused;
      for (const auto& k : modified)
        if (NodeRestrictionForbidsLabel(k)) refused += (refused.empty() ? "" : ", ") + k;
      if (!refused.empty()) {
        forbidden_.push_back(req.method + " " + req.path + ": labels " + refused);
        return StatusError(403, "Forbidden", "nodes \"" + name + "\" is forbidden: is not allowed to modify labels: " + refused);
      }
    }
    next["metadata"]["uid"] = it->second["metadata"]["uid"];
    next["metadata"]["creationTimestamp"] = it->second["metadata"]["creationTimestamp"];
    if (resource == "nodes") TaintNodeByConditions(next);
    json o = Stamp(resource, next, false);
    it->second = o;
    Emit("MODIFIED", resource, o);
    return Ok(o);
  }
  if (req.method == "DELETE") {
    json opts = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
    json& o = it->second;
    int64_t grace = opts.is_object() && opts.contains("gracePeriodSeconds") ? opts["gracePeriodSeconds"].get<int64_t>() : -1;
    bool bound = resource == "pods" && !o["spec"].value("nodeName", "").empty();
    if (bound && grace != 0) {
      // Graceful: mark it; the kubelet stops it and deletes with grace 0.
      if (grace < 0) grace = o["spec"].value("terminationGracePeriodSeconds", 30);
      if (!o["metadata"].contains("deletionTimestamp")) {
        o["metadata"]["deletionTimestamp"] = FormatRFC3339(std::chrono::system_clock::now() + std::chrono::seconds(grace));
        o["metadata"]["deletionGracePeriodSeconds"] = grace;
        o = Stamp(resource, o, false);
        Emit("MODIFIED", resource, o);
      }
      return Ok(o);
    }
    json gone = o;
    objs.erase(it);
    gone["metadata"]["resourceVersion"] = std::to_string(++rv_);
    Emit("DELETED", resource, gone);
    return Ok(gone);
  }
  return StatusError(405, "MethodNotAllowed", "method " + req.method + " not allowed");
}

Response FakeApiServer::Watch(const std::string& resource, const std::string& ns, const std::vector<FieldTerm>& fs,
                             const Request& req) {
  std::string rvq = req.query.count("resourceVersion") ? req.query.at("resourceVersion") : "";
  int timeout = req.query.count("timeoutSeconds") ? std::atoi(req.query.at("timeoutSeconds").c_str()) : 1800;
  bool bookmarks = req.query.count("allowWatchBookmarks") && req.query.at("allowWatchBookmarks") == "true";
  Response r;
  r.content_type = "application/json";
  r.stream = [this, resource, ns, fs, rvq, timeout, bookmarks](const server::ChunkWriter& write) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    auto [kind, version] = Kinds().at(resource);
    std::unique_lock<std::mutex> l(mu_);
    int64_t from = rvq.empty() ? rv_ : std::atoll(rvq.c_str());
    if (!rvq.empty() && rvq != "0" && from < compacted_) {
      json st = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Failure"},
                 {"message", "too old resource version: " + rvq + " (" + std::to_string(compacted_) + ")"},
                 {"reason", "Expired"}, {"code", 410}};
      l.unlock();
      write(json({{"type", "ERROR"}, {"object", st}}).dump() + "\n");
      return;
    }
    std::vector<std::string> out;
    if (rvq.empty()) {
      for (const auto& [_, o] : store_[resource])
        if ((ns.empty() || o["metadata"].value("namespace", "") == ns) && FieldsMatch(o, fs))
          out.push_back(json({{"type", "ADDED"}, {"object", o}}).dump() + "\n");
    }
    auto last_bookmark = std::chrono::steady_clock::now();
    while (!stopping_) {
      for (const auto& e : events_) {
        if (e.rv <= from || e.resource != resource) continue;
        const json& o = e.object;
        if (!ns.empty() && o["metadata"].value("namespace", "") != ns) continue;
        if (!FieldsMatch(o, fs)) continue;
        out.push_back(json({{"type", e.type}, {"object", o}}).dump() + "\n");
      }
      from = rv_;
      if (bookmarks && std::chrono::steady_clock::now() - last_bookmark > std::chrono::seconds(1)) {
        out.push_back(json({{"type", "BOOKMARK"},
                            {"object", {{"kind", kind}, {"apiVersion", version},
                                        {"metadata", {{"resourceVersion", std::to_string(rv_)}}}}}}).dump() + "\n");
        last_bookmark = std::chrono::steady_clock::now();
      }
      l.unlock();
      for (const auto& line : out)
        if (!write(line)) return;
      out.clear();
      l.lock();
      if (std::chrono::steady_clock::now() >= deadline) return;
      cv_.wait_for(l, std::chrono::milliseconds(500), [&] { return stopping_.load() || rv_ > from; });
    }
  };
  return r;
}

namespace {

bool HasPrefix(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// The usages a node certificate may ask, as upstream's ValidateKubeletClientCSR / ValidateKubeletServingCSR: exactly
// these, with "key encipherment" too for RSA keys.
std::string CheckUsages(const std::vector<std::string>& usages, const std::string& auth, bool rsa) {
  std::set<std::string> got(usages.begin(), usages.end());
  std::set<std::string> want = {"digital signature", auth};
  std::set<std::string> want_rsa = {"digital signature", "key encipherment", auth};
  if (got == want || (rsa && got == want_rsa)) return "";
  return "usages did not match [" + auth + " digital signature" + (rsa ? " key encipherment" : "") + "]";
}

// Why the kubelet signers refuse this CSR, "" when they accept it.
std::string ValidateNodeCSR(const std::string& signer, const CSRInfo& info, const std::vector<std::string>& usages) {
  if (info.organizations != std::vector<std::string>{"system:nodes"}) return "subject organization is not system:nodes";
  if (!HasPrefix(info.common_name, "system:node:")) return "subject common name does not begin with system:node:";
  if (signer == "kubernetes.io/kube-apiserver-client-kubelet") {
    if (!info.dns_names.empty() || !info.ip_addresses.empty() || info.other_sans) return "subjectAltNames are not allowed";
    return CheckUsages(usages, "client auth", info.rsa_key);
  }
  if (info.other_sans) return "email and URI subjectAltNames are not allowed";
  if (info.dns_names.empty() && info.ip_addresses.empty()) return "DNS or IP subjectAltName is required";
  return CheckUsages(usages, "server auth", info.rsa_key);
}

std::vector<std::string> StringList(const json& v) {
  std::vector<std::string> out;
  if (v.is_array())
    for (const auto& e : v)
      if (e.is_string()) out.push_back(e.get<std::string>());
  return out;
}

}  // namespace

std::string FakeApiServer::signing_ca_file() const { return signer_ ? signer_->cert_file() : ""; }

Response FakeApiServer::CreateCSR(const std::string& user, const std::vector<std::string>& groups, const Request& req) {
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object() || !body.contains("spec") || !body["spec"].is_object())
    return StatusError(400, "BadRequest", "the body is not a CertificateSigningRequest");
  std::string name = body.contains("metadata") && body["metadata"].is_object() ? body["metadata"].value("name", "") : "";
  const std::string what = "CertificateSigningRequest.certificates.k8s.io \"" + name + "\" is invalid: ";
  if (name.empty()) return StatusError(422, "Invalid", what + "metadata.name: Required value: name or generateName is required");
  json& spec = body["spec"];
  if (spec.contains("request") && !spec["request"].is_string())
    return StatusError(400, "BadRequest", "spec.request: expected a base64 string");
  auto pem = kubelet::Base64Decode(spec.value("request", ""));
  if (!pem.ok() || pem->empty()) return StatusError(422, "Invalid", what + "spec.request: Required value");
  auto info = ParseCSR(*pem);
  if (!info.ok()) return StatusError(422, "Invalid", what + "spec.request: Invalid value: " + std::string(info.status().message()));
  if (!spec["signerName"].is_string() || spec["signerName"].get<std::string>().empty())
    return StatusError(422, "Invalid", what + "spec.signerName: Required value");
  {
    // The API's signer name check: <domain>/<path>, both parts present.
    const std::string signer = spec["signerName"].get<std::string>();
    size_t slash = signer.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == signer.size())
      return StatusError(422, "Invalid", what + "spec.signerName: Invalid value: \"" + signer +
                                             "\": must be a fully qualified domain and path of the form 'example.com/signer-name'");
  }
  if (StringList(spec.value("usages", json::array())).empty()) return StatusError(422, "Invalid", what + "spec.usages: Required value");
  if (spec.contains("expirationSeconds") && (!spec["expirationSeconds"].is_number_integer() || spec["expirationSeconds"].get<int64_t>() < 600))
    return StatusError(422, "Invalid", what + "spec.expirationSeconds: Invalid value: may not specify a duration less than 600 seconds (10 minutes)");
  // Who asked is the server's to say, not the client's.
  spec["username"] = user;
  json g = json::array();
  for (const auto& x : groups) g.push_back(x);
  g.push_back("system:authenticated");
  spec["groups"] = g;
  body["status"] = json::object();
  std::lock_guard<std::mutex> l(mu_);
  auto& objs = store_["certificatesigningrequests"];
  if (objs.count(Key("", name))) return StatusError(409, "AlreadyExists", "certificatesigningrequests.certificates.k8s.io \"" + name + "\" already exists");
  json o = Stamp("certificatesigningrequests", body, true);
  objs[Key("", name)] = o;
  Emit("ADDED", "certificatesigningrequests", o);
  // kube-controller-manager's csrapproving: node client certificates for a bootstrapper (nodeclient) or for the
  // node renewing its own (selfnodeclient).
  const std::string signer = spec.value("signerName", "");
  bool bootstrapper = std::find(groups.begin(), groups.end(), "system:bootstrappers") != groups.end();
  if (o_.csr_signing && o_.auto_approve_node_client_csrs && signer == "kubernetes.io/kube-apiserver-client-kubelet" &&
      ValidateNodeCSR(signer, *info, StringList(spec["usages"])).empty() && (bootstrapper || info->common_name == user)) {
    json next = o;
    DecideCSR(next, true, "AutoApproved", "Auto approving kubelet client certificate after SubjectAccessReview.");
  }
  return Ok(o, 201);
}

void FakeApiServer::DecideCSR(json& csr, bool approve, const std::string& reason, const std::string& message) {
  std::string now = FormatRFC3339(std::chrono::system_clock::now());
  json& status = csr["status"];
  if (!status.is_object()) status = json::object();
  if (!status.contains("conditions") || !status["conditions"].is_array()) status["conditions"] = json::array();
  status["conditions"].push_back({{"type", approve ? "Approved" : "Denied"}, {"status", "True"}, {"reason", reason},
                                  {"message", message}, {"lastUpdateTime", now}, {"lastTransitionTime", now}});
  const json& spec = csr["spec"];
  const std::string signer = spec.value("signerName", "");
  if (approve && signer_ && (signer == "kubernetes.io/kube-apiserver-client-kubelet" || signer == "kubernetes.io/kubelet-serving")) {
    auto pem = kubelet::Base64Decode(spec.value("request", ""));
    auto info = ParseCSR(pem.ok() ? *pem : "");
    std::vector<std::string> usages = StringList(spec.value("usages", json::array()));
    std::string why = info.ok() ? ValidateNodeCSR(signer, *info, usages) : std::string(info.status().message());
    if (!why.empty()) {
      status["conditions"].push_back({{"type", "Failed"}, {"status", "True"}, {"reason", "SignerValidationFailure"},
                                      {"message", why}, {"lastUpdateTime", now}, {"lastTransitionTime", now}});
    } else {
      auto lifetime = o_.signed_cert_lifetime;
      if (spec.contains("expirationSeconds") && spec["expirationSeconds"].is_number_integer())
        lifetime = std::min(lifetime, std::chrono::seconds(spec["expirationSeconds"].get<int64_t>()));
      auto cert = signer_->Sign(*pem, usages, lifetime);
      if (cert.ok()) status["certificate"] = kubelet::Base64Encode(*cert);
    }
  }
  json o = Stamp("certificatesigningrequests", csr, false);
  store_["certificatesigningrequests"][Key("", o["metadata"].value("name", ""))] = o;
  Emit("MODIFIED", "certificatesigningrequests", o);
  csr = o;
}

bool FakeApiServer::ApproveCSR(const std::string& name, bool approve) {
  std::lock_guard<std::mutex> l(mu_);
  auto& objs = store_["certificatesigningrequests"];
  auto it = objs.find(Key("", name));
  if (it == objs.end()) return false;
  json csr = it->second;
  DecideCSR(csr, approve, approve ? "KubectlApprove" : "KubectlDeny",
            approve ? "This CSR was approved by kubectl certificate approve." : "This CSR was denied by kubectl certificate deny.");
  return true;
}

}  // namespace kubelet::testing

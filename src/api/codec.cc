#include "kubelet/api/codec.h"
#include "kubelet/util/json.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "kubelet/api/quantity.h"
#include "decode.h"

namespace kubelet::api {
namespace {

using json = nlohmann::json;

// --- YAML to JSON -----------------------------------------------------------

bool IsNullScalar(const std::string& s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

// YAML 1.1 booleans, except the single letters y/Y/n/N: as names (a user "n",
// an image "y") they are far likelier than as booleans, and typed decoders
// upstream (kubeconfig) read them as strings.
std::optional<bool> BoolScalar(const std::string& s) {
  static const std::set<std::string> kTrue = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> kFalse = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (kTrue.count(s)) return true;
  if (kFalse.count(s)) return false;
  return std::nullopt;
}

// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as go-yaml requires.
bool ValidUTF8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || end - p < len) return false;
    uint32_t cp = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    p += len;
  }
  return true;
}

struct YamlError {
  std::string message;
};

std::string Checked(const std::string& s, const YAML::Mark& mark) {
  if (!ValidUTF8(s))
    throw YamlError{"invalid UTF-8 at line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1)};
  return s;
}

// A number that does not fit its type stays a string, as go-yaml resolves it (the typed decoder then names the field).
json ScalarToJson(const std::string& tag, const std::string& raw, const YAML::Mark& mark) {
  const std::string& s = Checked(raw, mark);
  // A tag of "!" marks a quoted scalar, "!!str" an explicit string: always a string.
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return s;
  if (IsNullScalar(s)) return nullptr;
  if (auto b = BoolScalar(s)) return *b;
  static const std::regex kOctal("^[-+]?0[0-7]+$");
  static const std::regex kHex("^[-+]?0x[0-9a-fA-F]+$");
  static const std::regex kInt("^[-+]?(0|[1-9][0-9_]*)$");
  // As go-yaml resolves floats: digits before the exponent ("e1" stays a string).
  static const std::regex kFloat("^[-+]?(\\.[0-9]+|[0-9][0-9_]*(\\.[0-9_]*)?)([eE][-+]?[0-9]+)?$");
  auto integer = [&](const std::string& digits, int base) -> json {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(digits.c_str(), &end, base);
    if (errno == 0 && end && *end == '\0') return static_cast<int64_t>(v);
    if (base == 10 && digits[0] != '-') {
      errno = 0;
      unsigned long long u = std::strtoull(digits.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') return static_cast<uint64_t>(u);
    }
    return s;
  };
  if (std::regex_match(s, kOctal)) return integer(s, 8);
  if (std::regex_match(s, kHex)) {
    // strtoll reads the 0x prefix itself.
    return integer(s, 16);
  }
  if (std::regex_match(s, kInt)) {
    std::string digits;
    for (char c : s)
      if (c != '_') digits += c;
    json v = integer(digits, 10);
    if (!v.is_string()) return v;
  }
  if (s.find_first_of("0123456789") != std::string::npos && std::regex_match(s, kFloat)) {
    std::string digits;
    for (char c : s)
      if (c != '_') digits += c;
    errno = 0;
    char* end = nullptr;
    double d = std::strtod(digits.c_str(), &end);
    if (errno == 0 && end && *end == '\0' && std::isfinite(d)) return d;
  }
  return s;
}

// YAML aliases share nodes: "billion laughs" documents expand exponentially. Like go-yaml's alias limit, a
// document that expands past this many nodes (or nests deeper than this) is refused. The document count is bounded
// too: yaml-cpp 0.7 reports endless empty documents for some inputs (a lone ","), which made LoadAll never return.
constexpr size_t kMaxYamlNodes = 1 << 18;
constexpr size_t kMaxYamlDepth = 512;
constexpr int kMaxYamlDocuments = 64;

// Builds JSON straight from yaml-cpp's parse events (no yaml-cpp node tree), spending a node budget as it goes.
class JsonBuilder : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {
    stack_.clear();
    anchors_.clear();
    root_ = json();
    has_root_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (ExpectingKey()) throw YamlError{"a mapping key at line " + std::to_string(mark.line + 1) + " is not a string"};
    Add(nullptr, anchor, 1);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw YamlError{"unknown anchor at line " + std::to_string(mark.line + 1)};
    if (ExpectingKey()) {
      if (!it->second.is_string()) throw YamlError{"a mapping key at line " + std::to_string(mark.line + 1) + " is not a string"};
      stack_.back().key = it->second.get<std::string>();
      return;
    }
    json copy = it->second;
    Add(std::move(copy), 0, Count(it->second));
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, const std::string& value) override {
    if (ExpectingKey()) {
      Spend(1);
      stack_.back().key = Checked(value, mark);
      if (anchor) anchors_[anchor] = value;
      return;
    }
    Add(ScalarToJson(tag, value, mark), anchor, 1);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Open(mark, json::array(), anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Open(mark, json::object(), anchor);
  }
  void OnMapEnd() override { Close(); }

  bool has_root() const { return has_root_ && !root_.is_null(); }
  json TakeRoot() { return std::move(root_); }

 private:
  struct Frame {
    json value;
    YAML::anchor_t anchor = 0;
    std::optional<std::string> key;  // maps: the key waiting for its value
  };
  bool ExpectingKey() const { return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().key; }
  void Spend(size_t n) {
    if (n > budget_) throw YamlError{"document expands to more than " + std::to_string(kMaxYamlNodes) + " nodes (excessive aliasing)"};
    budget_ -= n;
  }
  // Nodes in a value, counted only as far as the budget could pay for them.
  size_t Count(const json& j) const {
    size_t n = 1;
    if (j.is_structured())
      for (const auto& c : j) {
        n += Count(c);
        if (n > budget_) break;
      }
    return n;
  }
  void Open(const YAML::Mark& mark, json value, YAML::anchor_t anchor) {
    if (ExpectingKey()) throw YamlError{"a mapping key at line " + std::to_string(mark.line + 1) + " is not a string"};
    if (stack_.size() >= kMaxYamlDepth) throw YamlError{"document nests deeper than " + std::to_string(kMaxYamlDepth) + " levels"};
    Spend(1);
    stack_.push_back(Frame{std::move(value), anchor, std::nullopt});
  }
  void Close() {
    if (stack_.empty()) throw YamlError{"unbalanced collection end"};
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    Add(std::move(f.value), f.anchor, 0);
  }
  void Add(json v, YAML::anchor_t anchor, size_t cost) {
    Spend(cost);
    if (anchor) anchors_[anchor] = v;
    if (stack_.empty()) {
      root_ = std::move(v);
      has_root_ = true;
      return;
    }
    Frame& f = stack_.back();
    if (f.value.is_array()) {
      f.value.push_back(std::move(v));
    } else {
      f.value[*f.key] = std::move(v);
      f.key.reset();
    }
  }

  size_t budget_ = kMaxYamlNodes;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, json> anchors_;
  json root_;
  bool has_root_ = false;
};

}  // namespace

using namespace decode;  // NOLINT: the field readers

namespace {
IntOrString DecodeIntOrString(const json& obj, const char* key, const std::string& base) {
  IntOrString out;
  const json* v = Field(obj, key);
  if (!v) return out;
  if (v->is_string()) {
    out.is_int = false;
    out.str_value = v->get<std::string>();
  } else if (v->is_number()) {
    Int(obj, key, base, &out.int_value);
  } else {
    Fail(Join(base, key), "integer or string", *v);
  }
  return out;
}

ProbeHandler DecodeHandler(const json& h, const std::string& p) {
  ProbeHandler out;
  if (Field(h, "exec")) {
    std::vector<std::string> cmd;
    StrList(Obj(h, "exec", p), "command", Join(p, "exec"), &cmd);
    out.exec_command = cmd;
  }
  if (Field(h, "httpGet")) {
    const json& g = Obj(h, "httpGet", p);
    std::string gp = Join(p, "httpGet");
    ProbeHandler::HTTPGet get;
    Str(g, "path", gp, &get.path);
    get.port = DecodeIntOrString(g, "port", gp);
    Str(g, "host", gp, &get.host);
    Str(g, "scheme", gp, &get.scheme);
    Each(g, "httpHeaders", gp, [&](const json& e, const std::string& ep) {
      HTTPHeader hdr;
      Str(e, "name", ep, &hdr.name);
      Str(e, "value", ep, &hdr.value);
      get.headers.push_back(std::move(hdr));
    });
    out.http_get = get;
  }
  if (Field(h, "tcpSocket")) {
    const json& t = Obj(h, "tcpSocket", p);
    ProbeHandler::TCPSocket tcp;
    tcp.port = DecodeIntOrString(t, "port", Join(p, "tcpSocket"));
    Str(t, "host", Join(p, "tcpSocket"), &tcp.host);
    out.tcp_socket = tcp;
  }
  if (Field(h, "grpc")) {
    const json& g = Obj(h, "grpc", p);
    ProbeHandler::GRPC grpc;
    Int(g, "port", Join(p, "grpc"), &grpc.port);
    if (Field(g, "service")) {
      std::string svc;
      Str(g, "service", Join(p, "grpc"), &svc);
      grpc.service = svc;
    }
    out.grpc = grpc;
  }
  if (Field(h, "sleep")) {
    int64_t secs = 0;
    Int(Obj(h, "sleep", p), "seconds", Join(p, "sleep"), &secs);
    out.sleep_seconds = secs;
  }
  return out;
}

std::optional<Probe> DecodeProbe(const json& c, const char* key, const std::string& base) {
  if (!Field(c, key)) return std::nullopt;
  const json& pr = Obj(c, key, base);
  std::string p = Join(base, key);
  Probe out;
  out.handler = DecodeHandler(pr, p);
  Int(pr, "initialDelaySeconds", p, &out.initial_delay_seconds);
  Int(pr, "timeoutSeconds", p, &out.timeout_seconds);
  Int(pr, "periodSeconds", p, &out.period_seconds);
  Int(pr, "successThreshold", p, &out.success_threshold);
  Int(pr, "failureThreshold", p, &out.failure_threshold);
  if (Field(pr, "terminationGracePeriodSeconds")) {
    int64_t g = 0;
    Int(pr, "terminationGracePeriodSeconds", p, &g);
    out.termination_grace_period_seconds = g;
  }
  return out;
}

std::optional<SecurityProfile> DecodeProfile(const json& sc, const char* key, const std::string& base) {
  if (!Field(sc, key)) return std::nullopt;
  const json& p = Obj(sc, key, base);
  std::string path = Join(base, key);
  SecurityProfile out;
  Str(p, "type", path, &out.type);
  Str(p, "localhostProfile", path, &out.localhost_profile);
  return out;
}

std::optional<SELinuxOptions> DecodeSELinux(const json& sc, const std::string& base) {
  if (!Field(sc, "seLinuxOptions")) return std::nullopt;
  const json& o = Obj(sc, "seLinuxOptions", base);
  std::string path = Join(base, "seLinuxOptions");
  SELinuxOptions out;
  Str(o, "user", path, &out.user);
  Str(o, "role", path, &out.role);
  Str(o, "type", path, &out.type);
  Str(o, "level", path, &out.level);
  return out;
}

std::optional<SecurityContext> DecodeSecurityContext(const json& c, const std::string& base) {
  if (!Field(c, "securityContext")) return std::nullopt;
  const json& sc = Obj(c, "securityContext", base);
  std::string p = Join(base, "securityContext");
  SecurityContext out;
  out.run_as_user = OptInt<int64_t>(sc, "runAsUser", p);
  out.run_as_group = OptInt<int64_t>(sc, "runAsGroup", p);
  out.run_as_non_root = OptBool(sc, "runAsNonRoot", p);
  out.privileged = OptBool(sc, "privileged", p);
  out.read_only_root_filesystem = OptBool(sc, "readOnlyRootFilesystem", p);
  out.allow_privilege_escalation = OptBool(sc, "allowPrivilegeEscalation", p);
  if (Field(sc, "capabilities")) {
    const json& caps = Obj(sc, "capabilities", p);
    Capabilities cp;
    StrList(caps, "add", Join(p, "capabilities"), &cp.add);
    StrList(caps, "drop", Join(p, "capabilities"), &cp.drop);
    out.capabilities = cp;
  }
  out.seccomp_profile = DecodeProfile(sc, "seccompProfile", p);
  out.app_armor_profile = DecodeProfile(sc, "appArmorProfile", p);
  out.se_linux_options = DecodeSELinux(sc, p);
  Str(sc, "procMount", p, &out.proc_mount);
  return out;
}

PodSecurityContext DecodePodSecurityContext(const json& spec) {
  PodSecurityContext out;
  const json& sc = Obj(spec, "securityContext", "spec");
  const std::string p = "spec.securityContext";
  out.run_as_user = OptInt<int64_t>(sc, "runAsUser", p);
  out.run_as_group = OptInt<int64_t>(sc, "runAsGroup", p);
  out.run_as_non_root = OptBool(sc, "runAsNonRoot", p);
  out.fs_group = OptInt<int64_t>(sc, "fsGroup", p);
  if (const json* g = Field(sc, "supplementalGroups")) {
    if (!g->is_array()) Fail(Join(p, "supplementalGroups"), "array of integers", *g);
    for (size_t i = 0; i < g->size(); ++i) {
      int64_t v = 0;
      IntValue(&(*g)[i], Index(Join(p, "supplementalGroups"), i), &v);
      out.supplemental_groups.push_back(v);
    }
  }
  Str(sc, "fsGroupChangePolicy", p, &out.fs_group_change_policy);
  out.seccomp_profile = DecodeProfile(sc, "seccompProfile", p);
  out.app_armor_profile = DecodeProfile(sc, "appArmorProfile", p);
  out.se_linux_options = DecodeSELinux(sc, p);
  Each(sc, "sysctls", p, [&](const json& e, const std::string& ep) {
    Sysctl s;
    Str(e, "name", ep, &s.name);
    Str(e, "value", ep, &s.value);
    out.sysctls.push_back(std::move(s));
  });
  return out;
}

std::vector<NodeSelectorRequirement> DecodeRequirements(const json& term, const char* key, const std::string& base) {
  std::vector<NodeSelectorRequirement> out;
  Each(term, key, base, [&](const json& e, const std::string& ep) {
    NodeSelectorRequirement r;
    Str(e, "key", ep, &r.key);
    Str(e, "operator", ep, &r.op);
    StrList(e, "values", ep, &r.values);
    out.push_back(std::move(r));
  });
  return out;
}

void DecodeScheduling(const json& spec, PodSpec* out) {
  StrMap(spec, "nodeSelector", "spec", &out->node_selector);
  const json& affinity = Obj(spec, "affinity", "spec");
  const json& na = Obj(affinity, "nodeAffinity", "spec.affinity");
  const std::string np = "spec.affinity.nodeAffinity";
  if (Field(na, "requiredDuringSchedulingIgnoredDuringExecution")) {
    const json& req = Obj(na, "requiredDuringSchedulingIgnoredDuringExecution", np);
    std::string rp = Join(np, "requiredDuringSchedulingIgnoredDuringExecution");
    std::vector<NodeSelectorTerm> terms;
    Each(req, "nodeSelectorTerms", rp, [&](const json& t, const std::string& tp) {
      NodeSelectorTerm term;
      term.match_expressions = DecodeRequirements(t, "matchExpressions", tp);
      term.match_fields = DecodeRequirements(t, "matchFields", tp);
      terms.push_back(std::move(term));
    });
    out->required_node_affinity = std::move(terms);
  }
  // The rest of affinity is the scheduler's; its shape is still checked where the kubelet could meet it.
  Each(na, "preferredDuringSchedulingIgnoredDuringExecution", np, [&](const json& e, const std::string& ep) {
    int32_t weight = 0;
    Int(e, "weight", ep, &weight);
    const json& pref = Obj(e, "preference", ep);
    DecodeRequirements(pref, "matchExpressions", Join(ep, "preference"));
    DecodeRequirements(pref, "matchFields", Join(ep, "preference"));
  });
  Each(spec, "tolerations", "spec", [&](const json& e, const std::string& ep) {
    Toleration t;
    Str(e, "key", ep, &t.key);
    Str(e, "operator", ep, &t.op);
    Str(e, "value", ep, &t.value);
    Str(e, "effect", ep, &t.effect);
    t.toleration_seconds = OptInt<int64_t>(e, "tolerationSeconds", ep);
    out->tolerations.push_back(std::move(t));
  });
  Each(spec, "hostAliases", "spec", [&](const json& e, const std::string& ep) {
    HostAlias a;
    Str(e, "ip", ep, &a.ip);
    StrList(e, "hostnames", ep, &a.hostnames);
    out->host_aliases.push_back(std::move(a));
  });
  if (Field(spec, "os")) Str(Obj(spec, "os", "spec"), "name", "spec.os", &out->os_name);
  Str(spec, "priorityClassName", "spec", &out->priority_class_name);
}

Container DecodeContainer(const json& c, const std::string& p) {
  Container out;
  out.raw = c;
  Str(c, "name", p, &out.name);
  Str(c, "image", p, &out.image);
  StrList(c, "command", p, &out.command);
  StrList(c, "args", p, &out.args);
  Str(c, "workingDir", p, &out.working_dir);
  Each(c, "env", p, [&](const json& e, const std::string& ep) {
    EnvVar v;
    Str(e, "name", ep, &v.name);
    Str(e, "value", ep, &v.value);
    if (Field(e, "valueFrom")) v.value_from = Obj(e, "valueFrom", ep);
    out.env.push_back(std::move(v));
  });
  if (const json* ef = Field(c, "envFrom")) {
    if (!ef->is_array()) Fail(Join(p, "envFrom"), "array", *ef);
    out.env_from = *ef;
  }
  Each(c, "ports", p, [&](const json& e, const std::string& ep) {
    ContainerPort port;
    Str(e, "name", ep, &port.name);
    Int(e, "containerPort", ep, &port.container_port);
    Int(e, "hostPort", ep, &port.host_port);
    Str(e, "protocol", ep, &port.protocol);
    Str(e, "hostIP", ep, &port.host_ip);
    out.ports.push_back(std::move(port));
  });
  Each(c, "volumeMounts", p, [&](const json& e, const std::string& ep) {
    VolumeMount m;
    Str(e, "name", ep, &m.name);
    Str(e, "mountPath", ep, &m.mount_path);
    Str(e, "subPath", ep, &m.sub_path);
    Str(e, "subPathExpr", ep, &m.sub_path_expr);
    Bool(e, "readOnly", ep, &m.read_only);
    Str(e, "mountPropagation", ep, &m.mount_propagation);
    out.volume_mounts.push_back(std::move(m));
  });
  const json& res = Obj(c, "resources", p);
  QuantityMap(res, "requests", Join(p, "resources"), &out.resources.requests);
  QuantityMap(res, "limits", Join(p, "resources"), &out.resources.limits);
  Str(c, "imagePullPolicy", p, &out.image_pull_policy);
  Str(c, "terminationMessagePath", p, &out.termination_message_path);
  Str(c, "terminationMessagePolicy", p, &out.termination_message_policy);
  Bool(c, "stdin", p, &out.stdin);
  Bool(c, "stdinOnce", p, &out.stdin_once);
  Bool(c, "tty", p, &out.tty);
  Str(c, "restartPolicy", p, &out.restart_policy);
  out.liveness_probe = DecodeProbe(c, "livenessProbe", p);
  out.readiness_probe = DecodeProbe(c, "readinessProbe", p);
  out.startup_probe = DecodeProbe(c, "startupProbe", p);
  if (Field(c, "lifecycle")) {
    const json& lc = Obj(c, "lifecycle", p);
    std::string lp = Join(p, "lifecycle");
    Lifecycle l;
    if (Field(lc, "postStart")) l.post_start = DecodeHandler(Obj(lc, "postStart", lp), Join(lp, "postStart"));
    if (Field(lc, "preStop")) l.pre_stop = DecodeHandler(Obj(lc, "preStop", lp), Join(lp, "preStop"));
    out.lifecycle = l;
  }
  out.security_context = DecodeSecurityContext(c, p);
  return out;
}

// --- validation -------------------------------------------------------------------

bool IsDNS1123Label(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
  return s.size() <= 63 && std::regex_match(s, re);
}

bool IsDNS1123Subdomain(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
  return s.size() <= 253 && std::regex_match(s, re);
}

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

class ErrorList {
 public:
  void Required(const std::string& path) { errs_.push_back(path + ": Required value"); }
  void Required(const std::string& path, const std::string& detail) { errs_.push_back(path + ": Required value: " + detail); }
  void Forbidden(const std::string& path, const std::string& detail) { errs_.push_back(path + ": Forbidden: " + detail); }
  void Invalid(const std::string& path, const std::string& value, const std::string& why) {
    errs_.push_back(path + ": Invalid value: " + Quote(value) + ": " + why);
  }
  void Duplicate(const std::string& path, const std::string& value) {
    errs_.push_back(path + ": Duplicate value: " + Quote(value));
  }
  void NotFound(const std::string& path, const std::string& value) {
    errs_.push_back(path + ": Not found: " + Quote(value));
  }
  void Unsupported(const std::string& path, const std::string& value, const std::vector<std::string>& ok) {
    std::string list;
    for (const auto& o : ok) list += (list.empty() ? "" : ", ") + Quote(o);
    errs_.push_back(path + ": Unsupported value: " + Quote(value) + ": supported values: " + list);
  }
  absl::Status ToStatus() const {
    if (errs_.empty()) return absl::OkStatus();
    if (errs_.size() == 1) return absl::InvalidArgumentError(errs_[0]);
    std::string all = "[";
    for (size_t i = 0; i < errs_.size(); ++i) all += (i ? ", " : "") + errs_[i];
    return absl::InvalidArgumentError(all + "]");
  }

 private:
  std::vector<std::string> errs_;
};

const char kDNSLabelMsg[] =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character";
const char kDNSSubdomainMsg[] =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character";

// A probe or hook: exactly one handler, thresholds as upstream validates them.
void ValidateHandler(const ProbeHandler& h, const std::string& p, bool lifecycle, ErrorList* errs) {
  int n = (h.exec_command ? 1 : 0) + (h.http_get ? 1 : 0) + (h.tcp_socket ? 1 : 0) + (h.grpc ? 1 : 0) + (h.sleep_seconds ? 1 : 0);
  if (n == 0) errs->Required(p, "must specify a handler type");
  if (n > 1) errs->Forbidden(p, "may not specify more than 1 handler type");
  if (h.exec_command && h.exec_command->empty()) errs->Required(p + ".exec.command");
  auto port_ok = [](const IntOrString& port) {
    return port.is_int ? port.int_value >= 1 && port.int_value <= 65535 : !port.str_value.empty() && port.str_value.size() <= 15;
  };
  if (h.http_get) {
    if (!port_ok(h.http_get->port)) errs->Invalid(p + ".httpGet.port", h.http_get->port.is_int ? std::to_string(h.http_get->port.int_value) : h.http_get->port.str_value, "must contain a valid port");
    if (h.http_get->scheme != "HTTP" && h.http_get->scheme != "HTTPS")
      errs->Unsupported(p + ".httpGet.scheme", h.http_get->scheme, {"HTTP", "HTTPS"});
  }
  if (h.tcp_socket && !port_ok(h.tcp_socket->port))
    errs->Invalid(p + ".tcpSocket.port", h.tcp_socket->port.is_int ? std::to_string(h.tcp_socket->port.int_value) : h.tcp_socket->port.str_value, "must contain a valid port");
  if (h.grpc && (h.grpc->port < 1 || h.grpc->port > 65535))
    errs->Invalid(p + ".grpc.port", std::to_string(h.grpc->port), "must be between 1 and 65535, inclusive");
  if (h.sleep_seconds && !lifecycle) errs->Forbidden(p + ".sleep", "may only be set in lifecycle hooks");
  if (h.grpc && lifecycle) errs->Forbidden(p + ".grpc", "may not be set in lifecycle hooks");
}

void ValidateProbe(const std::optional<Probe>& probe, const std::string& p, bool success_must_be_one, ErrorList* errs) {
  if (!probe) return;
  ValidateHandler(probe->handler, p, false, errs);
  auto nonneg = [&](int64_t v, const char* f) {
    if (v < 0) errs->Invalid(p + "." + f, std::to_string(v), "must be greater than or equal to 0");
  };
  nonneg(probe->initial_delay_seconds, "initialDelaySeconds");
  nonneg(probe->timeout_seconds, "timeoutSeconds");
  nonneg(probe->period_seconds, "periodSeconds");
  nonneg(probe->success_threshold, "successThreshold");
  nonneg(probe->failure_threshold, "failureThreshold");
  if (success_must_be_one && probe->success_threshold != 1)
    errs->Invalid(p + ".successThreshold", std::to_string(probe->success_threshold), "must be 1");
  if (probe->termination_grace_period_seconds && *probe->termination_grace_period_seconds <= 0)
    errs->Invalid(p + ".terminationGracePeriodSeconds", std::to_string(*probe->termination_grace_period_seconds), "must be greater than 0");
}

void ValidateContainers(const std::vector<Container>& cs, const std::string& field,
                        const std::set<std::string>& volumes, std::set<std::string>* names, ErrorList* errs) {
  bool init = field == "initContainers";
  for (size_t i = 0; i < cs.size(); ++i) {
    const Container& c = cs[i];
    std::string p = "spec." + field + "[" + std::to_string(i) + "]";
    bool sidecar = init && IsRestartableInitContainer(c);
    if (!c.restart_policy.empty()) {
      if (!init) errs->Forbidden(p + ".restartPolicy", "may not be set for non-init containers");
      else if (c.restart_policy != "Always") errs->Unsupported(p + ".restartPolicy", c.restart_policy, {"Always"});
    }
    if (init && !sidecar) {
      // Plain init containers run to completion: no probes, no hooks.
      if (c.liveness_probe) errs->Forbidden(p + ".livenessProbe", "may not be set for init containers without restartPolicy=Always");
      if (c.readiness_probe) errs->Forbidden(p + ".readinessProbe", "may not be set for init containers without restartPolicy=Always");
      if (c.startup_probe) errs->Forbidden(p + ".startupProbe", "may not be set for init containers without restartPolicy=Always");
      if (c.lifecycle) errs->Forbidden(p + ".lifecycle", "may not be set for init containers without restartPolicy=Always");
    }
    ValidateProbe(c.liveness_probe, p + ".livenessProbe", true, errs);
    ValidateProbe(c.readiness_probe, p + ".readinessProbe", false, errs);
    ValidateProbe(c.startup_probe, p + ".startupProbe", true, errs);
    if (c.lifecycle) {
      if (c.lifecycle->post_start) ValidateHandler(*c.lifecycle->post_start, p + ".lifecycle.postStart", true, errs);
      if (c.lifecycle->pre_stop) ValidateHandler(*c.lifecycle->pre_stop, p + ".lifecycle.preStop", true, errs);
    }
    if (c.name.empty()) {
      errs->Required(p + ".name");
    } else if (!IsDNS1123Label(c.name)) {
      errs->Invalid(p + ".name", c.name, kDNSLabelMsg);
    } else if (!names->insert(c.name).second) {
      errs->Duplicate(p + ".name", c.name);
    }
    if (c.image.empty() || c.image.find_first_not_of(" \t") == std::string::npos) errs->Required(p + ".image");
    if (!c.image_pull_policy.empty() && c.image_pull_policy != "Always" && c.image_pull_policy != "IfNotPresent" &&
        c.image_pull_policy != "Never")
      errs->Unsupported(p + ".imagePullPolicy", c.image_pull_policy, {"Always", "IfNotPresent", "Never"});
    if (!c.termination_message_policy.empty() && c.termination_message_policy != "File" &&
        c.termination_message_policy != "FallbackToLogsOnError")
      errs->Unsupported(p + ".terminationMessagePolicy", c.termination_message_policy,
                        {"File", "FallbackToLogsOnError"});
    std::set<std::string> env_seen;
    for (size_t j = 0; j < c.env.size(); ++j)
      if (c.env[j].name.empty()) errs->Required(p + ".env[" + std::to_string(j) + "].name");
    std::set<std::string> port_names;
    for (size_t j = 0; j < c.ports.size(); ++j) {
      const ContainerPort& port = c.ports[j];
      std::string pp = p + ".ports[" + std::to_string(j) + "]";
      if (port.container_port < 1 || port.container_port > 65535)
        errs->Invalid(pp + ".containerPort", std::to_string(port.container_port), "must be between 1 and 65535, inclusive");
      if (port.host_port < 0 || port.host_port > 65535)
        errs->Invalid(pp + ".hostPort", std::to_string(port.host_port), "must be between 1 and 65535, inclusive");
      if (port.protocol != "TCP" && port.protocol != "UDP" && port.protocol != "SCTP")
        errs->Unsupported(pp + ".protocol", port.protocol, {"SCTP", "TCP", "UDP"});
      if (!port.name.empty() && !port_names.insert(port.name).second) errs->Duplicate(pp + ".name", port.name);
    }
    std::set<std::string> mount_paths;
    for (size_t j = 0; j < c.volume_mounts.size(); ++j) {
      const VolumeMount& m = c.volume_mounts[j];
      std::string mp = p + ".volumeMounts[" + std::to_string(j) + "]";
      if (m.name.empty()) {
        errs->Required(mp + ".name");
      } else if (!volumes.count(m.name)) {
        errs->NotFound(mp + ".name", m.name);
      }
      if (m.mount_path.empty()) {
        errs->Required(mp + ".mountPath");
      } else if (!mount_paths.insert(m.mount_path).second) {
        errs->Invalid(mp + ".mountPath", m.mount_path, "must be unique");
      }
      // validateLocalDescendingPath: relative, and no ".." element (a name such as "a..b" is fine).
      auto descending = [&](const std::string& field, const std::string& path) {
        if (path.empty()) return;
        if (path[0] == '/') errs->Invalid(mp + "." + field, path, "must be a relative path");
        std::stringstream parts(path);
        for (std::string part; std::getline(parts, part, '/');)
          if (part == "..") {
            errs->Invalid(mp + "." + field, path, "must not contain '..'");
            break;
          }
      };
      descending("subPath", m.sub_path);
      descending("subPathExpr", m.sub_path_expr);
      if (!m.sub_path.empty() && !m.sub_path_expr.empty())
        errs->Invalid(mp + ".subPathExpr", m.sub_path_expr, "subPathExpr and subPath are mutually exclusive");
      if (!m.mount_propagation.empty()) {
        if (m.mount_propagation != "None" && m.mount_propagation != "HostToContainer" && m.mount_propagation != "Bidirectional")
          errs->Unsupported(mp + ".mountPropagation", m.mount_propagation, {"Bidirectional", "HostToContainer", "None"});
        else if (m.mount_propagation == "Bidirectional" &&
                 !(c.security_context && c.security_context->privileged.value_or(false)))
          errs->Forbidden(mp + ".mountPropagation", "Bidirectional mount propagation is available only to privileged containers");
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------

absl::StatusOr<nlohmann::json> YamlToJson(std::string_view text) {
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    JsonBuilder builder;  // one budget for the whole text
    std::optional<json> doc;
    for (int i = 0; parser.HandleNextDocument(builder); ++i) {
      if (i >= kMaxYamlDocuments) return absl::InvalidArgumentError("invalid YAML: more than " + std::to_string(kMaxYamlDocuments) + " documents");
      if (!builder.has_root()) continue;  // empty documents ("---" alone) are skipped
      if (doc) return absl::InvalidArgumentError("multiple YAML documents; a manifest holds one object");
      doc = builder.TakeRoot();
    }
    if (!doc) return absl::InvalidArgumentError("empty document");
    return *std::move(doc);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(std::string("invalid YAML: ") + e.what());
  } catch (const YamlError& e) {
    return absl::InvalidArgumentError("invalid YAML: " + e.message);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("invalid YAML: ") + e.what());
  }
}

absl::StatusOr<nlohmann::json> ParseDocument(std::string_view text) {
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && (text[first] == '{' || text[first] == '[')) {
    try {
      return json::parse(text);
    } catch (const json::exception& e) {
      // JSON is a subset of YAML: fall through so flow-style YAML still works,
      // but keep the JSON error when YAML fails too.
      auto y = YamlToJson(text);
      if (y.ok()) return y;
      return absl::InvalidArgumentError(std::string("invalid JSON: ") + e.what());
    }
  }
  return YamlToJson(text);
}

void ApplyPodDefaults(json& pod) {
  if (!pod.is_object()) return;
  if (!pod.contains("metadata") || !pod["metadata"].is_object()) pod["metadata"] = json::object();
  if (!pod.contains("spec") || !pod["spec"].is_object()) pod["spec"] = json::object();
  json& spec = pod["spec"];
  if (!spec.contains("restartPolicy")) spec["restartPolicy"] = "Always";
  if (!spec.contains("dnsPolicy")) spec["dnsPolicy"] = "ClusterFirst";
  if (!spec.contains("terminationGracePeriodSeconds")) spec["terminationGracePeriodSeconds"] = 30;
  if (!spec.contains("schedulerName")) spec["schedulerName"] = "default-scheduler";
  if (!spec.contains("securityContext")) spec["securityContext"] = json::object();
  if (!spec.contains("enableServiceLinks")) spec["enableServiceLinks"] = true;
  for (const char* list : {"containers", "initContainers"}) {
    if (!spec.contains(list) || !spec[list].is_array()) continue;
    for (auto& c : spec[list]) {
      if (!c.is_object()) continue;
      if (!c.contains("imagePullPolicy")) {
        std::string image = c.contains("image") && c["image"].is_string() ? c["image"].get<std::string>() : "";
        // Untagged or :latest images are pulled every time, as upstream defaults.
        std::string last = image.substr(image.find_last_of('/') == std::string::npos ? 0 : image.find_last_of('/') + 1);
        bool has_digest = image.find('@') != std::string::npos;
        bool latest = !has_digest && (last.find(':') == std::string::npos || last.substr(last.find(':') + 1) == "latest");
        c["imagePullPolicy"] = latest ? "Always" : "IfNotPresent";
      }
      if (!c.contains("terminationMessagePath")) c["terminationMessagePath"] = "/dev/termination-log";
      if (!c.contains("terminationMessagePolicy")) c["terminationMessagePolicy"] = "File";
      if (c.contains("ports") && c["ports"].is_array())
        for (auto& p : c["ports"])
          if (p.is_object() && !p.contains("protocol")) p["protocol"] = "TCP";
      auto handler_defaults = [](json& h) {
        if (!h.is_object() || !h.contains("httpGet") || !h["httpGet"].is_object()) return;
        json& g = h["httpGet"];
        if (!g.contains("path")) g["path"] = "/";
        if (!g.contains("scheme")) g["scheme"] = "HTTP";
      };
      for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
        if (!c.contains(probe) || !c[probe].is_object()) continue;
        json& pr = c[probe];
        if (!pr.contains("timeoutSeconds")) pr["timeoutSeconds"] = 1;
        if (!pr.contains("periodSeconds")) pr["periodSeconds"] = 10;
        if (!pr.contains("successThreshold")) pr["successThreshold"] = 1;
        if (!pr.contains("failureThreshold")) pr["failureThreshold"] = 3;
        handler_defaults(pr);
      }
      if (c.contains("lifecycle") && c["lifecycle"].is_object())
        for (const char* hook : {"postStart", "preStop"})
          if (c["lifecycle"].contains(hook)) handler_defaults(c["lifecycle"][hook]);
    }
  }
}

namespace {

// A file mode of a volume (defaultMode, items[].mode): 0 to 0777, as the API server validates.
std::optional<int32_t> Mode(const json& obj, const char* key, const std::string& base) {
  auto m = OptInt<int32_t>(obj, key, base);
  if (m && (*m < 0 || *m > 0777))
    throw FieldError{Join(base, key), "must be a number between 0 and 0777 (octal), both inclusive"};
  return m;
}

std::vector<KeyToPath> Items(const json& obj, const std::string& base) {
  std::vector<KeyToPath> out;
  Each(obj, "items", base, [&](const json& it, const std::string& p) {
    KeyToPath k;
    Str(it, "key", p, &k.key);
    Str(it, "path", p, &k.path);
    k.mode = Mode(it, "mode", p);
    out.push_back(std::move(k));
  });
  return out;
}

ConfigMapVolumeSource DecodeConfigMapSource(const json& cm, const std::string& p) {
  ConfigMapVolumeSource src;
  Str(cm, "name", p, &src.name);
  src.items = Items(cm, p);
  src.default_mode = Mode(cm, "defaultMode", p);
  Bool(cm, "optional", p, &src.optional);
  return src;
}

SecretVolumeSource DecodeSecretSource(const json& s, const std::string& p, const char* name_key) {
  SecretVolumeSource src;
  Str(s, name_key, p, &src.secret_name);
  src.items = Items(s, p);
  src.default_mode = Mode(s, "defaultMode", p);
  Bool(s, "optional", p, &src.optional);
  return src;
}

DownwardAPIVolumeSource DecodeDownwardAPISource(const json& d, const std::string& p) {
  DownwardAPIVolumeSource src;
  Each(d, "items", p, [&](const json& it, const std::string& ip) {
    DownwardAPIVolumeFile f;
    Str(it, "path", ip, &f.path);
    if (Field(it, "fieldRef")) Str(Obj(it, "fieldRef", ip), "fieldPath", Join(ip, "fieldRef"), &f.field_path);
    if (Field(it, "resourceFieldRef")) {
      const json& r = Obj(it, "resourceFieldRef", ip);
      std::string rp = Join(ip, "resourceFieldRef");
      Str(r, "containerName", rp, &f.resource_container);
      Str(r, "resource", rp, &f.resource);
      if (const json* d = Field(r, "divisor")) f.divisor = d->is_string() ? d->get<std::string>() : d->dump();
    }
    f.mode = Mode(it, "mode", ip);
    src.items.push_back(std::move(f));
  });
  src.default_mode = Mode(d, "defaultMode", p);
  return src;
}

}  // namespace

absl::StatusOr<Pod> DecodePod(const json& obj) {
  if (!obj.is_object()) return absl::InvalidArgumentError("pod: expected an object, got " + TypeName(obj));
  std::string kind = StringField(obj, "kind");
  if (!kind.empty() && kind != "Pod") return absl::InvalidArgumentError("kind: expected Pod, got " + kind);
  std::string api_version = StringField(obj, "apiVersion");
  if (!api_version.empty() && api_version != "v1")
    return absl::InvalidArgumentError("apiVersion: expected v1, got " + api_version);
  try {
    Pod pod;
    pod.raw = obj;
    const json& meta = Obj(obj, "metadata", "");
    Str(meta, "name", "metadata", &pod.metadata.name);
    Str(meta, "namespace", "metadata", &pod.metadata.namespace_);
    if (pod.metadata.namespace_.empty()) pod.metadata.namespace_ = "default";
    Str(meta, "uid", "metadata", &pod.metadata.uid);
    Str(meta, "resourceVersion", "metadata", &pod.metadata.resource_version);
    StrMap(meta, "labels", "metadata", &pod.metadata.labels);
    StrMap(meta, "annotations", "metadata", &pod.metadata.annotations);
    pod.metadata.creation_timestamp = Time(meta, "creationTimestamp", "metadata");
    pod.metadata.deletion_timestamp = Time(meta, "deletionTimestamp", "metadata");
    if (Field(meta, "deletionGracePeriodSeconds")) {
      int64_t g = 0;
      Int(meta, "deletionGracePeriodSeconds", "metadata", &g);
      pod.metadata.deletion_grace_period_seconds = g;
    }
    const json& spec = Obj(obj, "spec", "");
    Each(spec, "initContainers", "spec",
         [&](const json& c, const std::string& p) { pod.spec.init_containers.push_back(DecodeContainer(c, p)); });
    Each(spec, "containers", "spec",
         [&](const json& c, const std::string& p) { pod.spec.containers.push_back(DecodeContainer(c, p)); });
    Each(spec, "volumes", "spec", [&](const json& v, const std::string& p) {
      Volume vol;
      vol.raw = v;
      Str(v, "name", p, &vol.name);
      if (Field(v, "hostPath")) {
        const json& hp = Obj(v, "hostPath", p);
        HostPathVolumeSource src;
        Str(hp, "path", Join(p, "hostPath"), &src.path);
        Str(hp, "type", Join(p, "hostPath"), &src.type);
        vol.host_path = src;
      }
      if (Field(v, "emptyDir")) {
        const json& ed = Obj(v, "emptyDir", p);
        EmptyDirVolumeSource src;
        Str(ed, "medium", Join(p, "emptyDir"), &src.medium);
        if (const json* sl = Field(ed, "sizeLimit")) src.size_limit = sl->is_string() ? sl->get<std::string>() : sl->dump();
        vol.empty_dir = src;
      }
      if (Field(v, "configMap")) vol.config_map = DecodeConfigMapSource(Obj(v, "configMap", p), Join(p, "configMap"));
      if (Field(v, "secret")) vol.secret = DecodeSecretSource(Obj(v, "secret", p), Join(p, "secret"), "secretName");
      if (Field(v, "downwardAPI"))
        vol.downward_api = DecodeDownwardAPISource(Obj(v, "downwardAPI", p), Join(p, "downwardAPI"));
      if (Field(v, "projected")) {
        const json& pr = Obj(v, "projected", p);
        std::string pp = Join(p, "projected");
        ProjectedVolumeSource src;
        src.default_mode = Mode(pr, "defaultMode", pp);
        Each(pr, "sources", pp, [&](const json& s, const std::string& sp) {
          VolumeProjection vp;
          if (Field(s, "secret")) vp.secret = DecodeSecretSource(Obj(s, "secret", sp), Join(sp, "secret"), "name");
          if (Field(s, "configMap")) vp.config_map = DecodeConfigMapSource(Obj(s, "configMap", sp), Join(sp, "configMap"));
          if (Field(s, "downwardAPI"))
            vp.downward_api = DecodeDownwardAPISource(Obj(s, "downwardAPI", sp), Join(sp, "downwardAPI"));
          if (Field(s, "serviceAccountToken")) {
            const json& t = Obj(s, "serviceAccountToken", sp);
            std::string tp = Join(sp, "serviceAccountToken");
            ServiceAccountTokenProjection tok;
            Str(t, "audience", tp, &tok.audience);
            Int(t, "expirationSeconds", tp, &tok.expiration_seconds);
            Str(t, "path", tp, &tok.path);
            if (tok.expiration_seconds < 600)
              throw FieldError{Join(tp, "expirationSeconds"), "may not specify a duration less than 10 minutes"};
            vp.service_account_token = tok;
          }
          src.sources.push_back(std::move(vp));
        });
        vol.projected = std::move(src);
      }
      if (Field(v, "persistentVolumeClaim")) {
        const json& c = Obj(v, "persistentVolumeClaim", p);
        PersistentVolumeClaimVolumeSource src;
        Str(c, "claimName", Join(p, "persistentVolumeClaim"), &src.claim_name);
        Bool(c, "readOnly", Join(p, "persistentVolumeClaim"), &src.read_only);
        vol.persistent_volume_claim = src;
      }
      pod.spec.volumes.push_back(std::move(vol));
    });
    Str(spec, "restartPolicy", "spec", &pod.spec.restart_policy);
    Int(spec, "terminationGracePeriodSeconds", "spec", &pod.spec.termination_grace_period_seconds);
    Str(spec, "dnsPolicy", "spec", &pod.spec.dns_policy);
    if (Field(spec, "dnsConfig")) {
      const json& dc = Obj(spec, "dnsConfig", "spec");
      PodDNSConfig cfg;
      StrList(dc, "nameservers", "spec.dnsConfig", &cfg.nameservers);
      StrList(dc, "searches", "spec.dnsConfig", &cfg.searches);
      Each(dc, "options", "spec.dnsConfig", [&](const json& o, const std::string& p) {
        std::string name, value;
        Str(o, "name", p, &name);
        std::optional<std::string> v;
        if (Field(o, "value")) {
          Str(o, "value", p, &value);
          v = value;
        }
        cfg.options.emplace_back(name, v);
      });
      pod.spec.dns_config = cfg;
    }
    Str(spec, "nodeName", "spec", &pod.spec.node_name);
    Bool(spec, "hostNetwork", "spec", &pod.spec.host_network);
    Bool(spec, "hostPID", "spec", &pod.spec.host_pid);
    Bool(spec, "hostIPC", "spec", &pod.spec.host_ipc);
    Str(spec, "hostname", "spec", &pod.spec.hostname);
    Str(spec, "subdomain", "spec", &pod.spec.subdomain);
    Str(spec, "runtimeClassName", "spec", &pod.spec.runtime_class_name);
    QuantityMap(spec, "overhead", "spec", &pod.spec.overhead);
    Str(spec, "serviceAccountName", "spec", &pod.spec.service_account_name);
    Bool(spec, "enableServiceLinks", "spec", &pod.spec.enable_service_links);
    if (Field(spec, "priority")) {
      int32_t prio = 0;
      Int(spec, "priority", "spec", &prio);
      pod.spec.priority = prio;
    }
    pod.spec.security_context = DecodePodSecurityContext(spec);
    DecodeScheduling(spec, &pod.spec);
    return pod;
  } catch (const FieldError& e) {
    return absl::InvalidArgumentError(e.path + ": " + e.message);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string("pod: ") + e.what());
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(std::string("pod: ") + e.what());
  }
}

absl::Status ValidatePod(const Pod& pod) {
  ErrorList errs;
  if (pod.metadata.name.empty()) {
    errs.Required("metadata.name");
  } else if (!IsDNS1123Subdomain(pod.metadata.name)) {
    errs.Invalid("metadata.name", pod.metadata.name, kDNSSubdomainMsg);
  }
  if (!IsDNS1123Label(pod.metadata.namespace_)) errs.Invalid("metadata.namespace", pod.metadata.namespace_, kDNSLabelMsg);
  std::set<std::string> volumes;
  for (size_t i = 0; i < pod.spec.volumes.size(); ++i) {
    const Volume& v = pod.spec.volumes[i];
    std::string p = "spec.volumes[" + std::to_string(i) + "]";
    if (v.name.empty()) {
      errs.Required(p + ".name");
    } else if (!IsDNS1123Label(v.name)) {
      errs.Invalid(p + ".name", v.name, kDNSLabelMsg);
    } else if (!volumes.insert(v.name).second) {
      errs.Duplicate(p + ".name", v.name);
    }
    if (v.host_path && v.host_path->path.empty()) errs.Required(p + ".hostPath.path");
    if (v.host_path) {
      static const std::vector<std::string> kTypes = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                                                      "Socket", "CharDevice", "BlockDevice"};
      if (std::find(kTypes.begin(), kTypes.end(), v.host_path->type) == kTypes.end())
        errs.Unsupported(p + ".hostPath.type", v.host_path->type,
                         {"BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"});
    }
    if (v.empty_dir && !v.empty_dir->medium.empty() && v.empty_dir->medium != "Memory" &&
        v.empty_dir->medium != "HugePages" && v.empty_dir->medium.rfind("HugePages-", 0) != 0)
      errs.Unsupported(p + ".emptyDir.medium", v.empty_dir->medium, {"", "Memory", "HugePages", "HugePages-<size>"});
  }
  if (pod.spec.containers.empty()) errs.Required("spec.containers");
  std::set<std::string> names;
  ValidateContainers(pod.spec.init_containers, "initContainers", volumes, &names, &errs);
  ValidateContainers(pod.spec.containers, "containers", volumes, &names, &errs);
  const auto& rp = pod.spec.restart_policy;
  if (rp != "Always" && rp != "OnFailure" && rp != "Never")
    errs.Unsupported("spec.restartPolicy", rp, {"Always", "OnFailure", "Never"});
  const auto& dp = pod.spec.dns_policy;
  if (dp != "ClusterFirst" && dp != "ClusterFirstWithHostNet" && dp != "Default" && dp != "None")
    errs.Unsupported("spec.dnsPolicy", dp, {"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"});
  if (dp == "None" && (!pod.spec.dns_config || pod.spec.dns_config->nameservers.empty()))
    errs.Required("spec.dnsConfig: must provide at least one DNS nameserver when DNSPolicy is set to None");
  if (const auto& policy = pod.spec.security_context.fs_group_change_policy;
      !policy.empty() && policy != "OnRootMismatch" && policy != "Always")
    errs.Unsupported("spec.securityContext.fsGroupChangePolicy", policy, {"OnRootMismatch", "Always"});
  auto validate_profile = [&](const std::optional<SecurityProfile>& prof, const std::string& path) {
    if (!prof) return;
    if (prof->type != "RuntimeDefault" && prof->type != "Unconfined" && prof->type != "Localhost") {
      if (prof->type.empty()) errs.Required(path + ".type");
      else errs.Unsupported(path + ".type", prof->type, {"Localhost", "RuntimeDefault", "Unconfined"});
    }
    if (prof->type == "Localhost" && prof->localhost_profile.empty())
      errs.Required(path + ".localhostProfile", "must be set when seccomp type is Localhost");
    if (prof->type != "Localhost" && !prof->localhost_profile.empty())
      errs.Invalid(path + ".localhostProfile", prof->localhost_profile, "can only be set when seccomp type is Localhost");
  };
  validate_profile(pod.spec.security_context.seccomp_profile, "spec.securityContext.seccompProfile");
  validate_profile(pod.spec.security_context.app_armor_profile, "spec.securityContext.appArmorProfile");
  for (const auto* list : {&pod.spec.init_containers, &pod.spec.containers})
    for (size_t i = 0; i < list->size(); ++i) {
      const auto& sc = (*list)[i].security_context;
      if (!sc) continue;
      std::string p = std::string("spec.") + (list == &pod.spec.containers ? "containers" : "initContainers") + "[" +
                      std::to_string(i) + "].securityContext";
      validate_profile(sc->seccomp_profile, p + ".seccompProfile");
      validate_profile(sc->app_armor_profile, p + ".appArmorProfile");
      if (!sc->proc_mount.empty() && sc->proc_mount != "Default" && sc->proc_mount != "Unmasked")
        errs.Unsupported(p + ".procMount", sc->proc_mount, {"Default", "Unmasked"});
    }
  if (pod.spec.required_node_affinity) {
    static const std::vector<std::string> kOps = {"DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"};
    const auto& terms = *pod.spec.required_node_affinity;
    std::string base = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
    if (terms.empty()) errs.Required(base, "must have at least one node selector term");
    for (size_t i = 0; i < terms.size(); ++i)
      for (const auto* reqs : {&terms[i].match_expressions, &terms[i].match_fields})
        for (size_t j = 0; j < reqs->size(); ++j) {
          const auto& r = (*reqs)[j];
          std::string p = base + "[" + std::to_string(i) + "]." +
                          (reqs == &terms[i].match_expressions ? "matchExpressions" : "matchFields") + "[" + std::to_string(j) + "]";
          if (std::find(kOps.begin(), kOps.end(), r.op) == kOps.end()) errs.Unsupported(p + ".operator", r.op, kOps);
        }
  }
  for (size_t i = 0; i < pod.spec.tolerations.size(); ++i) {
    const auto& t = pod.spec.tolerations[i];
    if (!t.op.empty() && t.op != "Equal" && t.op != "Exists")
      errs.Unsupported("spec.tolerations[" + std::to_string(i) + "].operator", t.op, {"Equal", "Exists"});
  }
  if (pod.spec.termination_grace_period_seconds < 0)
    errs.Invalid("spec.terminationGracePeriodSeconds", std::to_string(pod.spec.termination_grace_period_seconds),
                 "must be greater than or equal to 0");
  if (!pod.spec.hostname.empty() && !IsDNS1123Label(pod.spec.hostname))
    errs.Invalid("spec.hostname", pod.spec.hostname, kDNSLabelMsg);
  if (!pod.spec.subdomain.empty() && !IsDNS1123Label(pod.spec.subdomain))
    errs.Invalid("spec.subdomain", pod.spec.subdomain, kDNSLabelMsg);
  return errs.ToStatus();
}

namespace {
json EncodeState(const ContainerState& s) {
  json j = json::object();
  if (s.waiting) {
    json w = json::object();
    if (!s.waiting->reason.empty()) w["reason"] = s.waiting->reason;
    if (!s.waiting->message.empty()) w["message"] = s.waiting->message;
    j["waiting"] = w;
  } else if (s.running) {
    j["running"] = {{"startedAt", FormatRFC3339(s.running->started_at)}};
  } else if (s.terminated) {
    const auto& t = *s.terminated;
    json tj = {{"exitCode", t.exit_code},
               {"startedAt", FormatRFC3339(t.started_at)},
               {"finishedAt", FormatRFC3339(t.finished_at)}};
    if (t.signal) tj["signal"] = t.signal;
    if (!t.reason.empty()) tj["reason"] = t.reason;
    if (!t.message.empty()) tj["message"] = t.message;
    if (!t.container_id.empty()) tj["containerID"] = t.container_id;
    j["terminated"] = tj;
  }
  return j;
}
}  // namespace

json EncodeContainerStatus(const ContainerStatus& s) {
  json j = {{"name", s.name},
            {"state", EncodeState(s.state)},
            {"lastState", EncodeState(s.last_termination_state)},
            {"ready", s.ready},
            {"restartCount", s.restart_count},
            {"image", s.image},
            {"imageID", s.image_id}};
  if (!s.container_id.empty()) j["containerID"] = s.container_id;
  if (s.started) j["started"] = *s.started;
  return j;
}

json EncodePodStatus(const PodStatus& s) {
  json j = {{"phase", s.phase}};
  json conds = json::array();
  for (const auto& c : s.conditions) {
    json cj = {{"type", c.type},
               {"status", c.status},
               {"lastProbeTime", c.last_probe_time ? json(FormatRFC3339(*c.last_probe_time)) : json(nullptr)},
               {"lastTransitionTime", FormatRFC3339(c.last_transition_time)}};
    if (!c.reason.empty()) cj["reason"] = c.reason;
    if (!c.message.empty()) cj["message"] = c.message;
    conds.push_back(cj);
  }
  j["conditions"] = conds;
  if (!s.message.empty()) j["message"] = s.message;
  if (!s.reason.empty()) j["reason"] = s.reason;
  if (!s.host_ip.empty()) {
    j["hostIP"] = s.host_ip;
    json ips = json::array();
    for (const auto& ip : s.host_ips) ips.push_back({{"ip", ip}});
    j["hostIPs"] = ips;
  }
  if (!s.pod_ip.empty()) {
    j["podIP"] = s.pod_ip;
    json ips = json::array();
    for (const auto& ip : s.pod_ips) ips.push_back({{"ip", ip}});
    j["podIPs"] = ips;
  }
  if (s.start_time) j["startTime"] = FormatRFC3339(*s.start_time);
  if (!s.init_container_statuses.empty()) {
    json arr = json::array();
    for (const auto& c : s.init_container_statuses) arr.push_back(EncodeContainerStatus(c));
    j["initContainerStatuses"] = arr;
  }
  json arr = json::array();
  for (const auto& c : s.container_statuses) arr.push_back(EncodeContainerStatus(c));
  j["containerStatuses"] = arr;
  if (!s.qos_class.empty()) j["qosClass"] = s.qos_class;
  return j;
}

json EncodePod(const Pod& pod) {
  json j = pod.raw.is_object() ? pod.raw : json::object();
  j["apiVersion"] = "v1";
  j["kind"] = "Pod";
  json& meta = j["metadata"];
  if (!meta.is_object()) meta = json::object();
  meta["name"] = pod.metadata.name;
  meta["namespace"] = pod.metadata.namespace_;
  meta["uid"] = pod.metadata.uid;
  if (!pod.metadata.annotations.empty()) meta["annotations"] = pod.metadata.annotations;
  if (!pod.metadata.labels.empty()) meta["labels"] = pod.metadata.labels;
  if (pod.metadata.creation_timestamp) meta["creationTimestamp"] = FormatRFC3339(*pod.metadata.creation_timestamp);
  if (!pod.spec.node_name.empty()) j["spec"]["nodeName"] = pod.spec.node_name;
  j["status"] = EncodePodStatus(pod.status);
  return j;
}

std::string MetaField(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto m = obj.find("metadata");
  return m != obj.end() ? StringField(*m, key) : "";
}

std::string StringField(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string CanonicalJson(const json& j) {
  // nlohmann's object type is a std::map: dump() already sorts keys.
  return DumpJSON(j);
}

bool ContainerState::operator==(const ContainerState& o) const {
  auto tp = [](const std::optional<ContainerStateTerminated>& t) {
    return t ? std::make_tuple(true, t->exit_code, t->signal, t->reason, t->message, t->started_at, t->finished_at,
                               t->container_id)
             : std::make_tuple(false, 0, 0, std::string(), std::string(), TimePoint(), TimePoint(), std::string());
  };
  bool w = waiting.has_value() == o.waiting.has_value() &&
           (!waiting || (waiting->reason == o.waiting->reason && waiting->message == o.waiting->message));
  bool r = running.has_value() == o.running.has_value() && (!running || running->started_at == o.running->started_at);
  return w && r && tp(terminated) == tp(o.terminated);
}

bool ContainerStatus::operator==(const ContainerStatus& o) const {
  return name == o.name && state == o.state && last_termination_state == o.last_termination_state &&
         ready == o.ready && restart_count == o.restart_count && image == o.image && image_id == o.image_id &&
         container_id == o.container_id && started == o.started;
}

bool IsStaticPod(const Pod& pod) {
  auto it = pod.metadata.annotations.find(kConfigSourceAnnotation);
  return it != pod.metadata.annotations.end() && it->second != kSourceAPI;
}

std::string QOSClass(const Pod& pod) {
  bool any = false;
  bool guaranteed = true;
  auto consider = [&](const Container& c) {
    const auto& req = c.resources.requests;
    const auto& lim = c.resources.limits;
    for (const char* r : {"cpu", "memory"}) {
      auto rq = req.find(r);
      auto lm = lim.find(r);
      bool has_req = rq != req.end() && ParseQuantity(rq->second).value_or(Quantity{}).value != 0;
      bool has_lim = lm != lim.end() && ParseQuantity(lm->second).value_or(Quantity{}).value != 0;
      if (has_req || has_lim) any = true;
      if (!has_lim) {
        guaranteed = false;
      } else if (has_req && ParseQuantity(rq->second)->MilliValue() != ParseQuantity(lm->second)->MilliValue()) {
        guaranteed = false;
      }
    }
  };
  for (const auto& c : pod.spec.init_containers) consider(c);
  for (const auto& c : pod.spec.containers) consider(c);
  if (!any) return "BestEffort";
  return guaranteed ? "Guaranteed" : "Burstable";
}

}  // namespace kubelet::api

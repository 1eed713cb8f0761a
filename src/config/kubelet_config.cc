#include "kubelet/config/kubelet_config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <variant>

#include <absl/strings/str_split.h>

#include "kubelet/api/codec.h"
#include "kubelet/api/names.h"
#include "kubelet/api/objects.h"
#include "kubelet/api/quantity.h"

namespace kubelet::config {
namespace {

using json = nlohmann::json;
using KC = KubeletConfiguration;

// A field of the file format: its JSON name and where it lands. Fields with no
// member are accepted (type-checked) and kept in `extra`.
enum class Kind { kString, kInt32, kInt64, kBool, kDuration, kStringList, kStringMap, kBoolMap, kObject, kArray, kAny };
using Member = std::variant<std::monostate, std::string KC::*, int32_t KC::*, int64_t KC::*, bool KC::*, Duration KC::*,
                            std::vector<std::string> KC::*, std::map<std::string, std::string> KC::*,
                            std::map<std::string, bool> KC::*, json KC::*>;
struct FieldSpec {
  const char* name;
  Kind kind;
  Member member;
  const char* flag;  // the command-line flag for it, if any
};

const std::vector<FieldSpec>& Schema() {
  static const std::vector<FieldSpec> kSchema = {
      {"staticPodPath", Kind::kString, &KC::static_pod_path, "pod-manifest-path"},
      {"syncFrequency", Kind::kDuration, &KC::sync_frequency, "sync-frequency"},
      {"fileCheckFrequency", Kind::kDuration, &KC::file_check_frequency, "file-check-frequency"},
      {"httpCheckFrequency", Kind::kDuration, &KC::http_check_frequency, "http-check-frequency"},
      {"staticPodURL", Kind::kString, &KC::static_pod_url, "manifest-url"},
      {"staticPodURLHeader", Kind::kObject, &KC::static_pod_url_header, nullptr},
      {"enableServer", Kind::kBool, &KC::enable_server, "enable-server"},
      {"address", Kind::kString, &KC::address, "address"},
      {"port", Kind::kInt32, &KC::port, "port"},
      {"readOnlyPort", Kind::kInt32, &KC::read_only_port, "read-only-port"},
      {"tlsCertFile", Kind::kString, &KC::tls_cert_file, "tls-cert-file"},
      {"tlsPrivateKeyFile", Kind::kString, &KC::tls_private_key_file, "tls-private-key-file"},
      {"tlsCipherSuites", Kind::kStringList, &KC::tls_cipher_suites, "tls-cipher-suites"},
      {"tlsMinVersion", Kind::kString, &KC::tls_min_version, "tls-min-version"},
      {"rotateCertificates", Kind::kBool, &KC::rotate_certificates, "rotate-certificates"},
      {"serverTLSBootstrap", Kind::kBool, &KC::server_tls_bootstrap, "rotate-server-certificates"},
      {"authentication", Kind::kObject, &KC::authentication, nullptr},
      {"authorization", Kind::kObject, &KC::authorization, nullptr},
      {"healthzPort", Kind::kInt32, &KC::healthz_port, "healthz-port"},
      {"healthzBindAddress", Kind::kString, &KC::healthz_bind_address, "healthz-bind-address"},
      {"enableDebuggingHandlers", Kind::kBool, &KC::enable_debugging_handlers, "enable-debugging-handlers"},
      {"enableProfilingHandler", Kind::kBool, &KC::enable_profiling_handler, nullptr},
      {"enableContentionProfiling", Kind::kBool, &KC::enable_contention_profiling, "contention-profiling"},
      {"enableSystemLogHandler", Kind::kBool, &KC::enable_system_log_handler, nullptr},
      {"enableSystemLogQuery", Kind::kBool, &KC::enable_system_log_query, nullptr},
      {"streamingConnectionIdleTimeout", Kind::kDuration, &KC::streaming_connection_idle_timeout,
       "streaming-connection-idle-timeout"},
      {"containerRuntimeEndpoint", Kind::kString, &KC::container_runtime_endpoint, "container-runtime-endpoint"},
      {"imageServiceEndpoint", Kind::kString, &KC::image_service_endpoint, "image-service-endpoint"},
      {"runtimeRequestTimeout", Kind::kDuration, &KC::runtime_request_timeout, "runtime-request-timeout"},
      {"cgroupDriver", Kind::kString, &KC::cgroup_driver, "cgroup-driver"},
      {"cgroupsPerQOS", Kind::kBool, &KC::cgroups_per_qos, "cgroups-per-qos"},
      {"cgroupRoot", Kind::kString, &KC::cgroup_root, "cgroup-root"},
      {"runtimeCgroups", Kind::kString, &KC::runtime_cgroups, "runtime-cgroups"},
      {"kubeletCgroups", Kind::kString, &KC::kubelet_cgroups, "kubelet-cgroups"},
      {"systemCgroups", Kind::kString, &KC::system_cgroups, "system-cgroups"},
      {"maxPods", Kind::kInt32, &KC::max_pods, "max-pods"},
      {"podsPerCore", Kind::kInt32, &KC::pods_per_core, "pods-per-core"},
      {"podPidsLimit", Kind::kInt64, &KC::pod_pids_limit, "pod-max-pids"},
      {"podCIDR", Kind::kString, &KC::pod_cidr, "pod-cidr"},
      {"clusterDNS", Kind::kStringList, &KC::cluster_dns, "cluster-dns"},
      {"clusterDomain", Kind::kString, &KC::cluster_domain, "cluster-domain"},
      {"resolvConf", Kind::kString, &KC::resolv_conf, "resolv-conf"},
      {"serializeImagePulls", Kind::kBool, &KC::serialize_image_pulls, "serialize-image-pulls"},
      {"maxParallelImagePulls", Kind::kInt32, &KC::max_parallel_image_pulls, nullptr},
      {"registryPullQPS", Kind::kInt32, &KC::registry_pull_qps, "registry-qps"},
      {"registryBurst", Kind::kInt32, &KC::registry_burst, "registry-burst"},
      {"imageMinimumGCAge", Kind::kDuration, &KC::image_minimum_gc_age, "minimum-image-ttl-duration"},
      {"imageMaximumGCAge", Kind::kDuration, &KC::image_maximum_gc_age, "image-maximum-gc-age"},
      {"imageGCHighThresholdPercent", Kind::kInt32, &KC::image_gc_high_threshold_percent, "image-gc-high-threshold"},
      {"imageGCLowThresholdPercent", Kind::kInt32, &KC::image_gc_low_threshold_percent, "image-gc-low-threshold"},
      {"podLogsDir", Kind::kString, &KC::pod_logs_dir, nullptr},
      {"containerLogMaxSize", Kind::kString, &KC::container_log_max_size, "container-log-max-size"},
      {"containerLogMaxFiles", Kind::kInt32, &KC::container_log_max_files, "container-log-max-files"},
      {"containerLogMaxWorkers", Kind::kInt32, &KC::container_log_max_workers, "container-log-max-workers"},
      {"containerLogMonitorInterval", Kind::kDuration, &KC::container_log_monitor_interval, "container-log-monitor-interval"},
      {"cpuCFSQuota", Kind::kBool, &KC::cpu_cfs_quota, "cpu-cfs-quota"},
      {"cpuCFSQuotaPeriod", Kind::kDuration, &KC::cpu_cfs_quota_period, "cpu-cfs-quota-period"},
      {"cpuManagerPolicy", Kind::kString, &KC::cpu_manager_policy, "cpu-manager-policy"},
      {"cpuManagerPolicyOptions", Kind::kStringMap, &KC::cpu_manager_policy_options, nullptr},
      {"cpuManagerReconcilePeriod", Kind::kDuration, &KC::cpu_manager_reconcile_period, "cpu-manager-reconcile-period"},
      {"memoryManagerPolicy", Kind::kString, &KC::memory_manager_policy, "memory-manager-policy"},
      {"topologyManagerPolicy", Kind::kString, &KC::topology_manager_policy, "topology-manager-policy"},
      {"topologyManagerScope", Kind::kString, &KC::topology_manager_scope, "topology-manager-scope"},
      {"topologyManagerPolicyOptions", Kind::kStringMap, &KC::topology_manager_policy_options, nullptr},
      {"reservedSystemCPUs", Kind::kString, &KC::reserved_system_cpus, "reserved-cpus"},
      {"allowedUnsafeSysctls", Kind::kStringList, &KC::allowed_unsafe_sysctls, "allowed-unsafe-sysctls"},
      {"seccompDefault", Kind::kBool, &KC::seccomp_default, "seccomp-default"},
      {"oomScoreAdj", Kind::kInt32, &KC::oom_score_adj, "oom-score-adj"},
      {"maxOpenFiles", Kind::kInt64, &KC::max_open_files, "max-open-files"},
      {"failSwapOn", Kind::kBool, &KC::fail_swap_on, "fail-swap-on"},
      {"hairpinMode", Kind::kString, &KC::hairpin_mode, "hairpin-mode"},
      {"makeIPTablesUtilChains", Kind::kBool, &KC::make_iptables_util_chains, "make-iptables-util-chains"},
      {"iptablesMasqueradeBit", Kind::kInt32, &KC::iptables_masquerade_bit, "iptables-masquerade-bit"},
      {"iptablesDropBit", Kind::kInt32, &KC::iptables_drop_bit, "iptables-drop-bit"},
      {"protectKernelDefaults", Kind::kBool, &KC::protect_kernel_defaults, "protect-kernel-defaults"},
      {"localStorageCapacityIsolation", Kind::kBool, &KC::local_storage_capacity_isolation, "local-storage-capacity-isolation"},
      {"volumePluginDir", Kind::kString, &KC::volume_plugin_dir, "volume-plugin-dir"},
      {"volumeStatsAggPeriod", Kind::kDuration, &KC::volume_stats_agg_period, "volume-stats-agg-period"},
      {"enableControllerAttachDetach", Kind::kBool, &KC::enable_controller_attach_detach,
       "enable-controller-attach-detach"},
      {"providerID", Kind::kString, &KC::provider_id, "provider-id"},
      {"featureGates", Kind::kBoolMap, &KC::feature_gates, "feature-gates"},
      {"registerNode", Kind::kBool, &KC::register_node, "register-node"},
      {"registerWithTaints", Kind::kArray, &KC::register_with_taints, "register-with-taints"},
      {"nodeLabels", Kind::kStringMap, &KC::node_labels, "node-labels"},
      {"nodeStatusUpdateFrequency", Kind::kDuration, &KC::node_status_update_frequency, "node-status-update-frequency"},
      {"nodeStatusReportFrequency", Kind::kDuration, &KC::node_status_report_frequency, nullptr},
      {"nodeLeaseDurationSeconds", Kind::kInt32, &KC::node_lease_duration_seconds, nullptr},
      {"nodeStatusMaxImages", Kind::kInt32, &KC::node_status_max_images, "node-status-max-images"},
      {"configMapAndSecretChangeDetectionStrategy", Kind::kString, &KC::config_map_and_secret_change_detection_strategy,
       nullptr},
      {"qosReserved", Kind::kStringMap, &KC::qos_reserved, "qos-reserved"},
      {"showHiddenMetricsForVersion", Kind::kString, &KC::show_hidden_metrics_for_version,
       "show-hidden-metrics-for-version"},
      {"kubeAPIQPS", Kind::kInt32, &KC::kube_api_qps, "kube-api-qps"},
      {"kubeAPIBurst", Kind::kInt32, &KC::kube_api_burst, "kube-api-burst"},
      {"contentType", Kind::kString, &KC::content_type, "kube-api-content-type"},
      {"eventRecordQPS", Kind::kInt32, &KC::event_record_qps, "event-qps"},
      {"eventBurst", Kind::kInt32, &KC::event_burst, "event-burst"},
      {"systemReserved", Kind::kStringMap, &KC::system_reserved, "system-reserved"},
      {"kubeReserved", Kind::kStringMap, &KC::kube_reserved, "kube-reserved"},
      {"systemReservedCgroup", Kind::kString, &KC::system_reserved_cgroup, "system-reserved-cgroup"},
      {"kubeReservedCgroup", Kind::kString, &KC::kube_reserved_cgroup, "kube-reserved-cgroup"},
      {"enforceNodeAllocatable", Kind::kStringList, &KC::enforce_node_allocatable, "enforce-node-allocatable"},
      {"evictionHard", Kind::kStringMap, &KC::eviction_hard, "eviction-hard"},
      {"evictionSoft", Kind::kStringMap, &KC::eviction_soft, "eviction-soft"},
      {"evictionSoftGracePeriod", Kind::kStringMap, &KC::eviction_soft_grace_period, "eviction-soft-grace-period"},
      {"evictionMinimumReclaim", Kind::kStringMap, &KC::eviction_minimum_reclaim, "eviction-minimum-reclaim"},
      {"evictionPressureTransitionPeriod", Kind::kDuration, &KC::eviction_pressure_transition_period,
       "eviction-pressure-transition-period"},
      {"evictionMaxPodGracePeriod", Kind::kInt32, &KC::eviction_max_pod_grace_period, "eviction-max-pod-grace-period"},
      {"shutdownGracePeriod", Kind::kDuration, &KC::shutdown_grace_period, nullptr},
      {"shutdownGracePeriodCriticalPods", Kind::kDuration, &KC::shutdown_grace_period_critical_pods, nullptr},
      {"logging", Kind::kObject, &KC::logging, nullptr},
      // Accepted and type-checked; acted on by later managers.
      {"memorySwap", Kind::kObject, {}, nullptr},
      {"tracing", Kind::kObject, {}, nullptr},
      {"reservedMemory", Kind::kArray, {}, nullptr},
      {"shutdownGracePeriodByPodPriority", Kind::kArray, {}, nullptr},
      {"kernelMemcgNotification", Kind::kBool, {}, nullptr},
      {"enableDebugFlagsHandler", Kind::kBool, {}, nullptr},
      {"memoryThrottlingFactor", Kind::kAny, {}, nullptr},
      {"containerRuntimeEndpointTimeout", Kind::kDuration, {}, nullptr},
      {"mergeDefaultEvictionSettings", Kind::kBool, {}, nullptr},
      {"imagePullCredentialsVerificationPolicy", Kind::kString, {}, nullptr},
      {"preloadedImagesVerificationAllowlist", Kind::kStringList, {}, nullptr},
      {"singleProcessOOMKill", Kind::kBool, {}, nullptr},
      {"crashLoopBackOff", Kind::kObject, {}, nullptr},
      {"userNamespaces", Kind::kObject, {}, nullptr},
      {"failCgroupV1", Kind::kBool, {}, nullptr},
  };
  return kSchema;
}

const FieldSpec* FindField(const std::string& name) {
  for (const auto& f : Schema())
    if (name == f.name) return &f;
  return nullptr;
}

struct DecodeError {
  std::string message;
};

std::string JsonType(const json& j) {
  if (j.is_string()) return "string";
  if (j.is_boolean()) return "bool";
  if (j.is_number()) return "number";
  if (j.is_array()) return "array";
  if (j.is_object()) return "object";
  return "null";
}

[[noreturn]] void Bad(const std::string& field, const std::string& want, const json& v) {
  throw DecodeError{field + ": expected " + want + ", got " + JsonType(v) + " " + v.dump()};
}

void Assign(KC* c, const FieldSpec& f, const json& v) {
  const std::string name = f.name;
  switch (f.kind) {
    case Kind::kString:
      if (!v.is_string()) Bad(name, "string", v);
      if (auto m = std::get_if<std::string KC::*>(&f.member)) c->**m = v.get<std::string>();
      break;
    case Kind::kInt32:
    case Kind::kInt64: {
      if (!v.is_number_integer()) Bad(name, "integer", v);
      int64_t n = v.get<int64_t>();
      if (auto m = std::get_if<int32_t KC::*>(&f.member)) {
        if (n < INT32_MIN || n > INT32_MAX) throw DecodeError{name + ": " + std::to_string(n) + " overflows int32"};
        c->**m = static_cast<int32_t>(n);
      } else if (auto m64 = std::get_if<int64_t KC::*>(&f.member)) {
        c->**m64 = n;
      }
      break;
    }
    case Kind::kBool:
      if (!v.is_boolean()) Bad(name, "boolean", v);
      if (auto m = std::get_if<bool KC::*>(&f.member)) c->**m = v.get<bool>();
      break;
    case Kind::kDuration: {
      if (!v.is_string()) Bad(name, "duration string such as \"20s\"", v);
      auto d = ParseGoDuration(v.get<std::string>());
      if (!d.ok()) throw DecodeError{name + ": " + std::string(d.status().message())};
      if (auto m = std::get_if<Duration KC::*>(&f.member)) c->**m = *d;
      break;
    }
    case Kind::kStringList: {
      if (!v.is_array()) Bad(name, "array of strings", v);
      std::vector<std::string> out;
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string()) Bad(name + "[" + std::to_string(i) + "]", "string", v[i]);
        out.push_back(v[i].get<std::string>());
      }
      if (auto m = std::get_if<std::vector<std::string> KC::*>(&f.member)) c->**m = out;
      break;
    }
    case Kind::kStringMap: {
      if (!v.is_object()) Bad(name, "map of strings", v);
      std::map<std::string, std::string> out;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!it.value().is_string()) Bad(name + "." + it.key(), "string", it.value());
        out[it.key()] = it.value().get<std::string>();
      }
      if (auto m = std::get_if<std::map<std::string, std::string> KC::*>(&f.member)) c->**m = out;
      break;
    }
    case Kind::kBoolMap: {
      if (!v.is_object()) Bad(name, "map of booleans", v);
      std::map<std::string, bool> out;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!it.value().is_boolean()) Bad(name + "." + it.key(), "boolean", it.value());
        out[it.key()] = it.value().get<bool>();
      }
      if (auto m = std::get_if<std::map<std::string, bool> KC::*>(&f.member)) c->**m = out;
      break;
    }
    case Kind::kObject:
      if (!v.is_object()) Bad(name, "object", v);
      if (auto m = std::get_if<json KC::*>(&f.member)) {
        c->**m = v;
        return;
      }
      c->extra[name] = v;
      break;
    case Kind::kArray:
      if (!v.is_array()) Bad(name, "array", v);
      if (auto m = std::get_if<json KC::*>(&f.member)) {
        c->**m = v;
        return;
      }
      c->extra[name] = v;
      break;
    case Kind::kAny:
      c->extra[name] = v;
      break;
  }
}

// Strict checks inside the nested objects the kubelet reads.
void CheckKeys(const json& obj, const std::string& path, const std::set<std::string>& allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!allowed.count(it.key())) throw DecodeError{"unknown field \"" + path + "." + it.key() + "\""};
}

// A duration setting nested in an object: a string Go's ParseDuration reads.
void CheckDurationField(const json& obj, const char* key, const std::string& path) {
  if (!obj.contains(key)) return;
  if (!obj[key].is_string()) Bad(path, "duration string such as \"20s\"", obj[key]);
  auto d = ParseGoDuration(obj[key].get<std::string>());
  if (!d.ok()) throw DecodeError{path + ": " + std::string(d.status().message())};
}

void CheckAuth(const KC& c) {
  const json& a = c.authentication;
  CheckKeys(a, "authentication", {"x509", "webhook", "anonymous"});
  if (a.contains("x509")) {
    if (!a["x509"].is_object()) Bad("authentication.x509", "object", a["x509"]);
    CheckKeys(a["x509"], "authentication.x509", {"clientCAFile"});
    if (a["x509"].contains("clientCAFile") && !a["x509"]["clientCAFile"].is_string())
      Bad("authentication.x509.clientCAFile", "string", a["x509"]["clientCAFile"]);
  }
  if (a.contains("anonymous")) {
    if (!a["anonymous"].is_object()) Bad("authentication.anonymous", "object", a["anonymous"]);
    CheckKeys(a["anonymous"], "authentication.anonymous", {"enabled"});
    if (a["anonymous"].contains("enabled") && !a["anonymous"]["enabled"].is_boolean())
      Bad("authentication.anonymous.enabled", "boolean", a["anonymous"]["enabled"]);
  }
  if (a.contains("webhook")) {
    if (!a["webhook"].is_object()) Bad("authentication.webhook", "object", a["webhook"]);
    CheckKeys(a["webhook"], "authentication.webhook", {"enabled", "cacheTTL"});
    if (a["webhook"].contains("enabled") && !a["webhook"]["enabled"].is_boolean())
      Bad("authentication.webhook.enabled", "boolean", a["webhook"]["enabled"]);
    CheckDurationField(a["webhook"], "cacheTTL", "authentication.webhook.cacheTTL");
  }
  const json& z = c.authorization;
  CheckKeys(z, "authorization", {"mode", "webhook"});
  if (z.contains("mode")) {
    if (!z["mode"].is_string()) Bad("authorization.mode", "string", z["mode"]);
    std::string mode = z["mode"].get<std::string>();
    if (mode != "AlwaysAllow" && mode != "Webhook")
      throw DecodeError{"authorization.mode: Unsupported value: \"" + mode + "\": supported values: \"AlwaysAllow\", \"Webhook\""};
  }
  if (z.contains("webhook")) {
    if (!z["webhook"].is_object()) Bad("authorization.webhook", "object", z["webhook"]);
    CheckKeys(z["webhook"], "authorization.webhook", {"cacheAuthorizedTTL", "cacheUnauthorizedTTL"});
    CheckDurationField(z["webhook"], "cacheAuthorizedTTL", "authorization.webhook.cacheAuthorizedTTL");
    CheckDurationField(z["webhook"], "cacheUnauthorizedTTL", "authorization.webhook.cacheUnauthorizedTTL");
  }
}

}  // namespace

json EncodeKubeletConfiguration(const KC& c) {
  json out = json::object();
  for (const auto& f : Schema()) {
    std::visit(
        [&](auto member) {
          using M = decltype(member);
          if constexpr (std::is_same_v<M, std::monostate>) {
            return;
          } else if constexpr (std::is_same_v<M, Duration KC::*>) {
            out[f.name] = FormatGoDuration(c.*member);
          } else {
            out[f.name] = c.*member;
          }
        },
        f.member);
  }
  for (auto it = c.extra.begin(); it != c.extra.end(); ++it)
    if (!out.contains(it.key())) out[it.key()] = it.value();
  // Authentication and authorization as upstream's defaults fill them in.
  json authn = c.authentication.is_object() ? c.authentication : json::object();
  auto sub = [](json& parent, const char* key) -> json& {
    if (!parent.contains(key) || !parent[key].is_object()) parent[key] = json::object();
    return parent[key];
  };
  json& x509 = sub(authn, "x509");
  if (!x509.contains("clientCAFile")) x509["clientCAFile"] = "";
  json& webhook = sub(authn, "webhook");
  if (!webhook.contains("enabled")) webhook["enabled"] = true;
  if (!webhook.contains("cacheTTL")) webhook["cacheTTL"] = "2m0s";
  json& anonymous = sub(authn, "anonymous");
  if (!anonymous.contains("enabled")) anonymous["enabled"] = false;
  out["authentication"] = authn;
  json authz = c.authorization.is_object() ? c.authorization : json::object();
  if (!authz.contains("mode")) authz["mode"] = "Webhook";
  json& zw = sub(authz, "webhook");
  if (!zw.contains("cacheAuthorizedTTL")) zw["cacheAuthorizedTTL"] = "5m0s";
  if (!zw.contains("cacheUnauthorizedTTL")) zw["cacheUnauthorizedTTL"] = "30s";
  out["authorization"] = authz;
  out["kind"] = "KubeletConfiguration";
  out["apiVersion"] = "kubelet.config.k8s.io/v1beta1";
  return out;
}

namespace {

void ResolvePath(std::string* p, const std::string& base) {
  if (!p->empty() && (*p)[0] != '/' && !base.empty()) *p = base + "/" + *p;
}

// --- flags ---------------------------------------------------------------------

// Converts a flag's text to the JSON its config field holds.
json FlagValueToJson(const FieldSpec& f, const std::string& flag, const std::string& text) {
  auto bad = [&](const std::string& want) {
    return DecodeError{"invalid argument \"" + text + "\" for \"--" + flag + "\" flag: expected " + want};
  };
  if (std::string(f.name) == "registerWithTaints") {
    // key=value:Effect or key:Effect, comma-separated, as upstream's taint flag reads them.
    json arr = json::array();
    for (auto part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
      std::string spec(part);
      size_t colon = spec.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
        throw bad("taints as key=value:Effect");
      json t = {{"effect", spec.substr(colon + 1)}};
      std::string kv = spec.substr(0, colon);
      size_t eq = kv.find('=');
      t["key"] = kv.substr(0, eq);
      if (eq != std::string::npos) t["value"] = kv.substr(eq + 1);
      arr.push_back(t);
    }
    return arr;
  }
  switch (f.kind) {
    case Kind::kString:
    case Kind::kDuration:
      return text;
    case Kind::kInt32:
    case Kind::kInt64: {
      char* end = nullptr;
      errno = 0;
      long long n = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno) throw bad("an integer");
      return n;
    }
    case Kind::kBool:
      if (text == "true" || text == "1" || text == "t" || text == "T" || text == "TRUE" || text == "True") return true;
      if (text == "false" || text == "0" || text == "f" || text == "F" || text == "FALSE" || text == "False")
        return false;
      throw bad("a boolean");
    case Kind::kStringList: {
      json arr = json::array();
      for (auto part : absl::StrSplit(text, ',', absl::SkipEmpty())) arr.push_back(std::string(part));
      return arr;
    }
    case Kind::kStringMap:
    case Kind::kBoolMap: {
      json obj = json::object();
      for (auto part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
        std::string kv(part);
        size_t eq = kv.find('=');
        if (eq == std::string::npos) eq = kv.find('<');  // eviction flags use "memory.available<100Mi"
        if (eq == std::string::npos) throw bad("key=value pairs");
        std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
        if (f.kind == Kind::kBoolMap) {
          if (v != "true" && v != "false") throw bad("key=true|false pairs");
          obj[k] = v == "true";
        } else {
          obj[k] = v;
        }
      }
      return obj;
    }
    default:
      throw bad("a supported value");
  }
}

struct FlagOnly {
  const char* name;
  bool is_bool;
};

const std::vector<FlagOnly>& FlagOnlyFlags() {
  static const std::vector<FlagOnly> kFlags = {
      {"config", false},        {"kubeconfig", false},  {"bootstrap-kubeconfig", false}, {"root-dir", false},
      {"hostname-override", false}, {"node-ip", false}, {"cert-dir", false},            {"pod-infra-container-image", false},
      {"v", false},             {"version", true},      {"help", true},                 {"h", true},
      {"logtostderr", true},    {"lock-file", false},   {"exit-on-lock-contention", true}, {"runonce", true},
      {"cloud-provider", false}, {"log-file", false},   {"vmodule", false},
      {"network-plugin", false}, {"cni-conf-dir", false}, {"cni-bin-dir", false}, {"cni-cache-dir", false},
      {"allow-privileged", true},
      // Deprecated flags kubeadm, kops and distributions still pass, for fields nested in the config file.
      {"anonymous-auth", true}, {"client-ca-file", false}, {"authentication-token-webhook", true},
      {"authentication-token-webhook-cache-ttl", false}, {"authorization-mode", false},
      {"authorization-webhook-cache-authorized-ttl", false}, {"authorization-webhook-cache-unauthorized-ttl", false},
  };
  return kFlags;
}

bool IsBoolFlag(const std::string& name) {
  for (const auto& f : FlagOnlyFlags())
    if (name == f.name) return f.is_bool;
  for (const auto& f : Schema())
    if (f.flag && name == f.flag) return f.kind == Kind::kBool;
  return false;
}

bool KnownFlag(const std::string& name) {
  for (const auto& f : FlagOnlyFlags())
    if (name == f.name) return true;
  for (const auto& f : Schema())
    if (f.flag && name == f.flag) return true;
  return false;
}

std::string ReadFile(const std::string& path, absl::Status* st) {
  std::ifstream in(path);
  if (!in) {
    *st = absl::NotFoundError("failed to read kubelet config file \"" + path + "\": " + std::strerror(errno));
    return "";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<Duration> ParseGoDuration(const std::string& s) {
  const auto bad = [&] { return absl::InvalidArgumentError("time: invalid duration \"" + s + "\""); };
  if (s.empty()) return bad();
  size_t i = 0;
  bool neg = false;
  if (s[0] == '-' || s[0] == '+') {
    neg = s[0] == '-';
    ++i;
  }
  if (s.substr(i) == "0") return Duration::zero();
  if (i >= s.size()) return bad();
  long double total_ns = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i) return bad();
    long double num = std::strtold(s.substr(start, i - start).c_str(), nullptr);
    size_t ustart = i;
    while (i < s.size() && !isdigit(static_cast<unsigned char>(s[i])) && s[i] != '.') ++i;
    std::string unit = s.substr(ustart, i - ustart);
    long double mult;
    if (unit == "ns") mult = 1;
    else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs") mult = 1e3L;
    else if (unit == "ms") mult = 1e6L;
    else if (unit == "s") mult = 1e9L;
    else if (unit == "m") mult = 60e9L;
    else if (unit == "h") mult = 3600e9L;
    else if (unit.empty()) return absl::InvalidArgumentError("time: missing unit in duration \"" + s + "\"");
    else return absl::InvalidArgumentError("time: unknown unit \"" + unit + "\" in duration \"" + s + "\"");
    total_ns += num * mult;
  }
  if (total_ns > 9.2e18L) return bad();
  auto d = Duration(static_cast<int64_t>(total_ns));
  return neg ? -d : d;
}

std::string FormatGoDuration(Duration d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string out = ns < 0 ? "-" : "";
  if (ns < 0) ns = -ns;
  if (ns < 1000000000) {
    if (ns % 1000000 == 0) return out + std::to_string(ns / 1000000) + "ms";
    return out + std::to_string(ns) + "ns";
  }
  int64_t h = ns / 3600000000000LL;
  ns %= 3600000000000LL;
  int64_t m = ns / 60000000000LL;
  ns %= 60000000000LL;
  if (h) out += std::to_string(h) + "h";
  if (h || m) out += std::to_string(m) + "m";
  int64_t s = ns / 1000000000LL;
  int64_t frac = ns % 1000000000LL;
  out += std::to_string(s);
  if (frac) {
    std::string f = std::to_string(frac);
    f = std::string(9 - f.size(), '0') + f;
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out + "s";
}

namespace {
absl::StatusOr<KC> DecodeConfigJson(const json& doc, const std::string& base_dir) {
  if (!doc.is_object()) return absl::InvalidArgumentError("kubelet config: expected an object, got " + JsonType(doc));
  KC c;
  try {
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      const std::string& key = it.key();
      if (key == "apiVersion" || key == "kind") continue;
      const FieldSpec* f = FindField(key);
      if (!f) throw DecodeError{"unknown field \"" + key + "\""};
      if (it.value().is_null()) continue;
      Assign(&c, *f, it.value());
    }
    CheckAuth(c);
  } catch (const DecodeError& e) {
    return absl::InvalidArgumentError("kubelet config: " + e.message);
  }
  ResolvePath(&c.static_pod_path, base_dir);
  ResolvePath(&c.tls_cert_file, base_dir);
  ResolvePath(&c.tls_private_key_file, base_dir);
  ResolvePath(&c.resolv_conf, base_dir);
  if (c.authentication.contains("x509") && c.authentication["x509"].contains("clientCAFile")) {
    std::string ca = c.authentication["x509"]["clientCAFile"].get<std::string>();
    ResolvePath(&ca, base_dir);
    c.authentication["x509"]["clientCAFile"] = ca;
  }
  return c;
}

absl::StatusOr<json> ConfigDocument(const std::string& text) {
  auto doc = api::ParseDocument(text);
  if (!doc.ok()) return absl::InvalidArgumentError("kubelet config: " + std::string(doc.status().message()));
  if (!doc->is_object()) return absl::InvalidArgumentError("kubelet config: expected an object");
  std::string api_version = api::StringField(*doc, "apiVersion");
  std::string kind = api::StringField(*doc, "kind");
  if (kind != "KubeletConfiguration")
    return absl::InvalidArgumentError("kubelet config: kind: expected \"KubeletConfiguration\", got \"" + kind + "\"");
  if (api_version != "kubelet.config.k8s.io/v1beta1" && api_version != "kubelet.config.k8s.io/v1")
    return absl::InvalidArgumentError("kubelet config: apiVersion: expected \"kubelet.config.k8s.io/v1beta1\", got \"" +
                                      api_version + "\"");
  return doc;
}
}  // namespace

absl::StatusOr<KubeletConfiguration> ParseKubeletConfiguration(const std::string& text, const std::string& base_dir) {
  auto doc = ConfigDocument(text);
  if (!doc.ok()) return doc.status();
  return DecodeConfigJson(*doc, base_dir);
}

absl::Status ValidateKubeletConfiguration(const KubeletConfiguration& c) {
  std::vector<std::string> errs;
  auto check = [&](bool ok, const std::string& msg) {
    if (!ok) errs.push_back(msg);
  };
  auto positive = [&](Duration d, const char* field, const char* flag) {
    check(d > Duration::zero(), std::string(field) + " (--" + flag + "): must be greater than 0, got " + FormatGoDuration(d));
  };
  check(c.image_gc_high_threshold_percent >= 0 && c.image_gc_high_threshold_percent <= 100,
        "imageGCHighThresholdPercent (--image-gc-high-threshold): must be between 0 and 100, got " +
            std::to_string(c.image_gc_high_threshold_percent));
  check(c.image_gc_low_threshold_percent >= 0 && c.image_gc_low_threshold_percent <= 100,
        "imageGCLowThresholdPercent (--image-gc-low-threshold): must be between 0 and 100, got " +
            std::to_string(c.image_gc_low_threshold_percent));
  check(c.image_gc_low_threshold_percent < c.image_gc_high_threshold_percent || c.image_gc_high_threshold_percent == 0,
        "imageGCLowThresholdPercent (--image-gc-low-threshold) must be less than imageGCHighThresholdPercent "
        "(--image-gc-high-threshold)");
  check(c.port >= 1 && c.port <= 65535, "port (--port): must be between 1 and 65535, got " + std::to_string(c.port));
  check(c.read_only_port >= 0 && c.read_only_port <= 65535,
        "readOnlyPort (--read-only-port): must be between 0 and 65535, got " + std::to_string(c.read_only_port));
  check(c.healthz_port >= 0 && c.healthz_port <= 65535,
        "healthzPort (--healthz-port): must be between 0 and 65535, got " + std::to_string(c.healthz_port));
  check(c.cgroup_driver == "cgroupfs" || c.cgroup_driver == "systemd",
        "cgroupDriver (--cgroup-driver): Unsupported value: \"" + c.cgroup_driver +
            "\": supported values: \"cgroupfs\", \"systemd\"");
  check(c.max_pods >= 0, "maxPods (--max-pods): must be greater than or equal to 0, got " + std::to_string(c.max_pods));
  check(c.pods_per_core >= 0, "podsPerCore (--pods-per-core): must be greater than or equal to 0");
  check(c.kube_api_qps >= 0, "kubeAPIQPS (--kube-api-qps): must be greater than or equal to 0");
  check(c.kube_api_burst >= 0, "kubeAPIBurst (--kube-api-burst): must be greater than or equal to 0");
  check(c.event_record_qps >= 0, "eventRecordQPS (--event-qps): must be greater than or equal to 0");
  check(c.registry_pull_qps >= 0, "registryPullQPS (--registry-qps): must be greater than or equal to 0");
  check(c.node_lease_duration_seconds > 0, "nodeLeaseDurationSeconds: must be greater than 0");
  check(c.oom_score_adj >= -1000 && c.oom_score_adj <= 1000,
        "oomScoreAdj (--oom-score-adj): must be between -1000 and 1000, got " + std::to_string(c.oom_score_adj));
  check(c.iptables_masquerade_bit >= 0 && c.iptables_masquerade_bit <= 31,
        "iptablesMasqueradeBit (--iptables-masquerade-bit): must be between 0 and 31");
  check(c.iptables_drop_bit >= 0 && c.iptables_drop_bit <= 31, "iptablesDropBit (--iptables-drop-bit): must be between 0 and 31");
  check(c.container_log_max_files >= 2, "containerLogMaxFiles (--container-log-max-files): must be greater than 1, got " +
                                            std::to_string(c.container_log_max_files));
  check(c.container_log_max_workers >= 1, "containerLogMaxWorkers: must be greater than or equal to 1");
  check(c.container_log_monitor_interval >= std::chrono::seconds(3),
        "containerLogMonitorInterval must be a positive time duration greater than or equal to 3s");
  check(api::ParseQuantity(c.container_log_max_size).ok(),
        "containerLogMaxSize (--container-log-max-size): invalid quantity \"" + c.container_log_max_size + "\"");
  check(c.cpu_manager_policy == "none" || c.cpu_manager_policy == "static",
        "cpuManagerPolicy (--cpu-manager-policy): Unsupported value: \"" + c.cpu_manager_policy +
            "\": supported values: \"none\", \"static\"");
  check(c.memory_manager_policy == "None" || c.memory_manager_policy == "Static",
        "memoryManagerPolicy (--memory-manager-policy): Unsupported value: \"" + c.memory_manager_policy + "\"");
  check(c.topology_manager_policy == "none" || c.topology_manager_policy == "best-effort" ||
            c.topology_manager_policy == "restricted" || c.topology_manager_policy == "single-numa-node",
        "topologyManagerPolicy (--topology-manager-policy): Unsupported value: \"" + c.topology_manager_policy + "\"");
  check(c.topology_manager_scope == "container" || c.topology_manager_scope == "pod",
        "topologyManagerScope (--topology-manager-scope): Unsupported value: \"" + c.topology_manager_scope + "\"");
  check(c.hairpin_mode == "promiscuous-bridge" || c.hairpin_mode == "hairpin-veth" || c.hairpin_mode == "none",
        "hairpinMode (--hairpin-mode): Unsupported value: \"" + c.hairpin_mode + "\"");
  positive(c.sync_frequency, "syncFrequency", "sync-frequency");
  positive(c.file_check_frequency, "fileCheckFrequency", "file-check-frequency");
  positive(c.http_check_frequency, "httpCheckFrequency", "http-check-frequency");
  positive(c.runtime_request_timeout, "runtimeRequestTimeout", "runtime-request-timeout");
  positive(c.node_status_update_frequency, "nodeStatusUpdateFrequency", "node-status-update-frequency");
  positive(c.cpu_cfs_quota_period, "cpuCFSQuotaPeriod", "cpu-cfs-quota-period");
  check(c.node_status_report_frequency >= Duration::zero(), "nodeStatusReportFrequency: must be greater than or equal to 0");
  check(c.image_minimum_gc_age >= Duration::zero(), "imageMinimumGCAge: must be greater than or equal to 0");
  check(c.container_runtime_endpoint.rfind("unix://", 0) == 0 || c.container_runtime_endpoint.rfind("/", 0) == 0,
        "containerRuntimeEndpoint (--container-runtime-endpoint): only unix:// endpoints are supported, got \"" +
            c.container_runtime_endpoint + "\"");
  static const std::set<std::string> kSignals = {"memory.available",   "nodefs.available", "nodefs.inodesFree",
                                                 "imagefs.available",  "imagefs.inodesFree", "pid.available",
                                                 "allocatableMemory.available", "containerfs.available",
                                                 "containerfs.inodesFree"};
  auto check_thresholds = [&](const std::map<std::string, std::string>& m, const char* field) {
    for (const auto& [sig, val] : m) {
      check(kSignals.count(sig) > 0, std::string(field) + ": unsupported eviction signal \"" + sig + "\"");
      bool pct = !val.empty() && val.back() == '%';
      if (pct) {
        char* end = nullptr;
        double p = std::strtod(val.c_str(), &end);
        check(end == val.c_str() + val.size() - 1 && p >= 0 && p <= 100,
              std::string(field) + "." + sig + ": invalid percentage \"" + val + "\"");
      } else {
        check(api::ParseQuantity(val).ok(), std::string(field) + "." + sig + ": invalid quantity \"" + val + "\"");
      }
    }
  };
  check_thresholds(c.eviction_hard, "evictionHard");
  check_thresholds(c.eviction_soft, "evictionSoft");
  for (const auto& [sig, val] : c.eviction_soft_grace_period) {
    check(c.eviction_soft.count(sig) > 0, "evictionSoftGracePeriod." + sig + ": no matching evictionSoft threshold");
    check(ParseGoDuration(val).ok(), "evictionSoftGracePeriod." + sig + ": invalid duration \"" + val + "\"");
  }
  for (const auto& [sig, _] : c.eviction_soft)
    check(c.eviction_soft_grace_period.count(sig) > 0, "evictionSoft." + sig + ": grace period must be specified");
  for (const auto& [res, val] : c.system_reserved)
    check(api::ParseQuantity(val).ok(), "systemReserved." + res + ": invalid quantity \"" + val + "\"");
  for (const auto& [res, val] : c.kube_reserved)
    check(api::ParseQuantity(val).ok(), "kubeReserved." + res + ": invalid quantity \"" + val + "\"");
  for (const auto& e : c.enforce_node_allocatable)
    check(e == "pods" || e == "system-reserved" || e == "kube-reserved" || e == "none" ||
              e == "system-reserved-compressible" || e == "kube-reserved-compressible",
          "enforceNodeAllocatable (--enforce-node-allocatable): invalid option \"" + e + "\"");
  bool enforces = false;
  for (const auto& e : c.enforce_node_allocatable) enforces |= e != "none";
  check(c.cgroups_per_qos || !enforces,
        "invalid configuration: enforceNodeAllocatable (--enforce-node-allocatable) is not supported unless cgroupsPerQOS "
        "(--cgroups-per-qos) feature is turned on");
  const std::string& cms = c.config_map_and_secret_change_detection_strategy;
  check(cms == "Get" || cms == "Cache" || cms == "Watch",
        "configMapAndSecretChangeDetectionStrategy: Unsupported value: \"" + cms + "\": supported values: \"Get\", \"Cache\", \"Watch\"");
  check(c.node_status_max_images >= -1, "nodeStatusMaxImages (--node-status-max-images): must be -1 or greater");
  if (auto taints = api::DecodeTaints(c.register_with_taints); !taints.ok()) {
    check(false, "registerWithTaints" + std::string(taints.status().message()));
  } else {
    for (size_t i = 0; i < taints->size(); ++i) {
      const auto& t = (*taints)[i];
      std::string at = "registerWithTaints[" + std::to_string(i) + "]";
      check(!t.key.empty(), at + ".key: Required value");
      check(t.effect == "NoSchedule" || t.effect == "PreferNoSchedule" || t.effect == "NoExecute",
            at + ".effect: Unsupported value: \"" + t.effect + "\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"");
    }
  }
  if (errs.empty()) return absl::OkStatus();
  std::string all = "invalid configuration: ";
  for (size_t i = 0; i < errs.size(); ++i) all += (i ? "; " : "") + errs[i];
  return absl::InvalidArgumentError(all);
}

absl::StatusOr<Options> ParseCommandLine(const std::vector<std::string>& args) {
  Options opts;
  std::vector<std::pair<std::string, std::string>> set_flags;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0 && !(a.rfind("-", 0) == 0 && a.size() > 1))
      return absl::InvalidArgumentError("unexpected argument \"" + a + "\": the kubelet takes flags only");
    std::string body = a.substr(a[1] == '-' ? 2 : 1);
    std::string name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (!KnownFlag(name)) return absl::InvalidArgumentError("unknown flag: --" + name);
    if (!has_value) {
      if (IsBoolFlag(name)) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) return absl::InvalidArgumentError("flag needs an argument: --" + name);
        value = args[++i];
      }
    }
    set_flags.emplace_back(name, value);
  }
  // Flag-only values first: --config must be known before the file is read.
  for (const auto& [name, value] : set_flags) {
    auto& f = opts.flags;
    if (name == "config") f.config_file = value;
    else if (name == "kubeconfig") f.kubeconfig = value;
    else if (name == "bootstrap-kubeconfig") f.bootstrap_kubeconfig = value;
    else if (name == "root-dir") f.root_dir = value;
    else if (name == "hostname-override") f.hostname_override = value;
    else if (name == "node-ip") f.node_ip = value;
    else if (name == "cert-dir") f.cert_dir = value;
    else if (name == "pod-infra-container-image") f.pod_infra_container_image = value;
    else if (name == "network-plugin") {
      if (value != "" && value != "cni")
        return absl::InvalidArgumentError("invalid argument \"" + value + "\" for \"--network-plugin\" flag: must be \"\" or \"cni\"");
      f.network_plugin = value;
    } else if (name == "cni-conf-dir") f.cni_conf_dir = value;
    else if (name == "cni-bin-dir") {
      f.cni_bin_dirs.clear();
      std::stringstream ss(value);
      for (std::string d; std::getline(ss, d, ',');)
        if (!d.empty()) f.cni_bin_dirs.push_back(d);
    } else if (name == "cni-cache-dir") f.cni_cache_dir = value;
    else if (name == "allow-privileged") {
      if (value != "true" && value != "false")
        return absl::InvalidArgumentError("invalid argument \"" + value + "\" for \"--allow-privileged\" flag: strconv.ParseBool: parsing \"" + value + "\": invalid syntax");
      f.allow_privileged = value == "true";
    }
    else if (name == "version") f.version = value == "true" || value == "raw";
    else if (name == "help" || name == "h") f.help = value == "true";
    else if (name == "v") {
      char* end = nullptr;
      long v = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || v < 0)
        return absl::InvalidArgumentError("invalid argument \"" + value + "\" for \"--v\" flag: expected a non-negative integer");
      f.verbosity = static_cast<int>(v);
    }
  }
  if (opts.flags.help || opts.flags.version) return opts;

  json doc = json::object();
  std::string base_dir;
  if (!opts.flags.config_file.empty()) {
    absl::Status st;
    std::string text = ReadFile(opts.flags.config_file, &st);
    if (!st.ok()) return st;
    auto parsed = ConfigDocument(text);
    if (!parsed.ok())
      return absl::InvalidArgumentError("failed to load kubelet config file \"" + opts.flags.config_file +
                                        "\": " + std::string(parsed.status().message()));
    doc = *parsed;
    std::string cfg = opts.flags.config_file;
    base_dir = cfg.find('/') == std::string::npos ? "." : cfg.substr(0, cfg.find_last_of('/'));
    if (base_dir.empty()) base_dir = "/";
  }
  auto file_cfg = DecodeConfigJson(doc, base_dir);
  if (!file_cfg.ok())
    return absl::InvalidArgumentError("failed to load kubelet config file \"" + opts.flags.config_file +
                                      "\": " + std::string(file_cfg.status().message()));
  opts.config = *file_cfg;
  // Flags on the command line win over the file (upstream re-applies them).
  try {
    for (const auto& [name, value] : set_flags) {
      for (const auto& f : Schema()) {
        if (!f.flag || name != f.flag) continue;
        json v = FlagValueToJson(f, name, value);
        try {
          Assign(&opts.config, f, v);
        } catch (const DecodeError& e) {
          return absl::InvalidArgumentError("invalid argument \"" + value + "\" for \"--" + name + "\" flag: " + e.message);
        }
      }
    }
  } catch (const DecodeError& e) {
    return absl::InvalidArgumentError(e.message);
  }
  // The deprecated authn/authz flags set fields nested in authentication / authorization.
  for (const auto& [name, value] : set_flags) {
    auto boolean = [&, &name = name, &value = value]() -> absl::StatusOr<bool> {
      if (value == "true" || value == "1" || value == "t" || value == "T" || value == "TRUE" || value == "True") return true;
      if (value == "false" || value == "0" || value == "f" || value == "F" || value == "FALSE" || value == "False") return false;
      return absl::InvalidArgumentError("invalid argument \"" + value + "\" for \"--" + name + "\" flag: strconv.ParseBool: parsing \"" +
                                        value + "\": invalid syntax");
    };
    auto duration = [&, &name = name, &value = value]() -> absl::Status {
      if (ParseGoDuration(value).ok()) return absl::OkStatus();
      return absl::InvalidArgumentError("invalid argument \"" + value + "\" for \"--" + name + "\" flag: time: invalid duration \"" + value + "\"");
    };
    json& authn = opts.config.authentication;
    json& authz = opts.config.authorization;
    if (!authn.is_object()) authn = json::object();
    if (!authz.is_object()) authz = json::object();
    auto sub = [](json& parent, const char* key) -> json& {
      if (!parent.contains(key) || !parent[key].is_object()) parent[key] = json::object();
      return parent[key];
    };
    if (name == "anonymous-auth") {
      auto b = boolean();
      if (!b.ok()) return b.status();
      sub(authn, "anonymous")["enabled"] = *b;
    } else if (name == "client-ca-file") {
      sub(authn, "x509")["clientCAFile"] = value;
    } else if (name == "authentication-token-webhook") {
      auto b = boolean();
      if (!b.ok()) return b.status();
      sub(authn, "webhook")["enabled"] = *b;
    } else if (name == "authentication-token-webhook-cache-ttl") {
      if (auto st = duration(); !st.ok()) return st;
      sub(authn, "webhook")["cacheTTL"] = value;
    } else if (name == "authorization-mode") {
      if (value != "AlwaysAllow" && value != "Webhook")
        return absl::InvalidArgumentError("invalid configuration: authorization.mode: Unsupported value: \"" + value +
                                          "\": supported values: \"AlwaysAllow\", \"Webhook\"");
      authz["mode"] = value;
    } else if (name == "authorization-webhook-cache-authorized-ttl" || name == "authorization-webhook-cache-unauthorized-ttl") {
      if (auto st = duration(); !st.ok()) return st;
      sub(authz, "webhook")[name == "authorization-webhook-cache-authorized-ttl" ? "cacheAuthorizedTTL" : "cacheUnauthorizedTTL"] = value;
    }
  }
  if (auto st = ValidateNodeLabels(opts.config.node_labels); !st.ok())
    return absl::InvalidArgumentError("failed to validate kubelet flags: " + std::string(st.message()));
  if (auto st = ValidateKubeletConfiguration(opts.config); !st.ok()) return st;
  return opts;
}

absl::Status ValidateNodeLabels(const std::map<std::string, std::string>& labels) {
  // The node may set only these in the kubernetes.io and k8s.io namespaces (NodeRestriction refuses the rest).
  static const char* const kAllowedNamespaces[] = {"kubelet.kubernetes.io", "node.kubernetes.io"};
  static const char* const kAllowedLabels[] = {
      "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type", "beta.kubernetes.io/os",
      "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone", "kubernetes.io/arch",
      "kubernetes.io/hostname", "kubernetes.io/os", "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
      "topology.kubernetes.io/zone"};
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  std::vector<std::string> unknown, invalid;
  for (const auto& [k, v] : labels) {
    size_t slash = k.find('/');
    std::string ns = slash == std::string::npos ? "" : k.substr(0, slash);
    std::string name = slash == std::string::npos ? k : k.substr(slash + 1);
    bool kube = ns == "kubernetes.io" || ends_with(ns, ".kubernetes.io") || ns == "k8s.io" || ends_with(ns, ".k8s.io");
    bool allowed = std::find(std::begin(kAllowedLabels), std::end(kAllowedLabels), k) != std::end(kAllowedLabels);
    for (const char* a : kAllowedNamespaces)
      if (ns == a || ends_with(ns, std::string(".") + a)) allowed = true;
    if (kube && !allowed) unknown.push_back(k);
    if (!api::IsQualifiedNamePart(name) || (slash != std::string::npos && (ns.empty() || !api::IsDNS1123Subdomain(ns))))
      invalid.push_back("'" + k + "' - not a qualified name");
    if (!v.empty() && !api::IsQualifiedNamePart(v)) invalid.push_back("'" + v + "' - not a valid label value");
  }
  if (!unknown.empty()) {
    std::string list, namespaces, allowed;
    for (const auto& u : unknown) list += (list.empty() ? "" : " ") + u;  // sorted: the map's order
    for (const char* a : kAllowedNamespaces) namespaces += (namespaces.empty() ? "" : ", ") + std::string(a);
    for (const char* a : kAllowedLabels) allowed += (allowed.empty() ? "" : ", ") + std::string(a);
    return absl::InvalidArgumentError("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [" + list +
                                      "]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix (" +
                                      namespaces + ") or be in the specifically allowed set (" + allowed + ")");
  }
  if (!invalid.empty()) {
    std::string all;
    for (const auto& i : invalid) all += (all.empty() ? "" : "; ") + i;
    return absl::InvalidArgumentError("invalid node labels: " + all);
  }
  return absl::OkStatus();
}

std::string Usage() {
  std::ostringstream out;
  out << "The kubelet is the primary node agent that runs on each node (kubelet-cpp).\n\n"
      << "Usage:\n  kubelet [flags]\n\nFlags:\n";
  out << "      --config string                         The Kubelet will load its initial configuration from this file.\n"
      << "      --kubeconfig string                     Path to a kubeconfig file for connecting to the API server.\n"
      << "      --bootstrap-kubeconfig string           Path to a bootstrap kubeconfig (accepted).\n"
      << "      --root-dir string                       Directory path for managing kubelet files (default \"/var/lib/kubelet\")\n"
      << "      --network-plugin string                 \"cni\": the kubelet attaches the pod network with the CNI plugins itself; \"\" (default): the runtime does\n"
      << "      --cni-conf-dir string                   Directory of CNI network configurations (default \"/etc/cni/net.d\")\n"
      << "      --cni-bin-dir string                    Comma-separated directories of CNI plugin binaries (default \"/opt/cni/bin\")\n"
      << "      --cni-cache-dir string                  Directory of the CNI result cache (default \"/var/lib/cni/cache\")\n"
      << "      --allow-privileged                      If false, pods with privileged containers are rejected (default true) (DEPRECATED)\n"
      << "      --hostname-override string              If non-empty, will use this string as identification instead of the actual hostname.\n"
      << "      --node-ip string                        IP address of the node.\n"
      << "      --cert-dir string                       Directory of the TLS certificates (default \"/var/lib/kubelet/pki\")\n"
      << "      --pod-infra-container-image string      The sandbox image, kept from image garbage collection.\n"
      << "  -v, --v int                                 Number for the log level verbosity\n"
      << "      --version                               Print version information and quit\n"
      << "  -h, --help                                  help for kubelet\n\n"
      << "Flags mapped to KubeletConfiguration fields (a flag overrides the --config file):\n";
  for (const auto& f : Schema())
    if (f.flag) out << "      --" << f.flag << std::string(f.flag ? std::max<int>(1, 40 - static_cast<int>(strlen(f.flag))) : 1, ' ') << f.name << "\n";
  return out.str();
}

std::string NodeName(const KubeletFlags& flags) {
  std::string name = flags.hostname_override;
  if (name.empty()) {
    char buf[256] = {0};
    gethostname(buf, sizeof(buf) - 1);
    name = buf;
  }
  name.erase(0, name.find_first_not_of(" \t\n"));
  name.erase(name.find_last_not_of(" \t\n") + 1);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return name;
}

}  // namespace kubelet::config

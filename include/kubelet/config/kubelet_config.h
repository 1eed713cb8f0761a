#pragma once
// KubeletConfiguration (kubelet.config.k8s.io/v1beta1) and the command-line
// flags, with upstream names and defaults. A config file is decoded
// strictly: an unknown field or a value of the wrong type is an error naming
// the field. Flags given on the command line override the file, as upstream.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/util/clock.h"

namespace kubelet::config {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

struct KubeletConfiguration {
  // Pod sources.
  std::string static_pod_path;
  Duration sync_frequency = minutes(1);
  Duration file_check_frequency = seconds(20);
  Duration http_check_frequency = seconds(20);
  std::string static_pod_url;
  nlohmann::json static_pod_url_header = nlohmann::json::object();

  // Server.
  bool enable_server = true;
  std::string address = "0.0.0.0";
  int32_t port = 10250;
  int32_t read_only_port = 0;
  std::string tls_cert_file;
  std::string tls_private_key_file;
  std::vector<std::string> tls_cipher_suites;
  std::string tls_min_version;
  bool rotate_certificates = false;
  bool server_tls_bootstrap = false;
  nlohmann::json authentication = nlohmann::json::object();
  nlohmann::json authorization = nlohmann::json::object();
  int32_t healthz_port = 10248;
  std::string healthz_bind_address = "127.0.0.1";
  bool enable_debugging_handlers = true;
  bool enable_profiling_handler = true;
  bool enable_contention_profiling = false;
  bool enable_system_log_handler = true;
  bool enable_system_log_query = false;
  Duration streaming_connection_idle_timeout = hours(4);

  // Runtime.
  std::string container_runtime_endpoint = "unix:///run/containerd/containerd.sock";
  std::string image_service_endpoint;
  Duration runtime_request_timeout = minutes(2);
  std::string cgroup_driver = "cgroupfs";
  bool cgroups_per_qos = true;
  std::string cgroup_root;
  std::string runtime_cgroups;
  std::string kubelet_cgroups;
  std::string system_cgroups;
  int32_t max_pods = 110;
  int32_t pods_per_core = 0;
  int64_t pod_pids_limit = -1;
  std::string pod_cidr;
  std::vector<std::string> cluster_dns;
  std::string cluster_domain;
  std::string resolv_conf = "/etc/resolv.conf";
  bool serialize_image_pulls = true;
  int32_t max_parallel_image_pulls = 0;  // 0: unset
  int32_t registry_pull_qps = 5;
  int32_t registry_burst = 10;
  Duration image_minimum_gc_age = minutes(2);
  Duration image_maximum_gc_age = Duration::zero();
  int32_t image_gc_high_threshold_percent = 85;
  int32_t image_gc_low_threshold_percent = 80;
  std::string pod_logs_dir = "/var/log/pods";
  std::string container_log_max_size = "10Mi";
  int32_t container_log_max_files = 5;
  int32_t container_log_max_workers = 1;
  Duration container_log_monitor_interval = seconds(10);
  bool cpu_cfs_quota = true;
  Duration cpu_cfs_quota_period = milliseconds(100);
  std::string cpu_manager_policy = "none";
  std::map<std::string, std::string> cpu_manager_policy_options;
  Duration cpu_manager_reconcile_period = seconds(10);
  std::string memory_manager_policy = "None";
  std::string topology_manager_policy = "none";
  std::string topology_manager_scope = "container";
  std::map<std::string, std::string> topology_manager_policy_options;
  std::string reserved_system_cpus;
  std::vector<std::string> allowed_unsafe_sysctls;
  bool seccomp_default = false;
  int32_t oom_score_adj = -999;
  int64_t max_open_files = 1000000;
  bool fail_swap_on = true;
  std::string hairpin_mode = "promiscuous-bridge";
  bool make_iptables_util_chains = true;
  int32_t iptables_masquerade_bit = 14;
  int32_t iptables_drop_bit = 15;
  bool protect_kernel_defaults = false;
  bool local_storage_capacity_isolation = true;
  std::string volume_plugin_dir = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/";
  Duration volume_stats_agg_period = minutes(1);
  bool enable_controller_attach_detach = true;
  std::string provider_id;
  std::map<std::string, bool> feature_gates;

  // Node and API.
  bool register_node = true;
  nlohmann::json register_with_taints = nlohmann::json::array();
  std::map<std::string, std::string> node_labels;
  Duration node_status_update_frequency = seconds(10);
  Duration node_status_report_frequency = minutes(5);
  int32_t node_lease_duration_seconds = 40;
  int32_t node_status_max_images = 50;
  std::string config_map_and_secret_change_detection_strategy = "Watch";  // Get, Cache, Watch
  std::map<std::string, std::string> qos_reserved;
  std::string show_hidden_metrics_for_version;
  int32_t kube_api_qps = 50;
  int32_t kube_api_burst = 100;
  std::string content_type = "application/vnd.kubernetes.protobuf";
  int32_t event_record_qps = 50;
  int32_t event_burst = 100;

  // Resources and eviction.
  std::map<std::string, std::string> system_reserved;
  std::map<std::string, std::string> kube_reserved;
  std::string system_reserved_cgroup;
  std::string kube_reserved_cgroup;
  std::vector<std::string> enforce_node_allocatable = {"pods"};
  std::map<std::string, std::string> eviction_hard = {{"memory.available", "100Mi"},
                                                      {"nodefs.available", "10%"},
                                                      {"nodefs.inodesFree", "5%"},
                                                      {"imagefs.available", "15%"},
                                                      {"imagefs.inodesFree", "5%"}};
  std::map<std::string, std::string> eviction_soft;
  std::map<std::string, std::string> eviction_soft_grace_period;
  std::map<std::string, std::string> eviction_minimum_reclaim;
  Duration eviction_pressure_transition_period = minutes(5);
  int32_t eviction_max_pod_grace_period = 0;
  Duration shutdown_grace_period = Duration::zero();
  Duration shutdown_grace_period_critical_pods = Duration::zero();
  nlohmann::json logging = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();  // accepted fields the kubelet does not act on yet
};

/** Flags that are not part of KubeletConfiguration. */
struct KubeletFlags {
  std::string config_file;
  std::string kubeconfig;
  std::string bootstrap_kubeconfig;
  std::string root_dir = "/var/lib/kubelet";
  std::string hostname_override;
  std::string node_ip;
  std::string cert_dir = "/var/lib/kubelet/pki";
  std::string pod_infra_container_image = "registry.k8s.io/pause:3.9";
  // Pod network: "" lets the CRI runtime attach it (containerd, CRI-O); "cni" has the kubelet run the CNI
  // plugins itself (the pre-1.24 flags, kept for runtimes that leave networking to the kubelet).
  std::string network_plugin;
  std::string cni_conf_dir = "/etc/cni/net.d";
  std::vector<std::string> cni_bin_dirs = {"/opt/cni/bin"};
  std::string cni_cache_dir = "/var/lib/cni/cache";
  bool allow_privileged = true;  // --allow-privileged (deprecated upstream, where it stays true)
  int verbosity = 0;
  bool version = false;
  bool help = false;
};

struct Options {
  KubeletFlags flags;
  KubeletConfiguration config;
};

/** Decodes a KubeletConfiguration document (YAML or JSON). base_dir resolves relative paths. */
absl::StatusOr<KubeletConfiguration> ParseKubeletConfiguration(const std::string& text, const std::string& base_dir);
/** Upstream's ValidateKubeletFlags for --node-labels: labels in the kubernetes.io and k8s.io namespaces only under
 *  kubelet.kubernetes.io, node.kubernetes.io or in the allowed set (what NodeRestriction lets a node set), keys and
 *  values valid label names. */
absl::Status ValidateNodeLabels(const std::map<std::string, std::string>& labels);
/** Upstream's ValidateKubeletConfiguration: ranges, enums, eviction signals. */
absl::Status ValidateKubeletConfiguration(const KubeletConfiguration& c);
/**
 * The running configuration as /configz prints it (inside {"kubeletconfig": ...}): every v1beta1 field by its
 * name, durations in Go's form ("1m0s"), the authentication and authorization defaults filled in, kind and
 * apiVersion last. ParseKubeletConfiguration reads it back to the same configuration.
 */
nlohmann::json EncodeKubeletConfiguration(const KubeletConfiguration& c);
/** argv to Options: reads --config, then applies flags set on the command line over it, then validates. */
absl::StatusOr<Options> ParseCommandLine(const std::vector<std::string>& args);
/** The --help text. */
std::string Usage();
/** Go duration syntax: "1h2m3.5s", "100ms", "0". */
absl::StatusOr<Duration> ParseGoDuration(const std::string& s);
std::string FormatGoDuration(Duration d);
/** Node name: --hostname-override or the host name, lower-cased, as upstream. */
std::string NodeName(const KubeletFlags& flags);

}  // namespace kubelet::config

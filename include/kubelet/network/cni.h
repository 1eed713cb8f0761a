#pragma once
// A CNI exec runner following the CNI spec (1.0, and the 0.3/0.4 results
// plugins still print): the network configuration list comes from the
// lexically first .conflist/.conf/.json in the configuration folder, plugins
// are found in the binary folders, and ADD/CHECK/DEL/VERSION run each plugin
// with the CNI_* environment and its configuration on stdin, chained through
// prevResult. runtimeConfig carries what a plugin declares in its
// capabilities (portMappings, bandwidth). The ADD result is cached on disk so
// DEL gets it as prevResult, also after a kubelet restart. Every plugin run
// has a deadline; a plugin's JSON error object becomes the error message.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <absl/status/statusor.h>
#include <nlohmann/json.hpp>

#include "kubelet/util/clock.h"

namespace kubelet::network {

struct CNIOptions {
  std::string conf_dir = "/etc/cni/net.d";
  std::vector<std::string> bin_dirs = {"/opt/cni/bin"};
  std::string cache_dir = "/var/lib/cni/cache";
  Duration timeout = std::chrono::seconds(60);  // per plugin run
};

/** The network list in use: its name, version and plugins, and the file it came from. */
struct NetworkList {
  std::string name;
  std::string cni_version;
  std::vector<nlohmann::json> plugins;
  std::string file;
  nlohmann::json raw;
};

/** Loads the first usable network list of conf_dir, in lexical order of file names. */
absl::StatusOr<NetworkList> LoadNetworkList(const std::string& conf_dir);

struct PortMapping {
  int32_t host_port = 0;
  int32_t container_port = 0;
  std::string protocol = "tcp";  // tcp, udp, sctp (lower case, as the portmap plugin takes them)
  std::string host_ip;
};

/** The pod a network operation is for. */
struct Attachment {
  std::string container_id;  // the sandbox ID
  std::string netns;         // path of the network namespace
  std::string if_name = "eth0";
  std::string pod_name, pod_namespace, pod_uid;
  std::vector<PortMapping> port_mappings;
  std::optional<nlohmann::json> bandwidth;  // {"ingressRate": bits/s, "ingressBurst": ..., ...}
};

struct AddResult {
  std::vector<std::string> ips;  // pod IPs, without prefix length
  nlohmann::json result;         // the final plugin's result
  std::string if_name;
};

class CNIRunner {
 public:
  explicit CNIRunner(CNIOptions o) : o_(std::move(o)) {}
  /** Whether a usable network list is configured (the node's NetworkReady). */
  absl::Status Ready() const;
  absl::StatusOr<AddResult> Add(const Attachment& a);
  /** Tears the attachment down (plugins in reverse, prevResult from the cache); a missing cache is not an error. */
  absl::Status Del(const Attachment& a);
  absl::Status Check(const Attachment& a);
  /** VERSION of a plugin binary: the spec versions it supports. */
  absl::StatusOr<std::vector<std::string>> Version(const std::string& plugin_type);
  /** The cached ADD result of a sandbox, if any (pod IPs after a restart). */
  std::optional<AddResult> Cached(const std::string& container_id, const std::string& if_name = "eth0") const;
  /** The cached ADD result of a sandbox on whichever interface the kubelet attached. */
  std::optional<AddResult> CachedAny(const std::string& container_id) const;

  /** The IPs of a CNI result (0.3+ "ips", or 0.2 "ip4"/"ip6"), without prefix lengths. */
  static std::vector<std::string> ResultIPs(const nlohmann::json& result);

 private:
  absl::StatusOr<std::string> FindPlugin(const std::string& type) const;
  // Runs one plugin; its stdout on success, the plugin's error (or the exec failure) otherwise.
  absl::StatusOr<std::string> Exec(const std::string& command, const nlohmann::json& conf, const Attachment& a,
                                   const std::string& plugin_type);
  static nlohmann::json CapabilityArgs(const Attachment& a);
  static void RestoreCapabilityArgs(const nlohmann::json& args, Attachment* a);
  nlohmann::json PluginConf(const NetworkList& net, const nlohmann::json& plugin, const Attachment& a,
                            const nlohmann::json* prev) const;
  std::string CachePath(const std::string& net, const std::string& container_id, const std::string& if_name) const;
  struct CacheEntry {
    std::string path;
    nlohmann::json data;
  };
  // The cache file of a sandbox (on one interface, or any): one scan of the results folder.
  std::optional<CacheEntry> FindCache(const std::string& container_id, const std::optional<std::string>& if_name) const;

  CNIOptions o_;
};

}  // namespace kubelet::network

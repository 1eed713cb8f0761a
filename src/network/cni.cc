#include "kubelet/network/cni.h"
#include "kubelet/util/json.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kubelet/util/base64.h"
#include "kubelet/util/logging.h"

namespace kubelet::network {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A list file as is; a single-plugin .conf/.json becomes a list of one.
absl::StatusOr<NetworkList> ParseConfig(const std::string& file) {
  json j = json::parse(ReadFile(file), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(file + ": not a JSON object");
  NetworkList n;
  n.file = file;
  n.name = j.value("name", "");
  n.cni_version = j.value("cniVersion", "");
  if (n.name.empty()) return absl::InvalidArgumentError(file + ": no network name");
  if (file.size() >= 9 && file.substr(file.size() - 9) == ".conflist") {
    if (!j.contains("plugins") || !j["plugins"].is_array() || j["plugins"].empty())
      return absl::InvalidArgumentError(file + ": CNI config list has no plugins");
    for (const auto& p : j["plugins"]) {
      if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
        return absl::InvalidArgumentError(file + ": a plugin has no type");
      n.plugins.push_back(p);
    }
    n.raw = j;
  } else {
    if (!j.contains("type") || !j["type"].is_string()) return absl::InvalidArgumentError(file + ": no plugin type");
    n.plugins.push_back(j);
    n.raw = {{"cniVersion", n.cni_version}, {"name", n.name}, {"plugins", json::array({j})}};
  }
  return n;
}

std::string PluginError(const std::string& type, const std::string& command, const std::string& out, const std::string& err,
                        int status) {
  // The spec's error object on stdout: {"code": N, "msg": "...", "details": "..."}.
  json e = json::parse(out, nullptr, false);
  std::string what;
  if (e.is_object() && e.contains("msg")) {
    what = e.value("msg", "");
    std::string details = e.value("details", "");
    if (!details.empty()) what += "; " + details;
  } else if (!err.empty()) {
    what = err;
  } else {
    what = "exit status " + std::to_string(status);
  }
  while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
  std::string cmd = command;
  for (auto& ch : cmd) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return "plugin type=\"" + type + "\" failed (" + cmd + "): " + what;
}

}  // namespace

absl::StatusOr<NetworkList> LoadNetworkList(const std::string& conf_dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(conf_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string ext = it->path().extension().string();
    if (ext == ".conflist" || ext == ".conf" || ext == ".json") files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  std::string last_error;
  for (const auto& f : files) {
    auto n = ParseConfig(f);
    if (n.ok()) return n;
    last_error = std::string(n.status().message());
    log::Get("cni")->warn("Error loading CNI config file file=\"{}\" err=\"{}\"", f, last_error);
  }
  return absl::FailedPreconditionError("cni config uninitialized" + (last_error.empty() ? "" : ": " + last_error));
}

absl::Status CNIRunner::Ready() const { return LoadNetworkList(o_.conf_dir).status(); }

absl::StatusOr<std::string> CNIRunner::FindPlugin(const std::string& type) const {
  if (type.find('/') != std::string::npos) return absl::InvalidArgumentError("invalid plugin type \"" + type + "\"");
  for (const auto& dir : o_.bin_dirs) {
    std::string p = dir + "/" + type;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  std::string dirs;
  for (const auto& d : o_.bin_dirs) dirs += (dirs.empty() ? "" : " ") + d;
  return absl::NotFoundError("failed to find plugin \"" + type + "\" in path [" + dirs + "]");
}

absl::StatusOr<std::string> CNIRunner::Exec(const std::string& command, const json& conf, const Attachment& a,
                                            const std::string& type) {
  auto path = FindPlugin(type);
  if (!path.ok()) return path.status();
  std::string cni_path;
  for (const auto& d : o_.bin_dirs) cni_path += (cni_path.empty() ? "" : ":") + d;
  std::vector<std::string> env = {"CNI_COMMAND=" + command, "CNI_PATH=" + cni_path,
                                  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  if (command != "VERSION") {
    env.push_back("CNI_CONTAINERID=" + a.container_id);
    env.push_back("CNI_NETNS=" + a.netns);
    env.push_back("CNI_IFNAME=" + a.if_name);
    env.push_back("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=" + a.pod_namespace + ";K8S_POD_NAME=" + a.pod_name +
                  ";K8S_POD_INFRA_CONTAINER_ID=" + a.container_id + ";K8S_POD_UID=" + a.pod_uid);
  }
  std::string input = DumpJSON(conf);
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
    return absl::InternalError(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> argv = {const_cast<char*>(path->c_str()), nullptr};
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  // stdin is small (a config): write it whole, then close so the plugin sees EOF.
  size_t off = 0;
  ::signal(SIGPIPE, SIG_IGN);
  while (off < input.size()) {
    ssize_t w = ::write(in[1], input.data() + off, input.size() - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  ::close(in[1]);
  std::string stdout_s, stderr_s;
  auto deadline = std::chrono::steady_clock::now() + o_.timeout;
  bool timed_out = false;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    for (auto& f : fds) {
      if (f.fd < 0 || !(f.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t r = ::read(f.fd, buf, sizeof(buf));
      if (r > 0) {
        (f.fd == out[0] ? stdout_s : stderr_s).append(buf, static_cast<size_t>(r));
        if (stdout_s.size() > (1 << 20) || stderr_s.size() > (1 << 20)) timed_out = true;  // runaway output: stop it
      } else {
        ::close(f.fd);
        f.fd = -1;
        --open_fds;
      }
    }
    if (timed_out) break;
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  if (timed_out) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return absl::DeadlineExceededError("plugin type=\"" + type + "\" failed (" + command + "): timed out after " +
                                       std::to_string(std::chrono::duration_cast<std::chrono::seconds>(o_.timeout).count()) + "s");
  }
  ::waitpid(pid, &status, 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code != 0) return absl::UnknownError(PluginError(type, command, stdout_s, stderr_s, code));
  return stdout_s;
}

// Everything the kubelet can offer as runtimeConfig (libcni's capabilityArgs), cached with the result so DEL
// after a restart still tells portmap which mappings to remove.
json CNIRunner::CapabilityArgs(const Attachment& a) {
  json args = json::object();
  if (!a.port_mappings.empty()) {
    json pm = json::array();
    for (const auto& p : a.port_mappings) {
      json m = {{"hostPort", p.host_port}, {"containerPort", p.container_port}, {"protocol", p.protocol}};
      if (!p.host_ip.empty()) m["hostIP"] = p.host_ip;
      pm.push_back(m);
    }
    args["portMappings"] = pm;
  }
  if (a.bandwidth) args["bandwidth"] = *a.bandwidth;
  return args;
}

void CNIRunner::RestoreCapabilityArgs(const json& args, Attachment* a) {
  if (!args.is_object()) return;
  if (a->port_mappings.empty() && args.contains("portMappings") && args["portMappings"].is_array()) {
    for (const auto& m : args["portMappings"]) {
      if (!m.is_object()) continue;
      PortMapping p;
      p.host_port = m.value("hostPort", 0);
      p.container_port = m.value("containerPort", 0);
      p.protocol = m.value("protocol", "tcp");
      p.host_ip = m.value("hostIP", "");
      a->port_mappings.push_back(p);
    }
  }
  if (!a->bandwidth && args.contains("bandwidth") && args["bandwidth"].is_object()) a->bandwidth = args["bandwidth"];
}

json CNIRunner::PluginConf(const NetworkList& net, const json& plugin, const Attachment& a, const json* prev) const {
  json conf = plugin;
  conf["name"] = net.name;
  conf["cniVersion"] = net.cni_version;
  if (prev && !prev->is_null()) conf["prevResult"] = *prev;
  // runtimeConfig: only what the plugin asks for in its capabilities.
  json caps = plugin.value("capabilities", json::object());
  json args = CapabilityArgs(a);
  json rc = json::object();
  for (const auto& [cap, value] : args.items())
    if (caps.value(cap, false)) rc[cap] = value;
  if (!rc.empty()) conf["runtimeConfig"] = rc;
  conf.erase("capabilities");
  return conf;
}

std::string CNIRunner::CachePath(const std::string& net, const std::string& container_id, const std::string& if_name) const {
  return o_.cache_dir + "/results/" + net + "-" + container_id + "-" + if_name;
}

std::vector<std::string> CNIRunner::ResultIPs(const json& result) {
  std::vector<std::string> out;
  auto strip = [](std::string a) { return a.substr(0, a.find('/')); };
  if (result.contains("ips") && result["ips"].is_array()) {
    for (const auto& ip : result["ips"])
      if (ip.is_object() && ip.contains("address") && ip["address"].is_string()) out.push_back(strip(ip["address"]));
  }
  for (const char* v : {"ip4", "ip6"})  // 0.2.0 results
    if (result.contains(v) && result[v].is_object() && result[v].contains("ip")) out.push_back(strip(result[v]["ip"]));
  // IPv4 first, as the pod's primary IP.
  std::stable_sort(out.begin(), out.end(), [](const std::string& x, const std::string& y) {
    return (x.find(':') == std::string::npos) > (y.find(':') == std::string::npos);
  });
  return out;
}

absl::StatusOr<AddResult> CNIRunner::Add(const Attachment& a) {
  auto net = LoadNetworkList(o_.conf_dir);
  if (!net.ok()) return net.status();
  json prev;
  for (const auto& plugin : net->plugins) {
    std::string type = plugin["type"];
    auto out = Exec("ADD", PluginConf(*net, plugin, a, prev.is_null() ? nullptr : &prev), a, type);
    if (!out.ok()) {
      // Undo what the earlier plugins did, as libcni's callers do on a failed ADD.
      (void)Del(a);
      return out.status();
    }
    json r = json::parse(*out, nullptr, false);
    if (r.is_discarded() || !r.is_object()) {
      (void)Del(a);
      return absl::UnknownError("plugin type=\"" + type + "\" failed (add): unparsable result: " + out->substr(0, 200));
    }
    prev = r;
  }
  AddResult res{ResultIPs(prev), prev, a.if_name};
  // Cached for DEL (and for the pod IPs after a kubelet restart), in libcni's cache layout.
  std::error_code ec;
  fs::create_directories(o_.cache_dir + "/results", ec);
  json cache = {{"kind", "cniCacheV1"},
                {"containerId", a.container_id},
                {"config", Base64Encode(DumpJSON(net->raw))},
                {"ifName", a.if_name},
                {"networkName", net->name},
                {"netns", a.netns},
                {"cniArgs", json::array({json::array({"K8S_POD_NAMESPACE", a.pod_namespace}),
                                         json::array({"K8S_POD_NAME", a.pod_name}),
                                         json::array({"K8S_POD_INFRA_CONTAINER_ID", a.container_id}),
                                         json::array({"K8S_POD_UID", a.pod_uid})})},
                {"capabilityArgs", CapabilityArgs(a)},
                {"result", prev}};
  std::string path = CachePath(net->name, a.container_id, a.if_name);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << DumpJSON(cache);
  }
  fs::rename(tmp, path, ec);
  return res;
}

std::optional<CNIRunner::CacheEntry> CNIRunner::FindCache(const std::string& container_id,
                                                          const std::optional<std::string>& if_name) const {
  std::error_code ec;
  for (fs::directory_iterator it(o_.cache_dir + "/results", ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.find("-" + container_id + "-") == std::string::npos) continue;
    json c = json::parse(ReadFile(it->path().string()), nullptr, false);
    if (c.is_discarded() || !c.is_object() || c.value("containerId", "") != container_id) continue;
    if (if_name && c.value("ifName", "eth0") != *if_name) continue;
    return CacheEntry{it->path().string(), std::move(c)};
  }
  return std::nullopt;
}

std::optional<AddResult> CNIRunner::Cached(const std::string& container_id, const std::string& if_name) const {
  auto e = FindCache(container_id, if_name);
  if (!e || !e->data.contains("result")) return std::nullopt;
  return AddResult{ResultIPs(e->data["result"]), e->data["result"], if_name};
}

std::optional<AddResult> CNIRunner::CachedAny(const std::string& container_id) const {
  auto e = FindCache(container_id, std::nullopt);
  if (!e || !e->data.contains("result")) return std::nullopt;
  return AddResult{ResultIPs(e->data["result"]), e->data["result"], e->data.value("ifName", "eth0")};
}

absl::Status CNIRunner::Del(const Attachment& a) {
  // The network as it was at ADD (from the cache) if known, else as configured now.
  std::optional<NetworkList> net;
  json prev;
  std::string cache_file;
  Attachment del = a;
  if (auto e = FindCache(a.container_id, a.if_name)) {
    cache_file = e->path;
    prev = e->data.value("result", json());
    RestoreCapabilityArgs(e->data.value("capabilityArgs", json::object()), &del);
    auto raw = Base64Decode(e->data.value("config", ""));
    json conf = raw.ok() ? json::parse(*raw, nullptr, false) : json();
    if (conf.is_object() && conf.contains("plugins") && conf["plugins"].is_array()) {
      NetworkList n;
      n.name = conf.value("name", "");
      n.cni_version = conf.value("cniVersion", "");
      for (const auto& p : conf["plugins"]) n.plugins.push_back(p);
      n.raw = conf;
      net = n;
    }
  }
  if (!net) {
    auto loaded = LoadNetworkList(o_.conf_dir);
    if (!loaded.ok()) return cache_file.empty() ? absl::OkStatus() : loaded.status();
    net = *loaded;
  }
  absl::Status first;
  for (auto it = net->plugins.rbegin(); it != net->plugins.rend(); ++it) {
    std::string type = (*it)["type"];
    auto out = Exec("DEL", PluginConf(*net, *it, del, prev.is_null() ? nullptr : &prev), del, type);
    if (!out.ok() && first.ok()) first = out.status();
  }
  std::error_code ec;
  if (first.ok() && !cache_file.empty()) fs::remove(cache_file, ec);
  return first;
}

absl::Status CNIRunner::Check(const Attachment& a) {
  auto net = LoadNetworkList(o_.conf_dir);
  if (!net.ok()) return net.status();
  auto cached = Cached(a.container_id, a.if_name);
  if (!cached) return absl::NotFoundError("no cached result for " + a.container_id);
  for (const auto& plugin : net->plugins) {
    std::string type = plugin["type"];
    auto out = Exec("CHECK", PluginConf(*net, plugin, a, &cached->result), a, type);
    if (!out.ok()) return out.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> CNIRunner::Version(const std::string& type) {
  auto out = Exec("VERSION", json{{"cniVersion", "1.0.0"}}, Attachment{}, type);
  if (!out.ok()) return out.status();
  json j = json::parse(*out, nullptr, false);
  if (j.is_discarded() || !j.contains("supportedVersions") || !j["supportedVersions"].is_array())
    return absl::UnknownError("plugin type=\"" + type + "\" failed (version): unparsable answer");
  std::vector<std::string> v;
  for (const auto& s : j["supportedVersions"])
    if (s.is_string()) v.push_back(s);
  return v;
}

}  // namespace kubelet::network

#include "kubelet/stats/provider.h"

#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>


namespace kubelet::stats {

namespace fs = std::filesystem;
using json = nlohmann::json;
namespace rt = ::runtime::v1;

namespace {

std::optional<FsStats> StatFs(const std::string& path, TimePoint now) {
  struct statvfs v {};
  if (path.empty() || ::statvfs(path.c_str(), &v) != 0) return std::nullopt;
  FsStats f;
  f.time = now;
  f.capacity_bytes = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
  f.available_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  f.used_bytes = (static_cast<uint64_t>(v.f_blocks) - v.f_bfree) * v.f_frsize;
  f.inodes = v.f_files;
  f.inodes_free = v.f_ffree;
  f.inodes_used = v.f_files - v.f_ffree;
  return f;
}

std::map<std::string, uint64_t> MemInfo(const std::string& proc) {
  std::map<std::string, uint64_t> out;
  std::ifstream in(proc + "/meminfo");
  std::string key, unit;
  uint64_t v;
  while (in >> key >> v) {
    if (!key.empty() && key.back() == ':') key.pop_back();
    out[key] = v * 1024;
    std::getline(in, unit);
  }
  return out;
}

// Interfaces other than lo from a net/dev file; eth0 (else the first) leads.
std::optional<NetworkStats> NetDev(const std::string& path, TimePoint now) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  NetworkStats n;
  n.time = now;
  std::string line;
  std::getline(in, line);
  std::getline(in, line);
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name == "lo") continue;
    std::istringstream f(line.substr(colon + 1));
    uint64_t v[16] = {};
    for (auto& x : v) f >> x;
    InterfaceStats s{name, v[0], v[2], v[8], v[10]};
    if (name == "eth0") n.interfaces.insert(n.interfaces.begin(), s);
    else n.interfaces.push_back(s);
  }
  if (n.interfaces.empty()) return std::nullopt;
  return n;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  return total;
}

uint64_t ProcStatCpuNanos(const std::string& proc) {
  std::ifstream in(proc + "/stat");
  std::string cpu;
  in >> cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  long hz = sysconf(_SC_CLK_TCK);
  return (user + nice + system + irq + softirq + steal) * (1000000000ULL / static_cast<uint64_t>(hz > 0 ? hz : 100));
}

TimePoint BootTime(const std::string& proc) {
  std::ifstream in(proc + "/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      int64_t secs = 0;
      in >> secs;
      return FromUnixNanos(secs * 1000000000LL);
    }
    std::getline(in, key);
  }
  return {};
}

json Time(TimePoint t) { return FormatRFC3339(t); }

MemoryStats FromCgroup(const cm::CgroupMemoryStats& c, TimePoint now) {
  MemoryStats m;
  m.time = now;
  m.usage_bytes = c.usage;
  m.working_set_bytes = c.working_set;
  m.rss_bytes = c.rss;
  m.page_faults = c.page_faults;
  m.major_page_faults = c.major_page_faults;
  return m;
}

json Cpu(const CpuStats& c) {
  json j = {{"time", Time(c.time)}, {"usageCoreNanoSeconds", c.usage_core_nano_seconds}};
  if (c.usage_nano_cores) j["usageNanoCores"] = *c.usage_nano_cores;
  return j;
}

json Memory(const MemoryStats& m) {
  json j = {{"time", Time(m.time)},        {"usageBytes", m.usage_bytes},           {"workingSetBytes", m.working_set_bytes},
            {"rssBytes", m.rss_bytes},     {"pageFaults", m.page_faults},           {"majorPageFaults", m.major_page_faults}};
  if (m.available_bytes) j["availableBytes"] = *m.available_bytes;
  return j;
}

json Fs(const FsStats& f) {
  return {{"time", Time(f.time)},       {"availableBytes", f.available_bytes}, {"capacityBytes", f.capacity_bytes},
          {"usedBytes", f.used_bytes},  {"inodesFree", f.inodes_free},         {"inodes", f.inodes},
          {"inodesUsed", f.inodes_used}};
}

json Network(const NetworkStats& n) {
  json ifaces = json::array();
  for (const auto& i : n.interfaces)
    ifaces.push_back({{"name", i.name}, {"rxBytes", i.rx_bytes}, {"rxErrors", i.rx_errors}, {"txBytes", i.tx_bytes},
                      {"txErrors", i.tx_errors}});
  json j = {{"time", Time(n.time)}, {"interfaces", ifaces}};
  if (!n.interfaces.empty()) j.update(ifaces[0]);  // the default interface, inline as upstream
  return j;
}

}  // namespace

json EncodeSummary(const Summary& s) {
  const NodeStats& n = s.node;
  json node = {{"nodeName", n.node_name},
               {"startTime", Time(n.start_time)},
               {"cpu", Cpu(n.cpu)},
               {"memory", Memory(n.memory)},
               {"fs", Fs(n.fs)},
               {"rlimit", {{"time", Time(n.cpu.time)}, {"maxpid", n.max_pid}, {"curproc", n.cur_proc}}}};
  if (n.network) node["network"] = Network(*n.network);
  if (n.image_fs) node["runtime"] = {{"imageFs", Fs(*n.image_fs)}, {"containerFs", Fs(*n.image_fs)}};
  json system = json::array();
  if (n.pods_cpu && n.pods_memory)
    system.push_back({{"name", "pods"}, {"startTime", Time(n.start_time)}, {"cpu", Cpu(*n.pods_cpu)}, {"memory", Memory(*n.pods_memory)}});
  node["systemContainers"] = system;
  json pods = json::array();
  for (const auto& p : s.pods) {
    json containers = json::array();
    for (const auto& c : p.containers) {
      json cj = {{"name", c.name}, {"startTime", Time(c.start_time)}, {"cpu", Cpu(c.cpu)}, {"memory", Memory(c.memory)}};
      if (c.rootfs) cj["rootfs"] = Fs(*c.rootfs);
      containers.push_back(cj);
    }
    json pj = {{"podRef", {{"name", p.name}, {"namespace", p.namespace_}, {"uid", p.uid}}},
               {"startTime", Time(p.start_time)},
               {"containers", containers},
               {"cpu", Cpu(p.cpu)},
               {"memory", Memory(p.memory)},
               {"process_stats", {{"process_count", p.process_count}}},
               {"ephemeral-storage", {{"time", Time(p.cpu.time)}, {"usedBytes", p.ephemeral_used_bytes}}}};
    if (p.network) pj["network"] = Network(*p.network);
    if (!p.volumes.empty()) {
      json vols = json::array();
      for (const auto& v : p.volumes) {
        json vj = Fs(v.fs);
        vj["name"] = v.name;
        if (!v.pvc_name.empty()) vj["pvcRef"] = {{"name", v.pvc_name}, {"namespace", v.pvc_namespace}};
        if (v.abnormal) vj["volumeHealthStats"] = {{"abnormal", *v.abnormal}};
        vols.push_back(vj);
      }
      pj["volume"] = vols;
    }
    pods.push_back(pj);
  }
  return {{"node", node}, {"pods", pods}};
}

namespace {
// A Prometheus label value: backslash, quote and newline escaped.
std::string EscapeLabel(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}
}  // namespace

std::string EncodeVolumeStatsMetrics(const Summary& s) {
  struct Family {
    const char* name;
    const char* help;
  };
  static const Family kFamilies[] = {
      {"kubelet_volume_stats_available_bytes", "Number of available bytes in the volume"},
      {"kubelet_volume_stats_capacity_bytes", "Capacity in bytes of the volume"},
      {"kubelet_volume_stats_health_status_abnormal",
       "Abnormal volume health status. The count is either 1 or 0. 1 indicates the volume is unhealthy, 0 indicates "
       "volume is healthy"},
      {"kubelet_volume_stats_inodes", "Maximum number of inodes in the volume"},
      {"kubelet_volume_stats_inodes_free", "Number of free inodes in the volume"},
      {"kubelet_volume_stats_inodes_used", "Number of used inodes in the volume"},
      {"kubelet_volume_stats_used_bytes", "Number of used bytes in the volume"},
  };
  // One sample per claim, the first pod's (as upstream, which skips a claim it has seen).
  std::map<std::pair<std::string, std::string>, const VolumeStats*> claims;
  for (const auto& p : s.pods)
    for (const auto& v : p.volumes)
      if (!v.pvc_name.empty()) claims.emplace(std::make_pair(v.pvc_namespace, v.pvc_name), &v);
  std::string out;
  for (const auto& f : kFamilies) {
    std::string samples;
    for (const auto& [key, v] : claims) {
      std::string name(f.name);
      double value;
      if (name == "kubelet_volume_stats_available_bytes") value = static_cast<double>(v->fs.available_bytes);
      else if (name == "kubelet_volume_stats_capacity_bytes") value = static_cast<double>(v->fs.capacity_bytes);
      else if (name == "kubelet_volume_stats_used_bytes") value = static_cast<double>(v->fs.used_bytes);
      else if (name == "kubelet_volume_stats_inodes") value = static_cast<double>(v->fs.inodes);
      else if (name == "kubelet_volume_stats_inodes_free") value = static_cast<double>(v->fs.inodes_free);
      else if (name == "kubelet_volume_stats_inodes_used") value = static_cast<double>(v->fs.inodes_used);
      else if (v->abnormal) value = *v->abnormal ? 1 : 0;
      else continue;
      samples += name + "{namespace=\"" + EscapeLabel(key.first) + "\",persistentvolumeclaim=\"" +
                 EscapeLabel(key.second) + "\"} " + std::to_string(static_cast<uint64_t>(value)) + "\n";
    }
    out += std::string("# HELP ") + f.name + " [ALPHA] " + f.help + "\n# TYPE " + f.name + " gauge\n" + samples;
  }
  return out;
}

std::string EncodeResourceMetrics(const Summary* s, bool scrape_error) {
  std::ostringstream out;
  auto ms = [](TimePoint t) { return ToUnixNanos(t) / 1000000; };
  const auto& esc = EscapeLabel;
  auto header = [&](const char* name, const char* help) {
    std::string n = name;
    bool counter = n.size() > 6 && n.compare(n.size() - 6, 6, "_total") == 0;  // the cpu usages, counters upstream
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << (counter ? " counter" : " gauge") << "\n";
  };
  if (s) {
    header("container_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the container in core-seconds");
    for (const auto& p : s->pods)
      for (const auto& c : p.containers)
        out << "container_cpu_usage_seconds_total{container=\"" << esc(c.name) << "\",namespace=\"" << esc(p.namespace_)
            << "\",pod=\"" << esc(p.name) << "\"} " << static_cast<double>(c.cpu.usage_core_nano_seconds) / 1e9 << " "
            << ms(c.cpu.time) << "\n";
    header("container_memory_working_set_bytes", "[STABLE] Current working set of the container in bytes");
    for (const auto& p : s->pods)
      for (const auto& c : p.containers)
        out << "container_memory_working_set_bytes{container=\"" << esc(c.name) << "\",namespace=\"" << esc(p.namespace_)
            << "\",pod=\"" << esc(p.name) << "\"} " << c.memory.working_set_bytes << " " << ms(c.memory.time) << "\n";
    header("container_start_time_seconds", "[STABLE] Start time of the container since unix epoch in seconds");
    for (const auto& p : s->pods)
      for (const auto& c : p.containers)
        out << "container_start_time_seconds{container=\"" << esc(c.name) << "\",namespace=\"" << esc(p.namespace_)
            << "\",pod=\"" << esc(p.name) << "\"} " << static_cast<double>(ToUnixNanos(c.start_time)) / 1e9 << " "
            << ms(c.start_time) << "\n";
    header("node_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the node in core-seconds");
    out << "node_cpu_usage_seconds_total " << static_cast<double>(s->node.cpu.usage_core_nano_seconds) / 1e9 << " "
        << ms(s->node.cpu.time) << "\n";
    header("node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes");
    out << "node_memory_working_set_bytes " << s->node.memory.working_set_bytes << " " << ms(s->node.memory.time) << "\n";
    header("pod_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds");
    for (const auto& p : s->pods)
      out << "pod_cpu_usage_seconds_total{namespace=\"" << esc(p.namespace_) << "\",pod=\"" << esc(p.name) << "\"} "
          << static_cast<double>(p.cpu.usage_core_nano_seconds) / 1e9 << " " << ms(p.cpu.time) << "\n";
    header("pod_memory_working_set_bytes", "[STABLE] Current working set of the pod in bytes");
    for (const auto& p : s->pods)
      out << "pod_memory_working_set_bytes{namespace=\"" << esc(p.namespace_) << "\",pod=\"" << esc(p.name) << "\"} "
          << p.memory.working_set_bytes << " " << ms(p.memory.time) << "\n";
  }
  header("resource_scrape_error", "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise");
  out << "resource_scrape_error " << (scrape_error ? 1 : 0) << "\n";
  return out.str();
}

std::string EncodeCadvisorMetrics(const Summary* s, bool scrape_error, int cpu_cores, int64_t memory_bytes) {
  std::ostringstream out;
  auto ms = [](TimePoint t) { return ToUnixNanos(t) / 1000000; };
  const auto& esc = EscapeLabel;
  auto header = [&](const char* name, const char* help, const char* type) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  };
  struct Row {
    std::string container, id, image, name, ns, pod;
  };
  std::vector<std::pair<Row, const PodStats*>> pod_rows;
  std::vector<std::pair<Row, const ContainerStats*>> rows;
  if (s) {
    for (const auto& p : s->pods) {
      pod_rows.push_back({{"", p.cgroup_path, "", "", p.namespace_, p.name}, &p});
      for (const auto& c : p.containers) rows.push_back({{c.name, c.cgroup_path, c.image, c.id, p.namespace_, p.name}, &c});
    }
  }
  auto labels = [&](const Row& r, const std::string& extra = "") {
    return "{container=\"" + esc(r.container) + "\"" + extra + ",id=\"" + esc(r.id) + "\",image=\"" + esc(r.image) +
           "\",name=\"" + esc(r.name) + "\",namespace=\"" + esc(r.ns) + "\",pod=\"" + esc(r.pod) + "\"}";
  };
  const Row node_row{"", "/", "", "", "", ""};
  if (s) {
    header("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", "counter");
    auto cpu = [&](const Row& r, const CpuStats& c) {
      out << "container_cpu_usage_seconds_total" << labels(r, ",cpu=\"total\"") << " "
          << static_cast<double>(c.usage_core_nano_seconds) / 1e9 << " " << ms(c.time) << "\n";
    };
    cpu(node_row, s->node.cpu);
    for (const auto& [r, p] : pod_rows) cpu(r, p->cpu);
    for (const auto& [r, c] : rows) cpu(r, c->cpu);
    struct Mem {
      const char* name;
      const char* help;
      uint64_t MemoryStats::*field;
    };
    for (const Mem& m : {Mem{"container_memory_usage_bytes",
                             "Current memory usage in bytes, including all memory regardless of when it was accessed",
                             &MemoryStats::usage_bytes},
                         Mem{"container_memory_working_set_bytes", "Current working set in bytes.", &MemoryStats::working_set_bytes},
                         Mem{"container_memory_rss", "Size of RSS in bytes.", &MemoryStats::rss_bytes}}) {
      header(m.name, m.help, "gauge");
      out << m.name << labels(node_row) << " " << s->node.memory.*m.field << " " << ms(s->node.memory.time) << "\n";
      for (const auto& [r, p] : pod_rows) out << m.name << labels(r) << " " << p->memory.*m.field << " " << ms(p->memory.time) << "\n";
      for (const auto& [r, c] : rows) out << m.name << labels(r) << " " << c->memory.*m.field << " " << ms(c->memory.time) << "\n";
    }
    header("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", "gauge");
    for (const auto& [r, p] : pod_rows)
      out << "container_start_time_seconds" << labels(r) << " " << ToUnixNanos(p->start_time) / 1000000000 << " "
          << ms(p->cpu.time) << "\n";
    for (const auto& [r, c] : rows)
      out << "container_start_time_seconds" << labels(r) << " " << ToUnixNanos(c->start_time) / 1000000000 << " "
          << ms(c->cpu.time) << "\n";
    header("container_last_seen", "Last time a container was seen by the exporter", "gauge");
    for (const auto& [r, p] : pod_rows)
      out << "container_last_seen" << labels(r) << " " << ToUnixNanos(p->cpu.time) / 1000000000 << " " << ms(p->cpu.time) << "\n";
    for (const auto& [r, c] : rows)
      out << "container_last_seen" << labels(r) << " " << ToUnixNanos(c->cpu.time) / 1000000000 << " " << ms(c->cpu.time) << "\n";
    struct Net {
      const char* name;
      const char* help;
      uint64_t InterfaceStats::*field;
    };
    for (const Net& n : {Net{"container_network_receive_bytes_total", "Cumulative count of bytes received", &InterfaceStats::rx_bytes},
                         Net{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving",
                             &InterfaceStats::rx_errors},
                         Net{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", &InterfaceStats::tx_bytes},
                         Net{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting",
                             &InterfaceStats::tx_errors}}) {
      header(n.name, n.help, "counter");
      for (const auto& [r, p] : pod_rows) {
        if (!p->network) continue;
        for (const auto& i : p->network->interfaces)
          out << n.name << "{container=\"\",id=\"" << esc(r.id) << "\",image=\"\",interface=\"" << esc(i.name)
              << "\",name=\"\",namespace=\"" << esc(r.ns) << "\",pod=\"" << esc(r.pod) << "\"} " << i.*n.field << " "
              << ms(p->network->time) << "\n";
      }
    }
  }
  header("machine_cpu_cores", "Number of logical CPU cores.", "gauge");
  out << "machine_cpu_cores " << cpu_cores << "\n";
  header("machine_memory_bytes", "Amount of memory installed on the machine.", "gauge");
  out << "machine_memory_bytes " << memory_bytes << "\n";
  header("container_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", "gauge");
  out << "container_scrape_error " << (scrape_error ? 1 : 0) << "\n";
  return out.str();
}

StatsProvider::StatsProvider(cri::RuntimeService* runtime, cri::ImageService* images, cm::ContainerManager* cm,
                             const Clock* clock, ProviderOptions o)
    : runtime_(runtime), images_(images), cm_(cm), clock_(clock), o_(std::move(o)) {
  node_start_ = BootTime(o_.proc_dir);
}

absl::StatusOr<std::shared_ptr<const Summary>> StatsProvider::Get() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (latest_ && clock_->Now() - latest_at_ < o_.max_age) return latest_;
  }
  return Refresh();
}

absl::StatusOr<std::shared_ptr<const Summary>> StatsProvider::Refresh() {
  std::lock_guard<std::mutex> one(collect_mu_);
  {
    // Another caller may have collected while this one waited.
    std::lock_guard<std::mutex> l(mu_);
    if (latest_ && clock_->Now() - latest_at_ < std::chrono::milliseconds(500)) return latest_;
  }
  auto s = Collect();
  if (!s.ok()) return s.status();
  auto shared = std::make_shared<const Summary>(std::move(*s));
  std::lock_guard<std::mutex> l(mu_);
  latest_ = shared;
  latest_at_ = clock_->Now();
  return shared;
}

std::optional<uint64_t> StatsProvider::Rate(const std::string& key, TimePoint t, uint64_t ns) {
  next_samples_[key] = {t, ns};
  auto it = samples_.find(key);
  if (it == samples_.end() || t <= it->second.t || ns < it->second.ns) return std::nullopt;
  double secs = std::chrono::duration<double>(t - it->second.t).count();
  return static_cast<uint64_t>(static_cast<double>(ns - it->second.ns) / secs);
}

// What the pod asked for: containerd lists a container's image by its ID, which dashboards cannot read.
std::string StatsProvider::ImageName(const rt::Container& c, TimePoint now) {
  std::string image = !c.image().user_specified_image().empty() ? c.image().user_specified_image() : c.image().image();
  if (image.rfind("sha256:", 0) != 0) return image;
  auto lookup = [&]() -> const std::string* {
    for (const std::string& key : {image, c.image_ref()})
      if (auto it = image_names_.find(key); it != image_names_.end()) return &it->second;
    return nullptr;
  };
  if (const std::string* name = lookup()) return *name;
  if (now - image_names_at_ < std::chrono::minutes(1)) return image;
  image_names_at_ = now;
  image_names_.clear();  // rebuilt whole: removed images leave with it
  if (auto imgs = images_->ListImages(); imgs.ok())
    for (const auto& img : *imgs)
      if (img.repo_tags_size() > 0) image_names_[img.id()] = img.repo_tags(0);
  const std::string* name = lookup();
  return name ? *name : image;
}

absl::StatusOr<Summary> StatsProvider::Collect() {
  TimePoint now = clock_->Now();
  next_samples_.clear();
  Summary s;
  NodeStats& n = s.node;
  n.node_name = o_.node_name;
  n.start_time = node_start_;
  cm::CgroupManager* cg = cm_ ? cm_->cgroups() : nullptr;

  // Node cpu and memory: the root cgroup on v1 (as cAdvisor), /proc otherwise.
  n.cpu.time = n.memory.time = now;
  auto root_cpu = cg ? cg->CpuStats({}) : absl::NotFoundError("no cgroups");
  n.cpu.usage_core_nano_seconds = root_cpu.ok() ? root_cpu->usage_nanos : ProcStatCpuNanos(o_.proc_dir);
  n.cpu.usage_nano_cores = Rate("node", now, n.cpu.usage_core_nano_seconds);
  auto mi = MemInfo(o_.proc_dir);
  uint64_t capacity = o_.machine_memory > 0 ? static_cast<uint64_t>(o_.machine_memory) : mi["MemTotal"];
  absl::StatusOr<cm::CgroupMemoryStats> root_mem = absl::NotFoundError("no cgroups");
  if (cg && cg->version() == cm::CgroupVersion::kV1) root_mem = cg->MemoryStats({});
  if (root_mem.ok() && root_mem->usage > 0) {
    n.memory = FromCgroup(*root_mem, now);
  } else {
    uint64_t used = mi["MemTotal"] - std::min(mi["MemTotal"], mi["MemFree"]);
    uint64_t inactive = mi["Inactive(file)"];
    n.memory.usage_bytes = used;
    n.memory.working_set_bytes = used > inactive ? used - inactive : 0;
    n.memory.rss_bytes = mi["AnonPages"];
  }
  n.memory.available_bytes = capacity > n.memory.working_set_bytes ? capacity - n.memory.working_set_bytes : 0;
  n.network = NetDev(o_.proc_dir + "/net/dev", now);
  if (auto f = StatFs(o_.root_dir, now)) n.fs = *f;
  if (auto info = images_->ImageFsInfo(); info.ok() && info->image_filesystems_size() > 0) {
    const auto& u = info->image_filesystems(0);
    if (auto f = StatFs(u.fs_id().mountpoint(), now)) {
      f->used_bytes = u.used_bytes().value();
      f->inodes_used = u.inodes_used().value();
      n.image_fs = *f;
    }
  }
  {
    std::ifstream in(o_.proc_dir + "/sys/kernel/pid_max");
    in >> n.max_pid;
    struct sysinfo si {};
    if (::sysinfo(&si) == 0) n.cur_proc = si.procs;
  }
  if (cm_ && cm_->enabled()) {
    auto kp_cpu = cg->CpuStats(cm_->Kubepods());
    auto kp_mem = cg->MemoryStats(cm_->Kubepods());
    if (kp_cpu.ok() && kp_mem.ok()) {
      CpuStats c{now, Rate("kubepods", now, kp_cpu->usage_nanos), kp_cpu->usage_nanos};
      MemoryStats m = FromCgroup(*kp_mem, now);
      m.available_bytes = capacity > m.working_set_bytes ? capacity - m.working_set_bytes : 0;
      n.pods_cpu = c;
      n.pods_memory = m;
    }
  }

  // Pods: ready sandboxes; containers: the running ones with their CRI stats.
  rt::PodSandboxFilter sf;
  sf.mutable_state()->set_state(rt::SANDBOX_READY);
  auto sandboxes = runtime_->ListPodSandbox(&sf);
  if (!sandboxes.ok()) return sandboxes.status();
  rt::ContainerFilter cf;
  cf.mutable_state()->set_state(rt::CONTAINER_RUNNING);
  auto containers = runtime_->ListContainers(&cf);
  if (!containers.ok()) return containers.status();
  std::map<std::string, rt::ContainerStats> by_id;
  if (auto cs = runtime_->ListContainerStats(); cs.ok())
    for (auto& c : *cs) by_id[c.attributes().id()] = std::move(c);
  std::map<std::string, int> pids;
  for (const auto& sb : *sandboxes) {
    PodStats p;
    p.name = sb.metadata().name();
    p.namespace_ = sb.metadata().namespace_();
    p.uid = sb.metadata().uid();
    p.start_time = FromUnixNanos(sb.created_at());
    p.cpu.time = p.memory.time = now;
    for (const auto& c : *containers) {
      if (c.pod_sandbox_id() != sb.id()) continue;
      ContainerStats cs;
      cs.name = c.metadata().name();
      cs.id = c.id();
      cs.image = ImageName(c, now);
      cs.start_time = FromUnixNanos(c.created_at());
      cs.cpu.time = cs.memory.time = now;
      if (auto it = by_id.find(c.id()); it != by_id.end()) {
        const auto& st = it->second;
        cs.cpu.usage_core_nano_seconds = st.cpu().usage_core_nano_seconds().value();
        cs.cpu.usage_nano_cores = Rate("c/" + c.id(), now, cs.cpu.usage_core_nano_seconds);
        cs.memory.working_set_bytes = st.memory().working_set_bytes().value();
        cs.memory.usage_bytes = st.memory().usage_bytes().value();
        cs.memory.rss_bytes = st.memory().rss_bytes().value();
        cs.memory.page_faults = st.memory().page_faults().value();
        cs.memory.major_page_faults = st.memory().major_page_faults().value();
        if (st.has_writable_layer() && n.image_fs) {
          FsStats f = *n.image_fs;
          f.used_bytes = st.writable_layer().used_bytes().value();
          f.inodes_used = st.writable_layer().inodes_used().value();
          cs.rootfs = f;
          p.ephemeral_used_bytes += f.used_bytes;
        }
      }
      p.containers.push_back(cs);
    }
    // Pod cpu and memory from its cgroup (everything in the pod, the sandbox included), else the containers' sum.
    std::optional<cm::CgroupName> pod_cg = cm_ ? cm_->FindPodCgroup(p.uid) : std::nullopt;
    if (pod_cg && cg) {
      // cAdvisor's ids: the cgroup paths, a container's named as containerd names it under the pod's.
      bool systemd = cg->driver() == "systemd";
      p.cgroup_path = systemd ? cm::ToSystemd(*pod_cg) : cm::ToCgroupfs(*pod_cg);
      for (auto& c : p.containers)
        c.cgroup_path = p.cgroup_path + "/" + (systemd ? "cri-containerd-" + c.id + ".scope" : c.id);
    }
    auto pod_cpu = pod_cg ? cg->CpuStats(*pod_cg) : absl::NotFoundError("");
    auto pod_mem = pod_cg ? cg->MemoryStats(*pod_cg) : absl::NotFoundError("");
    if (pod_cpu.ok() && pod_mem.ok()) {
      p.cpu.usage_core_nano_seconds = pod_cpu->usage_nanos;
      p.memory = FromCgroup(*pod_mem, now);
      if (pod_mem->limit > 0)
        p.memory.available_bytes = pod_mem->limit > pod_mem->working_set ? pod_mem->limit - pod_mem->working_set : 0;
      p.process_count = cg->Pids(*pod_cg).size();
    } else {
      for (const auto& c : p.containers) {
        p.cpu.usage_core_nano_seconds += c.cpu.usage_core_nano_seconds;
        p.memory.usage_bytes += c.memory.usage_bytes;
        p.memory.working_set_bytes += c.memory.working_set_bytes;
        p.memory.rss_bytes += c.memory.rss_bytes;
      }
    }
    p.cpu.usage_nano_cores = Rate("p/" + p.uid, now, p.cpu.usage_core_nano_seconds);
    // Network: the sandbox's namespace, through its pid (asked of the runtime once per sandbox).
    int pid = 0;
    if (auto it = sandbox_pids_.find(sb.id()); it != sandbox_pids_.end()) {
      pid = it->second;
    } else if (auto st = runtime_->PodSandboxStatus(sb.id(), true); st.ok()) {
      auto info = st->info().find("info");
      if (info != st->info().end()) {
        json j = json::parse(info->second, nullptr, false);
        if (j.is_object()) pid = j.value("pid", 0);
      }
    }
    pids[sb.id()] = pid;
    if (pid > 0) p.network = NetDev(o_.proc_dir + "/" + std::to_string(pid) + "/net/dev", now);
    // Logs per container (the log folder holds one folder per container), then emptyDir volumes on disk.
    std::string log_dir = o_.pod_logs_dir + "/" + p.namespace_ + "_" + p.name + "_" + p.uid;
    for (auto& c : p.containers) {
      c.logs_used_bytes = DirBytes(log_dir + "/" + c.name);
      p.ephemeral_used_bytes += c.logs_used_bytes;
    }
    std::string empty_dirs = (o_.pods_dir.empty() ? o_.root_dir + "/pods" : o_.pods_dir) + "/" + p.uid +
                             "/volumes/kubernetes.io~empty-dir";
    std::error_code ec;
    for (const auto& v : fs::directory_iterator(empty_dirs, ec)) {
      uint64_t used = DirBytes(v.path().string());
      p.volume_used_bytes[v.path().filename().string()] = used;
      p.ephemeral_used_bytes += used;
      // As upstream's du-based metrics: the bytes under the folder, the filesystem's capacity and free space.
      VolumeStats vs;
      vs.name = v.path().filename().string();
      if (auto f = StatFs(v.path().string(), now)) vs.fs = *f;
      vs.fs.time = now;
      vs.fs.used_bytes = used;
      p.volumes.push_back(std::move(vs));
    }
    if (o_.pod_volume_stats)
      for (auto& vs : o_.pod_volume_stats(p.uid)) p.volumes.push_back(std::move(vs));
    s.pods.push_back(std::move(p));
  }
  sandbox_pids_ = std::move(pids);
  samples_ = std::move(next_samples_);
  next_samples_.clear();
  return s;
}

}  // namespace kubelet::stats

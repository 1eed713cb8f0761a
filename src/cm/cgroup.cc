#include "kubelet/cm/cgroup.h"

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "kubelet/util/mount.h"

namespace kubelet::cm {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, sep);) out.push_back(part);
  return out;
}

std::string Escape(std::string part) {
  std::replace(part.begin(), part.end(), '-', '_');
  return part;
}

std::string Unescape(std::string part) {
  std::replace(part.begin(), part.end(), '_', '-');
  return part;
}

absl::Status WriteValue(const std::string& dir, const std::string& file, const std::string& value) {
  std::string path = dir + "/" + file;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return absl::InternalError("failed to write \"" + value + "\" to " + path + ": " + std::strerror(errno));
  bool ok = std::fputs(value.c_str(), f) >= 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;  // cgroup files report errors at write-back
  if (!ok) {
    if (errno != 0) err = errno;
    return absl::InternalError("failed to write \"" + value + "\" to " + path + ": " + std::strerror(err));
  }
  return absl::OkStatus();
}

std::optional<std::string> ReadValue(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::optional<int64_t> ReadInt(const std::string& path) {
  auto v = ReadValue(path);
  if (!v || v->empty()) return std::nullopt;
  if (*v == "max") return -1;
  try {
    size_t used = 0;
    long long n = std::stoll(*v, &used);
    if (used != v->size()) return std::nullopt;
    return n;
  } catch (...) {
    return std::nullopt;
  }
}

// "key value" lines (memory.stat, cpu.stat).
std::map<std::string, uint64_t> ReadKeyed(const std::string& path) {
  std::map<std::string, uint64_t> out;
  std::ifstream in(path);
  std::string k;
  uint64_t v;
  while (in >> k >> v) out[k] = v;
  return out;
}

// Controllers the kubelet enables for its cgroups on v2.
const std::vector<std::string>& V2Controllers() {
  static const std::vector<std::string> k = {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"};
  return k;
}

}  // namespace

absl::StatusOr<CgroupLayout> DetectCgroupLayout(const std::string& mountinfo_path) {
  auto infos = mount::ListMountInfo(mountinfo_path);
  if (!infos.ok()) return infos.status();
  CgroupLayout layout;
  std::string unified;
  for (const auto& m : *infos) {
    if (m.fs_type == "cgroup2") {
      if (unified.empty() || m.mount_point == "/sys/fs/cgroup") unified = m.mount_point;
    } else if (m.fs_type == "cgroup") {
      for (const auto& opt : m.super_options) {
        if (opt == "rw" || opt == "ro" || opt.rfind("name=", 0) == 0 || opt.find('=') != std::string::npos) continue;
        if (opt == "clone_children" || opt == "noprefix" || opt == "xattr") continue;
        layout.v1[opt] = m.mount_point;
      }
    }
  }
  if (!layout.v1.empty()) {
    layout.version = CgroupVersion::kV1;
    return layout;
  }
  if (!unified.empty()) {
    layout.version = CgroupVersion::kV2;
    layout.unified = unified;
    return layout;
  }
  return absl::FailedPreconditionError("no cgroup hierarchy is mounted (" + mountinfo_path + ")");
}

std::string ToCgroupfs(const CgroupName& name) {
  std::string out;
  for (const auto& part : name) out += "/" + part;
  return out.empty() ? "/" : out;
}

std::string ToSystemd(const CgroupName& name) {
  if (name.empty() || (name.size() == 1 && name[0].empty())) return "/";
  std::string out, prefix;
  for (const auto& part : name) {
    prefix += (prefix.empty() ? "" : "-") + Escape(part);
    out += "/" + prefix + ".slice";
  }
  return out;
}

CgroupName ParseCgroupfs(const std::string& path) {
  CgroupName out;
  for (const auto& part : Split(path, '/'))
    if (!part.empty()) out.push_back(part);
  return out;
}

CgroupName ParseSystemd(const std::string& path) {
  std::string base = fs::path(path).filename().string();
  if (base.empty() || path == "/") return {};
  const std::string suffix = ".slice";
  if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
    base = base.substr(0, base.size() - suffix.size());
  if (base == "-") return {};
  CgroupName out;
  for (const auto& part : Split(base, '-')) out.push_back(Unescape(part));
  return out;
}

uint64_t MilliCPUToShares(int64_t milli_cpu) {
  if (milli_cpu <= 0) return kMinShares;
  uint64_t shares = static_cast<uint64_t>(milli_cpu) * 1024 / 1000;
  return std::clamp(shares, kMinShares, kMaxShares);
}

int64_t MilliCPUToQuota(int64_t milli_cpu, int64_t period_us) {
  if (milli_cpu <= 0) return 0;
  int64_t quota = milli_cpu * period_us / 1000;
  return std::max(quota, kMinQuotaPeriod);
}

uint64_t CpuSharesToCpuWeight(uint64_t shares) {
  shares = std::clamp(shares, kMinShares, kMaxShares);
  return 1 + ((shares - 2) * 9999) / 262142;
}

CgroupManager::CgroupManager(CgroupLayout layout, std::string driver)
    : layout_(std::move(layout)), driver_(std::move(driver)) {}

std::string CgroupManager::Name(const CgroupName& name) const {
  return driver_ == "systemd" ? ToSystemd(name) : ToCgroupfs(name);
}

std::string CgroupManager::Dir(const CgroupName& name, const std::string& controller) const {
  std::string mount;
  if (layout_.version == CgroupVersion::kV2) {
    mount = layout_.unified;
  } else {
    auto it = layout_.v1.find(controller);
    if (it == layout_.v1.end()) return "";
    mount = it->second;
  }
  std::string rel = Name(name);
  return rel == "/" ? mount : mount + rel;
}

std::vector<std::string> CgroupManager::Hierarchies(const CgroupName& name) const {
  if (layout_.version == CgroupVersion::kV2) return {Dir(name, "")};
  std::set<std::string> mounts;
  std::vector<std::string> out;
  for (const auto& [controller, mount] : layout_.v1)
    if (mounts.insert(mount).second) out.push_back(Dir(name, controller));
  return out;
}

bool CgroupManager::Exists(const CgroupName& name) const {
  std::error_code ec;
  if (layout_.version == CgroupVersion::kV2) return fs::is_directory(Dir(name, ""), ec);
  for (const char* c : {"cpu", "cpuacct", "cpuset", "memory", "pids"}) {
    std::string d = Dir(name, c);
    if (d.empty()) {
      if (std::string(c) == "pids") continue;  // optional on old kernels
      return false;
    }
    if (!fs::is_directory(d, ec)) return false;
  }
  return true;
}

absl::Status CgroupManager::Create(const CgroupName& name, const ResourceConfig& rc) {
  std::error_code ec;
  if (layout_.version == CgroupVersion::kV2) {
    // Each level hands the controllers down to the next: cgroup.subtree_control of every ancestor.
    std::string dir = layout_.unified;
    CgroupName prefix;
    for (size_t i = 0; i < name.size(); ++i) {
      auto available = ReadValue(dir + "/cgroup.controllers").value_or("");
      auto enabled = ReadValue(dir + "/cgroup.subtree_control").value_or("");
      std::set<std::string> have;
      for (const auto& c : Split(available, ' ')) have.insert(c);
      std::set<std::string> on;
      for (const auto& c : Split(enabled, ' ')) on.insert(c);
      for (const auto& c : V2Controllers())
        if (have.count(c) && !on.count(c))
          if (auto st = WriteValue(dir, "cgroup.subtree_control", "+" + c); !st.ok()) return st;
      prefix.push_back(name[i]);
      dir = Dir(prefix, "");
      if (!fs::is_directory(dir, ec) && !fs::create_directory(dir, ec) && ec)
        return absl::InternalError("failed to create cgroup " + dir + ": " + ec.message());
    }
    return Apply(name, rc);
  }
  for (const auto& [controller, mount] : layout_.v1) {
    // Create level by level so a new cpuset level gets its parent's cpus and mems (a v1 cpuset starts empty).
    CgroupName prefix;
    for (const auto& part : name) {
      std::string parent = Dir(prefix, controller);
      prefix.push_back(part);
      std::string dir = Dir(prefix, controller);
      if (fs::is_directory(dir, ec)) continue;
      if (!fs::create_directory(dir, ec) && ec)
        return absl::InternalError("failed to create cgroup " + dir + ": " + ec.message());
      if (controller == "cpuset") {
        for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
          auto mine = ReadValue(dir + "/" + f);
          if (mine && !mine->empty()) continue;
          auto from = ReadValue(parent + "/" + f);
          if (from && !from->empty())
            if (auto st = WriteValue(dir, f, *from); !st.ok()) return st;
        }
      }
    }
  }
  return Apply(name, rc);
}

absl::Status CgroupManager::Update(const CgroupName& name, const ResourceConfig& rc) {
  if (!Exists(name)) return absl::NotFoundError("cgroup " + Name(name) + " does not exist");
  return Apply(name, rc);
}

absl::Status CgroupManager::Apply(const CgroupName& name, const ResourceConfig& rc) {
  auto write = [&](const std::string& controller, const std::string& file, const std::string& value) -> absl::Status {
    std::string dir = Dir(name, controller);
    if (dir.empty()) return absl::OkStatus();  // controller not mounted
    return WriteValue(dir, file, value);
  };
  if (layout_.version == CgroupVersion::kV2) {
    if (rc.cpu_shares)
      if (auto st = write("cpu", "cpu.weight", std::to_string(CpuSharesToCpuWeight(*rc.cpu_shares))); !st.ok()) return st;
    if (rc.cpu_quota || rc.cpu_period) {
      std::string quota = rc.cpu_quota && *rc.cpu_quota > 0 ? std::to_string(*rc.cpu_quota) : "max";
      std::string period = std::to_string(rc.cpu_period.value_or(100000));
      if (auto st = write("cpu", "cpu.max", quota + " " + period); !st.ok()) return st;
    }
    if (rc.memory)
      if (auto st = write("memory", "memory.max", *rc.memory > 0 ? std::to_string(*rc.memory) : "max"); !st.ok()) return st;
  } else {
    if (auto st = ApplyV1CpuMemory(name, rc); !st.ok()) return st;
  }
  // pids.max and cpuset.cpus are the same files on both versions.
  if (rc.pids_limit)
    if (auto st = write("pids", "pids.max", *rc.pids_limit > 0 ? std::to_string(*rc.pids_limit) : "max"); !st.ok()) return st;
  if (rc.cpuset_cpus)
    if (auto st = write("cpuset", "cpuset.cpus", *rc.cpuset_cpus); !st.ok()) return st;
  return absl::OkStatus();
}

absl::Status CgroupManager::ApplyV1CpuMemory(const CgroupName& name, const ResourceConfig& rc) {
  auto write = [&](const std::string& controller, const std::string& file, const std::string& value) -> absl::Status {
    std::string dir = Dir(name, controller);
    if (dir.empty()) return absl::OkStatus();  // controller not mounted
    return WriteValue(dir, file, value);
  };
  if (rc.cpu_shares)
    if (auto st = write("cpu", "cpu.shares", std::to_string(*rc.cpu_shares)); !st.ok()) return st;
  if (rc.cpu_period)
    if (auto st = write("cpu", "cpu.cfs_period_us", std::to_string(*rc.cpu_period)); !st.ok()) return st;
  if (rc.cpu_quota)
    if (auto st = write("cpu", "cpu.cfs_quota_us", std::to_string(*rc.cpu_quota > 0 ? *rc.cpu_quota : -1)); !st.ok())
      return st;
  if (rc.memory)
    if (auto st = write("memory", "memory.limit_in_bytes", std::to_string(*rc.memory > 0 ? *rc.memory : -1)); !st.ok())
      return st;
  return absl::OkStatus();
}

std::vector<int> CgroupManager::Pids(const CgroupName& name) const {
  std::string dir;
  if (layout_.version == CgroupVersion::kV2) {
    dir = Dir(name, "");
  } else {
    for (const char* c : {"pids", "memory", "cpu"})
      if (dir = Dir(name, c); !dir.empty()) break;
  }
  std::vector<int> out;
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return out;
  auto collect = [&](const std::string& d) {
    std::ifstream in(d + "/cgroup.procs");
    for (int pid; in >> pid;) out.push_back(pid);
  };
  collect(dir);
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) collect(it->path().string());
  return out;
}

std::vector<CgroupName> CgroupManager::Children(const CgroupName& name) const {
  std::string dir = Dir(name, layout_.version == CgroupVersion::kV2 ? "" : "cpu");
  if (dir.empty()) dir = Dir(name, "memory");
  std::vector<CgroupName> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_directory(ec)) continue;
    std::string base = e.path().filename().string();
    if (driver_ == "systemd") {
      if (base.size() < 6 || base.substr(base.size() - 6) != ".slice") continue;
      out.push_back(ParseSystemd(base));
    } else {
      CgroupName child = name;
      child.push_back(base);
      out.push_back(child);
    }
  }
  return out;
}

absl::Status CgroupManager::Destroy(const CgroupName& name) {
  // Whatever still runs inside goes first (upstream kills a terminated pod's leftovers the same way).
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto pids = Pids(name);
    if (pids.empty()) break;
    for (int pid : pids)
      if (pid > 1 && pid != ::getpid()) ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20 * (attempt + 1)));
  }
  absl::Status first;
  std::error_code ec;
  for (const auto& dir : Hierarchies(name)) {
    if (dir.empty() || !fs::is_directory(dir, ec)) continue;
    // Children first (deepest paths first), then the cgroup itself.
    std::vector<std::string> dirs;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_directory(ec)) dirs.push_back(it->path().string());
    std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    dirs.push_back(dir);
    for (const auto& d : dirs) {
      bool removed = false;
      for (int attempt = 0; attempt < 10 && !removed; ++attempt) {
        if (::rmdir(d.c_str()) == 0 || errno == ENOENT) {
          removed = true;
        } else if (errno == ENOTEMPTY) {
          // A plain directory standing in for a cgroup (tests): its files go first.
          for (const auto& f : fs::directory_iterator(d, ec))
            if (f.is_regular_file(ec)) fs::remove(f.path(), ec);
        } else if (errno == EBUSY) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20 * (attempt + 1)));
        } else {
          break;
        }
      }
      if (!removed && first.ok())
        first = absl::InternalError("failed to remove cgroup " + d + ": " + std::strerror(errno));
    }
  }
  return first;
}

absl::StatusOr<CgroupMemoryStats> CgroupManager::MemoryStats(const CgroupName& name) const {
  std::string dir = Dir(name, "memory");
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return absl::NotFoundError("no memory cgroup " + Name(name));
  // The same figures under each version's file and key names.
  struct Names {
    const char *usage, *limit, *inactive_file, *rss, *pgfault, *pgmajfault;
  };
  static const Names kV1 = {"memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file", "total_rss",
                            "total_pgfault", "total_pgmajfault"};
  static const Names kV2 = {"memory.current", "memory.max", "inactive_file", "anon", "pgfault", "pgmajfault"};
  const Names& n = layout_.version == CgroupVersion::kV2 ? kV2 : kV1;
  CgroupMemoryStats s;
  s.usage = static_cast<uint64_t>(std::max<int64_t>(0, ReadInt(dir + "/" + n.usage).value_or(0)));
  auto st = ReadKeyed(dir + "/memory.stat");
  uint64_t inactive = st[n.inactive_file];
  s.working_set = s.usage > inactive ? s.usage - inactive : 0;
  s.rss = st[n.rss];
  s.page_faults = st[n.pgfault];
  s.major_page_faults = st[n.pgmajfault];
  // "max" (v2) reads as -1; v1's "no limit" is a huge page-rounded number.
  int64_t limit = ReadInt(dir + "/" + n.limit).value_or(-1);
  s.limit = limit > 0 && limit < (int64_t{1} << 62) ? static_cast<uint64_t>(limit) : 0;
  return s;
}

absl::StatusOr<CgroupCpuStats> CgroupManager::CpuStats(const CgroupName& name) const {
  CgroupCpuStats s;
  std::error_code ec;
  if (layout_.version == CgroupVersion::kV2) {
    std::string dir = Dir(name, "cpu");
    if (!fs::is_directory(dir, ec)) return absl::NotFoundError("no cgroup " + Name(name));
    s.usage_nanos = ReadKeyed(dir + "/cpu.stat")["usage_usec"] * 1000;
    return s;
  }
  std::string dir = Dir(name, "cpuacct");
  if (dir.empty() || !fs::is_directory(dir, ec)) return absl::NotFoundError("no cpuacct cgroup " + Name(name));
  s.usage_nanos = static_cast<uint64_t>(ReadInt(dir + "/cpuacct.usage").value_or(0));
  return s;
}

ResourceConfig CgroupManager::Read(const CgroupName& name) const {
  ResourceConfig rc;
  auto num = [&](const std::string& controller, const char* file) -> std::optional<int64_t> {
    std::string dir = Dir(name, controller);
    return dir.empty() ? std::nullopt : ReadInt(dir + "/" + file);
  };
  if (layout_.version == CgroupVersion::kV2) {
    if (auto w = num("cpu", "cpu.weight")) rc.cpu_weight = static_cast<uint64_t>(*w);
    if (auto max = ReadValue(Dir(name, "cpu") + "/cpu.max")) {
      auto parts = Split(*max, ' ');
      if (parts.size() == 2) {
        rc.cpu_quota = parts[0] == "max" ? -1 : std::atoll(parts[0].c_str());
        rc.cpu_period = static_cast<uint64_t>(std::atoll(parts[1].c_str()));
      }
    }
    rc.memory = num("memory", "memory.max");
  } else {
    if (auto v = num("cpu", "cpu.shares")) rc.cpu_shares = static_cast<uint64_t>(*v);
    rc.cpu_quota = num("cpu", "cpu.cfs_quota_us");
    if (auto v = num("cpu", "cpu.cfs_period_us")) rc.cpu_period = static_cast<uint64_t>(*v);
    if (auto v = num("memory", "memory.limit_in_bytes")) rc.memory = *v >= (int64_t{1} << 62) ? -1 : *v;
  }
  rc.pids_limit = num("pids", "pids.max");
  if (auto v = ReadValue(Dir(name, "cpuset") + "/cpuset.cpus")) rc.cpuset_cpus = *v;
  return rc;
}

}  // namespace kubelet::cm

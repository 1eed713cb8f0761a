#include "kubelet/util/mount.h"

#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kubelet::mount {
namespace {

std::vector<std::string_view> Fields(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The kernel writes space, tab, newline and backslash in paths as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    auto digit = [&](size_t j, char max) { return s[j] >= '0' && s[j] <= max; };
    if (s[i] == '\\' && i + 3 < s.size() && digit(i + 1, '3') && digit(i + 2, '7') && digit(i + 3, '7')) {
      out.push_back(static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

bool Within(const std::string& path, const std::string& base) {
  if (base == "/") return !path.empty() && path[0] == '/';
  return path == base || (path.size() > base.size() && path.compare(0, base.size(), base) == 0 && path[base.size()] == '/');
}

std::vector<MountInfo> Read(const std::string& file) {
  auto infos = ListMountInfo(file);
  return infos.ok() ? std::move(*infos) : std::vector<MountInfo>{};
}

}  // namespace

std::vector<MountInfo> ParseMountInfo(std::string_view text) {
  std::vector<MountInfo> out;
  for (std::string_view line : Fields(text, '\n')) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    auto f = Fields(line, ' ');
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash < 6 || dash + 1 >= f.size()) continue;
    MountInfo m;
    if (!ParseInt(f[0], &m.id) || !ParseInt(f[1], &m.parent_id)) continue;
    m.root = Unescape(f[3]);
    m.mount_point = Unescape(f[4]);
    for (auto o : Fields(f[5], ',')) m.options.emplace_back(o);
    for (size_t i = 6; i < dash; ++i) m.optional_fields.emplace_back(f[i]);
    m.fs_type = std::string(f[dash + 1]);
    if (dash + 2 < f.size()) m.source = Unescape(f[dash + 2]);
    if (dash + 3 < f.size())
      for (auto o : Fields(f[dash + 3], ',')) m.super_options.emplace_back(o);
    out.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<std::vector<MountInfo>> ListMountInfo(const std::string& file) {
  std::ifstream in(file);
  if (!in) return absl::FailedPreconditionError("cannot read " + file);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseMountInfo(ss.str());
}

bool IsMountPoint(const std::string& path, const std::string& file) {
  for (const auto& m : Read(file))
    if (m.mount_point == path) return true;
  return false;
}

std::vector<std::string> MountsUnder(const std::string& prefix, const std::string& file) {
  std::vector<std::string> out;
  for (const auto& m : Read(file))
    if (Within(m.mount_point, prefix)) out.push_back(m.mount_point);
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() > b.size() : a < b;
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

absl::StatusOr<MountInfo> FindMountInfo(const std::string& path, const std::string& file) {
  auto infos = ListMountInfo(file);
  if (!infos.ok()) return infos.status();
  // Later entries are mounted over earlier ones: the last match is the mount that holds the path.
  for (auto it = infos->rbegin(); it != infos->rend(); ++it)
    if (Within(path, it->mount_point)) return *it;
  return absl::NotFoundError("cannot find mount point for \"" + path + "\"");
}

absl::Status MakeRShared(const std::string& path, const std::string& file) {
  auto info = FindMountInfo(path, file);
  if (!info.ok()) return info.status();
  for (const auto& opt : info->optional_fields)
    if (opt.rfind("shared:", 0) == 0) return absl::OkStatus();
  if (info->mount_point != path && ::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return absl::InternalError("bind mount " + path + " onto itself: " + std::strerror(errno));
  if (::mount(nullptr, path.c_str(), nullptr, MS_SHARED | MS_REC, nullptr) != 0)
    return absl::InternalError("make " + path + " rshared: " + std::strerror(errno));
  return absl::OkStatus();
}

}  // namespace kubelet::mount

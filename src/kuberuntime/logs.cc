#include "kubelet/kuberuntime/logs.h"

#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <thread>
#include <vector>

namespace kubelet::kuberuntime {

bool ParseCRILogLine(const std::string& line, CRILogRecord* out) {
  size_t a = line.find(' ');
  if (a == std::string::npos) return false;
  size_t b = line.find(' ', a + 1);
  if (b == std::string::npos) return false;
  std::string ts = line.substr(0, a);
  if (!ParseRFC3339(ts, &out->time)) return false;
  out->stream = line.substr(a + 1, b - a - 1);
  if (out->stream != "stdout" && out->stream != "stderr") return false;
  // The tag field (P or F, possibly more flags separated by ':') is optional in old runtimes.
  size_t c = line.find(' ', b + 1);
  std::string tag = c == std::string::npos ? line.substr(b + 1) : line.substr(b + 1, c - b - 1);
  if (tag == "P" || tag == "F" || tag.rfind("P:", 0) == 0 || tag.rfind("F:", 0) == 0) {
    out->partial = tag[0] == 'P';
    out->content = c == std::string::npos ? "" : line.substr(c + 1);
  } else {
    out->partial = false;
    out->content = line.substr(b + 1);
  }
  return true;
}

std::string ContainerLogLinkName(const std::string& pod, const std::string& ns, const std::string& container,
                                 const std::string& container_id) {
  return pod + "_" + ns + "_" + container + "-" + container_id + ".log";
}

namespace {

std::string Render(const CRILogRecord& r, bool timestamps) {
  std::string out;
  if (timestamps) out = FormatRFC3339Nano(r.time) + " ";
  out += r.content;
  if (!r.partial) out += "\n";
  return out;
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

absl::Status ReadLogs(const std::string& path, const LogOptions& o, const std::function<bool(const std::string&)>& write,
                      const std::function<bool()>& running) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("failed to open log file \"" + path + "\"");
  ino_t inode = Inode(path);
  int64_t budget = o.limit_bytes.value_or(-1);
  // Emits one record within the byte limit; false once the limit or the writer says stop.
  auto emit = [&](const CRILogRecord& r) {
    if (o.since_time && r.time < *o.since_time) return true;
    std::string text = Render(r, o.timestamps);
    if (budget >= 0) {
      if (budget == 0) return false;
      if (static_cast<int64_t>(text.size()) > budget) text.resize(static_cast<size_t>(budget));
      budget -= static_cast<int64_t>(text.size());
    }
    return write(text) && budget != 0;
  };

  // What is there now: all of it, or the last tail_lines full lines.
  std::string line;
  std::vector<CRILogRecord> records;
  std::deque<size_t> line_starts;  // record index where each full line begins (for tail)
  bool line_open = false;
  while (std::getline(in, line)) {
    if (in.eof()) {
      // No newline at the end: the runtime is mid-write; re-read it when following.
      in.clear();
      in.seekg(-static_cast<std::streamoff>(line.size()), std::ios::cur);
      break;
    }
    CRILogRecord r;
    if (!ParseCRILogLine(line, &r)) continue;
    if (!line_open) line_starts.push_back(records.size());
    line_open = r.partial;
    records.push_back(std::move(r));
    if (o.tail_lines && static_cast<int64_t>(line_starts.size()) > *o.tail_lines + 1) {
      // Keep memory bounded: drop lines that can no longer be in the tail.
      size_t drop = line_starts[1];
      records.erase(records.begin(), records.begin() + static_cast<std::ptrdiff_t>(drop));
      line_starts.pop_front();
      for (auto& s : line_starts) s -= drop;
    }
  }
  size_t first = 0;
  if (o.tail_lines) {
    int64_t n = std::max<int64_t>(0, *o.tail_lines);
    int64_t full = static_cast<int64_t>(line_starts.size());
    first = n >= full ? 0 : (n == 0 ? records.size() : line_starts[static_cast<size_t>(full - n)]);
  }
  for (size_t i = first; i < records.size(); ++i)
    if (!emit(records[i])) return absl::OkStatus();
  if (!o.follow) return absl::OkStatus();

  // Follow: poll for more; a new inode at the path means the log was rotated.
  std::string pending;
  while (true) {
    bool got = false;
    char buf[8192];
    while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
      pending.append(buf, static_cast<size_t>(in.gcount()));
      got = true;
      if (in.eof()) break;
    }
    in.clear();
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      CRILogRecord r;
      if (ParseCRILogLine(pending.substr(0, nl), &r) && !emit(r)) return absl::OkStatus();
      pending.erase(0, nl + 1);
    }
    if (got) continue;
    ino_t now = Inode(path);
    if (now != 0 && now != inode) {
      // Rotated: finish the old file (done above) and continue with the new one from its start.
      in.close();
      in.open(path, std::ios::binary);
      if (!in) return absl::OkStatus();
      inode = now;
      pending.clear();
      continue;
    }
    if (running && !running()) return absl::OkStatus();
    if (!write("")) return absl::OkStatus();  // the client went away
    std::this_thread::sleep_for(o.poll);
  }
}

std::string TailLogText(const std::string& path, int lines, size_t max_bytes) {
  std::string out;
  LogOptions o;
  o.tail_lines = lines;
  (void)ReadLogs(path, o, [&](const std::string& s) {
    out += s;
    return true;
  });
  if (out.size() > max_bytes) out = out.substr(out.size() - max_bytes);
  return out;
}

}  // namespace kubelet::kuberuntime

#include "kubelet/server/node_logs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <vector>

namespace kubelet::server {
namespace {

Response Plain(int code, const std::string& body) { return Response{code, "text/plain; charset=utf-8", body, {}}; }

// Go's path.Clean of "/" + p: no "." or ".." segments, no double slashes; ".." at the root stays at the root.
std::string CleanPath(const std::string& p) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    std::string seg = p.substr(i, j - i);
    if (seg == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!seg.empty() && seg != ".") {
      parts.push_back(seg);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& s : parts) out += "/" + s;
  return out.empty() ? "/" : out;
}

std::string Base(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  size_t at = s.find_last_of('/');
  return at == std::string::npos ? s : s.substr(at + 1);
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// url.URL{Path: name}.String() for a relative name: what a path segment may not hold is %XX (and a ':' in the first
// segment, which would read as a scheme).
std::string PathEscape(const std::string& s) {
  std::string out;
  bool first_segment = true;
  for (unsigned char c : s) {
    if (c == '/') first_segment = false;
    bool keep = std::isalnum(c) || std::string("-_.~!$&'()*+,;=@/").find(static_cast<char>(c)) != std::string::npos ||
                (c == ':' && !first_segment);
    if (keep) {
      out += static_cast<char>(c);
    } else {
      static const char* kHex = "0123456789ABCDEF";
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (first_segment && s.find(':') != std::string::npos) out = "./" + out;
  return out;
}

Response OpenError(int err) {
  if (err == ENOENT || err == ENOTDIR) return Plain(404, "404 page not found\n");
  if (err == EACCES || err == EPERM) return Plain(403, "403 Forbidden\n");
  return Plain(500, "500 Internal Server Error\n");
}

Response Redirect(const std::string& to) {
  Response r{301, "text/html; charset=utf-8", "<a href=\"" + HtmlEscape(to) + "\">Moved Permanently</a>.\n\n", {}};
  r.headers["Location"] = to;
  return r;
}

std::string HttpDate(time_t t) {
  tm g{};
  gmtime_r(&t, &g);
  char buf[64];
  strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &g);
  return buf;
}

// Go's DetectContentType for what log directories hold: text, gzip, or bytes.
std::string ContentType(const std::string& name, const std::string& head) {
  auto ends = [&](const char* ext) {
    std::string e = ext;
    return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".gz")) return "application/gzip";
  if (ends(".json")) return "application/json";
  if (ends(".html") || ends(".htm")) return "text/html; charset=utf-8";
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f && static_cast<unsigned char>(head[1]) == 0x8b)
    return "application/x-gzip";
  for (unsigned char c : head)
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b) return "application/octet-stream";
  return "text/plain; charset=utf-8";
}

}  // namespace

Response ServeNodeLogs(const std::string& root, const std::string& rel) {
  if (rel.find('\0') != std::string::npos) return Plain(400, "400 Bad Request\n");
  const std::string url = rel.empty() ? "/" : (rel[0] == '/' ? rel : "/" + rel);
  const std::string name = CleanPath(url);
  // Go's FileServer: ".../index.html" is redirected to its directory.
  if (url.size() >= 11 && url.compare(url.size() - 11, 11, "/index.html") == 0) return Redirect("./");
  const std::string full = root + (name == "/" ? "" : name);
  int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return OpenError(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return OpenError(e);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    if (url.back() != '/') return Redirect(Base(url) + "/");
    DIR* d = ::opendir(full.c_str());
    if (!d) return OpenError(errno);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      struct stat es {};
      if (::fstatat(dirfd(d), n.c_str(), &es, 0) == 0 && S_ISDIR(es.st_mode)) n += "/";
      names.push_back(n);
      if (names.size() > 100000) break;  // a bounded listing
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    std::string body = "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n";
    for (const auto& n : names) body += "<a href=\"" + PathEscape(n) + "\">" + HtmlEscape(n) + "</a>\n";
    body += "</pre>\n";
    Response r{200, "text/html; charset=utf-8", body, {}};
    r.headers["Last-Modified"] = HttpDate(st.st_mtime);
    return r;
  }
  if (url.back() == '/') {
    ::close(fd);
    return Redirect("../" + Base(url));
  }
  if (!S_ISREG(st.st_mode)) {
    // A FIFO or device under /var/log would block or never end: not served.
    ::close(fd);
    return Plain(403, "403 Forbidden\n");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  char head[512];
  ssize_t n = ::pread(fd, head, sizeof(head), 0);
  Response r;
  r.content_type = ContentType(name, std::string(head, n > 0 ? static_cast<size_t>(n) : 0));
  r.headers["Last-Modified"] = HttpDate(st.st_mtime);
  // The file's size at open: a log growing meanwhile is served as it was, and a large one never sits in memory.
  off_t size = st.st_size;
  r.stream = [fd, size](const ChunkWriter& write) {
    char buf[64 * 1024];
    off_t sent = 0;
    while (sent < size) {
      ssize_t got = ::pread(fd, buf, static_cast<size_t>(std::min<off_t>(sizeof(buf), size - sent)), sent);
      if (got <= 0 || !write(std::string(buf, static_cast<size_t>(got)))) break;
      sent += got;
    }
    ::close(fd);
  };
  return r;
}

}  // namespace kubelet::server

#include "kubelet/server/streaming.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "kubelet/util/logging.h"

namespace kubelet::server {
namespace {

constexpr int kDialTimeoutMs = 10000;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// A TCP connection to host:port within the dial deadline; -1 with *err set otherwise.
int Dial(const std::string& host, int port, std::string* err) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
    *err = gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int so = 0;
      socklen_t len = sizeof(so);
      if (::poll(&p, 1, kDialTimeoutMs) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) == 0 && so == 0) {
        rc = 0;
      } else {
        errno = so ? so : ETIMEDOUT;
      }
    }
    if (rc == 0) {
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      break;
    }
    *err = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

// The backend side of a stream: a TCP connection, TLS on top for an https:// URL.
class Backend {
 public:
  ~Backend() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool Connect(const StreamURL& u, const StreamTLS* tls, std::string* err) {
    fd_ = Dial(u.host, u.port, err);
    if (fd_ < 0) return false;
    if (!u.tls) return true;
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (tls && !tls->cert_file.empty() &&
        (SSL_CTX_use_certificate_chain_file(ctx_, tls->cert_file.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx_, tls->key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
      *err = "cannot load client certificate " + tls->cert_file;
      return false;
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, u.host.c_str());
    timeval tv{kDialTimeoutMs / 1000, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (SSL_connect(ssl_) != 1) {
      *err = "TLS handshake failed";
      return false;
    }
    timeval none{0, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    return true;
  }
  int fd() const { return fd_; }
  bool Buffered() const { return ssl_ && SSL_pending(ssl_) > 0; }
  ssize_t Recv(char* buf, size_t n) {
    if (!ssl_) return ::recv(fd_, buf, n, 0);
    int r = SSL_read(ssl_, buf, static_cast<int>(n));
    if (r > 0) return r;
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -2;  // no application data yet
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
  }
  bool Send(const char* data, size_t n);
  void CloseWrite() {
    if (!ssl_) ::shutdown(fd_, SHUT_WR);
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 30000) <= 0) return false;
    ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool Backend::Send(const char* data, size_t n) {
  if (!ssl_) return SendAll(fd_, data, n);
  while (n > 0) {
    int w = SSL_write(ssl_, data, static_cast<int>(n));
    if (w <= 0) {
      int e = SSL_get_error(ssl_, w);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

absl::StatusOr<StreamURL> ParseStreamURL(const std::string& url) {
  StreamURL out;
  std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0) {
    scheme = "https://";
    out.tls = true;
    out.port = 443;
  } else if (url.rfind(scheme, 0) != 0) {
    return absl::InvalidArgumentError("streaming URL " + url + " is not an http:// or https:// URL");
  }
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  out.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!hostport.empty() && hostport[0] == '[') {  // [v6]:port
    size_t close = hostport.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("streaming URL " + url + ": bad host");
    out.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') out.port = std::atoi(hostport.c_str() + close + 2);
  } else if (size_t colon = hostport.rfind(':'); colon != std::string::npos) {
    out.host = hostport.substr(0, colon);
    out.port = std::atoi(hostport.c_str() + colon + 1);
  } else {
    out.host = hostport;
  }
  if (out.host.empty() || out.port <= 0 || out.port > 65535)
    return absl::InvalidArgumentError("streaming URL " + url + ": bad host or port");
  return out;
}

bool IsUpgradeRequest(const Request& req) {
  auto c = req.headers.find("connection");
  if (c == req.headers.end() || !req.headers.count("upgrade")) return false;
  return Lower(c->second).find("upgrade") != std::string::npos;
}

void ProxyStream(const Request& req, const std::string& url, UpgradedConn& client, Duration idle_timeout,
                 const StreamTLS* tls) {
  static auto log = log::Get("streaming");
  auto fail = [&](int code, const std::string& msg) {
    std::string body = msg;
    client.Write("HTTP/1.1 " + std::to_string(code) + (code == 400 ? " Bad Request" : " Internal Server Error") +
                 "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
                 "\r\nConnection: close\r\n\r\n" + body);
  };
  auto target = ParseStreamURL(url);
  if (!target.ok()) return fail(500, std::string(target.status().message()));
  std::string err;
  Backend backend;
  if (!backend.Connect(*target, tls, &err))
    return fail(500, "error dialing backend: dial tcp " + target->host + ":" + std::to_string(target->port) + ": " + err);
  // The client's request, now aimed at the runtime: its upgrade negotiation goes along, its credentials do not.
  std::string head = req.method + " " + target->target + " HTTP/1.1\r\nHost: " + target->host + ":" +
                     std::to_string(target->port) + "\r\n";
  for (const auto& [k, v] : req.headers) {
    if (k == "host" || k == "authorization" || k == "proxy-authorization" || k == "content-length") continue;
    head += k + ": " + v + "\r\n";
  }
  head += "Content-Length: " + std::to_string(req.body.size()) + "\r\n\r\n" + req.body;
  if (!backend.Send(head.data(), head.size())) {
    return fail(500, "error proxying the stream to " + target->host + ":" + std::to_string(target->port));
  }
  KLOG_V(log, 3)("Stream proxied path=\"{}\" backend=\"{}:{}\"", req.path, target->host, target->port);
  const int idle_ms = static_cast<int>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(idle_timeout).count(), 24LL * 3600 * 1000));
  char buf[32 * 1024];
  bool client_open = true;
  while (true) {
    // Bytes the client side holds in memory (TLS records, what came after the request head) go first.
    if (client_open && client.Buffered()) {
      ssize_t n = client.Read(buf, sizeof(buf), 0);
      if (n > 0 && !backend.Send(buf, static_cast<size_t>(n))) break;
      if (n == 0) client_open = false;
      continue;
    }
    if (backend.Buffered()) {
      ssize_t n = backend.Recv(buf, sizeof(buf));
      if (n == 0 || n == -1) break;
      if (n > 0 && !client.Write(std::string(buf, static_cast<size_t>(n)))) break;
      continue;
    }
    pollfd p[2] = {{backend.fd(), POLLIN, 0}, {client.fd(), static_cast<short>(client_open ? POLLIN : 0), 0}};
    int rc = ::poll(p, 2, idle_ms > 0 ? idle_ms : -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      KLOG_V(log, 2)("Stream idle, closing path=\"{}\" idleTimeout=\"{}ms\"", req.path, idle_ms);
      break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = backend.Recv(buf, sizeof(buf));
      if (n == 0 || n == -1) break;  // the runtime ended the stream
      if (n > 0 && !client.Write(std::string(buf, static_cast<size_t>(n)))) break;
    }
    if (client_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = client.Read(buf, sizeof(buf), 0);
      if (n > 0) {
        if (!backend.Send(buf, static_cast<size_t>(n))) break;
      } else {
        // The client is done sending: the runtime sees the end of its input and finishes its side.
        client_open = false;
        backend.CloseWrite();
      }
    }
  }
}

}  // namespace kubelet::server

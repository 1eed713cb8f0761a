#include "kubelet/server/http_server.h"
#include "kubelet/util/guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <mutex>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "kubelet/util/logging.h"

namespace kubelet::server {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxBodyBytes = 4 * 1024 * 1024;

const char* StatusText(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 201: return "Created";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string OpenSSLError() {
  unsigned long e = ERR_get_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; '+' is a space only in a query (as Go's url.QueryUnescape), never in a path.
std::string UrlDecode(std::string_view s, bool query) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 && HexDigit(s[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2]));
      i += 2;
    } else if (query && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

bool IsTokenChar(char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view TrimOWS(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// The peer's address without its port: what the per-client connection cap counts.
std::string PeerAddress(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof(buf));
  } else if (a.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof(buf));
  } else {
    return "local";
  }
  return buf;
}

}  // namespace

int ParseRequestHead(std::string_view head, Request* req, RequestHead* out) {
  constexpr size_t kMaxTarget = 16 * 1024;
  size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Request line: METHOD SP target SP HTTP/1.x, one space each (RFC 9112 3).
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return 400;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return 400;
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = line.substr(sp2 + 1);
  if (method.empty() || target.empty()) return 400;
  for (char c : method)
    if (!IsTokenChar(c)) return 400;
  if (target.size() > kMaxTarget) return 414;
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return 400;
  if (version.rfind("HTTP/", 0) != 0) return 400;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return 505;
  req->method = std::string(method);
  out->version = std::string(version);
  out->content_length = 0;
  std::optional<size_t> content_length;
  bool chunked = false;
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
  while (!rest.empty()) {
    eol = rest.find('\n');
    line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return 400;  // malformed header line
    std::string_view raw_name = line.substr(0, colon);
    for (char c : raw_name)
      if (!IsTokenChar(c)) return 400;  // also rejects whitespace before the colon (request smuggling)
    std::string name = Lower(raw_name);
    std::string_view value = TrimOWS(line.substr(colon + 1));
    for (char c : value)
      if (c == '\0' || c == '\r' || c == '\n') return 400;
    if (name == "content-length") {
      if (value.empty() || value.size() > 18) return 400;
      size_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return 400;
        n = n * 10 + static_cast<size_t>(c - '0');
      }
      if (content_length && *content_length != n) return 400;  // conflicting lengths
      content_length = n;
    } else if (name == "transfer-encoding") {
      if (Lower(value) != "identity") chunked = true;
    }
    auto [it, inserted] = req->headers.emplace(name, std::string(value));
    if (!inserted && name != "content-length") it->second += ", " + std::string(value);  // repeated: joined
  }
  // Request bodies come with a Content-Length here; a chunked body is not read (it would be taken for the next
  // request otherwise).
  if (chunked) return 501;
  if (content_length) out->content_length = *content_length;
  size_t qpos = target.find('?');
  req->path = UrlDecode(target.substr(0, qpos), false);
  req->query.clear();
  req->query_values.clear();
  if (qpos != std::string_view::npos) {
    std::string_view qs = target.substr(qpos + 1);
    while (!qs.empty()) {
      size_t amp = qs.find('&');
      std::string_view kv = qs.substr(0, amp);
      qs = amp == std::string_view::npos ? std::string_view() : qs.substr(amp + 1);
      if (kv.empty()) continue;
      size_t eq = kv.find('=');
      std::string key = UrlDecode(kv.substr(0, eq), true);
      std::string val = eq == std::string_view::npos ? "" : UrlDecode(kv.substr(eq + 1), true);
      req->query_values[key].push_back(val);  // every value of a repeated key (command=sh&command=-c)
      req->query.emplace(std::move(key), std::move(val));  // the first value of a repeated key, as Go's Get
    }
  }
  return 0;
}

namespace {

// One connection's byte stream, plain or TLS, with a deadline per operation.
class Conn {
 public:
  Conn(int fd, SSL* ssl, Duration io_timeout) : fd_(fd), ssl_(ssl), timeout_ms_(static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(io_timeout).count())) {}
  ~Conn() {
    if (ssl_) {
      SSL_shutdown(ssl_);
      SSL_free(ssl_);
    }
  }
  // Whether the peer hung up (checked without reading: a streaming response's client sends nothing).
  bool PeerClosed() {
    pollfd p{fd_, POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
  }
  int fd() const { return fd_; }
  bool Buffered() const { return ssl_ && SSL_pending(ssl_) > 0; }
  bool WaitReadable(int ms) {
    if (ssl_ && SSL_pending(ssl_) > 0) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR));
  }
  // Reads some bytes; 0 on EOF, -1 on error or timeout.
  ssize_t Read(char* buf, size_t n, int wait_ms) {
    if (!WaitReadable(wait_ms)) return -1;
    if (ssl_) {
      int r = SSL_read(ssl_, buf, static_cast<int>(n));
      if (r > 0) return r;
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      if (err == SSL_ERROR_WANT_READ) return Read(buf, n, timeout_ms_);
      return -1;
    }
    ssize_t r = ::recv(fd_, buf, n, 0);
    return r < 0 ? -1 : r;
  }
  bool WriteAll(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, timeout_ms_) <= 0) return false;
      ssize_t w;
      if (ssl_) {
        int r = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
        if (r <= 0) {
          int err = SSL_get_error(ssl_, r);
          if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) continue;
          return false;
        }
        w = r;
      } else {
        w = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          return false;
        }
      }
      off += static_cast<size_t>(w);
    }
    return true;
  }
  SSL* ssl() { return ssl_; }

 private:
  int fd_;
  SSL* ssl_;
  int timeout_ms_;
};

}  // namespace

HttpServer::HttpServer(ServerOptions options) : o_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(const std::string& path, Handler handler) { handlers_[path] = std::move(handler); }

absl::Status TLSSettings(const TLSOptions& o, std::string* openssl_ciphers, int* min_proto_version) {
  static const std::map<std::string, int> kVersions = {
      {"VersionTLS10", TLS1_VERSION}, {"VersionTLS11", TLS1_1_VERSION}, {"VersionTLS12", TLS1_2_VERSION}, {"VersionTLS13", TLS1_3_VERSION}};
  static const std::map<std::string, const char*> kSuites = {
      {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
      {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
      {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
      {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
      {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
      {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
      {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
      {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
      {"TLS_AES_128_GCM_SHA256", ""},
      {"TLS_AES_256_GCM_SHA384", ""},
      {"TLS_CHACHA20_POLY1305_SHA256", ""}};
  *min_proto_version = TLS1_2_VERSION;
  if (!o.min_version.empty()) {
    auto v = kVersions.find(o.min_version);
    if (v == kVersions.end()) return absl::InvalidArgumentError("unknown tls version \"" + o.min_version + "\"");
    *min_proto_version = v->second;
  }
  openssl_ciphers->clear();
  for (const auto& name : o.cipher_suites) {
    auto c = kSuites.find(name);
    if (c == kSuites.end()) return absl::InvalidArgumentError("unknown cipher suite \"" + name + "\"");
    if (*c->second) *openssl_ciphers += (openssl_ciphers->empty() ? "" : ":") + std::string(c->second);
  }
  return absl::OkStatus();
}

absl::Status HttpServer::Start() {
  // OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a client that hangs up
  // first (before our close_notify) must not kill the process with SIGPIPE.
  static std::once_flag sigpipe_once;
  std::call_once(sigpipe_once, [] { ::signal(SIGPIPE, SIG_IGN); });
  if (o_.tls) {
    std::string ciphers;
    int min_version = TLS1_2_VERSION;
    if (auto st = TLSSettings(o_.tls_options, &ciphers, &min_version); !st.ok()) return st;
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return absl::InternalError("TLS: " + OpenSSLError());
    SSL_CTX_set_min_proto_version(ctx, min_version);
    // Only TLS 1.3 suites named (or none that OpenSSL knows): TLS 1.2 and below have no cipher left, as Go's list.
    if (!o_.tls_options.cipher_suites.empty() &&
        SSL_CTX_set_cipher_list(ctx, ciphers.empty() ? "aNULL:!aNULL" : ciphers.c_str()) != 1 && !ciphers.empty()) {
      std::string err = OpenSSLError();
      SSL_CTX_free(ctx);
      return absl::InvalidArgumentError("tlsCipherSuites: " + err);
    }
    if (!o_.tls_options.certificate &&
        (SSL_CTX_use_certificate_chain_file(ctx, o_.tls_options.cert_file.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, o_.tls_options.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
      std::string err = OpenSSLError();
      SSL_CTX_free(ctx);
      return absl::InvalidArgumentError("failed to load serving certificate " + o_.tls_options.cert_file + " / " +
                                        o_.tls_options.key_file + ": " + err);
    }
    if (!o_.tls_options.client_ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, o_.tls_options.client_ca_file.c_str(), nullptr) != 1) {
        std::string err = OpenSSLError();
        SSL_CTX_free(ctx);
        return absl::InvalidArgumentError("failed to load client CA file " + o_.tls_options.client_ca_file + ": " + err);
      }
      // Ask for a client certificate but never refuse the handshake over it, as upstream's RequestClientCert: the
      // verification result decides the request (a certificate the CA does not vouch for gets 401, not anonymous).
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
      SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(o_.tls_options.client_ca_file.c_str()));
    }
    ssl_ctx_ = ctx;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* res = nullptr;
  std::string addr = o_.address.empty() ? "0.0.0.0" : o_.address;
  if (int rc = getaddrinfo(addr.c_str(), std::to_string(o_.port).c_str(), &hints, &res); rc != 0)
    return absl::InvalidArgumentError("invalid listen address \"" + addr + "\": " + gai_strerror(rc));
  listen_fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listen_fd_, res->ai_addr, res->ai_addrlen) != 0 || ::listen(listen_fd_, 128) != 0) {
    std::string err = std::strerror(errno);
    freeaddrinfo(res);
    ::close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError("failed to listen on " + addr + ":" + std::to_string(o_.port) + ": " + err);
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) return absl::InternalError("pipe failed");
  accept_thread_ = std::thread([this] { GuardedRun("http_server AcceptLoop", [this] { AcceptLoop(); }); });
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (stop_.exchange(true)) return;
  if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
  if (accept_thread_.joinable()) accept_thread_.join();
  {
    std::unique_lock<std::mutex> l(mu_);
    for (const auto& [fd, _] : conns_) ::shutdown(fd, SHUT_RDWR);
    cv_.wait(l, [&] { return active_ == 0; });
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_)
    if (fd >= 0) ::close(fd);
  if (ssl_ctx_) SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
  ssl_ctx_ = nullptr;
}

void HttpServer::AcceptLoop() {
  while (!stop_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) <= 0) continue;
    if (fds[1].revents) break;
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::string client = PeerAddress(peer);
    std::lock_guard<std::mutex> l(mu_);
    if (per_client_[client] >= o_.max_connections_per_client) {
      ::close(fd);
      continue;
    }
    if (active_ >= o_.max_connections) {
      // Full: the connection that has been sending its header the longest (a slow-drip client) gives way, so
      // slow clients cannot deny service; with none in that state, refuse rather than queue without bound.
      int victim = -1;
      std::chrono::steady_clock::time_point oldest = std::chrono::steady_clock::time_point::max();
      for (const auto& [cfd, since] : conns_)
        if (since && *since < oldest) {
          oldest = *since;
          victim = cfd;
        }
      if (victim < 0 || active_ >= o_.max_connections + 16) {
        if (per_client_[client] == 0) per_client_.erase(client);
        ::close(fd);
        continue;
      }
      ::shutdown(victim, SHUT_RDWR);
      conns_[victim].reset();  // not chosen twice while it winds down
    }
    ++active_;
    ++per_client_[client];
    conns_[fd] = std::chrono::steady_clock::now();
    std::thread([this, fd, client] {
      Serve(fd);
      // Free this thread's OpenSSL state (its DRBG) now: Stop() returns once every connection thread got here,
      // and a thread-exit cleanup racing with process exit would leak it.
      OPENSSL_thread_stop();
      std::lock_guard<std::mutex> g(mu_);
      conns_.erase(fd);
      ::close(fd);
      --active_;
      if (auto it = per_client_.find(client); it != per_client_.end() && --it->second == 0) per_client_.erase(it);
      cv_.notify_all();
    }).detach();
  }
}

void HttpServer::SetReadingHeader(int fd, bool reading) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  if (reading) {
    it->second = std::chrono::steady_clock::now();
  } else {
    it->second.reset();
  }
}

struct HttpServer::LoadedCert {
  std::shared_ptr<const TLSCertificate> source;
  X509* leaf = nullptr;
  std::vector<X509*> chain;
  EVP_PKEY* key = nullptr;
  ~LoadedCert() {
    X509_free(leaf);
    for (X509* c : chain) X509_free(c);
    EVP_PKEY_free(key);
  }
};

std::shared_ptr<HttpServer::LoadedCert> HttpServer::ServingCertificate() {
  auto src = o_.tls_options.certificate();
  if (!src) return nullptr;
  std::lock_guard<std::mutex> l(cert_mu_);
  if (loaded_ && loaded_->source == src) return loaded_;
  auto lc = std::make_shared<LoadedCert>();
  lc->source = src;
  BIO* cb = BIO_new_mem_buf(src->cert_pem.data(), static_cast<int>(src->cert_pem.size()));
  lc->leaf = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  while (X509* c = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr)) lc->chain.push_back(c);
  BIO_free(cb);
  ERR_clear_error();  // the end of the chain reads as an error
  BIO* kb = BIO_new_mem_buf(src->key_pem.data(), static_cast<int>(src->key_pem.size()));
  lc->key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  if (!lc->leaf || !lc->key) return nullptr;
  loaded_ = lc;
  return lc;
}

void HttpServer::Serve(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int io_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(o_.io_timeout).count());
  int idle_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(o_.idle_timeout).count());
  SSL* ssl = nullptr;
  std::string client_cn;
  std::vector<std::string> client_groups;
  bool client_cert_invalid = false;
  if (ssl_ctx_) {
    ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
    if (o_.tls_options.certificate) {
      auto cert = ServingCertificate();
      if (!cert || SSL_use_certificate(ssl, cert->leaf) != 1 || SSL_use_PrivateKey(ssl, cert->key) != 1) {
        static auto log = log::Get("server");
        KLOG_V(log, 2)("TLS handshake refused err=\"no serving certificate available for the kubelet\"");
        SSL_free(ssl);
        return;
      }
      for (X509* c : cert->chain) SSL_add1_chain_cert(ssl, c);
    }
    SSL_set_fd(ssl, fd);
    // Handshake with a deadline: a silent client must not hold a thread.
    timeval tv{io_ms / 1000, (io_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (SSL_accept(ssl) != 1) {
      SSL_free(ssl);
      return;
    }
    if (X509* peer = SSL_get1_peer_certificate(ssl)) {
      long vr = SSL_get_verify_result(ssl);
      if (vr != X509_V_OK) {
        static auto log = log::Get("server");
        KLOG_V(log, 2)("Client certificate not verified err=\"{}\"", X509_verify_cert_error_string(vr));
      }
      if (vr == X509_V_OK) {
        X509_NAME* subject = X509_get_subject_name(peer);
        char cn[256] = {0};
        X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn));
        client_cn = cn;
        // Groups are the subject's O entries, as upstream's x509 authenticator reads them.
        for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_organizationName, i)) >= 0;) {
          ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
          unsigned char* utf8 = nullptr;
          int n = ASN1_STRING_to_UTF8(&utf8, data);
          if (n >= 0) client_groups.emplace_back(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
          OPENSSL_free(utf8);
        }
      } else {
        client_cert_invalid = true;
      }
      X509_free(peer);
    }
  }
  Conn conn(fd, ssl, o_.io_timeout);
  std::string buf;
  char chunk[8192];
  while (!stop_) {
    size_t header_end;
    bool first = true;
    SetReadingHeader(fd, true);  // idle or sending a header: what gives way when the server is full
    // The header's deadline runs from its first byte (a kept-alive connection may idle before it).
    std::optional<std::chrono::steady_clock::time_point> header_deadline;
    if (!buf.empty()) header_deadline = std::chrono::steady_clock::now() + o_.header_timeout;
    while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > kMaxHeaderBytes) {
        conn.WriteAll("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
      int wait_ms = first && buf.empty() ? idle_ms : io_ms;
      if (header_deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*header_deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) return;  // too slow: dropped
        wait_ms = static_cast<int>(std::min<int64_t>(wait_ms, left));
      }
      ssize_t r = conn.Read(chunk, sizeof(chunk), wait_ms);
      if (r <= 0) return;
      if (!header_deadline) header_deadline = std::chrono::steady_clock::now() + o_.header_timeout;
      first = false;
      buf.append(chunk, static_cast<size_t>(r));
    }
    SetReadingHeader(fd, false);
    Request req;
    RequestHead head;
    if (int code = ParseRequestHead(std::string_view(buf).substr(0, header_end), &req, &head); code != 0) {
      conn.WriteAll("HTTP/1.1 " + std::to_string(code) + " " + StatusText(code) +
                    "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    req.tls = ssl != nullptr;
    req.client_cn = client_cn;
    req.client_groups = client_groups;
    req.client_cert_invalid = client_cert_invalid;
    const std::string& version = head.version;
    size_t content_length = head.content_length;
    buf.erase(0, header_end + 4);
    if (content_length > kMaxBodyBytes) {
      conn.WriteAll("HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    if (auto it = req.headers.find("expect"); it != req.headers.end() && it->second == "100-continue" &&
                                               buf.size() < content_length) {
      if (!conn.WriteAll("HTTP/1.1 100 Continue\r\n\r\n")) return;
    }
    while (buf.size() < content_length) {
      ssize_t r = conn.Read(chunk, sizeof(chunk), io_ms);
      if (r <= 0) return;
      buf.append(chunk, static_cast<size_t>(r));
    }
    req.body = buf.substr(0, content_length);
    buf.erase(0, content_length);

    Response resp = Dispatch(req);
    bool keep_alive = version == "HTTP/1.1";
    if (auto it = req.headers.find("connection"); it != req.headers.end()) {
      std::string v = it->second;
      std::transform(v.begin(), v.end(), v.begin(), ::tolower);
      keep_alive = v == "keep-alive" || (keep_alive && v != "close");
    }
    if (resp.upgrade) {
      // The rest of the connection belongs to the upgrade, including what the client sent after the head.
      class Upgraded : public UpgradedConn {
       public:
        Upgraded(Conn& c, std::string pending) : c_(c), pending_(std::move(pending)) {}
        ssize_t Read(char* out, size_t n, int timeout_ms) override {
          if (!pending_.empty()) {
            size_t k = std::min(n, pending_.size());
            std::memcpy(out, pending_.data(), k);
            pending_.erase(0, k);
            return static_cast<ssize_t>(k);
          }
          return c_.Read(out, n, timeout_ms);
        }
        bool Write(const std::string& data) override { return c_.WriteAll(data); }
        int fd() const override { return c_.fd(); }
        bool Buffered() const override { return !pending_.empty() || c_.Buffered(); }

       private:
        Conn& c_;
        std::string pending_;
      } up(conn, std::move(buf));
      resp.upgrade(up);
      return;
    }
    std::ostringstream out;
    if (resp.stream) {
      out << "HTTP/1.1 " << resp.status << " " << StatusText(resp.status) << "\r\n"
          << "Content-Type: " << resp.content_type << "\r\n"
          << "Transfer-Encoding: chunked\r\nConnection: " << (keep_alive ? "keep-alive" : "close") << "\r\n";
      for (const auto& [k, v] : resp.headers) out << k << ": " << v << "\r\n";
      out << "\r\n";
      if (!conn.WriteAll(out.str())) return;
      bool alive = true;
      resp.stream([&](const std::string& chunk) {
        if (!alive || stop_) return false;
        if (chunk.empty()) return alive = !conn.PeerClosed();  // a keep-alive probe from the handler
        std::ostringstream c;
        c << std::hex << chunk.size() << "\r\n" << chunk << "\r\n";
        alive = conn.WriteAll(c.str());
        return alive;
      });
      if (!alive || !conn.WriteAll("0\r\n\r\n") || !keep_alive) return;
      continue;
    }
    out << "HTTP/1.1 " << resp.status << " " << StatusText(resp.status) << "\r\n"
        << "Content-Type: " << resp.content_type << "\r\n"
        << "Content-Length: " << (req.method == "HEAD" ? 0 : resp.body.size()) << "\r\n"
        << "X-Content-Type-Options: nosniff\r\n"
        << "Connection: " << (keep_alive ? "keep-alive" : "close") << "\r\n";
    for (const auto& [k, v] : resp.headers) out << k << ": " << v << "\r\n";
    out << "\r\n";
    if (req.method != "HEAD") out << resp.body;
    if (!conn.WriteAll(out.str()) || !keep_alive) return;
  }
}

Response HttpServer::Dispatch(const Request& req) {
  auto it = handlers_.find(req.path);
  if (it == handlers_.end()) {
    // Longest registered prefix ending in '/'.
    size_t best = 0;
    for (auto h = handlers_.begin(); h != handlers_.end(); ++h) {
      const std::string& p = h->first;
      if (p.size() > best && p.back() == '/' && req.path.rfind(p, 0) == 0) {
        best = p.size();
        it = h;
      }
    }
  }
  if (it == handlers_.end()) return Response{404, "text/plain; charset=utf-8", "404 page not found\n", {}};
  try {
    return it->second(req);
  } catch (const std::exception& e) {
    static auto log = log::Get("server");
    log->error("Handler failed path=\"{}\" err=\"{}\"", req.path, e.what());
    return Response{500, "text/plain; charset=utf-8", "Internal Server Error\n", {}};
  }
}

namespace {
absl::Status WriteSelfSigned(const std::string& dir, const std::string& cert_file, const std::string& key_file,
                             const std::string& cn, const std::string& san, const char* eku,
                             const std::vector<std::string>& organizations = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError("cannot create cert dir " + dir + ": " + ec.message());
  EVP_PKEY* key = EVP_RSA_gen(2048);
  if (!key) return absl::InternalError("generate key: " + OpenSSLError());
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(::time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  for (const auto& o : organizations)
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> exts = {{NID_key_usage, "critical,digitalSignature,keyEncipherment"},
                                                   {NID_ext_key_usage, eku}};
  if (!san.empty()) exts.emplace_back(NID_subject_alt_name, san);
  for (const auto& [nid, val] : exts) {
    if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, val.c_str())) {
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    }
  }
  X509_sign(x, key, EVP_sha256());
  absl::Status st;
  FILE* cf = fopen(cert_file.c_str(), "w");
  int kfd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FILE* kf = kfd >= 0 ? fdopen(kfd, "w") : nullptr;
  if (!cf || !kf || PEM_write_X509(cf, x) != 1 || PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    st = absl::InternalError("write certificate to " + dir + ": " + std::strerror(errno));
  if (cf) fclose(cf);
  if (kf) fclose(kf);
  X509_free(x);
  EVP_PKEY_free(key);
  return st;
}
}  // namespace

absl::Status EnsureSelfSignedCert(const std::string& cert_dir, const std::string& host, std::string* cert_file,
                                  std::string* key_file) {
  *cert_file = cert_dir + "/kubelet.crt";
  *key_file = cert_dir + "/kubelet.key";
  std::error_code ec;
  if (std::filesystem::exists(*cert_file, ec) && std::filesystem::exists(*key_file, ec)) return absl::OkStatus();
  return WriteSelfSigned(cert_dir, *cert_file, *key_file, host + "@" + std::to_string(::time(nullptr)),
                         "DNS:" + host + ",DNS:localhost,IP:127.0.0.1", "serverAuth");
}

absl::Status MakeClientCert(const std::string& dir, const std::string& name, const std::string& cn, std::string* cert_file,
                            std::string* key_file, const std::vector<std::string>& organizations) {
  *cert_file = dir + "/" + name + ".crt";
  *key_file = dir + "/" + name + ".key";
  return WriteSelfSigned(dir, *cert_file, *key_file, cn, "", "clientAuth", organizations);
}

}  // namespace kubelet::server

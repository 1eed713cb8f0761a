#pragma once
#include <sys/types.h>
// A small HTTP/1.1 server (keep-alive, optional TLS with optional client
// certificates) for the kubelet's endpoints. Bounded: a fixed number of
// concurrent connections, a deadline on every read and write, capped header
// and body sizes.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>
#include <thread>

#include <absl/status/status.h>

#include "kubelet/util/tls_certificate.h"
#include "kubelet/util/clock.h"

namespace kubelet::server {

struct Request {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;                      // the first value of each key
  std::map<std::string, std::vector<std::string>> query_values;   // every value, in order
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  bool tls = false;
  // The verified client certificate's subject CN and O entries, when one was presented and checked.
  std::string client_cn;
  std::vector<std::string> client_groups;
  // A client certificate was presented that the client CA does not verify (upstream: 401, never anonymous).
  bool client_cert_invalid = false;
};

/** What the request line and headers say beyond the Request itself. */
struct RequestHead {
  std::string version;  // HTTP/1.0 or HTTP/1.1
  size_t content_length = 0;
};

/**
 * Parses a request head (the request line and the header lines, without the blank line that ends them) into
 * `req` (method, path, query, headers) and `head`. Returns 0, or the HTTP status to refuse it with: 400 for a
 * malformed line, header or Content-Length, 414 for an overlong target, 501 for a Transfer-Encoding request body,
 * 505 for a version other than HTTP/1.0 and 1.1.
 */
int ParseRequestHead(std::string_view head, Request* req, RequestHead* out);

/** Sends one chunk of a streamed response; false once the client is gone. An empty chunk sends nothing and only checks. */
using ChunkWriter = std::function<bool(const std::string& chunk)>;

/**
 * A client connection handed to an upgrade (exec, attach, port-forward streams): raw bytes both ways, TLS
 * undone. Bytes the client sent after the request head are read first.
 */
class UpgradedConn {
 public:
  virtual ~UpgradedConn() = default;
  /** Some bytes; 0 when the client closed, -1 on error or when nothing came within timeout_ms. */
  virtual ssize_t Read(char* buf, size_t n, int timeout_ms) = 0;
  virtual bool Write(const std::string& data) = 0;
  /** The socket, to poll with another one; check Buffered() first (TLS and leftover bytes wait in memory). */
  virtual int fd() const = 0;
  virtual bool Buffered() const = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::map<std::string, std::string> headers;
  // When set, the body is streamed with chunked encoding until this returns
  // (watches, log follows); `body` is ignored.
  std::function<void(const ChunkWriter& write)> stream;
  // When set, nothing is written for this response: the connection is handed to this function, which owns it
  // until it returns (it writes its own status line); then the connection is closed.
  std::function<void(UpgradedConn& conn)> upgrade;
};

using Handler = std::function<Response(const Request&)>;

struct TLSOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificates
  std::string min_version;     // tlsMinVersion (VersionTLS10..VersionTLS13); empty: TLS 1.2
  std::vector<std::string> cipher_suites;  // tlsCipherSuites, Go's IANA names; empty: OpenSSL's defaults
  /**
   * When set, the serving certificate is read from it at each handshake instead of cert_file/key_file (a rotating
   * one, as upstream's GetCertificate): connections already open keep theirs; with none available the handshake is
   * refused.
   */
  TLSCertificateProvider certificate;
};

/**
 * tlsCipherSuites / tlsMinVersion as upstream spells them, in OpenSSL's terms: the TLS 1.2 cipher list and the
 * protocol version. TLS 1.3 suites in the list are accepted and, as in Go, not configurable (always on). An unknown
 * name is an error naming it.
 */
absl::Status TLSSettings(const TLSOptions& o, std::string* openssl_ciphers, int* min_proto_version);

struct ServerOptions {
  std::string address = "0.0.0.0";
  int port = 0;  // 0: pick a free port
  bool tls = false;
  TLSOptions tls_options;
  size_t max_connections = 256;
  // Connections one client address may hold at once (its further connections are closed at once), so that one
  // client cannot take every slot with requests the server is busy answering.
  size_t max_connections_per_client = 128;
  Duration idle_timeout = std::chrono::seconds(60);
  Duration io_timeout = std::chrono::seconds(30);
  // The whole request header (line and fields) must arrive within this, however slowly it drips.
  Duration header_timeout = std::chrono::seconds(10);
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  /** The handler for requests whose path is `path`, or starts with it when it ends in '/'. */
  void Handle(const std::string& path, Handler handler);
  absl::Status Start();
  void Stop();
  int port() const { return port_; }
  /** True once Stop() began: long-running stream handlers should return. */
  bool stopping() const { return stop_.load(); }

 private:
  void AcceptLoop();
  void Serve(int fd);
  Response Dispatch(const Request& req);

  ServerOptions o_;
  std::map<std::string, Handler> handlers_;
  int listen_fd_ = -1;
  int port_ = 0;
  void* ssl_ctx_ = nullptr;
  struct LoadedCert;  // the provider's certificate, parsed once per change
  std::mutex cert_mu_;
  std::shared_ptr<LoadedCert> loaded_;
  std::shared_ptr<LoadedCert> ServingCertificate();
  std::thread accept_thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  // Open connections; those still reading a request header carry when they began (at capacity, the oldest of them
  // is dropped for the new client, so slow clients cannot hold every slot).
  std::map<int, std::optional<std::chrono::steady_clock::time_point>> conns_;
  size_t active_ = 0;
  std::map<std::string, size_t> per_client_;  // open connections by peer address; pruned at zero
  void SetReadingHeader(int fd, bool reading);
  int wake_[2] = {-1, -1};
};

/** Loads or creates a self-signed serving certificate in cert_dir (kubelet.crt, kubelet.key), as upstream. */
absl::Status EnsureSelfSignedCert(const std::string& cert_dir, const std::string& host, std::string* cert_file,
                                  std::string* key_file);
/**
 * A self-signed client certificate (extendedKeyUsage clientAuth) with this CN and O entries (the groups upstream's
 * x509 authenticator reads), written to dir/<name>.crt and .key.
 */
absl::Status MakeClientCert(const std::string& dir, const std::string& name, const std::string& cn, std::string* cert_file,
                            std::string* key_file, const std::vector<std::string>& organizations = {});

}  // namespace kubelet::server

#pragma once
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace kubelet::testing {

// A WebSocket client of the kubelet's streams (the project's own, written from RFC 6455 and the channel.k8s.io
// framing: each binary message starts with its channel byte), over TLS to the kubelet or plain TCP to a runtime's
// streaming server.
class StreamClient {
 public:
  ~StreamClient() { Close(); }
  // Connects, upgrades with `protocol`; the HTTP status of the answer (101 when the stream is open).
  int Open(int port, const std::string& target, const std::string& protocol, const std::string& cert = "",
           const std::string& key = "", bool tls = true, int recv_timeout_s = 20) {
    if (tls) {
      ctx_ = SSL_CTX_new(TLS_client_method());
      if (!cert.empty()) {
        SSL_CTX_use_certificate_file(ctx_, cert.c_str(), SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM);
      }
    }
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{recv_timeout_s, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return -1;
    if (tls) {
      ssl_ = SSL_new(ctx_);
      SSL_set_fd(ssl_, fd_);
      if (SSL_connect(ssl_) != 1) return -1;
    }
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Protocol: " + protocol + "\r\n\r\n";
    if (!Write(req)) return -1;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!Fill()) return -1;
    head_ = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    if (head_.size() < 12) return -1;
    int code = std::atoi(head_.c_str() + 9);
    if (code != 101) {  // the body of a refusal (Content-Length long), for the test to read
      size_t len = 0;
      std::string lower = head_;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (size_t at = lower.find("content-length:"); at != std::string::npos) len = std::strtoul(lower.c_str() + at + 15, nullptr, 10);
      Need(len);
      body_ = buf_.substr(0, len);
    }
    return code;
  }
  const std::string& head() const { return head_; }
  const std::string& body() const { return body_; }
  // One message from the server: its channel and data; false when the stream ended.
  bool Next(int* channel, std::string* data) {
    while (true) {
      std::string payload;
      int opcode;
      if (!Frame(&opcode, &payload)) return false;
      if (opcode == 8) return false;  // close
      if (opcode == 9 || opcode == 10) continue;
      if (payload.empty()) continue;
      *channel = static_cast<unsigned char>(payload[0]);
      *data = payload.substr(1);
      return true;
    }
  }
  bool Send(int channel, const std::string& data) {
    std::string payload(1, static_cast<char>(channel));
    payload += data;
    std::string f(1, static_cast<char>(0x82));  // FIN, binary
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    if (payload.size() < 126) {
      f.push_back(static_cast<char>(0x80 | payload.size()));
    } else {
      f.push_back(static_cast<char>(0x80 | 126));
      f.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
      f.push_back(static_cast<char>(payload.size() & 0xff));
    }
    f.append(reinterpret_cast<const char*>(mask), 4);
    for (size_t i = 0; i < payload.size(); ++i) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
    return Write(f);
  }
  /** True when the last read ended because the server closed the connection (not a receive timeout). */
  bool closed_by_peer() const { return closed_by_peer_; }
  void Close() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    if (ctx_) SSL_CTX_free(ctx_);
    ssl_ = nullptr;
    ctx_ = nullptr;
    fd_ = -1;
  }

 private:
  bool Write(const std::string& data) {
    if (ssl_) return SSL_write(ssl_, data.data(), static_cast<int>(data.size())) > 0;
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool Fill() {
    char b[65536];
    int n;
    if (ssl_) {
      errno = 0;
      n = SSL_read(ssl_, b, sizeof(b));
      int saved = errno;
      if (n <= 0) {
        int err = SSL_get_error(ssl_, n);
        // A receive timeout reads as "want read" (or a syscall error EAGAIN); anything else is the peer's doing.
        closed_by_peer_ = !(err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ||
                            (err == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)));
      }
    } else {
      n = static_cast<int>(::recv(fd_, b, sizeof(b), 0));
      closed_by_peer_ = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
    if (n <= 0) return false;
    buf_.append(b, static_cast<size_t>(n));
    return true;
  }
  bool Need(size_t n) {
    while (buf_.size() < n)
      if (!Fill()) return false;
    return true;
  }
  bool Frame(int* opcode, std::string* payload) {
    if (!Need(2)) return false;
    *opcode = buf_[0] & 0x0f;
    uint64_t len = buf_[1] & 0x7f;
    size_t off = 2;
    if (len == 126) {
      if (!Need(4)) return false;
      len = (static_cast<unsigned char>(buf_[2]) << 8) | static_cast<unsigned char>(buf_[3]);
      off = 4;
    } else if (len == 127) {
      if (!Need(10)) return false;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf_[2 + i]);
      off = 10;
    }
    if (!Need(off + len)) return false;
    *payload = buf_.substr(off, len);
    buf_.erase(0, off + len);
    return true;
  }
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  std::string buf_, head_, body_;
  bool closed_by_peer_ = false;
};

}  // namespace kubelet::testing

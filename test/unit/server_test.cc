#include <gtest/gtest.h>

#include <curl/curl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "kubelet/server/http_server.h"

namespace kubelet::server {
namespace {

struct Reply {
  long code = 0;
  std::string body;
};

size_t Append(char* d, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(d, s * n);
  return s * n;
}

Reply Get(const std::string& url, const std::string& header = "") {
  Reply r;
  CURL* c = curl_easy_init();
  curl_slist* h = header.empty() ? nullptr : curl_slist_append(nullptr, header.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  if (h) curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return r;
}

TEST(HttpServer, RoutesExactAndPrefixPathsWithKeepAlive) {
  ServerOptions o;
  o.address = "127.0.0.1";
  HttpServer s(o);
  s.Handle("/a", [](const Request& r) { return Response{200, "text/plain", r.query.count("x") ? "a" : "", {}}; });
  s.Handle("/p/", [](const Request& r) { return Response{200, "text/plain", r.path, {}}; });
  ASSERT_TRUE(s.Start().ok());
  std::string base = "http://127.0.0.1:" + std::to_string(s.port());
  EXPECT_EQ(Get(base + "/a?x=1").code, 200);
  auto p = Get(base + "/p/deep/er");
  EXPECT_EQ(p.code, 200);
  EXPECT_EQ(p.body, "/p/deep/er");
  auto nf = Get(base + "/nope");
  EXPECT_EQ(nf.code, 404);
  EXPECT_EQ(nf.body, "404 page not found\n");
  s.Stop();
}

TEST(HttpServer, ServesTLSWithASelfSignedCertificate) {
  auto dir = std::filesystem::temp_directory_path() / ("kpki-" + std::to_string(::getpid()));
  std::string cert, key;
  ASSERT_TRUE(EnsureSelfSignedCert(dir.string(), "node1", &cert, &key).ok());
  EXPECT_TRUE(std::filesystem::exists(cert));
  EXPECT_EQ(std::filesystem::status(key).permissions() & std::filesystem::perms::others_read, std::filesystem::perms::none);
  ServerOptions o;
  o.address = "127.0.0.1";
  o.tls = true;
  o.tls_options = {cert, key, ""};
  HttpServer s(o);
  s.Handle("/healthz", [](const Request& r) { return Response{200, "text/plain", r.tls ? "tls" : "plain", {}}; });
  ASSERT_TRUE(s.Start().ok());
  auto r = Get("https://127.0.0.1:" + std::to_string(s.port()) + "/healthz");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.body, "tls");
  s.Stop();
  std::filesystem::remove_all(dir);
}

TEST(HttpServer, BadCertificateIsAClearError) {
  ServerOptions o;
  o.address = "127.0.0.1";
  o.tls = true;
  o.tls_options = {"/nonexistent.crt", "/nonexistent.key", ""};
  HttpServer s(o);
  auto st = s.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent.crt"), std::string::npos);
}

TEST(HttpServer, PortInUseIsAClearError) {
  ServerOptions o;
  o.address = "127.0.0.1";
  HttpServer a(o);
  ASSERT_TRUE(a.Start().ok());
  o.port = a.port();
  HttpServer b(o);
  auto st = b.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(std::to_string(a.port())), std::string::npos);
}

// Issue 10: slow clients cannot deny service. Clients that open a connection and drip a header byte by byte hold
// every slot; a normal client still gets its answer (the slowest header-sender gives way), and a header that takes
// longer than header_timeout is dropped however slowly it drips.
int Dial(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(HttpServer, SlowClientsCannotDenyService) {
  ServerOptions o;
  o.address = "127.0.0.1";
  o.max_connections = 8;
  o.header_timeout = std::chrono::seconds(60);  // long: only the eviction can save the normal client here
  HttpServer s(o);
  s.Handle("/ok", [](const Request&) { return Response{200, "text/plain", "fine", {}}; });
  ASSERT_TRUE(s.Start().ok());
  std::vector<int> slow;
  for (int i = 0; i < 24; ++i) {
    int fd = Dial(s.port());
    if (fd < 0) continue;
    (void)!::write(fd, "GET /ok HTTP/1.1\r\nX-Slow: ", 26);
    slow.push_back(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto r = Get("http://127.0.0.1:" + std::to_string(s.port()) + "/ok");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.body, "fine");
  for (int fd : slow) ::close(fd);
  s.Stop();
}

int DialFrom(const char* source, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True when the server closed the connection (read returns 0 or an error within the wait).
bool ClosedByServer(int fd, int wait_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, wait_ms) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

TEST(HttpServer, OneClientCannotTakeEverySlotWithBusyRequests) {
  // A client (127.0.0.2) whose requests the server is busy answering (long streams, say) holds at most
  // max_connections_per_client slots; another client is still served, and the greedy one's extra connection closed.
  ServerOptions o;
  o.address = "127.0.0.1";
  o.max_connections = 8;
  o.max_connections_per_client = 4;
  HttpServer s(o);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> held{0};
  s.Handle("/hold", [&](const Request&) {
    ++held;
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(20), [&] { return release; });
    return Response{200, "text/plain", "held", {}};
  });
  s.Handle("/ok", [](const Request&) { return Response{200, "text/plain", "fine", {}}; });
  ASSERT_TRUE(s.Start().ok());
  std::vector<int> greedy;
  for (int i = 0; i < 8; ++i) {
    int fd = DialFrom("127.0.0.2", s.port());
    ASSERT_GE(fd, 0);
    const std::string req = "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)!::write(fd, req.data(), req.size());
    greedy.push_back(fd);
  }
  for (int i = 0; i < 100 && held.load() < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(held.load(), 4);
  int closed = 0;
  for (int fd : greedy) closed += ClosedByServer(fd, 200) ? 1 : 0;
  EXPECT_EQ(closed, 4);
  auto r = Get("http://127.0.0.1:" + std::to_string(s.port()) + "/ok");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.body, "fine");
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  for (int fd : greedy) ::close(fd);
  s.Stop();
}

// The request head parser refuses what Go's net/http refuses, with the status it answers.
int Parse(const std::string& head, Request* req = nullptr, RequestHead* h = nullptr) {
  Request r;
  RequestHead rh;
  return ParseRequestHead(head, req ? req : &r, h ? h : &rh);
}

TEST(HttpServer, RequestHeadParser) {
  Request req;
  RequestHead h;
  ASSERT_EQ(Parse("GET /logs/a+b%2Fc?follow=true&tailLines=1+0&x&follow=false HTTP/1.1\r\nHost: n\r\n"
                  "Content-Length: 12\r\nX-A: 1\r\nx-a: 2",
                  &req, &h),
            0);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.path, "/logs/a+b/c");  // '+' is a space only in the query
  EXPECT_EQ(req.query["follow"], "true");  // the first of a repeated key
  EXPECT_EQ(req.query["tailLines"], "1 0");
  EXPECT_EQ(req.query.count("x"), 1u);
  EXPECT_EQ(req.headers["host"], "n");
  EXPECT_EQ(req.headers["x-a"], "1, 2");
  EXPECT_EQ(h.version, "HTTP/1.1");
  EXPECT_EQ(h.content_length, 12u);
  EXPECT_EQ(Parse("GET / HTTP/1.0"), 0);
  EXPECT_EQ(Parse("GET / HTTP/2.0"), 505);
  EXPECT_EQ(Parse("GET / FTP/1.0"), 400);
  EXPECT_EQ(Parse("GET /  HTTP/1.1"), 400);
  EXPECT_EQ(Parse("G(T / HTTP/1.1"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nno colon"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nHost : x"), 400);  // space before the colon
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\n folded"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nContent-Length: -1"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nContent-Length: 1x"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2"), 400);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2"), 0);
  EXPECT_EQ(Parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"), 501);
  EXPECT_EQ(Parse("GET /" + std::string(20000, 'a') + " HTTP/1.1"), 414);
  EXPECT_EQ(Parse(std::string("GET /\x01 HTTP/1.1")), 400);
  EXPECT_EQ(Parse("GET /%zz%4 HTTP/1.1", &req), 0);
  EXPECT_EQ(req.path, "/%zz%4");
}

TEST(HttpServer, AHeaderThatDripsPastItsDeadlineIsDropped) {
  ServerOptions o;
  o.address = "127.0.0.1";
  o.header_timeout = std::chrono::seconds(1);
  HttpServer s(o);
  s.Handle("/ok", [](const Request&) { return Response{200, "text/plain", "fine", {}}; });
  ASSERT_TRUE(s.Start().ok());
  int fd = Dial(s.port());
  ASSERT_GE(fd, 0);
  std::string header = "GET /ok HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
  // One byte every 100 ms: each read is quick, the whole header would take over 6 s.
  size_t sent = 0;
  for (; sent < header.size(); ++sent) {
    if (::send(fd, header.data() + sent, 1, MSG_NOSIGNAL) != 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
      char c;
      if (::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) break;  // closed by the server
    }
  }
  EXPECT_LT(sent, header.size()) << "the server waited for the whole slow header";
  ::close(fd);
  s.Stop();
}

// tlsMinVersion and tlsCipherSuites (upstream's names) reach the TLS server; an unknown name is an error naming it.
long TLSCode(int port, long version, const char* ciphers) {
  CURL* c = curl_easy_init();
  std::string body;
  std::string url = "https://127.0.0.1:" + std::to_string(port) + "/healthz";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_SSLVERSION, version);
  if (ciphers) curl_easy_setopt(c, CURLOPT_SSL_CIPHER_LIST, ciphers);
  long code = 0;
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  return code;
}

TEST(HttpServer, TLSMinVersionAndCipherSuitesAsUpstreamNamesThem) {
  auto dir = std::filesystem::temp_directory_path() / ("kpki-tls-" + std::to_string(::getpid()));
  std::string cert, key;
  ASSERT_TRUE(EnsureSelfSignedCert(dir.string(), "node1", &cert, &key).ok());
  auto serve = [&](const std::string& min, std::vector<std::string> suites) {
    ServerOptions o;
    o.address = "127.0.0.1";
    o.tls = true;
    o.tls_options.cert_file = cert;
    o.tls_options.key_file = key;
    o.tls_options.min_version = min;
    o.tls_options.cipher_suites = std::move(suites);
    auto s = std::make_unique<HttpServer>(o);
    s->Handle("/healthz", [](const Request&) { return Response{200, "text/plain", "ok", {}}; });
    return s;
  };
  const long tls12 = CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2;
  const long tls13 = CURL_SSLVERSION_TLSv1_3;
  auto v13 = serve("VersionTLS13", {});
  ASSERT_TRUE(v13->Start().ok());
  EXPECT_EQ(TLSCode(v13->port(), tls13, nullptr), 200);
  EXPECT_EQ(TLSCode(v13->port(), tls12, nullptr), 0);  // refused: below tlsMinVersion
  v13->Stop();
  auto one = serve("", {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"});
  ASSERT_TRUE(one->Start().ok());
  EXPECT_EQ(TLSCode(one->port(), tls12, "ECDHE-RSA-AES128-GCM-SHA256"), 200);
  EXPECT_EQ(TLSCode(one->port(), tls12, "ECDHE-RSA-AES256-GCM-SHA384"), 0);  // not in tlsCipherSuites
  one->Stop();
  auto bad = serve("VersionTLS99", {});
  auto st = bad->Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("VersionTLS99"), std::string::npos) << st;
  auto bad_suite = serve("", {"TLS_NOT_A_SUITE"});
  auto st2 = bad_suite->Start();
  EXPECT_FALSE(st2.ok());
  EXPECT_NE(st2.message().find("TLS_NOT_A_SUITE"), std::string::npos) << st2;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kubelet::server

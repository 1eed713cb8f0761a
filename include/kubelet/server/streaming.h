#pragma once
// exec, attach and port-forward streams, as upstream's kubelet serves them since streaming redirects went away:
// the CRI call gives a URL on the runtime's streaming server, and the kubelet proxies the client's upgraded
// connection (SPDY/3.1 or WebSocket, whatever the client and the runtime negotiate) to it, byte for byte.
#include <string>

#include <absl/status/statusor.h>

#include "kubelet/server/http_server.h"
#include "kubelet/util/clock.h"

namespace kubelet::server {

/** A parsed http:// or https:// URL of a streaming server (the runtime's, or a kubelet's for an API server). */
struct StreamURL {
  bool tls = false;
  std::string host;
  int port = 80;
  std::string target;  // path and query, as sent on the request line
};

/** The client certificate an https:// backend is dialed with (the API server's kubelet client certificate). */
struct StreamTLS {
  std::string cert_file;
  std::string key_file;
};
absl::StatusOr<StreamURL> ParseStreamURL(const std::string& url);

/** Whether a request asks for a protocol upgrade (Connection: Upgrade and an Upgrade header), as streams must. */
bool IsUpgradeRequest(const Request& req);

/**
 * Proxies the upgraded client connection to `url`, as upstream's UpgradeAwareHandler: the client's request (its
 * method and headers, the upgrade negotiation among them; not its credentials) goes to the runtime at the URL's
 * path, the runtime's answer goes back unchanged, and after it bytes flow both ways until one side closes or
 * nothing moves for `idle_timeout` (streamingConnectionIdleTimeout). A runtime that cannot be reached gets the
 * client a 500 naming it. Returns when the stream is over.
 */
void ProxyStream(const Request& req, const std::string& url, UpgradedConn& client, Duration idle_timeout,
                 const StreamTLS* tls = nullptr);

}  // namespace kubelet::server

#pragma once
// /logs/: the node's log files, as upstream serves them (Go's http.FileServer
// over /var/log behind http.StripPrefix("/logs/")): the path is cleaned so it
// never leaves the root, directories are listed as Go lists them and need a
// trailing slash (a 301 adds it), files stream in chunks.
#include <string>

#include "kubelet/server/http_server.h"

namespace kubelet::server {

/** `rel` is the request path after "/logs" ("/", "/syslog", "/pods/"); `root` is /var/log on a node. */
Response ServeNodeLogs(const std::string& root, const std::string& rel);

}  // namespace kubelet::server

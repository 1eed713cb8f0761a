#pragma once
// kubeconfig files as kubectl and the kubelet read them: clusters, users,
// contexts and current-context, with file paths resolved relative to the
// kubeconfig and *-data fields base64-decoded.
#include <string>

#include <absl/status/statusor.h>

#include "kubelet/util/tls_certificate.h"

namespace kubelet::client {

struct RestConfig {
  std::string server;  // https://host:port
  std::string ca_pem;  // certificate-authority(-data), PEM
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;
  std::string client_cert_pem;  // client-certificate(-data)
  std::string client_key_pem;   // client-key(-data)
  std::string bearer_token;     // token, or the contents of tokenFile
  std::string token_file;       // re-read on each request when set
  std::string namespace_;
  /**
   * When set, the client certificate in use now (a rotating one), read at each request instead of
   * client_cert_pem/client_key_pem; watches opened with an older certificate end so they reopen with the new one.
   */
  TLSCertificateProvider cert_provider;
  std::string ca_file;  // certificate-authority, when the CA came from a file (resolved)
};

/** Loads the current context of the kubeconfig at path. */
absl::StatusOr<RestConfig> LoadKubeconfig(const std::string& path);
/** Same from text; base_dir resolves relative paths. */
absl::StatusOr<RestConfig> ParseKubeconfig(const std::string& text, const std::string& base_dir);

}  // namespace kubelet::client

#pragma once
// A certificate and its private key, both PEM, as handed from the certificate
// managers to the API client (client certificate) and the kubelet server
// (serving certificate). A provider returns the one in use now, or null.
#include <functional>
#include <memory>
#include <string>

namespace kubelet {

struct TLSCertificate {
  std::string cert_pem;  // the leaf first, then any intermediates
  std::string key_pem;
};

using TLSCertificateProvider = std::function<std::shared_ptr<const TLSCertificate>()>;

}  // namespace kubelet

// What the API server and the disk hand the certificate manager: a CertificateSigningRequest object (a watch event's
// object, a GET) and the PEM it carries, and the store's combined cert/key files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kubelet/certificate/certificate_manager.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)kubelet::certificate::ParseCombinedPEM(text);
  auto csr = nlohmann::json::parse(text, nullptr, false);
  if (!csr.is_discarded())
    if (auto v = kubelet::certificate::IssuedCertificate(csr, "uid-1"); v && v->ok())
      (void)kubelet::certificate::ParseCombinedPEM(**v);
  return 0;
}

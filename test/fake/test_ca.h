#pragma once
// A certificate authority for tests, acting as kube-controller-manager's CSR
// signer: a CA certificate (basicConstraints CA:TRUE) and the signing of
// CertificateSigningRequests with the usages a CSR asks for.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <absl/status/statusor.h>

namespace kubelet::testing {

/** What a PEM "CERTIFICATE REQUEST" asks for, with its signature checked. */
struct CSRInfo {
  std::string common_name;
  std::vector<std::string> organizations;
  std::vector<std::string> dns_names, ip_addresses;
  int other_sans = 0;  // emails, URIs
  bool rsa_key = false;
};
absl::StatusOr<CSRInfo> ParseCSR(const std::string& pem);

class TestCA {
 public:
  /** Makes (or loads) dir/ca.crt and dir/ca.key, ECDSA P-256, CN `cn`. */
  static absl::StatusOr<std::unique_ptr<TestCA>> Create(const std::string& dir, const std::string& cn = "kubernetes");
  ~TestCA();
  const std::string& cert_file() const { return cert_file_; }
  const std::string& cert_pem() const { return cert_pem_; }
  /**
   * The certificate for a CSR: its subject and SANs, keyUsage digitalSignature (and keyEncipherment for RSA keys),
   * extendedKeyUsage from the usages ("client auth", "server auth"), valid from a second ago for `lifetime`.
   */
  absl::StatusOr<std::string> Sign(const std::string& csr_pem, const std::vector<std::string>& usages,
                                   std::chrono::seconds lifetime) const;

 private:
  TestCA() = default;
  std::string cert_file_, cert_pem_;
  void* cert_ = nullptr;  // X509*
  void* key_ = nullptr;   // EVP_PKEY*
};

}  // namespace kubelet::testing

#include "fake/test_ca.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kubelet::testing {
namespace {

std::string Err() {
  char buf[256];
  ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

X509_REQ* ReadReq(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509_REQ* r = PEM_read_bio_X509_REQ(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return r;
}

void AddExt(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  if (X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str())) {
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }
}

}  // namespace

absl::StatusOr<CSRInfo> ParseCSR(const std::string& pem) {
  X509_REQ* req = ReadReq(pem);
  if (!req) return absl::InvalidArgumentError("PEM block type must be CERTIFICATE REQUEST");
  CSRInfo info;
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
  if (!pub || X509_REQ_verify(req, pub) != 1) {
    X509_REQ_free(req);
    return absl::InvalidArgumentError("x509: CSR signature is invalid");
  }
  info.rsa_key = EVP_PKEY_base_id(pub) == EVP_PKEY_RSA;
  X509_NAME* name = X509_REQ_get_subject_name(req);
  for (int nid : {NID_commonName, NID_organizationName}) {
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0;) {
      unsigned char* utf8 = nullptr;
      int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
      std::string v = n >= 0 ? std::string(reinterpret_cast<char*>(utf8), static_cast<size_t>(n)) : "";
      OPENSSL_free(utf8);
      if (nid == NID_commonName) info.common_name = v;
      else info.organizations.push_back(v);
    }
  }
  if (STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req)) {
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) {
      X509_EXTENSION* e = sk_X509_EXTENSION_value(exts, i);
      if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) != NID_subject_alt_name) continue;
      auto* names = static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(e));
      for (int j = 0; names && j < sk_GENERAL_NAME_num(names); ++j) {
        GENERAL_NAME* g = sk_GENERAL_NAME_value(names, j);
        if (g->type == GEN_DNS) {
          info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                                      static_cast<size_t>(ASN1_STRING_length(g->d.dNSName)));
        } else if (g->type == GEN_IPADD) {
          char buf[INET6_ADDRSTRLEN] = {};
          int len = ASN1_STRING_length(g->d.iPAddress);
          inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress), buf, sizeof(buf));
          info.ip_addresses.push_back(buf);
        } else {
          info.other_sans++;
        }
      }
      GENERAL_NAMES_free(names);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  X509_REQ_free(req);
  return info;
}

absl::StatusOr<std::unique_ptr<TestCA>> TestCA::Create(const std::string& dir, const std::string& cn) {
  std::unique_ptr<TestCA> ca(new TestCA());
  std::filesystem::create_directories(dir);
  ca->cert_file_ = dir + "/ca.crt";
  std::string key_file = dir + "/ca.key";
  if (std::filesystem::exists(ca->cert_file_) && std::filesystem::exists(key_file)) {
    std::string c = ReadAll(ca->cert_file_), k = ReadAll(key_file);
    BIO* cb = BIO_new_mem_buf(c.data(), static_cast<int>(c.size()));
    BIO* kb = BIO_new_mem_buf(k.data(), static_cast<int>(k.size()));
    ca->cert_ = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
    ca->key_ = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    BIO_free(cb);
    BIO_free(kb);
    if (!ca->cert_ || !ca->key_) return absl::InvalidArgumentError("cannot read the CA in " + dir + ": " + Err());
    ca->cert_pem_ = c;
    return ca;
  }
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  AddExt(x, x, NID_basic_constraints, "critical,CA:TRUE");
  AddExt(x, x, NID_key_usage, "critical,digitalSignature,keyEncipherment,keyCertSign");
  AddExt(x, x, NID_subject_key_identifier, "hash");
  X509_sign(x, key, EVP_sha256());
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  ca->cert_pem_.assign(data, static_cast<size_t>(n));
  BIO_free(out);
  std::ofstream(ca->cert_file_) << ca->cert_pem_;
  int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  FILE* kf = fdopen(fd, "w");
  PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(kf);
  ca->cert_ = x;
  ca->key_ = key;
  return ca;
}

TestCA::~TestCA() {
  X509_free(static_cast<X509*>(cert_));
  EVP_PKEY_free(static_cast<EVP_PKEY*>(key_));
}

absl::StatusOr<std::string> TestCA::Sign(const std::string& csr_pem, const std::vector<std::string>& usages,
                                         std::chrono::seconds lifetime) const {
  X509_REQ* req = ReadReq(csr_pem);
  if (!req) return absl::InvalidArgumentError("PEM block type must be CERTIFICATE REQUEST");
  X509* ca = static_cast<X509*>(cert_);
  X509* x = X509_new();
  X509_set_version(x, 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x), -1);
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(lifetime.count()));
  X509_set_subject_name(x, X509_REQ_get_subject_name(req));
  X509_set_issuer_name(x, X509_get_subject_name(ca));
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
  X509_set_pubkey(x, pub);
  bool rsa = EVP_PKEY_base_id(pub) == EVP_PKEY_RSA;
  AddExt(x, ca, NID_basic_constraints, "critical,CA:FALSE");
  AddExt(x, ca, NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature");
  std::string eku;
  for (const auto& u : usages) {
    if (u == "client auth") eku += eku.empty() ? "clientAuth" : ",clientAuth";
    if (u == "server auth") eku += eku.empty() ? "serverAuth" : ",serverAuth";
  }
  if (!eku.empty()) AddExt(x, ca, NID_ext_key_usage, eku);
  AddExt(x, ca, NID_authority_key_identifier, "keyid:always");
  if (STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req)) {
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) {
      X509_EXTENSION* e = sk_X509_EXTENSION_value(exts, i);
      if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name) X509_add_ext(x, e, -1);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  X509_REQ_free(req);
  if (X509_sign(x, static_cast<EVP_PKEY*>(key_), EVP_sha256()) <= 0) {
    X509_free(x);
    return absl::InternalError("sign: " + Err());
  }
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(out);
  X509_free(x);
  return pem;
}

}  // namespace kubelet::testing

#include "kubelet/certificate/certificate_manager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "kubelet/client/kubeconfig.h"
#include "kubelet/util/base64.h"
#include "kubelet/util/file.h"
#include "kubelet/util/guard.h"
#include "kubelet/util/json.h"
#include "kubelet/util/logging.h"

namespace kubelet::certificate {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kCSRPath[] = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

std::string SSLError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

struct BioDel {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PKeyDel {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Del {
  void operator()(X509* x) const { X509_free(x); }
};
struct ReqDel {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
using Bio = std::unique_ptr<BIO, BioDel>;
using PKey = std::unique_ptr<EVP_PKEY, PKeyDel>;
using Cert = std::unique_ptr<X509, X509Del>;
using Req = std::unique_ptr<X509_REQ, ReqDel>;

Bio MemBio(const std::string& s) { return Bio(BIO_new_mem_buf(s.data(), static_cast<int>(s.size()))); }
std::string BioString(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

absl::StatusOr<PKey> ReadKey(const std::string& pem) {
  auto bio = MemBio(pem);
  PKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError("no private key in PEM data: " + SSLError());
  return key;
}

TimePoint AsTime(const ASN1_TIME* t) {
  tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return TimePoint{};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::vector<std::string> NameEntries(X509_NAME* name, int nid) {
  std::vector<std::string> out;
  for (int i = -1; (i = X509_NAME_get_index_by_NID(name, nid, i)) >= 0;) {
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (n >= 0) out.emplace_back(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
  }
  return out;
}

std::string Base64URLRaw(const std::string& in) {
  std::string s = Base64Encode(in);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

absl::StatusOr<std::string> PublicKeyDER(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key, &der);
  if (n <= 0) return absl::InternalError("marshal public key: " + SSLError());
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

// Writes through a temporary file and a rename, so a reader sees the old contents or the new.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp-" + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return absl::InternalError("cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return absl::InternalError("cannot write " + path + ": " + err);
  }
  return absl::OkStatus();
}

// The PEM blocks of `pem` whose type contains `type`, in order.
std::string PemBlocks(const std::string& pem, const std::string& type) {
  std::string out;
  size_t pos = 0;
  while ((pos = pem.find("-----BEGIN ", pos)) != std::string::npos) {
    size_t eol = pem.find("-----", pos + 11);
    if (eol == std::string::npos) break;
    std::string label = pem.substr(pos + 11, eol - pos - 11);
    std::string end_marker = "-----END " + label + "-----";
    size_t end = pem.find(end_marker, eol);
    if (end == std::string::npos) break;
    end += end_marker.size();
    if (label.find(type) != std::string::npos) out += pem.substr(pos, end - pos) + "\n";
    pos = end;
  }
  return out;
}

// obj[key] when obj is an object and the value a string, else "": API answers are read without throwing.
std::string Str(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::optional<absl::StatusOr<std::string>> IssuedCertificate(const json& csr, const std::string& uid) {
  if (!csr.is_object()) return std::nullopt;
  std::string got_uid = Str(ObjectField(csr, "metadata"), "uid");
  std::string name = Str(ObjectField(csr, "metadata"), "name");
  if (!uid.empty() && !got_uid.empty() && got_uid != uid)
    return absl::StatusOr<std::string>(absl::AbortedError("csr \"" + name + "\" changed UIDs"));
  const json* status = &ObjectField(csr, "status");
  bool approved = false;
  if (status->contains("conditions") && (*status)["conditions"].is_array()) {
    for (const auto& c : (*status)["conditions"]) {
      if (!c.is_object()) continue;
      std::string type = Str(c, "type");
      std::string why = "reason: " + Str(c, "reason") + ", message: " + Str(c, "message");
      if (type == "Denied")
        return absl::StatusOr<std::string>(absl::PermissionDeniedError("certificate signing request is denied, " + why));
      if (type == "Failed")
        return absl::StatusOr<std::string>(absl::FailedPreconditionError("certificate signing request failed, " + why));
      if (type == "Approved") approved = true;
    }
  }
  if (!approved || !status->contains("certificate") || !(*status)["certificate"].is_string()) return std::nullopt;
  auto pem = Base64Decode((*status)["certificate"].get<std::string>());
  if (!pem.ok() || pem->empty())
    return absl::StatusOr<std::string>(absl::DataLossError("csr \"" + name + "\": status.certificate is not base64"));
  return absl::StatusOr<std::string>(*pem);
}

absl::StatusOr<KeyPair> ParseKeyPair(const std::string& cert_pem, const std::string& key_pem) {
  auto bio = MemBio(cert_pem);
  Cert leaf(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!leaf) return absl::InvalidArgumentError("no certificate in PEM data: " + SSLError());
  auto key = ReadKey(key_pem);
  if (!key.ok()) return key.status();
  if (X509_check_private_key(leaf.get(), key->get()) != 1)
    return absl::InvalidArgumentError("private key does not match public key: " + SSLError());
  KeyPair kp;
  kp.cert_pem = PemBlocks(cert_pem, "CERTIFICATE");
  kp.key_pem = PemBlocks(key_pem, "PRIVATE KEY");
  kp.not_before = AsTime(X509_get0_notBefore(leaf.get()));
  kp.not_after = AsTime(X509_get0_notAfter(leaf.get()));
  auto cn = NameEntries(X509_get_subject_name(leaf.get()), NID_commonName);
  if (!cn.empty()) kp.common_name = cn.front();
  kp.organizations = NameEntries(X509_get_subject_name(leaf.get()), NID_organizationName);
  return kp;
}

absl::StatusOr<KeyPair> ParseCombinedPEM(const std::string& pem) { return ParseKeyPair(pem, pem); }

absl::StatusOr<std::string> GenerateECKey() {
  PKey key(EVP_EC_gen("P-256"));
  if (!key) return absl::InternalError("generate ECDSA P-256 key: " + SSLError());
  Bio out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey_traditional(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return absl::InternalError("encode private key: " + SSLError());
  return BioString(out.get());
}

absl::StatusOr<std::string> MakeCSR(const std::string& key_pem, const Subject& subject) {
  auto key = ReadKey(key_pem);
  if (!key.ok()) return key.status();
  Req req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  // Go's pkix.Name order: O before CN.
  for (const auto& o : subject.organizations)
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0);
  if (!subject.common_name.empty())
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(subject.common_name.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key->get());
  std::string san;
  for (const auto& d : subject.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : subject.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str());
    if (!ext) return absl::InvalidArgumentError("subjectAltName \"" + san + "\": " + SSLError());
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    sk_X509_EXTENSION_push(exts, ext);
    X509_REQ_add_extensions(req.get(), exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  if (X509_REQ_sign(req.get(), key->get(), EVP_sha256()) <= 0) return absl::InternalError("sign CSR: " + SSLError());
  Bio out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509_REQ(out.get(), req.get()) != 1) return absl::InternalError("encode CSR: " + SSLError());
  return BioString(out.get());
}

absl::StatusOr<std::string> DigestedName(const std::string& key_pem, const Subject& subject,
                                         const std::vector<std::string>& usages) {
  auto key = ReadKey(key_pem);
  if (!key.ok()) return key.status();
  auto der = PublicKeyDER(key->get());
  if (!der.ok()) return der.status();
  std::string stream;
  auto write = [&](const std::string& s) { stream += Base64URLRaw(s) + "|"; };
  write(*der);
  write(subject.common_name);
  for (const auto& o : subject.organizations) write(o);
  for (const auto& u : usages) write(u);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(stream.data(), stream.size(), md, &n, EVP_sha512_256(), nullptr) != 1)
    return absl::InternalError("digest: " + SSLError());
  return "node-csr-" + Base64URLRaw(std::string(reinterpret_cast<char*>(md), n));
}

TimePoint NextRotationDeadline(const KeyPair& cert, double jitter) {
  auto total = (cert.not_after - cert.not_before).count();
  long double fraction = 0.7L + 0.2L * std::clamp<long double>(jitter, 0.0L, 1.0L);
  return cert.not_before + TimePoint::duration(static_cast<TimePoint::duration::rep>(std::llroundl(total * fraction)));
}

// ---- FileStore ----

FileStore::FileStore(std::string prefix, std::string cert_dir, std::string cert_file, std::string key_file)
    : prefix_(std::move(prefix)), dir_(std::move(cert_dir)), cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {}

std::string FileStore::CurrentPath() const { return dir_ + "/" + prefix_ + "-current.pem"; }

absl::StatusOr<KeyPair> FileStore::Current() const {
  std::error_code ec;
  if (fs::exists(CurrentPath(), ec)) {
    auto pem = ReadFileToString(CurrentPath());
    if (!pem.ok()) return pem.status();
    auto kp = ParseCombinedPEM(*pem);
    if (!kp.ok()) return absl::InvalidArgumentError("could not convert data from \"" + CurrentPath() + "\" into cert/key pair: " +
                                                    std::string(kp.status().message()));
    return kp;
  }
  std::string cert = cert_file_, key = key_file_;
  if (cert.empty() || key.empty()) {
    cert = dir_ + "/" + prefix_ + ".crt";
    key = dir_ + "/" + prefix_ + ".key";
  }
  if (fs::exists(cert, ec) && fs::exists(key, ec)) {
    auto c = ReadFileToString(cert);
    auto k = ReadFileToString(key);
    if (!c.ok()) return c.status();
    if (!k.ok()) return k.status();
    auto kp = ParseKeyPair(*c, *k);
    if (!kp.ok()) return absl::InvalidArgumentError("could not convert data from \"" + cert + "\" and \"" + key +
                                                    "\" into cert/key pair: " + std::string(kp.status().message()));
    return kp;
  }
  return absl::NotFoundError("no cert/key files read at \"" + CurrentPath() + "\", (\"" + cert + "\", \"" + key +
                             "\") or (\"" + dir_ + "\", \"" + dir_ + "\")");
}

absl::StatusOr<KeyPair> FileStore::Update(const std::string& cert_pem, const std::string& key_pem) {
  auto kp = ParseKeyPair(cert_pem, key_pem);
  if (!kp.ok()) return kp.status();
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return absl::InternalError("could not create directory \"" + dir_ + "\": " + ec.message());
  time_t now = ::time(nullptr);
  tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%d-%H-%M-%S", &local);
  std::string file = fs::absolute(dir_ + "/" + prefix_ + "-" + stamp + ".pem").lexically_normal().string();
  if (auto st = WriteFileAtomic(file, kp->cert_pem + kp->key_pem, 0600); !st.ok()) return st;
  // The link is replaced in one rename: a reader never finds it missing.
  std::string tmp_link = dir_ + "/." + prefix_ + "-updated.pem";
  ::unlink(tmp_link.c_str());
  if (::symlink(file.c_str(), tmp_link.c_str()) != 0 || ::rename(tmp_link.c_str(), CurrentPath().c_str()) != 0)
    return absl::InternalError("could not link \"" + CurrentPath() + "\" to \"" + file + "\": " + std::strerror(errno));
  return kp;
}

// ---- CSRs ----

absl::StatusOr<std::string> RequestCertificate(client::ApiClient* api, const std::string& csr_pem, const std::string& name,
                                               const std::string& signer, const std::vector<std::string>& usages,
                                               Duration timeout, const std::atomic<bool>* stop) {
  auto log = log::Get("certificate");
  json obj = {{"apiVersion", "certificates.k8s.io/v1"},
              {"kind", "CertificateSigningRequest"},
              {"metadata", {{"name", name}}},
              {"spec", {{"request", Base64Encode(csr_pem)}, {"signerName", signer}, {"usages", usages}}}};
  auto created = api->Create(kCSRPath, obj);
  json csr;
  if (created.ok()) {
    csr = *created;
  } else if (client::StatusReason(created.status()) == "AlreadyExists") {
    // A request made before a restart, with the same key: reuse it when it asks for the same thing.
    auto got = api->Get(std::string(kCSRPath) + "/" + name);
    if (!got.ok()) return absl::Status(got.status().code(), "cannot retrieve certificate signing request: " + std::string(got.status().message()));
    const json* spec = &ObjectField(*got, "spec");
    if (Str(*spec, "signerName") != signer)
      return absl::FailedPreconditionError("retrieved csr is not compatible: signer name mismatch");
    auto decoded = Base64Decode(Str(*spec, "request"));
    const std::string old_req = decoded.ok() ? *decoded : std::string();
    auto bio = MemBio(old_req);
    Req parsed(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    auto new_bio = MemBio(csr_pem);
    Req mine(PEM_read_bio_X509_REQ(new_bio.get(), nullptr, nullptr, nullptr));
    if (!parsed || !mine) return absl::FailedPreconditionError("retrieved csr is not compatible: unable to parse the request");
    auto a = PublicKeyDER(X509_REQ_get0_pubkey(parsed.get()));
    auto b = PublicKeyDER(X509_REQ_get0_pubkey(mine.get()));
    if (!a.ok() || !b.ok() || *a != *b) return absl::FailedPreconditionError("retrieved csr is not compatible: public key mismatch");
    if (X509_NAME_cmp(X509_REQ_get_subject_name(parsed.get()), X509_REQ_get_subject_name(mine.get())) != 0)
      return absl::FailedPreconditionError("retrieved csr is not compatible: subject mismatch");
    csr = *got;
  } else {
    return absl::Status(created.status().code(), "cannot create certificate signing request: " + std::string(created.status().message()));
  }
  std::string uid = Str(ObjectField(csr, "metadata"), "uid");
  log->info("Waiting for the certificate to be issued csr=\"{}\" signerName=\"{}\"", name, signer);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto stopped = [stop] { return stop && stop->load(); };
  while (!stopped()) {
    if (auto v = IssuedCertificate(csr, uid)) return *v;
    auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    std::string rv = Str(ObjectField(csr, "metadata"), "resourceVersion");
    std::optional<absl::StatusOr<std::string>> result;
    std::string path = std::string(kCSRPath) + "?fieldSelector=metadata.name%3D" + name + "&watch=true&timeoutSeconds=" +
                       std::to_string(std::min<int64_t>(left, 300)) + (rv.empty() ? "" : "&resourceVersion=" + rv);
    auto st = api->Watch(
        path,
        [&](const json& ev) {
          std::string type = Str(ev, "type");
          if (type == "ADDED" || type == "MODIFIED") {
            csr = ev.is_object() && ev.contains("object") ? ev["object"] : json(nullptr);
            result = IssuedCertificate(csr, uid);
          } else if (type == "DELETED") {
            result = absl::StatusOr<std::string>(absl::AbortedError("csr \"" + name + "\" was deleted"));
          }
          return !result.has_value();
        },
        stop);
    if (result) return *result;
    if (!st.ok()) KLOG_V(log, 2)("Watch of certificate signing request ended csr=\"{}\" err=\"{}\"", name, st.message());
    // Re-read the object (a compacted or broken watch), at most once a second.
    for (int i = 0; i < 10 && !stopped(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (auto got = api->Get(std::string(kCSRPath) + "/" + name); got.ok()) {
      csr = *got;
    } else if (client::StatusReason(got.status()) == "NotFound") {
      return absl::AbortedError("csr \"" + name + "\" was deleted");
    }
  }
  if (stopped()) return absl::CancelledError("stopped while waiting for certificate signing request " + name);
  return absl::DeadlineExceededError("timed out waiting for certificate signing request " + name + " to be issued");
}

// ---- Manager ----

Manager::Manager(ManagerOptions o) : o_(std::move(o)) {
  auto log = log::Get("certificate");
  if (o_.store) {
    auto cur = o_.store->Current();
    if (cur.ok()) {
      current_ = std::make_shared<KeyPair>(std::move(*cur));
    } else if (!absl::IsNotFound(cur.status())) {
      log->error("Failed to load the current {} certificate err=\"{}\"", o_.name, cur.status().message());
    }
  }
  if (!current_ && o_.initial) current_ = std::make_shared<KeyPair>(*o_.initial);
}

Manager::~Manager() { Stop(); }

void Manager::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  stop_flag_ = false;
  thread_ = std::thread([this] { GuardedRun("certificate-manager-" + o_.name, [this] { Run(); }); });
}

void Manager::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    stop_flag_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const KeyPair> Manager::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  if (!current_ || (o_.clock && o_.clock->Now() > current_->not_after)) return nullptr;
  return current_;
}

TimePoint Manager::Deadline() const {
  std::lock_guard<std::mutex> l(mu_);
  return deadline_;
}

void Manager::Run() {
  auto log = log::Get("certificate");
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Duration backoff = o_.initial_backoff;
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    TimePoint now = o_.clock->Now();
    if (current_ && deadline_ == TimePoint{}) {
      deadline_ = NextRotationDeadline(*current_, unit(rng));
      log->info("Certificate rotation deadline determined certificate=\"{}\" expiration=\"{}\" deadline=\"{}\"", o_.name,
                FormatRFC3339(current_->not_after), FormatRFC3339(deadline_));
    }
    if (o_.on_ttl)
      o_.on_ttl(current_ ? std::chrono::duration<double>(current_->not_after - now).count()
                         : std::numeric_limits<double>::infinity());
    TimePoint due = current_ ? deadline_ : now;
    if (now < due) {
      // Woken at least once a minute: a wall clock that jumps is noticed.
      cv_.wait_for(l, std::min<Duration>(due - now, std::chrono::minutes(1)));
      continue;
    }
    l.unlock();
    log->info("Rotating certificates certificate=\"{}\"", o_.name);
    absl::Status st = Guarded("certificate-rotation-" + o_.name, [this] { return Rotate(); });
    l.lock();
    if (st.ok()) {
      backoff = o_.initial_backoff;
      continue;
    }
    if (stop_) break;
    if (IsRetryLater(st)) {
      KLOG_V(log, 2)("Certificate request waits certificate=\"{}\" reason=\"{}\"", o_.name, st.message());
    } else {
      log->error("Failed while requesting a signed certificate from the control plane certificate=\"{}\" err=\"{}\" retryIn=\"{}s\"",
                 o_.name, st.message(), std::chrono::duration_cast<std::chrono::seconds>(backoff).count());
      if (o_.on_error) o_.on_error();
    }
    // Waiting on something of our own (the client certificate) is polled at the initial interval, not backed off.
    cv_.wait_for(l, IsRetryLater(st) ? o_.initial_backoff : backoff, [this] { return stop_; });
    if (!IsRetryLater(st)) backoff = std::min<Duration>(backoff * 2, o_.max_backoff);
  }
}

absl::Status Manager::Rotate() {
  auto cur = Current();
  Subject subject = o_.subject ? o_.subject() : Subject{};
  if (o_.signer_name == kKubeletServingSigner && subject.dns_names.empty() && subject.ip_addresses.empty())
    return absl::UnavailableError("no serving certificate requested: the node has no hostname or IP address yet");
  auto key = GenerateECKey();
  if (!key.ok()) return key.status();
  auto csr = MakeCSR(*key, subject);
  if (!csr.ok()) return absl::Status(csr.status().code(), "unable to generate a certificate signing request: " + std::string(csr.status().message()));
  auto name = DigestedName(*key, subject, o_.usages);
  if (!name.ok()) return name.status();
  client::ApiClient* api = o_.client ? o_.client(cur.get()) : nullptr;
  if (!api) return RetryLater(absl::UnavailableError("no credentials to request a certificate with yet"));
  auto cert = RequestCertificate(api, *csr, *name, o_.signer_name, o_.usages, o_.request_timeout, &stop_flag_);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<KeyPair> kp = o_.store ? o_.store->Update(*cert, *key) : ParseKeyPair(*cert, *key);
  if (!kp.ok()) return absl::Status(kp.status().code(), "the issued certificate was not stored: " + std::string(kp.status().message()));
  auto next = std::make_shared<const KeyPair>(std::move(*kp));
  std::shared_ptr<const KeyPair> previous;
  {
    std::lock_guard<std::mutex> l(mu_);
    previous = current_;
    current_ = next;
    deadline_ = TimePoint{};
  }
  ++rotations_;
  log::Get("certificate")->info("Certificate rotated certificate=\"{}\" csr=\"{}\" expiration=\"{}\"", o_.name, *name,
                                FormatRFC3339(next->not_after));
  if (o_.on_rotate) o_.on_rotate(previous.get(), *next);
  return absl::OkStatus();
}

// ---- TLS bootstrap ----

namespace {
std::string YamlQuote(const std::string& s) { return json(s).dump(); }
}  // namespace

bool ClientConfigStillValid(const std::string& path) {
  auto log = log::Get("certificate");
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  auto rc = client::LoadKubeconfig(path);
  if (!rc.ok()) {
    log->error("Unable to read existing bootstrap client config path=\"{}\" err=\"{}\"", path, rc.status().message());
    return false;
  }
  if (rc->client_cert_pem.empty()) {
    log->error("Unable to read TLS certificates from existing bootstrap client config path=\"{}\"", path);
    return false;
  }
  auto kp = ParseKeyPair(rc->client_cert_pem, rc->client_key_pem);
  if (!kp.ok()) {
    log->error("Unable to load TLS configuration from existing bootstrap client config path=\"{}\" err=\"{}\"", path,
               kp.status().message());
    return false;
  }
  if (std::chrono::system_clock::now() > kp->not_after) {
    log->error("Part of the existing bootstrap client certificate is expired path=\"{}\" notAfter=\"{}\"", path,
               FormatRFC3339(kp->not_after));
    return false;
  }
  return true;
}

absl::Status WriteBootstrappedKubeconfig(const client::RestConfig& boot, const std::string& kubeconfig_path,
                                         const std::string& pem) {
  std::ostringstream y;
  y << "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n";
  if (!boot.ca_file.empty()) {
    y << "    certificate-authority: " << YamlQuote(boot.ca_file) << "\n";
  } else if (!boot.ca_pem.empty()) {
    y << "    certificate-authority-data: " << Base64Encode(boot.ca_pem) << "\n";
  }
  if (boot.insecure_skip_tls_verify) y << "    insecure-skip-tls-verify: true\n";
  y << "    server: " << YamlQuote(boot.server) << "\n  name: default-cluster\n"
    << "contexts:\n- context:\n    cluster: default-cluster\n    namespace: default\n    user: default-auth\n"
    << "  name: default-context\ncurrent-context: default-context\npreferences: {}\n"
    << "users:\n- name: default-auth\n  user:\n    client-certificate: " << YamlQuote(pem)
    << "\n    client-key: " << YamlQuote(pem) << "\n";
  std::error_code ec;
  fs::path parent = fs::path(kubeconfig_path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (auto st = WriteFileAtomic(kubeconfig_path, y.str(), 0600); !st.ok()) return st;
  log::Get("certificate")->info("Wrote the kubeconfig from bootstrapping path=\"{}\" certificate=\"{}\"", kubeconfig_path, pem);
  return absl::OkStatus();
}

absl::Status LoadClientCert(const std::string& kubeconfig_path, const std::string& bootstrap_path,
                            const std::string& cert_dir, const std::string& node_name, Duration timeout,
                            const std::atomic<bool>* stop) {
  auto log = log::Get("certificate");
  if (ClientConfigStillValid(kubeconfig_path)) {
    log->info("Kubeconfig exists and is valid, skipping bootstrap path=\"{}\"", kubeconfig_path);
    return absl::OkStatus();
  }
  log->info("Using bootstrap kubeconfig to generate TLS client cert, key and kubeconfig file");
  auto boot = client::LoadKubeconfig(bootstrap_path);
  if (!boot.ok()) return absl::InvalidArgumentError("unable to load bootstrap kubeconfig: " + std::string(boot.status().message()));
  FileStore store("kubelet-client", cert_dir);
  std::string key;
  if (auto cur = store.Current(); cur.ok()) key = cur->key_pem;
  // The key is kept in a file of its own until the request is issued: a restart asks again with the same key, under
  // the same CSR name.
  const std::string tmp_key = cert_dir + "/kubelet-client.key.tmp";
  if (key.empty()) {
    if (auto k = ReadFileToString(tmp_key); k.ok() && ReadKey(*k).ok()) {
      key = *k;
    } else {
      log->info("No valid private key and/or certificate found, reusing existing private key or creating a new one");
      auto gen = GenerateECKey();
      if (!gen.ok()) return gen.status();
      key = *gen;
      std::error_code ec;
      fs::create_directories(cert_dir, ec);
      if (auto st = WriteFileAtomic(tmp_key, key, 0600); !st.ok()) return st;
    }
  }
  client::ClientOptions co;
  co.timeout = std::chrono::seconds(30);
  co.max_retries = 3;
  co.qps = 5;
  co.burst = 10;
  auto api = client::NewApiClient(*boot, co);
  Subject subject{"system:node:" + node_name, {"system:nodes"}, {}, {}};
  // ECDSA keys are not asked "key encipherment", as upstream since it stopped asking it for non-RSA keys.
  std::vector<std::string> usages = {"digital signature", "client auth"};
  auto csr = MakeCSR(key, subject);
  if (!csr.ok()) return absl::Status(csr.status().code(), "unable to generate certificate request: " + std::string(csr.status().message()));
  auto name = DigestedName(key, subject, usages);
  if (!name.ok()) return name.status();
  auto cert = RequestCertificate(api.get(), *csr, *name, kKubeAPIServerClientKubeletSigner, usages, timeout, stop);
  if (!cert.ok()) return cert.status();
  auto kp = store.Update(*cert, key);
  if (!kp.ok()) return kp.status();
  ::unlink(tmp_key.c_str());
  return WriteBootstrappedKubeconfig(*boot, kubeconfig_path, store.CurrentPath());
}

}  // namespace kubelet::certificate

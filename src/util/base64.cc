#include "kubelet/util/base64.h"

#include <openssl/evp.h>

#include <cctype>

namespace kubelet {

absl::StatusOr<std::string> Base64Decode(const std::string& in) {
  std::string clean;
  for (char c : in)
    if (!isspace(static_cast<unsigned char>(c))) clean += c;
  if (clean.size() % 4 != 0) return absl::InvalidArgumentError("invalid base64: length is not a multiple of 4");
  std::string out(clean.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return absl::InvalidArgumentError("invalid base64");
  size_t pad = 0;
  if (!clean.empty() && clean.back() == '=') ++pad;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace kubelet

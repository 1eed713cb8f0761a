#include "kubelet/api/quantity.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>

namespace kubelet::api {

namespace {
// Saturates at the int64 range instead of overflowing (an "8E" memory limit, a "1e30" request).
int64_t Clamp(long double v) {
  if (!(v == v)) return 0;
  if (v >= 9.2233720368547758e18L) return INT64_MAX;
  if (v <= -9.2233720368547758e18L) return INT64_MIN;
  return static_cast<int64_t>(v);
}
}  // namespace

int64_t Quantity::Value() const { return Clamp(std::ceil(value - 1e-9L)); }
int64_t Quantity::MilliValue() const { return Clamp(std::ceil(value * 1000 - 1e-6L)); }

absl::StatusOr<Quantity> ParseQuantity(const std::string& s) {
  static const std::map<std::string, long double> kSuffix = {
      {"", 1},         {"n", 1e-9L},     {"u", 1e-6L},     {"m", 1e-3L},
      {"k", 1e3L},     {"M", 1e6L},      {"G", 1e9L},      {"T", 1e12L},
      {"P", 1e15L},    {"E", 1e18L},     {"Ki", 1024.0L},  {"Mi", 1048576.0L},
      {"Gi", 1073741824.0L}, {"Ti", 1099511627776.0L}, {"Pi", 1125899906842624.0L},
      {"Ei", 1152921504606846976.0L}};
  const auto bad = [&] { return absl::InvalidArgumentError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': \"" + s + "\""); };
  if (s.empty()) return bad();
  size_t i = 0;
  if (s[i] == '+' || s[i] == '-') ++i;
  size_t digits_start = i;
  bool dot = false;
  while (i < s.size() && (isdigit(static_cast<unsigned char>(s[i])) || (s[i] == '.' && !dot))) {
    if (s[i] == '.') dot = true;
    ++i;
  }
  if (i == digits_start || (i == digits_start + 1 && dot)) return bad();
  long double number = std::strtold(s.substr(0, i).c_str(), nullptr);
  std::string rest = s.substr(i);
  long double mult = 1;
  if (!rest.empty() && (rest[0] == 'e' || rest[0] == 'E') && rest.size() > 1) {
    char* end = nullptr;
    long exp = std::strtol(rest.c_str() + 1, &end, 10);
    if (*end != '\0' || end == rest.c_str() + 1) return bad();
    mult = std::pow(10.0L, static_cast<long double>(exp));
  } else {
    auto it = kSuffix.find(rest);
    if (it == kSuffix.end()) return bad();
    mult = it->second;
  }
  Quantity q;
  q.value = number * mult;
  return q;
}

std::string FormatBinarySI(int64_t v) {
  if (v == 0) return "0";
  static const char* kSuffix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  int i = 0;
  int64_t n = v;
  while (i < 6 && n % 1024 == 0) {
    n /= 1024;
    ++i;
  }
  return std::to_string(n) + kSuffix[i];
}

}  // namespace kubelet::api

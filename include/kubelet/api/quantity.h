#pragma once
// resource.Quantity: "100m", "1.5", "128Mi", "1G", "1e3".
#include <cstdint>
#include <string>

#include <absl/status/statusor.h>

namespace kubelet::api {

struct Quantity {
  long double value = 0;  // in base units (cores, bytes)
  int64_t Value() const;       // rounded up, as Quantity.Value()
  int64_t MilliValue() const;  // rounded up, as Quantity.MilliValue()
};

absl::StatusOr<Quantity> ParseQuantity(const std::string& s);

/** An integer in Quantity's canonical BinarySI form: the largest power-of-1024 suffix that divides it ("100Mi", "1500"). */
std::string FormatBinarySI(int64_t v);

}  // namespace kubelet::api

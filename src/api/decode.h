#pragma once
// Shared by the decoders of API objects (codec.cc, objects.cc): typed reads of
// JSON fields that throw a FieldError naming the field path on a wrong type.
// Internal to the api library.
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kubelet/api/quantity.h"
#include "kubelet/api/types.h"

namespace kubelet::api::decode {

using json = nlohmann::json;

struct FieldError {
  std::string path;
  std::string message;
};

inline std::string TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "null";
  }
}

[[noreturn]] inline void Fail(const std::string& path, const std::string& want, const json& got) {
  throw FieldError{path, "expected " + want + ", got " + TypeName(got)};
}

inline const json* Field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline std::string Join(const std::string& base, const char* key) { return base.empty() ? key : base + "." + key; }
inline std::string Index(const std::string& base, size_t i) { return base + "[" + std::to_string(i) + "]"; }

inline void Str(const json& obj, const char* key, const std::string& base, std::string* out) {
  if (const json* v = Field(obj, key)) {
    if (!v->is_string()) Fail(Join(base, key), "string", *v);
    *out = v->get<std::string>();
  }
}

// Integers as the API's Go types read them: whole numbers within the field's range, else an error naming the field.
template <typename T>
void IntValue(const json* v, const std::string& path, T* out) {
  {
    int64_t n = 0;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw FieldError{path, "value " + std::to_string(u) + " is out of range"};
      n = static_cast<int64_t>(u);
    } else if (v->is_number_integer()) {
      n = v->get<int64_t>();
    } else if (v->is_number_float()) {
      double d = v->get<double>();
      // 2^63 as a double: anything at or beyond it does not fit an int64.
      if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0)) throw FieldError{path, "value " + v->dump() + " is out of range"};
      if (d != std::trunc(d)) Fail(path, "integer", *v);
      n = static_cast<int64_t>(d);
    } else {
      Fail(path, "integer", *v);
    }
    if (n < static_cast<int64_t>(std::numeric_limits<T>::min()) || n > static_cast<int64_t>(std::numeric_limits<T>::max()))
      throw FieldError{path, "value " + std::to_string(n) + " is out of range for a " +
                                            std::to_string(sizeof(T) * 8) + "-bit integer"};
    *out = static_cast<T>(n);
  }
}

template <typename T>
void Int(const json& obj, const char* key, const std::string& base, T* out) {
  if (const json* v = Field(obj, key)) IntValue(v, Join(base, key), out);
}

template <typename T>
std::optional<T> OptInt(const json& obj, const char* key, const std::string& base) {
  if (!Field(obj, key)) return std::nullopt;
  T v{};
  Int(obj, key, base, &v);
  return v;
}

inline void Bool(const json& obj, const char* key, const std::string& base, bool* out) {
  if (const json* v = Field(obj, key)) {
    if (!v->is_boolean()) Fail(Join(base, key), "boolean", *v);
    *out = v->get<bool>();
  }
}

inline std::optional<bool> OptBool(const json& obj, const char* key, const std::string& base) {
  if (!Field(obj, key)) return std::nullopt;
  bool v = false;
  Bool(obj, key, base, &v);
  return v;
}

inline void StrList(const json& obj, const char* key, const std::string& base, std::vector<std::string>* out) {
  if (const json* v = Field(obj, key)) {
    if (!v->is_array()) Fail(Join(base, key), "array of strings", *v);
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) Fail(Index(Join(base, key), i), "string", (*v)[i]);
      out->push_back((*v)[i].get<std::string>());
    }
  }
}

inline void StrMap(const json& obj, const char* key, const std::string& base, StringMap* out) {
  if (const json* v = Field(obj, key)) {
    if (!v->is_object()) Fail(Join(base, key), "object of strings", *v);
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (!it.value().is_string()) Fail(Join(base, key) + "." + it.key(), "string", it.value());
      (*out)[it.key()] = it.value().get<std::string>();
    }
  }
}

// Resource lists hold quantities, which JSON may give as numbers.
inline void QuantityMap(const json& obj, const char* key, const std::string& base, StringMap* out) {
  if (const json* v = Field(obj, key)) {
    if (!v->is_object()) Fail(Join(base, key), "object", *v);
    for (auto it = v->begin(); it != v->end(); ++it) {
      std::string path = Join(base, key) + "." + it.key();
      std::string text;
      if (it.value().is_string()) {
        text = it.value().get<std::string>();
      } else if (it.value().is_number()) {
        text = it.value().dump();
      } else {
        Fail(path, "quantity", it.value());
      }
      if (auto q = ParseQuantity(text); !q.ok()) throw FieldError{path, std::string(q.status().message())};
      (*out)[it.key()] = text;
    }
  }
}

inline const json& Obj(const json& obj, const char* key, const std::string& base) {
  static const json kEmpty = json::object();
  const json* v = Field(obj, key);
  if (!v) return kEmpty;
  if (!v->is_object()) Fail(Join(base, key), "object", *v);
  return *v;
}

template <typename F>
void Each(const json& obj, const char* key, const std::string& base, F&& fn) {
  const json* v = Field(obj, key);
  if (!v) return;
  if (!v->is_array()) Fail(Join(base, key), "array", *v);
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    std::string path = Index(Join(base, key), i);
    if (!item.is_object()) Fail(path, "object", item);
    fn(item, path);
  }
}

inline std::optional<TimePoint> Time(const json& obj, const char* key, const std::string& base) {
  const json* v = Field(obj, key);
  if (!v) return std::nullopt;
  TimePoint t;
  if (!v->is_string() || !ParseRFC3339(v->get<std::string>(), &t))
    throw FieldError{Join(base, key), "expected an RFC 3339 time"};
  return t;
}

}  // namespace kubelet::api::decode

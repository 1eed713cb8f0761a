#include "kubelet/cm/devicemanager_checkpoint.h"
#include "kubelet/util/fnv.h"

#include <algorithm>
#include <cctype>

#include <absl/strings/escaping.h>

namespace kubelet::cm {
using json = nlohmann::json;

namespace {


// spew's formatter with "%#v" (what upstream hashes): a value's Go type in parentheses unless it is an element, key
// or value inside a collection; strings raw; a nil slice "<nil>"; a nil map "map[]"; map keys sorted; bytes decimal.
template <typename J>
absl::Status StringList(const J& v, std::string* out) {
  if (v.is_null()) {
    *out += "<nil>";
    return absl::OkStatus();
  }
  if (!v.is_array()) return absl::InvalidArgumentError("a device list is not an array");
  *out += "[";
  bool first = true;
  for (const auto& s : v) {
    if (!s.is_string()) return absl::InvalidArgumentError("a device ID is not a string");
    *out += (first ? "" : " ") + s.template get<std::string>();
    first = false;
  }
  *out += "]";
  return absl::OkStatus();
}

template <typename J>
absl::Status StringField(const J& e, const char* name, std::string* out) {
  *out += std::string(name) + ":(string)";
  if (!e.contains(name) || e[name].is_null()) return absl::OkStatus();
  if (!e[name].is_string()) return absl::InvalidArgumentError(std::string(name) + " is not a string");
  *out += e[name].template get<std::string>();
  return absl::OkStatus();
}

template <typename J>
absl::Status Render(const J& data, std::string* out) {
  if (!data.is_object()) return absl::InvalidArgumentError("Data is not an object");
  *out += "(checkpoint.checkpointData){PodDeviceEntries:([]checkpoint.PodDevicesEntry)";
  if (!data.contains("PodDeviceEntries") || data["PodDeviceEntries"].is_null()) {
    *out += "<nil>";
  } else {
    const auto& entries = data["PodDeviceEntries"];
    if (!entries.is_array()) return absl::InvalidArgumentError("PodDeviceEntries is not an array");
    *out += "[";
    bool first = true;
    for (const auto& e : entries) {
      if (!e.is_object()) return absl::InvalidArgumentError("a PodDeviceEntries item is not an object");
      *out += first ? "{" : " {";
      first = false;
      for (const char* f : {"PodUID", "ContainerName", "ResourceName"}) {
        if (auto st = StringField(e, f, out); !st.ok()) return st;
        *out += " ";
      }
      *out += "DeviceIDs:(checkpoint.DevicesPerNUMA)map[";
      if (e.contains("DeviceIDs") && !e["DeviceIDs"].is_null()) {
        if (!e["DeviceIDs"].is_object()) return absl::InvalidArgumentError("DeviceIDs is not an object");
        std::vector<std::pair<int64_t, std::string>> keys;
        for (auto it = e["DeviceIDs"].begin(); it != e["DeviceIDs"].end(); ++it) {
          int64_t n = 0;
          size_t used = 0;
          try {
            n = std::stoll(it.key(), &used);
          } catch (...) {
            used = 0;
          }
          if (it.key().empty() || std::isspace(static_cast<unsigned char>(it.key()[0])) || used != it.key().size()) return absl::InvalidArgumentError("DeviceIDs key \"" + it.key() + "\" is not a NUMA node number");
          keys.emplace_back(n, it.key());
        }
        std::sort(keys.begin(), keys.end());
        for (size_t i = 0; i < keys.size(); ++i) {
          *out += (i ? " " : "") + std::to_string(keys[i].first) + ":";
          if (auto st = StringList(e["DeviceIDs"][keys[i].second], out); !st.ok()) return st;
        }
      }
      *out += "] AllocResp:([]uint8)";
      if (!e.contains("AllocResp") || e["AllocResp"].is_null()) {
        *out += "<nil>";
      } else {
        if (!e["AllocResp"].is_string()) return absl::InvalidArgumentError("AllocResp is not a string");
        std::string raw;
        if (!absl::Base64Unescape(e["AllocResp"].template get<std::string>(), &raw))
          return absl::InvalidArgumentError("AllocResp is not base64");
        *out += "[";
        for (size_t i = 0; i < raw.size(); ++i) *out += (i ? " " : "") + std::to_string(static_cast<unsigned char>(raw[i]));
        *out += "]";
      }
      *out += "}";
    }
    *out += "]";
  }
  *out += " RegisteredDevices:(map[string][]string)map[";
  if (data.contains("RegisteredDevices") && !data["RegisteredDevices"].is_null()) {
    const auto& reg = data["RegisteredDevices"];
    if (!reg.is_object()) return absl::InvalidArgumentError("RegisteredDevices is not an object");
    std::vector<std::string> keys;
    for (auto it = reg.begin(); it != reg.end(); ++it) keys.push_back(it.key());
    std::sort(keys.begin(), keys.end());
    for (size_t i = 0; i < keys.size(); ++i) {
      *out += (i ? " " : "") + keys[i] + ":";
      if (auto st = StringList(reg[keys[i]], out); !st.ok()) return st;
    }
  }
  *out += "]}";
  return absl::OkStatus();
}

template <typename J>
absl::StatusOr<uint64_t> Checksum(const J& data) {
  std::string s;
  if (auto st = Render(data, &s); !st.ok()) return st;
  return static_cast<uint64_t>(Fnv32a(s));
}

}  // namespace

absl::StatusOr<uint64_t> DeviceCheckpointChecksum(const json& data) { return Checksum(data); }

namespace {

void JSONString(const std::string& s, std::string* out) {
  static const char hex[] = "0123456789abcdef";
  out->push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      *out += "\\u00";
      out->push_back(hex[c >> 4]);
      out->push_back(hex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

void JSONList(const std::vector<std::string>& v, std::string* json, std::string* spew) {
  json->push_back('[');
  spew->push_back('[');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) {
      json->push_back(',');
      spew->push_back(' ');
    }
    JSONString(v[i], json);
    *spew += v[i];
  }
  json->push_back(']');
  spew->push_back(']');
}

}  // namespace

// Written by hand in one pass, the file and the text its checksum hashes together (a checkpoint is written at every
// pod start with devices; a JSON library took milliseconds for a node's worth). What the file says hashes the same
// when read back (Render above), which the tests and the fuzz target hold it to.
std::string EncodeDeviceCheckpoint(const DeviceCheckpoint& cp) {
  std::string json = "{\"Data\":{\"PodDeviceEntries\":";
  std::string spew = "(checkpoint.checkpointData){PodDeviceEntries:([]checkpoint.PodDevicesEntry)";
  if (cp.entries.empty()) {
    json += "null";  // as upstream writes no entries
    spew += "<nil>";
  } else {
    json.push_back('[');
    spew.push_back('[');
    for (size_t i = 0; i < cp.entries.size(); ++i) {
      const auto& e = cp.entries[i];
      if (i) {
        json.push_back(',');
        spew.push_back(' ');
      }
      json += "{\"PodUID\":";
      JSONString(e.pod_uid, &json);
      json += ",\"ContainerName\":";
      JSONString(e.container_name, &json);
      json += ",\"ResourceName\":";
      JSONString(e.resource_name, &json);
      json += ",\"DeviceIDs\":{";
      spew += "{PodUID:(string)" + e.pod_uid + " ContainerName:(string)" + e.container_name + " ResourceName:(string)" +
              e.resource_name + " DeviceIDs:(checkpoint.DevicesPerNUMA)map[";
      bool first = true;
      for (const auto& [numa, list] : e.device_ids) {  // numeric order, as spew sorts the keys
        if (!first) {
          json.push_back(',');
          spew.push_back(' ');
        }
        first = false;
        json += "\"" + std::to_string(numa) + "\":";
        spew += std::to_string(numa) + ":";
        JSONList(list, &json, &spew);
      }
      json += "},\"AllocResp\":\"" + absl::Base64Escape(e.alloc_resp) + "\"}";
      spew += "] AllocResp:([]uint8)[";
      for (size_t k = 0; k < e.alloc_resp.size(); ++k) {
        if (k) spew.push_back(' ');
        spew += std::to_string(static_cast<unsigned char>(e.alloc_resp[k]));
      }
      spew += "]}";
    }
    json.push_back(']');
    spew.push_back(']');
  }
  json += ",\"RegisteredDevices\":{";
  spew += " RegisteredDevices:(map[string][]string)map[";
  bool first = true;
  for (const auto& [res, list] : cp.registered) {  // byte order, as spew sorts string keys
    if (!first) {
      json.push_back(',');
      spew.push_back(' ');
    }
    first = false;
    JSONString(res, &json);
    json.push_back(':');
    spew += res + ":";
    JSONList(list, &json, &spew);
  }
  json += "}},\"Checksum\":" + std::to_string(Fnv32a(spew + "]}"));
  if (!cp.boot_id.empty()) {
    json += ",\"BootID\":";
    JSONString(cp.boot_id, &json);
  }
  json.push_back('}');
  return json;
}

absl::StatusOr<DeviceCheckpoint> DecodeDeviceCheckpoint(const std::string& blob) {
  json doc = json::parse(blob, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("checkpoint is not a JSON object");
  if (!doc.contains("Data")) return absl::InvalidArgumentError("checkpoint has no Data");
  const json& data = doc["Data"];
  auto sum = Checksum(data);
  if (!sum.ok()) return absl::InvalidArgumentError("checkpoint is malformed: " + std::string(sum.status().message()));
  if (!doc.contains("Checksum") || !doc["Checksum"].is_number_unsigned() || doc["Checksum"].get<uint64_t>() != *sum)
    return absl::DataLossError("checkpoint is corrupted");
  DeviceCheckpoint cp;
  if (doc.contains("BootID") && doc["BootID"].is_string()) cp.boot_id = doc["BootID"].get<std::string>();
  if (data.contains("PodDeviceEntries") && data["PodDeviceEntries"].is_array()) {
    for (const auto& e : data["PodDeviceEntries"]) {
      PodDevicesEntry pe;
      auto str = [&](const char* k) { return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string(); };
      pe.pod_uid = str("PodUID");
      pe.container_name = str("ContainerName");
      pe.resource_name = str("ResourceName");
      if (e.contains("DeviceIDs") && e["DeviceIDs"].is_object())
        for (auto it = e["DeviceIDs"].begin(); it != e["DeviceIDs"].end(); ++it) {
          auto& list = pe.device_ids[std::stoll(it.key())];  // a number: the checksum walk checked every key
          if (it.value().is_array())
            for (const auto& id : it.value()) list.push_back(id.get<std::string>());
        }
      if (e.contains("AllocResp") && e["AllocResp"].is_string()) absl::Base64Unescape(e["AllocResp"].get<std::string>(), &pe.alloc_resp);
      cp.entries.push_back(std::move(pe));
    }
  }
  if (data.contains("RegisteredDevices") && data["RegisteredDevices"].is_object())
    for (auto it = data["RegisteredDevices"].begin(); it != data["RegisteredDevices"].end(); ++it) {
      auto& list = cp.registered[it.key()];
      if (it.value().is_array())
        for (const auto& id : it.value()) list.push_back(id.get<std::string>());
    }
  return cp;
}

}  // namespace kubelet::cm

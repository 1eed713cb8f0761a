#include "kubelet/api/objects.h"

#include "decode.h"
#include "kubelet/api/codec.h"

namespace kubelet::api {

using namespace decode;  // NOLINT: the field readers

namespace {

// --- encoding helpers (Go's omitempty: empty strings, zero numbers, empty lists and maps are left out) ---

void Put(json& o, const char* key, const std::string& v) {
  if (v.empty()) {
    o.erase(key);
  } else {
    o[key] = v;
  }
}

void PutMap(json& o, const char* key, const StringMap& m) {
  if (m.empty()) {
    o.erase(key);
  } else {
    o[key] = m;
  }
}

void PutTime(json& o, const char* key, const std::optional<TimePoint>& t) {
  if (t) {
    o[key] = FormatRFC3339(*t);
  } else {
    o.erase(key);
  }
}

json EncodeMeta(const ObjectMetaFull& m, json base) {
  if (!base.is_object()) base = json::object();
  Put(base, "name", m.name);
  Put(base, "namespace", m.namespace_);
  Put(base, "uid", m.uid);
  Put(base, "resourceVersion", m.resource_version);
  PutMap(base, "labels", m.labels);
  PutMap(base, "annotations", m.annotations);
  PutTime(base, "creationTimestamp", m.creation_timestamp);
  if (m.owner_references.empty()) {
    base.erase("ownerReferences");
  } else {
    json refs = json::array();
    for (const auto& r : m.owner_references) {
      json o = {{"apiVersion", r.api_version}, {"kind", r.kind}, {"name", r.name}, {"uid", r.uid}};
      if (r.controller) o["controller"] = *r.controller;
      if (r.block_owner_deletion) o["blockOwnerDeletion"] = *r.block_owner_deletion;
      refs.push_back(std::move(o));
    }
    base["ownerReferences"] = std::move(refs);
  }
  return base;
}

ObjectMetaFull DecodeMeta(const json& obj) {
  ObjectMetaFull m;
  const json& meta = Obj(obj, "metadata", "");
  Str(meta, "name", "metadata", &m.name);
  Str(meta, "namespace", "metadata", &m.namespace_);
  Str(meta, "uid", "metadata", &m.uid);
  Str(meta, "resourceVersion", "metadata", &m.resource_version);
  StrMap(meta, "labels", "metadata", &m.labels);
  StrMap(meta, "annotations", "metadata", &m.annotations);
  m.creation_timestamp = Time(meta, "creationTimestamp", "metadata");
  Each(meta, "ownerReferences", "metadata", [&](const json& r, const std::string& p) {
    OwnerReference o;
    Str(r, "apiVersion", p, &o.api_version);
    Str(r, "kind", p, &o.kind);
    Str(r, "name", p, &o.name);
    Str(r, "uid", p, &o.uid);
    if (Field(r, "controller")) {
      bool b = false;
      Bool(r, "controller", p, &b);
      o.controller = b;
    }
    if (Field(r, "blockOwnerDeletion")) {
      bool b = false;
      Bool(r, "blockOwnerDeletion", p, &b);
      o.block_owner_deletion = b;
    }
    m.owner_references.push_back(std::move(o));
  });
  return m;
}

absl::Status CheckKind(const json& obj, const char* kind, const char* api_version) {
  if (!obj.is_object()) return absl::InvalidArgumentError(std::string(kind) + ": expected an object, got " + TypeName(obj));
  std::string k = StringField(obj, "kind");
  if (!k.empty() && k != kind) return absl::InvalidArgumentError(std::string("kind: expected ") + kind + ", got " + k);
  std::string v = StringField(obj, "apiVersion");
  if (!v.empty() && v != api_version)
    return absl::InvalidArgumentError(std::string("apiVersion: expected ") + api_version + ", got " + v);
  return absl::OkStatus();
}

template <typename T, typename F>
absl::StatusOr<T> Guard(const char* what, F&& fn) {
  try {
    return fn();
  } catch (const FieldError& e) {
    return absl::InvalidArgumentError(e.path + ": " + e.message);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string(what) + ": " + e.what());
  }
}

Taint DecodeTaint(const json& t, const std::string& p) {
  Taint taint;
  Str(t, "key", p, &taint.key);
  Str(t, "value", p, &taint.value);
  Str(t, "effect", p, &taint.effect);
  taint.time_added = Time(t, "timeAdded", p);
  return taint;
}

NodeStatus DecodeNodeStatusFields(const json& st, const std::string& p) {
  NodeStatus s;
  QuantityMap(st, "capacity", p, &s.capacity);
  QuantityMap(st, "allocatable", p, &s.allocatable);
  Each(st, "conditions", p, [&](const json& c, const std::string& cp) {
    NodeCondition nc;
    Str(c, "type", cp, &nc.type);
    Str(c, "status", cp, &nc.status);
    Str(c, "reason", cp, &nc.reason);
    Str(c, "message", cp, &nc.message);
    if (auto t = Time(c, "lastHeartbeatTime", cp)) nc.last_heartbeat_time = *t;
    if (auto t = Time(c, "lastTransitionTime", cp)) nc.last_transition_time = *t;
    s.conditions.push_back(std::move(nc));
  });
  Each(st, "addresses", p, [&](const json& a, const std::string& ap) {
    NodeAddress na;
    Str(a, "type", ap, &na.type);
    Str(a, "address", ap, &na.address);
    s.addresses.push_back(std::move(na));
  });
  const json& de = Obj(st, "daemonEndpoints", p);
  Int(Obj(de, "kubeletEndpoint", Join(p, "daemonEndpoints")), "Port", Join(p, "daemonEndpoints.kubeletEndpoint"),
      &s.kubelet_endpoint_port);
  const json& ni = Obj(st, "nodeInfo", p);
  std::string np = Join(p, "nodeInfo");
  NodeSystemInfo& i = s.node_info;
  Str(ni, "machineID", np, &i.machine_id);
  Str(ni, "systemUUID", np, &i.system_uuid);
  Str(ni, "bootID", np, &i.boot_id);
  Str(ni, "kernelVersion", np, &i.kernel_version);
  Str(ni, "osImage", np, &i.os_image);
  Str(ni, "containerRuntimeVersion", np, &i.container_runtime_version);
  Str(ni, "kubeletVersion", np, &i.kubelet_version);
  Str(ni, "kubeProxyVersion", np, &i.kube_proxy_version);
  Str(ni, "operatingSystem", np, &i.operating_system);
  Str(ni, "architecture", np, &i.architecture);
  StrList(st, "volumesInUse", p, &s.volumes_in_use);
  return s;
}

}  // namespace

// --- Node ------------------------------------------------------------------

json EncodeNodeStatus(const NodeStatus& s) {
  json out = json::object();
  if (!s.capacity.empty()) out["capacity"] = s.capacity;
  if (!s.allocatable.empty()) out["allocatable"] = s.allocatable;
  json conds = json::array();
  for (const auto& c : s.conditions) {
    json o = {{"type", c.type},
              {"status", c.status},
              {"lastHeartbeatTime", FormatRFC3339(c.last_heartbeat_time)},
              {"lastTransitionTime", FormatRFC3339(c.last_transition_time)}};
    Put(o, "reason", c.reason);
    Put(o, "message", c.message);
    conds.push_back(std::move(o));
  }
  if (!conds.empty()) out["conditions"] = std::move(conds);
  json addrs = json::array();
  for (const auto& a : s.addresses) addrs.push_back({{"type", a.type}, {"address", a.address}});
  if (!addrs.empty()) out["addresses"] = std::move(addrs);
  out["daemonEndpoints"] = {{"kubeletEndpoint", {{"Port", s.kubelet_endpoint_port}}}};
  const NodeSystemInfo& i = s.node_info;
  // NodeSystemInfo's fields carry no omitempty upstream: all are always written.
  out["nodeInfo"] = {{"machineID", i.machine_id},
                     {"systemUUID", i.system_uuid},
                     {"bootID", i.boot_id},
                     {"kernelVersion", i.kernel_version},
                     {"osImage", i.os_image},
                     {"containerRuntimeVersion", i.container_runtime_version},
                     {"kubeletVersion", i.kubelet_version},
                     {"kubeProxyVersion", i.kube_proxy_version},
                     {"operatingSystem", i.operating_system},
                     {"architecture", i.architecture}};
  if (!s.volumes_in_use.empty()) out["volumesInUse"] = s.volumes_in_use;
  return out;
}

json EncodeNode(const Node& n) {
  json out = n.raw.is_object() ? n.raw : json::object();
  out["apiVersion"] = "v1";
  out["kind"] = "Node";
  out["metadata"] = EncodeMeta(n.metadata, out.value("metadata", json::object()));
  json spec = out.value("spec", json::object());
  if (!spec.is_object()) spec = json::object();
  Put(spec, "podCIDR", n.spec.pod_cidr);
  if (n.spec.pod_cidrs.empty()) {
    spec.erase("podCIDRs");
  } else {
    spec["podCIDRs"] = n.spec.pod_cidrs;
  }
  Put(spec, "providerID", n.spec.provider_id);
  if (n.spec.unschedulable) {
    spec["unschedulable"] = true;
  } else {
    spec.erase("unschedulable");
  }
  if (n.spec.taints.empty()) {
    spec.erase("taints");
  } else {
    json taints = json::array();
    for (const auto& t : n.spec.taints) {
      json o = {{"key", t.key}, {"effect", t.effect}};
      Put(o, "value", t.value);
      PutTime(o, "timeAdded", t.time_added);
      taints.push_back(std::move(o));
    }
    spec["taints"] = std::move(taints);
  }
  out["spec"] = std::move(spec);
  json status = EncodeNodeStatus(n.status);
  if (out.contains("status") && out["status"].is_object()) {
    json merged = out["status"];
    for (auto it = status.begin(); it != status.end(); ++it) merged[it.key()] = it.value();
    status = std::move(merged);
  }
  out["status"] = std::move(status);
  return out;
}

absl::StatusOr<std::vector<Taint>> DecodeTaints(const json& list) {
  if (list.is_null()) return std::vector<Taint>{};
  return Guard<std::vector<Taint>>("taints", [&] {
    std::vector<Taint> out;
    if (!list.is_array()) Fail("", "array", list);
    for (size_t i = 0; i < list.size(); ++i) {
      std::string p = Index("", i);
      if (!list[i].is_object()) Fail(p, "object", list[i]);
      out.push_back(DecodeTaint(list[i], p));
    }
    return out;
  });
}

absl::StatusOr<NodeStatus> DecodeNodeStatus(const json& obj) {
  if (!obj.is_object()) return absl::InvalidArgumentError("status: expected object, got " + TypeName(obj));
  return Guard<NodeStatus>("node status", [&] { return DecodeNodeStatusFields(obj, "status"); });
}

absl::StatusOr<Node> DecodeNode(const json& obj) {
  if (auto st = CheckKind(obj, "Node", "v1"); !st.ok()) return st;
  return Guard<Node>("node", [&] {
    Node n;
    n.raw = obj;
    n.metadata = DecodeMeta(obj);
    const json& spec = Obj(obj, "spec", "");
    Str(spec, "podCIDR", "spec", &n.spec.pod_cidr);
    StrList(spec, "podCIDRs", "spec", &n.spec.pod_cidrs);
    Str(spec, "providerID", "spec", &n.spec.provider_id);
    Bool(spec, "unschedulable", "spec", &n.spec.unschedulable);
    Each(spec, "taints", "spec",
         [&](const json& t, const std::string& p) { n.spec.taints.push_back(DecodeTaint(t, p)); });
    n.status = DecodeNodeStatusFields(Obj(obj, "status", ""), "status");
    return n;
  });
}

bool SameNodeStatusIgnoringHeartbeat(const NodeStatus& a, const NodeStatus& b) {
  json ja = EncodeNodeStatus(a), jb = EncodeNodeStatus(b);
  for (json* j : {&ja, &jb})
    if (j->contains("conditions"))
      for (auto& c : (*j)["conditions"]) c.erase("lastHeartbeatTime");
  return ja == jb;
}

// --- Lease -----------------------------------------------------------------

json EncodeLease(const Lease& l) {
  json out = l.raw.is_object() ? l.raw : json::object();
  out["apiVersion"] = "coordination.k8s.io/v1";
  out["kind"] = "Lease";
  out["metadata"] = EncodeMeta(l.metadata, out.value("metadata", json::object()));
  json spec = out.value("spec", json::object());
  if (!spec.is_object()) spec = json::object();
  auto opt_time = [&](const char* key, const std::optional<TimePoint>& t) {
    if (t) {
      spec[key] = FormatRFC3339Micro(*t);
    } else {
      spec.erase(key);
    }
  };
  if (l.spec.holder_identity) {
    spec["holderIdentity"] = *l.spec.holder_identity;
  } else {
    spec.erase("holderIdentity");
  }
  if (l.spec.lease_duration_seconds) {
    spec["leaseDurationSeconds"] = *l.spec.lease_duration_seconds;
  } else {
    spec.erase("leaseDurationSeconds");
  }
  opt_time("acquireTime", l.spec.acquire_time);
  opt_time("renewTime", l.spec.renew_time);
  if (l.spec.lease_transitions) {
    spec["leaseTransitions"] = *l.spec.lease_transitions;
  } else {
    spec.erase("leaseTransitions");
  }
  out["spec"] = std::move(spec);
  return out;
}

absl::StatusOr<Lease> DecodeLease(const json& obj) {
  if (auto st = CheckKind(obj, "Lease", "coordination.k8s.io/v1"); !st.ok()) return st;
  return Guard<Lease>("lease", [&] {
    Lease l;
    l.raw = obj;
    l.metadata = DecodeMeta(obj);
    const json& spec = Obj(obj, "spec", "");
    if (Field(spec, "holderIdentity")) {
      std::string h;
      Str(spec, "holderIdentity", "spec", &h);
      l.spec.holder_identity = h;
    }
    if (Field(spec, "leaseDurationSeconds")) {
      int32_t d = 0;
      Int(spec, "leaseDurationSeconds", "spec", &d);
      l.spec.lease_duration_seconds = d;
    }
    l.spec.acquire_time = Time(spec, "acquireTime", "spec");
    l.spec.renew_time = Time(spec, "renewTime", "spec");
    if (Field(spec, "leaseTransitions")) {
      int32_t t = 0;
      Int(spec, "leaseTransitions", "spec", &t);
      l.spec.lease_transitions = t;
    }
    return l;
  });
}

// --- Event -----------------------------------------------------------------

json EncodeEvent(const Event& e) {
  json out = e.raw.is_object() ? e.raw : json::object();
  out["apiVersion"] = "v1";
  out["kind"] = "Event";
  out["metadata"] = EncodeMeta(e.metadata, out.value("metadata", json::object()));
  json ref = json::object();
  Put(ref, "kind", e.involved_object.kind);
  Put(ref, "namespace", e.involved_object.namespace_);
  Put(ref, "name", e.involved_object.name);
  Put(ref, "uid", e.involved_object.uid);
  Put(ref, "apiVersion", e.involved_object.api_version);
  Put(ref, "resourceVersion", e.involved_object.resource_version);
  Put(ref, "fieldPath", e.involved_object.field_path);
  out["involvedObject"] = std::move(ref);
  Put(out, "reason", e.reason);
  Put(out, "message", e.message);
  Put(out, "type", e.type);
  json src = json::object();
  Put(src, "component", e.source.component);
  Put(src, "host", e.source.host);
  out["source"] = std::move(src);
  PutTime(out, "firstTimestamp", e.first_timestamp);
  PutTime(out, "lastTimestamp", e.last_timestamp);
  if (e.count != 0) {
    out["count"] = e.count;
  } else {
    out.erase("count");
  }
  Put(out, "reportingComponent", e.reporting_component);
  Put(out, "reportingInstance", e.reporting_instance);
  return out;
}

absl::StatusOr<Event> DecodeEvent(const json& obj) {
  if (auto st = CheckKind(obj, "Event", "v1"); !st.ok()) return st;
  return Guard<Event>("event", [&] {
    Event e;
    e.raw = obj;
    e.metadata = DecodeMeta(obj);
    const json& ref = Obj(obj, "involvedObject", "");
    Str(ref, "kind", "involvedObject", &e.involved_object.kind);
    Str(ref, "namespace", "involvedObject", &e.involved_object.namespace_);
    Str(ref, "name", "involvedObject", &e.involved_object.name);
    Str(ref, "uid", "involvedObject", &e.involved_object.uid);
    Str(ref, "apiVersion", "involvedObject", &e.involved_object.api_version);
    Str(ref, "resourceVersion", "involvedObject", &e.involved_object.resource_version);
    Str(ref, "fieldPath", "involvedObject", &e.involved_object.field_path);
    Str(obj, "reason", "", &e.reason);
    Str(obj, "message", "", &e.message);
    Str(obj, "type", "", &e.type);
    const json& src = Obj(obj, "source", "");
    Str(src, "component", "source", &e.source.component);
    Str(src, "host", "source", &e.source.host);
    e.first_timestamp = Time(obj, "firstTimestamp", "");
    e.last_timestamp = Time(obj, "lastTimestamp", "");
    Int(obj, "count", "", &e.count);
    Str(obj, "reportingComponent", "", &e.reporting_component);
    Str(obj, "reportingInstance", "", &e.reporting_instance);
    return e;
  });
}

// --- Status ------------------------------------------------------------------

json EncodeStatus(const Status& s) {
  json out = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", json::object()}};
  Put(out, "status", s.status);
  Put(out, "message", s.message);
  Put(out, "reason", s.reason);
  if (s.details) {
    json d = json::object();
    Put(d, "name", s.details->name);
    Put(d, "group", s.details->group);
    Put(d, "kind", s.details->kind);
    Put(d, "uid", s.details->uid);
    if (!s.details->causes.empty()) {
      json causes = json::array();
      for (const auto& c : s.details->causes) {
        json o = json::object();
        Put(o, "reason", c.reason);
        Put(o, "message", c.message);
        Put(o, "field", c.field);
        causes.push_back(std::move(o));
      }
      d["causes"] = std::move(causes);
    }
    if (s.details->retry_after_seconds) d["retryAfterSeconds"] = s.details->retry_after_seconds;
    out["details"] = std::move(d);
  }
  if (s.code) out["code"] = s.code;
  return out;
}

absl::StatusOr<Status> DecodeStatus(const json& obj) {
  if (!obj.is_object() || StringField(obj, "kind") != "Status")
    return absl::InvalidArgumentError("not a Status object");
  return Guard<Status>("status", [&] {
    Status s;
    Str(obj, "status", "", &s.status);
    Str(obj, "message", "", &s.message);
    Str(obj, "reason", "", &s.reason);
    Int(obj, "code", "", &s.code);
    if (Field(obj, "details")) {
      const json& d = Obj(obj, "details", "");
      StatusDetails det;
      Str(d, "name", "details", &det.name);
      Str(d, "group", "details", &det.group);
      Str(d, "kind", "details", &det.kind);
      Str(d, "uid", "details", &det.uid);
      Int(d, "retryAfterSeconds", "details", &det.retry_after_seconds);
      Each(d, "causes", "details", [&](const json& c, const std::string& p) {
        StatusCause cause;
        Str(c, "reason", p, &cause.reason);
        Str(c, "message", p, &cause.message);
        Str(c, "field", p, &cause.field);
        det.causes.push_back(std::move(cause));
      });
      s.details = std::move(det);
    }
    return s;
  });
}

}  // namespace kubelet::api

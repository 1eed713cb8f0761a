// Typed Node, Lease, Event and Status: round trips keep unknown fields,
// wrong types name their field, times keep the wire precision.
#include <gtest/gtest.h>

#include "kubelet/api/objects.h"

namespace kubelet::api {
namespace {

using json = nlohmann::json;

TEST(ObjectsTest, NodeRoundTripKeepsUnknownFields) {
  json in = json::parse(R"({
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "n1", "uid": "u-1", "resourceVersion": "7", "labels": {"a": "b"},
                 "managedFields": [{"manager": "kubectl"}], "creationTimestamp": "2026-01-02T03:04:05Z"},
    "spec": {"podCIDR": "10.0.0.0/24", "taints": [{"key": "k", "effect": "NoSchedule", "timeAdded": "2026-01-02T03:04:05Z"}],
             "configSource": {"x": 1}},
    "status": {"capacity": {"cpu": "2", "memory": 1024}, "images": [{"names": ["a"]}],
               "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                               "lastHeartbeatTime": "2026-01-02T03:04:05Z", "lastTransitionTime": "2026-01-02T03:00:00Z"}],
               "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
               "nodeInfo": {"kubeletVersion": "v1.31.0", "futureField": "x"}}
  })");
  auto n = DecodeNode(in);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->metadata.name, "n1");
  EXPECT_EQ(n->metadata.labels.at("a"), "b");
  EXPECT_EQ(n->spec.pod_cidr, "10.0.0.0/24");
  ASSERT_EQ(n->spec.taints.size(), 1u);
  EXPECT_TRUE(n->spec.taints[0].time_added.has_value());
  EXPECT_EQ(n->status.capacity.at("memory"), "1024");
  ASSERT_EQ(n->status.conditions.size(), 1u);
  EXPECT_EQ(n->status.conditions[0].reason, "KubeletReady");
  EXPECT_EQ(n->status.kubelet_endpoint_port, 10250);
  EXPECT_EQ(n->status.node_info.kubelet_version, "v1.31.0");

  n->metadata.labels["c"] = "d";
  json out = EncodeNode(*n);
  EXPECT_EQ(out["metadata"]["managedFields"][0]["manager"], "kubectl");
  EXPECT_EQ(out["spec"]["configSource"]["x"], 1);
  EXPECT_EQ(out["status"]["images"][0]["names"][0], "a");
  EXPECT_EQ(out["metadata"]["labels"]["c"], "d");
  EXPECT_EQ(out["spec"]["taints"][0]["timeAdded"], "2026-01-02T03:04:05Z");
  EXPECT_EQ(out["status"]["conditions"][0]["lastTransitionTime"], "2026-01-02T03:00:00Z");
  // Encoding what was decoded changes nothing the kubelet models.
  auto again = DecodeNode(out);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(EncodeNode(*again), out);
}

TEST(ObjectsTest, NodeWrongTypesNameTheField) {
  auto n = DecodeNode(json::parse(R"({"kind":"Node","status":{"conditions":[{"type":"Ready","status":true}]}})"));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().message(), "status.conditions[0].status: expected string, got bool");
  n = DecodeNode(json::parse(R"({"kind":"Node","spec":{"taints":{"key":"k"}}})"));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().message(), "spec.taints: expected array, got object");
  n = DecodeNode(json::parse(R"({"kind":"Pod"})"));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().message(), "kind: expected Node, got Pod");
  n = DecodeNode(json::parse(R"({"kind":"Node","status":{"capacity":{"cpu":"two"}}})"));
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("status.capacity.cpu"), std::string::npos) << n.status().message();
}

TEST(ObjectsTest, NodeStatusComparisonIgnoresHeartbeatOnly) {
  NodeStatus a;
  a.conditions.push_back({"Ready", "True", FromUnixNanos(1000000000LL), FromUnixNanos(0), "KubeletReady", "ok"});
  NodeStatus b = a;
  b.conditions[0].last_heartbeat_time = FromUnixNanos(9000000000LL);
  EXPECT_TRUE(SameNodeStatusIgnoringHeartbeat(a, b));
  b.conditions[0].status = "False";
  EXPECT_FALSE(SameNodeStatusIgnoringHeartbeat(a, b));
  b = a;
  b.allocatable["cpu"] = "1";
  EXPECT_FALSE(SameNodeStatusIgnoringHeartbeat(a, b));
}

TEST(ObjectsTest, TaintsFromConfig) {
  auto t = DecodeTaints(json::parse(R"([{"key":"a","value":"b","effect":"NoExecute"}])"));
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 1u);
  EXPECT_EQ((*t)[0].effect, "NoExecute");
  t = DecodeTaints(json::parse(R"([{"key":"a","effect":5}])"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "[0].effect: expected string, got integer");
  t = DecodeTaints(json::parse(R"(["a"])"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "[0]: expected object, got string");
}

TEST(ObjectsTest, LeaseUsesMicroTime) {
  Lease l;
  l.metadata.name = "n1";
  l.metadata.namespace_ = "kube-node-lease";
  l.spec.holder_identity = "n1";
  l.spec.lease_duration_seconds = 40;
  l.spec.renew_time = FromUnixNanos(1767323045123456789LL);
  json j = EncodeLease(l);
  EXPECT_EQ(j["apiVersion"], "coordination.k8s.io/v1");
  EXPECT_EQ(j["spec"]["renewTime"], "2026-01-02T03:04:05.123456Z");
  EXPECT_FALSE(j["spec"].contains("acquireTime"));
  j["spec"]["preferredHolder"] = "other";  // a field we do not model
  auto back = DecodeLease(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(ToUnixNanos(*back->spec.renew_time), 1767323045123456000LL);
  EXPECT_EQ(*back->spec.lease_duration_seconds, 40);
  EXPECT_EQ(EncodeLease(*back)["spec"]["preferredHolder"], "other");
  EXPECT_FALSE(DecodeLease(json::parse(R"({"kind":"Lease","spec":{"leaseDurationSeconds":"40"}})")).ok());
  EXPECT_FALSE(DecodeLease(json::parse(R"({"kind":"Lease","apiVersion":"v1"})")).ok());
}

TEST(ObjectsTest, EventEncodesAsUpstream) {
  Event e;
  e.metadata.name = "p.1";
  e.metadata.namespace_ = "default";
  e.involved_object = {"Pod", "default", "p", "uid-1", "v1", "", ""};
  e.reason = "Started";
  e.message = "Started container c";
  e.type = "Normal";
  e.source = {"kubelet", "node1"};
  e.first_timestamp = e.last_timestamp = FromUnixNanos(1767323045000000000LL);
  e.count = 1;
  e.reporting_component = "kubelet";
  e.reporting_instance = "node1";
  json j = EncodeEvent(e);
  EXPECT_EQ(j["involvedObject"], json::parse(R"({"kind":"Pod","namespace":"default","name":"p","uid":"uid-1","apiVersion":"v1"})"));
  EXPECT_EQ(j["source"], json::parse(R"({"component":"kubelet","host":"node1"})"));
  EXPECT_EQ(j["firstTimestamp"], "2026-01-02T03:04:05Z");
  EXPECT_EQ(j["count"], 1);
  auto back = DecodeEvent(j);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->involved_object.uid, "uid-1");
  EXPECT_EQ(back->count, 1);
  EXPECT_EQ(EncodeEvent(*back), j);
}

TEST(ObjectsTest, StatusDecodes) {
  auto s = DecodeStatus(json::parse(R"({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"AlreadyExists",
    "message":"pods \"p\" already exists","code":409,"details":{"name":"p","kind":"pods","retryAfterSeconds":2,
    "causes":[{"reason":"FieldValueInvalid","field":"spec"}]}})"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->reason, "AlreadyExists");
  EXPECT_EQ(s->code, 409);
  ASSERT_TRUE(s->details.has_value());
  EXPECT_EQ(s->details->retry_after_seconds, 2);
  EXPECT_EQ(s->details->causes[0].field, "spec");
  EXPECT_EQ(DecodeStatus(EncodeStatus(*s))->message, s->message);
  EXPECT_FALSE(DecodeStatus(json::parse(R"({"kind":"Pod"})")).ok());
  EXPECT_FALSE(DecodeStatus(json::parse(R"({"kind":"Status","code":"409"})")).ok());
}

TEST(ObjectsTest, TimesKeepTheirPrecision) {
  TimePoint t;
  ASSERT_TRUE(ParseRFC3339("2026-01-02T03:04:05.5Z", &t));
  EXPECT_EQ(ToUnixNanos(t), 1767323045500000000LL);
  ASSERT_TRUE(ParseRFC3339("2026-01-02T04:04:05+01:00", &t));
  EXPECT_EQ(ToUnixNanos(t), 1767323045000000000LL);
  EXPECT_EQ(FormatRFC3339Micro(FromUnixNanos(1767323045000001000LL)), "2026-01-02T03:04:05.000001Z");
  EXPECT_EQ(FormatRFC3339(FromUnixNanos(1767323045999999999LL)), "2026-01-02T03:04:05Z");
}

}  // namespace
}  // namespace kubelet::api

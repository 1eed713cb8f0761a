#include "kubelet/server/server.h"
#include "kubelet/server/node_logs.h"
#include "kubelet/util/node_info.h"

#include <unistd.h>

#include <set>
#include "kubelet/util/json.h"

#include "kubelet/stats/provider.h"

#include "kubelet/api/codec.h"
#include "kubelet/kubelet/kubelet.h"
#include "kubelet/kuberuntime/logs.h"
#include "kubelet/kuberuntime/runtime_manager.h"
#include "kubelet/metrics/metrics.h"
#include "kubelet/cri/runtime_service.h"
#include "kubelet/server/streaming.h"

#include <prometheus/text_serializer.h>

#include <sstream>
#include "kubelet/util/logging.h"

namespace kubelet::server {
namespace {

// Metric labels come from a fixed set: a client must not create series by sending made-up methods.
std::string MethodLabel(const std::string& method) {
  static const std::set<std::string> kKnown = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"};
  return kKnown.count(method) ? method : "other";
}

Response Json(const nlohmann::json& j) { return Response{200, "application/json", DumpJSON(j), {}}; }

// A duration field of the authn/authz settings ("2m", "30s"), or its default when unset or unreadable.
Duration AuthDuration(const nlohmann::json& obj, const char* key, Duration fallback) {
  if (!obj.is_object() || !obj.contains(key) || !obj[key].is_string()) return fallback;
  auto d = config::ParseGoDuration(obj[key].get<std::string>());
  return d.ok() ? *d : fallback;
}

}  // namespace

KubeletServer::KubeletServer(Kubelet* kubelet, kuberuntime::RuntimeManager* runtime, metrics::KubeletMetrics* metrics,
                             KubeletServerOptions options)
    : kubelet_(kubelet), runtime_(runtime), metrics_(metrics), o_(std::move(options)) {
  // The KubeletConfiguration v1beta1 defaults: anonymous off, token webhook on (cacheTTL 2m), Webhook authorization
  // (5m allowed, 30s denied).
  const auto& authn = o_.config.authentication;
  const auto& authz = o_.config.authorization;
  KubeletAuthOptions ao;
  ao.node_name = o_.node_name;
  ao.anonymous = ObjectField(authn, "anonymous").value("enabled", false);
  ao.x509 = !ObjectField(authn, "x509").value("clientCAFile", "").empty();
  ao.always_allow = authz.is_object() && authz.value("mode", "Webhook") == "AlwaysAllow";
  std::unique_ptr<TokenAuthenticator> tokens;
  const auto& webhook = ObjectField(authn, "webhook");
  if (webhook.value("enabled", true) && o_.auth_api)
    tokens = NewWebhookTokenAuthenticator(o_.auth_api, AuthDuration(webhook, "cacheTTL", std::chrono::minutes(2)), o_.clock);
  std::unique_ptr<Authorizer> authorizer;
  if (!ao.always_allow && o_.auth_api) {
    const auto& zw = ObjectField(authz, "webhook");
    authorizer = NewWebhookAuthorizer(o_.auth_api, AuthDuration(zw, "cacheAuthorizedTTL", std::chrono::minutes(5)),
                                      AuthDuration(zw, "cacheUnauthorizedTTL", std::chrono::seconds(30)), o_.clock);
  }
  auth_ = std::make_unique<KubeletAuth>(ao, std::move(tokens), std::move(authorizer));
}

KubeletServer::~KubeletServer() { Stop(); }

// /containerLogs/<namespace>/<pod>/<container>?follow&previous&tailLines&limitBytes&sinceSeconds&sinceTime&timestamps
Response KubeletServer::ContainerLogs(const Request& req) const {
  auto text = [](int code, const std::string& msg) { return Response{code, "text/plain; charset=utf-8", msg, {}}; };
  std::vector<std::string> parts;
  std::stringstream ss(req.path.substr(std::string("/containerLogs/").size()));
  std::string part;
  while (std::getline(ss, part, '/'))
    if (!part.empty()) parts.push_back(part);
  if (parts.size() < 1) return text(400, "Missing podNamespace.");
  if (parts.size() < 2) return text(400, "Missing podID.");
  if (parts.size() < 3) return text(400, "Missing container name.");
  const std::string &ns = parts[0], &name = parts[1], &container = parts[2];
  auto flag = [&](const char* key) {
    auto it = req.query.find(key);
    return it != req.query.end() && (it->second == "true" || it->second == "1" || it->second.empty());
  };
  auto number = [&](const char* key, std::optional<int64_t>* out) {
    auto it = req.query.find(key);
    if (it == req.query.end()) return true;
    char* end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end || v < 0) return false;
    *out = v;
    return true;
  };
  kuberuntime::LogOptions lo;
  lo.follow = flag("follow");
  lo.timestamps = flag("timestamps");
  std::optional<int64_t> since_seconds;
  if (!number("tailLines", &lo.tail_lines)) return text(400, "tailLines: must be a non-negative integer");
  if (!number("limitBytes", &lo.limit_bytes)) return text(400, "limitBytes: must be a non-negative integer");
  if (!number("sinceSeconds", &since_seconds)) return text(400, "sinceSeconds: must be a non-negative integer");
  if (since_seconds) lo.since_time = std::chrono::system_clock::now() - std::chrono::seconds(*since_seconds);
  if (auto it = req.query.find("sinceTime"); it != req.query.end()) {
    TimePoint t;
    if (!ParseRFC3339(it->second, &t)) return text(400, "sinceTime: must be an RFC 3339 time");
    lo.since_time = t;
  }
  bool previous = flag("previous");

  std::optional<api::Pod> pod;
  for (auto& p : kubelet_->GetPods())
    if (p.metadata.namespace_ == ns && p.metadata.name == name) pod = std::move(p);
  if (!pod) return text(404, "pod \"" + name + "\" does not exist");
  const api::ContainerStatus* cs = nullptr;
  for (const auto* list : {&pod->status.container_statuses, &pod->status.init_container_statuses})
    for (const auto& c : *list)
      if (c.name == container) cs = &c;
  if (!cs) return text(404, "container \"" + container + "\" not found in pod \"" + name + "\"");
  std::string id;
  if (previous) {
    if (cs->last_termination_state.terminated) id = cs->last_termination_state.terminated->container_id;
    if (id.empty()) return text(400, "previous terminated container \"" + container + "\" in pod \"" + name + "\" not found");
  } else {
    id = cs->container_id;
    if (id.empty()) {
      std::string why = cs->state.waiting ? cs->state.waiting->reason : "";
      return text(400, "container \"" + container + "\" in pod \"" + name + "\" is waiting to start: " +
                           (why.empty() ? "ContainerCreating" : why));
    }
  }
  if (size_t sep = id.find("://"); sep != std::string::npos) id = id.substr(sep + 3);
  auto log = runtime_->ContainerLog(id);
  if (!log.ok()) return text(500, "failed to get container status " + id + ": " + std::string(log.status().message()));
  std::string path = log->first;
  auto* runtime = runtime_;
  Response r{200, "text/plain", "", {}};
  r.stream = [path, lo, runtime, id](const ChunkWriter& write) {
    auto running = [runtime, id] {
      auto l = runtime->ContainerLog(id);
      return l.ok() && l->second;
    };
    (void)kuberuntime::ReadLogs(path, lo, write, running);
  };
  return r;
}

// /exec/<ns>/<pod>[/<uid>]/<container>, /attach/ (the same), /portForward/<ns>/<pod>[/<uid>].
// Upstream's /run: the command (the `cmd` query split at spaces) through ExecSync, stdout then stderr as the body
// (written as upstream writes it, under application/json); a non-zero exit is a 500 naming the command and code.
Response KubeletServer::Run(const std::string& container_id, const Request& req) const {
  std::vector<std::string> cmd;
  auto q = req.query.find("cmd");
  std::stringstream ss(q == req.query.end() ? "" : q->second);
  for (std::string part; std::getline(ss, part, ' ');) cmd.push_back(part);
  if (cmd.empty()) cmd.push_back("");
  auto res = runtime_->ExecSync(container_id, cmd, o_.config.runtime_request_timeout);
  if (!res.ok()) return Response{500, "text/plain; charset=utf-8", std::string(res.status().message()), {}};
  if (res->exit_code() != 0) {
    std::string joined;
    for (const auto& c : cmd) joined += (joined.empty() ? "" : " ") + c;
    return Response{500, "text/plain; charset=utf-8",
                    "command '" + joined + "' exited with " + std::to_string(res->exit_code()) + ": " + res->stderr(), {}};
  }
  return Response{200, "application/json", res->stdout() + res->stderr(), {}};
}

Response KubeletServer::Stream(const std::string& kind, const Request& req) const {
  auto text = [](int code, const std::string& msg) { return Response{code, "text/plain; charset=utf-8", msg, {}}; };
  if (!o_.cri) return text(501, kind + " is not supported by this kubelet's runtime");
  std::vector<std::string> parts;
  std::stringstream ss(req.path.substr(kind.size() + 2));
  for (std::string part; std::getline(ss, part, '/');)
    if (!part.empty()) parts.push_back(part);
  const bool container_path = kind != "portForward";
  const size_t want = container_path ? 3 : 2;
  if (parts.size() != want && parts.size() != want + 1) return text(404, "404 page not found\n");
  const std::string &ns = parts[0], &name = parts[1];
  const std::string uid = parts.size() == want + 1 ? parts[2] : "";
  const std::string container = container_path ? parts.back() : "";
  auto flag = [&](const char* key) {
    auto it = req.query.find(key);
    return it != req.query.end() && (it->second == "1" || it->second == "true");
  };
  std::optional<api::Pod> pod;
  for (auto& p : kubelet_->GetPods())
    if (p.metadata.namespace_ == ns && p.metadata.name == name) pod = std::move(p);
  if (!pod) return text(404, "pod does not exist");
  if (!uid.empty() && pod->metadata.uid != uid) return text(404, "pod does not exist");
  auto runtime_pods = runtime_->GetPods(true);
  if (!runtime_pods.ok()) return text(500, std::string(runtime_pods.status().message()));
  const kuberuntime::RuntimePod* rp = nullptr;
  for (const auto& p : *runtime_pods)
    if (p.uid == pod->metadata.uid) rp = &p;
  absl::StatusOr<std::string> url = absl::NotFoundError("");
  if (container_path) {
    std::string id;
    if (rp)
      for (const auto& c : rp->containers)
        if (c.name == container && c.state == kuberuntime::ContainerState::kRunning) id = c.id;
    if (id.empty()) return text(500, "container not found (\"" + container + "\")");
    if (kind == "run") return Run(id, req);
    bool tty = flag("tty"), in = flag("stdin"), out = flag("stdout"), err = flag("stderr") && !tty;
    if (!in && !out && !err) return text(400, "you must specify at least 1 of stdin, stdout, stderr");
    auto streams = [&](auto& r) {  // what ExecRequest and AttachRequest share
      r.set_container_id(id);
      r.set_tty(tty);
      r.set_stdin(in);
      r.set_stdout(out);
      r.set_stderr(err);
    };
    if (kind == "exec") {
      cri::rt::ExecRequest r;
      streams(r);
      auto cmd = req.query_values.find("command");
      if (cmd == req.query_values.end() || cmd->second.empty()) return text(400, "you must specify a command");
      for (const auto& c : cmd->second) r.add_cmd(c);
      url = o_.cri->Exec(r);
    } else {
      cri::rt::AttachRequest r;
      streams(r);
      url = o_.cri->Attach(r);
    }
  } else {
    std::string sandbox;
    if (rp)
      for (const auto& sb : rp->sandboxes)
        if (sb.ready && sandbox.empty()) sandbox = sb.id;
    if (sandbox.empty()) return text(500, "pod sandbox of pod \"" + name + "\" not found");
    cri::rt::PortForwardRequest r;
    r.set_pod_sandbox_id(sandbox);
    // WebSocket clients name the ports in the query (port=8080&port=9090, or port=8080,9090); SPDY clients in
    // the streams they open later.
    if (auto ports = req.query_values.find("port"); ports != req.query_values.end())
      for (const auto& list : ports->second) {
        if (list.empty()) return text(400, "query parameter \"port\" cannot be empty");
        std::stringstream ps(list);
        for (std::string p; std::getline(ps, p, ',');) {
          char* end = nullptr;
          long v = std::strtol(p.c_str(), &end, 10);
          if (p.empty() || *end || v < 0 || v > 65535) return text(400, "unable to parse \"" + p + "\" as a port: invalid syntax");
          if (v == 0) return text(400, "port \"" + p + "\" must be > 0");
          r.add_port(static_cast<int32_t>(v));
        }
      }
    url = o_.cri->PortForward(r);
  }
  if (!url.ok()) return text(absl::IsNotFound(url.status()) ? 404 : 500, std::string(url.status().message()));
  if (!IsUpgradeRequest(req)) return text(400, "Upgrade request required");
  Response r;
  Duration idle = o_.config.streaming_connection_idle_timeout;
  r.upgrade = [req, target = *url, idle](UpgradedConn& conn) { ProxyStream(req, target, conn, idle); };
  return r;
}

void KubeletServer::Install(HttpServer* s, bool authenticated) {
  auto wrap = [this, authenticated](const std::string& name, Handler h) -> Handler {
    return [this, authenticated, name, h](const Request& req) {
      if (metrics_)
        metrics_->http_requests.Add({{"long_running", "false"}, {"method", MethodLabel(req.method)}, {"path", name}, {"server_type", authenticated ? "readwrite" : "readonly"}})
            .Increment();
      if (authenticated)
        if (auto denied = auth_->Check(req)) return *denied;
      if (req.method != "GET" && req.method != "HEAD")
        return Response{405, "text/plain; charset=utf-8", "405: Method Not Allowed\n", {}};
      return h(req);
    };
  };
  s->Handle("/healthz", wrap("healthz", [this](const Request&) {
    std::string why;
    if (kubelet_->Healthy(&why)) return Response{200, "text/plain; charset=utf-8", "ok", {}};
    return Response{500, "text/plain; charset=utf-8",
                    "[+]ping ok\n[+]log ok\n[-]syncloop failed: reason withheld\nhealthz check failed\n", {}};
  }));
  Handler pods = wrap("pods", [this](const Request&) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& p : kubelet_->GetPods()) items.push_back(api::EncodePod(p));
    return Json({{"kind", "PodList"}, {"apiVersion", "v1"}, {"metadata", nlohmann::json::object()}, {"items", items}});
  });
  s->Handle("/pods", pods);
  s->Handle("/pods/", pods);
  s->Handle("/metrics/probes", wrap("metrics/probes", [this](const Request&) {
    prometheus::TextSerializer serializer;
    std::string body = kubelet_ ? serializer.Serialize(kubelet_->probes().registry().Collect()) : "";
    return Response{200, "text/plain; version=0.0.4; charset=utf-8", body, {}};
  }));
  if (o_.stats) {
    s->Handle("/stats/summary", wrap("stats/summary", [this](const Request& req) {
      auto summary = o_.stats->Get();
      if (!summary.ok())
        return Response{500, "text/plain; charset=utf-8", "Internal Error: " + std::string(summary.status().message()), {}};
      nlohmann::json j = stats::EncodeSummary(**summary);
      // only_cpu_and_memory=true: what metrics-server asks for.
      if (auto q = req.query.find("only_cpu_and_memory"); q != req.query.end() && q->second == "true") {
        nlohmann::json slim = {{"node", {{"nodeName", j["node"]["nodeName"]}, {"startTime", j["node"]["startTime"]},
                                         {"cpu", j["node"]["cpu"]}, {"memory", j["node"]["memory"]},
                                         {"systemContainers", j["node"]["systemContainers"]}}},
                               {"pods", nlohmann::json::array()}};
        for (const auto& p : j["pods"])
          slim["pods"].push_back({{"podRef", p["podRef"]}, {"startTime", p["startTime"]}, {"containers", p["containers"]},
                                  {"cpu", p["cpu"]}, {"memory", p["memory"]}});
        j = slim;
      }
      return Json(j);
    }));
    s->Handle("/metrics/cadvisor", wrap("metrics/cadvisor", [this](const Request&) {
      auto summary = o_.stats->Get();
      static const int cores = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
      std::string body = stats::EncodeCadvisorMetrics(summary.ok() ? summary->get() : nullptr, !summary.ok(), cores,
                                                      MachineMemoryBytes());
      return Response{200, "text/plain; version=0.0.4; charset=utf-8", body, {}};
    }));
    s->Handle("/metrics/resource", wrap("metrics/resource", [this](const Request&) {
      auto summary = o_.stats->Get();
      std::string body = stats::EncodeResourceMetrics(summary.ok() ? summary->get() : nullptr, !summary.ok());
      return Response{200, "text/plain; version=0.0.4; charset=utf-8", body, {}};
    }));
  }
  s->Handle("/metrics", wrap("metrics", [this](const Request&) {
    std::string body = metrics_ ? metrics_->Serialize() : "";
    // The volume series come from the stats provider's latest collection, as upstream's volumeStatsCollector.
    if (o_.stats)
      if (auto summary = o_.stats->Get(); summary.ok()) body += stats::EncodeVolumeStatsMetrics(**summary);
    return Response{200, "text/plain; version=0.0.4; charset=utf-8", body, {}};
  }));
  if (authenticated && o_.config.enable_debugging_handlers) {
    // Streams take GET (WebSocket) and POST (SPDY, as kubectl sends it); counted as long-running requests.
    for (const std::string kind : {"exec", "attach", "portForward"}) {
      s->Handle("/" + kind + "/", [this, kind](const Request& req) {
        if (metrics_)
          metrics_->http_requests.Add({{"long_running", "true"}, {"method", MethodLabel(req.method)}, {"path", kind}, {"server_type", "readwrite"}})
              .Increment();
        if (auto denied = auth_->Check(req)) return *denied;
        if (req.method != "GET" && req.method != "POST")
          return Response{405, "text/plain; charset=utf-8", "405: Method Not Allowed\n", {}};
        return Stream(kind, req);
      });
    }
    s->Handle("/run/", [this](const Request& req) {
      if (metrics_)
        metrics_->http_requests.Add({{"long_running", "false"}, {"method", MethodLabel(req.method)}, {"path", "run"}, {"server_type", "readwrite"}})
            .Increment();
      if (auto denied = auth_->Check(req)) return *denied;
      if (req.method != "POST") return Response{405, "text/plain; charset=utf-8", "405: Method Not Allowed\n", {}};
      return Stream("run", req);
    });
    // Log verbosity at run time, as upstream's PUT /debug/flags/v (a number in the body).
    s->Handle("/debug/flags/v", [this](const Request& req) {
      if (auto denied = auth_->Check(req)) return *denied;
      if (req.method != "PUT") return Response{405, "text/plain; charset=utf-8", "method not allowed", {}};
      std::string v = req.body;
      while (!v.empty() && isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
      char* end = nullptr;
      long level = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || level < 0 || level > 10)
        return Response{400, "text/plain; charset=utf-8", "failed to set klog.logging.verbosity: invalid value \"" + v + "\"", {}};
      log::SetVerbosity(static_cast<int>(level));
      return Response{200, "text/plain; charset=utf-8", "successfully set klog.logging.verbosity to " + v, {}};
    });
    s->Handle("/containerLogs/", wrap("containerLogs", [this](const Request& req) { return ContainerLogs(req); }));
    if (o_.config.enable_system_log_handler) {
      // The node's log files (upstream: http.FileServer over /var/log), authorized as nodes/log.
      Handler logs = wrap("logs", [this](const Request& req) {
        if (req.path == "/logs") {
          Response r{301, "text/html; charset=utf-8", "<a href=\"/logs/\">Moved Permanently</a>.\n\n", {}};
          r.headers["Location"] = "/logs/";
          return r;
        }
        return ServeNodeLogs(o_.log_dir, req.path.substr(5));
      });
      s->Handle("/logs", logs);
      s->Handle("/logs/", logs);
    }
    s->Handle("/configz", wrap("configz", [this](const Request&) {
      return Json({{"kubeletconfig", config::EncodeKubeletConfiguration(o_.config)}});
    }));
    s->Handle("/runningpods/", wrap("runningpods", [this](const Request&) {
      auto pods = runtime_->GetPods(false);
      if (!pods.ok()) return Response{500, "text/plain; charset=utf-8", std::string(pods.status().message()), {}};
      nlohmann::json items = nlohmann::json::array();
      for (const auto& p : *pods) {
        nlohmann::json containers = nlohmann::json::array();
        for (const auto& c : p.containers) containers.push_back({{"name", c.name}, {"resources", nlohmann::json::object()}});
        items.push_back({{"metadata", {{"name", p.name}, {"namespace", p.namespace_}, {"uid", p.uid}, {"creationTimestamp", nullptr}}},
                         {"spec", {{"containers", containers}}},
                         {"status", nlohmann::json::object()}});
      }
      return Json({{"kind", "PodList"}, {"apiVersion", "v1"}, {"metadata", nlohmann::json::object()}, {"items", items}});
    }));
  }
}

absl::Status KubeletServer::Start() {
  static auto log = log::Get("server");
  const auto& c = o_.config;
  if (c.healthz_port > 0) {
    ServerOptions ho;
    ho.address = c.healthz_bind_address;
    ho.port = c.healthz_port;
    healthz_ = std::make_unique<HttpServer>(ho);
    healthz_->Handle("/healthz", [this](const Request&) {
      std::string why;
      if (kubelet_->Healthy(&why)) return Response{200, "text/plain; charset=utf-8", "ok", {}};
      return Response{500, "text/plain; charset=utf-8",
                      "[+]ping ok\n[+]log ok\n[-]syncloop failed: reason withheld\nhealthz check failed\n", {}};
    });
    if (auto st = healthz_->Start(); !st.ok()) return absl::Status(st.code(), "healthz server: " + std::string(st.message()));
    log->info("Started healthz server address=\"{}:{}\"", ho.address, healthz_->port());
  }
  if (c.enable_server) {
    ServerOptions so;
    so.address = c.address;
    so.port = c.port;
    so.tls = true;
    if (o_.serving_certificate) {
      so.tls_options.certificate = o_.serving_certificate;
    } else if (!c.tls_cert_file.empty() && !c.tls_private_key_file.empty()) {
      so.tls_options.cert_file = c.tls_cert_file;
      so.tls_options.key_file = c.tls_private_key_file;
    } else {
      auto st = EnsureSelfSignedCert(o_.cert_dir, o_.node_name, &so.tls_options.cert_file, &so.tls_options.key_file);
      if (!st.ok()) return st;
    }
    if (c.authentication.contains("x509"))
      so.tls_options.client_ca_file = c.authentication["x509"].value("clientCAFile", "");
    so.tls_options.min_version = c.tls_min_version;
    so.tls_options.cipher_suites = c.tls_cipher_suites;
    main_ = std::make_unique<HttpServer>(so);
    Install(main_.get(), true);
    if (auto st = main_->Start(); !st.ok()) return absl::Status(st.code(), "kubelet server: " + std::string(st.message()));
    log->info("Starting to listen address=\"{}\" port={}", so.address, main_->port());
  }
  if (c.read_only_port > 0) {
    ServerOptions ro;
    ro.address = c.address;
    ro.port = c.read_only_port;
    read_only_ = std::make_unique<HttpServer>(ro);
    Install(read_only_.get(), false);
    if (auto st = read_only_->Start(); !st.ok()) return absl::Status(st.code(), "read-only server: " + std::string(st.message()));
    log->info("Starting to listen read-only address=\"{}\" port={}", ro.address, read_only_->port());
  }
  return absl::OkStatus();
}

void KubeletServer::Stop() {
  if (main_) main_->Stop();
  if (healthz_) healthz_->Stop();
  if (read_only_) read_only_->Stop();
}

int KubeletServer::port() const { return main_ ? main_->port() : 0; }
int KubeletServer::healthz_port() const { return healthz_ ? healthz_->port() : 0; }
int KubeletServer::read_only_port() const { return read_only_ ? read_only_->port() : 0; }

}  // namespace kubelet::server

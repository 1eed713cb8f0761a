#include "kubelet/util/logging.h"

#include <atomic>
#include <mutex>

#include <spdlog/sinks/stdout_sinks.h>

namespace kubelet::log {
namespace {
std::atomic<int> g_verbosity{0};
std::mutex g_mu;
std::shared_ptr<spdlog::sinks::sink> g_sink;

std::shared_ptr<spdlog::sinks::sink> Sink() {
  if (!g_sink) {
    g_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    g_sink->set_pattern("%L%m%d %H:%M:%S.%f %7P %n] %v");
  }
  return g_sink;
}
}  // namespace

void Init(int verbosity) {
  g_verbosity = verbosity;
  std::lock_guard<std::mutex> l(g_mu);
  Sink();
}

int Verbosity() { return g_verbosity.load(std::memory_order_relaxed); }
void SetVerbosity(int v) { g_verbosity = v; }

std::shared_ptr<spdlog::logger> Get(const std::string& component) {
  std::lock_guard<std::mutex> l(g_mu);
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = std::make_shared<spdlog::logger>(component, Sink());
  logger->set_level(spdlog::get_level());
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace kubelet::log

#include "kubelet/util/logging.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include <spdlog/sinks/base_sink.h>

namespace kubelet::log {
namespace {
std::atomic<int> g_verbosity{0};
std::mutex g_mu;
std::shared_ptr<spdlog::sinks::sink> g_sink;

// klog's header on stderr, one line per record whatever the message holds: a newline or carriage return inside it
// (an error text from a registry, a plugin, a manifest) is written as \n or \r, so journald and log shippers keep
// the record whole. No colour, whether or not stderr is a terminal.
class OneLineStderrSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::string line;
    line.reserve(formatted.size() + 8);
    size_t end = formatted.size();
    while (end > 0 && (formatted[end - 1] == '\n' || formatted[end - 1] == '\r')) --end;  // the pattern's own eol
    for (size_t i = 0; i < end; ++i) {
      char c = formatted[i];
      if (c == '\n') {
        line += "\\n";
      } else if (c == '\r') {
        line += "\\r";
      } else {
        line += c;
      }
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

std::shared_ptr<spdlog::sinks::sink> Sink() {
  if (!g_sink) {
    g_sink = std::make_shared<OneLineStderrSink>();
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

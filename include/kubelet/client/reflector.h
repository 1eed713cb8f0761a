#pragma once
// A reflector, as client-go's: lists a resource, then watches it from the
// list's resourceVersion, keeping a store of the objects by UID. A watch the
// server ends is re-opened from the last resourceVersion; an expired one
// (410) lists again; an idle one (nothing, not even a bookmark, for the
// client's watch idle timeout) is re-opened at once; failures back off from
// 500 ms to 30 s. The store is handed to on_change after each list and each
// event, on the reflector's own thread. Written once for every informer the
// kubelet keeps (its pods, its Node).
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "kubelet/client/api_client.h"

namespace kubelet::client {

class Reflector {
 public:
  using Store = std::map<std::string, nlohmann::json>;  // by metadata.uid
  /**
   * `path` is the collection ("/api/v1/pods"), `selector` its query ("fieldSelector=spec.nodeName%3Dnode1"),
   * `what` names it in logs ("pods").
   */
  Reflector(ApiClient* api, std::string path, std::string selector, std::string what,
            std::function<void(const Store&)> on_change);
  ~Reflector();
  Reflector(const Reflector&) = delete;
  Reflector& operator=(const Reflector&) = delete;
  void Start();
  /** Stops and joins the reflector's thread (a watch in flight ends within its client's abort poll). */
  void Stop();
  /** Asks the reflector to stop without waiting: many reflectors wind down together, then Stop() joins each. */
  void RequestStop();

 private:
  void Run();
  bool List();
  bool Sleep(std::chrono::milliseconds d);

  ApiClient* api_;
  std::string path_, selector_, what_;
  std::function<void(const Store&)> on_change_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> stop_flag_{false};
  Store objects_;
  std::string rv_;
};

}  // namespace kubelet::client

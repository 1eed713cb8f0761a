// TokenReview and SubjectAccessReview answers come from the API server: whatever JSON comes back, the kubelet's
// authenticator and authorizer answer without throwing, and a user is only ever one the answer named.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "kubelet/client/api_client.h"
#include "kubelet/server/auth.h"

namespace {

using json = nlohmann::json;

class Replay : public kubelet::client::ApiClient {
 public:
  json answer;
  absl::StatusOr<json> Get(const std::string&) override { return answer; }
  absl::StatusOr<json> Create(const std::string&, const json&) override { return answer; }
  absl::StatusOr<json> Update(const std::string&, const json&) override { return answer; }
  absl::StatusOr<json> Patch(const std::string&, const json&, kubelet::client::PatchType) override { return answer; }
  absl::Status Delete(const std::string&, const json&) override { return absl::OkStatus(); }
  absl::Status Watch(const std::string&, const std::function<bool(const json&)>&, const std::atomic<bool>*) override {
    return absl::OkStatus();
  }
  int64_t RequestCount() const override { return 0; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json answer = json::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr, false);
  if (answer.is_discarded()) return 0;
  Replay api;
  api.answer = answer;
  kubelet::FakeClock clock;
  auto tokens = kubelet::server::NewWebhookTokenAuthenticator(&api, std::chrono::minutes(2), &clock);
  auto user = tokens->AuthenticateToken("t");
  if (user.ok() && user->has_value() && (*user)->name.empty()) std::abort();  // a user without a name
  auto authz = kubelet::server::NewWebhookAuthorizer(&api, std::chrono::minutes(5), std::chrono::seconds(30), &clock);
  auto attrs = kubelet::server::GetRequestAttributes(kubelet::server::UserInfo{"u", "", {"g"}, {}}, "GET", "/pods", "n");
  (void)authz->Authorize(attrs[0]);
  return 0;
}

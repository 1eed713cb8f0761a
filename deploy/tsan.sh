#!/usr/bin/env bash
# Builds the unit and integration suites (unit, fake_runtime, api, api_integration, csi, devicemanager) with ThreadSanitizer and runs
# them. Any report fails the run: TSan exits non-zero at the end of a test binary that reported a race.
# Debian's gRPC, protobuf and abseil are not instrumented; test/tsan.supp names what is suppressed for them.
# Usage: deploy/tsan.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-tsan}
bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKUBELET_TSAN=ON -DKUBELET_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target kubelet_unit_tests kubelet_fake_runtime_tests kubelet_api_tests \
  kubelet_api_integration_tests kubelet_csi_tests kubelet_devicemanager_tests
export TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 report_signal_unsafe=0 suppressions=$root/test/tsan.supp"
ctest --test-dir "$build" --output-on-failure -j 2 -R '^(unit|fake_runtime|api|api_integration|csi|devicemanager)$'

if(KUBELET_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# libFuzzer targets (test/fuzz): every library they link is built with the fuzzer's coverage and ASan+UBSan.
option(KUBELET_FUZZ "Build the libFuzzer targets (clang)" OFF)
if(KUBELET_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# ThreadSanitizer (gcc): the unit and integration suites run under it in CI
# (deploy/tsan.sh). Debian's gRPC and protobuf are not instrumented; the reports
# that come from inside them are suppressed by test/tsan.supp.
option(KUBELET_TSAN "Build with ThreadSanitizer" OFF)
if(KUBELET_TSAN)
  if(KUBELET_SANITIZE OR KUBELET_FUZZ)
    message(FATAL_ERROR "KUBELET_TSAN cannot be combined with KUBELET_SANITIZE or KUBELET_FUZZ")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()

# Sanitizer builds compile at -O1 with line tables only (-g1): what the sanitizers' documentation advises, reports keep
# file and line, and CI compiles them in about half the time of -O2 -g (measured on the device manager's source with gcc
# TSan: 24 s against 13 s).
if(KUBELET_SANITIZE OR KUBELET_FUZZ OR KUBELET_TSAN)
  set(CMAKE_C_FLAGS_RELWITHDEBINFO "-O1 -g1 -DNDEBUG")
  set(CMAKE_CXX_FLAGS_RELWITHDEBINFO "-O1 -g1 -DNDEBUG")
endif()

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

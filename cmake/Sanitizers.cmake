# Sanitizer and coverage builds, as options (libuv's ASAN/UBSAN options).
if(SLUICE_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
endif()
if(SLUICE_COVERAGE)
  add_compile_options(--coverage -O0)
  add_link_options(--coverage)
endif()

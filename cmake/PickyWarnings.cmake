# Picky warnings for every target of the project (ngtcp2's PickyWarningsC).
set(SLUICE_WARNINGS
  -Wall -Wextra -Wconversion -Wsign-conversion -Wshadow
  -Wmissing-prototypes -Wstrict-prototypes -Wvla -Wpointer-arith
  -Wformat=2 -Wundef -Wcast-qual -Wwrite-strings -Wimplicit-fallthrough)
if(SLUICE_WERROR)
  list(APPEND SLUICE_WARNINGS -Werror)
endif()
add_compile_options(${SLUICE_WARNINGS})

/*
 * afl_main.c: AFL++ persistent-mode driver around LLVMFuzzerTestOneInput
 * (OpenSSL's fuzz/driver.c split).  Built with afl-clang-fast, the input
 * comes through shared memory and one process runs many inputs; built with
 * any other compiler it reads one input from stdin, so the file still
 * compiles and can replay an AFL++ crash by hand.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef __AFL_FUZZ_TESTCASE_LEN
/* afl-clang-fast's macros cast away const and narrow read()'s result: the
   project's picky warnings (-Werror) must not reject them. */
#pragma clang diagnostic ignored "-Wcast-qual"
#pragma clang diagnostic ignored "-Wshorten-64-to-32"
#pragma clang diagnostic ignored "-Wconversion"
#pragma clang diagnostic ignored "-Wsign-conversion"
__AFL_FUZZ_INIT();
#endif

int main(void) {
#ifdef __AFL_FUZZ_TESTCASE_LEN
  __AFL_INIT();
  const unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
  while (__AFL_LOOP(10000)) {
    size_t len = (size_t)__AFL_FUZZ_TESTCASE_LEN;
    LLVMFuzzerTestOneInput(buf, len);
  }
  return 0;
#else
  static uint8_t buf[1 << 20];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof(buf) && (n = read(0, buf + len, sizeof(buf) - len)) > 0)
    len += (size_t)n;
  LLVMFuzzerTestOneInput(buf, len);
  return 0;
#endif
}

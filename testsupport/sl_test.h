/*
 * sl_test.h: the minimal test harness of the core's unit tests.
 *
 * Each sl_<module>_test.c defines test functions and runs them with
 * SL_RUN(fn) from main(), which ends with `return sl_test_summary();`.
 * A failed CHECK records the failure and the line and carries on, so one run
 * reports every broken case.  The closing line is "N passed, N failed".
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sl_test_passed_, sl_test_failed_, sl_test_cur_failed_;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      sl_test_cur_failed_++;                                                   \
    }                                                                          \
  } while (0)

#define CHECK_INT(a, b)                                                        \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_) {                                                            \
      fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,    \
              __LINE__, #a, a_, #b, b_);                                       \
      sl_test_cur_failed_++;                                                   \
    }                                                                          \
  } while (0)

#define CHECK_MEM(p, n, q, m)                                                  \
  do {                                                                         \
    size_t n_ = (size_t)(n), m_ = (size_t)(m);                                 \
    if (n_ != m_ || memcmp((p), (q), n_) != 0) {                               \
      fprintf(stderr,                                                          \
              "%s:%d: %s [%zu] differs from %s [%zu]\n  got:  %.*s\n"          \
              "  want: %.*s\n",                                                \
              __FILE__, __LINE__, #p, n_, #q, m_, (int)n_, (const char *)(p),  \
              (int)m_, (const char *)(q));                                     \
      sl_test_cur_failed_++;                                                   \
    }                                                                          \
  } while (0)

#define CHECK_STR(s, lit) CHECK_MEM((s), strlen(s), (lit), strlen(lit))

#define SL_RUN(fn)                                                             \
  do {                                                                         \
    sl_test_cur_failed_ = 0;                                                   \
    fn();                                                                      \
    if (sl_test_cur_failed_) {                                                 \
      sl_test_failed_++;                                                       \
      fprintf(stderr, "FAIL %s\n", #fn);                                       \
    } else {                                                                   \
      sl_test_passed_++;                                                       \
    }                                                                          \
  } while (0)

/* A test vector file, whole (at most cap bytes); a missing file ends the
   test program (exit 2): the vectors are part of the test. */
static inline size_t sl_test_read_file(const char *path, uint8_t *buf,
                                       size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

static inline int sl_test_summary(void) {
  printf("%d passed, %d failed\n", sl_test_passed_, sl_test_failed_);
  return sl_test_failed_ ? 1 : 0;
}

#endif

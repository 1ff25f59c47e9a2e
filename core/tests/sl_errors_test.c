/* sl_errors_test.c: the X-macro table yields consistent names and messages. */
#include <string.h>

#include "sl_test.h"
#include "sluice/errors.h"

static void test_table(void) {
  int seen = 0;
#define ROW_(name, value, fatal, msg)                                          \
  CHECK_STR(sl_err_name(value), #name);                                        \
  CHECK_STR(sl_strerror(value), msg);                                          \
  CHECK_INT(sl_err_is_fatal(value), fatal);                                    \
  CHECK_INT(SL_ERR_##name, value);                                             \
  CHECK(value < 0);                                                            \
  seen++;
  SL_ERR_MAP(ROW_)
#undef ROW_
  CHECK_INT(seen, 7);
}

static void test_known_values(void) {
  CHECK_STR(sl_err_name(SL_ERR_TIME_BACKWARDS), "TIME_BACKWARDS");
  /* Retired codes are unknown, not reused. */
  CHECK_STR(sl_err_name(-2), "UNKNOWN");
  CHECK_STR(sl_err_name(-6), "UNKNOWN");
  CHECK_STR(sl_err_name(-7), "INCOMPLETE");
  CHECK_STR(sl_strerror(SL_ERR_MALFORMED),
            "input does not follow the protocol");
  CHECK(sl_err_is_fatal(SL_ERR_TIME_BACKWARDS));
  CHECK(sl_err_is_fatal(SL_ERR_INTERNAL));
  CHECK(!sl_err_is_fatal(SL_ERR_INCOMPLETE));
  CHECK(!sl_err_is_fatal(SL_ERR_NOBUF));
}

static void test_ok_and_unknown(void) {
  CHECK_STR(sl_err_name(SL_OK), "OK");
  CHECK_STR(sl_strerror(0), "success");
  CHECK(!sl_err_is_fatal(0));
  CHECK_STR(sl_err_name(-1000), "UNKNOWN");
  CHECK_STR(sl_strerror(-1000), "unknown error");
  CHECK(sl_err_is_fatal(-1000));
  CHECK_STR(sl_err_name(17), "UNKNOWN");
  CHECK(!sl_err_is_fatal(17));
  CHECK(sl_err_name(-2147483647 - 1) != NULL);
  /* Every code has a distinct name. */
  static const int codes[] = {SL_OK,
#define CODE_(name, value, fatal, msg) value,
                              SL_ERR_MAP(CODE_)
#undef CODE_
  };
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      CHECK(strcmp(sl_err_name(codes[i]), sl_err_name(codes[j])) != 0);
}

int main(void) {
  SL_RUN(test_table);
  SL_RUN(test_known_values);
  SL_RUN(test_ok_and_unknown);
  return sl_test_summary();
}

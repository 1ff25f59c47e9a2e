/*
 * sl_headers_test.c: the buffer pool and admission headers stand alone.  A
 * driver that only pools buffers or only admits connections includes
 * bufpool.h or ratelim.h and gets nothing of the relay API.
 */
#include "sluice/bufpool.h"
#include "sluice/ratelim.h"

#ifdef SLUICE_RELAY_H
#error "bufpool.h or ratelim.h pulled in relay.h"
#endif
#ifdef SLUICE_POLICY_H
#error "bufpool.h or ratelim.h pulled in policy.h"
#endif

#include "sl_test.h"

static void test_alone(void) {
  /* Compiling is the test; these only show the types are whole. */
  sl_pool pool = {0};
  sl_bufpool bp;
  static uint64_t mem[(2 * 64 + 2 * 512) / 8];
  CHECK_INT(sl_bufpool_init(&bp, mem, sizeof mem, 64, 2, 512, 2), 0);
  sl_bufpool_as_pool(&bp, &pool);
  CHECK(pool.get != NULL);
  sl_admission a = SL_ADMIT_TARPIT;
  CHECK_STR(sl_admission_name(a), "tarpit");
}

int main(void) {
  SL_RUN(test_alone);
  return sl_test_summary();
}

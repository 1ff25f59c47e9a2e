/*
 * fuzz_bdat.c: the BDAT chunk checker (sl_bdat_check) on random splits,
 * differential against a reference that looks at the whole chunk: the first
 * NUL, LF not after CR, or CR not before LF (RFC 3030 section 3, canonical
 * text), with the same class and position; a CR at the very end is pending.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sl_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint32_t seed = data[0];
  const uint8_t *in = data + 1;
  size_t n = size - 1;

  sl_violation want = SL_VIOL_NONE;
  size_t wpos = n;
  int pending = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = in[i];
    if (c == 0) {
      want = SL_VIOL_NUL;
      wpos = i + 1;
      break;
    }
    if (c == '\n' && (i == 0 || in[i - 1] != '\r')) {
      want = SL_VIOL_BARE_LF;
      wpos = i + 1;
      break;
    }
    if (c == '\r') {
      if (i + 1 == n) {
        pending = 1;
      } else if (in[i + 1] != '\n') {
        want = SL_VIOL_BARE_CR;
        wpos = i + 1;
        break;
      }
    }
  }

  uint8_t state = 0;
  size_t pos = 0;
  sl_violation got = SL_VIOL_NONE;
  while (pos < n) {
    seed = seed * 1103515245u + 12345u;
    size_t chunk = 1 + (seed >> 8) % (n - pos);
    size_t consumed = 0;
    got = sl_bdat_check(&state, in + pos, chunk, &consumed);
    if (consumed > chunk)
      abort();
    pos += consumed;
    if (got != SL_VIOL_NONE)
      break;
    if (consumed != chunk)
      abort();
  }
  if (got != want || (got != SL_VIOL_NONE && pos != wpos) ||
      (got == SL_VIOL_NONE && state != pending)) {
    fprintf(stderr,
            "fuzz_bdat: got viol %d at %zu (pending %u), reference %d at %zu "
            "(pending %d)\n",
            (int)got, pos, state, (int)want, wpos, pending);
    abort();
  }
  return 0;
}

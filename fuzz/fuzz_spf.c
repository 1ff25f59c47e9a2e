/*
 * fuzz_spf.c: the SPF evaluator (sluice/spf.h) fed hostile records and
 * answers: every record and answer comes from DNS.  The input is split at
 * NUL bytes; byte 0 picks the client's family; each question the evaluator
 * asks is answered with the next piece (TXT: the piece as one record, A/
 * AAAA: the piece parsed as an address, or no answer, MX: the piece as one
 * name; a piece starting with 0x01 is NXDOMAIN, 0x02 a server failure).
 * It must end with a result in range after a bounded number of questions,
 * and every question must name a non-empty name of at most 253 bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
  fprintf(stderr, "fuzz_spf: %s\n", what);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 8192)
    return 0;
  static char buf[8193];
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = 0;
  size_t n = size - 1, off = 0;
  sl_addr ip;
  const char *text = data[0] & 1 ? "2001:db8::5" : "192.0.2.5";
  sl_addr_parse(&ip, text, strlen(text));
  static sl_spf s;
  sl_spf_init(&s, &ip, "user-a@fuzz.test", "helo.fuzz.test");
  sl_spf_qtype t;
  const char *name;
  int questions = 0;
  while (sl_spf_step(&s, &t, &name)) {
    if (++questions > 200)
      fail("more questions than the limits allow");
    size_t nl = strlen(name);
    if (nl == 0 || nl > 253)
      fail("a question with a bad name");
    const char *piece = off < n ? buf + off : "";
    off += strlen(piece) + 1;
    if (piece[0] == 1) {
      sl_spf_answer(&s, SL_SPF_DNS_NXDOMAIN, NULL, NULL, 0);
      continue;
    }
    if (piece[0] == 2) {
      sl_spf_answer(&s, SL_SPF_DNS_ERROR, NULL, NULL, 0);
      continue;
    }
    sl_addr a;
    if (t == SL_SPF_Q_A || t == SL_SPF_Q_AAAA) {
      size_t k = sl_addr_parse(&a, piece, strlen(piece)) == 0;
      sl_spf_answer(&s, SL_SPF_DNS_OK, NULL, &a, k);
    } else {
      const char *strs[1] = {piece};
      sl_spf_answer(&s, SL_SPF_DNS_OK, strs, NULL, 1);
    }
  }
  if ((unsigned)sl_spf_get_result(&s) > SL_SPF_PERMERROR)
    fail("result out of range");
  return 0;
}

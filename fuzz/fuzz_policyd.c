/*
 * fuzz_policyd.c: what sluice reads from outside for the RCPT check: a
 * policy server's responses (sluice/policyd.h) and the client's sender and
 * recipient paths keyed for greylisting (sluice/greylist.h).
 *
 * Byte 0 even: the rest is a response stream, parsed one after another;
 * an accepted response lies within the input, every proper prefix of it
 * is INCOMPLETE, its action inside it, and the action's verdict text is
 * printable ASCII within bounds with a 4xx/5xx code and a matching class.
 * Byte 0 odd: the rest is a path; its greylisting sender and recipient
 * keys fit their bounds, have no uppercase domain, and are stable
 * (normalising the normalised sender gives it back, unless a second BATV
 * tag or '+' was under the first); read as an origin-ASN TXT answer, the
 * same bytes give "asn:" and at most 10 digits, or nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/errors.h"
#include "sluice/greylist.h"
#include "sluice/policyd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
  fprintf(stderr, "fuzz_policyd: %s\n", what);
  abort();
}

static void verdict(const uint8_t *act, size_t n) {
  sl_policyd_verdict v;
  sl_policyd_action(act, n, &v);
  if (v.kind != SL_PD_REFUSE)
    return;
  if (v.code < 400 || v.code > 599)
    fail("a refusal's code is not 4xx or 5xx");
  size_t len = strnlen(v.text, sizeof(v.text));
  if (len >= sizeof(v.text))
    fail("verdict text unterminated");
  if (len < 6 || v.text[0] != (char)('0' + v.code / 100) || v.text[1] != '.')
    fail("enhanced status code missing or of the wrong class");
  for (size_t i = 0; i < len; i++)
    if (v.text[i] < 0x20 || v.text[i] > 0x7e)
      fail("unprintable byte in a reply text");
}

static void stream(const uint8_t *b, size_t n) {
  size_t off = 0;
  while (off < n) {
    const uint8_t *act = NULL;
    size_t alen = 0;
    long rc = sl_policyd_parse(b + off, n - off, &act, &alen);
    if (rc < 0)
      return;
    if ((size_t)rc > n - off || rc == 0)
      fail("response length outside the input");
    if (act < b + off || act + alen > b + off + rc)
      fail("action outside its response");
    for (long i = 0; i < rc; i++) {
      const uint8_t *a2;
      size_t l2;
      long p = sl_policyd_parse(b + off, (size_t)i, &a2, &l2);
      if (p != SL_ERR_INCOMPLETE && p != SL_ERR_MALFORMED)
        fail("a proper prefix of a response parsed");
    }
    verdict(act, alen);
    off += (size_t)rc;
  }
}

static void path(const uint8_t *b, size_t n) {
  char s[SL_GREY_KEY_MAX], s2[SL_GREY_KEY_MAX], r[SL_GREY_KEY_MAX];
  /* the same bytes as an origin-ASN TXT answer */
  if (n < sizeof(s)) {
    char txt[SL_GREY_KEY_MAX], asn[SL_GREY_KEY_MAX];
    memcpy(txt, b, n);
    txt[n] = 0;
    int an = sl_grey_asn(txt, asn, sizeof(asn));
    if (an > 14 || (an >= 0 && memcmp(asn, "asn:", 4)))
      fail("an ASN client part out of shape");
  }
  int sn = sl_grey_sender(b, n, s, sizeof(s));
  int rn = sl_grey_rcpt(b, n, r, sizeof(r));
  if (n < sizeof(r) && rn != (int)n)
    fail("a recipient key changed the path's length");
  if (sn > (int)n || (n < sizeof(s) && sn < 0))
    fail("a sender key grew, or did not fit");
  if (sn < 0)
    return;
  const char *at = NULL;
  for (int i = 0; i < sn; i++)
    if (s[i] == '@')
      at = s + i;
  for (const char *p = at; p && p < s + sn; p++)
    if (*p >= 'A' && *p <= 'Z')
      fail("uppercase in a keyed domain");
  int sn2 = sl_grey_sender((const uint8_t *)s, (size_t)sn, s2, sizeof(s2));
  if (sn2 < 0 || sn2 > sn)
    fail("normalising a normalised sender grew it");
  if (!memchr(s, '+', (size_t)sn) &&
      !(sn >= 5 && (s[0] == 'p' || s[0] == 'P')) &&
      (sn2 != sn || memcmp(s, s2, (size_t)sn)))
    fail("normalisation not stable");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if (data[0] & 1)
    path(data + 1, size - 1);
  else
    stream(data + 1, size - 1);
  return 0;
}

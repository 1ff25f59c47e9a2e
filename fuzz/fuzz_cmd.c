/*
 * fuzz_cmd.c: client command parsing (sl_cmd.h).
 *
 * The input is one command line (cut at the first CR, LF or NUL, as the
 * relay hands over only such lines); byte 0 picks the path limits and the
 * allowed parameters.  Checks:
 *  - sl_cmd_parse: the argument offset stays within the line and follows
 *    the verb and its spaces; a line whose first token is a known verb is
 *    classified as that verb (reference table written here);
 *  - sl_cmd_bdat: differential against the RFC 3030 grammar
 *    "<size> [LAST]" (1..19 digits, spaces between, trailing spaces after
 *    the size tolerated);
 *  - sl_cmd_helo_arg: differential: one token without controls, space or
 *    DEL (bytes >= 0x80 allowed: RFC 6531 U-labels), 1..domain_max;
 *  - sl_cmd_check_path: an accepted path has its angle brackets, a path
 *    within path_max, and a reported SIZE
 *    within the limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t upc(uint8_t c) {
  return c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
}

static int tok_is(const uint8_t *p, size_t n, const char *w) {
  size_t k = strlen(w);
  if (n != k)
    return 0;
  for (size_t i = 0; i < k; i++)
    if (upc(p[i]) != (uint8_t)w[i])
      return 0;
  return 1;
}

static void fail(const char *what) {
  fprintf(stderr, "fuzz_cmd: %s\n", what);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t cfg = data[0];
  const uint8_t *line = data + 1;
  size_t len = 0;
  while (len < size - 1 && line[len] != '\r' && line[len] != '\n' &&
         line[len] != 0)
    len++;

  sl_cmd c;
  sl_cmd_parse(line, len, &c);
  if (c.arg > len)
    fail("argument offset past the line");
  size_t v = 0;
  while (v < len && line[v] != ' ')
    v++;
  if (c.arg < v)
    fail("argument offset inside the verb");
  for (size_t i = v; i < c.arg; i++)
    if (line[i] != ' ')
      fail("argument offset skips a non-space");
  if (c.arg < len && line[c.arg] == ' ')
    fail("argument starts with a space");
  static const struct {
    const char *w;
    sl_verb v;
  } known[] = {{"EHLO", SL_V_EHLO},        {"HELO", SL_V_HELO},
               {"MAIL", SL_V_MAIL},        {"RCPT", SL_V_RCPT},
               {"DATA", SL_V_DATA},        {"BDAT", SL_V_BDAT},
               {"RSET", SL_V_RSET},        {"NOOP", SL_V_NOOP},
               {"QUIT", SL_V_QUIT},        {"STARTTLS", SL_V_STARTTLS},
               {"AUTH", SL_V_AUTH},        {"XCLIENT", SL_V_XCLIENT},
               {"XFORWARD", SL_V_XFORWARD}};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (tok_is(line, v, known[i].w) && c.verb != known[i].v)
      fail("known verb misclassified");

  const uint8_t *arg = line + c.arg;
  size_t alen = len - c.arg;

  /* BDAT grammar */
  {
    uint64_t sz = 0, rsz = 0;
    int last = 0, rlast = 0, rok;
    int rc = sl_cmd_bdat(arg, alen, &sz, &last);
    size_t i = 0;
    while (i < alen && arg[i] >= '0' && arg[i] <= '9')
      i++;
    rok = i >= 1 && i <= 19 && (i == alen || arg[i] == ' ');
    if (rok) {
      for (size_t k = 0; k < i; k++)
        rsz = rsz * 10 + (uint64_t)(arg[k] - '0');
      while (i < alen && arg[i] == ' ')
        i++;
      if (i < alen) {
        rok = alen - i == 4 && tok_is(arg + i, 4, "LAST");
        rlast = 1;
      }
    }
    if ((rc == 0) != rok || (rok && (sz != rsz || last != rlast)))
      fail("BDAT argument verdict differs from the RFC 3030 grammar");
  }

  /* HELO argument */
  {
    uint32_t dmax = 16u + (cfg & 0x3f) * 4u;
    size_t n = sl_cmd_helo_arg(arg, alen, dmax);
    size_t t = 0;
    int ok = 1;
    while (t < alen && arg[t] != ' ') {
      if (arg[t] < 0x21 || arg[t] == 0x7f)
        ok = 0;
      t++;
    }
    size_t want = ok && t >= 1 && t <= dmax ? t : 0;
    if (n != want)
      fail("HELO argument verdict differs");
  }

  /* MAIL / RCPT paths */
  {
    sl_path_limits pl;
    pl.path_max = 16u + (cfg & 0x0f) * 16u;
    pl.domain_max = 16u + ((cfg >> 4) & 3) * 60u;
    pl.size_max = (cfg & 0x40) ? 1000 : 0;
    pl.allowed = (cfg & 0x80) ? 0x7fu : 0x01u;
    for (int is_mail = 0; is_mail < 2; is_mail++) {
      uint64_t sz = UINT64_MAX;
      sl_path_err e =
          sl_cmd_check_path(arg, alen, is_mail, &pl, is_mail ? &sz : NULL);
      if (e > SL_PATH_SIZE)
        fail("path verdict out of range");
      if (e != SL_PATH_OK)
        continue;
      const uint8_t *lt = memchr(arg, '<', alen);
      if (!lt)
        fail("accepted a path without '<'");
      const uint8_t *gt = memchr(lt, '>', alen - (size_t)(lt - arg));
      if (!gt)
        fail("accepted a path without '>'");
      size_t plen = (size_t)(gt - lt) + 1;
      if (plen > pl.path_max)
        fail("accepted a path longer than path_max");
      if (is_mail && pl.size_max && sz != UINT64_MAX && sz > pl.size_max)
        fail("accepted a SIZE over the limit");
    }
  }
  return 0;
}

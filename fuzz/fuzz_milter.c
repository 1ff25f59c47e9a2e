/*
 * fuzz_milter.c: milter v6, MTA side (sluice/milter.h), and what sluice
 * makes of a filter's words (sluice/filter.h).
 *
 * Byte 0 bit 0 picks the mode.
 * Filter mode: the rest (after a seed byte) is the filter's byte stream.
 * It is read twice with sl_milter_reader, whole and in pseudo-random
 * splits, and both must give the same packets.  Each packet is decoded;
 * every pointer of a decoded reply lies inside the packet; the first
 * OPTNEG negotiates a session, later replies are checked against it for
 * a pseudo-random command (a modification passes only at end of body and
 * only when granted; body replacement never); a custom reply becomes one
 * safe reply line (sl_filter_reply); a header change that passes
 * sl_filter_header_check is written by sl_filter_header_put as one header
 * (CRLF only, every line break followed by a blank, CRLF at the end).
 * Encoder mode: the rest is split at 0xff bytes into strings, framed as
 * MAIL (address, parameters), HEADER and MACRO packets at a pseudo-random
 * capacity: a string with a NUL must be refused, a too small buffer must
 * give NOBUF, and otherwise an independent reader must find the same
 * strings in the packet.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_reply.h"
#include "sluice/milter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why) {
  fprintf(stderr, "fuzz_milter: %s\n", why);
  abort();
}

static uint32_t rng_state;
static uint32_t rnd(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

static void inside(sl_bytes b, const uint8_t *d, size_t n) {
  if (b.len && (b.p < d || b.p + b.len > d + n))
    fail("decoded bytes outside the packet");
}

static void check_filter_reply(const sl_milter_reply *r) {
  uint8_t out[SL_FILTER_REPLY_MAX];
  int n = sl_filter_reply(out, r->verdict, r->text.p, r->text.len);
  sl_reply s;
  if (n <= 0 ||
      sl_reply_scan(out, (size_t)n, SL_FILTER_REPLY_MAX, SL_FILTER_REPLY_MAX,
                    &s) != 1 ||
      s.nlines != 1 || s.len != (uint32_t)n ||
      s.code / 100 != (r->verdict == SL_VERDICT_REJECT ? 5u : 4u))
    fail("filter reply is not one reply line of its class");
  for (int i = 0; i < n - 2; i++)
    if (out[i] < 0x20 || out[i] > 0x7e)
      fail("control byte in a filter reply");
}

static void check_header(sl_bytes name, sl_bytes value) {
  static uint8_t out[SL_FILTER_HEADER_MAX];
  if (sl_filter_header_check(name, value) != SL_OK)
    return;
  long n = sl_filter_header_put(out, sizeof(out), name, value);
  if (n == SL_ERR_NOBUF)
    return;
  if (n < (long)name.len + 4 || memcmp(out, name.p, name.len) != 0 ||
      out[name.len] != ':' || out[n - 2] != '\r' || out[n - 1] != '\n')
    fail("header not written as one header");
  for (long i = 0; i < n; i++) {
    if (out[i] == 0)
      fail("NUL in a header");
    if (out[i] == '\r' && (i + 1 >= n || out[i + 1] != '\n'))
      fail("bare CR in a header");
    if (out[i] == '\n') {
      if (i == 0 || out[i - 1] != '\r')
        fail("bare LF in a header");
      if (i + 1 < n && out[i + 1] != ' ' && out[i + 1] != '\t')
        fail("a line break that starts a new header");
    }
  }
}

static const uint8_t cmds[] = {SL_MILTER_CMD_CONNECT, SL_MILTER_CMD_HELO,
                               SL_MILTER_CMD_MAIL,    SL_MILTER_CMD_RCPT,
                               SL_MILTER_CMD_DATA,    SL_MILTER_CMD_HEADER,
                               SL_MILTER_CMD_EOH,     SL_MILTER_CMD_BODY,
                               SL_MILTER_CMD_BODYEOB, SL_MILTER_CMD_OPTNEG};

static void packet(const uint8_t *d, size_t n, uint8_t cmd,
                   sl_milter_session *s, int *negotiated) {
  sl_milter_reply r;
  int rc = sl_milter_decode(cmd, d, n, &r);
  if (rc != SL_OK) {
    if (rc != SL_ERR_MALFORMED)
      fail("decode error code");
    return;
  }
  if (r.cmd != cmd)
    fail("decode lost the command");
  inside(r.text, d, n);
  inside(r.name, d, n);
  inside(r.value, d, n);
  inside(r.addr, d, n);
  inside(r.args, d, n);
  inside(r.data, d, n);
  for (int i = 0; i < SL_MILTER_STAGES; i++)
    inside(r.symlist[i], d, n);
  const char *why = NULL;
  if (r.kind == SL_MILTER_OPTNEG && !*negotiated) {
    rc = sl_milter_negotiate(0x1fd, &r, s, &why);
    if (rc == SL_OK) {
      *negotiated = 1;
      if (s->actions & ~0x1fdu)
        fail("granted an action not offered");
    } else if (!why) {
      fail("negotiation failed without a reason");
    }
    return;
  }
  if (!*negotiated)
    return;
  uint8_t c = cmds[rnd() % sizeof(cmds)];
  rc = sl_milter_check_reply(s, c, &r, &why);
  if (rc != SL_OK && !why)
    fail("refused without a reason");
  if (rc == SL_OK) {
    if (r.kind == SL_MILTER_REPLBODY)
      fail("body replacement accepted");
    if (r.kind >= SL_MILTER_ADDHEADER && c != SL_MILTER_CMD_BODYEOB)
      fail("modification accepted before end of body");
    if (r.kind == SL_MILTER_SKIP && sl_milter_sends(s, SL_MILTER_CMD_BODY))
      fail("body still sent after SKIP");
  }
  if (r.kind == SL_MILTER_REPLYCODE)
    check_filter_reply(&r);
  if (r.kind == SL_MILTER_ADDHEADER || r.kind == SL_MILTER_CHGHEADER ||
      r.kind == SL_MILTER_INSHEADER)
    check_header(r.name, r.value);
}

/* Reads the stream with splits (0: whole); returns a digest of the
   packets and their count in *count. */
static uint64_t read_stream(const uint8_t *b, size_t n, size_t cap, int split,
                            size_t *count) {
  uint8_t *buf = malloc(cap);
  if (!buf)
    abort();
  sl_milter_reader r;
  sl_milter_reader_init(&r, buf, cap);
  sl_milter_session s;
  int negotiated = 0;
  uint64_t h = 1469598103934665603ull;
  size_t i = 0;
  *count = 0;
  while (i < n) {
    size_t want = split ? 1 + rnd() % 97 : n - i;
    if (want > n - i)
      want = n - i;
    size_t used = 0;
    int rc = sl_milter_reader_feed(&r, b + i, want, &used);
    if (used > want)
      fail("consumed more than given");
    i += used;
    if (rc == SL_OK) {
      const uint8_t *d;
      size_t dl;
      uint8_t cmd = sl_milter_reader_packet(&r, &d, &dl);
      if (dl + 1 > cap || (dl && (d < buf || d + dl > buf + cap)))
        fail("packet outside the reader's buffer");
      h = (h ^ cmd ^ (dl << 8)) * 1099511628211ull;
      for (size_t k = 0; k < dl; k++)
        h = (h ^ d[k]) * 1099511628211ull;
      (*count)++;
      if (!split)
        packet(d, dl, cmd, &s, &negotiated);
    } else if (rc == SL_ERR_MALFORMED) {
      h ^= 0xbad;
      break;
    } else if (rc != SL_ERR_INCOMPLETE || used != want) {
      fail("reader result");
    }
  }
  free(buf);
  return h;
}

static void filter_mode(const uint8_t *b, size_t n, uint8_t seed) {
  size_t cap = 1 + (size_t)(seed & 0x3f) * 64;
  size_t c1, c2;
  rng_state = seed;
  uint64_t whole = read_stream(b, n, cap, 0, &c1);
  rng_state = seed * 7u + 1u;
  uint64_t split = read_stream(b, n, cap, 1, &c2);
  if (whole != split || c1 != c2)
    fail("split reading differs from whole reading");
}

/* Independent reading of a NUL-terminated string at *p. */
static int take(const uint8_t *b, size_t n, size_t *p, const uint8_t *s,
                size_t sl) {
  if (*p + sl + 1 > n || memcmp(b + *p, s, sl) != 0 || b[*p + sl] != 0)
    return 0;
  *p += sl + 1;
  return 1;
}

static void encoder_mode(const uint8_t *b, size_t n, uint8_t seed) {
  sl_bytes parts[8];
  size_t np = 0, start = 0;
  for (size_t i = 0; i <= n && np < 8; i++) {
    if (i == n || b[i] == 0xff) {
      parts[np].p = b + start;
      parts[np].len = i - start;
      np++;
      start = i + 1;
    }
  }
  if (np == 0)
    return;
  int has_nul = 0;
  size_t need = 5 + 3 + parts[0].len;
  if (memchr(parts[0].p, 0, parts[0].len))
    has_nul = 1;
  for (size_t i = 1; i < np; i++) {
    if (memchr(parts[i].p, 0, parts[i].len))
      has_nul = 1;
    need += parts[i].len + 1;
  }
  size_t cap = seed & 1 ? need + (seed >> 1) : (seed * need) / 256;
  uint8_t *out = malloc(cap ? cap : 1);
  if (!out)
    abort();
  long rc = sl_milter_put_mail(out, cap, parts[0], parts + 1, np - 1);
  if (has_nul) {
    if (rc != SL_ERR_INVALID_ARGUMENT)
      fail("NUL inside a string not refused");
  } else if (cap < need) {
    if (rc != SL_ERR_NOBUF)
      fail("small buffer not NOBUF");
  } else {
    if (rc != (long)need)
      fail("MAIL packet length");
    uint32_t len = (uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 |
                   (uint32_t)out[2] << 8 | out[3];
    if (len != need - 4 || out[4] != 'M' || out[5] != '<' ||
        memcmp(out + 6, parts[0].p, parts[0].len) != 0 ||
        out[6 + parts[0].len] != '>' || out[7 + parts[0].len] != 0)
      fail("MAIL packet address");
    size_t p = 8 + parts[0].len;
    for (size_t i = 1; i < np; i++)
      if (!take(out, need, &p, parts[i].p, parts[i].len))
        fail("MAIL packet parameter");
    if (p != need)
      fail("MAIL packet trailing bytes");
  }
  if (np >= 2) {
    rc = sl_milter_put_header(out, cap, parts[0], parts[1]);
    size_t hneed = 5 + parts[0].len + 1 + parts[1].len + 1;
    int hnul = memchr(parts[0].p, 0, parts[0].len) ||
               memchr(parts[1].p, 0, parts[1].len);
    if (parts[0].len == 0 || hnul) {
      if (rc != SL_ERR_INVALID_ARGUMENT)
        fail("bad header not refused");
    } else if (cap < hneed ? rc != SL_ERR_NOBUF : rc != (long)hneed) {
      fail("HEADER packet length");
    } else if (rc > 0) {
      size_t p = 5;
      if (out[4] != 'L' || !take(out, hneed, &p, parts[0].p, parts[0].len) ||
          !take(out, hneed, &p, parts[1].p, parts[1].len))
        fail("HEADER packet content");
    }
    sl_milter_macro m[4];
    size_t nm = 0;
    for (size_t i = 0; i + 1 < np && nm < 4; i += 2, nm++) {
      m[nm].name = parts[i];
      m[nm].value = parts[i + 1];
    }
    rc = sl_milter_put_macro(out, cap, SL_MILTER_CMD_RCPT, m, nm);
    if (rc > 0) {
      size_t p = 6;
      if (out[4] != 'D' || out[5] != 'R')
        fail("MACRO packet head");
      for (size_t i = 0; i < nm; i++)
        if (!take(out, (size_t)rc, &p, m[i].name.p, m[i].name.len) ||
            !take(out, (size_t)rc, &p, m[i].value.p, m[i].value.len))
          fail("MACRO packet content");
      if (p != (size_t)rc)
        fail("MACRO packet trailing bytes");
    }
  }
  size_t blen = n > SL_MILTER_CHUNK_MAX ? SL_MILTER_CHUNK_MAX : n;
  rc = sl_milter_put_body(out, cap, b, blen);
  if (blen == 0 ? rc != SL_ERR_INVALID_ARGUMENT
                : (cap < blen + 5 ? rc != SL_ERR_NOBUF
                                  : (rc != (long)(blen + 5) ||
                                     memcmp(out + 5, b, blen) != 0)))
    fail("BODY packet");
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  if (data[0] & 1)
    encoder_mode(data + 2, size - 2, data[1]);
  else
    filter_mode(data + 2, size - 2, data[1]);
  return 0;
}

/*
 * fuzz_data.c: the DATA framer (sl_data_run), differential against a
 * reference framer written here from RFC 5321 4.1.1.4 / 4.5.2 and the
 * contract in sl_data.h, one line at a time on the whole input.
 *
 * Input: byte 0 picks text_line_max, byte 1 the size limit, byte 2 the
 * leniency and a split seed with byte 3; the rest is the body after 354.
 * The framer runs on random splits with random output capacities and must
 * agree with the reference: same status, same end position and the same
 * re-serialised output at END and at MORE, the same violation class, and
 * for bare CR/LF/NUL the same position.  Line-too-long and size violations
 * may be noticed anywhere in the line that crosses the limit, so there
 * either class that was really crossed is accepted.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct ref {
  sl_data_status st;
  sl_violation viol;
  int too_long, too_big; /* limits crossed in the violating line */
  size_t pos;            /* END: bytes consumed; violation: position */
  uint8_t *out;
  size_t outlen;
} ref;

static void put(ref *r, const void *p, size_t n) {
  memcpy(r->out + r->outlen, p, n);
  r->outlen += n;
}

/* Writes the content of one line (unstuffed u[0..n)) stuffed again. */
static void put_line(ref *r, const uint8_t *u, size_t n) {
  if (n && u[0] == '.')
    put(r, ".", 1);
  put(r, u, n);
}

static void reference(const uint8_t *in, size_t n, uint32_t text_line_max,
                      uint64_t size_max, int norm, ref *r) {
  uint64_t text_max = text_line_max - 2, size = 0;
  int after_bare = 0;
  size_t i = 0;
  r->st = SL_DATA_MORE;
  r->viol = SL_VIOL_NONE;
  while (i < n) {
    size_t k = i;
    while (k < n && in[k] != '\r' && in[k] != '\n' && in[k] != 0)
      k++;
    const uint8_t *u = in + i;
    size_t ulen = k - i;
    int dot = ulen && u[0] == '.';
    if (dot) {
      u++;
      ulen--;
    }
    r->too_long = ulen > text_max;
    r->too_big = size_max && size + ulen > size_max;
    if (r->too_long || r->too_big) {
      r->st = SL_DATA_VIOLATION;
      r->viol = r->too_long ? SL_VIOL_LINE_TOO_LONG : SL_VIOL_SIZE;
      return;
    }
    if (k == n) { /* a partial line: what is certain is out already */
      put_line(r, u, ulen);
      r->pos = n;
      return;
    }
    if (in[k] == 0) {
      r->st = SL_DATA_VIOLATION;
      r->viol = SL_VIOL_NUL;
      r->pos = k + 1;
      return;
    }
    int crlf;
    size_t next;
    if (in[k] == '\r') {
      if (k + 1 == n) {
        put_line(r, u, ulen);
        r->pos = n;
        return;
      }
      if (in[k + 1] != '\n') {
        r->st = SL_DATA_VIOLATION;
        r->viol = SL_VIOL_BARE_CR;
        r->pos = k + 1;
        return;
      }
      crlf = 1;
      next = k + 2;
    } else {
      if (!norm) {
        r->st = SL_DATA_VIOLATION;
        r->viol = SL_VIOL_BARE_LF;
        r->pos = k + 1;
        return;
      }
      crlf = 0;
      next = k + 1;
    }
    if (crlf && dot && ulen == 0 && !after_bare) {
      put(r, ".\r\n", 3);
      r->st = SL_DATA_END;
      r->pos = next;
      return;
    }
    if (dot && ulen == 0) /* "." that is content: stuffed */
      put(r, "..", 2);
    else
      put_line(r, u, ulen);
    put(r, "\r\n", 2);
    /* a "." content line (after a normalised bare LF) holds one byte */
    size += (dot && ulen == 0 ? 1 : ulen) + 2;
    if (size_max && size > size_max) {
      r->st = SL_DATA_VIOLATION;
      r->viol = SL_VIOL_SIZE;
      r->too_big = 1;
      r->too_long = 0;
      return;
    }
    after_bare = !crlf;
    i = next;
  }
  r->pos = n;
}

static uint32_t rnd(uint32_t *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return 0;
  static const uint32_t tl[4] = {80, 100, 1000, 998};
  uint32_t text_line_max = tl[data[0] & 3] + (uint32_t)(data[0] >> 2);
  uint64_t size_max = data[1] ? (uint64_t)data[1] * 16u : 0;
  int norm = data[2] & 1;
  uint32_t seed = (uint32_t)data[2] << 8 | data[3];
  const uint8_t *in = data + 4;
  size_t n = size - 4;

  ref r;
  memset(&r, 0, sizeof(r));
  r.out = malloc(n * 2 + 8);
  uint8_t *out = malloc(n * 2 + 8);
  uint8_t *tmp = malloc(n + 12); /* cap below is at most chunk + 11 */
  if (!r.out || !out || !tmp)
    abort();
  reference(in, n, text_line_max, size_max, norm, &r);

  sl_data d;
  sl_data_init(&d, text_line_max, size_max, norm);
  size_t pos = 0, olen = 0;
  sl_data_status st = SL_DATA_MORE;
  while (pos < n) {
    size_t chunk = 1 + rnd(&seed) % (n - pos);
    size_t cap = 4 + rnd(&seed) % (chunk + 8);
    size_t consumed = 0, produced = 0;
    st = sl_data_run(&d, in + pos, chunk, tmp, cap, &consumed, &produced);
    if (consumed > chunk || produced > cap)
      abort();
    memcpy(out + olen, tmp, produced);
    olen += produced;
    pos += consumed;
    if (st != SL_DATA_MORE)
      break;
    if (!consumed && !produced) {
      fprintf(stderr, "fuzz_data: no progress at %zu with cap %zu\n", pos, cap);
      abort();
    }
  }
  int bad = 0;
  if (st != r.st) {
    bad = 1;
  } else if (st == SL_DATA_END) {
    bad = pos != r.pos || olen != r.outlen || memcmp(out, r.out, olen) != 0;
  } else if (st == SL_DATA_MORE) {
    bad = olen != r.outlen || memcmp(out, r.out, olen) != 0;
  } else if (r.viol == SL_VIOL_LINE_TOO_LONG || r.viol == SL_VIOL_SIZE) {
    bad = !((d.violation == SL_VIOL_LINE_TOO_LONG && r.too_long) ||
            (d.violation == SL_VIOL_SIZE && r.too_big));
  } else {
    bad = d.violation != r.viol || pos != r.pos;
  }
  if (bad) {
    fprintf(stderr,
            "fuzz_data: framer status %d viol %d pos %zu out %zu; reference "
            "status %d viol %d pos %zu out %zu (text_line_max %u size_max "
            "%llu normalize %d)\n",
            (int)st, (int)d.violation, pos, olen, (int)r.st, (int)r.viol, r.pos,
            r.outlen, text_line_max, (unsigned long long)size_max, norm);
    abort();
  }
  free(r.out);
  free(out);
  free(tmp);
  return 0;
}

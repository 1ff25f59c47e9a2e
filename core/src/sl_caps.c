/* sl_caps.c: EHLO capability parsing and rendering; see sl_caps.h. */
#include "sl_caps.h"

#include <string.h>

#include "sl_cmd.h"
#include "sluice/caps.h"
#include "sluice/errors.h"
#include "sluice/policy.h"

static const struct {
  const char *kw;
  uint32_t bit;
} keywords[] = {
    {"PIPELINING", SL_CAP_PIPELINING},
    {"SIZE", SL_CAP_SIZE},
    {"8BITMIME", SL_CAP_8BITMIME},
    {"SMTPUTF8", SL_CAP_SMTPUTF8},
    {"ENHANCEDSTATUSCODES", SL_CAP_ENHANCEDSTATUSCODES},
    {"DSN", SL_CAP_DSN},
    {"CHUNKING", SL_CAP_CHUNKING},
    {"STARTTLS", SL_CAP_STARTTLS},
    {"AUTH", SL_CAP_AUTH},
    {"XCLIENT", SL_CAP_XCLIENT},
    {"XFORWARD", SL_CAP_XFORWARD},
};

/* Bits for the XFORWARD attribute names listed in arg. */
static uint32_t xforward_attrs(const uint8_t *arg, size_t n) {
  static const struct {
    const char *name;
    uint32_t bit;
  } attrs[] = {{"NAME", 1},
               {"ADDR", 2},
               {"PROTO", 4},
               {"HELO", 8},
               {"PORT", SL_CAP_XFWD_PORT},
               {"SOURCE", SL_CAP_XFWD_SOURCE}};
  uint32_t bits = 0;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && arg[j] != ' ')
      j++;
    for (size_t k = 0; k < sizeof(attrs) / sizeof(attrs[0]); k++)
      if (strlen(attrs[k].name) == j - i &&
          sl_ieq(arg + i, attrs[k].name, j - i))
        bits |= attrs[k].bit;
    i = j + 1;
  }
  if ((bits & 15) != 15)
    return 0; /* without the base set the upstream cannot log the client */
  return SL_CAP_XFORWARD | (bits & ~15u);
}

/* An AUTH mechanism list we are willing to repeat: SASL names only. */
static int sasl_names(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ' '))
      return 0;
  }
  return n > 0;
}

void sl_caps_parse(const uint8_t *buf, const sl_reply *r, sl_caps *caps) {
  memset(caps, 0, sizeof(*caps));
  size_t pos = 0;
  const uint8_t *text;
  size_t len;
  int first = 1;
  while (sl_reply_next_line(buf, r, &pos, &text, &len)) {
    if (first) {
      first = 0;
      continue;
    }
    /* RFC 5321 4.1.1.1: ehlo-line = ehlo-keyword *(SP ehlo-param).  The
       keyword ends at a space only: the pre-RFC 4954 "AUTH=LOGIN" line is
       not the AUTH offer (a strict receiver's keyword is "AUTH=LOGIN"), so
       a server showing only it has not offered AUTH. */
    size_t kwlen = 0;
    while (kwlen < len && text[kwlen] != ' ')
      kwlen++;
    const uint8_t *arg = text + kwlen + (kwlen < len);
    size_t arglen = kwlen < len ? len - kwlen - 1 : 0;
    for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++) {
      if (strlen(keywords[k].kw) != kwlen ||
          !sl_ieq(text, keywords[k].kw, kwlen))
        continue;
      if (keywords[k].bit == SL_CAP_SIZE) {
        uint64_t v = 0;
        size_t i = 0;
        for (; i < arglen && i < 19 && arg[i] >= '0' && arg[i] <= '9'; i++)
          v = v * 10 + (uint64_t)(arg[i] - '0');
        caps->size = v;
      } else if (keywords[k].bit == SL_CAP_AUTH) {
        if (!sasl_names(arg, arglen))
          break;
        caps->auth_off = (uint32_t)(arg - buf);
        caps->auth_len = (uint32_t)arglen;
      } else if (keywords[k].bit == SL_CAP_XFORWARD) {
        caps->bits |= xforward_attrs(arg, arglen);
        break;
      }
      caps->bits |= keywords[k].bit;
      break;
    }
  }
}

size_t sl_caps_render(uint8_t *out, const uint8_t *greet, size_t greetlen,
                      uint32_t offer, uint64_t size, const uint8_t *auth,
                      size_t authlen) {
  if (!authlen)
    offer &= ~(uint32_t)SL_CAP_AUTH;
  offer &= SL_CAP_XCLIENT - 1; /* XCLIENT/XFORWARD are for sluice alone */
  size_t o = 0;
  int more = (offer & (SL_CAP_XCLIENT - 1)) != 0;
  o += sl_reply_put_line(out + o, 250, !more, greet, greetlen);
  for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++) {
    uint32_t bit = keywords[k].bit;
    if (!(offer & bit))
      continue;
    offer &= ~bit;
    int last = (offer & (SL_CAP_XCLIENT - 1)) == 0;
    uint8_t line[32];
    size_t n = strlen(keywords[k].kw);
    memcpy(line, keywords[k].kw, n);
    if (bit == SL_CAP_SIZE && size) {
      line[n++] = ' ';
      n += sl_put_decimal(line + n, size);
    }
    if (bit == SL_CAP_AUTH) {
      memcpy(out + o, last ? "250 AUTH " : "250-AUTH ", 9);
      memcpy(out + o + 9, auth, authlen);
      memcpy(out + o + 9 + authlen, "\r\n", 2);
      o += 11 + authlen;
      continue;
    }
    o += sl_reply_put_line(out + o, 250, last, line, n);
  }
  return o;
}

int sl_ehlo_features(const uint8_t *buf, size_t len, uint32_t *features,
                     uint64_t *size) {
  if (!buf || !features || !size || len > UINT32_MAX)
    return SL_ERR_INVALID_ARGUMENT;
  sl_reply r;
  /* RFC 5321 4.5.3.1.5 bounds a reply line at 512; a capability list may
     run long, so only the whole reply is bounded (by what was read). */
  if (sl_reply_scan(buf, len, 512, (uint32_t)len, &r) != 1 || r.len != len ||
      r.code / 100 != 2)
    return SL_ERR_INVALID_ARGUMENT;
  sl_caps caps;
  sl_caps_parse(buf, &r, &caps);
  *features = caps.bits & SL_FEAT_ALL;
  *size = caps.size;
  return 0;
}

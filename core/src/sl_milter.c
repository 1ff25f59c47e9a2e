/*
 * sl_milter.c: milter protocol version 6, MTA side (sluice/milter.h).
 */
#include "sluice/milter.h"

#include <string.h>

/* ---- encoders ---------------------------------------------------------- */

typedef struct pkt {
  uint8_t *p;
  size_t cap;
  size_t len;
  int err;
} pkt;

static void pkt_start(pkt *k, uint8_t *out, size_t cap, uint8_t cmd) {
  k->p = out;
  k->cap = cap;
  k->len = 0;
  k->err = out ? SL_OK : SL_ERR_INVALID_ARGUMENT;
  if (!k->err && cap < SL_MILTER_HEADER_LEN)
    k->err = SL_ERR_NOBUF;
  if (!k->err) {
    out[4] = cmd;
    k->len = SL_MILTER_HEADER_LEN;
  }
}

static void pkt_put(pkt *k, const void *b, size_t n) {
  if (k->err)
    return;
  if (n > k->cap - k->len) {
    k->err = SL_ERR_NOBUF;
    return;
  }
  if (n)
    memcpy(k->p + k->len, b, n);
  k->len += n;
}

static void pkt_u32(pkt *k, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                  (uint8_t)v};
  pkt_put(k, b, 4);
}

/* A NUL-terminated string; a NUL inside cannot be framed. */
static void pkt_str(pkt *k, sl_bytes s) {
  /* a bad argument is reported whatever the room: the caller's bug wins */
  if (k->err == SL_ERR_INVALID_ARGUMENT)
    return;
  if ((!s.p && s.len) || (s.len && memchr(s.p, 0, s.len))) {
    k->err = SL_ERR_INVALID_ARGUMENT;
    return;
  }
  if (k->err)
    return;
  pkt_put(k, s.p, s.len);
  pkt_put(k, "", 1);
}

static long pkt_end(pkt *k) {
  if (k->err)
    return k->err;
  if (k->len - 4 > UINT32_MAX)
    return SL_ERR_INVALID_ARGUMENT;
  uint32_t n = (uint32_t)(k->len - 4);
  k->p[0] = (uint8_t)(n >> 24);
  k->p[1] = (uint8_t)(n >> 16);
  k->p[2] = (uint8_t)(n >> 8);
  k->p[3] = (uint8_t)n;
  return (long)k->len;
}

long sl_milter_put_optneg(uint8_t *out, size_t cap, uint32_t version,
                          uint32_t actions, uint32_t protocol) {
  pkt k;
  pkt_start(&k, out, cap, SL_MILTER_CMD_OPTNEG);
  pkt_u32(&k, version);
  pkt_u32(&k, actions);
  pkt_u32(&k, protocol);
  return pkt_end(&k);
}

long sl_milter_put_macro(uint8_t *out, size_t cap, uint8_t cmd,
                         const sl_milter_macro *m, size_t n) {
  if (!m && n)
    return SL_ERR_INVALID_ARGUMENT;
  switch (cmd) {
  case SL_MILTER_CMD_CONNECT:
  case SL_MILTER_CMD_HELO:
  case SL_MILTER_CMD_MAIL:
  case SL_MILTER_CMD_RCPT:
  case SL_MILTER_CMD_DATA:
  case SL_MILTER_CMD_EOH:
  case SL_MILTER_CMD_BODYEOB:
  case SL_MILTER_CMD_HEADER:
  case SL_MILTER_CMD_BODY:
  case SL_MILTER_CMD_UNKNOWN:
    break;
  default:
    return SL_ERR_INVALID_ARGUMENT;
  }
  pkt k;
  pkt_start(&k, out, cap, SL_MILTER_CMD_MACRO);
  pkt_put(&k, &cmd, 1);
  for (size_t i = 0; i < n; i++) {
    if (m[i].name.len == 0)
      k.err = SL_ERR_INVALID_ARGUMENT;
    pkt_str(&k, m[i].name);
    pkt_str(&k, m[i].value);
  }
  return pkt_end(&k);
}

long sl_milter_put_connect(uint8_t *out, size_t cap, sl_bytes hostname,
                           const sl_addr *client) {
  if (!client)
    return SL_ERR_INVALID_ARGUMENT;
  pkt k;
  pkt_start(&k, out, cap, SL_MILTER_CMD_CONNECT);
  pkt_str(&k, hostname);
  if (client->family == SL_AF_INET || client->family == SL_AF_INET6) {
    char text[SL_ADDR_STRLEN];
    int tl = sl_addr_format(client, text, sizeof(text));
    if (tl < 0)
      return SL_ERR_INVALID_ARGUMENT;
    uint8_t fam = client->family == SL_AF_INET ? '4' : '6';
    uint8_t port[2] = {(uint8_t)(client->port >> 8), (uint8_t)client->port};
    pkt_put(&k, &fam, 1);
    pkt_put(&k, port, 2);
    pkt_str(&k, (sl_bytes){(const uint8_t *)text, (size_t)tl});
  } else if (client->family == SL_AF_UNSPEC) {
    pkt_put(&k, "U", 1);
  } else {
    return SL_ERR_INVALID_ARGUMENT;
  }
  return pkt_end(&k);
}

long sl_milter_put_helo(uint8_t *out, size_t cap, sl_bytes helo) {
  pkt k;
  pkt_start(&k, out, cap, SL_MILTER_CMD_HELO);
  pkt_str(&k, helo);
  return pkt_end(&k);
}

static long put_envelope(uint8_t *out, size_t cap, uint8_t cmd, sl_bytes addr,
                         const sl_bytes *params, size_t nparams) {
  if (!params && nparams)
    return SL_ERR_INVALID_ARGUMENT;
  if ((!addr.p && addr.len) || (addr.len && memchr(addr.p, 0, addr.len)))
    return SL_ERR_INVALID_ARGUMENT;
  pkt k;
  pkt_start(&k, out, cap, cmd);
  pkt_put(&k, "<", 1);
  pkt_put(&k, addr.p, addr.len);
  pkt_put(&k, ">", 2); /* with the NUL */
  for (size_t i = 0; i < nparams; i++)
    pkt_str(&k, params[i]);
  return pkt_end(&k);
}

long sl_milter_put_mail(uint8_t *out, size_t cap, sl_bytes addr,
                        const sl_bytes *params, size_t nparams) {
  return put_envelope(out, cap, SL_MILTER_CMD_MAIL, addr, params, nparams);
}

long sl_milter_put_rcpt(uint8_t *out, size_t cap, sl_bytes addr,
                        const sl_bytes *params, size_t nparams) {
  return put_envelope(out, cap, SL_MILTER_CMD_RCPT, addr, params, nparams);
}

long sl_milter_put_header(uint8_t *out, size_t cap, sl_bytes name,
                          sl_bytes value) {
  if (name.len == 0)
    return SL_ERR_INVALID_ARGUMENT;
  pkt k;
  pkt_start(&k, out, cap, SL_MILTER_CMD_HEADER);
  pkt_str(&k, name);
  pkt_str(&k, value);
  return pkt_end(&k);
}

long sl_milter_put_body(uint8_t *out, size_t cap, const uint8_t *chunk,
                        size_t len) {
  if (!chunk || len == 0 || len > SL_MILTER_CHUNK_MAX)
    return SL_ERR_INVALID_ARGUMENT;
  pkt k;
  pkt_start(&k, out, cap, SL_MILTER_CMD_BODY);
  pkt_put(&k, chunk, len);
  return pkt_end(&k);
}

long sl_milter_put_simple(uint8_t *out, size_t cap, uint8_t cmd) {
  switch (cmd) {
  case SL_MILTER_CMD_DATA:
  case SL_MILTER_CMD_EOH:
  case SL_MILTER_CMD_BODYEOB:
  case SL_MILTER_CMD_ABORT:
  case SL_MILTER_CMD_QUIT:
  case SL_MILTER_CMD_QUIT_NC:
    break;
  default:
    return SL_ERR_INVALID_ARGUMENT;
  }
  pkt k;
  pkt_start(&k, out, cap, cmd);
  return pkt_end(&k);
}

/* ---- reader ------------------------------------------------------------ */

void sl_milter_reader_init(sl_milter_reader *r, uint8_t *buf, size_t cap) {
  memset(r, 0, sizeof(*r));
  r->buf = buf;
  r->cap = buf ? cap : 0;
}

int sl_milter_reader_feed(sl_milter_reader *r, const uint8_t *buf, size_t len,
                          size_t *consumed) {
  if (!r || !consumed || (!buf && len > 0))
    return SL_ERR_INVALID_ARGUMENT;
  *consumed = 0;
  if (r->err_)
    return SL_ERR_MALFORMED;
  if (r->done) {
    r->done = 0;
    r->hdr_have = 0;
    r->have = 0;
    r->need = 0;
  }
  size_t i = 0;
  while (r->hdr_have < 4 && i < len)
    r->hdr[r->hdr_have++] = buf[i++];
  if (r->hdr_have < 4) {
    *consumed = i;
    return SL_ERR_INCOMPLETE;
  }
  if (r->need == 0) {
    uint32_t n = (uint32_t)r->hdr[0] << 24 | (uint32_t)r->hdr[1] << 16 |
                 (uint32_t)r->hdr[2] << 8 | r->hdr[3];
    if (n == 0 || n > r->cap) {
      r->err_ = 1;
      *consumed = i;
      return SL_ERR_MALFORMED;
    }
    r->need = n;
  }
  size_t take = len - i;
  if (take > r->need - r->have)
    take = r->need - r->have;
  memcpy(r->buf + r->have, buf + i, take);
  r->have += (uint32_t)take;
  i += take;
  *consumed = i;
  if (r->have < r->need)
    return SL_ERR_INCOMPLETE;
  r->done = 1;
  return SL_OK;
}

uint8_t sl_milter_reader_packet(const sl_milter_reader *r, const uint8_t **data,
                                size_t *len) {
  if (!r->done) {
    *data = NULL;
    *len = 0;
    return 0;
  }
  *data = r->buf + 1;
  *len = r->need - 1;
  return r->buf[0];
}

int sl_milter_reader_partial(const sl_milter_reader *r) {
  return !r->done && (r->hdr_have > 0 || r->have > 0);
}

/* ---- replies ----------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p;
  size_t n;
  size_t i;
} rd;

static int rd_u32(rd *d, uint32_t *v) {
  if (d->n - d->i < 4)
    return 0;
  const uint8_t *b = d->p + d->i;
  *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
  d->i += 4;
  return 1;
}

static int rd_str(rd *d, sl_bytes *s) {
  const uint8_t *z = d->i < d->n ? memchr(d->p + d->i, 0, d->n - d->i) : NULL;
  if (!z)
    return 0;
  s->p = d->p + d->i;
  s->len = (size_t)(z - s->p);
  d->i += s->len + 1;
  return 1;
}

static int rd_end(const rd *d) { return d->i == d->n; }

/* "4xx" or "5xx", then ' ', '-' or the end; the rest is checked and
   re-framed by sl_filter_reply. */
static int replycode(sl_milter_reply *o, sl_bytes t) {
  const uint8_t *b = t.p;
  if (t.len < 3 || (b[0] != '4' && b[0] != '5') || b[1] < '0' || b[1] > '9' ||
      b[2] < '0' || b[2] > '9')
    return 0;
  if (t.len > 3 && b[3] != ' ' && b[3] != '-')
    return 0;
  o->code = (unsigned)(b[0] - '0') * 100 + (unsigned)(b[1] - '0') * 10 +
            (unsigned)(b[2] - '0');
  o->verdict = b[0] == '5' ? SL_VERDICT_REJECT : SL_VERDICT_TEMPFAIL;
  o->text = t;
  return 1;
}

int sl_milter_decode(uint8_t cmd, const uint8_t *data, size_t len,
                     sl_milter_reply *o) {
  if (!o)
    return SL_ERR_INVALID_ARGUMENT;
  memset(o, 0, sizeof(*o));
  if (!data && len)
    return SL_ERR_INVALID_ARGUMENT;
  rd d = {data, len, 0};
  o->cmd = cmd;
  int ok;
  switch (cmd) {
  case SL_MILTER_REPLY_CONTINUE:
    o->kind = SL_MILTER_CONTINUE;
    o->verdict = SL_VERDICT_ACCEPT;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_ACCEPT:
    o->kind = SL_MILTER_ACCEPT;
    o->verdict = SL_VERDICT_ACCEPT;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_REJECT:
    o->kind = SL_MILTER_REJECT;
    o->verdict = SL_VERDICT_REJECT;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_TEMPFAIL:
    o->kind = SL_MILTER_TEMPFAIL;
    o->verdict = SL_VERDICT_TEMPFAIL;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_DISCARD:
    o->kind = SL_MILTER_DISCARD;
    o->verdict = SL_VERDICT_DISCARD;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_SHUTDOWN:
    o->kind = SL_MILTER_SHUTDOWN;
    o->verdict = SL_VERDICT_TEMPFAIL;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_CONN_FAIL:
    o->kind = SL_MILTER_CONN_FAIL;
    o->verdict = SL_VERDICT_TEMPFAIL;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_PROGRESS:
    o->kind = SL_MILTER_PROGRESS;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_SKIP:
    o->kind = SL_MILTER_SKIP;
    ok = rd_end(&d);
    break;
  case SL_MILTER_REPLY_REPLYCODE: {
    sl_bytes t;
    o->kind = SL_MILTER_REPLYCODE;
    ok = rd_str(&d, &t) && rd_end(&d) && replycode(o, t);
    break;
  }
  case SL_MILTER_REPLY_ADDHEADER:
    o->kind = SL_MILTER_ADDHEADER;
    ok = rd_str(&d, &o->name) && rd_str(&d, &o->value) && rd_end(&d) &&
         o->name.len > 0;
    break;
  case SL_MILTER_REPLY_CHGHEADER:
  case SL_MILTER_REPLY_INSHEADER:
    o->kind = cmd == SL_MILTER_REPLY_CHGHEADER ? SL_MILTER_CHGHEADER
                                               : SL_MILTER_INSHEADER;
    ok = rd_u32(&d, &o->index) && rd_str(&d, &o->name) &&
         rd_str(&d, &o->value) && rd_end(&d) && o->name.len > 0;
    break;
  case SL_MILTER_REPLY_REPLBODY:
    o->kind = SL_MILTER_REPLBODY;
    o->data.p = data;
    o->data.len = len;
    ok = 1;
    break;
  case SL_MILTER_REPLY_ADDRCPT:
  case SL_MILTER_REPLY_DELRCPT:
    o->kind =
        cmd == SL_MILTER_REPLY_ADDRCPT ? SL_MILTER_ADDRCPT : SL_MILTER_DELRCPT;
    ok = rd_str(&d, &o->addr) && rd_end(&d);
    break;
  case SL_MILTER_REPLY_ADDRCPT_PAR:
  case SL_MILTER_REPLY_CHGFROM:
    o->kind = cmd == SL_MILTER_REPLY_CHGFROM ? SL_MILTER_CHGFROM
                                             : SL_MILTER_ADDRCPT_PAR;
    ok = rd_str(&d, &o->addr) && (rd_end(&d) || rd_str(&d, &o->args)) &&
         rd_end(&d);
    break;
  case SL_MILTER_REPLY_QUARANTINE:
    o->kind = SL_MILTER_QUARANTINE;
    ok = rd_str(&d, &o->text) && rd_end(&d);
    break;
  case SL_MILTER_REPLY_OPTNEG:
    o->kind = SL_MILTER_OPTNEG;
    ok = rd_u32(&d, &o->version) && rd_u32(&d, &o->actions) &&
         rd_u32(&d, &o->protocol);
    /* then optional (stage, "names") pairs: SMFIR_SETSYMLIST data */
    while (ok && !rd_end(&d)) {
      uint32_t stage;
      sl_bytes names;
      ok = rd_u32(&d, &stage) && rd_str(&d, &names) && stage < SL_MILTER_STAGES;
      if (ok)
        o->symlist[stage] = names;
    }
    break;
  default:
    ok = 0;
    break;
  }
  if (!ok) {
    memset(o, 0, sizeof(*o));
    o->cmd = cmd;
    return SL_ERR_MALFORMED;
  }
  return SL_OK;
}

/* ---- negotiation and the session --------------------------------------- */

int sl_milter_negotiate(uint32_t offer_actions, const sl_milter_reply *f,
                        sl_milter_session *s, const char **why) {
  const char *dummy;
  if (!why)
    why = &dummy;
  *why = NULL;
  if (!f || !s || f->kind != SL_MILTER_OPTNEG)
    return SL_ERR_INVALID_ARGUMENT;
  memset(s, 0, sizeof(*s));
  if (f->version < 2) {
    *why = "milter protocol version below 2";
    return SL_ERR_MALFORMED;
  }
  if (f->version > SL_MILTER_VERSION) {
    *why = "milter protocol version above 6";
    return SL_ERR_MALFORMED;
  }
  s->version = f->version;
  s->actions = f->actions & offer_actions;
  s->refused_actions = f->actions & ~offer_actions;
  s->protocol = f->protocol & SL_MILTER_P_ALL;
  return SL_OK;
}

/* The protocol flag that opts out of sending cmd, and the one that opts
   out of its reply; 0 when there is none. */
static uint32_t no_send_flag(uint8_t cmd) {
  switch (cmd) {
  case SL_MILTER_CMD_CONNECT:
    return SL_MILTER_P_NOCONNECT;
  case SL_MILTER_CMD_HELO:
    return SL_MILTER_P_NOHELO;
  case SL_MILTER_CMD_MAIL:
    return SL_MILTER_P_NOMAIL;
  case SL_MILTER_CMD_RCPT:
    return SL_MILTER_P_NORCPT;
  case SL_MILTER_CMD_BODY:
    return SL_MILTER_P_NOBODY;
  case SL_MILTER_CMD_HEADER:
    return SL_MILTER_P_NOHDRS;
  case SL_MILTER_CMD_EOH:
    return SL_MILTER_P_NOEOH;
  case SL_MILTER_CMD_UNKNOWN:
    return SL_MILTER_P_NOUNKNOWN;
  case SL_MILTER_CMD_DATA:
    return SL_MILTER_P_NODATA;
  }
  return 0;
}

static uint32_t no_reply_flag(uint8_t cmd) {
  switch (cmd) {
  case SL_MILTER_CMD_CONNECT:
    return SL_MILTER_P_NR_CONN;
  case SL_MILTER_CMD_HELO:
    return SL_MILTER_P_NR_HELO;
  case SL_MILTER_CMD_MAIL:
    return SL_MILTER_P_NR_MAIL;
  case SL_MILTER_CMD_RCPT:
    return SL_MILTER_P_NR_RCPT;
  case SL_MILTER_CMD_DATA:
    return SL_MILTER_P_NR_DATA;
  case SL_MILTER_CMD_UNKNOWN:
    return SL_MILTER_P_NR_UNKN;
  case SL_MILTER_CMD_HEADER:
    return SL_MILTER_P_NR_HDR;
  case SL_MILTER_CMD_EOH:
    return SL_MILTER_P_NR_EOH;
  case SL_MILTER_CMD_BODY:
    return SL_MILTER_P_NR_BODY;
  }
  return 0;
}

/* Bit of sl_milter_session.skipped for a command that can be skipped. */
#define SKIPPED_BODY 1u

int sl_milter_sends(const sl_milter_session *s, uint8_t cmd) {
  if (!s)
    return 0;
  if (cmd == SL_MILTER_CMD_BODY && (s->skipped & SKIPPED_BODY))
    return 0;
  return (s->protocol & no_send_flag(cmd)) == 0;
}

int sl_milter_expects_reply(const sl_milter_session *s, uint8_t cmd) {
  if (!s)
    return 0;
  switch (cmd) {
  case SL_MILTER_CMD_OPTNEG:
  case SL_MILTER_CMD_BODYEOB:
    return 1;
  case SL_MILTER_CMD_MACRO:
  case SL_MILTER_CMD_ABORT:
  case SL_MILTER_CMD_QUIT:
  case SL_MILTER_CMD_QUIT_NC:
    return 0;
  }
  uint32_t f = no_reply_flag(cmd);
  return f && (s->protocol & f) == 0;
}

static uint32_t action_needed(sl_milter_kind k) {
  switch (k) {
  case SL_MILTER_ADDHEADER:
    return SL_MILTER_ACT_ADDHDRS;
  case SL_MILTER_CHGHEADER:
  case SL_MILTER_INSHEADER:
    return SL_MILTER_ACT_CHGHDRS;
  case SL_MILTER_ADDRCPT:
    return SL_MILTER_ACT_ADDRCPT;
  case SL_MILTER_ADDRCPT_PAR:
    return SL_MILTER_ACT_ADDRCPT_PAR;
  case SL_MILTER_DELRCPT:
    return SL_MILTER_ACT_DELRCPT;
  case SL_MILTER_CHGFROM:
    return SL_MILTER_ACT_CHGFROM;
  case SL_MILTER_QUARANTINE:
    return SL_MILTER_ACT_QUARANTINE;
  default:
    return 0;
  }
}

int sl_milter_check_reply(sl_milter_session *s, uint8_t cmd,
                          const sl_milter_reply *rp, const char **why) {
  const char *dummy;
  if (!why)
    why = &dummy;
  *why = NULL;
  if (!s || !rp)
    return SL_ERR_INVALID_ARGUMENT;
  switch (rp->kind) {
  case SL_MILTER_OPTNEG:
    if (cmd != SL_MILTER_CMD_OPTNEG) {
      *why = "option negotiation reply outside negotiation";
      return SL_ERR_MALFORMED;
    }
    return SL_OK;
  case SL_MILTER_SKIP:
    if (cmd != SL_MILTER_CMD_BODY || !(s->protocol & SL_MILTER_P_SKIP)) {
      *why = "skip reply not allowed here";
      return SL_ERR_MALFORMED;
    }
    s->skipped |= SKIPPED_BODY;
    return SL_OK;
  case SL_MILTER_CONTINUE:
  case SL_MILTER_ACCEPT:
  case SL_MILTER_REJECT:
  case SL_MILTER_TEMPFAIL:
  case SL_MILTER_DISCARD:
  case SL_MILTER_REPLYCODE:
  case SL_MILTER_SHUTDOWN:
  case SL_MILTER_CONN_FAIL:
  case SL_MILTER_PROGRESS:
    if (cmd == SL_MILTER_CMD_OPTNEG) {
      *why = "decision during option negotiation";
      return SL_ERR_MALFORMED;
    }
    return SL_OK;
  default:
    break;
  }
  if (rp->kind == SL_MILTER_REPLBODY) {
    *why = "body replacement is not supported";
    return SL_ERR_MALFORMED;
  }
  if (cmd != SL_MILTER_CMD_BODYEOB) {
    *why = "modification before the end of the message";
    return SL_ERR_MALFORMED;
  }
  if (!(s->actions & action_needed(rp->kind))) {
    *why = (s->refused_actions & action_needed(rp->kind))
               ? "modification not negotiated (asked for, but not offered)"
               : "modification not negotiated";
    return SL_ERR_MALFORMED;
  }
  return SL_OK;
}

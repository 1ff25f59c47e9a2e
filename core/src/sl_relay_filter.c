/*
 * sl_relay_filter.c: content filters in the relay (issue 11): what a
 * filtered transaction gives the driver's filter_tap, the terminator held
 * for SL_REQ_FILTER, and the verdict applied (sl_relay_filter_verdict).
 */
#include "sl_caps.h"
#include "sl_cmd.h"
#include "sl_relay_int.h"
#include "sluice/filter.h"
#include "sluice/rcpt_policy.h"
#include "sluice/utf8.h"

/*
 * A filtered transaction's MAIL and RCPT lines, the upstream's RCPT replies
 * and its content as it goes upstream are given to the driver's filter_tap;
 * the terminator is held (fterm) and SL_REQ_FILTER asks for the verdict.
 * While it is held nothing else goes upstream (up_can_send), and a reply
 * the upstream sends meanwhile answers nothing it received (step_replies
 * fails the leg).  Accept: the terminator goes up and the upstream's reply
 * is relayed (guarantee 2).  Refusal: the leg is closed without it (as for
 * smuggling) and the end of data gets freply, one line re-framed by
 * sl_filter_reply (guarantee 5).  If the driver never answers, the
 * upstream_data_term_timeout running since the hold ends the wait.
 *
 * A BDAT transaction to an upstream with CHUNKING stays BDAT (issue 11):
 * its chunks go up as they come, the client's LAST one as a plain chunk
 * (Q_UP_BDAT_FLAST), and the held end is "BDAT 0 LAST" (the entry the
 * client's LAST is answered from).  A refusal ends the upstream
 * transaction with RSET (Q_UP_RSET_FILTER), so the leg stays usable.  The
 * verdict is applied once the LAST chunk's own reply is in, and that
 * reply is read only once the verdict is: a refused chunk under an accept
 * is the client's answer (the end goes as RSET, its reply to no one), and
 * under a refusal the filter's reply wins.  In spool mode the driver swaps
 * a DATA body, so BDAT is downgraded as without CHUNKING. */

void sl__ftap(const sl_relay *r, sl_filter_item item, const uint8_t *p,
              size_t n) {
  if (r->fmsg && r->info.filter_tap)
    r->info.filter_tap(r->info.filter_ctx, item, p, n);
}

/* Is the transaction starting now filtered? */
int sl__filter_wanted(const sl_relay *r) {
  if (!(r->info.flags & SL_CONN_FILTER) || !r->info.filter_tap)
    return 0;
  uint32_t skip = r->info.filter_skip;
  if ((skip & SL_FSKIP_AUTHENTICATED) && r->authed)
    return 0;
  if ((skip & SL_FSKIP_MYNETWORKS) &&
      sl_rcpt_client_trusted(&r->pol->rcpt, &r->info.client))
    return 0;
  if ((skip & SL_FSKIP_DNSWL) && r->dnsbl_done &&
      r->stats.score <= r->pol->allow_score)
    return 0;
  return 1;
}

/* Content of a filtered message, as written upstream. */
void sl__filter_body(sl_relay *r, const uint8_t *p, size_t n) {
  if (!r->fmsg || !n)
    return;
  r->fbody = 1;
  sl__ftap(r, SL_FI_BODY, p, n);
}

/* The message whose terminator was just produced (not written) ends here:
   hold the terminator and ask for the verdict.  The step that calls this
   has ring room for one request. */
void sl__filter_hold(sl_relay *r, const uint8_t *term, size_t n,
                     uint64_t size) {
  memcpy(r->fterm, term, n);
  r->fterm_len = (uint8_t)n;
  r->fheld = 1;
  r->fbody = 0;
  r->fres = 0;
  r->fsize = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
  r->id_filter = sl__new_id(r, TAG_FILTER);
  sl__push_req(r, SL_REQ_FILTER, r->id_filter, 0);
}

/* Does the filtered transaction's BDAT go upstream as BDAT (the upstream
   is ready)? */
int sl__filter_chunked(const sl_relay *r) {
  return r->fmsg && (r->up_caps & SL_CAP_CHUNKING) &&
         !(r->info.flags & SL_CONN_FILTER_SPOOL);
}

/* BDAT content as it goes upstream: given to the tap dot-stuffed (the
   form DATA content has), through a small stack window. */
void sl__filter_chunk(sl_relay *r, const uint8_t *p, size_t n) {
  if (!r->fmsg || !n)
    return;
  uint8_t win[256];
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (o + 2 > sizeof(win)) {
      sl__filter_body(r, win, o);
      o = 0;
    }
    if (r->fbol && p[i] == '.')
      win[o++] = '.';
    win[o++] = p[i];
    r->fbol = p[i] == '\n';
  }
  sl__filter_body(r, win, o);
}

/* The client's LAST chunk of a chunked filtered message has been read (and
   sent): its entry is the held "BDAT 0 LAST"'s, which the upstream owes
   once it is written.  The step that calls this has ring room. */
void sl__filter_chunk_end(sl_relay *r) {
  r->cmd_now = SL_CMD_BDAT;
  sl__q_push(r, Q_UP_BDAT_LAST);
  r->up_out++;
  r->fchunked = 1;
  sl__filter_hold(r, (const uint8_t *)"", 0, r->data.size);
}

void sl__filter_abort(sl_relay *r) {
  if (r->fbody || r->fheld)
    sl__ftap(r, SL_FI_ABORT, NULL, 0);
  r->fbody = r->fheld = 0;
  r->fchunked = r->fchunk_owed = r->fchunk_failed = 0;
  r->fterm_len = 0;
  r->fres = 0;
  r->id_filter = 0;
}

/* The verdict on a chunked message, once its LAST chunk was answered:
   "BDAT 0 LAST" after an accept of a message every chunk of which went
   in, else RSET, whose reply goes to no one or precedes the filter's. */
static int apply_chunked(sl_relay *r, int accept) {
  if (r->fchunk_owed)
    return 0;
  int send = accept && !r->fchunk_failed;
  const char *line = send ? "BDAT 0 LAST\r\n" : "RSET\r\n";
  size_t n = strlen(line);
  if (sl__buf_reserve(r, &r->uout, (uint32_t)n))
    return 0;
  if (r->uout.len == 0)
    r->t_uout = r->now;
  sl__buf_put(&r->uout, line, n);
  /* the held end's entry, the newest the upstream owes */
  for (uint8_t i = r->q_len; i > 0; i--) {
    uint8_t *k = &r->q[(r->q_head + i - 1) % QUEUE_CAP];
    if (*k == Q_UP_BDAT_LAST) {
      if (!send)
        *k = r->fchunk_failed ? Q_UP_RSET_OWN : Q_UP_RSET_FILTER;
      break;
    }
  }
  if (send)
    sl__msize_push(r, r->fsize);
  r->t_up = sl__tadd(r->now, send ? r->lim->upstream_data_term_timeout
                                  : r->lim->upstream_command_timeout);
  r->fheld = 0;
  r->fres = 0;
  r->fchunked = r->fchunk_failed = 0;
  r->id_filter = 0;
  return 1;
}

/* Applies the verdict taken by sl_relay_filter_verdict().  1: done (or
   nothing to do), 0: the pool has no room for the terminator yet. */
int sl__filter_apply(sl_relay *r) {
  sl_verdict v = (sl_verdict)(r->fres - 1);
  if (r->fchunked)
    return apply_chunked(r, v == SL_VERDICT_ACCEPT || v == SL_VERDICT_CHANGE);
  if (v == SL_VERDICT_ACCEPT || v == SL_VERDICT_CHANGE) {
    if (sl__buf_reserve(r, &r->uout, r->fterm_len))
      return 0;
    if (r->uout.len == 0)
      r->t_uout = r->now;
    sl__buf_put(&r->uout, r->fterm, r->fterm_len);
    sl__msize_mark_newest(r);
    r->fheld = 0;
    r->fres = 0;
    r->fterm_len = 0;
    r->id_filter = 0;
    /* the upstream's time to answer starts with the terminator */
    r->t_up = sl__tadd(r->now, r->lim->upstream_data_term_timeout);
    return 1;
  }
  r->fheld = 0; /* no ABORT: the driver gave this verdict */
  r->fres = 0;
  r->fterm_len = 0;
  r->id_filter = 0;
  sl__up_close(r);
  sl__filter_lost_end(r);
  return 1;
}

/* The leg is about to close with a held chunked message whose LAST chunk
   the upstream refused: that refusal was the client's answer to LAST
   (fchunk_failed), so the held end's entry answers no one.  Made an entry
   of sluice's own, it leaves with the leg instead of becoming a second
   reply to LAST.  1 if it was so. */
int sl__filter_end_answered(sl_relay *r) {
  if (!r->fheld || !r->fchunk_failed)
    return 0;
  for (uint8_t i = r->q_len; i > 0; i--) {
    uint8_t *k = &r->q[(r->q_head + i - 1) % QUEUE_CAP];
    if (*k == Q_UP_BDAT_LAST) {
      *k = Q_UP_RSET_OWN;
      break;
    }
  }
  return 1;
}

/* A held message whose verdict, taken and not yet applied, refuses it. */
int sl__filter_refused(const sl_relay *r) {
  sl_verdict v = (sl_verdict)(r->fres - 1);
  return r->fheld && r->fres && v != SL_VERDICT_ACCEPT &&
         v != SL_VERDICT_CHANGE;
}

/* The leg was just closed (sl__up_close) with the held end of a message
   the filters refused: up_close made that end's entry (the newest one the
   upstream owed: nothing was sent after it) a local 451; the client gets
   the filters' reply instead, the verdict it would have had with the leg
   up (guarantee 5). */
void sl__filter_lost_end(sl_relay *r) {
  for (uint8_t i = r->q_len; i > 0; i--) {
    uint8_t *k = &r->q[(r->q_head + i - 1) % QUEUE_CAP];
    if (*k == Q_LOCAL + R_UPSTREAM_LOST) {
      *k = (uint8_t)(Q_LOCAL + (r->frep.len || r->fcode / 100 == 5
                                    ? R_FILTER
                                    : R_FILTER_TEMP));
      break;
    }
  }
}

/* ---- the AUTH user (SL_FI_AUTH_USER) -------------------------------------
 *
 * sluice relays AUTH without taking part in it; for the filters (rspamd's
 * User, a milter's {auth_authen}) and a policy service (sasl_username,
 * given with SL_REQ_RCPT_CHECK) it reads the user name along: AUTH
 * PLAIN's authcid (RFC 4616: authzid NUL authcid NUL passwd, in the
 * initial response or the first continuation) or AUTH LOGIN's first
 * response.  The base64 is decoded a quantum at a time and only the name's
 * bytes are kept, so a password is never stored.  The name is kept in a
 * small pool buffer from the AUTH on, given to the tap at each filtered
 * MAIL and with each check once the upstream said 235, and dropped on any other
 * outcome.  A name too long, with a control byte (CR, LF, NUL...) or not UTF-8
 * is not given at all.  Other mechanisms give none. */

static int b64_value(uint8_t c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

/* Decodes a SASL response and keeps the user name's bytes in auser; 0 on
   success, -1 when it yields no usable name. */
static int auth_take(sl_relay *r, const uint8_t *p, size_t n, int plain) {
  if (n % 4)
    return -1;
  sl_buf *b = &r->auser;
  b->len = 0;
  b->off = 0;
  uint32_t cap =
      sl__buf_cap(b) < SL_AUTH_USER_MAX ? sl__buf_cap(b) : SL_AUTH_USER_MAX;
  int field = plain ? 0 : 1; /* PLAIN: authzid, authcid, passwd */
  for (size_t i = 0; i < n; i += 4) {
    int v[4], pad = 0;
    for (int j = 0; j < 4; j++) {
      v[j] = b64_value(p[i + (size_t)j]);
      if (p[i + (size_t)j] == '=' && i + 4 == n && j >= 2) {
        v[j] = 0;
        pad++;
      } else if (v[j] < 0 || pad) {
        return -1;
      }
    }
    uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                 (uint32_t)v[2] << 6 | (uint32_t)v[3];
    for (int j = 0; j < 3 - pad; j++) {
      uint8_t c = (uint8_t)(q >> (16 - 8 * j));
      if (plain && c == 0) {
        if (++field > 1)
          goto done; /* the password follows: never decoded */
        continue;
      }
      if (field != 1)
        continue;
      if (c < 0x20 || c == 0x7f || b->len >= cap)
        return -1;
      b->p[b->len++] = c;
    }
  }
  if (plain)
    return -1; /* no NUL after the authcid: not a PLAIN message */
done:
  if (b->len == 0 || sl_utf8_check(b->p, b->len) != b->len)
    return -1;
  return 0;
}

void sl__auth_forget(sl_relay *r) {
  sl__buf_release(r, &r->auser);
  r->auth_mech = AM_NONE;
}

/* A SASL response the client sent (not "*"): the name if it is the one
   the exchange's mechanism names it in. */
void sl__auth_response(sl_relay *r, const uint8_t *line, size_t len) {
  if (r->auth_mech == AM_NONE)
    return;
  int plain = r->auth_mech == AM_PLAIN;
  r->auth_mech = AM_NONE; /* what follows (LOGIN's password) is not read */
  if ((len == 1 && (line[0] == '*' || line[0] == '=')) ||
      auth_take(r, line, len, plain))
    sl__buf_release(r, &r->auser);
}

/* An AUTH went upstream (arg: its mechanism and initial response). */
void sl__auth_start(sl_relay *r, const uint8_t *arg, size_t alen) {
  /* After a 235 a further AUTH is refused (RFC 4954 4, 503) and the user
     in force stays: forgetting it here would let a client shed a limit a
     policy service keys on sasl_username by sending a second AUTH. */
  if (r->authed)
    return;
  sl__auth_forget(r);
  /* a policy service keys on the name too (sasl_username) */
  int wanted = (r->info.flags & SL_CONN_FILTER) || r->pol->rcpt_check ||
               r->pol->check_stages;
  if (!wanted)
    return;
  size_t m = 0;
  while (m < alen && arg[m] != ' ')
    m++;
  uint8_t mech = m == 5 && sl_ieq(arg, "PLAIN", 5)   ? AM_PLAIN
                 : m == 5 && sl_ieq(arg, "LOGIN", 5) ? AM_LOGIN
                                                     : AM_NONE;
  if (mech == AM_NONE || sl__buf_reserve(r, &r->auser, SL_AUTH_USER_MAX))
    return;
  r->auth_mech = mech & 3u;
  r->auser_login = mech == AM_LOGIN;
  size_t ir = m;
  while (ir < alen && arg[ir] == ' ')
    ir++;
  if (ir < alen)
    sl__auth_response(r, arg + ir, alen - ir);
}

/* The upstream's final answer to the AUTH (334 is not final); called
   before a 235 sets authed. */
void sl__auth_done(sl_relay *r, unsigned code) {
  if (code == 334)
    return;
  if (r->authed) {
    /* A further AUTH: refused, the user in force stays; accepted anyway
       (an upstream ignoring RFC 4954's 503), it names a user sluice did
       not read, so none is named from then on. */
    if (code == 235)
      sl__auth_forget(r);
    return;
  }
  if (code != 235 || r->auth_mech != AM_NONE || !r->auser.len)
    sl__auth_forget(r);
}

/* At a filtered MAIL, after SL_FI_MAIL. */
void sl__auth_tap(const sl_relay *r) {
  if (r->authed && r->auser.len)
    sl__ftap(r, SL_FI_AUTH_USER, r->auser.p + r->auser.off, r->auser.len);
}

/* The name and mechanism for SL_REQ_RCPT_CHECK ("" and 0 for none). */
void sl__auth_check(const sl_relay *r, sl_request *out) {
  int known = r->authed && r->auser.len;
  out->check.sasl_username =
      known ? (const char *)r->auser.p + r->auser.off : "";
  out->check.sasl_username_len = known ? (uint16_t)r->auser.len : 0;
  out->check.sasl_method = !known ? "" : r->auser_login ? "LOGIN" : "PLAIN";
}

/*
 * sl_relay_upstream.c: the upstream leg: connecting, the preamble (greeting,
 * EHLO, STARTTLS, XCLIENT, the client's EHLO replayed), writing relayed
 * commands, and failing over to local replies when the leg is lost.
 */
#include <string.h>

#include "sl_caps.h"
#include "sl_cmd.h"
#include "sl_data.h"
#include "sl_relay_int.h"
#include "sl_reply.h"
#include "sluice/proxy.h"

static int q_owes_upstream(const sl_relay *r);

/* ---- upstream leg ------------------------------------------------------ */

sl_duration sl__up_timeout(const sl_relay *r, uint8_t kind) {
  switch (kind) {
  case Q_UP_DATA:
  case Q_UP_BDAT_DATA:
    return r->lim->upstream_data_init_timeout;
  case Q_UP_END:
  case Q_UP_BDAT_LAST:
    return r->lim->upstream_data_term_timeout;
  default:
    return r->lim->upstream_command_timeout;
  }
}

/* Writes a command line (without CRLF) upstream.  The caller checked room
   with sl__up_room(). */
void sl__up_write_line(sl_relay *r, const uint8_t *line, size_t len) {
  if (r->uout.len == 0)
    r->t_uout = r->now;
  sl__buf_put(&r->uout, line, len);
  sl__buf_put(&r->uout, "\r\n", 2);
}

int sl__up_room(sl_relay *r, size_t n) {
  return sl__buf_reserve(r, &r->uout, (uint32_t)n + 2) == 0;
}

/* Writes a checked MAIL or RCPT line upstream without the parameters of
   the classes in drop (extensions the upstream did not offer).  The caller
   checked room for the whole line. */
void sl__up_write_params(sl_relay *r, const uint8_t *line, size_t len,
                         uint32_t drop) {
  if (!drop) {
    sl__up_write_line(r, line, len);
    return;
  }
  sl_cmd c;
  sl_cmd_parse(line, len, &c);
  if (r->uout.len == 0)
    r->t_uout = r->now;
  sl__buf_grow(&r->uout, sl_cmd_drop_params(line, len, c.arg, drop,
                                            sl__buf_tail(&r->uout)));
  sl__buf_put(&r->uout, "\r\n", 2);
}

/* Writes the due preamble line; 0 while the pool refuses the buffer. */
static int pre_write(sl_relay *r) {
  uint8_t line[512];
  const uint8_t *p = line;
  size_t n = 0;
  switch (r->pre_due) {
  case SL_PRE_EHLO_OWN:
  case SL_PRE_HELO_OWN:
    n = sl__put_str(line, r->pre_due == SL_PRE_EHLO_OWN ? "EHLO " : "HELO ");
    n += sl__put_str(line + n, r->pol->hostname);
    break;
  case SL_PRE_CLIENT_EHLO:
    p = r->ehlo.p + r->ehlo.off;
    n = r->ehlo.len;
    break;
  case SL_PRE_STARTTLS:
    n = sl__put_str(line, "STARTTLS");
    break;
  case SL_PRE_XCLIENT: {
    sl_ident id;
    sl__ident(r, &id);
    n = sl_xclient_line(line, &id);
    break;
  }
  default:
    return 1;
  }
  if (!sl__up_room(r, n))
    return 0;
  sl__up_write_line(r, p, n);
  r->pre_due = SL_PRE_NONE;
  return 1;
}

void sl__up_preamble_line(sl_relay *r, enum sl_pre_line which) {
  r->pre_due = (uint8_t)which;
  pre_write(r);
  r->t_up = sl__tadd(r->now, r->lim->upstream_command_timeout);
}

void sl__up_connect(sl_relay *r) {
  r->id_connect = sl__new_id(r, TAG_CONNECT);
  sl__push_req(r, SL_REQ_CONNECT_UPSTREAM, r->id_connect, r->attempt);
  r->stats.upstream_attempts++;
  r->up = UP_CONNECTING;
  r->up_caps = 0;
  r->up_size = 0;
  r->up_eof = 0;
  r->up_used = 0;
  r->up_tls_refused = 0;
  r->xclient_done = 0;
  r->replayed = 0;
  r->probe_held = 0;
  r->up_out = r->up_sync = 0;
  r->stats.tls_upstream = r->pol->upstream_tls == SL_UPTLS_IMPLICIT;
  r->t_up = sl__tadd(r->now, r->lim->upstream_connect_timeout);
}

/* Closes the upstream leg at once, discarding what it holds.  An open
   message is thereby aborted without its terminator (SECURITY.md 1.1). */
void sl__up_close(sl_relay *r) {
  /* A chunked message refused by the filters whose LAST chunk's reply the
     upstream still owed (the RSET waits for it) is refused all the same:
     the filters' verdict is known before any reply of the lost leg. */
  int refused = sl__filter_refused(r);
  if (sl__filter_end_answered(r))
    refused = 0;       /* the client's LAST already has its one answer */
  sl__filter_abort(r); /* a message it carried is not filtered after all */
  /* whatever the reason, a reply this upstream still owed becomes local */
  if (q_owes_upstream(r))
    sl__q_fail_upstream(r, R_UPSTREAM_LOST);
  if (refused)
    sl__filter_lost_end(r);
  if (r->up != UP_NONE)
    sl__push_req(r, SL_REQ_CLOSE_UPSTREAM, sl__new_id(r, 0), 0);
  sl__buf_release(r, &r->uin);
  sl__buf_release(r, &r->uout);
  r->t_urec = SL_TSTAMP_NONE;
  r->up = UP_NONE;
  r->up_out = r->up_sync = 0;
  r->probe_held = 0;
  r->up_eof = 0;
  r->t_up = SL_TSTAMP_NONE;
  r->id_connect = r->id_tls_up = 0;
  r->res_connect = r->res_tls_up = 0; /* answers for that leg are stale */
  r->xfwd_sent = 0;                   /* a new leg needs its own XFORWARD */
  r->proxy_due = 0;
  r->pre_due = SL_PRE_NONE;
}

/* Does a queued reply still depend on the upstream? */
static int q_owes_upstream(const sl_relay *r) {
  for (uint8_t i = 0; i < r->q_len; i++)
    if (sl__is_up(r->q[(r->q_head + i) % QUEUE_CAP]))
      return 1;
  return 0;
}

/* Every reply still owed by the upstream becomes a local one; replies to
   sluice's own commands are owed to no one and go. */
void sl__q_fail_upstream(sl_relay *r, enum local_reply why) {
  uint8_t n = 0;
  for (uint8_t i = 0; i < r->q_len; i++) {
    unsigned from = (r->q_head + i) % QUEUE_CAP;
    uint8_t k = r->q[from];
    if (k == Q_UP_RSET_OWN || k == Q_UP_XFORWARD)
      continue;
    if (k == Q_UP_MAIL_HELD) {
      /* the client had its 250: the RCPT waiting behind it (and the rest
         of the transaction) gets this failure instead */
      sl__mail_refused_local(r, why);
      continue;
    }
    /* a filtered message's LAST chunk: the held end behind it answers */
    if (k == Q_UP_BDAT_FLAST && i + 1 < r->q_len &&
        r->q[(from + 1) % QUEUE_CAP] == Q_UP_BDAT_LAST)
      continue;
    if (k == Q_UP_RSET_FILTER)
      k = (uint8_t)(Q_LOCAL + (r->frep.len || r->fcode / 100 == 5
                                   ? R_FILTER
                                   : R_FILTER_TEMP));
    else if (k == Q_UP_DATA_SYNC)
      /* a DATA refused for a synchronisation error keeps its refusal,
         which ends the session (the client's input is no longer read) */
      k = (uint8_t)(Q_LOCAL + R_SYNC);
    else if (sl__is_up(k))
      k = (uint8_t)(Q_LOCAL + why);
    else if (k == Q_GREETING && r->pol->mode == SL_MODE_PASSTHROUGH)
      k = (uint8_t)(Q_LOCAL + R_NO_UPSTREAM);
    unsigned to = (r->q_head + n++) % QUEUE_CAP;
    r->q[to] = k;
    r->q_cmd[to] = r->q_cmd[from];
  }
  r->q_len = n;
  r->q_cur = 0; /* no reply left can change the transaction */
  r->mail = 0;
  r->rcpts = 0;
  sl__msize_clear(r);
}

void sl__up_fail(sl_relay *r, sl_upstream_failure why) {
  sl__event(r, &(sl_event){.kind = SL_EV_UPSTREAM_FAILED,
                           .upstream_failed.failure = why});
  int used = r->up_used;
  sl__up_close(r);
  if (r->greet_held) {
    /* the held greeting came from this upstream: the next one's replaces it */
    sl__buf_release(r, &r->cout);
    r->greet_held = 0;
  }
  if (r->cl >= CL_CLOSING)
    return;
  if (!used && r->attempt + 1u < r->pol->upstream_attempts) {
    r->attempt++;
    sl__up_connect(r);
    return;
  }
  r->attempt = 0;
  /* A command left unconsumed while this upstream was being set up gets a
     local failure instead of starting yet another round of attempts. */
  r->up_gave_up = !used;
  sl__q_fail_upstream(r, used ? R_UPSTREAM_LOST : R_UPSTREAM_FAIL);
  if (r->cl == CL_DATA) {
    r->viol = SL_VIOL_NONE;
    sl_data_discard(&r->data, 0);
    r->cl = CL_DISCARD;
  } else if (r->cl == CL_BDAT) {
    r->bdat_discard = 1;
    /* a chunk on its way to DATA upstream is not received after all */
    uint8_t *tail = &r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP];
    if (r->q_len && *tail == Q_LOCAL + R_BDAT_OK)
      *tail = Q_LOCAL + R_UPSTREAM_LOST;
  } else if (r->cl == CL_WAIT && !r->tls_pending && !r->wait_354) {
    /* the AUTH whose reply we waited for now has a local one (a DATA's
       bytes keep waiting until its reply is out) */
    r->cl = CL_CMD;
  }
}

/* Asks for the upstream a command needs.  1: ready; 0: not yet (leave the
   command unconsumed); -1: unavailable (answer it locally). */
int sl__need_upstream(sl_relay *r) {
  if (r->up == UP_READY)
    return 1;
  if (r->up_gave_up) {
    r->up_gave_up = 0;
    return -1;
  }
  /* The leg that accepted the client's AUTH is gone, and a new one would
     not be authenticated (sluice never has the password) while this
     session goes on as if it were: no new leg; the command gets
     R_AUTH_LOST (sl_relay_client.c) and the session ends. */
  if (r->up == UP_NONE && r->authed)
    return -1;
  if (r->up == UP_NONE && sl__ring_free(r) >= 3) {
    r->attempt = 0;
    sl__up_connect(r);
  }
  return 0;
}

/* May a command go upstream now (RFC 2920 pacing toward the upstream)? */
int sl__up_can_send(const sl_relay *r) {
  if (r->fheld)
    return 0; /* nothing may follow a message the filters hold */
  if (r->up_out == 0)
    return 1;
  return (r->up_caps & SL_CAP_PIPELINING) && r->up_sync == 0;
}

/* The held probe reply answers only the client's EHLO: anything else sent
   upstream first drops it, so it is never read as that command's reply. */
void sl__probe_drop(sl_relay *r) {
  if (!r->probe_held)
    return;
  r->probe_held = 0;
  sl_reply rep;
  if (r->uin.len &&
      sl_reply_scan(r->uin.p + r->uin.off, r->uin.len, r->lim->reply_line_max,
                    r->lim->reply_max, &rep) > 0)
    sl__buf_consume(r, &r->uin, rep.len);
}

void sl__up_sent(sl_relay *r, uint8_t kind, int sync) {
  if (kind != Q_UP_EHLO)
    sl__probe_drop(r);
  sl__q_push(r, kind);
  r->up_out++;
  r->up_sync = (uint8_t)(r->up_sync + (sync ? 1 : 0));
  r->up_used = 1;
  r->t_up = sl__tadd(r->now, sl__up_timeout(r, kind));
}

static void up_ready(sl_relay *r) {
  r->up = UP_READY;
  r->t_up = SL_TSTAMP_NONE;
  sl__event(r, &(sl_event){.kind = SL_EV_UPSTREAM_READY,
                           .upstream_ready.attempt = r->attempt});
}

/* The EHLO/HELO argument stored in r->ehlo, or NULL. */
static const uint8_t *helo_name(const sl_relay *r, size_t *n) {
  if (!r->ehlo.len)
    return NULL;
  const uint8_t *l = r->ehlo.p + r->ehlo.off;
  sl_cmd c;
  sl_cmd_parse(l, r->ehlo.len, &c);
  *n = sl_cmd_helo_arg(l + c.arg, r->ehlo.len - c.arg, r->lim->domain_max);
  return l + c.arg;
}

/* The client's identity for XCLIENT and XFORWARD. */
void sl__ident(const sl_relay *r, sl_ident *id) {
  id->addr = &r->info.client;
  id->name = r->info.client_name;
  id->helo_len = 0;
  id->helo = helo_name(r, &id->helo_len);
  id->helo_seen = r->helo;
  id->esmtp = r->esmtp;
}

/* XCLIENT (Postfix XCLIENT_README): the upstream logs and judges the real
   client, not sluice. */
static void up_send_xclient(sl_relay *r) {
  sl__up_preamble_line(r, SL_PRE_XCLIENT);
  r->up = UP_XCLIENT;
}

/* After the upstream's EHLO: TLS, then identity, then the client's EHLO. */
static void up_preamble_next(sl_relay *r) {
  const sl_policy *p = r->pol;
  if ((p->upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
       p->upstream_tls == SL_UPTLS_REQUIRED) &&
      !r->stats.tls_upstream && !r->up_tls_refused &&
      (r->up_caps & SL_CAP_STARTTLS)) {
    sl__up_preamble_line(r, SL_PRE_STARTTLS);
    r->up = UP_STARTTLS;
    return;
  }
  if (p->upstream_tls == SL_UPTLS_REQUIRED && !r->stats.tls_upstream) {
    sl__up_fail(r, SL_UPFAIL_TLS);
    return;
  }
  if (p->identity == SL_IDENT_XCLIENT && !r->xclient_done &&
      (r->up_caps & SL_CAP_XCLIENT)) {
    up_send_xclient(r);
    return;
  }
  if (r->helo && r->ehlo.len && !r->replayed) {
    sl__up_preamble_line(r, SL_PRE_CLIENT_EHLO);
    r->replayed = 1;
    r->up = UP_REPLAY;
    return;
  }
  up_ready(r);
}

void sl__up_connected(sl_relay *r) {
  r->up = UP_GREETING;
  r->t_up = sl__tadd(r->now, r->lim->upstream_greeting_timeout);
  /* The header must be the first bytes upstream, before its greeting is
     read: written by step_preamble() once a buffer is lent. */
  r->proxy_due = r->pol->identity == SL_IDENT_PROXY_V1 ||
                 r->pol->identity == SL_IDENT_PROXY_V2;
}

/* 0 while the pool refuses the buffer (the greeting stays unread). */
static int up_proxy_header(sl_relay *r) {
  if (!r->proxy_due)
    return 1;
  {
    uint8_t hdr[232];
    long n = r->pol->identity == SL_IDENT_PROXY_V1
                 ? sl_proxy_write_v1(hdr, sizeof(hdr), &r->info.client,
                                     &r->info.local)
                 : sl_proxy_write_v2(hdr, sizeof(hdr), &r->info.client,
                                     &r->info.local);
    if (n > 0) {
      if (sl__buf_reserve(r, &r->uout, (uint32_t)n))
        return 0;
      r->t_uout = r->now;
      sl__buf_put(&r->uout, hdr, (size_t)n);
    }
  }
  r->proxy_due = 0;
  return 1;
}

/* ---- step: the upstream preamble ------------------------------------ */

/* The upstream's session is fresh (after its greeting or TLS): its first
   EHLO is the client's own when the client has said EHLO, so a receiver
   that refuses a second EHLO (OpenSMTPD: "503 Already identified") never
   sees two; sluice's own name only when no client EHLO is known yet. */
void sl__up_ehlo(sl_relay *r) {
  r->replayed = 0;
  r->probe_own = 0;
  if (r->helo && r->esmtp && r->ehlo.len) {
    sl__up_preamble_line(r, SL_PRE_CLIENT_EHLO);
    r->replayed = 1;
  } else {
    r->probe_own = 1;
    sl__up_preamble_line(r, SL_PRE_EHLO_OWN);
  }
  r->up = UP_EHLO;
}

/* Whether the preamble needs the upstream's capabilities before the
   client's EHLO: only for STARTTLS or XCLIENT, which both reset the
   upstream's session, so the client's EHLO is again its first one.
   Otherwise pass-through relays the greeting at once and the client's
   EHLO is the upstream's first and only EHLO. */
static int up_needs_probe(const sl_relay *r) {
  const sl_policy *p = r->pol;
  return p->upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
         p->upstream_tls == SL_UPTLS_REQUIRED ||
         p->identity == SL_IDENT_XCLIENT || (r->helo && r->esmtp);
}

static int preamble_reply(sl_relay *r) {
  sl_reply rep;
  int rc = r->uin.len
               ? sl_reply_scan(r->uin.p + r->uin.off, r->uin.len,
                               r->lim->reply_line_max, r->lim->reply_max, &rep)
               : 0;
  if (rc < 0) {
    sl__up_fail(r, SL_UPFAIL_MALFORMED);
    return 1;
  }
  if (rc == 0) {
    if (r->up_eof) {
      sl__up_fail(r, SL_UPFAIL_CLOSED);
      return 1;
    }
    return 0;
  }
  if (r->up != UP_GREETING && r->uout.len)
    /* Sluice's own command is not all out yet: a reply already read
       waits until it is, or the preamble runs ahead of the wire (the
       STARTTLS handshake asked for while "STARTTLS" still waits in uout,
       which then follows the handshake with the next EHLO).  The ack of
       the last byte runs this step again. */
    return 0;
  const uint8_t *b = r->uin.p + r->uin.off;
  unsigned code = rep.code, cls = code / 100;
  sl_caps caps;
  switch (r->up) {
  case UP_GREETING:
    if (code == 220 ||
        (cls == 5 && r->pol->mode == SL_MODE_PASSTHROUGH && !r->greeted)) {
      if (r->pol->mode == SL_MODE_PASSTHROUGH && !r->greeted &&
          !r->greet_held) {
        /* Relayed as the client's greeting once the preamble is done. */
        if (sl__emit_upstream(r, b, &rep, Q_UP))
          return 0;
        r->greet_held = 1;
      }
      sl__buf_consume(r, &r->uin, rep.len);
      if (cls == 5) {
        /* The mail server refuses this client: relay that, and answer
           everything else locally until QUIT (RFC 5321 3.1). */
        r->rejected = 1;
        sl__up_close(r);
        return 1;
      }
      if (up_needs_probe(r))
        sl__up_ehlo(r);
      else
        up_preamble_next(r);
      return 1;
    }
    sl__buf_consume(r, &r->uin, rep.len);
    sl__up_fail(r, SL_UPFAIL_GREETING);
    return 1;
  case UP_EHLO:
    if (cls == 2) {
      sl_caps_parse(b, &rep, &caps);
      r->up_caps = caps.bits;
      r->up_size = caps.size;
      const sl_policy *p = r->pol;
      int tls = (p->upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
                 p->upstream_tls == SL_UPTLS_REQUIRED) &&
                !r->stats.tls_upstream && !r->up_tls_refused &&
                (caps.bits & SL_CAP_STARTTLS);
      int xc = p->identity == SL_IDENT_XCLIENT && !r->xclient_done &&
               (caps.bits & SL_CAP_XCLIENT);
      if (r->probe_own && !tls && !xc && !r->helo &&
          p->mode == SL_MODE_PASSTHROUGH) {
        /* Nothing will reset the upstream's session, so the client's EHLO
           cannot go upstream as a second EHLO (a strict receiver refuses
           it): this reply stays in uin and answers the client's EHLO. */
        r->probe_held = 1;
      } else {
        sl__buf_consume(r, &r->uin, rep.len);
      }
      up_preamble_next(r);
    } else {
      sl__buf_consume(r, &r->uin, rep.len);
      sl__up_preamble_line(r, SL_PRE_HELO_OWN);
      r->up = UP_HELO;
    }
    return 1;
  case UP_HELO:
    sl__buf_consume(r, &r->uin, rep.len);
    if (cls != 2) {
      sl__up_fail(r, SL_UPFAIL_GREETING);
      return 1;
    }
    r->up_caps = 0;
    up_preamble_next(r);
    return 1;
  case UP_STARTTLS:
    if (code == 220) {
      /* Anything after the 220 was sent before TLS: never read it as a
         reply (response injection, CVE-2011-0411's mirror). */
      sl__buf_release(r, &r->uin);
      r->t_urec = SL_TSTAMP_NONE;
      r->id_tls_up = sl__new_id(r, TAG_TLS_UPSTREAM);
      sl__push_req(r, SL_REQ_STARTTLS_UPSTREAM, r->id_tls_up, 0);
      r->up = UP_TLS;
      r->t_up = sl__tadd(r->now, r->lim->tls_handshake_timeout);
      return 1;
    }
    sl__buf_consume(r, &r->uin, rep.len);
    if (r->pol->upstream_tls == SL_UPTLS_REQUIRED) {
      sl__up_fail(r, SL_UPFAIL_TLS);
      return 1;
    }
    r->up_tls_refused = 1;
    up_preamble_next(r);
    return 1;
  case UP_XCLIENT:
    sl__buf_consume(r, &r->uin, rep.len);
    if (code != 220) {
      sl__up_fail(r, SL_UPFAIL_IDENTITY);
      return 1;
    }
    r->xclient_done = 1; /* the upstream is back at its greeting */
    r->replayed = 0;     /* so the client's EHLO goes again */
    /* and it offers nothing until an EHLO is answered 2xx again: a
       refused one leaves no PIPELINING to pace by */
    r->up_caps = 0;
    r->up_size = 0;
    up_preamble_next(r);
    return 1;
  case UP_REPLAY:
    if (cls != 2) {
      sl__buf_consume(r, &r->uin, rep.len);
      sl__up_fail(r, SL_UPFAIL_GREETING);
      return 1;
    }
    /* After a replayed HELO the session has no extensions (RFC 2920 binds
       PIPELINING to the EHLO that offered it). */
    r->up_caps = 0;
    r->up_size = 0;
    if (r->esmtp) {
      sl_caps_parse(b, &rep, &caps);
      r->up_caps = caps.bits;
      r->up_size = caps.size;
    }
    sl__buf_consume(r, &r->uin, rep.len);
    up_ready(r);
    return 1;
  default:
    return 0;
  }
}

static int step_preamble(sl_relay *r) {
  if (!up_proxy_header(r) || !pre_write(r))
    return 0;
  return preamble_reply(r);
}

int sl__step_upstream(sl_relay *r) {
  switch (r->up) {
  case UP_GREETING:
  case UP_EHLO:
  case UP_HELO:
  case UP_STARTTLS:
  case UP_XCLIENT:
  case UP_REPLAY:
    if (sl__ring_free(r) < STEP_ROOM)
      return 0;
    return step_preamble(r);
  case UP_READY:
    if (sl__ring_free(r) < STEP_ROOM)
      return 0;
    if (r->probe_held && r->up_out == 0) {
      if (!r->up_eof)
        return 0; /* the held reply waits for the client's EHLO */
      sl__probe_drop(r);
    }
    if (r->up_out == 0 &&
        (r->cl == CL_DATA || r->cl == CL_BDAT ||
         (r->q_len && sl__q_peek(r) == Q_GREETING)) &&
        (r->uin.len || r->up_eof)) {
      /* a message is being streamed, or the greeting still waits on this
         upstream: losing it is a failure, not an idle close */
      sl__up_fail(r, r->uin.len ? SL_UPFAIL_MALFORMED : SL_UPFAIL_CLOSED);
      return 1;
    }
    if (r->up_out == 0 && (r->uin.len || r->up_eof) && q_owes_upstream(r)) {
      /* an AUTH answered 334 waits on this upstream: not idle */
      sl__up_fail(r, r->uin.len ? SL_UPFAIL_MALFORMED : SL_UPFAIL_CLOSED);
      return 1;
    }
    if (r->up_out == 0 && (r->uin.len || r->up_eof)) {
      /* Idle and the upstream spoke or left (idle timeout, shutdown):
         drop it; the next command reconnects and replays the EHLO. */
      sl__event(r, &(sl_event){.kind = SL_EV_UPSTREAM_FAILED,
                               .upstream_failed.failure =
                                   r->uin.len ? SL_UPFAIL_MALFORMED
                                              : SL_UPFAIL_CLOSED});
      sl__up_close(r);
      return 1;
    }
    if (r->up_out && r->up_eof) {
      sl_reply rep;
      if (!r->uin.len ||
          sl_reply_scan(r->uin.p + r->uin.off, r->uin.len,
                        r->lim->reply_line_max, r->lim->reply_max, &rep) == 0) {
        sl__up_fail(r, SL_UPFAIL_CLOSED);
        return 1;
      }
    }
    return 0;
  case UP_QUIT:
    if (r->uout.len == 0 && sl__ring_free(r) >= 2) {
      sl__up_close(r);
      return 1;
    }
    return 0;
  default:
    return 0;
  }
}

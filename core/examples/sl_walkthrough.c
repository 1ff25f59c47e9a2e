/*
 * sl_walkthrough.c: one SMTP session driven through the sluice core by hand.
 *
 * No sockets and no clock: this program plays the client, the upstream
 * server and the driver, and prints every byte and request that crosses the
 * relay.  Read it next to core/include/sluice/relay.h; a real driver does
 * the same with recv()/send(), a timer and DNS (drivers/sd_conn.c).
 *
 * Build: part of the CMake build (target sl_walkthrough).  Run it without
 * arguments.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/sluice.h"

static sl_relay *relay;
static sl_tstamp now = 1; /* any monotonic origin; nanoseconds */

static void show(const char *who, const uint8_t *p, size_t n) {
  printf("%s", who);
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\n')
      printf("\\n\n%s", i + 1 < n ? who : "");
    else if (p[i] == '\r')
      printf("\\r");
    else
      putchar(p[i]);
  }
  if (n && p[n - 1] != '\n')
    putchar('\n');
}

/* An event is tagged by its kind; its payload is the member named after
   it (relay.h lists which).  The names are the core's own. */
static void show_event(const sl_event *ev) {
  printf("[event %s]", sl_event_name(ev->kind));
  switch (ev->kind) {
  case SL_EV_UPSTREAM_READY:
    printf(" on attempt %u", ev->upstream_ready.attempt);
    break;
  case SL_EV_MESSAGE:
    printf(" upstream said %u to %llu octets", ev->message.code,
           (unsigned long long)ev->message.size);
    break;
  case SL_EV_SESSION_END:
    printf(" reason %s", sl_end_reason_name(ev->session_end.reason));
    break;
  default: /* screening events: see relay.h */
    break;
  }
  printf("\n");
}

/* The driver's loop body: requests first, then output to both peers. */
static uint32_t connect_id;
static void pump(void) {
  for (int progress = 1; progress;) {
    progress = 0;
    sl_request q;
    while (sl_relay_next_request(relay, &q)) {
      progress = 1;
      switch (q.type) {
      case SL_REQ_CONNECT_UPSTREAM:
        printf("[request] connect upstream (attempt %u)\n", q.connect.attempt);
        connect_id =
            q.id; /* answered below, as a driver would after connect() */
        break;
      case SL_REQ_EVENT:
        show_event(&q.ev);
        break;
      case SL_REQ_CLOSE_CLIENT:
        printf("[request] close the client connection\n");
        break;
      case SL_REQ_CLOSE_UPSTREAM:
        printf("[request] close the upstream connection\n");
        break;
      default:
        printf("[request] type %d\n", (int)q.type);
      }
    }
    size_t n;
    const uint8_t *p;
    while ((p = sl_relay_client_out(relay, &n, now)) && n) {
      show("S: ", p, n); /* to the client */
      sl_relay_client_out_ack(relay, n, now);
      progress = 1;
    }
    while ((p = sl_relay_upstream_out(relay, &n, now)) && n) {
      show("    U<- ", p, n); /* to the upstream */
      sl_relay_upstream_out_ack(relay, n, now);
      progress = 1;
    }
  }
}

static void client(const char *s) {
  show("C: ", (const uint8_t *)s, strlen(s));
  sl_relay_feed_client(relay, (const uint8_t *)s, strlen(s), now);
  pump();
}

static void upstream(const char *s) {
  show("    U-> ", (const uint8_t *)s, strlen(s));
  sl_relay_feed_upstream(relay, (const uint8_t *)s, strlen(s), now);
  pump();
}

int main(void) {
  /* Limits and policy are plain data with defaults. */
  static sl_limits limits;
  static sl_policy policy;
  sl_limits_default(&limits);
  sl_policy_default(&policy);
  policy.hostname = "mx.example.net";
  policy.mode = SL_MODE_PASSTHROUGH;
  /* Relay control: only recipients in example.net or its subdomains pass
     (the default refuses every recipient of an unauthenticated client). */
  static const char *const relay_domains[] = {"example.net", ".example.net"};
  policy.rcpt.domains = relay_domains;
  policy.rcpt.ndomains = 2;

  /* Buffers are lent by a pool the driver owns; here a static region. */
  static uint64_t pool_mem[(4 * 16384 + 8 * 512) / 8];
  static sl_bufpool bufpool;
  sl_pool pool;
  sl_bufpool_init(&bufpool, pool_mem, sizeof(pool_mem), 512, 8, 16384, 4);
  sl_bufpool_as_pool(&bufpool, &pool);

  /* The relay's own state lives in caller memory too. */
  static uint64_t relay_mem[1024];
  if (sl_relay_size(&limits) > sizeof(relay_mem))
    return 1;
  sl_conn_info info;
  memset(&info, 0, sizeof(info));
  sl_addr_parse(&info.client, "192.0.2.7", 9);
  info.client.port = 51234;
  info.admission = SL_ADMIT_ACCEPT;
  int e = sl_relay_init(&relay, relay_mem, sizeof(relay_mem), &limits, &policy,
                        &pool, &info, 7, now);
  if (e) {
    fprintf(stderr, "sl_relay_init: %s\n", sl_strerror(e));
    return 1;
  }
  printf("relay state: %zu bytes; at most %zu bytes with every buffer lent\n",
         sl_relay_size(&limits), sl_relay_memory_bound(&limits));
  pump();

  /* The driver connected to the upstream: tell the relay. */
  sl_completion done;
  memset(&done, 0, sizeof(done));
  done.id = connect_id;
  done.status = SL_STATUS_OK;
  sl_relay_complete(relay, &done, now);
  pump();

  upstream("220 upstream.example.net ESMTP\r\n");
  upstream("250-upstream.example.net\r\n250-PIPELINING\r\n250-SIZE "
           "10485760\r\n250 8BITMIME\r\n");
  /* sluice's EHLO probe (for STARTTLS) already got the capabilities and
     nothing reset the session: the probe's reply answers the client's
     EHLO, which never goes upstream as a second EHLO. */
  client("EHLO client.example.org\r\n");
  client(
      "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n");
  upstream("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
           "<CR><LF>.<CR><LF>\r\n");
  client("Subject: hello\r\n\r\nHi Bob.\r\n.\r\n");
  upstream("250 2.0.0 Ok: queued as 1234\r\n");
  client("QUIT\r\n");

  /* Time only moves when the driver says so; nothing is due here. */
  sl_tstamp t = sl_relay_next_deadline(relay);
  printf("next deadline: %s\n", t == SL_TSTAMP_NONE ? "none" : "set");
  /* The stats live in the relay's memory: read them before sl_relay_free(),
     after which nothing may be called on the relay. */
  const sl_stats *st = sl_relay_stats(relay);
  int closed = (sl_relay_want(relay) & SL_CLOSED) != 0;
  uint32_t accepted = st->messages_accepted;
  printf("messages accepted: %u, stage %s, end %s, closed: %s\n", accepted,
         sl_stage_name((sl_stage)st->stage),
         sl_end_reason_name((sl_end_reason)st->end_reason),
         closed ? "yes" : "no");
  sl_relay_free(relay);
  return accepted == 1 && closed ? 0 : 1;
}

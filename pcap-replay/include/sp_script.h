/*
 * sp_script.h: the client model of a replay, built from one captured SMTP
 * session (a transcript, or a session taken from a capture in-process).
 *
 * The client's byte stream is cut into the writes it made (one per C
 * record, so segment boundaries and pipelining are those of the capture)
 * and into "units", each of which expects exactly one reply: a command
 * line, a DATA body up to CRLF.CRLF (only when the captured reply to DATA
 * was 354), a BDAT command with its chunk.  Each write is anchored to the
 * number k of complete server replies the client had received before it
 * in the capture, and to its think time after the k-th of them (or after
 * the connection's start when k = 0).  A replay issues the write once the
 * k-th reply has arrived, think time later: every write moves by exactly
 * the extra delay the server imposed before the reply that preceded it.
 * The end of the client's side (FIN, RST, TLS, end of capture) is anchored
 * the same way, except a captured give-up (below), which a replay leaves to
 * its patience model.
 *
 * Patience observation (for Kaplan-Meier): the client is waiting while a
 * unit it sent has no reply yet (a reply to QUIT is not waited for); the
 * wait runs from the later of its last write and the last server byte.
 * A client that closed while waiting is an event at that wait; any other
 * session is censored at the longest wait it sat through.
 */
#ifndef SP_SCRIPT_H
#define SP_SCRIPT_H

#include <stddef.h>
#include <stdint.h>

#include "sp_transcript.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sp_unit_kind {
  SP_U_GREETING = 0,
  SP_U_HELO,
  SP_U_STARTTLS,
  SP_U_AUTH,
  SP_U_MAIL,
  SP_U_RCPT,
  SP_U_DATA,
  SP_U_MESSAGE,
  SP_U_BDAT,
  SP_U_QUIT,
  SP_U_RSET,
  SP_U_OTHER,
  SP_U_NKINDS
} sp_unit_kind;

/* "greeting", "helo", ... */
const char *sp_unit_name(sp_unit_kind k);

/* The kind of a command line (first word, case-insensitive). */
sp_unit_kind sp_unit_classify(const uint8_t *line, size_t len);

typedef struct sp_cwrite {
  uint64_t off, len;      /* in the client stream */
  uint32_t after_replies; /* k */
  int64_t think_us;       /* after the k-th reply (or the start) */
} sp_cwrite;

typedef struct sp_unit {
  uint64_t end;    /* client stream offset after the unit */
  uint8_t kind;    /* sp_unit_kind */
  int64_t sent_us; /* capture time the unit was complete */
  /* The captured reply (index = unit index + 1; 0 is the greeting). */
  uint64_t reply_off, reply_len; /* in the server stream; len 0: none */
  int64_t reply_us;              /* capture time of its first byte, -1: none */
  uint16_t reply_code;           /* 0: none */
} sp_unit;

typedef enum sp_script_end {
  SP_SEND_FIN,
  SP_SEND_RST,
  SP_SEND_TLS,
  SP_SEND_CAPTURE,
  SP_SEND_SERVER,
  SP_SEND_GAP
} sp_script_end;

typedef struct sp_script {
  char source[SP_SOURCE_MAX];
  uint64_t session;
  char client_ip[SP_ADDRSTRLEN], server_ip[SP_ADDRSTRLEN];
  uint16_t client_port, server_port;
  int64_t start_us;       /* capture time of the connection's first packet */
  char cls[24];           /* client class from --labels ("": unknown) */
  uint8_t *cdata, *sdata; /* client and server streams */
  uint64_t clen, slen;
  sp_cwrite *w;
  size_t nw;
  sp_unit *u;
  size_t nu;
  /* Captured greeting (reply 0). */
  uint64_t greet_off, greet_len;
  int64_t greet_us; /* -1: none */
  uint16_t greet_code;
  uint32_t replies; /* complete replies in the capture */
  sp_script_end end;
  uint32_t end_after; /* the end's anchor, as for writes */
  int64_t end_think_us;
  int64_t duration_us; /* last record's time */
  int server_seen;     /* the capture holds server bytes or its close */
  /* Patience observation. */
  double wait_s;                /* event: the give-up wait; else longest wait */
  int gave_up;                  /* 1: event */
  sp_unit_kind gave_up_waiting; /* valid when gave_up */
} sp_script;

/* Builds a script from a whole transcript in memory (data must stay valid
 * only during the call: bytes are copied).  0, or SP_ERR_MALFORMED /
 * SP_ERR_NOMEM with err. */
int sp_script_from_transcript(sp_script *s, const uint8_t *data, size_t len,
                              char *err, size_t errlen);
void sp_script_free(sp_script *s);

typedef struct sp_script_set {
  sp_script *v;
  size_t n, cap;
  /* Streaming: when set, every script is handed to on_script as soon as its
   * session ends and freed afterwards instead of being kept in v (memory
   * bounded by the sessions open at once, not the capture).  A non-zero
   * return stops the load with that error.  streamed counts them. */
  int (*on_script)(void *ud, sp_script *s);
  void *ud;
  size_t streamed;
} sp_script_set;

/*
 * Loads FILE: a transcript (first line "sluice-transcript 1") or a pcap /
 * pcapng capture, whose SMTP sessions are extracted in-process with the
 * default tracker configuration.  Scripts are appended to set.  0, or an
 * SP_ERR_* with err naming the file.
 */
int sp_script_load_file(sp_script_set *set, const char *path, char *err,
                        size_t errlen);
void sp_script_set_free(sp_script_set *set);

#ifdef __cplusplus
}
#endif
#endif

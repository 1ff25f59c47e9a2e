/*
 * sluice/milter.h: the Sendmail milter protocol, version 6, MTA side.
 *
 * Every packet either way is a 4-byte big-endian length, then a command
 * byte, then length - 1 bytes of data; strings in the data are
 * NUL-terminated, numbers are 4-byte (or, for a port, 2-byte) big-endian.
 * sluice sends commands (SL_MILTER_CMD_*: option negotiation, macros,
 * connect, HELO, MAIL, RCPT, DATA, headers, end of headers, body chunks,
 * end of body, abort, quit) and reads the filter's replies
 * (SL_MILTER_REPLY_*: decisions and, after end of body, modifications).
 *
 * Pieces, each pure: encoders that write one packet into a caller buffer;
 * a reader that collects one packet at a time from the stream; a decoder
 * that turns a packet into a typed sl_milter_reply; and option negotiation,
 * which says which events are sent and which are answered (the filter may
 * ask for no reply to some events, SMFIP_NR_*, as rspamd's milter proxy does
 * for all of them).  The driver owns the socket and the timeouts; the
 * caller keeps the per-session sl_milter_session.
 *
 * One filter connection, in order (what sl_milter_test.c replays against
 * captured sessions):
 *   1. send sl_milter_put_optneg(SL_MILTER_VERSION, offered actions, all
 *      SMFIP_* steps sluice can honour); read one packet, sl_milter_decode,
 *      sl_milter_negotiate;
 *   2. for each event (CONNECT, HELO, MAIL, RCPT, DATA, each HEADER, EOH,
 *      each BODY chunk, BODYEOB): skip it unless sl_milter_sends(); send
 *      its MACRO packet first if any (never answered), then the event; if
 *      sl_milter_expects_reply(), read packets until a decision:
 *      sl_milter_check_reply() each, PROGRESS means keep waiting (and
 *      restart the timeout), modifications (only after BODYEOB) are
 *      collected, CONTINUE goes on, ACCEPT ends filtering of this message
 *      with no change beyond those collected, the rest decide it;
 *   3. ABORT after a refused or reset transaction, QUIT at the end.
 *
 * Constants follow libmilter's mfdef.h; the reference MTA implementation is
 * Postfix's src/milter/milter8.c.
 */
#ifndef SLUICE_MILTER_H
#define SLUICE_MILTER_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/addr.h"
#include "sluice/errors.h"
#include "sluice/filter.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_MILTER_VERSION 6

/* Commands, MTA to filter (SMFIC_*). */
enum sl_milter_cmd {
  SL_MILTER_CMD_ABORT = 'A',
  SL_MILTER_CMD_BODY = 'B',
  SL_MILTER_CMD_CONNECT = 'C',
  SL_MILTER_CMD_MACRO = 'D',
  SL_MILTER_CMD_BODYEOB = 'E',
  SL_MILTER_CMD_HELO = 'H',
  SL_MILTER_CMD_QUIT_NC = 'K',
  SL_MILTER_CMD_HEADER = 'L',
  SL_MILTER_CMD_MAIL = 'M',
  SL_MILTER_CMD_EOH = 'N',
  SL_MILTER_CMD_OPTNEG = 'O',
  SL_MILTER_CMD_QUIT = 'Q',
  SL_MILTER_CMD_RCPT = 'R',
  SL_MILTER_CMD_DATA = 'T',
  SL_MILTER_CMD_UNKNOWN = 'U'
};

/* Replies, filter to MTA (SMFIR_*). */
enum sl_milter_reply_cmd {
  SL_MILTER_REPLY_ADDRCPT = '+',
  SL_MILTER_REPLY_DELRCPT = '-',
  SL_MILTER_REPLY_ADDRCPT_PAR = '2',
  SL_MILTER_REPLY_SHUTDOWN = '4',
  SL_MILTER_REPLY_ACCEPT = 'a',
  SL_MILTER_REPLY_REPLBODY = 'b',
  SL_MILTER_REPLY_CONTINUE = 'c',
  SL_MILTER_REPLY_DISCARD = 'd',
  SL_MILTER_REPLY_CHGFROM = 'e',
  SL_MILTER_REPLY_CONN_FAIL = 'f',
  SL_MILTER_REPLY_ADDHEADER = 'h',
  SL_MILTER_REPLY_INSHEADER = 'i',
  SL_MILTER_REPLY_SETSYMLIST = 'l',
  SL_MILTER_REPLY_CHGHEADER = 'm',
  SL_MILTER_REPLY_PROGRESS = 'p',
  SL_MILTER_REPLY_QUARANTINE = 'q',
  SL_MILTER_REPLY_REJECT = 'r',
  SL_MILTER_REPLY_SKIP = 's',
  SL_MILTER_REPLY_TEMPFAIL = 't',
  SL_MILTER_REPLY_REPLYCODE = 'y',
  SL_MILTER_REPLY_OPTNEG = 'O'
};

/* Actions the filter may take (SMFIF_*), negotiated at OPTNEG. */
enum sl_milter_action {
  SL_MILTER_ACT_ADDHDRS = 1u << 0,
  SL_MILTER_ACT_CHGBODY = 1u << 1,
  SL_MILTER_ACT_ADDRCPT = 1u << 2,
  SL_MILTER_ACT_DELRCPT = 1u << 3,
  SL_MILTER_ACT_CHGHDRS = 1u << 4,
  SL_MILTER_ACT_QUARANTINE = 1u << 5,
  SL_MILTER_ACT_CHGFROM = 1u << 6,
  SL_MILTER_ACT_ADDRCPT_PAR = 1u << 7,
  SL_MILTER_ACT_SETSYMLIST = 1u << 8,
  SL_MILTER_ACT_ALL = (1u << 9) - 1
};

/* Protocol flags (SMFIP_*), negotiated at OPTNEG. */
enum sl_milter_proto {
  SL_MILTER_P_NOCONNECT = 1u << 0, /* do not send connect */
  SL_MILTER_P_NOHELO = 1u << 1,
  SL_MILTER_P_NOMAIL = 1u << 2,
  SL_MILTER_P_NORCPT = 1u << 3,
  SL_MILTER_P_NOBODY = 1u << 4,
  SL_MILTER_P_NOHDRS = 1u << 5,
  SL_MILTER_P_NOEOH = 1u << 6,
  SL_MILTER_P_NR_HDR = 1u << 7, /* no reply to each header */
  SL_MILTER_P_NOUNKNOWN = 1u << 8,
  SL_MILTER_P_NODATA = 1u << 9,
  SL_MILTER_P_SKIP = 1u << 10,     /* the MTA understands SMFIR_SKIP */
  SL_MILTER_P_RCPT_REJ = 1u << 11, /* send rejected recipients too */
  SL_MILTER_P_NR_CONN = 1u << 12,
  SL_MILTER_P_NR_HELO = 1u << 13,
  SL_MILTER_P_NR_MAIL = 1u << 14,
  SL_MILTER_P_NR_RCPT = 1u << 15,
  SL_MILTER_P_NR_DATA = 1u << 16,
  SL_MILTER_P_NR_UNKN = 1u << 17,
  SL_MILTER_P_NR_EOH = 1u << 18,
  SL_MILTER_P_NR_BODY = 1u << 19,
  SL_MILTER_P_HDR_LEADSPC = 1u << 20, /* header values keep their leading
                                         space, both ways */
  SL_MILTER_P_ALL = (1u << 21) - 1
};

/* Macro stages of SMFIR_SETSYMLIST / the optneg symbol lists (SMFIM_*). */
enum sl_milter_stage {
  SL_MILTER_STAGE_CONNECT = 0,
  SL_MILTER_STAGE_HELO = 1,
  SL_MILTER_STAGE_MAIL = 2,
  SL_MILTER_STAGE_RCPT = 3,
  SL_MILTER_STAGE_DATA = 4,
  SL_MILTER_STAGE_EOM = 5,
  SL_MILTER_STAGE_EOH = 6,
  SL_MILTER_STAGES = 7
};

/* Largest body chunk (SMFIC_BODY) sluice sends: libmilter's default
   MILTER_CHUNK_SIZE. */
#define SL_MILTER_CHUNK_MAX 65535
/* Bytes a packet takes beyond its data: the length and the command. */
#define SL_MILTER_HEADER_LEN 5

/* ---- encoders ---------------------------------------------------------- */

/*
 * Each writes one whole packet into out[0..cap) and returns its length, or
 *  SL_ERR_NOBUF             cap too small (out is garbage then);
 *  SL_ERR_INVALID_ARGUMENT  (whatever cap is) NULL out, a NULL pointer with a
 * non-zero length, a NUL inside a string (the protocol could not frame it), a
 * chunk over SL_MILTER_CHUNK_MAX.
 */

/* SMFIC_OPTNEG: what the MTA offers (version, SMFIF_* actions, SMFIP_*
   protocol flags). */
long sl_milter_put_optneg(uint8_t *out, size_t cap, uint32_t version,
                          uint32_t actions, uint32_t protocol);

typedef struct sl_milter_macro {
  sl_bytes name; /* "j", "{daemon_name}", "i", "{auth_authen}", ... */
  sl_bytes value;
} sl_milter_macro;

/* SMFIC_MACRO: macros for the command `cmd` that follows (one of
   SL_MILTER_CMD_CONNECT, HELO, MAIL, RCPT, DATA, EOH, BODYEOB). */
long sl_milter_put_macro(uint8_t *out, size_t cap, uint8_t cmd,
                         const sl_milter_macro *m, size_t n);

/* SMFIC_CONNECT: the client's host name ("[192.0.2.1]" when it has none,
   as Postfix sends it), family '4' or '6' with port and address text for
   SL_AF_INET / SL_AF_INET6, or family 'U' alone for SL_AF_UNSPEC. */
long sl_milter_put_connect(uint8_t *out, size_t cap, sl_bytes hostname,
                           const sl_addr *client);

/* SMFIC_HELO. */
long sl_milter_put_helo(uint8_t *out, size_t cap, sl_bytes helo);

/* SMFIC_MAIL / SMFIC_RCPT: the address, written as "<addr>" (addr without
   the brackets; empty for the null sender), then each ESMTP parameter
   ("SIZE=1000", "BODY=8BITMIME") as its own string. */
long sl_milter_put_mail(uint8_t *out, size_t cap, sl_bytes addr,
                        const sl_bytes *params, size_t nparams);
long sl_milter_put_rcpt(uint8_t *out, size_t cap, sl_bytes addr,
                        const sl_bytes *params, size_t nparams);

/* SMFIC_HEADER: name, then value as given (unfolded lines joined by the
   caller's choice of line breaks).  Unless SL_MILTER_P_HDR_LEADSPC was
   negotiated, pass the value without the one space after the colon. */
long sl_milter_put_header(uint8_t *out, size_t cap, sl_bytes name,
                          sl_bytes value);

/* SMFIC_BODY: one chunk of the message body (CRLF line ends, not
   dot-stuffed), 1..SL_MILTER_CHUNK_MAX bytes. */
long sl_milter_put_body(uint8_t *out, size_t cap, const uint8_t *chunk,
                        size_t len);

/* A command without data: SL_MILTER_CMD_DATA, EOH, BODYEOB, ABORT, QUIT,
   QUIT_NC.  Writes SL_MILTER_HEADER_LEN bytes. */
long sl_milter_put_simple(uint8_t *out, size_t cap, uint8_t cmd);

/* ---- reader ------------------------------------------------------------ */

/* Collects one packet at a time into the caller's buffer; fields private. */
typedef struct sl_milter_reader {
  uint8_t *buf;
  size_t cap;
  uint32_t need; /* data length of the packet being read, command included */
  uint32_t have;
  uint8_t hdr[4];
  uint8_t hdr_have;
  uint8_t done;
  uint8_t err_;
  uint8_t pad_;
} sl_milter_reader;

/* buf holds one packet's command and data: cap bytes bound the largest
   packet accepted (SL_MILTER_CHUNK_MAX + 1 fits every packet libmilter
   sends by default). */
void sl_milter_reader_init(sl_milter_reader *r, uint8_t *buf, size_t cap);

/*
 * Feeds bytes from the filter.  *consumed is set to the bytes used; the
 * rest belong to the next packet (feed them again after taking this one).
 * Returns
 *  SL_OK              a packet is complete: sl_milter_reader_packet();
 *                     the next feed starts a new packet;
 *  SL_ERR_INCOMPLETE  all bytes were used, more are needed;
 *  SL_ERR_MALFORMED   a length of 0 or larger than cap (sticky);
 *  SL_ERR_INVALID_ARGUMENT  NULL r or consumed, NULL buf with len > 0.
 */
int sl_milter_reader_feed(sl_milter_reader *r, const uint8_t *buf, size_t len,
                          size_t *consumed);

/* After SL_OK: the packet's command byte and data (without the command),
   valid until the next feed. */
uint8_t sl_milter_reader_packet(const sl_milter_reader *r, const uint8_t **data,
                                size_t *len);

/* Nonzero if bytes of an unfinished packet are held (at the end of the
   stream that means the filter broke off). */
int sl_milter_reader_partial(const sl_milter_reader *r);

/* ---- replies ----------------------------------------------------------- */

typedef enum sl_milter_kind {
  SL_MILTER_CONTINUE = 0,
  SL_MILTER_ACCEPT,      /* accept the message, send no more events */
  SL_MILTER_REJECT,      /* 5xx (Postfix: "550 5.7.1 Command rejected") */
  SL_MILTER_TEMPFAIL,    /* 4xx */
  SL_MILTER_DISCARD,     /* see sl_discard_as */
  SL_MILTER_REPLYCODE,   /* a custom 4xx/5xx reply: code and text */
  SL_MILTER_SHUTDOWN,    /* '4': 421, the filter wants the session closed */
  SL_MILTER_CONN_FAIL,   /* 'f': the filter wants the session failed */
  SL_MILTER_PROGRESS,    /* keep waiting; resets the timeout */
  SL_MILTER_SKIP,        /* no more events of this type (body chunks) */
  SL_MILTER_OPTNEG,      /* the filter's answer to option negotiation */
  SL_MILTER_ADDHEADER,   /* name, value */
  SL_MILTER_CHGHEADER,   /* index (1 = first instance), name, value; an
                            empty value deletes the header */
  SL_MILTER_INSHEADER,   /* index (0 = top), name, value */
  SL_MILTER_REPLBODY,    /* body chunk (data) */
  SL_MILTER_ADDRCPT,     /* addr */
  SL_MILTER_ADDRCPT_PAR, /* addr, args */
  SL_MILTER_DELRCPT,     /* addr */
  SL_MILTER_CHGFROM,     /* addr, args */
  SL_MILTER_QUARANTINE   /* text: the reason */
} sl_milter_kind;

typedef struct sl_milter_reply {
  sl_milter_kind kind;
  uint8_t cmd; /* the raw reply byte */
  /* REPLYCODE: the code (400..599); the verdict it means (TEMPFAIL or
     REJECT); REJECT, TEMPFAIL, DISCARD, ACCEPT, CONTINUE, SHUTDOWN and
     CONN_FAIL also set verdict (SHUTDOWN/CONN_FAIL: TEMPFAIL). */
  unsigned code;
  sl_verdict verdict;
  /* Pointers into the packet data, strings without their NUL. */
  sl_bytes text;  /* REPLYCODE: the whole reply (possibly multi-line, for
                     sl_filter_reply); QUARANTINE: the reason */
  sl_bytes name;  /* header actions */
  sl_bytes value; /* header actions */
  sl_bytes addr;  /* recipient and sender actions */
  sl_bytes args;  /* ADDRCPT_PAR, CHGFROM: ESMTP args, may be empty */
  sl_bytes data;  /* REPLBODY */
  uint32_t index; /* CHGHEADER, INSHEADER */
  /* OPTNEG */
  uint32_t version, actions, protocol;
  sl_bytes symlist[SL_MILTER_STAGES]; /* macro names asked for per stage,
                                         space-separated; len 0 if none */
} sl_milter_reply;

/*
 * Decodes one packet (command byte and data, as the reader gives them).
 * Returns SL_OK, or SL_ERR_MALFORMED: an unknown command, data that does
 * not match the command (a string without its NUL, extra bytes, a missing
 * number, data on a command that has none, a REPLYCODE that is not
 * "4xx"/"5xx" followed by a space, a dash or the end), or
 * SL_ERR_INVALID_ARGUMENT for NULL pointers.  *out is zeroed first.
 */
int sl_milter_decode(uint8_t cmd, const uint8_t *data, size_t len,
                     sl_milter_reply *out);

/* ---- option negotiation and the session ------------------------------- */

/* What was agreed for one filter connection. */
typedef struct sl_milter_session {
  uint32_t version;
  uint32_t actions;         /* what the filter may do */
  uint32_t protocol;        /* SMFIP_* in force */
  uint32_t skipped;         /* events the filter said SKIP to (bit per stage) */
  uint32_t refused_actions; /* asked for at OPTNEG but not offered */
} sl_milter_session;

/*
 * Agrees on the options.  offer_actions is what sluice sent in its OPTNEG;
 * filter is the decoded SL_MILTER_OPTNEG reply.  Actions the filter asks
 * for beyond the offer are not granted and not an error (rspamd's milter
 * proxy asks for all of them, SMFIF_CHGBODY included, whatever is
 * offered; Postfix would refuse the filter): they are left out of
 * s->actions and noted in s->refused_actions, and a reply that uses one
 * fails sl_milter_check_reply with a clear reason.  The filter's protocol
 * flags are taken as they are (they say what the filter will do: an NR_*
 * flag means no reply will come, whatever was offered), except bits
 * unknown to version 6, which are dropped.
 * Returns SL_OK and fills *s, or SL_ERR_MALFORMED with *why set to a
 * static English reason (for the log): "milter protocol version below 2",
 * "milter protocol version above 6"; SL_ERR_INVALID_ARGUMENT for NULLs or
 * a reply that is not SL_MILTER_OPTNEG.
 */
int sl_milter_negotiate(uint32_t offer_actions, const sl_milter_reply *filter,
                        sl_milter_session *s, const char **why);

/* Nonzero if the command is to be sent to the filter at all (the filter
   did not opt out with SMFIP_NO*, nor SKIP it). */
int sl_milter_sends(const sl_milter_session *s, uint8_t cmd);

/* Nonzero if the filter answers the command (no SMFIP_NR_* for it).
   OPTNEG, BODYEOB always are; MACRO, ABORT, QUIT never are. */
int sl_milter_expects_reply(const sl_milter_session *s, uint8_t cmd);

/*
 * Checks a decoded reply against the session, for the command `cmd` it
 * answers: a decision may answer any command; a modification
 * (ADDHEADER ... QUARANTINE) only BODYEOB and only when its action was
 * negotiated; SKIP only BODY and only with SMFIP_SKIP (the session then
 * records it, and sl_milter_sends says no for further BODY); OPTNEG only
 * OPTNEG.  Returns SL_OK or SL_ERR_MALFORMED with *why set to a static
 * reason, e.g. "body replacement is not supported" for REPLBODY, which the
 * caller turns into its configuration error, and "modification not
 * negotiated" for an action that was not offered.
 */
int sl_milter_check_reply(sl_milter_session *s, uint8_t cmd,
                          const sl_milter_reply *rp, const char **why);

#ifdef __cplusplus
}
#endif
#endif

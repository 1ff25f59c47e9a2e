/*
 * sluice-sink: a small, fast SMTP sink.
 *
 * One process, one epoll loop, non-blocking sockets.  It is the upstream the
 * proxy is tested and benchmarked against, so it is strict where a lenient
 * server would hide a proxy bug: commands must end in CRLF, only CRLF.CRLF
 * ends DATA, and each accepted message is stored exactly as received (after
 * dot-unstuffing) so that tests can compare bytes.
 *
 * Memory per session is fixed (input and output buffers live in the session);
 * message bodies stream to disk, never into memory.
 *
 * The program is three parts around the types below:
 *   sink_main.c   options, listeners, the event loop, session I/O, stats
 *   sink_smtp.c   PROXY header, commands and replies, DATA/BDAT framing
 *   sink_store.c  the transaction's files in the maildir
 * All process state lives in one struct sink, owned by main(); a session
 * points back to it, so the SMTP and store code need no globals.
 */
#ifndef SLUICE_SINK_H
#define SLUICE_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SINK_VERSION "0.1.0"
#define SINK_IN_SIZE 4096
#define SINK_OUT_SIZE 4096
/* A reply is produced only when this much output room is left, so a reply
 * (at most SINK_REPLY_MAX per line, the EHLO reply being the longest) never
 * has to be truncated. */
#define SINK_OUT_RESERVE 1024
#define SINK_REPLY_MAX 512
#define SINK_MAX_LISTEN 16
#define SINK_MAX_REJECT 16
#define SINK_HELO_MAX 256
#define SINK_XCLIENT_MAX 512
#define SINK_PROXY_MAX 160
#define SINK_MAX_RCPTS 1000
#define SINK_PROXY_V1_MAX 107

struct sink_config {
  const char *listen[SINK_MAX_LISTEN];
  size_t n_listen;
  const char *maildir;
  bool count_only;
  const char *reject_rcpt[SINK_MAX_REJECT];
  size_t n_reject;
  bool tempfail_data;
  uint64_t delay_ms;
  uint64_t close_after; /* 0 = never */
  bool garbage;
  bool stall;
  bool xclient;
  bool proxy_protocol;
  const char *pid_file;
  bool stats;
  bool quiet;
  bool print_port;
  char name[256];
  uint64_t size_limit;
  size_t max_line;
  uint64_t timeout_ms;
  size_t max_sessions;
};

/* The first member of everything registered with epoll, so the loop can tell
 * what an event's data pointer points at. */
enum sink_obj_kind { OBJ_LISTENER, OBJ_SESSION, OBJ_SIGNAL };

struct sink_listener {
  enum sink_obj_kind kind;
  int fd;
};

enum sink_mode { M_PROXY, M_CMD, M_DATA, M_BDAT, M_STALL, M_CLOSING };

/* Where the DATA parser stands relative to line starts; only a line start
 * can begin a dot-stuffed line or the terminator. */
enum sink_dstate { DS_LS, DS_DOT, DS_DOTCR, DS_MID, DS_CR };

struct sink;

struct sink_session {
  enum sink_obj_kind kind;
  int fd;
  struct sink *sk;
  uint64_t serial;
  struct sink_session *d_prev, *d_next; /* delay queue */
  struct sink_session *i_prev, *i_next; /* idle list, oldest first */
  uint64_t delay_deadline;
  uint64_t idle_deadline;
  uint32_t ev_mask;
  enum sink_mode mode;
  bool in_delayq;
  bool waiting; /* a reply is held back by --delay-ms */
  bool eof;
  bool discarding; /* dropping the rest of an overlong command line */
  bool out_full;   /* processing stopped for lack of output room */
  bool helo_seen;
  bool mail_seen;
  bool data_used;
  bool bdat_used;
  bool bdat_fail;
  bool bdat_last;
  bool too_long;
  bool too_big;
  unsigned rcpts;
  enum sink_dstate dstate;
  size_t line_len;
  uint64_t bdat_remaining;
  uint64_t msg_bytes; /* content bytes after unstuffing */
  uint64_t raw_bytes; /* wire bytes of this transaction's content */
  int eml_fd;
  int env_fd;
  size_t in_off, in_len;
  size_t out_off, out_len, out_hold;
  char peer[64];
  char proxy[SINK_PROXY_MAX];
  char helo[SINK_HELO_MAX];
  char xclient[SINK_XCLIENT_MAX];
  char in[SINK_IN_SIZE];
  char out[SINK_OUT_SIZE];
};

struct sink_stats {
  uint64_t sessions;
  uint64_t messages;
  uint64_t bytes;
  uint64_t rejected;
};

/* Doubly linked, oldest first; both queues stay sorted by appending because
 * every entry in one queue waits the same length of time. */
struct sink_queue {
  struct sink_session *head, *tail;
};

struct sink {
  struct sink_config cfg;
  int epfd;
  struct sink_listener listeners[SINK_MAX_LISTEN];
  size_t n_listeners;
  bool listeners_paused;
  uint64_t accept_resume_at;
  struct sink_queue delayq; /* sessions whose replies --delay-ms holds */
  struct sink_queue idleq;  /* every session, by idle deadline */
  size_t n_sessions;
  uint64_t session_serial;
  uint64_t msg_seq; /* last message number used in the maildir */
  struct sink_stats st;
};

/* sink_main.c */
void sink_log(const struct sink *sk, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sink_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
uint64_t sink_now_ms(void);
/* Holds the session's replies until deadline; see reply_raw. */
void sink_delay_push(struct sink_session *s, uint64_t deadline);

/* sink_smtp.c */
void sink_send_greeting(struct sink_session *s);
/* Consumes buffered input as far as the state allows. */
void sink_session_process(struct sink_session *s);

/* sink_store.c */
/* Continues numbering after the messages already in the maildir. */
void sink_store_scan(struct sink *sk);
/* Creates the transaction's files and writes the session part of the
 * envelope; false when they cannot be created. */
bool sink_store_open(struct sink_session *s);
void sink_store_env_printf(struct sink_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends message content, marking the message too big past --size. */
void sink_store_content(struct sink_session *s, const char *buf, size_t n);
/* Completes the envelope and moves both files to their final names as
 * message id; -1 (logged) when that fails. */
int sink_store_commit(struct sink_session *s, uint64_t id);
/* Drops the transaction's files, if any. */
void sink_store_discard(struct sink_session *s);

#endif

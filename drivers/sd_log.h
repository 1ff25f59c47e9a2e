/*
 * sd_log.h: sluiced's operational log (stderr or a file) and the helpers
 * that build one structured line per session in logfmt or JSON.
 */
#ifndef SD_LOG_H
#define SD_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum { SD_LOG_ERR = 0, SD_LOG_WARN = 1, SD_LOG_INFO = 2, SD_LOG_DEBUG = 3 };
enum { SD_LOGFMT = 0, SD_LOGJSON = 1 };

/* Sets where lines go (NULL or "-": stderr; "syslog": the local syslog
   socket /dev/log, facility mail, as Postfix logs; "syslog:PATH": another
   datagram socket), the threshold and the format.  Returns 0 or -1 (file
   not writable, socket not there; errno set). */
int sd_log_setup(const char *file, int level, int format);
int sd_log_level(void);
int sd_log_format(void);
/* Reopens the log file (after rotation); stderr stays. */
void sd_log_reopen(void);

/* An operational message: "ts=... level=... pid=... msg=\"...\"". */
void sd_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A structured record under construction, in the selected format. */
typedef struct sd_rec {
  char buf[2048];
  size_t len;
  int format;
  int truncated;
  int severity; /* syslog severity of the line */
} sd_rec;

void sd_rec_begin(sd_rec *r, const char *level, const char *msg);
void sd_rec_str(sd_rec *r, const char *key, const char *val);
void sd_rec_u64(sd_rec *r, const char *key, uint64_t v);
void sd_rec_i64(sd_rec *r, const char *key, int64_t v);
/* Milliseconds with three decimals from nanoseconds. */
void sd_rec_ms(sd_rec *r, const char *key, uint64_t ns);
/* Terminates the record (newline) and writes it in one write(2). */
void sd_rec_emit(sd_rec *r);

#endif

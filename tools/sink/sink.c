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
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

struct config {
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

static struct config cfg;

enum obj_kind { OBJ_LISTENER, OBJ_SESSION, OBJ_SIGNAL };

struct listener {
    enum obj_kind kind;
    int fd;
};

enum mode { M_PROXY, M_CMD, M_DATA, M_BDAT, M_STALL, M_CLOSING };

/* Where the DATA parser stands relative to line starts; only a line start
 * can begin a dot-stuffed line or the terminator. */
enum dstate { DS_LS, DS_DOT, DS_DOTCR, DS_MID, DS_CR };

struct session {
    enum obj_kind kind;
    int fd;
    uint64_t serial;
    struct session *d_prev, *d_next; /* delay queue */
    struct session *i_prev, *i_next; /* idle list, oldest first */
    uint64_t delay_deadline;
    uint64_t idle_deadline;
    uint32_t ev_mask;
    enum mode mode;
    bool in_delayq;
    bool waiting;       /* a reply is held back by --delay-ms */
    bool eof;
    bool discarding;    /* dropping the rest of an overlong command line */
    bool out_full;      /* processing stopped for lack of output room */
    bool helo_seen;
    bool mail_seen;
    bool data_used;
    bool bdat_used;
    bool bdat_fail;
    bool bdat_last;
    bool too_long;
    bool too_big;
    unsigned rcpts;
    enum dstate dstate;
    size_t line_len;
    uint64_t bdat_remaining;
    uint64_t msg_bytes;  /* content bytes after unstuffing */
    uint64_t raw_bytes;  /* wire bytes of this transaction's content */
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

struct stats {
    uint64_t sessions;
    uint64_t messages;
    uint64_t bytes;
    uint64_t rejected;
};

static int epfd = -1;
static struct listener listeners[SINK_MAX_LISTEN];
static size_t n_listeners;
static bool listeners_paused;
static uint64_t accept_resume_at;
static struct session *dq_head, *dq_tail;
static struct session *iq_head, *iq_tail;
static size_t n_sessions;
static uint64_t session_serial;
static uint64_t msg_seq;
static struct stats st;

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
    if (cfg.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice-sink: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice-sink: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t parse_u64(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        die("%s: not a number: %s", opt, s);
    return (uint64_t)v;
}

/* ---------------------------------------------------------------- lists */

static void dq_push(struct session *s, uint64_t deadline)
{
    /* Every delay has the same length, so appending keeps the queue sorted. */
    s->delay_deadline = deadline;
    s->d_next = NULL;
    s->d_prev = dq_tail;
    if (dq_tail)
        dq_tail->d_next = s;
    else
        dq_head = s;
    dq_tail = s;
    s->in_delayq = true;
}

static void dq_remove(struct session *s)
{
    if (!s->in_delayq)
        return;
    if (s->d_prev)
        s->d_prev->d_next = s->d_next;
    else
        dq_head = s->d_next;
    if (s->d_next)
        s->d_next->d_prev = s->d_prev;
    else
        dq_tail = s->d_prev;
    s->d_prev = s->d_next = NULL;
    s->in_delayq = false;
}

static void iq_remove(struct session *s)
{
    if (s->i_prev)
        s->i_prev->i_next = s->i_next;
    else
        iq_head = s->i_next;
    if (s->i_next)
        s->i_next->i_prev = s->i_prev;
    else
        iq_tail = s->i_prev;
    s->i_prev = s->i_next = NULL;
}

static void iq_append(struct session *s)
{
    s->i_next = NULL;
    s->i_prev = iq_tail;
    if (iq_tail)
        iq_tail->i_next = s;
    else
        iq_head = s;
    iq_tail = s;
}

/* Same idle timeout for all, so moving to the tail keeps the list sorted. */
static void idle_touch(struct session *s, uint64_t now)
{
    s->idle_deadline = now + cfg.timeout_ms;
    if (iq_tail != s) {
        iq_remove(s);
        iq_append(s);
    }
}

/* ---------------------------------------------------------------- output */

static void reply_raw(struct session *s, const char *text, size_t len)
{
    if (len > SINK_OUT_SIZE - s->out_len) {
        /* Cannot happen while SINK_OUT_RESERVE holds; keep the stream
         * well-formed by dropping the session rather than a partial reply. */
        s->mode = M_CLOSING;
        s->eof = true;
        return;
    }
    size_t before = s->out_len;
    memcpy(s->out + s->out_len, text, len);
    s->out_len += len;
    if (cfg.delay_ms && !s->waiting) {
        s->out_hold = before;
        s->waiting = true;
        dq_push(s, now_ms() + cfg.delay_ms);
    }
}

static void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct session *s, const char *fmt, ...)
{
    char buf[SINK_REPLY_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    size_t len = (size_t)n;
    if (len > sizeof buf - 3)
        len = sizeof buf - 3;
    buf[len++] = '\r';
    buf[len++] = '\n';
    reply_raw(s, buf, len);
}

/* ---------------------------------------------------------------- files */

static void tmp_path(char *buf, size_t size, uint64_t serial, const char *ext)
{
    snprintf(buf, size, "%s/.tmp.%" PRIu64 ".%s", cfg.maildir, serial, ext);
}

static void txn_discard(struct session *s)
{
    char path[PATH_MAX];
    if (s->eml_fd >= 0) {
        close(s->eml_fd);
        s->eml_fd = -1;
        tmp_path(path, sizeof path, s->serial, "eml");
        unlink(path);
    }
    if (s->env_fd >= 0) {
        close(s->env_fd);
        s->env_fd = -1;
        tmp_path(path, sizeof path, s->serial, "env");
        unlink(path);
    }
}

static void txn_reset(struct session *s)
{
    txn_discard(s);
    s->mail_seen = false;
    s->data_used = false;
    s->bdat_used = false;
    s->bdat_fail = false;
    s->bdat_last = false;
    s->too_long = false;
    s->too_big = false;
    s->rcpts = 0;
    s->msg_bytes = 0;
    s->raw_bytes = 0;
    s->bdat_remaining = 0;
}

static bool storing(void)
{
    return cfg.maildir && !cfg.count_only;
}

static void env_line(struct session *s, const char *key, const char *val)
{
    if (s->env_fd >= 0)
        dprintf(s->env_fd, "%s: %s\n", key, val);
}

static bool txn_open(struct session *s)
{
    if (!storing())
        return true;
    char path[PATH_MAX];
    tmp_path(path, sizeof path, s->serial, "eml");
    s->eml_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    tmp_path(path, sizeof path, s->serial, "env");
    s->env_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->eml_fd < 0 || s->env_fd < 0) {
        logmsg("cannot create files in %s: %s", cfg.maildir, strerror(errno));
        txn_discard(s);
        return false;
    }
    env_line(s, "peer", s->peer);
    if (s->proxy[0])
        env_line(s, "proxy", s->proxy);
    if (s->xclient[0])
        env_line(s, "xclient", s->xclient);
    if (s->helo[0])
        env_line(s, "helo", s->helo);
    return true;
}

static void content(struct session *s, const char *buf, size_t n)
{
    if (!n)
        return;
    s->msg_bytes += n;
    if (cfg.size_limit && s->msg_bytes > cfg.size_limit)
        s->too_big = true;
    if (s->eml_fd < 0 || s->too_big)
        return;
    while (n) {
        ssize_t w = write(s->eml_fd, buf, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            logmsg("write failed: %s", strerror(errno));
            s->too_big = true; /* reported as a storage failure below */
            return;
        }
        buf += w;
        n -= (size_t)w;
    }
}

/* Ends a transaction (DATA's terminator or BDAT LAST) with one reply. */
static void txn_finish(struct session *s)
{
    if (s->too_long) {
        st.rejected++;
        reply(s, "500 5.5.2 Error: message line longer than %zu bytes", cfg.max_line);
    } else if (s->too_big) {
        st.rejected++;
        reply(s, "552 5.3.4 Error: message file too big");
    } else if (cfg.tempfail_data) {
        st.rejected++;
        reply(s, "451 4.3.0 Error: temporary failure (sluice-sink --tempfail-data)");
    } else {
        uint64_t id = ++msg_seq;
        if (s->eml_fd >= 0 && s->env_fd >= 0) {
            char from[PATH_MAX], to[PATH_MAX];
            dprintf(s->env_fd, "transfer: %s\nsize: %" PRIu64 "\n",
                    s->bdat_used ? "BDAT" : "DATA", s->msg_bytes);
            close(s->env_fd);
            close(s->eml_fd);
            s->env_fd = s->eml_fd = -1;
            /* .env first: the .eml appearing is the signal that both are
             * complete. */
            tmp_path(from, sizeof from, s->serial, "env");
            snprintf(to, sizeof to, "%s/%" PRIu64 ".env", cfg.maildir, id);
            int r1 = rename(from, to);
            tmp_path(from, sizeof from, s->serial, "eml");
            snprintf(to, sizeof to, "%s/%" PRIu64 ".eml", cfg.maildir, id);
            int r2 = rename(from, to);
            if (r1 || r2) {
                logmsg("rename failed: %s", strerror(errno));
                st.rejected++;
                txn_reset(s);
                reply(s, "451 4.3.0 Error: cannot store message");
                return;
            }
        }
        st.messages++;
        st.bytes += s->msg_bytes;
        reply(s, "250 2.0.0 Ok: queued as %" PRIu64, id);
    }
    txn_reset(s);
}

/* ---------------------------------------------------------------- parsing */

static bool verb_is(const char *line, size_t len, const char *verb)
{
    size_t n = strlen(verb);
    if (len < n || strncasecmp(line, verb, n) != 0)
        return false;
    return len == n || line[n] == ' ';
}

/* Finds "<path>" at p; returns the index just past '>' or 0 on error. */
static size_t parse_path(const char *p, size_t len)
{
    if (len < 2 || p[0] != '<')
        return 0;
    bool quoted = false;
    for (size_t i = 1; i < len; i++) {
        if (quoted && p[i] == '\\') {
            i++;
            continue;
        }
        if (p[i] == '"')
            quoted = !quoted;
        else if (!quoted && p[i] == '>')
            return i + 1;
    }
    return 0;
}

static bool reject_match(const char *addr)
{
    for (size_t i = 0; i < cfg.n_reject; i++)
        if (strstr(addr, cfg.reject_rcpt[i]))
            return true;
    return false;
}

/* Parses "MAIL FROM:" / "RCPT TO:" arguments into path and params. */
static bool split_path_args(const char *arg, size_t alen, char *path, size_t psize,
                            const char **params)
{
    while (alen && *arg == ' ') {
        arg++;
        alen--;
    }
    size_t end = parse_path(arg, alen);
    if (!end || end >= psize)
        return false;
    if (end < alen && arg[end] != ' ')
        return false;
    memcpy(path, arg, end);
    path[end] = '\0';
    const char *p = arg + end;
    while (*p == ' ')
        p++;
    *params = p;
    return true;
}

static void send_greeting(struct session *s)
{
    reply(s, "220 %s ESMTP sluice-sink", cfg.name);
}

static void cmd_ehlo(struct session *s, const char *line, size_t len, bool ehlo)
{
    if (len < 6 || line[5] == ' ') {
        reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
        return;
    }
    txn_reset(s);
    snprintf(s->helo, sizeof s->helo, "%.*s", (int)len, line);
    s->helo_seen = true;
    if (!ehlo) {
        reply(s, "250 %s", cfg.name);
        return;
    }
    if (cfg.garbage) {
        /* A reply a strict parser must refuse: an unnumbered line inside a
         * multi-line reply, then a bad code. */
        static const char junk[] = "250-sluice-sink\r\nthis is not smtp\r\n25x garbage\r\n";
        reply_raw(s, junk, sizeof junk - 1);
        return;
    }
    char buf[SINK_OUT_RESERVE];
    int n = snprintf(buf, sizeof buf,
                     "250-%s\r\n250-PIPELINING\r\n250-SIZE %" PRIu64 "\r\n250-8BITMIME\r\n"
                     "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n%s250 CHUNKING\r\n",
                     cfg.name, cfg.size_limit,
                     cfg.xclient ? "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n" : "");
    if (n > 0)
        reply_raw(s, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void cmd_mail(struct session *s, const char *line, size_t len)
{
    if (len < 10 || strncasecmp(line, "MAIL FROM:", 10) != 0) {
        reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    if (!s->helo_seen) {
        reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (s->mail_seen) {
        reply(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    char path[SINK_REPLY_MAX];
    const char *params;
    if (!split_path_args(line + 10, len - 10, path, sizeof path, &params)) {
        reply(s, "501 5.1.7 Bad sender address syntax");
        return;
    }
    /* SIZE= is checked against the advertised limit, as a real MTA would. */
    for (const char *p = params; *p;) {
        if (strncasecmp(p, "SIZE=", 5) == 0) {
            unsigned long long v = strtoull(p + 5, NULL, 10);
            if (cfg.size_limit && v > cfg.size_limit) {
                reply(s, "552 5.3.4 Message size exceeds fixed limit");
                return;
            }
        }
        const char *sp = strchr(p, ' ');
        if (!sp)
            break;
        p = sp + 1;
    }
    if (!txn_open(s)) {
        reply(s, "451 4.3.0 Error: cannot store message");
        return;
    }
    s->mail_seen = true;
    if (s->env_fd >= 0)
        dprintf(s->env_fd, "mail: %s%s%s\n", path, *params ? " " : "", params);
    reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct session *s, const char *line, size_t len)
{
    if (len < 8 || strncasecmp(line, "RCPT TO:", 8) != 0) {
        reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    if (!s->mail_seen) {
        reply(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    char path[SINK_REPLY_MAX];
    const char *params;
    if (!split_path_args(line + 8, len - 8, path, sizeof path, &params) || strlen(path) < 3) {
        reply(s, "501 5.1.3 Bad recipient address syntax");
        return;
    }
    if (reject_match(path)) {
        reply(s, "550 5.1.1 %.400s: Recipient address rejected: User unknown", path);
        return;
    }
    if (s->rcpts >= SINK_MAX_RCPTS) {
        reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    s->rcpts++;
    if (s->env_fd >= 0)
        dprintf(s->env_fd, "rcpt: %s%s%s\n", path, *params ? " " : "", params);
    reply(s, "250 2.1.5 Ok");
}

static void cmd_data(struct session *s)
{
    if (!s->mail_seen) {
        reply(s, "503 5.5.1 Error: need RCPT command");
        return;
    }
    if (!s->rcpts) {
        reply(s, "554 5.5.1 Error: no valid recipients");
        return;
    }
    if (s->bdat_used) {
        reply(s, "503 5.5.1 Error: DATA after BDAT");
        return;
    }
    s->data_used = true;
    s->mode = M_DATA;
    s->dstate = DS_LS;
    s->line_len = 0;
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct session *s, const char *line, size_t len)
{
    const char *p = line + 4;
    const char *end = line + len;
    while (p < end && *p == ' ')
        p++;
    uint64_t n = 0;
    const char *digits = p;
    while (p < end && isdigit((unsigned char)*p)) {
        if (n > (UINT64_MAX - 9) / 10) {
            reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
            return;
        }
        n = n * 10 + (uint64_t)(*p - '0');
        p++;
    }
    bool last = false;
    if (p == digits) {
        reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
        return;
    }
    while (p < end && *p == ' ')
        p++;
    if (p < end) {
        if ((size_t)(end - p) == 4 && strncasecmp(p, "LAST", 4) == 0)
            last = true;
        else {
            /* The chunk's size is unknowable from a bad command line, so the
             * bytes that follow cannot be skipped: the session is lost. */
            reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
            s->mode = M_CLOSING;
            return;
        }
    }
    if (!s->mail_seen || !s->rcpts || s->data_used)
        s->bdat_fail = true;
    if (!s->bdat_used)
        s->raw_bytes = 0;
    s->bdat_used = true;
    s->bdat_last = last;
    s->bdat_remaining = n;
    s->mode = M_BDAT;
}

static void cmd_xclient(struct session *s, const char *line, size_t len)
{
    if (!cfg.xclient) {
        reply(s, "502 5.5.1 Error: command not implemented");
        return;
    }
    if (s->mail_seen) {
        reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    const char *args = line + 7;
    size_t alen = len - 7;
    while (alen && *args == ' ') {
        args++;
        alen--;
    }
    if (!alen || !memchr(args, '=', alen)) {
        reply(s, "501 5.5.4 Syntax: XCLIENT attribute=value...");
        return;
    }
    size_t cur = strlen(s->xclient);
    if (cur + alen + 2 > sizeof s->xclient) {
        reply(s, "501 5.5.4 Error: XCLIENT attributes too long");
        return;
    }
    if (cur)
        s->xclient[cur++] = ' ';
    memcpy(s->xclient + cur, args, alen);
    s->xclient[cur + alen] = '\0';
    /* As in Postfix: XCLIENT starts the session over, with a new greeting. */
    s->helo_seen = false;
    s->helo[0] = '\0';
    send_greeting(s);
}

static void handle_command(struct session *s, const char *line, size_t len)
{
    if (memchr(line, '\0', len)) {
        reply(s, "500 5.5.2 Error: NUL in command");
        return;
    }
    if (verb_is(line, len, "EHLO"))
        cmd_ehlo(s, line, len, true);
    else if (verb_is(line, len, "HELO"))
        cmd_ehlo(s, line, len, false);
    else if (verb_is(line, len, "MAIL"))
        cmd_mail(s, line, len);
    else if (verb_is(line, len, "RCPT"))
        cmd_rcpt(s, line, len);
    else if (verb_is(line, len, "DATA")) {
        if (len != 4)
            reply(s, "501 5.5.4 Syntax: DATA");
        else
            cmd_data(s);
    } else if (verb_is(line, len, "BDAT"))
        cmd_bdat(s, line, len);
    else if (verb_is(line, len, "RSET")) {
        txn_reset(s);
        reply(s, "250 2.0.0 Ok");
    } else if (verb_is(line, len, "NOOP"))
        reply(s, "250 2.0.0 Ok");
    else if (verb_is(line, len, "QUIT")) {
        txn_reset(s);
        reply(s, "221 2.0.0 Bye");
        s->mode = M_CLOSING;
    } else if (verb_is(line, len, "VRFY"))
        reply(s, "252 2.0.0 Cannot VRFY user, but will accept message");
    else if (verb_is(line, len, "HELP"))
        reply(s, "214 2.0.0 sluice-sink: see RFC 5321");
    else if (verb_is(line, len, "XCLIENT"))
        cmd_xclient(s, line, len);
    else
        reply(s, "500 5.5.2 Error: command not recognized");
}

static void data_mid(struct session *s, unsigned char c, char *chunk, size_t *n)
{
    chunk[(*n)++] = (char)c;
    s->dstate = c == '\r' ? DS_CR : DS_MID;
    if (++s->line_len > cfg.max_line)
        s->too_long = true;
}

/* Feeds DATA content; returns true when the terminator was consumed. */
static bool data_feed(struct session *s)
{
    char chunk[SINK_IN_SIZE];
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s->in + s->in_off;
    const unsigned char *end = (const unsigned char *)s->in + s->in_len;
    bool ended = false;
    while (p < end && !ended) {
        if (cfg.close_after && s->raw_bytes >= cfg.close_after)
            break;
        unsigned char c = *p++;
        s->raw_bytes++;
        switch (s->dstate) {
        case DS_LS:
            if (c == '.') {
                s->dstate = DS_DOT;
                s->line_len = 1;
            } else {
                data_mid(s, c, chunk, &n);
            }
            break;
        case DS_DOT:
            if (c == '\r') {
                s->dstate = DS_DOTCR;
                s->line_len++;
            } else {
                data_mid(s, c, chunk, &n); /* the leading dot is dropped */
            }
            break;
        case DS_DOTCR:
            if (c == '\n') {
                ended = true;
            } else {
                /* ".\r" not followed by LF: an unstuffed line starting in CR */
                chunk[n++] = '\r';
                s->dstate = DS_CR;
                data_mid(s, c, chunk, &n);
            }
            break;
        case DS_CR:
            if (c == '\n') {
                chunk[n++] = '\n';
                if (s->line_len + 1 > cfg.max_line)
                    s->too_long = true;
                s->dstate = DS_LS;
                s->line_len = 0;
            } else {
                data_mid(s, c, chunk, &n);
            }
            break;
        case DS_MID:
            data_mid(s, c, chunk, &n);
            break;
        }
    }
    s->in_off = (size_t)((const char *)p - s->in);
    content(s, chunk, n);
    return ended;
}

static bool close_after_hit(const struct session *s)
{
    return cfg.close_after && s->raw_bytes >= cfg.close_after;
}

static void bdat_feed(struct session *s)
{
    size_t avail = s->in_len - s->in_off;
    size_t take = avail;
    if ((uint64_t)take > s->bdat_remaining)
        take = (size_t)s->bdat_remaining;
    if (cfg.close_after && s->raw_bytes + take > cfg.close_after)
        take = (size_t)(cfg.close_after - s->raw_bytes);
    if (!s->bdat_fail)
        content(s, s->in + s->in_off, take);
    s->in_off += take;
    s->raw_bytes += take;
    s->bdat_remaining -= take;
}

static void bdat_done(struct session *s)
{
    s->mode = M_CMD;
    if (s->bdat_fail) {
        reply(s, "503 5.5.1 Error: BDAT without valid transaction");
        if (s->bdat_last)
            txn_reset(s);
        return;
    }
    if (s->bdat_last) {
        txn_finish(s);
        return;
    }
    reply(s, "250 2.0.0 Ok: %" PRIu64 " octets so far", s->msg_bytes);
}

static void fmt_addr(char *buf, size_t size, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(buf, size, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(buf, size, "[%s]:%u", host, port);
    } else {
        snprintf(buf, size, "unknown");
    }
}

static const unsigned char proxy_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Returns 1 when a header was consumed, 0 when more bytes are needed, -1 on
 * a malformed header. */
static int proxy_v1(struct session *s)
{
    const char *p = s->in + s->in_off;
    size_t avail = s->in_len - s->in_off;
    const char *lf = memchr(p, '\n', avail);
    if (!lf)
        return avail >= SINK_PROXY_V1_MAX ? -1 : 0;
    size_t len = (size_t)(lf - p) + 1;
    if (len > SINK_PROXY_V1_MAX || len < 8 || p[len - 2] != '\r')
        return -1;
    char line[SINK_PROXY_V1_MAX + 1];
    memcpy(line, p, len - 2);
    line[len - 2] = '\0';
    s->in_off += len;
    if (strcmp(line, "PROXY UNKNOWN") == 0 || strncmp(line, "PROXY UNKNOWN ", 14) == 0) {
        snprintf(s->proxy, sizeof s->proxy, "UNKNOWN");
        return 1;
    }
    char proto[8], src[64], dst[64];
    unsigned sport, dport;
    char extra;
    if (sscanf(line, "PROXY %7s %63s %63s %u %u%c", proto, src, dst, &sport, &dport, &extra) != 5)
        return -1;
    unsigned char tmp[16];
    int af = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    if (!af || inet_pton(af, src, tmp) != 1 || inet_pton(af, dst, tmp) != 1 || sport > 65535 ||
        dport > 65535)
        return -1;
    if (af == AF_INET)
        snprintf(s->proxy, sizeof s->proxy, "v1 TCP4 %s:%u %s:%u", src, sport, dst, dport);
    else
        snprintf(s->proxy, sizeof s->proxy, "v1 TCP6 [%s]:%u [%s]:%u", src, sport, dst, dport);
    return 1;
}

static int proxy_v2(struct session *s)
{
    const unsigned char *p = (const unsigned char *)s->in + s->in_off;
    size_t avail = s->in_len - s->in_off;
    if (avail < 16)
        return 0;
    size_t len = ((size_t)p[14] << 8) | p[15];
    if (16 + len > SINK_IN_SIZE)
        return -1;
    if (avail < 16 + len)
        return 0;
    if ((p[12] & 0xf0) != 0x20)
        return -1;
    unsigned cmd = p[12] & 0x0f;
    unsigned fam = p[13];
    const unsigned char *a = p + 16;
    s->in_off += 16 + len;
    if (cmd == 0) {
        snprintf(s->proxy, sizeof s->proxy, "v2 LOCAL");
        return 1;
    }
    if (cmd != 1)
        return -1;
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    if (fam == 0x11 && len >= 12) {
        inet_ntop(AF_INET, a, src, sizeof src);
        inet_ntop(AF_INET, a + 4, dst, sizeof dst);
        snprintf(s->proxy, sizeof s->proxy, "v2 TCP4 %s:%u %s:%u", src,
                 (unsigned)(a[8] << 8 | a[9]), dst, (unsigned)(a[10] << 8 | a[11]));
    } else if (fam == 0x21 && len >= 36) {
        inet_ntop(AF_INET6, a, src, sizeof src);
        inet_ntop(AF_INET6, a + 16, dst, sizeof dst);
        snprintf(s->proxy, sizeof s->proxy, "v2 TCP6 [%s]:%u [%s]:%u", src,
                 (unsigned)(a[32] << 8 | a[33]), dst, (unsigned)(a[34] << 8 | a[35]));
    } else {
        snprintf(s->proxy, sizeof s->proxy, "v2 UNSPEC");
    }
    return 1;
}

static int proxy_header(struct session *s)
{
    const char *p = s->in + s->in_off;
    size_t avail = s->in_len - s->in_off;
    if (p[0] == 'P') {
        if (memcmp(p, "PROXY ", avail < 6 ? avail : 6) != 0)
            return -1;
        return avail < 6 ? 0 : proxy_v1(s);
    }
    if (memcmp(p, proxy_v2_sig, avail < 12 ? avail : 12) != 0)
        return -1;
    return avail < 12 ? 0 : proxy_v2(s);
}

/* Consumes buffered input as far as the state allows. */
static void session_process(struct session *s)
{
    s->out_full = false;
    while (!s->waiting && s->mode != M_CLOSING) {
        size_t avail = s->in_len - s->in_off;
        if (s->mode == M_STALL) {
            s->in_off = s->in_len;
            break;
        }
        if (SINK_OUT_SIZE - s->out_len < SINK_OUT_RESERVE) {
            s->out_full = true;
            break;
        }
        if (s->mode == M_PROXY) {
            if (!avail)
                break;
            int r = proxy_header(s);
            if (r == 0)
                break;
            if (r < 0) {
                logmsg("bad PROXY header from %s", s->peer);
                s->mode = M_CLOSING;
                break;
            }
            s->mode = M_CMD;
            send_greeting(s);
            if (cfg.stall)
                s->mode = M_STALL;
            continue;
        }
        if (s->mode == M_DATA) {
            if (!avail)
                break;
            bool ended = data_feed(s);
            /* Fault injection: a message that reaches N bytes is never
             * answered, the connection just goes away mid-transaction. */
            if (close_after_hit(s)) {
                s->mode = M_CLOSING;
                s->eof = true;
                break;
            }
            if (ended) {
                s->mode = M_CMD;
                txn_finish(s);
            }
            continue;
        }
        if (s->mode == M_BDAT) {
            if (s->bdat_remaining && !avail)
                break;
            bdat_feed(s);
            if (close_after_hit(s) && (s->bdat_remaining || s->bdat_last)) {
                s->mode = M_CLOSING;
                s->eof = true;
                break;
            }
            if (!s->bdat_remaining)
                bdat_done(s);
            continue;
        }
        /* M_CMD */
        if (!avail)
            break;
        char *line = s->in + s->in_off;
        char *lf = memchr(line, '\n', avail);
        if (s->discarding) {
            if (!lf) {
                s->in_off = s->in_len;
                break;
            }
            s->in_off += (size_t)(lf - line) + 1;
            s->discarding = false;
            continue;
        }
        if (!lf) {
            if (avail > cfg.max_line || avail == SINK_IN_SIZE) {
                reply(s, "500 5.5.2 Error: line too long");
                s->in_off = s->in_len;
                s->discarding = true;
            }
            break;
        }
        size_t len = (size_t)(lf - line) + 1;
        s->in_off += len;
        if (len > cfg.max_line) {
            reply(s, "500 5.5.2 Error: line too long");
            continue;
        }
        if (len < 2 || line[len - 2] != '\r') {
            reply(s, "500 5.5.2 Error: bare LF in command");
            continue;
        }
        line[len - 2] = '\0'; /* the handlers treat the line as a C string */
        handle_command(s, line, len - 2);
    }
    if (s->in_off == s->in_len) {
        s->in_off = s->in_len = 0;
    } else if (s->in_off > 0 && s->in_len == SINK_IN_SIZE) {
        memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
        s->in_len -= s->in_off;
        s->in_off = 0;
    }
}

/* ---------------------------------------------------------------- I/O */

static void session_free(struct session *s)
{
    dq_remove(s);
    iq_remove(s);
    txn_discard(s);
    if (s->fd >= 0)
        close(s->fd); /* also removes it from the epoll set */
    n_sessions--;
    free(s);
}

static void set_mask(struct session *s)
{
    uint32_t want = 0;
    if (s->mode != M_CLOSING && !s->eof &&
        (s->in_len < SINK_IN_SIZE || (s->in_off > 0)))
        want |= EPOLLIN;
    size_t sendable = s->waiting ? s->out_hold : s->out_len;
    if (s->out_off < sendable)
        want |= EPOLLOUT;
    if (want != s->ev_mask) {
        struct epoll_event ev = {.events = want, .data.ptr = s};
        epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
        s->ev_mask = want;
    }
}

/* Returns -1 when the peer is gone. */
static int session_flush(struct session *s)
{
    size_t sendable = s->waiting ? s->out_hold : s->out_len;
    while (s->out_off < sendable) {
        ssize_t w = send(s->fd, s->out + s->out_off, sendable - s->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        s->out_off += (size_t)w;
    }
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = s->out_hold = 0;
    } else if (s->out_off > 0 && SINK_OUT_SIZE - s->out_len < SINK_OUT_RESERVE) {
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_hold = s->out_hold > s->out_off ? s->out_hold - s->out_off : 0;
        s->out_off = 0;
    }
    return 0;
}

/* Runs the session as far as it can go; may free it. */
static void session_step(struct session *s)
{
    for (int round = 0; round < 64; round++) {
        if (!s->waiting)
            session_process(s);
        if (session_flush(s) < 0) {
            session_free(s);
            return;
        }
        if (!(s->out_full && s->out_off == s->out_len && !s->waiting))
            break;
    }
    if ((s->eof || s->mode == M_CLOSING) && !s->waiting && s->out_off == s->out_len) {
        session_free(s);
        return;
    }
    set_mask(s);
}

static void session_read(struct session *s)
{
    bool any = false;
    for (int round = 0; round < 4; round++) {
        if (s->in_len == SINK_IN_SIZE && s->in_off > 0) {
            memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
            s->in_len -= s->in_off;
            s->in_off = 0;
        }
        if (s->in_len == SINK_IN_SIZE)
            break;
        ssize_t r = recv(s->fd, s->in + s->in_len, SINK_IN_SIZE - s->in_len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s->eof = true;
            break;
        }
        if (r == 0) {
            s->eof = true;
            break;
        }
        any = true;
        s->in_len += (size_t)r;
        if (s->mode == M_STALL)
            s->in_off = s->in_len = 0;
        else
            break;
    }
    if (any)
        idle_touch(s, now_ms());
}

static void set_listeners(bool on)
{
    for (size_t i = 0; i < n_listeners; i++) {
        struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = &listeners[i]};
        epoll_ctl(epfd, EPOLL_CTL_MOD, listeners[i].fd, &ev);
    }
    listeners_paused = !on;
}

static void do_accept(struct listener *l)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                logmsg("accept: %s; pausing", strerror(errno));
                set_listeners(false);
                accept_resume_at = now_ms() + 100;
            }
            return;
        }
        st.sessions++;
        if (n_sessions >= cfg.max_sessions) {
            static const char busy[] = "421 4.3.2 sluice-sink: too many sessions\r\n";
            ssize_t ignored = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
            (void)ignored;
            close(fd);
            continue;
        }
        struct session *s = calloc(1, sizeof *s);
        if (!s) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->kind = OBJ_SESSION;
        s->fd = fd;
        s->serial = ++session_serial;
        s->eml_fd = s->env_fd = -1;
        fmt_addr(s->peer, sizeof s->peer, (struct sockaddr *)&ss);
        n_sessions++;
        iq_append(s);
        s->idle_deadline = now_ms() + cfg.timeout_ms;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        s->ev_mask = EPOLLIN;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            session_free(s);
            continue;
        }
        if (cfg.proxy_protocol) {
            s->mode = M_PROXY;
        } else {
            s->mode = cfg.stall ? M_STALL : M_CMD;
            send_greeting(s);
        }
        session_step(s);
    }
}

/* ---------------------------------------------------------------- setup */

static int open_listener(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon)
        die("--listen %s: expected ADDR:PORT", spec);
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host)
        die("--listen %s: address too long", spec);
    memcpy(host, spec, hl);
    host[hl] = '\0';
    uint64_t port = parse_u64("--listen port", colon + 1);
    if (port > 65535)
        die("--listen %s: bad port", spec);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            die("--listen %s: bad IPv6 address", spec);
        sl = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, hl ? host : "0.0.0.0", &a->sin_addr) != 1)
            die("--listen %s: bad IPv4 address (IPv6 goes in brackets)", spec);
        sl = sizeof *a;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
        die("bind %s: %s", spec, strerror(errno));
    if (listen(fd, SOMAXCONN) < 0)
        die("listen %s: %s", spec, strerror(errno));
    return fd;
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void scan_maildir(void)
{
    if (mkdir(cfg.maildir, 0755) < 0 && errno != EEXIST)
        die("--maildir %s: %s", cfg.maildir, strerror(errno));
    DIR *d = opendir(cfg.maildir);
    if (!d)
        die("--maildir %s: %s", cfg.maildir, strerror(errno));
    /* Continue numbering after what is there so nothing is overwritten. */
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        unsigned long long v = strtoull(e->d_name, &end, 10);
        if (end != e->d_name && strcmp(end, ".eml") == 0 && v > msg_seq)
            msg_seq = v;
    }
    closedir(d);
}

static void print_stats(void)
{
    printf("stats sessions=%" PRIu64 " messages=%" PRIu64 " bytes=%" PRIu64 " rejected=%" PRIu64
           "\n",
           st.sessions, st.messages, st.bytes, st.rejected);
    fflush(stdout);
}

static void usage(FILE *f)
{
    fputs("usage: sluice-sink [options]\n"
          "  --listen ADDR:PORT          listen here (repeatable; [v6]:port; default 127.0.0.1:2525)\n"
          "  --print-port                print each listener's port on stdout, one per line\n"
          "  --maildir DIR               store messages as DIR/<n>.eml and envelopes as DIR/<n>.env\n"
          "  --count-only                store nothing, count only\n"
          "  --reject-rcpt SUBSTRING     550 5.1.1 for recipients containing it (repeatable)\n"
          "  --tempfail-data             451 at end of data\n"
          "  --delay-ms N                wait N ms before each reply\n"
          "  --close-after-data-bytes N  drop the connection after N bytes of message data\n"
          "  --garbage                   answer EHLO with a malformed reply\n"
          "  --stall                     greet, then never answer\n"
          "  --xclient                   offer and accept XCLIENT\n"
          "  --proxy-protocol            expect a PROXY v1/v2 header first\n"
          "  --name NAME                 host name in greeting and EHLO (default: hostname)\n"
          "  --size N                    SIZE limit in bytes (default 52428800)\n"
          "  --max-line N                line limit including CRLF (default 1000)\n"
          "  --timeout SECS              idle timeout (default 300)\n"
          "  --max-sessions N            concurrent sessions (default 20000)\n"
          "  --pid-file FILE             write the pid here\n"
          "  --stats                     print counters on SIGTERM/SIGINT/SIGUSR1\n"
          "  --quiet                     no log lines on stderr\n",
          f);
}

static void parse_args(int argc, char **argv)
{
    enum {
        O_LISTEN = 256, O_MAILDIR, O_COUNT, O_REJECT, O_TEMPFAIL, O_DELAY, O_CLOSE_AFTER,
        O_GARBAGE, O_STALL, O_XCLIENT, O_PROXY, O_PIDFILE, O_STATS, O_QUIET, O_PRINT_PORT,
        O_NAME, O_SIZE, O_MAXLINE, O_TIMEOUT, O_MAXSESS, O_VERSION
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"maildir", required_argument, NULL, O_MAILDIR},
        {"count-only", no_argument, NULL, O_COUNT},
        {"reject-rcpt", required_argument, NULL, O_REJECT},
        {"tempfail-data", no_argument, NULL, O_TEMPFAIL},
        {"delay-ms", required_argument, NULL, O_DELAY},
        {"close-after-data-bytes", required_argument, NULL, O_CLOSE_AFTER},
        {"garbage", no_argument, NULL, O_GARBAGE},
        {"stall", no_argument, NULL, O_STALL},
        {"xclient", no_argument, NULL, O_XCLIENT},
        {"proxy-protocol", no_argument, NULL, O_PROXY},
        {"pid-file", required_argument, NULL, O_PIDFILE},
        {"stats", no_argument, NULL, O_STATS},
        {"quiet", no_argument, NULL, O_QUIET},
        {"print-port", no_argument, NULL, O_PRINT_PORT},
        {"name", required_argument, NULL, O_NAME},
        {"size", required_argument, NULL, O_SIZE},
        {"max-line", required_argument, NULL, O_MAXLINE},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"max-sessions", required_argument, NULL, O_MAXSESS},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cfg.size_limit = 52428800;
    cfg.max_line = 1000;
    cfg.timeout_ms = 300000;
    cfg.max_sessions = 20000;
    if (gethostname(cfg.name, sizeof cfg.name - 1) < 0 || !cfg.name[0])
        snprintf(cfg.name, sizeof cfg.name, "localhost");
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_LISTEN:
            if (cfg.n_listen == SINK_MAX_LISTEN)
                die("too many --listen");
            cfg.listen[cfg.n_listen++] = optarg;
            break;
        case O_MAILDIR: cfg.maildir = optarg; break;
        case O_COUNT: cfg.count_only = true; break;
        case O_REJECT:
            if (cfg.n_reject == SINK_MAX_REJECT)
                die("too many --reject-rcpt");
            cfg.reject_rcpt[cfg.n_reject++] = optarg;
            break;
        case O_TEMPFAIL: cfg.tempfail_data = true; break;
        case O_DELAY: cfg.delay_ms = parse_u64("--delay-ms", optarg); break;
        case O_CLOSE_AFTER:
            cfg.close_after = parse_u64("--close-after-data-bytes", optarg);
            if (!cfg.close_after)
                die("--close-after-data-bytes must be at least 1");
            break;
        case O_GARBAGE: cfg.garbage = true; break;
        case O_STALL: cfg.stall = true; break;
        case O_XCLIENT: cfg.xclient = true; break;
        case O_PROXY: cfg.proxy_protocol = true; break;
        case O_PIDFILE: cfg.pid_file = optarg; break;
        case O_STATS: cfg.stats = true; break;
        case O_QUIET: cfg.quiet = true; break;
        case O_PRINT_PORT: cfg.print_port = true; break;
        case O_NAME:
            if (strlen(optarg) >= 200 || strpbrk(optarg, " \r\n"))
                die("--name: bad host name");
            snprintf(cfg.name, sizeof cfg.name, "%s", optarg);
            break;
        case O_SIZE:
            cfg.size_limit = parse_u64("--size", optarg);
            if (!cfg.size_limit)
                die("--size must be at least 1");
            break;
        case O_MAXLINE: {
            uint64_t v = parse_u64("--max-line", optarg);
            if (v < 64 || v > SINK_IN_SIZE - 1)
                die("--max-line must be between 64 and %d", SINK_IN_SIZE - 1);
            cfg.max_line = (size_t)v;
            break;
        }
        case O_TIMEOUT: cfg.timeout_ms = parse_u64("--timeout", optarg) * 1000u; break;
        case O_MAXSESS: cfg.max_sessions = (size_t)parse_u64("--max-sessions", optarg); break;
        case O_VERSION: puts("sluice-sink " SINK_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument: %s (see --help)", argv[optind]);
    if (!cfg.n_listen)
        cfg.listen[cfg.n_listen++] = "127.0.0.1:2525";
    if (!cfg.timeout_ms)
        cfg.timeout_ms = 1000;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (cfg.maildir && !cfg.count_only)
        scan_maildir();
    raise_nofile();

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        die("signalfd: %s", strerror(errno));

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    static struct listener sig_obj = {OBJ_SIGNAL, -1};
    sig_obj.fd = sfd;
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sig_obj};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev);

    for (size_t i = 0; i < cfg.n_listen; i++) {
        listeners[i].kind = OBJ_LISTENER;
        listeners[i].fd = open_listener(cfg.listen[i]);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listeners[i]};
        epoll_ctl(epfd, EPOLL_CTL_ADD, listeners[i].fd, &ev);
        n_listeners++;
        logmsg("listening on %s (port %u)", cfg.listen[i], bound_port(listeners[i].fd));
    }
    /* The pid file exists before the ports are announced, so whoever waits
     * for the port can rely on it. */
    if (cfg.pid_file) {
        FILE *f = fopen(cfg.pid_file, "w");
        if (!f)
            die("--pid-file %s: %s", cfg.pid_file, strerror(errno));
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
    for (size_t i = 0; cfg.print_port && i < n_listeners; i++)
        printf("%u\n", bound_port(listeners[i].fd));
    fflush(stdout);

    bool running = true;
    struct epoll_event events[256];
    while (running) {
        int timeout = -1;
        uint64_t now = now_ms();
        uint64_t next = UINT64_MAX;
        if (dq_head && dq_head->delay_deadline < next)
            next = dq_head->delay_deadline;
        if (iq_head && iq_head->idle_deadline < next)
            next = iq_head->idle_deadline;
        if (listeners_paused && accept_resume_at < next)
            next = accept_resume_at;
        if (next != UINT64_MAX)
            timeout = next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
        int n = epoll_wait(epfd, events, 256, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            enum obj_kind kind = *(enum obj_kind *)events[i].data.ptr;
            if (kind == OBJ_LISTENER) {
                do_accept(events[i].data.ptr);
            } else if (kind == OBJ_SIGNAL) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGUSR1) {
                        if (cfg.stats)
                            print_stats();
                    } else {
                        running = false;
                    }
                }
            } else {
                struct session *s = events[i].data.ptr;
                /* A reset peer can receive nothing more; keeping the session
                 * would only spin on EPOLLHUP while a delayed reply waits. */
                if (events[i].events & (EPOLLHUP | EPOLLERR)) {
                    session_free(s);
                    continue;
                }
                if (events[i].events & EPOLLIN)
                    session_read(s);
                session_step(s);
            }
        }
        now = now_ms();
        while (dq_head && dq_head->delay_deadline <= now) {
            struct session *s = dq_head;
            dq_remove(s);
            s->waiting = false;
            s->out_hold = s->out_len;
            session_step(s);
        }
        while (iq_head && iq_head->idle_deadline <= now) {
            struct session *s = iq_head;
            static const char bye[] = "421 4.4.2 sluice-sink: timeout exceeded\r\n";
            ssize_t ignored = send(s->fd, bye, sizeof bye - 1, MSG_NOSIGNAL);
            (void)ignored;
            session_free(s);
        }
        if (listeners_paused && now >= accept_resume_at)
            set_listeners(true);
    }

    while (iq_head)
        session_free(iq_head);
    for (size_t i = 0; i < n_listeners; i++)
        close(listeners[i].fd);
    if (cfg.pid_file)
        unlink(cfg.pid_file);
    if (cfg.stats)
        print_stats();
    logmsg("exiting");
    return 0;
}

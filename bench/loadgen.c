/*
 * loadgen.c -- load generator for push-stream style servers (fastpush, nginx
 * push-stream, bench/bare_server). Loopback only; every run is bounded in
 * connections, messages and time, and ends by itself.
 *
 *   loadgen sub [options] host:port   hold N subscribers, check and time messages
 *   loadgen pub [options] host:port   publish M messages per channel
 *
 * Both print ONE JSON line on stdout at the end (see bench/README.md for the
 * fields). The subscriber side prints "READY <ready> <failed> <seconds>" on
 * stderr (and into -o FILE, which may be a fifo) once every connection got its
 * response head or failed, or the connect timeout passed.
 *
 * Messages carry a marker "#<seq>:<send_time_us>#" anywhere in their text;
 * send_time_us is CLOCK_REALTIME in microseconds, which every process on the
 * machine shares, so latency = receive time - send time needs no handshake
 * between publisher and subscribers. seq counts from 1 per channel.
 *
 * Subscribers are forked over P processes (a process may hold at most 20,000
 * fds here) and bind each socket to its own source address in 127.0.0.0/8
 * before connect (IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect time
 * from the full 4-tuple), so ephemeral ports never run out. Each process runs
 * one epoll loop; the parent only watches counters in shared memory.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF (256 * 1024)
#define HEAD_MAX 2048          /* response heads larger than this are an error */
#define MAX_HDRS 8

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + ts.tv_nsec / 1000;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    exit(2);
}

/* ---- latency histogram: log-linear, 64 steps per power of two (~1.5%) ---- */

#define HSUB 64
#define HBUCKETS (HSUB * 42)

static int hidx(uint64_t v)
{
    if (v < HSUB) return v;
    int e = 63 - __builtin_clzll(v);                 /* v in [2^e, 2^(e+1)) */
    int i = HSUB + (e - 6) * HSUB + (int)((v >> (e - 6)) - HSUB);
    return i < HBUCKETS ? i : HBUCKETS - 1;
}

static uint64_t hval(int i)                          /* middle of bucket i */
{
    if (i < HSUB) return i;
    int e = (i - HSUB) / HSUB + 6;
    uint64_t lo = ((uint64_t)(HSUB + (i - HSUB) % HSUB)) << (e - 6);
    return lo + ((1ull << (e - 6)) >> 1);
}

/* ---- counters one subscriber process shares with the parent ---- */

struct stats {
    /* read live by the parent, written with relaxed atomics by one child */
    uint64_t established, ready, failed, closed, dead_incomplete, complete;
    /* read by the parent only after the child exited */
    uint64_t http_errors, bad_status, protocol_errors, requests;
    uint64_t msgs, gaps, ooo, lat_sum, lat_max, t_first, t_last;
    uint64_t reads, bytes;       /* recv() calls that returned data, and their bytes */
    uint64_t cpu_us, maxrss_kb, exited;
    uint64_t hist[HBUCKETS];
};

struct shared { volatile int stop; int pad[15]; struct stats st[]; };

#define LIVE_ADD(f, n) __atomic_fetch_add(&st->f, (n), __ATOMIC_RELAXED)
#define LIVE_GET(s, f) __atomic_load_n(&(s)->f, __ATOMIC_RELAXED)

/* ---- options ---- */

enum { P_STREAM, P_EV, P_LP, P_WS };
static const char *proto_names[] = {"stream", "ev", "lp", "ws"};

static struct {
    int sub;
    char host[64];
    int port;
    struct sockaddr_in dst;
    const char *path;            /* "{}" is replaced by the channel number */
    int conns, procs, channels, proto, inflight, per_ip;
    int ready_on_send;           /* -e: a subscriber is ready once its request is sent */
    long expect;                 /* messages expected per subscriber / per channel */
    long first_seq;              /* first seq a subscriber must see; 0 = any */
    double rate, timeout, connect_timeout, linger;
    int window, size;
    const char *ready_file;
    const char *hdrs[MAX_HDRS];
    int nhdrs;
} o;

/* ---- one HTTP connection: response parser state, kept small (1M of them) ---- */

enum { C_FREE, C_CONNECTING, C_HEAD, C_BODY, C_DEAD };
enum { F_EOF, F_CLEN, F_CHUNKED, F_WS, F_NONE };
enum { CK_SIZE, CK_EXT, CK_DATA, CK_DATA_END, CK_TRAILER, CK_TRAILER_LINE };
enum { WS_B0, WS_B1, WS_EXT, WS_DATA };

struct lpstate { char lm[64], etag[64]; };

struct conn {
    int fd;
    uint8_t st, fr, fs;          /* connection state, body framing, framing sub-state */
    uint8_t ms, mdig;            /* marker scanner state and digit count */
    uint8_t hend;                /* how much of "\r\n\r\n" the head has matched */
    uint8_t ws_op, ws_need;      /* websocket opcode, header bytes still to read */
    uint8_t close_after;         /* "Connection: close" seen in this response */
    uint8_t is_ready;            /* counted in stats.ready (head or LP request sent) */
    uint16_t status, hlen;
    uint32_t msgs;
    uint64_t rem;                /* chunk/body/frame bytes left, or a length being parsed */
    uint64_t mseq, mtime;        /* marker fields being parsed */
    uint64_t last_seq;
    char *head;                  /* response head, only while it is being read */
    struct lpstate *lp;          /* long-polling only */
};

static struct stats *st;         /* this process's counters (sub) */
static struct stats pub_st;      /* publisher counters live here */
static char rbuf[RBUF];
static uint64_t t_now;           /* receive time of the bytes being parsed */

/* ---- marker scanner: "#<seq>:<time>#", split anywhere across reads/chunks ---- */

enum { M_OUT, M_SEQ, M_TIME };

static void on_marker(struct conn *c, uint64_t seq, uint64_t t)
{
    uint64_t lat = t_now > t ? t_now - t : 0;
    st->msgs++;
    st->hist[hidx(lat)]++;
    st->lat_sum += lat;
    if (lat > st->lat_max) st->lat_max = lat;
    if (!st->t_first || t_now < st->t_first) st->t_first = t_now;
    if (t_now > st->t_last) st->t_last = t_now;
    uint64_t want = c->last_seq + 1;
    if (!c->last_seq && o.first_seq) want = o.first_seq;
    if (!c->last_seq && !o.first_seq) want = seq;
    if (seq > want) st->gaps += seq - want;   /* messages skipped */
    else if (seq < want) st->ooo++;           /* duplicate or out of order */
    if (seq > c->last_seq) c->last_seq = seq;
    if (++c->msgs == o.expect) LIVE_ADD(complete, 1);
}

static void scan(struct conn *c, const char *p, size_t n)
{
    const char *e = p + n;
    while (p < e) {
        if (c->ms == M_OUT) {
            const char *h = memchr(p, '#', e - p);
            if (!h) return;
            p = h + 1;
            c->ms = M_SEQ; c->mseq = 0; c->mdig = 0;
            continue;
        }
        char ch = *p++;
        if (ch >= '0' && ch <= '9') {
            if (++c->mdig > 19) { c->ms = M_OUT; continue; }   /* not a marker */
            if (c->ms == M_SEQ) c->mseq = c->mseq * 10 + (ch - '0');
            else c->mtime = c->mtime * 10 + (ch - '0');
        } else if (ch == ':' && c->ms == M_SEQ && c->mdig) {
            c->ms = M_TIME; c->mtime = 0; c->mdig = 0;
        } else if (ch == '#' && c->ms == M_TIME && c->mdig) {
            on_marker(c, c->mseq, c->mtime);
            c->ms = M_OUT;
        } else if (ch == '#') {                /* restart: this '#' may open one */
            c->ms = M_SEQ; c->mseq = 0; c->mdig = 0;
        } else {
            c->ms = M_OUT;
        }
    }
}

/* ---- response head ---- */

static const char *hdr_value(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n)) return NULL;
    line += n;
    while (*line == ' ' || *line == '\t') line++;
    return line;
}

/* Decide body framing from the head in c->head; 0 ok, -1 unusable. */
static int parse_head(struct conn *c, int is_ws)
{
    char *h = c->head, *v;
    h[c->hlen] = 0;
    if (strncmp(h, "HTTP/1.", 7) || c->hlen < 12) return -1;
    c->status = atoi(h + 9);
    c->fr = F_EOF;
    c->close_after = h[7] == '0';
    if (c->status == 204 || c->status == 304 || c->status / 100 == 1) c->fr = F_NONE;
    if (is_ws && c->status == 101) c->fr = F_WS;
    for (char *l = strchr(h, '\n'); l && *++l; l = strchr(l, '\n')) {
        char *eol = strpbrk(l, "\r\n");
        char save = eol ? *eol : 0;
        if (eol) *eol = 0;
        if ((v = (char *)hdr_value(l, "transfer-encoding:")) && strcasestr(v, "chunked")) {
            if (c->fr != F_NONE && c->fr != F_WS) { c->fr = F_CHUNKED; c->fs = CK_SIZE; c->rem = 0; }
        } else if ((v = (char *)hdr_value(l, "content-length:"))) {
            if (c->fr == F_EOF) { c->fr = F_CLEN; c->rem = strtoull(v, NULL, 10); }
        } else if ((v = (char *)hdr_value(l, "connection:"))) {
            c->close_after = !strncasecmp(v, "close", 5);
        } else if (c->lp && (v = (char *)hdr_value(l, "last-modified:"))) {
            snprintf(c->lp->lm, sizeof c->lp->lm, "%s", v);
        } else if (c->lp && (v = (char *)hdr_value(l, "etag:"))) {
            snprintf(c->lp->etag, sizeof c->lp->etag, "%s", v);
        }
        if (eol) *eol = save;
    }
    if (c->fr == F_CLEN && c->rem == 0) c->fr = F_NONE;
    if (c->fr == F_WS) { c->fs = WS_B0; }
    return 0;
}

/* ---- the byte-stream parser shared by subscribers and the publisher ---- */

/* Called at the end of each response: 0 to go on reading, -1 to drop. */
typedef int (*end_fn)(struct conn *c);
typedef int (*head_fn)(struct conn *c);   /* 0 ok, -1 drop */

struct parser { int is_ws, scan_payload; head_fn on_head; end_fn on_end; };

static int body_done(struct conn *c, const struct parser *ps)
{
    c->st = C_HEAD;
    c->hend = 0;
    c->hlen = 0;
    return ps->on_end(c);
}

/* Feed received bytes; returns 0, or -1 when the connection must be dropped. */
static int feed(struct conn *c, const char *p, size_t n, const struct parser *ps)
{
    const char *e = p + n;
    while (p < e) {
        if (c->st == C_HEAD) {
            if (!c->head && !(c->head = malloc(HEAD_MAX + 1))) return -1;
            while (p < e && c->hend < 4) {
                char ch = *p++;
                if (c->hlen >= HEAD_MAX) return -1;
                c->head[c->hlen++] = ch;
                static const char crlf2[] = "\r\n\r\n";
                c->hend = ch == crlf2[c->hend] ? c->hend + 1 : (ch == '\r');
            }
            if (c->hend < 4) return 0;
            if (parse_head(c, ps->is_ws)) { st->protocol_errors++; return -1; }
            c->st = C_BODY;
            c->ms = M_OUT;
            if (ps->on_head(c)) return -1;
            if (c->fr == F_NONE && body_done(c, ps)) return -1;
            continue;
        }
        if (c->st != C_BODY) return -1;
        switch (c->fr) {
        case F_EOF:
            if (ps->scan_payload) scan(c, p, e - p);
            return 0;
        case F_CLEN: {
            size_t k = (size_t)(e - p) < c->rem ? (size_t)(e - p) : c->rem;
            if (ps->scan_payload) scan(c, p, k);
            p += k;
            if ((c->rem -= k) == 0 && body_done(c, ps)) return -1;
            break;
        }
        case F_CHUNKED:
            if (c->fs == CK_DATA) {
                size_t k = (size_t)(e - p) < c->rem ? (size_t)(e - p) : c->rem;
                if (ps->scan_payload) scan(c, p, k);
                p += k;
                if ((c->rem -= k) == 0) c->fs = CK_DATA_END;
                break;
            }
            char ch = *p++;
            switch (c->fs) {
            case CK_SIZE:
            case CK_EXT:
                if (ch == '\n') {
                    if (c->rem) c->fs = CK_DATA;
                    else c->fs = CK_TRAILER;            /* last chunk */
                } else if (c->fs == CK_EXT || ch == '\r') {
                } else if (ch == ';' || ch == ' ') {
                    c->fs = CK_EXT;
                } else {
                    int d = ch >= '0' && ch <= '9' ? ch - '0'
                          : (ch | 32) >= 'a' && (ch | 32) <= 'f' ? (ch | 32) - 'a' + 10 : -1;
                    if (d < 0 || c->rem >> 56) { st->protocol_errors++; return -1; }
                    c->rem = c->rem * 16 + d;
                }
                break;
            case CK_DATA_END:
                if (ch == '\n') { c->fs = CK_SIZE; c->rem = 0; }
                else if (ch != '\r') { st->protocol_errors++; return -1; }
                break;
            case CK_TRAILER:
                if (ch == '\n') { if (body_done(c, ps)) return -1; }
                else if (ch != '\r') c->fs = CK_TRAILER_LINE;
                break;
            case CK_TRAILER_LINE:
                if (ch == '\n') c->fs = CK_TRAILER;
                break;
            }
            break;
        case F_WS:
            if (c->fs == WS_DATA) {
                size_t k = (size_t)(e - p) < c->rem ? (size_t)(e - p) : c->rem;
                if (ps->scan_payload && c->ws_op <= 2) scan(c, p, k);
                p += k;
                if ((c->rem -= k) == 0) c->fs = WS_B0;
                break;
            }
            uint8_t b = *p++;
            switch (c->fs) {
            case WS_B0:
                c->ws_op = b & 15;
                c->fs = WS_B1;
                break;
            case WS_B1:
                if (b & 128) { st->protocol_errors++; return -1; }  /* servers never mask */
                c->rem = b & 127;
                c->ws_need = c->rem == 126 ? 2 : c->rem == 127 ? 8 : 0;
                if (c->ws_need) { c->rem = 0; c->fs = WS_EXT; }
                else c->fs = c->rem ? WS_DATA : WS_B0;
                if (c->fs == WS_B0 && c->ws_op == 8) return -1;    /* close frame */
                break;
            case WS_EXT:
                c->rem = c->rem << 8 | b;
                if (--c->ws_need == 0) c->fs = c->rem ? WS_DATA : WS_B0;
                break;
            }
            if (c->fs == WS_DATA && c->ws_op == 8) return -1;      /* close frame */
            break;
        default:
            return -1;
        }
    }
    return 0;
}

/* ---- requests ---- */

/* Expand the path template for channel ch: "{}" becomes the number. */
static int fmt_path(char *out, size_t cap, const char *tpl, long ch)
{
    const char *b = strstr(tpl, "{}");
    if (!b) return snprintf(out, cap, "%s", tpl);
    return snprintf(out, cap, "%.*s%ld%s", (int)(b - tpl), tpl, ch, b + 2);
}

static int build_get(char *out, size_t cap, long gi, const struct lpstate *lp)
{
    char path[512];
    fmt_path(path, sizeof path, o.path, gi % o.channels);
    int n = snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n", path, o.host, o.port);
    if (o.proto == P_EV) n += snprintf(out + n, cap - n, "Accept: text/event-stream\r\n");
    if (o.proto == P_WS)
        n += snprintf(out + n, cap - n,
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n");
    if (lp && lp->lm[0]) n += snprintf(out + n, cap - n, "If-Modified-Since: %s\r\n", lp->lm);
    if (lp && lp->etag[0]) n += snprintf(out + n, cap - n, "If-None-Match: %s\r\n", lp->etag);
    for (int i = 0; i < o.nhdrs; i++) n += snprintf(out + n, cap - n, "%s\r\n", o.hdrs[i]);
    n += snprintf(out + n, cap - n, "\r\n");
    return n < (int)cap ? n : -1;
}

/* i-th source address: 127.x.y.z with x >= 1 and z in 1..254, o.per_ip sockets each */
static struct sockaddr_in src_addr(long gi)
{
    uint32_t a = gi / o.per_ip, z = 1 + a % 254, y = (a / 254) % 256, x = 1 + a / 254 / 256;
    struct sockaddr_in s = {.sin_family = AF_INET};
    s.sin_addr.s_addr = htonl(127u << 24 | (x & 255) << 16 | y << 8 | z);
    return s;
}

/* ======================= subscriber process ======================= */

static struct conn *conns;
static long base_gi, nlocal;
static int ep, pending;          /* pending: connecting or waiting for the head */

static void sub_kill(struct conn *c)
{
    if (c->st == C_DEAD) return;
    if (!c->is_ready) { LIVE_ADD(failed, 1); pending--; }
    else {
        LIVE_ADD(closed, 1);
        if (!o.expect || c->msgs < o.expect) LIVE_ADD(dead_incomplete, 1);
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->head); c->head = NULL;
    free(c->lp); c->lp = NULL;
    c->st = C_DEAD;
}

static int sub_send_request(struct conn *c)
{
    char req[2048];
    int n = build_get(req, sizeof req, base_gi + (c - conns), c->lp);
    st->requests++;
    return n > 0 && send(c->fd, req, n, MSG_NOSIGNAL) == n ? 0 : -1;
}

static void sub_set_ready(struct conn *c)
{
    c->is_ready = 1;
    LIVE_ADD(ready, 1);
    pending--;
}

static int sub_on_head(struct conn *c)
{
    /* long-polling: 304 means the poll timed out with no message */
    int ok = o.proto == P_WS ? c->status == 101
           : c->status == 200 || (o.proto == P_LP && c->status == 304);
    if (!ok) { st->http_errors++; st->bad_status = c->status; return -1; }
    if (o.proto == P_LP) return 0;
    if (!c->is_ready) sub_set_ready(c);
    free(c->head);                                   /* a stream has one head */
    c->head = NULL;
    return 0;
}

static int sub_on_end(struct conn *c)
{
    if (o.proto != P_LP) return -1;                  /* a stream must not end */
    if (c->close_after) return -1;
    return sub_send_request(c);                      /* poll again, same connection */
}

static const struct parser sub_parser_stream = {0, 1, sub_on_head, sub_on_end};
static const struct parser sub_parser_ws = {1, 1, sub_on_head, sub_on_end};

static void sub_open(struct conn *c)
{
    long gi = base_gi + (c - conns);
    struct sockaddr_in src = src_addr(gi);
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->st = C_CONNECTING;
    pending++;
    if (c->fd < 0) { sub_kill(c); return; }
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) ||
        (connect(c->fd, (struct sockaddr *)&o.dst, sizeof o.dst) && errno != EINPROGRESS)) {
        sub_kill(c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = c - conns};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* The connect finished: send the request and wait for the response. */
static void sub_connected(struct conn *c)
{
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) { sub_kill(c); return; }
    LIVE_ADD(established, 1);
    if (o.proto == P_LP && !c->lp) c->lp = calloc(1, sizeof *c->lp);
    if (sub_send_request(c)) { sub_kill(c); return; }
    c->st = C_HEAD;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = c - conns};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    /* long-polling: no head comes until a message does; nginx push-stream
     * also holds a streaming head back until the first message (-e) */
    if (o.proto == P_LP || o.ready_on_send) sub_set_ready(c);
}

static void sub_readable(struct conn *c)
{
    const struct parser *ps = o.proto == P_WS ? &sub_parser_ws : &sub_parser_stream;
    for (;;) {
        ssize_t n = recv(c->fd, rbuf, RBUF, 0);
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { sub_kill(c); return; }
        t_now = now_us();
        st->reads++;
        st->bytes += n;
        if (feed(c, rbuf, n, ps)) { sub_kill(c); return; }
        if (n < RBUF) return;
    }
}

static void sub_child(long first, long count, struct stats *my, volatile int *stop)
{
    st = my;
    base_gi = first;
    nlocal = count;
    conns = calloc(count, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0) die("out of memory");
    double rate = o.rate > 0 ? o.rate / o.procs : 0;   /* connects/s for this process */
    uint64_t t0 = now_us();
    long next = 0;
    static struct epoll_event evs[1024];
    while (!*stop) {
        /* open connections, bounded by the in-flight cap and the rate */
        long allowed = rate > 0 ? (long)((now_us() - t0) * rate / 1e6) + 1 : count;
        while (next < count && next < allowed && pending < o.inflight) sub_open(&conns[next++]);
        int wait_ms = next < count && rate > 0 ? 1 : 50;
        int n = epoll_wait(ep, evs, 1024, wait_ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = &conns[evs[i].data.u32];
            if (c->st == C_CONNECTING) sub_connected(c);
            else if (c->st == C_HEAD || c->st == C_BODY) sub_readable(c);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    st->cpu_us = ru.ru_utime.tv_sec * 1000000ull + ru.ru_utime.tv_usec +
                 ru.ru_stime.tv_sec * 1000000ull + ru.ru_stime.tv_usec;
    st->maxrss_kb = ru.ru_maxrss;
    __atomic_store_n(&st->exited, 1, __ATOMIC_RELEASE);
    _exit(0);                   /* the kernel closes the sockets */
}

static volatile sig_atomic_t got_signal;
static void on_signal(int s) { (void)s; got_signal = 1; }

static void print_lat(struct stats *a)
{
    uint64_t n = 0, tot = 0;
    for (int i = 0; i < HBUCKETS; i++) tot += a->hist[i];
    double q[] = {0.5, 0.9, 0.99, 0.999};
    uint64_t v[4] = {0};
    int qi = 0;
    for (int i = 0; i < HBUCKETS && qi < 4 && tot; i++) {
        n += a->hist[i];
        while (qi < 4 && n >= q[qi] * tot) v[qi++] = hval(i);
    }
    for (int k = 0; k < 4; k++) if (v[k] > a->lat_max) v[k] = a->lat_max;
    printf("\"lat_us\":{\"p50\":%lu,\"p90\":%lu,\"p99\":%lu,\"p999\":%lu,\"max\":%lu,\"mean\":%.1f}",
           v[0], v[1], v[2], v[3], a->lat_max, tot ? (double)a->lat_sum / tot : 0.0);
}

static int run_sub(void)
{
    if (o.procs <= 0) o.procs = (o.conns + 14999) / 15000;
    if (o.procs > o.conns) o.procs = o.conns > 0 ? o.conns : 1;
    size_t shsz = sizeof(struct shared) + o.procs * sizeof(struct stats);
    struct shared *sh = mmap(NULL, shsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) die("mmap: %s", strerror(errno));
    pid_t *pids = calloc(o.procs, sizeof(pid_t));
    uint64_t t0 = now_us();
    fflush(stdout);
    for (int p = 0; p < o.procs; p++) {
        long first = (long)o.conns * p / o.procs, last = (long)o.conns * (p + 1) / o.procs;
        if ((pids[p] = fork()) == 0) {
            /* Only the parent reacts to signals; children die with it. */
            signal(SIGINT, SIG_IGN); signal(SIGTERM, SIG_IGN); signal(SIGUSR1, SIG_IGN);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() == 1) _exit(1);
            sub_child(first, last - first, &sh->st[p], &sh->stop);
        }
        if (pids[p] < 0) die("fork: %s", strerror(errno));
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL); sigaction(SIGTERM, &sa, NULL); sigaction(SIGUSR1, &sa, NULL);

    int ready_printed = 0, timed_out = 0, alive = o.procs;
    uint64_t t_ready = 0;
    while (!got_signal && alive) {
        usleep(10000);
        uint64_t ready = 0, failed = 0, done = 0, now = now_us();
        for (int p = 0; p < o.procs; p++) {
            struct stats *s = &sh->st[p];
            ready += LIVE_GET(s, ready);
            failed += LIVE_GET(s, failed);
            done += LIVE_GET(s, complete) + LIVE_GET(s, dead_incomplete) + LIVE_GET(s, failed);
        }
        for (int p = 0; p < o.procs; p++)
            if (pids[p] > 0 && waitpid(pids[p], NULL, WNOHANG) == pids[p]) { pids[p] = 0; alive--; }
        if (!ready_printed &&
            (ready + failed >= (uint64_t)o.conns || now - t0 > o.connect_timeout * 1e6)) {
            ready_printed = 1;
            t_ready = now;
            char line[128];
            int n = snprintf(line, sizeof line, "READY %lu %lu %.3f\n", ready, failed, (now - t0) / 1e6);
            fputs(line, stderr);
            fflush(stderr);
            if (o.ready_file) {
                int fd = open(o.ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd >= 0) { if (write(fd, line, n) < 0) {} close(fd); }
            }
        }
        if (ready_printed && o.expect > 0 && done >= (uint64_t)o.conns) break;
        if (ready_printed && now - t_ready > o.timeout * 1e6) { timed_out = 1; break; }
    }
    int signalled = got_signal;
    if (o.linger > 0 && !got_signal) {
        /* hold every connection open so the caller can measure the server in
         * the finished state; SIGUSR1 (or the linger limit) ends it */
        fprintf(stderr, "DONE %s\n", timed_out ? "timeout" : "complete");
        fflush(stderr);
        for (uint64_t t = now_us(); !got_signal && now_us() - t < o.linger * 1e6 && alive;) usleep(10000);
    }
    sh->stop = 1;
    /* children notice within one epoll_wait (50 ms); do not wait forever */
    for (int tries = 0; alive && tries < 1000; tries++) {
        for (int p = 0; p < o.procs; p++)
            if (pids[p] > 0 && waitpid(pids[p], NULL, WNOHANG) == pids[p]) { pids[p] = 0; alive--; }
        if (alive) usleep(10000);
    }
    for (int p = 0; p < o.procs; p++) if (pids[p] > 0) { kill(pids[p], SIGKILL); waitpid(pids[p], NULL, 0); }

    static struct stats a;
    uint64_t sum_rss = 0, exited = 0;
    for (int p = 0; p < o.procs; p++) {
        struct stats *s = &sh->st[p];
        a.established += s->established; a.ready += s->ready; a.failed += s->failed;
        a.closed += s->closed; a.complete += s->complete; a.dead_incomplete += s->dead_incomplete;
        a.http_errors += s->http_errors; a.protocol_errors += s->protocol_errors;
        if (s->bad_status) a.bad_status = s->bad_status;
        a.requests += s->requests;
        a.reads += s->reads; a.bytes += s->bytes;
        a.msgs += s->msgs; a.gaps += s->gaps; a.ooo += s->ooo; a.lat_sum += s->lat_sum;
        if (s->lat_max > a.lat_max) a.lat_max = s->lat_max;
        if (s->t_first && (!a.t_first || s->t_first < a.t_first)) a.t_first = s->t_first;
        if (s->t_last > a.t_last) a.t_last = s->t_last;
        a.cpu_us += s->cpu_us;
        if (s->maxrss_kb > a.maxrss_kb) a.maxrss_kb = s->maxrss_kb;
        sum_rss += s->maxrss_kb;
        exited += s->exited;
        for (int i = 0; i < HBUCKETS; i++) a.hist[i] += s->hist[i];
    }
    /* messages a subscriber should have had but did not, counting short ones */
    uint64_t want = o.expect > 0 ? (uint64_t)o.expect * a.ready : 0;
    uint64_t missing = want > a.msgs ? want - a.msgs : 0;
    uint64_t end = now_us();
    printf("{\"mode\":\"sub\",\"proto\":\"%s\",\"target\":\"%s:%d\",\"path\":\"%s\","
           "\"channels\":%d,\"conns\":%d,\"procs\":%d,\"expect\":%ld,"
           "\"established\":%lu,\"ready\":%lu,\"failed\":%lu,\"closed\":%lu,"
           "\"http_errors\":%lu,\"bad_status\":%lu,\"protocol_errors\":%lu,\"requests\":%lu,"
           "\"complete\":%lu,\"incomplete\":%lu,\"msgs\":%lu,\"missing\":%lu,\"gaps\":%lu,\"ooo\":%lu,"
           "\"reads\":%lu,\"bytes\":%lu,",
           proto_names[o.proto], o.host, o.port, o.path, o.channels, o.conns, o.procs, o.expect,
           a.established, a.ready, a.failed, a.closed, a.http_errors, a.bad_status,
           a.protocol_errors, a.requests, a.complete, (uint64_t)o.conns - a.complete, a.msgs,
           missing, a.gaps, a.ooo, a.reads, a.bytes);
    print_lat(&a);
    printf(",\"t_start_us\":%lu,\"t_ready_us\":%lu,\"t_first_msg_us\":%lu,\"t_last_msg_us\":%lu,"
           "\"connect_s\":%.3f,\"elapsed_s\":%.3f,\"timed_out\":%s,\"signalled\":%s,"
           "\"cpu_s\":%.3f,\"max_rss_kb\":%lu,\"sum_rss_kb\":%lu,\"procs_reported\":%lu}\n",
           t0, t_ready, a.t_first, a.t_last, t_ready ? (t_ready - t0) / 1e6 : -1.0,
           (end - t0) / 1e6, timed_out ? "true" : "false", signalled ? "true" : "false",
           a.cpu_us / 1e6, a.maxrss_kb, sum_rss, exited);
    fflush(stdout);
    /* with -m 0 (hold) the time limit is the normal end, not a failure */
    int ok = exited == (uint64_t)o.procs && !a.failed && !a.http_errors && !a.protocol_errors &&
             !a.gaps && !a.ooo && (o.expect == 0 || (!timed_out && !missing));
    return ok ? 0 : 1;
}

/* ======================= publisher ======================= */

static uint64_t status_count[600], pub_acked, pub_sent, pub_reconnect;

static int pub_on_head(struct conn *c) { (void)c; return 0; }

static int pub_on_end(struct conn *c)
{
    status_count[c->status < 600 ? c->status : 599]++;
    pub_acked++;
    return c->close_after ? -1 : 0;       /* -1: reconnect, resend what was not acked */
}

static const struct parser pub_parser = {0, 0, pub_on_head, pub_on_end};

static int pub_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&o.dst, sizeof o.dst)) die("connect %s:%d: %s", o.host, o.port, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Append request j (channel j % K, seq j / K + first) to w. */
static size_t pub_build(char *w, uint64_t j)
{
    char path[512], body[64];
    long ch = j % o.channels;
    fmt_path(path, sizeof path, o.path, ch);
    int bl = snprintf(body, sizeof body, "#%lu:%lu#", (unsigned long)(j / o.channels + (o.first_seq ? o.first_seq : 1)),
                      (unsigned long)now_us());
    size_t len = bl > o.size ? (size_t)bl : (size_t)o.size;
    size_t n = sprintf(w, "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %zu\r\n", path, o.host, o.port, len);
    for (int i = 0; i < o.nhdrs; i++) n += sprintf(w + n, "%s\r\n", o.hdrs[i]);
    n += sprintf(w + n, "\r\n");
    memcpy(w + n, body, bl);
    memset(w + n + bl, 'x', len - bl);     /* padding never contains '#' */
    return n + len;
}

static int run_pub(void)
{
    st = &pub_st;
    uint64_t total = (uint64_t)o.expect * o.channels;
    size_t req_max = 1024 + o.size + 64 * o.nhdrs, wcap = 256 * 1024 + req_max;
    char *w = malloc(wcap);
    size_t wlen = 0, woff = 0;
    struct conn c = {.fd = pub_connect(), .st = C_HEAD};
    uint64_t t0 = now_us(), t_first = 0, t_last = 0, t_ack = 0;
    int timed_out = 0;
    while (pub_acked < total) {
        uint64_t now = now_us();
        if (now - t0 > o.timeout * 1e6) { timed_out = 1; break; }
        /* queue requests: window first, then pacing */
        uint64_t allowed = o.rate > 0 ? (uint64_t)((now - t0) * o.rate / 1e6) + 1 : total;
        while (pub_sent < total && pub_sent < allowed && pub_sent - pub_acked < (uint64_t)o.window &&
               wlen + req_max < wcap) {
            wlen += pub_build(w + wlen, pub_sent++);
            if (!t_first) t_first = now_us();
            t_last = now_us();
        }
        if (woff < wlen) {
            ssize_t n = send(c.fd, w + woff, wlen - woff, MSG_NOSIGNAL);
            if (n > 0) woff += n;
            if (woff == wlen) woff = wlen = 0;
        }
        /* wait for an answer, or until the next paced send is due: ppoll, not
         * poll, because at thousands of messages/s the gap is under the 1 ms
         * poll() can express, and rounding it to 0 spins a whole core */
        uint64_t wait_us = 100000;
        if (o.rate > 0 && pub_sent < total && pub_sent - pub_acked < (uint64_t)o.window) {
            double next_us = (pub_sent) * 1e6 / o.rate - (now_us() - t0);
            wait_us = next_us <= 0 ? 0 : (uint64_t)next_us;
        }
        struct timespec ts = {wait_us / 1000000, (wait_us % 1000000) * 1000};
        struct pollfd pf = {c.fd, POLLIN | (woff < wlen ? POLLOUT : 0), 0};
        if (ppoll(&pf, 1, &ts, NULL) <= 0 || !(pf.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = recv(c.fd, rbuf, RBUF, 0);
        if (n < 0 && errno == EAGAIN) continue;
        int drop = n <= 0;
        if (!drop) { t_now = now_us(); drop = feed(&c, rbuf, n, &pub_parser); t_ack = now_us(); }
        if (drop && pub_acked < total) {
            /* server closed (keepalive_requests, error): requests past the last
             * answer were not processed; send them again on a new connection */
            close(c.fd);
            free(c.head);
            c = (struct conn){.fd = pub_connect(), .st = C_HEAD};
            pub_sent = pub_acked;
            wlen = woff = 0;
            pub_reconnect++;
        }
    }
    uint64_t end = now_us();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t ok = status_count[200] + status_count[201] + status_count[202], errors = pub_acked - ok;
    double el = ((t_ack ? t_ack : end) - t0) / 1e6;
    printf("{\"mode\":\"pub\",\"target\":\"%s:%d\",\"path\":\"%s\",\"channels\":%d,\"messages\":%lu,"
           "\"window\":%d,\"rate\":%.1f,\"size\":%d,\"sent\":%lu,\"acked\":%lu,\"ok\":%lu,\"errors\":%lu,"
           "\"reconnects\":%lu,\"status\":{",
           o.host, o.port, o.path, o.channels, total, o.window, o.rate, o.size, pub_sent, pub_acked,
           ok, errors, pub_reconnect);
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (status_count[s]) { printf("%s\"%d\":%lu", first ? "" : ",", s, status_count[s]); first = 0; }
    printf("},\"elapsed_s\":%.6f,\"pub_per_s\":%.1f,\"t_start_us\":%lu,\"t_first_send_us\":%lu,"
           "\"t_last_send_us\":%lu,\"t_last_ack_us\":%lu,\"timed_out\":%s,\"cpu_s\":%.3f,\"max_rss_kb\":%ld}\n",
           el, el > 0 ? pub_acked / el : 0.0, t0, t_first, t_last, t_ack, timed_out ? "true" : "false",
           ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
           ru.ru_maxrss);
    return timed_out || errors ? 1 : 0;
}

/* ======================= main ======================= */

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen sub [options] host:port\n"
        "  -c N     subscribers (1000)            -p P   processes (N/15000 rounded up)\n"
        "  -u PATH  path, {} = channel (/sub/ch{}) -k K   channels; subscriber i uses i %% K (1)\n"
        "  -P MODE  stream | ev | ws | lp (stream)\n"
        "  -m M     messages expected per subscriber; 0 = just hold them until -t (0)\n"
        "  -t SEC   limit after READY (60)         -T SEC connect phase limit (300)\n"
        "  -r R     connects/s over all processes, 0 = as fast as the in-flight cap allows (0)\n"
        "  -i K     connects in flight per process (256)\n"
        "  -A K     sockets per source address, spread over 127.1.0.1 and up (1000)\n"
        "  -F SEQ   first seq each subscriber must see, 0 = any (1)\n"
        "  -e       count a subscriber ready once its request is sent, not when the\n"
        "           response head arrives (nginx push-stream sends no head before\n"
        "           the first message unless a header_template is set)\n"
        "  -o FILE  also write the READY line to FILE (may be a fifo)\n"
        "  -L SEC   when done, print DONE on stderr and keep the connections open up to\n"
        "           SEC more seconds or until SIGUSR1, then report (0)\n"
        "  -H 'Name: value'  extra request header (up to 8)\n"
        "usage: loadgen pub [options] host:port\n"
        "  -m M     messages per channel (1000)    -k K   channels, round robin (1)\n"
        "  -u PATH  path, {} = channel (/pub?id=ch{})\n"
        "  -w W     requests in flight (pipelined) (100)\n"
        "  -r R     messages/s over all channels, 0 = back to back (0)\n"
        "  -s B     body size in bytes, marker padded with 'x' (0 = marker only)\n"
        "  -F SEQ   first seq per channel (1)      -t SEC overall limit (60)\n"
        "Subscriber SIGINT/SIGTERM/SIGUSR1: stop now and report.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    if (!strcmp(argv[1], "sub")) o.sub = 1;
    else if (strcmp(argv[1], "pub")) usage();
    o.conns = 1000; o.channels = 1; o.inflight = 256; o.per_ip = 1000; o.first_seq = 1;
    o.timeout = 60; o.connect_timeout = 300; o.window = 100;
    o.expect = o.sub ? 0 : 1000;
    o.path = o.sub ? "/sub/ch{}" : "/pub?id=ch{}";
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "c:p:u:k:P:m:t:T:L:r:i:A:F:o:H:w:s:e")) != -1) {
        switch (opt) {
        case 'c': o.conns = atoi(optarg); break;
        case 'p': o.procs = atoi(optarg); break;
        case 'u': o.path = optarg; break;
        case 'k': o.channels = atoi(optarg); break;
        case 'P':
            for (o.proto = 0; o.proto < 4 && strcmp(optarg, proto_names[o.proto]); o.proto++) {}
            if (o.proto == 4) usage();
            break;
        case 'm': o.expect = atol(optarg); break;
        case 't': o.timeout = atof(optarg); break;
        case 'T': o.connect_timeout = atof(optarg); break;
        case 'L': o.linger = atof(optarg); break;
        case 'r': o.rate = atof(optarg); break;
        case 'i': o.inflight = atoi(optarg); break;
        case 'A': o.per_ip = atoi(optarg); break;
        case 'F': o.first_seq = atol(optarg); break;
        case 'o': o.ready_file = optarg; break;
        case 'H': if (o.nhdrs < MAX_HDRS) o.hdrs[o.nhdrs++] = optarg; break;
        case 'w': o.window = atoi(optarg); break;
        case 's': o.size = atoi(optarg); break;
        case 'e': o.ready_on_send = 1; break;
        default: usage();
        }
    }
    if (optind != argc - 1) usage();
    char *colon = strrchr(argv[optind], ':');
    if (!colon) usage();
    snprintf(o.host, sizeof o.host, "%.*s", (int)(colon - argv[optind]), argv[optind]);
    o.port = atoi(colon + 1);
    o.dst.sin_family = AF_INET;
    o.dst.sin_port = htons(o.port);
    if (inet_pton(AF_INET, o.host, &o.dst.sin_addr) != 1) die("host must be an IPv4 address");
    if ((ntohl(o.dst.sin_addr.s_addr) >> 24) != 127) die("loopback targets only (127.0.0.0/8)");
    if (o.channels < 1 || o.window < 1 || o.per_ip < 1 || o.inflight < 1 || o.size > (1 << 20)) usage();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (o.sub && o.procs > 0 && (o.conns + o.procs - 1) / o.procs > (long)rl.rlim_cur - 64)
        die("%d subscribers over %d processes exceed the %lu fds a process may open",
            o.conns, o.procs, (unsigned long)rl.rlim_cur);
    return o.sub ? run_sub() : run_pub();
}

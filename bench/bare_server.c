/*
 * bare_server.c -- the floor: the least work a push-stream style fan-out can do
 * on this machine, to compare real servers against.
 *
 *   GET  /sub/<channel>        -> "HTTP/1.1 200 OK" + chunked head, then each
 *                                 message as one chunk, forever
 *   POST /pub?id=<channel>     -> "HTTP/1.1 200 OK\r\nContent-Length: 0", keep-alive,
 *                                 pipelined requests work
 *
 * Each worker is one thread with level-triggered epoll and non-blocking sockets.
 * A message is framed once and written with exactly one send() per subscriber;
 * a subscriber whose send() is short or fails is dropped (no buffering: it is a
 * floor, not a product).
 *
 * -w N forks N workers, each with its own SO_REUSEPORT listener, because a
 * process may hold at most 20,000 fds here. A publish is delivered to the local
 * subscribers and forwarded, framed, to every other worker's inbox (an AF_UNIX
 * datagram socketpair), so it reaches subscribers on all workers in publish order.
 *
 * -d sets TCP_NODELAY on every accepted socket (inherited from the listener), as
 * fastpush does: without it Nagle's algorithm holds a subscriber's next message
 * until the previous one is ACKed, and under back-to-back publishing the kernel
 * sends several messages in one packet, trading latency for CPU. The suite runs
 * the floor with -d so both do the same job (every message sent when published).
 *
 * usage: bare_server [-d] [-l host:port] [-w workers] [-n max_channels] [-T lifetime_s]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define RBUF (256 * 1024)    /* one read() worth of pipelined requests */
#define MAX_HEAD 8192        /* a request head larger than this is refused */
#define MAX_BODY (1 << 20)   /* largest message body */

enum { K_FREE, K_HTTP, K_SUB };

struct conn {                /* indexed by fd: ~24 bytes per subscriber */
    char *buf;               /* partial request kept between reads, else NULL */
    uint32_t len;            /* bytes in buf */
    int32_t chan;            /* channel index (subscribers) */
    int32_t slot;            /* index in the channel's subscriber array */
    uint8_t kind;
};

struct channel { char *name; int32_t *subs; uint32_t n, cap; };

static struct conn *conns;
static int nconns;
static struct channel *chans;
static int nchans, maxchans;
static int nodelay;         /* -d */
static int32_t *htab;        /* open addressing: channel index + 1, 0 = empty */
static uint32_t hmask;
static int ep, lfd, inbox = -1, nworkers = 1, me;
static int *outbox;          /* outbox[k]: send end of worker k's inbox */
static char rbuf[RBUF], wbuf[64 * 1024], dgram[MAX_BODY + 320];

static const char SUB_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";
static const char PUB_OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;                /* FNV-1a */
    while (n--) h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* Channel index for name, creating it when create is set; -1 if absent/full. */
static int chan_find(const char *name, size_t n, int create)
{
    for (uint32_t i = hash(name, n) & hmask;; i = (i + 1) & hmask) {
        int32_t c = htab[i];
        if (!c) {
            if (!create || nchans == maxchans) return -1;
            chans[nchans].name = strndup(name, n);
            htab[i] = ++nchans;
            return nchans - 1;
        }
        if (strlen(chans[c - 1].name) == n && !memcmp(chans[c - 1].name, name, n)) return c - 1;
    }
}

static void drop(int fd)
{
    struct conn *c = &conns[fd];
    if (c->kind == K_SUB) {                  /* swap-with-last keeps the array dense */
        struct channel *ch = &chans[c->chan];
        int32_t last = ch->subs[--ch->n];
        ch->subs[c->slot] = last;
        conns[last].slot = c->slot;
    }
    free(c->buf);
    memset(c, 0, sizeof *c);
    close(fd);                               /* also leaves the epoll set */
}

/* One send() per subscriber; walk backwards so drop()'s swap-with-last only
 * moves subscribers that were already served. */
static void deliver(int ci, const char *f, size_t n)
{
    struct channel *ch = &chans[ci];
    for (int64_t i = (int64_t)ch->n - 1; i >= 0; i--) {
        int fd = ch->subs[i];
        if (send(fd, f, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) drop(fd);
    }
}

static void drain_inbox(void)
{
    ssize_t n;
    while ((n = recv(inbox, dgram, sizeof dgram, MSG_DONTWAIT)) > 2) {
        size_t nl = (uint8_t)dgram[0] | (uint8_t)dgram[1] << 8;
        int ci = chan_find(dgram + 2, nl, 0);
        if (ci >= 0) deliver(ci, dgram + 2 + nl, n - 2 - nl);
    }
}

/* Frame once as "<hex len>\r\n<body>\r\n", deliver locally, then forward the
 * same bytes to the other workers as [u16 name length][name][frame]. */
static void publish(const char *name, size_t nl, const char *body, size_t blen)
{
    static char out[sizeof dgram];           /* not dgram: drain_inbox() reuses that */
    char *f = out + 2 + nl;
    size_t fl = sprintf(f, "%zx\r\n", blen);
    memcpy(f + fl, body, blen);
    memcpy(f + fl + blen, "\r\n", 2);
    fl += blen + 2;
    int ci = chan_find(name, nl, 0);
    if (ci >= 0) deliver(ci, f, fl);
    out[0] = nl & 255;
    out[1] = nl >> 8;
    memcpy(out + 2, name, nl);
    for (int k = 0; k < nworkers; k++) {
        if (k == me || nworkers == 1) continue;
        /* On a full inbox wait, but keep draining our own: two workers
         * forwarding to each other at once must not deadlock. */
        while (send(outbox[k], out, 2 + nl + fl, MSG_DONTWAIT) < 0 && errno == EAGAIN) {
            struct pollfd p[2] = {{outbox[k], POLLOUT, 0}, {inbox, POLLIN, 0}};
            if (poll(p, 2, 1000) > 0 && (p[1].revents & POLLIN)) drain_inbox();
        }
    }
}

/* Send the queued publish responses with one send(); 0 on success. */
static int flush(int fd, size_t *wlen)
{
    ssize_t n = *wlen ? send(fd, wbuf, *wlen, MSG_NOSIGNAL) : 0;
    int bad = n != (ssize_t)*wlen;
    *wlen = 0;
    return bad;
}

/* Parse every complete request in [p, e). Returns bytes consumed, or -1 to drop. */
static ssize_t handle(int fd, char *p, char *e)
{
    char *start = p;
    size_t wlen = 0;
    while (p < e) {
        char *he = memmem(p, e - p, "\r\n\r\n", 4);
        if (!he) { if (e - p > MAX_HEAD) return -1; break; }
        he += 4;
        if (!strncmp(p, "GET /sub/", 9)) {
            char *n = p + 9, *ne = n;
            while (ne < he && *ne != ' ' && *ne != '?') ne++;
            int ci = chan_find(n, ne - n, 1);
            if (ci < 0 || flush(fd, &wlen) ||
                send(fd, SUB_HEAD, sizeof SUB_HEAD - 1, MSG_NOSIGNAL) != sizeof SUB_HEAD - 1)
                return -1;
            struct channel *ch = &chans[ci];
            if (ch->n == ch->cap) {
                ch->cap = ch->cap ? ch->cap * 2 : 4;
                ch->subs = realloc(ch->subs, ch->cap * sizeof *ch->subs);
            }
            conns[fd].kind = K_SUB;
            conns[fd].chan = ci;
            conns[fd].slot = ch->n;
            ch->subs[ch->n++] = fd;
            return e - start;                /* a subscriber sends nothing more */
        }
        if (strncmp(p, "POST /pub", 9)) return -1;
        char *id = memmem(p, he - p, "id=", 3), *ide, *cl = p;
        size_t clen = 0;
        while ((cl = memchr(cl, '\n', he - cl)) && ++cl < he)
            if (!strncasecmp(cl, "content-length:", 15)) clen = strtoul(cl + 15, NULL, 10);
        if (!id || id > he || clen > MAX_BODY) return -1;
        if ((size_t)(e - he) < clen) break;  /* body not here yet */
        for (ide = id += 3; ide < he && *ide != ' ' && *ide != '&'; ide++) {}
        if (ide - id > 255) return -1;
        publish(id, ide - id, he, clen);
        if (wlen + sizeof PUB_OK > sizeof wbuf && flush(fd, &wlen)) return -1;
        memcpy(wbuf + wlen, PUB_OK, sizeof PUB_OK - 1);
        wlen += sizeof PUB_OK - 1;
        p = he + clen;
    }
    if (flush(fd, &wlen)) return -1;
    return p - start;
}

static void on_readable(int fd)
{
    struct conn *c = &conns[fd];
    if (c->kind == K_SUB) {                  /* EOF or junk from a subscriber */
        ssize_t n = recv(fd, rbuf, RBUF, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) drop(fd);
        return;
    }
    /* Usually the whole request batch fits in the shared rbuf; only a partial
     * request costs this connection a buffer of its own until it completes. */
    char *base = rbuf;
    size_t have = 0;
    if (c->buf) {
        c->buf = realloc(c->buf, c->len + RBUF);
        base = c->buf;
        have = c->len;
    }
    ssize_t n = recv(fd, base + have, RBUF, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN)) { drop(fd); return; }
    if (n < 0) return;
    have += n;
    ssize_t used = handle(fd, base, base + have);
    if (used < 0) { drop(fd); return; }
    size_t left = have - used;
    if (c->kind == K_SUB || !left) { free(c->buf); c->buf = NULL; c->len = 0; return; }
    if (base == rbuf) { c->buf = malloc(left); memcpy(c->buf, rbuf + used, left); }
    else memmove(c->buf, c->buf + used, left);
    c->len = left;
}

static void worker(const char *host, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1;
    inet_pton(AF_INET, host, &a.sin_addr);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (nodelay) setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(lfd, (void *)&a, sizeof a) || listen(lfd, 65535)) { perror("bind/listen"); exit(1); }
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    if (inbox >= 0) { ev.data.fd = inbox; epoll_ctl(ep, EPOLL_CTL_ADD, inbox, &ev); }
    static struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == inbox) { drain_inbox(); continue; }
            if (fd != lfd) { if (conns[fd].kind != K_FREE) on_readable(fd); continue; }
            int cfd;
            while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                if (cfd >= nconns) { close(cfd); continue; }
                conns[cfd].kind = K_HTTP;
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = cfd};
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
            }
        }
    }
}

int main(int argc, char **argv)
{
    char host[64] = "127.0.0.1";
    int port = 9080, opt, lifetime = 3600;
    maxchans = 65536;
    while ((opt = getopt(argc, argv, "dl:w:n:T:")) != -1) {
        if (opt == 'l') {
            char *c = strrchr(optarg, ':');
            if (!c) { fprintf(stderr, "-l host:port\n"); return 2; }
            snprintf(host, sizeof host, "%.*s", (int)(c - optarg), optarg);
            port = atoi(c + 1);
        } else if (opt == 'd') nodelay = 1;
        else if (opt == 'w') nworkers = atoi(optarg);
        else if (opt == 'n') maxchans = atoi(optarg);
        else if (opt == 'T') lifetime = atoi(optarg);
        else {
            fprintf(stderr, "usage: %s [-d] [-l host:port] [-w workers] [-n max_channels] "
                            "[-T lifetime_s (0 = forever)]\n", argv[0]);
            return 2;
        }
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    nconns = rl.rlim_cur;
    conns = calloc(nconns, sizeof *conns);
    for (hmask = 1; hmask < 2u * maxchans; hmask <<= 1) {}
    htab = calloc(hmask, sizeof *htab);
    hmask--;
    chans = calloc(maxchans, sizeof *chans);
    if (lifetime > 0) alarm(lifetime);       /* a forgotten server stops by itself */
    if (nworkers <= 1) { nworkers = 1; worker(host, port); }

    int *inboxes = calloc(nworkers, sizeof(int));
    outbox = calloc(nworkers, sizeof(int));
    for (int k = 0; k < nworkers; k++) {
        int sv[2], sz = 4 << 20;
        socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        inboxes[k] = sv[0];
        outbox[k] = sv[1];
    }
    pid_t *pids = calloc(nworkers, sizeof(pid_t));
    for (me = 0; me < nworkers; me++) {
        if ((pids[me] = fork()) == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);   /* no orphans if the parent is killed */
            if (lifetime > 0) alarm(lifetime);
            for (int k = 0; k < nworkers; k++) if (k != me) close(inboxes[k]);
            inbox = inboxes[me];
            worker(host, port);
        }
    }
    /* The parent only forwards SIGTERM/SIGINT and reaps. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM); sigaddset(&ss, SIGINT); sigaddset(&ss, SIGALRM); sigaddset(&ss, SIGCHLD);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    int sig;
    sigwait(&ss, &sig);
    for (int k = 0; k < nworkers; k++) kill(pids[k], SIGTERM);
    while (wait(NULL) > 0) {}
    return 0;
}

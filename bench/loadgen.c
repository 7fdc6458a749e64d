/* loadgen: a lean HTTP/1.1 keep-alive load generator for bench/overload.py (Linux, libc only).
 *
 *   cc -O2 -Wall -Wextra -o loadgen bench/loadgen.c
 *   loadgen --host 127.0.0.1 --port P --path /v1/embeddings --body FILE -c CONNS -d SECONDS
 *           [-H 'name: value']... [--honor-retry-after] [--max-backoff S] --log FILE [--drain S] [--seed N]
 *
 * Why not h2load or wrk: we need (1) one log line per request with its status and whether a 429 carried
 * Retry-After, and (2) clients that honour Retry-After as real ones do (OpenAI SDK, retry libraries); h2load
 * re-sends at once after a 429, so on 2 cores the server spends its CPU refusing. One thread, one epoll set,
 * edge-triggered: the client must cost ~no CPU next to the server it measures.
 *
 * Log (written at the end, one line per request): start_us status latency_us retry_after_present
 *   start_us: CLOCK_REALTIME when the first byte was written; latency_us: CLOCK_MONOTONIC from then to the
 *   last byte of the response; status 0 = connection error (refused, reset, EOF mid-response).
 * Stdout: one JSON line {"requests":..,"by_status":{..},"unfinished":..,"conn_errors":..,"duration_s":..,
 *   "drain_s":..,"start_us":..,"cpu_s":..}; requests counts the log's lines, connection errors included. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, CONNECTING, WRITING, READING };
#define MAX_HEAD 65536          /* a response head larger than this is malformed */
#define MAX_RESP (64 << 20)     /* so is a response larger than this */
#define ERROR_PAUSE 0.1         /* seconds before reconnecting after an error: no spinning on a dead server */

typedef struct {
    int fd, state;
    size_t woff;                /* bytes of the request written so far */
    char *buf;                  /* the response so far; kept whole until complete (they are small) */
    size_t len, cap, head_len;  /* head_len: bytes up to and including the blank line, 0 until seen */
    int status, chunked, close, has_ra;
    long clen;                  /* Content-Length, -1 when absent */
    double ra;                  /* Retry-After seconds */
    int64_t t0_mono, t0_real;   /* µs, at the first byte written (or the connect, for a connect error) */
    int64_t wake_at;            /* IDLE: monotonic µs at which the next request may start */
} Conn;

typedef struct { int64_t start_us; int32_t latency_us; int16_t status; uint8_t ra; } Rec;
typedef struct { int64_t when; int idx; } Timer;

static Conn *conns;
static Rec *recs;
static size_t nrecs, caprecs;
static Timer *heap;             /* min-heap of wake-ups; stale entries are skipped when popped */
static size_t nheap;
static char *req;               /* the whole request, built once */
static size_t req_len;
static struct sockaddr_in addr;
static int ep, honor, stopping;
static long inflight, conn_errors;
static double max_backoff = 30;
static uint64_t rng;

static int64_t now_us(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double uniform01(void) { /* xorshift64*: reproducible with --seed, no libm */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ULL) >> 11) / (double)(1ULL << 53);
}

static void die(const char *msg) { perror(msg); exit(2); }

static void heap_push(int64_t when, int idx) {
    static size_t cap;
    if (nheap == cap && !(heap = realloc(heap, (cap = cap ? 2 * cap : 1024) * sizeof *heap))) die("realloc");
    size_t i = nheap++;
    for (; i && heap[(i - 1) / 2].when > when; i = (i - 1) / 2) heap[i] = heap[(i - 1) / 2];
    heap[i] = (Timer){when, idx};
}

static Timer heap_pop(void) {
    Timer top = heap[0], last = heap[--nheap];
    size_t i = 0, k;
    while ((k = 2 * i + 1) < nheap) {
        if (k + 1 < nheap && heap[k + 1].when < heap[k].when) k++;
        if (heap[k].when >= last.when) break;
        heap[i] = heap[k];
        i = k;
    }
    heap[i] = last;
    return top;
}

static void record(Conn *c, int status) {
    if (nrecs == caprecs && !(recs = realloc(recs, (caprecs = caprecs ? 2 * caprecs : 65536) * sizeof *recs)))
        die("realloc");
    recs[nrecs++] = (Rec){c->t0_real, (int32_t)(now_us(CLOCK_MONOTONIC) - c->t0_mono), (int16_t)status,
                          (uint8_t)(status && c->has_ra)};
    inflight--;
}

static void close_conn(Conn *c) {
    if (c->fd >= 0) close(c->fd); /* close() also removes it from the epoll set */
    c->fd = -1;
}

/* The connection goes IDLE until `at`; at or before now means "start the next request at once". */
static void idle_until(Conn *c, int64_t at) {
    c->state = IDLE;
    c->wake_at = at;
    heap_push(at, (int)(c - conns));
}

static void conn_error(Conn *c) {
    record(c, 0);
    conn_errors++;
    close_conn(c);
    idle_until(c, now_us(CLOCK_MONOTONIC) + (int64_t)(ERROR_PAUSE * 1e6));
}

static void do_write(Conn *c) {
    while (c->woff < req_len) {
        ssize_t n = send(c->fd, req + c->woff, req_len - c->woff, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return; /* edge-triggered: EPOLLOUT comes when there is room */
        if (n < 0) { conn_error(c); return; }
        c->woff += (size_t)n;
    }
    c->state = READING;
    c->len = c->head_len = 0;
}

static void start_request(Conn *c) {
    inflight++;
    c->woff = 0;
    c->has_ra = 0;
    c->t0_mono = now_us(CLOCK_MONOTONIC); /* reset when the first byte goes out, below */
    c->t0_real = now_us(CLOCK_REALTIME);
    if (c->fd < 0) { /* (re)connect; the request is written once the connect completes */
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Registered once, for everything: edge-triggered, so an idle connection costs nothing. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u32 = (uint32_t)(c - conns)};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
        c->state = CONNECTING;
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) == 0) c->state = WRITING;
        else if (errno != EINPROGRESS) { conn_error(c); return; }
        if (c->state == CONNECTING) return;
    }
    c->state = WRITING;
    c->t0_mono = now_us(CLOCK_MONOTONIC);
    c->t0_real = now_us(CLOCK_REALTIME);
    do_write(c);
}

/* Parses what the head says about the body. Returns -1 when the head is malformed. */
static int parse_head(Conn *c) {
    char *p = c->buf, *end = c->buf + c->head_len - 2;
    if (c->head_len < 12 || strncmp(p, "HTTP/1.", 7) != 0) return -1;
    c->status = atoi(p + 9);
    if (c->status < 100 || c->status > 999) return -1;
    c->clen = -1;
    c->chunked = 0;
    c->close = p[7] == '0'; /* HTTP/1.0 closes unless it says keep-alive; treat it as closing */
    for (p = (char *)memchr(p, '\n', (size_t)(end - p)) + 1; p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p + 2)), *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            size_t nlen = (size_t)(colon - p);
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            *eol = '\0'; /* lets strcasestr/strtod stop at the line's end; the '\n' is not needed again */
            if (nlen == 14 && !strncasecmp(p, "content-length", 14)) c->clen = strtol(v, NULL, 10);
            else if (nlen == 17 && !strncasecmp(p, "transfer-encoding", 17))
                c->chunked = !!strcasestr(v, "chunked");
            else if (nlen == 10 && !strncasecmp(p, "connection", 10)) c->close = !!strcasestr(v, "close");
            else if (nlen == 11 && !strncasecmp(p, "retry-after", 11)) {
                char *e;
                c->has_ra = 1;
                c->ra = strtod(v, &e);
                if (e == v || c->ra < 0) c->ra = 1; /* an HTTP-date: not worth parsing here */
            }
        }
        p = eol + 1;
    }
    return 0;
}

/* 1 when buf holds the whole response, 0 when more is needed, -1 when it is malformed. */
static int response_complete(Conn *c) {
    if (!c->head_len) {
        char *h = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!h) return c->len > MAX_HEAD ? -1 : 0;
        c->head_len = (size_t)(h + 4 - c->buf);
        if (parse_head(c) < 0) return -1;
    }
    if (c->status < 200) return -1; /* 1xx: we never send Expect, so none should come */
    if (c->status == 204 || c->status == 304) return 1;
    if (c->chunked) { /* walk the chunks from the start each time: responses are small, reads are few */
        size_t pos = c->head_len;
        for (;;) {
            char *crlf = memmem(c->buf + pos, c->len - pos, "\r\n", 2);
            if (!crlf) return 0;
            char *e;
            unsigned long size = strtoul(c->buf + pos, &e, 16);
            if (e == c->buf + pos) return -1;
            pos = (size_t)(crlf + 2 - c->buf);
            if (size == 0) /* last chunk: then trailers, if any, and a blank line */
                return c->len - pos >= 2 && !memcmp(c->buf + pos, "\r\n", 2) ? 1
                       : memmem(c->buf + pos, c->len - pos, "\r\n\r\n", 4) != NULL;
            if (c->len < pos + size + 2) return 0;
            pos += size + 2;
        }
    }
    if (c->clen >= 0) return c->len >= c->head_len + (size_t)c->clen;
    c->close = 1; /* no length: the body ends when the server closes */
    return 0;
}

static void response_done(Conn *c) {
    record(c, c->status);
    int64_t at = now_us(CLOCK_MONOTONIC);
    if (honor && (c->status == 429 || c->status == 503)) { /* as real clients do; jitter spreads the herd */
        double wait = (c->has_ra ? c->ra : 1.0) * (1.0 + 0.5 * uniform01());
        at += (int64_t)((wait < max_backoff ? wait : max_backoff) * 1e6);
    }
    if (c->close) close_conn(c);
    idle_until(c, at);
}

/* Reads until EAGAIN (edge-triggered). Also run while IDLE, to notice a server closing a keep-alive. */
static void do_read(Conn *c) {
    while (c->fd >= 0) {
        if (c->state != READING) { /* idle: data or EOF means the server has given the connection up */
            char byte;
            ssize_t n = recv(c->fd, &byte, 1, 0);
            if (n < 0 && errno == EINTR) continue;
            if (!(n < 0 && errno == EAGAIN)) close_conn(c);
            return;
        }
        if (c->cap - c->len < 4096) {
            if (c->cap >= MAX_RESP) { conn_error(c); return; }
            c->cap = c->cap ? 2 * c->cap : 16384;
            if (!(c->buf = realloc(c->buf, c->cap))) die("realloc");
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { /* EOF ends a body without a length; anything else here is an error */
            if (n == 0 && c->head_len && c->close && c->clen < 0 && !c->chunked) response_done(c);
            else conn_error(c);
            return;
        }
        c->len += (size_t)n;
        int done = response_complete(c);
        if (done < 0) conn_error(c);
        else if (done) response_done(c); /* keeps reading: the next recv sees EAGAIN or the server's EOF */
    }
}

static void on_event(Conn *c, uint32_t ev) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) { conn_error(c); return; }
        c->state = WRITING;
        c->t0_mono = now_us(CLOCK_MONOTONIC);
        c->t0_real = now_us(CLOCK_REALTIME);
    }
    if (c->state == WRITING) do_write(c);
    if (c->state == READING || (c->state == IDLE && c->fd >= 0)) do_read(c);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    char *data = NULL;
    size_t cap = 0, n;
    *len = 0;
    do {
        if (!(data = realloc(data, cap += 65536))) die("realloc");
        *len += n = fread(data + *len, 1, cap - *len, f);
    } while (n > 0);
    fclose(f);
    return data;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --host H --port P --path PATH --body FILE -c CONNS -d SECONDS\n"
                    "       [-H 'k: v']... [--honor-retry-after] [--max-backoff S] --log FILE [--drain S] [--seed N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/", *body_path = NULL, *log_path = NULL;
    int port = 0, nconn = 1;
    double duration = 10, drain = 5;
    char headers[8192] = "";
    rng = (uint64_t)now_us(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--honor-retry-after")) { honor = 1; continue; }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--body")) body_path = v;
        else if (!strcmp(a, "-c")) nconn = atoi(v);
        else if (!strcmp(a, "-d")) duration = atof(v);
        else if (!strcmp(a, "--max-backoff")) max_backoff = atof(v);
        else if (!strcmp(a, "--log")) log_path = v;
        else if (!strcmp(a, "--drain")) drain = atof(v);
        else if (!strcmp(a, "--seed")) rng = strtoull(v, NULL, 10) * 0x9E3779B97F4A7C15ULL + 1; /* never 0 */
        else if (!strcmp(a, "-H")) {
            size_t used = strlen(headers);
            if (used + strlen(v) + 3 > sizeof headers) usage();
            sprintf(headers + used, "%s\r\n", v);
        } else usage();
    }
    if (!body_path || !log_path || port <= 0 || nconn <= 0) usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        exit(2);
    }

    size_t body_len;
    char *body = read_file(body_path, &body_len);
    char *head;
    int head_len = asprintf(&head, "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n%s\r\n", path, host, port, body_len, headers);
    if (head_len < 0 || !(req = malloc((size_t)head_len + body_len))) die("malloc");
    memcpy(req, head, (size_t)head_len);
    memcpy(req + head_len, body, body_len);
    req_len = (size_t)head_len + body_len;

    struct rlimit rl; /* one fd per connection, plus a few */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconn + 64) {
        rlim_t want = (rlim_t)nconn + 64;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
            fprintf(stderr, "loadgen: open-file limit %lu is below %d connections\n", (unsigned long)rl.rlim_cur,
                    nconn);
    }
    signal(SIGPIPE, SIG_IGN);
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
    if (!(conns = calloc((size_t)nconn, sizeof *conns))) die("calloc");

    int64_t t_start_real = now_us(CLOCK_REALTIME), t_start = now_us(CLOCK_MONOTONIC);
    int64_t t_stop = t_start + (int64_t)(duration * 1e6), t_end = t_stop;
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = -1;
        start_request(&conns[i]);
    }
    struct epoll_event evs[1024];
    for (;;) {
        int64_t now = now_us(CLOCK_MONOTONIC);
        if (!stopping && now >= t_stop) { /* stop starting requests; wait for the outstanding ones */
            stopping = 1;
            t_end = now + (int64_t)(drain * 1e6);
        }
        if (stopping && (inflight == 0 || now >= t_end)) break;
        while (nheap && heap[0].when <= now) {
            Timer t = heap_pop();
            Conn *c = &conns[t.idx];
            if (!stopping && c->state == IDLE && c->wake_at == t.when) start_request(c);
        }
        int64_t next = stopping ? t_end : t_stop;
        if (!stopping && nheap && heap[0].when < next) next = heap[0].when;
        int timeout_ms = next <= now ? 0 : (int)((next - now + 999) / 1000);
        int n = epoll_wait(ep, evs, 1024, timeout_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) on_event(&conns[evs[i].data.u32], evs[i].events);
    }
    int64_t t_done = now_us(CLOCK_MONOTONIC);

    FILE *log = fopen(log_path, "w");
    if (!log) die(log_path);
    long by_status[1000] = {0};
    for (size_t i = 0; i < nrecs; i++) {
        fprintf(log, "%lld %d %d %d\n", (long long)recs[i].start_us, recs[i].status, (int)recs[i].latency_us,
                recs[i].ra);
        by_status[recs[i].status]++;
    }
    if (fclose(log) != 0) die(log_path);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"requests\":%zu,\"by_status\":{", nrecs);
    for (int s = 100, first = 1; s < 1000; s++)
        if (by_status[s]) { printf("%s\"%d\":%ld", first ? "" : ",", s, by_status[s]); first = 0; }
    /* start_us (CLOCK_REALTIME at the start): the caller can tell answers inside the load window from the drain */
    printf("},\"unfinished\":%ld,\"conn_errors\":%ld,\"duration_s\":%.3f,\"drain_s\":%.3f,\"start_us\":%lld,"
           "\"cpu_s\":%.3f}\n", inflight, conn_errors, (double)(t_stop - t_start) / 1e6,
           (double)(t_done - t_stop) / 1e6, (long long)t_start_real,
           ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    return 0;
}

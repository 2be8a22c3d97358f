/* qlog.c — owns the query log (qlog.h): the workers' rings, the writer thread and the output
 * (route53 lines from qlog_route53.c to a file; dnstap frames from dnstap_pb.c through
 * libfstrm). A worker only copies bytes into its own ring and never
 * waits, formats, allocates or takes a lock; everything else happens on the writer thread. */
#include <errno.h>
#include <fstrm.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <arpa/inet.h>

#include "vpcdns/counters.h"
#include "vpcdns/dnstap_pb.h"
#include "vpcdns/log.h"
#include "vpcdns/qlog.h"

#define RING_DEFAULT_KIB 1024
#define WRITER_IDLE_NS 2000000L /* the writer's nap when every ring was empty */
#define SOCKET_RETRY_MS 1000    /* a dnstap socket that refused is tried again after this */
#define ALIGN 8
#define KIND_PAD 0
#define FRAME_MAX (VD_TCP_MAX + 512)
/* A route53 line: rdata text takes at most 6 characters a byte (\\DDD, its backslash
 * escaped in JSON) */
#define LINE_MAX_BYTES (6 * VD_TCP_MAX + 4096)

/* One entry in a ring; the message follows, and the whole is padded to ALIGN. */
typedef struct rec {
        uint32_t size; /* of the whole entry, a multiple of ALIGN */
        uint8_t kind;  /* KIND_PAD (skip to the ring's start) or VD_QLOG_* */
        uint8_t tcp;
        uint8_t family; /* AF_INET or AF_INET6 */
        uint8_t has_local;
        uint16_t port, local_port; /* host order */
        uint32_t len;              /* of the message */
        uint8_t addr[16], local_addr[16];
        int64_t sec;
        uint32_t nsec;
        uint32_t unused;
} rec;

struct vd_qlog_ring {
        _Atomic uint64_t head; /* bytes ever written: the worker's */
        char pad1[56];
        _Atomic uint64_t tail; /* bytes ever read: the writer's */
        char pad2[56];
        uint8_t *buf;
        size_t cap; /* a power of two */
        uint32_t sample_ppm;
};

struct vd_qlog {
        vd_config_qlog cfg;
        vd_qlog_ids ids;
        unsigned n_rings;
        vd_qlog_ring *rings;
        uv_thread_t thread;
        bool started;
        _Atomic bool stop;
        _Atomic bool reopen;
        unsigned stall_ms;
        /* A reload asks the writer to read the route53 ids again: the directories to read,
         * under ids_lock, and the flag the writer polls. */
        uv_mutex_t ids_lock;
        char **ids_dirs;
        size_t n_ids_dirs;
        char ids_vpc[64]; /* the key vpc for the next refresh, "" none */
        _Atomic bool ids_stale;
        /* the writer thread's */
        FILE *file;                 /* route53 */
        struct fstrm_writer *fstrm; /* dnstap */
        uint64_t socket_retry_at;   /* ms (uv_hrtime) */
        uint64_t unwritten;         /* entries the writer could not write (no socket) */
        uint8_t frame[FRAME_MAX];
        char line[LINE_MAX_BYTES];
        char stamp[32]; /* "YYYY-MM-DDTHH:MM:SS" of stamp_sec */
        size_t stamp_len;
        int64_t stamp_sec;
};

static size_t align_up(size_t n)
{
        return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

/* ---- the workers' side ----------------------------------------------------------------- */

bool vd_qlog_sampled(const vd_qlog_ring *r, const uint8_t *msg, size_t len, uint16_t port)
{
        uint32_t ppm = __atomic_load_n(&r->sample_ppm, __ATOMIC_RELAXED); /* a reload sets it */
        if (ppm >= VD_QLOG_SAMPLE_ALL)
                return true;
        if (ppm == 0 || len < 2)
                return false;
        uint32_t h = ((uint32_t)msg[0] << 8 | msg[1]) * 0x9E3779B1u ^ (uint32_t)port * 0x85EBCA6Bu;
        h ^= h >> 15;
        h *= 0x2C1B3C6Du;
        h ^= h >> 12;
        return h % VD_QLOG_SAMPLE_ALL < ppm;
}

void vd_qlog_set_sample(vd_qlog *q, unsigned sample_ppm)
{
        for (unsigned i = 0; q != NULL && i < q->n_rings; i++)
                __atomic_store_n(&q->rings[i].sample_ppm, (uint32_t)sample_ppm, __ATOMIC_RELAXED);
}

static void put_addr(const struct sockaddr *sa, uint8_t *family, uint8_t addr[16], uint16_t *port)
{
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
                *family = AF_INET6;
                memcpy(addr, &s6->sin6_addr, 16);
                *port = ntohs(s6->sin6_port);
        } else {
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
                *family = AF_INET;
                memcpy(addr, &s4->sin_addr, 4);
                *port = ntohs(s4->sin_port);
        }
}

void vd_qlog_put(vd_qlog_ring *r, unsigned kind, bool tcp, const struct sockaddr *peer,
                 const struct sockaddr *local, const uint8_t *msg, size_t len, uint64_t *dropped)
{
        size_t size = align_up(sizeof(rec) + len);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        size_t at = (size_t)(head & (r->cap - 1));
        size_t room = r->cap - at; /* contiguous up to the end */
        size_t pad = size > room ? room : 0;
        if (size + pad > r->cap - (size_t)(head - tail)) {
                vd_count_add(dropped, 1);
                return;
        }
        if (pad > 0) {
                rec *p = (rec *)(void *)(r->buf + at);
                p->size = (uint32_t)pad;
                p->kind = KIND_PAD;
                at = 0;
        }
        rec *e = (rec *)(void *)(r->buf + at);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e->size = (uint32_t)size;
        e->kind = (uint8_t)kind;
        e->tcp = tcp;
        put_addr(peer, &e->family, e->addr, &e->port);
        e->has_local = local != NULL && local->sa_family == peer->sa_family;
        if (e->has_local) {
                uint8_t family;
                put_addr(local, &family, e->local_addr, &e->local_port);
        }
        e->len = (uint32_t)len;
        e->sec = ts.tv_sec;
        e->nsec = (uint32_t)ts.tv_nsec;
        memcpy(e + 1, msg, len);
        atomic_store_explicit(&r->head, head + pad + size, memory_order_release);
}

/* ---- the writer: opening and closing ----------------------------------------------------- */

static bool is_socket(const vd_qlog *q)
{
        return strncmp(q->cfg.path, "unix:", 5) == 0;
}

static int open_dnstap(vd_qlog *q)
{
        static const char content_type[] = "protobuf:dnstap.Dnstap";
        struct fstrm_writer_options *wopt = fstrm_writer_options_init();
        fstrm_writer_options_add_content_type(wopt, content_type, sizeof(content_type) - 1);
        if (is_socket(q)) {
                struct fstrm_unix_writer_options *uopt = fstrm_unix_writer_options_init();
                fstrm_unix_writer_options_set_socket_path(uopt, q->cfg.path + 5);
                q->fstrm = fstrm_unix_writer_init(uopt, wopt);
                fstrm_unix_writer_options_destroy(&uopt);
        } else {
                struct fstrm_file_options *fopt = fstrm_file_options_init();
                fstrm_file_options_set_file_path(fopt, q->cfg.path);
                q->fstrm = fstrm_file_writer_init(fopt, wopt);
                fstrm_file_options_destroy(&fopt);
        }
        fstrm_writer_options_destroy(&wopt);
        if (q->fstrm != NULL && fstrm_writer_open(q->fstrm) != fstrm_res_success)
                fstrm_writer_destroy(&q->fstrm); /* sets it NULL */
        return q->fstrm != NULL ? 0 : -EIO;
}

static int log_open(vd_qlog *q)
{
        if (q->cfg.format == VD_QLOG_DNSTAP)
                return open_dnstap(q);
        q->file = fopen(q->cfg.path, "ae");
        if (q->file == NULL)
                return -errno;
        setvbuf(q->file, NULL, _IOFBF, 64 * 1024);
        return 0;
}

static void log_close(vd_qlog *q)
{
        if (q->fstrm != NULL) {
                fstrm_writer_close(q->fstrm);
                fstrm_writer_destroy(&q->fstrm);
        }
        if (q->file != NULL) {
                fclose(q->file);
                q->file = NULL;
        }
}

static uint64_t now_ms(void)
{
        return uv_hrtime() / 1000000;
}

static void log_reopen(vd_qlog *q)
{
        log_close(q);
        int r = log_open(q);
        if (r < 0)
                vd_log(VD_LOG_ERROR, "query_log_reopen_failed", "path=\"%s\" error=\"%s\"",
                       q->cfg.path, strerror(-r));
        else
                vd_log(VD_LOG_INFO, "query_log_reopened", "path=\"%s\"", q->cfg.path);
        q->socket_retry_at = now_ms() + SOCKET_RETRY_MS;
}

/* ---- the writer: formats ----------------------------------------------------------------- */

static void addr_text(const rec *e, const uint8_t *addr, char *out, size_t cap)
{
        (void)cap;
        vd_qlog_ip_text(e->family == AF_INET6 ? AF_INET6 : AF_INET, addr, out);
}

/* "ADDR:PORT" or "[ADDR]:PORT" into out (64 bytes; addr is at most INET6_ADDRSTRLEN, the
 * port 5 digits and a NUL). */
static void endpoint_text(bool v6, const char *addr, unsigned port, char out[64])
{
        size_t n = 0, a = strlen(addr);
        if (v6)
                out[n++] = '[';
        memcpy(out + n, addr, a);
        n += a;
        if (v6)
                out[n++] = ']';
        out[n++] = ':';
        vd_qlog_uint_text(port, out + n);
}

/* One line of the Route 53 Resolver query log for a response. */
static void write_route53(vd_qlog *q, const rec *e, const uint8_t *msg)
{
        char stamp[40], src[INET6_ADDRSTRLEN], local[INET6_ADDRSTRLEN], endpoint[64];
        if (e->sec != q->stamp_sec || q->stamp_len == 0) { /* a new second: gmtime once */
                struct tm tm;
                time_t sec = (time_t)e->sec;
                gmtime_r(&sec, &tm);
                q->stamp_len = strftime(q->stamp, sizeof(q->stamp), "%Y-%m-%dT%H:%M:%S", &tm);
                q->stamp_sec = e->sec;
        }
        unsigned ms = e->nsec / 1000000;
        memcpy(stamp, q->stamp, q->stamp_len);
        stamp[q->stamp_len] = '.';
        stamp[q->stamp_len + 1] = (char)('0' + ms / 100);
        stamp[q->stamp_len + 2] = (char)('0' + ms / 10 % 10);
        stamp[q->stamp_len + 3] = (char)('0' + ms % 10);
        memcpy(stamp + q->stamp_len + 4, "Z", 2);
        addr_text(e, e->addr, src, sizeof(src));
        if (e->has_local)
                addr_text(e, e->local_addr, local, sizeof(local));
        else
                snprintf(local, sizeof(local), "?");
        endpoint_text(e->family == AF_INET6, local, e->local_port, endpoint);
        vd_qlog_route53_meta m = {.account_id = q->ids.account_id,
                                  .region = q->ids.region,
                                  .vpc_id = q->ids.vpc_id,
                                  .timestamp = stamp,
                                  .srcaddr = src,
                                  .srcport = e->port,
                                  .tcp = e->tcp,
                                  .endpoint = endpoint};
        size_t len = vd_qlog_route53_format(msg, e->len, &m, q->line, sizeof(q->line));
        if (len > 0 && q->file != NULL)
                fwrite(q->line, 1, len, q->file);
}

static void write_dnstap(vd_qlog *q, const rec *e, const uint8_t *msg)
{
        if (q->fstrm == NULL && is_socket(q) && now_ms() >= q->socket_retry_at) {
                if (open_dnstap(q) < 0)
                        q->socket_retry_at = now_ms() + SOCKET_RETRY_MS;
        }
        if (q->fstrm == NULL) {
                q->unwritten++;
                return;
        }
        bool query = e->kind == VD_QLOG_QUERY || e->kind == VD_QLOG_FWD_QUERY;
        vd_dnstap_msg m = {
            .family = e->family == AF_INET6 ? VD_DNSTAP_INET6 : VD_DNSTAP_INET,
            .protocol = e->tcp ? VD_DNSTAP_TCP : VD_DNSTAP_UDP,
            .address_len = e->family == AF_INET6 ? 16 : 4,
        };
        if (e->kind == VD_QLOG_QUERY || e->kind == VD_QLOG_RESPONSE) {
                /* the client asked (query_*), we answered (response_*) */
                m.type = query ? VD_DNSTAP_CLIENT_QUERY : VD_DNSTAP_CLIENT_RESPONSE;
                m.query_address = e->addr;
                m.query_port = e->port;
                m.response_address = e->has_local ? e->local_addr : NULL;
                m.response_port = e->has_local ? e->local_port : 0;
        } else {
                /* we asked the upstream: it is the responder; our source is not known here */
                m.type = query ? VD_DNSTAP_FORWARDER_QUERY : VD_DNSTAP_FORWARDER_RESPONSE;
                m.response_address = e->addr;
                m.response_port = e->port;
        }
        if (query) {
                m.has_query_time = true;
                m.query_time_sec = (uint64_t)e->sec;
                m.query_time_nsec = e->nsec;
                m.query_message = msg;
                m.query_message_len = e->len;
        } else {
                m.has_response_time = true;
                m.response_time_sec = (uint64_t)e->sec;
                m.response_time_nsec = e->nsec;
                m.response_message = msg;
                m.response_message_len = e->len;
        }
        size_t n = vd_dnstap_encode(&m, "vpcdns", VD_VERSION, q->frame, sizeof(q->frame));
        if (n == 0)
                return;
        if (fstrm_writer_write(q->fstrm, q->frame, n) != fstrm_res_success && is_socket(q)) {
                /* the receiver went away: connect again later */
                fstrm_writer_destroy(&q->fstrm);
                q->socket_retry_at = now_ms() + SOCKET_RETRY_MS;
        }
}

/* ---- the writer thread ------------------------------------------------------------------- */

static size_t drain(vd_qlog *q, vd_qlog_ring *r)
{
        size_t n = 0;
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail < head) {
                const rec *e = (const rec *)(const void *)(r->buf + (tail & (r->cap - 1)));
                if (e->kind != KIND_PAD) {
                        const uint8_t *msg = (const uint8_t *)(e + 1);
                        if (q->cfg.format == VD_QLOG_DNSTAP)
                                write_dnstap(q, e, msg);
                        else if (e->kind == VD_QLOG_RESPONSE)
                                write_route53(q, e, msg);
                        n++;
                }
                tail += e->size;
                atomic_store_explicit(&r->tail, tail, memory_order_release);
        }
        return n;
}

static void free_dirs(char **dirs, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(dirs[i]);
        free(dirs);
}

/* On the writer thread (a background one): the JSON of a large capture takes a while to read,
 * and the writer is the only reader of q->ids, so nothing else needs a lock. */
static void refresh_ids(vd_qlog *q)
{
        uv_mutex_lock(&q->ids_lock);
        char **dirs = q->ids_dirs;
        size_t n = q->n_ids_dirs;
        q->ids_dirs = NULL;
        q->n_ids_dirs = 0;
        char vpc[sizeof(q->ids_vpc)];
        memcpy(vpc, q->ids_vpc, sizeof(vpc));
        uv_mutex_unlock(&q->ids_lock);
        vd_qlog_ids ids;
        vd_qlog_ids_read(dirs, n, vpc, &ids);
        q->ids = ids;
        free_dirs(dirs, n);
}

static void writer_main(void *arg)
{
        vd_qlog *q = arg;
        /* A busy core answers first: the writer falls behind and drops (counted), never the
         * worker. */
        vd_thread_background();
        for (;;) {
                bool stop = atomic_load(&q->stop);
                if (q->stall_ms > 0 && !stop) {
                        struct timespec nap = {.tv_sec = q->stall_ms / 1000,
                                               .tv_nsec = (long)(q->stall_ms % 1000) * 1000000};
                        nanosleep(&nap, NULL);
                }
                if (atomic_exchange(&q->reopen, false))
                        log_reopen(q);
                if (atomic_exchange(&q->ids_stale, false))
                        refresh_ids(q);
                size_t n = 0;
                for (unsigned i = 0; i < q->n_rings; i++)
                        n += drain(q, &q->rings[i]);
                if (n > 0 && q->file != NULL)
                        fflush(q->file);
                if (stop && n == 0)
                        break;
                if (n == 0) {
                        struct timespec nap = {.tv_sec = 0, .tv_nsec = WRITER_IDLE_NS};
                        nanosleep(&nap, NULL);
                }
        }
}

/* ---- life cycle -------------------------------------------------------------------------- */

static unsigned env_uint(const char *name, unsigned def, unsigned max)
{
        const char *v = getenv(name);
        if (v == NULL || *v == '\0')
                return def;
        unsigned long n = strtoul(v, NULL, 10);
        return n > max ? max : (unsigned)n;
}

int vd_qlog_new(const vd_config_qlog *cfg, const vd_qlog_ids *ids, unsigned n_rings, vd_qlog **out,
                vd_error *err)
{
        *out = NULL;
        vd_qlog *q = calloc(1, sizeof(*q));
        if (q == NULL)
                return vd_error_set(err, "query log: out of memory");
        q->cfg = *cfg;
        if (ids != NULL)
                q->ids = *ids;
        if (uv_mutex_init(&q->ids_lock) != 0) {
                free(q);
                return vd_error_set(err, "query log: cannot create a lock");
        }
        q->stall_ms = env_uint("VPCDNS_TEST_QLOG_STALL_MS", 0, 60000);
        size_t kib = env_uint("VPCDNS_TEST_QLOG_RING_KIB", RING_DEFAULT_KIB, 1u << 20);
        size_t cap = 4096;
        while (cap < kib * 1024)
                cap <<= 1;
        q->rings = calloc(n_rings, sizeof(q->rings[0]));
        if (q->rings == NULL) {
                uv_mutex_destroy(&q->ids_lock);
                free(q);
                return vd_error_set(err, "query log: out of memory");
        }
        q->n_rings = n_rings;
        for (unsigned i = 0; i < n_rings; i++) {
                q->rings[i].cap = cap;
                q->rings[i].sample_ppm = cfg->sample_ppm;
                q->rings[i].buf = malloc(cap);
                if (q->rings[i].buf == NULL) {
                        vd_qlog_free(q);
                        return vd_error_set(err, "query log: out of memory");
                }
        }
        int r = log_open(q);
        if (r < 0 && !is_socket(q)) {
                vd_error_set(err, "query log %s: %s", cfg->path,
                             r == -EIO ? "cannot write" : strerror(-r));
                vd_qlog_free(q);
                return r;
        }
        if (r < 0) /* a socket whose receiver is not there yet */
                vd_log(VD_LOG_WARN, "query_log_socket_waiting", "path=\"%s\"", cfg->path + 5);
        *out = q;
        return 0;
}

vd_qlog_ring *vd_qlog_ring_get(vd_qlog *q, unsigned index)
{
        return q != NULL && index < q->n_rings ? &q->rings[index] : NULL;
}

int vd_qlog_start(vd_qlog *q)
{
        int r = uv_thread_create(&q->thread, writer_main, q);
        q->started = r == 0;
        return r;
}

void vd_qlog_reopen(vd_qlog *q)
{
        if (q != NULL)
                atomic_store(&q->reopen, true);
}

void vd_qlog_refresh_ids(vd_qlog *q, char *const *dirs, size_t n_dirs, const char *vpc)
{
        if (q == NULL)
                return;
        char **copy = calloc(n_dirs > 0 ? n_dirs : 1, sizeof(*copy));
        if (copy == NULL)
                return;
        for (size_t i = 0; i < n_dirs; i++) {
                copy[i] = strdup(dirs[i]);
                if (copy[i] == NULL) {
                        free_dirs(copy, i);
                        return;
                }
        }
        uv_mutex_lock(&q->ids_lock);
        free_dirs(q->ids_dirs, q->n_ids_dirs);
        q->ids_dirs = copy;
        q->n_ids_dirs = n_dirs;
        snprintf(q->ids_vpc, sizeof(q->ids_vpc), "%s", vpc != NULL ? vpc : "");
        uv_mutex_unlock(&q->ids_lock);
        atomic_store(&q->ids_stale, true);
}

void vd_qlog_free(vd_qlog *q)
{
        if (q == NULL)
                return;
        if (q->started) {
                atomic_store(&q->stop, true);
                uv_thread_join(&q->thread);
        }
        if (q->unwritten > 0)
                vd_log(VD_LOG_WARN, "query_log_unwritten", "entries=%llu",
                       (unsigned long long)q->unwritten);
        log_close(q);
        for (unsigned i = 0; i < q->n_rings; i++)
                free(q->rings[i].buf);
        free(q->rings);
        free_dirs(q->ids_dirs, q->n_ids_dirs);
        uv_mutex_destroy(&q->ids_lock);
        free(q);
}

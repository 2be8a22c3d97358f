/* metrics.h — the HTTP endpoint (GET /metrics, /health, /ready) and the Prometheus text
 * exposition format (0.0.4) helpers that every module's metrics writer uses.
 *
 * The endpoint runs on its own thread (libmicrohttpd's internal polling thread), never on a
 * worker: a slow or hostile HTTP client costs that thread only. It is bounded: a few
 * connections, a per-connection timeout and a small per-connection memory limit; only GET of
 * the three paths is served (404 otherwise, 405 for another method on them). The handlers run
 * on the HTTP thread and must only read what workers publish with vd_count_read (counters.h)
 * or under a lock; they must never block on a worker.
 *
 * Exposition: a writer gets a vd_text (a growable byte buffer, below) and writes families with
 * vd_prom_family, then samples with vd_prom_sample*. Names are vpcdns_..., counters end in
 * _total, units are seconds and bytes. A scrape is a few hundred lines of short pieces, so the
 * buffer appends without stdio (no per-call lock, no format parsing) and formats numbers
 * itself. */
#ifndef VPCDNS_METRICS_H
#define VPCDNS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vpcdns/addr.h"
#include "vpcdns/common.h"

/* ---- the text buffer ------------------------------------------------------------------ */

/* A growable text buffer owned by one thread. Zero-initialised it is empty and valid. When
 * memory runs out it drops everything further and says so in failed: writers need not check
 * each append, the owner checks once at the end. data is NUL-terminated whenever it is not
 * NULL. */
typedef struct vd_text {
        char *data;
        size_t len, cap;
        bool failed;
} vd_text;

/* Makes room for n more bytes (and the NUL): true when there is room. */
bool vd_text_grow(vd_text *t, size_t n);
/* Marks t failed (a writer that could not make its part): later appends are dropped. */
void vd_text_fail(vd_text *t);
/* Frees the buffer; t is empty afterwards. */
void vd_text_free(vd_text *t);

/* Appends n bytes. */
static inline void vd_text_put(vd_text *t, const char *s, size_t n)
{
        if (t->cap - t->len <= n && !vd_text_grow(t, n))
                return;
        memcpy(t->data + t->len, s, n);
        t->len += n;
        t->data[t->len] = '\0';
}

/* Appends a NUL-terminated string. */
static inline void vd_text_puts(vd_text *t, const char *s)
{
        vd_text_put(t, s, strlen(s));
}

/* Appends one byte. */
static inline void vd_text_putc(vd_text *t, char c)
{
        if (t->cap - t->len <= 1 && !vd_text_grow(t, 1))
                return;
        t->data[t->len++] = c;
        t->data[t->len] = '\0';
}

/* Appends v in decimal. */
void vd_text_u64(vd_text *t, uint64_t v);
/* Appends ns / 1e9 as printf's "%.9f" writes it (seconds with nine decimals), without printf
 * while that is exact. */
void vd_text_seconds_ns(vd_text *t, uint64_t ns);
/* Appends v as printf's "%.17g" writes it: the digits that give v back exactly. */
void vd_text_double(vd_text *t, double v);

/* ---- the endpoint ------------------------------------------------------------------- */

/* What the endpoint serves; each callback runs on the HTTP thread. */
typedef struct vd_http_handlers {
        void *arg;
        /* Writes the whole /metrics body. */
        void (*metrics)(void *arg, vd_text *out);
        /* true when healthy (live); otherwise writes the reason into why. */
        bool (*health)(void *arg, char *why, size_t cap);
        /* true when ready for traffic; otherwise writes the reason into why. */
        bool (*ready)(void *arg, char *why, size_t cap);
} vd_http_handlers;

typedef struct vd_http vd_http;

/* Limits of the endpoint (a scraper and a couple of probes need little). */
#define VD_HTTP_MAX_CONNECTIONS 16   /* further connections are refused by the HTTP thread */
#define VD_HTTP_TIMEOUT_S 5          /* an idle or slow connection is closed after this */
#define VD_HTTP_MEMORY (32 * 1024)   /* per connection: a larger request header gets 431/413 */
#define VD_HTTP_PER_IP_CONNECTIONS 8 /* connections from one client address */

/* Binds addr and starts the HTTP thread. h is copied. 0, or a negative code with err set. The
 * socket has SO_REUSEPORT, so that a vpcdns started with --takeover can serve the same address
 * while this one hands over (beside: true; both answer probes until the old one stops);
 * otherwise an address that another socket holds is refused. */
int vd_http_start(const vd_addr *addr, const vd_http_handlers *h, bool beside, vd_http **out,
                  vd_error *err);
/* Stops the thread (waits for a request being answered) and frees everything. NULL is fine. */
void vd_http_stop(vd_http *h);

/* The /metrics body as the endpoint makes it (for tests): a malloc'd NUL-terminated string. */
char *vd_http_render_metrics(const vd_http_handlers *h, size_t *len);

/* ---- the exposition format ---------------------------------------------------------- */

#define VD_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram); help is escaped
 * (backslash and newline). */
void vd_prom_family(vd_text *out, const char *name, const char *type, const char *help);
/* A label value, escaped: backslash, double quote and newline. */
void vd_prom_label_value(vd_text *out, const char *value);
/* A counter's value in decimal (vd_text_u64). */
void vd_prom_u64(vd_text *out, uint64_t v);
/* "name value" or "name{key="value"} value" (one label, or none when key is NULL). */
void vd_prom_sample(vd_text *out, const char *name, const char *key, const char *value, uint64_t v);
/* The same with a value that is not a whole number ("%.17g", vd_text_double). */
void vd_prom_sample_double(vd_text *out, const char *name, const char *key, const char *value,
                           double v);
/* The standard process metrics, from /proc/self: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. What cannot be read is left out. */
void vd_prom_process(vd_text *out);

#endif

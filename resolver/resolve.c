/* resolve.c — the resolver layer between the query pipeline and the forwarder: answers from the
 * worker's cache, merges identical questions in flight into one upstream query (a "flight"),
 * serves stale entries (RFC 8767) when the upstream fails or is slow, and refreshes popular
 * entries before they expire (prefetch).
 *
 * It owns the in-flight table and one uv_timer_t per flight (the stale-answer timer). It does
 * not parse upstream bytes itself (the cache and vd_forward_relay do), and it never touches
 * the cache or the forwarder once vd_resolver_close has run: both may be gone by then.
 *
 * Lifetime of a flight: created with its vd_forwarder_resolve call, which holds a pointer to
 * it until its done callback runs (exactly once: answer, failure, or -ECANCELED when the
 * forwarder closes). It is freed once that callback has run AND its timer handle is closed;
 * whichever comes second frees it. Every waiter is answered exactly once: by the upstream
 * answer, the stale timer, or vd_resolver_close (len 0). The resolver itself is freed when
 * it is closed and its last flight is gone.
 *
 * Waiter lists are always detached before replies run, so a reply callback that closes the
 * resolver (or the forwarder) finds consistent state. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vpcdns/siphash.h"
#include "vpcdns/resolve.h"
#include "vpcdns/wire.h"

#define TABLE_BUCKETS 1024u /* power of two */
#define MAX_FLIGHTS 4096u   /* upstream queries in flight per resolver */
#define MAX_WAITERS 64u     /* questions merged into one flight; beyond: answered at once */

struct waiter {
        struct waiter *next;
        vd_query_info qi; /* qi.qname points at qname below */
        uint8_t qname[VD_NAME_MAX];
        size_t max_len;
        vd_reply_fn reply;
        void *arg;
};

struct flight {
        struct flight *hash_next; /* bucket chain while in the table */
        struct flight *close_next;
        vd_resolver *r;
        uint64_t hash;
        vd_query_info qi; /* the key question; qi.qname points at qname below */
        uint8_t qname[VD_NAME_MAX];
        struct waiter *waiters, *waiters_tail;
        size_t n_waiters;
        uv_timer_t stale_timer; /* data = this flight */
        bool in_table;
        bool upstream_done; /* the forwarder's done callback has run */
        bool timer_closing;
        bool timer_closed;
};

struct vd_resolver {
        uv_loop_t *loop;
        vd_forwarder *fwd;
        vd_cache *cache;
        vd_resolver_options opt;
        bool closed;
        size_t n_flights; /* allocated, not yet freed */
        size_t n_table;   /* in the table */
        uint64_t seed0, seed1;
        vd_resolver_counters counters;
        struct flight *table[TABLE_BUCKETS];
        uint8_t buf[VD_TCP_MAX]; /* response scratch, valid during one reply call */
};

void vd_resolver_options_default(vd_resolver_options *o)
{
        o->stale_max_s = 3600;
        o->stale_answer_ms = 1800;
        o->prefetch = true;
}

/* --- keys ------------------------------------------------------------------------------- */

/* The flight key: the cache's key (lower-cased name, type, class, DO) plus CD, whose answers
 * the cache does not share. */
static bool key_cd(const vd_query_info *qi)
{
        return (qi->flags & VD_FLAG_CD) != 0;
}

static uint64_t key_hash(const vd_resolver *r, const vd_query_info *qi)
{
        uint8_t key[VD_NAME_MAX + 5];
        memcpy(key, qi->qname_lower, qi->qname_len);
        vd_wire_put16(key + qi->qname_len, qi->qtype);
        vd_wire_put16(key + qi->qname_len + 2, qi->qclass);
        key[qi->qname_len + 4] = (uint8_t)((qi->edns_do ? 1 : 0) | (key_cd(qi) ? 2 : 0));
        return vd_siphash13(r->seed0, r->seed1, key, (size_t)qi->qname_len + 5);
}

static bool key_eq(const vd_query_info *a, const vd_query_info *b)
{
        return a->qname_len == b->qname_len && a->qtype == b->qtype && a->qclass == b->qclass &&
               a->edns_do == b->edns_do && key_cd(a) == key_cd(b) &&
               memcmp(a->qname_lower, b->qname_lower, a->qname_len) == 0;
}

/* --- the in-flight table ------------------------------------------------------------------ */

static struct flight *table_find(vd_resolver *r, uint64_t hash, const vd_query_info *qi)
{
        for (struct flight *f = r->table[hash & (TABLE_BUCKETS - 1)]; f != NULL; f = f->hash_next)
                if (f->hash == hash && key_eq(&f->qi, qi))
                        return f;
        return NULL;
}

static void table_insert(vd_resolver *r, struct flight *f)
{
        struct flight **bucket = &r->table[f->hash & (TABLE_BUCKETS - 1)];
        f->hash_next = *bucket;
        *bucket = f;
        f->in_table = true;
        r->n_table++;
}

static void table_remove(vd_resolver *r, struct flight *f)
{
        if (!f->in_table)
                return;
        struct flight **pp = &r->table[f->hash & (TABLE_BUCKETS - 1)];
        while (*pp != f)
                pp = &(*pp)->hash_next;
        *pp = f->hash_next;
        f->hash_next = NULL;
        f->in_table = false;
        r->n_table--;
}

/* Copies a question so that it outlives the client's packet. */
static void copy_question(vd_query_info *dst, uint8_t *qname_buf, const vd_query_info *src)
{
        *dst = *src;
        memcpy(qname_buf, src->qname, src->qname_len);
        dst->qname = qname_buf;
}

/* --- lifetime ------------------------------------------------------------------------------ */

static void flight_release(struct flight *f)
{
        if (!f->upstream_done || !f->timer_closed)
                return;
        vd_resolver *r = f->r;
        VD_CHECK(f->waiters == NULL && !f->in_table);
        free(f);
        r->n_flights--;
        if (r->closed && r->n_flights == 0)
                free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
        struct flight *f = h->data;
        f->timer_closed = true;
        flight_release(f);
}

static void flight_close_timer(struct flight *f)
{
        if (f->timer_closing)
                return;
        f->timer_closing = true;
        uv_close((uv_handle_t *)&f->stale_timer, on_timer_closed);
}

/* --- answering one waiter -------------------------------------------------------------------- */

static size_t limit_of(size_t max_len, size_t cap)
{
        return max_len < cap ? max_len : cap;
}

/* A stale answer for qi into out, or 0. Never after close (the cache may be gone). */
static size_t stale_answer(vd_resolver *r, const vd_query_info *qi, size_t max_len, uint8_t *out,
                           size_t cap)
{
        if (r->closed || r->cache == NULL || r->opt.stale_max_s == 0)
                return 0;
        return vd_cache_lookup_stale(r->cache, qi, uv_now(r->loop), r->opt.stale_max_s, max_len,
                                     out, cap);
}

/* Stale when there is one, else SERVFAIL. Returns the length (0: not even SERVFAIL fits). */
static size_t stale_or_servfail(vd_resolver *r, const vd_query_info *qi, size_t max_len,
                                uint8_t *out, size_t cap)
{
        size_t n = stale_answer(r, qi, max_len, out, cap);
        if (n > 0) {
                r->counters.stale_answers++;
                return n;
        }
        r->counters.servfails++;
        return vd_wire_error_response(qi, VD_RCODE_SERVFAIL, out, limit_of(max_len, cap));
}

/* Calls a waiter's reply with r->buf[0..len) and frees the waiter. */
static void waiter_finish(vd_resolver *r, struct waiter *w, size_t len)
{
        w->reply(w->arg, len > 0 ? r->buf : NULL, len);
        free(w);
}

/* Answers w from a finished upstream query: status 0 with the upstream's answer, or a
 * failure. An upstream SERVFAIL or REFUSED is a failure for serve-stale (RFC 8767 §4) but is
 * relayed when nothing stale exists. */
static void answer_waiter(vd_resolver *r, struct waiter *w, int status, const uint8_t *answer,
                          size_t len)
{
        if (r->closed) {
                waiter_finish(r, w, 0);
                return;
        }
        size_t n = 0;
        uint8_t rcode = status == 0 && len >= VD_HEADER_LEN ? (answer[3] & 0x0F) : 0;
        bool failed = status != 0 || len < VD_HEADER_LEN || rcode == VD_RCODE_SERVFAIL ||
                      rcode == VD_RCODE_REFUSED;
        if (failed) {
                n = stale_answer(r, &w->qi, w->max_len, r->buf, sizeof(r->buf));
                if (n > 0)
                        r->counters.stale_answers++;
        }
        if (n == 0 && status == 0 && len > 0) {
                n = vd_forward_relay(&w->qi, answer, len, w->max_len, r->buf, sizeof(r->buf));
                if (n > 0 && (r->buf[3] & 0x0F) == VD_RCODE_SERVFAIL)
                        r->counters.servfails++;
        }
        if (n == 0) {
                r->counters.servfails++;
                n = vd_wire_error_response(&w->qi, VD_RCODE_SERVFAIL, r->buf,
                                           limit_of(w->max_len, sizeof(r->buf)));
        }
        waiter_finish(r, w, n);
}

/* --- upstream and timer callbacks ------------------------------------------------------------ */

static void on_upstream(void *arg, int status, const uint8_t *answer, size_t len)
{
        struct flight *f = arg;
        vd_resolver *r = f->r;

        f->upstream_done = true;
        table_remove(r, f);
        if (!r->closed && r->cache != NULL && status == 0 && answer != NULL && len > 0)
                (void)vd_cache_store(r->cache, &f->qi, answer, len, uv_now(r->loop));

        struct waiter *w = f->waiters;
        f->waiters = f->waiters_tail = NULL;
        f->n_waiters = 0;
        while (w != NULL) {
                struct waiter *next = w->next;
                answer_waiter(r, w, status, answer, len);
                w = next;
        }
        flight_close_timer(f); /* also stops it */
        flight_release(f);
}

static void flight_add_waiter(struct flight *f, struct waiter *w)
{
        w->next = NULL;
        if (f->waiters_tail != NULL)
                f->waiters_tail->next = w;
        else
                f->waiters = w;
        f->waiters_tail = w;
        f->n_waiters++;
}

static void on_stale_timer(uv_timer_t *t)
{
        struct flight *f = t->data;
        vd_resolver *r = f->r;

        struct waiter *w = f->waiters;
        f->waiters = f->waiters_tail = NULL;
        f->n_waiters = 0;
        while (w != NULL) {
                struct waiter *next = w->next;
                size_t n = stale_answer(r, &w->qi, w->max_len, r->buf, sizeof(r->buf));
                if (n > 0) {
                        r->counters.stale_answers++;
                        waiter_finish(r, w, n);
                } else if (r->closed) {
                        waiter_finish(r, w, 0);
                } else { /* nothing stale for this one: it waits for the upstream */
                        flight_add_waiter(f, w);
                }
                w = next;
        }
}

/* Arms the stale timer for a waiter that just joined when it is idle and a stale entry
 * exists; scratch receives the probe's output. */
static void maybe_arm_stale_timer(vd_resolver *r, struct flight *f, const struct waiter *w,
                                  uint8_t *scratch, size_t cap)
{
        if (f->timer_closing || uv_is_active((uv_handle_t *)&f->stale_timer))
                return;
        if (stale_answer(r, &w->qi, w->max_len, scratch, cap) == 0)
                return;
        uv_timer_start(&f->stale_timer, on_stale_timer, r->opt.stale_answer_ms, 0);
}

/* --- queries -------------------------------------------------------------------------------- */

/* A flight for qi with its upstream query started, in the table; NULL when none can start
 * (*rc tells why). */
static struct flight *flight_start(vd_resolver *r, const vd_query_info *qi, uint64_t hash, int *rc)
{
        if (r->fwd == NULL) {
                *rc = -ENOENT;
                return NULL;
        }
        if (r->n_table >= MAX_FLIGHTS) {
                *rc = -EBUSY;
                return NULL;
        }
        struct flight *f = calloc(1, sizeof(*f));
        if (f == NULL) {
                *rc = -ENOMEM;
                return NULL;
        }
        f->r = r;
        f->hash = hash;
        copy_question(&f->qi, f->qname, qi);
        *rc = vd_forwarder_resolve(r->fwd, &f->qi, on_upstream, f);
        if (*rc != 0) { /* done will never be called; no handle yet */
                free(f);
                return NULL;
        }
        uv_timer_init(r->loop, &f->stale_timer);
        f->stale_timer.data = f;
        r->n_flights++;
        table_insert(r, f);
        return f;
}

static struct waiter *waiter_new(const vd_query_info *qi, size_t max_len, vd_reply_fn reply,
                                 void *arg)
{
        struct waiter *w = malloc(sizeof(*w));
        if (w == NULL)
                return NULL;
        w->next = NULL;
        copy_question(&w->qi, w->qname, qi);
        w->max_len = max_len;
        w->reply = reply;
        w->arg = arg;
        return w;
}

static void start_prefetch(vd_resolver *r, const vd_query_info *qi)
{
        uint64_t hash = key_hash(r, qi);
        if (table_find(r, hash, qi) != NULL)
                return; /* already being refreshed */
        int rc;
        if (flight_start(r, qi, hash, &rc) != NULL)
                r->counters.prefetches++;
}

/* Answers at once (REPLY): stale when there is one, else SERVFAIL. */
static vd_query_outcome reply_now(vd_resolver *r, const vd_query_info *qi, size_t max_len,
                                  uint8_t *out, size_t cap, size_t *out_len)
{
        size_t n = stale_or_servfail(r, qi, max_len, out, cap);
        if (n == 0)
                return VD_QUERY_DROP;
        *out_len = n;
        return VD_QUERY_REPLY;
}

bool vd_resolver_from_cache(vd_resolver *r, const vd_query_info *qi, size_t max_len, uint8_t *out,
                            size_t cap, size_t *out_len)
{
        if (r->closed || !qi->question_ok)
                return false;
        uint64_t now = uv_now(r->loop);

        if (r->cache != NULL) {
                /* (CD answers are never cached: nothing to refresh) */
                bool want_prefetch = r->opt.prefetch && r->fwd != NULL && !key_cd(qi);
                bool prefetch = false;
                size_t n = vd_cache_lookup_prefetch(r->cache, qi, now, max_len, out, cap,
                                                    want_prefetch ? &prefetch : NULL);
                if (n > 0 && (out[3] & 0x0F) == VD_RCODE_SERVFAIL) {
                        /* A SERVFAIL kept for a few seconds (RFC 9520): stale data first. */
                        size_t m = stale_answer(r, qi, max_len, out, cap);
                        if (m > 0) {
                                r->counters.stale_answers++;
                                *out_len = m;
                                return true;
                        }
                        n = vd_cache_lookup(r->cache, qi, now, max_len, out, cap);
                }
                if (n > 0) {
                        r->counters.cache_hits++;
                        if (prefetch)
                                start_prefetch(r, qi);
                        *out_len = n;
                        return true;
                }
        }
        return false;
}

vd_query_outcome vd_resolver_query_upstream(vd_resolver *r, const vd_query_info *qi, size_t max_len,
                                            uint8_t *out, size_t cap, size_t *out_len,
                                            vd_reply_fn reply, void *arg)
{
        if (r->closed || !qi->question_ok) {
                r->counters.servfails++;
                size_t n =
                    vd_wire_error_response(qi, VD_RCODE_SERVFAIL, out, limit_of(max_len, cap));
                if (n == 0)
                        return VD_QUERY_DROP;
                *out_len = n;
                return VD_QUERY_REPLY;
        }
        r->counters.cache_misses++;

        uint64_t hash = key_hash(r, qi);
        struct flight *f = table_find(r, hash, qi);
        if (f != NULL && f->n_waiters >= MAX_WAITERS)
                return reply_now(r, qi, max_len, out, cap, out_len);
        struct waiter *w = waiter_new(qi, max_len, reply, arg);
        if (w == NULL)
                return reply_now(r, qi, max_len, out, cap, out_len);
        if (f != NULL) {
                r->counters.merged++;
        } else {
                int rc;
                f = flight_start(r, qi, hash, &rc);
                if (f == NULL) { /* -EBUSY (budget), -ENOENT, ...: answered now */
                        free(w);
                        return reply_now(r, qi, max_len, out, cap, out_len);
                }
        }
        flight_add_waiter(f, w);
        maybe_arm_stale_timer(r, f, w, out, cap);
        return VD_QUERY_PENDING;
}

vd_query_outcome vd_resolver_query(vd_resolver *r, const vd_query_info *qi, size_t max_len,
                                   uint8_t *out, size_t cap, size_t *out_len, vd_reply_fn reply,
                                   void *arg)
{
        if (vd_resolver_from_cache(r, qi, max_len, out, cap, out_len))
                return VD_QUERY_REPLY;
        return vd_resolver_query_upstream(r, qi, max_len, out, cap, out_len, reply, arg);
}

int vd_resolver_new(uv_loop_t *loop, vd_forwarder *fwd, vd_cache *cache,
                    const vd_resolver_options *o, vd_resolver **out)
{
        if (loop == NULL || out == NULL)
                return -EINVAL;
        vd_resolver *r = calloc(1, sizeof(*r));
        if (r == NULL)
                return -ENOMEM;
        r->loop = loop;
        r->fwd = fwd;
        r->cache = cache;
        if (o != NULL)
                r->opt = *o;
        else
                vd_resolver_options_default(&r->opt);
        uint64_t seed[2];
        vd_siphash_new_key(seed);
        r->seed0 = seed[0];
        r->seed1 = seed[1];
        *out = r;
        return 0;
}

void vd_resolver_close(vd_resolver *r)
{
        if (r == NULL || r->closed)
                return;
        r->closed = true;

        /* Take every flight out of the table first: replies below may re-enter. */
        struct flight *list = NULL;
        for (size_t b = 0; b < TABLE_BUCKETS; b++) {
                while (r->table[b] != NULL) {
                        struct flight *f = r->table[b];
                        table_remove(r, f);
                        f->close_next = list;
                        list = f;
                }
        }
        /* Flights stay allocated (their upstream callback is still owed) and none is freed
         * before its timer's close callback, which never runs inside this call. */
        for (struct flight *f = list; f != NULL; f = f->close_next) {
                struct waiter *w = f->waiters;
                f->waiters = f->waiters_tail = NULL;
                f->n_waiters = 0;
                while (w != NULL) {
                        struct waiter *next = w->next;
                        waiter_finish(r, w, 0);
                        w = next;
                }
                flight_close_timer(f);
        }
        if (r->n_flights == 0)
                free(r);
}

void vd_resolver_counters_get(const vd_resolver *r, vd_resolver_counters *out)
{
        *out = r->counters;
}

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
 * resolver (or the forwarder) finds consistent state.
 *
 * Across workers (vd_resolver_options.inflight): the process-wide registry maps each key to
 * the one flight that queries the upstream for it (the owner). A resolver whose key is already
 * owned elsewhere creates its local flight as a subscriber: it joins the owner's list instead
 * of calling the forwarder, and keeps its own waiters and stale timer. When the owner's
 * upstream answers or fails, the owner stores the answer in the cache once, then, under the
 * registry stripe's lock, takes itself out of the registry and hands the status and a
 * refcounted copy of the answer to every subscriber through the subscriber resolver's inbox
 * (a mutex-protected list and a uv_async_t); the subscriber's loop then answers its waiters as
 * from its own upstream query. Closing takes every subscriber flight out of its owner's list
 * and every owned flight out of the registry (its subscribers get -ECANCELED), both under the
 * stripe locks, then refuses and drains the inbox: after that no other thread holds a pointer
 * into this resolver. Lock order: a registry stripe, then an inbox. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vpcdns/counters.h"
#include "vpcdns/siphash.h"
#include "vpcdns/stats.h"
#include "vpcdns/resolve.h"
#include "vpcdns/wire.h"

#define TABLE_BUCKETS 1024u /* power of two */
#define MAX_FLIGHTS 4096u   /* upstream queries in flight per resolver */
#define MAX_WAITERS 64u     /* questions merged into one flight; beyond: answered at once */
#define STRIPES 64u         /* registry locks; power of two */
#define STRIPE_BUCKETS 64u  /* hash chains per stripe; power of two */

/* An upstream answer handed to subscribers on other threads; freed by the last reference. */
struct shared_answer {
        atomic_size_t refs;
        size_t len;
        uint8_t data[];
};

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
        bool upstream_done; /* the forwarder's done callback (or the owner's delivery) ran */
        bool timer_closing;
        bool timer_closed;
        bool remote; /* a subscriber: no upstream query of its own */

        /* Under the registry stripe's lock: */
        bool in_registry;        /* the owner of its key process-wide */
        struct flight *reg_next; /* owner: the stripe's chain */
        struct flight *subs;     /* owner: subscriber flights of other resolvers */
        struct flight *sub_next; /* subscriber: the next one in its owner's list */
        struct flight *owner;    /* subscriber: the owner until it delivers or we leave */
        /* Set by the owner's thread before the flight enters its resolver's inbox (whose lock
         * publishes them): */
        struct flight *inbox_next;
        int delivered_status;
        struct shared_answer *delivered;
};

struct stripe {
        _Alignas(64) uv_mutex_t lock;
        struct flight *buckets[STRIPE_BUCKETS];
};

struct vd_inflight {
        uint64_t seed0, seed1;
        struct stripe stripes[STRIPES];
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

        vd_inflight *inflight;  /* borrowed; NULL: merging within this resolver only */
        uv_async_t inbox_async; /* data = this resolver; referenced while n_remote > 0 */
        bool async_ready;
        bool async_closed;
        size_t n_remote;       /* subscriber flights still waiting for their owner */
        uv_mutex_t inbox_lock; /* guards inbox and inbox_closed */
        struct flight *inbox, *inbox_tail;
        bool inbox_closed;
        uint8_t buf[VD_TCP_MAX]; /* response scratch, valid during one reply call */
};

void vd_resolver_options_default(vd_resolver_options *o)
{
        o->stale_max_s = 3600;
        o->stale_answer_ms = 1800;
        o->prefetch = true;
        o->inflight = NULL;
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

/* --- the process-wide registry (every function here runs under the stripe's lock) ---------- */

static struct stripe *stripe_of(vd_inflight *t, uint64_t hash)
{
        return &t->stripes[(hash >> 40) & (STRIPES - 1)];
}

static struct flight **registry_bucket(struct stripe *st, uint64_t hash)
{
        return &st->buckets[(hash >> 20) & (STRIPE_BUCKETS - 1)];
}

static struct flight *registry_find(struct stripe *st, uint64_t hash, const vd_query_info *qi)
{
        for (struct flight *f = *registry_bucket(st, hash); f != NULL; f = f->reg_next)
                if (f->hash == hash && key_eq(&f->qi, qi))
                        return f;
        return NULL;
}

static void registry_insert(struct stripe *st, struct flight *f)
{
        struct flight **bucket = registry_bucket(st, f->hash);
        f->reg_next = *bucket;
        *bucket = f;
        f->in_registry = true;
}

static void registry_remove(struct stripe *st, struct flight *f)
{
        struct flight **pp = registry_bucket(st, f->hash);
        while (*pp != f)
                pp = &(*pp)->reg_next;
        *pp = f->reg_next;
        f->reg_next = NULL;
        f->in_registry = false;
}

static void subscribe(struct flight *owner, struct flight *f)
{
        f->remote = true;
        f->owner = owner;
        f->sub_next = owner->subs;
        owner->subs = f;
}

static void unsubscribe(struct flight *f)
{
        struct flight **pp = &f->owner->subs;
        while (*pp != f)
                pp = &(*pp)->sub_next;
        *pp = f->sub_next;
        f->sub_next = NULL;
        f->owner = NULL;
}

static struct shared_answer *answer_ref(struct shared_answer *a)
{
        if (a != NULL)
                atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
        return a;
}

static void answer_unref(struct shared_answer *a)
{
        if (a != NULL && atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
                free(a);
}

/* Hands the owner's outcome to subscriber f through its resolver's inbox. Under the stripe's
 * lock, which keeps f's resolver alive: it leaves every owner's list under the same lock
 * before it refuses its inbox. */
static void deliver(struct flight *f, int status, struct shared_answer *answer)
{
        vd_resolver *r = f->r;
        f->owner = NULL;
        f->sub_next = NULL;
        f->delivered_status = status;
        f->delivered = answer_ref(answer);
        f->inbox_next = NULL;
        uv_mutex_lock(&r->inbox_lock);
        bool closed = r->inbox_closed; /* cannot be: see vd_resolver_close */
        if (!closed) {
                if (r->inbox_tail != NULL)
                        r->inbox_tail->inbox_next = f;
                else
                        r->inbox = f;
                r->inbox_tail = f;
        }
        uv_mutex_unlock(&r->inbox_lock);
        if (closed) {
                answer_unref(f->delivered);
                f->delivered = NULL;
                return;
        }
        uv_async_send(&r->inbox_async);
}

/* An owner's upstream query is over: takes it out of the registry and hands status and answer
 * to every subscriber. Nothing to do for a flight that owns nothing (no registry, or already
 * taken out by vd_resolver_close). */
static void owner_finish(vd_resolver *r, struct flight *f, int status, const uint8_t *answer,
                         size_t len)
{
        if (r->inflight == NULL)
                return;
        struct shared_answer *copy = NULL;
        if (status == 0 && answer != NULL && len > 0) {
                copy = malloc(sizeof(*copy) + len);
                if (copy != NULL) {
                        atomic_init(&copy->refs, 1);
                        copy->len = len;
                        memcpy(copy->data, answer, len);
                }
        }
        struct stripe *st = stripe_of(r->inflight, f->hash);
        uv_mutex_lock(&st->lock);
        if (f->in_registry) {
                registry_remove(st, f);
                struct flight *sub = f->subs;
                f->subs = NULL;
                while (sub != NULL) {
                        struct flight *next = sub->sub_next;
                        deliver(sub, copy != NULL || status != 0 ? status : -ENOMEM, copy);
                        sub = next;
                }
        }
        uv_mutex_unlock(&st->lock);
        answer_unref(copy);
}

/* Copies a question so that it outlives the client's packet. */
static void copy_question(vd_query_info *dst, uint8_t *qname_buf, const vd_query_info *src)
{
        *dst = *src;
        memcpy(qname_buf, src->qname, src->qname_len);
        dst->qname = qname_buf;
}

/* --- lifetime ------------------------------------------------------------------------------ */

static void resolver_maybe_free(vd_resolver *r)
{
        if (!r->closed || r->n_flights > 0 || (r->async_ready && !r->async_closed))
                return;
        if (r->async_ready)
                uv_mutex_destroy(&r->inbox_lock);
        free(r);
}

static void flight_release(struct flight *f)
{
        if (!f->upstream_done || !f->timer_closed)
                return;
        vd_resolver *r = f->r;
        VD_CHECK(f->waiters == NULL && !f->in_table && !f->in_registry && f->subs == NULL &&
                 f->owner == NULL);
        free(f);
        r->n_flights--;
        resolver_maybe_free(r);
}

/* A subscriber flight no longer waits for its owner. */
static void remote_done(vd_resolver *r)
{
        if (--r->n_remote == 0 && !r->closed)
                uv_unref((uv_handle_t *)&r->inbox_async);
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
                vd_count_add(&r->counters.stale_answers, 1);
                return n;
        }
        vd_count_add(&r->counters.servfails, 1);
        return vd_wire_error_response(qi, VD_RCODE_SERVFAIL, out, limit_of(max_len, cap));
}

/* Calls a waiter's reply with r->buf[0..len) and frees the waiter. */
static void waiter_finish(vd_resolver *r, struct waiter *w, size_t len, vd_stats_source source)
{
        w->reply(w->arg, len > 0 ? r->buf : NULL, len, source);
        free(w);
}

/* Answers w from a finished upstream query: status 0 with the upstream's answer, or a
 * failure. An upstream SERVFAIL or REFUSED is a failure for serve-stale (RFC 8767 §4) but is
 * relayed when nothing stale exists. */
static void answer_waiter(vd_resolver *r, struct waiter *w, int status, const uint8_t *answer,
                          size_t len)
{
        if (r->closed) {
                waiter_finish(r, w, 0, VD_STATS_SOURCE_ERROR);
                return;
        }
        size_t n = 0;
        uint8_t rcode = status == 0 && len >= VD_HEADER_LEN ? (answer[3] & 0x0F) : 0;
        bool failed = status != 0 || len < VD_HEADER_LEN || rcode == VD_RCODE_SERVFAIL ||
                      rcode == VD_RCODE_REFUSED;
        /* -EAGAIN from an owner that found the answer in the cache (see flight_start) */
        if (status == -EAGAIN &&
            vd_resolver_from_cache(r, &w->qi, w->max_len, r->buf, sizeof(r->buf), &n)) {
                waiter_finish(r, w, n, VD_STATS_SOURCE_CACHE);
                return;
        }
        if (failed) {
                n = stale_answer(r, &w->qi, w->max_len, r->buf, sizeof(r->buf));
                if (n > 0) {
                        vd_count_add(&r->counters.stale_answers, 1);
                        waiter_finish(r, w, n, VD_STATS_SOURCE_STALE);
                        return;
                }
        }
        if (status == 0 && len > 0) {
                n = vd_forward_relay(&w->qi, answer, len, w->max_len, r->buf, sizeof(r->buf));
                if (n > 0 && (r->buf[3] & 0x0F) == VD_RCODE_SERVFAIL)
                        vd_count_add(&r->counters.servfails, 1);
                if (n > 0) {
                        waiter_finish(r, w, n, VD_STATS_SOURCE_UPSTREAM);
                        return;
                }
        }
        vd_count_add(&r->counters.servfails, 1);
        n = vd_wire_error_response(&w->qi, VD_RCODE_SERVFAIL, r->buf,
                                   limit_of(w->max_len, sizeof(r->buf)));
        waiter_finish(r, w, n, VD_STATS_SOURCE_ERROR);
}

/* --- upstream and timer callbacks ------------------------------------------------------------ */

/* The upstream query of f (its own, or its owner's for a subscriber) is over: answers every
 * waiter and lets the flight go. */
static void flight_complete(vd_resolver *r, struct flight *f, int status, const uint8_t *answer,
                            size_t len)
{
        f->upstream_done = true;
        table_remove(r, f);

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

static void on_upstream(void *arg, int status, const uint8_t *answer, size_t len)
{
        struct flight *f = arg;
        vd_resolver *r = f->r;

        /* Stored before the subscribers hear of it, so that their next lookups hit. */
        if (!r->closed && r->cache != NULL && status == 0 && answer != NULL && len > 0)
                (void)vd_cache_store(r->cache, &f->qi, answer, len, uv_now(r->loop));
        owner_finish(r, f, status, answer, len);
        flight_complete(r, f, status, answer, len);
}

/* Subscriber flights whose owner delivered, one at a time (a reply may close the resolver,
 * which then drains what is left). */
static void on_inbox(uv_async_t *a)
{
        vd_resolver *r = a->data;
        while (!r->closed) {
                uv_mutex_lock(&r->inbox_lock);
                struct flight *f = r->inbox;
                if (f != NULL) {
                        r->inbox = f->inbox_next;
                        if (r->inbox == NULL)
                                r->inbox_tail = NULL;
                }
                uv_mutex_unlock(&r->inbox_lock);
                if (f == NULL)
                        return;
                struct shared_answer *answer = f->delivered;
                f->delivered = NULL;
                remote_done(r);
                flight_complete(r, f, f->delivered_status, answer != NULL ? answer->data : NULL,
                                answer != NULL ? answer->len : 0);
                answer_unref(answer);
        }
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
                        vd_count_add(&r->counters.stale_answers, 1);
                        waiter_finish(r, w, n, VD_STATS_SOURCE_STALE);
                } else if (r->closed) {
                        waiter_finish(r, w, 0, VD_STATS_SOURCE_ERROR);
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

/* Where a question that missed the cache may still be answered from it (see flight_start). */
struct recheck {
        size_t max_len;
        uint8_t *out;
        size_t cap;
        size_t *out_len;
};

/* A flight for qi in the table: the owner of qi's key with its upstream query started, or
 * (when another resolver owns the key and join is set) a subscriber to that owner. NULL when
 * none can start (*rc tells why: -EALREADY when the key is owned elsewhere and join is not
 * set; -EEXIST when the answer was found in the cache after all: in recheck->out).
 *
 * The caller's cache miss came before this registration, and another resolver's query for
 * the key may have finished in between; since an owner stores its answer before it leaves
 * the registry, the cache asked again once registered has that answer. Then no query is
 * sent, and questions that joined this registration meanwhile are told (-EAGAIN) to look in
 * the cache too. */
static struct flight *flight_start(vd_resolver *r, const vd_query_info *qi, uint64_t hash,
                                   bool join, const struct recheck *recheck, int *rc)
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
        if (r->inflight != NULL) {
                struct stripe *st = stripe_of(r->inflight, hash);
                uv_mutex_lock(&st->lock);
                struct flight *owner = registry_find(st, hash, qi);
                if (owner == NULL)
                        registry_insert(st, f);
                else if (join)
                        subscribe(owner, f);
                uv_mutex_unlock(&st->lock);
                if (owner != NULL && !join) {
                        free(f);
                        *rc = -EALREADY;
                        return NULL;
                }
        }
        if (!f->remote && r->inflight != NULL && recheck != NULL &&
            vd_resolver_from_cache(r, qi, recheck->max_len, recheck->out, recheck->cap,
                                   recheck->out_len)) {
                owner_finish(r, f, -EAGAIN, NULL, 0);
                free(f);
                *rc = -EEXIST;
                return NULL;
        }
        if (!f->remote) {
                *rc = vd_forwarder_resolve(r->fwd, &f->qi, on_upstream, f);
                if (*rc != 0) { /* done will never be called; no handle yet */
                        owner_finish(r, f, *rc, NULL, 0); /* subscribers that came meanwhile */
                        free(f);
                        return NULL;
                }
        } else if (r->n_remote++ == 0) {
                uv_ref((uv_handle_t *)&r->inbox_async); /* the loop waits for the delivery */
        }
        uv_timer_init(r->loop, &f->stale_timer);
        f->stale_timer.data = f;
        r->n_flights++;
        table_insert(r, f);
        *rc = 0;
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
        int rc;         /* (a key in flight on another worker is being refreshed already) */
        if (flight_start(r, qi, hash, false, NULL, &rc) != NULL)
                vd_count_add(&r->counters.prefetches, 1);
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
                                vd_count_add(&r->counters.stale_answers, 1);
                                *out_len = m;
                                return true;
                        }
                        n = vd_cache_lookup(r->cache, qi, now, max_len, out, cap);
                }
                if (n > 0) {
                        vd_count_add(&r->counters.cache_hits, 1);
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
                vd_count_add(&r->counters.servfails, 1);
                size_t n =
                    vd_wire_error_response(qi, VD_RCODE_SERVFAIL, out, limit_of(max_len, cap));
                if (n == 0)
                        return VD_QUERY_DROP;
                *out_len = n;
                return VD_QUERY_REPLY;
        }
        vd_count_add(&r->counters.cache_misses, 1);

        uint64_t hash = key_hash(r, qi);
        struct flight *f = table_find(r, hash, qi);
        if (f != NULL && f->n_waiters >= MAX_WAITERS)
                return reply_now(r, qi, max_len, out, cap, out_len);
        struct waiter *w = waiter_new(qi, max_len, reply, arg);
        if (w == NULL)
                return reply_now(r, qi, max_len, out, cap, out_len);
        if (f != NULL) {
                vd_count_add(&r->counters.merged, 1);
        } else {
                int rc;
                struct recheck recheck = {max_len, out, cap, out_len};
                f = flight_start(r, qi, hash, true, &recheck, &rc);
                if (f == NULL && rc == -EEXIST) { /* in the cache after all */
                        free(w);
                        vd_count_add(&r->counters.cache_misses, (uint64_t)-1);
                        return VD_QUERY_REPLY;
                }
                if (f == NULL) { /* -EBUSY (budget), -ENOENT, ...: answered now */
                        free(w);
                        return reply_now(r, qi, max_len, out, cap, out_len);
                }
                if (f->remote) /* joined another worker's query */
                        vd_count_add(&r->counters.merged, 1);
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
        r->inflight = r->opt.inflight;
        if (r->inflight != NULL) {
                /* One hash for the local table and the registry. */
                r->seed0 = r->inflight->seed0;
                r->seed1 = r->inflight->seed1;
                int rc = uv_mutex_init(&r->inbox_lock);
                if (rc == 0) {
                        rc = uv_async_init(loop, &r->inbox_async, on_inbox);
                        if (rc != 0)
                                uv_mutex_destroy(&r->inbox_lock);
                }
                if (rc != 0) {
                        free(r);
                        return rc;
                }
                r->inbox_async.data = r;
                r->async_ready = true;
                uv_unref((uv_handle_t *)&r->inbox_async); /* referenced while subscribed */
        } else {
                uint64_t seed[2];
                vd_siphash_new_key(seed);
                r->seed0 = seed[0];
                r->seed1 = seed[1];
        }
        *out = r;
        return 0;
}

static void on_async_closed(uv_handle_t *h)
{
        vd_resolver *r = h->data;
        r->async_closed = true;
        resolver_maybe_free(r);
}

/* Leaves the registry for good (see the top of this file): subscribers leave their owners,
 * owned keys leave the registry and their subscribers get -ECANCELED, then the inbox is
 * refused and drained. list holds every flight that was in the table. */
static void leave_registry(vd_resolver *r, struct flight *list)
{
        for (struct flight *f = list; f != NULL; f = f->close_next) {
                struct stripe *st = stripe_of(r->inflight, f->hash);
                uv_mutex_lock(&st->lock);
                if (f->remote && f->owner != NULL) {
                        unsubscribe(f);
                        f->upstream_done = true; /* nothing will be delivered */
                        r->n_remote--;
                } else if (f->in_registry) {
                        registry_remove(st, f);
                        struct flight *sub = f->subs;
                        f->subs = NULL;
                        while (sub != NULL) {
                                struct flight *next = sub->sub_next;
                                deliver(sub, -ECANCELED, NULL);
                                sub = next;
                        }
                }
                uv_mutex_unlock(&st->lock);
        }
        uv_mutex_lock(&r->inbox_lock);
        r->inbox_closed = true;
        struct flight *f = r->inbox;
        r->inbox = r->inbox_tail = NULL;
        uv_mutex_unlock(&r->inbox_lock);
        while (f != NULL) { /* delivered, not yet seen: the waiters get len 0 below */
                struct flight *next = f->inbox_next;
                answer_unref(f->delivered);
                f->delivered = NULL;
                f->upstream_done = true;
                r->n_remote--;
                f = next;
        }
        uv_close((uv_handle_t *)&r->inbox_async, on_async_closed);
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
        if (r->inflight != NULL)
                leave_registry(r, list);
        /* Flights stay allocated (their upstream callback is still owed) and none is freed
         * before its timer's close callback, which never runs inside this call. */
        for (struct flight *f = list; f != NULL; f = f->close_next) {
                struct waiter *w = f->waiters;
                f->waiters = f->waiters_tail = NULL;
                f->n_waiters = 0;
                while (w != NULL) {
                        struct waiter *next = w->next;
                        waiter_finish(r, w, 0, VD_STATS_SOURCE_ERROR);
                        w = next;
                }
                flight_close_timer(f);
        }
        resolver_maybe_free(r);
}

int vd_inflight_new(vd_inflight **out)
{
        vd_inflight *t = aligned_alloc(_Alignof(vd_inflight), sizeof(*t));
        if (t == NULL)
                return -ENOMEM;
        memset(t, 0, sizeof(*t));
        for (size_t i = 0; i < STRIPES; i++) {
                int rc = uv_mutex_init(&t->stripes[i].lock);
                if (rc != 0) {
                        while (i-- > 0)
                                uv_mutex_destroy(&t->stripes[i].lock);
                        free(t);
                        return rc;
                }
        }
        uint64_t seed[2];
        vd_siphash_new_key(seed);
        t->seed0 = seed[0];
        t->seed1 = seed[1];
        *out = t;
        return 0;
}

void vd_inflight_free(vd_inflight *t)
{
        if (t == NULL)
                return;
        for (size_t i = 0; i < STRIPES; i++)
                uv_mutex_destroy(&t->stripes[i].lock);
        free(t);
}

/* Any thread, while the resolver's loop runs: each counter has one writer (vd_count_add). */
void vd_resolver_counters_get(const vd_resolver *r, vd_resolver_counters *out)
{
        out->cache_hits = vd_count_read(&r->counters.cache_hits);
        out->cache_misses = vd_count_read(&r->counters.cache_misses);
        out->stale_answers = vd_count_read(&r->counters.stale_answers);
        out->merged = vd_count_read(&r->counters.merged);
        out->prefetches = vd_count_read(&r->counters.prefetches);
        out->servfails = vd_count_read(&r->counters.servfails);
}

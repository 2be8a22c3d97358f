/* forward_select.h — which upstream server gets the next send: per-server health (smoothed RTT,
 * consecutive failures, dead with a doubling backoff, background probes), token buckets for
 * max_qps, and the choice among the servers of a query's list. Used by the forwarder
 * (resolver/forward*.c) only; public so that its policy can be tested on a fake clock.
 *
 * Pure logic: no I/O, no allocation, no clock and no randomness of its own. Every call that
 * depends on time takes now_ms from the caller's clock (the forwarder passes its loop's time;
 * tests pass a fake clock), and the choice takes a random value from the caller. */
#ifndef VPCDNS_FORWARD_SELECT_H
#define VPCDNS_FORWARD_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VD_FWD_DEAD_AFTER_FAILS 3u   /* consecutive failures (errors or per-try timeouts) */
#define VD_FWD_BACKOFF_MIN_MS 1000u  /* a dead server is probed after this, doubling */
#define VD_FWD_BACKOFF_MAX_MS 60000u /* up to this */
#define VD_FWD_TRY_MIN_MS 200u       /* per-try timeout: max(3 × smoothed RTT, this) */
#define VD_FWD_TRY_MAX_MS 1000u      /* capped here (and by the budget) */

/* ---- health -------------------------------------------------------------------------- */

typedef struct vd_fwd_health {
        uint32_t srtt_us;
        bool rtt_known;
        unsigned fails; /* consecutive */
        bool dead;
        bool probing; /* a probe is in flight */
        uint64_t probe_at_ms;
        unsigned backoff_ms;
} vd_fwd_health;

void vd_fwd_health_init(vd_fwd_health *h);
/* The server answered (any rcode) after rtt_us: it is alive. */
void vd_fwd_health_answered(vd_fwd_health *h, uint64_t rtt_us);
/* A send failed (error, or no answer within its per-try time). was_probe: it was a probe. */
void vd_fwd_health_failed(vd_fwd_health *h, bool was_probe, uint64_t now_ms);
/* Failed since its last answer (dead or not yet): ranked after healthy servers, never picked
 * at random, probed in the background. */
bool vd_fwd_health_failing(const vd_fwd_health *h);
/* A failing server due a probe now (none in flight, its backoff over). */
bool vd_fwd_health_probe_due(const vd_fwd_health *h, uint64_t now_ms);
/* A probe went out: the next one is due one backoff later. */
void vd_fwd_health_probe_sent(vd_fwd_health *h, uint64_t now_ms);
/* A probe ended without telling anything (cancelled). */
void vd_fwd_health_probe_gone(vd_fwd_health *h);
/* How long a send to this server waits before the query moves on. */
unsigned vd_fwd_health_try_ms(const vd_fwd_health *h);

/* ---- token buckets ------------------------------------------------------------------- */

/* max_qps queries per second with a burst of max(max_qps / 10, 1); counted in milli-tokens. */
typedef struct vd_fwd_bucket {
        uint64_t tokens;
        uint64_t at_ms;
} vd_fwd_bucket;

/* A full bucket at now_ms. */
void vd_fwd_bucket_init(vd_fwd_bucket *b, unsigned max_qps, uint64_t now_ms);
/* Refills up to now_ms; true when a whole token is there. max_qps 0: always true. */
bool vd_fwd_bucket_has(vd_fwd_bucket *b, unsigned max_qps, uint64_t now_ms);
/* As vd_fwd_bucket_has, and takes the token when there is one. */
bool vd_fwd_bucket_take(vd_fwd_bucket *b, unsigned max_qps, uint64_t now_ms);

/* ---- choice -------------------------------------------------------------------------- */

typedef struct vd_fwd_candidate {
        const vd_fwd_health *health;
        unsigned tries; /* sends of this query to it so far */
        bool usable;    /* within its budget and not ruled out for this send */
} vd_fwd_candidate;

/* The index of the server for the next send, or -1 when no candidate is usable. Order: alive
 * before dead, healthy before failing, fewest sends of this query, best RTT (unmeasured
 * first, so that every server gets measured); among those within 1.5 × the best RTT + 5 ms,
 * random picks one. explore: any RTT counts as close (so that a server measured slow once is
 * measured again now and then). */
int vd_fwd_choose(const vd_fwd_candidate *c, size_t n, bool explore, uint16_t random);

#endif

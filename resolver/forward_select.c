/* forward_select.c — server health, token buckets and the choice of a server for a send
 * (forward_select.h). Pure functions of their arguments and the caller's clock. */
#include <string.h>

#include "vpcdns/common.h"
#include "vpcdns/forward_select.h"

#define TOKEN 1000u       /* a whole token, in milli-tokens */
#define UNKNOWN_RTT_US 0u /* unmeasured servers go first */
#define CLOSE_US 5000u    /* servers within 1.5 × best RTT + this are chosen at random */

void vd_fwd_health_init(vd_fwd_health *h)
{
        memset(h, 0, sizeof(*h));
        h->backoff_ms = VD_FWD_BACKOFF_MIN_MS;
}

static void mark_dead(vd_fwd_health *h, uint64_t now_ms)
{
        if (h->dead)
                return;
        h->dead = true;
        h->backoff_ms = VD_FWD_BACKOFF_MIN_MS;
        h->probe_at_ms = now_ms + h->backoff_ms;
}

void vd_fwd_health_answered(vd_fwd_health *h, uint64_t rtt_us)
{
        uint32_t rtt = rtt_us > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt_us;
        if (h->rtt_known)
                h->srtt_us = (uint32_t)(((uint64_t)h->srtt_us * 7u + rtt) / 8u);
        else
                h->srtt_us = rtt;
        h->rtt_known = true;
        h->fails = 0;
        h->dead = false;
        h->probing = false;
        h->backoff_ms = VD_FWD_BACKOFF_MIN_MS;
}

void vd_fwd_health_failed(vd_fwd_health *h, bool was_probe, uint64_t now_ms)
{
        if (was_probe) {
                h->probing = false;
                if (h->dead) {
                        h->backoff_ms = h->backoff_ms * 2 > VD_FWD_BACKOFF_MAX_MS
                                            ? VD_FWD_BACKOFF_MAX_MS
                                            : h->backoff_ms * 2;
                        h->probe_at_ms = now_ms + h->backoff_ms;
                }
        }
        if (h->dead)
                return;
        if (was_probe || h->fails == 0)
                h->probe_at_ms = now_ms + h->backoff_ms; /* failing: probed in the background */
        if (++h->fails >= VD_FWD_DEAD_AFTER_FAILS)
                mark_dead(h, now_ms);
}

bool vd_fwd_health_failing(const vd_fwd_health *h)
{
        return h->dead || h->fails > 0;
}

bool vd_fwd_health_probe_due(const vd_fwd_health *h, uint64_t now_ms)
{
        return vd_fwd_health_failing(h) && !h->probing && now_ms >= h->probe_at_ms;
}

void vd_fwd_health_probe_sent(vd_fwd_health *h, uint64_t now_ms)
{
        h->probing = true;
        h->probe_at_ms = now_ms + h->backoff_ms; /* one probe per backoff */
}

void vd_fwd_health_probe_gone(vd_fwd_health *h)
{
        h->probing = false;
}

unsigned vd_fwd_health_try_ms(const vd_fwd_health *h)
{
        uint64_t ms = h->rtt_known ? (uint64_t)h->srtt_us * 3u / 1000u : 0;
        if (ms < VD_FWD_TRY_MIN_MS)
                ms = VD_FWD_TRY_MIN_MS;
        if (ms > VD_FWD_TRY_MAX_MS)
                ms = VD_FWD_TRY_MAX_MS;
        return (unsigned)ms;
}

static uint64_t burst_of(unsigned max_qps)
{
        return (uint64_t)(max_qps / 10 > 0 ? max_qps / 10 : 1) * TOKEN;
}

void vd_fwd_bucket_init(vd_fwd_bucket *b, unsigned max_qps, uint64_t now_ms)
{
        b->tokens = burst_of(max_qps);
        b->at_ms = now_ms;
}

bool vd_fwd_bucket_has(vd_fwd_bucket *b, unsigned max_qps, uint64_t now_ms)
{
        if (max_qps == 0)
                return true;
        if (now_ms > b->at_ms) {
                uint64_t burst = burst_of(max_qps);
                uint64_t add = (now_ms - b->at_ms) * max_qps; /* max_qps milli-tokens per ms */
                b->tokens = add >= burst || b->tokens + add > burst ? burst : b->tokens + add;
                b->at_ms = now_ms;
        }
        return b->tokens >= TOKEN;
}

bool vd_fwd_bucket_take(vd_fwd_bucket *b, unsigned max_qps, uint64_t now_ms)
{
        if (!vd_fwd_bucket_has(b, max_qps, now_ms))
                return false;
        if (max_qps > 0)
                b->tokens -= TOKEN;
        return true;
}

static uint32_t score(const vd_fwd_health *h)
{
        return h->rtt_known ? h->srtt_us : UNKNOWN_RTT_US;
}

/* Same rank apart from RTT: dead, failing and tries alike. */
static bool same_rank(const vd_fwd_candidate *a, const vd_fwd_candidate *b)
{
        return a->health->dead == b->health->dead &&
               vd_fwd_health_failing(a->health) == vd_fwd_health_failing(b->health) &&
               a->tries == b->tries;
}

/* True when a ranks before b. */
static bool better(const vd_fwd_candidate *a, const vd_fwd_candidate *b)
{
        if (a->health->dead != b->health->dead)
                return !a->health->dead;
        bool fa = vd_fwd_health_failing(a->health), fb = vd_fwd_health_failing(b->health);
        if (fa != fb)
                return !fa;
        if (a->tries != b->tries)
                return a->tries < b->tries;
        return score(a->health) < score(b->health);
}

int vd_fwd_choose(const vd_fwd_candidate *c, size_t n, bool explore, uint16_t random)
{
        int best = -1;
        for (size_t i = 0; i < n; i++) {
                if (!c[i].usable)
                        continue;
                if (best < 0 || better(&c[i], &c[best]))
                        best = (int)i;
        }
        if (best < 0)
                return -1;
        const vd_fwd_candidate *b = &c[best];
        uint64_t limit =
            explore ? UINT64_MAX : (uint64_t)score(b->health) + score(b->health) / 2u + CLOSE_US;
        size_t close[64], n_close = 0;
        for (size_t i = 0; i < n && n_close < sizeof(close) / sizeof(close[0]); i++) {
                if (c[i].usable && same_rank(&c[i], b) && score(c[i].health) <= limit)
                        close[n_close++] = i;
        }
        return n_close > 1 ? (int)close[random % n_close] : best;
}

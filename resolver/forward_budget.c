/* forward_budget.c — the process-wide upstream_max_qps budget: one token bucket per upstream
 * address, shared by every worker's forwarder (forward.h, forward_budget.h). Each slot has its
 * own mutex, held for a refill and a subtraction; the slot list has one taken only while a
 * forwarder is being made. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/forward_budget.h"
#include "vpcdns/forward_select.h"

struct vd_upstream_budget_slot {
        struct vd_upstream_budget_slot *next;
        vd_addr addr;
        unsigned max_qps;
        pthread_mutex_t lock; /* bucket and down */
        vd_fwd_bucket bucket;
        unsigned down; /* forwarders that have this server down */
};

struct vd_upstream_budget {
        unsigned max_qps;
        pthread_mutex_t lock; /* slots */
        vd_upstream_budget_slot *slots;
};

int vd_upstream_budget_new(unsigned max_qps, vd_upstream_budget **out)
{
        vd_upstream_budget *b = calloc(1, sizeof(*b));
        *out = NULL;
        if (b == NULL)
                return -ENOMEM;
        int rc = pthread_mutex_init(&b->lock, NULL);
        if (rc != 0) {
                free(b);
                return -rc;
        }
        b->max_qps = max_qps;
        *out = b;
        return 0;
}

void vd_upstream_budget_free(vd_upstream_budget *b)
{
        if (b == NULL)
                return;
        while (b->slots != NULL) {
                vd_upstream_budget_slot *s = b->slots;
                b->slots = s->next;
                pthread_mutex_destroy(&s->lock);
                free(s);
        }
        pthread_mutex_destroy(&b->lock);
        free(b);
}

vd_upstream_budget_slot *vd_upstream_budget_slot_for(vd_upstream_budget *b, const vd_addr *addr)
{
        vd_upstream_budget_slot *s;
        pthread_mutex_lock(&b->lock);
        for (s = b->slots; s != NULL; s = s->next)
                if (vd_addr_equal(&s->addr, addr))
                        goto out;
        s = calloc(1, sizeof(*s));
        if (s == NULL)
                goto out;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
                free(s);
                s = NULL;
                goto out;
        }
        s->addr = *addr;
        s->max_qps = b->max_qps;
        vd_fwd_bucket_init(&s->bucket, s->max_qps, 0); /* full: the first use refills from 0 */
        s->next = b->slots;
        b->slots = s;
out:
        pthread_mutex_unlock(&b->lock);
        return s;
}

bool vd_upstream_budget_has(vd_upstream_budget_slot *s, uint64_t now_ms)
{
        if (s->max_qps == 0)
                return true;
        pthread_mutex_lock(&s->lock);
        bool has = vd_fwd_bucket_has(&s->bucket, s->max_qps, now_ms);
        pthread_mutex_unlock(&s->lock);
        return has;
}

bool vd_upstream_budget_take(vd_upstream_budget_slot *s, uint64_t now_ms)
{
        if (s->max_qps == 0)
                return true;
        pthread_mutex_lock(&s->lock);
        bool took = vd_fwd_bucket_take(&s->bucket, s->max_qps, now_ms);
        pthread_mutex_unlock(&s->lock);
        return took;
}

bool vd_upstream_budget_report_down(vd_upstream_budget_slot *s)
{
        pthread_mutex_lock(&s->lock);
        bool first = s->down++ == 0;
        pthread_mutex_unlock(&s->lock);
        return first;
}

bool vd_upstream_budget_report_up(vd_upstream_budget_slot *s)
{
        pthread_mutex_lock(&s->lock);
        bool last = s->down == 1;
        if (s->down > 0)
                s->down--;
        pthread_mutex_unlock(&s->lock);
        return last;
}

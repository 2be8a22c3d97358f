/* snapshot_policy.c — routing policies chosen per answer: the builder's members (record sets
 * of a weighted, multivalue or failover policy), their compiled form (the records of a set
 * grouped per member) and, on the answer path, which members one answer gets. Must not:
 * allocate or lock at answer time, or write records (snapshot_answer.c does). */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"

#define MEMBERS_MAX 65534u

int vd_builder_policy_member(vd_builder *b, const vd_policy_member *m, vd_error *err)
{
        if (m == NULL || m->policy == VD_POLICY_NONE) {
                b->cur_member = 0;
                return 0;
        }
        if (b->n_members >= MEMBERS_MAX)
                return vd_error_set(err, "more than %u routing-policy record sets", MEMBERS_MAX),
                       -E2BIG;
        if (b->n_members == b->members_cap) {
                size_t ncap = b->members_cap ? b->members_cap * 2 : 16;
                struct bmember *p = realloc(b->members, ncap * sizeof(*p));
                if (p == NULL)
                        return vd_error_set(err, "out of memory"), -ENOMEM;
                b->members = p;
                b->members_cap = ncap;
        }
        b->members[b->n_members] = (struct bmember){(uint8_t)m->policy, m->weight, m->secondary,
                                                    m->evaluate_health, UINT32_MAX};
        b->n_members++;
        b->cur_member = (uint16_t)b->n_members;
        return 0;
}

int vd_snap_policy_compile(const vd_builder *b, const struct brrset *bs, vd_snapshot *s,
                           struct sset *ss, uint16_t *order)
{
        size_t n = bs->n, k = 0;
        bool any = false;
        for (size_t r = 0; r < n; r++)
                any |= bs->rrs[r].member != 0;
        if (!any)
                return 0;
        /* Members in the order their first record came; records of one member together. */
        uint8_t *done = calloc(n ? n : 1, 1);
        struct smember *grown = realloc(s->members, (s->n_members + n) * sizeof(*grown));
        if (done == NULL || grown == NULL) {
                free(done);
                if (grown != NULL)
                        s->members = grown;
                return -ENOMEM;
        }
        s->members = grown;
        ss->first_member = (uint32_t)s->n_members;
        ss->n_members = 0;
        for (size_t r = 0; r < n; r++) {
                if (done[r])
                        continue;
                uint16_t id = bs->rrs[r].member;
                struct smember *m = &s->members[s->n_members++];
                memset(m, 0, sizeof(*m));
                m->first = (uint16_t)k;
                if (id != 0) {
                        const struct bmember *bm = &b->members[id - 1];
                        if (ss->policy == 0)
                                ss->policy = bm->policy;
                        m->weight = bm->weight;
                        m->flags = (uint8_t)((bm->secondary ? MEMBER_SECONDARY : 0) |
                                             (bm->evaluate_health ? MEMBER_EVALUATE : 0));
                }
                for (size_t q = r; q < n; q++) {
                        if (done[q] || bs->rrs[q].member != id)
                                continue;
                        done[q] = 1;
                        order[k++] = (uint16_t)q;
                        if (bs->rrs[q].eni != NO_ENI)
                                m->flags |= MEMBER_ENI;
                }
                m->count = (uint16_t)(k - m->first);
                ss->n_members++;
        }
        free(done);
        return 0;
}

/* Spreads a per-worker counter over 32 bits (the finaliser of MurmurHash3), so that
 * consecutive answers make independent-looking choices. */
static inline uint32_t mix32(uint32_t h)
{
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        h ^= h >> 16;
        return h;
}

/* Whether member m of set is out: checked only while some ENI is down and (unless forced)
 * when it evaluates its target's health; out when it has ENI addresses and all are down. */
static bool member_out(const vd_snapshot *s, const struct sset *set, const struct smember *m,
                       bool forced)
{
        if (!(m->flags & MEMBER_ENI) || (!forced && !(m->flags & MEMBER_EVALUATE)))
                return false;
        for (uint16_t r = 0; r < m->count; r++) {
                uint32_t e = s->rr_eni[set->first_rr + m->first + r];
                if (e == NO_ENI ||
                    atomic_load_explicit(&s->health->up[e], memory_order_relaxed) != 0)
                        return false;
        }
        return true;
}

static size_t pick_weighted(const vd_snapshot *s, const struct sset *set, uint32_t h, bool health,
                            uint16_t *out)
{
        const struct smember *ms = &s->members[set->first_member];
        uint32_t total = 0, n_ok = 0;
        for (int pass = 0; pass < 2 && n_ok == 0; pass++) {
                bool check = health && pass == 0; /* all out: every member (fail open) */
                total = 0;
                for (uint16_t k = 0; k < set->n_members; k++) {
                        if (check && member_out(s, set, &ms[k], false))
                                continue;
                        total += ms[k].weight;
                        n_ok++;
                }
                if (n_ok == 0)
                        continue;
                /* Weight 0 only when every weight (of those in) is 0: then equally. */
                uint32_t x = total > 0 ? h % total : h % n_ok;
                for (uint16_t k = 0; k < set->n_members; k++) {
                        if (check && member_out(s, set, &ms[k], false))
                                continue;
                        uint32_t w = total > 0 ? ms[k].weight : 1;
                        if (x < w) {
                                out[0] = k;
                                return 1;
                        }
                        x -= w;
                }
        }
        out[0] = 0;
        return 1;
}

static size_t pick_multivalue(const vd_snapshot *s, const struct sset *set, uint32_t h, bool health,
                              uint16_t *out)
{
        const struct smember *ms = &s->members[set->first_member];
        uint16_t n = set->n_members, start = (uint16_t)(h % n);
        size_t got = 0;
        for (int pass = 0; pass < 2 && got == 0; pass++) {
                bool check = health && pass == 0; /* none up: any of them (fail open) */
                for (uint16_t i = 0; i < n && got < POLICY_PICK_MAX; i++) {
                        uint16_t k = (uint16_t)((start + i) % n);
                        if (check && member_out(s, set, &ms[k], true))
                                continue;
                        out[got++] = k;
                }
        }
        return got;
}

static size_t pick_failover(const vd_snapshot *s, const struct sset *set, bool health,
                            uint16_t *out)
{
        const struct smember *ms = &s->members[set->first_member];
        int primary = -1, secondary = -1;
        for (uint16_t k = 0; k < set->n_members; k++) {
                if (ms[k].flags & MEMBER_SECONDARY) {
                        if (secondary < 0)
                                secondary = k;
                } else if (primary < 0) {
                        primary = k;
                }
        }
        int pick = primary >= 0 ? primary : secondary;
        /* The secondary only when the primary is out and the secondary is not; both out:
         * the primary, as Route 53 does. */
        if (health && primary >= 0 && secondary >= 0 && member_out(s, set, &ms[primary], false) &&
            !member_out(s, set, &ms[secondary], false))
                pick = secondary;
        out[0] = (uint16_t)pick;
        return 1;
}

size_t vd_snap_policy_pick(const vd_snapshot *s, const struct sset *set, uint32_t rotation,
                           uint16_t *out)
{
        bool health = atomic_load_explicit(&s->health->down, memory_order_relaxed) != 0;
        switch (set->policy) {
        case VD_POLICY_WEIGHTED:
                return pick_weighted(s, set, mix32(rotation), health, out);
        case VD_POLICY_MULTIVALUE:
                return pick_multivalue(s, set, mix32(rotation), health, out);
        case VD_POLICY_FAILOVER:
                return pick_failover(s, set, health, out);
        default:
                out[0] = 0;
                return 1;
        }
}

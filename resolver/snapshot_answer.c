/* snapshot_answer.c — the answer side of a compiled snapshot (hot path): the closest-encloser
 * lookup, one probe per label with the suffix hashes, and responses made of memcpy'd
 * precompiled records with 2-byte compression pointers for owners, CNAME chains followed,
 * ENI addresses that are down left out and the client's AZ put first (or alone), and an alias
 * to a name outside local data handed to the chase. Must not:
 * allocate, lock, or change the snapshot. */
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

static const struct snode *snap_find(const vd_snapshot *s, const uint8_t *name, uint8_t len,
                                     uint32_t hash)
{
        for (size_t i = hash & s->table_mask;; i = (i + 1) & s->table_mask) {
                uint32_t v = s->table[i];
                if (v == 0)
                        return NULL;
                const struct snode *n = &s->nodes[v - 1];
                if (n->hash == hash && n->name_len == len &&
                    memcmp(s->blob + n->name_off, name, len) == 0)
                        return n;
        }
}

static inline bool node_exists(const struct snode *n)
{
        return n->nsets > 0 || (n->flags & NODE_ENT);
}

/* Closest-encloser search (RFC 4592 §3.3.1) over a lower-cased name (padded: it is hashed).
 * A suffix with more labels than any name of ours cannot be found, so a deep name costs no
 * more than one as deep as our deepest. */
lookup_result vd_snap_lookup(const vd_snapshot *s, const uint8_t *name, const uint8_t *offs,
                             int labels)
{
        lookup_result res = {LOOKUP_FORWARD, NULL, -1};
        uint8_t total = (uint8_t)(offs[labels] + 1);

        for (int i = labels > s->max_labels ? labels - s->max_labels : 0; i < labels; i++) {
                uint8_t len = (uint8_t)(total - offs[i]);
                const struct snode *n =
                    snap_find(s, name + offs[i], len, name_hash_at(name + offs[i], len));
                if (n == NULL)
                        continue;
                if (i == 0 && node_exists(n)) {
                        res.kind = LOOKUP_NODE;
                        res.node = n;
                        return res;
                }
                if (i > 0 && n->wildcard >= 0) {
                        res.kind = LOOKUP_NODE;
                        res.node = &s->nodes[n->wildcard];
                        return res;
                }
                if (node_exists(n) || (n->flags & NODE_ZONE_APEX)) {
                        /* The closest encloser: inside a zone we own, the name is absent;
                         * under a name we only borrow (vpce islands), the world decides. */
                        if (n->zone >= 0 && s->zones[n->zone].authoritative) {
                                res.kind = LOOKUP_NXDOMAIN;
                                res.zone = n->zone;
                        }
                        return res;
                }
        }
        return res;
}

/* A response under construction. */
typedef struct writer {
        uint8_t *out;
        size_t len;
        size_t cap; /* room for records, OPT reserved */
        bool overflow;
        uint16_t counts[3];
        const vd_answer_client *client; /* NULL, or with affinity: see put_eni_rrset */
        int client_az;                  /* in the answering snapshot; AZ_UNRESOLVED until needed */
} writer;

#define AZ_UNRESOLVED (-2)

static void put_owner(writer *w, uint16_t ref)
{
        if (w->len + 2 > w->cap) {
                w->overflow = true;
                return;
        }
        vd_wire_put16(w->out + w->len, (uint16_t)(0xC000u | ref));
        w->len += 2;
}

static void put_record(writer *w, const vd_snapshot *s, uint32_t rr, uint16_t owner_ref,
                       int section)
{
        const uint8_t *rec = s->blob + s->rr_off[rr];
        size_t rlen = 10 + (size_t)vd_wire_get16(rec + 8);
        put_owner(w, owner_ref);
        if (w->overflow || w->len + rlen > w->cap) {
                w->overflow = true;
                return;
        }
        memcpy(w->out + w->len, rec, rlen);
        w->len += rlen;
        w->counts[section]++;
}

/* Appends the records of set marked in pick (a bitmap over its records), in set order rotated
 * to start at the (rotation % count)-th of them. */
static void put_picked(writer *w, const vd_snapshot *s, const struct sset *set, uint16_t owner_ref,
                       uint32_t rotation, const uint64_t *pick, uint16_t count)
{
        uint16_t start = (uint16_t)(rotation % count), seen = 0;
        for (uint16_t r = 0; r < set->count; r++)
                if ((pick[r / 64] >> (r % 64)) & 1u && seen++ >= start)
                        put_record(w, s, set->first_rr + r, owner_ref, 0);
        seen = 0;
        for (uint16_t r = 0; r < set->count && seen < start; r++)
                if ((pick[r / 64] >> (r % 64)) & 1u && seen++ < start)
                        put_record(w, s, set->first_rr + r, owner_ref, 0);
}

/* An RRset of ENI addresses while some address of the snapshot is down or the client asks
 * for AZ affinity: the addresses that are up (all of them when none is), and of those, with
 * the client's AZ known, the ones in its AZ first (prefer) or alone (strict; all when the AZ
 * has none up), each group rotated among itself. Each flag is read once, so a prober
 * flipping one meanwhile cannot duplicate or drop a record. */
static void put_eni_rrset(writer *w, const vd_snapshot *s, const struct sset *set,
                          uint16_t owner_ref, uint32_t rotation, int az)
{
        uint64_t up[RRSET_MAX_RECORDS / 64], near[RRSET_MAX_RECORDS / 64];
        uint16_t n_up = 0, n_near = 0;
        for (uint16_t r = 0; r < set->count; r++) {
                if (r % 64 == 0)
                        up[r / 64] = near[r / 64] = 0;
                uint32_t e = s->rr_eni[set->first_rr + r];
                bool ok = e == NO_ENI ||
                          atomic_load_explicit(&s->health->up[e], memory_order_relaxed) != 0;
                if (ok) {
                        up[r / 64] |= (uint64_t)1 << (r % 64);
                        n_up++;
                }
        }
        if (n_up == 0) { /* fail open: every address */
                for (uint16_t r = 0; r < set->count; r++)
                        up[r / 64] |= (uint64_t)1 << (r % 64);
                n_up = set->count;
        }
        if (az >= 0) {
                for (uint16_t r = 0; r < set->count; r++) {
                        uint32_t e = s->rr_eni[set->first_rr + r];
                        if (e != NO_ENI && s->eni_az[e] == az && ((up[r / 64] >> (r % 64)) & 1u)) {
                                near[r / 64] |= (uint64_t)1 << (r % 64);
                                n_near++;
                        }
                }
        }
        if (n_near == 0 || n_near == n_up) {
                put_picked(w, s, set, owner_ref, rotation, up, n_up);
                return;
        }
        put_picked(w, s, set, owner_ref, rotation, near, n_near);
        if (w->client->affinity == VD_AZ_AFFINITY_STRICT)
                return;
        for (size_t k = 0; k < ((size_t)set->count + 63) / 64; k++)
                up[k] &= ~near[k];
        put_picked(w, s, set, owner_ref, rotation, up, (uint16_t)(n_up - n_near));
}

static void put_policy_rrset(writer *w, const vd_snapshot *s, const struct sset *set,
                             uint16_t owner_ref, uint32_t rotation);

/* Appends an RRset, starting at a rotating position. Returns the offset of the first record's
 * rdata in the response (for CNAME targets), or 0. */
static size_t put_rrset(writer *w, const vd_snapshot *s, const struct sset *set, uint16_t owner_ref,
                        uint32_t rotation)
{
        size_t first_rdata = w->len + 2 + 10;
        if (set->policy != 0) {
                put_policy_rrset(w, s, set, owner_ref, rotation);
                return w->overflow ? 0 : first_rdata;
        }
        if (set->eni) {
                /* The client's AZ, found once per answer and only for ENI addresses. */
                int az = -1;
                if (w->client != NULL && w->client->affinity != VD_AZ_AFFINITY_OFF) {
                        if (w->client_az == AZ_UNRESOLVED)
                                w->client_az = vd_snapshot_client_az(s, w->client);
                        az = w->client_az;
                }
                if (az >= 0 || atomic_load_explicit(&s->health->down, memory_order_relaxed) != 0) {
                        put_eni_rrset(w, s, set, owner_ref, rotation, az);
                        return w->overflow ? 0 : first_rdata;
                }
        }
        uint16_t start = set->count > 1 ? (uint16_t)(rotation % set->count) : 0;
        for (uint16_t k = 0; k < set->count; k++) {
                uint16_t r = (uint16_t)((start + k) % set->count);
                put_record(w, s, set->first_rr + r, owner_ref, 0);
        }
        return w->overflow ? 0 : first_rdata;
}

/* An RRset with a routing policy: the records of the members chosen for this answer, each
 * member as an RRset of its own (ENI health and AZ order apply within it). */
static void put_policy_rrset(writer *w, const vd_snapshot *s, const struct sset *set,
                             uint16_t owner_ref, uint32_t rotation)
{
        uint16_t pick[POLICY_PICK_MAX];
        size_t n = vd_snap_policy_pick(s, set, rotation, pick);
        for (size_t i = 0; i < n; i++) {
                const struct smember *m = &s->members[set->first_member + pick[i]];
                struct sset sub = {.type = set->type,
                                   .count = m->count,
                                   .first_rr = set->first_rr + m->first,
                                   .eni = (m->flags & MEMBER_ENI) != 0};
                put_rrset(w, s, &sub, owner_ref, rotation);
        }
}

const struct sset *vd_snap_find_set(const vd_snapshot *s, const struct snode *n, uint16_t type)
{
        for (uint16_t k = 0; k < n->nsets; k++)
                if (s->sets[n->first_set + k].type == type)
                        return &s->sets[n->first_set + k];
        return NULL;
}

/* The zone's SOA in the authority section; its owner is compressed against the name at
 * name_ref (of name/offs/labels) when the apex is a suffix of it. */
static void put_soa(writer *w, const vd_snapshot *s, int32_t zone, const uint8_t *name,
                    const uint8_t *offs, int labels, uint16_t name_ref)
{
        if (zone < 0)
                return;
        const struct szone *z = &s->zones[zone];
        const uint8_t *apex = s->blob + z->apex_off;
        int k = labels - z->apex_labels;
        bool suffix = k >= 0 && memcmp(name + offs[k], apex, z->apex_len) == 0;
        if (suffix && name_ref + offs[k] < 0x3FFF) {
                put_owner(w, (uint16_t)(name_ref + offs[k]));
        } else {
                if (w->len + z->apex_len > w->cap) {
                        w->overflow = true;
                        return;
                }
                memcpy(w->out + w->len, apex, z->apex_len);
                w->len += z->apex_len;
        }
        if (w->overflow || w->len + z->soa_len > w->cap) {
                w->overflow = true;
                return;
        }
        memcpy(w->out + w->len, s->blob + z->soa_off, z->soa_len);
        w->len += z->soa_len;
        w->counts[1]++;
}

/* Turns w's response into the final one: TC (header and question only) on overflow, rcode,
 * counts and the client's OPT. */
static size_t finish_response(writer *w, const vd_query_info *qi, size_t header_len, uint8_t rcode,
                              size_t cap)
{
        uint8_t *out = w->out;
        if (w->overflow) {
                /* Too large for this client: header and question only, TC set. */
                w->len = header_len;
                w->counts[0] = w->counts[1] = w->counts[2] = 0;
                vd_wire_put16(out + 2, (uint16_t)(vd_wire_get16(out + 2) | VD_FLAG_TC));
        }
        vd_wire_put16(out + 2, (uint16_t)((vd_wire_get16(out + 2) & ~0x000Fu) | rcode));
        vd_wire_put16(out + 6, w->counts[0]);
        vd_wire_put16(out + 8, w->counts[1]);
        vd_wire_put16(out + 10, w->counts[2]);
        return vd_wire_add_opt(qi, rcode, out, w->len, cap);
}

bool vd_snapshot_holds(const vd_snapshot *s, const vd_query_info *qi)
{
        return vd_snap_lookup(s, qi->qname_lower, qi->label_off, qi->labels).kind != LOOKUP_FORWARD;
}

vd_local_result vd_snapshot_answer(const vd_snapshot *s, const vd_query_info *qi, uint32_t rotation,
                                   uint8_t *out, size_t cap, size_t *len)
{
        return vd_snapshot_answer_chase(s, qi, rotation, out, cap, len, NULL);
}

vd_local_result vd_snapshot_answer_chase(const vd_snapshot *s, const vd_query_info *qi,
                                         uint32_t rotation, uint8_t *out, size_t cap, size_t *len,
                                         vd_local_chase *chase)
{
        lookup_result res = vd_snap_lookup(s, qi->qname_lower, qi->label_off, qi->labels);
        if (res.kind == LOOKUP_FORWARD)
                return VD_LOCAL_FORWARD;

        size_t opt_room = qi->has_edns ? 11 : 0;
        writer w = {out,          0,         cap > opt_room ? cap - opt_room : 0,
                    false,        {0, 0, 0}, chase != NULL ? chase->client : NULL,
                    AZ_UNRESOLVED};
        w.len = vd_wire_begin_response(qi, VD_RCODE_NOERROR, out, w.cap);
        if (w.len == 0)
                return VD_LOCAL_FORWARD; /* cannot happen with a sane cap; let the caller cope */
        size_t header_len = w.len;

        uint8_t rcode = VD_RCODE_NOERROR;
        /* The name being answered: first the question, then each CNAME target in turn (copied
         * into target/target_offs, padded because vd_snap_lookup() hashes it). */
        uint8_t target[VD_NAME_MAX + VD_NAME_PAD];
        uint8_t target_offs[MAX_LABELS + 1];
        const uint8_t *name = qi->qname_lower;
        const uint8_t *offs = qi->label_off;
        int labels = qi->labels;
        uint16_t name_ref = VD_HEADER_LEN;

        /* The snapshot holding the current name: s, or chase->fallback for a target only
         * that one holds. */
        const vd_snapshot *cur = s;
        for (unsigned hop = 0;; hop++) {
                if (res.kind == LOOKUP_NXDOMAIN) {
                        rcode = VD_RCODE_NXDOMAIN;
                        put_soa(&w, cur, res.zone, name, offs, labels, name_ref);
                        break;
                }
                if (res.kind == LOOKUP_FORWARD) {
                        /* The chain left our data: the caller resolves the rest, or (without
                         * chase) the answer ends at the last CNAME. */
                        if (chase == NULL || w.overflow)
                                break;
                        vd_wire_put16(out + 6, w.counts[0]);
                        vd_wire_put16(out + 8, 0);
                        vd_wire_put16(out + 10, 0);
                        chase->target_len = (size_t)offs[labels] + 1;
                        memcpy(chase->target, name, chase->target_len);
                        chase->target_ref = name_ref;
                        chase->hops = hop;
                        chase->alias = false;
                        chase->alias_soa_len = 0;
                        *len = w.len;
                        return VD_LOCAL_CHASE;
                }
                const struct snode *n = res.node; /* of cur */
                if (qi->qtype == VD_TYPE_ANY) {
                        for (uint16_t k = 0; k < n->nsets; k++)
                                put_rrset(&w, cur, &cur->sets[n->first_set + k], name_ref,
                                          rotation);
                        if (n->nsets == 0)
                                put_soa(&w, cur, n->zone, name, offs, labels, name_ref);
                        break;
                }
                const struct sset *set = vd_snap_find_set(cur, n, qi->qtype);
                if (set != NULL) {
                        put_rrset(&w, cur, set, name_ref, rotation);
                        break;
                }
                const struct sset *cname = vd_snap_find_set(cur, n, VD_TYPE_CNAME);
                if (cname == NULL) {
                        const struct supalias *up = NULL;
                        if ((n->flags & NODE_UPALIAS) && chase != NULL && !w.overflow)
                                up = vd_snap_find_upalias(cur, n, qi->qtype);
                        if (up == NULL) {
                                put_soa(&w, cur, n->zone, name, offs, labels, name_ref);
                                break;
                        }
                        /* An alias to a name outside local data: the chase resolves the target
                         * and writes its records under this name; the SOA after the response
                         * is for a target that has none. */
                        vd_wire_put16(out + 6, w.counts[0]);
                        vd_wire_put16(out + 8, 0);
                        vd_wire_put16(out + 10, 0);
                        size_t end = w.len;
                        put_soa(&w, cur, n->zone, name, offs, labels, name_ref);
                        chase->alias_soa_len = w.overflow ? 0 : w.len - end;
                        chase->alias = true;
                        chase->target_len = up->target_len;
                        memcpy(chase->target, up->target, up->target_len);
                        chase->target_ref = name_ref;
                        chase->hops = hop;
                        *len = end;
                        return VD_LOCAL_CHASE;
                }
                if (hop == VD_CNAME_MAX_HOPS) {
                        /* One CNAME too many (no loop: those are refused at load time). */
                        w.len = header_len;
                        w.overflow = false;
                        w.counts[0] = w.counts[1] = w.counts[2] = 0;
                        rcode = VD_RCODE_SERVFAIL;
                        break;
                }
                size_t target_at = put_rrset(&w, cur, cname, name_ref, rotation);
                if (w.overflow)
                        break;
                /* The target as written (the CNAME a routing policy chose, if any). */
                size_t tlen = vd_name_len(out + target_at, vd_wire_get16(out + target_at - 2));
                if (tlen == 0)
                        break;
                memcpy(target, out + target_at, tlen);
                vd_name_lower(target, tlen);
                labels = name_labels(target, target_offs);
                name = target;
                offs = target_offs;
                name_ref = target_at < 0x3FFF ? (uint16_t)target_at : 0;
                if (name_ref == 0)
                        break; /* beyond compression range: stop the chain here */
                cur = s;
                if (chase != NULL && chase->leaves != NULL &&
                    chase->leaves(chase->leaves_arg, target, tlen)) {
                        res.kind = LOOKUP_FORWARD;
                } else {
                        res = vd_snap_lookup(s, name, offs, labels);
                        if (res.kind == LOOKUP_FORWARD && chase != NULL &&
                            chase->fallback != NULL) {
                                res = vd_snap_lookup(chase->fallback, name, offs, labels);
                                cur = chase->fallback;
                        }
                }
        }

        *len = finish_response(&w, qi, header_len, rcode, cap);
        return VD_LOCAL_ANSWERED;
}

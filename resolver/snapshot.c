/* snapshot.c — the immutable lookup structure of local data: compiling a builder into it,
 * and its reference count.
 *
 * Owns: vd_builder_finish(), which adds empty non-terminals inside authoritative zones and
 * compiles the builder's nodes into flat arrays: nodes, RRsets, and one blob holding every
 * record in wire form (type, class, TTL, rdlength, rdata) ready to copy into a response; the
 * snapshot's references, summary and record walk; its ENI table and the health flag of each
 * ENI address (the one part of a snapshot that changes after it is returned). Its parts:
 * snapshot_build.c (the builder: load time, may allocate freely), snapshot_answer.c (the answer
 * side: suffix hashes of the query name are computed once, right to left, so finding the closest
 * encloser costs one probe per label; answers are memcpy of precompiled records with 2-byte
 * compression pointers for owners; no allocation, no locks) and snapshot_loops.c (the CNAME loop
 * check). Must not: answer queries or change a snapshot once it is returned. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

static void snapshot_free(vd_snapshot *s)
{
        free(s->nodes);
        free(s->table);
        free(s->sets);
        free(s->rr_off);
        free(s->rr_eni);
        free(s->enis);
        free(s->health);
        vd_snap_free_azs(s);
        free(s->zones);
        free(s->blob);
        free(s->order);
        free(s->aliases);
        free(s->members);
        free(s->upaliases);
        vd_snap_views_free(s->head.views);
        free(s);
}

void vd_snapshot_ref(vd_snapshot *s)
{
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void vd_snapshot_unref(vd_snapshot *s)
{
        if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
                snapshot_free(s);
}

void vd_snapshot_summarize(const vd_snapshot *s, vd_snapshot_summary *out)
{
        *out = s->summary;
        for (size_t i = 0; i < vd_snapshot_view_count(s); i++) { /* a root: its views too */
                const vd_snapshot *v = vd_snapshot_view(s, i, NULL);
                out->names += v->summary.names;
                out->records += v->summary.records;
                out->zones += v->summary.zones;
        }
}

/* Deepest zone at or above a name, found through the table (build side). */
static int32_t find_zone(vd_builder *b, const uint8_t *name, const uint8_t *offs,
                         const uint32_t *hashes, int labels)
{
        for (int i = 0; i <= labels; i++) {
                const uint8_t *suffix = name + offs[i];
                int32_t idx = vd_snap_node_get_hashed(
                    b, suffix, (uint8_t)(offs[labels] + 1 - offs[i]), hashes[i], false);
                if (idx >= 0 && (b->nodes[idx].flags & NODE_ZONE_APEX))
                        return b->nodes[idx].zone;
        }
        return -1;
}

/* Inside an authoritative zone every ancestor of a name up to the apex exists (RFC 4592
 * §2.2.2: empty non-terminals). Outside, wildcard parents stay "ghosts" that do not exist. */
static int add_empty_non_terminals(vd_builder *b)
{
        size_t original = b->n;
        for (size_t i = 0; i < original; i++) {
                uint8_t offs[MAX_LABELS + 1];
                uint32_t hashes[MAX_LABELS + 1];
                uint8_t name[VD_NAME_MAX];
                uint8_t len = b->nodes[i].len;
                memcpy(name, b->nodes[i].name, len); /* nodes may move as ENTs are added */
                int labels = vd_snap_name_suffixes(name, offs, hashes);
                int32_t zone = find_zone(b, name, offs, hashes, labels);
                b->nodes[i].zone = zone;
                if (zone < 0 || !b->zones[zone].authoritative)
                        continue;
                uint8_t apex_len = b->nodes[b->zones[zone].node].len;
                for (int l = 0; l < labels; l++) {
                        uint8_t slen = (uint8_t)(len - offs[l]);
                        if (slen <= apex_len)
                                break;
                        int32_t idx =
                            vd_snap_node_get_hashed(b, name + offs[l], slen, hashes[l], true);
                        if (idx < 0)
                                return -ENOMEM;
                        if (b->nodes[idx].nsets == 0)
                                b->nodes[idx].flags |= NODE_ENT;
                        b->nodes[idx].zone = zone;
                }
        }
        return 0;
}

int vd_builder_finish(vd_builder *b, vd_snapshot **out, vd_error *err)
{
        vd_snapshot *s = NULL;
        int rc = vd_snap_resolve_aliases(b, err);
        if (rc != 0)
                return rc;
        rc = add_empty_non_terminals(b);
        if (rc != 0)
                goto oom;

        size_t nsets = 0, nrrs = 0, blob = 0;
        for (size_t i = 0; i < b->n; i++) {
                blob += b->nodes[i].len;
                nsets += b->nodes[i].nsets;
                for (size_t k = 0; k < b->nodes[i].nsets; k++) {
                        nrrs += b->nodes[i].sets[k].n;
                        blob += vd_snap_rrset_wire_size(&b->nodes[i].sets[k]);
                }
        }
        for (size_t z = 0; z < b->nz; z++)
                blob += 10 + (size_t)b->zones[z].soa_len;

        s = calloc(1, sizeof(*s));
        if (s == NULL)
                goto oom;
        size_t tcap = 64;
        while (tcap < b->n * 2)
                tcap *= 2;
        s->nodes = calloc(b->n ? b->n : 1, sizeof(struct snode));
        s->table = calloc(tcap, sizeof(uint32_t));
        s->sets = calloc(nsets ? nsets : 1, sizeof(struct sset));
        s->rr_off = calloc(nrrs + 1, sizeof(uint32_t));
        s->rr_eni = calloc(nrrs + 1, sizeof(uint32_t));
        s->enis = calloc(b->n_enis ? b->n_enis : 1, sizeof(vd_snapshot_eni));
        s->health = calloc(1, sizeof(struct eni_health) + b->n_enis);
        s->zones = calloc(b->nz ? b->nz : 1, sizeof(struct szone));
        s->blob = malloc(blob ? blob : 1);
        s->order = calloc(b->n ? b->n : 1, sizeof(size_t));
        if (!s->nodes || !s->table || !s->sets || !s->rr_off || !s->rr_eni || !s->enis ||
            !s->health || !s->zones || !s->blob || !s->order)
                goto oom;
        if (b->n_enis > 0)
                memcpy(s->enis, b->enis, b->n_enis * sizeof(vd_snapshot_eni));
        s->n_enis = b->n_enis;
        atomic_init(&s->health->down, 0);
        for (size_t i = 0; i < b->n_enis; i++)
                atomic_init(&s->health->up[i], 1);
        s->table_mask = tcap - 1;
        s->n_nodes = b->n;
        s->n_zones = b->nz;
        s->n_rrs = nrrs;

        size_t bp = 0, sp = 0, rp = 0;
        for (size_t i = 0; i < b->n; i++) {
                const struct bnode *bn = &b->nodes[i];
                struct snode *sn = &s->nodes[i];
                uint8_t offs[MAX_LABELS + 1];
                int labels = name_labels(bn->name, offs);
                if (labels > s->max_labels)
                        s->max_labels = labels;
                sn->name_off = (uint32_t)bp;
                memcpy(s->blob + bp, bn->name, bn->len);
                bp += bn->len;
                sn->name_len = bn->len;
                sn->hash = bn->hash;
                sn->zone = bn->zone;
                sn->wildcard = bn->wildcard;
                sn->flags = bn->flags;
                sn->first_set = (uint32_t)sp;
                sn->nsets = (uint16_t)bn->nsets;
                if (bn->nsets > 0) {
                        s->order[s->n_order++] = i;
                        s->summary.names++;
                }
                for (size_t k = 0; k < bn->nsets; k++) {
                        const struct brrset *bs = &bn->sets[k];
                        struct sset *ss = &s->sets[sp++];
                        ss->type = bs->type;
                        ss->count = (uint16_t)bs->n;
                        ss->first_rr = (uint32_t)rp;
                        uint16_t order[RRSET_MAX_RECORDS];
                        if (vd_snap_policy_compile(b, bs, s, ss, order) != 0)
                                goto oom;
                        for (size_t k2 = 0; k2 < bs->n; k2++) {
                                size_t r = ss->policy != 0 ? order[k2] : k2;
                                uint8_t *w = s->blob + bp;
                                s->rr_eni[rp] = bs->rrs[r].eni;
                                ss->eni |= bs->rrs[r].eni != NO_ENI;
                                s->rr_off[rp++] = (uint32_t)bp;
                                vd_wire_put16(w, bs->type);
                                vd_wire_put16(w + 2, VD_CLASS_IN);
                                uint16_t mid = bs->rrs[r].member; /* own TTL */
                                vd_wire_put32(w + 4, mid ? b->members[mid - 1].ttl : bs->ttl);
                                vd_wire_put16(w + 8, bs->rrs[r].len);
                                memcpy(w + 10, bs->rrs[r].rdata, bs->rrs[r].len);
                                bp += 10 + (size_t)bs->rrs[r].len;
                        }
                }
                vd_snap_table_put(s->table, tcap, bn->hash, (uint32_t)i);
        }
        s->rr_off[rp] = (uint32_t)bp;
        s->rr_eni[rp] = NO_ENI;
        s->summary.records = nrrs;

        for (size_t z = 0; z < b->nz; z++) {
                const struct bzone *bz = &b->zones[z];
                struct szone *sz = &s->zones[z];
                uint8_t offs[MAX_LABELS + 1];
                sz->apex_off = s->nodes[bz->node].name_off;
                sz->apex_len = s->nodes[bz->node].name_len;
                sz->apex_labels = (uint8_t)name_labels(s->blob + sz->apex_off, offs);
                sz->authoritative = bz->authoritative;
                if (bz->authoritative)
                        s->summary.zones++;
                /* RFC 2308 §5: the negative TTL is the smaller of the SOA's TTL and MINIMUM. */
                uint32_t neg = bz->soa_ttl;
                if (bz->soa_len >= 20) {
                        uint32_t minimum = vd_wire_get32(bz->soa + bz->soa_len - 4);
                        if (minimum < neg)
                                neg = minimum;
                }
                uint8_t *w = s->blob + bp;
                sz->soa_off = (uint32_t)bp;
                sz->soa_len = (uint16_t)(10 + bz->soa_len);
                vd_wire_put16(w, VD_TYPE_SOA);
                vd_wire_put16(w + 2, VD_CLASS_IN);
                vd_wire_put32(w + 4, neg);
                vd_wire_put16(w + 8, bz->soa_len);
                memcpy(w + 10, bz->soa, bz->soa_len);
                bp += sz->soa_len;
        }
        if (vd_snap_compile_azs(b, s) != 0)
                goto oom;
        atomic_init(&s->refs, 1);
        if (vd_snap_store_aliases(b, s) != 0)
                goto oom;
        rc = vd_snap_check_cname_loops(b, s, err);
        if (rc != 0) {
                snapshot_free(s);
                return rc;
        }
        vd_snap_builder_clear(b);
        *out = s;
        return 0;
oom:
        if (s != NULL)
                snapshot_free(s);
        return vd_error_set(err, "out of memory while compiling the snapshot"), -ENOMEM;
}

int vd_snapshot_foreach(const vd_snapshot *s, vd_rr_visit_fn fn, void *arg)
{
        for (size_t o = 0; o < s->n_order; o++) {
                const struct snode *n = &s->nodes[s->order[o]];
                for (uint16_t k = 0; k < n->nsets; k++) {
                        const struct sset *set = &s->sets[n->first_set + k];
                        for (uint16_t r = 0; r < set->count; r++) {
                                const uint8_t *w = s->blob + s->rr_off[set->first_rr + r];
                                int rc = fn(arg, s->blob + n->name_off, set->type,
                                            vd_wire_get32(w + 4), w + 10, vd_wire_get16(w + 8));
                                if (rc != 0)
                                        return rc;
                        }
                }
        }
        return 0;
}

size_t vd_snapshot_eni_count(const vd_snapshot *s)
{
        return s->n_enis;
}

const vd_snapshot_eni *vd_snapshot_eni_at(const vd_snapshot *s, size_t i)
{
        VD_CHECK(i < s->n_enis);
        return &s->enis[i];
}

void vd_snapshot_eni_set_up(const vd_snapshot *s, size_t i, bool up)
{
        VD_CHECK(i < s->n_enis);
        uint8_t was = atomic_exchange_explicit(&s->health->up[i], up ? 1 : 0, memory_order_relaxed);
        if (was && !up)
                atomic_fetch_add_explicit(&s->health->down, 1, memory_order_relaxed);
        else if (!was && up)
                atomic_fetch_sub_explicit(&s->health->down, 1, memory_order_relaxed);
}

bool vd_snapshot_eni_up(const vd_snapshot *s, size_t i)
{
        VD_CHECK(i < s->n_enis);
        return atomic_load_explicit(&s->health->up[i], memory_order_relaxed) != 0;
}

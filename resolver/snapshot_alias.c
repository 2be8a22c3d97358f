/* snapshot_alias.c — alias records (Route 53's AliasTarget) in the snapshot builder: declared
 * while loading, resolved when the builder finishes by copying the target's RRset of the
 * alias's type under the alias's own name (TTL from the target), alias chains first, loops
 * refused. The compiled snapshot keeps a description of each alias for --check and --dump.
 * An alias whose target is outside local data (a load balancer) is marked on its node and
 * listed for the answer path, which hands it to the chase (chase.c) per answer.
 * Must not: answer queries or resolve anything outside local data. Load time only, except
 * vd_snap_find_upalias (answer path: no allocation, no lock). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

#define PLACE_MAX 1024

int vd_builder_add_alias(vd_builder *b, const uint8_t *owner, uint16_t type, const uint8_t *target,
                         const char *claim, const char *place, vd_error *err)
{
        uint8_t name[VD_NAME_MAX];
        size_t len = vd_name_len(owner, VD_NAME_MAX);
        size_t tlen = vd_name_len(target, VD_NAME_MAX);
        if (len == 0 || tlen == 0)
                return vd_error_set(err, "malformed domain name");
        if (type == VD_TYPE_SOA || type == VD_TYPE_OPT || type == VD_TYPE_ANY || type == 0)
                return vd_error_set(err, "an alias of record type %u cannot be served", type);
        memcpy(name, owner, len);
        vd_name_lower(name, len);
        const char *c = vd_snap_intern_claim(b, claim);
        if (c == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        int32_t idx = vd_snap_node_get_hashed(b, name, (uint8_t)len,
                                              vd_snap_name_hash_exact(name, len), true);
        if (idx < 0)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        int rc = vd_snap_claim_node(b, idx, c, err);
        if (rc != 0)
                return rc;
        if (name[0] == 1 && name[1] == '*') {
                int32_t parent =
                    vd_snap_node_get_hashed(b, name + 2, (uint8_t)(len - 2),
                                            vd_snap_name_hash_exact(name + 2, len - 2), true);
                if (parent < 0)
                        return vd_error_set(err, "out of memory"), -ENOMEM;
                b->nodes[parent].wildcard = idx;
        }
        struct balias *a = b->aliases;
        if (b->naliases == b->aliases_cap) {
                size_t ncap = b->aliases_cap ? b->aliases_cap * 2 : 16;
                a = realloc(b->aliases, ncap * sizeof(*a));
                if (a == NULL)
                        return vd_error_set(err, "out of memory"), -ENOMEM;
                b->aliases = a;
                b->aliases_cap = ncap;
        }
        a = &b->aliases[b->naliases];
        memset(a, 0, sizeof(*a));
        a->place = strdup(place != NULL ? place : c);
        if (a->place == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        a->owner = idx;
        a->type = type;
        memcpy(a->target, target, tlen);
        vd_name_lower(a->target, tlen);
        a->target_len = (uint8_t)tlen;
        a->claim = c;
        a->member = b->cur_member;
        b->nodes[idx].flags |= NODE_ALIAS;
        b->naliases++;
        return 0;
}

void vd_snap_free_builder_aliases(vd_builder *b)
{
        for (size_t i = 0; i < b->naliases; i++)
                free(b->aliases[i].place);
        free(b->aliases);
        b->aliases = NULL;
        b->naliases = b->aliases_cap = 0;
}

void vd_builder_region(const vd_builder *b, char *out, size_t cap)
{
        static const char suffix[] = "\004vpce\011amazonaws\003com";
        out[0] = '\0';
        for (size_t z = 0; z < b->nz; z++) {
                const struct bnode *nd = &b->nodes[b->zones[z].node];
                if (b->zones[z].authoritative || nd->len < 2 + sizeof(suffix) - 1)
                        continue;
                uint8_t lab = nd->name[0];
                if ((size_t)lab + 1 + sizeof(suffix) - 1 > nd->len ||
                    memcmp(nd->name + 1 + lab, suffix, sizeof(suffix) - 1) != 0)
                        continue;
                snprintf(out, cap, "%.*s", (int)lab, (const char *)nd->name + 1);
                return;
        }
}

/* The node that answers name in the builder: the name itself when it holds data or an alias,
 * else the wildcard of its closest existing ancestor; -1 when none. */
static int32_t find_target(vd_builder *b, const uint8_t *name)
{
        uint8_t offs[MAX_LABELS + 1];
        uint32_t hashes[MAX_LABELS + 1];
        int labels = vd_snap_name_suffixes(name, offs, hashes);
        size_t total = (size_t)offs[labels] + 1;
        int32_t idx = vd_snap_node_get_hashed(b, name, (uint8_t)total, hashes[0], false);
        if (idx >= 0 && (b->nodes[idx].nsets > 0 || (b->nodes[idx].flags & NODE_ALIAS)))
                return idx;
        for (int i = 1; i <= labels; i++) {
                int32_t up = vd_snap_node_get_hashed(b, name + offs[i], (uint8_t)(total - offs[i]),
                                                     hashes[i], false);
                if (up < 0)
                        continue;
                if (b->nodes[up].wildcard >= 0)
                        return b->nodes[up].wildcard;
                if (b->nodes[up].nsets > 0 || (b->nodes[up].flags & NODE_ZONE_APEX))
                        return -1; /* the closest encloser has no wildcard */
        }
        return idx; /* a node without data (a wildcard's parent): exists, empty */
}

/* Copies the records of src_node's RRset of type under the alias's owner: the one place where
 * an alias takes a record's data (and any per-record data beside it). */
static int copy_rrset(vd_builder *b, struct balias *a, int32_t src_node, vd_error *err)
{
        struct bnode *src = &b->nodes[src_node];
        struct brrset *set = NULL;
        for (size_t k = 0; k < src->nsets; k++)
                if (src->sets[k].type == a->type)
                        set = &src->sets[k];
        if (set == NULL || set->n == 0) {
                a->state = VD_ALIAS_EMPTY;
                return 0;
        }
        /* The records stay where they are while the owner grows: both live in the store. */
        struct brr *rrs = set->rrs;
        size_t n = set->n;
        uint32_t ttl = set->ttl;
        uint8_t owner[VD_NAME_MAX];
        memcpy(owner, b->nodes[a->owner].name, b->nodes[a->owner].len);
        uint16_t keep = b->cur_member;
        b->cur_member = a->member;
        for (size_t r = 0; r < n; r++) {
                int rc = vd_snap_add_copy(b, owner, a->type, ttl, &rrs[r], a->claim, err);
                if (rc != 0) {
                        b->cur_member = keep;
                        return rc;
                }
        }
        b->cur_member = keep;
        a->state = VD_ALIAS_LOCAL;
        a->ttl = ttl;
        a->records = n;
        return 0;
}

static int resolve(vd_builder *b, size_t i, unsigned depth, vd_error *err);

/* Resolves first every alias of the target node with the same type (an alias chain). */
static int resolve_chain(vd_builder *b, size_t i, int32_t node, unsigned depth, vd_error *err)
{
        for (size_t k = 0; k < b->naliases; k++) {
                if (b->aliases[k].owner != node || b->aliases[k].type != b->aliases[i].type)
                        continue;
                int rc = resolve(b, k, depth + 1, err);
                if (rc != 0)
                        return rc;
        }
        return 0;
}

static int resolve(vd_builder *b, size_t i, unsigned depth, vd_error *err)
{
        struct balias *a = &b->aliases[i];
        char owner[VD_NAME_MAX * 4 + 2], target[VD_NAME_MAX * 4 + 2];
        if (a->walk == 2)
                return 0;
        vd_name_to_text(b->nodes[a->owner].name, owner, sizeof(owner));
        vd_name_to_text(a->target, target, sizeof(target));
        if (a->walk == 1)
                return vd_error_set(err, "%s: alias %s -> %s: the aliases form a loop", a->place,
                                    owner, target),
                       -ELOOP;
        if (depth > VD_ALIAS_MAX_HOPS)
                return vd_error_set(err,
                                    "%s: alias %s -> %s: expected a chain of at most %d aliases",
                                    a->place, owner, target, VD_ALIAS_MAX_HOPS),
                       -ELOOP;
        a->walk = 1;
        int32_t node = find_target(b, a->target);
        int rc = 0;
        if (node >= 0 && (b->nodes[node].flags & NODE_ALIAS)) {
                rc = resolve_chain(b, i, node, depth, err);
                a = &b->aliases[i];
                if (rc != 0) {
                        /* name every alias of the loop, from the inside out */
                        size_t used = err != NULL ? strlen(err->msg) : 0;
                        if (rc == -ELOOP && err != NULL && used + 8 < sizeof(err->msg))
                                snprintf(err->msg + used, sizeof(err->msg) - used, "; via %s",
                                         a->place);
                        return rc;
                }
        }
        if (node >= 0) {
                rc = copy_rrset(b, a, node, err);
                if (rc != 0 && err != NULL) {
                        char inner[sizeof(err->msg)];
                        snprintf(inner, sizeof(inner), "%s", err->msg);
                        vd_error_set(err, "%s: alias %s -> %s: %s", b->aliases[i].place, owner,
                                     target, inner);
                }
        } else {
                int32_t zone = vd_snap_builder_zone_of(b, a->target);
                if (zone >= 0 && b->zones[zone].authoritative) {
                        char apex[VD_NAME_MAX * 4 + 2];
                        vd_name_to_text(b->nodes[b->zones[zone].node].name, apex, sizeof(apex));
                        return vd_error_set(err,
                                            "%s: alias %s -> %s: the target does not exist in "
                                            "the zone %s (%s); expected a name it holds",
                                            a->place, owner, target, apex, b->zones[zone].claim),
                               -ENOENT;
                }
                a->state = VD_ALIAS_UPSTREAM;
                b->nodes[a->owner].flags |= NODE_UPALIAS;
        }
        b->aliases[i].walk = 2;
        return rc;
}

int vd_snap_resolve_aliases(vd_builder *b, vd_error *err)
{
        for (size_t i = 0; i < b->naliases; i++) {
                int rc = resolve(b, i, 0, err);
                if (rc != 0)
                        return rc;
        }
        return 0;
}

int vd_snap_store_aliases(const vd_builder *b, vd_snapshot *s)
{
        size_t bytes = b->naliases * sizeof(vd_alias_info);
        for (size_t i = 0; i < b->naliases; i++)
                bytes += 2 * VD_NAME_MAX + strlen(b->aliases[i].place) + 1;
        if (b->naliases == 0)
                return 0;
        s->aliases = malloc(bytes);
        if (s->aliases == NULL)
                return -ENOMEM;
        char *p = (char *)(s->aliases + b->naliases);
        for (size_t i = 0; i < b->naliases; i++) {
                const struct balias *a = &b->aliases[i];
                const struct bnode *nd = &b->nodes[a->owner];
                vd_alias_info *o = &s->aliases[i];
                memcpy(p, nd->name, nd->len);
                o->owner = (const uint8_t *)p;
                p += VD_NAME_MAX;
                memcpy(p, a->target, a->target_len);
                o->target = (const uint8_t *)p;
                p += VD_NAME_MAX;
                size_t n = strlen(a->place) + 1;
                memcpy(p, a->place, n);
                o->place = p;
                p += n;
                o->type = a->type;
                o->state = a->state;
                o->ttl = a->ttl;
                o->records = a->records;
        }
        s->n_aliases = b->naliases;
        size_t up = 0;
        for (size_t i = 0; i < b->naliases; i++)
                up += b->aliases[i].state == VD_ALIAS_UPSTREAM;
        if (up == 0)
                return 0;
        s->upaliases = calloc(up, sizeof(*s->upaliases));
        if (s->upaliases == NULL)
                return -ENOMEM;
        for (size_t i = 0; i < b->naliases; i++) {
                if (b->aliases[i].state != VD_ALIAS_UPSTREAM)
                        continue;
                struct supalias *u = &s->upaliases[s->n_upaliases++];
                u->node = (uint32_t)b->aliases[i].owner; /* compiled nodes keep their index */
                u->type = b->aliases[i].type;
                u->target = s->aliases[i].target;
                u->target_len = b->aliases[i].target_len;
        }
        return 0;
}

const struct supalias *vd_snap_find_upalias(const vd_snapshot *s, const struct snode *n,
                                            uint16_t type)
{
        uint32_t node = (uint32_t)(n - s->nodes);
        for (size_t i = 0; i < s->n_upaliases; i++)
                if (s->upaliases[i].node == node && s->upaliases[i].type == type)
                        return &s->upaliases[i];
        return NULL;
}

size_t vd_snapshot_aliases(const vd_snapshot *s, const vd_alias_info **out)
{
        *out = s->aliases;
        return s->n_aliases;
}

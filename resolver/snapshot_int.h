/* snapshot_int.h — the snapshot module's shared structures, for its parts only: the builder
 * (snapshot_build.c), the compiler (snapshot.c), the answer path (snapshot_answer.c), the
 * CNAME loop check (snapshot_loops.c) and the views of a root (snapshot_views.c). Nothing else
 * includes it; the public contract is vpcdns/snapshot.h.
 *
 * Both sides hash names with name_hash_at() below, so a compiled table can be probed with the
 * hashes the builder stored. A compiled vd_snapshot is immutable once vd_builder_finish()
 * returns it. */
#ifndef VPCDNS_SNAPSHOT_INT_H
#define VPCDNS_SNAPSHOT_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"
#define MAX_LABELS 128
#define HASH_SEED 0x243F6A8885A308D3ull
#define RRSET_MAX_RECORDS 4096 /* records of one RRset, at most */
#define NO_ENI UINT32_MAX      /* the ENI index of a record that is not an ENI address */

enum node_flags {
        NODE_ZONE_APEX = 1, /* a zone is declared here */
        NODE_ENT = 2,       /* empty non-terminal inside an authoritative zone: exists */
        NODE_ALIAS = 4,     /* owns an alias (snapshot_alias.c) */
        NODE_UPALIAS = 8,   /* owns an alias resolved upstream (snapshot.h, upaliases) */
};

/* ---------- names and hashes shared by both sides ---------- */

/* Label offsets of an uncompressed wire name; offs[count] is the root label. */
static inline int name_labels(const uint8_t *name, uint8_t *offs)
{
        int count = 0;
        size_t p = 0;
        while (name[p] != 0) {
                offs[count++] = (uint8_t)p;
                p += 1 + (size_t)name[p];
        }
        offs[count] = (uint8_t)p;
        return count;
}

/* hashes[i] is the hash of the suffix starting at label i; computed from the root up so that
 * every suffix costs only its own label. */
static inline uint64_t hash_mix(uint64_t h, uint64_t word)
{
        h = (h ^ word) * 0x9E3779B97F4A7C15ull;
        return h ^ (h >> 29);
}

/* Eight octets from p, first octet lowest, whatever the byte order. */
static inline uint64_t load_le64(const uint8_t *p)
{
        uint64_t w;
        memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        return w;
}

/* The hash of a name, or of a suffix of one: its octets folded eight at a time, the last
 * word masked to the length (a valid name ends at its root octet, so no two names share the
 * masked words). The last word is read whole, so the buffer must hold VD_NAME_PAD octets
 * after the name. Each suffix is hashed on its own: the lookup hashes the whole question
 * first and a suffix only when the name itself is not there, which for a local answer (the
 * common case) is one pass over the name instead of one per label. Both sides (the builder
 * and the lookup) use this function, so the values never leave a process; the table is built
 * from our own data, so no seed is needed against flooding. */
static inline uint32_t name_hash_at(const uint8_t *p, size_t len)
{
        uint64_t h = HASH_SEED;
        size_t k = 0;
        for (; k + 8 <= len; k += 8)
                h = hash_mix(h, load_le64(p + k));
        if (k < len)
                h = hash_mix(h, load_le64(p + k) & (~0ull >> (8 * (8 - (len - k)))));
        return (uint32_t)(h ^ (h >> 32));
}

/* ---------- builder ---------- */

struct brr {
        uint8_t *rdata;
        uint16_t len;
        uint32_t eni;    /* index into the builder's ENI table, or NO_ENI */
        uint16_t member; /* routing-policy member + 1 (snapshot_policy.c), 0 when none */
};

struct brrset {
        uint16_t type;
        uint32_t ttl;
        struct brr *rrs;
        size_t n, cap;
};

struct bnode {
        uint8_t *name;
        uint8_t len;
        uint8_t flags;
        uint32_t hash;
        const char *claim; /* interned; NULL for ghosts and empty non-terminals */
        int cname_line;    /* file line of its CNAME record, 0 when unknown or none */
        int32_t wildcard;  /* node index of "*.<this>", or -1 */
        int32_t zone;      /* deepest zone at or above, -1 when none */
        struct brrset *sets;
        size_t nsets, sets_cap;
};

struct bzone {
        int32_t node;
        bool authoritative;
        uint8_t *soa;
        uint16_t soa_len;
        uint32_t soa_ttl;
        const char *claim;
};

struct vd_builder {
        struct store_chunk *store;
        struct bnode *nodes;
        size_t n, cap;
        uint32_t *table; /* node index + 1, 0 = empty */
        size_t table_cap;
        struct bzone *zones;
        size_t nz, zcap;
        char **claims;
        size_t nclaims, claims_cap;
        size_t records;
        vd_snapshot_eni *enis; /* the ENI table, one entry per (endpoint, address) */
        size_t n_enis, enis_cap;
        uint32_t *eni_table; /* ENI index + 1 by (endpoint, address) hash, 0 = empty */
        size_t eni_table_cap;
        struct bsubnet *subnets; /* client address → AZ (snapshot_az.c) */
        size_t n_subnets, subnets_cap;
        struct balias *aliases; /* snapshot_alias.c */
        size_t naliases, aliases_cap;
        struct bmember *members; /* routing-policy members (snapshot_policy.c) */
        size_t n_members, members_cap;
        uint16_t cur_member;   /* member + 1 that records added now belong to, 0 when none */
        bool member_inherited; /* cur_member is a copied record's: its TTL stays */
};

struct bsubnet {
        int family;
        uint8_t addr[16]; /* host bits cleared */
        uint8_t len;
        char az_name[32];
        char az_id[32];
};
/* ---------- the compiled snapshot ---------- */

struct snode {
        uint32_t name_off; /* in blob */
        uint32_t hash;
        int32_t zone;
        int32_t wildcard;
        uint32_t first_set;
        uint16_t nsets;
        uint8_t name_len;
        uint8_t flags;
};

struct sset {
        uint16_t type;
        uint16_t count;
        uint32_t first_rr; /* index into rr_off */
        bool eni;          /* some of its records are ENI addresses (rr_eni) */
        uint8_t policy;    /* vd_policy; 0: no routing policy, the fast path */
        uint16_t n_members;
        uint32_t first_member; /* index into members: its records grouped per member */
};

struct szone {
        uint32_t apex_off; /* in blob */
        uint32_t soa_off;  /* the SOA record's fixed part + rdata, TTL = negative TTL */
        uint16_t soa_len;
        uint8_t apex_len;
        uint8_t apex_labels;
        bool authoritative;
};

/* The mutable part of a snapshot: the health of each ENI address (1 up, 0 down) and how many
 * are down, so that answers skip the health check while every address is up. Relaxed
 * atomics: a reader may see a flip a query late, never a torn value. */
struct eni_health {
        atomic_uint down;
        _Atomic uint8_t up[];
};

/* An AZ of the snapshot: known by id when it has one, else by name. */
struct saz {
        char name[32];
        char id[32];
};

/* A subnet of the compiled table: sorted by prefix length (longest first), then address. */
struct ssubnet {
        uint8_t addr[16];
        uint8_t len;
        uint16_t az;
        uint32_t seq; /* order given, so that a repeated prefix keeps its first AZ */
};

#define NO_AZ UINT16_MAX

struct vd_snapshot {
        struct vd_snapshot_head head; /* first: read inline by vd_snapshot_for_client */
        atomic_int refs;
        struct snode *nodes;
        size_t n_nodes;
        uint32_t *table;
        size_t table_mask;
        struct sset *sets;
        uint32_t *rr_off; /* record i starts at blob[rr_off[i]]: type class ttl rdlen rdata */
        uint32_t *rr_eni; /* record i's index into enis, or NO_ENI */
        size_t n_rrs;
        vd_snapshot_eni *enis; /* the ENI table */
        size_t n_enis;
        struct eni_health *health; /* n_enis flags; written through a const snapshot */
        uint16_t *eni_az;          /* ENI i's index into azs, or NO_AZ */
        struct saz *azs;
        size_t n_azs;
        struct ssubnet *subnets[2]; /* [0] IPv4, [1] IPv6 */
        size_t n_subnets[2];
        struct szone *zones;
        size_t n_zones;
        uint8_t *blob;
        vd_snapshot_summary summary;
        size_t *order; /* nodes in insertion order with data, for foreach */
        size_t n_order;
        int max_labels;         /* of the deepest name */
        vd_alias_info *aliases; /* one block with their names and places */
        size_t n_aliases;
        struct smember *members; /* routing-policy members of the sets that have one */
        size_t n_members;
        struct supalias *upaliases; /* the VD_ALIAS_UPSTREAM ones, for the answer path */
        size_t n_upaliases;
};

/* An alias resolved upstream: its owner node, type and target (in aliases' block). */
struct supalias {
        uint32_t node;
        uint16_t type;
        uint8_t target_len;
        const uint8_t *target;
};

typedef enum lookup_kind {
        LOOKUP_FORWARD = 0,
        LOOKUP_NODE,     /* node holds the name's data (exact or wildcard) */
        LOOKUP_NXDOMAIN, /* zone says the name does not exist */
} lookup_kind;

typedef struct lookup_result {
        lookup_kind kind;
        const struct snode *node;
        int32_t zone;
} lookup_result;

/* snapshot_build.c: what the compiler needs of the builder. */
void vd_snap_builder_clear(vd_builder *b);
/* Label offsets and suffix hashes of a name (as the builder's nodes store them); the label
 * count. */
int vd_snap_name_suffixes(const uint8_t *name, uint8_t *offs, uint32_t *hashes);
int32_t vd_snap_node_get_hashed(vd_builder *b, const uint8_t *name, uint8_t len, uint32_t hash,
                                bool create);
void vd_snap_table_put(uint32_t *table, size_t cap, uint32_t hash, uint32_t index);
/* Octets of an RRset's records in a compiled snapshot (each with its owner pointer). */
size_t vd_snap_rrset_wire_size(const struct brrset *s);

/* snapshot_answer.c: the answer path's lookup, also used by the loop check. */
lookup_result vd_snap_lookup(const vd_snapshot *s, const uint8_t *name, const uint8_t *offs,
                             int labels);
const struct sset *vd_snap_find_set(const vd_snapshot *s, const struct snode *n, uint16_t type);

/* snapshot_az.c: the AZ table, the ENIs' AZs and the subnet table of s from b's ENI table
 * and subnets (-ENOMEM); and freeing them. */
int vd_snap_compile_azs(const vd_builder *b, vd_snapshot *s);
void vd_snap_free_azs(vd_snapshot *s);
/* snapshot_alias.c: resolves every alias into the builder's records (before compiling), then
 * hands the snapshot its descriptions; frees the builder's alias list. */
struct balias {
        int32_t owner; /* node */
        uint16_t type;
        uint8_t target[VD_NAME_MAX];
        uint8_t target_len;
        const char *claim; /* interned */
        char *place;       /* malloc'd */
        vd_alias_state state;
        uint8_t walk; /* 0 unseen, 1 on the current chain, 2 done */
        uint32_t ttl;
        size_t records;
        uint16_t member; /* the routing-policy member its copies belong to, 0 when none */
};
int vd_snap_resolve_aliases(vd_builder *b, vd_error *err);
/* snapshot_build.c: adds a copy of rr under owner, the same ENI address as rr when it is one
 * (so that an alias to an endpoint's name gets its health and AZ order). */
int vd_snap_add_copy(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                     const struct brr *rr, const char *claim, vd_error *err);
int vd_snap_store_aliases(const vd_builder *b, vd_snapshot *s);
/* The alias resolved upstream of node n of s for type, or NULL (answer path; the aliases of a
 * node with NODE_UPALIAS are few: a linear scan). */
const struct supalias *vd_snap_find_upalias(const vd_snapshot *s, const struct snode *n,
                                            uint16_t type);
void vd_snap_free_builder_aliases(vd_builder *b);
/* snapshot_build.c: the hash of a whole lower-cased name of len octets. */
uint32_t vd_snap_name_hash_exact(const uint8_t *name, size_t len);
/* snapshot_build.c: the deepest zone at or above a lower-cased name (-1: none). */
int32_t vd_snap_builder_zone_of(vd_builder *b, const uint8_t *name);
/* snapshot_build.c: claims the node idx for claim (interned); -EEXIST with err when another
 * claim holds it. */
const char *vd_snap_intern_claim(vd_builder *b, const char *claim);
int vd_snap_claim_node(vd_builder *b, int32_t idx, const char *claim, vd_error *err);
/* snapshot_views.c: releases a root's views (NULL: nothing). */
void vd_snap_views_free(struct snap_views *v);

/* ---------- routing policies (snapshot_policy.c) ---------- */

/* A record set of a routing policy, as the loader described it. */
struct bmember {
        uint8_t policy; /* vd_policy */
        uint8_t weight;
        bool secondary;
        bool evaluate_health;
        uint32_t ttl; /* of its records (each record set has its own in Route 53) */
};

#define MEMBER_SECONDARY 1u
#define MEMBER_EVALUATE 2u /* EvaluateTargetHealth: down when all its ENI addresses are */
#define MEMBER_ENI 4u      /* some of its records are ENI addresses */
#define POLICY_PICK_MAX 8  /* record sets in one answer, at most (multivalue) */

/* A member of a compiled set: records first..first+count-1 of the set. */
struct smember {
        uint16_t first;
        uint16_t count;
        uint8_t weight;
        uint8_t flags;
};

/* Orders bs's records by member (order[k]: the k-th record to compile) and appends its
 * members to s->members, filling ss's policy fields; ss->policy stays 0 when no record has
 * a member. -ENOMEM. */
int vd_snap_policy_compile(const vd_builder *b, const struct brrset *bs, vd_snapshot *s,
                           struct sset *ss, uint16_t *order);
/* Answer time: the members of set (indexes from set->first_member) to answer, in order, for
 * this rotation value and the ENI health now; at least one, at most POLICY_PICK_MAX. */
size_t vd_snap_policy_pick(const vd_snapshot *s, const struct sset *set, uint32_t rotation,
                           uint16_t *out);

/* snapshot_loops.c: refuses a snapshot whose CNAMEs form a cycle (-ELOOP, err names it). */
int vd_snap_check_cname_loops(const vd_builder *b, const vd_snapshot *s, vd_error *err);

#endif

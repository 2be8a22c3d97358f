/* snapshot.c — the immutable lookup structure of local data and its builder.
 *
 * Build side (load time, may allocate freely): nodes keyed by lower-cased wire name in an
 * open-addressing table, each with RRsets, a claim (which source owns it), a wildcard link and
 * its zone. vd_builder_finish() adds empty non-terminals inside authoritative zones and
 * compiles everything into flat arrays: nodes, RRsets, and one blob holding every record in
 * wire form (type, class, TTL, rdlength, rdata) ready to copy into a response.
 *
 * Answer side (hot path): suffix hashes of the query name are computed once, right to left,
 * so finding the closest encloser costs one probe per label; answers are memcpy of
 * precompiled records with 2-byte compression pointers for owners. No allocation, no locks. */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

#define MAX_LABELS 128
#define HASH_SEED 0x243F6A8885A308D3ull

enum node_flags {
        NODE_ZONE_APEX = 1, /* a zone is declared here */
        NODE_ENT = 2,       /* empty non-terminal inside an authoritative zone: exists */
};

/* ---------- names and hashes shared by both sides ---------- */

/* Label offsets of an uncompressed wire name; offs[count] is the root label. */
static int name_labels(const uint8_t *name, uint8_t *offs)
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

/* hashes[i]: the hash of the suffix at label i, for every label and the root. */
static void suffix_hashes(const uint8_t *name, const uint8_t *offs, int labels, uint32_t *hashes)
{
        size_t total = (size_t)offs[labels] + 1;
        for (int i = 0; i <= labels; i++)
                hashes[i] = name_hash_at(name + offs[i], total - offs[i]);
}

static uint32_t name_hash(const uint8_t *name)
{
        uint8_t padded[VD_NAME_MAX + VD_NAME_PAD];
        size_t len = vd_name_len(name, VD_NAME_MAX);
        memcpy(padded, name, len); /* builder names are sized exactly */
        return name_hash_at(padded, len);
}

/* ---------- builder ---------- */

struct brr {
        uint8_t *rdata;
        uint16_t len;
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

/* The builder's names, records and per-node arrays are carved from chunks that are freed
 * together: a 40,000-name snapshot made some 150,000 mallocs, and their frees were 8 % of its
 * load. A per-node array that grows moves to a new place; the old one waits for the chunk. */
#define STORE_CHUNK ((size_t)256 << 10)
#define STORE_ALIGN 8

struct store_chunk {
        struct store_chunk *next;
        size_t size, used;
        _Alignas(STORE_ALIGN) uint8_t data[];
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
};

vd_builder *vd_builder_new(void)
{
        return calloc(1, sizeof(vd_builder));
}

static void builder_clear(vd_builder *b)
{
        while (b->store != NULL) {
                struct store_chunk *c = b->store;
                b->store = c->next;
                free(c);
        }
        for (size_t i = 0; i < b->nclaims; i++)
                free(b->claims[i]);
        free(b->nodes);
        free(b->table);
        free(b->zones);
        free(b->claims);
        memset(b, 0, sizeof(*b));
}

void vd_builder_free(vd_builder *b)
{
        if (b == NULL)
                return;
        builder_clear(b);
        free(b);
}

/* The capacity that holds need, doubling from cap (from first when cap is 0). */
static size_t grown_cap(size_t cap, size_t need, size_t first)
{
        size_t ncap = cap ? cap * 2 : first;
        while (ncap < need)
                ncap *= 2;
        return ncap;
}

static void *grow(void *ptr, size_t *cap, size_t need, size_t elem)
{
        if (need <= *cap)
                return ptr;
        size_t ncap = grown_cap(*cap, need, 16);
        void *p = realloc(ptr, ncap * elem);
        if (p != NULL)
                *cap = ncap;
        return p;
}

/* n octets from the builder's store (aligned for any of its structures); NULL when out of
 * memory. */
static void *store_alloc(vd_builder *b, size_t n)
{
        struct store_chunk *c = b->store;
        n = (n + STORE_ALIGN - 1) / STORE_ALIGN * STORE_ALIGN;
        if (c == NULL || c->size - c->used < n) {
                size_t size = n > STORE_CHUNK / 4 ? n : STORE_CHUNK;
                c = malloc(sizeof(*c) + size);
                if (c == NULL)
                        return NULL;
                c->size = size;
                c->used = 0;
                c->next = b->store;
                b->store = c;
        }
        void *p = c->data + c->used;
        c->used += n;
        return p;
}

/* ptr, an array of *cap elements in the store, with room for need: moved to a new array of
 * twice the size (four at first) when it is too small. */
static void *store_grow(vd_builder *b, void *ptr, size_t *cap, size_t need, size_t elem)
{
        if (need <= *cap)
                return ptr;
        size_t ncap = grown_cap(*cap, need, 4);
        void *p = store_alloc(b, ncap * elem);
        if (p == NULL)
                return NULL;
        if (*cap > 0)
                memcpy(p, ptr, *cap * elem);
        *cap = ncap;
        return p;
}

static const char *intern_claim(vd_builder *b, const char *claim)
{
        if (b->nclaims > 0 && strcmp(b->claims[b->nclaims - 1], claim) == 0)
                return b->claims[b->nclaims - 1];
        char **c = grow(b->claims, &b->claims_cap, b->nclaims + 1, sizeof(char *));
        if (c == NULL)
                return NULL;
        b->claims = c;
        char *copy = strdup(claim);
        if (copy == NULL)
                return NULL;
        b->claims[b->nclaims++] = copy;
        return copy;
}

static int32_t table_find(const uint32_t *table, size_t cap, const struct bnode *nodes,
                          const uint8_t *name, uint8_t len, uint32_t hash)
{
        if (cap == 0)
                return -1;
        size_t mask = cap - 1;
        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                uint32_t v = table[i];
                if (v == 0)
                        return -1;
                const struct bnode *nd = &nodes[v - 1];
                if (nd->hash == hash && nd->len == len && memcmp(nd->name, name, len) == 0)
                        return (int32_t)(v - 1);
        }
}

static void table_put(uint32_t *table, size_t cap, uint32_t hash, uint32_t index)
{
        size_t mask = cap - 1;
        size_t i = hash & mask;
        while (table[i] != 0)
                i = (i + 1) & mask;
        table[i] = index + 1;
}

static int table_grow(vd_builder *b)
{
        size_t ncap = b->table_cap ? b->table_cap * 2 : 64;
        uint32_t *t = calloc(ncap, sizeof(uint32_t));
        if (t == NULL)
                return -ENOMEM;
        for (size_t i = 0; i < b->n; i++)
                table_put(t, ncap, b->nodes[i].hash, (uint32_t)i);
        free(b->table);
        b->table = t;
        b->table_cap = ncap;
        return 0;
}

/* Finds the node for a lower-cased name whose hash is known, creating an empty one when
 * create is set. */
static int32_t node_get_hashed(vd_builder *b, const uint8_t *name, uint8_t len, uint32_t hash,
                               bool create)
{
        int32_t found = table_find(b->table, b->table_cap, b->nodes, name, len, hash);
        if (found >= 0 || !create)
                return found;
        if ((b->n + 1) * 2 > b->table_cap && table_grow(b) != 0)
                return -1;
        struct bnode *nodes = grow(b->nodes, &b->cap, b->n + 1, sizeof(struct bnode));
        if (nodes == NULL)
                return -1;
        b->nodes = nodes;
        struct bnode *nd = &b->nodes[b->n];
        memset(nd, 0, sizeof(*nd));
        nd->name = store_alloc(b, len);
        if (nd->name == NULL)
                return -1;
        memcpy(nd->name, name, len);
        nd->len = len;
        nd->hash = hash;
        nd->wildcard = -1;
        nd->zone = -1;
        table_put(b->table, b->table_cap, hash, (uint32_t)b->n);
        return (int32_t)b->n++;
}

/* Finds the node for a lower-cased name, creating an empty one when create is set. */
static int32_t node_get(vd_builder *b, const uint8_t *name, uint8_t len, bool create)
{
        return node_get_hashed(b, name, len, name_hash(name), create);
}

/* A name's label offsets and the hash of each of its suffixes (hashes[i]: the suffix at label
 * i), computed once: walking up a name then costs one table probe per label. */
static int name_suffixes(const uint8_t *name, uint8_t *offs, uint32_t *hashes)
{
        uint8_t padded[VD_NAME_MAX + VD_NAME_PAD];
        int labels = name_labels(name, offs);
        memcpy(padded, name, (size_t)offs[labels] + 1);
        suffix_hashes(padded, offs, labels, hashes);
        return labels;
}

static int lower_name(const uint8_t *in, uint8_t *out, uint8_t *len, vd_error *err)
{
        size_t n = vd_name_len(in, VD_NAME_MAX);
        if (n == 0)
                return vd_error_set(err, "malformed domain name");
        memcpy(out, in, n);
        vd_name_lower(out, n);
        *len = (uint8_t)n;
        return 0;
}

static int claim_node(vd_builder *b, int32_t idx, const char *claim, vd_error *err)
{
        struct bnode *nd = &b->nodes[idx];
        if (nd->claim == NULL) {
                nd->claim = claim;
                return 0;
        }
        if (nd->claim == claim || strcmp(nd->claim, claim) == 0)
                return 0;
        char text[VD_NAME_MAX * 4 + 2];
        vd_name_to_text(nd->name, text, sizeof(text));
        vd_error_set(err, "name %s is claimed twice: by %s and by %s", text, nd->claim, claim);
        return -EEXIST;
}

int vd_builder_add_zone(vd_builder *b, const uint8_t *apex, bool authoritative,
                        const uint8_t *soa_rdata, uint16_t soa_len, uint32_t soa_ttl,
                        const char *claim, vd_error *err)
{
        uint8_t name[VD_NAME_MAX];
        uint8_t len = 0;
        int rc = lower_name(apex, name, &len, err);
        if (rc != 0)
                return rc;
        const char *c = intern_claim(b, claim);
        if (c == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        int32_t idx = node_get(b, name, len, true);
        if (idx < 0)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        if (b->nodes[idx].flags & NODE_ZONE_APEX) {
                struct bzone *z = &b->zones[b->nodes[idx].zone];
                if (!z->authoritative && !authoritative)
                        return 0;
                if (z->authoritative && authoritative && strcmp(z->claim, c) == 0)
                        return 0;
                char text[VD_NAME_MAX * 4 + 2];
                vd_name_to_text(name, text, sizeof(text));
                vd_error_set(err, "zone %s is claimed twice: by %s and by %s", text, z->claim, c);
                return -EEXIST;
        }
        if (authoritative && (rc = claim_node(b, idx, c, err)) != 0)
                return rc;
        struct bzone *zones = grow(b->zones, &b->zcap, b->nz + 1, sizeof(struct bzone));
        if (zones == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        b->zones = zones;
        struct bzone *z = &b->zones[b->nz];
        z->soa = store_alloc(b, soa_len ? soa_len : 1);
        if (z->soa == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        memcpy(z->soa, soa_rdata, soa_len);
        z->soa_len = soa_len;
        z->soa_ttl = soa_ttl;
        z->node = idx;
        z->authoritative = authoritative;
        z->claim = c;
        b->nodes[idx].flags |= NODE_ZONE_APEX;
        b->nodes[idx].zone = (int32_t)b->nz++;
        if (authoritative)
                return vd_builder_add_rr(b, name, VD_TYPE_SOA, soa_ttl, soa_rdata, soa_len, c, err);
        return 0;
}

static struct brrset *rrset_get(vd_builder *b, struct bnode *nd, uint16_t type, bool create)
{
        for (size_t i = 0; i < nd->nsets; i++)
                if (nd->sets[i].type == type)
                        return &nd->sets[i];
        if (!create)
                return NULL;
        struct brrset *sets = store_grow(b, nd->sets, &nd->sets_cap, nd->nsets + 1, sizeof(*sets));
        if (sets == NULL)
                return NULL;
        nd->sets = sets;
        struct brrset *s = &nd->sets[nd->nsets++];
        memset(s, 0, sizeof(*s));
        s->type = type;
        return s;
}

static size_t rrset_wire_size(const struct brrset *s)
{
        size_t total = 0;
        for (size_t i = 0; i < s->n; i++)
                total += 12 + (size_t)s->rrs[i].len; /* owner pointer + fixed part + rdata */
        return total;
}

/* The rdata shapes the answer path and clients rely on: fixed-size addresses and names that
 * fill their rdata exactly. Other types are carried as given (their loaders checked them). */
static bool rdata_shape_ok(uint16_t type, const uint8_t *rdata, uint16_t rdlen)
{
        size_t mname, rname;
        switch (type) {
        case VD_TYPE_A:
                return rdlen == 4;
        case VD_TYPE_AAAA:
                return rdlen == 16;
        case VD_TYPE_CNAME:
        case VD_TYPE_NS:
        case VD_TYPE_PTR:
                return rdlen > 0 && vd_name_len(rdata, rdlen) == rdlen;
        case VD_TYPE_MX:
                return rdlen > 2 && vd_name_len(rdata + 2, rdlen - 2u) == rdlen - 2u;
        case VD_TYPE_SRV:
                return rdlen > 6 && vd_name_len(rdata + 6, rdlen - 6u) == rdlen - 6u;
        case VD_TYPE_SOA:
                mname = vd_name_len(rdata, rdlen);
                if (mname == 0)
                        return false;
                rname = vd_name_len(rdata + mname, rdlen - mname);
                return rname != 0 && mname + rname + 20 == rdlen;
        default:
                return true;
        }
}

int vd_builder_add_rr(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                      const uint8_t *rdata, uint16_t rdlen, const char *claim, vd_error *err)
{
        return vd_builder_add_rr_at(b, owner, type, ttl, rdata, rdlen, claim, 0, err);
}

int vd_builder_add_rr_at(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                         const uint8_t *rdata, uint16_t rdlen, const char *claim, int line,
                         vd_error *err)
{
        uint8_t name[VD_NAME_MAX];
        uint8_t len = 0;
        char text[VD_NAME_MAX * 4 + 2];
        int rc = lower_name(owner, name, &len, err);
        if (rc != 0)
                return rc;
        if (type == VD_TYPE_OPT || type == VD_TYPE_ANY || type == 0)
                return vd_error_set(err, "record type %u cannot be served as data", type);
        if (!rdata_shape_ok(type, rdata, rdlen)) {
                vd_name_to_text(name, text, sizeof(text));
                return vd_error_set(err, "%s: malformed rdata for record type %u", text, type);
        }
        const char *c = intern_claim(b, claim);
        if (c == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        int32_t idx = node_get(b, name, len, true);
        if (idx < 0)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        if ((rc = claim_node(b, idx, c, err)) != 0)
                return rc;

        /* A wildcard hangs off its parent, which may not exist as a name of its own. */
        if (name[0] == 1 && name[1] == '*') {
                int32_t parent = node_get(b, name + 2, (uint8_t)(len - 2), true);
                if (parent < 0)
                        return vd_error_set(err, "out of memory"), -ENOMEM;
                b->nodes[parent].wildcard = idx;
        }

        struct bnode *nd = &b->nodes[idx];
        /* CNAME excludes other data (RFC 1034 §3.6.2), except the SOA and NS that a zone apex
         * carries beside it (an endpoint service's hidden zone; docs/endpoint-dns.md). */
        bool apex = (nd->flags & NODE_ZONE_APEX) != 0;
        for (size_t i = 0; i < nd->nsets; i++) {
                uint16_t t = nd->sets[i].type;
                bool apex_data = apex && (t == VD_TYPE_SOA || t == VD_TYPE_NS);
                bool new_apex_data = apex && (type == VD_TYPE_SOA || type == VD_TYPE_NS);
                bool clash = (type == VD_TYPE_CNAME && t != VD_TYPE_CNAME && !apex_data) ||
                             (t == VD_TYPE_CNAME && type != VD_TYPE_CNAME && !new_apex_data);
                if (clash) {
                        vd_name_to_text(name, text, sizeof(text));
                        return vd_error_set(err, "%s: a CNAME cannot stand beside other data",
                                            text);
                }
        }
        struct brrset *s = rrset_get(b, nd, type, true);
        if (s == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        for (size_t i = 0; i < s->n; i++)
                if (s->rrs[i].len == rdlen && memcmp(s->rrs[i].rdata, rdata, rdlen) == 0)
                        return 0; /* identical record: merged */
        if (type == VD_TYPE_CNAME && s->n > 0) {
                vd_name_to_text(name, text, sizeof(text));
                return vd_error_set(err, "%s: more than one CNAME", text);
        }
        if (rrset_wire_size(s) + 12 + rdlen > 60000 || s->n >= 4096) {
                vd_name_to_text(name, text, sizeof(text));
                return vd_error_set(err, "%s: RRset of type %u is too large", text, type);
        }
        struct brr *rrs = store_grow(b, s->rrs, &s->cap, s->n + 1, sizeof(struct brr));
        if (rrs == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        s->rrs = rrs;
        uint8_t *copy = store_alloc(b, rdlen ? rdlen : 1);
        if (copy == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        memcpy(copy, rdata, rdlen);
        /* One TTL per RRset (RFC 2181 §5.2): the smallest given wins. */
        if (s->n == 0 || ttl < s->ttl)
                s->ttl = ttl;
        s->rrs[s->n].rdata = copy;
        s->rrs[s->n].len = rdlen;
        s->n++;
        if (type == VD_TYPE_CNAME)
                nd->cname_line = line;
        b->records++;
        return 0;
}

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
};

struct szone {
        uint32_t apex_off; /* in blob */
        uint32_t soa_off;  /* the SOA record's fixed part + rdata, TTL = negative TTL */
        uint16_t soa_len;
        uint8_t apex_len;
        uint8_t apex_labels;
        bool authoritative;
};

struct vd_snapshot {
        atomic_int refs;
        struct snode *nodes;
        size_t n_nodes;
        uint32_t *table;
        size_t table_mask;
        struct sset *sets;
        uint32_t *rr_off; /* record i starts at blob[rr_off[i]]: type class ttl rdlen rdata */
        size_t n_rrs;
        struct szone *zones;
        size_t n_zones;
        uint8_t *blob;
        vd_snapshot_summary summary;
        size_t *order; /* nodes in insertion order with data, for foreach */
        size_t n_order;
        int max_labels; /* of the deepest name */
};

static void snapshot_free(vd_snapshot *s)
{
        free(s->nodes);
        free(s->table);
        free(s->sets);
        free(s->rr_off);
        free(s->zones);
        free(s->blob);
        free(s->order);
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
}

/* Deepest zone at or above a name, found through the table (build side). */
static int32_t find_zone(vd_builder *b, const uint8_t *name, const uint8_t *offs,
                         const uint32_t *hashes, int labels)
{
        for (int i = 0; i <= labels; i++) {
                const uint8_t *suffix = name + offs[i];
                int32_t idx = node_get_hashed(b, suffix, (uint8_t)(offs[labels] + 1 - offs[i]),
                                              hashes[i], false);
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
                int labels = name_suffixes(name, offs, hashes);
                int32_t zone = find_zone(b, name, offs, hashes, labels);
                b->nodes[i].zone = zone;
                if (zone < 0 || !b->zones[zone].authoritative)
                        continue;
                uint8_t apex_len = b->nodes[b->zones[zone].node].len;
                for (int l = 0; l < labels; l++) {
                        uint8_t slen = (uint8_t)(len - offs[l]);
                        if (slen <= apex_len)
                                break;
                        int32_t idx = node_get_hashed(b, name + offs[l], slen, hashes[l], true);
                        if (idx < 0)
                                return -ENOMEM;
                        if (b->nodes[idx].nsets == 0)
                                b->nodes[idx].flags |= NODE_ENT;
                        b->nodes[idx].zone = zone;
                }
        }
        return 0;
}

static int check_cname_loops(const vd_builder *b, const vd_snapshot *s, vd_error *err);

int vd_builder_finish(vd_builder *b, vd_snapshot **out, vd_error *err)
{
        vd_snapshot *s = NULL;
        int rc = add_empty_non_terminals(b);
        if (rc != 0)
                goto oom;

        size_t nsets = 0, nrrs = 0, blob = 0;
        for (size_t i = 0; i < b->n; i++) {
                blob += b->nodes[i].len;
                nsets += b->nodes[i].nsets;
                for (size_t k = 0; k < b->nodes[i].nsets; k++) {
                        nrrs += b->nodes[i].sets[k].n;
                        blob += rrset_wire_size(&b->nodes[i].sets[k]);
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
        s->zones = calloc(b->nz ? b->nz : 1, sizeof(struct szone));
        s->blob = malloc(blob ? blob : 1);
        s->order = calloc(b->n ? b->n : 1, sizeof(size_t));
        if (!s->nodes || !s->table || !s->sets || !s->rr_off || !s->zones || !s->blob || !s->order)
                goto oom;
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
                        for (size_t r = 0; r < bs->n; r++) {
                                uint8_t *w = s->blob + bp;
                                s->rr_off[rp++] = (uint32_t)bp;
                                vd_wire_put16(w, bs->type);
                                vd_wire_put16(w + 2, VD_CLASS_IN);
                                vd_wire_put32(w + 4, bs->ttl);
                                vd_wire_put16(w + 8, bs->rrs[r].len);
                                memcpy(w + 10, bs->rrs[r].rdata, bs->rrs[r].len);
                                bp += 10 + (size_t)bs->rrs[r].len;
                        }
                }
                table_put(s->table, tcap, bn->hash, (uint32_t)i);
        }
        s->rr_off[rp] = (uint32_t)bp;
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
        atomic_init(&s->refs, 1);
        rc = check_cname_loops(b, s, err);
        if (rc != 0) {
                snapshot_free(s);
                return rc;
        }
        builder_clear(b);
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

/* ---------- lookup (hot path) ---------- */

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
static lookup_result lookup(const vd_snapshot *s, const uint8_t *name, const uint8_t *offs,
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
} writer;

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

/* Appends an RRset, starting at a rotating position. Returns the offset of the first record's
 * rdata in the response (for CNAME targets), or 0. */
static size_t put_rrset(writer *w, const vd_snapshot *s, const struct sset *set, uint16_t owner_ref,
                        uint32_t rotation)
{
        uint16_t start = set->count > 1 ? (uint16_t)(rotation % set->count) : 0;
        size_t first_rdata = w->len + 2 + 10;
        for (uint16_t k = 0; k < set->count; k++) {
                uint16_t r = (uint16_t)((start + k) % set->count);
                put_record(w, s, set->first_rr + r, owner_ref, 0);
        }
        return w->overflow ? 0 : first_rdata;
}

static const struct sset *find_set(const vd_snapshot *s, const struct snode *n, uint16_t type)
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
        return lookup(s, qi->qname_lower, qi->label_off, qi->labels).kind != LOOKUP_FORWARD;
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
        lookup_result res = lookup(s, qi->qname_lower, qi->label_off, qi->labels);
        if (res.kind == LOOKUP_FORWARD)
                return VD_LOCAL_FORWARD;

        size_t opt_room = qi->has_edns ? 11 : 0;
        writer w = {out, 0, cap > opt_room ? cap - opt_room : 0, false, {0, 0, 0}};
        w.len = vd_wire_begin_response(qi, VD_RCODE_NOERROR, out, w.cap);
        if (w.len == 0)
                return VD_LOCAL_FORWARD; /* cannot happen with a sane cap; let the caller cope */
        size_t header_len = w.len;

        uint8_t rcode = VD_RCODE_NOERROR;
        /* The name being answered: first the question, then each CNAME target in turn (copied
         * into target/target_offs, padded because lookup() hashes it). */
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
                const struct sset *set = find_set(cur, n, qi->qtype);
                if (set != NULL) {
                        put_rrset(&w, cur, set, name_ref, rotation);
                        break;
                }
                const struct sset *cname = find_set(cur, n, VD_TYPE_CNAME);
                if (cname == NULL) {
                        put_soa(&w, cur, n->zone, name, offs, labels, name_ref);
                        break;
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
                const uint8_t *rec = cur->blob + cur->rr_off[cname->first_rr];
                size_t tlen = vd_name_len(rec + 10, vd_wire_get16(rec + 8));
                if (tlen == 0)
                        break;
                memcpy(target, rec + 10, tlen);
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
                        res = lookup(s, name, offs, labels);
                        if (res.kind == LOOKUP_FORWARD && chase != NULL &&
                            chase->fallback != NULL) {
                                res = lookup(chase->fallback, name, offs, labels);
                                cur = chase->fallback;
                        }
                }
        }

        *len = finish_response(&w, qi, header_len, rcode, cap);
        return VD_LOCAL_ANSWERED;
}

/* ---------- load-time check: CNAME loops ---------- */

/* The node a CNAME of node n leads to through the answer path's own lookup (wildcards
 * included), or -1 when n has no CNAME or its target is not ours. */
static int32_t cname_next(const vd_snapshot *s, const struct snode *n)
{
        const struct sset *cname = find_set(s, n, VD_TYPE_CNAME);
        if (cname == NULL)
                return -1;
        const uint8_t *rec = s->blob + s->rr_off[cname->first_rr];
        uint8_t target[VD_NAME_MAX + VD_NAME_PAD] = {0};
        uint8_t offs[MAX_LABELS + 1];
        size_t tlen = vd_name_len(rec + 10, vd_wire_get16(rec + 8));
        if (tlen == 0)
                return -1;
        memcpy(target, rec + 10, tlen);
        vd_name_lower(target, tlen);
        lookup_result res = lookup(s, target, offs, name_labels(target, offs));
        return res.kind == LOOKUP_NODE ? (int32_t)(res.node - s->nodes) : -1;
}

/* Appends " -> NAME (PLACE)" for node i to the message text (cut short when it is full). */
static void describe_member(const vd_builder *b, int32_t i, char *text, size_t cap, bool first)
{
        char name[VD_NAME_MAX * 4 + 2];
        size_t used = strlen(text);
        const struct bnode *bn = &b->nodes[i];
        int n;
        vd_name_to_text(bn->name, name, sizeof(name));
        if (bn->cname_line > 0)
                n = snprintf(text + used, cap - used, "%s%s (%s:%d)", first ? "" : " -> ", name,
                             bn->claim, bn->cname_line);
        else
                n = snprintf(text + used, cap - used, "%s%s (%s)", first ? "" : " -> ", name,
                             bn->claim);
        if (n < 0)
                text[used] = '\0';
}

/* Every CNAME leads to at most one node, so the chains form a functional graph: one walk per
 * chain, each node visited once, finds every cycle. A cycle is reported at its member loaded
 * first, with the place of that CNAME record and the whole cycle. */
static int check_cname_loops(const vd_builder *b, const vd_snapshot *s, vd_error *err)
{
        enum { UNSEEN = 0, ON_PATH, DONE };
        uint8_t *state = calloc(s->n_nodes ? s->n_nodes : 1, 1);
        if (state == NULL)
                return vd_error_set(err, "out of memory while checking CNAME chains"), -ENOMEM;
        int rc = 0;
        for (size_t start = 0; start < s->n_nodes && rc == 0; start++) {
                int32_t cur = (int32_t)start;
                while (cur >= 0 && state[cur] == UNSEEN) {
                        state[cur] = ON_PATH;
                        cur = cname_next(s, &s->nodes[cur]);
                }
                if (cur >= 0 && state[cur] == ON_PATH) {
                        int32_t first = cur;
                        for (int32_t m = cname_next(s, &s->nodes[cur]); m != cur;
                             m = cname_next(s, &s->nodes[m]))
                                if (m < first)
                                        first = m;
                        char text[sizeof(err->msg) - 64] = "";
                        int32_t m = first;
                        do {
                                describe_member(b, m, text, sizeof(text), m == first);
                                m = cname_next(s, &s->nodes[m]);
                        } while (m != first);
                        char name[VD_NAME_MAX * 4 + 2];
                        vd_name_to_text(b->nodes[first].name, name, sizeof(name));
                        const struct bnode *fb = &b->nodes[first];
                        if (fb->cname_line > 0)
                                vd_error_set(err, "%s:%d: CNAME loop: %s -> %s", fb->claim,
                                             fb->cname_line, text, name);
                        else
                                vd_error_set(err, "%s: CNAME loop: %s -> %s", fb->claim, text,
                                             name);
                        rc = -ELOOP;
                }
                for (int32_t m = (int32_t)start; m >= 0 && state[m] == ON_PATH;
                     m = cname_next(s, &s->nodes[m]))
                        state[m] = DONE;
        }
        free(state);
        return rc;
}

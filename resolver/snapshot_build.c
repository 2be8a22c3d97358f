/* snapshot_build.c — the snapshot builder: nodes keyed by lower-cased wire name in an
 * open-addressing table, each with RRsets, a claim (which source owns it), a wildcard link and
 * its zone, all carved from the builder's store. Checks each zone and record as it is added.
 * Must not: compile (snapshot.c does) or answer queries. Load time only: may allocate. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

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

vd_builder *vd_builder_new(void)
{
        return calloc(1, sizeof(vd_builder));
}

void vd_snap_builder_clear(vd_builder *b)
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
        free(b->enis);
        free(b->eni_table);
        free(b->subnets);
        free(b->members);
        vd_snap_free_builder_aliases(b);
        memset(b, 0, sizeof(*b));
}

void vd_builder_free(vd_builder *b)
{
        if (b == NULL)
                return;
        vd_snap_builder_clear(b);
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

void vd_snap_table_put(uint32_t *table, size_t cap, uint32_t hash, uint32_t index)
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
                vd_snap_table_put(t, ncap, b->nodes[i].hash, (uint32_t)i);
        free(b->table);
        b->table = t;
        b->table_cap = ncap;
        return 0;
}

/* Finds the node for a lower-cased name whose hash is known, creating an empty one when
 * create is set. */
int32_t vd_snap_node_get_hashed(vd_builder *b, const uint8_t *name, uint8_t len, uint32_t hash,
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
        vd_snap_table_put(b->table, b->table_cap, hash, (uint32_t)b->n);
        return (int32_t)b->n++;
}

/* Finds the node for a lower-cased name, creating an empty one when create is set. */
static int32_t node_get(vd_builder *b, const uint8_t *name, uint8_t len, bool create)
{
        return vd_snap_node_get_hashed(b, name, len, name_hash(name), create);
}

/* A name's label offsets and the hash of each of its suffixes (hashes[i]: the suffix at label
 * i), computed once: walking up a name then costs one table probe per label. */
int vd_snap_name_suffixes(const uint8_t *name, uint8_t *offs, uint32_t *hashes)
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

size_t vd_snap_rrset_wire_size(const struct brrset *s)
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

static int add_record(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                      const uint8_t *rdata, uint16_t rdlen, const char *claim, int line,
                      uint32_t eni, vd_error *err)
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
        bool cname_taken = false; /* one CNAME per RRset, or per routing-policy member */
        for (size_t i = 0; i < s->n; i++) {
                if (s->rrs[i].member != b->cur_member)
                        continue;
                cname_taken = true;
                if (s->rrs[i].len == rdlen && memcmp(s->rrs[i].rdata, rdata, rdlen) == 0) {
                        if (s->rrs[i].eni == NO_ENI)
                                s->rrs[i].eni = eni;
                        return 0; /* identical record: merged */
                }
        }
        if (type == VD_TYPE_CNAME && cname_taken) {
                vd_name_to_text(name, text, sizeof(text));
                return vd_error_set(err, "%s: more than one CNAME", text);
        }
        if (vd_snap_rrset_wire_size(s) + 12 + rdlen > 60000 || s->n >= RRSET_MAX_RECORDS) {
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
        s->rrs[s->n].eni = eni;
        s->rrs[s->n].member = b->cur_member;
        if (b->cur_member != 0 && !b->member_inherited && ttl < b->members[b->cur_member - 1].ttl)
                b->members[b->cur_member - 1].ttl = ttl;
        s->n++;
        if (type == VD_TYPE_CNAME)
                nd->cname_line = line;
        b->records++;
        return 0;
}

int vd_builder_add_rr_at(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                         const uint8_t *rdata, uint16_t rdlen, const char *claim, int line,
                         vd_error *err)
{
        return add_record(b, owner, type, ttl, rdata, rdlen, claim, line, NO_ENI, err);
}

/* FNV-1a over an ENI table key: the endpoint id and the address. */
static uint32_t eni_key_hash(const char *endpoint_id, const uint8_t *addr, size_t alen)
{
        uint64_t h = 0xcbf29ce484222325ull;
        for (const char *p = endpoint_id; *p != '\0'; p++)
                h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
        h = (h ^ 0xff) * 0x100000001b3ull; /* separates the id from the address */
        for (size_t i = 0; i < alen; i++)
                h = (h ^ addr[i]) * 0x100000001b3ull;
        return (uint32_t)(h ^ (h >> 32));
}

static bool eni_key_eq(const vd_snapshot_eni *e, const char *endpoint_id, int family,
                       const uint8_t *addr, size_t alen)
{
        return e->family == family && memcmp(e->addr, addr, alen) == 0 &&
               strcmp(e->endpoint_id, endpoint_id) == 0;
}

static int eni_table_grow(vd_builder *b)
{
        size_t ncap = b->eni_table_cap ? b->eni_table_cap * 2 : 64;
        uint32_t *t = calloc(ncap, sizeof(uint32_t));
        if (t == NULL)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_enis; i++) {
                const vd_snapshot_eni *e = &b->enis[i];
                size_t alen = e->family == AF_INET ? 4 : 16;
                size_t slot = eni_key_hash(e->endpoint_id, e->addr, alen) & (ncap - 1);
                while (t[slot] != 0)
                        slot = (slot + 1) & (ncap - 1);
                t[slot] = (uint32_t)i + 1;
        }
        free(b->eni_table);
        b->eni_table = t;
        b->eni_table_cap = ncap;
        return 0;
}

/* The ENI table index of (eni->endpoint_id, the address in rdata), added when new. */
static int eni_index(vd_builder *b, const vd_snapshot_eni *eni, int family, const uint8_t *addr,
                     size_t alen, uint32_t *out)
{
        if ((b->n_enis + 1) * 2 > b->eni_table_cap && eni_table_grow(b) != 0)
                return -ENOMEM;
        size_t mask = b->eni_table_cap - 1;
        size_t slot = eni_key_hash(eni->endpoint_id, addr, alen) & mask;
        for (; b->eni_table[slot] != 0; slot = (slot + 1) & mask) {
                uint32_t i = b->eni_table[slot] - 1;
                if (eni_key_eq(&b->enis[i], eni->endpoint_id, family, addr, alen)) {
                        *out = i;
                        return 0;
                }
        }
        vd_snapshot_eni *enis = grow(b->enis, &b->enis_cap, b->n_enis + 1, sizeof(*enis));
        if (enis == NULL)
                return -ENOMEM;
        b->enis = enis;
        vd_snapshot_eni *e = &b->enis[b->n_enis];
        *e = *eni;
        /* Strings cut to their fields and terminated, whatever the caller left in them. */
        e->endpoint_id[sizeof(e->endpoint_id) - 1] = '\0';
        e->eni_id[sizeof(e->eni_id) - 1] = '\0';
        e->az_name[sizeof(e->az_name) - 1] = '\0';
        e->az_id[sizeof(e->az_id) - 1] = '\0';
        e->family = family;
        memset(e->addr, 0, sizeof(e->addr));
        memcpy(e->addr, addr, alen);
        b->eni_table[slot] = (uint32_t)b->n_enis + 1;
        *out = (uint32_t)b->n_enis++;
        return 0;
}

int vd_builder_add_rr_eni(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                          const uint8_t *rdata, uint16_t rdlen, const char *claim,
                          const vd_snapshot_eni *eni, vd_error *err)
{
        uint32_t index;
        int family = type == VD_TYPE_A ? AF_INET : AF_INET6;
        if (eni == NULL || (type != VD_TYPE_A && type != VD_TYPE_AAAA))
                return vd_error_set(err, "an ENI address must be an A or AAAA record");
        if (rdlen != (type == VD_TYPE_A ? 4 : 16))
                return vd_error_set(err, "malformed rdata for record type %u", type);
        if (eni_index(b, eni, family, rdata, rdlen, &index) != 0)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        return add_record(b, owner, type, ttl, rdata, rdlen, claim, 0, index, err);
}

int vd_builder_add_subnet(vd_builder *b, int family, const uint8_t *prefix, unsigned prefix_len,
                          const char *az_name, const char *az_id, vd_error *err)
{
        size_t alen = family == AF_INET ? 4 : 16;
        if ((family != AF_INET && family != AF_INET6) || prefix_len > alen * 8)
                return vd_error_set(err, "subnet: expected an IPv4 or IPv6 prefix");
        if ((az_name == NULL || az_name[0] == '\0') && (az_id == NULL || az_id[0] == '\0'))
                return vd_error_set(err, "subnet: expected an AZ name or ID");
        struct bsubnet *subnets =
            grow(b->subnets, &b->subnets_cap, b->n_subnets + 1, sizeof(*subnets));
        if (subnets == NULL)
                return vd_error_set(err, "out of memory"), -ENOMEM;
        b->subnets = subnets;
        struct bsubnet *n = &b->subnets[b->n_subnets++];
        memset(n, 0, sizeof(*n));
        n->family = family;
        n->len = (uint8_t)prefix_len;
        memcpy(n->addr, prefix, alen);
        for (unsigned bit = prefix_len; bit < alen * 8; bit++)
                n->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        snprintf(n->az_name, sizeof(n->az_name), "%s", az_name != NULL ? az_name : "");
        snprintf(n->az_id, sizeof(n->az_id), "%s", az_id != NULL ? az_id : "");
        return 0;
}

/* ---------- for the alias resolver (snapshot_alias.c) ---------- */

int vd_snap_add_copy(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                     const struct brr *rr, const char *claim, vd_error *err)
{
        /* The copy belongs to the alias's member, else to the one the record has. */
        uint16_t keep = b->cur_member;
        if (keep == 0) {
                b->cur_member = rr->member;
                b->member_inherited = true;
        }
        int rc = add_record(b, owner, type, ttl, rr->rdata, rr->len, claim, 0, rr->eni, err);
        b->cur_member = keep;
        b->member_inherited = false;
        return rc;
}

const char *vd_snap_intern_claim(vd_builder *b, const char *claim)
{
        return intern_claim(b, claim);
}

int vd_snap_claim_node(vd_builder *b, int32_t idx, const char *claim, vd_error *err)
{
        return claim_node(b, idx, claim, err);
}

uint32_t vd_snap_name_hash_exact(const uint8_t *name, size_t len)
{
        (void)len;
        return name_hash(name);
}

int32_t vd_snap_builder_zone_of(vd_builder *b, const uint8_t *name)
{
        uint8_t offs[MAX_LABELS + 1];
        uint32_t hashes[MAX_LABELS + 1];
        int labels = vd_snap_name_suffixes(name, offs, hashes);
        for (int i = 0; i <= labels; i++) {
                int32_t idx = vd_snap_node_get_hashed(
                    b, name + offs[i], (uint8_t)(offs[labels] + 1 - offs[i]), hashes[i], false);
                if (idx >= 0 && (b->nodes[idx].flags & NODE_ZONE_APEX))
                        return b->nodes[idx].zone;
        }
        return -1;
}

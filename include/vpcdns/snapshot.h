/* snapshot.h — the immutable lookup structure of all local data (AWS endpoint names and
 * zone files), and the builder that compiles it.
 *
 * Loaders (aws.c, zonefile.c) feed a vd_builder with zones and records; vd_builder_finish()
 * compiles them into a vd_snapshot: a hash table of lower-cased wire names, wildcard links
 * and zone apexes, each name holding its RRsets in ready wire form. A snapshot is never
 * modified after finish; workers share it read-only and release it with vd_snapshot_unref(),
 * so a reload can publish a new one with an atomic pointer swap.
 *
 * Claims: every zone and record carries a `claim` string naming its source, for example
 * "zones/example/describe-vpc-endpoints.json: VpcEndpoints[2] (vpce-0abc...)" or
 * "zones/example/corp.zone". Records of one claim may share names freely; a name (or an
 * authoritative zone apex) that two different claims hold is a load error naming both.
 * The builder copies the claim string; callers keep ownership of theirs.
 *
 * ENI addresses: A/AAAA records of AWS endpoints carry their ENI (vd_builder_add_rr_eni); the
 * snapshot lists them in its ENI table with a health flag each, which a prober may flip while
 * the snapshot is published. An RRset holding such records answers only the addresses that
 * are up (all of them when none is). */
#ifndef VPCDNS_SNAPSHOT_H
#define VPCDNS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "vpcdns/addr.h"
#include "vpcdns/common.h"

struct sockaddr;
typedef struct vd_builder vd_builder;
typedef struct vd_snapshot vd_snapshot;

vd_builder *vd_builder_new(void);
void vd_builder_free(vd_builder *b);

/* Declares a zone with its SOA rdata (wire, uncompressed names) and SOA TTL.
 * authoritative=true: a private hosted zone. The builder also adds the SOA record at the
 * apex, so callers must not add it themselves. Any name at or under the apex that is not
 * found gets NXDOMAIN with this SOA; names that exist with other types get NODATA.
 * authoritative=false: a public zone we only borrow an SOA from (the region's
 * vpce.amazonaws.com zone). Its apex answers nothing and names under it that are not
 * loaded are forwarded; it only supplies the SOA for NODATA at names that are loaded.
 * Declaring the same apex again is allowed when both are non-authoritative (the first SOA
 * stays) or when the claim is the same; otherwise it is a conflict error. */
int vd_builder_add_zone(vd_builder *b, const uint8_t *apex, bool authoritative,
                        const uint8_t *soa_rdata, uint16_t soa_len, uint32_t soa_ttl,
                        const char *claim, vd_error *err);

/* Adds one IN-class record. owner is an uncompressed wire name (any case; it is
 * lower-cased); a first label "*" makes it a wildcard (RFC 4592) that answers for names
 * with one or more labels more under the rest. rdata is wire format with uncompressed
 * names. Identical records are merged. Returns 0, or a negative code with err set (claim
 * conflict, malformed name, CNAME beside other data of another claim, too large RRset). */
int vd_builder_add_rr(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                      const uint8_t *rdata, uint16_t rdlen, const char *claim, vd_error *err);

/* One ENI address of the snapshot's endpoints (an A or AAAA record made from an ENI). */
typedef struct vd_snapshot_eni {
        int family;           /* AF_INET or AF_INET6 */
        uint8_t addr[16];     /* 4 or 16 bytes */
        char endpoint_id[64]; /* "vpce-..." */
        char eni_id[64];      /* "eni-..." */
        char az_name[32];     /* "us-east-1a", "" when unknown */
        char az_id[32];       /* "use1-az4", "" when unknown (from describe-subnets) */
} vd_snapshot_eni;

/* As vd_builder_add_rr, for an A or AAAA record whose address is an ENI's: eni names the
 * endpoint, the ENI and its AZ (its family and addr are ignored: the rdata is the address).
 * The snapshot keeps one ENI table entry per distinct (endpoint_id, address), shared by every
 * record made from it (the regional name, the private names, the wildcard); the first
 * identity given for an entry is kept. Records added with vd_builder_add_rr are never ENI
 * addresses. Any other type, or a NULL eni, is an error. */
int vd_builder_add_rr_eni(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                          const uint8_t *rdata, uint16_t rdlen, const char *claim,
                          const vd_snapshot_eni *eni, vd_error *err);

/* Compiles everything added so far. On success the builder is consumed (free it anyway,
 * it is then empty) and *out holds a snapshot with one reference. */
int vd_builder_finish(vd_builder *b, vd_snapshot **out, vd_error *err);

void vd_snapshot_ref(vd_snapshot *s);   /* atomic */
void vd_snapshot_unref(vd_snapshot *s); /* atomic; frees on the last reference */

typedef struct vd_snapshot_summary {
        size_t names;   /* names that hold records (wildcards included) */
        size_t records; /* resource records, SOA records included */
        size_t zones;   /* authoritative zones */
} vd_snapshot_summary;
/* The counts of s; of a root with views (below), its own data and every view's added up (a
 * zone file's names count once per view). */
void vd_snapshot_summarize(const vd_snapshot *s, vd_snapshot_summary *out);

/* The ENI table: entries in the order first added, 0 <= i < vd_snapshot_eni_count(s). */
size_t vd_snapshot_eni_count(const vd_snapshot *s);
const vd_snapshot_eni *vd_snapshot_eni_at(const vd_snapshot *s, size_t i);
/* Health of ENI address i, false = down. Every address starts up. Any thread, any time, also
 * on a published snapshot (a relaxed atomic per address, the one mutable part of a snapshot).
 * Answers leave down addresses out, except when every address of the RRset is down (fail open). */
void vd_snapshot_eni_set_up(const vd_snapshot *s, size_t i, bool up);
bool vd_snapshot_eni_up(const vd_snapshot *s, size_t i);

/* ---- availability zones: the client's AZ and AZ-local answers ----
 *
 * The snapshot's AZ table holds every AZ of its ENI addresses and subnets, each known by its
 * AZ ID when the data has one ("use1-az4": the same zone in every account) and else by its
 * name ("us-east-1a": names are shuffled between accounts). Its subnet table maps client
 * addresses to AZs (longest prefix wins). */

/* Adds a subnet: addresses under prefix/prefix_len (family AF_INET or AF_INET6, bits beyond
 * the prefix ignored) are in the AZ az_id ("" unknown), named az_name ("" unknown). The same
 * prefix given again keeps the first AZ. Errors: a bad family or length, no AZ at all. */
int vd_builder_add_subnet(vd_builder *b, int family, const uint8_t *prefix, unsigned prefix_len,
                          const char *az_name, const char *az_id, vd_error *err);

typedef enum vd_az_affinity {
        VD_AZ_AFFINITY_OFF = 0, /* every address, rotated */
        VD_AZ_AFFINITY_PREFER,  /* the client's AZ first, the rest after, each group rotated */
        VD_AZ_AFFINITY_STRICT,  /* only the client's AZ when it has an address up there */
} vd_az_affinity;

/* Who asks, for choosing among ENI addresses (vd_local_chase.client). */
typedef struct vd_answer_client {
        vd_az_affinity affinity;
        const char *az;              /* the client's AZ (ID or name) when known (config, IMDS) */
        const struct sockaddr *addr; /* without az: the AZ by the subnet table; may be NULL */
} vd_answer_client;

/* The client's AZ as an index into the AZ table, or -1 when unknown: c->az matched against
 * each AZ's ID, then each AZ's name (case-insensitive); without c->az, c->addr looked up in
 * the subnet table (an IPv4-mapped IPv6 address counts as IPv4). Never allocates. */
int vd_snapshot_client_az(const vd_snapshot *s, const vd_answer_client *c);
size_t vd_snapshot_az_count(const vd_snapshot *s);
/* AZ i's name and ID, "" when unknown (never both). */
const char *vd_snapshot_az_name(const vd_snapshot *s, size_t i);
const char *vd_snapshot_az_id(const vd_snapshot *s, size_t i);
/* ENI address i's AZ index, or -1 when it has none. */
int vd_snapshot_eni_az(const vd_snapshot *s, size_t i);
size_t vd_snapshot_subnet_count(const vd_snapshot *s);

/* Visits every record in a stable order (names in the order first added, RRsets in the order
 * first added). Stops and returns the callback's value when it is non-zero. */
typedef int (*vd_rr_visit_fn)(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                              const uint8_t *rdata, uint16_t rdlen);
int vd_snapshot_foreach(const vd_snapshot *s, vd_rr_visit_fn fn, void *arg);

/* Same as vd_builder_add_rr, for a record read from a file at line (> 0): a CNAME loop found
 * by vd_builder_finish is reported as "CLAIM:LINE: ..." for such a record. */
int vd_builder_add_rr_at(vd_builder *b, const uint8_t *owner, uint16_t type, uint32_t ttl,
                         const uint8_t *rdata, uint16_t rdlen, const char *claim, int line,
                         vd_error *err);

/* The longest CNAME chain followed for one question, local and upstream hops together; a
 * longer one is answered SERVFAIL. */
#define VD_CNAME_MAX_HOPS 12

/* The outcome of answering a query from local data. */
typedef enum vd_local_result {
        VD_LOCAL_FORWARD = 0, /* not ours: the caller forwards it */
        VD_LOCAL_ANSWERED,    /* *len bytes of response are in out */
        VD_LOCAL_CHASE,       /* the CNAME chain left local data: see vd_local_chase */
} vd_local_result;

/* Where a CNAME chain left local data (vd_snapshot_answer_chase). */
typedef struct vd_local_chase {
        /* Asked before each CNAME target is looked up here (may be NULL): true when the target
         * must not be answered from local data (a forwarding rule covers it); the chain then
         * leaves local data at that target. name is a lower-cased wire name. */
        bool (*leaves)(void *arg, const uint8_t *name, size_t len);
        void *leaves_arg;
        /* Asked for a CNAME target this snapshot does not hold (may be NULL): a second,
         * read-only snapshot whose data ends the chain (the special-use names), so that such
         * a chain is answered here without a chase. */
        const vd_snapshot *fallback;
        /* Who asks (may be NULL: no AZ affinity): RRsets of ENI addresses are ordered or cut
         * to the client's AZ as client->affinity says. Down addresses are left out either way
         * (all of them answered when none is up); in strict mode the client's AZ counts only
         * when one of its addresses is up. */
        const vd_answer_client *client;
        /* Set on VD_LOCAL_CHASE: */
        uint8_t target[VD_NAME_MAX]; /* lower-cased wire name the chain continues with */
        size_t target_len;
        size_t target_ref; /* where that name stands uncompressed in the response, or 0 */
        unsigned hops;     /* CNAMEs followed so far */
        /* Set on VD_LOCAL_CHASE when the chain reached an alias whose target is outside local
         * data (a load balancer, CloudFront): the target's records of the question's type go
         * under the alias's name (target_ref points at it in the response), CNAMEs of the
         * target's chain are followed but not written, and a target that does not exist or has
         * no such data makes the alias NODATA with the SOA record of alias_soa_len octets that
         * follows out[*len] (its owner compressed against the response). */
        bool alias;
        size_t alias_soa_len;
} vd_local_chase;

struct vd_query_info;
/* True when local data answers qi's name (it holds the name, or a zone it owns says the name
 * does not exist); false when the name is forwarded. Never allocates. */
bool vd_snapshot_holds(const vd_snapshot *s, const struct vd_query_info *qi);

/* Answers qi from local data into out (capacity cap, the client's size limit): header,
 * question as sent, answer (CNAME chain followed, RRsets rotated by `rotation`), SOA in the
 * authority section for NXDOMAIN/NODATA, OPT when the client sent EDNS, TC when it does not
 * fit; SERVFAIL when the chain is longer than VD_CNAME_MAX_HOPS. A chain that leaves local
 * data ends the answer at its last CNAME. Never allocates. */
vd_local_result vd_snapshot_answer(const vd_snapshot *s, const struct vd_query_info *qi,
                                   uint32_t rotation, uint8_t *out, size_t cap, size_t *len);

/* As vd_snapshot_answer, except that a chain leaving local data (a CNAME target that neither
 * this snapshot nor chase->fallback holds, or one chase->leaves refuses) returns
 * VD_LOCAL_CHASE: out[0..*len) then holds the
 * header (counts set, NOERROR, no OPT), the question and the chain so far, and chase says
 * where it goes on. When the chain so far does not fit in cap, the TC answer is returned as
 * VD_LOCAL_ANSWERED (the whole chain could not fit either). Never allocates. */
vd_local_result vd_snapshot_answer_chase(const vd_snapshot *s, const struct vd_query_info *qi,
                                         uint32_t rotation, uint8_t *out, size_t cap, size_t *len,
                                         vd_local_chase *chase);

/* ---------- alias records (Route 53 AliasTarget) ---------- */

/* What an alias answers once vd_builder_finish has resolved it. */
typedef enum vd_alias_state {
        VD_ALIAS_LOCAL = 0, /* the target's RRset of the alias's type was copied */
        VD_ALIAS_EMPTY,     /* the target exists here without that type: the alias is NODATA */
        VD_ALIAS_UPSTREAM,  /* the target is outside local data: resolved per answer (chase) */
} vd_alias_state;

#define VD_ALIAS_MAX_HOPS 8 /* an alias may lead to another alias this many times */

/* Declares that owner answers `type` with the records target holds of that type, TTL from
 * the target (an alias has no TTL of its own), with no CNAME in the answer. The owner is
 * claimed now (claim); place ("FILE: ResourceRecordSets[3]") names the record in errors.
 * At vd_builder_finish the target is looked up in everything loaded (exact name, else a
 * wildcard); a target that is itself an alias of the type is resolved first (at most
 * VD_ALIAS_MAX_HOPS, a loop is an error naming each place). A target that does not exist
 * inside a loaded authoritative zone is an error; one outside every loaded zone (a load
 * balancer, CloudFront) is kept as VD_ALIAS_UPSTREAM: vd_snapshot_answer_chase returns
 * VD_LOCAL_CHASE for it in alias mode (vd_local_chase.alias), vd_snapshot_answer NODATA. */
int vd_builder_add_alias(vd_builder *b, const uint8_t *owner, uint16_t type, const uint8_t *target,
                         const char *claim, const char *place, vd_error *err);

/* Routing policies chosen per answer. A member is one record set of a policy: the records
 * and aliases added after vd_builder_policy_member(b, m) belong to it, until the next call
 * (m == NULL: none again). An RRset whose records belong to members answers, each time,
 * WEIGHTED: one member, chosen by weight (0 only when every weight is 0, then equally);
 * MULTIVALUE: up to eight members from a random place; FAILOVER: the primary, or the
 * secondary when the primary evaluates its target's health and all of its ENI addresses
 * are down. A member that evaluates health (always, for multivalue) and whose ENI addresses
 * are all down is left out while any other is up. Identical records of two members stay
 * apart. -ENOMEM, -E2BIG (more than 65534 members). */
typedef enum vd_policy {
        VD_POLICY_NONE = 0,
        VD_POLICY_WEIGHTED,
        VD_POLICY_MULTIVALUE,
        VD_POLICY_FAILOVER,
} vd_policy;
typedef struct vd_policy_member {
        vd_policy policy;
        uint8_t weight;       /* WEIGHTED */
        bool secondary;       /* FAILOVER */
        bool evaluate_health; /* an alias's EvaluateTargetHealth */
} vd_policy_member;
int vd_builder_policy_member(vd_builder *b, const vd_policy_member *m, vd_error *err);

/* The region of the first endpoint zone added ("us-east-1" from
 * us-east-1.vpce.amazonaws.com), or "" when none; for loaders that choose by region. */
void vd_builder_region(const vd_builder *b, char *out, size_t cap);

typedef struct vd_alias_info {
        const uint8_t *owner;  /* wire, lower-cased */
        const uint8_t *target; /* wire, lower-cased */
        const char *place;
        uint16_t type;
        vd_alias_state state;
        uint32_t ttl;   /* the target's TTL (VD_ALIAS_LOCAL) */
        size_t records; /* records copied (VD_ALIAS_LOCAL) */
} vd_alias_info;

/* The aliases of s in the order they were added; *out valid while s is. */
size_t vd_snapshot_aliases(const vd_snapshot *s, const vd_alias_info **out);
/* ---- Views: the data of several VPCs, each for its own clients (docs/views.md) ----------
 *
 * With views, the one published snapshot is a root: its own data (the zone files) is what
 * clients outside every view see, and it owns one snapshot per view (the zone files and that
 * view's VPC's endpoints). Workers keep publishing, referencing and releasing the root only;
 * freeing the root frees its views. Without views a snapshot is its own and only view. */

typedef struct vd_view_spec {
        const char *name;       /* copied */
        const vd_cidr *clients; /* copied; IPv4-mapped IPv6 clients count as IPv4 */
        size_t n_clients;
        bool is_default;   /* clients outside every view's prefixes get this view */
        vd_snapshot *snap; /* one reference, taken over by vd_snapshot_set_views */
} vd_view_spec;

/* Makes root the root of the n views of specs (at most one is_default): root takes over each
 * spec's snapshot, also on error. Before root is shared only. 0, or -ENOMEM with err set. */
int vd_snapshot_set_views(vd_snapshot *root, const vd_view_spec *specs, size_t n, vd_error *err);

/* The views of root (0 without), and view i's snapshot and name (borrowed from root). */
size_t vd_snapshot_view_count(const vd_snapshot *root);
const vd_snapshot *vd_snapshot_view(const vd_snapshot *root, size_t i, const char **name);

/* The view client (NULL: unknown) belongs to: the view with the longest prefix that holds
 * its address, else the default view; -1 when none (an outsider) or root has no views.
 * Never allocates. */
int vd_snapshot_view_of(const vd_snapshot *root, const struct sockaddr *client);

/* What every snapshot starts with, so that the hot path can tell a root with views from a
 * plain snapshot without a call. Read-only outside the snapshot module. */
struct vd_snapshot_head {
        struct snap_views *views; /* NULL: no views */
};

/* vd_snapshot_for_client for a root with views (snapshot_views.c). */
const vd_snapshot *vd_snap_for_client_views(const vd_snapshot *root, const struct sockaddr *client,
                                            bool *outsider);

/* The snapshot that answers client: its view's, or root's own for an outsider and when root
 * has no views. *outsider: client is outside every view and there is no default view (then
 * ask vd_snapshot_refuses). Never allocates; without views one load and one branch. */
static inline const vd_snapshot *
vd_snapshot_for_client(const vd_snapshot *root, const struct sockaddr *client, bool *outsider)
{
        /* a vd_snapshot begins with its head (C11 6.7.2.1: a pointer to a struct converts to
         * a pointer to its first member) */
        const struct vd_snapshot_head *head = (const struct vd_snapshot_head *)(const void *)root;
        *outsider = false;
        if (head->views == NULL)
                return root;
        return vd_snap_for_client_views(root, client, outsider);
}

/* For an outsider: true when root's own data does not answer qi's name but a view's does
 * (an endpoint name of some VPC): the answer is REFUSED. Never allocates. */
bool vd_snapshot_refuses(const vd_snapshot *root, const struct vd_query_info *qi);

#endif

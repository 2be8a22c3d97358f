/* aws_int.h — the AWS snapshot loader's shared state, for its parts only: the driver (aws.c),
 * the JSON reader (aws_json.c), the interfaces file (aws_eni.c), the endpoints file
 * (aws_endpoint.c) and the names and records of an endpoint (aws_records.c). Nothing else
 * includes it; the public contract is vpcdns/aws.h.
 *
 * Ownership: one loader lives for one vd_aws_load() call. Its ENI array, id table and VpcId
 * list are malloc'd and freed by vd_aws_load(); the JSON trees and the ENIs' addresses live
 * in the load's JSON arena and are released with it. Strings borrowed from the trees (ENI ids,
 * AZs, VpcIds) are valid only while the load runs. */
#ifndef VPCDNS_AWS_INT_H
#define VPCDNS_AWS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "vpcdns/aws.h"
#include "vpcdns/common.h"
#include "vpcdns/snapshot.h"

#define FILE_PATH_CAP 4096
#define JSON_WHERE_CAP 64 /* "VpcEndpoints[N]", "NetworkInterfaces[N]" */
#define JSON_PATH_CAP 256
#define CLAIM_CAP (FILE_PATH_CAP + 320)

/* Route 53's SOA and NS for private hosted zones (the hidden zone of docs/endpoint-dns.md), TTL and
 * MINIMUM 60. */
#define SOA_MNAME "ns-1536.awsdns-00.co.uk."
#define SOA_RNAME "awsdns-hostmaster.amazon.com."
#define SOA_SERIAL 1
#define SOA_REFRESH 7200
#define SOA_RETRY 900
#define SOA_EXPIRE 1209600
#define SOA_MINIMUM 60
#define SOA_TTL 60
#define NS_TTL 172800
#define ZONE_NS_COUNT 4 /* the names of zone_ns[] in aws.c */

typedef struct address {
        uint16_t type; /* VD_TYPE_A or VD_TYPE_AAAA */
        uint8_t bytes[16];
} address;

typedef struct eni {
        const char *id; /* borrowed from the interfaces document */
        const char *az; /* borrowed; NULL when absent */
        size_t index;   /* position in NetworkInterfaces[] */
        address *addrs;
        size_t n_addrs;
        /* SubnetId, borrowed; NULL when absent */
        const char *subnet;
} eni;

/* A Subnets[] entry of the optional subnets file (strings borrowed from it). */
typedef struct subnet {
        const char *id;
        const char *az;    /* AvailabilityZone */
        const char *az_id; /* AvailabilityZoneId; NULL when absent */
} subnet;

#define VD_AWS_SUBNETS_FILE "describe-subnets.json"

typedef enum ip_mode {
        IP_V4 = 0,
        IP_V6,
        IP_DUALSTACK,
        IP_SERVICE_DEFINED,
} ip_mode;

typedef enum name_kind {
        NAME_PRIVATE = 0,
        NAME_REGIONAL, /* vpce-<id>-<8>.<svc>.<region>.vpce.amazonaws.com[.cn] */
        NAME_ZONAL,    /* the same with -<az> appended to the first label */
} name_kind;

typedef struct dns_name {
        name_kind kind;
        bool wildcard;
        size_t entry;               /* DnsEntries[entry] */
        char text[VD_NAME_MAX + 2]; /* lower-cased, without a final dot */
        uint8_t wire[VD_NAME_MAX];  /* the owner, "*" label included */
        uint8_t zone[VD_NAME_MAX];  /* private: the apex; vpce: the region's public zone */
        char az[VD_LABEL_MAX + 1];  /* zonal: the AZ name */
} dns_name;

typedef struct loader {
        vd_builder *b;
        vd_error *err;
        char ep_file[FILE_PATH_CAP]; /* DIR/describe-vpc-endpoints.json */
        char if_file[FILE_PATH_CAP]; /* DIR/describe-network-interfaces.json */
        int dir_fd;                  /* DIR, opened once: both files come from the same directory */
        eni *enis;                   /* in file order */
        size_t n_enis;
        size_t *eni_table; /* indexes into enis by id hash, SIZE_MAX empty */
        size_t eni_mask;   /* table size - 1 */
        uint8_t soa[2 * VD_NAME_MAX + 20];
        uint16_t soa_len;
        uint8_t ns[ZONE_NS_COUNT][VD_NAME_MAX];
        uint16_t ns_len[ZONE_NS_COUNT];
        const char **vpcs; /* distinct VpcIds of the endpoints file, borrowed, file order */
        size_t n_vpcs;
        size_t ep_records;  /* A, AAAA and CNAME records added for the current endpoint */
        vd_aws_options opt; /* opt.vpc borrowed from the caller */
        vd_aws_summary sum;
        /* DIR/describe-subnets.json (optional), and its Subnets[] in file order (malloc'd) */
        char sn_file[FILE_PATH_CAP];
        subnet *subnets;
        size_t n_subnets;
} loader;

/* One endpoint being loaded. */
typedef struct endpoint {
        size_t index;
        const char *id;  /* "?" when absent */
        const char *vpc; /* VpcId; NULL when absent */
        char path[JSON_WHERE_CAP];
        char claim[CLAIM_CAP];
        ip_mode mode;
        bool private_dns; /* PrivateDnsEnabled, and not inbound-only */
        bool service;     /* an endpoint service: private names are CNAMEs */
        const eni **enis; /* its ENIs, duplicates removed */
        size_t n_enis;
        dns_name *names;
        size_t n_names;
        const dns_name *regional; /* the regional non-wildcard vpce name, or NULL */
} endpoint;

/* cJSON's tree, read through these helpers only. */
typedef cJSON json_t;
typedef enum json_want { WANT_OBJECT, WANT_ARRAY, WANT_STRING, WANT_BOOL } json_want;

/* Every element of an array (cJSON arrays are lists: never index them in a loop). */
#define JSON_EACH(item, array)                                                                     \
        for (const json_t *item = (array) != NULL ? (array)->child : NULL; item != NULL;           \
             item = item->next)

/* A string's text; NULL for anything else. */
static inline const char *json_str(const json_t *v)
{
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline size_t json_len(const json_t *array)
{
        size_t n = 0;
        JSON_EACH(item, array)
        n++;
        return n;
}

/* The JSON trees of one load live in an arena (aws_json.c says why and how). */
typedef struct json_arena {
        struct arena_chunk *head;
} json_arena;

/* aws_json.c: text builders, the checked JSON readers and the arena. */
/* Appends text (at most max octets) or index as "[N]" to out (capacity cap, at *at), cut
 * short when full and kept NUL-terminated. */
void vd_aws_put_text(char *out, size_t cap, size_t *at, const char *text, size_t max);
void vd_aws_put_index(char *out, size_t cap, size_t *at, size_t index);
/* Errors: set l->err and return a negative errno. */
int vd_aws_no_memory(loader *l);
int vd_aws_type_error(loader *l, const char *file, const char *path, const char *expected,
                      const json_t *got);
/* The members of obj named keys[0..n) in one pass: found[k] (NULL: absent), twice[k]. */
void vd_aws_pick(const json_t *obj, const char *const *keys, size_t n, const json_t **found,
                 bool *twice);
/* obj[key] when it is a string that appears once; else NULL (ask vd_aws_member why). */
const json_t *vd_aws_string_member(const json_t *obj, const char *key);
/* Member key of the object at JSON path where, found as v: absent or null gives *out NULL
 * (an error when required), another type than want or a key given twice is an error. */
int vd_aws_check_member(loader *l, const char *file, const char *where, const char *key,
                        const json_t *v, bool twice, json_want want, bool required,
                        const json_t **out);
/* obj[key], looked up and checked as vd_aws_check_member says. */
int vd_aws_member(loader *l, const char *file, const json_t *obj, const char *where,
                  const char *key, json_want want, bool required, const json_t **out);
/* Memory from the calling thread's arena while one is current, else malloc. */
void *vd_aws_arena_malloc(size_t n);
/* Makes a (empty) the calling thread's arena: cJSON's trees are made in it from now on. */
void vd_aws_arena_begin(json_arena *a);
/* Ends the calling thread's arena and releases a with every tree made in it. */
void vd_aws_arena_end(json_arena *a);
/* Reads and parses a whole file into the current arena; *out is its top-level object. The
 * file is opened by its last path component in l->dir_fd; file is its whole path, for
 * messages. Errors name the file, and the line and column for text that is not JSON. */
int vd_aws_load_json(loader *l, const char *file, json_t **out);

/* aws_eni.c: NetworkInterfaces[] into l->enis and the id table; an ENI by id (NULL: none). */
int vd_aws_load_interfaces(loader *l, const json_t *root);
const eni *vd_aws_find_eni(const loader *l, const char *id);

/* aws_subnets.c: DIR/describe-subnets.json, when present, into l->subnets and the builder's
 * client-address table; the AZ ID of an ENI (by its subnet, else by its AZ name; NULL). */
int vd_aws_load_subnets(loader *l);
const char *vd_aws_az_id(const loader *l, const eni *e);

/* aws_records.c: DnsEntries[entry].DnsName → a classified, validated name; the zone and
 * records of a vpce name or of a private DNS name, fed to l->b. */
int vd_aws_parse_name(loader *l, const endpoint *ep, const json_t *v, size_t entry, dns_name *name);
int vd_aws_add_vpce_name(loader *l, const endpoint *ep, const dns_name *name);
int vd_aws_add_private_name(loader *l, const endpoint *ep, const dns_name *name);

/* aws_endpoint.c: VpcEndpoints[index] — checked, and fed to l->b when served. */
int vd_aws_load_endpoint(loader *l, const json_t *v, size_t index);

#endif

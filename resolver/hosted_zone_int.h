/* hosted_zone_int.h — the hosted zone loader's shared pieces, for its parts only: the driver
 * and JSON reading (hosted_zone.c), the routing-policy choice (hosted_zone_policy.c) and the
 * names, values and --check/--dump text (hosted_zone_text.c). Nothing else includes it; the
 * public contract is vpcdns/hosted_zone.h. Load time only. */
#ifndef VPCDNS_HOSTED_ZONE_INT_H
#define VPCDNS_HOSTED_ZONE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws_int.h"
#include "vpcdns/hosted_zone.h"

#define HZ_LABEL_CAP (VD_NAME_MAX * 4 + 48)
#define HZ_WHERE_CAP 48

typedef enum hz_policy {
        POLICY_NONE = 0,
        POLICY_WEIGHTED,
        POLICY_LATENCY,
        POLICY_FAILOVER,
        POLICY_GEOLOCATION,
        POLICY_GEOPROXIMITY,
        POLICY_MULTIVALUE,
        POLICY_CIDR,
} hz_policy;

/* One entry of ResourceRecordSets[], checked; strings borrowed from the JSON tree. */
typedef struct hz_set {
        size_t index;
        char where[HZ_WHERE_CAP]; /* "ResourceRecordSets[7]" */
        char label[HZ_LABEL_CAP]; /* "ResourceRecordSets[7] (api.corp.internal. MX)" */
        uint8_t owner[VD_NAME_MAX];
        char owner_text[VD_NAME_MAX * 4 + 2];
        const char *type_text; /* as written, upper case */
        uint16_t type;
        uint32_t ttl;
        const json_t *values; /* ResourceRecords, NULL for an alias */
        bool alias;
        bool evaluate_health; /* AliasTarget.EvaluateTargetHealth */
        uint8_t target[VD_NAME_MAX];
        const char *set_id;       /* SetIdentifier, NULL when none */
        const char *health_check; /* HealthCheckId, NULL when none (not evaluated) */
        hz_policy policy;
        uint8_t weight;     /* Weight, for POLICY_WEIGHTED */
        const char *detail; /* Region, Failover, the location code; NULL when none */
        bool answered;      /* the policy choice keeps it (always true without a policy) */
        bool grouped;       /* its policy group was already decided */
} hz_set;

/* hosted_zone_text.c */
/* The type of a Route 53 record set from its Type text; 0 when Route 53 serves no such type
 * in a private zone. */
uint16_t vd_hz_type(const char *text);
/* The types accepted, as a phrase for messages. */
extern const char vd_hz_types_text[];
/* Parses one ResourceRecords[k].Value of set s with ldns into wire rdata (uncompressed
 * names) in out (capacity 65535); *len its length. Errors name the file and the set. */
int vd_hz_parse_value(const char *file, const hz_set *s, size_t k, const char *value, uint8_t *out,
                      size_t *len, vd_error *err);
/* Appends a printf-formatted line to sum->notes. */
void vd_hz_note(vd_hosted_zone_summary *sum, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* hosted_zone_policy.c: decides which record sets with a SetIdentifier are answered (sets
 * `answered`) and notes every choice. region: the snapshot's region ("" when none). */
int vd_hz_choose(const char *file, hz_set *sets, size_t n, const char *region,
                 vd_hosted_zone_summary *sum, vd_error *err);

#endif

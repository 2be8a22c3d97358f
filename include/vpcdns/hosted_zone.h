/* hosted_zone.h — loads a Route 53 private hosted zone from the unchanged JSON of
 * `aws route53 list-resource-record-sets --hosted-zone-id ID` into a snapshot builder, as one
 * authoritative zone whose apex is the name of its SOA record set.
 *
 * Names are decoded from Route 53's octal escapes (\052 is "*", a wildcard as the first
 * label; \056 is a dot inside a label). Values are presentation form, parsed by ldns. Alias
 * record sets become builder aliases (resolved when the builder finishes). Record sets with
 * a SetIdentifier (routing policies):
 *   weighted, multivalue answer, failover: every record set is loaded as a member of its
 *                RRset's policy (vd_builder_policy_member), chosen per answer;
 *   latency      the record set whose Region is the snapshot's region, else the first;
 *   geolocation  the default location ("*"); other locations are not answered;
 *   cidr         the default location ("*"); other locations are not answered.
 * Every such choice is listed in the summary's notes for --check. Load time only. */
#ifndef VPCDNS_HOSTED_ZONE_H
#define VPCDNS_HOSTED_ZONE_H

#include <stddef.h>
#include <stdio.h>

#include "vpcdns/common.h"
#include "vpcdns/snapshot.h"

/* The directory of a snapshot that holds captured hosted zones (DIR/hosted-zones/ZONE.json). */
#define VD_HOSTED_ZONES_SUBDIR "hosted-zones"

typedef struct vd_hosted_zone_summary {
        size_t zones;       /* files loaded */
        size_t record_sets; /* ResourceRecordSets[] entries, SOA included */
        size_t records;     /* resource records added (values), SOA included */
        size_t aliases;     /* alias record sets */
        size_t policies;    /* record sets with a SetIdentifier */
        /* One line per zone and per routing-policy choice ("zone corp.internal. (FILE):
         * 12 record sets, ..."), for --check; malloc'd and grown by each load, NULL when
         * empty. The caller frees it with free(). */
        char *notes;
        size_t notes_len;
} vd_hosted_zone_summary;

/* Loads path into b. Errors name the file and the record set:
 * "FILE: ResourceRecordSets[7] (api.corp.internal. MX): expected ...", or the line and
 * column for text that is not JSON. A capture cut short by pagination (IsTruncated true,
 * NextRecordName) is an error. sum may be NULL; counts and notes are added to it. */
int vd_hosted_zone_load(vd_builder *b, const char *path, vd_hosted_zone_summary *sum,
                        vd_error *err);

/* Loads every DIR/hosted-zones/NAME.json (files ending in .json) in name order (none when that
 * directory does not exist). */
int vd_hosted_zone_load_dir(vd_builder *b, const char *snapshot_dir, vd_hosted_zone_summary *sum,
                            vd_error *err);

/* The file beside the capture of list-hosted-zones-by-vpc that names the VPC it was made for
 * (DIR/list-hosted-zones-by-vpc.vpc-id, one VPC id; the refresher writes it). */
#define VD_HOSTED_ZONES_VPC_FILE "list-hosted-zones-by-vpc.vpc-id"

/* The VPC whose associations DIR's hosted-zones/ captures are: read from
 * DIR/VD_HOSTED_ZONES_VPC_FILE into out ("" when that file does not exist: the zones apply to
 * every VPC). A file that is not one VPC id ("vpc-" and hex digits) is an error naming it. */
int vd_hosted_zone_dir_vpc(const char *snapshot_dir, char *out, size_t cap, vd_error *err);

/* Decodes a Route 53 name ("\052.corp.internal.", trailing dot optional, \ooo octal escapes,
 * \X for X) into a lower-cased wire name. Returns 0, or -EINVAL with why (a phrase). */
int vd_hosted_zone_decode_name(const char *text, uint8_t *out, size_t *out_len, const char **why);

/* Writes the aliases of s as zone-file comments ("; alias NAME TYPE -> TARGET: ..."). */
int vd_hosted_zone_dump_aliases(const vd_snapshot *s, FILE *out);

/* Writes what --check says of the aliases of s (their count, and each one that is not resolved
 * from local data); nothing when s has none. */
void vd_hosted_zone_check_aliases(const vd_snapshot *s, FILE *out);

void vd_hosted_zone_summary_free(vd_hosted_zone_summary *sum);

#endif

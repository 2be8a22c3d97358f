/* hosted_zone.c — loads the JSON of `aws route53 list-resource-record-sets` (one private
 * hosted zone) into a snapshot builder: reads it with the AWS loader's JSON reader
 * (aws_json.c: the arena, line and column for bad JSON, checked members with their JSON
 * path), checks every record set, finds the apex from the SOA, has the routing-policy choice
 * made (hosted_zone_policy.c) and feeds records and aliases to the builder. Its parts:
 * hosted_zone_text.c (names, values, notes), hosted_zone_policy.c. Must not: resolve aliases
 * (the builder does, once everything is loaded) or answer queries. Load time only. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hosted_zone_int.h"
#include "vpcdns/hosted_zone.h"
#include "vpcdns/wire.h"

#define TTL_MAX 2147483647u /* RFC 2181 §8 */

/* A JSON number that is a whole number in [0, max]. */
static bool whole(const json_t *v, double max, uint32_t *out)
{
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > max ||
            (double)(uint32_t)v->valuedouble != v->valuedouble)
                return false;
        *out = (uint32_t)v->valuedouble;
        return true;
}

/* A capture that the CLI paged but that was cut short: refused, never half-served. */
static int check_complete(loader *l, const char *file, const json_t *root)
{
        static const char *const keys[] = {"IsTruncated", "NextRecordName", "NextToken"};
        const json_t *v[3];
        bool twice[3];
        vd_aws_pick(root, keys, 3, v, twice);
        const json_t *next = v[1] != NULL ? v[1] : v[2];
        if (!cJSON_IsTrue(v[0]) && next == NULL)
                return 0;
        return vd_error_set(l->err,
                            "%s: the capture is incomplete (%s%s%s): Route 53 has more record sets "
                            "than the file holds; expected the whole zone: run `aws route53 "
                            "list-resource-record-sets --hosted-zone-id ID` without --max-items "
                            "or --no-paginate (the CLI then fetches every page)",
                            file, cJSON_IsTrue(v[0]) ? "IsTruncated is true" : "",
                            cJSON_IsTrue(v[0]) && next ? ", " : "",
                            v[1] ? "NextRecordName is set" : (v[2] ? "NextToken is set" : ""));
}

/* The routing-policy members of a record set with a SetIdentifier. */
static int read_policy(loader *l, const char *file, const json_t *o, hz_set *s)
{
        static const char *const keys[] = {"Weight",
                                           "Region",
                                           "Failover",
                                           "GeoLocation",
                                           "MultiValueAnswer",
                                           "CidrRoutingConfig",
                                           "GeoProximityLocation"};
        enum { N = sizeof(keys) / sizeof(keys[0]) };
        const json_t *v[N];
        bool twice[N];
        uint32_t w;
        vd_aws_pick(o, keys, N, v, twice);
        if (v[0] != NULL) {
                if (!whole(v[0], 255, &w))
                        return vd_error_set(l->err, "%s: %s: Weight: expected a number 0-255", file,
                                            s->label);
                s->policy = POLICY_WEIGHTED;
                s->weight = (uint8_t)w;
        } else if (v[1] != NULL) {
                if ((s->detail = json_str(v[1])) == NULL)
                        return vd_aws_type_error(l, file, s->label, "Region as a string", v[1]);
                s->policy = POLICY_LATENCY;
        } else if (v[2] != NULL) {
                s->detail = json_str(v[2]);
                if (s->detail == NULL ||
                    (strcmp(s->detail, "PRIMARY") != 0 && strcmp(s->detail, "SECONDARY") != 0))
                        return vd_error_set(l->err,
                                            "%s: %s: Failover: expected PRIMARY or SECONDARY", file,
                                            s->label);
                s->policy = POLICY_FAILOVER;
        } else if (v[3] != NULL) {
                static const char *const geo[] = {"CountryCode", "ContinentCode",
                                                  "SubdivisionCode"};
                const json_t *g[3];
                bool gt[3];
                if (!cJSON_IsObject(v[3]))
                        return vd_aws_type_error(l, file, s->label, "GeoLocation as an object",
                                                 v[3]);
                vd_aws_pick(v[3], geo, 3, g, gt);
                s->detail = json_str(g[2]) ? json_str(g[2])
                                           : (json_str(g[0]) ? json_str(g[0]) : json_str(g[1]));
                s->policy = POLICY_GEOLOCATION;
        } else if (v[4] != NULL) {
                if (!cJSON_IsBool(v[4]))
                        return vd_aws_type_error(l, file, s->label, "MultiValueAnswer as a boolean",
                                                 v[4]);
                s->policy = POLICY_MULTIVALUE;
        } else if (v[5] != NULL) {
                s->detail = json_str(vd_aws_string_member(v[5], "LocationName"));
                s->policy = POLICY_CIDR;
        } else if (v[6] != NULL) {
                s->policy = POLICY_GEOPROXIMITY;
        } else {
                return vd_error_set(l->err,
                                    "%s: %s: SetIdentifier without a routing policy; expected "
                                    "Weight, Region, Failover, GeoLocation, MultiValueAnswer, "
                                    "CidrRoutingConfig or GeoProximityLocation beside it",
                                    file, s->label);
        }
        return 0;
}

/* Checks ResourceRecordSets[index] into s (name, type, TTL, values or alias, policy). */
static int read_set(loader *l, const char *file, const json_t *o, size_t index, hz_set *s)
{
        static const char *const keys[] = {
            "Name",        "Type",          "TTL",          "ResourceRecords",
            "AliasTarget", "SetIdentifier", "HealthCheckId"};
        enum { N = sizeof(keys) / sizeof(keys[0]) };
        const json_t *v[N];
        bool twice[N];
        const json_t *name, *type, *id, *check;
        const char *why;
        size_t len;
        int rc;

        memset(s, 0, sizeof(*s));
        s->index = index;
        s->answered = true;
        snprintf(s->where, sizeof(s->where), "ResourceRecordSets[%zu]", index);
        snprintf(s->label, sizeof(s->label), "%s", s->where);
        if (!cJSON_IsObject(o))
                return vd_aws_type_error(l, file, s->where, "an object", o);
        vd_aws_pick(o, keys, N, v, twice);
        if ((rc = vd_aws_check_member(l, file, s->where, "Name", v[0], twice[0], WANT_STRING, true,
                                      &name)) < 0 ||
            (rc = vd_aws_check_member(l, file, s->where, "Type", v[1], twice[1], WANT_STRING, true,
                                      &type)) < 0 ||
            (rc = vd_aws_check_member(l, file, s->where, "SetIdentifier", v[5], twice[5],
                                      WANT_STRING, false, &id)) < 0 ||
            (rc = vd_aws_check_member(l, file, s->where, "HealthCheckId", v[6], twice[6],
                                      WANT_STRING, false, &check)) < 0)
                return rc;
        s->health_check = check != NULL ? check->valuestring : NULL;
        if (vd_hosted_zone_decode_name(name->valuestring, s->owner, &len, &why) < 0)
                return vd_error_set(l->err, "%s: %s.Name: '%s': %s", file, s->where,
                                    name->valuestring, why);
        vd_name_to_text(s->owner, s->owner_text, sizeof(s->owner_text));
        s->type_text = type->valuestring;
        snprintf(s->label, sizeof(s->label), "%s (%s %s)", s->where, s->owner_text, s->type_text);
        s->type = vd_hz_type(s->type_text);
        if (s->type == 0)
                return vd_error_set(l->err,
                                    "%s: %s: record type '%s' is not supported; expected %s (the "
                                    "types of a private hosted zone)",
                                    file, s->label, s->type_text, vd_hz_types_text);
        if (v[4] != NULL) {
                const json_t *target;
                char where[HZ_LABEL_CAP + 16];
                snprintf(where, sizeof(where), "%s.AliasTarget", s->where);
                if (!cJSON_IsObject(v[4]))
                        return vd_aws_type_error(l, file, where, "an object", v[4]);
                if ((rc = vd_aws_member(l, file, v[4], where, "DNSName", WANT_STRING, true,
                                        &target)) < 0)
                        return rc;
                const json_t *eth = cJSON_GetObjectItemCaseSensitive(v[4], "EvaluateTargetHealth");
                if (eth != NULL && !cJSON_IsBool(eth))
                        return vd_aws_type_error(l, file, where,
                                                 "EvaluateTargetHealth as a boolean", eth);
                s->evaluate_health = cJSON_IsTrue(eth);
                if (vd_hosted_zone_decode_name(target->valuestring, s->target, &len, &why) < 0)
                        return vd_error_set(l->err, "%s: %s: AliasTarget.DNSName '%s': %s", file,
                                            s->label, target->valuestring, why);
                if (v[2] != NULL || v[3] != NULL)
                        return vd_error_set(l->err,
                                            "%s: %s: an alias with %s; expected AliasTarget "
                                            "alone (an alias takes its records and TTL from "
                                            "its target)",
                                            file, s->label, v[2] ? "a TTL" : "ResourceRecords");
                s->alias = true;
        } else {
                if (v[2] == NULL || !whole(v[2], TTL_MAX, &s->ttl))
                        return vd_error_set(l->err,
                                            "%s: %s: TTL: expected a number of seconds "
                                            "(0-2147483647)%s",
                                            file, s->label,
                                            v[2] == NULL ? ", but it is missing" : "");
                if ((rc = vd_aws_check_member(l, file, s->label, "ResourceRecords", v[3], twice[3],
                                              WANT_ARRAY, true, &s->values)) < 0)
                        return rc;
                if (json_len(s->values) == 0)
                        return vd_error_set(l->err,
                                            "%s: %s: ResourceRecords: expected at least one "
                                            "value",
                                            file, s->label);
        }
        if (id != NULL) {
                s->set_id = id->valuestring;
                return read_policy(l, file, o, s);
        }
        return 0;
}

static int feed_values(loader *l, const char *file, const hz_set *s, uint8_t *rdata,
                       vd_hosted_zone_summary *sum, const char *place);

/* Adds s to the builder, as a member of its routing policy when it has one chosen per
 * answer. */
static int feed_set(loader *l, const char *file, const hz_set *s, uint8_t *rdata,
                    vd_hosted_zone_summary *sum)
{
        vd_error inner = {{0}};
        char place[FILE_PATH_CAP + HZ_LABEL_CAP];
        int rc;
        snprintf(place, sizeof(place), "%s: %s", file, s->where);
        /* Weighted, multivalue and failover record sets are chosen per answer: each is a
         * member of its RRset's policy. */
        vd_policy_member m = {VD_POLICY_NONE, s->weight, false, s->evaluate_health};
        if (s->set_id != NULL && s->policy == POLICY_WEIGHTED)
                m.policy = VD_POLICY_WEIGHTED;
        else if (s->set_id != NULL && s->policy == POLICY_MULTIVALUE)
                m.policy = VD_POLICY_MULTIVALUE;
        else if (s->set_id != NULL && s->policy == POLICY_FAILOVER)
                m.policy = VD_POLICY_FAILOVER;
        m.secondary = m.policy == VD_POLICY_FAILOVER && strcmp(s->detail, "SECONDARY") == 0;
        if ((rc = vd_builder_policy_member(l->b, &m, &inner)) < 0)
                return vd_error_set(l->err, "%s: %s: %s", file, s->label, inner.msg);
        rc = feed_values(l, file, s, rdata, sum, place);
        vd_builder_policy_member(l->b, NULL, &inner);
        return rc;
}

/* Adds the values of s (or its alias) to the builder, as the current member. */
static int feed_values(loader *l, const char *file, const hz_set *s, uint8_t *rdata,
                       vd_hosted_zone_summary *sum, const char *place)
{
        vd_error inner = {{0}};
        int rc;
        if (s->alias) {
                rc = vd_builder_add_alias(l->b, s->owner, s->type, s->target, file, place, &inner);
                if (rc < 0)
                        return vd_error_set(l->err, "%s: %s: %s", file, s->label, inner.msg);
                if (sum != NULL)
                        sum->aliases++;
                return 0;
        }
        size_t k = 0;
        JSON_EACH(item, s->values)
        {
                const json_t *value;
                size_t len = 0;
                char where[HZ_LABEL_CAP + 32];
                snprintf(where, sizeof(where), "%s.ResourceRecords[%zu]", s->label, k);
                if ((rc = vd_aws_member(l, file, item, where, "Value", WANT_STRING, true, &value)) <
                    0)
                        return rc;
                if ((rc = vd_hz_parse_value(file, s, k, value->valuestring, rdata, &len, l->err)) <
                    0)
                        return rc;
                rc = vd_builder_add_rr(l->b, s->owner, s->type, s->ttl, rdata, (uint16_t)len, file,
                                       &inner);
                if (rc < 0)
                        return vd_error_set(l->err, "%s: %s: %s", file, s->label, inner.msg);
                if (sum != NULL)
                        sum->records++;
                k++;
        }
        return 0;
}

static bool at_or_under(const uint8_t *name, const uint8_t *apex)
{
        size_t n = vd_name_len(name, VD_NAME_MAX), a = vd_name_len(apex, VD_NAME_MAX);
        size_t p = 0;
        while (n - p > a)
                p += 1 + (size_t)name[p];
        return n - p == a && memcmp(name + p, apex, a) == 0;
}

static int load_root(loader *l, const char *file, const json_t *root, vd_hosted_zone_summary *sum)
{
        const json_t *list;
        hz_set *sets = NULL;
        uint8_t *rdata = malloc(65536);
        size_t n = 0, soa = SIZE_MAX, policies = 0;
        char region[VD_LABEL_MAX + 1];
        int rc = check_complete(l, file, root);

        if (rc < 0)
                goto out;
        if ((rc = vd_aws_member(l, file, root, "", "ResourceRecordSets", WANT_ARRAY, true, &list)) <
            0)
                goto out;
        n = json_len(list);
        sets = calloc(n ? n : 1, sizeof(*sets));
        if (sets == NULL || rdata == NULL) {
                rc = vd_aws_no_memory(l);
                goto out;
        }
        size_t i = 0;
        JSON_EACH(item, list)
        {
                if ((rc = read_set(l, file, item, i, &sets[i])) < 0)
                        goto out;
                if (sets[i].type == VD_TYPE_SOA) {
                        if (soa != SIZE_MAX) {
                                rc = vd_error_set(l->err,
                                                  "%s: %s: a second SOA record set (the first is "
                                                  "%s); expected one, at the apex",
                                                  file, sets[i].label, sets[soa].where);
                                goto out;
                        }
                        if (sets[i].alias || json_len(sets[i].values) != 1) {
                                rc = vd_error_set(l->err,
                                                  "%s: %s: expected one SOA value and no alias",
                                                  file, sets[i].label);
                                goto out;
                        }
                        soa = i;
                }
                policies += sets[i].set_id != NULL;
                i++;
        }
        if (soa == SIZE_MAX) {
                rc = vd_error_set(l->err,
                                  "%s: ResourceRecordSets: expected an SOA record set (its name "
                                  "is the zone's apex); the file has none",
                                  file);
                goto out;
        }
        const hz_set *z = &sets[soa];
        for (i = 0; i < n; i++) {
                if (!at_or_under(sets[i].owner, z->owner)) {
                        rc = vd_error_set(l->err,
                                          "%s: %s: the name is outside the zone %s; expected a "
                                          "name at or under the SOA's name",
                                          file, sets[i].label, z->owner_text);
                        goto out;
                }
        }
        const json_t *soa_value = vd_aws_string_member(z->values->child, "Value");
        size_t soa_len = 0;
        if (soa_value == NULL) {
                const json_t *v;
                char where[HZ_LABEL_CAP + 32];
                snprintf(where, sizeof(where), "%s.ResourceRecords[0]", z->label);
                rc =
                    vd_aws_member(l, file, z->values->child, where, "Value", WANT_STRING, true, &v);
                goto out;
        }
        if ((rc = vd_hz_parse_value(file, z, 0, soa_value->valuestring, rdata, &soa_len, l->err)) <
            0)
                goto out;
        vd_error inner = {{0}};
        if ((rc = vd_builder_add_zone(l->b, z->owner, true, rdata, (uint16_t)soa_len, z->ttl, file,
                                      &inner)) < 0) {
                rc = vd_error_set(l->err, "%s: %s: %s", file, z->label, inner.msg);
                goto out;
        }
        size_t before_records = sum != NULL ? sum->records : 0;
        size_t before_aliases = sum != NULL ? sum->aliases : 0;
        vd_hz_note(sum, "hosted zone %s (%s)", z->owner_text, file);
        vd_builder_region(l->b, region, sizeof(region));
        if ((rc = vd_hz_choose(file, sets, n, region, sum, l->err)) < 0)
                goto out;
        for (i = 0; i < n; i++) {
                /* Route 53 health checks probe public endpoints from AWS: nothing here can
                 * evaluate one, so --check says where an answer may differ. */
                if (sets[i].health_check != NULL)
                        vd_hz_note(sum,
                                   "  health check not evaluated: %s (HealthCheckId %s) is "
                                   "answered as healthy",
                                   sets[i].label, sets[i].health_check);
                if (i == soa || !sets[i].answered)
                        continue;
                if ((rc = feed_set(l, file, &sets[i], rdata, sum)) < 0)
                        goto out;
        }
        if (sum != NULL) {
                sum->zones++;
                sum->records++; /* the SOA */
                sum->record_sets += n;
                sum->policies += policies;
                vd_hz_note(sum,
                           "  %zu record sets, %zu records, %zu aliases, %zu with a routing "
                           "policy",
                           n, sum->records - before_records, sum->aliases - before_aliases,
                           policies);
        }
out:
        free(sets);
        free(rdata);
        return rc;
}

int vd_hosted_zone_load(vd_builder *b, const char *path, vd_hosted_zone_summary *sum, vd_error *err)
{
        loader *l = calloc(1, sizeof(*l));
        json_arena arena = {0};
        json_t *root = NULL;
        char dir[FILE_PATH_CAP];
        int rc;

        VD_CHECK(b != NULL && path != NULL);
        if (l == NULL)
                return vd_error_set(err, "%s: out of memory", path), -ENOMEM;
        l->b = b;
        l->err = err;
        snprintf(l->ep_file, sizeof(l->ep_file), "%s", path);
        const char *slash = strrchr(path, '/');
        if (slash == NULL)
                snprintf(dir, sizeof(dir), ".");
        else
                snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path) + (slash == path), path);
        l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (l->dir_fd < 0) {
                rc = vd_error_set(err, "%s: cannot open its directory: %s", path, strerror(errno));
                free(l);
                return rc;
        }
        vd_aws_arena_begin(&arena);
        rc = vd_aws_load_json(l, path, &root);
        if (rc == 0)
                rc = load_root(l, path, root, sum);
        vd_aws_arena_end(&arena);
        close(l->dir_fd);
        free(l);
        return rc < 0 ? rc : 0;
}

static int json_file(const struct dirent *e)
{
        size_t n = strlen(e->d_name);
        return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

int vd_hosted_zone_load_dir(vd_builder *b, const char *snapshot_dir, vd_hosted_zone_summary *sum,
                            vd_error *err)
{
        char dir[FILE_PATH_CAP], path[FILE_PATH_CAP + 256];
        struct dirent **list = NULL;
        snprintf(dir, sizeof(dir), "%s/%s", snapshot_dir, VD_HOSTED_ZONES_SUBDIR);
        int n = scandir(dir, &list, json_file, alphasort);
        if (n < 0) {
                if (errno == ENOENT)
                        return 0;
                return vd_error_set(err, "%s: cannot read the directory: %s", dir, strerror(errno));
        }
        int rc = 0;
        for (int i = 0; i < n; i++) {
                if (rc == 0) {
                        snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
                        rc = vd_hosted_zone_load(b, path, sum, err);
                }
                free(list[i]);
        }
        free(list);
        return rc;
}

int vd_hosted_zone_dir_vpc(const char *snapshot_dir, char *out, size_t cap, vd_error *err)
{
        char path[FILE_PATH_CAP + 64], text[64];
        out[0] = '\0';
        snprintf(path, sizeof(path), "%s/%s", snapshot_dir, VD_HOSTED_ZONES_VPC_FILE);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
                if (errno == ENOENT)
                        return 0;
                return vd_error_set(err, "%s: cannot read: %s", path, strerror(errno));
        }
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        bool more = fgetc(f) != EOF;
        fclose(f);
        text[n] = '\0';
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
                text[--n] = '\0';
        bool ok = !more && n > 4 && n < cap && strncmp(text, "vpc-", 4) == 0;
        for (size_t i = 4; ok && i < n; i++)
                ok = (text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f');
        if (!ok)
                return vd_error_set(err,
                                    "%s: expected the VPC id the hosted zones were captured for "
                                    "(vpc- and hex digits, one line)",
                                    path),
                       -EINVAL;
        memcpy(out, text, n + 1);
        return 0;
}

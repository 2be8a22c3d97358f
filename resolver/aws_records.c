/* aws_records.c — what an endpoint's DNS names answer: classifies each DnsName (regional or
 * zonal vpce name, or private DNS name), and feeds its zone and its A, AAAA, CNAME and NS
 * records to the builder (each address with its ENI's identity), with the builder's errors put in
 * terms of the endpoints file. Must not: read JSON fields other than the DnsName it is given, or
 * decide whether an endpoint is served. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "aws_int.h"
#include "vpcdns/log.h"
#include "vpcdns/wire.h"

static bool is_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_lower_alnum(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);
        return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Decides whether name->text (lower case, no final dot, "*." stripped into s) is a vpce
 * name; fills kind, az and the text of its region's public zone into zone_text. */
static void classify(dns_name *name, const char *s, char *zone_text, size_t zone_cap)
{
        size_t len = strlen(s), suffix_at, first_end, region_at, i, hex;

        name->kind = NAME_PRIVATE;
        if (ends_with(s, len, ".vpce.amazonaws.com"))
                suffix_at = len - strlen(".vpce.amazonaws.com");
        else if (ends_with(s, len, ".vpce.amazonaws.com.cn"))
                suffix_at = len - strlen(".vpce.amazonaws.com.cn");
        else
                return;
        /* The region label is the one just before "vpce"; the first label must be another. */
        region_at = suffix_at;
        while (region_at > 0 && s[region_at - 1] != '.')
                region_at--;
        if (region_at == 0 || region_at == suffix_at)
                return;
        first_end = (size_t)(strchr(s, '.') - s);
        /* vpce-<8 or 17 hex>-<8 [a-z0-9]>[-<az>] */
        if (first_end < 5 || strncmp(s, "vpce-", 5) != 0)
                return;
        for (i = 5, hex = 0; i < first_end && is_hex(s[i]); i++)
                hex++;
        if ((hex != 8 && hex != 17) || i >= first_end || s[i] != '-')
                return;
        i++;
        for (size_t k = 0; k < 8; k++, i++)
                if (i >= first_end || !is_lower_alnum(s[i]))
                        return;
        if (i == first_end) {
                name->kind = NAME_REGIONAL;
        } else {
                size_t az_len = first_end - i - 1;
                if (s[i] != '-' || az_len == 0 || az_len >= sizeof(name->az))
                        return;
                for (size_t k = i + 1; k < first_end; k++)
                        if (!is_lower_alnum(s[k]) && s[k] != '-')
                                return;
                memcpy(name->az, s + i + 1, az_len);
                name->az[az_len] = '\0';
                name->kind = NAME_ZONAL;
        }
        size_t at = 0;
        zone_text[0] = '\0';
        vd_aws_put_text(zone_text, zone_cap, &at, s + region_at, FILE_PATH_CAP);
}

/* DnsEntries[i].DnsName → a classified, validated name. */
int vd_aws_parse_name(loader *l, const endpoint *ep, const json_t *v, size_t entry, dns_name *name)
{
        char path[JSON_PATH_CAP], zone_text[VD_NAME_MAX + 2];
        const char *raw = json_str(v), *s;
        size_t len = strlen(raw), wire_len;

        memset(name, 0, sizeof(*name));
        name->entry = entry;
        if (len > 0 && raw[len - 1] == '.')
                len--;
        if (len == 0 || len >= sizeof(name->text))
                goto bad;
        for (size_t i = 0; i < len; i++) {
                char c = raw[i];
                name->text[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        name->text[len] = '\0';
        if (vd_name_from_text(name->text, name->wire, &wire_len) < 0)
                goto bad;
        s = name->text;
        if (strncmp(s, "*.", 2) == 0) {
                name->wildcard = true;
                s += 2;
        }
        if (strchr(s, '*') != NULL)
                goto bad;
        zone_text[0] = '\0';
        classify(name, s, zone_text, sizeof(zone_text));
        /* Private names: the apex is the name without "*."; vpce names: the region zone. */
        if (vd_name_from_text(name->kind == NAME_PRIVATE ? s : zone_text, name->zone, &wire_len) <
            0)
                goto bad;
        return 0;
bad:
        snprintf(path, sizeof(path), "%s.DnsEntries[%zu].DnsName", ep->path, entry);
        return vd_error_set(l->err, "%s: %s: expected a DNS name, got \"%.300s\"", l->ep_file, path,
                            raw);
}

/* When msg (a claim conflict) names an endpoint of another VPC than ep's, writes into hint
 * how to take one VPC; else hint is "". Claims end in "(<endpoint id>, <VpcId>)". */
static void several_vpcs_hint(const loader *l, const endpoint *ep, const char *msg, char *hint,
                              size_t cap)
{
        char needle[JSON_PATH_CAP];
        bool other = false;
        size_t pos;
        int w;

        hint[0] = '\0';
        if (ep->vpc == NULL || l->n_vpcs < 2)
                return;
        for (size_t i = 0; i < l->n_vpcs && !other; i++) {
                if (strcmp(l->vpcs[i], ep->vpc) == 0)
                        continue;
                snprintf(needle, sizeof(needle), ", %.200s)", l->vpcs[i]);
                other = strstr(msg, needle) != NULL;
        }
        if (!other)
                return;
        w = snprintf(hint, cap, "; the snapshot holds endpoints of several VPCs (");
        pos = w > 0 ? (size_t)w : 0;
        for (size_t i = 0; i < l->n_vpcs && pos < cap; i++) {
                if (i == 4) {
                        w = snprintf(hint + pos, cap - pos, ", and %zu more", l->n_vpcs - i);
                        pos += w > 0 ? (size_t)w : 0;
                        break;
                }
                w = snprintf(hint + pos, cap - pos, "%s%.64s", i > 0 ? ", " : "", l->vpcs[i]);
                pos += w > 0 ? (size_t)w : 0;
        }
        if (pos < cap)
                snprintf(hint + pos, cap - pos,
                         "): capture one VPC with --filters Name=vpc-id,Values=<id>");
}

/* Puts the DnsName's file and JSON path in front of an error the builder reported. */
static int builder_failed(loader *l, const endpoint *ep, const dns_name *name, int rc)
{
        char msg[sizeof(l->err->msg)];
        char hint[384];
        size_t fixed;
        int keep;

        if (l->err == NULL || rc == -ENOMEM)
                return rc;
        memcpy(msg, l->err->msg, sizeof(msg));
        msg[sizeof(msg) - 1] = '\0';
        hint[0] = '\0';
        if (rc == -EEXIST)
                several_vpcs_hint(l, ep, msg, hint, sizeof(hint));
        /* the hint goes last but must survive a long message: cut msg, not the hint */
        fixed = strlen(hint) + strlen(l->ep_file) + strlen(ep->path) + 48;
        keep = sizeof(msg) > fixed ? (int)(sizeof(msg) - fixed) : 0;
        vd_error_set(l->err, "%s: %s.DnsEntries[%zu].DnsName: %.*s%s", l->ep_file, ep->path,
                     name->entry, keep, msg, hint);
        return rc;
}

static int add_rr(loader *l, const endpoint *ep, const uint8_t *owner, uint16_t type, uint32_t ttl,
                  const uint8_t *rdata, size_t rdlen)
{
        int rc =
            vd_builder_add_rr(l->b, owner, type, ttl, rdata, (uint16_t)rdlen, ep->claim, l->err);
        if (rc == 0 && type != VD_TYPE_NS)
                l->ep_records++;
        return rc;
}

/* The ENI identity the snapshot keeps for each address of e (cut to the table's fields). */
static void eni_identity(const endpoint *ep, const eni *e, vd_snapshot_eni *out)
{
        memset(out, 0, sizeof(*out));
        snprintf(out->endpoint_id, sizeof(out->endpoint_id), "%s", ep->id);
        snprintf(out->eni_id, sizeof(out->eni_id), "%s", e->id);
        snprintf(out->az_name, sizeof(out->az_name), "%s", e->az != NULL ? e->az : "");
}

/* A/AAAA records for one name: all ENIs, or only those in name->az for a zonal name.
 * *added receives the number of records; *matched whether any ENI qualified. */
static int add_addresses(loader *l, const endpoint *ep, const dns_name *name, bool want_a,
                         bool want_aaaa, size_t *added, bool *matched)
{
        int rc;

        *added = 0;
        *matched = false;
        for (size_t i = 0; i < ep->n_enis; i++) {
                const eni *e = ep->enis[i];
                if (name->kind == NAME_ZONAL && (e->az == NULL || strcasecmp(e->az, name->az) != 0))
                        continue;
                *matched = true;
                vd_snapshot_eni ident;
                eni_identity(ep, e, &ident);
                for (size_t k = 0; k < e->n_addrs; k++) {
                        const address *a = &e->addrs[k];
                        if ((a->type == VD_TYPE_A && !want_a) ||
                            (a->type == VD_TYPE_AAAA && !want_aaaa))
                                continue;
                        rc = vd_builder_add_rr_eni(l->b, name->wire, a->type, VD_ENDPOINT_TTL,
                                                   a->bytes, a->type == VD_TYPE_A ? 4 : 16,
                                                   ep->claim, &ident, l->err);
                        if (rc == 0)
                                l->ep_records++;
                        if (rc < 0)
                                return rc;
                        (*added)++;
                }
        }
        l->sum.addresses += *added;
        return 0;
}

int vd_aws_add_vpce_name(loader *l, const endpoint *ep, const dns_name *name)
{
        bool want_a = ep->mode != IP_V6, want_aaaa = ep->mode != IP_V4, matched;
        size_t added;
        int rc;

        if (name->kind == NAME_ZONAL) {
                bool any = false;
                for (size_t i = 0; i < ep->n_enis && !any; i++)
                        any = ep->enis[i]->az != NULL && strcasecmp(ep->enis[i]->az, name->az) == 0;
                if (!any) {
                        char file[sizeof(l->ep_file) * 2], text[1024], az[256];
                        vd_log(VD_LOG_WARN, "aws_zonal_name_skipped",
                               "file=%s path=%s.DnsEntries[%zu] name=%s az=%s "
                               "reason=no_eni_in_az",
                               vd_log_value(l->ep_file, file, sizeof(file)), ep->path, name->entry,
                               vd_log_value(name->text, text, sizeof(text)),
                               vd_log_value(name->az, az, sizeof(az)));
                        return 0;
                }
        }
        rc = vd_builder_add_zone(l->b, name->zone, false, l->soa, l->soa_len, SOA_TTL, ep->claim,
                                 l->err);
        if (rc < 0)
                return builder_failed(l, ep, name, rc);
        if ((rc = add_addresses(l, ep, name, want_a, want_aaaa, &added, &matched)) < 0)
                return builder_failed(l, ep, name, rc);
        if (added > 0)
                l->sum.names++;
        return 0;
}

int vd_aws_add_private_name(loader *l, const endpoint *ep, const dns_name *name)
{
        bool matched;
        size_t added = 0;
        int rc;

        rc = vd_builder_add_zone(l->b, name->zone, true, l->soa, l->soa_len, SOA_TTL, ep->claim,
                                 l->err);
        if (rc < 0)
                return builder_failed(l, ep, name, rc);
        for (size_t i = 0; i < ZONE_NS_COUNT; i++)
                if ((rc = add_rr(l, ep, name->zone, VD_TYPE_NS, NS_TTL, l->ns[i], l->ns_len[i])) <
                    0)
                        return builder_failed(l, ep, name, rc);
        if (ep->service) {
                /* Endpoint service: a CNAME to the regional vpce name (checked to exist). */
                size_t len = vd_name_len(ep->regional->wire, sizeof(ep->regional->wire));
                if ((rc = add_rr(l, ep, name->wire, VD_TYPE_CNAME, VD_ENDPOINT_TTL,
                                 ep->regional->wire, len)) < 0)
                        return builder_failed(l, ep, name, rc);
                added = 1;
        } else {
                /* service-defined: AAAA only on vpce names, so A alone here. */
                bool want_a = ep->mode != IP_V6;
                bool want_aaaa = ep->mode == IP_V6 || ep->mode == IP_DUALSTACK;
                if ((rc = add_addresses(l, ep, name, want_a, want_aaaa, &added, &matched)) < 0)
                        return builder_failed(l, ep, name, rc);
        }
        if (added > 0)
                l->sum.names++;
        return 0;
}

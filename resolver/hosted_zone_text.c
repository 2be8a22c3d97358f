/* hosted_zone_text.c — the text side of the hosted zone loader: Route 53's escaped names,
 * record values parsed by ldns, the summary's notes, and the alias lines of --check and
 * --dump. Must not: read files or feed the builder (hosted_zone.c does). Load time only. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "hosted_zone_int.h"
#include "vpcdns/hosted_zone.h"
#include "vpcdns/wire.h"
#include "zonefile_int.h"

/* Route 53 writes a name's characters outside a-z, 0-9, '-' and '_' as \ooo (three octal
 * digits), so a '.' inside a label is \056 and never a separator. A backslash before anything
 * else stands for that character (the master-file rule). */
int vd_hosted_zone_decode_name(const char *text, uint8_t *out, size_t *out_len, const char **why)
{
        size_t o = 0, label_at = 0;
        size_t n = strlen(text);
        *why = NULL;
        if (n == 0 || strcmp(text, ".") == 0) {
                *why = "expected a domain name under the zone, got the root";
                return -EINVAL;
        }
        if (text[n - 1] == '.' && (n < 2 || text[n - 2] != '\\'))
                n--; /* the final dot is optional */
        out[o++] = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned c = (unsigned char)text[i];
                if (c == '.') {
                        if (o - label_at == 1) {
                                *why = "an empty label (two dots in a row)";
                                return -EINVAL;
                        }
                        label_at = o;
                        out[o++] = 0;
                        continue;
                }
                if (c == '\\') {
                        if (i + 1 >= n) {
                                *why = "a backslash at the end of the name";
                                return -EINVAL;
                        }
                        if (text[i + 1] >= '0' && text[i + 1] <= '9') {
                                if (i + 3 >= n || text[i + 1] > '7' || text[i + 2] < '0' ||
                                    text[i + 2] > '7' || text[i + 3] < '0' || text[i + 3] > '7') {
                                        *why = "an escape that is not \\ooo (three octal digits)";
                                        return -EINVAL;
                                }
                                c = (unsigned)((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 +
                                               (text[i + 3] - '0'));
                                if (c > 255) {
                                        *why = "an octal escape above \\377";
                                        return -EINVAL;
                                }
                                i += 3;
                        } else {
                                c = (unsigned char)text[++i];
                        }
                } else if (c <= ' ' || c >= 0x7f) {
                        *why = "a blank, control or non-ASCII character (Route 53 writes them "
                               "as \\ooo)";
                        return -EINVAL;
                }
                if (o - label_at > VD_LABEL_MAX) {
                        *why = "a label longer than 63 octets";
                        return -EINVAL;
                }
                if (o + 2 > VD_NAME_MAX) {
                        *why = "a name longer than 255 octets";
                        return -EINVAL;
                }
                out[o++] = (uint8_t)c;
                out[label_at]++;
        }
        if (o - label_at == 1) {
                *why = "an empty label";
                return -EINVAL;
        }
        out[o++] = 0;
        vd_name_lower(out, o);
        *out_len = o;
        return 0;
}

static const struct {
        const char *name;
        uint16_t type;
} hz_types[] = {
    {"A", LDNS_RR_TYPE_A},         {"AAAA", LDNS_RR_TYPE_AAAA}, {"CAA", LDNS_RR_TYPE_CAA},
    {"CNAME", LDNS_RR_TYPE_CNAME}, {"MX", LDNS_RR_TYPE_MX},     {"NAPTR", LDNS_RR_TYPE_NAPTR},
    {"NS", LDNS_RR_TYPE_NS},       {"PTR", LDNS_RR_TYPE_PTR},   {"SOA", LDNS_RR_TYPE_SOA},
    {"SPF", LDNS_RR_TYPE_SPF},     {"SRV", LDNS_RR_TYPE_SRV},   {"TXT", LDNS_RR_TYPE_TXT},
    {"HTTPS", LDNS_RR_TYPE_HTTPS}, {"SVCB", LDNS_RR_TYPE_SVCB}, {"SSHFP", LDNS_RR_TYPE_SSHFP},
    {"TLSA", LDNS_RR_TYPE_TLSA},
};

const char vd_hz_types_text[] =
    "A, AAAA, CAA, CNAME, MX, NAPTR, NS, PTR, SOA, SPF, SRV, TXT, HTTPS, SVCB, SSHFP or TLSA";

uint16_t vd_hz_type(const char *text)
{
        for (size_t i = 0; i < sizeof(hz_types) / sizeof(hz_types[0]); i++)
                if (strcmp(text, hz_types[i].name) == 0)
                        return hz_types[i].type;
        return 0;
}

int vd_hz_parse_value(const char *file, const hz_set *s, size_t k, const char *value, uint8_t *out,
                      size_t *len, vd_error *err)
{
        char expected[256];
        ldns_rr *rr = NULL;
        ldns_rdf *root = ldns_dname_new_frm_str(".");
        ldns_buffer *buf = ldns_buffer_new(1024);
        int rc = 0;

        if (root == NULL || buf == NULL) {
                rc = vd_error_set(err, "%s: out of memory", file);
                goto out;
        }
        if (value[0] == '\0' || strchr(value, '\n') != NULL) {
                vd_zonefile_rdata_expected(s->type, expected, sizeof(expected));
                rc = vd_error_set(err, "%s: %s: ResourceRecords[%zu].Value: expected %s, got '%s'",
                                  file, s->label, k, expected, value);
                goto out;
        }
        size_t cap = strlen(value) + 64;
        char *line = malloc(cap);
        if (line == NULL) {
                rc = vd_error_set(err, "%s: out of memory", file);
                goto out;
        }
        /* Route 53 values are fully qualified whether or not they end in a dot: the root is
         * the origin. */
        snprintf(line, cap, ". %u IN %s %s", (unsigned)s->ttl, s->type_text, value);
        ldns_status st = ldns_rr_new_frm_str(&rr, line, s->ttl, root, NULL);
        free(line);
        if (st != LDNS_STATUS_OK || rr == NULL) {
                vd_zonefile_rdata_expected(s->type, expected, sizeof(expected));
                rc = vd_error_set(err,
                                  "%s: %s: ResourceRecords[%zu].Value: expected %s, got '%s' (%s)",
                                  file, s->label, k, expected, value, ldns_get_errorstr_by_id(st));
                goto out;
        }
        for (size_t i = 0; i < ldns_rr_rd_count(rr); i++)
                if (ldns_rdf2buffer_wire(buf, ldns_rr_rdf(rr, i)) != LDNS_STATUS_OK)
                        break;
        if (ldns_buffer_status(buf) != LDNS_STATUS_OK || ldns_buffer_position(buf) > 65535) {
                rc = vd_error_set(err,
                                  "%s: %s: ResourceRecords[%zu].Value: record data longer than "
                                  "65535 octets",
                                  file, s->label, k);
                goto out;
        }
        *len = ldns_buffer_position(buf);
        memcpy(out, ldns_buffer_begin(buf), *len);
out:
        ldns_rr_free(rr);
        ldns_rdf_deep_free(root);
        ldns_buffer_free(buf);
        return rc;
}

void vd_hz_note(vd_hosted_zone_summary *sum, const char *fmt, ...)
{
        char line[2048];
        va_list ap;
        if (sum == NULL)
                return;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        size_t len = strnlen(line, sizeof(line) - 2);
        line[len++] = '\n';
        char *p = realloc(sum->notes, sum->notes_len + len + 1);
        if (p == NULL)
                return; /* the notes are for people; a load does not fail for them */
        memcpy(p + sum->notes_len, line, len);
        sum->notes_len += len;
        p[sum->notes_len] = '\0';
        sum->notes = p;
}

void vd_hosted_zone_summary_free(vd_hosted_zone_summary *sum)
{
        free(sum->notes);
        memset(sum, 0, sizeof(*sum));
}

static const char *type_name(uint16_t type, char *buf, size_t cap)
{
        for (size_t i = 0; i < sizeof(hz_types) / sizeof(hz_types[0]); i++)
                if (hz_types[i].type == type)
                        return hz_types[i].name;
        snprintf(buf, cap, "TYPE%u", (unsigned)type);
        return buf;
}

int vd_hosted_zone_dump_aliases(const vd_snapshot *s, FILE *out)
{
        const vd_alias_info *a;
        size_t n = vd_snapshot_aliases(s, &a);
        for (size_t i = 0; i < n; i++) {
                char owner[VD_NAME_MAX * 4 + 2], target[VD_NAME_MAX * 4 + 2], tb[16];
                vd_name_to_text(a[i].owner, owner, sizeof(owner));
                vd_name_to_text(a[i].target, target, sizeof(target));
                const char *t = type_name(a[i].type, tb, sizeof(tb));
                int w;
                if (a[i].state == VD_ALIAS_LOCAL)
                        w = fprintf(out, "; alias %s %s -> %s (%s): %zu record%s, TTL %u (below)\n",
                                    owner, t, target, a[i].place, a[i].records,
                                    a[i].records == 1 ? "" : "s", (unsigned)a[i].ttl);
                else if (a[i].state == VD_ALIAS_EMPTY)
                        w = fprintf(out, "; alias %s %s -> %s (%s): the target has no %s records\n",
                                    owner, t, target, a[i].place, t);
                else
                        w = fprintf(out,
                                    "; alias %s %s -> %s (%s): resolved upstream per answer "
                                    "(through the cache)\n",
                                    owner, t, target, a[i].place);
                if (w < 0)
                        return -EIO;
        }
        return 0;
}

void vd_hosted_zone_check_aliases(const vd_snapshot *s, FILE *out)
{
        const vd_alias_info *a;
        size_t n = vd_snapshot_aliases(s, &a);
        size_t local = 0;
        if (n == 0)
                return;
        for (size_t i = 0; i < n; i++)
                local += a[i].state != VD_ALIAS_UPSTREAM;
        fprintf(out, "aliases: %zu (%zu resolved from local data)\n", n, local);
        for (size_t i = 0; i < n; i++) {
                char owner[VD_NAME_MAX * 4 + 2], target[VD_NAME_MAX * 4 + 2], tb[16];
                if (a[i].state == VD_ALIAS_LOCAL)
                        continue;
                vd_name_to_text(a[i].owner, owner, sizeof(owner));
                vd_name_to_text(a[i].target, target, sizeof(target));
                const char *t = type_name(a[i].type, tb, sizeof(tb));
                if (a[i].state == VD_ALIAS_EMPTY)
                        fprintf(out,
                                "  alias %s %s -> %s (%s): the target has no %s records: "
                                "answers no data\n",
                                owner, t, target, a[i].place, t);
                else
                        fprintf(out,
                                "  alias %s %s -> %s (%s): resolved upstream per answer "
                                "(through the cache; no data when the target has none)\n",
                                owner, t, target, a[i].place);
        }
}

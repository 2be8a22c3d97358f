/* zonefile_check.c — checks, on the text of each record as ldns saw it, what ldns accepts but
 * a zone must not hold (TTLs, numbers, parentheses), and sets each record's TTL as RFC 1035 and
 * RFC 2308 say. Must not: read the file, keep records or talk to the builder. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <ldns/ldns.h>

#include "zonefile_int.h"

/* ---- what ldns accepts but a zone must not hold ----
 *
 * ldns 1.8.3 reads a TTL with strtol-like code ("1x" is 1, "4294967296" wraps to 0), stores
 * 8-, 16- and 32-bit fields modulo their size (MX 70000 becomes 4464), and takes a '(' that is
 * never closed as running to the end of the file. These checks run on the text of each record
 * as ldns saw it, and reject what BIND would reject. */

#define TTL_MAX ((uint64_t)INT32_MAX) /* RFC 2181 §8 */

static const char ttl_forms[] = "a number of seconds or a BIND duration such as 1h30m, 2d or 1w";

/* A TTL or period as RFC 1035 (digits) or BIND (digits with units w, d, h, m, s, in any
 * case, e.g. 1h30m) writes it. A bare number after a unit ("1h30") is refused, as BIND does.
 * Returns false for any other form; *value saturates above UINT32_MAX. */
static bool parse_duration(const char *s, uint64_t *value)
{
        uint64_t total = 0;
        bool unit_seen = false;

        if (*s == '\0') {
                return false;
        }
        while (*s != '\0') {
                uint64_t n = 0;
                uint64_t mult;
                size_t digits = 0;

                for (; *s >= '0' && *s <= '9'; s++, digits++) {
                        n = n * 10 + (uint64_t)(*s - '0');
                        if (n > UINT32_MAX) {
                                n = (uint64_t)UINT32_MAX + 1;
                        }
                }
                if (digits == 0) {
                        return false;
                }
                switch (*s) {
                case '\0':
                        if (unit_seen) {
                                return false;
                        }
                        *value = n;
                        return true;
                case 'w':
                case 'W':
                        mult = 604800;
                        break;
                case 'd':
                case 'D':
                        mult = 86400;
                        break;
                case 'h':
                case 'H':
                        mult = 3600;
                        break;
                case 'm':
                case 'M':
                        mult = 60;
                        break;
                case 's':
                case 'S':
                        mult = 1;
                        break;
                default:
                        return false;
                }
                s++;
                unit_seen = true;
                total += n * mult;
                if (total > UINT32_MAX) {
                        total = (uint64_t)UINT32_MAX + 1;
                }
        }
        *value = total;
        return true;
}

/* Copies the next blank-separated token of *p into out (cut to cap - 1 octets; *cut tells),
 * honouring backslash escapes as ldns does. Returns false when no token is left. */
static bool next_token(const char **p, char *out, size_t cap, bool *cut)
{
        const char *s = *p;
        size_t n = 0;

        *cut = false;
        while (*s == ' ' || *s == '\t') {
                s++;
        }
        if (*s == '\0') {
                *p = s;
                out[0] = '\0';
                return false;
        }
        while (*s != '\0' && *s != ' ' && *s != '\t') {
                size_t k = (*s == '\\' && s[1] != '\0') ? 2 : 1;
                for (size_t i = 0; i < k; i++) {
                        if (n + 1 < cap) {
                                out[n++] = s[i];
                        } else {
                                *cut = true;
                        }
                }
                s += k;
        }
        out[n] = '\0';
        *p = s;
        return true;
}

/* Re-reads [from, to) of the file exactly as ldns_rr_new_frm_fp_l() did, into line
 * (LDNS_MAX_LINELEN + 1 octets). */
void vd_zonefile_record_line(const struct zone_text *text, size_t from, size_t to, char *line)
{
        FILE *fp;

        line[0] = '\0';
        if (to <= from || to > text->len) {
                return;
        }
        fp = fmemopen(text->data + from, to - from, "r");
        if (fp == NULL) {
                return;
        }
        if (ldns_fget_token_l(fp, line, LDNS_PARSE_SKIP_SPACE, LDNS_MAX_LINELEN, NULL) < 0) {
                line[0] = '\0';
        }
        fclose(fp);
}

/* Splits a record line as ldns does: [owner] [TTL] [class] type rdata, where a line that
 * starts with a blank has no owner, a TTL starts with a digit and a class is a class name. */
static void split_record(const char *line, struct record_fields *f)
{
        char owner[LDNS_MAX_DOMAINLEN * 4 + 1];
        char tok[TOKEN_CAP];
        const char *p = line;
        bool cut;

        memset(f, 0, sizeof(*f));
        if (line[0] != ' ' && line[0] != '\t') {
                next_token(&p, owner, sizeof(owner), &cut);
        }
        if (!next_token(&p, tok, sizeof(tok), &cut)) {
                f->rdata = p;
                return;
        }
        if (tok[0] >= '0' && tok[0] <= '9') {
                f->has_ttl = true;
                f->ttl_cut = cut;
                memcpy(f->ttl, tok, sizeof(tok));
                if (!next_token(&p, tok, sizeof(tok), &cut)) {
                        f->rdata = p;
                        return;
                }
        }
        if (ldns_get_rr_class_by_name(tok) != 0 && !next_token(&p, tok, sizeof(tok), &cut)) {
                f->rdata = p;
                return;
        }
        memcpy(f->type, tok, sizeof(tok));
        while (*p == ' ' || *p == '\t') {
                p++;
        }
        f->rdata = p;
}

/* The value of a $TTL line. Returns 0 and *ttl, or an error naming path and line. */
int vd_zonefile_check_ttl_directive(const char *path, int line, const char *text, uint32_t *ttl,
                                    vd_error *err)
{
        const char *p = text + 4; /* past "$TTL" */
        char tok[TOKEN_CAP];
        char extra[TOKEN_CAP];
        uint64_t value = 0;
        bool cut;
        bool cut2;

        if (!next_token(&p, tok, sizeof(tok), &cut)) {
                return vd_error_set(err, "%s:%d: $TTL without a value; expected %s", path, line,
                                    ttl_forms);
        }
        if (next_token(&p, extra, sizeof(extra), &cut2)) {
                return vd_error_set(err,
                                    "%s:%d: $TTL has more than one value ('%s' then '%s'); "
                                    "expected one, %s",
                                    path, line, tok, extra, ttl_forms);
        }
        if (cut || !parse_duration(tok, &value)) {
                return vd_error_set(err, "%s:%d: bad $TTL value '%s%s'; expected %s", path, line,
                                    tok, cut ? "..." : "", ttl_forms);
        }
        if (value > TTL_MAX) {
                return vd_error_set(err,
                                    "%s:%d: $TTL %s is too large; expected at most 2147483647 "
                                    "seconds (RFC 2181)",
                                    path, line, tok);
        }
        *ttl = (uint32_t)value;
        return 0;
}

/* The TTL written on a record line, if any: *written tells, *ttl receives it. */
static int check_record_ttl(const char *path, int line, const struct record_fields *f,
                            bool *written, uint32_t *ttl, vd_error *err)
{
        uint64_t value = 0;

        *written = f->has_ttl;
        if (!f->has_ttl) {
                return 0;
        }
        if (f->ttl_cut || !parse_duration(f->ttl, &value)) {
                return vd_error_set(err, "%s:%d: bad TTL '%s%s'; expected %s", path, line, f->ttl,
                                    f->ttl_cut ? "..." : "", ttl_forms);
        }
        if (value > TTL_MAX) {
                return vd_error_set(err,
                                    "%s:%d: TTL %s is too large; expected at most 2147483647 "
                                    "(RFC 2181)",
                                    path, line, f->ttl);
        }
        *ttl = (uint32_t)value;
        return 0;
}

/* Scans [from, to) (from is where the record's text starts, on line `line`) for parentheses
 * outside quotes, comments and backslash escapes. An unclosed '(' makes ldns read to the end
 * of the file; a stray ')' is dropped silently. */
int vd_zonefile_check_parens(const char *path, const struct zone_text *text, size_t from, size_t to,
                             int line, vd_error *err)
{
        const char *d = text->data;
        int depth = 0;
        int lines = 0; /* newlines between from and i */
        int open_line = 0;
        bool quoted = false;

        for (size_t i = from; i < to; i++) {
                char c = d[i];
                if (c == '\n') {
                        lines++;
                        quoted = false; /* ldns ends a quoted string at the line's end too */
                        continue;
                }
                if (c == '\\') {
                        if (i + 1 < to && d[i + 1] != '\n') {
                                i++;
                        }
                        continue;
                }
                if (quoted) {
                        quoted = c != '"';
                        continue;
                }
                if (c == ';') {
                        while (i + 1 < to && d[i + 1] != '\n') {
                                i++;
                        }
                } else if (c == '"') {
                        quoted = true;
                } else if (c == '(') {
                        if (depth++ == 0) {
                                open_line = lines;
                        }
                } else if (c == ')') {
                        if (depth == 0) {
                                return vd_error_set(err,
                                                    "%s:%d: unbalanced parenthesis: a ')' "
                                                    "without a '(' before it in the record",
                                                    path, line);
                        }
                        depth--;
                }
        }
        if (depth > 0) {
                return vd_error_set(err,
                                    "%s:%d: unbalanced parenthesis: the '(' on line %d is never "
                                    "closed; expected ')' before the end of the file",
                                    path, line, line + open_line);
        }
        return 0;
}

/* Fields that are one blank-separated token of the presentation form each. */
static bool one_token_field(ldns_rdf_type t)
{
        switch (t) {
        case LDNS_RDF_TYPE_DNAME:
        case LDNS_RDF_TYPE_INT8:
        case LDNS_RDF_TYPE_INT16:
        case LDNS_RDF_TYPE_INT32:
        case LDNS_RDF_TYPE_A:
        case LDNS_RDF_TYPE_AAAA:
        case LDNS_RDF_TYPE_TYPE:
        case LDNS_RDF_TYPE_CLASS:
        case LDNS_RDF_TYPE_ALG:
        case LDNS_RDF_TYPE_CERT_ALG:
        case LDNS_RDF_TYPE_PERIOD:
        case LDNS_RDF_TYPE_TIME:
        case LDNS_RDF_TYPE_TAG:
        case LDNS_RDF_TYPE_CERTIFICATE_USAGE:
        case LDNS_RDF_TYPE_SELECTOR:
        case LDNS_RDF_TYPE_MATCHING_TYPE:
                return true;
        default:
                return false;
        }
}

/* Numbers ldns stored modulo their size, and periods it read as far as they were digits:
 * checked on the leading fields of the rdata that are one token each. */
static int check_rdata_numbers(const char *path, int line, const ldns_rr *rr,
                               const struct record_fields *f, vd_error *err)
{
        const ldns_rr_descriptor *desc = ldns_rr_descript(ldns_rr_get_type(rr));
        const char *p = f->rdata;
        char tok[TOKEN_CAP];
        char why[TOKEN_CAP + 64];
        bool cut;

        if (desc == NULL || strncmp(p, "\\#", 2) == 0) {
                return 0;
        }
        for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
                ldns_rdf_type t = ldns_rr_descriptor_field_type(desc, i);
                uint64_t max = t == LDNS_RDF_TYPE_INT8    ? UINT8_MAX
                               : t == LDNS_RDF_TYPE_INT16 ? UINT16_MAX
                                                          : UINT32_MAX;
                uint64_t value = 0;
                bool number = true;

                if (!one_token_field(t) || !next_token(&p, tok, sizeof(tok), &cut)) {
                        return 0;
                }
                if (t != LDNS_RDF_TYPE_INT8 && t != LDNS_RDF_TYPE_INT16 &&
                    t != LDNS_RDF_TYPE_INT32 && t != LDNS_RDF_TYPE_PERIOD) {
                        continue;
                }
                if (t == LDNS_RDF_TYPE_PERIOD) {
                        number = !cut && parse_duration(tok, &value);
                } else {
                        /* ldns reads these with strtol: a sign or a suffix it skips is wrong */
                        number = !cut && tok[0] != '\0' && strspn(tok, "0123456789") == strlen(tok);
                        if (number) {
                                number = parse_duration(tok, &value);
                        }
                }
                if (!number) {
                        snprintf(why, sizeof(why), " ('%s%s' is not %s)", tok, cut ? "..." : "",
                                 vd_zonefile_field_kind(t));
                        return vd_zonefile_rdata_error(path, line, LDNS_STATUS_SYNTAX_RDATA_ERR, f,
                                                       why, err);
                }
                if (value > max) {
                        snprintf(why, sizeof(why), " (%s is larger than %llu)", tok,
                                 (unsigned long long)max);
                        return vd_zonefile_rdata_error(path, line, LDNS_STATUS_SYNTAX_RDATA_ERR, f,
                                                       why, err);
                }
        }
        return 0;
}

/* ldns statuses that mean the text after the type is wrong (or the type itself). */
static bool rdata_status(ldns_status st)
{
        return st == LDNS_STATUS_SYNTAX_RDATA_ERR || st == LDNS_STATUS_SYNTAX_MISSING_VALUE_ERR ||
               st == LDNS_STATUS_SYNTAX_SUPERFLUOUS_TEXT_ERR || st == LDNS_STATUS_SYNTAX_TYPE_ERR;
}

/* Checks one record ldns parsed (status st) against the text it came from, and sets its TTL:
 * the one written, else the $TTL value (RFC 2308 §4), else the last TTL written (RFC 1035
 * §5.1), else ldns's default (3600). */
int vd_zonefile_check_record(const char *path, int line, ldns_status st, ldns_rr *rr,
                             const char *line_text, uint32_t *default_ttl, bool ttl_directive,
                             vd_error *err)
{
        struct record_fields fields;
        uint32_t ttl = 0;
        bool written = false;
        int ret;

        split_record(line_text, &fields);
        ret = check_record_ttl(path, line, &fields, &written, &ttl, err);
        if (ret < 0) {
                return ret;
        }
        if (st != LDNS_STATUS_OK) {
                if (rdata_status(st) ||
                    (fields.type[0] != '\0' && ldns_get_rr_type_by_name(fields.type) == 0)) {
                        return vd_zonefile_rdata_error(path, line, st, &fields, NULL, err);
                }
                return vd_error_set(err, "%s:%d: %s", path, line, ldns_get_errorstr_by_id(st));
        }
        ret = check_rdata_numbers(path, line, rr, &fields, err);
        if (ret < 0) {
                return ret;
        }
        if (!written) {
                ldns_rr_set_ttl(rr, *default_ttl);
        } else {
                ldns_rr_set_ttl(rr, ttl);
                if (!ttl_directive) {
                        *default_ttl = ttl;
                }
        }
        return 0;
}

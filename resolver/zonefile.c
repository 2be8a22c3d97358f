/* zonefile.c — RFC 1035 master files through ldns. vd_zonefile_load() reads one file as one
 * authoritative zone (a private hosted zone) into a snapshot builder; vd_zonefile_dump()
 * prints the records of a snapshot as master-file text (--dump).
 *
 * ldns does all the text parsing and printing ($ORIGIN, $TTL, parentheses, comments, quoted
 * strings, every record type it knows); this file checks what a zone must satisfy (one SOA at
 * the apex, class IN, owners at or under the apex), rejects what ldns lets through but BIND
 * would not (unbalanced parentheses, TTLs like "1x", numbers that overflow their field),
 * turns ldns's rdata errors into "expected X, got Y", converts records to uncompressed wire
 * form for the builder and keeps a line number per record for error messages.
 * Load time only: it allocates and formats freely and must never run on the hot path. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "vpcdns/wire.h"
#include "vpcdns/zonefile.h"

/* A record as ldns parsed it, and the line of the file where its text starts. */
struct parsed_rr {
        ldns_rr *rr;
        int line;
};

struct parsed_zone {
        struct parsed_rr *items;
        size_t count;
        size_t cap;
        size_t soa_index; /* valid when soa_seen */
        bool soa_seen;
};

/* The whole file in memory: ldns reads it through fmemopen() while line numbers are
 * computed from the same bytes, so every record knows the line where its text begins,
 * including records spread over several lines with parentheses. */
struct zone_text {
        char *data;
        size_t len;
        size_t line_pos; /* line_no is the line number of offset line_pos */
        int line_no;
};

static int read_file(const char *path, struct zone_text *text, vd_error *err)
{
        FILE *fp = fopen(path, "rb");
        char *data = NULL;
        size_t len = 0;
        size_t cap = 0;
        int ret = 0;

        if (fp == NULL) {
                ret = -errno;
                vd_error_set(err, "%s: cannot open zone file: %s", path, strerror(errno));
                return ret;
        }
        for (;;) {
                if (cap - len < 4096) {
                        size_t ncap = cap == 0 ? 65536 : cap * 2;
                        char *n = realloc(data, ncap);
                        if (n == NULL) {
                                ret = -ENOMEM;
                                vd_error_set(err, "%s: out of memory reading the zone file", path);
                                goto out;
                        }
                        data = n;
                        cap = ncap;
                }
                size_t got = fread(data + len, 1, cap - len, fp);
                len += got;
                if (got == 0) {
                        break;
                }
        }
        if (ferror(fp)) {
                ret = -EIO;
                vd_error_set(err, "%s: cannot read zone file: %s", path, strerror(errno));
                goto out;
        }
        text->data = data;
        text->len = len;
        text->line_pos = 0;
        text->line_no = 1;
        data = NULL;
out:
        free(data);
        fclose(fp);
        return ret;
}

/* Line number of offset pos; offsets asked for never decrease, so counting is linear. */
static int line_at(struct zone_text *text, size_t pos)
{
        if (pos > text->len) {
                pos = text->len;
        }
        if (pos < text->line_pos) { /* not expected; count again from the start */
                text->line_pos = 0;
                text->line_no = 1;
        }
        for (size_t i = text->line_pos; i < pos; i++) {
                if (text->data[i] == '\n') {
                        text->line_no++;
                }
        }
        text->line_pos = pos;
        return text->line_no;
}

/* The line where the text ldns read from [from, to) begins, past blank space and comments;
 * *start receives the offset of that text. */
static int start_line(struct zone_text *text, size_t from, size_t to, size_t *start)
{
        size_t pos = from;

        if (to > text->len) {
                to = text->len;
        }
        while (pos < to) {
                char c = text->data[pos];
                if (c == ';') {
                        while (pos < to && text->data[pos] != '\n') {
                                pos++;
                        }
                } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                        pos++;
                } else {
                        break;
                }
        }
        *start = pos;
        return line_at(text, pos);
}

static void free_parsed(struct parsed_zone *z)
{
        for (size_t i = 0; i < z->count; i++) {
                ldns_rr_free(z->items[i].rr);
        }
        free(z->items);
        memset(z, 0, sizeof(*z));
}

static int push_parsed(struct parsed_zone *z, ldns_rr *rr, int line)
{
        if (z->count == z->cap) {
                size_t ncap = z->cap == 0 ? 64 : z->cap * 2;
                struct parsed_rr *n = realloc(z->items, ncap * sizeof(*n));
                if (n == NULL) {
                        return -ENOMEM;
                }
                z->items = n;
                z->cap = ncap;
        }
        z->items[z->count].rr = rr;
        z->items[z->count].line = line;
        z->count++;
        return 0;
}

/* Presentation form of a name for messages; "?" when ldns cannot print it. */
static void name_text(const ldns_rdf *name, char *out, size_t cap)
{
        char *s = ldns_rdf2str(name);
        snprintf(out, cap, "%s", s != NULL ? s : "?");
        free(s);
}

/* Checks the first SOA against the origin in effect, and makes the SOA owner the origin for
 * relative names that follow when the file set none (as ldns's own zone reader does). */
static int accept_soa(const char *path, int line, const ldns_rr *rr, ldns_rdf **origin,
                      vd_error *err)
{
        const ldns_rdf *owner = ldns_rr_owner(rr);
        char owner_s[LDNS_MAX_DOMAINLEN + 8];
        char origin_s[LDNS_MAX_DOMAINLEN + 8];

        name_text(owner, owner_s, sizeof(owner_s));
        if (ldns_dname_label_count(owner) == 0) {
                return vd_error_set(err,
                                    "%s:%d: the SOA record is for the root zone; expected the "
                                    "zone's apex as its owner (write the name or set $ORIGIN)",
                                    path, line);
        }
        if (*origin != NULL && ldns_dname_compare(owner, *origin) != 0) {
                name_text(*origin, origin_s, sizeof(origin_s));
                return vd_error_set(err,
                                    "%s:%d: the SOA owner %s is not the zone origin %s; expected "
                                    "the SOA at the apex",
                                    path, line, owner_s, origin_s);
        }
        if (*origin == NULL) {
                *origin = ldns_rdf_clone(owner);
                if (*origin == NULL) {
                        vd_error_set(err, "%s: out of memory", path);
                        return -ENOMEM;
                }
        }
        return 0;
}

/* ---- what ldns accepts but a zone must not hold ----
 *
 * ldns 1.8.3 reads a TTL with strtol-like code ("1x" is 1, "4294967296" wraps to 0), stores
 * 8-, 16- and 32-bit fields modulo their size (MX 70000 becomes 4464), and takes a '(' that is
 * never closed as running to the end of the file. These checks run on the text of each record
 * as ldns saw it, and reject what BIND would reject. */

#define TTL_MAX ((uint64_t)INT32_MAX) /* RFC 2181 §8 */
#define TOKEN_CAP 64                  /* TTL, class and type tokens; longer ones are cut */

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

/* A record's text as ldns read it (parentheses and comments removed, one line), split into
 * the fields that come before the rdata. */
struct record_fields {
        bool has_ttl; /* the token where a TTL may stand starts with a digit */
        char ttl[TOKEN_CAP];
        bool ttl_cut;
        char type[TOKEN_CAP]; /* "" when the line ends before a type */
        const char *rdata;    /* the rest of the line, blanks skipped */
};

/* Re-reads [from, to) of the file exactly as ldns_rr_new_frm_fp_l() did, into line
 * (LDNS_MAX_LINELEN + 1 octets). */
static void record_line(const struct zone_text *text, size_t from, size_t to, char *line)
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
static int check_ttl_directive(const char *path, int line, const char *text, uint32_t *ttl,
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
static int check_parens(const char *path, const struct zone_text *text, size_t from, size_t to,
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

/* ---- what a record's data should look like, for messages ---- */

static const char *field_kind(ldns_rdf_type t)
{
        switch (t) {
        case LDNS_RDF_TYPE_DNAME:
                return "a domain name";
        case LDNS_RDF_TYPE_INT8:
        case LDNS_RDF_TYPE_CERTIFICATE_USAGE:
        case LDNS_RDF_TYPE_SELECTOR:
        case LDNS_RDF_TYPE_MATCHING_TYPE:
                return "an 8-bit number";
        case LDNS_RDF_TYPE_INT16:
                return "a 16-bit number";
        case LDNS_RDF_TYPE_INT32:
                return "a 32-bit number";
        case LDNS_RDF_TYPE_A:
                return "an IPv4 address";
        case LDNS_RDF_TYPE_AAAA:
                return "an IPv6 address";
        case LDNS_RDF_TYPE_STR:
        case LDNS_RDF_TYPE_LONG_STR:
                return "a text string";
        case LDNS_RDF_TYPE_APL:
                return "an address prefix list";
        case LDNS_RDF_TYPE_B32_EXT:
        case LDNS_RDF_TYPE_NSEC3_NEXT_OWNER:
                return "base32 data";
        case LDNS_RDF_TYPE_B64:
                return "base64 data";
        case LDNS_RDF_TYPE_HEX:
                return "hex data";
        case LDNS_RDF_TYPE_NSEC:
                return "a list of record types";
        case LDNS_RDF_TYPE_TYPE:
                return "a record type";
        case LDNS_RDF_TYPE_CLASS:
                return "a class";
        case LDNS_RDF_TYPE_CERT_ALG:
                return "a certificate type";
        case LDNS_RDF_TYPE_ALG:
                return "an algorithm";
        case LDNS_RDF_TYPE_TIME:
                return "a time (YYYYMMDDHHmmSS)";
        case LDNS_RDF_TYPE_PERIOD:
                return "a period (seconds or 1h30m)";
        case LDNS_RDF_TYPE_NSEC3_SALT:
                return "a salt (hex or -)";
        case LDNS_RDF_TYPE_ILNP64:
                return "a 64-bit locator (four hex groups)";
        case LDNS_RDF_TYPE_EUI48:
                return "an EUI-48 address";
        case LDNS_RDF_TYPE_EUI64:
                return "an EUI-64 address";
        case LDNS_RDF_TYPE_TAG:
                return "a tag (letters and digits)";
        case LDNS_RDF_TYPE_LOC:
                return "a location";
        case LDNS_RDF_TYPE_WKS:
                return "a protocol and services";
        case LDNS_RDF_TYPE_SVCPARAMS:
                return "service parameters";
        default:
                return "a value";
        }
}

/* What the rdata of type should be, as a phrase: hand-written for common types, else the
 * field kinds of ldns's descriptor ("a 16-bit number, a 16-bit number and a domain name"). */
static void rdata_expected(uint16_t type, char *out, size_t cap)
{
        const ldns_rr_descriptor *desc = ldns_rr_descript(type);
        size_t min;
        size_t max;
        size_t pos = 0;

        switch (type) {
        case LDNS_RR_TYPE_A:
                snprintf(out, cap, "an IPv4 address");
                return;
        case LDNS_RR_TYPE_AAAA:
                snprintf(out, cap, "an IPv6 address");
                return;
        case LDNS_RR_TYPE_MX:
                snprintf(out, cap, "a preference (0-65535) and a host name");
                return;
        case LDNS_RR_TYPE_SRV:
                snprintf(out, cap,
                         "a priority, a weight and a port (0-65535 each) and a target "
                         "host name");
                return;
        case LDNS_RR_TYPE_SOA:
                snprintf(out, cap,
                         "a primary name server, a mailbox name, a serial (32-bit "
                         "number) and refresh, retry, expire and minimum periods");
                return;
        case LDNS_RR_TYPE_TXT:
                snprintf(out, cap, "one or more text strings");
                return;
        default:
                break;
        }
        if (desc == NULL) {
                snprintf(out, cap, "data in RFC 3597 form (\\# length hex)");
                return;
        }
        min = ldns_rr_descriptor_minimum(desc);
        max = ldns_rr_descriptor_maximum(desc);
        if (max > 16) { /* a repeated last field */
                max = min;
        }
        out[0] = '\0';
        for (size_t i = 0; i < max && pos < cap; i++) {
                const char *sep = i == 0 ? "" : (i + 1 == max ? " and " : ", ");
                int w = snprintf(out + pos, cap - pos, "%s%s", sep,
                                 field_kind(ldns_rr_descriptor_field_type(desc, i)));
                if (w < 0) {
                        break;
                }
                pos += (size_t)w;
        }
        if (max < ldns_rr_descriptor_maximum(desc) && pos < cap) {
                snprintf(out + pos, cap - pos, "%s%s", max == 0 ? "one or more: " : ", then more: ",
                         field_kind(ldns_rr_descriptor_field_type(desc, max)));
        }
        if (out[0] == '\0') {
                snprintf(out, cap, "no data");
        }
}

/* text with each run of blanks outside quotes made one space, without blanks at either end,
 * cut with "..." to fit out (cap >= 4). The record text joins lines, so it holds long runs. */
static void collapse_blanks(const char *text, char *out, size_t cap)
{
        size_t n = 0;
        bool quoted = false;
        bool blank = false;

        for (const char *s = text; *s != '\0'; s++) {
                bool is_blank = !quoted && (*s == ' ' || *s == '\t');
                if (is_blank) {
                        blank = n > 0;
                        continue;
                }
                if (n + (blank ? 1 : 0) + 1 >= cap - 3) {
                        memcpy(out + n, "...", 3);
                        n += 3;
                        break;
                }
                if (blank) {
                        out[n++] = ' ';
                        blank = false;
                }
                if (*s == '"' && (s == text || s[-1] != '\\')) {
                        quoted = !quoted;
                }
                out[n++] = *s;
        }
        out[n] = '\0';
}

/* The message for rdata ldns refused: "FILE:N: A record: expected an IPv4 address, got 'x'". */
static int rdata_error(const char *path, int line, ldns_status st, const struct record_fields *f,
                       const char *why, vd_error *err)
{
        ldns_rr_type type = ldns_get_rr_type_by_name(f->type);
        char expected[512];
        char shown[204];
        char *type_s;
        const char *note = why;

        if (f->type[0] == '\0') {
                return vd_error_set(err,
                                    "%s:%d: expected a record type, but the record ends "
                                    "before one",
                                    path, line);
        }
        if (type == 0) {
                return vd_error_set(err,
                                    "%s:%d: unknown record type '%s'; expected a type such as A, "
                                    "AAAA, CNAME, MX, SRV or TXT, or TYPEnnn with \\# data (RFC "
                                    "3597)",
                                    path, line, f->type);
        }
        rdata_expected((uint16_t)type, expected, sizeof(expected));
        if (note == NULL && st == LDNS_STATUS_SYNTAX_MISSING_VALUE_ERR) {
                note = " (too few fields)";
        } else if (note == NULL && st == LDNS_STATUS_SYNTAX_SUPERFLUOUS_TEXT_ERR) {
                note = " (text left over at the end)";
        }
        type_s = ldns_rr_type2str(type);
        collapse_blanks(f->rdata, shown, sizeof(shown));
        if (shown[0] == '\0') {
                vd_error_set(err, "%s:%d: %s record: expected %s, got nothing", path, line,
                             type_s != NULL ? type_s : f->type, expected);
        } else {
                vd_error_set(err, "%s:%d: %s record: expected %s, got '%s'%s", path, line,
                             type_s != NULL ? type_s : f->type, expected, shown,
                             note != NULL ? note : "");
        }
        free(type_s);
        return -EINVAL;
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
                                 field_kind(t));
                        return rdata_error(path, line, LDNS_STATUS_SYNTAX_RDATA_ERR, f, why, err);
                }
                if (value > max) {
                        snprintf(why, sizeof(why), " (%s is larger than %llu)", tok,
                                 (unsigned long long)max);
                        return rdata_error(path, line, LDNS_STATUS_SYNTAX_RDATA_ERR, f, why, err);
                }
        }
        return 0;
}

/* ldns gives a record without a TTL the default TTL passed in, and replaces a default of 0
 * with 3600. Passing this value instead (above RFC 2181's largest TTL, 2^31 - 1) tells an
 * omitted TTL from a written one, so "$TTL 0" and "last TTL written" both work. */
#define TTL_OMITTED UINT32_MAX

/* ldns statuses that mean the text after the type is wrong (or the type itself). */
static bool rdata_status(ldns_status st)
{
        return st == LDNS_STATUS_SYNTAX_RDATA_ERR || st == LDNS_STATUS_SYNTAX_MISSING_VALUE_ERR ||
               st == LDNS_STATUS_SYNTAX_SUPERFLUOUS_TEXT_ERR || st == LDNS_STATUS_SYNTAX_TYPE_ERR;
}

/* Checks one record ldns parsed (status st) against the text it came from, and sets its TTL:
 * the one written, else the $TTL value (RFC 2308 §4), else the last TTL written (RFC 1035
 * §5.1), else ldns's default (3600). */
static int check_record(const char *path, int line, ldns_status st, ldns_rr *rr,
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
                        return rdata_error(path, line, st, &fields, NULL, err);
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

/* Reads every record of the file with ldns, one call per record or directive. */
static int parse_text(const char *path, struct zone_text *text, struct parsed_zone *z,
                      vd_error *err)
{
        FILE *fp = fmemopen(text->data, text->len, "r");
        char *line_text = malloc(LDNS_MAX_LINELEN + 1);
        ldns_rdf *origin = NULL;
        ldns_rdf *prev = NULL;
        uint32_t default_ttl = LDNS_DEFAULT_TTL; /* until a TTL is written */
        bool ttl_directive = false;
        int ret = 0;

        if (fp == NULL || line_text == NULL) {
                ret = vd_error_set(err, "%s: cannot read zone file: %s", path, strerror(errno));
                goto out;
        }
        while (!feof(fp)) {
                ldns_rr *rr = NULL;
                uint32_t ttl = TTL_OMITTED;
                long from = ftell(fp);
                ldns_status st = ldns_rr_new_frm_fp_l(&rr, fp, &ttl, &origin, &prev, NULL);
                long to = ftell(fp);
                size_t from_pos = from < 0 ? 0 : (size_t)from;
                size_t to_pos = to < 0 ? text->len : (size_t)to;
                size_t start = from_pos;
                int line = start_line(text, from_pos, to_pos, &start);

                ret = check_parens(path, text, start, to_pos, line, err);
                if (ret < 0) {
                        ldns_rr_free(rr);
                        goto out;
                }
                if (st == LDNS_STATUS_SYNTAX_EMPTY || st == LDNS_STATUS_SYNTAX_ORIGIN) {
                        continue;
                }
                if (st == LDNS_STATUS_SYNTAX_INCLUDE) {
                        ret = vd_error_set(err,
                                           "%s:%d: $INCLUDE is not supported; expected one zone "
                                           "per file (pass each file with its own --zone)",
                                           path, line);
                        goto out;
                }
                record_line(text, from_pos, to_pos, line_text);
                if (strncmp(line_text, "$TTL", 4) == 0 &&
                    (line_text[4] == '\0' || line_text[4] == ' ' || line_text[4] == '\t')) {
                        ldns_rr_free(rr);
                        ret = check_ttl_directive(path, line, line_text, &default_ttl, err);
                        if (ret < 0) {
                                goto out;
                        }
                        ttl_directive = true;
                        continue;
                }
                if (st == LDNS_STATUS_SYNTAX_TTL) { /* a $TTL ldns saw but not as above */
                        default_ttl = ttl;
                        ttl_directive = true;
                        continue;
                }
                ret = check_record(path, line, st, rr, line_text, &default_ttl, ttl_directive, err);
                if (ret < 0) {
                        ldns_rr_free(rr);
                        goto out;
                }
                if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA) {
                        if (z->soa_seen) {
                                ret = vd_error_set(err,
                                                   "%s:%d: a second SOA record (the first is on "
                                                   "line %d); expected exactly one SOA, at the "
                                                   "apex",
                                                   path, line, z->items[z->soa_index].line);
                                ldns_rr_free(rr);
                                goto out;
                        }
                        ret = accept_soa(path, line, rr, &origin, err);
                        if (ret < 0) {
                                ldns_rr_free(rr);
                                goto out;
                        }
                        z->soa_seen = true;
                        z->soa_index = z->count;
                }
                if (push_parsed(z, rr, line) < 0) {
                        ldns_rr_free(rr);
                        ret = -ENOMEM;
                        vd_error_set(err, "%s: out of memory", path);
                        goto out;
                }
        }
        if (ferror(fp)) {
                ret = vd_error_set(err, "%s: cannot read zone file", path);
        }
out:
        ldns_rdf_deep_free(origin);
        ldns_rdf_deep_free(prev);
        free(line_text);
        if (fp != NULL) {
                fclose(fp);
        }
        return ret;
}

/* Rdata of rr in wire form with uncompressed names. Returns its length or -1 if > 65535. */
static long rdata_wire(const ldns_rr *rr, ldns_buffer *buf)
{
        ldns_buffer_clear(buf);
        for (size_t i = 0; i < ldns_rr_rd_count(rr); i++) {
                if (ldns_rdf2buffer_wire(buf, ldns_rr_rdf(rr, i)) != LDNS_STATUS_OK) {
                        return -1;
                }
        }
        if (ldns_buffer_status(buf) != LDNS_STATUS_OK || ldns_buffer_position(buf) > 65535) {
                return -1;
        }
        return (long)ldns_buffer_position(buf);
}

/* Copies a builder message behind "path:line: ". */
static int builder_error(vd_error *err, const char *path, int line, const vd_error *inner, int code)
{
        vd_error_set(err, "%s:%d: %s", path, line, inner->msg);
        return code < 0 ? code : -EINVAL;
}

/* Checks every record against the apex and hands the zone to the builder. */
static int feed_builder(vd_builder *b, const char *path, const struct parsed_zone *z, vd_error *err)
{
        const struct parsed_rr *soa = &z->items[z->soa_index];
        const ldns_rdf *apex = ldns_rr_owner(soa->rr);
        ldns_buffer *buf = ldns_buffer_new(1024);
        char apex_s[LDNS_MAX_DOMAINLEN + 8];
        char owner_s[LDNS_MAX_DOMAINLEN + 8];
        vd_error inner = {{0}};
        long len;
        int ret = 0;

        if (buf == NULL) {
                vd_error_set(err, "%s: out of memory", path);
                return -ENOMEM;
        }
        name_text(apex, apex_s, sizeof(apex_s));
        /* Class and owner first, in file order, so the first bad line is the one named. */
        for (size_t i = 0; i < z->count; i++) {
                const struct parsed_rr *p = &z->items[i];
                const ldns_rdf *owner = ldns_rr_owner(p->rr);
                if (ldns_rr_get_class(p->rr) != LDNS_RR_CLASS_IN) {
                        char *cls = ldns_rr_class2str(ldns_rr_get_class(p->rr));
                        ret =
                            vd_error_set(err, "%s:%d: class %s is not supported; expected class IN",
                                         path, p->line, cls != NULL ? cls : "?");
                        free(cls);
                        goto out;
                }
                if (ldns_dname_compare(owner, apex) != 0 && !ldns_dname_is_subdomain(owner, apex)) {
                        name_text(owner, owner_s, sizeof(owner_s));
                        ret = vd_error_set(err,
                                           "%s:%d: owner %s is outside the zone %s; expected a "
                                           "name at or under the SOA's owner",
                                           path, p->line, owner_s, apex_s);
                        goto out;
                }
        }

        len = rdata_wire(soa->rr, buf);
        if (len < 0) {
                ret = vd_error_set(err, "%s:%d: cannot convert the SOA record", path, soa->line);
                goto out;
        }
        ret = vd_builder_add_zone(b, ldns_rdf_data(apex), true, ldns_buffer_begin(buf),
                                  (uint16_t)len, ldns_rr_ttl(soa->rr), path, &inner);
        if (ret < 0) {
                ret = builder_error(err, path, soa->line, &inner, ret);
                goto out;
        }
        for (size_t i = 0; i < z->count; i++) {
                const struct parsed_rr *p = &z->items[i];
                if (i == z->soa_index) {
                        continue; /* the builder adds the SOA itself */
                }
                len = rdata_wire(p->rr, buf);
                if (len < 0) {
                        ret = vd_error_set(err, "%s:%d: record data longer than 65535 octets", path,
                                           p->line);
                        goto out;
                }
                /* the line travels with the record: a CNAME loop is only found once every
                 * file and snapshot is loaded, and is reported at this place */
                ret = vd_builder_add_rr_at(b, ldns_rdf_data(ldns_rr_owner(p->rr)),
                                           (uint16_t)ldns_rr_get_type(p->rr), ldns_rr_ttl(p->rr),
                                           ldns_buffer_begin(buf), (uint16_t)len, path, p->line,
                                           &inner);
                if (ret < 0) {
                        ret = builder_error(err, path, p->line, &inner, ret);
                        goto out;
                }
        }
out:
        ldns_buffer_free(buf);
        return ret;
}

int vd_zonefile_load(vd_builder *b, const char *path, size_t *records, vd_error *err)
{
        struct zone_text text = {0};
        struct parsed_zone zone = {0};
        int ret;

        VD_CHECK(b != NULL && path != NULL);
        if (records != NULL) {
                *records = 0;
        }
        ret = read_file(path, &text, err);
        if (ret < 0) {
                goto out;
        }
        if (text.len == 0) {
                ret = vd_error_set(err, "%s: the zone file is empty; expected an SOA record", path);
                goto out;
        }
        ret = parse_text(path, &text, &zone, err);
        if (ret < 0) {
                goto out;
        }
        if (!zone.soa_seen) {
                if (zone.count == 0) {
                        ret = vd_error_set(err,
                                           "%s: the zone file holds no records; expected an "
                                           "SOA record",
                                           path);
                } else {
                        ret = vd_error_set(err,
                                           "%s:%d: expected an SOA record; the file has none "
                                           "(its first record is on this line)",
                                           path, zone.items[0].line);
                }
                goto out;
        }
        ret = feed_builder(b, path, &zone, err);
        if (ret < 0) {
                goto out;
        }
        if (records != NULL) {
                *records = zone.count; /* the SOA included */
        }
out:
        free_parsed(&zone);
        free(text.data);
        return ret;
}

struct dump_ctx {
        FILE *out;
        uint8_t *wire; /* owner + fixed part + rdata of one record */
        size_t cap;
        bool failed;
};

static int dump_one(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                    const uint8_t *rdata, uint16_t rdlen)
{
        struct dump_ctx *ctx = arg;
        size_t owner_len = vd_name_len(owner, VD_NAME_MAX);
        ldns_rr *rr = NULL;
        size_t pos = 0;
        size_t len;
        char *s;

        if (owner_len == 0 || owner_len + 10 + (size_t)rdlen > ctx->cap) {
                ctx->failed = true;
                return 0;
        }
        memcpy(ctx->wire, owner, owner_len);
        len = owner_len;
        vd_wire_put16(ctx->wire + len, type);
        vd_wire_put16(ctx->wire + len + 2, VD_CLASS_IN);
        vd_wire_put32(ctx->wire + len + 4, ttl);
        vd_wire_put16(ctx->wire + len + 8, rdlen);
        len += 10;
        if (rdlen > 0) {
                memcpy(ctx->wire + len, rdata, rdlen);
                len += rdlen;
        }
        if (ldns_wire2rr(&rr, ctx->wire, len, &pos, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK) {
                fprintf(ctx->out, "; vpcdns: a record of type %u that ldns cannot print\n",
                        (unsigned)type);
                ctx->failed = true;
                return 0;
        }
        s = ldns_rr2str_fmt(ldns_output_format_nocomments, rr);
        if (s == NULL || fputs(s, ctx->out) == EOF) {
                ctx->failed = true;
        }
        free(s);
        ldns_rr_free(rr);
        return 0;
}

int vd_zonefile_dump(const vd_snapshot *s, FILE *out)
{
        struct dump_ctx ctx = {.out = out, .cap = VD_NAME_MAX + 10 + 65535};

        VD_CHECK(s != NULL && out != NULL);
        ctx.wire = malloc(ctx.cap);
        if (ctx.wire == NULL) {
                return -EIO;
        }
        vd_snapshot_foreach(s, dump_one, &ctx);
        free(ctx.wire);
        if (fflush(out) != 0 || ferror(out) || ctx.failed) {
                return -EIO;
        }
        return 0;
}

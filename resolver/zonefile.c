/* zonefile.c — RFC 1035 master files through ldns. vd_zonefile_load() reads one file as one
 * authoritative zone (a private hosted zone) into a snapshot builder.
 *
 * ldns does all the text parsing ($ORIGIN, $TTL, parentheses, comments, quoted strings, every
 * record type it knows); this file reads the file, drives ldns one record at a time and keeps
 * a line number per record for error messages, checks what a zone must satisfy (one SOA at
 * the apex, class IN, owners at or under the apex) and converts records to uncompressed wire
 * form for the builder. What ldns lets through but BIND would not (unbalanced parentheses,
 * TTLs like "1x", numbers that overflow their field) is rejected by zonefile_check.c, and
 * zonefile_messages.c turns ldns's rdata errors into "expected X, got Y"; vd_zonefile_dump()
 * is in zonefile_dump.c. Must not: print records or run on the hot path (load time only: it
 * allocates and formats freely). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "vpcdns/wire.h"
#include "vpcdns/zonefile.h"
#include "zonefile_int.h"

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

/* ldns gives a record without a TTL the default TTL passed in, and replaces a default of 0
 * with 3600. Passing this value instead (above RFC 2181's largest TTL, 2^31 - 1) tells an
 * omitted TTL from a written one, so "$TTL 0" and "last TTL written" both work. */
#define TTL_OMITTED UINT32_MAX

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

                ret = vd_zonefile_check_parens(path, text, start, to_pos, line, err);
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
                vd_zonefile_record_line(text, from_pos, to_pos, line_text);
                if (strncmp(line_text, "$TTL", 4) == 0 &&
                    (line_text[4] == '\0' || line_text[4] == ' ' || line_text[4] == '\t')) {
                        ldns_rr_free(rr);
                        ret = vd_zonefile_check_ttl_directive(path, line, line_text, &default_ttl,
                                                              err);
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
                ret = vd_zonefile_check_record(path, line, st, rr, line_text, &default_ttl,
                                               ttl_directive, err);
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

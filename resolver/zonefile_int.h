/* zonefile_int.h — the zone file loader's shared pieces, for its parts only: reading and
 * feeding the builder (zonefile.c), the checks of what ldns lets through (zonefile_check.c)
 * and the messages for rdata ldns refused (zonefile_messages.c; the hosted zone loader uses
 * them too). Nothing else includes it; the
 * public contract is vpcdns/zonefile.h. Load time only. */
#ifndef VPCDNS_ZONEFILE_INT_H
#define VPCDNS_ZONEFILE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ldns/ldns.h>

#include "vpcdns/common.h"

#define TOKEN_CAP 64 /* TTL, class and type tokens; longer ones are cut */

/* The whole file in memory: ldns reads it through fmemopen() while line numbers are
 * computed from the same bytes, so every record knows the line where its text begins,
 * including records spread over several lines with parentheses. */
struct zone_text {
        char *data;
        size_t len;
        size_t line_pos; /* line_no is the line number of offset line_pos */
        int line_no;
};

/* A record's text as ldns read it (parentheses and comments removed, one line), split into
 * the fields that come before the rdata. */
struct record_fields {
        bool has_ttl; /* the token where a TTL may stand starts with a digit */
        char ttl[TOKEN_CAP];
        bool ttl_cut;
        char type[TOKEN_CAP]; /* "" when the line ends before a type */
        const char *rdata;    /* the rest of the line, blanks skipped */
};

/* zonefile_check.c: what ldns accepts but a zone must not hold. */
/* Re-reads [from, to) of the file exactly as ldns_rr_new_frm_fp_l() did, into line
 * (LDNS_MAX_LINELEN + 1 octets). */
void vd_zonefile_record_line(const struct zone_text *text, size_t from, size_t to, char *line);
/* Unbalanced parentheses in the record text [from, to) starting on line `line`. */
int vd_zonefile_check_parens(const char *path, const struct zone_text *text, size_t from, size_t to,
                             int line, vd_error *err);
/* The value of a $TTL line. Returns 0 and *ttl, or an error naming path and line. */
int vd_zonefile_check_ttl_directive(const char *path, int line, const char *text, uint32_t *ttl,
                                    vd_error *err);
/* Checks one record ldns parsed (status st) against its text, and sets its TTL. */
int vd_zonefile_check_record(const char *path, int line, ldns_status st, ldns_rr *rr,
                             const char *line_text, uint32_t *default_ttl, bool ttl_directive,
                             vd_error *err);

/* zonefile_messages.c: what a record's data should look like, for messages. */
const char *vd_zonefile_field_kind(ldns_rdf_type t);
/* What the rdata of type should be, as a phrase ("a preference (0-65535) and a host name");
 * also used by the hosted zone loader. */
void vd_zonefile_rdata_expected(uint16_t type, char *out, size_t cap);
/* The message for rdata ldns refused (why: a note after it, or NULL); returns -EINVAL. */
int vd_zonefile_rdata_error(const char *path, int line, ldns_status st,
                            const struct record_fields *f, const char *why, vd_error *err);

#endif

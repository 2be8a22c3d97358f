/* zonefile_messages.c — the "expected X, got Y" messages for rdata ldns refused: the kind of
 * each field, a phrase for what a type's rdata should be, and the record text shown. Must not:
 * decide whether a record is accepted (the checks and ldns do). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "zonefile_int.h"

/* ---- what a record's data should look like, for messages ---- */

const char *vd_zonefile_field_kind(ldns_rdf_type t)
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
void vd_zonefile_rdata_expected(uint16_t type, char *out, size_t cap)
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
                                 vd_zonefile_field_kind(ldns_rr_descriptor_field_type(desc, i)));
                if (w < 0) {
                        break;
                }
                pos += (size_t)w;
        }
        if (max < ldns_rr_descriptor_maximum(desc) && pos < cap) {
                snprintf(out + pos, cap - pos, "%s%s", max == 0 ? "one or more: " : ", then more: ",
                         vd_zonefile_field_kind(ldns_rr_descriptor_field_type(desc, max)));
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
int vd_zonefile_rdata_error(const char *path, int line, ldns_status st,
                            const struct record_fields *f, const char *why, vd_error *err)
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
        vd_zonefile_rdata_expected((uint16_t)type, expected, sizeof(expected));
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

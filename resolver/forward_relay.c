/* forward_relay.c — turns an upstream answer into the client's response (vd_forward_relay in
 * forward.h): checks that it answers the client's question, restores the client's ID and
 * spelling, replaces the upstream's OPT with ours, drops what signs the upstream's own message,
 * passes TTLs over 2^31 - 1 on as 0, and fits the client's size limit (leaving out the
 * additional, then the authority section; TC only when the answer section does not fit). A pure
 * message transform: no I/O, no allocation, no state; every octet of the answer is read through
 * wire.h's bounded readers. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vpcdns/forward.h"

#define TTL_MAX_VALID 0x7FFFFFFFu /* RFC 2181 §8: larger TTLs are treated as zero */

/* Header + client's question + our OPT, TC set, no records: "retry over TCP". */
static size_t relay_truncated(const vd_query_info *qi, uint16_t flags, uint8_t rcode, uint8_t *out,
                              size_t limit)
{
        size_t len = VD_HEADER_LEN + (size_t)qi->qname_len + 4;
        if (limit < len)
                return 0;
        vd_wire_put16(out, qi->id);
        vd_wire_put16(out + 2, (uint16_t)(flags | VD_FLAG_TC));
        vd_wire_put16(out + 4, 1);
        memset(out + 6, 0, 6);
        memcpy(out + VD_HEADER_LEN, qi->qname, qi->qname_len);
        vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len, qi->qtype);
        vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len + 2, qi->qclass);
        return vd_wire_add_opt(qi, rcode, out, len, limit);
}

/* Reads the names of a record's rdata, for the types whose rdata may hold compressed names
 * (each through the bounded reader, so a relayed pointer always leads to a valid name); the
 * inline part must stay inside the rdata. Returns false when one is malformed. */
static bool rdata_names_ok(const uint8_t *msg, size_t fixed, uint16_t type)
{
        uint8_t scratch[VD_NAME_MAX];
        size_t scratch_len;
        size_t rdata = fixed + 10;
        size_t end = rdata + vd_wire_get16(msg + fixed + 8);
        size_t skip, names;

        if (!vd_wire_rdata_names(type, &skip, &names))
                return true; /* opaque rdata */
        if (type == 35) {    /* NAPTR: flags, services and regexp strings before the name */
                for (int k = 0; k < 3; k++) {
                        if (rdata + skip >= end)
                                return false;
                        skip += 1 + (size_t)msg[rdata + skip];
                }
        }
        size_t p = rdata + skip;
        for (size_t k = 0; k < names; k++) {
                if (p >= end || vd_wire_read_name(msg, end, &p, scratch, &scratch_len, false) != 0)
                        return false;
        }
        return p <= end;
}

/* Records a relay drops: they sign or extend the upstream's own message (RFC 8945 §5.1,
 * RFC 2931), and ours is a different message. */
static bool relay_drops(uint16_t type)
{
        return type == 250 /* TSIG */ || type == 24 /* SIG(0) */;
}

size_t vd_forward_relay(const vd_query_info *qi, const uint8_t *answer, size_t answer_len,
                        size_t max_len, uint8_t *out, size_t cap)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len;

        if (qi == NULL || !qi->question_ok || answer == NULL || out == NULL ||
            answer_len < VD_HEADER_LEN)
                return 0;
        uint16_t up_flags = vd_wire_get16(answer + 2);
        if (!(up_flags & VD_FLAG_QR) || VD_OPCODE(up_flags) != 0 || vd_wire_get16(answer + 4) != 1)
                return 0;

        /* The question must be the client's, uncompressed, so that compression pointers in the
         * records keep pointing at the same octets once the client's spelling replaces it. */
        size_t pos = VD_HEADER_LEN;
        if (vd_wire_read_name(answer, answer_len, &pos, name, &name_len, true) != 0 ||
            name_len != qi->qname_len || pos != VD_HEADER_LEN + name_len ||
            memcmp(name, qi->qname_lower, name_len) != 0 || pos + 4 > answer_len ||
            vd_wire_get16(answer + pos) != qi->qtype ||
            vd_wire_get16(answer + pos + 2) != qi->qclass)
                return 0;
        pos += 4;

        size_t limit = max_len < cap ? max_len : cap;
        size_t len = pos; /* header and question are written last */
        bool fits = len <= limit;
        uint16_t an = vd_wire_get16(answer + 6);
        uint16_t ns = vd_wire_get16(answer + 8);
        uint16_t ar = vd_wire_get16(answer + 10);
        size_t total = (size_t)an + ns + ar;
        bool seen_opt = false;
        size_t removed = 0; /* records not relayed: offsets after the first one shift */
        unsigned ext_rcode = 0;
        /* The response's length once the answer section, and then the authority section, was
         * written whole (SIZE_MAX: it did not fit). Sections are dropped whole, from the end. */
        size_t end_an = SIZE_MAX, end_ns = SIZE_MAX;
        /* An NSEC or NSEC3 record in the authority section of a positive answer proves a
         * wildcard expansion: a validating client needs it (RFC 4035 §3.1.3.3). */
        bool ns_proof = false;

        for (size_t i = 0; i < total; i++) {
                size_t start = pos, fixed, ttl_at;
                uint16_t type;
                if (fits && i == an)
                        end_an = len;
                if (fits && i == (size_t)an + ns)
                        end_ns = len;
                if (vd_wire_skip_rr(answer, answer_len, &pos, &type, &fixed) != 0)
                        return 0;
                if (type == VD_TYPE_OPT) {
                        /* RFC 6891: one OPT, in the additional section, owned by the root. */
                        if (i < (size_t)an + ns || seen_opt || fixed != start + 1)
                                return 0;
                        seen_opt = true;
                        removed++;
                        ext_rcode = answer[fixed + 4];
                        continue;
                }
                if (i >= (size_t)an + ns && relay_drops(type)) {
                        removed++;
                        continue;
                }
                if (!rdata_names_ok(answer, fixed, type))
                        return 0;
                if (i >= an && i < (size_t)an + ns && (type == 47 || type == 50))
                        ns_proof = true; /* NSEC, NSEC3 */
                if (!fits)
                        continue;          /* keep validating the rest */
                size_t rest = pos - fixed; /* fixed part and rdata */
                if (removed == 0) {
                        if (len + (pos - start) > limit) {
                                fits = false;
                                continue;
                        }
                        memcpy(out + len, answer + start, pos - start);
                        ttl_at = len + (fixed - start) + 4;
                        len += pos - start;
                } else {
                        /* After a removed record offsets shift: write the owner uncompressed, as
                         * spelt. Rdata is copied as is, so a record whose rdata may hold
                         * compressed names cannot follow it safely: such an answer is refused
                         * (SERVFAIL). */
                        size_t unused_prefix, unused_names;
                        if (vd_wire_rdata_names(type, &unused_prefix, &unused_names))
                                return 0;
                        size_t owner_pos = start;
                        if (vd_wire_read_name(answer, answer_len, &owner_pos, name, &name_len,
                                              false) != 0)
                                return 0;
                        if (len + name_len + rest > limit) {
                                fits = false;
                                continue;
                        }
                        memcpy(out + len, name, name_len);
                        memcpy(out + len + name_len, answer + fixed, rest);
                        ttl_at = len + name_len + 4;
                        len += name_len + rest;
                }
                /* RFC 2181 §8: a TTL with the top bit set is treated as zero. */
                if (vd_wire_get32(out + ttl_at) > TTL_MAX_VALID)
                        vd_wire_put32(out + ttl_at, 0);
        }
        if (fits && total == an)
                end_an = len;
        if (fits && total == (size_t)an + ns)
                end_ns = len;

        /* Octets after the last counted record belong to no record: the message is malformed
         * (as a query would be), and a pointer in opaque rdata could lead into them. */
        if (pos != answer_len)
                return 0;

        unsigned rcode = (ext_rcode << 4) | (up_flags & 0x0Fu);
        if (rcode > 0xFFu || (ext_rcode != 0 && !qi->has_edns))
                return 0; /* not expressible to this client */
        /* AA off (we are a recursive service), RD and CD as the client sent them, AD only
         * for a client that asked for it with DO or AD (RFC 6840 §5.8). */
        bool wants_ad = qi->edns_do || (qi->flags & VD_FLAG_AD);
        uint16_t flags =
            (uint16_t)((up_flags & ~(VD_FLAG_AA | VD_FLAG_AD | VD_FLAG_RD | VD_FLAG_CD | 0x0Fu)) |
                       (wants_ad ? (up_flags & VD_FLAG_AD) : 0) |
                       (qi->flags & (VD_FLAG_RD | VD_FLAG_CD)) | VD_FLAG_RA | (rcode & 0x0Fu));
        /* Everything, or without the additional section (our OPT stays), or (for an answer
         * that has records in its answer section) without the authority section too; TC only
         * when the answer section itself does not fit (RFC 2181 §9). A negative answer's SOA
         * is part of what it says (RFC 2308 §5), so its authority section is not dropped, nor
         * is the wildcard proof a DO client needs to validate (RFC 4035 §3.1.1: TC instead). */
        struct cut {
                size_t len;
                uint16_t ns, ar;
        } cuts[3];
        size_t n_cuts = 0;
        if (fits)
                cuts[n_cuts++] = (struct cut){len, ns, (uint16_t)(ar - removed)};
        if (end_ns != SIZE_MAX && (ar > removed || !fits))
                cuts[n_cuts++] = (struct cut){end_ns, ns, 0};
        if (end_an != SIZE_MAX && an > 0 && ns > 0 && !(qi->edns_do && ns_proof))
                cuts[n_cuts++] = (struct cut){end_an, 0, 0};
        for (size_t t = 0; t < n_cuts; t++) {
                vd_wire_put16(out, qi->id);
                vd_wire_put16(out + 2, flags);
                vd_wire_put16(out + 4, 1);
                vd_wire_put16(out + 6, an);
                vd_wire_put16(out + 8, cuts[t].ns);
                vd_wire_put16(out + 10, cuts[t].ar);
                memcpy(out + VD_HEADER_LEN, qi->qname, qi->qname_len);
                vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len, qi->qtype);
                vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len + 2, qi->qclass);
                size_t with_opt = vd_wire_add_opt(qi, (uint8_t)rcode, out, cuts[t].len, limit);
                if (with_opt > 0)
                        return with_opt;
        }
        return relay_truncated(qi, flags, (uint8_t)rcode, out, limit);
}

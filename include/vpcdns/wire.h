/* wire.h — the one bounds-checked reader and writer of DNS messages (RFC 1035, 6891).
 * Every byte from a client or an upstream is parsed here, never by hand elsewhere.
 * Nothing here allocates, formats text or keeps state between calls: safe on the hot path
 * and from any thread. Names in "lower" form are uncompressed wire names, ASCII lower-cased. */
#ifndef VPCDNS_WIRE_H
#define VPCDNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/common.h"

/* Header flag bits in the second 16-bit word */
#define VD_FLAG_QR 0x8000u
#define VD_FLAG_AA 0x0400u
#define VD_FLAG_TC 0x0200u
#define VD_FLAG_RD 0x0100u
#define VD_FLAG_RA 0x0080u
#define VD_FLAG_AD 0x0020u
#define VD_FLAG_CD 0x0010u
#define VD_OPCODE(flags) (((flags) >> 11) & 0xFu)
#define VD_EDNS_DO 0x8000u

/* What the parser decided about a client message. */
typedef enum vd_parse_status {
        VD_PARSE_OK = 0,
        VD_PARSE_DROP,    /* no reply at all: too short for a header, or QR=1 */
        VD_PARSE_FORMERR, /* reply FORMERR (question echoed when question_ok) */
        VD_PARSE_NOTIMP,  /* opcode other than QUERY */
        VD_PARSE_BADVERS, /* EDNS version > 0 */
} vd_parse_status;

/* A parsed client query. Borrowed pointers point into the packet given to the parser and
 * are valid only as long as that packet; copy what must outlive it. */
/* Octets a buffer holds after a name that name hashing may read (and ignores). */
#define VD_NAME_PAD 8

typedef struct vd_query_info {
        uint16_t id;
        uint16_t flags; /* the client's header flag word as sent */
        uint16_t qdcount;
        bool question_ok;     /* qname/qtype/qclass below are valid */
        const uint8_t *qname; /* as sent (client's letter case), inside the packet */
        uint8_t qname_len;    /* octets including the root label */
        /* lower-cased; VD_NAME_PAD octets of room after the longest name: hashes read
         * names a word at a time */
        uint8_t qname_lower[VD_NAME_MAX + VD_NAME_PAD];
        uint8_t labels;         /* label count, root excluded */
        uint8_t label_off[128]; /* offset of each label in qname, [labels] = root */
        uint16_t qtype;
        uint16_t qclass;
        size_t question_end; /* offset just past the question in the packet */
        bool has_edns;
        uint8_t edns_version;
        bool edns_do;
        uint16_t edns_udp_size; /* as the client sent it */
} vd_query_info;

/* Parses a client query. On VD_PARSE_OK every field is valid. For FORMERR, NOTIMP and
 * BADVERS, id/flags are valid and question_ok says whether the question can be echoed. */
vd_parse_status vd_wire_parse_query(const uint8_t *pkt, size_t len, vd_query_info *qi);

/* The largest UDP answer this client accepts: 512 without EDNS, else its payload size
 * clamped to [512, VD_UDP_PAYLOAD]. */
size_t vd_wire_client_udp_max(const vd_query_info *qi);

/* Starts a response in out: header (client ID, QR, opcode and RD echoed, RA set, rcode),
 * and the question exactly as sent when qi->question_ok. Counts other than QDCOUNT are 0.
 * Returns the bytes written, or 0 when cap is too small. */
size_t vd_wire_begin_response(const vd_query_info *qi, uint8_t rcode, uint8_t *out, size_t cap);

/* Appends our OPT record (payload VD_UDP_PAYLOAD, the client's DO bit, extended rcode bits
 * from rcode >= 16) when the client sent EDNS, and increments ARCOUNT. Returns the new
 * length, or 0 when it does not fit. A client without EDNS gets no OPT: len is returned. */
size_t vd_wire_add_opt(const vd_query_info *qi, uint8_t rcode, uint8_t *out, size_t len,
                       size_t cap);

/* A complete error/empty response: begin_response + add_opt. Returns length, 0 on no room. */
size_t vd_wire_error_response(const vd_query_info *qi, uint8_t rcode, uint8_t *out, size_t cap);

/* Header field accessors for a buffer of at least 12 bytes. */
static inline uint16_t vd_wire_get16(const uint8_t *p)
{
        return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t vd_wire_get32(const uint8_t *p)
{
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void vd_wire_put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}
static inline void vd_wire_put32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

/* Reads a possibly compressed name at *pos in msg[0..len): expands it into out (lower-cased
 * when lower is true), stores its length in *out_len and advances *pos past the name as it
 * stands in the message. Pointers must point backwards and are followed a bounded number of
 * times; labels > 63 and names > 255 octets fail. Returns 0 or -EBADMSG. */
int vd_wire_read_name(const uint8_t *msg, size_t len, size_t *pos, uint8_t *out, size_t *out_len,
                      bool lower);

/* Skips one resource record at *pos (owner name, fixed part, rdata). On success stores the
 * type, the offset of the fixed part (type field) and advances *pos. Returns 0 or -EBADMSG. */
int vd_wire_skip_rr(const uint8_t *msg, size_t len, size_t *pos, uint16_t *type, size_t *fixed_off);

/* Whether rdata of this type may hold compressed names (RFC 1035 §3.3 and the later types
 * RFC 3597 §4 keeps compressible); if so, the octets before the first name and the number of
 * names. For NAPTR the prefix is only the fixed 4 octets: three character strings follow
 * before its name, and the caller skips them. Every other type's rdata is opaque. */
bool vd_wire_rdata_names(uint16_t type, size_t *prefix, size_t *names);

/* Name helpers for loaders (not for the hot path). */

/* Presentation text ("Sqs.us-east-1.amazonaws.com" with or without the final dot, "*.x.y",
 * "." for the root) → lower-cased uncompressed wire name. Accepts letters, digits, '-', '_'
 * and '*'; rejects empty labels, labels > 63, names > 255. Returns 0 or -EINVAL. */
int vd_name_from_text(const char *text, uint8_t *out, size_t *out_len);

/* Wire name → presentation text with a final dot ("." for root); escapes unusual bytes as
 * \DDD. Always NUL-terminates; returns 0 or -ENOSPC. */
int vd_name_to_text(const uint8_t *name, char *out, size_t cap);

/* Octets of an uncompressed wire name (root label included), or 0 when malformed. */
size_t vd_name_len(const uint8_t *name, size_t max);

/* ASCII lower-cases n octets of a wire name in place (label lengths are < 0x40, so safe). */
void vd_name_lower(uint8_t *name, size_t n);

#endif

/* wire.c — the bounds-checked DNS message reader and writer (RFC 1035, 6891).
 * Every length, count and compression pointer that arrives from the network is checked
 * here before anything else looks at it. No allocation, no formatting, no state. */
#include <errno.h>
#include <string.h>

#include "vpcdns/wire.h"

#define MAX_POINTER_HOPS 64

static inline uint8_t lower_octet(uint8_t c)
{
        return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* Upper-case ASCII letters of eight octets at once: a byte is one when it is in 'A'..'Z',
 * which adding 0x3F to its low seven bits carries into bit 7 and adding 0x25 does not. */
static inline uint64_t lower_word(uint64_t x)
{
        const uint64_t low7 = 0x7F7F7F7F7F7F7F7Full, high = 0x8080808080808080ull;
        uint64_t at_least_a = (x & low7) + 0x3F3F3F3F3F3F3F3Full;
        uint64_t above_z = (x & low7) + 0x2525252525252525ull;
        uint64_t upper = (at_least_a ^ above_z) & ~x & high;
        return x | (upper >> 2);
}

/* dst = src lower-cased, n octets (a query name: on the path of every query). The octets
 * after the last whole word are done as the word that ends at n, which overlaps octets
 * already written with the same values. */
static void lower_copy(uint8_t *dst, const uint8_t *src, size_t n)
{
        size_t i = 0;
        uint64_t w;
        if (n < 8) {
                for (; i < n; i++)
                        dst[i] = lower_octet(src[i]);
                return;
        }
        for (; i + 8 <= n; i += 8) {
                memcpy(&w, src + i, 8);
                w = lower_word(w);
                memcpy(dst + i, &w, 8);
        }
        if (i < n) {
                memcpy(&w, src + n - 8, 8);
                w = lower_word(w);
                memcpy(dst + n - 8, &w, 8);
        }
}

void vd_name_lower(uint8_t *name, size_t n)
{
        for (size_t i = 0; i < n; i++)
                name[i] = lower_octet(name[i]);
}

int vd_wire_read_name(const uint8_t *msg, size_t len, size_t *pos, uint8_t *out, size_t *out_len,
                      bool lower)
{
        size_t p = *pos;
        size_t n = 0;
        size_t end = 0;
        size_t bound = len; /* after a jump, only the octets before that pointer */
        bool jumped = false;
        int hops = 0;

        for (;;) {
                if (p >= bound)
                        return -EBADMSG;
                uint8_t c = msg[p];
                if (c == 0) {
                        out[n++] = 0;
                        if (!jumped)
                                end = p + 1;
                        break;
                }
                if ((c & 0xC0) == 0xC0) {
                        if (p + 1 >= bound)
                                return -EBADMSG;
                        size_t target = ((size_t)(c & 0x3F) << 8) | msg[p + 1];
                        /* Only backwards, never into the header, a bounded number of times;
                         * and the name then continues only in octets before this pointer, so
                         * it cannot run into what follows (a record a relay removes, trailing
                         * bytes it drops). Each jump shrinks the bound: the walk ends. */
                        if (target >= p || target < VD_HEADER_LEN || ++hops > MAX_POINTER_HOPS)
                                return -EBADMSG;
                        if (!jumped) {
                                end = p + 2;
                                jumped = true;
                        }
                        bound = p;
                        p = target;
                        continue;
                }
                if (c > VD_LABEL_MAX) /* 0x40 and 0x80: obsolete extended label types */
                        return -EBADMSG;
                if (n + 1 + c + 1 > VD_NAME_MAX || p + 1 + c >= bound)
                        return -EBADMSG;
                out[n++] = c;
                if (lower) {
                        for (size_t i = 0; i < c; i++)
                                out[n + i] = lower_octet(msg[p + 1 + i]);
                } else {
                        memcpy(out + n, msg + p + 1, c);
                }
                n += c;
                p += 1 + (size_t)c;
        }
        *out_len = n;
        *pos = end;
        return 0;
}

int vd_wire_skip_rr(const uint8_t *msg, size_t len, size_t *pos, uint16_t *type, size_t *fixed_off)
{
        uint8_t scratch[VD_NAME_MAX];
        size_t name_len;
        size_t p = *pos;

        if (vd_wire_read_name(msg, len, &p, scratch, &name_len, false) != 0)
                return -EBADMSG;
        if (p + 10 > len)
                return -EBADMSG;
        uint16_t rdlen = vd_wire_get16(msg + p + 8);
        if (p + 10 + rdlen > len)
                return -EBADMSG;
        if (type != NULL)
                *type = vd_wire_get16(msg + p);
        if (fixed_off != NULL)
                *fixed_off = p;
        *pos = p + 10 + rdlen;
        return 0;
}

/* Parses the question's name, which must not be compressed: a pointer in the first name of a
 * message could only point into the header. */
static bool parse_question(const uint8_t *pkt, size_t len, vd_query_info *qi)
{
        size_t p = VD_HEADER_LEN;
        size_t n = 0;
        uint8_t labels = 0;

        for (;;) {
                if (p >= len)
                        return false;
                uint8_t c = pkt[p];
                if (c == 0)
                        break;
                if (c > VD_LABEL_MAX || n + 1 + c + 1 > VD_NAME_MAX || p + 1 + c > len)
                        return false;
                qi->label_off[labels++] = (uint8_t)n;
                n += 1 + (size_t)c;
                p += 1 + (size_t)c;
        }
        /* Length octets (1..63) are never letters: the whole name is lower-cased at once. */
        lower_copy(qi->qname_lower, pkt + VD_HEADER_LEN, n);
        qi->qname_lower[n] = 0;
        qi->label_off[labels] = (uint8_t)n;
        n++;
        p++;
        if (p + 4 > len)
                return false;
        qi->qname = pkt + VD_HEADER_LEN;
        qi->qname_len = (uint8_t)n;
        qi->labels = labels;
        qi->qtype = vd_wire_get16(pkt + p);
        qi->qclass = vd_wire_get16(pkt + p + 2);
        qi->question_end = p + 4;
        return true;
}

/* Reads the OPT record whose fixed part starts at fixed (owner already checked to be root). */
static bool parse_opt(const uint8_t *pkt, size_t fixed, vd_query_info *qi)
{
        uint16_t payload = vd_wire_get16(pkt + fixed + 2);
        uint32_t ttl = vd_wire_get32(pkt + fixed + 4);
        uint16_t rdlen = vd_wire_get16(pkt + fixed + 8);
        const uint8_t *opt = pkt + fixed + 10;

        /* Options are code(2) length(2) data: they must tile the rdata exactly. */
        size_t off = 0;
        while (off < rdlen) {
                if (off + 4 > rdlen)
                        return false;
                uint16_t optlen = vd_wire_get16(opt + off + 2);
                if (off + 4 + optlen > rdlen)
                        return false;
                off += 4 + (size_t)optlen;
        }
        qi->has_edns = true;
        qi->edns_udp_size = payload;
        qi->edns_version = (uint8_t)(ttl >> 16);
        qi->edns_do = (ttl & VD_EDNS_DO) != 0;
        return true;
}

vd_parse_status vd_wire_parse_query(const uint8_t *pkt, size_t len, vd_query_info *qi)
{
        qi->question_ok = false;
        qi->has_edns = false;
        qi->edns_version = 0;
        qi->edns_do = false;
        qi->edns_udp_size = 0;
        qi->qname = NULL;
        qi->qname_len = 0;
        qi->labels = 0;

        if (len < VD_HEADER_LEN)
                return VD_PARSE_DROP;
        qi->id = vd_wire_get16(pkt);
        qi->flags = vd_wire_get16(pkt + 2);
        qi->qdcount = vd_wire_get16(pkt + 4);
        if (qi->flags & VD_FLAG_QR)
                return VD_PARSE_DROP;

        uint16_t ancount = vd_wire_get16(pkt + 6);
        uint16_t nscount = vd_wire_get16(pkt + 8);
        uint16_t arcount = vd_wire_get16(pkt + 10);
        bool opcode_ok = VD_OPCODE(qi->flags) == 0;

        if (qi->qdcount != 1)
                return opcode_ok ? VD_PARSE_FORMERR : VD_PARSE_NOTIMP;
        if (!parse_question(pkt, len, qi))
                return opcode_ok ? VD_PARSE_FORMERR : VD_PARSE_NOTIMP;
        qi->question_ok = true;
        if (!opcode_ok)
                return VD_PARSE_NOTIMP;

        size_t p = qi->question_end;
        uint32_t records = (uint32_t)ancount + nscount + arcount;
        for (uint32_t i = 0; i < records; i++) {
                size_t start = p;
                size_t fixed;
                uint16_t type;
                if (vd_wire_skip_rr(pkt, len, &p, &type, &fixed) != 0)
                        return VD_PARSE_FORMERR;
                if (type != VD_TYPE_OPT)
                        continue;
                /* One OPT, in the additional section, owned by the root (RFC 6891 §6.1.1). */
                bool in_additional = i >= (uint32_t)ancount + nscount;
                if (!in_additional || qi->has_edns || fixed != start + 1 || pkt[start] != 0)
                        return VD_PARSE_FORMERR;
                if (!parse_opt(pkt, fixed, qi))
                        return VD_PARSE_FORMERR;
        }
        if (p != len) /* trailing bytes after the last counted record */
                return VD_PARSE_FORMERR;
        if (qi->has_edns && qi->edns_version > 0)
                return VD_PARSE_BADVERS;
        return VD_PARSE_OK;
}

size_t vd_wire_client_udp_max(const vd_query_info *qi)
{
        if (!qi->has_edns || qi->edns_udp_size <= VD_UDP_MIN)
                return VD_UDP_MIN;
        return qi->edns_udp_size < VD_UDP_PAYLOAD ? qi->edns_udp_size : VD_UDP_PAYLOAD;
}

size_t vd_wire_begin_response(const vd_query_info *qi, uint8_t rcode, uint8_t *out, size_t cap)
{
        size_t need = VD_HEADER_LEN + (qi->question_ok ? (size_t)qi->qname_len + 4 : 0);
        if (cap < need)
                return 0;
        /* Echo opcode, RD and CD; we are a recursive service: RA set, AA clear. */
        uint16_t flags = (uint16_t)(VD_FLAG_QR | (qi->flags & (0x7800u | VD_FLAG_RD | VD_FLAG_CD)) |
                                    VD_FLAG_RA | (rcode & 0x0Fu));
        vd_wire_put16(out, qi->id);
        vd_wire_put16(out + 2, flags);
        vd_wire_put16(out + 4, qi->question_ok ? 1 : 0);
        memset(out + 6, 0, 6);
        if (qi->question_ok) {
                memcpy(out + VD_HEADER_LEN, qi->qname, qi->qname_len);
                vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len, qi->qtype);
                vd_wire_put16(out + VD_HEADER_LEN + qi->qname_len + 2, qi->qclass);
        }
        return need;
}

size_t vd_wire_add_opt(const vd_query_info *qi, uint8_t rcode, uint8_t *out, size_t len, size_t cap)
{
        if (!qi->has_edns)
                return len;
        if (len < VD_HEADER_LEN || cap < len + 11)
                return 0;
        uint8_t *o = out + len;
        o[0] = 0; /* root owner */
        vd_wire_put16(o + 1, VD_TYPE_OPT);
        vd_wire_put16(o + 3, VD_UDP_PAYLOAD);
        uint32_t ttl = ((uint32_t)(rcode >> 4) << 24) | (qi->edns_do ? VD_EDNS_DO : 0);
        vd_wire_put32(o + 5, ttl);
        vd_wire_put16(o + 9, 0);
        vd_wire_put16(out + 10, (uint16_t)(vd_wire_get16(out + 10) + 1));
        return len + 11;
}

size_t vd_wire_error_response(const vd_query_info *qi, uint8_t rcode, uint8_t *out, size_t cap)
{
        size_t len = vd_wire_begin_response(qi, rcode, out, cap);
        if (len == 0)
                return 0;
        return vd_wire_add_opt(qi, rcode, out, len, cap);
}

static bool text_octet_ok(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '*';
}

int vd_name_from_text(const char *text, uint8_t *out, size_t *out_len)
{
        size_t n = 0;
        const char *p = text;

        if (text == NULL || *text == '\0')
                return -EINVAL;
        if (strcmp(text, ".") == 0) {
                out[0] = 0;
                *out_len = 1;
                return 0;
        }
        while (*p != '\0') {
                const char *dot = strchr(p, '.');
                size_t lab = dot ? (size_t)(dot - p) : strlen(p);
                if (lab == 0 || lab > VD_LABEL_MAX || n + 1 + lab + 1 > VD_NAME_MAX)
                        return -EINVAL;
                for (size_t i = 0; i < lab; i++) {
                        if (!text_octet_ok(p[i]))
                                return -EINVAL;
                        /* '*' is only a whole label (a wildcard), and only the first. */
                        if (p[i] == '*' && (lab != 1 || n != 0))
                                return -EINVAL;
                }
                out[n] = (uint8_t)lab;
                for (size_t i = 0; i < lab; i++)
                        out[n + 1 + i] = lower_octet((uint8_t)p[i]);
                n += 1 + lab;
                if (dot == NULL)
                        break;
                p = dot + 1;
        }
        out[n++] = 0;
        *out_len = n;
        return 0;
}

int vd_name_to_text(const uint8_t *name, char *out, size_t cap)
{
        size_t o = 0;
        size_t p = 0;

        if (cap == 0)
                return -ENOSPC;
        if (name[0] == 0) {
                if (cap < 2)
                        return -ENOSPC;
                out[0] = '.';
                out[1] = '\0';
                return 0;
        }
        while (name[p] != 0) {
                uint8_t lab = name[p];
                if (lab > VD_LABEL_MAX || p + 1 + lab >= VD_NAME_MAX)
                        goto bad;
                for (size_t i = 1; i <= lab; i++) {
                        uint8_t c = name[p + i];
                        if (text_octet_ok((char)c)) {
                                if (o + 1 >= cap)
                                        goto bad;
                                out[o++] = (char)c;
                        } else {
                                if (o + 4 >= cap)
                                        goto bad;
                                out[o++] = '\\';
                                out[o++] = (char)('0' + c / 100);
                                out[o++] = (char)('0' + (c / 10) % 10);
                                out[o++] = (char)('0' + c % 10);
                        }
                }
                if (o + 1 >= cap)
                        goto bad;
                out[o++] = '.';
                p += 1 + lab;
        }
        out[o] = '\0';
        return 0;
bad:
        out[cap - 1] = '\0';
        return -ENOSPC;
}

size_t vd_name_len(const uint8_t *name, size_t max)
{
        size_t p = 0;
        if (max > VD_NAME_MAX)
                max = VD_NAME_MAX;
        while (p < max) {
                uint8_t lab = name[p];
                if (lab == 0)
                        return p + 1;
                if (lab > VD_LABEL_MAX)
                        return 0;
                p += 1 + (size_t)lab;
        }
        return 0;
}

bool vd_wire_rdata_names(uint16_t type, size_t *prefix, size_t *names)
{
        *prefix = 0;
        *names = 1;
        switch (type) {
        case 2:  /* NS */
        case 3:  /* MD */
        case 4:  /* MF */
        case 5:  /* CNAME */
        case 7:  /* MB */
        case 8:  /* MG */
        case 9:  /* MR */
        case 12: /* PTR */
        case 39: /* DNAME */
                return true;
        case 6:  /* SOA */
        case 14: /* MINFO */
        case 17: /* RP */
                *names = 2;
                return true;
        case 15: /* MX */
        case 18: /* AFSDB */
        case 21: /* RT */
        case 36: /* KX */
                *prefix = 2;
                return true;
        case 26: /* PX */
                *prefix = 2;
                *names = 2;
                return true;
        case 33: /* SRV */
                *prefix = 6;
                return true;
        case 35: /* NAPTR: order, preference, then three strings (computed by the caller) */
                *prefix = 4;
                *names = 1;
                return true;
        default:
                return false;
        }
}

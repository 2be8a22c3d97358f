/* qlog_route53.c — owns the text of one route53 query log line (qlog.h): reads the response's
 * wire form itself (question, rcode, answer records, names decompressed with a bounded number
 * of jumps) and writes the JSON object by hand into the caller's buffer. Measured: cJSON and
 * ldns took about 11 µs of the writer thread per line, this about 1 µs. Must not allocate or
 * do I/O; any byte string, however malformed, gives either a line or 0. */
#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <string.h>

#include "vpcdns/qlog.h"

#define HEADER 12
#define MAX_JUMPS 64

typedef struct out {
        char *p;
        size_t cap, len;
        bool over;
} out;

static void put(out *o, const char *s, size_t n)
{
        if (o->over || o->cap - o->len < n) {
                o->over = true;
                return;
        }
        memcpy(o->p + o->len, s, n);
        o->len += n;
}

static void puts_(out *o, const char *s)
{
        put(o, s, strlen(s));
}

/* A JSON string's content: presentation text never holds control characters (they are
 * \DDD), so only the backslash and the quote need escaping. */
static void put_json_text(out *o, const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' || s[i] == '"')
                        put(o, "\\", 1);
                put(o, &s[i], 1);
        }
}

static void put_field(out *o, const char *name, const char *value)
{
        puts_(o, ",\"");
        puts_(o, name);
        puts_(o, "\":\"");
        put_json_text(o, value, strlen(value));
        puts_(o, "\"");
}

/* One byte of a label (in_name) or of a quoted character-string in presentation form. */
static size_t present_byte(uint8_t c, bool in_name, char buf[5])
{
        if (c == ' ' && !in_name) {
                buf[0] = ' ';
                return 1;
        }
        if (c < 0x21 || c > 0x7e)
                return (size_t)snprintf(buf, 5, "\\%03u", c);
        if (c == '\\' || c == '"' ||
            (in_name && (c == '.' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$'))) {
                buf[0] = '\\';
                buf[1] = (char)c;
                return 2;
        }
        buf[0] = (char)c;
        return 1;
}

/* The name at *pos of msg in presentation form with its final dot; *pos moves past it (not
 * past what a pointer points to). False when malformed. */
static bool read_name(const uint8_t *msg, size_t len, size_t *pos, char *text, size_t cap)
{
        size_t at = *pos, used = 0, jumps = 0, total = 0;
        bool jumped = false;
        for (;;) {
                if (at >= len)
                        return false;
                uint8_t l = msg[at];
                if ((l & 0xC0) == 0xC0) {
                        if (at + 1 >= len || ++jumps > MAX_JUMPS)
                                return false;
                        if (!jumped)
                                *pos = at + 2;
                        jumped = true;
                        at = (size_t)(l & 0x3F) << 8 | msg[at + 1];
                        continue;
                }
                if (l & 0xC0)
                        return false;
                if (l == 0) {
                        if (!jumped)
                                *pos = at + 1;
                        break;
                }
                if (at + 1 + l > len || (total += l + 1u) > 255)
                        return false;
                for (size_t i = 0; i < l; i++) {
                        char b[5];
                        size_t n = present_byte(msg[at + 1 + i], true, b);
                        if (used + n + 2 > cap)
                                return false;
                        memcpy(text + used, b, n);
                        used += n;
                }
                text[used++] = '.';
                at += 1 + l;
        }
        if (used == 0)
                text[used++] = '.';
        text[used] = '\0';
        return true;
}

static uint16_t get16(const uint8_t *p)
{
        return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void type_text(uint16_t type, char *buf, size_t cap)
{
        const ldns_rr_descriptor *d = ldns_rr_descript(type);
        if (d != NULL && d->_name != NULL && d->_type == type)
                snprintf(buf, cap, "%s", d->_name);
        else
                snprintf(buf, cap, "TYPE%u", type);
}

static void class_text(uint16_t cls, char *buf, size_t cap)
{
        switch (cls) {
        case 1:
                snprintf(buf, cap, "IN");
                break;
        case 3:
                snprintf(buf, cap, "CH");
                break;
        case 4:
                snprintf(buf, cap, "HS");
                break;
        case 254:
                snprintf(buf, cap, "NONE");
                break;
        case 255:
                snprintf(buf, cap, "ANY");
                break;
        default:
                snprintf(buf, cap, "CLASS%u", cls);
        }
}

static const char *rcode_text(unsigned rcode)
{
        static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                            "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                            "NXRRSET", "NOTAUTH", "NOTZONE"};
        return rcode < sizeof(names) / sizeof(names[0]) ? names[rcode] : NULL;
}

/* RFC 3597's generic form, for types without a form here. */
static void rdata_generic(out *o, const uint8_t *rd, size_t n)
{
        char b[32];
        snprintf(b, sizeof(b), "\\\\# %zu", n);
        puts_(o, b);
        if (n > 0)
                puts_(o, " ");
        for (size_t i = 0; i < n; i++) {
                snprintf(b, sizeof(b), "%02x", rd[i]);
                put(o, b, 2);
        }
}

/* The record data of one answer in presentation form (inside a JSON string). */
static void rdata_text(out *o, const uint8_t *msg, size_t len, uint16_t type, size_t at, size_t n)
{
        const uint8_t *rd = msg + at;
        char name[1100], b[INET6_ADDRSTRLEN + 8];
        size_t pos = at;
        switch (type) {
        case LDNS_RR_TYPE_A:
                if (n == 4 && inet_ntop(AF_INET, rd, b, sizeof(b)) != NULL)
                        return puts_(o, b);
                break;
        case LDNS_RR_TYPE_AAAA:
                if (n == 16 && inet_ntop(AF_INET6, rd, b, sizeof(b)) != NULL)
                        return puts_(o, b);
                break;
        case LDNS_RR_TYPE_CNAME:
        case LDNS_RR_TYPE_NS:
        case LDNS_RR_TYPE_PTR:
        case LDNS_RR_TYPE_DNAME:
                if (read_name(msg, len, &pos, name, sizeof(name)) && pos == at + n)
                        return put_json_text(o, name, strlen(name));
                break;
        case LDNS_RR_TYPE_MX:
                pos += 2;
                if (n > 2 && read_name(msg, len, &pos, name, sizeof(name)) && pos == at + n) {
                        snprintf(b, sizeof(b), "%u ", get16(rd));
                        puts_(o, b);
                        return put_json_text(o, name, strlen(name));
                }
                break;
        case LDNS_RR_TYPE_SRV:
                pos += 6;
                if (n > 6 && read_name(msg, len, &pos, name, sizeof(name)) && pos == at + n) {
                        snprintf(b, sizeof(b), "%u %u %u ", get16(rd), get16(rd + 2),
                                 get16(rd + 4));
                        puts_(o, b);
                        return put_json_text(o, name, strlen(name));
                }
                break;
        case LDNS_RR_TYPE_SOA: {
                char rname[1100];
                if (read_name(msg, len, &pos, name, sizeof(name)) &&
                    read_name(msg, len, &pos, rname, sizeof(rname)) && pos + 20 == at + n) {
                        put_json_text(o, name, strlen(name));
                        puts_(o, " ");
                        put_json_text(o, rname, strlen(rname));
                        char nums[64];
                        const uint8_t *p = msg + pos;
                        snprintf(nums, sizeof(nums), " %u %u %u %u %u", get32(p), get32(p + 4),
                                 get32(p + 8), get32(p + 12), get32(p + 16));
                        return puts_(o, nums);
                }
                break;
        }
        case LDNS_RR_TYPE_TXT: {
                size_t i = 0;
                while (i < n && i + 1 + rd[i] <= n)
                        i += 1 + rd[i];
                if (i != n || n == 0)
                        break;
                for (i = 0; i < n; i += 1 + rd[i]) {
                        puts_(o, i > 0 ? " \\\"" : "\\\"");
                        for (size_t k = 0; k < rd[i]; k++) {
                                char c[5];
                                size_t cn = present_byte(rd[i + 1 + k], false, c);
                                put_json_text(o, c, cn);
                        }
                        puts_(o, "\\\"");
                }
                return;
        }
        default:
                break;
        }
        rdata_generic(o, rd, n);
}

/* The answer section as the JSON list of {"Rdata", "Type", "Class"}; what cannot be read
 * ends the list. pos is just past the question. */
static void answers(out *o, const uint8_t *msg, size_t len, size_t pos, unsigned ancount)
{
        puts_(o, ",\"answers\":[");
        char name[1100], type[24], cls[24];
        for (unsigned i = 0; i < ancount; i++) {
                if (!read_name(msg, len, &pos, name, sizeof(name)) || pos + 10 > len)
                        break;
                uint16_t t = get16(msg + pos), c = get16(msg + pos + 2);
                size_t n = get16(msg + pos + 8);
                pos += 10;
                if (pos + n > len)
                        break;
                type_text(t, type, sizeof(type));
                class_text(c, cls, sizeof(cls));
                puts_(o, i > 0 ? ",{\"Rdata\":\"" : "{\"Rdata\":\"");
                rdata_text(o, msg, len, t, pos, n);
                puts_(o, "\",\"Type\":\"");
                puts_(o, type);
                puts_(o, "\",\"Class\":\"");
                puts_(o, cls);
                puts_(o, "\"}");
                pos += n;
        }
        puts_(o, "]");
}

size_t vd_qlog_route53_format(const uint8_t *msg, size_t len, const vd_qlog_route53_meta *m,
                              char *buf, size_t cap)
{
        out o = {.p = buf, .cap = cap};
        char name[1100] = "", type[24] = "", cls[24] = "", rcode[16] = "";
        size_t pos = HEADER;
        unsigned qdcount = len >= HEADER ? get16(msg + 4) : 0;
        unsigned ancount = len >= HEADER ? get16(msg + 6) : 0;
        bool question =
            qdcount > 0 && read_name(msg, len, &pos, name, sizeof(name)) && pos + 4 <= len;
        if (question) {
                type_text(get16(msg + pos), type, sizeof(type));
                class_text(get16(msg + pos + 2), cls, sizeof(cls));
                pos += 4;
        } else {
                name[0] = '\0';
        }
        if (len >= 4) {
                const char *r = rcode_text(msg[3] & 0xF);
                if (r != NULL)
                        snprintf(rcode, sizeof(rcode), "%s", r);
                else
                        snprintf(rcode, sizeof(rcode), "RCODE%u", msg[3] & 0xF);
        }
        puts_(&o, "{\"version\":\"1.100000\"");
        put_field(&o, "account_id", m->account_id);
        put_field(&o, "region", m->region);
        put_field(&o, "vpc_id", m->vpc_id);
        put_field(&o, "query_timestamp", m->timestamp);
        put_field(&o, "query_name", name);
        put_field(&o, "query_type", type);
        put_field(&o, "query_class", cls);
        put_field(&o, "rcode", rcode);
        if (question && qdcount == 1)
                answers(&o, msg, len, pos, ancount);
        else
                puts_(&o, ",\"answers\":[]");
        put_field(&o, "srcaddr", m->srcaddr);
        char port[8];
        snprintf(port, sizeof(port), "%u", m->srcport);
        put_field(&o, "srcport", port);
        put_field(&o, "transport", m->tcp ? "TCP" : "UDP");
        puts_(&o, ",\"srcids\":{\"resolver_endpoint\":\"");
        put_json_text(&o, m->endpoint, strlen(m->endpoint));
        puts_(&o, "\"}}\n");
        return o.over ? 0 : o.len;
}

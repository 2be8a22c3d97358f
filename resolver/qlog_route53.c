/* qlog_route53.c — owns the text of one route53 query log line (qlog.h): reads the response's
 * wire form itself (question, rcode, answer records, names decompressed with a bounded number
 * of jumps) and writes the JSON object by hand into the caller's buffer, escaping the two
 * characters presentation text can hold that JSON needs escaped. A JSON library was measured
 * and lost by a wide margin on the writer thread: cJSON with ldns about 11 µs per line (a tree
 * and a packet object per line), yajl's streaming generator about 15,000 instructions per line
 * under callgrind in its escaping alone, against about 3,000 for this whole line. No printf
 * either (a sprintf per number cost more than the rest of the line). What a JSON library
 * would guarantee, a well-formed line whatever the bytes, test_qlog_route53.c checks with one:
 * cJSON reads back every byte value in a name and random answers of every type. Must not
 * allocate or do I/O; any byte string, however malformed, gives either a line or 0. */
#include <arpa/inet.h>
#include <ldns/ldns.h>
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

size_t vd_qlog_uint_text(unsigned v, char *b)
{
        char t[10];
        size_t n = 0;
        do {
                t[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v > 0);
        for (size_t i = 0; i < n; i++)
                b[i] = t[n - 1 - i];
        b[n] = '\0';
        return n;
}

static void put_uint(out *o, unsigned v)
{
        char b[11];
        put(o, b, vd_qlog_uint_text(v, b));
}

void vd_qlog_ip_text(int family, const void *addr, char *text)
{
        if (family == AF_INET) {
                const uint8_t *a = addr;
                size_t n = 0;
                for (int i = 0; i < 4; i++) {
                        if (i > 0)
                                text[n++] = '.';
                        n += vd_qlog_uint_text(a[i], text + n);
                }
                return;
        }
        if (inet_ntop(AF_INET6, addr, text, INET6_ADDRSTRLEN) == NULL)
                memcpy(text, "?", 2);
}

/* A JSON string's content: presentation text never holds control characters (they are
 * \DDD), so only the backslash and the quote need escaping. */
static void put_json_text(out *o, const char *s, size_t n)
{
        size_t from = 0; /* copied in runs: most text has nothing to escape */
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' || s[i] == '"') {
                        put(o, s + from, i - from);
                        put(o, "\\", 1);
                        from = i;
                }
        }
        put(o, s + from, n - from);
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
        if (c < 0x21 || c > 0x7e) {
                buf[0] = '\\';
                buf[1] = (char)('0' + c / 100);
                buf[2] = (char)('0' + c / 10 % 10);
                buf[3] = (char)('0' + c % 10);
                return 4;
        }
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
                if (used + 4u * l + 2 > cap)
                        return false;
                for (size_t i = 0; i < l; i++) {
                        uint8_t c = msg[at + 1 + i];
                        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            (c >= 'A' && c <= 'Z')) {
                                text[used++] = (char)c; /* the common case, as it is */
                                continue;
                        }
                        used += present_byte(c, true, text + used);
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

/* The type's mnemonic, or TYPEnnn in b. */
static const char *type_text(uint16_t type, char b[16])
{
        const ldns_rr_descriptor *d = ldns_rr_descript(type);
        if (d != NULL && d->_name != NULL && d->_type == type)
                return d->_name;
        memcpy(b, "TYPE", 4);
        vd_qlog_uint_text(type, b + 4);
        return b;
}

static const char *class_text(uint16_t cls, char b[16])
{
        switch (cls) {
        case 1:
                return "IN";
        case 3:
                return "CH";
        case 4:
                return "HS";
        case 254:
                return "NONE";
        case 255:
                return "ANY";
        default:
                memcpy(b, "CLASS", 5);
                vd_qlog_uint_text(cls, b + 5);
                return b;
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
        static const char hex[] = "0123456789abcdef";
        puts_(o, "\\\\# ");
        put_uint(o, (unsigned)n);
        if (n > 0)
                puts_(o, " ");
        for (size_t i = 0; i < n; i++) {
                char b[2] = {hex[rd[i] >> 4], hex[rd[i] & 0xF]};
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
                if (n == 4) {
                        vd_qlog_ip_text(AF_INET, rd, b);
                        return puts_(o, b);
                }
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
                        put_uint(o, get16(rd));
                        puts_(o, " ");
                        return put_json_text(o, name, strlen(name));
                }
                break;
        case LDNS_RR_TYPE_SRV:
                pos += 6;
                if (n > 6 && read_name(msg, len, &pos, name, sizeof(name)) && pos == at + n) {
                        for (size_t k = 0; k < 6; k += 2) {
                                put_uint(o, get16(rd + k));
                                puts_(o, " ");
                        }
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
                        for (size_t k = 0; k < 20; k += 4) {
                                puts_(o, " ");
                                put_uint(o, get32(msg + pos + k));
                        }
                        return;
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
        char name[1100], tb[16], cb[16];
        for (unsigned i = 0; i < ancount; i++) {
                if (!read_name(msg, len, &pos, name, sizeof(name)) || pos + 10 > len)
                        break;
                uint16_t t = get16(msg + pos), c = get16(msg + pos + 2);
                size_t n = get16(msg + pos + 8);
                pos += 10;
                if (pos + n > len)
                        break;
                const char *type = type_text(t, tb), *cls = class_text(c, cb);
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
        char name[1100] = "", tb[16], cb[16], rb[16], port[11];
        const char *type = "", *cls = "", *rcode = "";
        size_t pos = HEADER;
        unsigned qdcount = len >= HEADER ? get16(msg + 4) : 0;
        unsigned ancount = len >= HEADER ? get16(msg + 6) : 0;
        bool question =
            qdcount > 0 && read_name(msg, len, &pos, name, sizeof(name)) && pos + 4 <= len;
        if (question) {
                type = type_text(get16(msg + pos), tb);
                cls = class_text(get16(msg + pos + 2), cb);
                pos += 4;
        } else {
                name[0] = '\0';
        }
        if (len >= 4) {
                rcode = rcode_text(msg[3] & 0xF);
                if (rcode == NULL) {
                        memcpy(rb, "RCODE", 5);
                        vd_qlog_uint_text(msg[3] & 0xF, rb + 5);
                        rcode = rb;
                }
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
        vd_qlog_uint_text(m->srcport, port);
        put_field(&o, "srcport", port);
        put_field(&o, "transport", m->tcp ? "TCP" : "UDP");
        puts_(&o, ",\"srcids\":{\"resolver_endpoint\":\"");
        put_json_text(&o, m->endpoint, strlen(m->endpoint));
        puts_(&o, "\"}}\n");
        return o.over ? 0 : o.len;
}

/* dns_msg.c — the message builder of dns_msg.h. Owns nothing but the caller's buffer; checks
 * every write against its bound and never compresses on its own. */
#include <criterion/criterion.h>
#include <string.h>

#include "support/dns_msg.h"

void put8(dns_msg *m, unsigned v)
{
        cr_assert_lt(m->n, sizeof(m->b));
        m->b[m->n++] = (uint8_t)v;
}

void put16(dns_msg *m, unsigned v)
{
        put8(m, v >> 8);
        put8(m, v);
}

void put32(dns_msg *m, uint32_t v)
{
        put16(m, v >> 16);
        put16(m, v & 0xFFFF);
}

void put_name(dns_msg *m, const char *text)
{
        const char *p = text;
        while (*p != '\0') {
                const char *dot = strchr(p, '.');
                size_t l = dot ? (size_t)(dot - p) : strlen(p);
                put8(m, (unsigned)l);
                for (size_t i = 0; i < l; i++)
                        put8(m, (uint8_t)p[i]);
                p += l;
                if (*p == '.')
                        p++;
        }
        put8(m, 0);
}

void put_ptr(dns_msg *m, size_t off)
{
        put16(m, 0xC000u | (unsigned)off);
}

void header(dns_msg *m, unsigned id, unsigned flags, unsigned qd, unsigned an, unsigned ns,
            unsigned ar)
{
        m->n = 0;
        put16(m, id);
        put16(m, flags);
        put16(m, qd);
        put16(m, an);
        put16(m, ns);
        put16(m, ar);
}

void rr_tail(dns_msg *m, unsigned type, unsigned cls, uint32_t ttl, const uint8_t *rd, size_t rdlen)
{
        put16(m, type);
        put16(m, cls);
        put32(m, ttl);
        put16(m, (unsigned)rdlen);
        for (size_t i = 0; i < rdlen; i++)
                put8(m, rd[i]);
}

void opt_rr(dns_msg *m, unsigned payload, unsigned ext_rcode, bool dnssec_ok, bool option)
{
        put8(m, 0);
        put16(m, VD_TYPE_OPT);
        put16(m, payload);
        put32(m, ((uint32_t)ext_rcode << 24) | (dnssec_ok ? VD_EDNS_DO : 0));
        if (option) {
                put16(m, 12);
                put16(m, 10); /* COOKIE */
                put16(m, 8);
                for (int i = 0; i < 8; i++)
                        put8(m, 0xA0 + i);
        } else {
                put16(m, 0);
        }
}

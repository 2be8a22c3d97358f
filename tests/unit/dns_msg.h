/* dns_msg.h — the DNS message builder shared by the unit tests that hand-build wire messages
 * (test_forward.c, test_resolve.c): a bounded buffer, big-endian integers, names as spelt
 * (letter case kept, no compression unless a pointer is written), header, resource record
 * tail and OPT record. Every write is bounds-checked with a Criterion assertion. Each test file
 * is its own executable: the functions are static inline so the ones a file does not use cost
 * nothing and draw no warning. Define DNS_MSG_CAP before the include for a larger buffer. */
#ifndef VD_TEST_DNS_MSG_H
#define VD_TEST_DNS_MSG_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vpcdns/wire.h"

#ifndef DNS_MSG_CAP
#define DNS_MSG_CAP 4096
#endif

/* Flags of an ordinary upstream answer. */
#define UP_FLAGS (VD_FLAG_QR | VD_FLAG_RD | VD_FLAG_RA)

typedef struct msg {
        uint8_t b[DNS_MSG_CAP];
        size_t n;
} msg;

static inline void put8(msg *m, unsigned v)
{
        cr_assert_lt(m->n, sizeof(m->b));
        m->b[m->n++] = (uint8_t)v;
}

static inline void put16(msg *m, unsigned v)
{
        put8(m, v >> 8);
        put8(m, v);
}

static inline void put32(msg *m, uint32_t v)
{
        put16(m, v >> 16);
        put16(m, v & 0xFFFF);
}

/* "Www.Example.COM" → labels as spelt, root last. */
static inline void put_name(msg *m, const char *text)
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

/* A compression pointer to offset off. */
static inline void put_ptr(msg *m, size_t off)
{
        put16(m, 0xC000u | (unsigned)off);
}

/* Starts the message over with this header. */
static inline void header(msg *m, unsigned id, unsigned flags, unsigned qd, unsigned an,
                          unsigned ns, unsigned ar)
{
        m->n = 0;
        put16(m, id);
        put16(m, flags);
        put16(m, qd);
        put16(m, an);
        put16(m, ns);
        put16(m, ar);
}

/* Fixed part + rdata after an owner name already written. */
static inline void rr_tail(msg *m, unsigned type, unsigned cls, uint32_t ttl, const uint8_t *rd,
                           size_t rdlen)
{
        put16(m, type);
        put16(m, cls);
        put32(m, ttl);
        put16(m, (unsigned)rdlen);
        for (size_t i = 0; i < rdlen; i++)
                put8(m, rd[i]);
}

/* An OPT record: payload, extended rcode, DO, optionally one 8-octet option. */
static inline void opt_rr(msg *m, unsigned payload, unsigned ext_rcode, bool dnssec_ok, bool option)
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

#endif

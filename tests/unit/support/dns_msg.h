/* dns_msg.h — the DNS message builder of the unit tests (support library): a bounded buffer,
 * big-endian integers, names as spelt (letter case kept, no compression unless a pointer is
 * written), header, resource record tail and OPT record. Used to hand-build client queries,
 * upstream answers and hostile messages. Every write is bounds-checked with a Criterion
 * assertion, so call it from the test's own thread (or where the bound cannot be reached). */
#ifndef VD_TEST_DNS_MSG_H
#define VD_TEST_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/wire.h"

#define DNS_MSG_CAP 8192 /* room for any message the tests build */

/* Flags of an ordinary upstream answer. */
#define UP_FLAGS (VD_FLAG_QR | VD_FLAG_RD | VD_FLAG_RA)

typedef struct dns_msg {
        uint8_t b[DNS_MSG_CAP];
        size_t n;
} dns_msg;

void put8(dns_msg *m, unsigned v);
void put16(dns_msg *m, unsigned v);
void put32(dns_msg *m, uint32_t v);
/* "Www.Example.COM" → labels as spelt, root last. */
void put_name(dns_msg *m, const char *text);
/* A compression pointer to offset off. */
void put_ptr(dns_msg *m, size_t off);
/* Starts the message over with this header. */
void header(dns_msg *m, unsigned id, unsigned flags, unsigned qd, unsigned an, unsigned ns,
            unsigned ar);
/* Fixed part + rdata after an owner name already written. */
void rr_tail(dns_msg *m, unsigned type, unsigned cls, uint32_t ttl, const uint8_t *rd,
             size_t rdlen);
/* An OPT record: payload, extended rcode, DO, optionally one 8-octet option (a COOKIE). */
void opt_rr(dns_msg *m, unsigned payload, unsigned ext_rcode, bool dnssec_ok, bool option);

#endif

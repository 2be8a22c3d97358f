/* acl.c — access control by client address prefix: the default allow list, and the match the
 * transports run for every query (prefix text is addr.c's). Matching is pure and bounded (no
 * allocation, no locks, at most VD_MAX_ACL prefixes of 16 octets); it knows nothing about
 * sockets beyond sockaddr and nothing about what a transport does with a refused client. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "vpcdns/acl.h"

#define V4_BITS 32u
#define V6_BITS 128u
#define V4_MAPPED_OCTETS 12u /* where the IPv4 address starts in a mapped IPv6 address */

/* True when the first `bits` bits of a and b are equal. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
        unsigned full = bits / 8, rest = bits % 8;
        if (full > 0 && memcmp(a, b, full) != 0)
                return false;
        if (rest == 0)
                return true;
        uint8_t mask = (uint8_t)(0xffu << (8 - rest));
        return (a[full] & mask) == (b[full] & mask);
}

bool vd_acl_match(const vd_cidr *list, size_t n, const struct sockaddr *sa)
{
        const uint8_t *addr;
        int family;
        if (list == NULL || sa == NULL)
                return false;
        if (sa->sa_family == AF_INET) {
                addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
                family = AF_INET;
        } else if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a6)) {
                        addr = a6->s6_addr + V4_MAPPED_OCTETS;
                        family = AF_INET;
                } else {
                        addr = a6->s6_addr;
                        family = AF_INET6;
                }
        } else {
                return false;
        }
        for (size_t i = 0; i < n; i++) {
                const vd_cidr *c = &list[i];
                if (c->ss.ss_family != family)
                        continue;
                const uint8_t *net =
                    family == AF_INET
                        ? (const uint8_t *)&((const struct sockaddr_in *)&c->ss)->sin_addr
                        : ((const struct sockaddr_in6 *)&c->ss)->sin6_addr.s6_addr;
                unsigned max = family == AF_INET ? V4_BITS : V6_BITS;
                if (prefix_equal(addr, net, c->prefix < max ? c->prefix : max))
                        return true;
        }
        return false;
}

size_t vd_acl_defaults(vd_cidr *out, size_t cap)
{
        static const char *const defaults[] = {
            "127.0.0.0/8",    /* loopback */
            "::1/128",        /* loopback */
            "10.0.0.0/8",     /* RFC 1918 */
            "172.16.0.0/12",  /* RFC 1918 */
            "192.168.0.0/16", /* RFC 1918 */
            "169.254.0.0/16", /* link-local */
            "fe80::/10",      /* link-local */
            "fc00::/7",       /* unique local (RFC 4193) */
            "100.64.0.0/10",  /* shared address space, CGNAT (RFC 6598) */
        };
        size_t n = 0;
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && n < cap; i++) {
                int rc = vd_cidr_parse(defaults[i], &out[n]);
                VD_CHECK(rc == 0);
                n++;
        }
        return n;
}

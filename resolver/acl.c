/* acl.c — access control by client address prefix: prefix text → vd_cidr, the default allow
 * list, and the match the transports run for every query. Matching is pure and bounded (no
 * allocation, no locks, at most VD_MAX_ACL prefixes of 16 octets); it knows nothing about
 * sockets beyond sockaddr and nothing about what a transport does with a refused client. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "vpcdns/acl.h"

#define V4_BITS 32u
#define V6_BITS 128u
#define V4_MAPPED_BITS 96u   /* ::ffff:0:0/96 */
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

/* True when no bit from `bits` on is set in addr[0..octets). */
static bool host_bits_zero(const uint8_t *addr, size_t octets, unsigned bits)
{
        for (size_t i = 0; i < octets; i++) {
                unsigned first = (unsigned)i * 8; /* bit number of this octet's top bit */
                uint8_t host_mask;
                if (first + 8 <= bits)
                        continue;
                host_mask = first >= bits ? 0xffu : (uint8_t)(0xffu >> (bits - first));
                if ((addr[i] & host_mask) != 0)
                        return false;
        }
        return true;
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

/* "0".."128": decimal digits only, no sign, no leading zero. */
static bool parse_prefix_len(const char *text, unsigned max, unsigned *out)
{
        size_t len = strlen(text);
        if (len == 0 || len > 3 || (len > 1 && text[0] == '0'))
                return false;
        unsigned value = 0;
        for (size_t i = 0; i < len; i++) {
                if (text[i] < '0' || text[i] > '9')
                        return false;
                value = value * 10 + (unsigned)(text[i] - '0');
        }
        if (value > max)
                return false;
        *out = value;
        return true;
}

static void set_v4(vd_cidr *out, const uint8_t *octets, unsigned prefix)
{
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, octets, 4);
        memset(out, 0, sizeof(*out));
        memcpy(&out->ss, &sin, sizeof(sin));
        out->prefix = prefix;
}

int vd_cidr_parse(const char *text, vd_cidr *out)
{
        char host[INET6_ADDRSTRLEN + 1];
        const char *slash;
        size_t host_len;
        unsigned prefix;

        if (text == NULL || out == NULL)
                return -EINVAL;
        slash = strchr(text, '/');
        host_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
        if (host_len == 0 || host_len >= sizeof(host))
                return -EINVAL;
        memcpy(host, text, host_len);
        host[host_len] = '\0';

        uint8_t v4[4];
        struct in6_addr v6;
        if (inet_pton(AF_INET, host, v4) == 1) {
                prefix = V4_BITS;
                if (slash != NULL && !parse_prefix_len(slash + 1, V4_BITS, &prefix))
                        return -EINVAL;
                if (!host_bits_zero(v4, sizeof(v4), prefix))
                        return -EINVAL;
                set_v4(out, v4, prefix);
                return 0;
        }
        if (inet_pton(AF_INET6, host, &v6) != 1) /* also rejects "%scope" suffixes */
                return -EINVAL;
        prefix = V6_BITS;
        if (slash != NULL && !parse_prefix_len(slash + 1, V6_BITS, &prefix))
                return -EINVAL;
        if (!host_bits_zero(v6.s6_addr, sizeof(v6.s6_addr), prefix))
                return -EINVAL;
        if (prefix >= V4_MAPPED_BITS && IN6_IS_ADDR_V4MAPPED(&v6)) {
                /* A mapped client is matched as IPv4, so a mapped prefix is stored as one. */
                set_v4(out, v6.s6_addr + V4_MAPPED_OCTETS, prefix - V4_MAPPED_BITS);
                return 0;
        }
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_addr = v6;
        memset(out, 0, sizeof(*out));
        memcpy(&out->ss, &sin6, sizeof(sin6));
        out->prefix = prefix;
        return 0;
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

/* addr.c — address text as the configuration writes it: "ADDR[:PORT]" → sockaddr and back,
 * address prefixes ("10.0.0.0/8") with the hint for a prefix whose host bits are set, and
 * whether an address is one of this host's own (loopback, getifaddrs). It owns no state and
 * knows no other vpcdns module; what a caller does with an address is not its business. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/addr.h"
#include "vpcdns/common.h"

#define V4_BITS 32u
#define V6_BITS 128u
#define V4_MAPPED_BITS 96u   /* ::ffff:0:0/96 */
#define V4_MAPPED_OCTETS 12u /* where the IPv4 address starts in a mapped IPv6 address */

/* ------------------------------------------------------------------------------------------ */
/* Socket addresses                                                                          */

static bool parse_port(const char *text, unsigned *port)
{
        if (text[0] == '\0' || strlen(text) > 5)
                return false;
        unsigned value = 0;
        for (const char *p = text; *p != '\0'; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                value = value * 10 + (unsigned)(*p - '0');
        }
        if (value == 0 || value > 65535)
                return false;
        *port = value;
        return true;
}

/* "fe80::1%eth0" or "fe80::1%2" → sockaddr_in6 with scope id. */
static bool parse_ipv6(const char *text, unsigned port, vd_addr *out)
{
        char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
        size_t len = strlen(text);
        if (len == 0 || len >= sizeof(host))
                return false;
        memcpy(host, text, len + 1);

        uint32_t scope = 0;
        char *pct = strchr(host, '%');
        if (pct != NULL) {
                *pct = '\0';
                const char *iface = pct + 1;
                if (iface[0] == '\0')
                        return false;
                scope = if_nametoindex(iface);
                if (scope == 0) {
                        char *end = NULL;
                        errno = 0;
                        unsigned long n = strtoul(iface, &end, 10);
                        if (errno != 0 || *end != '\0' || n == 0 || n > UINT32_MAX ||
                            iface[0] < '0' || iface[0] > '9')
                                return false;
                        scope = (uint32_t)n;
                }
        }
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)port);
        sin6.sin6_scope_id = scope;
        if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
                return false;
        memset(out, 0, sizeof(*out));
        memcpy(&out->ss, &sin6, sizeof(sin6));
        out->len = sizeof(sin6);
        return true;
}

static bool parse_ipv4(const char *text, unsigned port, vd_addr *out)
{
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, text, &sin.sin_addr) != 1)
                return false;
        memset(out, 0, sizeof(*out));
        memcpy(&out->ss, &sin, sizeof(sin));
        out->len = sizeof(sin);
        return true;
}

int vd_addr_parse(const char *text, unsigned default_port, vd_addr *out)
{
        char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
        if (text == NULL || out == NULL)
                return -EINVAL;
        size_t len = strlen(text);
        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, text, len + 1);

        unsigned port = default_port;
        if (buf[0] == '[') { /* "[v6]" or "[v6]:port" */
                char *close = strchr(buf, ']');
                if (close == NULL || close == buf + 1)
                        return -EINVAL;
                *close = '\0';
                const char *rest = close + 1;
                if (rest[0] == ':') {
                        if (!parse_port(rest + 1, &port))
                                return -EINVAL;
                } else if (rest[0] != '\0') {
                        return -EINVAL;
                }
                if (port == 0 || port > 65535)
                        return -EINVAL;
                return parse_ipv6(buf + 1, port, out) ? 0 : -EINVAL;
        }
        char *colon = strchr(buf, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) { /* bare IPv6, default port */
                if (port == 0 || port > 65535)
                        return -EINVAL;
                return parse_ipv6(buf, port, out) ? 0 : -EINVAL;
        }
        if (colon != NULL) {
                *colon = '\0';
                if (!parse_port(colon + 1, &port))
                        return -EINVAL;
        }
        if (port == 0 || port > 65535)
                return -EINVAL;
        return parse_ipv4(buf, port, out) ? 0 : -EINVAL;
}

void vd_addr_format(const vd_addr *a, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN];
        char scope[IF_NAMESIZE + 2] = "";
        if (cap == 0)
                return;
        if (a->ss.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
                if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
                        goto bad;
                snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
                return;
        }
        if (a->ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
                if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
                        goto bad;
                if (sin6->sin6_scope_id != 0) {
                        char name[IF_NAMESIZE];
                        if (if_indextoname(sin6->sin6_scope_id, name) != NULL)
                                snprintf(scope, sizeof(scope), "%%%s", name);
                        else
                                snprintf(scope, sizeof(scope), "%%%u",
                                         (unsigned)sin6->sin6_scope_id);
                }
                snprintf(out, cap, "[%s%s]:%u", host, scope, (unsigned)ntohs(sin6->sin6_port));
                return;
        }
bad:
        snprintf(out, cap, "?");
}

bool vd_addr_equal(const vd_addr *a, const vd_addr *b)
{
        if (a->ss.ss_family != b->ss.ss_family)
                return false;
        if (a->ss.ss_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
                const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        if (a->ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
                const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
                return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
        }
        return false;
}

int vd_addr_parse_host(const char *text, unsigned port, vd_addr *out)
{
        if (text == NULL || out == NULL || port == 0 || port > 65535)
                return -EINVAL;
        if (strchr(text, ':') != NULL)
                return parse_ipv6(text, port, out) ? 0 : -EINVAL;
        return parse_ipv4(text, port, out) ? 0 : -EINVAL;
}

bool vd_addr_port_hint(const char *text, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
        struct in6_addr v6;
        unsigned port;
        if (text == NULL || text[0] == '[' || strstr(text, "::") == NULL)
                return false; /* bracketed, or a full 8-group address: not ambiguous */
        const char *colon = strrchr(text, ':');
        size_t len = (size_t)(colon - text);
        if (len == 0 || len >= sizeof(host) || !parse_port(colon + 1, &port))
                return false;
        memcpy(host, text, len);
        host[len] = '\0';
        if (inet_pton(AF_INET6, host, &v6) != 1)
                return false;
        snprintf(out, cap, "[%s]:%u", host, port);
        return true;
}

static unsigned addr_port(const vd_addr *a)
{
        if (a->ss.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
        if (a->ss.ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
        return 0;
}

static bool addr_is_wildcard(const vd_addr *a)
{
        if (a->ss.ss_family == AF_INET)
                return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
        if (a->ss.ss_family == AF_INET6)
                return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
        return false;
}

/* Same address bytes, ignoring ports and scope. */
static bool same_host(const struct sockaddr *x, const vd_addr *a)
{
        if (x->sa_family != a->ss.ss_family)
                return false;
        if (x->sa_family == AF_INET)
                return ((const struct sockaddr_in *)x)->sin_addr.s_addr ==
                       ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr;
        if (x->sa_family == AF_INET6)
                return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                              &((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                              sizeof(struct in6_addr)) == 0;
        return false;
}

/* True when a is an address of this host: loopback, or assigned to one of its interfaces. */
static bool addr_is_local(const vd_addr *a)
{
        if (a->ss.ss_family == AF_INET) {
                uint32_t v4 = ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr);
                if ((v4 >> 24) == 127 || v4 == INADDR_ANY)
                        return true;
        } else if (a->ss.ss_family == AF_INET6) {
                const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
                if (IN6_IS_ADDR_LOOPBACK(v6) || IN6_IS_ADDR_UNSPECIFIED(v6))
                        return true;
        }
        struct ifaddrs *list = NULL;
        if (getifaddrs(&list) != 0)
                return false;
        bool found = false;
        for (struct ifaddrs *it = list; it != NULL && !found; it = it->ifa_next) {
                if (it->ifa_addr != NULL && same_host(it->ifa_addr, a))
                        found = true;
        }
        freeifaddrs(list);
        return found;
}

/* Would a query sent to upstream reach one of our own listeners? Exact address and port, or
 * a wildcard listener on that port while upstream is an address of this host: 0.0.0.0:P
 * covers the host's IPv4 addresses, [::]:P is taken to cover all of them. A wildcard does not
 * exclude a remote server such as the VPC resolver: that would leave a central resolver
 * listening on 0.0.0.0:53 without any upstream. */
bool vd_addr_is_own(const vd_addr *upstream, const vd_addr *listen, size_t n_listen)
{
        for (size_t i = 0; i < n_listen; i++) {
                const vd_addr *l = &listen[i];
                if (vd_addr_equal(upstream, l))
                        return true;
                if (!addr_is_wildcard(l) || addr_port(l) != addr_port(upstream))
                        continue;
                if (l->ss.ss_family == AF_INET && upstream->ss.ss_family != AF_INET)
                        continue;
                if (addr_is_local(upstream))
                        return true;
        }
        return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Address prefixes                                                                          */

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

/* For "10.1.2.3/8", a prefix whose host bits are set: writes the network the user probably
 * meant ("10.0.0.0/8") and returns true. False for any other text. */
bool vd_cidr_hint(const char *text, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN + 1], shown[INET6_ADDRSTRLEN];
        uint8_t bytes[16], given[16];
        const char *slash = strchr(text, '/');
        unsigned prefix;
        int family;
        if (slash == NULL || (size_t)(slash - text) >= sizeof(host))
                return false;
        memcpy(host, text, (size_t)(slash - text));
        host[slash - text] = '\0';
        if (inet_pton(AF_INET, host, bytes) == 1)
                family = AF_INET;
        else if (inet_pton(AF_INET6, host, bytes) == 1)
                family = AF_INET6;
        else
                return false;
        size_t octets = family == AF_INET ? 4 : 16;
        if (!vd_parse_uint(slash + 1, 0, (unsigned)octets * 8, &prefix))
                return false;
        memcpy(given, bytes, octets);
        for (size_t i = 0; i < octets; i++) {
                unsigned first = (unsigned)i * 8;
                if (first >= prefix)
                        bytes[i] = 0;
                else if (first + 8 > prefix)
                        bytes[i] &= (uint8_t)(0xffu << (8 - (prefix - first)));
        }
        if (memcmp(given, bytes, octets) == 0 ||
            inet_ntop(family, bytes, shown, sizeof(shown)) == NULL)
                return false; /* no host bit was set: the text is wrong for another reason */
        char masked[INET6_ADDRSTRLEN + 8];
        snprintf(masked, sizeof(masked), "%s/%u", shown, prefix);
        vd_cidr check;
        if (vd_cidr_parse(text, &check) == 0 || vd_cidr_parse(masked, &check) != 0)
                return false;
        snprintf(out, cap, "%s", masked);
        return true;
}

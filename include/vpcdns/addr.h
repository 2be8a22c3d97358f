/* addr.h — addresses as the configuration writes them: socket addresses with a port
 * ("127.0.0.1:53", "[::1]:5300"), address prefixes ("10.0.0.0/8"), and whether an address is
 * one of this host's own. Pure functions over sockaddr, except vd_addr_is_own, which may read
 * the host's interface list. No other vpcdns module is needed to use them. */
#ifndef VPCDNS_ADDR_H
#define VPCDNS_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The longest list of server addresses: the default upstreams, or the servers of one
 * forwarding rule. */
#define VD_MAX_UPSTREAM 8

typedef struct vd_addr {
        struct sockaddr_storage ss;
        socklen_t len;
} vd_addr;

/* An address prefix, for access control: "10.0.0.0/8", "::1/128", "192.0.2.1" (= /32). */
typedef struct vd_cidr {
        struct sockaddr_storage ss; /* family and network address; port unused */
        unsigned prefix;            /* 0..32 or 0..128 */
} vd_cidr;

/* "127.0.0.1", "127.0.0.1:5300", "::1", "[::1]:5300", "fe80::1%eth0" → address; default_port
 * when absent. Returns 0 or -EINVAL. */
int vd_addr_parse(const char *text, unsigned default_port, vd_addr *out);

/* A host alone, as resolv.conf writes it: "192.0.2.1", "2001:db8::1", "fe80::1%eth0" (no
 * brackets, no port) → address with port. Returns 0 or -EINVAL. */
int vd_addr_parse_host(const char *text, unsigned port, vd_addr *out);

/* For text such as "::1:5300" — a bare IPv6 address whose last group could be meant as a port —
 * writes the bracketed form the user probably meant ("[::1]:5300") and returns true. Such
 * text parses as an address, but rarely as the one intended. */
bool vd_addr_port_hint(const char *text, char *out, size_t cap);

/* "127.0.0.1:53" / "[::1]:53"; always NUL-terminates. */
void vd_addr_format(const vd_addr *a, char *out, size_t cap);

/* Same family, address, port (and IPv6 scope). */
bool vd_addr_equal(const vd_addr *a, const vd_addr *b);

/* Would a query sent to addr reach one of the n listen addresses? The same address and port,
 * or a wildcard listener on that port while addr is an address of this host (loopback, or
 * assigned to one of its interfaces: reads getifaddrs): 0.0.0.0:P covers the host's IPv4
 * addresses, [::]:P is taken to cover all of them (the cautious answer). A remote address is
 * never our own. */
bool vd_addr_is_own(const vd_addr *addr, const vd_addr *listen, size_t n);

/* "10.0.0.0/8", "fd00::/8", "192.0.2.1" (= /32), "::1" (= /128) → prefix; host bits beyond the
 * prefix must be zero. An IPv4-mapped IPv6 prefix of /96 or longer is stored as IPv4. Returns 0
 * or -EINVAL. */
int vd_cidr_parse(const char *text, vd_cidr *out);

/* For "10.1.2.3/8", a prefix whose host bits are set: writes the network the user probably
 * meant ("10.0.0.0/8") and returns true. False for any other text. */
bool vd_cidr_hint(const char *text, char *out, size_t cap);

#endif

/* acl.h — access control by client address prefix. Pure functions over the prefixes of the
 * config; safe on the hot path (no allocation, no locks). */
#ifndef VPCDNS_ACL_H
#define VPCDNS_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "vpcdns/common.h"
#include "vpcdns/config.h"

/* True when sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as IPv4) falls in
 * one of the n prefixes. */
bool vd_acl_match(const vd_cidr *list, size_t n, const struct sockaddr *sa);

/* "10.0.0.0/8", "fd00::/8", "192.0.2.1" (= /32), "::1" (= /128) → prefix; host bits beyond the
 * prefix must be zero. Returns 0 or -EINVAL. */
int vd_cidr_parse(const char *text, vd_cidr *out);

/* The default allow list — loopback, RFC 1918, link-local, ULA and CGNAT — written to out
 * (capacity cap); returns the count. */
size_t vd_acl_defaults(vd_cidr *out, size_t cap);

#endif

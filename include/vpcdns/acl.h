/* acl.h — access control by client address prefix. Pure functions over address prefixes
 * (addr.h); safe on the hot path (no allocation, no locks). */
#ifndef VPCDNS_ACL_H
#define VPCDNS_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "vpcdns/common.h"
#include "vpcdns/addr.h"

/* The most prefixes an allow list holds. */
#define VD_MAX_ACL 64

/* True when sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as IPv4) falls in
 * one of the n prefixes. */
bool vd_acl_match(const vd_cidr *list, size_t n, const struct sockaddr *sa);

/* The default allow list — loopback, RFC 1918, link-local, ULA and CGNAT — written to out
 * (capacity cap); returns the count. */
size_t vd_acl_defaults(vd_cidr *out, size_t cap);

#endif

/* forward_rules.h — where a name is forwarded: the distinct upstream servers of the default
 * list and of every forwarding rule, and for a question the list of servers it goes to (the
 * most specific rule whose domain is the name or a label-wise suffix of it wins; a use_default
 * rule sends its names to the default upstreams). Private to resolver/forward*.c and their
 * tests. Built once from vd_forward_options, read-only afterwards; no I/O. */
#ifndef VPCDNS_FORWARD_RULES_H
#define VPCDNS_FORWARD_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/forward.h"

/* Servers of a rule or of the default upstreams: indexes into vd_fwd_routes.addrs. */
typedef struct vd_fwd_server_list {
        uint16_t idx[VD_MAX_UPSTREAM];
        size_t n;
} vd_fwd_server_list;

typedef struct vd_fwd_rule {
        uint8_t domain[VD_NAME_MAX]; /* lower-cased wire name */
        size_t domain_len;
        bool use_default;
        vd_fwd_server_list list;
} vd_fwd_rule;

typedef struct vd_fwd_routes {
        vd_addr *addrs; /* distinct servers, in order of first mention */
        size_t n_addrs;
        vd_fwd_server_list defaults;
        vd_fwd_rule *rules;
        size_t n_rules;
} vd_fwd_routes;

/* Builds rt from opt's servers and rules (validated: IPv4 or IPv6 servers, at most
 * VD_MAX_UPSTREAM per list, well-formed domains). 0, or a negative code with err set; rt is
 * then empty. */
int vd_fwd_routes_build(vd_fwd_routes *rt, const vd_forward_options *opt, vd_error *err);
void vd_fwd_routes_free(vd_fwd_routes *rt);

/* The servers qi's name goes to, or NULL when there are none. */
const vd_fwd_server_list *vd_fwd_routes_servers_for(const vd_fwd_routes *rt,
                                                    const vd_query_info *qi);

/* True when an explicit rule (not use_default) covers qi's name. */
bool vd_fwd_routes_rule_covers(const vd_fwd_routes *rt, const vd_query_info *qi);

#endif

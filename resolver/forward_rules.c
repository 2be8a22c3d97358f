/* forward_rules.c — the upstream servers and forwarding rules, and which servers a name goes
 * to (forward_rules.h). Allocates only while building. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "vpcdns/addr.h"
#include "vpcdns/common.h"
#include "vpcdns/wire.h"

#include "forward_rules.h"

/* Index of addr in rt->addrs, added when new (rt->addrs has room for every mention). */
static int addr_index(vd_fwd_routes *rt, const vd_addr *addr, vd_error *err)
{
        for (size_t i = 0; i < rt->n_addrs; i++)
                if (vd_addr_equal(&rt->addrs[i], addr))
                        return (int)i;
        if (addr->ss.ss_family != AF_INET && addr->ss.ss_family != AF_INET6)
                return vd_error_set(err, "forwarder: upstream: not IPv4 or IPv6");
        rt->addrs[rt->n_addrs] = *addr;
        return (int)rt->n_addrs++;
}

static int fill_list(vd_fwd_routes *rt, vd_fwd_server_list *l, const vd_addr *addrs, size_t n,
                     vd_error *err)
{
        if (n > VD_MAX_UPSTREAM)
                return vd_error_set(err, "forwarder: more than %d servers", VD_MAX_UPSTREAM);
        if (n > 0 && addrs == NULL)
                return vd_error_set(err, "forwarder: invalid options");
        l->n = 0;
        for (size_t i = 0; i < n; i++) {
                int idx = addr_index(rt, &addrs[i], err);
                if (idx < 0)
                        return idx;
                bool dup = false;
                for (size_t k = 0; k < l->n; k++)
                        dup = dup || l->idx[k] == idx;
                if (!dup)
                        l->idx[l->n++] = (uint16_t)idx;
        }
        return 0;
}

int vd_fwd_routes_build(vd_fwd_routes *rt, const vd_forward_options *opt, vd_error *err)
{
        int rc = 0;
        memset(rt, 0, sizeof(*rt));
        size_t cap = opt->n_servers;
        for (size_t i = 0; i < opt->n_rules; i++)
                cap += opt->rules[i].n_servers;
        if (cap > 0)
                rt->addrs = calloc(cap, sizeof(*rt->addrs));
        if (opt->n_rules > 0)
                rt->rules = calloc(opt->n_rules, sizeof(*rt->rules));
        if ((cap > 0 && rt->addrs == NULL) || (opt->n_rules > 0 && rt->rules == NULL)) {
                rc = -ENOMEM;
                vd_error_set(err, "forwarder: out of memory");
                goto out;
        }
        rc = fill_list(rt, &rt->defaults, opt->servers, opt->n_servers, err);
        for (size_t i = 0; rc == 0 && i < opt->n_rules; i++) {
                const vd_forward_rule *in = &opt->rules[i];
                vd_fwd_rule *r = &rt->rules[i];
                if (in->domain_len == 0 || in->domain_len > VD_NAME_MAX ||
                    vd_name_len(in->domain, in->domain_len) != in->domain_len ||
                    (!in->use_default && in->n_servers == 0)) {
                        rc = vd_error_set(err, "forwarder: rule %zu: invalid domain or servers", i);
                        break;
                }
                memcpy(r->domain, in->domain, in->domain_len);
                r->domain_len = in->domain_len;
                vd_name_lower(r->domain, r->domain_len);
                r->use_default = in->use_default;
                if (!r->use_default)
                        rc = fill_list(rt, &r->list, in->servers, in->n_servers, err);
                rt->n_rules = i + 1;
        }
out:
        if (rc < 0)
                vd_fwd_routes_free(rt);
        return rc;
}

void vd_fwd_routes_free(vd_fwd_routes *rt)
{
        free(rt->addrs);
        free(rt->rules);
        memset(rt, 0, sizeof(*rt));
}

/* The most specific rule whose domain is qi's name or a label-wise suffix of it, or NULL. */
static const vd_fwd_rule *match_rule(const vd_fwd_routes *rt, const vd_query_info *qi)
{
        uint8_t boundary[VD_NAME_MAX + 1];
        const uint8_t *name = qi->qname_lower;
        size_t len = qi->qname_len;
        const vd_fwd_rule *best = NULL;

        if (rt->n_rules == 0)
                return NULL;
        memset(boundary, 0, sizeof(boundary));
        for (size_t p = 0; p < len;) {
                boundary[p] = 1;
                if (name[p] == 0)
                        break;
                p += (size_t)name[p] + 1;
        }
        for (size_t i = 0; i < rt->n_rules; i++) {
                const vd_fwd_rule *r = &rt->rules[i];
                if (r->domain_len > len || !boundary[len - r->domain_len])
                        continue;
                if (best != NULL && r->domain_len <= best->domain_len)
                        continue;
                if (memcmp(name + len - r->domain_len, r->domain, r->domain_len) == 0)
                        best = r;
        }
        return best;
}

const vd_fwd_server_list *vd_fwd_routes_servers_for(const vd_fwd_routes *rt,
                                                    const vd_query_info *qi)
{
        const vd_fwd_rule *r = match_rule(rt, qi);
        const vd_fwd_server_list *l = r != NULL && !r->use_default ? &r->list : &rt->defaults;
        return l->n > 0 ? l : NULL;
}

bool vd_fwd_routes_rule_covers(const vd_fwd_routes *rt, const vd_query_info *qi)
{
        const vd_fwd_rule *r = match_rule(rt, qi);
        return r != NULL && !r->use_default;
}

/* client.c — the client queries and addresses of client.h. Builds into the caller's message
 * and parses it with the daemon's own parser; keeps no state. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "support/client.h"

void client_query_flags(dns_msg *m, vd_query_info *qi, unsigned id, unsigned flags,
                        const char *name, unsigned qtype, bool edns, bool dnssec_ok)
{
        header(m, id, flags, 1, 0, 0, edns ? 1 : 0);
        put_name(m, name);
        put16(m, qtype);
        put16(m, VD_CLASS_IN);
        if (edns)
                opt_rr(m, CLIENT_EDNS_PAYLOAD, 0, dnssec_ok, false);
        cr_assert_eq(vd_wire_parse_query(m->b, m->n, qi), VD_PARSE_OK);
}

void client_query(dns_msg *m, vd_query_info *qi, unsigned id, const char *name, unsigned qtype,
                  bool edns, bool dnssec_ok)
{
        client_query_flags(m, qi, id, VD_FLAG_RD, name, qtype, edns, dnssec_ok);
}

struct sockaddr_storage client_addr(const char *ip)
{
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (strchr(ip, ':') != NULL) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                a->sin6_family = AF_INET6;
                cr_assert_eq(inet_pton(AF_INET6, ip, &a->sin6_addr), 1, "bad address %s", ip);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                a->sin_family = AF_INET;
                cr_assert_eq(inet_pton(AF_INET, ip, &a->sin_addr), 1, "bad address %s", ip);
        }
        return ss;
}

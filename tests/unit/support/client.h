/* client.h — the client side of the unit tests (support library): the query a DNS client
 * sends, built with dns_msg.h and parsed the way the daemon parses it, and the client's
 * address. One helper for every test that needs a vd_query_info from a real packet. */
#ifndef VD_TEST_CLIENT_H
#define VD_TEST_CLIENT_H

#include <stdbool.h>
#include <sys/socket.h>

#include "support/dns_msg.h"
#include "vpcdns/wire.h"

#define CLIENT_EDNS_PAYLOAD 4096 /* the UDP payload size in a client's OPT */

/* A query for name (letter case as given) and qtype, class IN, with the header flags given
 * (VD_FLAG_RD for an ordinary client); with edns an OPT of CLIENT_EDNS_PAYLOAD octets, DO when
 * dnssec_ok. Asserts that it parses; qi->qname then points into *m. */
void client_query_flags(dns_msg *m, vd_query_info *qi, unsigned id, unsigned flags,
                        const char *name, unsigned qtype, bool edns, bool dnssec_ok);

/* client_query_flags with RD set and nothing else. */
void client_query(dns_msg *m, vd_query_info *qi, unsigned id, const char *name, unsigned qtype,
                  bool edns, bool dnssec_ok);

/* A client's address from its text (IPv4 or IPv6), port 0; asserts that it parses. */
struct sockaddr_storage client_addr(const char *ip);

#endif

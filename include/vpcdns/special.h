/* special.h — the special-use names (RFC 6761, RFC 6303) that vpcdns answers itself and never
 * sends upstream, as Unbound's default local zones and the VPC resolver's autodefined rules do:
 *   localhost. and every name under it   A 127.0.0.1, AAAA ::1; other types NODATA + SOA
 *   invalid. and every name under it     NXDOMAIN + SOA
 *   127.in-addr.arpa.                    1.0.0.127.in-addr.arpa. PTR localhost.; else NXDOMAIN
 *   1.0.(…).0.ip6.arpa. (::1)            PTR localhost.
 * Each zone carries Unbound's SOA (localhost. nobody.invalid. 1 3600 1200 604800 10800) and
 * NS localhost., TTL 10800. The data is compiled once per process into a snapshot of its own,
 * so answering is the snapshot's allocation-free path. The names under
 * vpcdns-loop-check.invalid. are not special: they are forwarding-loop probes, which must
 * travel upstream (another vpcdns in a loop passes them on until they come back to the
 * instance that sent them). Callers consult local data and forwarding rules first: a zone or
 * a rule the user wrote for such a name wins. */
#ifndef VPCDNS_SPECIAL_H
#define VPCDNS_SPECIAL_H

#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

/* The number of labels of the special zone's apex that holds qi's name (1 for localhost. and
 * invalid., 3 for 127.in-addr.arpa., 34 for the IPv6 loopback's reverse zone), or 0 when the
 * name is not special. Reads only the question; cheap enough for every query. */
int vd_special_apex_labels(const vd_query_info *qi);

/* The compiled special zones, built on first use (thread-safe); NULL only when that build ran
 * out of memory. Never freed: it lives as long as the process. */
const vd_snapshot *vd_special_snapshot(void);

#endif

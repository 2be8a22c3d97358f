/* chase.h — follows a CNAME chain past local data. When a local answer ends at a CNAME whose
 * target vpcdns does not hold (vd_snapshot_answer_chase says VD_LOCAL_CHASE), the chain goes on
 * through the resolver (cache, forwarding rules, upstream) and, wherever it comes back to a
 * name with local data or a special-use name, through that data again, until a name answers
 * the question's type, does not exist, or has no such data. The client gets one response:
 * its own ID, question and EDNS, every record of the chain in order with its own TTL, the
 * final name's rcode (NXDOMAIN or NODATA with that name's authority records), SERVFAIL when a
 * hop fails or the chain is longer than VD_CNAME_MAX_HOPS, TC over UDP when the whole chain
 * does not fit (authority records are dropped first).
 *
 * An alias whose target is outside local data (vd_local_chase.alias) is chased the same way
 * in alias mode: the target's chain is followed but only the final name's records of the
 * question's type are written, each under the alias's name (a pointer to it), with the
 * upstream's TTL; a target that does not exist or has no such data gives NODATA with the
 * alias's zone's SOA.
 *
 * Each hop's answer is a client-format response to a question made up for that name (the
 * client's type, CD and DO); its records are decompressed into the client's response (never
 * a compression pointer across messages) and its OPT dropped. A chase allocates its own state
 * (it is an upstream query anyway); the local answer that needs no chase never gets here.
 * Runs on the env's worker loop. */
#ifndef VPCDNS_CHASE_H
#define VPCDNS_CHASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/query.h"
#include "vpcdns/snapshot.h"

/* Continues the answer that local data began: out[0..*out_len) as vd_snapshot_answer_chase
 * left it, from where it stopped. qi is the client's question (copied), max its size limit,
 * out_cap the capacity of out (at least max). VD_QUERY_REPLY: the whole response is in out.
 * VD_QUERY_PENDING: reply(arg, ...) is called exactly once later (len 0 when the worker
 * closes). Counts client (vd_query_may_forward; may be NULL) before its first upstream
 * query; when that says no, the answer is SERVFAIL. */
vd_query_outcome vd_chase_start(vd_query_env *env, vd_query_client *client, const vd_query_info *qi,
                                size_t max, uint8_t *out, size_t out_cap, size_t *out_len,
                                const vd_local_chase *from, vd_reply_fn reply, void *arg);

/* True when a forwarding rule (not "servers: default") of env's forwarder decides the
 * lower-cased wire name: such a name is resolved by its rule's servers, not local data. For
 * a special-use name (special.h) only a rule at or under its special zone counts: a rule for a
 * broader domain (".", "arpa.") does not send localhost upstream, as the VPC resolver's
 * autodefined rules are more specific than any such rule. Fits vd_local_chase.leaves (arg: the
 * vd_query_env). */
bool vd_chase_rule_covers(void *env, const uint8_t *name, size_t len);

#endif

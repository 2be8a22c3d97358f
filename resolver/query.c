/* query.c — one client query's pipeline, independent of the transport:
 * parse → header policy (opcode, class, meta types) → our own loop probe → local data (unless
 * a forwarding rule covers the name; a CNAME chain that leaves local data goes on in chase.c)
 * → the special-use names of RFC 6761 (special.h) → the resolver (cache, merging,
 * serve-stale, upstream); without a resolver, SERVFAIL. ANY for a name without local data is
 * forwarded like any other question and the upstream's answer relayed (the cache never stores
 * it); local names answer ANY with their own RRsets (RFC 8482 §4.1).
 * The local path writes the response into the caller's buffer without allocating; the
 * forwarded path hands the transport's reply callback to the resolver.
 * Also recognises the server's forwarding-loop probe (query.h), which the env points at. */
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>

#include "vpcdns/chase.h"
#include "vpcdns/query.h"
#include "vpcdns/resolve.h"
#include "vpcdns/special.h"
#include "vpcdns/wire.h"

#define TYPE_IXFR 251
#define TYPE_AXFR 252
#define TYPE_MAILB 253
#define TYPE_MAILA 254

/* ---- the forwarding-loop probe ------------------------------------------------------------- */

/* Every probe name has the same length: questions of any other length skip the compare. */
#define PROBE_NAME_LEN (1 + VD_LOOP_PROBE_HEX + sizeof(VD_LOOP_PROBE_SUFFIX))

int vd_loop_probe_arm(vd_loop_probe *p)
{
        if (p->len != PROBE_NAME_LEN)
                return -EINVAL;
        atomic_store(&p->seen, false);
        atomic_store_explicit(&p->armed, true, memory_order_release); /* publishes name */
        return 0;
}

void vd_loop_probe_disarm(vd_loop_probe *p)
{
        atomic_store(&p->armed, false);
}

/* True when qi asks for the armed probe's name (and marks the probe seen). */
static bool probe_match(vd_loop_probe *p, const vd_query_info *qi)
{
        if (p == NULL || !qi->question_ok || qi->qname_len != PROBE_NAME_LEN ||
            !atomic_load_explicit(&p->armed, memory_order_acquire))
                return false;
        if (memcmp(p->name, qi->qname_lower, PROBE_NAME_LEN) != 0)
                return false;
        atomic_store(&p->seen, true);
        return true;
}

/* ---- the pipeline ---------------------------------------------------------------------------- */

static vd_query_outcome reply_error(vd_query_env *env, const vd_query_info *qi, uint8_t rcode,
                                    uint8_t *out, size_t cap, size_t *out_len)
{
        size_t n = vd_wire_error_response(qi, rcode, out, cap);
        if (n == 0) {
                vd_count_add(&env->counters.dropped, 1);
                return VD_QUERY_DROP;
        }
        if (rcode == VD_RCODE_FORMERR)
                vd_count_add(&env->counters.formerr, 1);
        else if (rcode == VD_RCODE_SERVFAIL)
                vd_count_add(&env->counters.servfail_answers, 1);
        *out_len = n;
        return VD_QUERY_REPLY;
}

/* Rcode for a question we refuse to look up at all, or NOERROR. */
static uint8_t question_policy(const vd_query_info *qi)
{
        if (qi->qclass != VD_CLASS_IN)
                return VD_RCODE_REFUSED; /* CHAOS, HESIOD, ANY: not served here */
        switch (qi->qtype) {
        case VD_TYPE_OPT:
                return VD_RCODE_FORMERR; /* OPT is a pseudo-record, never a question */
        case TYPE_IXFR:
        case TYPE_AXFR:
                return VD_RCODE_REFUSED; /* no zone transfers from a resolver */
        case TYPE_MAILA:
        case TYPE_MAILB:
                return VD_RCODE_NOTIMP;
        default:
                return VD_RCODE_NOERROR;
        }
}

/* Through the resolver, after its cache had nothing: an answer now (a stale cache entry, or
 * SERVFAIL when the upstream budget refused and nothing stale was left), or a reply later. */
static vd_query_outcome resolve(vd_query_env *env, const vd_query_info *qi, size_t max,
                                uint8_t *out, size_t out_cap, size_t *out_len, vd_reply_fn reply,
                                void *reply_arg)
{
        vd_query_outcome outcome = vd_resolver_query_upstream(env->resolver, qi, max, out, out_cap,
                                                              out_len, reply, reply_arg);
        env->stats_stale = outcome == VD_QUERY_REPLY; /* stats: the answer now was stale */
        switch (outcome) {
        case VD_QUERY_PENDING:
                vd_count_add(&env->counters.forwarded, 1);
                break;
        case VD_QUERY_REPLY:
                if (*out_len >= VD_HEADER_LEN && (out[3] & 0xF) == VD_RCODE_SERVFAIL)
                        vd_count_add(&env->counters.servfail_answers, 1);
                else
                        vd_count_add(&env->counters.cache_answers, 1);
                break;
        case VD_QUERY_DROP:
                vd_count_add(&env->counters.dropped, 1);
                break;
        }
        return outcome;
}

/* A special-use name (special.h) is answered here unless a rule the user wrote for its
 * special zone covers it (see vd_chase_rule_covers). */
static bool special_answer(vd_query_env *env, const vd_query_info *qi, bool ruled, size_t max,
                           uint8_t *out, size_t *out_len)
{
        if (vd_special_apex_labels(qi) == 0 ||
            (ruled && vd_chase_rule_covers(env, qi->qname_lower, qi->qname_len)))
                return false;
        const vd_snapshot *s = vd_special_snapshot();
        return s != NULL &&
               vd_snapshot_answer(s, qi, env->rotation++, out, max, out_len) == VD_LOCAL_ANSWERED;
}

bool vd_query_may_forward(vd_query_env *env, vd_query_client *client)
{
        if (env->pending == NULL || client == NULL || client->addr == NULL)
                return true;
        int slot = vd_ratelimit_pending_acquire(env->pending, client->addr, env->max_pending);
        client->pending_slot = slot >= 0 ? slot : -1;
        return slot != VD_PENDING_FULL;
}

/* stats: one query as it arrived, by transport, client family and question type. */
static void count_query(vd_query_env *env, const vd_query_client *client, bool tcp,
                        const vd_query_info *qi)
{
        int family = client != NULL && client->addr != NULL ? client->addr->sa_family : AF_INET;
        vd_stats_request(&env->stats, tcp, family, qi->question_ok, qi->qtype);
}

static vd_query_outcome pipeline(vd_query_env *env, vd_query_client *client, const uint8_t *pkt,
                                 size_t len, bool tcp, uint8_t *out, size_t out_cap,
                                 size_t *out_len, vd_reply_fn reply, void *reply_arg)
{
        vd_query_info qi;
        vd_count_add(&env->counters.queries, 1);

        vd_parse_status parsed = vd_wire_parse_query(pkt, len, &qi);
        count_query(env, client, tcp, &qi); /* stats */
        switch (parsed) {
        case VD_PARSE_OK:
                break;
        case VD_PARSE_DROP:
                vd_count_add(&env->counters.dropped, 1);
                return VD_QUERY_DROP;
        case VD_PARSE_FORMERR:
                return reply_error(env, &qi, VD_RCODE_FORMERR, out, out_cap, out_len);
        case VD_PARSE_NOTIMP:
                return reply_error(env, &qi, VD_RCODE_NOTIMP, out, out_cap, out_len);
        case VD_PARSE_BADVERS:
                return reply_error(env, &qi, VD_RCODE_BADVERS, out, out_cap, out_len);
        }

        uint8_t policy = question_policy(&qi);
        if (policy != VD_RCODE_NOERROR)
                return reply_error(env, &qi, policy, out, out_cap, out_len);

        /* Our own start-up probe came back: the upstreams forward to us. End the loop here. */
        if (probe_match(env->loop_probe, &qi))
                return reply_error(env, &qi, VD_RCODE_REFUSED, out, out_cap, out_len);

        size_t max = tcp ? VD_TCP_MAX : vd_wire_client_udp_max(&qi);
        if (max > out_cap)
                max = out_cap;

        /* A forwarding rule at or under a local zone beats the zone (as Route 53 Resolver rules
         * do). */
        bool ruled = env->forwarder != NULL && vd_forwarder_rule_covers(env->forwarder, &qi);
        /* Views: the client's view's data answers; a client outside every view is refused the
         * names only views hold (their endpoint names). */
        const vd_snapshot *snap = env->snapshot;
        if (snap != NULL) {
                bool outsider;
                snap =
                    vd_snapshot_for_client(snap, client != NULL ? client->addr : NULL, &outsider);
                if (outsider && !ruled && vd_snapshot_refuses(snap, &qi)) {
                        vd_count_add(&env->counters.view_refused, 1);
                        return reply_error(env, &qi, VD_RCODE_REFUSED, out, out_cap, out_len);
                }
        }
        if (!ruled && snap != NULL) {
                /* A CNAME chain stops being local where a rule covers a target, or where a
                 * target is neither ours nor a special-use name: the chase resolves the rest. */
                vd_local_chase chase;
                vd_answer_client who = {env->az_affinity,
                                        env->az != NULL && env->az[0] != '\0' ? env->az : NULL,
                                        client != NULL ? client->addr : NULL};
                chase.client = &who; /* AZ-local endpoint addresses */
                chase.leaves = env->forwarder != NULL ? vd_chase_rule_covers : NULL;
                chase.leaves_arg = env;
                chase.fallback = vd_special_snapshot(); /* a chain may end at localhost. */
                switch (vd_snapshot_answer_chase(snap, &qi, env->rotation++, out, max, out_len,
                                                 &chase)) {
                case VD_LOCAL_ANSWERED:
                        vd_count_add(&env->counters.local_answers, 1);
                        return VD_QUERY_REPLY;
                case VD_LOCAL_CHASE:
                        return vd_chase_start(env, client, &qi, max, out, out_cap, out_len, &chase,
                                              reply, reply_arg);
                case VD_LOCAL_FORWARD:
                        break;
                }
        }
        /* localhost., invalid. and the loopback reverse zones never go upstream (RFC 6761). */
        if (special_answer(env, &qi, ruled, max, out, out_len)) {
                vd_count_add(&env->counters.local_answers, 1);
                return VD_QUERY_REPLY;
        }

        /* A cache hit needs no upstream, so the per-client pending check comes after it. */
        if (env->resolver != NULL &&
            vd_resolver_from_cache(env->resolver, &qi, max, out, out_cap, out_len)) {
                if (*out_len >= VD_HEADER_LEN && (out[3] & 0xF) == VD_RCODE_SERVFAIL)
                        vd_count_add(&env->counters.servfail_answers,
                                     1); /* a SERVFAIL kept a few seconds */
                else
                        vd_count_add(&env->counters.cache_answers, 1);
                return VD_QUERY_REPLY;
        }
        /* Only now, with no answer at hand, is the query counted against its client in the
         * table the workers share (a lock no local answer or cache hit takes). */
        if (env->resolver == NULL)
                return reply_error(env, &qi, VD_RCODE_SERVFAIL, out, out_cap, out_len);
        if (!vd_query_may_forward(env, client)) {
                vd_count_add(&env->counters.forward_denied, 1);
                return reply_error(env, &qi, VD_RCODE_SERVFAIL, out, out_cap, out_len);
        }
        return resolve(env, &qi, max, out, out_cap, out_len, reply, reply_arg);
}

/* ---- statistics (stats.h) -------------------------------------------------------------------- */

/* Where a response given now came from, told by the counter the pipeline moved. */
static vd_stats_source answer_source(const vd_query_env *env, uint64_t local_before,
                                     uint64_t cache_before, const uint8_t *out, size_t out_len)
{
        if (env->counters.local_answers != local_before)
                return VD_STATS_SOURCE_LOCAL;
        if (env->counters.cache_answers != cache_before)
                return env->stats_stale ? VD_STATS_SOURCE_STALE : VD_STATS_SOURCE_CACHE;
        if (out_len >= VD_HEADER_LEN && (out[3] & 0xF) == VD_RCODE_REFUSED)
                return VD_STATS_SOURCE_REFUSED;
        return VD_STATS_SOURCE_ERROR;
}

vd_query_outcome vd_query_handle(vd_query_env *env, vd_query_client *client, const uint8_t *pkt,
                                 size_t len, bool tcp, uint8_t *out, size_t out_cap,
                                 size_t *out_len, vd_reply_fn reply, void *reply_arg)
{
        if (client != NULL)
                client->pending_slot = -1;
        uint64_t start_ns = vd_stats_now_ns();
        env->stats_start_ns = start_ns;
        uint64_t local_before = env->counters.local_answers;
        uint64_t cache_before = env->counters.cache_answers;
        env->stats_stale = false;
        vd_query_outcome outcome =
            pipeline(env, client, pkt, len, tcp, out, out_cap, out_len, reply, reply_arg);
        if (outcome == VD_QUERY_REPLY)
                vd_stats_response(&env->stats, vd_stats_rcode_of(out, *out_len),
                                  answer_source(env, local_before, cache_before, out, *out_len),
                                  vd_stats_now_ns() - start_ns);
        /* Counted, but answered now after all (a stale answer, the budget's SERVFAIL): no
         * reply will give the count back later. */
        if (client != NULL && client->pending_slot >= 0 && outcome != VD_QUERY_PENDING) {
                vd_ratelimit_pending_dec(env->pending, client->pending_slot);
                client->pending_slot = -1;
        }
        return outcome;
}

size_t vd_query_refused(const uint8_t *pkt, size_t len, uint8_t *out, size_t cap)
{
        vd_query_info qi;

        switch (vd_wire_parse_query(pkt, len, &qi)) {
        case VD_PARSE_OK:
        case VD_PARSE_NOTIMP:
        case VD_PARSE_BADVERS:
                return vd_wire_error_response(&qi, VD_RCODE_REFUSED, out, cap);
        case VD_PARSE_DROP:
        case VD_PARSE_FORMERR:
        default:
                return 0;
        }
}

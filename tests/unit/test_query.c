/* test_query.c — the query pipeline's header policy without local data or upstream, the
 * answer to ANY (local RRsets, or forwarded), forwarding rules that beat local data, the count
 * of a client's pending queries, the server's forwarding-loop probe that query.c recognises,
 * and the counter table (counters.h) behind env->counters. */
#include <arpa/inet.h>
#include <errno.h>
#include <criterion/criterion.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vpcdns/query.h"
#include "vpcdns/resolve.h"
#include "vpcdns/wire.h"

#include "support/dns_msg.h"

static size_t make_query(uint8_t *buf)
{
        static const uint8_t q[] = {0xbe, 0xef, 0x01, 0x00, 0,   1,   0,   0,   0, 0, 0, 0, 1, 'A',
                                    7,    'e',  'x',  'a',  'm', 'p', 'l', 'e', 0, 0, 1, 0, 1};
        memcpy(buf, q, sizeof(q));
        return sizeof(q);
}

static vd_query_outcome run(vd_query_env *env, const uint8_t *pkt, size_t len, uint8_t *out,
                            size_t *out_len)
{
        return vd_query_handle(env, NULL, pkt, len, false, out, 1232, out_len, NULL, NULL);
}

Test(query, pipeline_outcomes_without_data_or_upstream)
{
        vd_query_env env = {0};
        uint8_t pkt[512], out[1232];
        size_t len = make_query(pkt), out_len = 0;
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL, "no upstream: SERVFAIL");
        cr_assert_eq(out[0], 0xbe);
        cr_assert(out[2] & 0x01, "RD echoed");
        cr_assert(out[3] & 0x80, "RA set");
        cr_assert_not(out[2] & 0x04, "AA clear");
        pkt[len - 1] = 3; /* class CH */
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_REFUSED);
        len = make_query(pkt);
        pkt[len - 3] = 252; /* AXFR */
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_REFUSED);
        pkt[2] |= 0x80;
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_DROP);
        len = make_query(pkt);
        pkt[5] = 2;
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_FORMERR);
        cr_assert_eq(out_len, VD_HEADER_LEN, "no question echoed when it cannot be read");
        cr_assert_eq(env.counters.queries, 5);
        cr_assert_eq(env.counters.dropped, 1);
}

/* ---- ANY (RFC 8482) ---------------------------------------------------------------------------
 */

/* "ExAmple.Net" type ANY, with an OPT record (payload 1232, DO set) when edns. */
static size_t make_any(uint8_t *buf, bool edns)
{
        static const uint8_t q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0,   0,
                                    0,    0,    7,    'E',  'x', 'A', 'm', 'p', 'l', 'e',
                                    3,    'N',  'e',  't',  0,   0,   255, 0,   1};
        static const uint8_t opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0};
        memcpy(buf, q, sizeof(q));
        if (!edns)
                return sizeof(q);
        buf[11] = 1; /* ARCOUNT */
        memcpy(buf + sizeof(q), opt, sizeof(opt));
        return sizeof(q) + sizeof(opt);
}

Test(query, any_without_upstream_is_servfail_not_a_synthesised_answer)
{
        vd_query_env env = {0};
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, true);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL,
                     "a name without local data is the upstream's to answer, even for ANY");
        cr_assert_eq(vd_wire_get16(out + 6), 0, "no HINFO made up for a name we do not hold");
        cr_assert_eq(memcmp(out + VD_HEADER_LEN + 1, "ExAmple", 7), 0, "question case kept");
        cr_assert_eq(env.counters.servfail_answers, 1);
}

Test(query, any_at_a_local_name_returns_its_records)
{
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len = 0;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        static const uint8_t a_rdata[] = {10, 1, 2, 3};
        vd_builder *b = vd_builder_new();
        cr_assert_not_null(b);
        cr_assert_eq(vd_name_from_text("example.net", owner, &owner_len), 0);
        cr_assert_eq(vd_builder_add_rr(b, owner, VD_TYPE_A, 60, a_rdata, 4, "test", &err), 0, "%s",
                     err.msg);
        cr_assert_eq(vd_builder_finish(b, &snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);

        vd_query_env env = {0};
        env.snapshot = snap;
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, false);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_NOERROR);
        cr_assert_eq(vd_wire_get16(out + 6), 1);
        size_t rr = VD_HEADER_LEN + 13 + 4;
        size_t pos = rr;
        uint16_t type = 0;
        size_t fixed = 0;
        cr_assert_eq(vd_wire_skip_rr(out, out_len, &pos, &type, &fixed), 0);
        cr_assert_eq(type, VD_TYPE_A, "a local name answers ANY with its own RRsets, not HINFO");
        cr_assert_eq(memcmp(out + pos - 4, a_rdata, 4), 0);
        vd_snapshot_unref(snap);
}

/* ---- forwarding rules beat local data -------------------------------------------------------- */

/* A snapshot holding "a.example" A 10.1.2.3 (make_query's name). */
static vd_snapshot *local_a_example(void)
{
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len = 0;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        static const uint8_t a_rdata[] = {10, 1, 2, 3};
        vd_builder *b = vd_builder_new();
        cr_assert_not_null(b);
        cr_assert_eq(vd_name_from_text("a.example", owner, &owner_len), 0);
        cr_assert_eq(vd_builder_add_rr(b, owner, VD_TYPE_A, 60, a_rdata, 4, "test", &err), 0, "%s",
                     err.msg);
        cr_assert_eq(vd_builder_finish(b, &snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return snap;
}

static int replies;
static size_t last_reply_len;
static void count_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        (void)source;
        (void)arg;
        (void)resp;
        replies++;
        last_reply_len = len;
}

/* The pipeline with a forwarder over a silent loopback server (a bound UDP socket nobody
 * reads) and a resolver over it; with rule_domain, that forwarder's only rule sends the domain
 * to the same server (or to the defaults: use_default). */
typedef struct harness {
        uv_loop_t loop;
        int sink;
        vd_forwarder *fwd;
        vd_resolver *res;
        vd_snapshot *snap; /* owned */
        vd_query_env env;
} harness;

static void harness_start(harness *h, const char *rule_domain, bool use_default, vd_snapshot *snap)
{
        memset(h, 0, sizeof(*h));
        cr_assert_eq(uv_loop_init(&h->loop), 0);
        h->sink = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
        socklen_t sl = sizeof(sin);
        cr_assert_eq(bind(h->sink, (struct sockaddr *)&sin, sizeof(sin)), 0);
        cr_assert_eq(getsockname(h->sink, (struct sockaddr *)&sin, &sl), 0);

        vd_forward_rule rule;
        memset(&rule, 0, sizeof(rule));
        vd_addr upstream;
        memset(&upstream, 0, sizeof(upstream));
        memcpy(&upstream.ss, &sin, sizeof(sin));
        upstream.len = sizeof(sin);
        if (rule_domain != NULL) {
                cr_assert_eq(vd_name_from_text(rule_domain, rule.domain, &rule.domain_len), 0);
                rule.use_default = use_default;
                rule.servers[0] = upstream;
                rule.n_servers = use_default ? 0 : 1;
        }
        vd_forward_options opt = {
            .servers = &upstream,
            .n_servers = 1,
            .rules = &rule,
            .n_rules = rule_domain != NULL ? 1 : 0,
            .timeout_ms = 500,
        };
        vd_error err = {{0}};
        cr_assert_eq(vd_forwarder_new(&h->loop, &opt, &h->fwd, &err), 0, "%s", err.msg);
        vd_resolver_options ro;
        vd_resolver_options_default(&ro);
        cr_assert_eq(vd_resolver_new(&h->loop, h->fwd, NULL, &ro, &h->res), 0);
        h->snap = snap;
        h->env.snapshot = snap;
        h->env.forwarder = h->fwd;
        h->env.resolver = h->res;
        h->env.loop = &h->loop;
        replies = 0;
}

/* Closes everything; a query left pending must then be answered exactly once, with len 0. */
static void harness_finish(harness *h, vd_query_outcome outcome)
{
        vd_resolver_close(h->res);
        vd_forwarder_close(h->fwd);
        uv_run(&h->loop, UV_RUN_DEFAULT);
        cr_assert_eq(uv_loop_close(&h->loop), 0, "a handle was left open");
        if (outcome == VD_QUERY_PENDING) {
                cr_assert_eq(replies, 1, "the pending client is answered exactly once on close");
                cr_assert_eq(last_reply_len, 0);
        } else {
                cr_assert_eq(replies, 0, "an answer given at once has no later reply");
        }
        close(h->sink);
        if (h->snap != NULL)
                vd_snapshot_unref(h->snap);
}

/* Returns the outcome for make_query() with a rule for domain. */
static vd_query_outcome with_rule(const char *domain, bool use_default, bool *local)
{
        harness h;
        harness_start(&h, domain, use_default, local_a_example());
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_query(pkt);
        vd_query_outcome outcome = vd_query_handle(&h.env, NULL, pkt, len, false, out, sizeof(out),
                                                   &out_len, count_reply, NULL);
        *local = outcome == VD_QUERY_REPLY && h.env.counters.local_answers == 1 &&
                 (out[3] & 0xF) == VD_RCODE_NOERROR && vd_wire_get16(out + 6) == 1;
        if (outcome == VD_QUERY_PENDING)
                cr_assert_eq(h.env.counters.forwarded, 1);
        harness_finish(&h, outcome);
        return outcome;
}

Test(query, a_rule_at_or_above_a_local_name_sends_it_upstream)
{
        bool local = false;
        cr_assert_eq(with_rule("example", false, &local), VD_QUERY_PENDING,
                     "a rule for example. beats the local record of a.example.");
        cr_assert_not(local);
        cr_assert_eq(with_rule("A.Example", false, &local), VD_QUERY_PENDING,
                     "a rule equal to the local name beats it too, whatever the case");
}

Test(query, other_rules_leave_local_data_alone)
{
        bool local = false;
        cr_assert_eq(with_rule("b.example", false, &local), VD_QUERY_REPLY);
        cr_assert(local, "a rule for another name must not hide local data");
        cr_assert_eq(with_rule("example", true, &local), VD_QUERY_REPLY);
        cr_assert(local, "a 'servers: default' rule is no reason to skip local data");
}

/* ---- ANY for a name without local data goes upstream ---------------------------------------- */

/* A client address, and a pending table in which it already has limit queries upstream. */
static vd_ratelimit_pending *busy_client(struct sockaddr_in *client, unsigned limit)
{
        vd_ratelimit_pending *t = NULL;
        *client = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(5353)};
        client->sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
        cr_assert_eq(vd_ratelimit_pending_new(0, &t), 0);
        for (unsigned i = 0; i < limit; i++)
                cr_assert_geq(vd_ratelimit_pending_acquire(t, (struct sockaddr *)client, limit), 0);
        return t;
}

Test(query, any_for_a_name_without_local_data_is_forwarded)
{
        harness h;
        harness_start(&h, NULL, false, local_a_example());
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, true);
        vd_query_outcome outcome = vd_query_handle(&h.env, NULL, pkt, len, false, out, sizeof(out),
                                                   &out_len, count_reply, NULL);
        cr_assert_eq(outcome, VD_QUERY_PENDING, "ANY for example.net must go to the upstream");
        cr_assert_eq(h.env.counters.forwarded, 1);
        cr_assert_eq(h.env.counters.local_answers, 0);
        harness_finish(&h, outcome);
}

Test(query, forwarded_any_counts_against_the_clients_pending_limit)
{
        harness h;
        struct sockaddr_in addr;
        harness_start(&h, NULL, false, NULL);
        h.env.pending = busy_client(&addr, 1);
        h.env.max_pending = 1;
        vd_query_client client = {.addr = (struct sockaddr *)&addr, .pending_slot = 7};
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, false);
        vd_query_outcome outcome = vd_query_handle(&h.env, &client, pkt, len, false, out,
                                                   sizeof(out), &out_len, count_reply, NULL);
        cr_assert_eq(outcome, VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL, "over the pending limit: SERVFAIL at once");
        cr_assert_eq(h.env.counters.forward_denied, 1);
        cr_assert_eq(client.pending_slot, -1, "nothing to give back");
        harness_finish(&h, outcome);
        vd_ratelimit_pending_free(h.env.pending);
}

Test(query, a_forwarded_query_hands_its_count_to_the_transport)
{
        harness h;
        struct sockaddr_in addr;
        harness_start(&h, NULL, false, NULL);
        h.env.pending = busy_client(&addr, 1);
        h.env.max_pending = 2;
        vd_query_client client = {.addr = (struct sockaddr *)&addr};
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_any(pkt, false);
        vd_query_outcome outcome = vd_query_handle(&h.env, &client, pkt, len, false, out,
                                                   sizeof(out), &out_len, count_reply, NULL);
        cr_assert_eq(outcome, VD_QUERY_PENDING);
        cr_assert_geq(client.pending_slot, 0, "the query went upstream counted");
        cr_assert_eq(vd_ratelimit_pending_count(h.env.pending, client.pending_slot), 2);
        vd_ratelimit_pending_dec(h.env.pending, client.pending_slot); /* as the reply does */

        /* A query answered at once (REFUSED for CHAOS) keeps nothing counted. */
        len = make_query(pkt);
        pkt[len - 1] = 3;
        cr_assert_eq(vd_query_handle(&h.env, &client, pkt, len, false, out, sizeof(out), &out_len,
                                     count_reply, NULL),
                     VD_QUERY_REPLY);
        cr_assert_eq(client.pending_slot, -1);
        harness_finish(&h, outcome);
        vd_ratelimit_pending_free(h.env.pending);
}

/* ---- the forwarding-loop probe --------------------------------------------------------------- */

static size_t make_named_query(uint8_t *buf, const char *name)
{
        uint8_t wire[VD_NAME_MAX];
        size_t n = 0;
        cr_assert_eq(vd_name_from_text(name, wire, &n), 0);
        static const uint8_t head[] = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
        memcpy(buf, head, sizeof(head));
        memcpy(buf + sizeof(head), wire, n);
        /* the name as a client sends it: mixed case must still match */
        buf[sizeof(head) + 1 + 16 + 1] = 'V'; /* "Vpcdns-loop-check" */
        static const uint8_t tail[] = {0, 1, 0, 1};
        memcpy(buf + sizeof(head) + n, tail, sizeof(tail));
        return sizeof(head) + n + sizeof(tail);
}

Test(query, our_own_probe_is_refused_and_marked_seen)
{
        vd_loop_probe probe = {0};
        const char *name = "a123456789abcdef." VD_LOOP_PROBE_SUFFIX;
        cr_assert_eq(vd_name_from_text(name, probe.name, &probe.len), 0);
        vd_query_env env = {0};
        env.loop_probe = &probe;
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_named_query(pkt, name);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL, "not armed yet: an ordinary name");
        cr_assert_not(atomic_load(&probe.seen));
        cr_assert_eq(vd_loop_probe_arm(&probe), 0);

        len = make_named_query(pkt, "b123456789abcdef." VD_LOOP_PROBE_SUFFIX);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL, "another probe name is an ordinary name");
        cr_assert_not(atomic_load(&probe.seen));

        len = make_named_query(pkt, name);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_REFUSED, "the probe must end the loop here");
        cr_assert_eq(out[0], 0xab);
        cr_assert(atomic_load(&probe.seen));

        vd_loop_probe_disarm(&probe);
        cr_assert_eq(run(&env, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL, "after the check the name is ordinary");
}

Test(query, a_probe_is_only_its_own_servers)
{
        vd_loop_probe probe = {0};
        const char *name = "0123456789abcdef." VD_LOOP_PROBE_SUFFIX;
        cr_assert_eq(vd_name_from_text(name, probe.name, &probe.len), 0);
        cr_assert_eq(vd_loop_probe_arm(&probe), 0);
        vd_query_env other = {0}; /* another server's worker: no probe of its own */
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_named_query(pkt, name);
        cr_assert_eq(run(&other, pkt, len, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL);
        cr_assert_not(atomic_load(&probe.seen), "no process-wide registry any more");

        vd_loop_probe bad = {0};
        cr_assert_eq(vd_name_from_text("short." VD_LOOP_PROBE_SUFFIX, bad.name, &bad.len), 0);
        cr_assert_eq(vd_loop_probe_arm(&bad), -EINVAL);
}

/* ---- special-use names (RFC 6761) ------------------------------------------------------------ */

/* A query for name (text, letter case as given) and type with an ID of 0x5151, RD set. */
static size_t make_typed_query(uint8_t *buf, const char *name, uint16_t type)
{
        dns_msg m; /* the shared builder of tests/unit/support */
        header(&m, 0x5151, VD_FLAG_RD, 1, 0, 0, 0);
        put_name(&m, name);
        put16(&m, type);
        put16(&m, VD_CLASS_IN);
        memcpy(buf, m.b, m.n);
        return m.n;
}

/* Asks env for name/type; returns the parsed response (the caller frees it) and the outcome. */
static ldns_pkt *ask(vd_query_env *env, const char *name, uint16_t type, vd_query_outcome *outcome)
{
        uint8_t pkt[512], out[1232];
        size_t out_len = 0, len = make_typed_query(pkt, name, type);
        *outcome = vd_query_handle(env, NULL, pkt, len, false, out, sizeof(out), &out_len,
                                   count_reply, NULL);
        if (*outcome != VD_QUERY_REPLY)
                return NULL;
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, out, out_len), LDNS_STATUS_OK);
        cr_assert_eq(ldns_pkt_id(p), 0x5151);
        return p;
}

/* Asserts an answer at once with this rcode and either one answer record whose first rdata
 * field reads rdata, or (rdata NULL) no answer and the zone's SOA in the authority section. */
static void expect_answer(vd_query_env *env, const char *name, uint16_t type, ldns_pkt_rcode rcode,
                          const char *rdata)
{
        vd_query_outcome outcome;
        ldns_pkt *p = ask(env, name, type, &outcome);
        cr_assert_eq(outcome, VD_QUERY_REPLY, "%s/%u: expected an answer at once", name, type);
        cr_assert_eq(ldns_pkt_get_rcode(p), rcode, "%s/%u: rcode %d", name, type,
                     ldns_pkt_get_rcode(p));
        ldns_rr_list *an = ldns_pkt_answer(p);
        if (rdata == NULL) {
                cr_assert_eq(ldns_rr_list_rr_count(an), 0, "%s/%u: expected no answer", name, type);
                ldns_rr_list *ns = ldns_pkt_authority(p);
                cr_assert_eq(ldns_rr_list_rr_count(ns), 1, "%s/%u: SOA expected", name, type);
                cr_assert_eq(ldns_rr_get_type(ldns_rr_list_rr(ns, 0)), LDNS_RR_TYPE_SOA);
        } else {
                cr_assert_eq(ldns_rr_list_rr_count(an), 1, "%s/%u: one record expected", name,
                             type);
                char *text = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0));
                cr_assert_str_eq(text, rdata, "%s/%u", name, type);
                free(text);
        }
        ldns_pkt_free(p);
}

Test(query, special_use_names_are_answered_without_upstream)
{
        vd_query_env env = {0}; /* no upstream at all: anything forwarded would be SERVFAIL */
        expect_answer(&env, "localhost", VD_TYPE_A, LDNS_RCODE_NOERROR, "127.0.0.1");
        expect_answer(&env, "LocalHost", VD_TYPE_AAAA, LDNS_RCODE_NOERROR, "::1");
        expect_answer(&env, "db.app.localhost", VD_TYPE_A, LDNS_RCODE_NOERROR, "127.0.0.1");
        expect_answer(&env, "x.localhost", VD_TYPE_AAAA, LDNS_RCODE_NOERROR, "::1");
        expect_answer(&env, "localhost", VD_TYPE_MX, LDNS_RCODE_NOERROR, NULL);
        expect_answer(&env, "x.localhost", VD_TYPE_TXT, LDNS_RCODE_NOERROR, NULL);
        expect_answer(&env, "invalid", VD_TYPE_A, LDNS_RCODE_NOERROR, NULL);
        expect_answer(&env, "host.Invalid", VD_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL);
        expect_answer(&env, "1.0.0.127.in-addr.arpa", VD_TYPE_PTR, LDNS_RCODE_NOERROR,
                      "localhost.");
        expect_answer(&env, "2.0.0.127.in-addr.arpa", VD_TYPE_PTR, LDNS_RCODE_NXDOMAIN, NULL);
        expect_answer(&env,
                      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
                      VD_TYPE_PTR, LDNS_RCODE_NOERROR, "localhost.");
        cr_assert_eq(env.counters.local_answers, 11);
        cr_assert_eq(env.counters.servfail_answers, 0);
}

Test(query, other_names_near_the_special_zones_are_not_special)
{
        vd_query_env env = {0};
        const char *ordinary[] = {
            "localhost.example", "localhostx", "invalid.example", "1.0.0.128.in-addr.arpa",
            "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
            "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
            /* loop probes of another vpcdns must travel on (see special.h) */
            "0123456789abcdef.vpcdns-loop-check.invalid"};
        for (size_t i = 0; i < sizeof(ordinary) / sizeof(ordinary[0]); i++) {
                vd_query_outcome outcome;
                ldns_pkt *p = ask(&env, ordinary[i], VD_TYPE_PTR, &outcome);
                cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_SERVFAIL,
                             "%s must go to the (missing) upstream", ordinary[i]);
                ldns_pkt_free(p);
        }
        cr_assert_eq(env.counters.local_answers, 0);
}

/* A snapshot with a zone the user wrote for localhost.: 10.9.9.9 */
static vd_snapshot *users_localhost(void)
{
        static const uint8_t soa[] = {2, 'n', 's', 0, 2, 'h', 'm', 0, 0, 0,  0, 1, 0, 0,
                                      0, 60,  0,   0, 0, 60,  0,   0, 0, 60, 0, 0, 0, 60};
        static const uint8_t a_rdata[] = {10, 9, 9, 9};
        uint8_t owner[VD_NAME_MAX];
        size_t owner_len = 0;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_name_from_text("localhost", owner, &owner_len), 0);
        cr_assert_eq(vd_builder_add_zone(b, owner, true, soa, sizeof(soa), 60, "user", &err), 0,
                     "%s", err.msg);
        cr_assert_eq(vd_builder_add_rr(b, owner, VD_TYPE_A, 60, a_rdata, 4, "user", &err), 0);
        cr_assert_eq(vd_builder_finish(b, &snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return snap;
}

Test(query, a_zone_the_user_wrote_for_a_special_name_wins)
{
        vd_query_env env = {0};
        env.snapshot = users_localhost();
        expect_answer(&env, "localhost", VD_TYPE_A, LDNS_RCODE_NOERROR, "10.9.9.9");
        expect_answer(&env, "x.localhost", VD_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL);
        expect_answer(&env, "x.invalid", VD_TYPE_A, LDNS_RCODE_NXDOMAIN, NULL);
        vd_snapshot_unref((vd_snapshot *)env.snapshot);
}

Test(query, a_rule_for_a_special_zone_wins_a_broader_rule_does_not)
{
        static const char *ruled_away[] = {"localhost", "db.localhost", "invalid",
                                           "127.in-addr.arpa"};
        for (size_t i = 0; i < sizeof(ruled_away) / sizeof(ruled_away[0]); i++) {
                harness h;
                harness_start(&h, ruled_away[i], false, NULL);
                vd_query_outcome outcome;
                char name[80];
                snprintf(name, sizeof(name), "x.%s", ruled_away[i]);
                ask(&h.env, name, VD_TYPE_A, &outcome);
                cr_assert_eq(outcome, VD_QUERY_PENDING, "a rule for %s sends %s upstream",
                             ruled_away[i], name);
                harness_finish(&h, outcome);
        }
        static const char *broader[] = {".", "arpa", "in-addr.arpa"};
        for (size_t i = 0; i < sizeof(broader) / sizeof(broader[0]); i++) {
                harness h;
                harness_start(&h, broader[i], false, NULL);
                expect_answer(&h.env, "1.0.0.127.in-addr.arpa", VD_TYPE_PTR, LDNS_RCODE_NOERROR,
                              "localhost.");
                expect_answer(&h.env, "x.localhost", VD_TYPE_A, LDNS_RCODE_NOERROR, "127.0.0.1");
                harness_finish(&h, VD_QUERY_REPLY);
        }
}

/* A zone with "lh.corp.test" CNAME "localhost". */
static vd_snapshot *cname_to_localhost(void)
{
        static const uint8_t soa[] = {2, 'n', 's', 0, 2, 'h', 'm', 0, 0, 0,  0, 1, 0, 0,
                                      0, 60,  0,   0, 0, 60,  0,   0, 0, 60, 0, 0, 0, 60};
        uint8_t apex[VD_NAME_MAX], owner[VD_NAME_MAX], target[VD_NAME_MAX];
        size_t n, tlen;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_name_from_text("corp.test", apex, &n), 0);
        cr_assert_eq(vd_builder_add_zone(b, apex, true, soa, sizeof(soa), 60, "z", &err), 0);
        cr_assert_eq(vd_name_from_text("lh.corp.test", owner, &n), 0);
        cr_assert_eq(vd_name_from_text("localhost", target, &tlen), 0);
        cr_assert_eq(
            vd_builder_add_rr(b, owner, VD_TYPE_CNAME, 60, target, (uint16_t)tlen, "z", &err), 0,
            "%s", err.msg);
        cr_assert_eq(vd_builder_finish(b, &snap, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return snap;
}

/* Asks lh.corp.test A; true when the answer is the CNAME then 127.0.0.1. */
static bool lh_is_local(vd_query_env *env, vd_query_outcome *outcome)
{
        ldns_pkt *p = ask(env, "lh.corp.test", VD_TYPE_A, outcome);
        if (p == NULL)
                return false;
        bool local = ldns_pkt_get_rcode(p) == LDNS_RCODE_NOERROR && ldns_pkt_ancount(p) == 2;
        if (local) {
                char *addr = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), 1), 0));
                local = strcmp(addr, "127.0.0.1") == 0;
                free(addr);
        }
        ldns_pkt_free(p);
        return local;
}

Test(query, a_zone_cname_to_localhost_is_answered_locally_as_localhost_is)
{
        vd_query_env env = {0}; /* no upstream at all */
        env.snapshot = cname_to_localhost();
        vd_query_outcome outcome;
        cr_assert(lh_is_local(&env, &outcome), "the whole chain, from local data");
        cr_assert_eq(env.counters.local_answers, 1);
        vd_snapshot_unref((vd_snapshot *)env.snapshot);

        harness h; /* a rule the user wrote for localhost. sends the target upstream */
        harness_start(&h, "localhost", false, cname_to_localhost());
        cr_assert_not(lh_is_local(&h.env, &outcome));
        cr_assert_eq(outcome, VD_QUERY_PENDING);
        harness_finish(&h, outcome);
}

/* ---- the counter table ----------------------------------------------------------------------- */

Test(query, every_counter_of_the_table_is_summed_and_described)
{
        vd_counters one, sum = {0};
        uint64_t i = 0;
#define SET(name, kind, help) one.name = ++i;
        VD_COUNTERS(SET)
#undef SET
        vd_counters_add(&sum, &one);
        vd_counters_add(&sum, &one);
        i = 0;
#define CHECK(name, kind, help)                                                                    \
        cr_assert_eq(sum.name, 2 * ++i, #name);                                                    \
        cr_assert(kind == VD_COUNTER_TOTAL || kind == VD_COUNTER_GAUGE, #name);                    \
        cr_assert_gt(strlen(help), 10, #name ": a help line");
        VD_COUNTERS(CHECK)
#undef CHECK
        cr_assert_eq(sizeof(vd_counters), i * sizeof(uint64_t), "one field per row");
}

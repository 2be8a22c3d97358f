/* test_chase.c — tests of resolver/chase.c through the query pipeline: a zone CNAME whose
 * target only the upstream knows, answered by the fake upstream of support/fake_upstream.h on
 * 127.0.0.1 inside the test's own libuv loop, in shapes of this file's own. The upstream compresses
 * its names against its own question, so the merged answer shows the chain's records are
 * re-encoded, not copied; the second ask comes from the cache without an upstream query; an
 * upstream SERVFAIL is SERVFAIL; a client over its pending limit gets SERVFAIL at once; closing the
 * worker while the chase waits answers the client exactly once, with len 0; RRSIGs and a DNAME keep
 * their places in the chain; and the final name's authority records are dropped before anything is
 * truncated. Every test is bounded by a guard timer and ends with no handle left open. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ldns/ldns.h>
#include <string.h>
#include <uv.h>

#include "vpcdns/cache.h"
#include "vpcdns/chase.h"
#include "vpcdns/query.h"
#include "vpcdns/resolve.h"
#include "vpcdns/wire.h"

#include "support/client.h"
#include "support/dns_msg.h"
#include "support/fake_upstream.h"

/* ---- local data: zone chase.test, "web" CNAME "www.up.test" --------------------------------- */

static vd_snapshot *zone(void)
{
        static const uint8_t soa[] = {2, 'n', 's', 0, 2, 'h', 'm', 0, 0, 0,  0, 1, 0, 0,
                                      0, 60,  0,   0, 0, 60,  0,   0, 0, 60, 0, 0, 0, 60};
        uint8_t apex[VD_NAME_MAX], owner[VD_NAME_MAX], target[VD_NAME_MAX];
        size_t n, tlen;
        vd_error err = {{0}};
        vd_snapshot *s = NULL;
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_name_from_text("chase.test", apex, &n), 0);
        cr_assert_eq(vd_builder_add_zone(b, apex, true, soa, sizeof(soa), 60, "z", &err), 0);
        cr_assert_eq(vd_name_from_text("web.chase.test", owner, &n), 0);
        cr_assert_eq(vd_name_from_text("Www.Up.Test", target, &tlen), 0);
        cr_assert_eq(
            vd_builder_add_rr(b, owner, VD_TYPE_CNAME, 300, target, (uint16_t)tlen, "z", &err), 0,
            "%s", err.msg);
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return s;
}

/* ---- the upstream ------------------------------------------------------------------------- */

enum shape {
        UP_CHAIN,    /* www.up.test CNAME web2.up.test, web2 A 192.0.2.7 */
        UP_SERVFAIL, /* SERVFAIL */
        UP_SIGNED,   /* UP_CHAIN with an RRSIG after each RRset */
        UP_DNAME,    /* up.test DNAME down.test, www.up.test CNAME www.down.test, its A */
        UP_NXBIG,    /* NXDOMAIN, a long SOA and NS in the authority section */
};

/* An RRSIG's opaque rdata (the chase never reads it): covered type, then filler. */
static void put_rrsig(dns_msg *m, size_t owner, unsigned covered)
{
        uint8_t rd[24] = {0};
        rd[0] = (uint8_t)(covered >> 8);
        rd[1] = (uint8_t)covered;
        put_ptr(m, owner);
        rr_tail(m, 46, VD_CLASS_IN, 3600, rd, sizeof(rd));
}

/* A label of n copies of c. */
static void put_label(dns_msg *m, char c, size_t n)
{
        put8(m, (unsigned)n);
        for (size_t i = 0; i < n; i++)
                put8(m, (uint8_t)c);
}

/* The upstream's answer in the harness's shape; names compressed against its own question
 * ("www.up.test", at offset 12), so that a copy of them would point into nothing. */
static bool shaped_answer(fake_upstream *up, const uint8_t *q, const vd_query_info *qi, bool tcp,
                          dns_msg *out)
{
        const enum shape shape = *(const enum shape *)up->owner;
        static const unsigned answers[] = {2, 0, 4, 3, 0};
        unsigned rcode = shape == UP_SERVFAIL ? VD_RCODE_SERVFAIL
                         : shape == UP_NXBIG  ? VD_RCODE_NXDOMAIN
                                              : 0;
        dns_msg m;
        (void)tcp;
        header(&m, qi->id, UP_FLAGS | VD_FLAG_AA | rcode, 1, answers[shape], 0, 0);
        for (size_t i = VD_HEADER_LEN; i < qi->question_end; i++)
                put8(&m, q[i]);
        const uint8_t a[4] = {192, 0, 2, 7};
        size_t up_test = VD_HEADER_LEN + 4; /* "up.test." in the question */
        if (shape == UP_CHAIN || shape == UP_SIGNED) {
                put_ptr(&m, VD_HEADER_LEN);
                size_t fixed = m.n;
                rr_tail(&m, VD_TYPE_CNAME, VD_CLASS_IN, 3600, NULL, 0);
                size_t target = m.n;
                put8(&m, 4);
                for (const char *p = "web2"; *p; p++)
                        put8(&m, (uint8_t)*p);
                put_ptr(&m, up_test);
                m.b[fixed + 9] = (uint8_t)(m.n - target);
                if (shape == UP_SIGNED)
                        put_rrsig(&m, VD_HEADER_LEN, VD_TYPE_CNAME);
                put_ptr(&m, target);
                rr_tail(&m, VD_TYPE_A, VD_CLASS_IN, 123, a, sizeof(a));
                if (shape == UP_SIGNED)
                        put_rrsig(&m, target, VD_TYPE_A);
        } else if (shape == UP_DNAME) {
                put_ptr(&m, up_test);
                size_t fixed = m.n;
                rr_tail(&m, 39, VD_CLASS_IN, 600, NULL, 0);
                size_t dname = m.n;
                put_name(&m, "down.test");
                m.b[fixed + 9] = (uint8_t)(m.n - dname);
                put_ptr(&m, VD_HEADER_LEN);
                fixed = m.n;
                rr_tail(&m, VD_TYPE_CNAME, VD_CLASS_IN, 600, NULL, 0);
                size_t target = m.n;
                put8(&m, 3);
                put8(&m, 'w');
                put8(&m, 'w');
                put8(&m, 'w');
                put_ptr(&m, dname);
                m.b[fixed + 9] = (uint8_t)(m.n - target);
                put_ptr(&m, target);
                rr_tail(&m, VD_TYPE_A, VD_CLASS_IN, 600, a, sizeof(a));
        } else if (shape == UP_NXBIG) {
                m.b[9] = 2; /* NSCOUNT */
                put_ptr(&m, up_test);
                size_t fixed = m.n;
                rr_tail(&m, VD_TYPE_SOA, VD_CLASS_IN, 900, NULL, 0);
                size_t rdata = m.n;
                put_label(&m, 'm', 60);
                put_label(&m, 'n', 60);
                put_ptr(&m, up_test);
                put_label(&m, 'r', 60);
                put_label(&m, 's', 60);
                put_ptr(&m, up_test);
                for (int i = 0; i < 5; i++)
                        put32(&m, 900);
                m.b[fixed + 8] = (uint8_t)((m.n - rdata) >> 8);
                m.b[fixed + 9] = (uint8_t)(m.n - rdata);
                put_ptr(&m, up_test);
                fixed = m.n;
                rr_tail(&m, VD_TYPE_NS, VD_CLASS_IN, 900, NULL, 0);
                rdata = m.n;
                put_label(&m, 'x', 60);
                put_label(&m, 'y', 60);
                put_label(&m, 'z', 60);
                put_ptr(&m, up_test);
                m.b[fixed + 9] = (uint8_t)(m.n - rdata);
        }
        *out = m;
        return true;
}

/* ---- the pipeline ------------------------------------------------------------------------- */

typedef struct harness {
        uv_loop_t loop;
        uv_timer_t guard;
        fake_upstream up; /* its answers: shaped_answer, in the shape below */
        enum shape shape;
        vd_forwarder *fwd;
        vd_cache *cache;
        vd_resolver *res;
        vd_snapshot *snap;
        vd_query_env env;
        vd_query_client client; /* addr NULL unless a test sets it */
        int replies;
        size_t reply_len;
        uint8_t reply[4096];
        bool closed;
} harness;

static void close_pipeline(harness *h)
{
        if (h->closed)
                return;
        h->closed = true;
        h->env.resolver = NULL;
        vd_resolver_close(h->res);
        vd_forwarder_close(h->fwd);
        fake_upstream_stop(&h->up);
        uv_close((uv_handle_t *)&h->guard, NULL);
}

static void on_guard(uv_timer_t *t)
{
        close_pipeline(t->data);
}

static void on_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        (void)source;
        harness *h = arg;
        h->replies++;
        h->reply_len = len;
        if (len > 0) {
                cr_assert_leq(len, sizeof(h->reply));
                memcpy(h->reply, resp, len);
        }
        if (!h->closed)
                uv_stop(&h->loop);
}

static void start(harness *h)
{
        memset(h, 0, sizeof(*h));
        cr_assert_eq(uv_loop_init(&h->loop), 0);
        fake_upstream_init(&h->up, FAKE_ANSWER);
        h->up.answer = shaped_answer;
        h->up.owner = &h->shape;
        cr_assert(fake_upstream_start(&h->up, &h->loop, false, "127.0.0.1"));
        uv_timer_init(&h->loop, &h->guard);
        h->guard.data = h;
        uv_timer_start(&h->guard, on_guard, 5000, 0);

        vd_forward_options opt = {.servers = &h->up.addr, .n_servers = 1, .timeout_ms = 1000};
        vd_error err = {{0}};
        cr_assert_eq(vd_forwarder_new(&h->loop, &opt, &h->fwd, &err), 0, "%s", err.msg);
        vd_cache_options co;
        vd_cache_options_default(&co);
        cr_assert_eq(vd_cache_new(&co, &h->cache), 0);
        vd_resolver_options ro;
        vd_resolver_options_default(&ro);
        cr_assert_eq(vd_resolver_new(&h->loop, h->fwd, h->cache, &ro, &h->res), 0);
        h->snap = zone();
        h->env.snapshot = h->snap;
        h->env.forwarder = h->fwd;
        h->env.resolver = h->res;
        h->env.loop = &h->loop;
}

static void finish(harness *h)
{
        close_pipeline(h);
        uv_run(&h->loop, UV_RUN_DEFAULT);
        cr_assert_eq(uv_loop_close(&h->loop), 0, "a handle was left open");
        vd_cache_free(h->cache);
        vd_snapshot_unref(h->snap);
}

/* Asks "WEB.chase.test" A (ID 0x7777, EDNS when edns); the outcome, out filled on REPLY. */
static vd_query_outcome ask(harness *h, bool edns, uint8_t *out, size_t *out_len)
{
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 0x7777, "WEB.chase.test", VD_TYPE_A, edns, false);
        return vd_query_handle(&h->env, &h->client, q.b, q.n, false, out, VD_UDP_PAYLOAD, out_len,
                               on_reply, h);
}

/* Checks the whole chain: web CNAME www.up.test, www CNAME web2.up.test, web2 A 192.0.2.7;
 * with own_ttls, every record with the TTL its source gave (the cache serves its entry's
 * remaining lifetime instead). */
static void expect_chain(const uint8_t *resp, size_t len, bool own_ttls)
{
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, resp, len), LDNS_STATUS_OK);
        cr_assert_eq(ldns_pkt_id(p), 0x7777);
        cr_assert_eq(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        cr_assert_not(ldns_pkt_aa(p), "never AA");
        char *q = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
        cr_assert_str_eq(q, "WEB.chase.test.", "the question as the client sent it");
        free(q);
        ldns_rr_list *an = ldns_pkt_answer(p);
        cr_assert_eq(ldns_rr_list_rr_count(an), 3);
        static const char *owners[] = {"WEB.chase.test.", "www.up.test.", "web2.up.test."};
        static const uint32_t ttls[] = {300, 3600, 123};
        static const ldns_rr_type types[] = {LDNS_RR_TYPE_CNAME, LDNS_RR_TYPE_CNAME,
                                             LDNS_RR_TYPE_A};
        for (size_t i = 0; i < 3; i++) {
                ldns_rr *rr = ldns_rr_list_rr(an, i);
                char *o = ldns_rdf2str(ldns_rr_owner(rr));
                cr_assert_eq(strcasecmp(o, owners[i]), 0, "record %zu owned by %s", i, o);
                free(o);
                cr_assert_eq(ldns_rr_get_type(rr), types[i]);
                cr_assert_leq(ldns_rr_ttl(rr), ttls[i], "record %zu: TTL %u", i, ldns_rr_ttl(rr));
                cr_assert(!own_ttls || ldns_rr_ttl(rr) + 2 >= ttls[i],
                          "record %zu keeps its own TTL: %u", i, ldns_rr_ttl(rr));
        }
        char *t = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, 1), 0));
        cr_assert_str_eq(t, "web2.up.test.", "the upstream's compressed target, expanded");
        free(t);
        t = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, 2), 0));
        cr_assert_str_eq(t, "192.0.2.7");
        free(t);
        ldns_pkt_free(p);
}

Test(chase, zone_cname_to_an_upstream_name_returns_the_whole_chain_then_from_cache)
{
        harness h;
        start(&h);
        uint8_t out[VD_UDP_PAYLOAD];
        size_t out_len = 0;
        cr_assert_eq(ask(&h, true, out, &out_len), VD_QUERY_PENDING);
        cr_assert_eq(h.env.counters.forwarded, 1);
        uv_run(&h.loop, UV_RUN_DEFAULT);
        cr_assert_eq(h.replies, 1);
        expect_chain(h.reply, h.reply_len, true);
        cr_assert_eq(vd_wire_get16(h.reply + 10), 1, "our OPT, the upstream's dropped");
        cr_assert_eq(h.up.udp_queries, 1);

        /* again: the target is cached, the answer comes at once, no upstream query */
        cr_assert_eq(ask(&h, false, out, &out_len), VD_QUERY_REPLY);
        expect_chain(out, out_len, false);
        cr_assert_eq(vd_wire_get16(out + 10), 0, "no OPT for a client without EDNS");
        cr_assert_eq(h.up.udp_queries, 1);
        cr_assert_eq(h.replies, 1);
        finish(&h);
        cr_assert_eq(h.replies, 1, "exactly one reply");
}

Test(chase, upstream_servfail_is_servfail)
{
        harness h;
        start(&h);
        h.shape = UP_SERVFAIL;
        uint8_t out[VD_UDP_PAYLOAD];
        size_t out_len = 0;
        cr_assert_eq(ask(&h, false, out, &out_len), VD_QUERY_PENDING);
        uv_run(&h.loop, UV_RUN_DEFAULT);
        cr_assert_eq(h.replies, 1);
        cr_assert_geq(h.reply_len, VD_HEADER_LEN);
        cr_assert_eq(h.reply[3] & 0xF, VD_RCODE_SERVFAIL);
        cr_assert_eq(vd_wire_get16(h.reply + 6), 0, "no partial chain with SERVFAIL");
        finish(&h);
}

Test(chase, a_client_over_its_pending_limit_gets_servfail_at_once)
{
        harness h;
        start(&h);
        /* the client already has its one allowed query upstream */
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
        cr_assert_eq(vd_ratelimit_pending_new(0, &h.env.pending), 0);
        h.env.max_pending = 1;
        cr_assert_geq(vd_ratelimit_pending_acquire(h.env.pending, (struct sockaddr *)&addr, 1), 0);
        h.client.addr = (struct sockaddr *)&addr;
        uint8_t out[VD_UDP_PAYLOAD];
        size_t out_len = 0;
        cr_assert_eq(ask(&h, false, out, &out_len), VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL);
        cr_assert_eq(h.env.counters.forward_denied, 1);
        cr_assert_eq(h.up.udp_queries, 0);
        finish(&h);
        cr_assert_eq(h.replies, 0);
        vd_ratelimit_pending_free(h.env.pending);
}

Test(chase, closing_while_waiting_answers_once_with_nothing)
{
        harness h;
        start(&h);
        h.up.mode = FAKE_SILENT;
        uint8_t out[VD_UDP_PAYLOAD];
        size_t out_len = 0;
        cr_assert_eq(ask(&h, false, out, &out_len), VD_QUERY_PENDING);
        finish(&h); /* closes the resolver while the chase waits */
        cr_assert_eq(h.replies, 1, "the client is answered exactly once");
        cr_assert_eq(h.reply_len, 0, "len 0: nothing to send while closing");
}

Test(chase, without_a_resolver_the_chain_is_servfail)
{
        vd_snapshot *s = zone();
        vd_query_env env = {0};
        env.snapshot = s;
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, "web.chase.test", VD_TYPE_A, false, false);
        uint8_t out[512];
        size_t out_len = 0;
        cr_assert_eq(
            vd_query_handle(&env, NULL, q.b, q.n, false, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_REPLY);
        cr_assert_eq(out[3] & 0xF, VD_RCODE_SERVFAIL);
        vd_snapshot_unref(s);
}

/* The records of the answer and authority sections, as "owner TYPE" texts in order. */
static void expect_sections(const uint8_t *resp, size_t len, ldns_pkt_rcode rcode,
                            const char *const *an, size_t n_an, size_t n_ns, bool tc)
{
        ldns_pkt *p = NULL;
        cr_assert_eq(ldns_wire2pkt(&p, resp, len), LDNS_STATUS_OK, "ldns must read our answer");
        cr_assert_eq(ldns_pkt_get_rcode(p), rcode, "rcode %d", ldns_pkt_get_rcode(p));
        cr_assert_eq(ldns_pkt_tc(p), tc);
        ldns_rr_list *list = ldns_pkt_answer(p);
        cr_assert_eq(ldns_rr_list_rr_count(list), n_an, "answer records: %zu",
                     ldns_rr_list_rr_count(list));
        for (size_t i = 0; i < n_an; i++) {
                ldns_rr *rr = ldns_rr_list_rr(list, i);
                char *o = ldns_rdf2str(ldns_rr_owner(rr));
                char *t = ldns_rr_type2str(ldns_rr_get_type(rr));
                char text[300];
                snprintf(text, sizeof(text), "%s %s", o, t);
                cr_assert_eq(strcasecmp(text, an[i]), 0, "record %zu is %s, not %s", i, text,
                             an[i]);
                free(o);
                free(t);
        }
        cr_assert_eq(ldns_rr_list_rr_count(ldns_pkt_authority(p)), n_ns,
                     "authority records: %zu (%zu octets)",
                     ldns_rr_list_rr_count(ldns_pkt_authority(p)), len);
        ldns_pkt_free(p);
}

/* Asks through a fresh pipeline with the upstream in this shape; the reply lands in h. */
static void ask_shape(harness *h, enum shape shape, bool edns)
{
        start(h);
        h->shape = shape;
        uint8_t out[VD_UDP_PAYLOAD];
        size_t out_len = 0;
        cr_assert_eq(ask(h, edns, out, &out_len), VD_QUERY_PENDING);
        uv_run(&h->loop, UV_RUN_DEFAULT);
        cr_assert_eq(h->replies, 1);
}

Test(chase, signatures_stay_with_their_rrsets)
{
        harness h;
        ask_shape(&h, UP_SIGNED, true);
        static const char *const an[] = {"WEB.chase.test. CNAME", "www.up.test. CNAME",
                                         "www.up.test. RRSIG", "web2.up.test. A",
                                         "web2.up.test. RRSIG"};
        expect_sections(h.reply, h.reply_len, LDNS_RCODE_NOERROR, an, 5, 0, false);
        finish(&h);
}

Test(chase, a_dname_comes_along_with_the_cname_it_made)
{
        harness h;
        ask_shape(&h, UP_DNAME, false);
        static const char *const an[] = {"WEB.chase.test. CNAME", "up.test. DNAME",
                                         "www.up.test. CNAME", "www.down.test. A"};
        expect_sections(h.reply, h.reply_len, LDNS_RCODE_NOERROR, an, 4, 0, false);
        finish(&h);
}

Test(chase, authority_records_go_first_when_512_octets_are_too_few)
{
        harness h;
        ask_shape(&h, UP_NXBIG, false); /* no EDNS: 512 octets */
        static const char *const an[] = {"WEB.chase.test. CNAME"};
        cr_assert_leq(h.reply_len, 512);
        expect_sections(h.reply, h.reply_len, LDNS_RCODE_NXDOMAIN, an, 1, 0, false);
        finish(&h);
        /* with room, the final name's SOA and NS come along */
        ask_shape(&h, UP_NXBIG, true);
        cr_assert_gt(h.reply_len, 512);
        expect_sections(h.reply, h.reply_len, LDNS_RCODE_NXDOMAIN, an, 1, 2, false);
        finish(&h);
}

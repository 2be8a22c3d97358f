/* test_resolve.c — tests of resolver/resolve.c: the cache in front of the upstream, merging of
 * identical questions in flight, serve-stale (failure, slow upstream, stale_max), prefetch and
 * shutdown. Each test runs a real forwarder against the fake UDP upstream of
 * support/fake_upstream.h on 127.0.0.1 inside the test's own libuv loop (immediate, delayed,
 * silent or SERVFAIL answers, every query counted), is bounded by a guard timer, and checks
 * that the loop ends with no handle left; the two-worker tests run it on its own thread,
 * holding its answers until both workers have asked. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "vpcdns/stats.h"
#include "vpcdns/resolve.h"
#include "vpcdns/wire.h"

#include "support/client.h"
#include "support/dns_msg.h"
#include "support/fake_upstream.h"

/* ---- messages ----------------------------------------------------------------------------- */

/* An upstream answer to the question in query[12..question_end): n A records 192.0.2.octet+i
 * owned by the question name (compression pointer), TTL ttl. */
static size_t build_answer(const uint8_t *query, size_t question_end, unsigned id, unsigned rcode,
                           unsigned n, uint32_t ttl, unsigned octet, uint8_t *out, size_t cap)
{
        dns_msg m;
        header(&m, id, UP_FLAGS | rcode, 1, n, 0, 0);
        for (size_t i = VD_HEADER_LEN; i < question_end; i++)
                put8(&m, query[i]);
        for (unsigned i = 0; i < n; i++) {
                const uint8_t rd[4] = {192, 0, 2, (uint8_t)((octet + i) & 0xFF)};
                put_ptr(&m, VD_HEADER_LEN);
                rr_tail(&m, VD_TYPE_A, VD_CLASS_IN, ttl, rd, sizeof(rd));
        }
        cr_assert_leq(m.n, cap);
        memcpy(out, m.b, m.n);
        return m.n;
}

/* ---- scenario ------------------------------------------------------------------------------ */

#define MAX_Q 8

typedef struct scenario scenario;

typedef struct reply {
        scenario *s;
        int calls;
        bool sync;       /* answered by vd_resolver_query itself (VD_QUERY_REPLY) */
        unsigned source; /* the reply's vd_stats_source (not set for a sync answer) */
        size_t len;
        uint64_t at_ns;
        uint8_t buf[4096];
        dns_msg q; /* the client's packet, kept to compare the question */
        vd_query_info qi;
} reply;

struct scenario {
        uv_loop_t loop;
        vd_forwarder *fwd;
        vd_cache *cache;
        vd_resolver *res;
        fake_upstream up;
        uv_timer_t guard, linger, later;
        bool guard_fired, finished, res_closed;
        bool in_query;
        uint64_t start_ns;
        reply r[MAX_Q];
        int expected;       /* asynchronous replies to wait for */
        int received;       /* asynchronous replies (first call each) */
        int want_answers;   /* upstream answers to wait for (0: none) */
        unsigned linger_ms; /* after both conditions, before finishing */
        void (*later_fn)(scenario *s);
        vd_resolver_counters rc; /* taken just before the resolver closes */
        vd_forward_counters fc;  /* taken just before the forwarder closes */
};

static void close_resolver_now(scenario *s)
{
        if (s->res_closed)
                return;
        vd_resolver_counters_get(s->res, &s->rc);
        s->res_closed = true;
        vd_resolver_close(s->res);
}

static void on_linger(uv_timer_t *t);

static void finish(scenario *s)
{
        if (s->finished)
                return;
        s->finished = true;
        close_resolver_now(s);
        vd_forwarder_counters_get(s->fwd, &s->fc);
        vd_forwarder_close(s->fwd);
        fake_upstream_stop(&s->up);
        uv_close((uv_handle_t *)&s->guard, NULL);
        uv_close((uv_handle_t *)&s->linger, NULL);
        uv_close((uv_handle_t *)&s->later, NULL);
}

static void check_done(scenario *s)
{
        if (s->finished || s->received < s->expected || s->up.answers < s->want_answers)
                return;
        if (!uv_is_active((uv_handle_t *)&s->linger))
                uv_timer_start(&s->linger, on_linger, s->linger_ms, 0);
}

static void on_guard(uv_timer_t *t)
{
        scenario *s = t->data;
        s->guard_fired = true;
        finish(s);
}

static void on_linger(uv_timer_t *t)
{
        finish(t->data);
}

static void on_later(uv_timer_t *t)
{
        scenario *s = t->data;
        s->later_fn(s);
}

static void on_up_sent(fake_upstream *up)
{
        check_done(up->owner);
}

static void on_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        reply *r = arg;
        scenario *s = r->s;
        cr_assert_not(s->in_query, "reply called from inside vd_resolver_query");
        r->calls++;
        r->len = len;
        r->source = source;
        r->at_ns = uv_hrtime();
        if (len > 0) {
                cr_assert_not_null(resp);
                cr_assert_leq(len, sizeof(r->buf));
                memcpy(r->buf, resp, len);
        }
        if (r->calls > 1)
                return;
        s->received++;
        check_done(s);
}

typedef struct setup {
        fake_mode mode;
        unsigned budget_ms;
        unsigned max_qps;
        vd_resolver_options ro;
        bool no_cache;
} setup;

static setup default_setup(fake_mode mode)
{
        setup st = {.mode = mode, .budget_ms = 2000};
        vd_resolver_options_default(&st.ro);
        return st;
}

static void scenario_init(scenario *s, const setup *st)
{
        memset(s, 0, sizeof(*s));
        cr_assert_eq(uv_loop_init(&s->loop), 0);
        /* no OPT in its answers; 192.0.2.99 unless a test says otherwise */
        fake_upstream_init(&s->up, st->mode);
        s->up.opt = false;
        s->up.octet = 99;
        cr_assert(fake_upstream_start(&s->up, &s->loop, false, "127.0.0.1"));
        s->up.owner = s;
        s->up.on_sent = on_up_sent;
        vd_forward_options fo = {.servers = &s->up.addr,
                                 .n_servers = 1,
                                 .timeout_ms = st->budget_ms,
                                 .max_qps = st->max_qps};
        vd_error err;
        cr_assert_eq(vd_forwarder_new(&s->loop, &fo, &s->fwd, &err), 0, "%s", err.msg);
        if (!st->no_cache) {
                vd_cache_options co;
                vd_cache_options_default(&co);
                cr_assert_eq(vd_cache_new(&co, &s->cache), 0);
        }
        cr_assert_eq(vd_resolver_new(&s->loop, s->fwd, s->cache, &st->ro, &s->res), 0);
        uv_timer_init(&s->loop, &s->guard);
        uv_timer_init(&s->loop, &s->linger);
        uv_timer_init(&s->loop, &s->later);
        s->guard.data = s->linger.data = s->later.data = s;
        uv_timer_start(&s->guard, on_guard, 8000, 0);
        s->linger_ms = 50;
        for (int i = 0; i < MAX_Q; i++)
                s->r[i].s = s;
        uv_update_time(&s->loop); /* setting up took a while: timers start from now */
        s->start_ns = uv_hrtime();
}

/* Asks question i; a synchronous answer is recorded like a reply. */
static vd_query_outcome ask(scenario *s, int i, unsigned id, const char *name, bool edns,
                            size_t max_len)
{
        reply *r = &s->r[i];
        dns_msg scratch;
        vd_query_info qi;
        client_query(&scratch, &qi, id, name, VD_TYPE_A, edns, false);
        r->q = scratch;
        client_query(&r->q, &r->qi, id, name, VD_TYPE_A, edns, false);
        uint8_t out[VD_TCP_MAX];
        size_t out_len = 0;
        s->in_query = true;
        vd_query_outcome o =
            vd_resolver_query(s->res, &qi, max_len, out, sizeof(out), &out_len, on_reply, r);
        s->in_query = false;
        memset(&scratch, 0xAB, sizeof(scratch)); /* the resolver must have copied the question */
        if (o == VD_QUERY_REPLY) {
                cr_assert_gt(out_len, 0);
                cr_assert_leq(out_len, sizeof(r->buf));
                r->sync = true;
                r->calls++;
                r->len = out_len;
                r->at_ns = uv_hrtime();
                memcpy(r->buf, out, out_len);
        }
        return o;
}

static void run_later(scenario *s, unsigned ms, void (*fn)(scenario *s))
{
        s->later_fn = fn;
        uv_timer_start(&s->later, on_later, ms, 0);
}

/* Runs the loop to its end: no handle may be left (the resolver's timers included). */
static void scenario_run(scenario *s)
{
        check_done(s);
        cr_assert_eq(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
        cr_assert_not(s->guard_fired, "scenario did not finish in time");
}

static void scenario_free(scenario *s)
{
        cr_assert_eq(uv_loop_close(&s->loop), 0, "handles left open");
        vd_cache_free(s->cache);
}

static double elapsed_ms(const scenario *s, const reply *r)
{
        return (double)(r->at_ns - s->start_ns) / 1e6;
}

static ldns_pkt *parse(const uint8_t *b, size_t n)
{
        ldns_pkt *p = NULL;
        cr_assert_gt(n, 0, "no response");
        cr_assert_eq(ldns_wire2pkt(&p, b, n), LDNS_STATUS_OK, "response does not parse");
        return p;
}

/* Checks a reply: its rcode, and for NOERROR one A record 192.0.2.octet with TTL ttl. */
static void assert_a(const reply *r, unsigned rcode, unsigned octet, uint32_t ttl)
{
        cr_assert_eq(r->calls, 1, "replied %d times", r->calls);
        ldns_pkt *p = parse(r->buf, r->len);
        cr_assert_eq(ldns_pkt_id(p), r->qi.id, "the client's own ID");
        cr_assert_eq(memcmp(r->buf + VD_HEADER_LEN, r->q.b + VD_HEADER_LEN, r->qi.qname_len + 4u),
                     0, "question as the client spelt it");
        cr_assert_eq(ldns_pkt_get_rcode(p), rcode);
        if (rcode == 0) {
                cr_assert_eq(ldns_pkt_ancount(p), 1);
                ldns_rr *rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
                cr_assert_eq(ldns_rr_ttl(rr), ttl);
                uint8_t *a = ldns_rdf_data(ldns_rr_rdf(rr, 0));
                cr_assert_eq(a[3], octet, "got 192.0.2.%u, want .%u", a[3], octet);
        }
        ldns_pkt_free(p);
}

/* Stores an answer for name (TTL ttl, 192.0.2.octet) as if it had arrived age_ms ago. */
static void seed_cache(scenario *s, const char *name, uint32_t ttl, unsigned octet, uint64_t age_ms)
{
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 1, name, VD_TYPE_A, false, false);
        uint8_t ans[512];
        size_t n = build_answer(q.b, qi.question_end, 1, 0, 1, ttl, octet, ans, sizeof(ans));
        uint64_t now = uv_now(&s->loop);
        cr_assert_gt(now, age_ms, "monotonic clock too young for this test");
        cr_assert_eq(vd_cache_store(s->cache, &qi, ans, n, now - age_ms), 0);
}

/* What the cache itself now answers for name: a fresh entry with this TTL and address. */
static void assert_cached(scenario *s, const char *name, unsigned octet, uint32_t ttl)
{
        reply r = {0};
        client_query(&r.q, &r.qi, 77, name, VD_TYPE_A, false, false);
        r.len = vd_cache_lookup(s->cache, &r.qi, uv_now(&s->loop), 512, r.buf, sizeof(r.buf));
        r.calls = 1;
        cr_assert_gt(r.len, 0, "no fresh cache entry for %s", name);
        assert_a(&r, 0, octet, ttl);
}

/* The resolver's counters as they were when it closed. */
static vd_resolver_counters counters(scenario *s)
{
        cr_assert(s->res_closed);
        return s->rc;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void ask_again(scenario *s)
{
        cr_assert_eq(ask(s, 1, 0x2222, "www.EXAMPLE.com", false, 512), VD_QUERY_REPLY,
                     "second question must be a cache hit");
        check_done(s);
}

Test(resolve, second_question_is_answered_from_the_cache)
{
        scenario s;
        setup st = default_setup(FAKE_ANSWER);
        scenario_init(&s, &st);
        s.expected = 1;
        cr_assert_eq(ask(&s, 0, 0x1111, "www.example.com", false, 512), VD_QUERY_PENDING);
        s.expected = 1;
        s.want_answers = 1;
        s.linger_ms = 300;
        run_later(&s, 150, ask_again);
        scenario_run(&s);
        assert_a(&s.r[0], 0, 99, 300);
        assert_a(&s.r[1], 0, 99, 300);
        cr_assert_eq(s.r[0].source, VD_STATS_SOURCE_UPSTREAM);
        cr_assert(s.r[1].sync);
        cr_assert_eq(s.up.udp_queries, 1, "the cache hit must not go upstream");
        vd_resolver_counters c = counters(&s);
        cr_assert_eq(c.cache_hits, 1);
        cr_assert_eq(c.cache_misses, 1);
        scenario_free(&s);
}

Test(resolve, identical_questions_in_flight_share_one_upstream_query)
{
        scenario s;
        setup st = default_setup(FAKE_ANSWER); /* all three are asked before the loop runs */
        scenario_init(&s, &st);
        s.expected = 3;
        cr_assert_eq(ask(&s, 0, 0x0101, "WWW.Example.COM", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 1, 0x0202, "www.eXample.com", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 2, 0x0303, "other.example.com", false, 512), VD_QUERY_PENDING);
        scenario_run(&s);
        cr_assert_eq(s.up.udp_queries, 2, "one upstream query per distinct question, got %d",
                     s.up.udp_queries);
        assert_a(&s.r[0], 0, 99, 300);
        assert_a(&s.r[1], 0, 99, 300);
        assert_a(&s.r[2], 0, 99, 300);
        ldns_pkt *p = parse(s.r[0].buf, s.r[0].len);
        char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 0)));
        cr_assert_str_eq(owner, "WWW.Example.COM.");
        free(owner);
        ldns_pkt_free(p);
        cr_assert_eq(counters(&s).merged, 1);
        scenario_free(&s);
}

Test(resolve, merged_waiters_get_their_own_edns_and_size_limit)
{
        scenario s;
        setup st = default_setup(FAKE_ANSWER);
        scenario_init(&s, &st);
        /* 20 × 16 octets: a 353-octet answer. Kept under 512 because c-ares 1.18 retries larger
         * UDP answers over TCP, which this upstream does not serve; a limit of 300 octets
         * stands in for a small client limit. */
        s.up.records = 20;
        s.expected = 2;
        cr_assert_eq(ask(&s, 0, 0x0A0A, "big.example.com", false, 300), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 1, 0x0B0B, "big.example.com", true, 1232), VD_QUERY_PENDING);
        scenario_run(&s);
        cr_assert_eq(s.up.udp_queries, 1);

        ldns_pkt *p = parse(s.r[0].buf, s.r[0].len);
        cr_assert_eq(ldns_pkt_get_rcode(p), 0);
        cr_assert_leq(s.r[0].len, 300);
        cr_assert(ldns_pkt_tc(p), "a 300-octet client gets TC");
        cr_assert_eq(ldns_pkt_id(p), 0x0A0A);
        cr_assert_not(ldns_pkt_edns(p), "no OPT for a client without EDNS");
        ldns_pkt_free(p);

        p = parse(s.r[1].buf, s.r[1].len);
        cr_assert_not(ldns_pkt_tc(p));
        cr_assert_eq(ldns_pkt_ancount(p), 20, "the EDNS client gets the whole answer");
        cr_assert(ldns_pkt_edns(p), "EDNS client gets an OPT");
        cr_assert_eq(ldns_pkt_id(p), 0x0B0B);
        ldns_pkt_free(p);
        scenario_free(&s);
}

Test(resolve, silent_upstream_stale_answer_else_servfail)
{
        scenario s;
        setup st = default_setup(FAKE_SILENT);
        st.budget_ms = 400;
        st.ro.stale_answer_ms = 5000; /* the budget runs out first */
        scenario_init(&s, &st);
        seed_cache(&s, "old.example.com", 5, 7, 20000); /* expired 15 s ago */
        s.expected = 2;
        cr_assert_eq(ask(&s, 0, 0x0C0C, "Old.example.com", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 1, 0x0D0D, "never.example.com", false, 512), VD_QUERY_PENDING);
        scenario_run(&s);
        assert_a(&s.r[0], 0, 7, 30);
        assert_a(&s.r[1], VD_RCODE_SERVFAIL, 0, 0);
        cr_assert_eq(s.r[0].source, VD_STATS_SOURCE_STALE);
        cr_assert_eq(s.r[1].source, VD_STATS_SOURCE_ERROR, "a SERVFAIL made here");
        cr_assert_geq(elapsed_ms(&s, &s.r[0]), 350, "answered before the budget ran out");
        vd_resolver_counters c = counters(&s);
        cr_assert_eq(c.stale_answers, 1);
        cr_assert_eq(c.servfails, 1);
        scenario_free(&s);
}

Test(resolve, slow_upstream_stale_at_stale_answer_ms_then_cache_refreshed)
{
        scenario s;
        setup st = default_setup(FAKE_DELAY);
        st.budget_ms = 3000;
        st.ro.stale_answer_ms = 400;
        scenario_init(&s, &st);
        s.up.delay_ms = 2500;
        seed_cache(&s, "slow.example.com", 5, 7, 10000);
        s.expected = 1;
        s.want_answers = 1;
        s.linger_ms = 100;
        cr_assert_eq(ask(&s, 0, 0x0E0E, "slow.example.com", true, 1232), VD_QUERY_PENDING);
        scenario_run(&s);
        assert_a(&s.r[0], 0, 7, 30);
        cr_assert_eq(s.r[0].source, VD_STATS_SOURCE_STALE, "the stale timer's answer");
        double t = elapsed_ms(&s, &s.r[0]);
        cr_assert(t >= 350 && t < 1500, "stale answer after %.0f ms, want ~400", t);
        assert_cached(&s, "slow.example.com", 99, 300);
        scenario_free(&s);
}

Test(resolve, stale_max_exceeded_is_servfail)
{
        scenario s;
        setup st = default_setup(FAKE_SILENT);
        st.budget_ms = 300;
        st.ro.stale_max_s = 10;
        scenario_init(&s, &st);
        seed_cache(&s, "ancient.example.com", 5, 7, 30000); /* expired 25 s ago */
        seed_cache(&s, "recent.example.com", 5, 8, 12000);  /* expired 7 s ago */
        s.expected = 2;
        cr_assert_eq(ask(&s, 0, 1, "ancient.example.com", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 1, 2, "recent.example.com", false, 512), VD_QUERY_PENDING);
        scenario_run(&s);
        assert_a(&s.r[0], VD_RCODE_SERVFAIL, 0, 0);
        assert_a(&s.r[1], 0, 8, 30);
        scenario_free(&s);
}

Test(resolve, stale_disabled_is_servfail)
{
        scenario s;
        setup st = default_setup(FAKE_SILENT);
        st.budget_ms = 300;
        st.ro.stale_max_s = 0;
        scenario_init(&s, &st);
        seed_cache(&s, "old.example.com", 5, 7, 6000);
        s.expected = 1;
        cr_assert_eq(ask(&s, 0, 1, "old.example.com", false, 512), VD_QUERY_PENDING);
        scenario_run(&s);
        assert_a(&s.r[0], VD_RCODE_SERVFAIL, 0, 0);
        scenario_free(&s);
}

static void hit_again(scenario *s)
{
        cr_assert_eq(ask(s, 1, 0x4444, "hot.example.com", false, 512), VD_QUERY_REPLY);
        check_done(s);
}

Test(resolve, prefetch_refreshes_an_entry_hit_in_its_last_tenth)
{
        scenario s;
        setup st = default_setup(FAKE_ANSWER);
        scenario_init(&s, &st);
        seed_cache(&s, "hot.example.com", 100, 7, 95000); /* 5 s of 100 left */
        seed_cache(&s, "cool.example.com", 100, 7, 50000);
        s.want_answers = 1;
        s.linger_ms = 200;
        cr_assert_eq(ask(&s, 0, 0x3333, "hot.example.com", false, 512), VD_QUERY_REPLY);
        assert_a(&s.r[0], 0, 7, 5);
        cr_assert_eq(ask(&s, 2, 0x5555, "cool.example.com", false, 512), VD_QUERY_REPLY);
        assert_a(&s.r[2], 0, 7, 50);
        run_later(&s, 20, hit_again);
        scenario_run(&s);
        cr_assert_eq(s.up.udp_queries, 1, "one background refresh, for the hot name only");
        cr_assert(s.r[1].sync);
        cr_assert_eq(counters(&s).prefetches, 1);
        assert_cached(&s, "hot.example.com", 99, 300);
        assert_cached(&s, "cool.example.com", 7, 50);
        scenario_free(&s);
}

static int queries_before_second;

static void ask_during_servfail(scenario *s)
{
        queries_before_second = s->up.udp_queries;
        cr_assert_eq(ask(s, 1, 0x6666, "flaky.example.com", false, 512), VD_QUERY_REPLY,
                     "a SERVFAIL kept for a few seconds answers at once");
        check_done(s);
}

Test(resolve, upstream_servfail_serves_stale_and_keeps_the_old_entry)
{
        scenario s;
        setup st = default_setup(FAKE_SERVFAIL);
        scenario_init(&s, &st);
        seed_cache(&s, "flaky.example.com", 5, 7, 8000);
        s.expected = 1;
        s.linger_ms = 500;
        cr_assert_eq(ask(&s, 0, 0x5555, "flaky.example.com", false, 512), VD_QUERY_PENDING);
        run_later(&s, 300, ask_during_servfail);
        scenario_run(&s);
        assert_a(&s.r[0], 0, 7, 30);
        assert_a(&s.r[1], 0, 7, 30);
        cr_assert_geq(queries_before_second, 1);
        cr_assert_eq(s.up.udp_queries, queries_before_second, "the second question stayed local");
        scenario_free(&s);
}

Test(resolve, upstream_servfail_without_stale_is_relayed)
{
        scenario s;
        setup st = default_setup(FAKE_SERVFAIL);
        scenario_init(&s, &st);
        s.expected = 1;
        cr_assert_eq(ask(&s, 0, 0x5151, "fail.example.com", true, 1232), VD_QUERY_PENDING);
        scenario_run(&s);
        assert_a(&s.r[0], VD_RCODE_SERVFAIL, 0, 0);
        cr_assert_eq(s.r[0].source, VD_STATS_SOURCE_UPSTREAM, "the upstream's SERVFAIL, relayed");
        scenario_free(&s);
}

Test(resolve, over_budget_answers_at_once_with_stale_or_servfail)
{
        scenario s;
        setup st = default_setup(FAKE_SILENT);
        st.max_qps = 1; /* a burst of one query */
        st.budget_ms = 300;
        scenario_init(&s, &st);
        seed_cache(&s, "b.example.com", 5, 9, 6000);
        s.expected = 1;
        cr_assert_eq(ask(&s, 0, 1, "a.example.com", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 1, 2, "b.example.com", false, 512), VD_QUERY_REPLY);
        cr_assert_eq(ask(&s, 2, 3, "c.example.com", false, 512), VD_QUERY_REPLY);
        assert_a(&s.r[1], 0, 9, 30);
        assert_a(&s.r[2], VD_RCODE_SERVFAIL, 0, 0);
        scenario_run(&s);
        assert_a(&s.r[0], VD_RCODE_SERVFAIL, 0, 0);
        cr_assert_eq(s.fc.budget_refused, 2);
        vd_resolver_counters c = counters(&s);
        cr_assert_eq(c.stale_answers, 1);
        cr_assert_eq(c.servfails, 2);
        scenario_free(&s);
}

Test(resolve, no_forwarder_is_servfail_at_once)
{
        uv_loop_t loop;
        cr_assert_eq(uv_loop_init(&loop), 0);
        vd_resolver *r = NULL;
        cr_assert_eq(vd_resolver_new(&loop, NULL, NULL, NULL, &r), 0);
        dns_msg q;
        vd_query_info qi;
        client_query(&q, &qi, 0x7777, "x.example.com", VD_TYPE_A, false, false);
        uint8_t out[512];
        size_t n = 0;
        cr_assert_eq(vd_resolver_query(r, &qi, 512, out, sizeof(out), &n, on_reply, NULL),
                     VD_QUERY_REPLY);
        cr_assert_eq(n, q.n);
        cr_assert_eq(vd_wire_get16(out), 0x7777);
        cr_assert_eq(out[3] & 0x0F, VD_RCODE_SERVFAIL);
        vd_resolver_close(r);
        cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
        cr_assert_eq(uv_loop_close(&loop), 0);
}

static void close_resolver(scenario *s)
{
        close_resolver_now(s);
        for (int i = 0; i < 3; i++)
                cr_assert_eq(s->r[i].calls, 1, "waiter %d answered during close", i);
        check_done(s);
}

Test(resolve, close_answers_every_waiter_once_with_len_0)
{
        scenario s;
        setup st = default_setup(FAKE_SILENT);
        scenario_init(&s, &st);
        seed_cache(&s, "w.example.com", 5, 7, 6000); /* arms a stale timer */
        s.expected = 3;
        cr_assert_eq(ask(&s, 0, 1, "w.example.com", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 1, 2, "W.example.com", false, 512), VD_QUERY_PENDING);
        cr_assert_eq(ask(&s, 2, 3, "v.example.com", false, 512), VD_QUERY_PENDING);
        run_later(&s, 100, close_resolver);
        scenario_run(&s);
        for (int i = 0; i < 3; i++) {
                cr_assert_eq(s.r[i].calls, 1);
                cr_assert_eq(s.r[i].len, 0);
        }
        cr_assert_lt(elapsed_ms(&s, &s.r[0]), 1000, "answered by close, not by the budget");
        scenario_free(&s);
}

/* A reply callback that closes the resolver, the forwarder and the cache on the spot. */
static void close_everything_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        reply *r = arg;
        scenario *s = r->s;
        on_reply(arg, resp, len, source);
        if (!s->res_closed) {
                close_resolver_now(s);
                vd_cache_free(s->cache);
                s->cache = NULL;
                finish(s);
        }
}

Test(resolve, closing_everything_from_inside_a_reply)
{
        scenario s;
        setup st = default_setup(FAKE_DELAY);
        scenario_init(&s, &st);
        s.up.delay_ms = 50;
        s.expected = 2;
        dns_msg q;
        vd_query_info qi;
        uint8_t out[512];
        size_t n;
        for (int i = 0; i < 2; i++) {
                client_query(&q, &qi, (unsigned)i + 1, "c.example.com", VD_TYPE_A, false, false);
                s.r[i].qi = qi;
                cr_assert_eq(vd_resolver_query(s.res, &qi, 512, out, sizeof(out), &n,
                                               close_everything_reply, &s.r[i]),
                             VD_QUERY_PENDING);
        }
        scenario_run(&s);
        cr_assert_eq(s.r[0].calls, 1);
        cr_assert_gt(s.r[0].len, 0, "the first waiter gets the answer");
        cr_assert_eq(s.r[1].calls, 1);
        cr_assert_eq(s.r[1].len, 0, "the second one: the resolver closed under it");
        scenario_free(&s);
}

/* ---- two workers: resolvers on two loops in two threads, one registry and one cache ---------- */

enum worker_close { CLOSE_AFTER_REPLY, CLOSE_AFTER_GATE };

/* One worker: its own loop, forwarder and resolver over the shared cache and registry. It
 * waits for `before` (when set), asks one question, posts `after`, then either closes once
 * answered or (CLOSE_AFTER_GATE) waits for `gate` and closes with the question unanswered.
 * Failures are recorded: Criterion's assertions belong to the test's thread. */
struct worker {
        uv_thread_t thread;
        uv_loop_t loop;
        vd_forwarder *fwd;
        vd_resolver *res;
        uv_timer_t closer;
        const vd_addr *upstream;
        vd_cache *cache;
        vd_inflight *inflight;
        uv_sem_t *before, *after, *gate;
        enum worker_close close_mode;
        unsigned id;
        bool setup_failed;
        vd_query_outcome outcome;
        int calls;
        size_t len;
        uint8_t buf[512];
        dns_msg q;
        vd_query_info qi;
        vd_resolver_counters rc;
        vd_forward_counters fc;
};

static void worker_close(struct worker *w)
{
        if (w->res != NULL) {
                vd_resolver_counters_get(w->res, &w->rc);
                vd_resolver_close(w->res);
                w->res = NULL;
                vd_forwarder_counters_get(w->fwd, &w->fc);
                vd_forwarder_close(w->fwd);
        }
        if (!uv_is_closing((uv_handle_t *)&w->closer))
                uv_close((uv_handle_t *)&w->closer, NULL);
}

static void on_closer(uv_timer_t *t)
{
        worker_close(t->data);
}

static void worker_reply(void *arg, const uint8_t *data, size_t len, unsigned source)
{
        struct worker *w = arg;
        (void)source;
        if (w->calls++ == 0) {
                w->len = len < sizeof(w->buf) ? len : 0;
                if (w->len > 0)
                        memcpy(w->buf, data, w->len);
        }
        if (w->res != NULL)
                uv_timer_start(&w->closer, on_closer, 0, 0);
}

static void worker_run(void *arg)
{
        struct worker *w = arg;
        vd_error err;
        vd_forward_options fo = {.servers = w->upstream, .n_servers = 1, .timeout_ms = 3000};
        vd_resolver_options ro;
        vd_resolver_options_default(&ro);
        ro.inflight = w->inflight;
        if (uv_loop_init(&w->loop) != 0 || vd_forwarder_new(&w->loop, &fo, &w->fwd, &err) != 0 ||
            vd_resolver_new(&w->loop, w->fwd, w->cache, &ro, &w->res) != 0) {
                w->setup_failed = true; /* (the test fails; what was made leaks) */
                if (w->after != NULL)
                        uv_sem_post(w->after);
                return;
        }
        uv_timer_init(&w->loop, &w->closer);
        w->closer.data = w;
        if (w->before != NULL)
                uv_sem_wait(w->before);
        size_t n = 0;
        w->outcome =
            vd_resolver_query(w->res, &w->qi, 512, w->buf, sizeof(w->buf), &n, worker_reply, w);
        if (w->after != NULL)
                uv_sem_post(w->after);
        if (w->outcome != VD_QUERY_PENDING) {
                w->len = n;
                worker_close(w);
        } else if (w->close_mode == CLOSE_AFTER_GATE) {
                if (w->gate != NULL)
                        uv_sem_wait(w->gate);
                worker_close(w);
        }
        uv_run(&w->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&w->loop) != 0)
                w->setup_failed = true; /* a handle left open */
}

struct two_workers {
        fake_upstream up; /* held: answers once both workers have asked */
        vd_cache *cache;
        vd_inflight *inflight;
        struct worker a, b;
        uv_sem_t a_asked, b_asked;
};

static void two_workers_init(struct two_workers *t, bool shared)
{
        memset(t, 0, sizeof(*t));
        fake_upstream_init(&t->up, FAKE_HOLD);
        t->up.opt = false;
        t->up.octet = 7;
        fake_upstream_start_thread(&t->up);
        vd_cache_options co;
        vd_cache_options_default(&co);
        cr_assert_eq(vd_cache_new(&co, &t->cache), 0);
        if (shared)
                cr_assert_eq(vd_inflight_new(&t->inflight), 0);
        cr_assert_eq(uv_sem_init(&t->a_asked, 0), 0);
        cr_assert_eq(uv_sem_init(&t->b_asked, 0), 0);
        struct worker *ws[2] = {&t->a, &t->b};
        for (int i = 0; i < 2; i++) {
                struct worker *w = ws[i];
                w->upstream = &t->up.addr;
                w->cache = t->cache;
                w->inflight = t->inflight;
                w->id = 0x1100 + (unsigned)i;
                client_query(&w->q, &w->qi, w->id, i == 0 ? "www.example.com" : "WWW.Example.COM",
                             VD_TYPE_A, false, false);
        }
        /* a asks first; b asks once a's question is in flight */
        t->a.after = &t->a_asked;
        t->b.before = &t->a_asked;
        t->b.after = &t->b_asked;
}

static void two_workers_run(struct two_workers *t, bool release_after_b)
{
        cr_assert_eq(uv_thread_create(&t->a.thread, worker_run, &t->a), 0);
        cr_assert_eq(uv_thread_create(&t->b.thread, worker_run, &t->b), 0);
        uv_sem_wait(&t->b_asked);
        if (release_after_b)
                fake_upstream_release(&t->up);
        uv_thread_join(&t->a.thread);
        uv_thread_join(&t->b.thread);
        fake_upstream_stop(&t->up);
        cr_assert_not(t->a.setup_failed);
        cr_assert_not(t->b.setup_failed);
}

static void two_workers_free(struct two_workers *t)
{
        uv_sem_destroy(&t->a_asked);
        uv_sem_destroy(&t->b_asked);
        vd_inflight_free(t->inflight);
        vd_cache_free(t->cache);
}

/* The response in w->buf answers w's question with A 192.0.2.7. */
static void assert_answered(const struct worker *w)
{
        cr_assert_eq(w->calls, 1, "worker %x: replies %d", w->id, w->calls);
        cr_assert_gt(w->len, VD_HEADER_LEN, "worker %x: no answer", w->id);
        cr_assert_eq(vd_wire_get16(w->buf), w->id);
        cr_assert_eq(w->buf[3] & 0x0F, VD_RCODE_NOERROR);
        cr_assert_eq(vd_wire_get16(w->buf + 6), 1);
        static const uint8_t addr[4] = {192, 0, 2, 7};
        cr_assert_eq(memcmp(w->buf + w->len - 4, addr, 4), 0);
        /* the question as that client spelt it */
        cr_assert_eq(memcmp(w->buf + VD_HEADER_LEN, w->q.b + VD_HEADER_LEN, w->qi.qname_len), 0);
}

Test(resolve_workers, one_question_on_two_workers_is_one_upstream_query)
{
        struct two_workers t;
        two_workers_init(&t, true);
        two_workers_run(&t, true);
        cr_assert_eq(t.a.outcome, VD_QUERY_PENDING);
        cr_assert_eq(t.b.outcome, VD_QUERY_PENDING);
        assert_answered(&t.a);
        assert_answered(&t.b);
        cr_assert_eq(t.b.rc.merged, 1, "b joined a's query");
        cr_assert_eq(t.b.fc.upstream_queries, 0, "b sent nothing upstream");
        cr_assert_eq(t.a.fc.upstream_queries, 1);
        cr_assert_eq(atomic_load(&t.up.udp_queries), 1);
        /* stored once, by a, for both */
        vd_cache_counters k;
        vd_cache_counters_get(t.cache, &k);
        cr_assert_eq(k.stores, 1);
        uint8_t out[512];
        cr_assert_gt(
            vd_cache_lookup(t.cache, &t.b.qi, uv_hrtime() / 1000000 + 1000, 512, out, sizeof(out)),
            0);
        two_workers_free(&t);
}

Test(resolve_workers, without_a_registry_each_worker_asks_upstream)
{
        struct two_workers t;
        two_workers_init(&t, false);
        two_workers_run(&t, true);
        assert_answered(&t.a);
        assert_answered(&t.b);
        cr_assert_eq(t.b.rc.merged, 0);
        cr_assert_eq(t.b.fc.upstream_queries, 1);
        cr_assert_eq(atomic_load(&t.up.udp_queries), 2);
        two_workers_free(&t);
}

Test(resolve_workers, owner_closing_answers_the_other_workers_question_servfail)
{
        struct two_workers t;
        two_workers_init(&t, true);
        t.a.close_mode = CLOSE_AFTER_GATE; /* a closes once b has joined; nothing answers */
        t.a.gate = &t.b_asked;
        cr_assert_eq(uv_thread_create(&t.a.thread, worker_run, &t.a), 0);
        cr_assert_eq(uv_thread_create(&t.b.thread, worker_run, &t.b), 0);
        uv_thread_join(&t.a.thread);
        uv_thread_join(&t.b.thread);
        fake_upstream_stop(&t.up);
        cr_assert_not(t.a.setup_failed);
        cr_assert_not(t.b.setup_failed);
        cr_assert_eq(t.a.calls, 1);
        cr_assert_eq(t.a.len, 0, "closing answers a's own waiter with len 0");
        cr_assert_eq(t.b.calls, 1, "b's waiter is answered exactly once");
        cr_assert_gt(t.b.len, VD_HEADER_LEN);
        cr_assert_eq(vd_wire_get16(t.b.buf), t.b.id);
        cr_assert_eq(t.b.buf[3] & 0x0F, VD_RCODE_SERVFAIL);
        cr_assert_eq(t.b.fc.upstream_queries, 0);
        two_workers_free(&t);
}

Test(resolve_workers, subscriber_closing_leaves_the_owner_answering)
{
        struct two_workers t;
        two_workers_init(&t, true);
        t.b.close_mode = CLOSE_AFTER_GATE; /* b closes right after joining */
        t.b.gate = NULL;
        two_workers_run(&t, true);
        assert_answered(&t.a);
        cr_assert_eq(t.b.calls, 1);
        cr_assert_eq(t.b.len, 0, "closing answers b's waiter with len 0");
        cr_assert_eq(t.b.rc.merged, 1);
        cr_assert_eq(t.b.fc.upstream_queries, 0);
        cr_assert_eq(atomic_load(&t.up.udp_queries), 1);
        two_workers_free(&t);
}

/* A worker's cache miss, then another worker's query for the key finishes (its answer stored,
 * its registration gone), then this worker registers: it finds the answer in the cache after
 * registering and sends nothing. Played here by asking the upstream half directly while the
 * cache already holds the answer. */
Test(resolve_workers, an_answer_stored_between_miss_and_registration_is_not_asked_again)
{
        vd_inflight *reg = NULL;
        cr_assert_eq(vd_inflight_new(&reg), 0);
        scenario s;
        setup st = default_setup(FAKE_ANSWER);
        st.ro.inflight = reg;
        scenario_init(&s, &st);
        seed_cache(&s, "raced.example.com", 300, 42, 1000);
        reply *r = &s.r[0];
        client_query(&r->q, &r->qi, 0x4242, "Raced.Example.com", VD_TYPE_A, false, false);
        size_t out_len = 0;
        vd_query_outcome o = vd_resolver_query_upstream(s.res, &r->qi, 512, r->buf, sizeof(r->buf),
                                                        &out_len, on_reply, r);
        cr_assert_eq(o, VD_QUERY_REPLY);
        r->calls = 1;
        r->len = out_len;
        assert_a(r, 0, 42, 299);
        finish(&s);
        scenario_run(&s);
        cr_assert_eq(s.up.udp_queries, 0);
        vd_resolver_counters c = counters(&s);
        cr_assert_eq(c.cache_hits, 1);
        cr_assert_eq(c.cache_misses, 0);
        scenario_free(&s);
        vd_inflight_free(reg);
}

/* test_stats.c — the labelled query statistics (resolver/stats.c): counting by label, the sum
 * over workers, cumulative histogram buckets, label escaping, Prometheus text that promtool
 * accepts, and the counts vd_query_handle makes for local, refused, FORMERR and SERVFAIL
 * answers. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "vpcdns/cache.h"
#include "vpcdns/query.h"
#include "vpcdns/resolve.h"
#include "vpcdns/metrics.h"
#include "vpcdns/stats.h"
#include "vpcdns/wire.h"

#include "support/dns_msg.h"

/* The Prometheus text of s, in a buffer the caller frees. */
static char *prometheus_text(const vd_stats *s)
{
        vd_text out = {0};
        vd_stats_write_prometheus(&out, s);
        cr_assert_not(out.failed);
        cr_assert_not_null(out.data);
        return out.data;
}

static void expect_line(const char *text, const char *line)
{
        char want[512];
        snprintf(want, sizeof(want), "\n%s\n", line);
        cr_expect_not_null(strstr(text, want), "missing line: %s", line);
}

Test(stats, requests_are_counted_by_transport_family_and_type)
{
        static vd_stats s;
        memset(&s, 0, sizeof(s));
        vd_stats_request(&s, false, AF_INET, true, VD_TYPE_A);
        vd_stats_request(&s, false, AF_INET, true, VD_TYPE_A);
        vd_stats_request(&s, true, AF_INET6, true, 65);  /* HTTPS */
        vd_stats_request(&s, false, AF_INET6, true, 64); /* SVCB */
        vd_stats_request(&s, false, AF_INET, true, 99);  /* SPF: other */
        vd_stats_request(&s, true, AF_INET, false, 1);   /* no question */
        cr_assert_eq(s.requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_A], 2);
        cr_assert_eq(s.requests[VD_STATS_TCP][VD_STATS_V6][VD_STATS_TYPE_HTTPS], 1);
        cr_assert_eq(s.requests[VD_STATS_UDP][VD_STATS_V6][VD_STATS_TYPE_SVCB], 1);
        cr_assert_eq(s.requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_OTHER], 1);
        cr_assert_eq(s.requests[VD_STATS_TCP][VD_STATS_V4][VD_STATS_TYPE_OTHER], 1);

        char *text = prometheus_text(&s);
        expect_line(text, "vpcdns_requests_total{proto=\"udp\",family=\"v4\",type=\"A\"} 2");
        expect_line(text, "vpcdns_requests_total{proto=\"tcp\",family=\"v6\",type=\"HTTPS\"} 1");
        expect_line(text, "vpcdns_requests_total{proto=\"tcp\",family=\"v4\",type=\"other\"} 1");
        free(text);
}

Test(stats, responses_are_counted_by_rcode_and_source)
{
        static vd_stats s;
        memset(&s, 0, sizeof(s));
        vd_stats_response(&s, VD_RCODE_NXDOMAIN, VD_STATS_SOURCE_LOCAL, 1000);
        vd_stats_response(&s, VD_RCODE_NOERROR, VD_STATS_SOURCE_CACHE, 1000);
        vd_stats_response(&s, 9, VD_STATS_SOURCE_UPSTREAM, 1000); /* NOTAUTH: other */
        vd_stats_response(&s, vd_stats_rcode_of((const uint8_t *)"ab", 2), VD_STATS_SOURCE_ERROR,
                          1);
        char *text = prometheus_text(&s);
        expect_line(text, "vpcdns_responses_total{rcode=\"NXDOMAIN\"} 1");
        expect_line(text, "vpcdns_responses_total{rcode=\"NOERROR\"} 1");
        expect_line(text, "vpcdns_responses_total{rcode=\"other\"} 2");
        expect_line(text, "vpcdns_responses_total{rcode=\"SERVFAIL\"} 0");
        expect_line(text, "vpcdns_responses_by_source_total{source=\"local\"} 1");
        expect_line(text, "vpcdns_responses_by_source_total{source=\"upstream\"} 1");
        expect_line(text, "vpcdns_responses_by_source_total{source=\"stale\"} 0");
        free(text);
}

Test(stats, a_value_falls_in_the_first_bucket_that_holds_it)
{
        cr_assert_eq(vd_stats_bucket(0), 0);
        cr_assert_eq(vd_stats_bucket(8192), 0);
        cr_assert_eq(vd_stats_bucket(8193), 1);
        cr_assert_eq(vd_stats_bucket(16384), 1);
        cr_assert_eq(vd_stats_bucket(16385), 2);
        cr_assert_eq(vd_stats_bucket(1ull << 33), VD_STATS_BUCKETS - 1);
        cr_assert_eq(vd_stats_bucket((1ull << 33) + 1), VD_STATS_BUCKETS, "+Inf");
        cr_assert_eq(vd_stats_bucket(UINT64_MAX), VD_STATS_BUCKETS);
}

Test(stats, histogram_buckets_are_cumulative_and_inf_is_the_count)
{
        static vd_stats s;
        memset(&s, 0, sizeof(s));
        vd_stats_response(&s, 0, VD_STATS_SOURCE_LOCAL, 5000);               /* 8.192e-06 */
        vd_stats_response(&s, 0, VD_STATS_SOURCE_LOCAL, 10000);              /* 1.6384e-05 */
        vd_stats_response(&s, 0, VD_STATS_SOURCE_LOCAL, 1000000);            /* 0.001048576 */
        vd_stats_response(&s, 0, VD_STATS_SOURCE_LOCAL, 20ull * 1000000000); /* +Inf */
        char *text = prometheus_text(&s);
        const char *n = "vpcdns_response_duration_seconds";
        char line[256];
        snprintf(line, sizeof(line), "%s_bucket{source=\"local\",le=\"8.192e-06\"} 1", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_bucket{source=\"local\",le=\"1.6384e-05\"} 2", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_bucket{source=\"local\",le=\"0.000524288\"} 2", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_bucket{source=\"local\",le=\"0.001048576\"} 3", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_bucket{source=\"local\",le=\"8.589934592\"} 3", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_bucket{source=\"local\",le=\"+Inf\"} 4", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_count{source=\"local\"} 4", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_sum{source=\"local\"} 20.001015000", n);
        expect_line(text, line);
        snprintf(line, sizeof(line), "%s_count{source=\"cache\"} 0", n);
        expect_line(text, line);
        free(text);
}

Test(stats, the_sum_adds_every_worker_and_matches_upstreams_by_label)
{
        static vd_stats w1, w2, sum;
        memset(&w1, 0, sizeof(w1));
        memset(&w2, 0, sizeof(w2));
        memset(&sum, 0, sizeof(sum));
        vd_stats_set_upstream(&w1, 0, "127.0.0.1:53");
        vd_stats_set_upstream(&w1, 1, "[::1]:53");
        vd_stats_set_upstream(&w2, 0, "[::1]:53"); /* another order on this worker */
        vd_stats_upstream_rtt(&w1, 0, 100000);
        vd_stats_upstream_rtt(&w1, 1, 100000);
        vd_stats_upstream_rtt(&w2, 0, 100000);
        vd_stats_upstream_rtt(&w2, 0, 100000);
        vd_stats_upstream_rtt(&w2, VD_STATS_MAX_UPSTREAMS, 1); /* ignored */
        vd_stats_request(&w1, false, AF_INET, true, VD_TYPE_A);
        vd_stats_request(&w2, false, AF_INET, true, VD_TYPE_A);
        vd_stats_response(&w1, 0, VD_STATS_SOURCE_LOCAL, 10);
        vd_stats_response(&w2, 0, VD_STATS_SOURCE_LOCAL, 10);
        vd_stats_add(&sum, &w1);
        vd_stats_add(&sum, &w2);
        cr_assert_eq(sum.requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_A], 2);
        cr_assert_eq(sum.by_source[VD_STATS_SOURCE_LOCAL], 2);
        cr_assert_eq(sum.duration[VD_STATS_SOURCE_LOCAL].sum_ns, 20);
        char *text = prometheus_text(&sum);
        expect_line(text, "vpcdns_upstream_rtt_seconds_count{server=\"127.0.0.1:53\"} 1");
        expect_line(text, "vpcdns_upstream_rtt_seconds_count{server=\"[::1]:53\"} 3");
        free(text);
}

Test(stats, label_values_are_escaped)
{
        vd_text out = {0};
        vd_prom_label_value(&out, "a\\b\"c\nd");
        cr_assert_str_eq(out.data, "a\\\\b\\\"c\\nd");
        vd_text_free(&out);
        char *text;

        static vd_stats s;
        memset(&s, 0, sizeof(s));
        vd_stats_set_upstream(&s, 0, "odd\"server\\\n");
        text = prometheus_text(&s);
        expect_line(text, "vpcdns_upstream_rtt_seconds_count{server=\"odd\\\"server\\\\\\n\"} 0");
        expect_line(text,
                    "vpcdns_upstream_rtt_seconds_sum{server=\"odd\\\"server\\\\\\n\"} 0.000000000");
        expect_line(
            text,
            "vpcdns_upstream_rtt_seconds_bucket{server=\"odd\\\"server\\\\\\n\",le=\"+Inf\"} 0");
        free(text);
}

/* promtool check metrics reads the text on its stdin: exit status 0 when it is valid. */
static int promtool_check(const char *text)
{
        char path[] = "/tmp/vd-stats-XXXXXX";
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        FILE *f = fdopen(fd, "w");
        fputs(text, f);
        fclose(f);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s.out 2>&1", path, path);
        int status = system(cmd);
        char out_path[64];
        snprintf(out_path, sizeof(out_path), "%s.out", path);
        FILE *o = fopen(out_path, "r");
        if (o != NULL) {
                char line[512];
                while (fgets(line, sizeof(line), o) != NULL)
                        cr_log_warn("promtool: %s", line);
                fclose(o);
        }
        unlink(out_path);
        unlink(path);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(stats, promtool_accepts_the_output)
{
        if (system("command -v promtool > /dev/null 2>&1") != 0)
                cr_skip_test("promtool is not installed");
        static vd_stats s;
        memset(&s, 0, sizeof(s));
        vd_stats_set_upstream(&s, 0, "127.0.0.1:53");
        vd_stats_upstream_rtt(&s, 0, 300000);
        vd_stats_request(&s, true, AF_INET6, true, VD_TYPE_AAAA);
        for (unsigned src = 0; src < VD_STATS_N_SOURCE; src++)
                vd_stats_response(&s, src, (vd_stats_source)src, 1000ull << src);
        char *text = prometheus_text(&s);
        cr_assert_eq(promtool_check(text), 0, "promtool check metrics failed");
        free(text);
}

/* ---- through the query pipeline -------------------------------------------------------------- */

static size_t make_typed_query(uint8_t *buf, const char *name, uint16_t type, uint16_t qclass)
{
        dns_msg m; /* the shared builder of tests/unit/support */
        header(&m, 0x5151, VD_FLAG_RD, 1, 0, 0, 0);
        put_name(&m, name);
        put16(&m, type);
        put16(&m, qclass);
        memcpy(buf, m.b, m.n);
        return m.n;
}

Test(stats, the_pipeline_counts_each_answer_under_its_source_and_rcode)
{
        static vd_query_env env;
        memset(&env, 0, sizeof(env));
        uint8_t pkt[512], out[1232];
        size_t out_len = 0;
        struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
        vd_query_client client = {.addr = (const struct sockaddr *)&v6};

        /* localhost. is answered here: local, NOERROR */
        size_t len = make_typed_query(pkt, "localhost", VD_TYPE_A, VD_CLASS_IN);
        cr_assert_eq(
            vd_query_handle(&env, &client, pkt, len, false, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_REPLY);
        /* class CH: refused */
        len = make_typed_query(pkt, "version.bind", VD_TYPE_TXT, 3);
        cr_assert_eq(
            vd_query_handle(&env, NULL, pkt, len, true, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_REPLY);
        /* two questions: FORMERR, an error made here */
        len = make_typed_query(pkt, "a.example", VD_TYPE_MX, VD_CLASS_IN);
        pkt[5] = 2;
        cr_assert_eq(
            vd_query_handle(&env, NULL, pkt, len, false, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_REPLY);
        /* no upstream: SERVFAIL, an error */
        len = make_typed_query(pkt, "a.example", VD_TYPE_SRV, VD_CLASS_IN);
        cr_assert_eq(
            vd_query_handle(&env, NULL, pkt, len, false, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_REPLY);
        /* a response: dropped, a request without a response */
        pkt[2] |= 0x80;
        cr_assert_eq(
            vd_query_handle(&env, NULL, pkt, len, false, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_DROP);

        const vd_stats *s = &env.stats;
        cr_assert_eq(s->requests[VD_STATS_UDP][VD_STATS_V6][VD_STATS_TYPE_A], 1);
        cr_assert_eq(s->requests[VD_STATS_TCP][VD_STATS_V4][VD_STATS_TYPE_TXT], 1);
        /* the FORMERR query and the response: no question was read, so "other" */
        cr_assert_eq(s->requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_MX], 0);
        cr_assert_eq(s->requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_OTHER], 2);
        cr_assert_eq(s->requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_SRV], 1);
        cr_assert_eq(s->by_source[VD_STATS_SOURCE_LOCAL], 1);
        cr_assert_eq(s->by_source[VD_STATS_SOURCE_REFUSED], 1);
        cr_assert_eq(s->by_source[VD_STATS_SOURCE_ERROR], 2);
        cr_assert_eq(s->by_source[VD_STATS_SOURCE_CACHE], 0);
        cr_assert_eq(s->responses[VD_STATS_NOERROR], 1);
        cr_assert_eq(s->responses[VD_STATS_REFUSED], 1);
        cr_assert_eq(s->responses[VD_STATS_FORMERR], 1);
        cr_assert_eq(s->responses[VD_STATS_SERVFAIL], 1);
        uint64_t timed = 0;
        for (unsigned i = 0; i <= VD_STATS_BUCKETS; i++)
                timed += s->duration[VD_STATS_SOURCE_LOCAL].bucket[i];
        cr_assert_eq(timed, 1, "the local answer was timed");
        cr_assert_gt(s->duration[VD_STATS_SOURCE_LOCAL].sum_ns, 0);
}

/* An answer from the cache counts as cache; the same question while the resolver has no
 * upstream is still answered from it. */
Test(stats, a_cached_answer_counts_as_cache)
{
        uv_loop_t loop;
        cr_assert_eq(uv_loop_init(&loop), 0);
        vd_cache_options co;
        vd_cache_options_default(&co);
        vd_cache *cache = NULL;
        cr_assert_eq(vd_cache_new(&co, &cache), 0);
        vd_resolver_options ro;
        vd_resolver_options_default(&ro);
        vd_resolver *res = NULL;
        cr_assert_eq(vd_resolver_new(&loop, NULL, cache, &ro, &res), 0);

        uint8_t pkt[512], answer[512], out[1232];
        size_t len = make_typed_query(pkt, "cached.example", VD_TYPE_A, VD_CLASS_IN);
        vd_query_info qi;
        cr_assert_eq(vd_wire_parse_query(pkt, len, &qi), VD_PARSE_OK);
        static const uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 0, 0, 1};
        memcpy(answer, pkt, len);
        answer[2] |= 0x80; /* QR */
        answer[7] = 1;     /* ANCOUNT */
        memcpy(answer + len, rr, sizeof(rr));
        cr_assert_eq(vd_cache_store(cache, &qi, answer, len + sizeof(rr), uv_now(&loop)), 0);

        static vd_query_env env;
        memset(&env, 0, sizeof(env));
        env.resolver = res;
        env.cache = cache;
        env.loop = &loop;
        size_t out_len = 0;
        cr_assert_eq(
            vd_query_handle(&env, NULL, pkt, len, false, out, sizeof(out), &out_len, NULL, NULL),
            VD_QUERY_REPLY);
        cr_assert_eq(env.stats.by_source[VD_STATS_SOURCE_CACHE], 1);
        cr_assert_eq(env.stats.responses[VD_STATS_NOERROR], 1);
        cr_assert_eq(env.stats.requests[VD_STATS_UDP][VD_STATS_V4][VD_STATS_TYPE_A], 1);

        vd_resolver_close(res);
        uv_run(&loop, UV_RUN_DEFAULT);
        cr_assert_eq(uv_loop_close(&loop), 0);
        vd_cache_free(cache);
}

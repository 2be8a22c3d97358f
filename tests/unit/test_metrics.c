/* test_metrics.c — the Prometheus exposition writer (resolver/metrics.c): the text buffer grows
 * and keeps every byte, writes integers as decimal and seconds and doubles exactly as printf's
 * "%.9f" and "%.17g" do (the exposition must not change with the writer); label values escape
 * backslash, double quote and newline; help text escapes backslash and newline; families and
 * samples have the text format's shape; the process metrics are there; the body a handler
 * writes comes back whole through vd_http_render_metrics. The HTTP endpoint itself is tested
 * end to end by tests/integration/test_metrics.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/metrics.h"

TestSuite(metrics);

/* What writer(out) writes, as a malloc'd string. */
static char *capture(void (*writer)(vd_text *out))
{
        vd_text out = {0};
        writer(&out);
        cr_assert_not(out.failed);
        cr_assert_not_null(out.data);
        cr_assert_eq(strlen(out.data), out.len);
        return out.data;
}

/* A deterministic sequence for the formatting checks (xorshift64). */
static uint64_t next_random(uint64_t *state)
{
        uint64_t x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return *state = x;
}

Test(metrics, text_grows_past_its_first_allocation_and_keeps_every_byte)
{
        vd_text t = {0};
        char line[32];
        for (unsigned i = 0; i < 20000; i++) { /* about 250 KB: several doublings */
                vd_text_puts(&t, "line ");
                vd_text_u64(&t, i);
                vd_text_putc(&t, '\n');
        }
        cr_assert_not(t.failed);
        cr_assert_gt(t.len, 200000);
        cr_assert_eq(strlen(t.data), t.len);
        const char *p = t.data;
        for (unsigned i = 0; i < 20000; i++) {
                int n = snprintf(line, sizeof(line), "line %u\n", i);
                cr_assert_eq(strncmp(p, line, (size_t)n), 0, "line %u differs", i);
                p += n;
        }
        cr_assert_eq(*p, '\0');
        vd_text_free(&t);
        cr_assert_null(t.data);
        cr_assert_eq(t.len, 0);
}

Test(metrics, text_that_failed_drops_later_appends_and_render_returns_null)
{
        vd_text t = {0};
        vd_text_puts(&t, "kept");
        vd_text_fail(&t);
        vd_text_puts(&t, " dropped");
        vd_text_putc(&t, '!');
        vd_text_u64(&t, 42);
        cr_assert(t.failed);
        cr_assert_eq(t.len, 4);
        cr_assert_str_eq(t.data, "kept");
        vd_text_free(&t);
}

static void failing_body(void *arg, vd_text *out)
{
        (void)arg;
        vd_text_puts(out, "vpcdns_half 1\n");
        vd_text_fail(out);
}

static void empty_body(void *arg, vd_text *out)
{
        (void)arg;
        (void)out;
}

Test(metrics, render_of_a_failed_body_is_null_and_an_empty_body_is_empty)
{
        size_t len = 99;
        vd_http_handlers failing = {.metrics = failing_body};
        cr_assert_null(vd_http_render_metrics(&failing, &len));
        vd_http_handlers empty = {.metrics = empty_body};
        char *body = vd_http_render_metrics(&empty, &len);
        cr_assert_not_null(body);
        cr_assert_eq(len, 0);
        cr_assert_str_eq(body, "");
        free(body);
}

Test(metrics, u64_is_written_in_decimal)
{
        static const uint64_t values[] = {
            0, 1, 9, 10, 99, 100, 4294967295u, 4294967296u, 10000000000000000000u, UINT64_MAX};
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                vd_text t = {0};
                char want[32];
                vd_text_u64(&t, values[i]);
                snprintf(want, sizeof(want), "%llu", (unsigned long long)values[i]);
                cr_assert_str_eq(t.data, want);
                vd_text_free(&t);
        }
}

/* vd_text_seconds_ns writes what printf("%.9f", ns / 1e9) writes: below 2^22 s without printf,
 * above with it. Edges of the fast path, round numbers and many random values of every size. */
Test(metrics, seconds_are_written_as_printf_writes_them)
{
        static const uint64_t edges[] = {0,
                                         1,
                                         999999999,
                                         1000000000,
                                         1000000001,
                                         4194303999999999u,
                                         4194304000000000u,
                                         4194304000000001u,
                                         8388607999999999u,
                                         9007199254740993u,
                                         UINT64_MAX};
        uint64_t state = 88172645463325252u;
        for (size_t i = 0; i < 200000; i++) {
                uint64_t ns;
                if (i < sizeof(edges) / sizeof(edges[0]))
                        ns = edges[i];
                else /* every magnitude: a random value shifted right by 0..63 bits */
                        ns = next_random(&state) >> (next_random(&state) % 64);
                vd_text t = {0};
                char want[64];
                vd_text_seconds_ns(&t, ns);
                snprintf(want, sizeof(want), "%.9f", (double)ns / 1e9);
                cr_assert_str_eq(t.data, want, "ns=%llu", (unsigned long long)ns);
                vd_text_free(&t);
        }
}

static void expect_g17(double v)
{
        vd_text t = {0};
        char want[64];
        vd_text_double(&t, v);
        snprintf(want, sizeof(want), "%.17g", v);
        cr_assert_str_eq(t.data, want, "%a", v);
        vd_text_free(&t);
}

/* vd_text_double writes what printf("%.17g") writes: the fixed notation range without printf
 * (ties included: 2^50 + 0.25 and + 0.75 have exactly 18 digits), the rest with it. */
Test(metrics, doubles_are_written_as_printf_g17_writes_them)
{
        static const double values[] = {0.0,
                                        -0.0,
                                        1.5,
                                        0.1,
                                        0.27,
                                        115.76534502,
                                        1796293694.27,
                                        1e-4,
                                        0.0001000000000000001,
                                        9.9999999999999991e-05,
                                        1e16,
                                        9999999999999998.0,
                                        9999999999999999.0,
                                        99999999999999.99,
                                        0.99999999999999999,
                                        1125899906842624.25,
                                        1125899906842624.75,
                                        1234567890123456.25,
                                        1234567890123456.75,
                                        4503599627370495.5,
                                        1e300,
                                        -2.5,
                                        4.9e-324,
                                        INFINITY,
                                        -INFINITY,
                                        NAN};
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
                expect_g17(values[i]);
        uint64_t state = 2463534242u;
        for (unsigned i = 0; i < 200000; i++) {
                uint64_t r = next_random(&state);
                double v;
                switch (i % 4) {
                case 0: /* any bit pattern */
                        memcpy(&v, &r, sizeof(v));
                        break;
                case 1: /* CPU seconds: ticks of 1/100 s */
                        v = (double)(r % 100000000u) / 100.0;
                        break;
                case 2: /* a start time: boot seconds + ticks / 100 */
                        v = (double)(1700000000u + r % 100000000u) +
                            (double)(next_random(&state) % 10000000u) / 100.0;
                        break;
                default: /* a ratio of integers of every size, both signs */
                        v = (double)(int64_t)r / (double)(next_random(&state) >> (r % 64));
                        break;
                }
                expect_g17(v);
        }
}

static void label_with_specials(vd_text *out)
{
        vd_prom_sample(out, "vpcdns_x", "path", "a\\b\"c\nd", 7);
}

Test(metrics, label_value_escapes_backslash_quote_newline)
{
        char *text = capture(label_with_specials);
        cr_assert_str_eq(text, "vpcdns_x{path=\"a\\\\b\\\"c\\nd\"} 7\n");
        free(text);
}

static void help_with_specials(vd_text *out)
{
        vd_prom_family(out, "vpcdns_y_total", "counter", "a \\ \"quoted\"\nline");
}

Test(metrics, help_escapes_backslash_and_newline_not_quote)
{
        char *text = capture(help_with_specials);
        cr_assert_str_eq(text, "# HELP vpcdns_y_total a \\\\ \"quoted\"\\nline\n"
                               "# TYPE vpcdns_y_total counter\n");
        free(text);
}

static void plain_samples(vd_text *out)
{
        vd_prom_sample(out, "vpcdns_a", NULL, NULL, 18446744073709551615ull);
        vd_prom_sample_double(out, "vpcdns_b", "k", "v", 1.5);
}

Test(metrics, samples_without_and_with_label)
{
        char *text = capture(plain_samples);
        cr_assert_str_eq(text, "vpcdns_a 18446744073709551615\nvpcdns_b{k=\"v\"} 1.5\n");
        free(text);
}

Test(metrics, process_metrics_are_written)
{
        char *text = capture(vd_prom_process);
        const char *names[] = {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                               "process_open_fds ", "process_max_fds ",
                               "process_start_time_seconds "};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char line[80];
                snprintf(line, sizeof(line), "\n%s", names[i]);
                cr_assert_not_null(strstr(text, line), "no %s in:\n%s", names[i], text);
        }
        free(text);
}

static void handler_body(void *arg, vd_text *out)
{
        vd_text_puts(out, (const char *)arg);
}

Test(metrics, render_returns_what_the_handler_wrote)
{
        vd_http_handlers h = {.arg = "vpcdns_z 1\n", .metrics = handler_body};
        size_t len = 0;
        char *body = vd_http_render_metrics(&h, &len);
        cr_assert_not_null(body);
        cr_assert_eq(len, strlen("vpcdns_z 1\n"));
        cr_assert_str_eq(body, "vpcdns_z 1\n");
        free(body);
}

/* test_metrics.c — the Prometheus exposition writer (resolver/metrics.c): label values escape
 * backslash, double quote and newline; help text escapes backslash and newline; families and
 * samples have the text format's shape; the process metrics are there; the body a handler
 * writes comes back whole through vd_http_render_metrics. The HTTP endpoint itself is tested
 * end to end by tests/integration/test_metrics.py. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/metrics.h"

TestSuite(metrics);

/* What writer(out) writes, as a malloc'd string. */
static char *capture(void (*writer)(FILE *out))
{
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        cr_assert_not_null(out);
        writer(out);
        cr_assert_eq(fclose(out), 0);
        return text;
}

static void label_with_specials(FILE *out)
{
        vd_prom_sample(out, "vpcdns_x", "path", "a\\b\"c\nd", 7);
}

Test(metrics, label_value_escapes_backslash_quote_newline)
{
        char *text = capture(label_with_specials);
        cr_assert_str_eq(text, "vpcdns_x{path=\"a\\\\b\\\"c\\nd\"} 7\n");
        free(text);
}

static void help_with_specials(FILE *out)
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

static void plain_samples(FILE *out)
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

static void handler_body(void *arg, FILE *out)
{
        fprintf(out, "%s", (const char *)arg);
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

/* stats.c — the labelled query statistics (stats.h): the workers' recorders (relaxed
 * single-writer adds, nothing else on the answer path), the sum over workers and the
 * Prometheus text writer. Knows no transport, no query pipeline, no HTTP: callers tell it what
 * happened and where to write. */
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "vpcdns/common.h"
#include "vpcdns/counters.h"
#include "vpcdns/metrics.h"
#include "vpcdns/stats.h"

static const char *const proto_names[VD_STATS_N_PROTO] = {"udp", "tcp"};
static const char *const family_names[VD_STATS_N_FAMILY] = {"v4", "v6"};
static const char *const type_names[VD_STATS_N_TYPE] = {
    "A", "AAAA", "CNAME", "PTR", "MX", "TXT", "SRV", "NS", "SOA", "HTTPS", "SVCB", "ANY", "other"};
static const char *const rcode_names[VD_STATS_N_RCODE] = {
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"};
static const char *const source_names[VD_STATS_N_SOURCE] = {"local", "cache",   "upstream",
                                                            "stale", "refused", "error"};

void vd_stats_set_upstream(vd_stats *s, unsigned i, const char *server)
{
        if (i >= VD_STATS_MAX_UPSTREAMS)
                return;
        snprintf(s->upstream[i].server, sizeof(s->upstream[i].server), "%s", server);
}

void vd_stats_upstream_rtt(vd_stats *s, unsigned i, uint64_t rtt_ns)
{
        if (i < VD_STATS_MAX_UPSTREAMS)
                vd_stats_observe(&s->upstream[i].rtt, rtt_ns);
}

static void add_counts(uint64_t *sum, const uint64_t *w, size_t n)
{
        for (size_t i = 0; i < n; i++)
                sum[i] += vd_count_read(&w[i]);
}

static void histogram_add(vd_stats_histogram *sum, const vd_stats_histogram *w)
{
        add_counts(sum->bucket, w->bucket, VD_STATS_BUCKETS + 1);
        sum->sum_ns += vd_count_read(&w->sum_ns);
}

/* The slot of sum labelled server, or a free one; NULL when every slot has another label. */
static vd_stats_upstream *upstream_slot(vd_stats *sum, const char *server, unsigned hint)
{
        if (strcmp(sum->upstream[hint].server, server) == 0)
                return &sum->upstream[hint];
        vd_stats_upstream *free_slot = NULL;
        for (unsigned i = 0; i < VD_STATS_MAX_UPSTREAMS; i++) {
                if (strcmp(sum->upstream[i].server, server) == 0)
                        return &sum->upstream[i];
                if (free_slot == NULL && sum->upstream[i].server[0] == '\0')
                        free_slot = &sum->upstream[i];
        }
        if (free_slot != NULL)
                snprintf(free_slot->server, sizeof(free_slot->server), "%s", server);
        return free_slot;
}

void vd_stats_add(vd_stats *sum, const vd_stats *w)
{
        add_counts(&sum->requests[0][0][0], &w->requests[0][0][0],
                   sizeof(w->requests) / sizeof(uint64_t));
        add_counts(sum->responses, w->responses, VD_STATS_N_RCODE);
        add_counts(sum->by_source, w->by_source, VD_STATS_N_SOURCE);
        for (unsigned i = 0; i < VD_STATS_N_SOURCE; i++)
                histogram_add(&sum->duration[i], &w->duration[i]);
        for (unsigned i = 0; i < VD_STATS_MAX_UPSTREAMS; i++) {
                if (w->upstream[i].server[0] == '\0')
                        continue;
                vd_stats_upstream *slot = upstream_slot(sum, w->upstream[i].server, i);
                if (slot != NULL)
                        histogram_add(&slot->rtt, &w->upstream[i].rtt);
        }
}

/* ---- Prometheus text ------------------------------------------------------------------------- */

/* What follows a bucket line's label value, le included ("\",le=\"0.000008192\"} "), for each
 * bucket and +Inf, made once (printf of a double is the dearest thing a scrape did). */
typedef struct le_texts {
        char text[VD_STATS_BUCKETS + 1][40];
        size_t len[VD_STATS_BUCKETS + 1];
} le_texts;

static le_texts le_table;
static uv_once_t le_once = UV_ONCE_INIT;

static void le_texts_make(void)
{
        for (unsigned i = 0; i <= VD_STATS_BUCKETS; i++) {
                int n;
                if (i < VD_STATS_BUCKETS)
                        n = snprintf(le_table.text[i], sizeof(le_table.text[i]),
                                     "\",le=\"%.12g\"} ",
                                     (double)(1ull << (VD_STATS_BUCKET_MIN_SHIFT + i)) / 1e9);
                else
                        n = snprintf(le_table.text[i], sizeof(le_table.text[i]),
                                     "\",le=\"+Inf\"} ");
                le_table.len[i] = n > 0 ? (size_t)n : 0;
        }
}

/* A histogram's series for one label: cumulative buckets, +Inf equal to _count, _sum. The
 * start of the lines (NAME_bucket{LABEL="VALUE", escaped) is made once per histogram in
 * series, a buffer the caller lends: a scrape writes a few hundred of these lines, and the
 * answer path pays for none of it only if the HTTP thread stays cheap on a shared core. */
static void write_histogram(vd_text *out, vd_text *series, const le_texts *le, const char *name,
                            const char *label, const char *value, const vd_stats_histogram *h)
{
        series->len = 0; /* emptied for this histogram, its memory kept */
        if (series->data != NULL)
                series->data[0] = '\0';
        vd_text_puts(series, name);
        size_t name_len = series->len;
        vd_text_put(series, "_bucket{", 8);
        vd_text_puts(series, label);
        vd_text_put(series, "=\"", 2);
        vd_prom_label_value(series, value);
        if (series->failed) {
                vd_text_fail(out);
                return;
        }
        const char *labels = series->data + name_len + 7; /* {LABEL="VALUE */
        size_t labels_len = series->len - name_len - 7;

        uint64_t cumulative = 0;
        for (unsigned i = 0; i <= VD_STATS_BUCKETS; i++) {
                cumulative += h->bucket[i];
                vd_text_put(out, series->data, series->len);
                vd_text_put(out, le->text[i], le->len[i]);
                vd_text_u64(out, cumulative);
                vd_text_putc(out, '\n');
        }
        vd_text_put(out, series->data, name_len);
        vd_text_put(out, "_sum", 4);
        vd_text_put(out, labels, labels_len);
        vd_text_put(out, "\"} ", 3);
        vd_text_seconds_ns(out, h->sum_ns);
        vd_text_putc(out, '\n');
        vd_text_put(out, series->data, name_len);
        vd_text_put(out, "_count", 6);
        vd_text_put(out, labels, labels_len);
        vd_text_put(out, "\"} ", 3);
        vd_text_u64(out, cumulative);
        vd_text_putc(out, '\n');
}

void vd_stats_write_prometheus(vd_text *out, const vd_stats *sum)
{
        uv_once(&le_once, le_texts_make);
        const le_texts *le = &le_table;
        vd_text series = {0};
        vd_prom_family(out, "vpcdns_requests_total", "counter",
                       "Queries received, by transport, client address family and query type.");
        for (unsigned p = 0; p < VD_STATS_N_PROTO; p++)
                for (unsigned f = 0; f < VD_STATS_N_FAMILY; f++)
                        for (unsigned t = 0; t < VD_STATS_N_TYPE; t++) {
                                vd_text_puts(out, "vpcdns_requests_total{proto=\"");
                                vd_text_puts(out, proto_names[p]);
                                vd_text_puts(out, "\",family=\"");
                                vd_text_puts(out, family_names[f]);
                                vd_text_puts(out, "\",type=\"");
                                vd_text_puts(out, type_names[t]);
                                vd_text_puts(out, "\"} ");
                                vd_text_u64(out, sum->requests[p][f][t]);
                                vd_text_putc(out, '\n');
                        }

        vd_prom_family(out, "vpcdns_responses_total", "counter", "Responses sent, by rcode.");
        for (unsigned r = 0; r < VD_STATS_N_RCODE; r++)
                vd_prom_sample(out, "vpcdns_responses_total", "rcode", rcode_names[r],
                               sum->responses[r]);

        vd_prom_family(out, "vpcdns_responses_by_source_total", "counter",
                       "Responses sent, by where the answer came from.");
        for (unsigned s = 0; s < VD_STATS_N_SOURCE; s++)
                vd_prom_sample(out, "vpcdns_responses_by_source_total", "source", source_names[s],
                               sum->by_source[s]);

        vd_prom_family(out, "vpcdns_response_duration_seconds", "histogram",
                       "Time from receiving a query to handing its response to the transport.");
        for (unsigned s = 0; s < VD_STATS_N_SOURCE; s++)
                write_histogram(out, &series, le, "vpcdns_response_duration_seconds", "source",
                                source_names[s], &sum->duration[s]);

        vd_prom_family(out, "vpcdns_upstream_rtt_seconds", "histogram",
                       "Round trip of upstream queries that got an answer, by upstream server.");
        for (unsigned i = 0; i < VD_STATS_MAX_UPSTREAMS; i++)
                if (sum->upstream[i].server[0] != '\0')
                        write_histogram(out, &series, le, "vpcdns_upstream_rtt_seconds", "server",
                                        sum->upstream[i].server, &sum->upstream[i].rtt);
        vd_text_free(&series);
}

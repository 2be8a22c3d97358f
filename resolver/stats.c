/* stats.c — the labelled query statistics (stats.h): the workers' recorders (relaxed
 * single-writer adds, nothing else on the answer path), the sum over workers and the
 * Prometheus text writer. Knows no transport, no query pipeline, no HTTP: callers tell it what
 * happened and where to write. */
#include <string.h>
#include <sys/socket.h>

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

/* A histogram's series for one label: cumulative buckets, +Inf equal to _count, _sum. */
static void write_histogram(FILE *out, const char *name, const char *label, const char *value,
                            const vd_stats_histogram *h)
{
        uint64_t cumulative = 0;
        for (unsigned i = 0; i <= VD_STATS_BUCKETS; i++) {
                cumulative += h->bucket[i];
                fprintf(out, "%s_bucket{%s=\"", name, label);
                vd_prom_label_value(out, value);
                if (i < VD_STATS_BUCKETS)
                        fprintf(out, "\",le=\"%.12g\"} %llu\n",
                                (double)(1ull << (VD_STATS_BUCKET_MIN_SHIFT + i)) / 1e9,
                                (unsigned long long)cumulative);
                else
                        fprintf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
        }
        fprintf(out, "%s_sum{%s=\"", name, label);
        vd_prom_label_value(out, value);
        fprintf(out, "\"} %.9f\n", (double)h->sum_ns / 1e9);
        fprintf(out, "%s_count{%s=\"", name, label);
        vd_prom_label_value(out, value);
        fprintf(out, "\"} %llu\n", (unsigned long long)cumulative);
}

void vd_stats_write_prometheus(FILE *out, const vd_stats *sum)
{
        vd_prom_family(out, "vpcdns_requests_total", "counter",
                       "Queries received, by transport, client address family and query type.");
        for (unsigned p = 0; p < VD_STATS_N_PROTO; p++)
                for (unsigned f = 0; f < VD_STATS_N_FAMILY; f++)
                        for (unsigned t = 0; t < VD_STATS_N_TYPE; t++)
                                fprintf(out,
                                        "vpcdns_requests_total{proto=\"%s\",family=\"%s\","
                                        "type=\"%s\"} %llu\n",
                                        proto_names[p], family_names[f], type_names[t],
                                        (unsigned long long)sum->requests[p][f][t]);

        vd_prom_family(out, "vpcdns_responses_total", "counter", "Responses sent, by rcode.");
        for (unsigned r = 0; r < VD_STATS_N_RCODE; r++)
                fprintf(out, "vpcdns_responses_total{rcode=\"%s\"} %llu\n", rcode_names[r],
                        (unsigned long long)sum->responses[r]);

        vd_prom_family(out, "vpcdns_responses_by_source_total", "counter",
                       "Responses sent, by where the answer came from.");
        for (unsigned s = 0; s < VD_STATS_N_SOURCE; s++)
                fprintf(out, "vpcdns_responses_by_source_total{source=\"%s\"} %llu\n",
                        source_names[s], (unsigned long long)sum->by_source[s]);

        vd_prom_family(out, "vpcdns_response_duration_seconds", "histogram",
                       "Time from receiving a query to handing its response to the transport.");
        for (unsigned s = 0; s < VD_STATS_N_SOURCE; s++)
                write_histogram(out, "vpcdns_response_duration_seconds", "source", source_names[s],
                                &sum->duration[s]);

        vd_prom_family(out, "vpcdns_upstream_rtt_seconds", "histogram",
                       "Round trip of upstream queries that got an answer, by upstream server.");
        for (unsigned i = 0; i < VD_STATS_MAX_UPSTREAMS; i++)
                if (sum->upstream[i].server[0] != '\0')
                        write_histogram(out, "vpcdns_upstream_rtt_seconds", "server",
                                        sum->upstream[i].server, &sum->upstream[i].rtt);
}

/* server_observe.c — what the server shows of itself: the workers' counters summed for the
 * stop line, each worker's heartbeat and the /health and /ready verdicts, and every metric of
 * /metrics (the counter table, upstream servers, local data, the modules' own families). It
 * reads only what workers publish (vd_count_* values, heartbeats, the shared cache under its
 * locks) and never changes the server's behaviour; server.c starts and stops it. */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server_int.h"
#include "transport.h"
#include "vpcdns/cache.h"
#include "vpcdns/log.h"
#include "vpcdns/metrics.h"
#include "vpcdns/server.h"
#include "vpcdns/stats.h"

/* Counters */

/* The resolver's own counters, under their names in the table (counters.h), added to c's (a
 * reload retires a worker's resolver and forwarder into its own counters: see server.c). */
void vd_srv_take_resolver_counters(vd_counters *c, const vd_resolver *r)
{
        vd_resolver_counters rc;
        vd_resolver_counters_get(r, &rc);
        c->cache_hits += rc.cache_hits;
        c->cache_misses += rc.cache_misses;
        c->stale_answers += rc.stale_answers;
        c->merged += rc.merged;
        c->prefetches += rc.prefetches;
        c->resolver_servfails += rc.servfails;
}

/* The forwarder's own counters, under their names in the table. */
void vd_srv_take_forwarder_counters(vd_counters *c, const vd_forwarder *f)
{
        vd_forward_counters fc;
        vd_forwarder_counters_get(f, &fc);
        c->upstream_queries += fc.upstream_queries;
        c->upstream_timeouts += fc.timeouts;
        c->upstream_failures += fc.failures;
        c->budget_refused += fc.budget_refused;
        c->mismatches += fc.mismatches;
        c->failovers += fc.failovers;
        c->servers_down += fc.servers_down;
}

/* ---- liveness, readiness and metrics (the HTTP endpoint's handlers) ------------------------ */

#define HEALTH_STALL_NS (2000ull * 1000 * 1000) /* a loop this late makes /health fail */

static void heartbeat_cb(uv_timer_t *t)
{
        vd_worker *w = t->data;
        uint64_t now = uv_hrtime();
        if (w->stall_at_ns != 0 && now >= w->stall_at_ns) {
                unsigned ms = w->stall_ms;
                w->stall_at_ns = 0;
                vd_log(VD_LOG_WARN, "debug_stall", "worker=%u ms=%u", w->index, ms);
                struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
                while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
                }
                now = uv_hrtime();
        }
        vd_count_set(&w->heartbeat_ns, now);
}

/* The debug hook for tests of /health: VPCDNS_DEBUG_STALL_WORKER=INDEX:AFTER_MS:FOR_MS blocks
 * that worker's loop once, FOR_MS long, AFTER_MS after it started. Not for production. */
static void worker_debug_stall(vd_worker *w)
{
        const char *spec = getenv("VPCDNS_DEBUG_STALL_WORKER");
        unsigned index, after, ms;
        if (spec == NULL || sscanf(spec, "%u:%u:%u", &index, &after, &ms) != 3 || index != w->index)
                return;
        w->stall_at_ns = (uint64_t)after * 1000000u + 1; /* from the loop's start, see below */
        w->stall_ms = ms;
}

int vd_srv_worker_heartbeat_init(vd_worker *w)
{
        int r = uv_timer_init(&w->loop, &w->heartbeat);
        if (r < 0)
                return r;
        w->heartbeat.data = w;
        w->heartbeat_ready = true;
        worker_debug_stall(w);
        return 0;
}

/* On the worker's thread, before its loop runs. */
void vd_srv_worker_heartbeat_start(vd_worker *w)
{
        if (w->stall_at_ns != 0) /* it held the delay: now the time to stall */
                w->stall_at_ns += uv_hrtime();
        vd_count_set(&w->heartbeat_ns, uv_hrtime());
        if (w->heartbeat_ready && w->heartbeat_on) /* only /health reads it */
                uv_timer_start(&w->heartbeat, heartbeat_cb, VD_HEARTBEAT_MS, VD_HEARTBEAT_MS);
}

static bool server_health(void *arg, char *why, size_t cap)
{
        vd_server *srv = arg;
        uint64_t now = uv_hrtime();
        for (unsigned i = 0; i < srv->n_workers; i++) {
                uint64_t beat = vd_count_read(&srv->workers[i]->heartbeat_ns);
                if (beat != 0 && now > beat && now - beat > HEALTH_STALL_NS) {
                        snprintf(why, cap, "worker %u: event loop stalled for %llu ms", i,
                                 (unsigned long long)((now - beat) / 1000000u));
                        return false;
                }
        }
        return true;
}

static bool server_ready(void *arg, char *why, size_t cap)
{
        vd_server *srv = arg;
        if (vd_count_read(&srv->draining) != 0) {
                snprintf(why, cap, "shutting down: lameduck, answers go on for now");
                return false;
        }
        for (unsigned i = 0; i < srv->n_workers; i++) {
                if (vd_count_read(&srv->workers[i]->heartbeat_ns) == 0) {
                        snprintf(why, cap, "starting: worker %u is not serving yet", i);
                        return false;
                }
        }
        uv_mutex_lock(&srv->slot.lock); /* ready, but maybe on the last-good copy: say so */
        if (vd_count_read(&srv->fallback) != 0)
                snprintf(why, cap, "%s", srv->fallback_reason);
        uv_mutex_unlock(&srv->slot.lock);
        return true;
}

/* Publishes the size of the local data now being served (any thread, under the slot lock). */
void vd_srv_note_data(vd_server *srv, const vd_snapshot *snap)
{
        vd_snapshot_summary sum = {0};
        if (snap != NULL)
                vd_snapshot_summarize(snap, &sum);
        vd_count_set(&srv->data_names, sum.names);
        vd_count_set(&srv->data_records, sum.records);
        vd_count_set(&srv->data_zones, sum.zones);
}

/* The files local data comes from: each snapshot directory's two files and each zone file. */
static int note_data_files(vd_server *srv, const vd_config *cfg)
{
        static const char *const names[] = {"describe-vpc-endpoints.json",
                                            "describe-network-interfaces.json"};
        size_t n = cfg->n_snapshots * 2 + cfg->n_zones;
        if (n == 0)
                return 0;
        srv->data_files = calloc(n, sizeof(srv->data_files[0]));
        if (srv->data_files == NULL)
                return -ENOMEM;
        for (size_t i = 0; i < cfg->n_snapshots; i++)
                for (size_t j = 0; j < 2; j++)
                        if (asprintf(&srv->data_files[srv->n_data_files++], "%s/%s",
                                     cfg->snapshot_dirs[i], names[j]) < 0)
                                return -ENOMEM;
        for (size_t i = 0; i < cfg->n_zones; i++)
                if ((srv->data_files[srv->n_data_files++] = strdup(cfg->zone_files[i])) == NULL)
                        return -ENOMEM;
        return 0;
}

/* The rows of the counter table (counters.h), summed over the workers while they run: the
 * workers' own counters, the resolvers' and forwarders' (live), the shared cache's. */
static void live_counters(const vd_server *srv, vd_counters *total)
{
        memset(total, 0, sizeof(*total));
        for (unsigned i = 0; i < srv->n_workers; i++) {
                const vd_worker *w = srv->workers[i];
#define LIVE_COUNTER(name, kind, help) total->name += vd_count_read(&w->env.counters.name);
                VD_COUNTERS(LIVE_COUNTER)
#undef LIVE_COUNTER
                if (w->resolver != NULL) {
                        vd_counters rc = {0};
                        vd_srv_take_resolver_counters(&rc, w->resolver);
                        vd_counters_add(total, &rc);
                }
                if (w->forwarder != NULL) {
                        vd_counters fc = {0};
                        vd_srv_take_forwarder_counters(&fc, w->forwarder);
                        vd_counters_add(total, &fc);
                }
        }
        if (srv->cache != NULL) {
                vd_cache_counters cc = {0};
                vd_cache_counters_get(srv->cache, &cc);
                total->cache_stores = cc.stores;
                total->cache_evictions = cc.evictions;
                total->cache_entries = cc.entries;
        }
}

/* One upstream server's figures summed over the workers, and its label, formatted once a
 * scrape (inet_ntop and snprintf cost more than the six lines that show it). */
typedef struct upstream_sum {
        vd_forward_server_stats st;
        char label[64];
} upstream_sum;

/* Per upstream server, summed over the workers' forwarders (matched by address). */
static void write_upstreams(const vd_server *srv, vd_text *out)
{
        enum { QUERIES, TIMEOUTS, FAILURES, MISMATCHES, BUDGET, UP, N_FAMILIES };
        static const char *const family[N_FAMILIES][3] = {
            {"vpcdns_upstream_server_queries_total", "counter",
             "queries sent to this upstream server (retries and probes included)"},
            {"vpcdns_upstream_server_timeouts_total", "counter",
             "queries this upstream server did not answer in time"},
            {"vpcdns_upstream_server_failures_total", "counter",
             "queries to this upstream server that ended in an error other than a timeout"},
            {"vpcdns_upstream_server_mismatches_total", "counter",
             "datagrams from this upstream server dropped: wrong ID, question or letter case"},
            {"vpcdns_upstream_server_budget_refused_total", "counter",
             "queries not sent to this upstream server: over upstream_max_qps"},
            {"vpcdns_upstream_server_up", "gauge",
             "1 while this upstream server answers, 0 while it is avoided (failed since its last "
             "answer, in at least one worker)"},
        };
        upstream_sum *sum = NULL;
        size_t n = 0, cap = 0;

        for (unsigned i = 0; i < srv->n_workers; i++) {
                const vd_forwarder *f = srv->workers[i]->forwarder;
                size_t servers = f != NULL ? vd_forwarder_n_servers(f) : 0;
                for (size_t j = 0; j < servers; j++) {
                        vd_forward_server_stats st;
                        vd_forwarder_server_stats(f, j, &st);
                        size_t k = 0;
                        while (k < n && !vd_addr_equal(&sum[k].st.addr, &st.addr))
                                k++;
                        if (k == n) {
                                if (n == cap) {
                                        size_t more = cap ? cap * 2 : 8;
                                        void *p = realloc(sum, more * sizeof(*sum));
                                        if (p == NULL)
                                                goto out;
                                        sum = p;
                                        cap = more;
                                }
                                sum[n].st = st;
                                vd_addr_format(&st.addr, sum[n].label, sizeof(sum[n].label));
                                n++;
                                continue;
                        }
                        vd_forward_server_stats *to = &sum[k].st;
                        to->queries += st.queries;
                        to->timeouts += st.timeouts;
                        to->failures += st.failures;
                        to->mismatches += st.mismatches;
                        to->budget_refused += st.budget_refused;
                        to->up = to->up && st.up;
                }
        }
        for (int fam = 0; fam < N_FAMILIES && n > 0; fam++) {
                vd_prom_family(out, family[fam][0], family[fam][1], family[fam][2]);
                for (size_t k = 0; k < n; k++) {
                        const vd_forward_server_stats *st = &sum[k].st;
                        uint64_t v = fam == QUERIES      ? st->queries
                                     : fam == TIMEOUTS   ? st->timeouts
                                     : fam == FAILURES   ? st->failures
                                     : fam == MISMATCHES ? st->mismatches
                                     : fam == BUDGET     ? st->budget_refused
                                                         : (st->up ? 1 : 0);
                        vd_prom_sample(out, family[fam][0], "server", sum[k].label, v);
                }
        }
out:
        free(sum);
}

void vd_server_note_endpoints(vd_server *srv, size_t endpoints)
{
        vd_count_set(&srv->data_endpoints, endpoints);
}

void vd_server_note_snapshot_dirs(vd_server *srv, char *const *dirs, size_t n_dirs, const char *vpc)
{
        vd_qlog_refresh_ids(srv->qlog, dirs, n_dirs, vpc);
}

static void write_local_data(const vd_server *srv, vd_text *out)
{
        vd_prom_family(out, "vpcdns_local_data_endpoints", "gauge",
                       "AWS endpoints the local data serves (from the snapshot directories)");
        vd_prom_sample(out, "vpcdns_local_data_endpoints", NULL, NULL,
                       vd_count_read(&srv->data_endpoints));
        vd_prom_family(out, "vpcdns_local_data_names", "gauge",
                       "names that hold local records (wildcards included)");
        vd_prom_sample(out, "vpcdns_local_data_names", NULL, NULL, vd_count_read(&srv->data_names));
        vd_prom_family(out, "vpcdns_local_data_records", "gauge",
                       "local resource records, SOA records included");
        vd_prom_sample(out, "vpcdns_local_data_records", NULL, NULL,
                       vd_count_read(&srv->data_records));
        vd_prom_family(out, "vpcdns_local_data_zones", "gauge", "authoritative local zones");
        vd_prom_sample(out, "vpcdns_local_data_zones", NULL, NULL, vd_count_read(&srv->data_zones));
        vd_prom_family(out, "vpcdns_local_data_last_load_timestamp_seconds", "gauge",
                       "when local data was last loaded successfully (start or SIGHUP), unix "
                       "seconds");
        vd_prom_sample(out, "vpcdns_local_data_last_load_timestamp_seconds", NULL, NULL,
                       vd_count_read(&srv->loaded_unix));
        vd_prom_family(out, "vpcdns_local_data_reload_failures_total", "counter",
                       "reloads (SIGHUP or the file watch) that failed and kept the previous "
                       "data");
        vd_prom_sample(out, "vpcdns_local_data_reload_failures_total", NULL, NULL,
                       vd_count_read(&srv->reload_failed));
        vd_prom_family(out, "vpcdns_data_fallback", "gauge",
                       "1 while the configured data did not load and the last-good copy of "
                       "state_dir is served");
        vd_prom_sample(out, "vpcdns_data_fallback", NULL, NULL, vd_count_read(&srv->fallback));
        vd_prom_family(out, "vpcdns_local_data_reload_skipped_total", "counter",
                       "reloads that compiled nothing: every input held the bytes already loaded");
        vd_prom_sample(out, "vpcdns_local_data_reload_skipped_total", NULL, NULL,
                       vd_count_read(&srv->reload_skipped));
        if (srv->n_data_files == 0)
                return;
        vd_prom_family(out, "vpcdns_local_data_file_age_seconds", "gauge",
                       "seconds since each local data file was last modified (files that cannot "
                       "be read are left out)");
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (size_t i = 0; i < srv->n_data_files; i++) {
                struct stat st;
                if (stat(srv->data_files[i], &st) != 0)
                        continue;
                double age = (double)(now.tv_sec - st.st_mtim.tv_sec) +
                             (double)(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
                vd_prom_sample_double(out, "vpcdns_local_data_file_age_seconds", "path",
                                      srv->data_files[i], age > 0 ? age : 0);
        }
}

/* Where the modules that export metrics of their own write them. Each writes whole families
 * (# HELP, # TYPE, samples) to out; add a module's writer here. */
static void write_module_metrics(const vd_server *srv, vd_text *out)
{
        /* the labelled request, response and latency statistics, summed over the workers */
        vd_stats *sum = calloc(1, sizeof(*sum));
        if (sum != NULL) {
                for (unsigned i = 0; i < srv->n_workers; i++)
                        vd_stats_add(sum, &srv->workers[i]->env.stats);
                vd_stats_write_prometheus(out, sum);
                free(sum);
        }
        /* the ENI prober's families, when eni_health is on (it outlives the HTTP endpoint) */
        if (srv->health != NULL)
                vd_health_write_metrics(srv->health, out);
}

static void server_metrics(void *arg, vd_text *out)
{
        vd_server *srv = arg;
        vd_counters total;
        const char *name;
        uint64_t tcp_open = 0;

        vd_prom_family(out, "vpcdns_build_info", "gauge", "the version of vpcdns running");
        vd_prom_sample(out, "vpcdns_build_info", "version", VD_VERSION, 1);
        vd_srv_swap_lock(srv); /* a reload may replace a worker's forwarder and resolver */
        live_counters(srv, &total);
#define WRITE_COUNTER(counter, kind, help)                                                         \
        name = kind == VD_COUNTER_TOTAL ? "vpcdns_" #counter "_total" : "vpcdns_" #counter;        \
        vd_prom_family(out, name, kind == VD_COUNTER_TOTAL ? "counter" : "gauge", help);           \
        vd_prom_sample(out, name, NULL, NULL, total.counter);
        VD_COUNTERS(WRITE_COUNTER)
#undef WRITE_COUNTER
        for (unsigned i = 0; i < srv->n_workers; i++)
                tcp_open += vd_count_read(&srv->workers[i]->tcp_open);
        vd_prom_family(out, "vpcdns_tcp_connections_open", "gauge", "open TCP client connections");
        vd_prom_sample(out, "vpcdns_tcp_connections_open", NULL, NULL, tcp_open);
        vd_prom_family(out, "vpcdns_workers", "gauge", "worker threads (event loops)");
        vd_prom_sample(out, "vpcdns_workers", NULL, NULL, srv->n_workers);
        char why[128];
        vd_prom_family(out, "vpcdns_ready", "gauge", "1 when /ready answers 200");
        vd_prom_sample(out, "vpcdns_ready", NULL, NULL, server_ready(srv, why, sizeof(why)));
        write_upstreams(srv, out);
        vd_srv_swap_unlock(srv);
        write_local_data(srv, out);
        write_module_metrics(srv, out);
        vd_prom_process(out);
}

/* Starts the HTTP endpoint when cfg asks for one. */
int vd_srv_http_start(vd_server *srv, const vd_config *cfg, vd_error *err)
{
        srv->lameduck_ms = cfg->lameduck_ms;
        vd_count_set(&srv->loaded_unix, (uint64_t)time(NULL));
        vd_srv_note_data(srv, srv->slot.current);
        if (note_data_files(srv, cfg) < 0)
                return vd_error_set(err, "out of memory");
        if (cfg->n_metrics_listen == 0)
                return 0;
        vd_http_handlers h = {
            .arg = srv,
            .metrics = server_metrics,
            .health = server_health,
            .ready = server_ready,
        };
        return vd_http_start(&cfg->metrics_listen[0], &h, cfg->takeover, &srv->http, err);
}

/* Stops the HTTP endpoint (waits for a request being answered): before the workers stop. */
void vd_srv_http_stop(vd_server *srv)
{
        vd_http *h = srv->http;
        srv->http = NULL;
        vd_http_stop(h);
}

/* health.c — the ENI prober (health.h): its thread and libuv loop, the TCP connect probes, the
 * fall/rise state machine per address, the fail-open watch per endpoint, its log lines and
 * its metric families.
 *
 * It owns the table of probed addresses (under h->lock) and writes their state into the
 * snapshots it was given; it must never run on a worker, never block one, and never touch a
 * query: the answer path reads the state from the snapshot. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "vpcdns/health.h"
#include "vpcdns/log.h"
#include "vpcdns/metrics.h"

/* One probed address, with the labels of its ENI (the first snapshot entry that has it). */
struct target {
        int family;
        uint8_t addr[16];
        char address[INET6_ADDRSTRLEN];
        char endpoint_id[64];
        char eni_id[64];
        char az[32];
        bool up;
        bool in_flight; /* a probe of it runs (prober thread sets and clears it) */
        unsigned failures_in_row, successes_in_row;
        uint64_t probes, failures;
};

/* One endpoint: failing open while every one of its addresses is down. */
struct endpoint {
        char id[64];
        bool failing_open;
        uint64_t fail_open_total;
};

/* A probe in flight (prober thread only): freed when both handles are closed and the connect
 * callback ran. */
struct probe {
        vd_health *h;
        int family;
        uint8_t addr[16];
        uv_tcp_t tcp;
        uv_connect_t connect;
        uv_timer_t timer;
        int open_handles;
        bool connect_pending;
        bool timed_out;
        struct probe *next, *prev;
};

struct vd_health {
        uv_mutex_t lock; /* guards everything down to `stopping` */
        vd_health_options opt;
        struct target *targets;
        size_t n_targets;
        struct endpoint *endpoints;
        size_t n_endpoints;
        vd_snapshot **snaps;
        size_t n_snaps;
        bool targeted; /* retarget was called once: eni_health_start was logged */
        bool stopping;
        bool schedule_changed; /* the tick period must be computed again */

        /* The prober thread. */
        uv_thread_t thread;
        uv_loop_t loop;
        uv_async_t wake;
        uv_timer_t tick;
        uint64_t period_ms; /* of tick; 0 while there is nothing to probe */
        size_t cursor;      /* the next target to probe */
        struct probe *probes;
};

/* ---- the table (h->lock held) ------------------------------------------------------------ */

static size_t addr_len(int family)
{
        return family == AF_INET6 ? 16 : 4;
}

static struct target *find_target(struct target *t, size_t n, int family, const uint8_t *addr)
{
        for (size_t i = 0; i < n; i++)
                if (t[i].family == family && memcmp(t[i].addr, addr, addr_len(family)) == 0)
                        return &t[i];
        return NULL;
}

static struct endpoint *find_endpoint(struct endpoint *e, size_t n, const char *id)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(e[i].id, id) == 0)
                        return &e[i];
        return NULL;
}

/* Writes t's state into every entry with its address, in every snapshot. */
static void write_state(vd_health *h, const struct target *t)
{
        for (size_t s = 0; s < h->n_snaps; s++) {
                size_t n = vd_snapshot_eni_count(h->snaps[s]);
                for (size_t i = 0; i < n; i++) {
                        const vd_snapshot_eni *e = vd_snapshot_eni_at(h->snaps[s], i);
                        if (e->family == t->family &&
                            memcmp(e->addr, t->addr, addr_len(t->family)) == 0)
                                vd_snapshot_eni_set_up(h->snaps[s], i, t->up);
                }
        }
}

/* Recomputes whether endpoint e fails open and logs a change. */
static void update_endpoint(vd_health *h, struct endpoint *e)
{
        size_t total = 0, down = 0;
        for (size_t i = 0; i < h->n_targets; i++) {
                if (strcmp(h->targets[i].endpoint_id, e->id) != 0)
                        continue;
                total++;
                down += !h->targets[i].up;
        }
        bool failing = total > 0 && down == total;
        if (failing == e->failing_open)
                return;
        char id[96];
        e->failing_open = failing;
        if (failing) {
                e->fail_open_total++;
                vd_log(VD_LOG_WARN, "eni_fail_open", "endpoint=%s addresses=%zu answer=all",
                       vd_log_value(e->id, id, sizeof(id)), total);
        } else {
                vd_log(VD_LOG_INFO, "eni_fail_open_end", "endpoint=%s addresses=%zu up=%zu",
                       vd_log_value(e->id, id, sizeof(id)), total, total - down);
        }
}

static void log_change(const struct target *t, const char *reason, unsigned in_row)
{
        char endpoint[96], eni[96], az[48];
        vd_log(t->up ? VD_LOG_INFO : VD_LOG_WARN, t->up ? "eni_up" : "eni_down",
               "endpoint=%s eni=%s az=%s address=%s reason=%s in_row=%u",
               vd_log_value(t->endpoint_id, endpoint, sizeof(endpoint)),
               vd_log_value(t->eni_id, eni, sizeof(eni)),
               vd_log_value(t->az[0] != '\0' ? t->az : "unknown", az, sizeof(az)), t->address,
               reason, in_row);
}

/* One probe's outcome: reason NULL for a connect that succeeded. */
static void record(vd_health *h, int family, const uint8_t *addr, const char *reason)
{
        uv_mutex_lock(&h->lock);
        struct target *t = find_target(h->targets, h->n_targets, family, addr);
        if (t == NULL || h->stopping) { /* no longer probed */
                uv_mutex_unlock(&h->lock);
                return;
        }
        t->in_flight = false;
        t->probes++;
        bool changed = false;
        if (reason == NULL) {
                t->failures_in_row = 0;
                if (t->successes_in_row < UINT32_MAX)
                        t->successes_in_row++;
                if (!t->up && t->successes_in_row >= h->opt.rise) {
                        t->up = true;
                        changed = true;
                        log_change(t, "connected", t->successes_in_row);
                }
        } else {
                t->failures++;
                t->successes_in_row = 0;
                if (t->failures_in_row < UINT32_MAX)
                        t->failures_in_row++;
                if (t->up && t->failures_in_row >= h->opt.fall) {
                        t->up = false;
                        changed = true;
                        log_change(t, reason, t->failures_in_row);
                }
        }
        if (changed) {
                write_state(h, t);
                struct endpoint *e = find_endpoint(h->endpoints, h->n_endpoints, t->endpoint_id);
                if (e != NULL)
                        update_endpoint(h, e);
        }
        uv_mutex_unlock(&h->lock);
}

/* ---- probes (prober thread) ---------------------------------------------------------------- */

static const char *failure_reason(int status)
{
        switch (status) {
        case UV_ECONNREFUSED:
                return "refused";
        case UV_ETIMEDOUT:
                return "timeout";
        case UV_ENETUNREACH:
        case UV_EHOSTUNREACH:
                return "unreachable";
        case UV_ECONNRESET:
                return "reset";
        case UV_EADDRNOTAVAIL:
                return "address_not_available";
        case UV_EACCES:
        case UV_EPERM:
                return "not_permitted";
        default:
                return "error";
        }
}

static void probe_free_maybe(struct probe *p)
{
        if (p->open_handles > 0 || p->connect_pending)
                return;
        vd_health *h = p->h;
        if (p->prev != NULL)
                p->prev->next = p->next;
        else
                h->probes = p->next;
        if (p->next != NULL)
                p->next->prev = p->prev;
        free(p);
}

static void probe_handle_closed(uv_handle_t *handle)
{
        struct probe *p = handle->data;
        p->open_handles--;
        probe_free_maybe(p);
}

static void probe_close(struct probe *p)
{
        if (!uv_is_closing((uv_handle_t *)&p->tcp))
                uv_close((uv_handle_t *)&p->tcp, probe_handle_closed);
        if (!uv_is_closing((uv_handle_t *)&p->timer))
                uv_close((uv_handle_t *)&p->timer, probe_handle_closed);
}

static void probe_connected(uv_connect_t *req, int status)
{
        struct probe *p = req->data;
        p->connect_pending = false;
        if (status != UV_ECANCELED || p->timed_out)
                record(p->h, p->family, p->addr,
                       status == 0    ? NULL
                       : p->timed_out ? "timeout"
                                      : failure_reason(status));
        probe_close(p);
        probe_free_maybe(p);
}

static void probe_timeout(uv_timer_t *t)
{
        struct probe *p = t->data;
        p->timed_out = true;
        probe_close(p); /* the connect callback follows with UV_ECANCELED */
}

/* Starts a probe of the address; a connect that fails at once is recorded at once. */
static void probe_start(vd_health *h, int family, const uint8_t *addr, unsigned port,
                        unsigned timeout_ms)
{
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (family == AF_INET6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t)port);
                memcpy(&a->sin6_addr, addr, 16);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t)port);
                memcpy(&a->sin_addr, addr, 4);
        }
        struct probe *p = calloc(1, sizeof(*p));
        if (p == NULL) {
                record(h, family, addr, "out_of_memory");
                return;
        }
        p->h = h;
        p->family = family;
        memcpy(p->addr, addr, addr_len(family));
        p->tcp.data = p;
        p->timer.data = p;
        p->connect.data = p;
        int r = uv_tcp_init(&h->loop, &p->tcp);
        if (r < 0) {
                free(p);
                record(h, family, addr, failure_reason(r));
                return;
        }
        p->open_handles = 1;
        p->next = h->probes;
        if (h->probes != NULL)
                h->probes->prev = p;
        h->probes = p;
        r = uv_timer_init(&h->loop, &p->timer);
        if (r == 0) {
                p->open_handles++;
                r = uv_timer_start(&p->timer, probe_timeout, timeout_ms, 0);
        }
        if (r == 0)
                r = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&ss,
                                   probe_connected);
        if (r < 0) {
                record(h, family, addr, failure_reason(r));
                if (p->open_handles == 1) { /* the timer never became a handle */
                        uv_close((uv_handle_t *)&p->tcp, probe_handle_closed);
                        return;
                }
                probe_close(p);
                return;
        }
        p->connect_pending = true;
}

/* The tick period that spreads one probe of every target over the interval. */
static uint64_t tick_period(const vd_health *h)
{
        if (h->n_targets == 0)
                return 0;
        uint64_t period = h->opt.interval_ms / h->n_targets;
        return period > 0 ? period : 1;
}

/* Probes the next target, if none of its probes is still running. */
static void on_tick(uv_timer_t *timer)
{
        vd_health *h = timer->data;
        int family = 0;
        uint8_t addr[16];
        unsigned port = 0, timeout_ms = 0;

        uv_mutex_lock(&h->lock);
        if (h->n_targets > 0) {
                struct target *t = &h->targets[h->cursor % h->n_targets];
                h->cursor = (h->cursor + 1) % h->n_targets;
                if (!t->in_flight && !h->stopping) {
                        t->in_flight = true;
                        family = t->family;
                        memcpy(addr, t->addr, addr_len(t->family));
                        port = h->opt.port;
                        timeout_ms = h->opt.timeout_ms;
                }
        }
        uv_mutex_unlock(&h->lock);
        if (family != 0)
                probe_start(h, family, addr, port, timeout_ms);
}

/* Another thread changed the targets or options, or asks the prober to stop. */
static void on_wake(uv_async_t *a)
{
        vd_health *h = a->data;
        uv_mutex_lock(&h->lock);
        bool stopping = h->stopping;
        bool changed = h->schedule_changed;
        uint64_t period = tick_period(h);
        h->schedule_changed = false;
        uv_mutex_unlock(&h->lock);

        if (stopping) {
                uv_close((uv_handle_t *)&h->wake, NULL);
                uv_close((uv_handle_t *)&h->tick, NULL);
                for (struct probe *p = h->probes; p != NULL; p = p->next)
                        probe_close(p);
                return;
        }
        if (!changed || period == h->period_ms)
                return;
        h->period_ms = period;
        if (period == 0)
                uv_timer_stop(&h->tick);
        else
                uv_timer_start(&h->tick, on_tick, period, period);
}

static void prober_main(void *arg)
{
        vd_health *h = arg;
        uv_run(&h->loop, UV_RUN_DEFAULT); /* until on_wake closed every handle */
}

/* ---- the interface -------------------------------------------------------------------------- */

int vd_health_new(const vd_health_options *o, vd_health **out, vd_error *err)
{
        *out = NULL;
        vd_health *h = calloc(1, sizeof(*h));
        if (h == NULL)
                return vd_error_set(err, "eni_health: out of memory");
        h->opt = *o;
        int r = uv_mutex_init(&h->lock);
        if (r < 0) {
                free(h);
                return vd_error_set(err, "eni_health: mutex: %s", uv_strerror(r));
        }
        r = uv_loop_init(&h->loop);
        if (r < 0)
                goto fail_mutex;
        r = uv_async_init(&h->loop, &h->wake, on_wake);
        if (r < 0)
                goto fail_loop;
        h->wake.data = h;
        r = uv_timer_init(&h->loop, &h->tick);
        if (r < 0)
                goto fail_async;
        h->tick.data = h;
        r = uv_thread_create(&h->thread, prober_main, h);
        if (r < 0) {
                uv_close((uv_handle_t *)&h->tick, NULL);
                goto fail_async;
        }
        *out = h;
        return 0;
fail_async:
        uv_close((uv_handle_t *)&h->wake, NULL);
        uv_run(&h->loop, UV_RUN_DEFAULT);
fail_loop:
        uv_loop_close(&h->loop);
fail_mutex:
        uv_mutex_destroy(&h->lock);
        free(h);
        return vd_error_set(err, "eni_health: cannot start the prober: %s", uv_strerror(r));
}

void vd_health_set_options(vd_health *h, const vd_health_options *o)
{
        uv_mutex_lock(&h->lock);
        h->opt = *o;
        h->schedule_changed = true;
        uv_mutex_unlock(&h->lock);
        uv_async_send(&h->wake);
}

static void az_label(const vd_snapshot_eni *e, char *out, size_t cap)
{
        snprintf(out, cap, "%s", e->az_name[0] != '\0' ? e->az_name : e->az_id);
}

int vd_health_retarget(vd_health *h, vd_snapshot *const *snaps, size_t n)
{
        size_t cap = 0;
        for (size_t s = 0; s < n; s++)
                cap += vd_snapshot_eni_count(snaps[s]);
        struct target *t = calloc(cap > 0 ? cap : 1, sizeof(*t));
        struct endpoint *e = calloc(cap > 0 ? cap : 1, sizeof(*e));
        vd_snapshot **keep = calloc(n > 0 ? n : 1, sizeof(*keep));
        if (t == NULL || e == NULL || keep == NULL) {
                free(t);
                free(e);
                free(keep);
                return -ENOMEM;
        }
        size_t n_t = 0, n_e = 0, kept = 0;

        uv_mutex_lock(&h->lock);
        for (size_t s = 0; s < n; s++) {
                size_t count = vd_snapshot_eni_count(snaps[s]);
                for (size_t i = 0; i < count; i++) {
                        const vd_snapshot_eni *x = vd_snapshot_eni_at(snaps[s], i);
                        if (x->family != AF_INET && x->family != AF_INET6)
                                continue;
                        if (find_target(t, n_t, x->family, x->addr) != NULL)
                                continue;
                        struct target *nt = &t[n_t++];
                        const struct target *old =
                            find_target(h->targets, h->n_targets, x->family, x->addr);
                        if (old != NULL) {
                                *nt = *old; /* state, counters, a probe in flight */
                                kept++;
                        } else {
                                nt->family = x->family;
                                memcpy(nt->addr, x->addr, addr_len(x->family));
                                nt->up = true;
                                inet_ntop(x->family, x->addr, nt->address, sizeof(nt->address));
                        }
                        snprintf(nt->endpoint_id, sizeof(nt->endpoint_id), "%s", x->endpoint_id);
                        snprintf(nt->eni_id, sizeof(nt->eni_id), "%s", x->eni_id);
                        az_label(x, nt->az, sizeof(nt->az));
                        if (find_endpoint(e, n_e, nt->endpoint_id) == NULL) {
                                const struct endpoint *oe =
                                    find_endpoint(h->endpoints, h->n_endpoints, nt->endpoint_id);
                                if (oe != NULL)
                                        e[n_e] = *oe;
                                else
                                        snprintf(e[n_e].id, sizeof(e[n_e].id), "%s",
                                                 nt->endpoint_id);
                                n_e++;
                        }
                }
        }
        size_t removed = h->n_targets - kept;
        vd_snapshot **old_snaps = h->snaps;
        size_t n_old = h->n_snaps;
        free(h->targets);
        free(h->endpoints);
        h->targets = t;
        h->n_targets = n_t;
        h->endpoints = e;
        h->n_endpoints = n_e;
        for (size_t s = 0; s < n; s++) {
                vd_snapshot_ref(snaps[s]);
                keep[s] = snaps[s];
        }
        h->snaps = keep;
        h->n_snaps = n;
        /* Before anyone reads the new snapshots: every entry gets its address's state. */
        for (size_t i = 0; i < n_t; i++)
                write_state(h, &t[i]);
        for (size_t i = 0; i < n_e; i++)
                update_endpoint(h, &e[i]);
        if (!h->targeted)
                vd_log(VD_LOG_INFO, "eni_health_start",
                       "addresses=%zu endpoints=%zu port=%u interval_ms=%u timeout_ms=%u "
                       "fall=%u rise=%u",
                       n_t, n_e, h->opt.port, h->opt.interval_ms, h->opt.timeout_ms, h->opt.fall,
                       h->opt.rise);
        else if (kept != n_t || removed != 0)
                vd_log(VD_LOG_INFO, "eni_health_targets",
                       "addresses=%zu kept=%zu added=%zu removed=%zu", n_t, kept, n_t - kept,
                       removed);
        h->targeted = true;
        h->schedule_changed = true;
        uv_mutex_unlock(&h->lock);
        uv_async_send(&h->wake);

        for (size_t s = 0; s < n_old; s++)
                vd_snapshot_unref(old_snaps[s]);
        free(old_snaps);
        return 0;
}

bool vd_health_address_status(vd_health *h, int family, const uint8_t *addr, vd_health_status *out)
{
        uv_mutex_lock(&h->lock);
        const struct target *t = find_target(h->targets, h->n_targets, family, addr);
        if (t != NULL) {
                out->up = t->up;
                out->failures_in_row = t->failures_in_row;
                out->successes_in_row = t->successes_in_row;
                out->probes = t->probes;
                out->failures = t->failures;
        }
        uv_mutex_unlock(&h->lock);
        return t != NULL;
}

size_t vd_health_failing_open(vd_health *h)
{
        size_t n = 0;
        uv_mutex_lock(&h->lock);
        for (size_t i = 0; i < h->n_endpoints; i++)
                n += h->endpoints[i].failing_open;
        uv_mutex_unlock(&h->lock);
        return n;
}

/* name{endpoint="..",eni="..",az="..",address=".."} value */
static void write_target_sample(vd_text *out, const char *name, const struct target *t,
                                uint64_t value)
{
        vd_text_puts(out, name);
        vd_text_puts(out, "{endpoint=\"");
        vd_prom_label_value(out, t->endpoint_id);
        vd_text_puts(out, "\",eni=\"");
        vd_prom_label_value(out, t->eni_id);
        vd_text_puts(out, "\",az=\"");
        vd_prom_label_value(out, t->az);
        vd_text_puts(out, "\",address=\"");
        vd_prom_label_value(out, t->address);
        vd_text_puts(out, "\"} ");
        vd_prom_u64(out, value);
        vd_text_puts(out, "\n");
}

void vd_health_write_metrics(vd_health *h, vd_text *out)
{
        static const char up[] = "vpcdns_eni_up", failures[] = "vpcdns_eni_probe_failures_total",
                          fail_open[] = "vpcdns_eni_fail_open_total",
                          failing[] = "vpcdns_eni_failing_open";
        if (h != NULL)
                uv_mutex_lock(&h->lock);
        size_t n_t = h != NULL ? h->n_targets : 0, n_e = h != NULL ? h->n_endpoints : 0;
        vd_prom_family(out, up, "gauge",
                       "1 while the ENI address passes its TCP probes (eni_health), 0 while down");
        for (size_t i = 0; i < n_t; i++)
                write_target_sample(out, up, &h->targets[i], h->targets[i].up);
        vd_prom_family(out, failures, "counter", "ENI TCP probes that failed or timed out");
        for (size_t i = 0; i < n_t; i++)
                write_target_sample(out, failures, &h->targets[i], h->targets[i].failures);
        vd_prom_family(out, fail_open, "counter",
                       "times every address of the endpoint was down and all were answered");
        size_t failing_now = 0;
        for (size_t i = 0; i < n_e; i++) {
                vd_prom_sample(out, fail_open, "endpoint", h->endpoints[i].id,
                               h->endpoints[i].fail_open_total);
                failing_now += h->endpoints[i].failing_open;
        }
        vd_prom_family(out, failing, "gauge",
                       "endpoints whose every address is down, answered fail open now");
        vd_prom_sample(out, failing, NULL, NULL, failing_now);
        if (h != NULL)
                uv_mutex_unlock(&h->lock);
}

void vd_health_stop(vd_health *h)
{
        if (h == NULL)
                return;
        uv_mutex_lock(&h->lock);
        h->stopping = true;
        uv_mutex_unlock(&h->lock);
        uv_async_send(&h->wake);
        uv_thread_join(&h->thread);
        uv_loop_close(&h->loop);
        uv_mutex_destroy(&h->lock);
        for (size_t s = 0; s < h->n_snaps; s++)
                vd_snapshot_unref(h->snaps[s]);
        free(h->snaps);
        free(h->targets);
        free(h->endpoints);
        free(h);
}

/* test_health.c — the ENI prober (resolver/health.c) against real loopback listeners: fall and
 * rise counts, the state written into the snapshot, fail open per endpoint, the carry-over of
 * state and counters on a retarget, probe timeouts, its metric families, and a stop with
 * probes in flight. Every wait is bounded. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/health.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

/* ---- listeners standing in for the ENIs ------------------------------------------------ */

static int listen_on(const char *ip, unsigned port, int backlog)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(fd, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s:%u: %s", ip, port,
                     strerror(errno));
        cr_assert_eq(listen(fd, backlog), 0);
        return fd;
}

/* A port free on every one of ips (the first listener picks it). */
static unsigned listen_all(const char *const *ips, size_t n, int *fds)
{
        for (int attempt = 0; attempt < 20; attempt++) {
                fds[0] = listen_on(ips[0], 0, 16);
                struct sockaddr_in a;
                socklen_t len = sizeof(a);
                getsockname(fds[0], (struct sockaddr *)&a, &len);
                unsigned port = ntohs(a.sin_port);
                size_t i = 1;
                for (; i < n; i++) {
                        int fd = socket(AF_INET, SOCK_STREAM, 0);
                        struct sockaddr_in b = {.sin_family = AF_INET,
                                                .sin_port = htons((uint16_t)port)};
                        inet_pton(AF_INET, ips[i], &b.sin_addr);
                        if (bind(fd, (struct sockaddr *)&b, sizeof(b)) != 0 ||
                            listen(fd, 16) != 0) {
                                close(fd);
                                break;
                        }
                        fds[i] = fd;
                }
                if (i == n)
                        return port;
                while (i-- > 0)
                        close(fds[i]);
        }
        cr_assert_fail("no port free on every test address");
        return 0;
}

/* ---- snapshots with ENI addresses -------------------------------------------------------- */

typedef struct eni_spec {
        const char *endpoint, *eni, *az, *ip;
} eni_spec;

static vd_snapshot *snapshot_of(const eni_spec *specs, size_t n)
{
        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};
        cr_assert_not_null(b);
        for (size_t i = 0; i < n; i++) {
                uint8_t owner[VD_NAME_MAX], addr[4];
                size_t len;
                char name[128];
                snprintf(name, sizeof(name), "%s.sqs.test-1.vpce.amazonaws.com", specs[i].endpoint);
                cr_assert_eq(vd_name_from_text(name, owner, &len), 0);
                vd_snapshot_eni e;
                memset(&e, 0, sizeof(e));
                snprintf(e.endpoint_id, sizeof(e.endpoint_id), "%s", specs[i].endpoint);
                snprintf(e.eni_id, sizeof(e.eni_id), "%s", specs[i].eni);
                snprintf(e.az_name, sizeof(e.az_name), "%s", specs[i].az);
                cr_assert_eq(inet_pton(AF_INET, specs[i].ip, addr), 1);
                cr_assert_eq(vd_builder_add_rr_eni(b, owner, VD_TYPE_A, 60, addr, 4,
                                                   specs[i].endpoint, &e, &err),
                             0, "%s", err.msg);
        }
        vd_snapshot *s = NULL;
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return s;
}

static size_t eni_index(const vd_snapshot *s, const char *ip)
{
        uint8_t addr[4];
        inet_pton(AF_INET, ip, addr);
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++) {
                const vd_snapshot_eni *e = vd_snapshot_eni_at(s, i);
                if (e->family == AF_INET && memcmp(e->addr, addr, 4) == 0)
                        return i;
        }
        cr_assert_fail("%s is not in the ENI table", ip);
        return 0;
}

static bool status_of(vd_health *h, const char *ip, vd_health_status *st)
{
        uint8_t addr[4];
        inet_pton(AF_INET, ip, addr);
        return vd_health_address_status(h, AF_INET, addr, st);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Polls every 2 ms until ip's state is `up`, at most limit_ms (generous: valgrind runs these
 * too). Meanwhile checks the state machine: while fewer than fall failures (going down) or
 * rise successes (coming back) are in a row, the state must not have changed yet. Returns the
 * milliseconds it took. */
static uint64_t wait_state(vd_health *h, const char *ip, bool up, unsigned fall, unsigned rise,
                           unsigned limit_ms)
{
        uint64_t start = now_ms();
        vd_health_status st;
        for (;;) {
                cr_assert(status_of(h, ip, &st), "%s is probed", ip);
                if (st.up == up)
                        break;
                if (up)
                        cr_assert_lt(st.successes_in_row, rise, "%s rose late", ip);
                else
                        cr_assert_lt(st.failures_in_row, fall, "%s fell late", ip);
                cr_assert_lt(now_ms() - start, limit_ms, "%s not %s within %u ms", ip,
                             up ? "up" : "down", limit_ms);
                sleep_ms(2);
        }
        /* the change happened at exactly the count asked for (no probe can finish within the
         * few ms between the change and this look: the interval is 100 ms) */
        if (up)
                cr_assert_geq(st.successes_in_row, rise, "%s came up after %u successes", ip,
                              st.successes_in_row);
        else
                cr_assert_geq(st.failures_in_row, fall, "%s went down after %u failures", ip,
                              st.failures_in_row);
        return now_ms() - start;
}

static const vd_health_options fast = {
    .port = 0, .interval_ms = 100, .timeout_ms = 80, .fall = 2, .rise = 3};

static char *metrics_text(vd_health *h)
{
        vd_text out = {0};
        vd_health_write_metrics(h, &out);
        cr_assert(!out.failed, "the metrics text could not grow");
        return out.data; /* NUL-terminated; freed by the caller */
}

/* ---- the tests ------------------------------------------------------------------------------ */

Test(health, fall_and_rise_counts_move_the_snapshot_state)
{
        static const char *const ips[] = {"127.0.80.1", "127.0.80.2"};
        int fds[2];
        unsigned port = listen_all(ips, 2, fds);
        const eni_spec specs[] = {{"vpce-0a", "eni-01", "test-1a", ips[0]},
                                  {"vpce-0a", "eni-02", "test-1b", ips[1]}};
        vd_snapshot *s = snapshot_of(specs, 2);
        vd_health_options o = fast;
        o.port = port;
        vd_health *h = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_health_retarget(h, &s, 1), 0);

        /* both pass their probes and stay up */
        vd_health_status st;
        uint64_t start = now_ms();
        do {
                sleep_ms(10);
                cr_assert(status_of(h, ips[0], &st));
                cr_assert_lt(now_ms() - start, 5000, "no probes within 5 s");
        } while (st.probes < 2);
        cr_assert(st.up);
        cr_assert_eq(st.failures, 0);
        cr_assert(vd_snapshot_eni_up(s, eni_index(s, ips[0])));

        /* the first listener stops: refused, down after exactly `fall` failures */
        close(fds[0]);
        uint64_t took = wait_state(h, ips[0], false, o.fall, o.rise, 10000);
        cr_assert_not(vd_snapshot_eni_up(s, eni_index(s, ips[0])), "written into the snapshot");
        cr_assert(vd_snapshot_eni_up(s, eni_index(s, ips[1])), "the other stays up");
        cr_assert_eq(vd_health_failing_open(h), 0, "one address of the endpoint is still up");
        fprintf(stderr, "down after %llu ms (fall %u x interval %u ms)\n", (unsigned long long)took,
                o.fall, o.interval_ms);

        /* back: up after exactly `rise` successes */
        fds[0] = listen_on(ips[0], port, 16);
        took = wait_state(h, ips[0], true, o.fall, o.rise, 10000);
        cr_assert(vd_snapshot_eni_up(s, eni_index(s, ips[0])));
        cr_assert(status_of(h, ips[0], &st));
        cr_assert_geq(st.failures, o.fall, "the failures are counted");
        fprintf(stderr, "up after %llu ms (rise %u x interval %u ms)\n", (unsigned long long)took,
                o.rise, o.interval_ms);

        vd_health_stop(h);
        vd_snapshot_unref(s);
        close(fds[0]);
        close(fds[1]);
}

Test(health, every_address_down_fails_open_once_and_is_counted)
{
        static const char *const ips[] = {"127.0.81.1", "127.0.81.2", "127.0.81.3"};
        int fds[3];
        unsigned port = listen_all(ips, 3, fds);
        const eni_spec specs[] = {{"vpce-0b", "eni-11", "test-1a", ips[0]},
                                  {"vpce-0b", "eni-12", "test-1b", ips[1]},
                                  {"vpce-0c", "eni-13", "test-1a", ips[2]}};
        vd_snapshot *s = snapshot_of(specs, 3);
        vd_health_options o = fast;
        o.port = port;
        vd_health *h = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_health_retarget(h, &s, 1), 0);

        close(fds[0]);
        close(fds[1]);
        wait_state(h, ips[0], false, o.fall, o.rise, 10000);
        wait_state(h, ips[1], false, o.fall, o.rise, 10000);
        cr_assert_eq(vd_health_failing_open(h), 1, "vpce-0b fails open, vpce-0c does not");
        char *text = metrics_text(h);
        cr_assert(strstr(text, "vpcdns_eni_fail_open_total{endpoint=\"vpce-0b\"} 1\n") != NULL,
                  "%s", text);
        cr_assert(strstr(text, "vpcdns_eni_fail_open_total{endpoint=\"vpce-0c\"} 0\n") != NULL);
        cr_assert(strstr(text, "vpcdns_eni_failing_open 1\n") != NULL);
        cr_assert(strstr(text, "vpcdns_eni_up{endpoint=\"vpce-0b\",eni=\"eni-11\",az=\"test-1a\","
                               "address=\"127.0.81.1\"} 0\n") != NULL,
                  "%s", text);
        cr_assert(strstr(text, "vpcdns_eni_up{endpoint=\"vpce-0c\",eni=\"eni-13\",az=\"test-1a\","
                               "address=\"127.0.81.3\"} 1\n") != NULL);
        cr_assert(strstr(text, "# TYPE vpcdns_eni_probe_failures_total counter\n") != NULL);
        free(text);

        /* one comes back: the fail-open ends; staying down again later counts a second one */
        fds[0] = listen_on(ips[0], port, 16);
        wait_state(h, ips[0], true, o.fall, o.rise, 10000);
        cr_assert_eq(vd_health_failing_open(h), 0);
        close(fds[0]);
        wait_state(h, ips[0], false, o.fall, o.rise, 10000);
        cr_assert_eq(vd_health_failing_open(h), 1);
        text = metrics_text(h);
        cr_assert(strstr(text, "vpcdns_eni_fail_open_total{endpoint=\"vpce-0b\"} 2\n") != NULL,
                  "%s", text);
        free(text);

        vd_health_stop(h);
        vd_snapshot_unref(s);
        close(fds[2]);
}

Test(health, retarget_keeps_state_of_remaining_addresses_and_starts_new_ones_up)
{
        static const char *const ips[] = {"127.0.82.1", "127.0.82.2", "127.0.82.3"};
        int fds[3];
        unsigned port = listen_all(ips, 3, fds);
        const eni_spec first[] = {{"vpce-0d", "eni-21", "test-1a", ips[0]},
                                  {"vpce-0d", "eni-22", "test-1b", ips[1]}};
        vd_snapshot *s1 = snapshot_of(first, 2);
        vd_health_options o = fast;
        o.port = port;
        vd_health *h = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_health_retarget(h, &s1, 1), 0);
        close(fds[0]);
        wait_state(h, ips[0], false, o.fall, o.rise, 10000);
        vd_health_status before;
        cr_assert(status_of(h, ips[0], &before));

        /* the reload: .1 stays (another endpoint order, a second snapshot as a view would
         * have), .2 goes, .3 is new */
        const eni_spec second[] = {{"vpce-0d", "eni-23", "test-1c", ips[2]},
                                   {"vpce-0d", "eni-21", "test-1a", ips[0]}};
        vd_snapshot *s2 = snapshot_of(second, 2);
        vd_snapshot *s3 = snapshot_of(second + 1, 1);
        cr_assert(vd_snapshot_eni_up(s2, eni_index(s2, ips[0])), "a new snapshot starts up");
        vd_snapshot *const both[] = {s2, s3};
        cr_assert_eq(vd_health_retarget(h, both, 2), 0);
        cr_assert_not(vd_snapshot_eni_up(s2, eni_index(s2, ips[0])),
                      "the state is copied in before it is published");
        cr_assert_not(vd_snapshot_eni_up(s3, eni_index(s3, ips[0])));
        cr_assert(vd_snapshot_eni_up(s2, eni_index(s2, ips[2])));
        vd_health_status after;
        cr_assert(status_of(h, ips[0], &after));
        cr_assert_not(after.up);
        cr_assert_geq(after.failures, before.failures, "counters are kept");
        cr_assert_geq(after.probes, before.probes);
        cr_assert_not(status_of(h, ips[1], &after), "a gone address is no longer probed");
        cr_assert(status_of(h, ips[2], &after));
        cr_assert(after.up);
        /* the old snapshot is released by the prober; ours keeps it alive here */
        vd_snapshot_unref(s1);

        /* the kept address comes back in both new snapshots */
        fds[0] = listen_on(ips[0], port, 16);
        wait_state(h, ips[0], true, o.fall, o.rise, 10000);
        cr_assert(vd_snapshot_eni_up(s2, eni_index(s2, ips[0])));
        cr_assert(vd_snapshot_eni_up(s3, eni_index(s3, ips[0])));

        /* nothing to probe at all, then stop */
        cr_assert_eq(vd_health_retarget(h, NULL, 0), 0);
        cr_assert_not(status_of(h, ips[0], &after));
        vd_health_stop(h);
        vd_snapshot_unref(s2);
        vd_snapshot_unref(s3);
        for (int i = 0; i < 3; i++)
                close(fds[i]);
}

/* A listener whose accept queue is full drops further SYNs: the connect times out. The stop
 * comes while such probes are in flight and must close them all (valgrind, TSan). */
Test(health, silent_address_times_out_and_stop_cancels_probes_in_flight)
{
        static const char *const ips[] = {"127.0.83.1"};
        int fds[1];
        unsigned port = listen_all(ips, 1, fds);
        close(fds[0]);
        fds[0] = listen_on(ips[0], port, 0);
        int fill[4];
        for (int i = 0; i < 4; i++) { /* fill the accept queue, never accepted */
                fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
                inet_pton(AF_INET, ips[0], &a.sin_addr);
                (void)connect(fill[i], (struct sockaddr *)&a, sizeof(a));
        }
        const eni_spec specs[] = {{"vpce-0e", "eni-31", "", ips[0]}};
        vd_snapshot *s = snapshot_of(specs, 1);
        vd_health_options o = fast;
        o.port = port;
        o.fall = 1;
        vd_health *h = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_health_retarget(h, &s, 1), 0);
        wait_state(h, ips[0], false, o.fall, o.rise, 10000);
        char *text = metrics_text(h);
        cr_assert(strstr(text, "az=\"\",address=\"127.0.83.1\"} 0\n") != NULL, "%s", text);
        free(text);
        sleep_ms(30); /* most likely mid-probe */
        vd_health_stop(h);
        vd_snapshot_unref(s);
        for (int i = 0; i < 4; i++)
                close(fill[i]);
        close(fds[0]);
}

Test(health, options_change_live_and_an_idle_prober_stops_cleanly)
{
        vd_health *h = NULL;
        vd_error err = {{0}};
        vd_health_options o = fast;
        o.port = 9;
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        o.interval_ms = 1000;
        vd_health_set_options(h, &o);
        char *text = metrics_text(h);
        cr_assert(strstr(text, "vpcdns_eni_failing_open 0\n") != NULL, "%s", text);
        free(text);
        vd_health_stop(h);
        vd_health_stop(NULL);
        text = metrics_text(NULL);
        cr_assert(strstr(text, "# TYPE vpcdns_eni_up gauge\n") != NULL);
        free(text);
}

/* The probes of one interval are spread over it, not sent in a burst: with 4 addresses and
 * 400 ms, one connect every 100 ms. The first connection each listener sees is timed. */
Test(health, probes_are_spread_over_the_interval)
{
        static const char *const ips[] = {"127.0.84.1", "127.0.84.2", "127.0.84.3", "127.0.84.4"};
        int fds[4];
        unsigned port = listen_all(ips, 4, fds);
        const eni_spec specs[] = {{"vpce-0f", "eni-41", "a", ips[0]},
                                  {"vpce-0f", "eni-42", "b", ips[1]},
                                  {"vpce-0f", "eni-43", "c", ips[2]},
                                  {"vpce-0f", "eni-44", "d", ips[3]}};
        vd_snapshot *s = snapshot_of(specs, 4);
        vd_health_options o = {
            .port = port, .interval_ms = 400, .timeout_ms = 100, .fall = 2, .rise = 2};
        vd_health *h = NULL;
        vd_error err = {{0}};
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        uint64_t start = now_ms(), first[4] = {0};
        cr_assert_eq(vd_health_retarget(h, &s, 1), 0);
        size_t seen = 0;
        while (seen < 4 && now_ms() - start < 5000) {
                struct pollfd p[4];
                for (int i = 0; i < 4; i++)
                        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                if (poll(p, 4, 20) <= 0)
                        continue;
                for (int i = 0; i < 4; i++) {
                        if (!(p[i].revents & POLLIN))
                                continue;
                        int c = accept(fds[i], NULL, NULL);
                        if (c >= 0)
                                close(c);
                        if (first[i] == 0) {
                                first[i] = now_ms();
                                seen++;
                        }
                }
        }
        cr_assert_eq(seen, 4, "every address probed within 5 s");
        uint64_t lo = first[0], hi = first[0];
        for (int i = 1; i < 4; i++) {
                lo = first[i] < lo ? first[i] : lo;
                hi = first[i] > hi ? first[i] : hi;
        }
        fprintf(stderr, "first probes of 4 addresses spread over %llu ms (interval 400 ms)\n",
                (unsigned long long)(hi - lo));
        cr_assert_geq(hi - lo, 200, "a burst: the 4 first probes within %llu ms",
                      (unsigned long long)(hi - lo));
        vd_health_stop(h);
        vd_snapshot_unref(s);
        for (int i = 0; i < 4; i++)
                close(fds[i]);
}

/* An IPv6 ENI address (a dualstack endpoint's AAAA) is probed alike: ::1 here. */
Test(health, ipv6_address_is_probed)
{
        int fd = socket(AF_INET6, SOCK_STREAM, 0);
        cr_assert_geq(fd, 0);
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
                close(fd);
                cr_skip_test("no IPv6 loopback here");
        }
        cr_assert_eq(listen(fd, 16), 0);
        socklen_t len = sizeof(a);
        getsockname(fd, (struct sockaddr *)&a, &len);

        vd_builder *b = vd_builder_new();
        vd_error err = {{0}};
        uint8_t owner[VD_NAME_MAX];
        size_t olen;
        cr_assert_eq(vd_name_from_text("vpce-10.kms.test-1.vpce.amazonaws.com", owner, &olen), 0);
        vd_snapshot_eni e;
        memset(&e, 0, sizeof(e));
        snprintf(e.endpoint_id, sizeof(e.endpoint_id), "vpce-10");
        snprintf(e.eni_id, sizeof(e.eni_id), "eni-51");
        snprintf(e.az_id, sizeof(e.az_id), "tst1-az1");
        cr_assert_eq(vd_builder_add_rr_eni(b, owner, VD_TYPE_AAAA, 60, in6addr_loopback.s6_addr, 16,
                                           "vpce-10", &e, &err),
                     0, "%s", err.msg);
        vd_snapshot *s = NULL;
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);

        vd_health_options o = fast;
        o.port = ntohs(a.sin6_port);
        vd_health *h = NULL;
        cr_assert_eq(vd_health_new(&o, &h, &err), 0, "%s", err.msg);
        cr_assert_eq(vd_health_retarget(h, &s, 1), 0);
        vd_health_status st;
        uint64_t start = now_ms();
        do {
                sleep_ms(10);
                cr_assert(vd_health_address_status(h, AF_INET6, in6addr_loopback.s6_addr, &st));
                cr_assert_lt(now_ms() - start, 5000, "no probe within 5 s");
        } while (st.probes < 2);
        cr_assert(st.up);
        cr_assert_eq(st.failures, 0, "the listener accepts");
        close(fd);
        start = now_ms();
        do {
                sleep_ms(5);
                cr_assert(vd_health_address_status(h, AF_INET6, in6addr_loopback.s6_addr, &st));
                cr_assert_lt(now_ms() - start, 10000, "not down within 10 s");
        } while (st.up);
        cr_assert_not(vd_snapshot_eni_up(s, 0));
        char *text = metrics_text(h);
        cr_assert(strstr(text, "vpcdns_eni_up{endpoint=\"vpce-10\",eni=\"eni-51\",az=\"tst1-az1\","
                               "address=\"::1\"} 0\n") != NULL,
                  "%s", text);
        free(text);
        vd_health_stop(h);
        vd_snapshot_unref(s);
}

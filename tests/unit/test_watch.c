/* test_watch.c — resolver/watch.c: the debounce (pure, on a made-up clock), the content
 * fingerprint of files and directories, and the file watch on a real loop: a burst of writes
 * makes one callback, a directory renamed over an input and a symlink swap are seen. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "vpcdns/watch.h"

/* ---- debounce --------------------------------------------------------------------------- */

Test(watch, debounce_waits_for_quiet_and_restarts_on_each_event)
{
        vd_debounce d;
        uint64_t wait;
        vd_debounce_init(&d, 250, 2000);
        cr_assert_not(vd_debounce_due(&d, 0, &wait));
        cr_assert_eq(wait, 0, "nothing pending: nothing to wait for");
        cr_assert_eq(vd_debounce_event(&d, 1000), 250);
        cr_assert_eq(vd_debounce_event(&d, 1100), 250, "a new event restarts the quiet time");
        cr_assert_not(vd_debounce_due(&d, 1300, &wait));
        cr_assert_eq(wait, 50);
        cr_assert(vd_debounce_due(&d, 1350, &wait));
        cr_assert_not(vd_debounce_due(&d, 1400, &wait), "fires once per burst");
        cr_assert_eq(wait, 0);
}

Test(watch, debounce_fires_at_the_latest_after_max_in_a_stream)
{
        vd_debounce d;
        uint64_t wait;
        int fired = 0;
        vd_debounce_init(&d, 250, 2000);
        /* an event every 100 ms for 5 s: quiet never comes, max does */
        for (uint64_t t = 10000; t < 15000; t += 100) {
                uint64_t w = vd_debounce_event(&d, t);
                cr_assert_leq(w, 250);
                if (vd_debounce_due(&d, t, &wait))
                        fired++;
        }
        cr_assert_eq(fired, 2, "every 2 s in a 5 s stream, got %d", fired);
}

Test(watch, debounce_max_below_quiet_is_quiet)
{
        vd_debounce d;
        uint64_t wait;
        vd_debounce_init(&d, 250, 10);
        cr_assert_eq(vd_debounce_event(&d, 0), 250);
        cr_assert_not(vd_debounce_due(&d, 249, &wait));
        cr_assert(vd_debounce_due(&d, 250, &wait));
}

/* ---- fingerprints ------------------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/vpcdns-watch.XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *rel, const char *text)
{
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f, "%s", path);
        fputs(text, f);
        cr_assert_eq(fclose(f), 0);
}

static void add_input(vd_inputs *in, const char *rel)
{
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
        cr_assert_eq(vd_inputs_add(in, path), 0);
}

static void take(const vd_inputs *in, vd_fingerprint *fp)
{
        vd_fingerprint_take(in, fp);
        cr_assert(fp->valid);
        cr_assert_eq(fp->n, in->n);
}

Test(watch, inputs_are_a_set)
{
        vd_inputs in;
        vd_inputs_init(&in);
        cr_assert_eq(vd_inputs_add(&in, "/a"), 0);
        cr_assert_eq(vd_inputs_add(&in, "/b"), 0);
        cr_assert_eq(vd_inputs_add(&in, "/a"), 0);
        cr_assert_eq(in.n, 2);
        for (int i = 0; i < VD_INPUTS_MAX; i++) {
                char p[32];
                snprintf(p, sizeof(p), "/p%d", i);
                int r = vd_inputs_add(&in, p);
                cr_assert(r == 0 || (r == -ENOSPC && in.n == VD_INPUTS_MAX));
        }
        vd_inputs_free(&in);
        cr_assert_eq(in.n, 0);
}

Test(watch, fingerprint_follows_content_not_time)
{
        vd_inputs in;
        vd_fingerprint a, b;
        char snap[128];
        make_tmpdir();
        snprintf(snap, sizeof(snap), "%s/snap", tmpdir);
        cr_assert_eq(mkdir(snap, 0755), 0);
        write_file("snap/describe-vpc-endpoints.json", "{\"VpcEndpoints\": []}\n");
        write_file("snap/describe-network-interfaces.json", "{\"NetworkInterfaces\": []}\n");
        write_file("z.zone", "host IN A 192.0.2.1\n");
        vd_inputs_init(&in);
        add_input(&in, "snap");
        add_input(&in, "z.zone");
        take(&in, &a);

        /* the same bytes written again (a new mtime, a new inode): equal */
        usleep(10000);
        write_file("z.zone", "host IN A 192.0.2.1\n");
        write_file("snap/describe-vpc-endpoints.json", "{\"VpcEndpoints\": []}\n");
        take(&in, &b);
        cr_assert(vd_fingerprint_equal(&a, &b));
        cr_assert_eq(vd_fingerprint_first_change(&a, &b), -1);

        /* one byte in one file of the directory: input 0 changed */
        write_file("snap/describe-network-interfaces.json", "{\"NetworkInterfaces\": [ ]}\n");
        take(&in, &b);
        cr_assert_not(vd_fingerprint_equal(&a, &b));
        cr_assert_eq(vd_fingerprint_first_change(&a, &b), 0);

        /* back to the old bytes, then a new file in the directory: a change too */
        write_file("snap/describe-network-interfaces.json", "{\"NetworkInterfaces\": []}\n");
        take(&in, &b);
        cr_assert(vd_fingerprint_equal(&a, &b));
        write_file("snap/describe-subnets.json", "{}\n");
        take(&in, &b);
        cr_assert_eq(vd_fingerprint_first_change(&a, &b), 0);

        /* the zone file: input 1 */
        take(&in, &a);
        write_file("z.zone", "host IN A 192.0.2.2\n");
        take(&in, &b);
        cr_assert_eq(vd_fingerprint_first_change(&a, &b), 1);
        vd_inputs_free(&in);
        remove_tmpdir();
}

Test(watch, fingerprint_of_what_cannot_be_read_matches_no_content)
{
        vd_inputs in;
        vd_fingerprint a, b;
        make_tmpdir();
        vd_inputs_init(&in);
        add_input(&in, "missing.zone");
        take(&in, &a);
        take(&in, &b);
        cr_assert(vd_fingerprint_equal(&a, &b), "stable while it stays missing");
        write_file("missing.zone", "");
        take(&in, &b);
        cr_assert_not(vd_fingerprint_equal(&a, &b), "an empty file is not a missing one");
        vd_inputs_free(&in);
        remove_tmpdir();
}

Test(watch, invalid_or_different_sets_never_compare_equal)
{
        vd_fingerprint a = {.n = 1, .hash = {7}, .valid = true};
        vd_fingerprint b = a;
        cr_assert(vd_fingerprint_equal(&a, &b));
        b.valid = false;
        cr_assert_not(vd_fingerprint_equal(&a, &b));
        cr_assert_eq(vd_fingerprint_first_change(&a, &b), 0);
        b = a;
        b.n = 2;
        cr_assert_not(vd_fingerprint_equal(&a, &b));
        vd_fingerprint empty = {.n = 0, .valid = true}, never = {0};
        cr_assert(vd_fingerprint_equal(&empty, &empty));
        cr_assert_not(vd_fingerprint_equal(&empty, &never), "never taken matches nothing");
}

/* ---- the watch on a real loop --------------------------------------------------------------- */

struct run {
        uv_loop_t loop;
        vd_watch *watch;
        uv_timer_t step;
        int calls;
        char last[256];
        int writes; /* left to do in a burst */
        void (*action)(struct run *);
        uint64_t call_ms[8];
        uint64_t start_ms;
        uv_timer_t stop;
        int want;   /* > 0: once this many calls came, stop after a short grace */
        bool again; /* the action runs once more after the next call (its step stays open) */
};

static void act_cb(uv_timer_t *t);
static void stop_cb(uv_timer_t *t);

static void on_settled(void *arg, const char *path)
{
        struct run *r = arg;
        if (r->calls < 8)
                r->call_ms[r->calls] = uv_now(&r->loop) - r->start_ms;
        r->calls++;
        snprintf(r->last, sizeof(r->last), "%s", path);
        vd_watch_rearm(r->watch); /* as the server does after a reload */
        if (r->again) { /* the next change comes only after this call re-armed the watch */
                r->again = false;
                uv_timer_start(&r->step, act_cb, 50, 0);
        }
        /* Slow machines (valgrind) take their time: the test waits for the calls it wants, then
         * a little longer to see that no more come. */
        if (r->want > 0 && r->calls == r->want)
                uv_timer_start(&r->stop, stop_cb, 300, 0);
}

static void stop_cb(uv_timer_t *t)
{
        struct run *r = t->data;
        vd_watch_close(r->watch);
        uv_close((uv_handle_t *)t, NULL);
}

static void act_cb(uv_timer_t *t)
{
        struct run *r = t->data;
        r->action(r);
}

/* Watches in, runs action once after 50 ms (it may re-arm the step timer), and stops the
 * loop after total_ms, or 300 ms after the r->want-th call. */
static void run_watch(struct run *r, vd_inputs *in, void (*action)(struct run *), uint64_t total_ms)
{
        cr_assert_eq(uv_loop_init(&r->loop), 0);
        cr_assert_eq(vd_watch_new(&r->loop, in, 100, 1000, on_settled, r, &r->watch), 0);
        cr_assert_geq(vd_watch_armed(r->watch), in->n * 2, "each input and its parent");
        r->action = action;
        r->start_ms = uv_now(&r->loop);
        uv_timer_init(&r->loop, &r->step);
        r->step.data = r;
        uv_timer_start(&r->step, act_cb, 50, 0);
        uv_timer_init(&r->loop, &r->stop);
        r->stop.data = r;
        uv_timer_start(&r->stop, stop_cb, total_ms, 0);
        uv_run(&r->loop, UV_RUN_DEFAULT); /* the step timer is closed by the action */
        cr_assert_eq(uv_loop_close(&r->loop), 0, "every handle closed");
}

static void burst(struct run *r)
{
        char text[64];
        snprintf(text, sizeof(text), "host IN A 192.0.2.%d\n", r->writes);
        write_file("z.zone", text);
        if (--r->writes > 0)
                uv_timer_start(&r->step, act_cb, 5, 0);
        else
                uv_close((uv_handle_t *)&r->step, NULL);
}

Test(watch, a_burst_of_writes_settles_into_one_call)
{
        struct run r = {.writes = 20, .want = 1};
        vd_inputs in;
        make_tmpdir();
        write_file("z.zone", "host IN A 192.0.2.1\n");
        write_file("other", "x\n");
        vd_inputs_init(&in);
        add_input(&in, "z.zone");
        run_watch(&r, &in, burst, 30000);
        cr_assert_eq(r.calls, 1, "20 writes 5 ms apart: one call, got %d", r.calls);
        cr_assert_str_eq(r.last, in.path[0]);
        /* 50 ms + 20 writes (about 100 ms) + 100 ms quiet */
        cr_assert_geq(r.call_ms[0], 200, "called after %llu ms", (unsigned long long)r.call_ms[0]);
        vd_inputs_free(&in);
        remove_tmpdir();
}

static void touch_other_file(struct run *r)
{
        write_file("other", "y\n");
        uv_close((uv_handle_t *)&r->step, NULL);
}

Test(watch, another_file_of_the_parent_directory_is_ignored)
{
        struct run r = {0};
        vd_inputs in;
        make_tmpdir();
        write_file("z.zone", "host IN A 192.0.2.1\n");
        write_file("other", "x\n");
        vd_inputs_init(&in);
        add_input(&in, "z.zone");
        run_watch(&r, &in, touch_other_file, 400);
        cr_assert_eq(r.calls, 0);
        vd_inputs_free(&in);
        remove_tmpdir();
}

static void swap_directory(struct run *r)
{
        char from[128], to[128], old[128];
        snprintf(from, sizeof(from), "%s/snap.new", tmpdir);
        snprintf(to, sizeof(to), "%s/snap", tmpdir);
        snprintf(old, sizeof(old), "%s/snap.old", tmpdir);
        cr_assert_eq(mkdir(from, 0755), 0);
        write_file("snap.new/describe-vpc-endpoints.json", "{}\n");
        cr_assert_eq(rename(to, old), 0);
        cr_assert_eq(rename(from, to), 0);
        if (r->writes-- > 0) { /* and once more, after the call re-armed the watch */
                r->again = true;
                char cmd[160];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", old);
                cr_assert_eq(system(cmd), 0);
        } else {
                uv_close((uv_handle_t *)&r->step, NULL);
        }
}

Test(watch, a_directory_renamed_over_the_input_is_seen_each_time)
{
        struct run r = {.writes = 1, .want = 2};
        vd_inputs in;
        make_tmpdir();
        char snap[128];
        snprintf(snap, sizeof(snap), "%s/snap", tmpdir);
        cr_assert_eq(mkdir(snap, 0755), 0);
        vd_inputs_init(&in);
        add_input(&in, "snap");
        run_watch(&r, &in, swap_directory, 30000);
        cr_assert_eq(r.calls, 2, "a swap, a call, another swap: two calls, got %d", r.calls);
        vd_inputs_free(&in);
        remove_tmpdir();
}

static void swap_symlink(struct run *r)
{
        char link[128], tmp[128], target[128];
        snprintf(link, sizeof(link), "%s/current", tmpdir);
        snprintf(tmp, sizeof(tmp), "%s/current.tmp", tmpdir);
        snprintf(target, sizeof(target), "%s/v2", tmpdir);
        cr_assert_eq(symlink(target, tmp), 0);
        cr_assert_eq(rename(tmp, link), 0);
        uv_close((uv_handle_t *)&r->step, NULL);
}

Test(watch, a_symlink_swap_is_seen)
{
        struct run r = {.want = 1};
        vd_inputs in;
        char v1[128], v2[128], link[128];
        make_tmpdir();
        snprintf(v1, sizeof(v1), "%s/v1", tmpdir);
        snprintf(v2, sizeof(v2), "%s/v2", tmpdir);
        snprintf(link, sizeof(link), "%s/current", tmpdir);
        cr_assert_eq(mkdir(v1, 0755), 0);
        cr_assert_eq(mkdir(v2, 0755), 0);
        cr_assert_eq(symlink(v1, link), 0);
        vd_inputs_init(&in);
        add_input(&in, "current");
        run_watch(&r, &in, swap_symlink, 30000);
        cr_assert_eq(r.calls, 1, "got %d", r.calls);
        vd_inputs_free(&in);
        remove_tmpdir();
}

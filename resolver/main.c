/* main.c — argv → config → snapshot → server → run → teardown. The only file that knows
 * every module; it decides nothing the modules can decide themselves.
 * Exit status: 0 success, 1 a load or start failure, 2 a usage or configuration error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vpcdns/aws.h"
#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/log.h"
#include "vpcdns/server.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/zonefile.h"

#define ADDR_TEXT 96
#define LIST_TEXT (ADDR_TEXT * (VD_MAX_LISTEN + VD_MAX_UPSTREAM))

struct load_totals {
        vd_aws_summary aws;
        size_t zone_records;
        vd_snapshot_summary snap;
};

/* "a,b,c" (sep ",") or "a b c" (sep " "); "none" when empty. */
static void format_addrs(const vd_addr *list, size_t n, const char *sep, char *out, size_t cap)
{
        size_t len = 0;
        out[0] = '\0';
        if (n == 0)
                snprintf(out, cap, "none");
        for (size_t i = 0; i < n && len < cap; i++) {
                char a[ADDR_TEXT];
                vd_addr_format(&list[i], a, sizeof(a));
                int w = snprintf(out + len, cap - len, "%s%s", i > 0 ? sep : "", a);
                if (w < 0)
                        break;
                len += (size_t)w;
        }
}

/* Loads every snapshot directory and zone file into one snapshot. */
static int build_snapshot(const vd_config *cfg, vd_snapshot **out, struct load_totals *t,
                          vd_error *err)
{
        int rc = 0;
        vd_builder *b = vd_builder_new();
        if (b == NULL)
                return vd_error_set(err, "out of memory");
        for (size_t i = 0; i < cfg->n_snapshots && rc == 0; i++)
                rc = vd_aws_load(b, cfg->snapshot_dirs[i], &t->aws, err);
        for (size_t i = 0; i < cfg->n_zones && rc == 0; i++) {
                size_t records = 0;
                rc = vd_zonefile_load(b, cfg->zone_files[i], &records, err);
                t->zone_records += records;
        }
        if (rc == 0)
                rc = vd_builder_finish(b, out, err);
        vd_builder_free(b);
        if (rc == 0)
                vd_snapshot_summarize(*out, &t->snap);
        return rc;
}

/* SIGHUP: the same snapshot directories and zone files, read again. */
static int reload_snapshot(void *arg, vd_snapshot **out, vd_error *err)
{
        struct load_totals t;
        memset(&t, 0, sizeof(t));
        return build_snapshot(arg, out, &t, err);
}

static void print_check(const vd_config *cfg, const struct load_totals *t)
{
        char listen[LIST_TEXT], upstream[LIST_TEXT];
        format_addrs(cfg->listen, cfg->n_listen, " ", listen, sizeof(listen));
        format_addrs(cfg->upstream, cfg->n_upstream, " ", upstream, sizeof(upstream));
        printf("config: %s\n", cfg->config_path != NULL ? cfg->config_path : "(none)");
        printf("snapshot directories: %zu\n", cfg->n_snapshots);
        printf("endpoints in files: %zu\n", t->aws.endpoints);
        printf("endpoints served: %zu\n", t->aws.endpoints_served);
        printf("endpoint addresses: %zu\n", t->aws.addresses);
        printf("zone files: %zu\n", cfg->n_zones);
        printf("names: %zu\n", t->snap.names);
        printf("records: %zu\n", t->snap.records);
        printf("zones: %zu\n", t->snap.zones);
        printf("listen: %s\n", listen);
        printf("upstream: %s%s\n", upstream,
               cfg->n_upstream == 0 ? " (forwarded queries get SERVFAIL)" : "");
        printf("workers: %u\n", cfg->workers);
        printf("ok\n");
}

static int serve(const vd_config *cfg, vd_snapshot *snap, const struct load_totals *t)
{
        char listen[LIST_TEXT], upstream[LIST_TEXT];
        vd_server *srv = NULL;
        vd_error err = {{0}};

        format_addrs(cfg->listen, cfg->n_listen, ",", listen, sizeof(listen));
        format_addrs(cfg->upstream, cfg->n_upstream, ",", upstream, sizeof(upstream));
        if (cfg->n_upstream == 0)
                vd_log(VD_LOG_WARN, "no_upstream",
                       "detail=\"no upstream server: names without local data get SERVFAIL\"");
        if (vd_server_new(cfg, snap, &srv, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                return 1;
        }
        vd_server_on_reload(srv, reload_snapshot, (void *)cfg);
        vd_log(VD_LOG_INFO, "start",
               "version=%s listen=%s upstream=%s workers=%u endpoints=%zu names=%zu records=%zu "
               "zones=%zu",
               VD_VERSION, listen, upstream, cfg->workers, t->aws.endpoints_served, t->snap.names,
               t->snap.records, t->snap.zones);
        int rc = vd_server_run(srv);
        vd_server_free(srv);
        vd_log(VD_LOG_INFO, "stop", "status=%s", rc == 0 ? "clean" : "error");
        return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        struct load_totals totals;
        int status;

        memset(&totals, 0, sizeof(totals));
        vd_config_init(&cfg);
        if (vd_config_from_args(&cfg, argc, argv, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\nTry 'vpcdns --help' for more information.\n",
                        err.msg);
                status = 2;
                goto out;
        }
        if (cfg.help) {
                fputs(vd_config_usage(), stdout);
                status = 0;
                goto out;
        }
        if (cfg.version) {
                printf("vpcdns %s\n", VD_VERSION);
                status = 0;
                goto out;
        }
        if (vd_config_finalize(&cfg, "/etc/resolv.conf", &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                status = 2;
                goto out;
        }
        vd_log_set_level(cfg.log_level);

        if (build_snapshot(&cfg, &snap, &totals, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                status = 1;
                goto out;
        }
        if (cfg.check) {
                print_check(&cfg, &totals);
                status = fflush(stdout) == 0 ? 0 : 1;
        } else if (cfg.dump) {
                status = vd_zonefile_dump(snap, stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
                if (status != 0)
                        fprintf(stderr, "vpcdns: error: cannot write the dump: %s\n",
                                strerror(errno));
        } else {
                status = serve(&cfg, snap, &totals);
        }
out:
        if (snap != NULL)
                vd_snapshot_unref(snap);
        vd_config_free(&cfg);
        return status;
}

/* main.c — argv → config → snapshot → server → (drop privileges) → run → teardown. The only
 * file that knows every module; it decides nothing the modules can decide themselves.
 * Owns the switch to an unprivileged user once every socket is bound.
 * Exit status: 0 success, 1 a load or start failure, 2 a usage or configuration error. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "vpcdns/aws.h"
#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/log.h"
#include "vpcdns/server.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/watch.h"
#include "vpcdns/zonefile.h"

#define ADDR_TEXT 96
#define LIST_TEXT (ADDR_TEXT * (VD_MAX_LISTEN + VD_MAX_UPSTREAM))
#define CIDR_TEXT (INET6_ADDRSTRLEN + 5)
#define ALLOW_TEXT (CIDR_TEXT * VD_MAX_ACL)
#define PASSWD_BUF 65536
#define VALUE_TEXT 300 /* a number, a word or a user name */

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

/* "10.0.0.0/8 fc00::/7". */
static void format_cidrs(const vd_cidr *list, size_t n, char *out, size_t cap)
{
        size_t len = 0;
        out[0] = '\0';
        for (size_t i = 0; i < n && len < cap; i++) {
                char host[INET6_ADDRSTRLEN] = "?";
                const void *addr =
                    list[i].ss.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&list[i].ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&list[i].ss)->sin6_addr;
                inet_ntop(list[i].ss.ss_family, addr, host, sizeof(host));
                int w = snprintf(out + len, cap - len, "%s%s/%u", i > 0 ? " " : "", host,
                                 list[i].prefix);
                if (w < 0)
                        break;
                len += (size_t)w;
        }
}

/* True when some allow prefix has length 0: every client of a family may query. */
static bool allows_everyone(const vd_config *cfg)
{
        for (size_t i = 0; i < cfg->n_allow; i++) {
                if (cfg->allow[i].prefix == 0)
                        return true;
        }
        return false;
}

/* The account of cfg->user: by name, or by number when the name is all digits. buf (of
 * PASSWD_BUF bytes) holds the strings of *pw. Returns 0 or -ENOENT/-errno with err set. */
static int lookup_user(const char *user, struct passwd *pw, char *buf, vd_error *err)
{
        struct passwd *found = NULL;
        int rc = getpwnam_r(user, pw, buf, PASSWD_BUF, &found);
        if (found == NULL && rc == 0 && strspn(user, "0123456789") == strlen(user)) {
                errno = 0;
                char *end = NULL;
                unsigned long id = strtoul(user, &end, 10);
                if (errno == 0 && *end == '\0' && id <= (unsigned long)(uid_t)-1)
                        rc = getpwuid_r((uid_t)id, pw, buf, PASSWD_BUF, &found);
        }
        if (rc != 0) {
                vd_error_set(err, "user '%s': cannot read the user database: %s", user,
                             strerror(rc));
                return -rc;
        }
        if (found == NULL) {
                vd_error_set(err, "user '%s': no such user", user);
                return -ENOENT;
        }
        return 0;
}

/* Switches the whole process (every thread: glibc broadcasts set*id) to cfg->user: its
 * groups, its gid, its uid, and checks that root cannot be regained. Called once every socket
 * is bound. Not root: fine when we already are that user (a warning), an error otherwise. */
static int drop_privileges(const char *user, vd_error *err)
{
        struct passwd pw;
        int rc;
        char *buf = malloc(PASSWD_BUF);
        if (buf == NULL)
                return vd_error_set(err, "out of memory");
        rc = lookup_user(user, &pw, buf, err);
        if (rc != 0)
                goto out;
        uid_t uid = pw.pw_uid;
        gid_t gid = pw.pw_gid;
        if (geteuid() != 0) {
                if (getuid() == uid && geteuid() == uid) {
                        vd_log(VD_LOG_WARN, "privileges",
                               "detail=\"not started as root: already running as user %s, "
                               "nothing to drop\" user=%s uid=%u",
                               pw.pw_name, pw.pw_name, (unsigned)uid);
                        rc = 0;
                } else {
                        rc = vd_error_set(err,
                                          "cannot switch to user '%s': not started as root "
                                          "(running as uid %u)",
                                          user, (unsigned)geteuid());
                }
                goto out;
        }
        if (uid == 0) {
                rc = vd_error_set(err,
                                  "user '%s' is root: refusing to run with root privileges "
                                  "after an explicit user was asked for",
                                  user);
                goto out;
        }
        if (initgroups(pw.pw_name, gid) != 0) {
                rc = vd_error_set(err, "user '%s': cannot set its groups: %s", user,
                                  strerror(errno));
                goto out;
        }
        if (setgid(gid) != 0) {
                rc = vd_error_set(err, "user '%s': setgid(%u) failed: %s", user, (unsigned)gid,
                                  strerror(errno));
                goto out;
        }
        if (setuid(uid) != 0) {
                rc = vd_error_set(err, "user '%s': setuid(%u) failed: %s", user, (unsigned)uid,
                                  strerror(errno));
                goto out;
        }
        if (setuid(0) == 0 || seteuid(0) == 0 || getuid() != uid || geteuid() != uid ||
            getgid() != gid || getegid() != gid) {
                rc = vd_error_set(err,
                                  "user '%s': root privileges could be regained after "
                                  "the switch: refusing to run",
                                  user);
                goto out;
        }
        vd_log(VD_LOG_INFO, "privileges", "user=%s uid=%u gid=%u", pw.pw_name, (unsigned)uid,
               (unsigned)gid);
        rc = 0;
out:
        free(buf);
        return rc;
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
        /* The builder's many small blocks are free now, but the snapshot's arrays, allocated
         * last, keep glibc from shrinking the heap: give the free pages back (at start-up and
         * after every reload), or the daemon keeps the load's peak as its resident size. */
        malloc_trim(0);
        if (rc == 0)
                vd_snapshot_summarize(*out, &t->snap);
        return rc;
}

/* build_snapshot for inputs whose fingerprint *fp was taken just before. After the load, *fp
 * stays valid only when the inputs still hash the same: when they changed while being read,
 * what was loaded is not known exactly, and the next reload must read them again. */
static int load_settled(const vd_config *cfg, const vd_inputs *inputs, vd_fingerprint *fp,
                        vd_snapshot **out, struct load_totals *t, vd_error *err)
{
        int rc = build_snapshot(cfg, out, t, err);
        if (rc == 0) {
                vd_fingerprint after;
                vd_fingerprint_take(inputs, &after);
                fp->valid = vd_fingerprint_equal(fp, &after);
        }
        return rc;
}

/* What a reload reads again (and the fingerprint of what is loaded now), the server to tell
 * how many endpoints it serves, and what the data held before it (for the reloaded line).
 * Used by one reload at a time, on the server's reload thread. */
struct reload_ctx {
        const vd_config *cfg;
        vd_server *srv;
        struct load_totals last;
        vd_inputs inputs;
        vd_fingerprint loaded;
};

/* A reload (SIGHUP, the file watch): the same snapshot directories and zone files, read again
 * unless every one holds what is loaded already. Logs what changed, once the new data is
 * built (the server publishes it next; that cannot fail). */
static int reload_snapshot(void *arg, vd_snapshot **out, vd_error *err)
{
        struct reload_ctx *ctx = arg;
        struct load_totals t;
        vd_fingerprint now;
        vd_fingerprint_take(&ctx->inputs, &now);
        if (vd_fingerprint_equal(&now, &ctx->loaded))
                return VD_RELOAD_UNCHANGED;
        memset(&t, 0, sizeof(t));
        int rc = load_settled(ctx->cfg, &ctx->inputs, &now, out, &t, err);
        if (rc != 0)
                return rc;
        ctx->loaded = now;
        vd_server_note_endpoints(ctx->srv, t.aws.endpoints_served);
        vd_log(VD_LOG_INFO, "reloaded",
               "endpoints=%zu->%zu names=%zu->%zu records=%zu->%zu zones=%zu->%zu",
               ctx->last.aws.endpoints_served, t.aws.endpoints_served, ctx->last.snap.names,
               t.snap.names, ctx->last.snap.records, t.snap.records, ctx->last.snap.zones,
               t.snap.zones);
        ctx->last = t;
        return 0;
}

/* One line per forwarding rule, in the order of the config: "rule: DOMAIN -> SERVERS". */
static void print_rules(const vd_config *cfg)
{
        if (cfg->n_rules == 0) {
                printf("rules: none\n");
                return;
        }
        printf("rules: %zu (the most specific domain wins; a rule beats local data)\n",
               cfg->n_rules);
        for (size_t i = 0; i < cfg->n_rules; i++) {
                const vd_config_rule *r = &cfg->rules[i];
                char servers[ADDR_TEXT * VD_MAX_UPSTREAM];
                if (r->use_default)
                        snprintf(servers, sizeof(servers), "default (the upstreams)");
                else
                        format_addrs(r->servers, r->n_servers, " ", servers, sizeof(servers));
                printf("rule: %s -> %s\n", r->domain, servers);
        }
}

/* One line naming every one-value config key that differs from its default, from the key
 * table: what the config file and flags changed, at a glance. */
static void print_changed(const vd_config *cfg)
{
        size_t n, shown = 0;
        const vd_config_key *keys = vd_config_keys(&n);
        printf("changed from the defaults:");
        for (size_t i = 0; i < n; i++) {
                char value[VALUE_TEXT];
                if (!vd_config_key_value(cfg, &keys[i], value, sizeof(value)))
                        continue;
                printf("%s %s %s", shown++ > 0 ? "," : "", keys[i].name, value);
        }
        printf("%s\n", shown == 0 ? " none" : "");
}

static void print_check(const vd_config *cfg, const struct load_totals *t)
{
        char listen[LIST_TEXT], upstream[LIST_TEXT], allow[ALLOW_TEXT];
        format_addrs(cfg->listen, cfg->n_listen, " ", listen, sizeof(listen));
        format_cidrs(cfg->allow, cfg->n_allow, allow, sizeof(allow));
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
        printf("watch: %s\n", cfg->watch ? "on (a changed snapshot directory or zone file reloads)"
                                         : "off (reload with SIGHUP)");
        printf("listen: %s\n", listen);
        printf("upstream: %s%s\n", upstream,
               cfg->n_upstream == 0 ? " (forwarded queries get SERVFAIL)" : "");
        print_rules(cfg);
        if (cfg->upstream_max_qps == 0)
                printf("upstream budget: off\n");
        else
                printf("upstream budget: %u queries/s per server\n", cfg->upstream_max_qps);
        printf("upstream source ports: %u per server\n", cfg->upstream_ports);
        printf("upstream 0x20: %s\n", cfg->upstream_0x20 ? "on" : "off");
        if (cfg->stale_max == 0)
                printf("serve-stale: off\n");
        else
                printf("serve-stale: entries expired up to %u s ago, after %u ms without an "
                       "answer\n",
                       cfg->stale_max, cfg->stale_answer_ms);
        printf("prefetch: %s\n", cfg->prefetch ? "on" : "off");
        printf("workers: %u\n", cfg->workers);
        printf("allow: %s%s\n", allow,
               allows_everyone(cfg) ? " (an open resolver: every client may query)" : "");
        printf("deny action: %s\n", cfg->deny_action == VD_DENY_DROP ? "drop" : "refuse");
        if (cfg->rrl_responses_per_second == 0)
                printf("rate limit: off\n");
        else
                printf("rate limit: %u responses/s per /%u (IPv4) or /%u (IPv6), slip %u\n",
                       cfg->rrl_responses_per_second, cfg->rrl_ipv4_prefix, cfg->rrl_ipv6_prefix,
                       cfg->rrl_slip);
        printf("tcp connections: %u per worker, %u per client\n", cfg->tcp_max_connections,
               cfg->tcp_max_connections_per_client);
        if (cfg->tcp_max_queries_per_connection == 0)
                printf("tcp queries per connection: unlimited\n");
        else
                printf("tcp queries per connection: %u\n", cfg->tcp_max_queries_per_connection);
        printf("tcp idle timeout: %u ms\n", cfg->tcp_idle_timeout_ms);
        printf("pending upstream queries per client: %u\n", cfg->max_pending_per_client);
        if (cfg->cache_size == 0)
                printf("cache: off\n");
        else
                printf("cache: %u entries, ttl %u..%u s, negative at most %u s, servfail %u s\n",
                       cfg->cache_size, cfg->cache_min_ttl, cfg->cache_max_ttl,
                       cfg->cache_max_negative_ttl, cfg->cache_servfail_ttl);
        printf("user: %s\n", cfg->user != NULL ? cfg->user : "(as started)");
        if (cfg->n_metrics_listen == 0) {
                printf("metrics listen: off\n");
        } else {
                char metrics[64];
                vd_addr_format(&cfg->metrics_listen[0], metrics, sizeof(metrics));
                printf("metrics listen: http://%s (/metrics, /health, /ready)\n", metrics);
        }
        if (cfg->lameduck_ms == 0)
                printf("lameduck: off\n");
        else
                printf("lameduck: %u ms\n", cfg->lameduck_ms);
        print_changed(cfg);
        printf("ok\n");
}

static int serve(const vd_config *cfg, vd_snapshot *snap, const struct load_totals *t,
                 const vd_inputs *inputs, const vd_fingerprint *loaded)
{
        char listen[LIST_TEXT], upstream[LIST_TEXT];
        vd_server *srv = NULL;
        vd_error err = {{0}};

        format_addrs(cfg->listen, cfg->n_listen, ",", listen, sizeof(listen));
        format_addrs(cfg->upstream, cfg->n_upstream, ",", upstream, sizeof(upstream));
        if (cfg->n_upstream == 0)
                vd_log(VD_LOG_WARN, "no_upstream",
                       "detail=\"no upstream server: names without local data get SERVFAIL\"");
        if (allows_everyone(cfg))
                vd_log(VD_LOG_WARN, "open_resolver",
                       "detail=\"an allow prefix of length 0 lets every client query\"");
        if (vd_server_new(cfg, snap, &srv, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                return 1;
        }
        /* Every socket is bound: from here on nothing needs root. Reloads (SIGHUP) read the
         * snapshot directories and zone files as this user. */
        if (cfg->user != NULL && drop_privileges(cfg->user, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                vd_server_free(srv);
                return 1;
        }
        /* lives while the server runs */
        struct reload_ctx reload = {.cfg = cfg, .srv = srv, .last = *t, .loaded = *loaded};
        vd_inputs_init(&reload.inputs);
        if (vd_inputs_copy(&reload.inputs, inputs) != 0)
                reload.loaded.valid = false; /* no inputs known: every reload reads them */
        vd_server_note_endpoints(srv, t->aws.endpoints_served);
        vd_server_on_reload(srv, reload_snapshot, &reload);
        vd_log(VD_LOG_INFO, "start",
               "version=%s listen=%s upstream=%s workers=%u endpoints=%zu names=%zu records=%zu "
               "zones=%zu",
               VD_VERSION, listen, upstream, cfg->workers, t->aws.endpoints_served, t->snap.names,
               t->snap.records, t->snap.zones);
        int rc = vd_server_run(srv);
        vd_server_free(srv);
        vd_inputs_free(&reload.inputs);
        vd_log(VD_LOG_INFO, "stop", "status=%s", rc == 0 ? "clean" : "error");
        return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        struct load_totals totals;
        vd_inputs inputs;
        vd_fingerprint loaded;
        int status;

        memset(&totals, 0, sizeof(totals));
        vd_inputs_init(&inputs);
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

        if (vd_inputs_from_config(&cfg, &inputs) != 0) {
                fprintf(stderr, "vpcdns: error: out of memory\n");
                status = 1;
                goto out;
        }
        vd_fingerprint_take(&inputs, &loaded);
        if (load_settled(&cfg, &inputs, &loaded, &snap, &totals, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                status = 1;
                goto out;
        }
        if (cfg.check) {
                if (cfg.user != NULL) {
                        struct passwd pw;
                        char *buf = malloc(PASSWD_BUF);
                        int rc = buf == NULL ? vd_error_set(&err, "out of memory")
                                             : lookup_user(cfg.user, &pw, buf, &err);
                        free(buf);
                        if (rc != 0) {
                                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                                status = 1;
                                goto out;
                        }
                }
                print_check(&cfg, &totals);
                status = fflush(stdout) == 0 ? 0 : 1;
        } else if (cfg.dump) {
                status = vd_zonefile_dump(snap, stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
                if (status != 0)
                        fprintf(stderr, "vpcdns: error: cannot write the dump: %s\n",
                                strerror(errno));
        } else {
                status = serve(&cfg, snap, &totals, &inputs, &loaded);
        }
out:
        if (snap != NULL)
                vd_snapshot_unref(snap);
        vd_inputs_free(&inputs);
        vd_config_free(&cfg);
        return status;
}

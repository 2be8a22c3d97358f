/* main.c — argv → config → snapshot → server → (drop privileges) → run → teardown. The only
 * file that knows every module; it decides nothing the modules can decide themselves.
 * Owns the switch to an unprivileged user once every socket is bound.
 * Exit status: 0 success, 1 a load or start failure, 2 a usage or configuration error. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "vpcdns/takeover.h"
#include "vpcdns/aws.h"
#include "vpcdns/az.h"
#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/log.h"
#include "vpcdns/server.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/views.h"
#include "vpcdns/state.h"
#include "vpcdns/watch.h"
#include "vpcdns/wire.h"
#include "vpcdns/zonefile.h"
#include "vpcdns/hosted_zone.h"

#define ADDR_TEXT 96
#define LIST_TEXT (ADDR_TEXT * (VD_MAX_LISTEN + VD_MAX_UPSTREAM))
#define CIDR_TEXT (INET6_ADDRSTRLEN + 5)
#define ALLOW_TEXT (CIDR_TEXT * VD_MAX_ACL)
#define PASSWD_BUF 65536
#define VALUE_TEXT 300 /* a number, a word or a user name */
#define RESOLV_CONF "/etc/resolv.conf"

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

/* Loads the snapshot directories (with their hosted-zones/ captures), zone files and hosted
 * zone files given into one snapshot, with the VPC
 * choice and the views of cfg (views.h). */
static int build_from(const vd_config *cfg, char *const *snapshot_dirs, size_t n_snapshots,
                      char *const *zone_files, size_t n_zones, char *const *hosted_files,
                      char *const *hosted_vpcs, size_t n_hosted, vd_snapshot **out,
                      vd_load_totals *t, vd_error *err)
{
        vd_data_sources src = {.snapshot_dirs = snapshot_dirs,
                               .n_snapshots = n_snapshots,
                               .zone_files = zone_files,
                               .n_zones = n_zones,
                               .hosted_files = hosted_files,
                               .hosted_vpcs = hosted_vpcs, /* same order; NULL: every VPC */
                               .n_hosted = n_hosted,
                               .vpc = cfg->vpc,
                               .views = cfg->views,
                               .n_views = cfg->n_views};
        int rc = vd_data_build(&src, out, t, err);
        /* The builder's many small blocks are free now, but the snapshot's arrays, allocated
         * last, keep glibc from shrinking the heap: give the free pages back (at start-up and
         * after every reload), or the daemon keeps the load's peak as its resident size. */
        malloc_trim(0);
        return rc;
}

/* Loads every snapshot directory and zone file of cfg into one snapshot; with state_dir (and
 * when serving), what loaded becomes the last-good copy there (state.h). */
static int build_snapshot(const vd_config *cfg, vd_snapshot **out, vd_load_totals *t, vd_error *err)
{
        vd_state_stage *stage = NULL;
        if (cfg->state_dir != NULL && !cfg->check && !cfg->dump)
                stage = vd_state_stage_new_hosted(cfg->state_dir, cfg->snapshot_dirs,
                                                  cfg->n_snapshots, cfg->zone_files, cfg->n_zones,
                                                  cfg->hosted_zone_files, cfg->n_hosted_zones);
        int rc = build_from(cfg, cfg->snapshot_dirs, cfg->n_snapshots, cfg->zone_files,
                            cfg->n_zones, cfg->hosted_zone_files, cfg->hosted_zone_vpcs,
                            cfg->n_hosted_zones, out, t, err);
        if (rc == 0)
                vd_state_commit(stage);
        else
                vd_state_discard(stage);
        return rc;
}

/* The configured data did not load (why): load the last-good copy of state_dir instead, and
 * say so loudly. 0 with *out and reason (for /ready) set, or an error when there is no usable
 * copy. */
static int build_fallback(const vd_config *cfg, const char *why, vd_snapshot **out,
                          vd_load_totals *t, char *reason, size_t cap, vd_error *err)
{
        vd_state_copy copy;
        vd_error copy_err = {{0}};
        int rc = vd_state_find(cfg->state_dir, &copy, &copy_err);
        if (rc != 0) {
                vd_error_set(err, "%s (and no last-good copy in state_dir: %s)", why, copy_err.msg);
                return rc;
        }
        memset(t, 0, sizeof(*t));
        /* The copy keeps the files, not their vpcs: those of the config apply only when the
         * copy holds as many hosted zone files as the config names (the same list). */
        rc = build_from(cfg, copy.snapshot_dirs, copy.n_snapshots, copy.zone_files, copy.n_zones,
                        copy.hosted_zone_files,
                        copy.n_hosted_zones == cfg->n_hosted_zones ? cfg->hosted_zone_vpcs : NULL,
                        copy.n_hosted_zones, out, t, &copy_err);
        if (rc != 0) {
                vd_error_set(err,
                             "%s (and the last-good copy in state_dir did not load either: %s)",
                             why, copy_err.msg);
                vd_state_copy_free(&copy);
                return rc;
        }
        char e[sizeof(((vd_error *)0)->msg) + 64], dir[PATH_MAX + 16];
        vd_log(VD_LOG_ERROR, "data_fallback",
               "error=%s state_dir=%s saved=%llu detail=\"the configured data did not load: "
               "serving the last data that loaded, from state_dir, until a reload succeeds\"",
               vd_log_value(why, e, sizeof(e)), vd_log_value(cfg->state_dir, dir, sizeof(dir)),
               (unsigned long long)copy.saved_unix);
        snprintf(reason, cap,
                 "serving the last-good copy of the data from %s/last-good (saved at %llu): "
                 "the configured data did not load: %s",
                 cfg->state_dir, (unsigned long long)copy.saved_unix, why);
        vd_state_copy_free(&copy);
        return 0;
}

/* build_snapshot for inputs whose fingerprint *fp was taken just before. After the load, *fp
 * stays valid only when the inputs still hash the same: when they changed while being read,
 * what was loaded is not known exactly, and the next reload must read them again. */
static int load_settled(const vd_config *cfg, const vd_inputs *inputs, vd_fingerprint *fp,
                        vd_snapshot **out, vd_load_totals *t, vd_error *err)
{
        int rc = build_snapshot(cfg, out, t, err);
        if (rc == 0) {
                vd_fingerprint after;
                vd_fingerprint_take(inputs, &after);
                fp->valid = vd_fingerprint_equal(fp, &after);
        }
        return rc;
}

/* What a reload reads again (the command line, hence the config file, resolv.conf and the
 * data) with the fingerprint of what is loaded now, the server it applies to, and what the
 * data held before (for the reloaded line). reload_snapshot runs on the server's reload
 * thread, one at a time; reload_commit on the control loop, after it. */
struct reload_ctx {
        int argc;
        char **argv;
        vd_config *cfg; /* the settings in force */
        bool cfg_owned; /* cfg was made by a reload (else it is main's) */
        bool fallback;  /* serving the last-good copy of state_dir */
        vd_server *srv;
        vd_load_totals last;
        vd_inputs inputs;      /* of cfg: the config file and the data it names */
        vd_fingerprint loaded; /* of inputs, as they were when loaded */
        /* Made by reload_snapshot, applied or dropped by reload_commit. */
        vd_config *next;
        vd_inputs next_inputs;
        vd_fingerprint next_loaded;
        vd_load_totals next_totals;
        char changed[1024];
        bool needs_restart[64];
        char az[VD_CFG_AZ_MAX]; /* the clients' AZ as resolved at the start (az is restart) */
        vd_az_source az_source;
};

/* Copies the value of key k from src into dst (dst's owned string, if any, is freed). */
static void keep_value(vd_config *dst, const vd_config *src, const vd_config_key *k)
{
        char *to = (char *)dst + k->offset;
        const char *from = (const char *)src + k->offset;
        switch (k->type) {
        case VD_KEY_ADDRS:
                memcpy(to, from, k->cap * sizeof(vd_addr));
                break;
        case VD_KEY_CIDRS:
                memcpy(to, from, k->cap * sizeof(vd_cidr));
                break;
        case VD_KEY_UINT:
                memcpy(to, from, sizeof(unsigned));
                break;
        case VD_KEY_BOOL:
                memcpy(to, from, sizeof(bool));
                break;
        case VD_KEY_LEVEL:
                memcpy(to, from, sizeof(vd_log_level));
                break;
        case VD_KEY_DENY:
                memcpy(to, from, sizeof(vd_deny_action));
                break;
        case VD_KEY_QLOG:
                memcpy(to, from, sizeof(vd_config_qlog));
                break;
        case VD_KEY_AZ:
                memcpy(to, from, VD_CFG_AZ_MAX);
                break;
        case VD_KEY_AFFINITY:
                memcpy(to, from, sizeof(vd_az_affinity));
                break;
        case VD_KEY_ENI_HEALTH:
                memcpy(to, from, sizeof(vd_config_eni_health));
                break;
        case VD_KEY_VPC:
        case VD_KEY_VIEWS:
                return; /* never restart keys */
        case VD_KEY_USER:
        case VD_KEY_PATH: {
                char **p = (char **)(void *)to;
                const char *s = *(char *const *)(const void *)from;
                free(*p);
                *p = s != NULL ? strdup(s) : NULL; /* NULL on no memory: the key unset */
                break;
        }
        case VD_KEY_PATHS:
        case VD_KEY_RULES:
                return; /* never restart keys */
        }
        if (k->cap > 0)
                memcpy((char *)dst + k->count_offset, (const char *)src + k->count_offset,
                       sizeof(size_t));
}

#define MAX_KEYS 64 /* room for the key table's entries */

/* Keys that need a restart keep their running value in next; each one that changed in the
 * file is marked in needs_restart[] (by index in the key table), to be logged once the reload
 * succeeded. Every other key that changed is named in *changed. */
static void split_changes(const vd_config *now, vd_config *next, char *changed, size_t cap,
                          bool needs_restart[MAX_KEYS])
{
        size_t n, used = 0;
        const vd_config_key *keys = vd_config_keys(&n);
        changed[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                const vd_config_key *k = &keys[i];
                if (vd_config_key_same(now, next, k))
                        continue;
                /* the query log's file and format need a restart, its sample does not */
                bool sample_only = k->type == VD_KEY_QLOG &&
                                   now->query_log.format == next->query_log.format &&
                                   strcmp(now->query_log.path, next->query_log.path) == 0;
                /* eni_health on and off need a restart, its settings do not */
                bool settings_only =
                    k->type == VD_KEY_ENI_HEALTH && now->eni_health.on == next->eni_health.on;
                if (k->restart && !sample_only && !settings_only) {
                        if (i < MAX_KEYS)
                                needs_restart[i] = true;
                        keep_value(next, now, k);
                        continue;
                }
                int w = snprintf(changed + used, cap - used, "%s%s", used > 0 ? "," : "", k->name);
                if (w > 0 && (size_t)w < cap - used)
                        used += (size_t)w;
        }
        next->listen_default = now->listen_default;
        if (changed[0] == '\0')
                snprintf(changed, cap, "none");
}

/* What a reload depends on: the config file and the data it names (watch.h), and resolv.conf
 * when the upstreams come from it. */
static int reload_inputs(const vd_config *cfg, bool from_resolv, vd_inputs *out)
{
        int r = vd_inputs_from_config(cfg, out);
        if (r == 0 && from_resolv)
                r = vd_inputs_add(out, RESOLV_CONF);
        return r;
}

static void reload_drop_next(struct reload_ctx *ctx)
{
        if (ctx->next != NULL) {
                vd_config_free(ctx->next);
                free(ctx->next);
                ctx->next = NULL;
        }
        vd_inputs_free(&ctx->next_inputs);
}

/* The reload thread, for SIGHUP, the file watch and `vpcdns --reload`: the command line
 * again, hence the config file and resolv.conf, then the data it names, unless every input
 * still holds the bytes that are loaded (VD_RELOAD_UNCHANGED). Parse, validate and load all
 * first: any error changes nothing. What it made waits in ctx for reload_commit. */
static int reload_snapshot(void *arg, vd_snapshot **out, vd_error *err)
{
        struct reload_ctx *ctx = arg;
        vd_config *next = malloc(sizeof(*next));
        int rc;

        reload_drop_next(ctx);
        memset(ctx->needs_restart, 0, sizeof(ctx->needs_restart));
        memset(&ctx->next_totals, 0, sizeof(ctx->next_totals));
        if (next == NULL)
                return vd_error_set(err, "out of memory");
        /* The config file and resolv.conf are parsed before the inputs are fingerprinted: a
         * write between the two would leave the old settings in force under the new bytes'
         * fingerprint, and the next reload would skip them. Their own fingerprint, before the
         * parse and after the load, tells whether that happened. */
        vd_inputs settings;
        vd_fingerprint settings_before, settings_after;
        vd_inputs_init(&settings);
        if ((ctx->cfg->config_path != NULL &&
             vd_inputs_add(&settings, ctx->cfg->config_path) != 0) ||
            vd_inputs_add(&settings, RESOLV_CONF) != 0) {
                vd_inputs_free(&settings);
                free(next);
                return vd_error_set(err, "out of memory");
        }
        vd_fingerprint_take(&settings, &settings_before);
        vd_config_init(next);
        ctx->next = next;
        rc = vd_config_from_args(next, ctx->argc, ctx->argv, err);
        bool from_resolv = rc == 0 && next->n_upstream == 0;
        if (rc == 0)
                rc = vd_config_finalize(next, RESOLV_CONF, err);
        if (rc == 0 && reload_inputs(next, from_resolv, &ctx->next_inputs) != 0)
                rc = vd_error_set(err, "out of memory");
        if (rc != 0) {
                reload_drop_next(ctx);
                vd_inputs_free(&settings);
                return rc;
        }
        vd_fingerprint_take(&ctx->next_inputs, &ctx->next_loaded);
        if (!ctx->fallback && vd_fingerprint_equal(&ctx->next_loaded, &ctx->loaded)) {
                reload_drop_next(ctx);
                vd_inputs_free(&settings);
                return VD_RELOAD_UNCHANGED;
        }
        split_changes(ctx->cfg, next, ctx->changed, sizeof(ctx->changed), ctx->needs_restart);
        rc = load_settled(next, &ctx->next_inputs, &ctx->next_loaded, out, &ctx->next_totals, err);
        if (rc != 0) {
                reload_drop_next(ctx);
                vd_inputs_free(&settings);
                return rc;
        }
        vd_az_log(*out, next->az_affinity, ctx->az, ctx->az_source, "reload");
        vd_fingerprint_take(&settings, &settings_after);
        if (!vd_fingerprint_equal(&settings_before, &settings_after))
                ctx->next_loaded.valid = false; /* the next reload reads everything again */
        vd_inputs_free(&settings);
        return rc;
}

/* The control loop, once the reload thread is done (apply: it built a snapshot that is about
 * to be published; otherwise drop what it made). Applies the settings that change live, logs
 * those that need a restart and what the data changed, and makes the new config the one in
 * force. A failure to apply changes nothing, as a failed load. */
static int reload_commit(void *arg, bool apply, vd_error *err)
{
        struct reload_ctx *ctx = arg;
        vd_config *next = ctx->next;
        if (!apply || next == NULL) {
                reload_drop_next(ctx);
                return 0;
        }
        int rc = vd_server_apply_config(ctx->srv, next, err);
        if (rc != 0) {
                reload_drop_next(ctx);
                return rc;
        }
        const vd_load_totals *t = &ctx->next_totals;
        vd_log_set_level(next->log_level);
        size_t n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
        for (size_t i = 0; i < n_keys && i < sizeof(ctx->needs_restart); i++) {
                if (ctx->needs_restart[i])
                        vd_log(VD_LOG_WARN, "reload_needs_restart",
                               "key=%s detail=\"changed in the config; a reload cannot apply it, "
                               "the running value stays until a restart\"",
                               keys[i].name);
        }
        vd_server_note_endpoints(ctx->srv, t->aws.endpoints_served);
        vd_server_note_snapshot_dirs(ctx->srv, next->snapshot_dirs, next->n_snapshots, next->vpc);
        if (ctx->fallback) {
                vd_server_note_fallback(ctx->srv, NULL);
                vd_log(VD_LOG_INFO, "data_fallback_over",
                       "detail=\"the configured data loaded: the last-good copy is no longer "
                       "served\"");
                ctx->fallback = false;
        }
        vd_log(VD_LOG_INFO, "reloaded",
               "endpoints=%zu->%zu names=%zu->%zu records=%zu->%zu zones=%zu->%zu config=%s",
               ctx->last.aws.endpoints_served, t->aws.endpoints_served, ctx->last.snap.names,
               t->snap.names, ctx->last.snap.records, t->snap.records, ctx->last.snap.zones,
               t->snap.zones, ctx->changed);
        ctx->last = *t;
        if (ctx->cfg_owned) {
                vd_config_free(ctx->cfg);
                free(ctx->cfg);
        }
        ctx->cfg = next;
        ctx->cfg_owned = true;
        ctx->next = NULL;
        vd_inputs_free(&ctx->inputs);
        ctx->inputs = ctx->next_inputs;
        vd_inputs_init(&ctx->next_inputs);
        ctx->loaded = ctx->next_loaded;
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

/* ---- --check: what would go wrong in service ----------------------------------------------- */

/* True when the wire name owner is domain or under it (both lower case). */
static bool name_under(const uint8_t *owner, const uint8_t *domain, size_t domain_len)
{
        size_t len = vd_name_len(owner, VD_NAME_MAX);
        for (size_t at = 0; at < len && owner[at] != 0; at += (size_t)owner[at] + 1) {
                if (len - at == domain_len)
                        return memcmp(owner + at, domain, domain_len) == 0;
        }
        return domain_len == 1; /* the root rule covers every name */
}

/* Counts the local names (owners of records) under one rule, and under any rule. */
struct hidden_count {
        const uint8_t *domain; /* NULL: count the names under any rule of cfg */
        size_t domain_len;
        const vd_config *cfg;
        uint8_t last[VD_NAME_MAX]; /* the owner counted last: records come grouped by name */
        size_t names, hidden;
        char example[VD_NAME_MAX * 4 + 2];
};

static bool under_any_rule(const vd_config *cfg, const uint8_t *owner)
{
        for (size_t i = 0; i < cfg->n_rules; i++) {
                uint8_t d[VD_NAME_MAX];
                size_t len;
                if (vd_name_from_text(cfg->rules[i].domain, d, &len) == 0) {
                        vd_name_lower(d, len);
                        if (name_under(owner, d, len))
                                return true;
                }
        }
        return false;
}

static int count_hidden(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                        const uint8_t *rdata, uint16_t rdlen)
{
        struct hidden_count *h = arg;
        uint8_t name[VD_NAME_MAX];
        size_t len = vd_name_len(owner, VD_NAME_MAX);
        (void)type;
        (void)ttl;
        (void)rdata;
        (void)rdlen;
        if (len == 0 || len > VD_NAME_MAX)
                return 0;
        memcpy(name, owner, len);
        vd_name_lower(name, len);
        if (memcmp(name, h->last, len) == 0)
                return 0; /* another record of the same name */
        memcpy(h->last, name, len);
        h->names++;
        bool hidden = h->domain != NULL ? name_under(name, h->domain, h->domain_len)
                                        : under_any_rule(h->cfg, name);
        if (hidden && h->hidden++ == 0)
                vd_name_to_text(name, h->example, sizeof(h->example));
        return 0;
}

/* A forwarding rule beats local data: warn for each rule that hides local names, naming one.
 * Returns 1 (an error) when the rules together hide every local name: the snapshot and zone
 * files would then never answer anything, which is never what was meant. */
static int check_rules_hide(const vd_config *cfg, const vd_snapshot *snap)
{
        if (snap == NULL || cfg->n_rules == 0)
                return 0;
        for (size_t i = 0; i < cfg->n_rules; i++) {
                struct hidden_count h = {.cfg = cfg};
                uint8_t d[VD_NAME_MAX];
                if (vd_name_from_text(cfg->rules[i].domain, d, &h.domain_len) != 0)
                        continue;
                vd_name_lower(d, h.domain_len);
                h.domain = d;
                vd_snapshot_foreach(snap, count_hidden, &h);
                if (h.hidden > 0)
                        fprintf(stderr,
                                "vpcdns: warning: forward rule '%s' hides %zu of %zu local names "
                                "(e.g. %s): they are forwarded, never answered locally\n",
                                cfg->rules[i].domain, h.hidden, h.names, h.example);
        }
        struct hidden_count all = {.cfg = cfg};
        vd_snapshot_foreach(snap, count_hidden, &all);
        if (all.names > 0 && all.hidden == all.names) {
                fprintf(stderr,
                        "vpcdns: error: the forward rules hide every one of the %zu local names "
                        "(e.g. %s): the snapshot and zone files would never answer; narrow or "
                        "remove the rule\n",
                        all.names, all.example);
                return 1;
        }
        return 0;
}

/* Forwarded names need somewhere to go: an upstream, or a rule with servers of its own. */
static int check_upstream(const vd_config *cfg)
{
        bool rule_servers = false;
        for (size_t i = 0; i < cfg->n_rules; i++)
                rule_servers =
                    rule_servers || (!cfg->rules[i].use_default && cfg->rules[i].n_servers > 0);
        if (cfg->n_upstream > 0)
                return 0;
        if (rule_servers) {
                fprintf(stderr, "vpcdns: warning: no upstream: names outside the forward rules "
                                "and the local data get SERVFAIL\n");
                return 0;
        }
        fprintf(stderr,
                "vpcdns: error: no usable upstream: 'upstream' is not set and /etc/resolv.conf "
                "names no nameserver other than vpcdns itself; every name without local data "
                "would get SERVFAIL (set upstream, e.g. the VPC resolver 169.254.169.253)\n");
        return 1;
}

/* Whether uid (with gid and groups) may do what mask asks (4 read, 2 write, 1 search) on st. */
static bool may(const struct stat *st, uid_t uid, const gid_t *groups, int n_groups, int mask)
{
        if (uid == 0)
                return true;
        if (st->st_uid == uid)
                return ((st->st_mode >> 6) & (unsigned)mask) == (unsigned)mask;
        for (int i = 0; i < n_groups; i++)
                if (st->st_gid == groups[i])
                        return ((st->st_mode >> 3) & (unsigned)mask) == (unsigned)mask;
        return (st->st_mode & (unsigned)mask) == (unsigned)mask;
}

/* Every directory above path must be searchable by the user, and path itself readable (and
 * searchable when a directory). Prints an error naming the first obstacle; 1 then. Where this
 * process cannot look (no permission itself), nothing is said. */
static int check_path_for(const char *path, const char *user, uid_t uid, const gid_t *groups,
                          int n_groups)
{
        char walk[PATH_MAX];
        struct stat st;
        if (snprintf(walk, sizeof(walk), "%s", path) >= (int)sizeof(walk))
                return 0;
        for (char *slash = strchr(walk + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (stat(walk, &st) == 0 && S_ISDIR(st.st_mode) &&
                    !may(&st, uid, groups, n_groups, 1)) {
                        fprintf(stderr,
                                "vpcdns: error: %s: user '%s' cannot reach it: no search (x) "
                                "permission on the directory %s (mode %03o, owner %u:%u); the "
                                "first reload would fail\n",
                                path, user, walk, (unsigned)(st.st_mode & 0777),
                                (unsigned)st.st_uid, (unsigned)st.st_gid);
                        return 1;
                }
                *slash = '/';
        }
        if (stat(path, &st) != 0)
                return 0;
        int mask = S_ISDIR(st.st_mode) ? 5 : 4;
        if (!may(&st, uid, groups, n_groups, mask)) {
                fprintf(stderr,
                        "vpcdns: error: %s: user '%s' cannot read it (mode %03o, owner %u:%u); "
                        "the first reload would fail\n",
                        path, user, (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid,
                        (unsigned)st.st_gid);
                return 1;
        }
        return 0;
}

/* The data files as the configured user will read them on a reload (after the switch). */
static int check_user_access(const vd_config *cfg, const struct passwd *pw)
{
        gid_t groups[256];
        int n_groups = (int)(sizeof(groups) / sizeof(groups[0]));
        int errors = 0;
        if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n_groups) < 0) {
                groups[0] = pw->pw_gid;
                n_groups = 1;
        }
        for (size_t i = 0; i < cfg->n_snapshots; i++) {
                const char *dir = cfg->snapshot_dirs[i];
                if (check_path_for(dir, cfg->user, pw->pw_uid, groups, n_groups) != 0) {
                        errors++;
                        continue;
                }
                DIR *d = opendir(dir);
                struct dirent *e;
                while (d != NULL && (e = readdir(d)) != NULL) {
                        char file[PATH_MAX];
                        struct stat st;
                        if (e->d_name[0] == '.' ||
                            snprintf(file, sizeof(file), "%s/%s", dir, e->d_name) >=
                                (int)sizeof(file) ||
                            stat(file, &st) != 0 || !S_ISREG(st.st_mode))
                                continue;
                        errors += check_path_for(file, cfg->user, pw->pw_uid, groups, n_groups);
                }
                if (d != NULL)
                        closedir(d);
        }
        for (size_t i = 0; i < cfg->n_zones; i++)
                errors +=
                    check_path_for(cfg->zone_files[i], cfg->user, pw->pw_uid, groups, n_groups);
        for (size_t i = 0; i < cfg->n_hosted_zones; i++)
                errors += check_path_for(cfg->hosted_zone_files[i], cfg->user, pw->pw_uid, groups,
                                         n_groups);
        if (cfg->config_path != NULL) /* a reload reads it again, as the user */
                errors += check_path_for(cfg->config_path, cfg->user, pw->pw_uid, groups, n_groups);
        struct stat st;
        if (cfg->state_dir != NULL && stat(cfg->state_dir, &st) == 0 &&
            !may(&st, pw->pw_uid, groups, n_groups, 3))
                fprintf(stderr,
                        "vpcdns: warning: state_dir %s: user '%s' cannot write it (mode %03o, "
                        "owner %u:%u): the last-good copy would not be saved\n",
                        cfg->state_dir, cfg->user, (unsigned)(st.st_mode & 0777),
                        (unsigned)st.st_uid, (unsigned)st.st_gid);
        return errors;
}

static bool has_default_view(const vd_config *cfg)
{
        for (size_t i = 0; i < cfg->n_views; i++)
                if (cfg->views[i].is_default)
                        return true;
        return false;
}

/* The VPCs of the data, the one chosen, and each view (views.h). */
static void print_views(const vd_config *cfg, const vd_load_totals *t)
{
        char list[512];
        vd_aws_format_vpcs(&t->aws, false, list, sizeof(list));
        printf("vpcs in snapshot: %s\n", list);
        if (cfg->n_views == 0) {
                printf("vpc: %s\n", cfg->vpc[0] != '\0' ? cfg->vpc : "(the only one)");
                return;
        }
        printf("views: %zu (clients outside every view: %s)\n", t->n_views,
               has_default_view(cfg) ? "the default view" : "REFUSED for endpoint names");
        for (size_t i = 0; i < t->n_views; i++) {
                const vd_view_totals *v = &t->views[i];
                char clients[VD_MAX_VIEW_CLIENTS * 48];
                format_cidrs(v->view->clients, v->view->n_clients, clients, sizeof(clients));
                printf("view %s: vpc %s, clients %s%s%s; endpoints %zu, addresses %zu, names %zu, "
                       "records %zu\n",
                       v->view->name, v->view->vpc, clients[0] != '\0' ? clients : "none",
                       v->view->is_default ? ", default" : "", v->view->inbound ? ", inbound" : "",
                       v->endpoints_served, v->addresses, v->snap.names, v->snap.records);
        }
}

static void print_check(const vd_config *cfg, const vd_load_totals *t, const vd_snapshot *snap)
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
        printf("hosted zones: %zu (%zu records, %zu aliases, %zu record sets with a routing "
               "policy)\n",
               t->hz_zones, t->hz_records, t->hz_aliases, t->hz_policies);
        fputs(t->hz_notes, stdout);
        vd_hosted_zone_check_aliases(snap, stdout);
        printf("names: %zu\n", t->snap.names);
        printf("records: %zu\n", t->snap.records);
        printf("zones: %zu\n", t->snap.zones);
        print_views(cfg, t);
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
        if (cfg->state_dir == NULL) {
                printf("state dir: off (a start whose data does not load exits)\n");
        } else {
                vd_state_copy copy;
                vd_error err = {{0}};
                if (vd_state_find(cfg->state_dir, &copy, &err) == 0) {
                        printf("state dir: %s (last-good copy saved at %llu)\n", cfg->state_dir,
                               (unsigned long long)copy.saved_unix);
                        vd_state_copy_free(&copy);
                } else {
                        printf("state dir: %s (no last-good copy yet)\n", cfg->state_dir);
                }
        }
        print_changed(cfg);
        printf("ok\n");
}

static int serve(int argc, char **argv, vd_config *cfg, vd_snapshot *snap, const vd_load_totals *t,
                 const char *fallback, const vd_inputs *inputs, const vd_fingerprint *loaded)
{
        char listen[LIST_TEXT], upstream[LIST_TEXT];
        vd_server *srv = NULL;
        vd_error err = {{0}};

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
        /* The clients' AZ, asked of IMDS here (before any worker runs) for az: imds. */
        char az[VD_CFG_AZ_MAX];
        vd_az_source az_source = vd_az_resolve(cfg->az, az, sizeof(az));
        vd_server_set_az(srv, az_source == VD_AZ_SOURCE_NONE ? NULL : az);
        vd_az_log(snap, cfg->az_affinity, az, az_source, "start");
        /* Every socket is bound: from here on nothing needs root. Reloads (SIGHUP) read the
         * snapshot directories and zone files as this user. */
        if (cfg->user != NULL && drop_privileges(cfg->user, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                vd_server_free(srv);
                return 1;
        }
        const vd_addr *bound = NULL;
        size_t n_bound = vd_server_listen_addrs(srv, &bound);
        format_addrs(bound, n_bound, ",", listen, sizeof(listen));
        /* lives while the server runs */
        struct reload_ctx reload = {.argc = argc,
                                    .argv = argv,
                                    .cfg = cfg,
                                    .srv = srv,
                                    .last = *t,
                                    .fallback = fallback != NULL,
                                    .loaded = *loaded,
                                    .az_source = az_source};
        memcpy(reload.az, az, sizeof(reload.az));
        vd_inputs_init(&reload.inputs);
        vd_inputs_init(&reload.next_inputs);
        if (vd_inputs_copy(&reload.inputs, inputs) != 0)
                reload.loaded.valid = false; /* no inputs known: every reload reads them */
        if (fallback != NULL)
                vd_server_note_fallback(srv, fallback);
        vd_server_note_endpoints(srv, t->aws.endpoints_served);
        vd_server_on_reload(srv, reload_snapshot, reload_commit, &reload);
        vd_log(VD_LOG_INFO, "start",
               "version=%s listen=%s upstream=%s workers=%u endpoints=%zu names=%zu records=%zu "
               "zones=%zu",
               VD_VERSION, listen, upstream, cfg->workers, t->aws.endpoints_served, t->snap.names,
               t->snap.records, t->snap.zones);
        int rc = vd_server_run(srv);
        vd_server_free(srv);
        reload_drop_next(&reload);
        if (reload.cfg_owned) {
                vd_config_free(reload.cfg);
                free(reload.cfg);
        }
        vd_inputs_free(&reload.inputs);
        vd_log(VD_LOG_INFO, "stop", "status=%s", rc == 0 ? "clean" : "error");
        return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        vd_load_totals totals;
        char fallback[1600] = "";
        vd_inputs inputs;
        vd_fingerprint loaded;
        bool from_resolv;
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
        from_resolv = cfg.n_upstream == 0;
        if (vd_config_finalize(&cfg, RESOLV_CONF, &err) != 0) {
                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                status = 2;
                goto out;
        }
        vd_log_set_level(cfg.log_level);
        if (cfg.reload) { /* ExecReload=: systemctl reload reports what the reload did */
                char msg[1024];
                int rc = vd_takeover_reload(&cfg.listen[0], 60000, msg, sizeof(msg));
                if (rc == 0)
                        printf("reloaded: %s\n", msg);
                else
                        fprintf(stderr, "vpcdns: error: reload failed: %s\n", msg);
                status = rc == 0 ? 0 : 1;
                goto out;
        }
        if (reload_inputs(&cfg, from_resolv, &inputs) != 0) {
                fprintf(stderr, "vpcdns: error: out of memory\n");
                status = 1;
                goto out;
        }
        vd_fingerprint_take(&inputs, &loaded);
        if (load_settled(&cfg, &inputs, &loaded, &snap, &totals, &err) != 0) {
                vd_error why = err;
                if (cfg.state_dir == NULL || cfg.check || cfg.dump ||
                    build_fallback(&cfg, why.msg, &snap, &totals, fallback, sizeof(fallback),
                                   &err) != 0) {
                        fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                        status = 1;
                        goto out;
                }
        }
        if (cfg.check) {
                int check_errors = 0;
                if (cfg.user != NULL) {
                        struct passwd pw;
                        char *buf = malloc(PASSWD_BUF);
                        int rc = buf == NULL ? vd_error_set(&err, "out of memory")
                                             : lookup_user(cfg.user, &pw, buf, &err);
                        if (rc != 0) {
                                free(buf);
                                fprintf(stderr, "vpcdns: error: %s\n", err.msg);
                                status = 1;
                                goto out;
                        }
                        check_errors += check_user_access(&cfg, &pw);
                        free(buf);
                }
                check_errors += check_rules_hide(&cfg, snap);
                check_errors += check_upstream(&cfg);
                if (check_errors > 0) {
                        fprintf(stderr, "vpcdns: error: the check found %d problem%s (above)\n",
                                check_errors, check_errors == 1 ? "" : "s");
                        status = 1;
                        goto out;
                }
                print_check(&cfg, &totals, snap);
                status = fflush(stdout) == 0 ? 0 : 1;
        } else if (cfg.dump && cfg.dump_client[0] != '\0') {
                vd_addr client;
                char az[VD_CFG_AZ_MAX];
                vd_az_source az_source = vd_az_resolve(cfg.az, az, sizeof(az));
                VD_CHECK(vd_addr_parse_host(cfg.dump_client, 53, &client) == 0); /* checked */
                vd_az_affinity mode =
                    az_source == VD_AZ_SOURCE_NONE ? VD_AZ_AFFINITY_OFF : cfg.az_affinity;
                /* With views, the client's view answers it (an outsider: the root's data,
                 * and REFUSED for the names only views hold). */
                const struct sockaddr *who = (const struct sockaddr *)&client.ss;
                int view = vd_snapshot_view_of(snap, who);
                const char *view_name = NULL;
                bool outsider;
                const vd_snapshot *answering = vd_snapshot_for_client(snap, who, &outsider);
                if (view >= 0)
                        (void)vd_snapshot_view(snap, (size_t)view, &view_name);
                if (vd_snapshot_view_count(snap) > 0)
                        printf("; view %s\n",
                               view_name != NULL
                                   ? view_name
                                   : "none (outside every view: endpoint names are REFUSED)");
                status = vd_az_dump_client(answering, mode, az, az_source, who, stdout) == 0 &&
                                 fflush(stdout) == 0
                             ? 0
                             : 1;
        } else if (cfg.dump) {
                status = vd_hosted_zone_dump_aliases(snap, stdout) == 0 &&
                                 vd_zonefile_dump_views(snap, stdout) == 0 && fflush(stdout) == 0
                             ? 0
                             : 1;
                if (status != 0)
                        fprintf(stderr, "vpcdns: error: cannot write the dump: %s\n",
                                strerror(errno));
        } else {
                status = serve(argc, argv, &cfg, snap, &totals,
                               fallback[0] != '\0' ? fallback : NULL, &inputs, &loaded);
        }
out:
        if (snap != NULL)
                vd_snapshot_unref(snap);
        vd_inputs_free(&inputs);
        vd_config_free(&cfg);
        return status;
}

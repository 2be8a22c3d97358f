/* config_cli.c — the command line (getopt_long) → vd_config, over a config file read first,
 * and the --help text built from the flag table below and the key table (vd_config_keys).
 * A flag is checked with the same value parsers as its config file key. It prints nothing
 * itself (main.c prints the usage and the errors) and reads no file but the config file. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/addr.h"
#include "vpcdns/config.h"

#include "config_int.h"

enum flag_id {
        FLAG_CONFIG = 256,
        FLAG_LISTEN,
        FLAG_UPSTREAM,
        FLAG_SNAPSHOT,
        FLAG_ZONE,
        FLAG_HOSTED_ZONE,
        FLAG_CHECK,
        FLAG_DUMP,
        FLAG_LOG_LEVEL,
        FLAG_WORKERS,
        FLAG_ALLOW,
        FLAG_USER,
        FLAG_METRICS_LISTEN,
        FLAG_QUERY_LOG,
        FLAG_STATE_DIR,
        FLAG_TAKEOVER,
        FLAG_RELOAD,
        FLAG_NO_WATCH,
        FLAG_AZ,
        FLAG_AZ_AFFINITY,
        FLAG_CLIENT,
        FLAG_VPC,
        FLAG_VERSION,
        FLAG_HELP,
};

#define N_FLAGS (FLAG_HELP - FLAG_CONFIG + 1)
#define F(id) [(id)-FLAG_CONFIG]

/* Every flag, indexed by flag_id - FLAG_CONFIG; docs/configuration.md describes each. */
static const vd_config_flag flags[N_FLAGS] = {
    F(FLAG_CONFIG) = {"config", 0, "FILE",
                      "YAML config file, read first; flags override its values"},
    F(FLAG_LISTEN) = {"listen", 0, "ADDR:PORT",
                      "address to serve on, UDP and TCP (repeatable;\n"
                      "default 127.0.0.1:53 and [::1]:53)"},
    F(FLAG_UPSTREAM) = {"upstream", 0, "ADDR[:PORT]",
                        "server for names we do not hold (repeatable; port 53;\n"
                        "default: nameservers of /etc/resolv.conf except our own)"},
    F(FLAG_SNAPSHOT) = {"snapshot", 0, "DIR",
                        "directory with describe-vpc-endpoints.json and\n"
                        "describe-network-interfaces.json (repeatable)"},
    F(FLAG_ZONE) = {"zone", 0, "FILE", "RFC 1035 zone file served as a private zone (repeatable)"},
    F(FLAG_HOSTED_ZONE) = {"hosted-zone", 0, "FILE",
                           "aws route53 list-resource-record-sets output served as a\n"
                           "private zone (repeatable)"},
    F(FLAG_CHECK) = {"check", 0, NULL, "load and validate everything, print a summary, exit"},
    F(FLAG_DUMP) = {"dump", 0, NULL, "print every local record as zone-file text, exit"},
    F(FLAG_LOG_LEVEL) = {"log-level", 0, "LEVEL", "error, warn, info or debug (default info)"},
    F(FLAG_WORKERS) = {"workers", 0, "N", "event-loop threads, 1 to 64 (default: CPUs it may use)"},
    F(FLAG_ALLOW) = {"allow", 0, "CIDR",
                     "clients that may query, e.g. 10.0.0.0/8 (repeatable;\n"
                     "default loopback, RFC 1918, link-local, fc00::/7 and\n"
                     "100.64.0.0/10); others get REFUSED (deny_action: drop)"},
    F(FLAG_USER) = {"user", 0, "USER", "after binding, drop root privileges to this user"},
    F(FLAG_METRICS_LISTEN) = {"metrics-listen", 0, "ADDR:PORT",
                              "HTTP address for /metrics, /health and /ready\n"
                              "(default: off)"},
    F(FLAG_QUERY_LOG) = {"query-log", 0, "FORMAT:PATH",
                         "log every answer: route53:FILE (JSON lines),\n"
                         "dnstap:FILE or dnstap:unix:SOCKET (Frame Streams);\n"
                         "the key query_log also sets a sample"},
    F(FLAG_STATE_DIR) = {"state-dir", 0, "DIR",
                         "keep a copy of the data of every successful load here;\n"
                         "a start whose data does not load falls back to it"},
    F(FLAG_VPC) = {"vpc", 0, "VPC-ID",
                   "serve the endpoints of this VPC only (vpc-...), when the\n"
                   "snapshot holds several; the key views chooses per client"},
    F(FLAG_TAKEOVER) = {"takeover", 0, NULL,
                        "take the listening sockets over from the vpcdns that\n"
                        "serves the same address (restarts without loss)"},
    F(FLAG_RELOAD) = {"reload", 0, NULL,
                      "ask the vpcdns serving the first listen address to\n"
                      "reload, wait, exit 0 on success and 1 on failure"},
    F(FLAG_NO_WATCH) = {"no-watch", 0, NULL,
                        "do not reload when the snapshot or zone files change\n"
                        "(reload with SIGHUP only; the key watch: false)"},
    F(FLAG_AZ) = {"az", 0, "AZ",
                  "the clients' AZ: a name (us-east-1a), an ID (use1-az4),\n"
                  "or imds to ask the EC2 instance metadata at the start"},
    F(FLAG_AZ_AFFINITY) = {"az-affinity", 0, "MODE",
                           "endpoint addresses in the client's AZ: prefer (first,\n"
                           "the default), strict (only) or off"},
    F(FLAG_CLIENT) = {"client", 0, "ADDR",
                      "with --dump: print what a client at ADDR is answered\n"
                      "(its AZ and the ordered answer of each endpoint name)"},
    F(FLAG_VERSION) = {"version", 'V', NULL, "print the version and exit"},
    F(FLAG_HELP) = {"help", 'h', NULL, "print this help and exit"},
};

const vd_config_flag *vd_config_flags(size_t *n)
{
        *n = N_FLAGS;
        return flags;
}

/* getopt_long's view of the flag table. */
static struct option long_options[N_FLAGS + 1];

static void init_options(void)
{
        for (int i = 0; i < N_FLAGS; i++) {
                long_options[i].name = flags[i].name;
                long_options[i].has_arg = flags[i].arg != NULL ? required_argument : no_argument;
                long_options[i].flag = NULL;
                long_options[i].val = FLAG_CONFIG + i;
        }
        memset(&long_options[N_FLAGS], 0, sizeof(long_options[N_FLAGS]));
}

static const char *flag_name(int val)
{
        return val >= FLAG_CONFIG && val <= FLAG_HELP ? flags[val - FLAG_CONFIG].name : "?";
}

/* One getopt_long step with our error reporting. Returns the flag, -1 at the end, or -2 on a
 * usage error (err set). */
static int next_flag(int argc, char **argv, vd_error *err)
{
        int index = -1;
        int c = getopt_long(argc, argv, ":hV", long_options, &index);
        if (c == 'h')
                return FLAG_HELP;
        if (c == 'V')
                return FLAG_VERSION;
        if (c == '?') {
                const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
                if (optopt >= FLAG_CONFIG)
                        vd_error_set(err, "flag '--%s' takes no argument", flag_name(optopt));
                else if (optopt != 0)
                        vd_error_set(err, "unknown flag '-%c'", optopt);
                else
                        vd_error_set(err, "unknown flag '%s'", arg);
                return -2;
        }
        if (c == ':') {
                vd_error_set(err, "flag '--%s' needs an argument", flag_name(optopt));
                return -2;
        }
        return c;
}

static int apply_flag(vd_config *cfg, int flag, const char *arg, bool *replaced, vd_error *err)
{
        vd_addr addr;
        switch (flag) {
        case FLAG_LISTEN:
        case FLAG_UPSTREAM: {
                bool listen = flag == FLAG_LISTEN;
                vd_addr *list = listen ? cfg->listen : cfg->upstream;
                size_t *n = listen ? &cfg->n_listen : &cfg->n_upstream;
                size_t cap = listen ? VD_MAX_LISTEN : VD_MAX_UPSTREAM;
                const char *expected = listen ? "ADDR:PORT (127.0.0.1:53, [::1]:53)"
                                              : "ADDR[:PORT] (192.0.2.1, [2001:db8::1]:53)";
                char hint[64];
                if (vd_addr_port_hint(arg, hint, sizeof(hint)))
                        return vd_error_set(err,
                                            "--%s: expected %s, got '%s' (an IPv6 address with "
                                            "a port is written in brackets: did you mean %s?)",
                                            flag_name(flag), expected, arg, hint);
                if (vd_addr_parse(arg, VD_CFG_DEFAULT_PORT, &addr) != 0)
                        return vd_error_set(err, "--%s: expected %s, got '%s'", flag_name(flag),
                                            expected, arg);
                if (!replaced[flag - FLAG_CONFIG]) {
                        *n = 0;
                        replaced[flag - FLAG_CONFIG] = true;
                }
                if (*n >= cap)
                        return vd_error_set(err, "--%s: expected at most %zu addresses",
                                            flag_name(flag), cap);
                list[(*n)++] = addr;
                return 0;
        }
        case FLAG_SNAPSHOT:
        case FLAG_ZONE:
        case FLAG_HOSTED_ZONE: {
                bool snap = flag == FLAG_SNAPSHOT;
                char **list = snap ? cfg->snapshot_dirs : cfg->zone_files;
                size_t *n = snap ? &cfg->n_snapshots : &cfg->n_zones;
                if (flag == FLAG_HOSTED_ZONE) {
                        list = cfg->hosted_zone_files;
                        n = &cfg->n_hosted_zones;
                        if (!replaced[flag - FLAG_CONFIG])
                                for (size_t i = 0; i < VD_MAX_SOURCES; i++) {
                                        free(cfg->hosted_zone_vpcs[i]);
                                        cfg->hosted_zone_vpcs[i] = NULL;
                                }
                }
                if (arg[0] == '\0')
                        return vd_error_set(err, "--%s: expected a %s, got ''", flag_name(flag),
                                            snap ? "directory" : "file");
                if (!replaced[flag - FLAG_CONFIG]) {
                        vd_cfg_free_strings(list, n);
                        replaced[flag - FLAG_CONFIG] = true;
                }
                if (*n >= VD_MAX_SOURCES)
                        return vd_error_set(err, "--%s: expected at most %d entries",
                                            flag_name(flag), VD_MAX_SOURCES);
                list[*n] = strdup(arg);
                if (list[*n] == NULL) {
                        vd_error_set(err, "out of memory");
                        return -ENOMEM;
                }
                (*n)++;
                return 0;
        }
        case FLAG_LOG_LEVEL:
                if (vd_log_level_parse(arg, &cfg->log_level) != 0)
                        return vd_error_set(err,
                                            "--log-level: expected error, warn, info or debug, "
                                            "got '%s'",
                                            arg);
                return 0;
        case FLAG_WORKERS: {
                const vd_config_key *k = vd_config_key_find("workers");
                if (!vd_parse_uint(arg, k->min, k->max, &cfg->workers))
                        return vd_error_set(err,
                                            "--workers: expected an integer from %u to %u, got "
                                            "'%s'",
                                            k->min, k->max, arg);
                return 0;
        }
        case FLAG_ALLOW: {
                vd_cidr cidr;
                if (vd_cidr_parse(arg, &cidr) != 0) {
                        char hint[INET6_ADDRSTRLEN + 8];
                        if (vd_cidr_hint(arg, hint, sizeof(hint)))
                                return vd_error_set(err,
                                                    "--allow: expected " VD_CFG_CIDR_EXPECTED
                                                    " with the host bits zero, got '%s' (did "
                                                    "you mean %s?)",
                                                    arg, hint);
                        return vd_error_set(
                            err, "--allow: expected " VD_CFG_CIDR_EXPECTED ", got '%s'", arg);
                }
                if (!replaced[flag - FLAG_CONFIG]) {
                        cfg->n_allow = 0;
                        replaced[flag - FLAG_CONFIG] = true;
                }
                if (cfg->n_allow >= VD_MAX_ACL)
                        return vd_error_set(err, "--allow: expected at most %d prefixes",
                                            VD_MAX_ACL);
                cfg->allow[cfg->n_allow++] = cidr;
                return 0;
        }
        case FLAG_USER: {
                if (!vd_cfg_user_ok(arg))
                        return vd_error_set(err, "--user: expected a user name, got '%s'", arg);
                char *user = strdup(arg);
                if (user == NULL) {
                        vd_error_set(err, "out of memory");
                        return -ENOMEM;
                }
                free(cfg->user);
                cfg->user = user;
                return 0;
        }
        case FLAG_METRICS_LISTEN:
                if (vd_addr_parse(arg, VD_CFG_DEFAULT_PORT, &addr) != 0)
                        return vd_error_set(err,
                                            "--metrics-listen: expected ADDR:PORT "
                                            "(127.0.0.1:9153), got '%s'",
                                            arg);
                cfg->metrics_listen[0] = addr;
                cfg->n_metrics_listen = 1;
                return 0;
        case FLAG_QUERY_LOG:
                if (!vd_cfg_parse_qlog_target(arg, &cfg->query_log))
                        return vd_error_set(err,
                                            "--query-log: expected route53:FILE, dnstap:FILE or "
                                            "dnstap:unix:SOCKET, got '%s'",
                                            arg);
                return 0;
        case FLAG_STATE_DIR: {
                if (arg[0] == '\0')
                        return vd_error_set(err, "--state-dir: expected a directory, got ''");
                char *dir = strdup(arg);
                if (dir == NULL) {
                        vd_error_set(err, "out of memory");
                        return -ENOMEM;
                }
                free(cfg->state_dir);
                cfg->state_dir = dir;
                return 0;
        }
        case FLAG_NO_WATCH:
                cfg->watch = false;
                return 0;
        case FLAG_AZ:
                if (!vd_cfg_parse_az(arg, cfg->az))
                        return vd_error_set(err,
                                            "--az: expected an AZ name or ID (us-east-1a, "
                                            "use1-az4) or imds, got '%s'",
                                            arg);
                return 0;
        case FLAG_AZ_AFFINITY:
                if (!vd_cfg_parse_affinity(arg, &cfg->az_affinity))
                        return vd_error_set(err,
                                            "--az-affinity: expected off, prefer or strict, "
                                            "got '%s'",
                                            arg);
                return 0;
        case FLAG_CLIENT: {
                vd_addr a;
                if (vd_addr_parse_host(arg, 53, &a) != 0 || strlen(arg) >= sizeof(cfg->dump_client))
                        return vd_error_set(err,
                                            "--client: expected a client address (10.0.1.5, "
                                            "2001:db8::5), got '%s'",
                                            arg);
                snprintf(cfg->dump_client, sizeof(cfg->dump_client), "%s", arg);
                return 0;
        }
        case FLAG_VPC:
                if (!vd_config_vpc_ok(arg))
                        return vd_error_set(err,
                                            "--vpc: expected a VPC id (vpc- and 8 or 17 hex "
                                            "digits: vpc-0a1b2c3d4e5f60718), got '%s'",
                                            arg);
                snprintf(cfg->vpc, sizeof(cfg->vpc), "%s", arg);
                return 0;
        case FLAG_CHECK:
                cfg->check = true;
                return 0;
        case FLAG_DUMP:
                cfg->dump = true;
                return 0;
        case FLAG_TAKEOVER:
                cfg->takeover = true;
                return 0;
        case FLAG_RELOAD:
                cfg->reload = true;
                return 0;
        case FLAG_HELP:
                cfg->help = true;
                return 0;
        case FLAG_VERSION:
                cfg->version = true;
                return 0;
        case FLAG_CONFIG:
                return 0; /* handled in the first pass */
        }
        return vd_error_set(err, "unknown flag");
}

int vd_config_from_args(vd_config *cfg, int argc, char **argv, vd_error *err)
{
        vd_config tmp;
        const char *config_file = NULL;
        bool help = false, version = false;
        bool replaced[N_FLAGS] = {false};
        int rc, c;

        if (vd_cfg_copy(&tmp, cfg) != 0) {
                vd_error_set(err, "out of memory");
                return -ENOMEM;
        }

        /* Pass 1: syntax of every flag, and where the config file is. */
        init_options();
        opterr = 0;
        optind = 0; /* full re-initialisation of GNU getopt */
        while ((c = next_flag(argc, argv, err)) != -1) {
                if (c == -2) {
                        rc = -EINVAL;
                        goto out;
                }
                if (c == FLAG_CONFIG)
                        config_file = optarg;
                else if (c == FLAG_HELP)
                        help = true;
                else if (c == FLAG_VERSION)
                        version = true;
        }
        if (optind < argc) {
                rc = vd_error_set(err, "unexpected argument '%s'", argv[optind]);
                goto out;
        }
        if (help || version) { /* nothing else matters; a broken config must not hide help */
                cfg->help = help;
                cfg->version = version;
                rc = 0;
                goto out;
        }

        /* Pass 2: the file, then every other flag on top. */
        if (config_file != NULL) {
                if (config_file[0] == '\0') {
                        rc = vd_error_set(err, "--config: expected a file, got ''");
                        goto out;
                }
                rc = vd_config_load_file(&tmp, config_file, err);
                if (rc != 0)
                        goto out;
        }
        optind = 0;
        while ((c = next_flag(argc, argv, err)) != -1) {
                rc = apply_flag(&tmp, c, optarg, replaced, err);
                if (rc != 0)
                        goto out;
        }
        if (tmp.check && tmp.dump) {
                rc = vd_error_set(err, "--check and --dump cannot be combined");
                goto out;
        }
        if (tmp.dump_client[0] != '\0' && !tmp.dump) {
                rc = vd_error_set(err, "--client needs --dump");
                goto out;
        }
        if (tmp.reload && (tmp.check || tmp.dump || tmp.takeover)) {
                rc = vd_error_set(err, "--reload cannot be combined with --check, --dump or "
                                       "--takeover");
                goto out;
        }

        vd_config_free(cfg);
        *cfg = tmp;
        return 0;
out:
        vd_config_free(&tmp);
        return rc;
}

/* Appends printf output to buf[*len..cap), keeping it NUL-terminated when it is full. */
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
        va_list ap;
        if (*len >= cap)
                return;
        va_start(ap, fmt);
        int w = vsnprintf(buf + *len, cap - *len, fmt, ap);
        va_end(ap);
        if (w > 0)
                *len += (size_t)w < cap - *len ? (size_t)w : cap - *len - 1;
}

#define DOC_COLUMN 23 /* where a flag's description starts */

const char *vd_config_usage(void)
{
        static char text[16384];
        size_t len = 0, n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
        append(text, sizeof(text), &len, "%s",
               "Usage: vpcdns [--config FILE] [--listen ADDR:PORT]...\n"
               "              [--upstream ADDR[:PORT]]... [--snapshot DIR]... [--zone FILE]...\n"
               "              [--hosted-zone FILE]... [--check] [--dump] [--log-level LEVEL]\n"
               "              [--workers N] [--allow CIDR]... [--user USER]\n"
               "              [--metrics-listen ADDR:PORT] [--query-log FORMAT:PATH]\n"
               "              [--state-dir DIR] [--takeover] [--reload] [--no-watch]\n"
               "              [--az AZ] [--az-affinity MODE] [--client ADDR] [--vpc VPC-ID]\n"
               "              [-V|--version] [-h|--help]\n"
               "\n"
               "Answers AWS PrivateLink endpoint names from an AWS CLI snapshot, zone files and\n"
               "Route 53 hosted zones;\n"
               "forwards every other name upstream.\n"
               "\n");
        for (int i = 0; i < N_FLAGS; i++) {
                const vd_config_flag *f = &flags[i];
                char head[64];
                if (f->short_name != 0)
                        snprintf(head, sizeof(head), "-%c, --%s%s%s", f->short_name, f->name,
                                 f->arg != NULL ? " " : "", f->arg != NULL ? f->arg : "");
                else
                        snprintf(head, sizeof(head), "--%s%s%s", f->name, f->arg != NULL ? " " : "",
                                 f->arg != NULL ? f->arg : "");
                int pad = DOC_COLUMN - 2 - (int)strlen(head);
                append(text, sizeof(text), &len, "  %s%*s", head, pad > 2 ? pad : 2, "");
                for (const char *line = f->doc; *line != '\0';) {
                        size_t n = strcspn(line, "\n");
                        append(text, sizeof(text), &len, "%.*s\n", (int)n, line);
                        line += n;
                        if (*line == '\n') {
                                line++;
                                append(text, sizeof(text), &len, "%*s", DOC_COLUMN, "");
                        }
                }
        }
        append(text, sizeof(text), &len, "%s",
               "\n"
               "A list flag given once replaces the config file's list. The config file (YAML)\n"
               "takes these keys; each is optional, and a flag overrides its key:\n");
        for (size_t i = 0; i < n_keys; i++) {
                const vd_config_key *k = &keys[i];
                char def[96], range[48] = "";
                vd_config_key_default(k, def, sizeof(def));
                if (k->type == VD_KEY_UINT)
                        snprintf(range, sizeof(range), "%u to %u, ", k->min, k->max);
                append(text, sizeof(text), &len, "  %s: %sdefault %s\n      %s\n", k->name, range,
                       def, k->doc);
        }
        return text;
}

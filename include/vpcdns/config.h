/* config.h — settings from the YAML config file and the command line, validated.
 * Parse → validate → apply: a bad file or flag is rejected whole with a message naming the
 * file, line and the expected value; nothing is half-applied.
 *
 * Every config file key is one entry of one table (vd_config_keys): its name, type, range,
 * default, place in vd_config and a line of documentation. The YAML reader, the defaults,
 * the final range checks and --help all read that table, and a unit test holds
 * docs/configuration.md and zones/example/vpcdns.yaml to it; a new key is a new field and a
 * new entry. Likewise every command-line flag is one entry of vd_config_flags. */
#ifndef VPCDNS_CONFIG_H
#define VPCDNS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "vpcdns/acl.h"
#include "vpcdns/addr.h"
#include "vpcdns/common.h"
#include "vpcdns/log.h"
#include "vpcdns/snapshot.h"

#define VD_MAX_LISTEN 16
#define VD_CFG_AZ_MAX 32 /* an AZ name or ID, NUL included */
#define VD_MAX_SOURCES 64

typedef enum vd_deny_action {
        VD_DENY_REFUSE = 0, /* answer REFUSED (UDP and TCP) */
        VD_DENY_DROP,       /* send nothing (UDP), close the connection (TCP) */
} vd_deny_action;

#define VD_MAX_RULES 64

/* A forwarding rule as configured: names at or under domain go to servers, or to the default
 * upstreams when use_default ("servers: default"). */
typedef struct vd_config_rule {
        char *domain; /* owned; presentation text as validated */
        bool use_default;
        vd_addr servers[VD_MAX_UPSTREAM];
        size_t n_servers;
} vd_config_rule;

/* Query logging (key query_log, flag --query-log): which format, where, and the share of
 * queries logged. Fixed size, no owned memory: copied with the struct. */
typedef enum vd_qlog_format {
        VD_QLOG_OFF = 0,
        VD_QLOG_ROUTE53, /* JSON lines with the fields of the Route 53 Resolver query log */
        VD_QLOG_DNSTAP,  /* dnstap protobuf in Frame Streams, to a file or a unix: socket */
} vd_qlog_format;

#define VD_QLOG_PATH_MAX 256
#define VD_QLOG_SAMPLE_ALL 1000000u /* sample_ppm of "sample: 1" */

typedef struct vd_config_qlog {
        vd_qlog_format format;
        char path[VD_QLOG_PATH_MAX]; /* a file, or "unix:/path" for dnstap to a socket */
        unsigned sample_ppm;         /* queries logged per million, 0 to VD_QLOG_SAMPLE_ALL */
} vd_config_qlog;

/* ENI health probing (key eni_health, health.h): off unless set. Fixed size: copied with the
 * struct. The ranges are those of VD_ENI_HEALTH_* below; timeout_ms is at most interval_ms. */
typedef struct vd_config_eni_health {
        bool on;
        unsigned port, interval_ms, timeout_ms, fall, rise;
} vd_config_eni_health;

#define VD_ENI_HEALTH_INTERVAL_MIN 100 /* ms */
#define VD_ENI_HEALTH_INTERVAL_MAX 3600000
#define VD_ENI_HEALTH_TIMEOUT_MIN 10 /* ms */
#define VD_ENI_HEALTH_COUNT_MAX 100  /* fall and rise */
/* A view (key views): clients in its prefixes are answered with the endpoint names of its
 * VPC (docs/views.md). Fixed size, no owned memory: copied with the struct. */
#define VD_MAX_VIEWS 16
#define VD_MAX_VIEW_CLIENTS 32
#define VD_VIEW_NAME_MAX 64 /* with the NUL */
#define VD_VPC_ID_MAX 32    /* with the NUL: "vpc-" and 8 or 17 hex digits */
typedef struct vd_config_view {
        char name[VD_VIEW_NAME_MAX];
        vd_cidr clients[VD_MAX_VIEW_CLIENTS];
        size_t n_clients;
        char vpc[VD_VPC_ID_MAX];
        bool is_default; /* clients outside every view get this one */
        bool inbound;    /* its clients count as coming through an inbound Resolver endpoint */
} vd_config_view;

/* True when text is a VPC id as AWS writes it: "vpc-" and 8 or 17 lower-case hex digits. */
bool vd_config_vpc_ok(const char *text);

/* The settings. Each field set by a config file key is named after it; what it means, its
 * range and its default are in the key table (resolver/config_keys.c) and
 * docs/configuration.md, not repeated here. */
typedef struct vd_config {
        vd_addr listen[VD_MAX_LISTEN];
        size_t n_listen;
        vd_addr upstream[VD_MAX_UPSTREAM];
        size_t n_upstream;
        char *snapshot_dirs[VD_MAX_SOURCES]; /* owned; key snapshot */
        size_t n_snapshots;
        char *zone_files[VD_MAX_SOURCES]; /* owned; key zone */
        size_t n_zones;
        char *hosted_zone_files[VD_MAX_SOURCES]; /* owned; key hosted_zones */
        size_t n_hosted_zones;
        /* owned, per hosted zone file: its VPCs ("vpc-a vpc-b") from {path, vpcs}, or NULL;
         * with views, the zone goes only into the views of those VPCs (views.h) */
        char *hosted_zone_vpcs[VD_MAX_SOURCES];
        vd_log_level log_level;
        unsigned workers;
        unsigned tcp_idle_timeout_ms;
        unsigned tcp_max_connections; /* per worker, across all its listeners */
        unsigned upstream_timeout_ms;
        /* Access control: who may query; empty until vd_config_finalize fills the default
         * list (never an open resolver). Others get deny_action. */
        vd_cidr allow[VD_MAX_ACL];
        size_t n_allow;
        vd_deny_action deny_action;
        /* Response rate limiting for UDP per client prefix; 0 responses/s = off. */
        unsigned rrl_responses_per_second;
        unsigned rrl_slip;
        unsigned rrl_ipv4_prefix;
        unsigned rrl_ipv6_prefix;
        /* Per-client limits are counted for the whole process, all workers together (the
         * tables every worker shares), never per worker. */
        unsigned tcp_max_connections_per_client;
        unsigned tcp_max_queries_per_connection; /* per connection; 0 = unlimited */
        unsigned max_pending_per_client;
        /* The answer cache: one for the whole process, shared by every worker; 0 = none. */
        unsigned cache_size;
        unsigned cache_min_ttl;
        unsigned cache_max_ttl;
        unsigned cache_max_negative_ttl;
        unsigned cache_servfail_ttl;
        /* Forwarding rules (key forward); the most specific domain wins. */
        vd_config_rule rules[VD_MAX_RULES];
        size_t n_rules;
        unsigned upstream_max_qps; /* per upstream server, all workers together; 0 = off */
        unsigned upstream_ports;
        bool upstream_0x20;
        /* Serve-stale and prefetch. */
        unsigned stale_max;
        unsigned stale_answer_ms;
        bool prefetch;
        char *user; /* owned, NULL when unset: stay as started */
        /* Where the last data that loaded is kept (state.h); owned, NULL when unset. */
        char *state_dir;
        bool listen_default; /* listen holds the built-in defaults: ones that cannot bind are
                              * skipped (server.c); an address the user gave must bind */
        /* The HTTP endpoint (metrics, health, readiness): at most one address; none = off. */
        vd_addr metrics_listen[1];
        size_t n_metrics_listen;
        unsigned lameduck_ms; /* SIGTERM/SIGINT: /ready fails, answers go on this long */
        vd_config_qlog query_log;
        bool watch; /* reload when a snapshot directory or zone file changes */
        /* AZ affinity (docs/az-affinity.md): where this instance's clients are, "" = by the
         * snapshot's subnets; "imds" = asked of the instance metadata at the start. */
        char az[VD_CFG_AZ_MAX];
        vd_az_affinity az_affinity;
        char dump_client[64]; /* --client ADDR with --dump: "" none */
        vd_config_eni_health eni_health;
        /* Several VPCs: the one VPC to serve (key vpc, "" for all: refused when the data
         * holds several), or views of one VPC each for groups of clients (key views). */
        char vpc[VD_VPC_ID_MAX];
        vd_config_view views[VD_MAX_VIEWS];
        size_t n_views;
        /* From the command line only. */
        bool check;        /* --check */
        bool dump;         /* --dump */
        bool takeover;     /* --takeover: take the sockets of the vpcdns on our address */
        bool reload;       /* --reload: ask the running vpcdns to reload, report, exit */
        bool help;         /* --help, -h: caller prints vd_config_usage() */
        bool version;      /* --version, -V */
        char *config_path; /* owned, NULL when none */
} vd_config;

/* The CPUs this process may run on: its affinity mask (taskset, cpusets), lowered to its
 * cgroup v2 CPU quota when it has one (a container limited to 1.5 CPUs gets 2), 1 to 64. */
unsigned vd_default_workers(void);

/* cgroup v2's cpu.max ("QUOTA PERIOD", or "max PERIOD" for none) as whole CPUs, rounded up and
 * at most 64; 0 when there is no quota or the text is not in that form. */
unsigned vd_cpu_max_workers(const char *cpu_max);

/* Fills cfg with the defaults of the key table (no listen, upstream or allow list yet: see
 * vd_config_finalize). */
void vd_config_init(vd_config *cfg);
void vd_config_free(vd_config *cfg);

/* Reads a YAML file into cfg (the keys of vd_config_keys). Lists replace what cfg held.
 * Unknown keys and wrong types are errors naming file, line and what was expected; an
 * unknown key names the closest known one. */
int vd_config_load_file(vd_config *cfg, const char *path, vd_error *err);

/* argv → cfg: reads --config FILE first (wherever it stands), then applies every other flag
 * on top; a list flag given at least once replaces the file's list. */
int vd_config_from_args(vd_config *cfg, int argc, char **argv, vd_error *err);

/* Fills what is still unset: listen defaults to 127.0.0.1:53 and [::1]:53 (listen_default is
 * then set); upstream to the
 * nameservers of resolv_conf (normally "/etc/resolv.conf", port 53) minus our own listen
 * addresses. Validates the whole. */
int vd_config_finalize(vd_config *cfg, const char *resolv_conf, vd_error *err);

/* The type of a config file key, which says how its value is read and where it is kept. */
typedef enum vd_key_type {
        VD_KEY_ADDRS, /* list of vd_addr (a single string is a list of one) */
        VD_KEY_PATHS, /* list of owned char *, relative to the config file's directory */
        VD_KEY_CIDRS, /* list of vd_cidr */
        VD_KEY_UINT,  /* unsigned in [min, max] */
        VD_KEY_BOOL,  /* bool: true or false */
        VD_KEY_LEVEL, /* vd_log_level */
        VD_KEY_DENY,  /* vd_deny_action: refuse or drop */
        VD_KEY_USER,  /* owned char *, NULL when unset */
        VD_KEY_RULES, /* vd_config_rule list */
        VD_KEY_QLOG,  /* vd_config_qlog: a mapping {format, path, sample} */
        VD_KEY_PATH,  /* one owned char *, relative to the config file's directory; NULL unset */
        /* char[VD_CFG_AZ_MAX]: an AZ name or ID, or "imds"; "" unset */
        VD_KEY_AZ,
        /* vd_az_affinity: off, prefer or strict */
        VD_KEY_AFFINITY,
        VD_KEY_ENI_HEALTH, /* vd_config_eni_health: a mapping {port, interval_ms, ...} */
        VD_KEY_VPC,        /* char[VD_VPC_ID_MAX], "" unset */
        VD_KEY_VIEWS,      /* vd_config_view list */
} vd_key_type;

typedef struct vd_config_key {
        const char *name;
        vd_key_type type;
        unsigned min, max;        /* VD_KEY_UINT: the accepted range */
        unsigned def;             /* VD_KEY_UINT, VD_KEY_BOOL: the default (unless default_text) */
        size_t offset;            /* of the value (a list: its first item) in vd_config */
        size_t count_offset;      /* lists: of the size_t item count in vd_config */
        size_t cap;               /* lists: the most items */
        const char *expected;     /* one value as an error message describes it; NULL: built */
        const char *default_text; /* the default in words when it is not def */
        const char *doc;          /* one line for --help and the docs */
        /* A reload (SIGHUP) cannot apply this key to the running server: a change is logged
         * as needing a restart (reload_needs_restart key=NAME) and the old value stays. All
         * other keys take effect at the reload. */
        bool restart;
} vd_config_key;

/* True when k holds the same value in a and b (lists: the same items in the same order). */
bool vd_config_key_same(const vd_config *a, const vd_config *b, const vd_config_key *k);

/* Every config file key, in the order --help lists them; *n gets the count. */
const vd_config_key *vd_config_keys(size_t *n);

/* The key of that name, or NULL. */
const vd_config_key *vd_config_key_find(const char *name);

/* The default of k as --help and docs/configuration.md write it ("10000", "true", "the CPUs
 * this process may use"); always NUL-terminates. */
void vd_config_key_default(const vd_config_key *k, char *out, size_t cap);

/* The value of a key that is one word or number ("5000", "true", "drop", "vpcdns") written
 * to out; returns true when it is not the key's default (never for workers, whose default
 * depends on the machine). A list key writes "" and returns false: its items are shown
 * elsewhere. */
bool vd_config_key_value(const vd_config *cfg, const vd_config_key *k, char *out, size_t cap);

/* A command-line flag: --name, -short_name when not 0, and its argument's name (NULL for
 * none). */
typedef struct vd_config_flag {
        const char *name;
        char short_name;
        const char *arg;
        const char *doc; /* for --help; may hold newlines */
} vd_config_flag;

/* Every command-line flag, in the order --help lists them; *n gets the count. */
const vd_config_flag *vd_config_flags(size_t *n);

/* The --help text: synopsis, every flag, then every config file key with its range and
 * default (from the two tables above). The same static text on every call. */
const char *vd_config_usage(void);

#endif

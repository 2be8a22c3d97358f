/* config_keys.c — the table of config file keys (name, type, range, default, place in
 * vd_config, one line of documentation) and the value parsers that the file and the command
 * line share. Every other part of the config reads keys through this table; this file reads
 * no file and prints nothing. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/config.h"

#include "config_int.h"

#define FIELD(f) offsetof(vd_config, f)
#define LIST(f, n, most) .offset = FIELD(f), .count_offset = FIELD(n), .cap = (most)
/* The optional last argument of UINT: .restart = true (see vd_config_key). */
#define UINT(key, field, lo, hi, d, text, ...)                                                     \
        {                                                                                          \
                .name = (key), .type = VD_KEY_UINT, .min = (lo), .max = (hi), .def = (d),          \
                .offset = FIELD(field), .doc = (text), __VA_ARGS__                                 \
        }
#define RESTART .restart = true
#define BOOL(key, field, d, text)                                                                  \
        {                                                                                          \
                .name = (key), .type = VD_KEY_BOOL, .def = (d), .offset = FIELD(field),            \
                .doc = (text)                                                                      \
        }

static const vd_config_key keys[] = {
    {.name = "listen",
     .type = VD_KEY_ADDRS,
     LIST(listen, n_listen, VD_MAX_LISTEN),
     .expected = "a listen address ADDR:PORT (127.0.0.1:53, [::1]:53)",
     .default_text = "127.0.0.1:53 and [::1]:53",
     .restart = true,
     .doc = "addresses to serve on, UDP and TCP"},
    {.name = "upstream",
     .type = VD_KEY_ADDRS,
     LIST(upstream, n_upstream, VD_MAX_UPSTREAM),
     .expected = "an upstream address ADDR[:PORT] (192.0.2.1, [2001:db8::1]:53)",
     .default_text = "the nameservers of /etc/resolv.conf",
     .doc = "servers for names without local data; never one of our own addresses"},
    {.name = "snapshot",
     .type = VD_KEY_PATHS,
     LIST(snapshot_dirs, n_snapshots, VD_MAX_SOURCES),
     .expected = "a snapshot directory path",
     .default_text = "none",
     .doc = "directories of AWS CLI output: describe-vpc-endpoints, -network-interfaces"},
    {.name = "zone",
     .type = VD_KEY_PATHS,
     LIST(zone_files, n_zones, VD_MAX_SOURCES),
     .expected = "a zone file path",
     .default_text = "none",
     .doc = "RFC 1035 zone files, each served as a private zone"},
    {.name = "hosted_zones",
     .type = VD_KEY_PATHS,
     LIST(hosted_zone_files, n_hosted_zones, VD_MAX_SOURCES),
     .expected = "a hosted zone file path, or {path: FILE, vpcs: [vpc-ID, ...]}",
     .default_text = "none",
     .doc = "Route 53 record set captures, each served as a private zone"},
    {.name = "log_level",
     .type = VD_KEY_LEVEL,
     .offset = FIELD(log_level),
     .expected = "a log level (error, warn, info, debug)",
     .default_text = "info",
     .doc = "error, warn, info or debug"},
    {.name = "workers",
     .type = VD_KEY_UINT,
     .min = 1,
     .max = VD_CFG_WORKERS_MAX,
     .offset = FIELD(workers),
     .default_text = "the CPUs this process may use",
     .restart = true,
     .doc = "event-loop threads, each with its own sockets (SO_REUSEPORT)"},
    UINT("tcp_idle_timeout_ms", tcp_idle_timeout_ms, 1, 3600000, 10000,
         "a TCP connection without a query for this long is closed"),
    UINT("tcp_max_connections", tcp_max_connections, 1, 1000000, 1024,
         "open TCP connections of one worker, over all its listeners"),
    UINT("upstream_timeout_ms", upstream_timeout_ms, 1, 60000, 2000,
         "time budget of one forwarded query, retries included, before SERVFAIL"),
    {.name = "allow",
     .type = VD_KEY_CIDRS,
     LIST(allow, n_allow, VD_MAX_ACL),
     .expected = VD_CFG_CIDR_EXPECTED,
     .default_text = "loopback, RFC 1918, link-local, ULA and CGNAT",
     .doc = "address prefixes of the clients that may query"},
    {.name = "deny_action",
     .type = VD_KEY_DENY,
     .offset = FIELD(deny_action),
     .expected = "refuse or drop for 'deny_action'",
     .default_text = "refuse",
     .doc = "what a client outside allow gets: refuse (REFUSED) or drop (nothing)"},
    UINT("rrl_responses_per_second", rrl_responses_per_second, 0, 1000000, 0,
         "UDP responses/s to one client prefix, all workers together; 0 = off"),
    UINT("rrl_slip", rrl_slip, 0, 10, 2,
         "every rrl_slip-th response over the rate goes out as TC; 0 = drop all"),
    UINT("rrl_ipv4_prefix", rrl_ipv4_prefix, 8, 32, 24,
         "IPv4 clients are rate limited together per prefix of this length"),
    UINT("rrl_ipv6_prefix", rrl_ipv6_prefix, 16, 128, 56,
         "IPv6 clients are rate limited together per prefix of this length"),
    UINT("tcp_max_connections_per_client", tcp_max_connections_per_client, 1, 1000000, 64,
         "open TCP connections of one client address, all workers together"),
    UINT("tcp_max_queries_per_connection", tcp_max_queries_per_connection, 0, 1000000, 0,
         "a TCP connection is closed after this many answers; 0 = unlimited"),
    UINT("max_pending_per_client", max_pending_per_client, 1, 1000000, 100,
         "forwarded queries one client may have waiting, all workers together"),
    {.name = "user",
     .type = VD_KEY_USER,
     .offset = FIELD(user),
     .expected = "a user name for 'user' (vpcdns, nobody)",
     .default_text = "none (stay as started)",
     .restart = true,
     .doc = "after binding, switch to this user (name or number) for good"},
    UINT("cache_size", cache_size, 0, 100000000, 100000,
         "answer cache entries for the whole process, shared by the workers; 0 = off", RESTART),
    UINT("cache_min_ttl", cache_min_ttl, 0, 86400, 0, "least seconds an answer is cached"),
    UINT("cache_max_ttl", cache_max_ttl, 1, 604800, 86400, "most seconds an answer is cached"),
    UINT("cache_max_negative_ttl", cache_max_negative_ttl, 0, 86400, 3600,
         "most seconds an NXDOMAIN or NODATA answer is cached"),
    UINT("cache_servfail_ttl", cache_servfail_ttl, 0, 300, 5,
         "seconds a SERVFAIL is cached; 0 = never"),
    {.name = "forward",
     .type = VD_KEY_RULES,
     LIST(rules, n_rules, VD_MAX_RULES),
     .default_text = "none",
     .doc = "forwarding rules: {domain: NAME, servers: [ADDR[:PORT], ...] or default}"},
    UINT("upstream_max_qps", upstream_max_qps, 0, 1000000, 0,
         "queries per second to each upstream server, all workers together; 0 = off", RESTART),
    UINT("upstream_ports", upstream_ports, 1, 256, 16,
         "UDP source ports in rotation per upstream server"),
    BOOL("upstream_0x20", upstream_0x20, 0,
         "random letter case in upstream queries, checked in the answers"),
    UINT("stale_max", stale_max, 0, 604800, 3600,
         "serve answers expired up to this many seconds when upstreams fail; 0 = off"),
    UINT("stale_answer_ms", stale_answer_ms, 100, 60000, 1800,
         "a stale answer is sent after this long without an upstream answer"),
    BOOL("prefetch", prefetch, 1, "refresh a name asked for in the last 10 % of its TTL"),
    /* the HTTP endpoint: metrics, health and readiness (metrics.c) */
    {.name = "metrics_listen",
     .type = VD_KEY_ADDRS,
     LIST(metrics_listen, n_metrics_listen, 1),
     .expected = "an HTTP listen address ADDR:PORT (127.0.0.1:9153)",
     .default_text = "none (off)",
     .restart = true,
     .doc = "HTTP address for GET /metrics (Prometheus), /health and /ready"},
    UINT("lameduck_ms", lameduck_ms, 0, 600000, 5000,
         "on SIGTERM or SIGINT: not ready at once, answers go on this long; 0 = off"),
    {.name = "watch",
     .type = VD_KEY_BOOL,
     .def = 1,
     .offset = FIELD(watch),
     .restart = true, /* the watch is set up once, at the start */
     .doc = "reload when the config file, a snapshot directory or a zone file changes"},
    {.name = "query_log",
     .type = VD_KEY_QLOG,
     .offset = FIELD(query_log),
     .expected = "a query log {format: route53 or dnstap, path: FILE, sample: 0 to 1}",
     .default_text = "off",
     .restart = true,
     .doc = "log answers: {format: route53 or dnstap, path: FILE, sample: 0 to 1}"},
    /* the last data that loaded, kept for a start whose data does not load (state.c) */
    {.name = "state_dir",
     .type = VD_KEY_PATH,
     .offset = FIELD(state_dir),
     .expected = "a directory path for 'state_dir' (/var/lib/vpcdns)",
     .default_text = "none (off)",
     .doc = "keep a copy of the data of every successful load; a start falls back to it"},
    /* AZ affinity of endpoint answers (snapshot_az.c, az_imds.c) */
    {.name = "az",
     .type = VD_KEY_AZ,
     .offset = FIELD(az),
     .expected = "an AZ name or ID (us-east-1a, use1-az4) or imds for 'az'",
     .default_text = "none (by the snapshot's subnets)",
     .restart = true, /* imds is asked once, at the start */
     .doc = "the clients' AZ: name, ID or imds (EC2 metadata, asked at the start)"},
    {.name = "az_affinity",
     .type = VD_KEY_AFFINITY,
     .offset = FIELD(az_affinity),
     .expected = "off, prefer or strict for 'az_affinity'",
     .default_text = "prefer",
     .doc = "endpoint addresses of the client's AZ: prefer (first), strict (only), off"},
    /* TCP probes of the endpoints' network interfaces (health.c) */
    {.name = "eni_health",
     .type = VD_KEY_ENI_HEALTH,
     .offset = FIELD(eni_health),
     .expected = "ENI probing {port: 1-65535, interval_ms: 100-3600000, timeout_ms: 10 to "
                 "interval_ms, fall: 1-100, rise: 1-100}",
     .default_text = "off",
     .restart = true, /* turning it on or off; its settings change live (main.c) */
     .doc = "TCP probes of every ENI address; a failing one leaves the answers"},
    /* several VPCs in the data: one chosen, or one per group of clients (docs/views.md) */
    {.name = "vpc",
     .type = VD_KEY_VPC,
     .offset = FIELD(vpc),
     .expected = "a VPC id for 'vpc' (vpc-0a1b2c3d4e5f60718)",
     .default_text = "none (data of more than one VPC is refused)",
     .doc = "serve the endpoints of this VPC only, when the snapshot holds several"},
    {.name = "views",
     .type = VD_KEY_VIEWS,
     LIST(views, n_views, VD_MAX_VIEWS),
     .expected = "a list of views {name: NAME, clients: [CIDR, ...], vpc: vpc-..., default: "
                 "true or false, inbound: true or false}",
     .default_text = "none",
     .doc = "per-client VPCs: [{name, clients: [CIDR...], vpc, default, inbound}]"},
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

const vd_config_key *vd_config_keys(size_t *n)
{
        *n = N_KEYS;
        return keys;
}

const vd_config_key *vd_config_key_find(const char *name)
{
        for (size_t i = 0; name != NULL && i < N_KEYS; i++) {
                if (strcmp(name, keys[i].name) == 0)
                        return &keys[i];
        }
        return NULL;
}

void vd_config_key_default(const vd_config_key *k, char *out, size_t cap)
{
        if (k->default_text != NULL)
                snprintf(out, cap, "%s", k->default_text);
        else if (k->type == VD_KEY_BOOL)
                snprintf(out, cap, "%s", k->def ? "true" : "false");
        else
                snprintf(out, cap, "%u", k->def);
}

bool vd_config_key_value(const vd_config *cfg, const vd_config_key *k, char *out, size_t cap)
{
        static const char *const levels[] = {"error", "warn", "info", "debug"};
        const void *field = (const char *)cfg + k->offset;
        switch (k->type) {
        case VD_KEY_UINT:
                snprintf(out, cap, "%u", *(const unsigned *)field);
                return k->default_text == NULL && *(const unsigned *)field != k->def;
        case VD_KEY_BOOL:
                snprintf(out, cap, "%s", *(const bool *)field ? "true" : "false");
                return *(const bool *)field != (k->def != 0);
        case VD_KEY_LEVEL: {
                unsigned level = (unsigned)*(const vd_log_level *)field;
                snprintf(out, cap, "%s", level < 4 ? levels[level] : "?");
                return *(const vd_log_level *)field != VD_LOG_INFO;
        }
        case VD_KEY_DENY:
                snprintf(out, cap, "%s",
                         *(const vd_deny_action *)field == VD_DENY_DROP ? "drop" : "refuse");
                return *(const vd_deny_action *)field != VD_DENY_REFUSE;
        case VD_KEY_USER:
        case VD_KEY_PATH:
                snprintf(out, cap, "%s",
                         *(char *const *)field != NULL ? *(char *const *)field : "");
                return *(char *const *)field != NULL;
        case VD_KEY_AZ:
                snprintf(out, cap, "%s", (const char *)field);
                return ((const char *)field)[0] != '\0';
        case VD_KEY_AFFINITY:
                snprintf(out, cap, "%s", vd_cfg_affinity_name(*(const vd_az_affinity *)field));
                return *(const vd_az_affinity *)field != VD_AZ_AFFINITY_PREFER;
        case VD_KEY_QLOG: {
                const vd_config_qlog *q = field;
                if (q->format == VD_QLOG_OFF)
                        break;
                snprintf(out, cap, "%s:%s sample=%u.%06u",
                         q->format == VD_QLOG_DNSTAP ? "dnstap" : "route53", q->path,
                         q->sample_ppm / VD_QLOG_SAMPLE_ALL, q->sample_ppm % VD_QLOG_SAMPLE_ALL);
                return true;
        }
        case VD_KEY_ENI_HEALTH: {
                const vd_config_eni_health *e = field;
                if (!e->on)
                        break;
                snprintf(out, cap, "port=%u interval_ms=%u timeout_ms=%u fall=%u rise=%u", e->port,
                         e->interval_ms, e->timeout_ms, e->fall, e->rise);
                return true;
        }
        case VD_KEY_VPC:
                snprintf(out, cap, "%s", (const char *)field);
                return ((const char *)field)[0] != '\0';
        case VD_KEY_ADDRS:
        case VD_KEY_PATHS:
        case VD_KEY_CIDRS:
        case VD_KEY_RULES:
        case VD_KEY_VIEWS:
                break;
        }
        if (cap > 0)
                out[0] = '\0';
        return false;
}

static bool same_text(const char *a, const char *b)
{
        return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool vd_config_key_same(const vd_config *a, const vd_config *b, const vd_config_key *k)
{
        const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        size_t na = 0, nb = 0;
        if (k->cap > 0) {
                na = *(const size_t *)(const void *)((const char *)a + k->count_offset);
                nb = *(const size_t *)(const void *)((const char *)b + k->count_offset);
                if (na != nb)
                        return false;
        }
        switch (k->type) {
        case VD_KEY_ADDRS:
                for (size_t i = 0; i < na; i++)
                        if (!vd_addr_equal(&((const vd_addr *)fa)[i], &((const vd_addr *)fb)[i]))
                                return false;
                return true;
        case VD_KEY_CIDRS:
                for (size_t i = 0; i < na; i++) {
                        const vd_cidr *x = &((const vd_cidr *)fa)[i],
                                      *y = &((const vd_cidr *)fb)[i];
                        if (x->prefix != y->prefix || x->ss.ss_family != y->ss.ss_family ||
                            memcmp(&x->ss, &y->ss, sizeof(x->ss)) != 0)
                                return false;
                }
                return true;
        case VD_KEY_PATHS:
                for (size_t i = 0; i < na; i++)
                        if (!same_text(((char *const *)fa)[i], ((char *const *)fb)[i]))
                                return false;
                return true;
        case VD_KEY_RULES:
                for (size_t i = 0; i < na; i++) {
                        const vd_config_rule *x = &((const vd_config_rule *)fa)[i];
                        const vd_config_rule *y = &((const vd_config_rule *)fb)[i];
                        if (!same_text(x->domain, y->domain) || x->use_default != y->use_default ||
                            x->n_servers != y->n_servers)
                                return false;
                        for (size_t j = 0; j < x->n_servers; j++)
                                if (!vd_addr_equal(&x->servers[j], &y->servers[j]))
                                        return false;
                }
                return true;
        case VD_KEY_UINT:
                return *(const unsigned *)fa == *(const unsigned *)fb;
        case VD_KEY_BOOL:
                return *(const bool *)fa == *(const bool *)fb;
        case VD_KEY_LEVEL:
                return *(const vd_log_level *)fa == *(const vd_log_level *)fb;
        case VD_KEY_DENY:
                return *(const vd_deny_action *)fa == *(const vd_deny_action *)fb;
        case VD_KEY_USER:
        case VD_KEY_PATH:
                return same_text(*(char *const *)fa, *(char *const *)fb);
        case VD_KEY_AZ:
                return strcmp((const char *)fa, (const char *)fb) == 0;
        case VD_KEY_AFFINITY:
                return *(const vd_az_affinity *)fa == *(const vd_az_affinity *)fb;
        case VD_KEY_QLOG: {
                const vd_config_qlog *x = fa, *y = fb;
                return x->format == y->format && x->sample_ppm == y->sample_ppm &&
                       strcmp(x->path, y->path) == 0;
        }
        case VD_KEY_ENI_HEALTH: {
                const vd_config_eni_health *x = fa, *y = fb;
                return x->on == y->on && x->port == y->port && x->interval_ms == y->interval_ms &&
                       x->timeout_ms == y->timeout_ms && x->fall == y->fall && x->rise == y->rise;
        }
        case VD_KEY_VPC:
                return strcmp(fa, fb) == 0;
        case VD_KEY_VIEWS:
                for (size_t i = 0; i < na; i++) {
                        const vd_config_view *x = &((const vd_config_view *)fa)[i];
                        const vd_config_view *y = &((const vd_config_view *)fb)[i];
                        if (strcmp(x->name, y->name) != 0 || strcmp(x->vpc, y->vpc) != 0 ||
                            x->is_default != y->is_default || x->inbound != y->inbound ||
                            x->n_clients != y->n_clients)
                                return false;
                        for (size_t j = 0; j < x->n_clients; j++)
                                if (x->clients[j].prefix != y->clients[j].prefix ||
                                    memcmp(&x->clients[j].ss, &y->clients[j].ss,
                                           sizeof(x->clients[j].ss)) != 0)
                                        return false;
                }
                return true;
        }
        return false;
}

bool vd_config_vpc_ok(const char *text)
{
        size_t n = text != NULL ? strlen(text) : 0;
        if (n < 4 || strncmp(text, "vpc-", 4) != 0 || (n - 4 != 8 && n - 4 != 17))
                return false;
        for (size_t i = 4; i < n; i++)
                if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
                        return false;
        return true;
}

void *vd_cfg_field(vd_config *cfg, const vd_config_key *k)
{
        return (char *)cfg + k->offset;
}

size_t *vd_cfg_count(vd_config *cfg, const vd_config_key *k)
{
        return (size_t *)(void *)((char *)cfg + k->count_offset);
}

/* Levenshtein distance, for names of at most 63 characters (longer: "far"). */
static size_t edit_distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b), row[64];
        if (la >= 64 || lb >= 64)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];
                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j];
                        size_t best = diag + (a[i - 1] != b[j - 1]);
                        if (up + 1 < best)
                                best = up + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        row[j] = best;
                        diag = up;
                }
        }
        return row[lb];
}

const vd_config_key *vd_cfg_closest_key(const char *name)
{
        const vd_config_key *best = NULL;
        size_t best_distance = SIZE_MAX;
        for (size_t i = 0; name != NULL && i < N_KEYS; i++) {
                size_t d = edit_distance(name, keys[i].name);
                if (d < best_distance) {
                        best = &keys[i];
                        best_distance = d;
                }
        }
        /* A typo: a few edits, and fewer than half the name's letters. */
        size_t limit = name != NULL ? strlen(name) / 3 + 1 : 0;
        return best != NULL && best_distance <= (limit < 4 ? limit : 4) ? best : NULL;
}

bool vd_cfg_parse_bool(const char *text, bool *out)
{
        static const char *const yes[] = {"true", "True", "TRUE"};
        static const char *const no[] = {"false", "False", "FALSE"};
        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcmp(text, yes[i]) == 0) {
                        *out = true;
                        return true;
                }
                if (strcmp(text, no[i]) == 0) {
                        *out = false;
                        return true;
                }
        }
        return false;
}

bool vd_cfg_parse_deny(const char *text, vd_deny_action *out)
{
        if (strcmp(text, "refuse") == 0) {
                *out = VD_DENY_REFUSE;
                return true;
        }
        if (strcmp(text, "drop") == 0) {
                *out = VD_DENY_DROP;
                return true;
        }
        return false;
}

bool vd_cfg_parse_affinity(const char *text, vd_az_affinity *out)
{
        static const vd_az_affinity modes[] = {VD_AZ_AFFINITY_OFF, VD_AZ_AFFINITY_PREFER,
                                               VD_AZ_AFFINITY_STRICT};
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                if (strcmp(text, vd_cfg_affinity_name(modes[i])) == 0) {
                        *out = modes[i];
                        return true;
                }
        }
        return false;
}

const char *vd_cfg_affinity_name(vd_az_affinity mode)
{
        switch (mode) {
        case VD_AZ_AFFINITY_OFF:
                return "off";
        case VD_AZ_AFFINITY_PREFER:
                return "prefer";
        case VD_AZ_AFFINITY_STRICT:
                return "strict";
        }
        return "?";
}

bool vd_cfg_parse_az(const char *text, char *out)
{
        size_t len = strlen(text);
        if (len == 0 || len >= VD_CFG_AZ_MAX || text[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = text[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                        return false;
        }
        memcpy(out, text, len + 1);
        return true;
}

bool vd_cfg_user_ok(const char *text)
{
        size_t len = strlen(text);
        if (len == 0 || len >= VD_CFG_USER_MAX || text[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)text[i];
                if (c <= 0x20 || c >= 0x7f || c == ':' || c == '/')
                        return false;
        }
        return true;
}

bool vd_cfg_parse_qlog_format(const char *text, vd_qlog_format *out)
{
        if (strcmp(text, "route53") == 0)
                *out = VD_QLOG_ROUTE53;
        else if (strcmp(text, "dnstap") == 0)
                *out = VD_QLOG_DNSTAP;
        else
                return false;
        return true;
}

bool vd_cfg_parse_qlog_sample(const char *text, unsigned *ppm)
{
        unsigned whole, frac = 0, scale = VD_QLOG_SAMPLE_ALL;
        if (text[0] != '0' && text[0] != '1')
                return false;
        whole = (unsigned)(text[0] - '0');
        const char *p = text + 1;
        if (*p == '.') {
                p++;
                if (*p == '\0')
                        return false;
                for (; *p >= '0' && *p <= '9'; p++) {
                        if (scale == 1)
                                return false; /* more than six decimals */
                        scale /= 10;
                        frac += (unsigned)(*p - '0') * scale;
                }
        }
        if (*p != '\0' || (whole == 1 && frac != 0))
                return false;
        *ppm = whole * VD_QLOG_SAMPLE_ALL + frac;
        return true;
}

bool vd_cfg_parse_qlog_target(const char *text, vd_config_qlog *out)
{
        const char *colon = strchr(text, ':');
        char format[16];
        vd_qlog_format f;
        if (colon == NULL || (size_t)(colon - text) >= sizeof(format))
                return false;
        memcpy(format, text, (size_t)(colon - text));
        format[colon - text] = '\0';
        if (!vd_cfg_parse_qlog_format(format, &f) || colon[1] == '\0' ||
            strlen(colon + 1) >= VD_QLOG_PATH_MAX)
                return false;
        if (f != VD_QLOG_DNSTAP && strncmp(colon + 1, "unix:", 5) == 0)
                return false; /* only dnstap goes to a socket */
        out->format = f;
        snprintf(out->path, sizeof(out->path), "%s", colon + 1);
        out->sample_ppm = VD_QLOG_SAMPLE_ALL;
        return true;
}

/* config.c — settings from the YAML config file (libyaml document API) and the command line
 * (getopt_long), validated. Parse → validate → apply: every reader fills a private copy and
 * moves it into the caller's vd_config only when the whole input was accepted.
 * Also owns address text (vd_addr_*) and the resolv.conf reader behind the default upstreams.
 * Knows nothing about sockets beyond sockaddr; of other modules it uses only acl.h (prefix
 * text and the default allow list) and wire.h (to check the domain of a forwarding rule). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "vpcdns/acl.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

#define DEFAULT_PORT 53
#define USER_MAX 256 /* longest user name accepted (LOGIN_NAME_MAX is far smaller) */

/* ------------------------------------------------------------------------------------------ */
/* Defaults and ownership                                                                    */

#define WORKERS_MAX 64

unsigned vd_cpu_max_workers(const char *cpu_max)
{
        char quota[32], rest;
        unsigned long long period;
        if (sscanf(cpu_max, "%31s %llu %c", quota, &period, &rest) != 2 || period == 0)
                return 0;
        char *end;
        errno = 0;
        unsigned long long q = strtoull(quota, &end, 10);
        if (errno != 0 || end == quota || *end != '\0' || q == 0)
                return 0; /* "max": no quota */
        unsigned long long cpus = q / period + (q % period != 0);
        return cpus > WORKERS_MAX ? WORKERS_MAX : (unsigned)cpus;
}

static unsigned read_cpu_max(const char *path)
{
        char text[64];
        FILE *f = fopen(path, "re");
        if (f == NULL)
                return 0;
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        return vd_cpu_max_workers(text);
}

/* The quota of our own cgroup (the line "0::PATH" of /proc/self/cgroup), or of the root that
 * a container's cgroup namespace shows; 0 when there is none or no cgroup v2. */
static unsigned cgroup_cpu_quota(void)
{
        char line[PATH_MAX], path[PATH_MAX + 32];
        unsigned cpus = 0;
        FILE *f = fopen("/proc/self/cgroup", "re");
        if (f != NULL) {
                while (cpus == 0 && fgets(line, sizeof(line), f) != NULL) {
                        if (strncmp(line, "0::", 3) != 0)
                                continue;
                        line[strcspn(line, "\n")] = '\0';
                        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", line + 3);
                        cpus = read_cpu_max(path);
                }
                fclose(f);
        }
        return cpus > 0 ? cpus : read_cpu_max("/sys/fs/cgroup/cpu.max");
}

unsigned vd_default_workers(void)
{
        long n = 0;
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = CPU_COUNT(&set);
        if (n <= 0)
                n = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned quota = cgroup_cpu_quota();
        if (quota > 0 && quota < n)
                n = quota;
        if (n < 1)
                n = 1;
        return n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
}

void vd_config_init(vd_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->log_level = VD_LOG_INFO;
        cfg->workers = vd_default_workers();
        cfg->tcp_idle_timeout_ms = 10000;
        cfg->tcp_max_connections = 1024;
        cfg->upstream_timeout_ms = 2000;
        cfg->deny_action = VD_DENY_REFUSE;
        cfg->rrl_responses_per_second = 0; /* off */
        cfg->rrl_slip = 2;
        cfg->rrl_ipv4_prefix = 24;
        cfg->rrl_ipv6_prefix = 56;
        cfg->tcp_max_connections_per_client = 64;
        cfg->tcp_max_queries_per_connection = 0; /* unlimited */
        cfg->max_pending_per_client = 100;
        cfg->cache_size = 100000;
        cfg->cache_min_ttl = 0;
        cfg->cache_max_ttl = 86400;
        cfg->cache_max_negative_ttl = 3600;
        cfg->cache_servfail_ttl = 5;
        cfg->upstream_max_qps = 0; /* off */
        cfg->upstream_ports = 16;
        cfg->upstream_0x20 = false;
        cfg->stale_max = 3600;
        cfg->stale_answer_ms = 1800;
        cfg->prefetch = true;
}

static void free_strings(char **list, size_t *n)
{
        for (size_t i = 0; i < *n; i++) {
                free(list[i]);
                list[i] = NULL;
        }
        *n = 0;
}

static void free_rules(vd_config_rule *rules, size_t *n)
{
        for (size_t i = 0; i < *n; i++) {
                free(rules[i].domain);
                rules[i].domain = NULL;
        }
        *n = 0;
}

void vd_config_free(vd_config *cfg)
{
        if (cfg == NULL)
                return;
        free_strings(cfg->snapshot_dirs, &cfg->n_snapshots);
        free_strings(cfg->zone_files, &cfg->n_zones);
        free_rules(cfg->rules, &cfg->n_rules);
        free(cfg->config_path);
        cfg->config_path = NULL;
        free(cfg->user);
        cfg->user = NULL;
}

/* Deep copy of src into dst (dst is overwritten, not freed). Returns 0 or -ENOMEM. */
static int config_copy(vd_config *dst, const vd_config *src)
{
        *dst = *src;
        dst->n_snapshots = 0;
        dst->n_zones = 0;
        dst->n_rules = 0;
        dst->config_path = NULL;
        dst->user = NULL;
        for (size_t i = 0; i < src->n_snapshots; i++) {
                dst->snapshot_dirs[i] = strdup(src->snapshot_dirs[i]);
                if (dst->snapshot_dirs[i] == NULL)
                        goto fail;
                dst->n_snapshots++;
        }
        for (size_t i = 0; i < src->n_zones; i++) {
                dst->zone_files[i] = strdup(src->zone_files[i]);
                if (dst->zone_files[i] == NULL)
                        goto fail;
                dst->n_zones++;
        }
        for (size_t i = 0; i < src->n_rules; i++) {
                dst->rules[i] = src->rules[i];
                dst->rules[i].domain = strdup(src->rules[i].domain);
                if (dst->rules[i].domain == NULL)
                        goto fail;
                dst->n_rules++;
        }
        if (src->config_path != NULL) {
                dst->config_path = strdup(src->config_path);
                if (dst->config_path == NULL)
                        goto fail;
        }
        if (src->user != NULL) {
                dst->user = strdup(src->user);
                if (dst->user == NULL)
                        goto fail;
        }
        return 0;
fail:
        vd_config_free(dst);
        return -ENOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* Addresses                                                                                 */

static bool parse_port(const char *text, unsigned *port)
{
        if (text[0] == '\0' || strlen(text) > 5)
                return false;
        unsigned value = 0;
        for (const char *p = text; *p != '\0'; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                value = value * 10 + (unsigned)(*p - '0');
        }
        if (value == 0 || value > 65535)
                return false;
        *port = value;
        return true;
}

/* "fe80::1%eth0" or "fe80::1%2" → sockaddr_in6 with scope id. */
static bool parse_ipv6(const char *text, unsigned port, vd_addr *out)
{
        char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
        size_t len = strlen(text);
        if (len == 0 || len >= sizeof(host))
                return false;
        memcpy(host, text, len + 1);

        uint32_t scope = 0;
        char *pct = strchr(host, '%');
        if (pct != NULL) {
                *pct = '\0';
                const char *iface = pct + 1;
                if (iface[0] == '\0')
                        return false;
                scope = if_nametoindex(iface);
                if (scope == 0) {
                        char *end = NULL;
                        errno = 0;
                        unsigned long n = strtoul(iface, &end, 10);
                        if (errno != 0 || *end != '\0' || n == 0 || n > UINT32_MAX ||
                            iface[0] < '0' || iface[0] > '9')
                                return false;
                        scope = (uint32_t)n;
                }
        }
        struct sockaddr_in6 sin6;
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t)port);
        sin6.sin6_scope_id = scope;
        if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
                return false;
        memset(out, 0, sizeof(*out));
        memcpy(&out->ss, &sin6, sizeof(sin6));
        out->len = sizeof(sin6);
        return true;
}

static bool parse_ipv4(const char *text, unsigned port, vd_addr *out)
{
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, text, &sin.sin_addr) != 1)
                return false;
        memset(out, 0, sizeof(*out));
        memcpy(&out->ss, &sin, sizeof(sin));
        out->len = sizeof(sin);
        return true;
}

int vd_addr_parse(const char *text, unsigned default_port, vd_addr *out)
{
        char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
        if (text == NULL || out == NULL)
                return -EINVAL;
        size_t len = strlen(text);
        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, text, len + 1);

        unsigned port = default_port;
        if (buf[0] == '[') { /* "[v6]" or "[v6]:port" */
                char *close = strchr(buf, ']');
                if (close == NULL || close == buf + 1)
                        return -EINVAL;
                *close = '\0';
                const char *rest = close + 1;
                if (rest[0] == ':') {
                        if (!parse_port(rest + 1, &port))
                                return -EINVAL;
                } else if (rest[0] != '\0') {
                        return -EINVAL;
                }
                if (port == 0 || port > 65535)
                        return -EINVAL;
                return parse_ipv6(buf + 1, port, out) ? 0 : -EINVAL;
        }
        char *colon = strchr(buf, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) { /* bare IPv6, default port */
                if (port == 0 || port > 65535)
                        return -EINVAL;
                return parse_ipv6(buf, port, out) ? 0 : -EINVAL;
        }
        if (colon != NULL) {
                *colon = '\0';
                if (!parse_port(colon + 1, &port))
                        return -EINVAL;
        }
        if (port == 0 || port > 65535)
                return -EINVAL;
        return parse_ipv4(buf, port, out) ? 0 : -EINVAL;
}

void vd_addr_format(const vd_addr *a, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN];
        char scope[IF_NAMESIZE + 2] = "";
        if (cap == 0)
                return;
        if (a->ss.ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
                if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
                        goto bad;
                snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
                return;
        }
        if (a->ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
                if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
                        goto bad;
                if (sin6->sin6_scope_id != 0) {
                        char name[IF_NAMESIZE];
                        if (if_indextoname(sin6->sin6_scope_id, name) != NULL)
                                snprintf(scope, sizeof(scope), "%%%s", name);
                        else
                                snprintf(scope, sizeof(scope), "%%%u",
                                         (unsigned)sin6->sin6_scope_id);
                }
                snprintf(out, cap, "[%s%s]:%u", host, scope, (unsigned)ntohs(sin6->sin6_port));
                return;
        }
bad:
        snprintf(out, cap, "?");
}

bool vd_addr_equal(const vd_addr *a, const vd_addr *b)
{
        if (a->ss.ss_family != b->ss.ss_family)
                return false;
        if (a->ss.ss_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
                const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        if (a->ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
                const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
                return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
        }
        return false;
}

static unsigned addr_port(const vd_addr *a)
{
        if (a->ss.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
        if (a->ss.ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
        return 0;
}

static bool addr_is_wildcard(const vd_addr *a)
{
        if (a->ss.ss_family == AF_INET)
                return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
        if (a->ss.ss_family == AF_INET6)
                return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
        return false;
}

/* Same address bytes, ignoring ports and scope. */
static bool same_host(const struct sockaddr *x, const vd_addr *a)
{
        if (x->sa_family != a->ss.ss_family)
                return false;
        if (x->sa_family == AF_INET)
                return ((const struct sockaddr_in *)x)->sin_addr.s_addr ==
                       ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr;
        if (x->sa_family == AF_INET6)
                return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                              &((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                              sizeof(struct in6_addr)) == 0;
        return false;
}

/* True when a is an address of this host: loopback, or assigned to one of its interfaces. */
static bool addr_is_local(const vd_addr *a)
{
        if (a->ss.ss_family == AF_INET) {
                uint32_t v4 = ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr);
                if ((v4 >> 24) == 127 || v4 == INADDR_ANY)
                        return true;
        } else if (a->ss.ss_family == AF_INET6) {
                const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
                if (IN6_IS_ADDR_LOOPBACK(v6) || IN6_IS_ADDR_UNSPECIFIED(v6))
                        return true;
        }
        struct ifaddrs *list = NULL;
        if (getifaddrs(&list) != 0)
                return false;
        bool found = false;
        for (struct ifaddrs *it = list; it != NULL && !found; it = it->ifa_next) {
                if (it->ifa_addr != NULL && same_host(it->ifa_addr, a))
                        found = true;
        }
        freeifaddrs(list);
        return found;
}

/* Would a query sent to upstream reach one of our own listeners? Exact address and port, or
 * a wildcard listener on that port while upstream is an address of this host: 0.0.0.0:P
 * covers the host's IPv4 addresses, [::]:P (dual-stack) all of them. A wildcard does not
 * exclude a remote server such as the VPC resolver: that would leave a central resolver
 * listening on 0.0.0.0:53 without any upstream. */
static bool is_own_address(const vd_addr *upstream, const vd_addr *listen, size_t n_listen)
{
        for (size_t i = 0; i < n_listen; i++) {
                const vd_addr *l = &listen[i];
                if (vd_addr_equal(upstream, l))
                        return true;
                if (!addr_is_wildcard(l) || addr_port(l) != addr_port(upstream))
                        continue;
                if (l->ss.ss_family == AF_INET && upstream->ss.ss_family != AF_INET)
                        continue;
                if (addr_is_local(upstream))
                        return true;
        }
        return false;
}

/* ------------------------------------------------------------------------------------------ */
/* The keys of the config file                                                               */

enum key_kind {
        KIND_ADDRS,
        KIND_PATHS,
        KIND_LEVEL,
        KIND_UINT,
        KIND_CIDRS,
        KIND_DENY,
        KIND_USER,
        KIND_BOOL,
        KIND_RULES,
};

enum key_id {
        KEY_LISTEN,
        KEY_UPSTREAM,
        KEY_SNAPSHOT,
        KEY_ZONE,
        KEY_LOG_LEVEL,
        KEY_WORKERS,
        KEY_TCP_IDLE_TIMEOUT,
        KEY_TCP_MAX_CONNECTIONS,
        KEY_UPSTREAM_TIMEOUT,
        KEY_ALLOW,
        KEY_DENY_ACTION,
        KEY_RRL_RESPONSES,
        KEY_RRL_SLIP,
        KEY_RRL_IPV4_PREFIX,
        KEY_RRL_IPV6_PREFIX,
        KEY_TCP_MAX_PER_CLIENT,
        KEY_TCP_MAX_QUERIES,
        KEY_MAX_PENDING,
        KEY_USER,
        KEY_CACHE_SIZE,
        KEY_CACHE_MIN_TTL,
        KEY_CACHE_MAX_TTL,
        KEY_CACHE_MAX_NEG_TTL,
        KEY_CACHE_SERVFAIL_TTL,
        KEY_FORWARD,
        KEY_UPSTREAM_MAX_QPS,
        KEY_UPSTREAM_PORTS,
        KEY_UPSTREAM_0X20,
        KEY_STALE_MAX,
        KEY_STALE_ANSWER_MS,
        KEY_PREFETCH,
        KEY_COUNT,
};

struct key_def {
        const char *name;
        enum key_kind kind;
        unsigned min, max; /* KIND_UINT */
};

static const struct key_def keys[KEY_COUNT] = {
    [KEY_LISTEN] = {"listen", KIND_ADDRS, 0, 0},
    [KEY_UPSTREAM] = {"upstream", KIND_ADDRS, 0, 0},
    [KEY_SNAPSHOT] = {"snapshot", KIND_PATHS, 0, 0},
    [KEY_ZONE] = {"zone", KIND_PATHS, 0, 0},
    [KEY_LOG_LEVEL] = {"log_level", KIND_LEVEL, 0, 0},
    [KEY_WORKERS] = {"workers", KIND_UINT, 1, WORKERS_MAX},
    [KEY_TCP_IDLE_TIMEOUT] = {"tcp_idle_timeout_ms", KIND_UINT, 1, 3600000},
    [KEY_TCP_MAX_CONNECTIONS] = {"tcp_max_connections", KIND_UINT, 1, 1000000},
    [KEY_UPSTREAM_TIMEOUT] = {"upstream_timeout_ms", KIND_UINT, 1, 60000},
    [KEY_ALLOW] = {"allow", KIND_CIDRS, 0, 0},
    [KEY_DENY_ACTION] = {"deny_action", KIND_DENY, 0, 0},
    [KEY_RRL_RESPONSES] = {"rrl_responses_per_second", KIND_UINT, 0, 1000000},
    [KEY_RRL_SLIP] = {"rrl_slip", KIND_UINT, 0, 10},
    [KEY_RRL_IPV4_PREFIX] = {"rrl_ipv4_prefix", KIND_UINT, 8, 32},
    [KEY_RRL_IPV6_PREFIX] = {"rrl_ipv6_prefix", KIND_UINT, 16, 128},
    [KEY_TCP_MAX_PER_CLIENT] = {"tcp_max_connections_per_client", KIND_UINT, 1, 1000000},
    [KEY_TCP_MAX_QUERIES] = {"tcp_max_queries_per_connection", KIND_UINT, 0, 1000000},
    [KEY_MAX_PENDING] = {"max_pending_per_client", KIND_UINT, 1, 1000000},
    [KEY_USER] = {"user", KIND_USER, 0, 0},
    [KEY_CACHE_SIZE] = {"cache_size", KIND_UINT, 0, 100000000},
    [KEY_CACHE_MIN_TTL] = {"cache_min_ttl", KIND_UINT, 0, 86400},
    [KEY_CACHE_MAX_TTL] = {"cache_max_ttl", KIND_UINT, 1, 604800},
    [KEY_CACHE_MAX_NEG_TTL] = {"cache_max_negative_ttl", KIND_UINT, 0, 86400},
    [KEY_CACHE_SERVFAIL_TTL] = {"cache_servfail_ttl", KIND_UINT, 0, 300},
    [KEY_FORWARD] = {"forward", KIND_RULES, 0, 0},
    [KEY_UPSTREAM_MAX_QPS] = {"upstream_max_qps", KIND_UINT, 0, 1000000},
    [KEY_UPSTREAM_PORTS] = {"upstream_ports", KIND_UINT, 1, 256},
    [KEY_UPSTREAM_0X20] = {"upstream_0x20", KIND_BOOL, 0, 0},
    [KEY_STALE_MAX] = {"stale_max", KIND_UINT, 0, 604800},
    [KEY_STALE_ANSWER_MS] = {"stale_answer_ms", KIND_UINT, 100, 60000},
    [KEY_PREFETCH] = {"prefetch", KIND_BOOL, 0, 0},
};

static unsigned *uint_field(vd_config *cfg, enum key_id id)
{
        switch (id) {
        case KEY_WORKERS:
                return &cfg->workers;
        case KEY_TCP_IDLE_TIMEOUT:
                return &cfg->tcp_idle_timeout_ms;
        case KEY_TCP_MAX_CONNECTIONS:
                return &cfg->tcp_max_connections;
        case KEY_UPSTREAM_TIMEOUT:
                return &cfg->upstream_timeout_ms;
        case KEY_RRL_RESPONSES:
                return &cfg->rrl_responses_per_second;
        case KEY_RRL_SLIP:
                return &cfg->rrl_slip;
        case KEY_RRL_IPV4_PREFIX:
                return &cfg->rrl_ipv4_prefix;
        case KEY_RRL_IPV6_PREFIX:
                return &cfg->rrl_ipv6_prefix;
        case KEY_TCP_MAX_PER_CLIENT:
                return &cfg->tcp_max_connections_per_client;
        case KEY_TCP_MAX_QUERIES:
                return &cfg->tcp_max_queries_per_connection;
        case KEY_MAX_PENDING:
                return &cfg->max_pending_per_client;
        case KEY_CACHE_SIZE:
                return &cfg->cache_size;
        case KEY_CACHE_MIN_TTL:
                return &cfg->cache_min_ttl;
        case KEY_CACHE_MAX_TTL:
                return &cfg->cache_max_ttl;
        case KEY_CACHE_MAX_NEG_TTL:
                return &cfg->cache_max_negative_ttl;
        case KEY_CACHE_SERVFAIL_TTL:
                return &cfg->cache_servfail_ttl;
        case KEY_UPSTREAM_MAX_QPS:
                return &cfg->upstream_max_qps;
        case KEY_UPSTREAM_PORTS:
                return &cfg->upstream_ports;
        case KEY_STALE_MAX:
                return &cfg->stale_max;
        case KEY_STALE_ANSWER_MS:
                return &cfg->stale_answer_ms;
        default:
                return NULL;
        }
}

/* The address list of a key, with its count and capacity. */
static vd_addr *addr_field(vd_config *cfg, enum key_id id, size_t **n, size_t *cap)
{
        if (id == KEY_LISTEN) {
                *n = &cfg->n_listen;
                *cap = VD_MAX_LISTEN;
                return cfg->listen;
        }
        *n = &cfg->n_upstream;
        *cap = VD_MAX_UPSTREAM;
        return cfg->upstream;
}

static bool *bool_field(vd_config *cfg, enum key_id id)
{
        return id == KEY_PREFETCH ? &cfg->prefetch : &cfg->upstream_0x20;
}

static char **path_field(vd_config *cfg, enum key_id id, size_t **n)
{
        if (id == KEY_SNAPSHOT) {
                *n = &cfg->n_snapshots;
                return cfg->snapshot_dirs;
        }
        *n = &cfg->n_zones;
        return cfg->zone_files;
}

/* Strict decimal: digits only, no sign, no leading '+', within [min, max]. */
static bool parse_uint(const char *text, unsigned min, unsigned max, unsigned *out)
{
        if (text[0] == '\0' || strlen(text) > 10)
                return false;
        unsigned long long value = 0;
        for (const char *p = text; *p != '\0'; p++) {
                if (*p < '0' || *p > '9')
                        return false;
                value = value * 10 + (unsigned long long)(*p - '0');
        }
        if (value < min || value > max)
                return false;
        *out = (unsigned)value;
        return true;
}

#define CIDR_EXPECTED "an address prefix (10.0.0.0/8, fd00::/8, 192.0.2.1)"

/* For "10.1.2.3/8", a prefix whose host bits are set: writes the network the user probably
 * meant ("10.0.0.0/8") and returns true. False for any other text. */
static bool cidr_hint(const char *text, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN + 1], shown[INET6_ADDRSTRLEN];
        uint8_t bytes[16], given[16];
        const char *slash = strchr(text, '/');
        unsigned prefix;
        int family;
        if (slash == NULL || (size_t)(slash - text) >= sizeof(host))
                return false;
        memcpy(host, text, (size_t)(slash - text));
        host[slash - text] = '\0';
        if (inet_pton(AF_INET, host, bytes) == 1)
                family = AF_INET;
        else if (inet_pton(AF_INET6, host, bytes) == 1)
                family = AF_INET6;
        else
                return false;
        size_t octets = family == AF_INET ? 4 : 16;
        if (!parse_uint(slash + 1, 0, (unsigned)octets * 8, &prefix))
                return false;
        memcpy(given, bytes, octets);
        for (size_t i = 0; i < octets; i++) {
                unsigned first = (unsigned)i * 8;
                if (first >= prefix)
                        bytes[i] = 0;
                else if (first + 8 > prefix)
                        bytes[i] &= (uint8_t)(0xffu << (8 - (prefix - first)));
        }
        if (memcmp(given, bytes, octets) == 0 ||
            inet_ntop(family, bytes, shown, sizeof(shown)) == NULL)
                return false; /* no host bit was set: the text is wrong for another reason */
        char masked[INET6_ADDRSTRLEN + 8];
        snprintf(masked, sizeof(masked), "%s/%u", shown, prefix);
        vd_cidr check;
        if (vd_cidr_parse(text, &check) == 0 || vd_cidr_parse(masked, &check) != 0)
                return false;
        snprintf(out, cap, "%s", masked);
        return true;
}

/* "refuse" or "drop". */
static bool parse_deny_action(const char *text, vd_deny_action *out)
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

/* A user name or numeric id as getpwnam/getpwuid take it: printable, no blank, ':' or '/',
 * not starting with '-'. Whether the user exists is checked when it is used. */
static bool user_name_ok(const char *text)
{
        size_t len = strlen(text);
        if (len == 0 || len >= USER_MAX || text[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)text[i];
                if (c <= 0x20 || c >= 0x7f || c == ':' || c == '/')
                        return false;
        }
        return true;
}

/* ------------------------------------------------------------------------------------------ */
/* YAML file                                                                                 */

struct file_parse {
        const char *path;
        char *dir; /* directory of the config file, NULL when relative paths stay as-is */
        yaml_document_t *doc;
        vd_config values; /* private copy; only keys marked in seen[] are applied */
        bool seen[KEY_COUNT];
        size_t seen_line[KEY_COUNT];
        size_t rule_line[VD_MAX_RULES]; /* where each forward rule's domain stands */
        vd_error *err;
};

/* "'text'", "a list", "a mapping", "nothing (null)" for the got-part of a message. */
static void describe_node(const yaml_node_t *node, char *out, size_t cap)
{
        if (node == NULL) {
                snprintf(out, cap, "nothing");
                return;
        }
        switch (node->type) {
        case YAML_SEQUENCE_NODE:
                snprintf(out, cap,
                         node->data.sequence.items.start == node->data.sequence.items.top
                             ? "an empty list"
                             : "a list");
                return;
        case YAML_MAPPING_NODE:
                snprintf(out, cap, "a mapping");
                return;
        case YAML_SCALAR_NODE:
                break;
        default:
                snprintf(out, cap, "nothing");
                return;
        }
        const char *value = (const char *)node->data.scalar.value;
        size_t len = node->data.scalar.length;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            (len == 0 || strcmp(value, "~") == 0 || strcmp(value, "null") == 0 ||
             strcmp(value, "Null") == 0 || strcmp(value, "NULL") == 0)) {
                snprintf(out, cap, "nothing (null)");
                return;
        }
        char shown[80];
        size_t n = 0;
        for (size_t i = 0; i < len && n + 4 < sizeof(shown); i++) {
                unsigned char c = (unsigned char)value[i];
                shown[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
        if (n < len) {
                shown[n++] = '.';
                shown[n++] = '.';
                shown[n++] = '.';
        }
        shown[n] = '\0';
        snprintf(out, cap, "'%s'", shown);
}

static int fail_at(struct file_parse *fp, yaml_mark_t mark, const char *expected, const char *got)
{
        return vd_error_set(fp->err, "%s:%zu:%zu: expected %s, got %s", fp->path, mark.line + 1,
                            mark.column + 1, expected, got);
}

static int fail_node(struct file_parse *fp, const yaml_node_t *node, const char *expected)
{
        char got[128];
        describe_node(node, got, sizeof(got));
        return fail_at(fp, node->start_mark, expected, got);
}

/* A non-null scalar without NUL bytes, or NULL. */
static const char *scalar_text(const yaml_node_t *node)
{
        if (node == NULL || node->type != YAML_SCALAR_NODE)
                return NULL;
        const char *value = (const char *)node->data.scalar.value;
        size_t len = node->data.scalar.length;
        if (strlen(value) != len)
                return NULL;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            (len == 0 || strcmp(value, "~") == 0 || strcmp(value, "null") == 0 ||
             strcmp(value, "Null") == 0 || strcmp(value, "NULL") == 0))
                return NULL;
        return value;
}

/* Path from the file, relative to the config file's directory unless absolute. */
static char *resolve_path(const struct file_parse *fp, const char *text)
{
        if (text[0] == '/' || fp->dir == NULL)
                return strdup(text);
        size_t a = strlen(fp->dir), b = strlen(text);
        char *out = malloc(a + 1 + b + 1);
        if (out == NULL)
                return NULL;
        memcpy(out, fp->dir, a);
        out[a] = '/';
        memcpy(out + a + 1, text, b + 1);
        return out;
}

/* One list item (or the single scalar) of a list key. */
static int parse_list_item(struct file_parse *fp, enum key_id id, const yaml_node_t *item)
{
        const struct key_def *def = &keys[id];
        const char *text = scalar_text(item);
        if (def->kind == KIND_CIDRS) {
                vd_cidr cidr;
                char hint[256];
                if (text == NULL || vd_cidr_parse(text, &cidr) != 0) {
                        char got[128], suggestion[INET6_ADDRSTRLEN + 8];
                        if (text == NULL || !cidr_hint(text, suggestion, sizeof(suggestion)))
                                return fail_node(fp, item, CIDR_EXPECTED);
                        describe_node(item, got, sizeof(got));
                        snprintf(hint, sizeof(hint), "%s (host bits set: did you mean %s?)", got,
                                 suggestion);
                        return fail_at(fp, item->start_mark,
                                       CIDR_EXPECTED " with the host bits zero", hint);
                }
                if (fp->values.n_allow >= VD_MAX_ACL) {
                        char expected[64];
                        snprintf(expected, sizeof(expected), "at most %d allow prefixes",
                                 VD_MAX_ACL);
                        return fail_node(fp, item, expected);
                }
                fp->values.allow[fp->values.n_allow++] = cidr;
                return 0;
        }
        if (def->kind == KIND_ADDRS) {
                const char *what = id == KEY_LISTEN
                                       ? "a listen address ADDR:PORT (127.0.0.1:53, [::1]:53)"
                                       : "an upstream address ADDR[:PORT] (192.0.2.1, "
                                         "[2001:db8::1]:53)";
                size_t *n, cap;
                vd_addr *list = addr_field(&fp->values, id, &n, &cap);
                vd_addr addr;
                if (text == NULL || vd_addr_parse(text, DEFAULT_PORT, &addr) != 0)
                        return fail_node(fp, item, what);
                if (*n >= cap) {
                        char expected[64];
                        snprintf(expected, sizeof(expected), "at most %zu %s addresses", cap,
                                 def->name);
                        return fail_node(fp, item, expected);
                }
                list[(*n)++] = addr;
                return 0;
        }
        size_t *n;
        char **list = path_field(&fp->values, id, &n);
        if (text == NULL || text[0] == '\0')
                return fail_node(fp, item,
                                 id == KEY_SNAPSHOT ? "a snapshot directory path"
                                                    : "a zone file path");
        if (*n >= VD_MAX_SOURCES) {
                char expected[64];
                snprintf(expected, sizeof(expected), "at most %d %s entries", VD_MAX_SOURCES,
                         def->name);
                return fail_node(fp, item, expected);
        }
        char *path = resolve_path(fp, text);
        if (path == NULL) {
                vd_error_set(fp->err, "%s: out of memory", fp->path);
                return -ENOMEM;
        }
        list[(*n)++] = path;
        return 0;
}

/* YAML booleans as people write them: true/false in any of the usual capitalisations. */
static bool parse_bool(const char *text, bool *out)
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

#define RULE_EXPECTED "a rule {domain: NAME, servers: [ADDR[:PORT], ...] or default}"
#define SERVERS_EXPECTED "a server address ADDR[:PORT] (10.0.0.2, [fd00::2]:53)"

/* The servers of one rule: a list of addresses, one address, or the word default. */
static int parse_rule_servers(struct file_parse *fp, vd_config_rule *rule, const yaml_node_t *node)
{
        const char *text = scalar_text(node);
        vd_addr addr;
        if (text != NULL && strcmp(text, "default") == 0) {
                rule->use_default = true;
                return 0;
        }
        if (node->type == YAML_SCALAR_NODE) {
                if (text == NULL || vd_addr_parse(text, DEFAULT_PORT, &addr) != 0)
                        return fail_node(fp, node,
                                         "a list of server addresses or default for 'servers'");
                rule->servers[rule->n_servers++] = addr;
                return 0;
        }
        if (node->type != YAML_SEQUENCE_NODE ||
            node->data.sequence.items.start == node->data.sequence.items.top)
                return fail_node(fp, node,
                                 "a list of server addresses or default for 'servers' (at least "
                                 "one address)");
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
                const yaml_node_t *item = yaml_document_get_node(fp->doc, *it);
                text = scalar_text(item);
                if (text == NULL || vd_addr_parse(text, DEFAULT_PORT, &addr) != 0)
                        return fail_node(fp, item, SERVERS_EXPECTED);
                if (rule->n_servers >= VD_MAX_UPSTREAM) {
                        char expected[64];
                        snprintf(expected, sizeof(expected), "at most %d servers per rule",
                                 VD_MAX_UPSTREAM);
                        return fail_node(fp, item, expected);
                }
                rule->servers[rule->n_servers++] = addr;
        }
        return 0;
}

/* The domain of one rule: a name without wildcard, kept as lower-case text with a final dot.
 * A domain given by an earlier rule is an error. */
static int parse_rule_domain(struct file_parse *fp, vd_config_rule *rule, const yaml_node_t *node)
{
        const char *text = scalar_text(node);
        uint8_t wire[VD_NAME_MAX], other[VD_NAME_MAX];
        size_t len, other_len;
        char canonical[VD_NAME_MAX * 4 + 2];
        if (text == NULL || strchr(text, '*') != NULL || vd_name_from_text(text, wire, &len) != 0 ||
            vd_name_to_text(wire, canonical, sizeof(canonical)) != 0)
                return fail_node(fp, node, "a domain name for 'domain' (corp.example)");
        for (size_t i = 0; i < fp->values.n_rules; i++) {
                if (vd_name_from_text(fp->values.rules[i].domain, other, &other_len) == 0 &&
                    other_len == len && memcmp(other, wire, len) == 0) {
                        char expected[VD_NAME_MAX * 4 + 96], got[VD_NAME_MAX * 4 + 16];
                        snprintf(expected, sizeof(expected),
                                 "each domain once in 'forward' (%s is at line %zu)", canonical,
                                 fp->rule_line[i]);
                        snprintf(got, sizeof(got), "'%s' again", text);
                        return fail_at(fp, node->start_mark, expected, got);
                }
        }
        rule->domain = strdup(canonical);
        if (rule->domain == NULL) {
                vd_error_set(fp->err, "%s: out of memory", fp->path);
                return -ENOMEM;
        }
        return 0;
}

/* One item of forward: a mapping with exactly the keys domain and servers. */
static int parse_rule(struct file_parse *fp, const yaml_node_t *node)
{
        vd_config_rule rule;
        const yaml_node_t *domain = NULL, *servers = NULL;
        int rc;
        if (node->type != YAML_MAPPING_NODE)
                return fail_node(fp, node, RULE_EXPECTED);
        if (fp->values.n_rules >= VD_MAX_RULES) {
                char expected[64];
                snprintf(expected, sizeof(expected), "at most %d forward rules", VD_MAX_RULES);
                return fail_node(fp, node, expected);
        }
        for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const yaml_node_t *value = yaml_document_get_node(fp->doc, pair->value);
                const char *name = scalar_text(key);
                const yaml_node_t **slot = NULL;
                if (name != NULL && strcmp(name, "domain") == 0)
                        slot = &domain;
                else if (name != NULL && strcmp(name, "servers") == 0)
                        slot = &servers;
                if (slot == NULL)
                        return fail_node(fp, key, "domain or servers in a forward rule");
                if (*slot != NULL) {
                        char got[64];
                        snprintf(got, sizeof(got), "'%s' again", name);
                        return fail_at(fp, key->start_mark, "each key of a forward rule once", got);
                }
                *slot = value;
        }
        if (domain == NULL || servers == NULL)
                return fail_at(fp, node->start_mark, RULE_EXPECTED,
                               domain == NULL ? "a rule without 'domain'"
                                              : "a rule without 'servers'");
        memset(&rule, 0, sizeof(rule));
        rc = parse_rule_servers(fp, &rule, servers);
        if (rc != 0)
                return rc;
        rc = parse_rule_domain(fp, &rule, domain);
        if (rc != 0)
                return rc;
        fp->rule_line[fp->values.n_rules] = domain->start_mark.line + 1;
        fp->values.rules[fp->values.n_rules++] = rule;
        return 0;
}

static int parse_rules(struct file_parse *fp, const yaml_node_t *value)
{
        if (value->type == YAML_MAPPING_NODE)
                return parse_rule(fp, value);
        if (value->type != YAML_SEQUENCE_NODE)
                return fail_node(fp, value,
                                 "a list of forward rules {domain: NAME, servers: "
                                 "[ADDR[:PORT], ...] or default}");
        for (yaml_node_item_t *it = value->data.sequence.items.start;
             it < value->data.sequence.items.top; it++) {
                int rc = parse_rule(fp, yaml_document_get_node(fp->doc, *it));
                if (rc != 0)
                        return rc;
        }
        return 0;
}

static int parse_value(struct file_parse *fp, enum key_id id, const yaml_node_t *value)
{
        const struct key_def *def = &keys[id];
        char expected[96];
        switch (def->kind) {
        case KIND_ADDRS:
        case KIND_PATHS:
        case KIND_CIDRS: {
                /* fp->values starts empty and a key is accepted once: no reset needed. */
                if (value->type == YAML_SCALAR_NODE)
                        return parse_list_item(fp, id, value);
                if (value->type != YAML_SEQUENCE_NODE) {
                        snprintf(expected, sizeof(expected), "a list of %s for '%s'",
                                 def->kind == KIND_ADDRS   ? "addresses"
                                 : def->kind == KIND_CIDRS ? "address prefixes"
                                                           : "paths",
                                 def->name);
                        return fail_node(fp, value, expected);
                }
                yaml_node_item_t *it = value->data.sequence.items.start;
                if (it == value->data.sequence.items.top && def->kind == KIND_CIDRS)
                        return fail_node(fp, value,
                                         "at least one prefix for 'allow' (an empty list would "
                                         "refuse every client; omit the key for the default)");
                if (it == value->data.sequence.items.top && def->kind == KIND_ADDRS) {
                        snprintf(expected, sizeof(expected),
                                 "at least one address for '%s' (omit the key for the default)",
                                 def->name);
                        return fail_node(fp, value, expected);
                }
                for (; it < value->data.sequence.items.top; it++) {
                        int rc = parse_list_item(fp, id, yaml_document_get_node(fp->doc, *it));
                        if (rc != 0)
                                return rc;
                }
                return 0;
        }
        case KIND_LEVEL: {
                const char *text = scalar_text(value);
                if (text == NULL || vd_log_level_parse(text, &fp->values.log_level) != 0)
                        return fail_node(fp, value, "a log level (error, warn, info, debug)");
                return 0;
        }
        case KIND_UINT: {
                const char *text = scalar_text(value);
                unsigned number;
                if (text == NULL || value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !parse_uint(text, def->min, def->max, &number)) {
                        snprintf(expected, sizeof(expected), "an integer from %u to %u for '%s'",
                                 def->min, def->max, def->name);
                        return fail_node(fp, value, expected);
                }
                *uint_field(&fp->values, id) = number;
                return 0;
        }
        case KIND_DENY: {
                const char *text = scalar_text(value);
                if (text == NULL || !parse_deny_action(text, &fp->values.deny_action))
                        return fail_node(fp, value, "refuse or drop for 'deny_action'");
                return 0;
        }
        case KIND_BOOL: {
                const char *text = scalar_text(value);
                char expected_bool[64];
                if (text == NULL || value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !parse_bool(text, bool_field(&fp->values, id))) {
                        snprintf(expected_bool, sizeof(expected_bool), "true or false for '%s'",
                                 def->name);
                        return fail_node(fp, value, expected_bool);
                }
                return 0;
        }
        case KIND_RULES:
                return parse_rules(fp, value);
        case KIND_USER: {
                const char *text = scalar_text(value);
                if (text == NULL || !user_name_ok(text))
                        return fail_node(fp, value, "a user name for 'user' (vpcdns, nobody)");
                fp->values.user = strdup(text);
                if (fp->values.user == NULL) {
                        vd_error_set(fp->err, "%s: out of memory", fp->path);
                        return -ENOMEM;
                }
                return 0;
        }
        }
        return -EINVAL;
}

static int parse_root(struct file_parse *fp, const yaml_node_t *root)
{
        if (root == NULL)
                return 0; /* empty file */
        if (root->type == YAML_SCALAR_NODE && scalar_text(root) == NULL &&
            strlen((const char *)root->data.scalar.value) == root->data.scalar.length)
                return 0; /* "---" or "~" alone: nothing configured */
        if (root->type != YAML_MAPPING_NODE)
                return fail_node(fp, root, "a mapping of settings (key: value)");

        for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
             pair < root->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const yaml_node_t *value = yaml_document_get_node(fp->doc, pair->value);
                const char *name = scalar_text(key);
                int id = -1;
                for (int i = 0; name != NULL && i < KEY_COUNT; i++) {
                        if (strcmp(name, keys[i].name) == 0)
                                id = i;
                }
                if (id < 0) {
                        char expected[800];
                        size_t len = (size_t)snprintf(expected, sizeof(expected), "one of");
                        for (int i = 0; i < KEY_COUNT && len < sizeof(expected); i++)
                                len += (size_t)snprintf(expected + len, sizeof(expected) - len,
                                                        "%s %s", i > 0 ? "," : "", keys[i].name);
                        return fail_node(fp, key, expected);
                }
                if (fp->seen[id]) {
                        char expected[96], got[96];
                        snprintf(expected, sizeof(expected), "each key once ('%s' is at line %zu)",
                                 keys[id].name, fp->seen_line[id]);
                        snprintf(got, sizeof(got), "'%s' again", keys[id].name);
                        return fail_at(fp, key->start_mark, expected, got);
                }
                fp->seen[id] = true;
                fp->seen_line[id] = key->start_mark.line + 1;
                int rc = parse_value(fp, (enum key_id)id, value);
                if (rc != 0)
                        return rc;
        }
        return 0;
}

/* libyaml reports reader errors (bad UTF-8) by byte offset only: count lines up to it. */
static yaml_mark_t mark_of_offset(FILE *f, size_t offset)
{
        yaml_mark_t mark = {0, 0, 0};
        if (fseek(f, 0, SEEK_SET) != 0)
                return mark;
        for (size_t i = 0; i < offset; i++) {
                int c = fgetc(f);
                if (c == EOF)
                        break;
                if (c == '\n') {
                        mark.line++;
                        mark.column = 0;
                } else if ((c & 0xC0) != 0x80) { /* count characters, not UTF-8 octets */
                        mark.column++;
                }
        }
        mark.index = offset;
        return mark;
}

static int syntax_error(struct file_parse *fp, const yaml_parser_t *parser, FILE *f)
{
        char got[512];
        const char *problem = parser->problem != NULL ? parser->problem : "unreadable input";
        yaml_mark_t mark = parser->problem_mark;
        if (parser->error == YAML_READER_ERROR) {
                mark = mark_of_offset(f, parser->problem_offset);
                snprintf(got, sizeof(got), "unreadable text (%s)", problem);
        } else if (parser->context != NULL) {
                snprintf(got, sizeof(got), "a syntax error (%s %s at line %zu)", problem,
                         parser->context, parser->context_mark.line + 1);
        } else {
                snprintf(got, sizeof(got), "a syntax error (%s)", problem);
        }
        return fail_at(fp, mark, "valid YAML", got);
}

/* Moves every key the file set from fp->values into cfg. Cannot fail. */
static void apply_file(vd_config *cfg, struct file_parse *fp)
{
        vd_config *v = &fp->values;
        if (fp->seen[KEY_LISTEN]) {
                memcpy(cfg->listen, v->listen, sizeof(cfg->listen));
                cfg->n_listen = v->n_listen;
        }
        if (fp->seen[KEY_UPSTREAM]) {
                memcpy(cfg->upstream, v->upstream, sizeof(cfg->upstream));
                cfg->n_upstream = v->n_upstream;
        }
        if (fp->seen[KEY_SNAPSHOT]) {
                free_strings(cfg->snapshot_dirs, &cfg->n_snapshots);
                memcpy(cfg->snapshot_dirs, v->snapshot_dirs, sizeof(cfg->snapshot_dirs));
                cfg->n_snapshots = v->n_snapshots;
                v->n_snapshots = 0;
        }
        if (fp->seen[KEY_ZONE]) {
                free_strings(cfg->zone_files, &cfg->n_zones);
                memcpy(cfg->zone_files, v->zone_files, sizeof(cfg->zone_files));
                cfg->n_zones = v->n_zones;
                v->n_zones = 0;
        }
        if (fp->seen[KEY_LOG_LEVEL])
                cfg->log_level = v->log_level;
        if (fp->seen[KEY_ALLOW]) {
                memcpy(cfg->allow, v->allow, sizeof(cfg->allow));
                cfg->n_allow = v->n_allow;
        }
        if (fp->seen[KEY_DENY_ACTION])
                cfg->deny_action = v->deny_action;
        if (fp->seen[KEY_USER]) {
                free(cfg->user);
                cfg->user = v->user;
                v->user = NULL;
        }
        if (fp->seen[KEY_FORWARD]) {
                free_rules(cfg->rules, &cfg->n_rules);
                memcpy(cfg->rules, v->rules, sizeof(cfg->rules));
                cfg->n_rules = v->n_rules;
                v->n_rules = 0;
        }
        for (int id = 0; id < KEY_COUNT; id++) {
                if (fp->seen[id] && keys[id].kind == KIND_UINT)
                        *uint_field(cfg, (enum key_id)id) = *uint_field(v, (enum key_id)id);
                if (fp->seen[id] && keys[id].kind == KIND_BOOL)
                        *bool_field(cfg, (enum key_id)id) = *bool_field(v, (enum key_id)id);
        }
}

int vd_config_load_file(vd_config *cfg, const char *path, vd_error *err)
{
        struct file_parse fp;
        yaml_parser_t parser;
        yaml_document_t doc;
        bool parser_ready = false, doc_ready = false;
        char *config_path = NULL;
        FILE *f = NULL;
        int rc;

        memset(&fp, 0, sizeof(fp));
        vd_config_init(&fp.values);
        fp.path = path;
        fp.err = err;
        fp.doc = &doc;

        f = fopen(path, "rb");
        if (f == NULL) {
                rc = -errno;
                vd_error_set(err, "%s: cannot open config file: %s", path, strerror(errno));
                goto out;
        }
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
                rc = vd_error_set(err, "%s: expected a config file, got a directory", path);
                goto out;
        }
        const char *slash = strrchr(path, '/');
        if (slash != NULL) {
                size_t dlen = slash == path ? 1 : (size_t)(slash - path);
                fp.dir = strndup(path, dlen);
                config_path = strdup(path);
                if (fp.dir == NULL || config_path == NULL) {
                        rc = -ENOMEM;
                        vd_error_set(err, "%s: out of memory", path);
                        goto out;
                }
                if (strcmp(fp.dir, "/") == 0)
                        fp.dir[0] = '\0'; /* "/" + "/" + name would double the slash */
        } else {
                config_path = strdup(path);
                if (config_path == NULL) {
                        rc = -ENOMEM;
                        vd_error_set(err, "%s: out of memory", path);
                        goto out;
                }
        }

        if (!yaml_parser_initialize(&parser)) {
                rc = -ENOMEM;
                vd_error_set(err, "%s: out of memory", path);
                goto out;
        }
        parser_ready = true;
        yaml_parser_set_input_file(&parser, f);
        if (!yaml_parser_load(&parser, &doc)) {
                rc = syntax_error(&fp, &parser, f);
                goto out;
        }
        doc_ready = true;
        rc = parse_root(&fp, yaml_document_get_root_node(&doc));
        if (rc != 0)
                goto out;

        /* A second document in the same file is not ours to guess at. */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
                rc = syntax_error(&fp, &parser, f);
                goto out;
        }
        yaml_node_t *extra = yaml_document_get_root_node(&next);
        if (extra != NULL) {
                yaml_mark_t mark = extra->start_mark;
                yaml_document_delete(&next);
                rc = fail_at(&fp, mark, "a single YAML document", "a second document");
                goto out;
        }
        yaml_document_delete(&next);

        apply_file(cfg, &fp);
        free(cfg->config_path);
        cfg->config_path = config_path;
        config_path = NULL;
        rc = 0;
out:
        if (doc_ready)
                yaml_document_delete(&doc);
        if (parser_ready)
                yaml_parser_delete(&parser);
        if (f != NULL)
                fclose(f);
        free(fp.dir);
        free(config_path);
        vd_config_free(&fp.values);
        return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Command line                                                                              */

enum flag_id {
        FLAG_CONFIG = 256,
        FLAG_LISTEN,
        FLAG_UPSTREAM,
        FLAG_SNAPSHOT,
        FLAG_ZONE,
        FLAG_CHECK,
        FLAG_DUMP,
        FLAG_LOG_LEVEL,
        FLAG_WORKERS,
        FLAG_ALLOW,
        FLAG_USER,
        FLAG_VERSION,
        FLAG_HELP,
};

static const struct option long_options[] = {
    {"config", required_argument, NULL, FLAG_CONFIG},
    {"listen", required_argument, NULL, FLAG_LISTEN},
    {"upstream", required_argument, NULL, FLAG_UPSTREAM},
    {"snapshot", required_argument, NULL, FLAG_SNAPSHOT},
    {"zone", required_argument, NULL, FLAG_ZONE},
    {"check", no_argument, NULL, FLAG_CHECK},
    {"dump", no_argument, NULL, FLAG_DUMP},
    {"log-level", required_argument, NULL, FLAG_LOG_LEVEL},
    {"workers", required_argument, NULL, FLAG_WORKERS},
    {"allow", required_argument, NULL, FLAG_ALLOW},
    {"user", required_argument, NULL, FLAG_USER},
    {"version", no_argument, NULL, FLAG_VERSION},
    {"help", no_argument, NULL, FLAG_HELP},
    {NULL, 0, NULL, 0},
};

static const char *flag_name(int val)
{
        for (const struct option *o = long_options; o->name != NULL; o++) {
                if (o->val == val)
                        return o->name;
        }
        return "?";
}

/* One getopt_long step with our error reporting. Returns the flag, -1 at the end, or -2 on a
 * usage error (err set). */
static int next_flag(int argc, char **argv, vd_error *err)
{
        int index = -1;
        int c = getopt_long(argc, argv, ":", long_options, &index);
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
                if (vd_addr_parse(arg, DEFAULT_PORT, &addr) != 0)
                        return vd_error_set(err, "--%s: expected %s, got '%s'", flag_name(flag),
                                            listen ? "ADDR:PORT (127.0.0.1:53, [::1]:53)"
                                                   : "ADDR[:PORT] (192.0.2.1, [2001:db8::1]:53)",
                                            arg);
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
        case FLAG_ZONE: {
                bool snap = flag == FLAG_SNAPSHOT;
                char **list = snap ? cfg->snapshot_dirs : cfg->zone_files;
                size_t *n = snap ? &cfg->n_snapshots : &cfg->n_zones;
                if (arg[0] == '\0')
                        return vd_error_set(err, "--%s: expected a %s, got ''", flag_name(flag),
                                            snap ? "directory" : "file");
                if (!replaced[flag - FLAG_CONFIG]) {
                        free_strings(list, n);
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
        case FLAG_WORKERS:
                if (!parse_uint(arg, keys[KEY_WORKERS].min, keys[KEY_WORKERS].max, &cfg->workers))
                        return vd_error_set(err,
                                            "--workers: expected an integer from %u to %u, got "
                                            "'%s'",
                                            keys[KEY_WORKERS].min, keys[KEY_WORKERS].max, arg);
                return 0;
        case FLAG_ALLOW: {
                vd_cidr cidr;
                if (vd_cidr_parse(arg, &cidr) != 0) {
                        char hint[INET6_ADDRSTRLEN + 8];
                        if (cidr_hint(arg, hint, sizeof(hint)))
                                return vd_error_set(err,
                                                    "--allow: expected " CIDR_EXPECTED
                                                    " with the host bits zero, got '%s' (did "
                                                    "you mean %s?)",
                                                    arg, hint);
                        return vd_error_set(err, "--allow: expected " CIDR_EXPECTED ", got '%s'",
                                            arg);
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
                if (!user_name_ok(arg))
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
        case FLAG_CHECK:
                cfg->check = true;
                return 0;
        case FLAG_DUMP:
                cfg->dump = true;
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
        bool replaced[FLAG_HELP - FLAG_CONFIG + 1] = {false};
        int rc, c;

        if (config_copy(&tmp, cfg) != 0) {
                vd_error_set(err, "out of memory");
                return -ENOMEM;
        }

        /* Pass 1: syntax of every flag, and where the config file is. */
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

        vd_config_free(cfg);
        *cfg = tmp;
        return 0;
out:
        vd_config_free(&tmp);
        return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Defaults from the system, and the final validation                                        */

/* Appends the nameservers of a resolv.conf (port 53) to cfg->upstream, skipping duplicates and
 * our own listen addresses. A missing file means no upstream. */
static void read_resolv_conf(vd_config *cfg, const char *path)
{
        FILE *f = fopen(path, "r");
        if (f == NULL)
                return;
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0 && cfg->n_upstream < VD_MAX_UPSTREAM) {
                char *save = NULL;
                char *hash = strpbrk(line, "#;");
                if (hash != NULL)
                        *hash = '\0';
                char *word = strtok_r(line, " \t\r\n", &save);
                if (word == NULL || strcmp(word, "nameserver") != 0)
                        continue;
                char *text = strtok_r(NULL, " \t\r\n", &save);
                if (text == NULL || text[0] == '[') /* resolv.conf has no brackets or ports */
                        continue;
                vd_addr addr;
                bool v6 = strchr(text, ':') != NULL;
                if (!v6 && strchr(text, '%') != NULL)
                        continue;
                if (!v6 && !parse_ipv4(text, DEFAULT_PORT, &addr))
                        continue;
                if (v6 && !parse_ipv6(text, DEFAULT_PORT, &addr)) {
                        /* An unknown interface after '%': a link-local address is useless
                         * without it; any other address works without the suffix. */
                        char *pct = strchr(text, '%');
                        if (pct == NULL)
                                continue;
                        *pct = '\0';
                        if (!parse_ipv6(text, DEFAULT_PORT, &addr))
                                continue;
                        if (IN6_IS_ADDR_LINKLOCAL(
                                &((const struct sockaddr_in6 *)&addr.ss)->sin6_addr))
                                continue;
                }
                if (is_own_address(&addr, cfg->listen, cfg->n_listen))
                        continue;
                bool dup = false;
                for (size_t i = 0; i < cfg->n_upstream; i++)
                        dup = dup || vd_addr_equal(&addr, &cfg->upstream[i]);
                if (!dup)
                        cfg->upstream[cfg->n_upstream++] = addr;
        }
        free(line);
        fclose(f);
}

int vd_config_finalize(vd_config *cfg, const char *resolv_conf, vd_error *err)
{
        char a[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
        if (cfg->cache_min_ttl > cfg->cache_max_ttl)
                return vd_error_set(err, "cache_min_ttl (%u) is above cache_max_ttl (%u)",
                                    cfg->cache_min_ttl, cfg->cache_max_ttl);
        if (cfg->n_listen == 0) {
                vd_addr_parse("127.0.0.1", DEFAULT_PORT, &cfg->listen[0]);
                vd_addr_parse("::1", DEFAULT_PORT, &cfg->listen[1]);
                cfg->n_listen = 2;
        }
        for (size_t i = 0; i < cfg->n_listen; i++) {
                for (size_t j = 0; j < i; j++) {
                        if (vd_addr_equal(&cfg->listen[i], &cfg->listen[j])) {
                                vd_addr_format(&cfg->listen[i], a, sizeof(a));
                                return vd_error_set(err, "listen address %s is given twice", a);
                        }
                }
        }
        if (cfg->n_upstream == 0) {
                if (resolv_conf != NULL)
                        read_resolv_conf(cfg, resolv_conf);
        } else {
                for (size_t i = 0; i < cfg->n_upstream; i++) {
                        if (is_own_address(&cfg->upstream[i], cfg->listen, cfg->n_listen)) {
                                vd_addr_format(&cfg->upstream[i], a, sizeof(a));
                                return vd_error_set(err,
                                                    "upstream %s is one of our own listen "
                                                    "addresses: queries would loop",
                                                    a);
                        }
                }
        }
        if (cfg->n_rules > VD_MAX_RULES)
                return vd_error_set(err, "forward: expected at most %d rules", VD_MAX_RULES);
        for (size_t i = 0; i < cfg->n_rules; i++) {
                const vd_config_rule *rule = &cfg->rules[i];
                uint8_t wire[VD_NAME_MAX];
                size_t wire_len;
                if (rule->domain == NULL || vd_name_from_text(rule->domain, wire, &wire_len) != 0)
                        return vd_error_set(err, "forward: rule %zu: expected a domain name",
                                            i + 1);
                if (!rule->use_default && rule->n_servers == 0)
                        return vd_error_set(err,
                                            "forward: rule for %s: expected at least one server "
                                            "or default",
                                            rule->domain);
                for (size_t j = 0; j < rule->n_servers; j++) {
                        if (is_own_address(&rule->servers[j], cfg->listen, cfg->n_listen)) {
                                vd_addr_format(&rule->servers[j], a, sizeof(a));
                                return vd_error_set(err,
                                                    "forward: rule for %s: server %s is one of "
                                                    "our own listen addresses: queries would loop",
                                                    rule->domain, a);
                        }
                }
        }
        if (cfg->n_allow == 0)
                cfg->n_allow = vd_acl_defaults(cfg->allow, VD_MAX_ACL);
        if (cfg->n_allow > VD_MAX_ACL)
                return vd_error_set(err, "allow: expected at most %d prefixes", VD_MAX_ACL);
        if (cfg->deny_action != VD_DENY_REFUSE && cfg->deny_action != VD_DENY_DROP)
                return vd_error_set(err, "deny_action: expected refuse or drop");
        if (cfg->user != NULL && !user_name_ok(cfg->user))
                return vd_error_set(err, "user: expected a user name, got '%s'", cfg->user);
        for (int id = 0; id < KEY_COUNT; id++) {
                if (keys[id].kind != KIND_UINT)
                        continue;
                unsigned v = *uint_field(cfg, (enum key_id)id);
                if (v < keys[id].min || v > keys[id].max)
                        return vd_error_set(err, "%s: expected an integer from %u to %u, got %u",
                                            keys[id].name, keys[id].min, keys[id].max, v);
        }
        if ((int)cfg->log_level < VD_LOG_ERROR || cfg->log_level > VD_LOG_DEBUG)
                return vd_error_set(err, "log_level: expected error, warn, info or debug");
        return 0;
}

const char *vd_config_usage(void)
{
        return "Usage: vpcdns [--config FILE] [--listen ADDR:PORT]... [--upstream ADDR[:PORT]]...\n"
               "              [--snapshot DIR]... [--zone FILE]... [--check] [--dump]\n"
               "              [--log-level LEVEL] [--workers N] [--allow CIDR]... [--user USER]\n"
               "              [--version] [--help]\n"
               "\n"
               "Answers AWS PrivateLink endpoint names from an AWS CLI snapshot and zone files;\n"
               "forwards every other name upstream.\n"
               "\n"
               "  --config FILE        YAML config file, read first; flags override its values\n"
               "  --listen ADDR:PORT   address to serve on, UDP and TCP (repeatable;\n"
               "                       default 127.0.0.1:53 and [::1]:53)\n"
               "  --upstream ADDR[:PORT]  server for names we do not hold (repeatable; port 53;\n"
               "                       default: nameservers of /etc/resolv.conf except our own)\n"
               "  --snapshot DIR       directory with describe-vpc-endpoints.json and\n"
               "                       describe-network-interfaces.json (repeatable)\n"
               "  --zone FILE          RFC 1035 zone file served as a private zone (repeatable)\n"
               "  --check              load and validate everything, print a summary, exit\n"
               "  --dump               print every local record as zone-file text, exit\n"
               "  --log-level LEVEL    error, warn, info or debug (default info)\n"
               "  --workers N          event-loop threads, 1 to 64 (default: the CPUs it may use)\n"
               "  --allow CIDR         clients that may query, e.g. 10.0.0.0/8 (repeatable;\n"
               "                       default loopback, RFC 1918, link-local, fc00::/7 and\n"
               "                       100.64.0.0/10); others get REFUSED (deny_action: drop)\n"
               "  --user USER          after binding, drop root privileges to this user\n"
               "  --version            print the version and exit\n"
               "  --help               print this help and exit\n"
               "\n"
               "A list flag given once replaces the config file's list. Only the config file\n"
               "sets tcp_idle_timeout_ms (default 10000), tcp_max_connections (default 1024),\n"
               "upstream_timeout_ms (default 2000), deny_action (refuse), the response rate\n"
               "limit rrl_responses_per_second (default 0 = off), rrl_slip (2),\n"
               "rrl_ipv4_prefix (24), rrl_ipv6_prefix (56), tcp_max_connections_per_client\n"
               "(64), tcp_max_queries_per_connection (0 = unlimited) and\n"
               "max_pending_per_client (100), and the cache: cache_size (100000 entries;\n"
               "0 = off), cache_min_ttl (0), cache_max_ttl (86400), cache_max_negative_ttl\n"
               "(3600) and cache_servfail_ttl (5), forwarding rules (forward), the upstream\n"
               "budget upstream_max_qps (0 = off), upstream_ports (16), upstream_0x20\n"
               "(false), serve-stale stale_max (3600 s) and stale_answer_ms (1800), and\n"
               "prefetch (true); see zones/example/vpcdns.yaml.\n";
}

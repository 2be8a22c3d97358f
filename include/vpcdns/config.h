/* config.h — settings from the YAML config file and the command line, validated.
 * Parse → validate → apply: a bad file or flag is rejected whole with a message naming the
 * file, line and the expected value; nothing is half-applied. */
#ifndef VPCDNS_CONFIG_H
#define VPCDNS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "vpcdns/common.h"
#include "vpcdns/log.h"

#define VD_MAX_LISTEN 16
#define VD_MAX_UPSTREAM 8
#define VD_MAX_SOURCES 64

typedef struct vd_addr {
        struct sockaddr_storage ss;
        socklen_t len;
} vd_addr;

typedef struct vd_config {
        vd_addr listen[VD_MAX_LISTEN];
        size_t n_listen;
        vd_addr upstream[VD_MAX_UPSTREAM];
        size_t n_upstream;
        char *snapshot_dirs[VD_MAX_SOURCES]; /* owned */
        size_t n_snapshots;
        char *zone_files[VD_MAX_SOURCES]; /* owned */
        size_t n_zones;
        vd_log_level log_level;
        unsigned workers;             /* event-loop threads; default 1 */
        unsigned tcp_idle_timeout_ms; /* default 10000 */
        unsigned tcp_max_connections; /* default 1024, across all listeners of a worker */
        unsigned upstream_timeout_ms; /* total budget for one forwarded query; default 2000 */
        bool check;                   /* --check */
        bool dump;                    /* --dump */
        bool help;                    /* --help: caller prints vd_config_usage() */
        bool version;                 /* --version */
        char *config_path;            /* owned, NULL when none */
} vd_config;

/* Fills cfg with defaults (no listen or upstream yet: see vd_config_finalize). */
void vd_config_init(vd_config *cfg);
void vd_config_free(vd_config *cfg);

/* Reads a YAML file into cfg (keys: listen, upstream, snapshot, zone, log_level, workers,
 * tcp_idle_timeout_ms, tcp_max_connections, upstream_timeout_ms). Lists replace what cfg
 * held. Unknown keys and wrong types are errors naming file, line and what was expected. */
int vd_config_load_file(vd_config *cfg, const char *path, vd_error *err);

/* argv → cfg: reads --config FILE first (wherever it stands), then applies every other flag
 * on top; a list flag given at least once replaces the file's list. */
int vd_config_from_args(vd_config *cfg, int argc, char **argv, vd_error *err);

/* Fills what is still unset: listen defaults to 127.0.0.1:53 and [::1]:53; upstream to the
 * nameservers of resolv_conf (normally "/etc/resolv.conf", port 53) minus our own listen
 * addresses. Validates the whole. */
int vd_config_finalize(vd_config *cfg, const char *resolv_conf, vd_error *err);

/* "127.0.0.1", "127.0.0.1:5300", "::1", "[::1]:5300" → address; default_port when absent.
 * Returns 0 or -EINVAL. */
int vd_addr_parse(const char *text, unsigned default_port, vd_addr *out);
/* "127.0.0.1:53" / "[::1]:53"; always NUL-terminates. */
void vd_addr_format(const vd_addr *a, char *out, size_t cap);
bool vd_addr_equal(const vd_addr *a, const vd_addr *b);

/* The --help text. */
const char *vd_config_usage(void);

#endif

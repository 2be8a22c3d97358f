/* config.c — a vd_config's life: defaults from the key table, deep copy and release, and the
 * final step that fills what is still unset (listen, upstreams from resolv.conf, the default
 * allow list) and validates the whole. Reading the file (config_yaml.c), the command line
 * (config_cli.c), resolv.conf (config_resolv.c) and the CPU count (config_cpu.c) are not done
 * here; of other modules it uses addr.h, acl.h (the default allow list) and wire.h (to check
 * the domain of a forwarding rule). */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/acl.h"
#include "vpcdns/addr.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

#include "config_int.h"

void vd_config_init(vd_config *cfg)
{
        size_t n;
        const vd_config_key *keys = vd_config_keys(&n);
        memset(cfg, 0, sizeof(*cfg));
        for (size_t i = 0; i < n; i++) {
                if (keys[i].type == VD_KEY_UINT)
                        *(unsigned *)vd_cfg_field(cfg, &keys[i]) = keys[i].def;
                else if (keys[i].type == VD_KEY_BOOL)
                        *(bool *)vd_cfg_field(cfg, &keys[i]) = keys[i].def != 0;
        }
        cfg->log_level = VD_LOG_INFO;
        cfg->deny_action = VD_DENY_REFUSE;
        cfg->az_affinity = VD_AZ_AFFINITY_PREFER;
        cfg->workers = vd_default_workers();
}

void vd_cfg_free_strings(char **list, size_t *n)
{
        for (size_t i = 0; i < *n; i++) {
                free(list[i]);
                list[i] = NULL;
        }
        *n = 0;
}

void vd_cfg_free_rules(vd_config_rule *rules, size_t *n)
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
        vd_cfg_free_strings(cfg->snapshot_dirs, &cfg->n_snapshots);
        vd_cfg_free_strings(cfg->zone_files, &cfg->n_zones);
        for (size_t i = 0; i < VD_MAX_SOURCES; i++) {
                free(cfg->hosted_zone_vpcs[i]);
                cfg->hosted_zone_vpcs[i] = NULL;
        }
        vd_cfg_free_strings(cfg->hosted_zone_files, &cfg->n_hosted_zones);
        vd_cfg_free_rules(cfg->rules, &cfg->n_rules);
        free(cfg->config_path);
        cfg->config_path = NULL;
        free(cfg->user);
        cfg->user = NULL;
        free(cfg->state_dir);
        cfg->state_dir = NULL;
}

int vd_cfg_copy(vd_config *dst, const vd_config *src)
{
        *dst = *src;
        dst->n_snapshots = 0;
        dst->n_zones = 0;
        dst->n_hosted_zones = 0;
        memset(dst->hosted_zone_vpcs, 0, sizeof(dst->hosted_zone_vpcs));
        dst->n_rules = 0;
        dst->config_path = NULL;
        dst->user = NULL;
        dst->state_dir = NULL;
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
        for (size_t i = 0; i < src->n_hosted_zones; i++) {
                dst->hosted_zone_files[i] = strdup(src->hosted_zone_files[i]);
                if (dst->hosted_zone_files[i] == NULL)
                        goto fail;
                dst->n_hosted_zones++;
                if (src->hosted_zone_vpcs[i] != NULL &&
                    (dst->hosted_zone_vpcs[i] = strdup(src->hosted_zone_vpcs[i])) == NULL)
                        goto fail;
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
        if (src->state_dir != NULL) {
                dst->state_dir = strdup(src->state_dir);
                if (dst->state_dir == NULL)
                        goto fail;
        }
        return 0;
fail:
        vd_config_free(dst);
        return -ENOMEM;
}

int vd_config_finalize(vd_config *cfg, const char *resolv_conf, vd_error *err)
{
        char a[INET6_ADDRSTRLEN + IF_NAMESIZE + 16];
        if (cfg->cache_min_ttl > cfg->cache_max_ttl)
                return vd_error_set(err, "cache_min_ttl (%u) is above cache_max_ttl (%u)",
                                    cfg->cache_min_ttl, cfg->cache_max_ttl);
        if (cfg->n_listen == 0) {
                vd_addr_parse("127.0.0.1", VD_CFG_DEFAULT_PORT, &cfg->listen[0]);
                vd_addr_parse("::1", VD_CFG_DEFAULT_PORT, &cfg->listen[1]);
                cfg->n_listen = 2;
                cfg->listen_default = true;
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
                        vd_cfg_read_resolv_conf(cfg, resolv_conf);
        } else {
                for (size_t i = 0; i < cfg->n_upstream; i++) {
                        if (vd_addr_is_own(&cfg->upstream[i], cfg->listen, cfg->n_listen)) {
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
                        if (vd_addr_is_own(&rule->servers[j], cfg->listen, cfg->n_listen)) {
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
        if (cfg->user != NULL && !vd_cfg_user_ok(cfg->user))
                return vd_error_set(err, "user: expected a user name, got '%s'", cfg->user);
        size_t n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
        for (size_t i = 0; i < n_keys; i++) {
                if (keys[i].type != VD_KEY_UINT)
                        continue;
                unsigned v = *(const unsigned *)vd_cfg_field(cfg, &keys[i]);
                if (v < keys[i].min || v > keys[i].max)
                        return vd_error_set(err, "%s: expected an integer from %u to %u, got %u",
                                            keys[i].name, keys[i].min, keys[i].max, v);
        }
        if (cfg->vpc[0] != '\0' && cfg->n_views > 0)
                return vd_error_set(err,
                                    "vpc (%s) and views: expected one of them: each view names "
                                    "its own VPC",
                                    cfg->vpc);
        if ((int)cfg->log_level < VD_LOG_ERROR || cfg->log_level > VD_LOG_DEBUG)
                return vd_error_set(err, "log_level: expected error, warn, info or debug");
        return 0;
}

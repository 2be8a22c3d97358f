/* config_int.h — what the config_*.c files share and nothing else includes: the value parsers
 * every reader uses (so a value means the same in the file and on the command line), the
 * field access through the key table, deep copy and release of owned strings, the
 * resolv.conf reader behind the default upstreams, and the state the two halves of the YAML
 * reader share. Not a public contract. */
#ifndef VPCDNS_CONFIG_INT_H
#define VPCDNS_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "vpcdns/config.h"

#define VD_CFG_DEFAULT_PORT 53
#define VD_CFG_USER_MAX 256 /* longest user name accepted (LOGIN_NAME_MAX is far smaller) */
#define VD_CFG_WORKERS_MAX 64
#define VD_CFG_CIDR_EXPECTED "an address prefix (10.0.0.0/8, fd00::/8, 192.0.2.1)"

/* true/false in any of the usual capitalisations (True, TRUE). */
bool vd_cfg_parse_bool(const char *text, bool *out);
/* az_affinity: "off", "prefer" or "strict"; and back. */
bool vd_cfg_parse_affinity(const char *text, vd_az_affinity *out);
const char *vd_cfg_affinity_name(vd_az_affinity mode);
/* az: an AZ name or ID ("us-east-1a", "use1-az4") or "imds": letters, digits and '-', at
 * most VD_CFG_AZ_MAX - 1 of them, copied into out (VD_CFG_AZ_MAX octets). */
bool vd_cfg_parse_az(const char *text, char *out);
/* "refuse" or "drop". */
bool vd_cfg_parse_deny(const char *text, vd_deny_action *out);
/* A user name or numeric id as getpwnam/getpwuid take it: printable, no blank, ':' or '/', not
 * starting with '-'. Whether the user exists is checked when it is used. */
bool vd_cfg_user_ok(const char *text);
/* Query log settings: "route53" or "dnstap"; a share "0" to "1" with at most six decimals
 * ("0.25") as queries per million; "FORMAT:PATH" (the flag's form, sample 1). */
bool vd_cfg_parse_qlog_format(const char *text, vd_qlog_format *out);
bool vd_cfg_parse_qlog_sample(const char *text, unsigned *ppm);
bool vd_cfg_parse_qlog_target(const char *text, vd_config_qlog *out);

/* The value of key k in cfg, and for a list its item count. */
void *vd_cfg_field(vd_config *cfg, const vd_config_key *k);
size_t *vd_cfg_count(vd_config *cfg, const vd_config_key *k);

/* The known key nearest to name by edit distance when it is near enough to be a typo, else
 * NULL. */
const vd_config_key *vd_cfg_closest_key(const char *name);

/* Frees the strings of a path list / the domains of a rule list, and sets the count to 0. */
void vd_cfg_free_strings(char **list, size_t *n);
void vd_cfg_free_rules(vd_config_rule *rules, size_t *n);

/* Deep copy of src into dst (dst is overwritten, not freed). Returns 0 or -ENOMEM. */
int vd_cfg_copy(vd_config *dst, const vd_config *src);

/* Appends the nameservers of a resolv.conf (port 53) to cfg->upstream, skipping duplicates and
 * our own listen addresses. A missing file means no upstream. */
void vd_cfg_read_resolv_conf(vd_config *cfg, const char *path);

/* ---- The YAML reader (config_yaml.c and config_yaml_values.c) ---------------------------- */

#define VD_YAML_MAX_KEYS 64 /* room in vd_yaml_parse for the keys of the table */

struct vd_yaml_parse {
        const char *path;
        char *dir; /* directory of the config file, NULL when relative paths stay as-is */
        yaml_document_t *doc;
        vd_config values;            /* private copy; only keys marked in seen[] are applied */
        bool seen[VD_YAML_MAX_KEYS]; /* by index in the key table */
        size_t seen_line[VD_YAML_MAX_KEYS];
        size_t rule_line[VD_MAX_RULES]; /* where each forward rule's domain stands */
        vd_error *err;
};

/* The error "PATH:LINE:COL: expected EXPECTED, got GOT" in fp->err; returns -EINVAL. */
int vd_yaml_fail_at(struct vd_yaml_parse *fp, yaml_mark_t mark, const char *expected,
                    const char *got);
/* The same at node, with what node holds as the got-part ("'text'", "a list"). */
int vd_yaml_fail_node(struct vd_yaml_parse *fp, const yaml_node_t *node, const char *expected);
/* A non-null scalar without NUL bytes, or NULL. */
const char *vd_yaml_scalar_text(const yaml_node_t *node);
/* config_yaml_views.c: the keys views and vpc into fp->values (out: its vpc field); a view
 * name as accepted (1 to 63 of [A-Za-z0-9._-]). */
int vd_yaml_parse_views(struct vd_yaml_parse *fp, const yaml_node_t *value);
int vd_yaml_parse_vpc(struct vd_yaml_parse *fp, const yaml_node_t *value, char *out);
bool vd_cfg_view_name_ok(const char *text);
/* Reads the value of key k into fp->values. Returns 0, or an error with fp->err set. */
int vd_yaml_parse_value(struct vd_yaml_parse *fp, const vd_config_key *k, const yaml_node_t *value);

#endif

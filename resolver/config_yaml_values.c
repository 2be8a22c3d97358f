/* config_yaml_values.c — one value of the YAML config file → its field of vd_config, by the
 * key's type in the key table: address, path and prefix lists, numbers in range, booleans,
 * words, the user and the forwarding rules. Each error names FILE:LINE:COLUMN, what was
 * expected and what was found, with a hint where a common mistake is likely (an IPv6 address
 * with an unbracketed port, host bits in a prefix). Reads no file: config_yaml.c does. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "vpcdns/addr.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

#include "config_int.h"

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

int vd_yaml_fail_at(struct vd_yaml_parse *fp, yaml_mark_t mark, const char *expected,
                    const char *got)
{
        return vd_error_set(fp->err, "%s:%zu:%zu: expected %s, got %s", fp->path, mark.line + 1,
                            mark.column + 1, expected, got);
}

int vd_yaml_fail_node(struct vd_yaml_parse *fp, const yaml_node_t *node, const char *expected)
{
        char got[128];
        describe_node(node, got, sizeof(got));
        return vd_yaml_fail_at(fp, node->start_mark, expected, got);
}

const char *vd_yaml_scalar_text(const yaml_node_t *node)
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
static char *resolve_path(const struct vd_yaml_parse *fp, const char *text)
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

static int fail_full(struct vd_yaml_parse *fp, const yaml_node_t *node, size_t cap,
                     const char *what);

/* A hosted zone given as {path: FILE, vpcs: [vpc-ID, ...]}: the path joins the list, the VPCs
 * are kept beside it ("vpc-a vpc-b") for views. */
static int parse_hosted_zone(struct vd_yaml_parse *fp, const vd_config_key *k,
                             const yaml_node_t *item)
{
        size_t *n = vd_cfg_count(&fp->values, k);
        const char *path = NULL;
        char vpcs[VD_MAX_SOURCES * 32] = "";
        size_t used = 0;
        if (*n >= k->cap)
                return fail_full(fp, item, k->cap, "hosted_zones entries");
        for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
             p++) {
                yaml_node_t *key = yaml_document_get_node(fp->doc, p->key);
                yaml_node_t *val = yaml_document_get_node(fp->doc, p->value);
                const char *name = vd_yaml_scalar_text(key);
                if (name != NULL && strcmp(name, "path") == 0) {
                        path = vd_yaml_scalar_text(val);
                        if (path == NULL || path[0] == '\0')
                                return vd_yaml_fail_node(fp, val, "a hosted zone file path");
                } else if (name != NULL && strcmp(name, "vpcs") == 0) {
                        if (val->type != YAML_SEQUENCE_NODE)
                                return vd_yaml_fail_node(fp, val, "a list of VPC ids (vpc-...)");
                        for (yaml_node_item_t *it = val->data.sequence.items.start;
                             it < val->data.sequence.items.top; it++) {
                                yaml_node_t *v = yaml_document_get_node(fp->doc, *it);
                                const char *id = vd_yaml_scalar_text(v);
                                if (id == NULL || strncmp(id, "vpc-", 4) != 0 || id[4] == '\0' ||
                                    strlen(id) > 30 || strpbrk(id, " \t") != NULL ||
                                    used + strlen(id) + 2 > sizeof(vpcs))
                                        return vd_yaml_fail_node(fp, v, "a VPC id (vpc-...)");
                                used += (size_t)snprintf(vpcs + used, sizeof(vpcs) - used, "%s%s",
                                                         used ? " " : "", id);
                        }
                } else {
                        return vd_yaml_fail_node(fp, key, "path or vpcs in a hosted zone entry");
                }
        }
        if (path == NULL)
                return vd_yaml_fail_node(fp, item, "path: FILE in a hosted zone entry");
        char *full = resolve_path(fp, path);
        char *v = used ? strdup(vpcs) : NULL;
        if (full == NULL || (used && v == NULL)) {
                free(full);
                free(v);
                vd_error_set(fp->err, "%s: out of memory", fp->path);
                return -ENOMEM;
        }
        fp->values.hosted_zone_vpcs[*n] = v;
        ((char **)vd_cfg_field(&fp->values, k))[(*n)++] = full;
        return 0;
}

/* One list item (or the single scalar) of a list key. */
/* One address of a list: ADDR[:PORT]. A bare IPv6 address that ends in what looks like a port
 * ("::1:5300") is refused with the bracketed form as a hint: taken as written it would be
 * another address on port 53. */
static int parse_addr(struct vd_yaml_parse *fp, const yaml_node_t *node, const char *expected,
                      vd_addr *out)
{
        const char *text = vd_yaml_scalar_text(node);
        char got[160], hint[INET6_ADDRSTRLEN + 16];
        if (text != NULL && vd_addr_port_hint(text, hint, sizeof(hint))) {
                describe_node(node, got, sizeof(got));
                size_t len = strlen(got);
                snprintf(got + len, sizeof(got) - len,
                         " (an IPv6 address with a port is written in brackets: did you mean "
                         "\"%s\"?)",
                         hint);
                return vd_yaml_fail_at(fp, node->start_mark, expected, got);
        }
        if (text == NULL || vd_addr_parse(text, VD_CFG_DEFAULT_PORT, out) != 0)
                return vd_yaml_fail_node(fp, node, expected);
        return 0;
}

/* "at most N ..." for a list that is full. */
static int fail_full(struct vd_yaml_parse *fp, const yaml_node_t *node, size_t cap,
                     const char *what)
{
        char expected[96];
        snprintf(expected, sizeof(expected), "at most %zu %s", cap, what);
        return vd_yaml_fail_node(fp, node, expected);
}

/* One list item (or the single scalar) of a list key. */
static int parse_list_item(struct vd_yaml_parse *fp, const vd_config_key *k,
                           const yaml_node_t *item)
{
        const char *text = vd_yaml_scalar_text(item);
        size_t *n = vd_cfg_count(&fp->values, k);
        if (k->type == VD_KEY_CIDRS) {
                vd_cidr cidr;
                char hint[256];
                if (text == NULL || vd_cidr_parse(text, &cidr) != 0) {
                        char got[128], suggestion[INET6_ADDRSTRLEN + 8];
                        if (text == NULL || !vd_cidr_hint(text, suggestion, sizeof(suggestion)))
                                return vd_yaml_fail_node(fp, item, k->expected);
                        describe_node(item, got, sizeof(got));
                        snprintf(hint, sizeof(hint), "%s (host bits set: did you mean %s?)", got,
                                 suggestion);
                        return vd_yaml_fail_at(fp, item->start_mark,
                                               VD_CFG_CIDR_EXPECTED " with the host bits zero",
                                               hint);
                }
                if (*n >= k->cap)
                        return fail_full(fp, item, k->cap, "allow prefixes");
                ((vd_cidr *)vd_cfg_field(&fp->values, k))[(*n)++] = cidr;
                return 0;
        }
        if (k->type == VD_KEY_ADDRS) {
                vd_addr addr;
                int rc = parse_addr(fp, item, k->expected, &addr);
                if (rc != 0)
                        return rc;
                if (*n >= k->cap) {
                        char what[64];
                        snprintf(what, sizeof(what), "%s addresses", k->name);
                        return fail_full(fp, item, k->cap, what);
                }
                ((vd_addr *)vd_cfg_field(&fp->values, k))[(*n)++] = addr;
                return 0;
        }
        char **list = vd_cfg_field(&fp->values, k);
        if (item->type == YAML_MAPPING_NODE && k->offset == offsetof(vd_config, hosted_zone_files))
                return parse_hosted_zone(fp, k, item);
        if (text == NULL || text[0] == '\0')
                return vd_yaml_fail_node(fp, item, k->expected);
        if (*n >= k->cap) {
                char what[64];
                snprintf(what, sizeof(what), "%s entries", k->name);
                return fail_full(fp, item, k->cap, what);
        }
        char *path = resolve_path(fp, text);
        if (path == NULL) {
                vd_error_set(fp->err, "%s: out of memory", fp->path);
                return -ENOMEM;
        }
        list[(*n)++] = path;
        return 0;
}

#define RULE_EXPECTED "a rule {domain: NAME, servers: [ADDR[:PORT], ...] or default}"
#define SERVERS_EXPECTED "a server address ADDR[:PORT] (10.0.0.2, [fd00::2]:53)"

/* The servers of one rule: a list of addresses, one address, or the word default. */
static int parse_rule_servers(struct vd_yaml_parse *fp, vd_config_rule *rule,
                              const yaml_node_t *node)
{
        const char *text = vd_yaml_scalar_text(node);
        vd_addr addr;
        if (text != NULL && strcmp(text, "default") == 0) {
                rule->use_default = true;
                return 0;
        }
        if (node->type == YAML_SCALAR_NODE) {
                int rc = parse_addr(fp, node, "a list of server addresses or default for 'servers'",
                                    &addr);
                if (rc != 0)
                        return rc;
                rule->servers[rule->n_servers++] = addr;
                return 0;
        }
        if (node->type != YAML_SEQUENCE_NODE ||
            node->data.sequence.items.start == node->data.sequence.items.top)
                return vd_yaml_fail_node(
                    fp, node,
                    "a list of server addresses or default for 'servers' (at least "
                    "one address)");
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
                const yaml_node_t *item = yaml_document_get_node(fp->doc, *it);
                int rc = parse_addr(fp, item, SERVERS_EXPECTED, &addr);
                if (rc != 0)
                        return rc;
                if (rule->n_servers >= VD_MAX_UPSTREAM) {
                        char expected[64];
                        snprintf(expected, sizeof(expected), "at most %d servers per rule",
                                 VD_MAX_UPSTREAM);
                        return vd_yaml_fail_node(fp, item, expected);
                }
                rule->servers[rule->n_servers++] = addr;
        }
        return 0;
}

/* The domain of one rule: a name without wildcard, kept as lower-case text with a final dot.
 * A domain given by an earlier rule is an error. */
static int parse_rule_domain(struct vd_yaml_parse *fp, vd_config_rule *rule,
                             const yaml_node_t *node)
{
        const char *text = vd_yaml_scalar_text(node);
        uint8_t wire[VD_NAME_MAX], other[VD_NAME_MAX];
        size_t len, other_len;
        char canonical[VD_NAME_MAX * 4 + 2];
        if (text == NULL || strchr(text, '*') != NULL || vd_name_from_text(text, wire, &len) != 0 ||
            vd_name_to_text(wire, canonical, sizeof(canonical)) != 0)
                return vd_yaml_fail_node(fp, node, "a domain name for 'domain' (corp.example)");
        for (size_t i = 0; i < fp->values.n_rules; i++) {
                if (vd_name_from_text(fp->values.rules[i].domain, other, &other_len) == 0 &&
                    other_len == len && memcmp(other, wire, len) == 0) {
                        char expected[VD_NAME_MAX * 4 + 96], got[VD_NAME_MAX * 4 + 16];
                        snprintf(expected, sizeof(expected),
                                 "each domain once in 'forward' (%s is at line %zu)", canonical,
                                 fp->rule_line[i]);
                        snprintf(got, sizeof(got), "'%s' again", text);
                        return vd_yaml_fail_at(fp, node->start_mark, expected, got);
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
static int parse_rule(struct vd_yaml_parse *fp, const yaml_node_t *node)
{
        vd_config_rule rule;
        const yaml_node_t *domain = NULL, *servers = NULL;
        int rc;
        if (node->type != YAML_MAPPING_NODE)
                return vd_yaml_fail_node(fp, node, RULE_EXPECTED);
        if (fp->values.n_rules >= VD_MAX_RULES) {
                char expected[64];
                snprintf(expected, sizeof(expected), "at most %d forward rules", VD_MAX_RULES);
                return vd_yaml_fail_node(fp, node, expected);
        }
        for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const yaml_node_t *value = yaml_document_get_node(fp->doc, pair->value);
                const char *name = vd_yaml_scalar_text(key);
                const yaml_node_t **slot = NULL;
                if (name != NULL && strcmp(name, "domain") == 0)
                        slot = &domain;
                else if (name != NULL && strcmp(name, "servers") == 0)
                        slot = &servers;
                if (slot == NULL)
                        return vd_yaml_fail_node(fp, key, "domain or servers in a forward rule");
                if (*slot != NULL) {
                        char got[64];
                        snprintf(got, sizeof(got), "'%s' again", name);
                        return vd_yaml_fail_at(fp, key->start_mark,
                                               "each key of a forward rule once", got);
                }
                *slot = value;
        }
        if (domain == NULL || servers == NULL)
                return vd_yaml_fail_at(fp, node->start_mark, RULE_EXPECTED,
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

static int parse_rules(struct vd_yaml_parse *fp, const yaml_node_t *value)
{
        if (value->type == YAML_MAPPING_NODE)
                return parse_rule(fp, value);
        if (value->type != YAML_SEQUENCE_NODE)
                return vd_yaml_fail_node(fp, value,
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
/* query_log: a mapping with format and path, and optionally sample (default 1). A relative
 * path is taken from the config file's directory, like the other paths; "unix:PATH" (dnstap
 * only) names a socket. */
static int parse_qlog(struct vd_yaml_parse *fp, const vd_config_key *k, const yaml_node_t *value)
{
        const yaml_node_t *format = NULL, *path = NULL, *sample = NULL;
        vd_config_qlog q = {.format = VD_QLOG_OFF, .sample_ppm = VD_QLOG_SAMPLE_ALL};
        if (value->type != YAML_MAPPING_NODE)
                return vd_yaml_fail_node(fp, value, k->expected);
        for (yaml_node_pair_t *pair = value->data.mapping.pairs.start;
             pair < value->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const char *name = vd_yaml_scalar_text(key);
                const yaml_node_t **slot = NULL;
                if (name != NULL && strcmp(name, "format") == 0)
                        slot = &format;
                else if (name != NULL && strcmp(name, "path") == 0)
                        slot = &path;
                else if (name != NULL && strcmp(name, "sample") == 0)
                        slot = &sample;
                if (slot == NULL)
                        return vd_yaml_fail_node(fp, key, "format, path or sample in 'query_log'");
                if (*slot != NULL) {
                        char got[64];
                        snprintf(got, sizeof(got), "'%s' again", name);
                        return vd_yaml_fail_at(fp, key->start_mark, "each key of 'query_log' once",
                                               got);
                }
                *slot = yaml_document_get_node(fp->doc, pair->value);
        }
        if (format == NULL || path == NULL)
                return vd_yaml_fail_at(fp, value->start_mark, k->expected,
                                       format == NULL ? "no 'format'" : "no 'path'");
        const char *text = vd_yaml_scalar_text(format);
        if (text == NULL || !vd_cfg_parse_qlog_format(text, &q.format))
                return vd_yaml_fail_node(fp, format, "route53 or dnstap for 'format'");
        text = vd_yaml_scalar_text(sample);
        if (sample != NULL && (text == NULL || !vd_cfg_parse_qlog_sample(text, &q.sample_ppm)))
                return vd_yaml_fail_node(fp, sample,
                                         "a share from 0 to 1 for 'sample' (0.25; at most 6 "
                                         "decimals)");
        text = vd_yaml_scalar_text(path);
        bool unix_socket = text != NULL && strncmp(text, "unix:", 5) == 0;
        if (text == NULL || text[unix_socket ? 5 : 0] == '\0' ||
            (unix_socket && q.format != VD_QLOG_DNSTAP))
                return vd_yaml_fail_node(fp, path,
                                         "a file path for 'path' (unix:SOCKET for dnstap only)");
        char *full = resolve_path(fp, unix_socket ? text + 5 : text);
        if (full == NULL) {
                vd_error_set(fp->err, "%s: out of memory", fp->path);
                return -ENOMEM;
        }
        int n = snprintf(q.path, sizeof(q.path), "%s%s", unix_socket ? "unix:" : "", full);
        free(full);
        if (n < 0 || (size_t)n >= sizeof(q.path)) {
                char expected[64];
                snprintf(expected, sizeof(expected), "a path of at most %d bytes for 'path'",
                         VD_QLOG_PATH_MAX - 1);
                return vd_yaml_fail_node(fp, path, expected);
        }
        fp->values.query_log = q;
        return 0;
}

/* eni_health: a mapping of port, interval_ms, timeout_ms, fall and rise, each optional (the
 * defaults of docs/configuration.md); the key being there turns probing on. */
static int parse_eni_health(struct vd_yaml_parse *fp, const vd_config_key *k,
                            const yaml_node_t *value)
{
        vd_config_eni_health e = {
            .on = true, .port = 443, .interval_ms = 5000, .timeout_ms = 1000, .fall = 2, .rise = 2};
        static const struct {
                const char *name;
                size_t offset;
                unsigned min, max;
        } fields[] = {
            {"port", offsetof(vd_config_eni_health, port), 1, 65535},
            {"interval_ms", offsetof(vd_config_eni_health, interval_ms), VD_ENI_HEALTH_INTERVAL_MIN,
             VD_ENI_HEALTH_INTERVAL_MAX},
            {"timeout_ms", offsetof(vd_config_eni_health, timeout_ms), VD_ENI_HEALTH_TIMEOUT_MIN,
             VD_ENI_HEALTH_INTERVAL_MAX},
            {"fall", offsetof(vd_config_eni_health, fall), 1, VD_ENI_HEALTH_COUNT_MAX},
            {"rise", offsetof(vd_config_eni_health, rise), 1, VD_ENI_HEALTH_COUNT_MAX},
        };
        const size_t n_fields = sizeof(fields) / sizeof(fields[0]);
        bool seen[sizeof(fields) / sizeof(fields[0])] = {false};
        const yaml_node_t *timeout = NULL;
        char expected[128];
        if (value->type != YAML_MAPPING_NODE)
                return vd_yaml_fail_node(fp, value, k->expected);
        for (yaml_node_pair_t *pair = value->data.mapping.pairs.start;
             pair < value->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const yaml_node_t *v = yaml_document_get_node(fp->doc, pair->value);
                const char *name = vd_yaml_scalar_text(key);
                size_t f = 0;
                while (f < n_fields && (name == NULL || strcmp(name, fields[f].name) != 0))
                        f++;
                if (f == n_fields)
                        return vd_yaml_fail_node(
                            fp, key, "port, interval_ms, timeout_ms, fall or rise in 'eni_health'");
                if (seen[f]) {
                        char got[64];
                        snprintf(got, sizeof(got), "'%s' again", name);
                        return vd_yaml_fail_at(fp, key->start_mark, "each key of 'eni_health' once",
                                               got);
                }
                seen[f] = true;
                const char *text = vd_yaml_scalar_text(v);
                unsigned *field = (unsigned *)(void *)((char *)&e + fields[f].offset);
                if (text == NULL || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !vd_parse_uint(text, fields[f].min, fields[f].max, field)) {
                        snprintf(expected, sizeof(expected),
                                 "an integer from %u to %u for '%s' in 'eni_health'", fields[f].min,
                                 fields[f].max, fields[f].name);
                        return vd_yaml_fail_node(fp, v, expected);
                }
                if (strcmp(name, "timeout_ms") == 0)
                        timeout = v;
        }
        if (timeout == NULL && e.timeout_ms > e.interval_ms)
                e.timeout_ms = e.interval_ms; /* the default timeout fits a short interval */
        if (e.timeout_ms > e.interval_ms) {
                snprintf(expected, sizeof(expected),
                         "a 'timeout_ms' of at most 'interval_ms' (%u) in 'eni_health'",
                         e.interval_ms);
                return vd_yaml_fail_node(fp, timeout != NULL ? timeout : value, expected);
        }
        fp->values.eni_health = e;
        return 0;
}

static int parse_list(struct vd_yaml_parse *fp, const vd_config_key *k, const yaml_node_t *value)
{
        char expected[96];
        /* fp->values starts empty and a key is accepted once: no reset needed. */
        if (value->type == YAML_SCALAR_NODE)
                return parse_list_item(fp, k, value);
        if (value->type != YAML_SEQUENCE_NODE) {
                snprintf(expected, sizeof(expected), "a list of %s for '%s'",
                         k->type == VD_KEY_ADDRS   ? "addresses"
                         : k->type == VD_KEY_CIDRS ? "address prefixes"
                                                   : "paths",
                         k->name);
                return vd_yaml_fail_node(fp, value, expected);
        }
        yaml_node_item_t *it = value->data.sequence.items.start;
        if (it == value->data.sequence.items.top && k->type == VD_KEY_CIDRS)
                return vd_yaml_fail_node(fp, value,
                                         "at least one prefix for 'allow' (an empty list would "
                                         "refuse every client; omit the key for the default)");
        if (it == value->data.sequence.items.top && k->type == VD_KEY_ADDRS) {
                snprintf(expected, sizeof(expected),
                         "at least one address for '%s' (omit the key for the default)", k->name);
                return vd_yaml_fail_node(fp, value, expected);
        }
        for (; it < value->data.sequence.items.top; it++) {
                int rc = parse_list_item(fp, k, yaml_document_get_node(fp->doc, *it));
                if (rc != 0)
                        return rc;
        }
        return 0;
}

int vd_yaml_parse_value(struct vd_yaml_parse *fp, const vd_config_key *k, const yaml_node_t *value)
{
        char expected[96];
        const char *text = vd_yaml_scalar_text(value);
        void *field = vd_cfg_field(&fp->values, k);
        switch (k->type) {
        case VD_KEY_ADDRS:
        case VD_KEY_PATHS:
        case VD_KEY_CIDRS:
                return parse_list(fp, k, value);
        case VD_KEY_LEVEL:
                if (text == NULL || vd_log_level_parse(text, field) != 0)
                        return vd_yaml_fail_node(fp, value, k->expected);
                return 0;
        case VD_KEY_UINT:
                if (text == NULL || value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !vd_parse_uint(text, k->min, k->max, field)) {
                        snprintf(expected, sizeof(expected), "an integer from %u to %u for '%s'",
                                 k->min, k->max, k->name);
                        return vd_yaml_fail_node(fp, value, expected);
                }
                return 0;
        case VD_KEY_DENY:
                if (text == NULL || !vd_cfg_parse_deny(text, field))
                        return vd_yaml_fail_node(fp, value, k->expected);
                return 0;
        case VD_KEY_BOOL:
                if (text == NULL || value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !vd_cfg_parse_bool(text, field)) {
                        snprintf(expected, sizeof(expected), "true or false for '%s'", k->name);
                        return vd_yaml_fail_node(fp, value, expected);
                }
                return 0;
        case VD_KEY_AZ:
                if (text == NULL || !vd_cfg_parse_az(text, field))
                        return vd_yaml_fail_node(fp, value, k->expected);
                return 0;
        case VD_KEY_AFFINITY:
                if (text == NULL || !vd_cfg_parse_affinity(text, field))
                        return vd_yaml_fail_node(fp, value, k->expected);
                return 0;
        case VD_KEY_RULES:
                return parse_rules(fp, value);
        case VD_KEY_QLOG:
                return parse_qlog(fp, k, value);
        case VD_KEY_ENI_HEALTH:
                return parse_eni_health(fp, k, value);
        case VD_KEY_VPC:
                return vd_yaml_parse_vpc(fp, value, field);
        case VD_KEY_VIEWS:
                return vd_yaml_parse_views(fp, value);
        case VD_KEY_USER:
                if (text == NULL || !vd_cfg_user_ok(text))
                        return vd_yaml_fail_node(fp, value, k->expected);
                fp->values.user = strdup(text);
                if (fp->values.user == NULL) {
                        vd_error_set(fp->err, "%s: out of memory", fp->path);
                        return -ENOMEM;
                }
                return 0;
        case VD_KEY_PATH:
                if (text == NULL || text[0] == '\0')
                        return vd_yaml_fail_node(fp, value, k->expected);
                *(char **)field = resolve_path(fp, text);
                if (*(char **)field == NULL) {
                        vd_error_set(fp->err, "%s: out of memory", fp->path);
                        return -ENOMEM;
                }
                return 0;
        }
        return -EINVAL;
}

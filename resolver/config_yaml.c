/* config_yaml.c — the YAML config file (libyaml document API) → vd_config, key by key through
 * the key table (vd_config_keys). Parse → validate → apply: every key is read into a private
 * copy and moved into the caller's vd_config only when the whole file was accepted. Every
 * error names FILE:LINE:COLUMN, what was expected and what was found, with a hint where a
 * common mistake is likely (a misspelt key, an unquoted IPv6 address, host bits in a prefix).
 * It does not fill defaults from the system or check the whole (config.c does). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "vpcdns/addr.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

#include "config_int.h"

#define MAX_KEYS 64 /* room in file_parse for the keys of the table */

struct file_parse {
        const char *path;
        char *dir; /* directory of the config file, NULL when relative paths stay as-is */
        yaml_document_t *doc;
        vd_config values;    /* private copy; only keys marked in seen[] are applied */
        bool seen[MAX_KEYS]; /* by index in the key table */
        size_t seen_line[MAX_KEYS];
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
/* One address of a list: ADDR[:PORT]. A bare IPv6 address that ends in what looks like a port
 * ("::1:5300") is refused with the bracketed form as a hint: taken as written it would be
 * another address on port 53. */
static int parse_addr(struct file_parse *fp, const yaml_node_t *node, const char *expected,
                      vd_addr *out)
{
        const char *text = scalar_text(node);
        char got[160], hint[INET6_ADDRSTRLEN + 16];
        if (text != NULL && vd_addr_port_hint(text, hint, sizeof(hint))) {
                describe_node(node, got, sizeof(got));
                size_t len = strlen(got);
                snprintf(got + len, sizeof(got) - len,
                         " (an IPv6 address with a port is written in brackets: did you mean "
                         "\"%s\"?)",
                         hint);
                return fail_at(fp, node->start_mark, expected, got);
        }
        if (text == NULL || vd_addr_parse(text, VD_CFG_DEFAULT_PORT, out) != 0)
                return fail_node(fp, node, expected);
        return 0;
}

/* "at most N ..." for a list that is full. */
static int fail_full(struct file_parse *fp, const yaml_node_t *node, size_t cap, const char *what)
{
        char expected[96];
        snprintf(expected, sizeof(expected), "at most %zu %s", cap, what);
        return fail_node(fp, node, expected);
}

/* One list item (or the single scalar) of a list key. */
static int parse_list_item(struct file_parse *fp, const vd_config_key *k, const yaml_node_t *item)
{
        const char *text = scalar_text(item);
        size_t *n = vd_cfg_count(&fp->values, k);
        if (k->type == VD_KEY_CIDRS) {
                vd_cidr cidr;
                char hint[256];
                if (text == NULL || vd_cidr_parse(text, &cidr) != 0) {
                        char got[128], suggestion[INET6_ADDRSTRLEN + 8];
                        if (text == NULL || !vd_cidr_hint(text, suggestion, sizeof(suggestion)))
                                return fail_node(fp, item, k->expected);
                        describe_node(item, got, sizeof(got));
                        snprintf(hint, sizeof(hint), "%s (host bits set: did you mean %s?)", got,
                                 suggestion);
                        return fail_at(fp, item->start_mark,
                                       VD_CFG_CIDR_EXPECTED " with the host bits zero", hint);
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
        if (text == NULL || text[0] == '\0')
                return fail_node(fp, item, k->expected);
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
static int parse_rule_servers(struct file_parse *fp, vd_config_rule *rule, const yaml_node_t *node)
{
        const char *text = scalar_text(node);
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
                return fail_node(fp, node,
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
static int parse_list(struct file_parse *fp, const vd_config_key *k, const yaml_node_t *value)
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
                return fail_node(fp, value, expected);
        }
        yaml_node_item_t *it = value->data.sequence.items.start;
        if (it == value->data.sequence.items.top && k->type == VD_KEY_CIDRS)
                return fail_node(fp, value,
                                 "at least one prefix for 'allow' (an empty list would "
                                 "refuse every client; omit the key for the default)");
        if (it == value->data.sequence.items.top && k->type == VD_KEY_ADDRS) {
                snprintf(expected, sizeof(expected),
                         "at least one address for '%s' (omit the key for the default)", k->name);
                return fail_node(fp, value, expected);
        }
        for (; it < value->data.sequence.items.top; it++) {
                int rc = parse_list_item(fp, k, yaml_document_get_node(fp->doc, *it));
                if (rc != 0)
                        return rc;
        }
        return 0;
}

static int parse_value(struct file_parse *fp, const vd_config_key *k, const yaml_node_t *value)
{
        char expected[96];
        const char *text = scalar_text(value);
        void *field = vd_cfg_field(&fp->values, k);
        switch (k->type) {
        case VD_KEY_ADDRS:
        case VD_KEY_PATHS:
        case VD_KEY_CIDRS:
                return parse_list(fp, k, value);
        case VD_KEY_LEVEL:
                if (text == NULL || vd_log_level_parse(text, field) != 0)
                        return fail_node(fp, value, k->expected);
                return 0;
        case VD_KEY_UINT:
                if (text == NULL || value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !vd_cfg_parse_uint(text, k->min, k->max, field)) {
                        snprintf(expected, sizeof(expected), "an integer from %u to %u for '%s'",
                                 k->min, k->max, k->name);
                        return fail_node(fp, value, expected);
                }
                return 0;
        case VD_KEY_DENY:
                if (text == NULL || !vd_cfg_parse_deny(text, field))
                        return fail_node(fp, value, k->expected);
                return 0;
        case VD_KEY_BOOL:
                if (text == NULL || value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !vd_cfg_parse_bool(text, field)) {
                        snprintf(expected, sizeof(expected), "true or false for '%s'", k->name);
                        return fail_node(fp, value, expected);
                }
                return 0;
        case VD_KEY_RULES:
                return parse_rules(fp, value);
        case VD_KEY_USER:
                if (text == NULL || !vd_cfg_user_ok(text))
                        return fail_node(fp, value, k->expected);
                fp->values.user = strdup(text);
                if (fp->values.user == NULL) {
                        vd_error_set(fp->err, "%s: out of memory", fp->path);
                        return -ENOMEM;
                }
                return 0;
        }
        return -EINVAL;
}

/* A key that is not in the table: the closest known key when it looks like a typo. */
static int fail_unknown_key(struct file_parse *fp, const yaml_node_t *key, const char *name)
{
        const vd_config_key *near = vd_cfg_closest_key(name);
        char expected[128];
        if (near != NULL)
                snprintf(expected, sizeof(expected), "a config key (did you mean '%s'?)",
                         near->name);
        else
                snprintf(expected, sizeof(expected), "a config key (vpcdns --help lists them all)");
        return fail_node(fp, key, expected);
}

static int parse_root(struct file_parse *fp, const yaml_node_t *root)
{
        size_t n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
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
                const vd_config_key *k = vd_config_key_find(name);
                if (k == NULL)
                        return fail_unknown_key(fp, key, name);
                size_t id = (size_t)(k - keys);
                if (fp->seen[id]) {
                        char expected[96], got[96];
                        snprintf(expected, sizeof(expected), "each key once ('%s' is at line %zu)",
                                 k->name, fp->seen_line[id]);
                        snprintf(got, sizeof(got), "'%s' again", k->name);
                        return fail_at(fp, key->start_mark, expected, got);
                }
                fp->seen[id] = true;
                fp->seen_line[id] = key->start_mark.line + 1;
                int rc = parse_value(fp, k, value);
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

/* True when line number `line` (0-based) of f holds what looks like an IPv6 address: "::", or
 * "[" followed by a hexadecimal group and ':'. Comments are not looked at. */
static bool line_has_ipv6(FILE *f, size_t line)
{
        char text[512];
        size_t at = 0;
        if (fseek(f, 0, SEEK_SET) != 0)
                return false;
        while (fgets(text, sizeof(text), f) != NULL) {
                if (strchr(text, '\n') == NULL && !feof(f))
                        continue; /* the rest of a long line: same line number */
                if (at++ != line)
                        continue;
                text[strcspn(text, "#")] = '\0';
                if (strstr(text, "::") != NULL)
                        return true;
                for (const char *p = strchr(text, '['); p != NULL; p = strchr(p + 1, '[')) {
                        size_t hex = strspn(p + 1, "0123456789abcdefABCDEF");
                        if (hex >= 1 && hex <= 4 && p[1 + hex] == ':')
                                return true;
                }
                return false;
        }
        return false;
}

static int syntax_error(struct file_parse *fp, const yaml_parser_t *parser, FILE *f)
{
        char got[640];
        const char *problem = parser->problem != NULL ? parser->problem : "unreadable input";
        yaml_mark_t mark = parser->problem_mark;
        if (parser->error == YAML_READER_ERROR) {
                mark = mark_of_offset(f, parser->problem_offset);
                snprintf(got, sizeof(got), "unreadable text (%s)", problem);
                return fail_at(fp, mark, "valid YAML", got);
        }
        if (parser->context != NULL)
                snprintf(got, sizeof(got), "a syntax error (%s %s at line %zu)", problem,
                         parser->context, parser->context_mark.line + 1);
        else
                snprintf(got, sizeof(got), "a syntax error (%s)", problem);
        /* YAML reads "[" as the start of a list and ": " as a mapping: an IPv6 address must be
         * quoted, a mistake easily made and badly explained by the parser. */
        if (line_has_ipv6(f, mark.line) ||
            (parser->context != NULL && line_has_ipv6(f, parser->context_mark.line))) {
                size_t len = strlen(got);
                snprintf(got + len, sizeof(got) - len,
                         "; an IPv6 address must be quoted in YAML: \"[::1]:53\"");
        }
        return fail_at(fp, mark, "valid YAML", got);
}

/* Moves every key the file set from fp->values into cfg. Cannot fail. */
static void apply_file(vd_config *cfg, struct file_parse *fp)
{
        size_t n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
        vd_config *v = &fp->values;
        for (size_t i = 0; i < n_keys; i++) {
                const vd_config_key *k = &keys[i];
                void *to = vd_cfg_field(cfg, k), *from = vd_cfg_field(v, k);
                if (!fp->seen[i])
                        continue;
                switch (k->type) {
                case VD_KEY_ADDRS:
                        memcpy(to, from, k->cap * sizeof(vd_addr));
                        *vd_cfg_count(cfg, k) = *vd_cfg_count(v, k);
                        break;
                case VD_KEY_CIDRS:
                        memcpy(to, from, k->cap * sizeof(vd_cidr));
                        *vd_cfg_count(cfg, k) = *vd_cfg_count(v, k);
                        break;
                case VD_KEY_PATHS: /* the strings move: v no longer owns them */
                        vd_cfg_free_strings(to, vd_cfg_count(cfg, k));
                        memcpy(to, from, k->cap * sizeof(char *));
                        *vd_cfg_count(cfg, k) = *vd_cfg_count(v, k);
                        *vd_cfg_count(v, k) = 0;
                        break;
                case VD_KEY_RULES:
                        vd_cfg_free_rules(to, vd_cfg_count(cfg, k));
                        memcpy(to, from, k->cap * sizeof(vd_config_rule));
                        *vd_cfg_count(cfg, k) = *vd_cfg_count(v, k);
                        *vd_cfg_count(v, k) = 0;
                        break;
                case VD_KEY_USER:
                        free(*(char **)to);
                        *(char **)to = *(char **)from;
                        *(char **)from = NULL;
                        break;
                case VD_KEY_UINT:
                        *(unsigned *)to = *(unsigned *)from;
                        break;
                case VD_KEY_BOOL:
                        *(bool *)to = *(bool *)from;
                        break;
                case VD_KEY_LEVEL:
                        *(vd_log_level *)to = *(vd_log_level *)from;
                        break;
                case VD_KEY_DENY:
                        *(vd_deny_action *)to = *(vd_deny_action *)from;
                        break;
                }
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

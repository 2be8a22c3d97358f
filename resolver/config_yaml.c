/* config_yaml.c — the YAML config file (libyaml document API) → vd_config: reads the one
 * document, finds each key in the key table (vd_config_keys) and hands its value to
 * config_yaml_values.c. Parse → validate → apply: every key is read into a private copy and
 * moved into the caller's vd_config only when the whole file was accepted. Owns the errors of
 * the document itself: syntax (with a hint to quote an IPv6 address), an unknown key (with
 * the closest known one), a key given twice, a second document. It does not fill defaults
 * from the system or check the whole (config.c does). */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "vpcdns/addr.h"
#include "vpcdns/config.h"
#include "vpcdns/wire.h"

#include "config_int.h"

/* A key that is not in the table: the closest known key when it looks like a typo. */
static int fail_unknown_key(struct vd_yaml_parse *fp, const yaml_node_t *key, const char *name)
{
        const vd_config_key *near = vd_cfg_closest_key(name);
        char expected[128];
        if (near != NULL)
                snprintf(expected, sizeof(expected), "a config key (did you mean '%s'?)",
                         near->name);
        else
                snprintf(expected, sizeof(expected), "a config key (vpcdns --help lists them all)");
        return vd_yaml_fail_node(fp, key, expected);
}

static int parse_root(struct vd_yaml_parse *fp, const yaml_node_t *root)
{
        size_t n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
        VD_CHECK(n_keys <= VD_YAML_MAX_KEYS);
        if (root == NULL)
                return 0; /* empty file */
        if (root->type == YAML_SCALAR_NODE && vd_yaml_scalar_text(root) == NULL &&
            strlen((const char *)root->data.scalar.value) == root->data.scalar.length)
                return 0; /* "---" or "~" alone: nothing configured */
        if (root->type != YAML_MAPPING_NODE)
                return vd_yaml_fail_node(fp, root, "a mapping of settings (key: value)");

        for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
             pair < root->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const yaml_node_t *value = yaml_document_get_node(fp->doc, pair->value);
                const char *name = vd_yaml_scalar_text(key);
                const vd_config_key *k = vd_config_key_find(name);
                if (k == NULL)
                        return fail_unknown_key(fp, key, name);
                size_t id = (size_t)(k - keys);
                if (fp->seen[id]) {
                        char expected[96], got[96];
                        snprintf(expected, sizeof(expected), "each key once ('%s' is at line %zu)",
                                 k->name, fp->seen_line[id]);
                        snprintf(got, sizeof(got), "'%s' again", k->name);
                        return vd_yaml_fail_at(fp, key->start_mark, expected, got);
                }
                fp->seen[id] = true;
                fp->seen_line[id] = key->start_mark.line + 1;
                int rc = vd_yaml_parse_value(fp, k, value);
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

static int syntax_error(struct vd_yaml_parse *fp, const yaml_parser_t *parser, FILE *f)
{
        char got[640];
        const char *problem = parser->problem != NULL ? parser->problem : "unreadable input";
        yaml_mark_t mark = parser->problem_mark;
        if (parser->error == YAML_READER_ERROR) {
                mark = mark_of_offset(f, parser->problem_offset);
                snprintf(got, sizeof(got), "unreadable text (%s)", problem);
                return vd_yaml_fail_at(fp, mark, "valid YAML", got);
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
        return vd_yaml_fail_at(fp, mark, "valid YAML", got);
}

/* Moves every key the file set from fp->values into cfg. Cannot fail. */
static void apply_file(vd_config *cfg, struct vd_yaml_parse *fp)
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
                        if (k->offset == offsetof(vd_config, hosted_zone_files)) {
                                for (size_t j = 0; j < VD_MAX_SOURCES; j++)
                                        free(cfg->hosted_zone_vpcs[j]);
                                memcpy(cfg->hosted_zone_vpcs, v->hosted_zone_vpcs,
                                       sizeof(cfg->hosted_zone_vpcs));
                                memset(v->hosted_zone_vpcs, 0, sizeof(v->hosted_zone_vpcs));
                        }
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
                case VD_KEY_PATH:
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
                case VD_KEY_QLOG:
                        *(vd_config_qlog *)to = *(vd_config_qlog *)from;
                        break;
                case VD_KEY_AZ:
                        memcpy(to, from, VD_CFG_AZ_MAX);
                        break;
                case VD_KEY_AFFINITY:
                        *(vd_az_affinity *)to = *(vd_az_affinity *)from;
                        break;
                case VD_KEY_ENI_HEALTH:
                        *(vd_config_eni_health *)to = *(vd_config_eni_health *)from;
                        break;
                case VD_KEY_VPC:
                        memcpy(to, from, VD_VPC_ID_MAX);
                        break;
                case VD_KEY_VIEWS:
                        memcpy(to, from, k->cap * sizeof(vd_config_view));
                        *vd_cfg_count(cfg, k) = *vd_cfg_count(v, k);
                        break;
                }
        }
}

int vd_config_load_file(vd_config *cfg, const char *path, vd_error *err)
{
        struct vd_yaml_parse fp;
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
                rc = vd_yaml_fail_at(&fp, mark, "a single YAML document", "a second document");
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

/* config_yaml_views.c — the YAML value of the key views (a list of {name, clients, vpc,
 * default, inbound}) and of the key vpc → vd_config. Checks each view on its own (a name,
 * valid prefixes, a VPC id) and the list as a whole (names unique, at most one default, no
 * prefix in two views), each error naming FILE:LINE:COLUMN. Whether a view's VPC is in the
 * data is checked when the data loads (views.c). Reads no file: config_yaml.c does. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "vpcdns/addr.h"
#include "vpcdns/config.h"

#include "config_int.h"

#define VIEW_EXPECTED                                                                              \
        "a view {name: NAME, clients: [CIDR, ...], vpc: vpc-..., default: true or false, "         \
        "inbound: true or false}"
#define VPC_EXPECTED "a VPC id (vpc- and 8 or 17 hex digits: vpc-0a1b2c3d4e5f60718)"

bool vd_cfg_view_name_ok(const char *text)
{
        size_t n = text != NULL ? strlen(text) : 0;
        if (n == 0 || n >= VD_VIEW_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = text[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                        return false;
        }
        return true;
}

int vd_yaml_parse_vpc(struct vd_yaml_parse *fp, const yaml_node_t *value, char *out)
{
        const char *text = vd_yaml_scalar_text(value);
        if (text == NULL || !vd_config_vpc_ok(text))
                return vd_yaml_fail_node(fp, value, VPC_EXPECTED " for 'vpc'");
        snprintf(out, VD_VPC_ID_MAX, "%s", text);
        return 0;
}

static int parse_clients(struct vd_yaml_parse *fp, const yaml_node_t *node, vd_config_view *v)
{
        const yaml_node_item_t *it, *top;
        if (node->type == YAML_SCALAR_NODE) { /* a single prefix is a list of one */
                it = NULL;
                top = NULL;
        } else if (node->type == YAML_SEQUENCE_NODE) {
                it = node->data.sequence.items.start;
                top = node->data.sequence.items.top;
        } else {
                return vd_yaml_fail_node(fp, node, "a list of client prefixes for 'clients'");
        }
        for (size_t i = 0; it == NULL ? i < 1 : it < top; i++) {
                const yaml_node_t *item =
                    it == NULL ? node : yaml_document_get_node(fp->doc, *it++);
                const char *text = vd_yaml_scalar_text(item);
                vd_cidr cidr;
                if (text == NULL || vd_cidr_parse(text, &cidr) != 0) {
                        char got[160], suggestion[INET6_ADDRSTRLEN + 8];
                        if (text == NULL || !vd_cidr_hint(text, suggestion, sizeof(suggestion)))
                                return vd_yaml_fail_node(fp, item,
                                                         VD_CFG_CIDR_EXPECTED " in 'clients'");
                        snprintf(got, sizeof(got), "'%.64s' (host bits set: did you mean %s?)",
                                 text, suggestion);
                        return vd_yaml_fail_at(fp, item->start_mark,
                                               VD_CFG_CIDR_EXPECTED " with the host bits zero",
                                               got);
                }
                if (v->n_clients >= VD_MAX_VIEW_CLIENTS) {
                        char expected[64];
                        snprintf(expected, sizeof(expected), "at most %d prefixes in 'clients'",
                                 VD_MAX_VIEW_CLIENTS);
                        return vd_yaml_fail_node(fp, item, expected);
                }
                v->clients[v->n_clients++] = cidr;
        }
        return 0;
}

static void cidr_text(const vd_cidr *c, char *out, size_t cap)
{
        char host[INET6_ADDRSTRLEN] = "?";
        const void *addr = c->ss.ss_family == AF_INET
                               ? (const void *)&((const struct sockaddr_in *)&c->ss)->sin_addr
                               : (const void *)&((const struct sockaddr_in6 *)&c->ss)->sin6_addr;
        inet_ntop(c->ss.ss_family, addr, host, sizeof(host));
        snprintf(out, cap, "%s/%u", host, c->prefix);
}

static bool same_cidr(const vd_cidr *a, const vd_cidr *b)
{
        return a->prefix == b->prefix && a->ss.ss_family == b->ss.ss_family &&
               memcmp(&a->ss, &b->ss, sizeof(a->ss)) == 0;
}

/* The view just read (at index n of fp->values.views) against those before it. */
static int check_against_others(struct vd_yaml_parse *fp, const vd_config_view *v,
                                const yaml_node_t *node, const yaml_node_t *name,
                                const yaml_node_t *clients, const yaml_node_t *is_default)
{
        const vd_config *c = &fp->values;
        char got[160];
        for (size_t i = 0; i < c->n_views; i++) {
                const vd_config_view *o = &c->views[i];
                if (strcmp(o->name, v->name) == 0) {
                        snprintf(got, sizeof(got), "'%s' again", v->name);
                        return vd_yaml_fail_at(fp, name->start_mark, "a view name used once", got);
                }
                if (o->is_default && v->is_default) {
                        snprintf(got, sizeof(got), "a second default view (view '%s' is one)",
                                 o->name);
                        return vd_yaml_fail_at(fp, is_default->start_mark,
                                               "at most one view with default: true", got);
                }
                for (size_t a = 0; a < v->n_clients; a++) {
                        for (size_t b = 0; b < o->n_clients; b++) {
                                if (!same_cidr(&v->clients[a], &o->clients[b]))
                                        continue;
                                char text[INET6_ADDRSTRLEN + 8];
                                cidr_text(&v->clients[a], text, sizeof(text));
                                snprintf(got, sizeof(got), "%s, which view '%s' has too", text,
                                         o->name);
                                return vd_yaml_fail_at(fp, clients->start_mark,
                                                       "client prefixes of one view each", got);
                        }
                }
        }
        (void)node;
        return 0;
}

static int parse_view(struct vd_yaml_parse *fp, const yaml_node_t *node)
{
        static const char *const names[] = {"name", "clients", "vpc", "default", "inbound"};
        const yaml_node_t *fields[5] = {NULL};
        vd_config_view v;
        int rc;

        if (node->type != YAML_MAPPING_NODE)
                return vd_yaml_fail_node(fp, node, VIEW_EXPECTED);
        if (fp->values.n_views >= VD_MAX_VIEWS) {
                char expected[64];
                snprintf(expected, sizeof(expected), "at most %d views", VD_MAX_VIEWS);
                return vd_yaml_fail_node(fp, node, expected);
        }
        for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
                const yaml_node_t *key = yaml_document_get_node(fp->doc, pair->key);
                const char *text = vd_yaml_scalar_text(key);
                size_t f = 0;
                while (f < 5 && (text == NULL || strcmp(text, names[f]) != 0))
                        f++;
                if (f == 5)
                        return vd_yaml_fail_node(fp, key,
                                                 "name, clients, vpc, default or inbound in a "
                                                 "view");
                if (fields[f] != NULL) {
                        char got[64];
                        snprintf(got, sizeof(got), "'%s' again", names[f]);
                        return vd_yaml_fail_at(fp, key->start_mark, "each key of a view once", got);
                }
                fields[f] = yaml_document_get_node(fp->doc, pair->value);
        }
        memset(&v, 0, sizeof(v));
        if (fields[0] == NULL || fields[2] == NULL)
                return vd_yaml_fail_at(fp, node->start_mark, VIEW_EXPECTED,
                                       fields[0] == NULL ? "a view without 'name'"
                                                         : "a view without 'vpc'");
        const char *text = vd_yaml_scalar_text(fields[0]);
        if (!vd_cfg_view_name_ok(text))
                return vd_yaml_fail_node(fp, fields[0],
                                         "a view name of 1 to 63 letters, digits, '-', '_' or "
                                         "'.'");
        snprintf(v.name, sizeof(v.name), "%s", text);
        if ((rc = vd_yaml_parse_vpc(fp, fields[2], v.vpc)) != 0)
                return rc;
        for (size_t f = 3; f < 5; f++) {
                bool *to = f == 3 ? &v.is_default : &v.inbound;
                text = vd_yaml_scalar_text(fields[f]);
                if (fields[f] == NULL)
                        continue;
                if (text == NULL || fields[f]->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    !vd_cfg_parse_bool(text, to)) {
                        char expected[64];
                        snprintf(expected, sizeof(expected), "true or false for '%s'", names[f]);
                        return vd_yaml_fail_node(fp, fields[f], expected);
                }
        }
        if (fields[1] != NULL && (rc = parse_clients(fp, fields[1], &v)) != 0)
                return rc;
        if (v.n_clients == 0 && !v.is_default)
                return vd_yaml_fail_at(fp,
                                       fields[1] != NULL ? fields[1]->start_mark : node->start_mark,
                                       "at least one prefix in 'clients' (only the default "
                                       "view may have none)",
                                       fields[1] != NULL ? "an empty list" : "no 'clients'");
        if ((rc =
                 check_against_others(fp, &v, node, fields[0], fields[1] != NULL ? fields[1] : node,
                                      fields[3] != NULL ? fields[3] : node)) != 0)
                return rc;
        fp->values.views[fp->values.n_views++] = v;
        return 0;
}

int vd_yaml_parse_views(struct vd_yaml_parse *fp, const yaml_node_t *value)
{
        if (value->type == YAML_MAPPING_NODE)
                return parse_view(fp, value);
        if (value->type != YAML_SEQUENCE_NODE)
                return vd_yaml_fail_node(fp, value, "a list of views {name, clients, vpc}");
        for (yaml_node_item_t *it = value->data.sequence.items.start;
             it < value->data.sequence.items.top; it++) {
                int rc = parse_view(fp, yaml_document_get_node(fp->doc, *it));
                if (rc != 0)
                        return rc;
        }
        return 0;
}

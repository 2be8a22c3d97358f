/* snapshot_views.c — the views of a root snapshot (vpcdns/snapshot.h): which view's data
 * answers a client, and whether an outsider is refused a name.
 *
 * Owns: the table of a root's views (their snapshots, names and client prefixes) and the
 * match of a client address against every view's prefixes at once: one flat list of
 * prefixes sorted longest first, so the first that holds the address is the most specific
 * (a prefix may stand in one view only: the config refuses it twice). Runs on the hot path
 * for every query when views are configured: no allocation, no locks, one masked compare of
 * two words per prefix until the first match. Must not: build snapshots (the caller does) or
 * change a root once it is published. */
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

#define V4_MAPPED_OCTETS 12u

/* A prefix as two 64-bit words, first octet highest (IPv4 in the top half of hi), with its
 * mask: a match is two AND-and-compare. */
struct view_prefix {
        uint64_t hi, lo;           /* the network, host bits clear */
        uint64_t mask_hi, mask_lo; /* the prefix's bits */
        uint8_t family;            /* 4 or 6 */
        uint8_t bits;
        uint16_t view;
};

static uint64_t load_be64(const uint8_t *p)
{
        uint64_t w;
        memcpy(&w, p, sizeof(w));
        return be64toh(w);
}

/* The first bits (0 to 64) of a word as a mask. */
static uint64_t top_bits(unsigned bits)
{
        return bits == 0 ? 0 : bits >= 64 ? ~0ull : ~0ull << (64 - bits);
}

/* addr (4 or 16 octets) as the two words of a prefix. */
static void words_of(const uint8_t *addr, uint8_t family, uint64_t *hi, uint64_t *lo)
{
        uint8_t full[16] = {0};
        memcpy(full, addr, family == 4 ? 4 : 16);
        *hi = load_be64(full);
        *lo = load_be64(full + 8);
}

struct view {
        vd_snapshot *snap;
        char *name;
};

struct snap_views {
        struct view *views;
        size_t n;
        struct view_prefix *prefixes; /* longest first */
        size_t n_prefixes;
        int default_view; /* -1: none */
};

void vd_snap_views_free(struct snap_views *v)
{
        if (v == NULL)
                return;
        for (size_t i = 0; i < v->n; i++) {
                vd_snapshot_unref(v->views[i].snap);
                free(v->views[i].name);
        }
        free(v->views);
        free(v->prefixes);
        free(v);
}

static int by_length(const void *a, const void *b)
{
        const struct view_prefix *x = a, *y = b;
        if (x->bits != y->bits)
                return x->bits > y->bits ? -1 : 1;
        return x->view < y->view ? -1 : x->view > y->view; /* stable enough: same view order */
}

static bool prefix_of(const vd_cidr *c, uint16_t view, struct view_prefix *out)
{
        const uint8_t *net;
        memset(out, 0, sizeof(*out));
        out->view = view;
        if (c->ss.ss_family == AF_INET) {
                net = (const uint8_t *)&((const struct sockaddr_in *)&c->ss)->sin_addr;
                out->family = 4;
                out->bits = (uint8_t)(c->prefix < 32 ? c->prefix : 32);
        } else if (c->ss.ss_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&c->ss)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a6)) { /* ::ffff:10.0.0.0/104 is 10.0.0.0/8 */
                        net = a6->s6_addr + V4_MAPPED_OCTETS;
                        out->family = 4;
                        out->bits = (uint8_t)(c->prefix > 96 ? c->prefix - 96 : 0);
                } else {
                        net = a6->s6_addr;
                        out->family = 6;
                        out->bits = (uint8_t)(c->prefix < 128 ? c->prefix : 128);
                }
        } else {
                return false;
        }
        out->mask_hi = top_bits(out->bits);
        out->mask_lo = top_bits(out->bits > 64 ? out->bits - 64u : 0);
        words_of(net, out->family, &out->hi, &out->lo);
        out->hi &= out->mask_hi;
        out->lo &= out->mask_lo;
        return true;
}

int vd_snapshot_set_views(vd_snapshot *root, const vd_view_spec *specs, size_t n, vd_error *err)
{
        struct snap_views *v = calloc(1, sizeof(*v));
        size_t n_prefixes = 0;

        for (size_t i = 0; i < n; i++)
                n_prefixes += specs[i].n_clients;
        if (v != NULL) {
                v->views = calloc(n ? n : 1, sizeof(*v->views));
                v->prefixes = calloc(n_prefixes ? n_prefixes : 1, sizeof(*v->prefixes));
        }
        if (v == NULL || v->views == NULL || v->prefixes == NULL || n > UINT16_MAX) {
                if (v != NULL) {
                        free(v->views);
                        free(v->prefixes);
                        free(v);
                }
                for (size_t i = 0; i < n; i++)
                        vd_snapshot_unref(specs[i].snap);
                return vd_error_set(err, "out of memory while making the views"), -ENOMEM;
        }
        v->default_view = -1;
        bool oom = false;
        for (size_t i = 0; i < n; i++) {
                v->views[i].snap = specs[i].snap;
                v->views[i].name = strdup(specs[i].name != NULL ? specs[i].name : "");
                oom = oom || v->views[i].name == NULL;
                if (specs[i].is_default && v->default_view < 0)
                        v->default_view = (int)i;
                for (size_t k = 0; k < specs[i].n_clients; k++) {
                        if (prefix_of(&specs[i].clients[k], (uint16_t)i,
                                      &v->prefixes[v->n_prefixes]))
                                v->n_prefixes++;
                }
        }
        v->n = n;
        if (oom) {
                vd_snap_views_free(v);
                return vd_error_set(err, "out of memory while making the views"), -ENOMEM;
        }
        qsort(v->prefixes, v->n_prefixes, sizeof(*v->prefixes), by_length);
        vd_snap_views_free(root->head.views);
        root->head.views = v;
        return 0;
}

size_t vd_snapshot_view_count(const vd_snapshot *root)
{
        return root->head.views != NULL ? root->head.views->n : 0;
}

const vd_snapshot *vd_snapshot_view(const vd_snapshot *root, size_t i, const char **name)
{
        if (root->head.views == NULL || i >= root->head.views->n)
                return NULL;
        if (name != NULL)
                *name = root->head.views->views[i].name;
        return root->head.views->views[i].snap;
}

int vd_snapshot_view_of(const vd_snapshot *root, const struct sockaddr *client)
{
        const struct snap_views *v = root->head.views;
        const uint8_t *addr = NULL;
        uint8_t family = 0;

        if (v == NULL)
                return -1;
        if (client != NULL && client->sa_family == AF_INET) {
                addr =
                    (const uint8_t *)&((const struct sockaddr_in *)(const void *)client)->sin_addr;
                family = 4;
        } else if (client != NULL && client->sa_family == AF_INET6) {
                const struct in6_addr *a6 =
                    &((const struct sockaddr_in6 *)(const void *)client)->sin6_addr;
                family = IN6_IS_ADDR_V4MAPPED(a6) ? 4 : 6;
                addr = family == 4 ? a6->s6_addr + V4_MAPPED_OCTETS : a6->s6_addr;
        }
        if (addr == NULL)
                return v->default_view;
        uint64_t hi, lo;
        words_of(addr, family, &hi, &lo);
        for (size_t i = 0; i < v->n_prefixes; i++) {
                const struct view_prefix *p = &v->prefixes[i];
                if (p->family == family && (hi & p->mask_hi) == p->hi && (lo & p->mask_lo) == p->lo)
                        return p->view;
        }
        return v->default_view;
}

const vd_snapshot *vd_snap_for_client_views(const vd_snapshot *root, const struct sockaddr *client,
                                            bool *outsider)
{
        int view = vd_snapshot_view_of(root, client);
        if (view >= 0)
                return root->head.views->views[view].snap;
        *outsider = true;
        return root;
}

bool vd_snapshot_refuses(const vd_snapshot *root, const struct vd_query_info *qi)
{
        const struct snap_views *v = root->head.views;

        if (v == NULL || vd_snapshot_holds(root, qi))
                return false;
        for (size_t i = 0; i < v->n; i++) {
                if (vd_snapshot_holds(v->views[i].snap, qi))
                        return true;
        }
        return false;
}

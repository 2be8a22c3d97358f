/* snapshot_loops.c — the load-time check that no CNAME chain of a compiled snapshot loops,
 * walking the chains with the answer path's own lookup; a loop is reported with the place of
 * each CNAME record. Must not: change the snapshot or the builder. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

/* ---------- load-time check: CNAME loops ---------- */

/* The node a CNAME of node n leads to through the answer path's own lookup (wildcards
 * included), or -1 when n has no CNAME or its target is not ours. */
static int32_t cname_next(const vd_snapshot *s, const struct snode *n)
{
        const struct sset *cname = vd_snap_find_set(s, n, VD_TYPE_CNAME);
        if (cname == NULL)
                return -1;
        const uint8_t *rec = s->blob + s->rr_off[cname->first_rr];
        uint8_t target[VD_NAME_MAX + VD_NAME_PAD] = {0};
        uint8_t offs[MAX_LABELS + 1];
        size_t tlen = vd_name_len(rec + 10, vd_wire_get16(rec + 8));
        if (tlen == 0)
                return -1;
        memcpy(target, rec + 10, tlen);
        vd_name_lower(target, tlen);
        lookup_result res = vd_snap_lookup(s, target, offs, name_labels(target, offs));
        return res.kind == LOOKUP_NODE ? (int32_t)(res.node - s->nodes) : -1;
}

/* Appends " -> NAME (PLACE)" for node i to the message text (cut short when it is full). */
static void describe_member(const vd_builder *b, int32_t i, char *text, size_t cap, bool first)
{
        char name[VD_NAME_MAX * 4 + 2];
        size_t used = strlen(text);
        const struct bnode *bn = &b->nodes[i];
        int n;
        vd_name_to_text(bn->name, name, sizeof(name));
        if (bn->cname_line > 0)
                n = snprintf(text + used, cap - used, "%s%s (%s:%d)", first ? "" : " -> ", name,
                             bn->claim, bn->cname_line);
        else
                n = snprintf(text + used, cap - used, "%s%s (%s)", first ? "" : " -> ", name,
                             bn->claim);
        if (n < 0)
                text[used] = '\0';
}

/* Every CNAME leads to at most one node, so the chains form a functional graph: one walk per
 * chain, each node visited once, finds every cycle. A cycle is reported at its member loaded
 * first, with the place of that CNAME record and the whole cycle. */
int vd_snap_check_cname_loops(const vd_builder *b, const vd_snapshot *s, vd_error *err)
{
        enum { UNSEEN = 0, ON_PATH, DONE };
        uint8_t *state = calloc(s->n_nodes ? s->n_nodes : 1, 1);
        if (state == NULL)
                return vd_error_set(err, "out of memory while checking CNAME chains"), -ENOMEM;
        int rc = 0;
        for (size_t start = 0; start < s->n_nodes && rc == 0; start++) {
                int32_t cur = (int32_t)start;
                while (cur >= 0 && state[cur] == UNSEEN) {
                        state[cur] = ON_PATH;
                        cur = cname_next(s, &s->nodes[cur]);
                }
                if (cur >= 0 && state[cur] == ON_PATH) {
                        int32_t first = cur;
                        for (int32_t m = cname_next(s, &s->nodes[cur]); m != cur;
                             m = cname_next(s, &s->nodes[m]))
                                if (m < first)
                                        first = m;
                        char text[sizeof(err->msg) - 64] = "";
                        int32_t m = first;
                        do {
                                describe_member(b, m, text, sizeof(text), m == first);
                                m = cname_next(s, &s->nodes[m]);
                        } while (m != first);
                        char name[VD_NAME_MAX * 4 + 2];
                        vd_name_to_text(b->nodes[first].name, name, sizeof(name));
                        const struct bnode *fb = &b->nodes[first];
                        if (fb->cname_line > 0)
                                vd_error_set(err, "%s:%d: CNAME loop: %s -> %s", fb->claim,
                                             fb->cname_line, text, name);
                        else
                                vd_error_set(err, "%s: CNAME loop: %s -> %s", fb->claim, text,
                                             name);
                        rc = -ELOOP;
                }
                for (int32_t m = (int32_t)start; m >= 0 && state[m] == ON_PATH;
                     m = cname_next(s, &s->nodes[m]))
                        state[m] = DONE;
        }
        free(state);
        return rc;
}

/* zonefile_dump.c — vd_zonefile_dump(): the records of a snapshot printed by ldns as
 * master-file text (--dump); vd_zonefile_dump_views(): those of each view of a root under a
 * header comment. Must not: change the snapshot; it reads it through
 * vd_snapshot_foreach only. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#include "vpcdns/wire.h"
#include "vpcdns/zonefile.h"

struct dump_ctx {
        FILE *out;
        uint8_t *wire; /* owner + fixed part + rdata of one record */
        size_t cap;
        bool failed;
};

static int dump_one(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                    const uint8_t *rdata, uint16_t rdlen)
{
        struct dump_ctx *ctx = arg;
        size_t owner_len = vd_name_len(owner, VD_NAME_MAX);
        ldns_rr *rr = NULL;
        size_t pos = 0;
        size_t len;
        char *s;

        if (owner_len == 0 || owner_len + 10 + (size_t)rdlen > ctx->cap) {
                ctx->failed = true;
                return 0;
        }
        memcpy(ctx->wire, owner, owner_len);
        len = owner_len;
        vd_wire_put16(ctx->wire + len, type);
        vd_wire_put16(ctx->wire + len + 2, VD_CLASS_IN);
        vd_wire_put32(ctx->wire + len + 4, ttl);
        vd_wire_put16(ctx->wire + len + 8, rdlen);
        len += 10;
        if (rdlen > 0) {
                memcpy(ctx->wire + len, rdata, rdlen);
                len += rdlen;
        }
        if (ldns_wire2rr(&rr, ctx->wire, len, &pos, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK) {
                fprintf(ctx->out, "; vpcdns: a record of type %u that ldns cannot print\n",
                        (unsigned)type);
                ctx->failed = true;
                return 0;
        }
        s = ldns_rr2str_fmt(ldns_output_format_nocomments, rr);
        if (s == NULL || fputs(s, ctx->out) == EOF) {
                ctx->failed = true;
        }
        free(s);
        ldns_rr_free(rr);
        return 0;
}

int vd_zonefile_dump(const vd_snapshot *s, FILE *out)
{
        struct dump_ctx ctx = {.out = out, .cap = VD_NAME_MAX + 10 + 65535};

        VD_CHECK(s != NULL && out != NULL);
        ctx.wire = malloc(ctx.cap);
        if (ctx.wire == NULL) {
                return -EIO;
        }
        vd_snapshot_foreach(s, dump_one, &ctx);
        free(ctx.wire);
        if (fflush(out) != 0 || ferror(out) || ctx.failed) {
                return -EIO;
        }
        return 0;
}

int vd_zonefile_dump_views(const vd_snapshot *root, FILE *out)
{
        size_t n = vd_snapshot_view_count(root);

        if (n == 0)
                return vd_zonefile_dump(root, out);
        for (size_t i = 0; i < n; i++) {
                const char *name = "";
                const vd_snapshot *view = vd_snapshot_view(root, i, &name);
                if (fprintf(out, "; view %s\n", name) < 0 || vd_zonefile_dump(view, out) != 0)
                        return -EIO;
        }
        if (fprintf(out, "; clients outside every view (endpoint names: REFUSED)\n") < 0)
                return -EIO;
        return vd_zonefile_dump(root, out);
}

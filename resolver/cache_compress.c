/* cache_compress.c — writes the records a store keeps into the per-thread scratch space as
 * they will follow the question in every response: owners, and the names inside the rdata of
 * the RFC 1035 types, compressed against the question and earlier names; the offset of each
 * TTL noted. Must not: decide which records are kept (cache_store.c does) or allocate. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "cache_int.h"
#include "vpcdns/wire.h"

static bool room(const struct kept *k, size_t n)
{
        return k->len <= MAX_DATA && MAX_DATA - k->len >= n;
}

/* RFC 1035 types whose rdata names may be compressed (RFC 3597 §4): no other type's. */
static bool rdata_compressible(uint16_t type)
{
        switch (type) {
        case 2:  /* NS */
        case 3:  /* MD */
        case 4:  /* MF */
        case 5:  /* CNAME */
        case 6:  /* SOA */
        case 7:  /* MB */
        case 8:  /* MG */
        case 9:  /* MR */
        case 12: /* PTR */
        case 14: /* MINFO */
        case 15: /* MX */
                return true;
        default:
                return false;
        }
}

static void lower_name(const uint8_t *name, size_t len, uint8_t *out)
{
        /* Length octets are at most 63, below 'A': one rule for the whole name. */
        for (size_t i = 0; i < len; i++)
                out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (uint8_t)(name[i] + 32) : name[i];
}

/* Makes every suffix of lower (len octets) that starts in its first literal octets, written at
 * message offset msg_off, a target for later pointers. */
void vd_cache_add_targets(struct scratch *c, struct kept *k, const uint8_t *lower, size_t len,
                          size_t literal, size_t msg_off)
{
        if (k->n_names >= MAX_TARGET_NAMES)
                return;
        uint8_t *copy = c->names[k->n_names++];
        memcpy(copy, lower, len);
        for (size_t p = 0; p < literal && copy[p] != 0 && k->n_targets < MAX_TARGETS;
             p += 1 + (size_t)copy[p]) {
                if (msg_off + p > POINTER_MAX)
                        return;
                c->targets[k->n_targets++] = (struct target){.lower = copy + p,
                                                             .len = (uint16_t)(len - p),
                                                             .msg_off = (uint16_t)(msg_off + p)};
        }
}

/* Appends name (uncompressed wire form, as the upstream spelt it). With compress, its longest
 * suffix already written (question name included, letter case aside) becomes a pointer, and
 * what it writes becomes a target itself. */
static int put_name(struct scratch *c, struct kept *k, const uint8_t *name, size_t len,
                    bool compress)
{
        uint8_t lower[VD_NAME_MAX];
        size_t literal = len;
        int pointer = -1;
        if (compress) {
                lower_name(name, len, lower);
                for (size_t p = 0; name[p] != 0 && pointer < 0; p += 1 + (size_t)name[p]) {
                        for (size_t t = 0; t < k->n_targets; t++) {
                                const struct target *tg = &c->targets[t];
                                if (tg->len == len - p &&
                                    memcmp(tg->lower, lower + p, len - p) == 0) {
                                        literal = p;
                                        pointer = tg->msg_off;
                                        break;
                                }
                        }
                }
        }
        size_t need = literal + (pointer >= 0 ? 2 : 0);
        if (!room(k, need))
                return -EMSGSIZE;
        uint8_t *w = c->data + k->len;
        memcpy(w, name, literal);
        if (pointer >= 0)
                vd_wire_put16(w + literal, (uint16_t)(0xC000u | (unsigned)pointer));
        if (compress)
                vd_cache_add_targets(c, k, lower, len, literal, k->base + k->len);
        k->len += need;
        return 0;
}

/* Appends one record to the kept set: its owner and the names in the rdata of the RFC 1035
 * types compressed against the question and the names before them; other rdata names written
 * out in full (expanded when the upstream compressed them). */
int vd_cache_keep_record(struct scratch *c, struct kept *k, const uint8_t *msg, const struct rr *rr)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len;
        size_t pos = rr->start;
        int rc;

        if (k->n >= MAX_RECORDS)
                return -EMSGSIZE;
        /* The owner as the upstream spelt it; one that is the question name (or ends in it)
         * becomes a pointer into the question, which is the client's own spelling. */
        if (vd_wire_read_name(msg, rr->end, &pos, name, &name_len, false) != 0)
                return -EBADMSG;
        if ((rc = put_name(c, k, name, name_len, true)) != 0)
                return rc;
        if (!room(k, 10))
                return -EMSGSIZE;
        memcpy(c->data + k->len, msg + rr->fixed, 8); /* type, class, TTL; rdlength below */
        size_t ttl_off = k->len + 4;
        k->len += 10;

        size_t rdata = rr->fixed + 10;
        size_t end = rr->end;
        size_t prefix, names;
        uint16_t rdlen = (uint16_t)(end - rdata);
        if ((rr->type == VD_TYPE_A && rdlen != 4) || (rr->type == VD_TYPE_AAAA && rdlen != 16))
                return -EBADMSG;
        if (vd_wire_rdata_names(rr->type, &prefix, &names)) {
                bool compress = rdata_compressible(rr->type);
                if (rr->type == 35) {
                        for (int s = 0; s < 3; s++) {
                                if (rdata + prefix >= end)
                                        return -EBADMSG;
                                prefix += 1 + (size_t)msg[rdata + prefix];
                        }
                }
                if (prefix > rdlen || !room(k, prefix))
                        return prefix > rdlen ? -EBADMSG : -EMSGSIZE;
                memcpy(c->data + k->len, msg + rdata, prefix);
                k->len += prefix;
                size_t p = rdata + prefix;
                for (size_t i = 0; i < names; i++) {
                        /* Bounded by the rdata: the inline part of a name stays inside it. */
                        if (p >= end || vd_wire_read_name(msg, end, &p, name, &name_len, false))
                                return -EBADMSG;
                        if ((rc = put_name(c, k, name, name_len, compress)) != 0)
                                return rc;
                }
                size_t rest = end - p;
                if (rr->type == VD_TYPE_SOA) {
                        if (rest != 20)
                                return -EBADMSG;
                        k->soa_minimum = vd_wire_get32(msg + p + 16);
                }
                if (!room(k, rest))
                        return -EMSGSIZE;
                memcpy(c->data + k->len, msg + p, rest);
                k->len += rest;
        } else {
                if (!room(k, rdlen))
                        return -EMSGSIZE;
                memcpy(c->data + k->len, msg + rdata, rdlen);
                k->len += rdlen;
        }
        size_t new_rdlen = k->len - (ttl_off + 6);
        if (new_rdlen > 0xFFFF || ttl_off > 0xFFFF)
                return -EMSGSIZE;
        vd_wire_put16(c->data + ttl_off + 4, (uint16_t)new_rdlen);

        uint32_t ttl = vd_wire_get32(msg + rr->fixed + 4);
        if (ttl > TTL_MAX_VALID)
                ttl = 0;
        if (ttl < k->min_ttl)
                k->min_ttl = ttl;
        c->meta[k->n++] = (uint32_t)ttl_off;
        return 0;
}

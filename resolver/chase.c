/* chase.c — a CNAME chain followed past local data (see chase.h).
 *
 * A chase owns the client's response under construction (header and question as local data
 * wrote them, then the chain's records) and the question made up for the name the chain goes
 * on with. Each hop answers that question from local data (a zone, an endpoint name, a
 * special-use name) or, when the name is not ours or a forwarding rule covers it, through the
 * resolver; the hop's response is merged record by record. A hop through the resolver may
 * finish at once (cache) or later, in the resolver's reply callback, where the chase goes on
 * until it is done or waits again. Whichever way it ends, the client's reply runs once and the
 * chase is freed right after. It never touches the resolver once the worker dropped it
 * (env->resolver NULL: the worker is closing). An alias to a name outside local data is
 * chased the same way in alias mode: the target's records renamed to the alias, no CNAME. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/chase.h"
#include "vpcdns/forward.h"
#include "vpcdns/resolve.h"
#include "vpcdns/special.h"
#include "vpcdns/stats.h"
#include "vpcdns/wire.h"

#define FIRST_CAP 2048
#define TYPE_DNAME 39
#define TYPE_NAPTR 35
#define OPT_LEN 11

typedef enum hop_result {
        HOP_FINAL, /* the chain ended: rcode and records are in place */
        HOP_NEXT,  /* the chain goes on with c->target */
        HOP_FAIL,  /* SERVFAIL */
} hop_result;

struct chase {
        vd_query_env *env;
        vd_query_info qi; /* the client's question; qi.qname points at qname */
        uint8_t qname[VD_NAME_MAX];
        size_t max; /* the client's size limit */
        vd_reply_fn reply;
        void *reply_arg;
        /* The client's address, for its view's data at each hop (the published snapshot may
         * change between hops); has_addr false: none known. */
        struct sockaddr_storage addr;
        bool has_addr;
        bool in_start;           /* inside vd_chase_start: the client may be counted */
        vd_query_client *client; /* whose query; used only while in_start */
        bool counted;            /* vd_query_may_forward was asked and said yes */
        bool used_upstream;      /* a hop went through the resolver */

        /* The response: header and question, answer records, then authority records. */
        uint8_t *resp;
        size_t len, cap;
        size_t question_end;
        size_t answer_end;
        uint16_t an, ns;
        uint8_t rcode;

        /* The name the chain goes on with, and where it stands in resp (0: not there). */
        uint8_t target[VD_NAME_MAX];
        size_t target_len;
        size_t target_ref;
        unsigned hops;

        /* The question of the current hop; sub.qname points into sub_pkt. */
        uint8_t sub_pkt[VD_HEADER_LEN + VD_NAME_MAX + 4 + OPT_LEN];
        vd_query_info sub;
        uint8_t *scratch; /* VD_TCP_MAX octets for an answer given at once; NULL when idle */

        /* Alias mode (vd_local_chase.alias): records go under the alias's name (target_ref
         * stays on it), CNAMEs are followed unwritten, a negative end is NODATA with soa. */
        bool alias;
        uint8_t soa[2 + 10 + 3 * VD_NAME_MAX + 20];
        size_t soa_len;
};

static void chase_free(struct chase *c)
{
        free(c->resp);
        free(c->scratch);
        free(c);
}

/* Parses a query for the lower-cased wire name into qi (which points into pkt). */
static bool name_question(const uint8_t *name, size_t len, uint8_t *pkt, vd_query_info *qi)
{
        if (len == 0 || len > VD_NAME_MAX)
                return false;
        memset(pkt, 0, VD_HEADER_LEN);
        pkt[5] = 1; /* QDCOUNT */
        memcpy(pkt + VD_HEADER_LEN, name, len);
        vd_wire_put16(pkt + VD_HEADER_LEN + len, VD_TYPE_A);
        vd_wire_put16(pkt + VD_HEADER_LEN + len + 2, VD_CLASS_IN);
        return vd_wire_parse_query(pkt, VD_HEADER_LEN + len + 4, qi) == VD_PARSE_OK;
}

bool vd_chase_rule_covers(void *arg, const uint8_t *name, size_t len)
{
        vd_query_env *env = arg;
        uint8_t pkt[VD_HEADER_LEN + VD_NAME_MAX + 4];
        vd_query_info qi;
        if (env == NULL || env->forwarder == NULL || !name_question(name, len, pkt, &qi) ||
            !vd_forwarder_rule_covers(env->forwarder, &qi))
                return false;
        int apex_labels = vd_special_apex_labels(&qi);
        if (apex_labels == 0)
                return true;
        /* A special-use name: only a rule at or under its zone's apex counts, which is a rule
         * that covers the name but not the apex's parent. */
        size_t parent = qi.label_off[qi.labels - apex_labels + 1];
        uint8_t parent_pkt[VD_HEADER_LEN + VD_NAME_MAX + 4];
        vd_query_info parent_qi;
        return name_question(qi.qname_lower + parent, (size_t)qi.qname_len - parent, parent_pkt,
                             &parent_qi) &&
               !vd_forwarder_rule_covers(env->forwarder, &parent_qi);
}

/* ---- the response under construction -------------------------------------------------------- */

/* Room for n more octets (and our OPT) in resp; false when the message would pass 64 KiB. */
static bool reserve(struct chase *c, size_t n)
{
        size_t need = c->len + n + OPT_LEN;
        if (need <= c->cap)
                return true;
        if (need > VD_TCP_MAX)
                return false;
        size_t cap = c->cap;
        while (cap < need)
                cap *= 2;
        if (cap > VD_TCP_MAX)
                cap = VD_TCP_MAX;
        uint8_t *p = realloc(c->resp, cap);
        if (p == NULL)
                return false;
        c->resp = p;
        c->cap = cap;
        return true;
}

static bool put_bytes(struct chase *c, const uint8_t *p, size_t n)
{
        if (!reserve(c, n))
                return false;
        memcpy(c->resp + c->len, p, n);
        c->len += n;
        return true;
}

/* The name at *pos of msg, expanded, written uncompressed; *pos moves past it. */
static bool put_name_from(struct chase *c, const uint8_t *msg, size_t len, size_t *pos)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len;
        if (vd_wire_read_name(msg, len, pos, name, &name_len, false) != 0)
                return false;
        return put_bytes(c, name, name_len);
}

/* Appends the record of msg at start (owner) / fixed (type field) / end, with its owner as a
 * pointer to owner_ref when non-zero and every name in its rdata expanded. *rdata_name_at
 * (may be NULL) receives where the first rdata name was written, or 0. */
static bool put_record(struct chase *c, const uint8_t *msg, size_t len, size_t start, size_t fixed,
                       size_t end, size_t owner_ref, size_t *rdata_name_at)
{
        uint16_t type = vd_wire_get16(msg + fixed);
        size_t rdata = fixed + 10;
        size_t prefix, names;
        if (rdata_name_at != NULL)
                *rdata_name_at = 0;

        if (owner_ref != 0 && owner_ref < 0x3FFF) {
                uint8_t ptr[2] = {(uint8_t)(0xC0 | (owner_ref >> 8)), (uint8_t)owner_ref};
                if (!put_bytes(c, ptr, 2))
                        return false;
        } else {
                size_t pos = start;
                if (!put_name_from(c, msg, len, &pos))
                        return false;
        }
        size_t fixed_out = c->len;
        if (!put_bytes(c, msg + fixed, 10)) /* type, class, TTL, rdlength (rewritten below) */
                return false;
        if (!vd_wire_rdata_names(type, &prefix, &names)) {
                if (!put_bytes(c, msg + rdata, end - rdata))
                        return false;
        } else {
                if (type == TYPE_NAPTR) /* flags, services and regexp strings */
                        for (int k = 0; k < 3; k++) {
                                if (rdata + prefix >= end)
                                        return false;
                                prefix += 1 + (size_t)msg[rdata + prefix];
                        }
                if (rdata + prefix > end || !put_bytes(c, msg + rdata, prefix))
                        return false;
                size_t pos = rdata + prefix;
                for (size_t k = 0; k < names; k++) {
                        if (k == 0 && rdata_name_at != NULL)
                                *rdata_name_at = c->len;
                        if (pos >= end || !put_name_from(c, msg, end, &pos))
                                return false;
                }
                if (pos > end || !put_bytes(c, msg + pos, end - pos))
                        return false;
        }
        size_t rdlen = c->len - fixed_out - 10;
        if (rdlen > 0xFFFF)
                return false;
        vd_wire_put16(c->resp + fixed_out + 8, (uint16_t)rdlen);
        return true;
}

/* ---- reading one hop's response ------------------------------------------------------------- */

/* Whether name (lower-cased) is suffix or under it, at a label boundary. */
static bool name_under(const uint8_t *name, size_t len, const uint8_t *suffix, size_t suffix_len)
{
        for (size_t p = 0; p < len;) {
                if (len - p == suffix_len && memcmp(name + p, suffix, suffix_len) == 0)
                        return true;
                if (name[p] == 0)
                        break;
                p += 1 + (size_t)name[p];
        }
        return false;
}

/* A name the chain passes through in one hop's response, and where it stands in ours. */
struct link {
        uint8_t name[VD_NAME_MAX];
        size_t len;
        size_t ref;
};

/* Whether the chain must leave the upstream's answer at this target: we hold data for it, it
 * is a special-use name, or a rule sends it elsewhere. */
static bool answered_here(struct chase *c, const uint8_t *name, size_t len);

/* Merges a client-format response to c->sub into c->resp. */
static hop_result merge(struct chase *c, const uint8_t *msg, size_t len)
{
        struct link chain[VD_CNAME_MAX_HOPS + 2];
        size_t links = 1;
        bool answered = false, cut = false, soa = false;

        if (msg == NULL || len < VD_HEADER_LEN)
                return HOP_FAIL;
        uint16_t flags = vd_wire_get16(msg + 2);
        uint8_t rcode = flags & 0x0F;
        if (!(flags & VD_FLAG_QR) || (flags & VD_FLAG_TC) || vd_wire_get16(msg + 4) != 1 ||
            (rcode != VD_RCODE_NOERROR && rcode != VD_RCODE_NXDOMAIN))
                return HOP_FAIL;
        uint16_t an = vd_wire_get16(msg + 6), ns = vd_wire_get16(msg + 8);
        size_t pos = VD_HEADER_LEN;
        uint8_t scratch[VD_NAME_MAX];
        size_t scratch_len;
        if (vd_wire_read_name(msg, len, &pos, scratch, &scratch_len, true) != 0 || pos + 4 > len)
                return HOP_FAIL;
        pos += 4;

        memcpy(chain[0].name, c->target, c->target_len);
        chain[0].len = c->target_len;
        chain[0].ref = c->target_ref;
        for (uint16_t i = 0; i < an; i++) {
                size_t start = pos, fixed, owner_pos = pos;
                uint16_t type;
                uint8_t owner[VD_NAME_MAX];
                size_t owner_len;
                if (vd_wire_skip_rr(msg, len, &pos, &type, &fixed) != 0 ||
                    vd_wire_read_name(msg, len, &owner_pos, owner, &owner_len, true) != 0)
                        return HOP_FAIL;
                struct link *cur = &chain[links - 1];
                size_t at = links; /* the link this record's owner is, if any */
                for (size_t k = 0; k < links; k++)
                        if (chain[k].len == owner_len &&
                            memcmp(chain[k].name, owner, owner_len) == 0)
                                at = k;
                if (type == TYPE_DNAME && c->alias)
                        continue; /* only the target's addresses, under the alias's name */
                if (type == TYPE_DNAME) {
                        /* RFC 6672: the DNAME that synthesised the CNAME comes before it */
                        if (cut || !name_under(cur->name, cur->len, owner, owner_len))
                                continue;
                        if (!put_record(c, msg, len, start, fixed, pos, 0, NULL))
                                return HOP_FAIL;
                        c->an++;
                        continue;
                }
                if (at == links || (cut && at == links - 1))
                        continue; /* not on the chain, or past where it leaves this answer */
                if (type == VD_TYPE_CNAME && c->qi.qtype != VD_TYPE_CNAME && at == links - 1 &&
                    !cut) {
                        size_t name_at = chain[at].ref; /* alias mode: the alias's name */
                        if (++c->hops > VD_CNAME_MAX_HOPS || links == VD_CNAME_MAX_HOPS + 2)
                                return HOP_FAIL;
                        if (!c->alias) {
                                if (!put_record(c, msg, len, start, fixed, pos, chain[at].ref,
                                                &name_at))
                                        return HOP_FAIL;
                                c->an++;
                        }
                        struct link *next = &chain[links++];
                        size_t p = fixed + 10;
                        if (vd_wire_read_name(msg, pos, &p, next->name, &next->len, true) != 0)
                                return HOP_FAIL;
                        next->ref = name_at;
                        cut = answered_here(c, next->name, next->len);
                        continue;
                }
                if (c->alias && (at != links - 1 || type != c->qi.qtype))
                        continue; /* alias mode: the final name's records of the type only */
                if (!put_record(c, msg, len, start, fixed, pos, chain[at].ref, NULL))
                        return HOP_FAIL;
                c->an++;
                if (at == links - 1 && (type == c->qi.qtype || c->qi.qtype == VD_TYPE_ANY))
                        answered = true;
        }
        c->answer_end = c->len;

        struct link *last = &chain[links - 1];
        memcpy(c->target, last->name, last->len);
        c->target_len = last->len;
        c->target_ref = last->ref;
        if (cut)
                return HOP_NEXT;
        if (answered) {
                c->rcode = VD_RCODE_NOERROR;
                return HOP_FINAL;
        }

        /* Nothing for the last name: a negative answer (its authority records come along), or
         * an answer that stopped at a CNAME it could not follow (an authoritative upstream:
         * no SOA), which the chain then follows on its own. */
        size_t auth = pos;
        for (uint16_t i = 0; i < ns; i++) {
                uint16_t type;
                if (vd_wire_skip_rr(msg, len, &pos, &type, NULL) != 0)
                        return HOP_FAIL;
                if (type == VD_TYPE_SOA)
                        soa = true;
        }
        if (rcode == VD_RCODE_NOERROR && !soa && links > 1)
                return HOP_NEXT;
        if (c->alias) {
                /* Route 53 answers an alias whose target is missing or has no such data with
                 * NODATA under the alias's zone, not the target's NXDOMAIN. */
                if (c->soa_len > 0 && !put_bytes(c, c->soa, c->soa_len))
                        return HOP_FAIL;
                c->ns = c->soa_len > 0 ? 1 : 0;
                c->rcode = VD_RCODE_NOERROR;
                return HOP_FINAL;
        }
        pos = auth;
        for (uint16_t i = 0; i < ns; i++) {
                size_t start = pos, fixed;
                uint16_t type;
                if (vd_wire_skip_rr(msg, len, &pos, &type, &fixed) != 0 ||
                    !put_record(c, msg, len, start, fixed, pos, 0, NULL))
                        return HOP_FAIL;
                c->ns++;
        }
        c->rcode = rcode;
        return HOP_FINAL;
}

/* ---- hops ---------------------------------------------------------------------------------- */

/* Makes the question for c->target: the client's type, RD, CD and (with EDNS) DO. */
static bool make_sub_question(struct chase *c)
{
        uint8_t *p = c->sub_pkt;
        size_t n = VD_HEADER_LEN;
        memset(p, 0, VD_HEADER_LEN);
        vd_wire_put16(p + 2, (uint16_t)(VD_FLAG_RD | (c->qi.flags & VD_FLAG_CD)));
        vd_wire_put16(p + 4, 1);
        memcpy(p + n, c->target, c->target_len);
        n += c->target_len;
        vd_wire_put16(p + n, c->qi.qtype);
        vd_wire_put16(p + n + 2, VD_CLASS_IN);
        n += 4;
        if (c->qi.has_edns) {
                p[11] = 1; /* ARCOUNT */
                p[n] = 0;
                vd_wire_put16(p + n + 1, VD_TYPE_OPT);
                vd_wire_put16(p + n + 3, VD_UDP_PAYLOAD);
                vd_wire_put32(p + n + 5, c->qi.edns_do ? VD_EDNS_DO : 0);
                vd_wire_put16(p + n + 9, 0);
                n += OPT_LEN;
        }
        return vd_wire_parse_query(p, n, &c->sub) == VD_PARSE_OK;
}

/* The local data of c's client: its view's (views, snapshot.h), or NULL. */
static const vd_snapshot *client_data(const struct chase *c)
{
        bool outsider;
        if (c->env->snapshot == NULL)
                return NULL;
        return vd_snapshot_for_client(
            c->env->snapshot, c->has_addr ? (const struct sockaddr *)&c->addr : NULL, &outsider);
}

/* Looks name up as the next hop would, through a question made for it. */
static bool answered_here(struct chase *c, const uint8_t *name, size_t len)
{
        vd_query_env *env = c->env;
        uint8_t saved[VD_NAME_MAX];
        size_t saved_len = c->target_len;
        bool here;
        if (vd_chase_rule_covers(env, name, len))
                return true;
        /* the lookups read a question: make one for name, then restore the current one */
        memcpy(saved, c->target, saved_len);
        memcpy(c->target, name, len);
        c->target_len = len;
        const vd_snapshot *data = client_data(c);
        here = make_sub_question(c) && ((data != NULL && vd_snapshot_holds(data, &c->sub)) ||
                                        vd_special_apex_labels(&c->sub) > 0);
        memcpy(c->target, saved, saved_len);
        c->target_len = saved_len;
        return here;
}

static bool need_scratch(struct chase *c)
{
        if (c->scratch == NULL)
                c->scratch = malloc(VD_TCP_MAX);
        return c->scratch != NULL;
}

/* Answers c->sub from local data or special-use names into the scratch buffer. Returns true
 * with *n set when one of them holds the name (and no rule covers it). */
static bool local_hop(struct chase *c, size_t *n, vd_local_chase *lc)
{
        vd_query_env *env = c->env;
        *lc = (vd_local_chase){
            .leaves = vd_chase_rule_covers, .leaves_arg = env, .fallback = vd_special_snapshot()};
        if (vd_chase_rule_covers(env, c->target, c->target_len))
                return false;
        const vd_snapshot *data = client_data(c);
        if (data != NULL) {
                vd_local_result r = vd_snapshot_answer_chase(data, &c->sub, env->rotation++,
                                                             c->scratch, VD_TCP_MAX, n, lc);
                if (r != VD_LOCAL_FORWARD)
                        return true; /* a partial chain (CHASE) merges like an answer */
        }
        const vd_snapshot *special = vd_special_snapshot();
        return vd_special_apex_labels(&c->sub) > 0 && special != NULL &&
               vd_snapshot_answer(special, &c->sub, env->rotation++, c->scratch, VD_TCP_MAX, n) ==
                   VD_LOCAL_ANSWERED;
}

static void on_hop_reply(void *arg, const uint8_t *resp, size_t len, unsigned source);

/* A hop whose name is itself an alias to a name outside local data (local_hop's answer is
 * VD_LOCAL_CHASE in alias mode with no record before it): the chain goes on with the alias's
 * target in alias mode, its records under the name where it stands in c->resp (target_ref
 * stays). Entering alias mode, the SOA local data wrote after its answer becomes the negative
 * answer's, its owner pointer moved from the hop's question to that name. False when the hop
 * is not such an alias (it then merges like any answer). */
static bool adopt_alias(struct chase *c, const vd_local_chase *lc, size_t n)
{
        if (!lc->alias || vd_wire_get16(c->scratch + 6) != 0 || lc->target_ref != VD_HEADER_LEN ||
            c->target_ref == 0 || c->target_ref >= 0x3FFF)
                return false;
        if (!c->alias) {
                const uint8_t *soa = c->scratch + n;
                size_t len = lc->alias_soa_len;
                c->soa_len = 0;
                if (len >= 2 && len <= sizeof(c->soa) && n + len <= VD_TCP_MAX) {
                        memcpy(c->soa, soa, len);
                        c->soa_len = len;
                        if ((soa[0] & 0xC0) == 0xC0) {
                                size_t ptr = ((size_t)(soa[0] & 0x3F) << 8) | soa[1];
                                size_t to = c->target_ref + (ptr - VD_HEADER_LEN);
                                if (ptr < VD_HEADER_LEN || ptr - VD_HEADER_LEN >= c->target_len ||
                                    to >= 0x3FFF)
                                        c->soa_len = 0;
                                c->soa[0] = (uint8_t)(0xC0 | (to >> 8));
                                c->soa[1] = (uint8_t)to;
                        }
                }
                c->alias = true;
        }
        memcpy(c->target, lc->target, lc->target_len);
        c->target_len = lc->target_len;
        c->hops++; /* an alias is a step of the chain: run() bounds them */
        return true;
}

/* Runs hops until the chain ends (true: the response is final in c->resp) or one waits for
 * the resolver (false: on_hop_reply goes on). */
static bool run(struct chase *c, hop_result h)
{
        vd_query_env *env = c->env;
        while (h == HOP_NEXT) {
                size_t n = 0;
                if (c->hops > VD_CNAME_MAX_HOPS || !make_sub_question(c) || !need_scratch(c)) {
                        h = HOP_FAIL;
                        break;
                }
                vd_local_chase lc;
                if (local_hop(c, &n, &lc)) {
                        if (!adopt_alias(c, &lc, n))
                                h = merge(c, c->scratch, n);
                        continue;
                }
                if (env->resolver == NULL) {
                        h = HOP_FAIL;
                        break;
                }
                c->used_upstream = true;
                if (vd_resolver_from_cache(env->resolver, &c->sub, VD_TCP_MAX, c->scratch,
                                           VD_TCP_MAX, &n)) {
                        h = merge(c, c->scratch, n);
                        continue;
                }
                if (c->in_start && !c->counted) {
                        if (!vd_query_may_forward(env, c->client)) {
                                vd_count_add(&env->counters.forward_denied, 1);
                                h = HOP_FAIL;
                                break;
                        }
                        c->counted = true;
                }
                vd_query_outcome o =
                    vd_resolver_query_upstream(env->resolver, &c->sub, VD_TCP_MAX, c->scratch,
                                               VD_TCP_MAX, &n, on_hop_reply, c);
                if (o == VD_QUERY_PENDING) {
                        free(c->scratch); /* not needed while waiting */
                        c->scratch = NULL;
                        return false;
                }
                h = o == VD_QUERY_REPLY ? merge(c, c->scratch, n) : HOP_FAIL;
        }
        if (h == HOP_FAIL) {
                c->rcode = VD_RCODE_SERVFAIL;
                c->len = c->question_end;
                c->an = c->ns = 0;
                c->answer_end = c->len;
        }
        return true;
}

/* Finishes the header (rcode, counts), drops authority records and then everything when the
 * client's limit asks for it (TC only when the answer section does not fit), adds the OPT.
 * Returns the length. */
static size_t finish(struct chase *c)
{
        size_t opt = c->qi.has_edns ? OPT_LEN : 0;
        uint16_t flags = vd_wire_get16(c->resp + 2);
        flags &= (uint16_t) ~(VD_FLAG_AA | VD_FLAG_AD | VD_FLAG_TC | 0x000Fu);
        if (c->len + opt > c->max) {
                c->len = c->answer_end;
                c->ns = 0;
        }
        if (c->len + opt > c->max) {
                c->len = c->question_end;
                c->an = 0;
                flags |= VD_FLAG_TC;
        }
        vd_wire_put16(c->resp + 2, (uint16_t)(flags | c->rcode));
        vd_wire_put16(c->resp + 6, c->an);
        vd_wire_put16(c->resp + 8, c->ns);
        vd_wire_put16(c->resp + 10, 0);
        size_t n = vd_wire_add_opt(&c->qi, c->rcode, c->resp, c->len, c->cap);
        if (c->rcode == VD_RCODE_SERVFAIL)
                vd_count_add(&c->env->counters.servfail_answers, 1);
        return n;
}

/* The answer's source is that of the hop that ended the chase (a later hop answered from the
 * cache makes the whole answer a cached one), or an error when the chase made a SERVFAIL. */
static void on_hop_reply(void *arg, const uint8_t *resp, size_t len, unsigned source)
{
        struct chase *c = arg;
        if (len == 0) { /* the worker is closing: nothing is sent */
                c->reply(c->reply_arg, NULL, 0, VD_STATS_SOURCE_ERROR);
                chase_free(c);
                return;
        }
        if (!run(c, merge(c, resp, len)))
                return; /* waiting for the next hop */
        size_t n = finish(c);
        if (c->rcode == VD_RCODE_SERVFAIL)
                source = VD_STATS_SOURCE_ERROR;
        c->reply(c->reply_arg, n > 0 ? c->resp : NULL, n, source);
        chase_free(c);
}

vd_query_outcome vd_chase_start(vd_query_env *env, vd_query_client *client, const vd_query_info *qi,
                                size_t max, uint8_t *out, size_t out_cap, size_t *out_len,
                                const vd_local_chase *from, vd_reply_fn reply, void *arg)
{
        struct chase *c = calloc(1, sizeof(*c));
        size_t prefix = *out_len;
        if (c == NULL || prefix < VD_HEADER_LEN + (size_t)qi->qname_len + 4)
                goto fail;
        c->cap = FIRST_CAP;
        while (c->cap < prefix + OPT_LEN)
                c->cap *= 2;
        c->resp = malloc(c->cap);
        if (c->resp == NULL)
                goto fail;
        memcpy(c->resp, out, prefix);
        c->len = prefix;
        c->question_end = VD_HEADER_LEN + (size_t)qi->qname_len + 4;
        c->answer_end = prefix;
        c->an = vd_wire_get16(out + 6);
        c->env = env;
        c->qi = *qi;
        memcpy(c->qname, qi->qname, qi->qname_len);
        c->qi.qname = c->qname;
        c->max = max < out_cap ? max : out_cap;
        c->reply = reply;
        c->reply_arg = arg;
        memcpy(c->target, from->target, from->target_len);
        c->target_len = from->target_len;
        c->target_ref = from->target_ref;
        c->hops = from->hops;
        c->alias = from->alias;
        if (c->alias && from->alias_soa_len <= sizeof(c->soa) &&
            prefix + from->alias_soa_len <= out_cap) {
                memcpy(c->soa, out + prefix, from->alias_soa_len);
                c->soa_len = from->alias_soa_len;
        }
        if (client != NULL && client->addr != NULL) {
                size_t alen = client->addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                  : sizeof(struct sockaddr_in);
                memcpy(&c->addr, client->addr, alen);
                c->has_addr = true;
        }

        c->in_start = true;
        c->client = client;
        bool done = run(c, HOP_NEXT);
        c->in_start = false;
        c->client = NULL;
        if (!done) {
                vd_count_add(&env->counters.forwarded, 1);
                return VD_QUERY_PENDING;
        }
        size_t n = finish(c);
        if (n == 0 || n > out_cap)
                goto fail_counted;
        memcpy(out, c->resp, n);
        *out_len = n;
        if (c->rcode != VD_RCODE_SERVFAIL) {
                if (c->used_upstream)
                        vd_count_add(&env->counters.cache_answers, 1);
                else
                        vd_count_add(&env->counters.local_answers, 1);
        }
        chase_free(c);
        return VD_QUERY_REPLY;
fail:
        vd_count_add(&env->counters.servfail_answers, 1);
fail_counted:
        if (c != NULL)
                chase_free(c);
        *out_len =
            vd_wire_error_response(qi, VD_RCODE_SERVFAIL, out, max < out_cap ? max : out_cap);
        if (*out_len == 0) {
                vd_count_add(&env->counters.dropped, 1);
                return VD_QUERY_DROP;
        }
        return VD_QUERY_REPLY;
}

/* cache_store.c — the store path of the cache: checks that an upstream message parses whole,
 * keeps only the records on the question's CNAME/DNAME chain and the authority records that
 * belong to its last name, works out the entry's TTL and hands the entry to the table. Must
 * not: lock a shard itself (vd_cache_insert does) or serve answers. May allocate (one block
 * per entry), never while a lock is held. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cache_int.h"
#include "vpcdns/cache.h"
#include "vpcdns/wire.h"

static _Thread_local struct scratch store_scratch;

/* --- reading the upstream message --- */

static int read_rr(const uint8_t *msg, size_t len, size_t *pos, struct rr *rr)
{
        size_t p = *pos;
        rr->start = p;
        if (vd_wire_read_name(msg, len, &p, rr->owner, &rr->owner_len, true) != 0)
                return -EBADMSG;
        p = rr->start;
        if (vd_wire_skip_rr(msg, len, &p, &rr->type, &rr->fixed) != 0)
                return -EBADMSG;
        rr->end = p;
        rr->rclass = vd_wire_get16(msg + rr->fixed + 2);
        rr->covered = rr->type;
        if (rr->type == TYPE_RRSIG) {
                if (rr->end - rr->fixed < 10 + 18) /* RFC 4034 §3.1 fixed fields */
                        return -EBADMSG;
                rr->covered = vd_wire_get16(msg + rr->fixed + 10);
        }
        *pos = p;
        return 0;
}

static bool name_eq(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
        return a_len == b_len && memcmp(a, b, a_len) == 0;
}

/* Whether lower-cased name a is b or one of b's ancestors (proper = not b itself). */
static bool name_is_suffix(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                           bool proper)
{
        size_t off = 0;
        while (off < b_len) {
                if (b_len - off == a_len && memcmp(a, b + off, a_len) == 0)
                        return !proper || off > 0;
                if (b[off] == 0)
                        break;
                off += 1 + (size_t)b[off];
        }
        return false;
}

static bool kept_get(const struct scratch *c, size_t i)
{
        return (c->kept[i / 8] >> (i % 8)) & 1;
}

static void kept_set(struct scratch *c, size_t i)
{
        c->kept[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Where the walk of the answer chain ended. */
struct chain {
        uint8_t name[VD_NAME_MAX]; /* the last name of the chain, lower-cased */
        size_t name_len;
        bool answered; /* records of the question type were found at the last name */
};

/* Keeps the DNAMEs of the answer section above the chain's current name, with their RRSIGs
 * for DO (RFC 6672: they precede the CNAME they synthesise). */
static int keep_dnames_above(struct scratch *c, struct kept *k, const vd_query_info *qi,
                             const uint8_t *msg, size_t len, size_t an_start, uint16_t ancount,
                             const struct chain *ch)
{
        struct rr rr;
        size_t pos = an_start;
        int rc;
        for (size_t i = 0; i < ancount; i++) {
                if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                        return rc;
                if (kept_get(c, i) || rr.rclass != qi->qclass || rr.covered != TYPE_DNAME ||
                    (rr.type == TYPE_RRSIG && !qi->edns_do) ||
                    !name_is_suffix(rr.owner, rr.owner_len, ch->name, ch->name_len, true))
                        continue;
                if ((rc = vd_cache_keep_record(c, k, msg, &rr)) != 0)
                        return rc;
                kept_set(c, i);
        }
        return 0;
}

/* Keeps the records of the answer section that lie on the question's chain: records of the
 * type at the current name (and, for DO, their RRSIGs); else the name's CNAME, the DNAMEs
 * above it that produced it, and their RRSIGs, and the walk moves to the CNAME's target. */
static int walk_chain(struct scratch *c, struct kept *k, const vd_query_info *qi,
                      const uint8_t *msg, size_t len, size_t an_start, uint16_t ancount,
                      struct chain *ch)
{
        struct rr rr;
        size_t pos;
        int rc;

        memcpy(ch->name, qi->qname_lower, qi->qname_len);
        ch->name_len = qi->qname_len;
        ch->answered = false;
        memset(c->kept, 0, (size_t)ancount / 8 + 1);

        for (int hop = 0;; hop++) {
                /* A CNAME question answered by a CNAME a DNAME synthesised: the DNAME (and
                 * its RRSIGs) go first, as the upstream sent them (RFC 6672 §3.1). */
                if (qi->qtype == VD_TYPE_CNAME &&
                    (rc = keep_dnames_above(c, k, qi, msg, len, an_start, ancount, ch)) != 0)
                        return rc;
                /* Records of the question type at the current name. */
                pos = an_start;
                for (size_t i = 0; i < ancount; i++) {
                        if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                return rc;
                        if (kept_get(c, i) || rr.rclass != qi->qclass ||
                            !name_eq(rr.owner, rr.owner_len, ch->name, ch->name_len))
                                continue;
                        bool match =
                            rr.type == qi->qtype ||
                            (qi->edns_do && rr.type == TYPE_RRSIG && rr.covered == qi->qtype);
                        if (!match)
                                continue;
                        if ((rc = vd_cache_keep_record(c, k, msg, &rr)) != 0)
                                return rc;
                        kept_set(c, i);
                        if (rr.type == qi->qtype)
                                ch->answered = true;
                }
                if (ch->answered)
                        return 0;

                /* The current name's CNAME (the first one; a name has at most one). */
                size_t cname_index = SIZE_MAX;
                struct rr cname;
                pos = an_start;
                for (size_t i = 0; i < ancount && cname_index == SIZE_MAX; i++) {
                        if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                return rc;
                        if (rr.type == VD_TYPE_CNAME && rr.rclass == qi->qclass &&
                            !kept_get(c, i) &&
                            name_eq(rr.owner, rr.owner_len, ch->name, ch->name_len)) {
                                cname_index = i;
                                cname = rr;
                        }
                }
                if (cname_index == SIZE_MAX)
                        return 0; /* the chain ends here without an answer */
                if (hop >= MAX_CHAIN_HOPS)
                        return -ELOOP;

                /* DNAMEs above the current name (RFC 6672: they precede the CNAME they
                 * synthesise), then the CNAME, each with its RRSIGs for DO. */
                for (int pass = 0; pass < 2; pass++) {
                        pos = an_start;
                        for (size_t i = 0; i < ancount; i++) {
                                if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                        return rc;
                                if (kept_get(c, i) || rr.rclass != qi->qclass)
                                        continue;
                                if (rr.type == TYPE_RRSIG && !qi->edns_do)
                                        continue;
                                bool take;
                                if (pass == 0)
                                        take = rr.covered == TYPE_DNAME &&
                                               name_is_suffix(rr.owner, rr.owner_len, ch->name,
                                                              ch->name_len, true);
                                else
                                        take = rr.covered == VD_TYPE_CNAME &&
                                               name_eq(rr.owner, rr.owner_len, ch->name,
                                                       ch->name_len) &&
                                               (rr.type == TYPE_RRSIG || i == cname_index);
                                if (!take)
                                        continue;
                                if ((rc = vd_cache_keep_record(c, k, msg, &rr)) != 0)
                                        return rc;
                                kept_set(c, i);
                        }
                }
                size_t p = cname.fixed + 10;
                if (vd_wire_read_name(msg, cname.end, &p, ch->name, &ch->name_len, true) != 0 ||
                    p != cname.end)
                        return -EBADMSG;
        }
}

/* Keeps from the authority section the SOA of the zone that holds the chain's last name (for
 * a negative answer) and, for DO, the denial records and their RRSIGs. Returns the number of
 * records kept. */
static int keep_authority(struct scratch *c, struct kept *k, const vd_query_info *qi,
                          const uint8_t *msg, size_t len, size_t ns_start, uint16_t nscount,
                          const struct chain *ch, bool negative, size_t *kept_count)
{
        uint8_t soa_owner[VD_NAME_MAX];
        size_t soa_owner_len = 0;
        struct rr rr;
        size_t pos = ns_start;
        int rc;

        *kept_count = 0;
        if (negative) {
                for (size_t i = 0; i < nscount && !k->have_soa; i++) {
                        if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                                return rc;
                        if (rr.type != VD_TYPE_SOA || rr.rclass != qi->qclass ||
                            !name_is_suffix(rr.owner, rr.owner_len, ch->name, ch->name_len, false))
                                continue;
                        if ((rc = vd_cache_keep_record(c, k, msg, &rr)) != 0)
                                return rc;
                        k->have_soa = true;
                        memcpy(soa_owner, rr.owner, rr.owner_len);
                        soa_owner_len = rr.owner_len;
                        (*kept_count)++;
                }
                if (!k->have_soa)
                        return -ENODATA;
        }
        if (!qi->edns_do)
                return 0;
        pos = ns_start;
        for (size_t i = 0; i < nscount; i++) {
                if ((rc = read_rr(msg, len, &pos, &rr)) != 0)
                        return rc;
                if (rr.rclass != qi->qclass)
                        continue;
                bool take = rr.type == TYPE_NSEC || rr.type == TYPE_NSEC3 ||
                            (rr.type == TYPE_RRSIG &&
                             (rr.covered == TYPE_NSEC || rr.covered == TYPE_NSEC3 ||
                              (rr.covered == VD_TYPE_SOA && k->have_soa &&
                               name_eq(rr.owner, rr.owner_len, soa_owner, soa_owner_len))));
                if (!take)
                        continue;
                if ((rc = vd_cache_keep_record(c, k, msg, &rr)) != 0)
                        return rc;
                (*kept_count)++;
        }
        return 0;
}

/* Question types whose answers are never stored: ANY (RFC 8482 answers vary), zone transfers
 * and other meta types, OPT. */
static bool qtype_cacheable(uint16_t qtype)
{
        if (qtype == VD_TYPE_OPT || qtype == 0)
                return false;
        return qtype < 128 || qtype > 255;
}

int vd_cache_store(vd_cache *c, const vd_query_info *qi, const uint8_t *answer, size_t len,
                   uint64_t now_ms)
{
        struct scratch *scratch = &store_scratch;
        uint8_t qname[VD_NAME_MAX];
        size_t qname_len;
        struct kept k = {.min_ttl = UINT32_MAX};
        struct chain ch;
        struct rr rr;
        int rc;

        if (c == NULL || qi == NULL || answer == NULL || !qi->question_ok)
                return -EINVAL;
        if (c->opt.max_entries == 0)
                return -ENOSPC;
        if (!qtype_cacheable(qi->qtype))
                return -ENOTSUP;
        /* Answers to a CD=1 question may hold data the upstream could not validate; they are
         * never served to other clients. */
        if (qi->flags & VD_FLAG_CD)
                return -ENOTSUP;
        if (len < VD_HEADER_LEN)
                return -EBADMSG;
        uint16_t flags = vd_wire_get16(answer + 2);
        if (!(flags & VD_FLAG_QR) || VD_OPCODE(flags) != 0 || vd_wire_get16(answer + 4) != 1)
                return -EBADMSG;
        if (flags & VD_FLAG_TC)
                return -EMSGSIZE;
        uint8_t rcode = flags & 0x0Fu;
        if (rcode != VD_RCODE_NOERROR && rcode != VD_RCODE_NXDOMAIN && rcode != VD_RCODE_SERVFAIL)
                return -ENOTSUP;

        size_t pos = VD_HEADER_LEN;
        if (vd_wire_read_name(answer, len, &pos, qname, &qname_len, true) != 0 ||
            !name_eq(qname, qname_len, qi->qname_lower, qi->qname_len) || pos + 4 > len ||
            vd_wire_get16(answer + pos) != qi->qtype ||
            vd_wire_get16(answer + pos + 2) != qi->qclass)
                return -EBADMSG;
        pos += 4;

        /* The whole message must parse: a malformed one is not trusted in any part. */
        uint16_t an = vd_wire_get16(answer + 6);
        uint16_t ns = vd_wire_get16(answer + 8);
        uint16_t ar = vd_wire_get16(answer + 10);
        size_t an_start = pos, ns_start = 0;
        bool seen_opt = false;
        for (size_t i = 0; i < (size_t)an + ns + ar; i++) {
                if (i == an)
                        ns_start = pos;
                if (read_rr(answer, len, &pos, &rr) != 0)
                        return -EBADMSG;
                if (rr.type != VD_TYPE_OPT)
                        continue;
                if (i < (size_t)an + ns || seen_opt || rr.owner_len != 1)
                        return -EBADMSG;
                seen_opt = true;
                if (answer[rr.fixed + 4] != 0) /* extended rcode (BADVERS, ...) */
                        return -ENOTSUP;
        }
        if (pos != len) /* octets after the last record: not a well-formed message */
                return -EBADMSG;
        if (ns_start == 0) /* no authority or additional records */
                ns_start = pos;

        /* Records are written as they will follow the question in every response: names may
         * point into the question, whose length every client asking this key shares. */
        k.base = VD_HEADER_LEN + qi->qname_len + 4;
        vd_cache_add_targets(scratch, &k, qi->qname_lower, qi->qname_len, qi->qname_len,
                             VD_HEADER_LEN);

        uint32_t ttl;
        uint16_t ancount_kept = 0, nscount_kept = 0;
        size_t an_len = 0;
        if (rcode == VD_RCODE_SERVFAIL) {
                ttl = __atomic_load_n(&c->opt.servfail_ttl, __ATOMIC_RELAXED);
                k.min_ttl = ttl;
        } else {
                if ((rc = walk_chain(scratch, &k, qi, answer, len, an_start, an, &ch)) != 0)
                        return rc;
                ancount_kept = (uint16_t)k.n;
                an_len = k.len;
                bool negative = !ch.answered;
                if (!negative && rcode != VD_RCODE_NOERROR)
                        return -EBADMSG; /* NXDOMAIN with an answer: inconsistent */
                size_t auth = 0;
                if ((rc = keep_authority(scratch, &k, qi, answer, len, ns_start, ns, &ch, negative,
                                         &auth)) != 0)
                        return rc;
                nscount_kept = (uint16_t)auth;
                if (negative) {
                        ttl = k.min_ttl < k.soa_minimum ? k.min_ttl : k.soa_minimum;
                        uint32_t most = __atomic_load_n(&c->opt.max_neg_ttl, __ATOMIC_RELAXED);
                        if (ttl > most)
                                ttl = most;
                } else {
                        ttl = k.min_ttl;
                        uint32_t least = __atomic_load_n(&c->opt.min_ttl, __ATOMIC_RELAXED);
                        uint32_t most = __atomic_load_n(&c->opt.max_ttl, __ATOMIC_RELAXED);
                        if (ttl < least)
                                ttl = least;
                        if (ttl > most)
                                ttl = most;
                }
        }
        if (ttl == 0)
                return -EAGAIN;

        size_t meta_size = k.n * sizeof(uint32_t);
        struct entry *e = malloc(sizeof(*e) + meta_size + qi->qname_len + k.len);
        if (e == NULL)
                return -ENOMEM;
        memset(e, 0, sizeof(*e));
        e->hash = key_hash(c, qi->qname_lower, qi->qname_len, qi->qtype, qi->qclass, qi->edns_do);
        e->stored_ms = now_ms;
        e->ttl = ttl;
        e->orig_ttl = k.min_ttl;
        e->data_len = (uint32_t)k.len;
        e->an_len = (uint32_t)an_len;
        e->qtype = qi->qtype;
        e->qclass = qi->qclass;
        e->nrecords = (uint16_t)k.n;
        e->ancount = ancount_kept;
        e->nscount = nscount_kept;
        e->rcode = rcode;
        e->key_len = qi->qname_len;
        e->dnssec_ok = qi->edns_do;
        e->ad = (flags & VD_FLAG_AD) != 0 && rcode != VD_RCODE_SERVFAIL;
        memcpy(e->meta, scratch->meta, meta_size);
        memcpy(entry_key(e), qi->qname_lower, qi->qname_len);
        memcpy(entry_data(e), scratch->data, k.len);

        vd_cache_insert(c, qi, e, now_ms);
        return 0;
}

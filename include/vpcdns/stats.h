/* stats.h — labelled query statistics for a metrics endpoint: requests by transport, address
 * family and query type; responses by rcode and by where the answer came from; a histogram of
 * response times per source and one of upstream round trips per upstream server.
 *
 * Contract: each worker owns one vd_stats (in its query env) and is its only writer, through
 * the vd_stats_* recorders below — relaxed single-writer counting (counters.h): no lock, no
 * atomic read-modify-write, no allocation, no formatting on the answer path. Another thread
 * may read a worker's stats at any time with vd_stats_add (relaxed loads) into a sum of its
 * own, and write that sum as Prometheus text with vd_stats_write_prometheus. The upstream
 * server labels are written before the worker runs (vd_stats_set_upstream) and only read
 * afterwards. */
#ifndef VPCDNS_STATS_H
#define VPCDNS_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "vpcdns/common.h"
#include "vpcdns/counters.h"
#include "vpcdns/metrics.h"

typedef enum vd_stats_proto { VD_STATS_UDP = 0, VD_STATS_TCP, VD_STATS_N_PROTO } vd_stats_proto;

typedef enum vd_stats_family { VD_STATS_V4 = 0, VD_STATS_V6, VD_STATS_N_FAMILY } vd_stats_family;

/* The query types counted by name; every other type counts as "other". */
typedef enum vd_stats_type {
        VD_STATS_TYPE_A = 0,
        VD_STATS_TYPE_AAAA,
        VD_STATS_TYPE_CNAME,
        VD_STATS_TYPE_PTR,
        VD_STATS_TYPE_MX,
        VD_STATS_TYPE_TXT,
        VD_STATS_TYPE_SRV,
        VD_STATS_TYPE_NS,
        VD_STATS_TYPE_SOA,
        VD_STATS_TYPE_HTTPS,
        VD_STATS_TYPE_SVCB,
        VD_STATS_TYPE_ANY,
        VD_STATS_TYPE_OTHER, /* also a query without a readable question */
        VD_STATS_N_TYPE
} vd_stats_type;

typedef enum vd_stats_rcode {
        VD_STATS_NOERROR = 0,
        VD_STATS_FORMERR,
        VD_STATS_SERVFAIL,
        VD_STATS_NXDOMAIN,
        VD_STATS_NOTIMP,
        VD_STATS_REFUSED,
        VD_STATS_RCODE_OTHER,
        VD_STATS_N_RCODE
} vd_stats_rcode;

/* Where a response came from. */
typedef enum vd_stats_source {
        VD_STATS_SOURCE_LOCAL = 0, /* local data or a special-use name */
        VD_STATS_SOURCE_CACHE,     /* the answer cache, or a CNAME chase answered at once */
        VD_STATS_SOURCE_UPSTREAM, /* an answer that came later: the upstream's, or the resolver's */
        VD_STATS_SOURCE_STALE,    /* an expired cache entry given at once (the upstream budget) */
        VD_STATS_SOURCE_REFUSED,  /* refused by policy: class, zone transfer, the loop probe */
        VD_STATS_SOURCE_ERROR,    /* made here: FORMERR, NOTIMP, BADVERS; SERVFAIL made or cached */
        VD_STATS_N_SOURCE
} vd_stats_source;

/* Histogram buckets: upper bounds 2^13 ns (8.192 µs) doubling to 2^33 ns (8.59 s), then +Inf. */
#define VD_STATS_BUCKET_MIN_SHIFT 13
#define VD_STATS_BUCKETS 21 /* finite buckets; index VD_STATS_BUCKETS is +Inf */

#define VD_STATS_MAX_UPSTREAMS 32 /* upstream servers with an RTT histogram; more share none */
#define VD_STATS_LABEL_MAX 64     /* "[ipv6%scope]:port" */

/* Counts per bucket (not cumulative: the writer adds them up) and the sum of the values. */
typedef struct vd_stats_histogram {
        uint64_t bucket[VD_STATS_BUCKETS + 1];
        uint64_t sum_ns;
} vd_stats_histogram;

typedef struct vd_stats_upstream {
        char server[VD_STATS_LABEL_MAX]; /* "" when the slot is unused */
        vd_stats_histogram rtt;
} vd_stats_upstream;

typedef struct vd_stats {
        uint64_t requests[VD_STATS_N_PROTO][VD_STATS_N_FAMILY][VD_STATS_N_TYPE];
        uint64_t responses[VD_STATS_N_RCODE];
        uint64_t by_source[VD_STATS_N_SOURCE];
        vd_stats_histogram duration[VD_STATS_N_SOURCE];
        vd_stats_upstream upstream[VD_STATS_MAX_UPSTREAMS];
} vd_stats;

/* The monotonic clock in nanoseconds (what uv_hrtime reads), for response times. */
static inline uint64_t vd_stats_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The bucket a value falls in: the first whose upper bound is at least ns. */
static inline unsigned vd_stats_bucket(uint64_t ns)
{
        if (ns <= (1ull << VD_STATS_BUCKET_MIN_SHIFT))
                return 0;
        unsigned i = (unsigned)(64 - __builtin_clzll(ns - 1)) - VD_STATS_BUCKET_MIN_SHIFT;
        return i > VD_STATS_BUCKETS ? VD_STATS_BUCKETS : i;
}

/* The rcode of a DNS message's header, for vd_stats_response (16, "other", when too short). */
static inline unsigned vd_stats_rcode_of(const uint8_t *msg, size_t len)
{
        return len >= 4 ? msg[3] & 0xFu : 16u;
}

/* The recorders are inline: they run on every query. */

#define VD_STATS_QTYPE_SVCB 64
#define VD_STATS_QTYPE_HTTPS 65

/* The label of a question type. */
static inline vd_stats_type vd_stats_type_of(uint16_t qtype)
{
        switch (qtype) {
        case VD_TYPE_A:
                return VD_STATS_TYPE_A;
        case VD_TYPE_AAAA:
                return VD_STATS_TYPE_AAAA;
        case VD_TYPE_CNAME:
                return VD_STATS_TYPE_CNAME;
        case VD_TYPE_PTR:
                return VD_STATS_TYPE_PTR;
        case VD_TYPE_MX:
                return VD_STATS_TYPE_MX;
        case VD_TYPE_TXT:
                return VD_STATS_TYPE_TXT;
        case VD_TYPE_SRV:
                return VD_STATS_TYPE_SRV;
        case VD_TYPE_NS:
                return VD_STATS_TYPE_NS;
        case VD_TYPE_SOA:
                return VD_STATS_TYPE_SOA;
        case VD_STATS_QTYPE_HTTPS:
                return VD_STATS_TYPE_HTTPS;
        case VD_STATS_QTYPE_SVCB:
                return VD_STATS_TYPE_SVCB;
        case VD_TYPE_ANY:
                return VD_STATS_TYPE_ANY;
        default:
                return VD_STATS_TYPE_OTHER;
        }
}

/* Counting one query as it arrives: its transport, the family of the client's address
 * (AF_INET6 is v6, anything else v4) and its question type (qtype_known false: no question
 * could be read). */
static inline void vd_stats_request(vd_stats *s, bool tcp, int sa_family, bool qtype_known,
                                    uint16_t qtype)
{
        vd_stats_type t = qtype_known ? vd_stats_type_of(qtype) : VD_STATS_TYPE_OTHER;
        vd_stats_family f = sa_family == AF_INET6 ? VD_STATS_V6 : VD_STATS_V4;
        vd_count_add(&s->requests[tcp ? VD_STATS_TCP : VD_STATS_UDP][f][t], 1);
}

/* One value into a histogram. */
static inline void vd_stats_observe(vd_stats_histogram *h, uint64_t ns)
{
        vd_count_add(&h->bucket[vd_stats_bucket(ns)], 1);
        vd_count_add(&h->sum_ns, ns);
}

/* Counting one response handed to the transport: rcode is the header's (the low 4 bits),
 * elapsed_ns the time since the query arrived. */
static inline void vd_stats_response(vd_stats *s, unsigned rcode, vd_stats_source source,
                                     uint64_t elapsed_ns)
{
        unsigned r = rcode <= VD_RCODE_REFUSED ? rcode : VD_STATS_RCODE_OTHER;
        vd_count_add(&s->responses[r], 1);
        if ((unsigned)source >= VD_STATS_N_SOURCE)
                source = VD_STATS_SOURCE_ERROR;
        vd_count_add(&s->by_source[source], 1);
        vd_stats_observe(&s->duration[source], elapsed_ns);
}

/* The label of upstream slot i ("ADDR:PORT"); before the worker runs. Ignored past the last
 * slot. */
void vd_stats_set_upstream(vd_stats *s, unsigned i, const char *server);
/* One round trip to upstream slot i (ignored past the last slot). */
void vd_stats_upstream_rtt(vd_stats *s, unsigned i, uint64_t rtt_ns);

/* sum += w, read with relaxed loads while w's worker may still be counting. Upstream labels:
 * a slot's label is taken from w when sum has none there yet; a slot labelled otherwise in
 * sum is added under its own label's slot when there is one, else to a free slot. */
void vd_stats_add(vd_stats *sum, const vd_stats *w);

/* Writes sum as Prometheus text exposition (HELP, TYPE, samples) to out. */
void vd_stats_write_prometheus(vd_text *out, const vd_stats *sum);

#endif

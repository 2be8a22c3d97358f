/* qlog.h — the query log: every answer (or a sampled share of them) written as Route 53
 * Resolver style JSON lines or as dnstap (Frame Streams) to a file or a unix socket.
 *
 * Logging never blocks answering. Each worker owns one ring (vd_qlog_ring): it copies the
 * query or the response, the client's and our address, the transport and the time into it
 * and goes on; one writer thread drains every ring, formats and writes. When a ring is full
 * the entry is dropped and counted in the worker's query_log_dropped counter. A transport
 * pays one predictable branch per message when logging is off (its ring pointer is NULL).
 *
 * Sampling is decided from the DNS message ID and the client port, so a query and its
 * response are sampled alike without state between them.
 *
 * Threads: vd_qlog_new/start/free on the server's thread; vd_qlog_put on the ring's worker
 * only; vd_qlog_reopen from any thread (SIGUSR1: the writer closes and opens the file again
 * before its next write, for logrotate). */
#ifndef VPCDNS_QLOG_H
#define VPCDNS_QLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "vpcdns/common.h"
#include "vpcdns/config.h"

typedef struct vd_qlog vd_qlog;
typedef struct vd_qlog_ring vd_qlog_ring;

/* What one entry is: a client's query, our response to it. */
#define VD_QLOG_QUERY 1
#define VD_QLOG_RESPONSE 2
/* What we sent upstream and what came back (dnstap only; peer is then the upstream). */
#define VD_QLOG_FWD_QUERY 3
#define VD_QLOG_FWD_RESPONSE 4

/* The account, region and VPC a route53 line names ("" when unknown). */
typedef struct vd_qlog_ids {
        char account_id[32];
        char region[32];
        char vpc_id[64];
} vd_qlog_ids;

/* Reads them from DIR/describe-vpc-endpoints.json of each snapshot directory: OwnerId, VpcId
 * and the region inside ServiceName, each kept only when every endpoint agrees on it. vpc
 * (the key vpc; NULL or "" for none) counts that VPC's endpoints only, so that a capture of
 * several VPCs served with vpc names it. */
void vd_qlog_ids_read(char *const *dirs, size_t n_dirs, const char *vpc, vd_qlog_ids *ids);

/* Opens the log (a dnstap socket that is not there yet is tried again later) and makes one
 * ring per worker. Test hooks, read here: VPCDNS_TEST_QLOG_RING_KIB (ring size, default
 * 1024 KiB) and VPCDNS_TEST_QLOG_STALL_MS (the writer sleeps that long before each pass). */
int vd_qlog_new(const vd_config_qlog *cfg, const vd_qlog_ids *ids, unsigned n_rings, vd_qlog **out,
                vd_error *err);
vd_qlog_ring *vd_qlog_ring_get(vd_qlog *q, unsigned index);
/* Starts the writer thread. */
int vd_qlog_start(vd_qlog *q);
/* Changes the share of queries logged (a reload), any thread while the workers log. */
void vd_qlog_set_sample(vd_qlog *q, unsigned sample_ppm);
/* Asks the writer to reopen the file (a no-op for a socket). */
void vd_qlog_reopen(vd_qlog *q);
/* After a reload: asks the writer to read the ids again from these snapshot directories
 * (copied; the reading happens on the writer thread, and lines written before it keep the
 * old values). NULL q is fine. */
void vd_qlog_refresh_ids(vd_qlog *q, char *const *dirs, size_t n_dirs, const char *vpc);
/* Stops the writer after it drained the rings (the workers must have stopped), closes the
 * log and frees everything. NULL is fine. */
void vd_qlog_free(vd_qlog *q);

/* Whether the message (a query or its response) falls in the sample. */
bool vd_qlog_sampled(const vd_qlog_ring *r, const uint8_t *msg, size_t len, uint16_t port);

/* Copies one entry into the ring, or counts it in *dropped when there is no room. peer is
 * the client, local our address (NULL: unknown). */
void vd_qlog_put(vd_qlog_ring *r, unsigned kind, bool tcp, const struct sockaddr *peer,
                 const struct sockaddr *local, const uint8_t *msg, size_t len, uint64_t *dropped);

/* What a route53 line holds besides the response itself (all text NUL-terminated). */
typedef struct vd_qlog_route53_meta {
        const char *account_id, *region, *vpc_id; /* "" when unknown */
        const char *timestamp;                    /* 2026-12-03T04:59:13.899Z */
        const char *srcaddr;
        unsigned srcport;
        bool tcp;
        const char *endpoint; /* our address:port, for srcids.resolver_endpoint */
} vd_qlog_route53_meta;

/* An address as text into text (INET6_ADDRSTRLEN bytes): IPv4 written here (glibc's inet_ntop
 * formats it with sprintf, a third of a line's cost), IPv6 by inet_ntop; "?" if it fails. */
void vd_qlog_ip_text(int family, const void *addr, char *text);
/* Decimal text of v into text (11 bytes at least, NUL-terminated), without printf; returns
 * its length. */
size_t vd_qlog_uint_text(unsigned v, char *text);

/* One line of the route53 format, newline included, for a response's wire form (any bytes:
 * what cannot be read is left empty). Returns its length, or 0 when cap is too small; never
 * allocates. */
size_t vd_qlog_route53_format(const uint8_t *msg, size_t len, const vd_qlog_route53_meta *m,
                              char *buf, size_t cap);

#endif

/* health.h — the ENI prober: TCP connect probes to every endpoint network interface (ENI)
 * address of the published snapshots, and the up/down state the answer path reads.
 *
 * One prober per process, on a thread of its own with its own libuv loop; it never runs on a
 * worker and a worker never waits for it. Every interval_ms it connects once to each distinct
 * ENI address at port, the probes spread evenly over the interval (not a burst); a connect
 * that is not established within timeout_ms is a failure. An address that fails `fall` probes
 * in a row goes down, one that passes `rise` in a row comes back up; every address starts up.
 * A change is written into every snapshot entry with that address (vd_snapshot_eni_set_up),
 * in every snapshot the prober was given, so the answer path leaves a down address out (and
 * answers all of an RRset when all of it is down: fail open).
 *
 * Operator log (one line per change): eni_health_start, eni_health_targets, eni_down, eni_up,
 * eni_fail_open, eni_fail_open_end (docs/operator-log.md). Metrics: vd_health_write_metrics.
 *
 * Threads: vd_health_retarget, vd_health_set_options, vd_health_status and
 * vd_health_write_metrics may be called from any thread; the state is under one mutex, held
 * briefly by the prober thread after each probe. */
#ifndef VPCDNS_HEALTH_H
#define VPCDNS_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vpcdns/common.h"
#include "vpcdns/metrics.h"
#include "vpcdns/snapshot.h"

typedef struct vd_health_options {
        unsigned port;        /* TCP port probed on every address */
        unsigned interval_ms; /* each address is probed once per interval */
        unsigned timeout_ms;  /* a connect not done by then fails; at most interval_ms */
        unsigned fall;        /* failures in a row that take an address down */
        unsigned rise;        /* successes in a row that bring a down address back */
} vd_health_options;

typedef struct vd_health vd_health;

/* Starts the prober thread with nothing to probe yet. 0, or a negative code with err set. */
int vd_health_new(const vd_health_options *o, vd_health **out, vd_error *err);

/* New options (a reload): the next probes use them; the state of every address is kept. */
void vd_health_set_options(vd_health *h, const vd_health_options *o);

/* Makes the ENI tables of snaps[0..n) the set probed, before they are published: an address
 * that was probed keeps its state and counters, which are written into the entries of snaps
 * here (so workers never see it up for a moment); a new address starts up; an address no
 * longer in any of snaps stops being probed. Takes a reference to each of snaps and releases
 * those of the previous call. n may be 0 (nothing to probe). Returns 0 or -ENOMEM (the
 * previous targets then stay). */
int vd_health_retarget(vd_health *h, vd_snapshot *const *snaps, size_t n);

/* The state of one address (family AF_INET or AF_INET6, addr 4 or 16 bytes). */
typedef struct vd_health_status {
        bool up;
        unsigned failures_in_row;
        unsigned successes_in_row;
        uint64_t probes;   /* probes finished */
        uint64_t failures; /* probes failed */
} vd_health_status;

/* false when the address is not probed. */
bool vd_health_address_status(vd_health *h, int family, const uint8_t *addr, vd_health_status *out);

/* Endpoints whose every address is down (answered fail open) at the moment. */
size_t vd_health_failing_open(vd_health *h);

/* The prober's metric families (docs/metrics.md): vpcdns_eni_up,
 * vpcdns_eni_probe_failures_total, vpcdns_eni_fail_open_total, vpcdns_eni_failing_open.
 * NULL h writes the families with no samples. */
void vd_health_write_metrics(vd_health *h, vd_text *out);

/* Stops probing (probes in flight are cancelled), closes every handle, joins the thread,
 * releases the snapshots and frees h. NULL is fine. */
void vd_health_stop(vd_health *h);

#endif

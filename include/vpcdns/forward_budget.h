/* forward_budget.h — the inside of the process-wide upstream budget (vd_upstream_budget in
 * forward.h): one slot per upstream address, each a token bucket behind its own mutex. The
 * forwarders of every worker take a slot for each of their servers when they are made, and
 * check or take a token only for a send that is about to go upstream; nothing on the answer
 * path (local data, cache hits) touches it. A slot also counts the forwarders that have its
 * server down, so that a server going down on every worker is logged once. Used by the forwarder
 * (resolver/forward*.c) only; public so that the budget can be tested across threads without a
 * network. */
#ifndef VPCDNS_FORWARD_BUDGET_H
#define VPCDNS_FORWARD_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#include "vpcdns/forward.h"

typedef struct vd_upstream_budget_slot vd_upstream_budget_slot;

/* The slot of addr (the same one for every caller), made on first use; NULL when out of
 * memory. Thread-safe. The slot lives as long as the budget. */
vd_upstream_budget_slot *vd_upstream_budget_slot_for(vd_upstream_budget *b, const vd_addr *addr);

/* Whether a token is there at now_ms (milliseconds of the monotonic clock, as uv_now and
 * uv_hrtime count; a clock slightly behind another thread's only refills nothing). */
bool vd_upstream_budget_has(vd_upstream_budget_slot *s, uint64_t now_ms);
/* Takes a token when there is one. */
bool vd_upstream_budget_take(vd_upstream_budget_slot *s, uint64_t now_ms);

/* The address's health across the workers, for the operator log: each forwarder reports when
 * it starts to avoid the server (down) and when the server answers it again (up). True for
 * the one report that changes the process's view: the first down while no forwarder had it
 * down, the last up that leaves none with it down. Thread-safe; called on a change of health
 * only, never per query. */
bool vd_upstream_budget_report_down(vd_upstream_budget_slot *s);
bool vd_upstream_budget_report_up(vd_upstream_budget_slot *s);

#endif

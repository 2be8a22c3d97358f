/* watch.h — keeping local data fresh without a signal: the inputs the data is read from, a
 * content fingerprint of them (so a capture identical to the loaded one reloads nothing), and
 * a file-system watch that calls back once the inputs have settled after a change.
 *
 * Contract:
 * - vd_inputs is a plain set of paths (files or directories). vd_inputs_from_config lists what
 *   a reload reads; what is watched and what is fingerprinted both come from that one list,
 *   so adding an input (the config file, say) is one vd_inputs_add there.
 * - A fingerprint reads every byte of every input (a directory: the names and bytes of its
 *   regular files, in name order); it never fails: an input it cannot read gets a hash of its
 *   own that matches no content, so the reload that follows reads it and reports the error.
 * - The watch (libuv fs events) only decides WHEN: it calls its callback on the loop it was
 *   made on, never on another thread, and never more often than the quiet time allows. It
 *   reads no file content and knows nothing of snapshots. */
#ifndef VPCDNS_WATCH_H
#define VPCDNS_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vpcdns/config.h"

/* Every snapshot directory (and its hosted-zones/), zone file and hosted zone file, and room
 * for a few more (the config file). */
#define VD_INPUTS_MAX (4 * VD_MAX_SOURCES + 8)

/* ---- the inputs: a set of paths ------------------------------------------------------------ */

typedef struct vd_inputs {
        char *path[VD_INPUTS_MAX]; /* owned */
        size_t n;
} vd_inputs;

void vd_inputs_init(vd_inputs *in);
void vd_inputs_free(vd_inputs *in);
/* Adds a copy of path unless the set holds it already. 0, -ENOSPC when full, -ENOMEM. */
int vd_inputs_add(vd_inputs *in, const char *path);
/* Replaces *out (freed first) with a copy of in. 0 or -ENOMEM (out then empty). */
int vd_inputs_copy(vd_inputs *out, const vd_inputs *in);
/* What a reload of cfg reads: every snapshot directory and zone file. 0 or -errno. */
int vd_inputs_from_config(const vd_config *cfg, vd_inputs *out);

/* ---- content fingerprints ------------------------------------------------------------------ */

typedef struct vd_fingerprint {
        uint64_t hash[VD_INPUTS_MAX]; /* one per input, in the order of the set */
        size_t n;
        bool valid; /* false: matches nothing (never taken, or taken while files changed) */
} vd_fingerprint;

/* Reads every input and hashes its content into *out (valid). Blocks on file I/O: never on
 * a worker. */
void vd_fingerprint_take(const vd_inputs *in, vd_fingerprint *out);
/* True when both are valid and every input's hash is the same. */
bool vd_fingerprint_equal(const vd_fingerprint *a, const vd_fingerprint *b);
/* -1 when equal; else the index of the first input whose hash differs (0 when either is
 * invalid or they cover different sets). */
long vd_fingerprint_first_change(const vd_fingerprint *was, const vd_fingerprint *now);

/* ---- debounce: when a burst of events has settled (pure) ----------------------------------- */

typedef struct vd_debounce {
        uint64_t quiet_ms; /* fire once no event came for this long */
        uint64_t max_ms;   /* ...but at the latest this long after the first unsettled event */
        uint64_t first;    /* when the first event of the burst came (ms) */
        uint64_t last;     /* when the latest event came */
        bool pending;
} vd_debounce;

void vd_debounce_init(vd_debounce *d, uint64_t quiet_ms, uint64_t max_ms);
/* An event at now_ms: returns how long to wait (ms) before asking vd_debounce_due. */
uint64_t vd_debounce_event(vd_debounce *d, uint64_t now_ms);
/* At now_ms: true (and the burst is over) when it is time to act; else false with *wait_ms
 * the time left, or 0 when nothing is pending. */
bool vd_debounce_due(vd_debounce *d, uint64_t now_ms, uint64_t *wait_ms);

/* ---- the watch ---------------------------------------------------------------------------- */

typedef struct vd_watch vd_watch;

/* Called on the watch's loop once the inputs have settled after a change. path names the
 * first input a change was seen for (borrowed for the call). */
typedef void (*vd_watch_fn)(void *arg, const char *path);

#define VD_WATCH_QUIET_MS 250 /* no event for this long: the change has settled */
#define VD_WATCH_MAX_MS 2000  /* a stream of events that never stops still reloads this often */

/* Watches every input on loop: the path itself (a directory sees the files in it change) and
 * its parent directory for its own name, so replacing it by a rename or a symlink swap is
 * seen; for a symlink, the target's parent too. Inputs that cannot be watched now are
 * logged (event watch_error) and seen again at the next vd_watch_rearm. 0 or -errno. */
int vd_watch_new(uv_loop_t *loop, const vd_inputs *in, uint64_t quiet_ms, uint64_t max_ms,
                 vd_watch_fn fn, void *arg, vd_watch **out);
/* Drops every file-system watch and makes them again from the paths: after a reload, since a
 * replaced directory or file is a new inode. A pending debounce is kept. */
void vd_watch_rearm(vd_watch *w);
/* Replaces the watched set (a copy is taken) and re-arms. 0 or -ENOMEM (the old set stays). */
int vd_watch_set_inputs(vd_watch *w, const vd_inputs *in);
/* How many file-system watches are armed now (for tests and the log). */
size_t vd_watch_armed(const vd_watch *w);
/* Closes every handle; the memory goes once the loop has run their close callbacks. The
 * callback is not called again. w may be NULL. */
void vd_watch_close(vd_watch *w);

#endif

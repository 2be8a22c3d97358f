/* state.h — the last local data that loaded (key state_dir), kept so that a start whose
 * configured data does not load can still serve. A load copies its inputs into a staging
 * directory first, loads the originals, and only when the load succeeded and the originals are
 * still the files copied does the staging directory replace the last-good copy (one rename).
 * A reader therefore never sees half a copy, and the copy is always data that loaded.
 *
 * Layout under STATE_DIR (documented in docs/configuration.md, key state_dir):
 *   last-good/MANIFEST        "snapshot N ORIGINAL-PATH", "zone N ORIGINAL-PATH" and
 *                             "hosted-zone N ORIGINAL-PATH" lines,
 *                             in the order of the config, then "saved UNIX-SECONDS"
 *   last-good/snapshot-N/     the regular files of snapshot directory N (not recursive)
 *   last-good/zone-N/NAME     zone file N under its own name
 *   last-good/hosted-zone-N/NAME  hosted zone file N (key hosted_zones) under its own name
 * A snapshot directory's hosted-zones/ directory is copied with it (its regular files).
 *   .staging-PID/             a copy being made; removed when it is committed or discarded
 *
 * The copy is made by whoever loads (the user vpcdns runs as after a reload), so STATE_DIR must
 * be writable by that user. Failing to save never fails a load: it is logged
 * (state_save_failed) and the previous copy stays. Nothing here parses the data. */
#ifndef VPCDNS_STATE_H
#define VPCDNS_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "vpcdns/common.h"
#include "vpcdns/config.h"

typedef struct vd_state_stage vd_state_stage;

/* Copies the regular files of each snapshot directory and each zone file into a new staging
 * directory under state_dir (made, mode 0750, when missing). Returns NULL when it cannot (the
 * reason is logged as state_save_failed); the caller loads anyway. */
vd_state_stage *vd_state_stage_new(const char *state_dir, char *const *snapshot_dirs,
                                   size_t n_snapshots, char *const *zone_files, size_t n_zones);
/* The same, with hosted zone files too. */
vd_state_stage *vd_state_stage_new_hosted(const char *state_dir, char *const *snapshot_dirs,
                                          size_t n_snapshots, char *const *zone_files,
                                          size_t n_zones, char *const *hosted_zone_files,
                                          size_t n_hosted_zones);

/* After a successful load: makes the staged copy STATE_DIR/last-good, unless an original file
 * changed since it was copied (then the copy may not be what loaded: it is dropped, logged at
 * debug, and the next load saves). Frees stage (NULL is fine). 0, or a negative errno (logged). */
int vd_state_commit(vd_state_stage *stage);

/* After a failed load: removes the staged copy and frees stage (NULL is fine). */
void vd_state_discard(vd_state_stage *stage);

/* The last-good copy in state_dir: owned paths to load instead of the configured ones. */
typedef struct vd_state_copy {
        char *snapshot_dirs[VD_MAX_SOURCES];
        size_t n_snapshots;
        char *zone_files[VD_MAX_SOURCES];
        size_t n_zones;
        char *hosted_zone_files[VD_MAX_SOURCES];
        size_t n_hosted_zones;
        uint64_t saved_unix; /* when it was saved; 0 when the manifest does not say */
} vd_state_copy;

/* Reads STATE_DIR/last-good/MANIFEST into out. 0; -ENOENT when there is no copy; another
 * negative errno with err naming the file and line when the manifest is damaged. */
int vd_state_find(const char *state_dir, vd_state_copy *out, vd_error *err);
void vd_state_copy_free(vd_state_copy *c);

#endif

/* views.h — builds the data of one load (start, reload, --check, --dump): the snapshot
 * directories and zone files compiled into the one snapshot that is published, and with the
 * key views a root whose views each serve one VPC's endpoints to their clients
 * (docs/views.md). Load time only: it reads files, allocates and logs freely. */
#ifndef VPCDNS_VIEWS_H
#define VPCDNS_VIEWS_H

#include <stddef.h>

#include "vpcdns/aws.h"
#include "vpcdns/common.h"
#include "vpcdns/hosted_zone.h"
#include "vpcdns/config.h"
#include "vpcdns/snapshot.h"

/* What the data of one load comes from. */
typedef struct vd_data_sources {
        char *const *snapshot_dirs;
        size_t n_snapshots;
        char *const *zone_files;
        size_t n_zones;
        char *const *hosted_files; /* Route 53 hosted zone captures given on their own */
        /* per hosted file (may be NULL): the VPCs it is associated with ("vpc-a vpc-b"), NULL
         * for every VPC */
        char *const *hosted_vpcs;
        size_t n_hosted;
        const char *vpc; /* the key vpc: NULL or "" for none */
        const vd_config_view *views;
        size_t n_views;
} vd_data_sources;

/* One view as loaded. */
typedef struct vd_view_totals {
        const vd_config_view *view; /* borrowed from the sources */
        size_t endpoints_served;
        size_t addresses;
        vd_snapshot_summary snap;
} vd_view_totals;

/* What one load read. aws counts every endpoint of the files once (views: of the VPCs the
 * views serve, each VPC once) and lists every VPC; snap is the published snapshot's summary
 * (views: the root's zone files and every view's data added up, vd_snapshot_summarize). */
typedef struct vd_load_totals {
        vd_aws_summary aws;
        size_t zone_records;
        vd_snapshot_summary snap;
        vd_view_totals views[VD_MAX_VIEWS];
        size_t n_views;
        /* hosted zones (of the snapshot directories and given on their own): their counts,
         * and what --check prints of them (cut when long) */
        size_t hz_zones, hz_records, hz_aliases, hz_policies;
        char hz_notes[8192];
} vd_load_totals;

/* Loads src into *out (one reference), adding to t. Hosted zones (every JSON file in
 * DIR/hosted-zones and src->hosted_files) are loaded beside the zone files. Without views every
 * hosted zone applies. With views a hosted zone goes into the views of the VPCs it is
 * associated with (src->hosted_vpcs for a file; for DIR/hosted-zones the VPC the capture was
 * made for, vd_hosted_zone_dir_vpc), and into every view and the root when it names none; the
 * root (outsiders) gets only those. Without views: one snapshot of every source, refused when its
 * endpoints span several VPCs and src->vpc chooses none, or when src->vpc is not in the data. With
 * views: a root of the zone files with one view per src->views entry (each view's VPC must be in
 * the data). Logs each view (view_loaded). Errors name the file, the view or the VPCs. */
int vd_data_build(const vd_data_sources *src, vd_snapshot **out, vd_load_totals *t, vd_error *err);

#endif

/* zonefile.h — loads an RFC 1035 master file through ldns as a private hosted zone, and
 * prints snapshot records as master-file text (--dump). */
#ifndef VPCDNS_ZONEFILE_H
#define VPCDNS_ZONEFILE_H

#include <stddef.h>
#include <stdio.h>

#include "vpcdns/common.h"
#include "vpcdns/snapshot.h"

/* Loads path into b as one authoritative zone: the SOA record gives the apex; every record
 * must be class IN and at or under the apex. Errors name the file, the line and what was
 * expected. *records (may be NULL) receives the number of records added. */
int vd_zonefile_load(vd_builder *b, const char *path, size_t *records, vd_error *err);

/* Writes every record of s to out as master-file text, one record a line. Returns 0 or -EIO. */
int vd_zonefile_dump(const vd_snapshot *s, FILE *out);

/* vd_zonefile_dump of a root's data: each view's records under a "; view NAME" line, then
 * the root's own (what clients outside every view see) under its own line; a snapshot
 * without views is dumped as vd_zonefile_dump does. Returns 0 or -EIO. */
int vd_zonefile_dump_views(const vd_snapshot *root, FILE *out);

#endif

/* views.c — the data of one load (vpcdns/views.h): the snapshot directories and zone files
 * compiled into the snapshot that is published, one VPC at a time.
 *
 * Owns: the rule that a snapshot is served to clients of one VPC only (several VPCs without
 * a choice are refused before any name is added), the choice of that VPC (key vpc), and the
 * views: a root of the zone files alone, what clients outside every view see, owning one
 * snapshot per view compiled from the zone files and that view's VPC's endpoints (inbound
 * views with the private names of inbound-only S3 endpoints), and which hosted zones each
 * view and the root load (those of its VPC, and those of no VPC in particular). Each view's data is
 * compiled on its own (the snapshot files are read once per view), so a view's names, conflicts and
 * CNAME loops are exactly those of a single-VPC load. Must not: answer queries or choose a
 * view for a client (snapshot_views.c does). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/log.h"
#include "vpcdns/views.h"
#include "vpcdns/zonefile.h"

#define VPC_LIST_TEXT 512

/* The sources' snapshot directories, for a message. */
static const char *where_of(const vd_data_sources *src)
{
        return src->n_snapshots == 1 ? src->snapshot_dirs[0] : "snapshot directories";
}

/* Moves a hosted zone summary into the totals (the notes copied, cut with "..." when long). */
static void note_hosted(vd_load_totals *t, const vd_hosted_zone_summary *hz)
{
        t->hz_zones = hz->zones;
        t->hz_records = hz->records;
        t->hz_aliases = hz->aliases;
        t->hz_policies = hz->policies;
        t->hz_notes[0] = '\0';
        if (hz->notes != NULL) {
                snprintf(t->hz_notes, sizeof(t->hz_notes), "%s", hz->notes);
                if (hz->notes_len >= sizeof(t->hz_notes))
                        memcpy(t->hz_notes + sizeof(t->hz_notes) - 5, "...\n", 5);
        }
}

/* Which hosted zones a build loads: every one (no views), those associated with no VPC in
 * particular (the root of views: outsiders), or those and the ones of one VPC (a view). */
typedef enum hz_scope {
        HZ_ALL,
        HZ_ROOT,
        HZ_VIEW,
} hz_scope;

/* Whether a hosted zone associated with vpcs ("vpc-a vpc-b"; NULL or "": every VPC) belongs in
 * a build of scope (for HZ_VIEW, the view's VPC vpc). */
static bool hosted_applies(const char *vpcs, hz_scope scope, const char *vpc)
{
        if (scope == HZ_ALL || vpcs == NULL || vpcs[0] == '\0')
                return true;
        if (scope == HZ_ROOT || vpc == NULL)
                return false;
        size_t n = strlen(vpc);
        for (const char *p = vpcs; *p != '\0';) {
                size_t l = strcspn(p, " ");
                if (l == n && memcmp(p, vpc, n) == 0)
                        return true;
                p += l;
                p += strspn(p, " ");
        }
        return false;
}

/* What --check says of the hosted zones of one load: each source counted once, however many
 * views load it. */
typedef struct hz_seen {
        bool dirs[VD_MAX_SOURCES];
        bool files[VD_MAX_SOURCES];
        vd_hosted_zone_summary sum;
} hz_seen;

/* Appends n octets of text to seen's notes (dropped when out of memory: notes only). */
static void add_notes(hz_seen *seen, const char *text, size_t n)
{
        char *notes = n == 0 ? NULL : realloc(seen->sum.notes, seen->sum.notes_len + n + 1);
        if (notes == NULL)
                return;
        memcpy(notes + seen->sum.notes_len, text, n);
        notes[seen->sum.notes_len + n] = '\0';
        seen->sum.notes = notes;
        seen->sum.notes_len += n;
}

/* Adds one source's summary to seen the first time (*counted false), and empties it. */
static void count_hosted(hz_seen *seen, bool *counted, vd_hosted_zone_summary *one)
{
        if (!*counted) {
                *counted = true;
                seen->sum.zones += one->zones;
                seen->sum.record_sets += one->record_sets;
                seen->sum.records += one->records;
                seen->sum.aliases += one->aliases;
                seen->sum.policies += one->policies;
                if (one->notes != NULL)
                        add_notes(seen, one->notes, one->notes_len);
        }
        vd_hosted_zone_summary_free(one);
}

/* Loads the hosted zones of src that belong in a build of scope (vpc: the view's). */
static int load_hosted(vd_builder *b, const vd_data_sources *src, hz_scope scope, const char *vpc,
                       hz_seen *seen, vd_error *err)
{
        vd_hosted_zone_summary one = {0};
        int rc = 0;
        for (size_t i = 0; i < src->n_snapshots && i < VD_MAX_SOURCES && rc == 0; i++) {
                char dir_vpc[64];
                rc = vd_hosted_zone_dir_vpc(src->snapshot_dirs[i], dir_vpc, sizeof(dir_vpc), err);
                if (rc != 0 || !hosted_applies(dir_vpc, scope, vpc))
                        continue;
                rc = vd_hosted_zone_load_dir(b, src->snapshot_dirs[i], &one, err);
                count_hosted(seen, &seen->dirs[i], &one);
        }
        for (size_t i = 0; i < src->n_hosted && i < VD_MAX_SOURCES && rc == 0; i++) {
                if (!hosted_applies(src->hosted_vpcs != NULL ? src->hosted_vpcs[i] : NULL, scope,
                                    vpc))
                        continue;
                rc = vd_hosted_zone_load(b, src->hosted_files[i], &one, err);
                count_hosted(seen, &seen->files[i], &one);
        }
        return rc;
}

/* Notes for --check each hosted zone file that no view loads (no view serves its VPCs). */
static void note_unloaded(const vd_data_sources *src, hz_seen *seen)
{
        for (size_t i = 0; i < src->n_hosted && i < VD_MAX_SOURCES; i++) {
                char line[1200];
                if (seen->files[i])
                        continue;
                int n = snprintf(line, sizeof(line),
                                 "hosted zone file %s: not loaded: no view serves its VPCs (%s)\n",
                                 src->hosted_files[i],
                                 src->hosted_vpcs != NULL && src->hosted_vpcs[i] != NULL
                                     ? src->hosted_vpcs[i]
                                     : "-");
                if (n > 0 && (size_t)n < sizeof(line))
                        add_notes(seen, line, (size_t)n);
        }
}

/* Loads every source into one new builder and compiles it. With load_aws false the snapshot
 * directories are skipped (a root of views). first: the pass that warns about empty data and
 * counts zone records. scope and vpc choose the hosted zones (load_hosted), counted in seen. */
static int build_one(const vd_data_sources *src, const vd_aws_options *opt, bool load_aws,
                     bool first, hz_scope scope, const char *vpc, vd_snapshot **out,
                     vd_aws_summary *aws, size_t *zone_records, hz_seen *seen, vd_error *err)
{
        int rc = 0;
        vd_builder *b = vd_builder_new();
        if (b == NULL)
                return vd_error_set(err, "out of memory");
        for (size_t i = 0; load_aws && i < src->n_snapshots && rc == 0; i++) {
                size_t before = aws->endpoints;
                char dir[1024]; /* the directory as a log value */
                rc = vd_aws_load_with(b, src->snapshot_dirs[i], opt, aws, err);
                /* An empty capture loads (a VPC may have no endpoints yet) but is more often
                 * the wrong region or VPC: say so at start, on reload and in --check. */
                if (rc == 0 && first && aws->endpoints == before)
                        vd_log(VD_LOG_WARN, "snapshot_empty",
                               "dir=%s detail=\"no endpoints in the snapshot: every endpoint "
                               "name is forwarded (captured in the right region and VPC?)\"",
                               vd_log_value(src->snapshot_dirs[i], dir, sizeof(dir)));
        }
        /* Hosted zones go where their VPCs are (load_hosted); zone files everywhere. */
        if (rc == 0)
                rc = load_hosted(b, src, scope, vpc, seen, err);
        for (size_t i = 0; i < src->n_zones && rc == 0; i++) {
                size_t records = 0;
                rc = vd_zonefile_load(b, src->zone_files[i], &records, err);
                if (first)
                        *zone_records += records;
        }
        if (rc == 0)
                rc = vd_builder_finish(b, out, err);
        vd_builder_free(b);
        return rc;
}

static void log_view(const vd_view_totals *v)
{
        char clients[VD_MAX_VIEW_CLIENTS * 48], addr[INET6_ADDRSTRLEN] = "?";
        size_t pos = 0;

        clients[0] = '\0';
        for (size_t i = 0; i < v->view->n_clients && pos < sizeof(clients); i++) {
                const vd_cidr *c = &v->view->clients[i];
                const void *a =
                    c->ss.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&c->ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&c->ss)->sin6_addr;
                inet_ntop(c->ss.ss_family, a, addr, sizeof(addr));
                int w = snprintf(clients + pos, sizeof(clients) - pos, "%s%s/%u", i > 0 ? "," : "",
                                 addr, c->prefix);
                pos += w > 0 ? (size_t)w : 0;
        }
        vd_log(VD_LOG_INFO, "view_loaded",
               "view=%s vpc=%s clients=%s default=%s inbound=%s endpoints=%zu addresses=%zu "
               "names=%zu records=%zu",
               v->view->name, v->view->vpc, clients[0] != '\0' ? clients : "-",
               v->view->is_default ? "true" : "false", v->view->inbound ? "true" : "false",
               v->endpoints_served, v->addresses, v->snap.names, v->snap.records);
}

static int build_views(const vd_data_sources *src, vd_snapshot **out, vd_load_totals *t,
                       vd_error *err)
{
        vd_view_spec specs[VD_MAX_VIEWS];
        vd_snapshot *root = NULL;
        size_t made = 0;
        hz_seen seen;
        memset(&seen, 0, sizeof(seen));
        int rc = build_one(src, NULL, false, true, HZ_ROOT, NULL, &root, &t->aws, &t->zone_records,
                           &seen, err);

        for (size_t i = 0; i < src->n_views && rc == 0; i++) {
                const vd_config_view *view = &src->views[i];
                vd_aws_options opt = {.vpc = view->vpc, .inbound = view->inbound};
                vd_aws_summary sum;
                vd_view_totals *vt = &t->views[i];
                char list[VPC_LIST_TEXT];
                bool vpc_seen = false;

                memset(&sum, 0, sizeof(sum));
                rc = build_one(src, &opt, true, i == 0, HZ_VIEW, view->vpc, &specs[i].snap, &sum,
                               &t->zone_records, &seen, err);
                if (rc != 0)
                        break;
                made++;
                specs[i] = (vd_view_spec){.name = view->name,
                                          .clients = view->clients,
                                          .n_clients = view->n_clients,
                                          .is_default = view->is_default,
                                          .snap = specs[i].snap};
                if (!vd_aws_has_vpc(&sum, view->vpc)) {
                        vd_aws_format_vpcs(&sum, false, list, sizeof(list));
                        rc = vd_error_set(err,
                                          "views: view '%s': vpc %s is not in the snapshot (%s "
                                          "holds %s)",
                                          view->name, view->vpc, where_of(src), list);
                        break;
                }
                memset(vt, 0, sizeof(*vt));
                vt->view = view;
                vt->endpoints_served = sum.endpoints_served;
                vt->addresses = sum.addresses;
                vd_snapshot_summarize(specs[i].snap, &vt->snap);
                /* The totals: every endpoint of the files once, each VPC's served ones once. */
                for (size_t k = 0; k < i && !vpc_seen; k++)
                        vpc_seen = strcmp(src->views[k].vpc, view->vpc) == 0;
                if (i == 0)
                        t->aws.endpoints += sum.endpoints;
                if (!vpc_seen) {
                        t->aws.endpoints_served += sum.endpoints_served;
                        t->aws.names += sum.names;
                        t->aws.addresses += sum.addresses;
                }
                vd_aws_summary_merge_vpcs(&t->aws, &sum);
                t->n_views = i + 1;
        }
        if (rc == 0)
                note_unloaded(src, &seen);
        note_hosted(t, &seen.sum);
        vd_hosted_zone_summary_free(&seen.sum);
        if (rc != 0) {
                for (size_t i = 0; i < made; i++)
                        vd_snapshot_unref(specs[i].snap);
                vd_snapshot_unref(root);
                t->n_views = 0;
                return rc;
        }
        rc = vd_snapshot_set_views(root, specs, src->n_views, err);
        if (rc != 0) {
                vd_snapshot_unref(root);
                t->n_views = 0;
                return rc;
        }
        vd_snapshot_summarize(root, &t->snap);
        for (size_t i = 0; i < t->n_views; i++)
                log_view(&t->views[i]);
        *out = root;
        return 0;
}

int vd_data_build(const vd_data_sources *src, vd_snapshot **out, vd_load_totals *t, vd_error *err)
{
        const char *vpc = src->vpc != NULL && src->vpc[0] != '\0' ? src->vpc : NULL;
        vd_aws_options opt = {.vpc = vpc, .one_vpc = true};
        vd_aws_summary sum;
        vd_snapshot *snap = NULL;
        char list[VPC_LIST_TEXT];
        int rc;

        if (src->n_views > 0)
                return build_views(src, out, t, err);
        hz_seen seen;
        memset(&sum, 0, sizeof(sum));
        memset(&seen, 0, sizeof(seen));
        rc = build_one(src, &opt, true, true, HZ_ALL, NULL, &snap, &sum, &t->zone_records, &seen,
                       err);
        note_hosted(t, &seen.sum);
        vd_hosted_zone_summary_free(&seen.sum);
        /* One file holds one VPC (the loader checked), but several directories may not. */
        if (rc == 0 && vpc == NULL && vd_aws_served_vpcs(&sum) > 1)
                rc = vd_aws_several_vpcs_error(&sum, where_of(src), err);
        if (rc == 0 && vpc != NULL && !vd_aws_has_vpc(&sum, vpc)) {
                vd_aws_format_vpcs(&sum, false, list, sizeof(list));
                rc = vd_error_set(err, "vpc: %s is not in the snapshot (%s holds %s)", vpc,
                                  src->n_snapshots > 0 ? where_of(src) : "no snapshot directory",
                                  src->n_snapshots > 0 ? list : "nothing");
        }
        if (rc != 0) {
                vd_snapshot_unref(snap);
                return rc;
        }
        t->aws.endpoints += sum.endpoints;
        t->aws.endpoints_served += sum.endpoints_served;
        t->aws.names += sum.names;
        t->aws.addresses += sum.addresses;
        vd_aws_summary_merge_vpcs(&t->aws, &sum);
        vd_snapshot_summarize(snap, &t->snap);
        *out = snap;
        return 0;
}

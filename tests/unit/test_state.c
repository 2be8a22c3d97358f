/* test_state.c — the last-good copy of state.c: a staged copy becomes STATE_DIR/last-good
 * only on commit, replaces the previous one whole, is dropped when an original changed after it
 * was copied, and vd_state_find reads it back in the order of the config. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpcdns/state.h"

static char tmpdir[64];
static char state[128], snap[128], zone[128];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f, "%s", path);
        fputs(text, f);
        fclose(f);
}

static char *read_text(const char *path)
{
        static char buf[4096];
        FILE *f = fopen(path, "r");
        if (f == NULL)
                return NULL;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        return buf;
}

static void setup(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/vd-test-state-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
        snprintf(state, sizeof(state), "%s/state", tmpdir);
        snprintf(snap, sizeof(snap), "%s/snap", tmpdir);
        snprintf(zone, sizeof(zone), "%s/corp.zone", tmpdir);
        cr_assert_eq(mkdir(snap, 0755), 0);
        char path[256];
        snprintf(path, sizeof(path), "%s/describe-vpc-endpoints.json", snap);
        write_text(path, "{\"VpcEndpoints\": []}\n");
        snprintf(path, sizeof(path), "%s/describe-network-interfaces.json", snap);
        write_text(path, "{\"NetworkInterfaces\": []}\n");
        write_text(zone, "one\n");
}

static void teardown(void)
{
        nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(state, .init = setup, .fini = teardown);

static vd_state_stage *stage(void)
{
        char *snaps[] = {snap};
        char *zones[] = {zone};
        return vd_state_stage_new(state, snaps, 1, zones, 1);
}

Test(state, commit_makes_the_copy_and_find_reads_it)
{
        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_eq(vd_state_find(state, &c, &err), -ENOENT);

        vd_state_stage *s = stage();
        cr_assert_not_null(s);
        cr_assert_eq(vd_state_find(state, &c, &err), -ENOENT, "visible before the commit");
        cr_assert_eq(vd_state_commit(s), 0);

        cr_assert_eq(vd_state_find(state, &c, &err), 0, "%s", err.msg);
        cr_assert_eq(c.n_snapshots, 1);
        cr_assert_eq(c.n_zones, 1);
        cr_assert_gt(c.saved_unix, 0);
        char path[512];
        snprintf(path, sizeof(path), "%s/describe-vpc-endpoints.json", c.snapshot_dirs[0]);
        cr_assert_str_eq(read_text(path), "{\"VpcEndpoints\": []}\n");
        cr_assert_str_eq(read_text(c.zone_files[0]), "one\n");
        cr_assert_not_null(strstr(c.zone_files[0], "/last-good/zone-0/corp.zone"));
        vd_state_copy_free(&c);
}

Test(state, a_second_commit_replaces_the_copy_whole)
{
        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_eq(vd_state_commit(stage()), 0);
        write_text(zone, "two\n");
        cr_assert_eq(vd_state_commit(stage()), 0);
        cr_assert_eq(vd_state_find(state, &c, &err), 0, "%s", err.msg);
        cr_assert_str_eq(read_text(c.zone_files[0]), "two\n");
        vd_state_copy_free(&c);
        /* nothing left behind: only last-good */
        char path[256];
        snprintf(path, sizeof(path), "%s/.staging-%ld", state, (long)getpid());
        cr_assert_neq(access(path, F_OK), 0);
        snprintf(path, sizeof(path), "%s/.old-%ld", state, (long)getpid());
        cr_assert_neq(access(path, F_OK), 0);
}

Test(state, discard_keeps_the_previous_copy)
{
        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_eq(vd_state_commit(stage()), 0);
        write_text(zone, "broken\n");
        vd_state_discard(stage()); /* the load failed */
        cr_assert_eq(vd_state_find(state, &c, &err), 0, "%s", err.msg);
        cr_assert_str_eq(read_text(c.zone_files[0]), "one\n");
        vd_state_copy_free(&c);
}

Test(state, an_original_changed_after_the_copy_is_not_committed)
{
        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_eq(vd_state_commit(stage()), 0);
        vd_state_stage *s = stage();
        cr_assert_not_null(s);
        /* a refresher replaced the zone between the copy and the end of the load */
        char other[256];
        snprintf(other, sizeof(other), "%s/new.zone", tmpdir);
        write_text(other, "three\n");
        cr_assert_eq(rename(other, zone), 0);
        cr_assert_eq(vd_state_commit(s), 0);
        cr_assert_eq(vd_state_find(state, &c, &err), 0, "%s", err.msg);
        cr_assert_str_eq(read_text(c.zone_files[0]), "one\n");
        vd_state_copy_free(&c);
}

Test(state, a_missing_source_stages_nothing)
{
        char *snaps[] = {"/nonexistent/snapshot"};
        cr_assert_null(vd_state_stage_new(state, snaps, 1, NULL, 0));
        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_eq(vd_state_find(state, &c, &err), -ENOENT);
}

Test(state, a_damaged_manifest_is_an_error_naming_the_line)
{
        cr_assert_eq(vd_state_commit(stage()), 0);
        char path[256];
        snprintf(path, sizeof(path), "%s/last-good/MANIFEST", state);
        write_text(path, "snapshot 0 /x\nbogus\n");
        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_lt(vd_state_find(state, &c, &err), 0);
        cr_assert_not_null(strstr(err.msg, "MANIFEST:2:"), "%s", err.msg);
}

/* A load of unchanged data links the files of the previous copy instead of writing them again;
 * a changed file is copied. */
Test(state, unchanged_files_are_linked_not_copied)
{
        struct stat before, after;
        char path[512], endpoints[512];
        cr_assert_eq(vd_state_commit(stage()), 0);
        snprintf(path, sizeof(path), "%s/last-good/zone-0/corp.zone", state);
        snprintf(endpoints, sizeof(endpoints),
                 "%s/last-good/snapshot-0/describe-vpc-endpoints.json", state);
        cr_assert_eq(stat(endpoints, &before), 0);
        cr_assert_eq(vd_state_commit(stage()), 0);
        cr_assert_eq(stat(endpoints, &after), 0);
        cr_assert_eq(before.st_ino, after.st_ino, "an unchanged file was copied again");

        cr_assert_eq(stat(path, &before), 0);
        write_text(zone, "oNe\n"); /* same size, other bytes */
        cr_assert_eq(vd_state_commit(stage()), 0);
        cr_assert_eq(stat(path, &after), 0);
        cr_assert_neq(before.st_ino, after.st_ino);
        cr_assert_str_eq(read_text(path), "oNe\n");
}

/* Hosted zone files get their own hosted-zone-N directory and manifest line; a snapshot's
 * hosted-zones/ captures are copied with it. */
Test(state, hosted_zones_are_part_of_the_copy)
{
        char hz[160], sub[160], captured[200], path[512];
        snprintf(hz, sizeof(hz), "%s/corp.json", tmpdir);
        write_text(hz, "{\"ResourceRecordSets\": []}\n");
        snprintf(sub, sizeof(sub), "%s/hosted-zones", snap);
        cr_assert_eq(mkdir(sub, 0755), 0);
        snprintf(captured, sizeof(captured), "%s/Z0ABC.json", sub);
        write_text(captured, "captured\n");
        char *snaps[] = {snap};
        char *hosted[] = {hz};
        vd_state_stage *s = vd_state_stage_new_hosted(state, snaps, 1, NULL, 0, hosted, 1);
        cr_assert_not_null(s);
        cr_assert_eq(vd_state_commit(s), 0);

        vd_state_copy c;
        vd_error err = {{0}};
        cr_assert_eq(vd_state_find(state, &c, &err), 0, "%s", err.msg);
        cr_assert_eq(c.n_hosted_zones, 1);
        cr_assert_not_null(strstr(c.hosted_zone_files[0], "/last-good/hosted-zone-0/corp.json"));
        cr_assert_str_eq(read_text(c.hosted_zone_files[0]), "{\"ResourceRecordSets\": []}\n");
        snprintf(path, sizeof(path), "%s/hosted-zones/Z0ABC.json", c.snapshot_dirs[0]);
        cr_assert_str_eq(read_text(path), "captured\n");
        vd_state_copy_free(&c);
}

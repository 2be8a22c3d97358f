/* state.c — the last-good copy of the local data under state_dir (state.h): staging a copy of
 * the inputs, committing it with one rename, removing what a failed load left, and reading the
 * manifest back. Owns the files under state_dir and nothing else; it never parses the data and
 * never decides whether to fall back (main.c does). Failures are logged here and never stop a
 * load. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/hosted_zone.h"
#include "vpcdns/log.h"
#include "vpcdns/state.h"

#define LAST_GOOD "last-good"
#define MANIFEST "MANIFEST"
#define MAX_COPIED 256 /* files per staged copy whose identity is checked at the commit */

/* What was copied, to tell at the commit whether the originals are still those files. */
struct copied {
        char *path;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
};

struct vd_state_stage {
        char *state_dir;
        char *dir; /* STATE_DIR/.staging-PID */
        struct copied files[MAX_COPIED];
        size_t n_files;
};

static void log_failure(const char *what, const char *path, int e)
{
        char p[PATH_MAX + 16], why[160];
        vd_log(VD_LOG_WARN, "state_save_failed", "what=%s path=%s error=%s kept=previous_copy",
               what, vd_log_value(path, p, sizeof(p)), vd_log_value(strerror(e), why, sizeof(why)));
}

/* Removes dir and the files and directories in it (two levels are all a copy has). */
static void remove_tree(const char *dir, int depth)
{
        DIR *d = opendir(dir);
        if (d != NULL) {
                struct dirent *e;
                while ((e = readdir(d)) != NULL) {
                        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                                continue;
                        char path[PATH_MAX];
                        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >=
                            (int)sizeof(path))
                                continue;
                        if (unlink(path) == 0 || errno != EISDIR)
                                continue;
                        if (depth > 0)
                                remove_tree(path, depth - 1);
                        else
                                rmdir(path);
                }
                closedir(d);
        }
        rmdir(dir);
}

/* Copies one regular file (read through fd in) to path, fsynced; 0 or -errno. */
static int copy_fd(int in, const char *path)
{
        char buf[65536];
        int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (out < 0)
                return -errno;
        int rc = 0;
        for (;;) {
                ssize_t n = read(in, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        rc = -errno;
                        break;
                }
                if (n == 0)
                        break;
                for (ssize_t done = 0; done < n;) {
                        ssize_t w = write(out, buf + done, (size_t)(n - done));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0) {
                                rc = -errno;
                                break;
                        }
                        done += w;
                }
                if (rc != 0)
                        break;
        }
        if (rc == 0 && fsync(out) != 0)
                rc = -errno;
        if (close(out) != 0 && rc == 0)
                rc = -errno;
        return rc;
}

/* Reads up to n bytes (fewer only at the end of the file); the count, or -1. */
static ssize_t read_full(int fd, char *buf, size_t n)
{
        size_t got = 0;
        while (got < n) {
                ssize_t r = read(fd, buf + got, n - got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -1;
                if (r == 0)
                        break;
                got += (size_t)r;
        }
        return (ssize_t)got;
}

/* True when the file open as in (read from its start, and left there) holds the same bytes as
 * the file prev: then prev, in the last-good copy, is linked instead of copied again, so a
 * reload of unchanged data writes nothing but the manifest. */
static bool same_content(int in, off_t size, const char *prev)
{
        static char a[65536], b[65536]; /* the control thread only */
        struct stat st;
        int p = open(prev, O_RDONLY | O_CLOEXEC);
        if (p < 0)
                return false;
        bool same = fstat(p, &st) == 0 && st.st_size == size;
        while (same) {
                ssize_t n = read_full(in, a, sizeof(a));
                ssize_t m = n > 0 ? read_full(p, b, (size_t)n) : 0;
                if (n <= 0 || m != n || memcmp(a, b, (size_t)n) != 0) {
                        same = n == 0;
                        break;
                }
        }
        close(p);
        if (lseek(in, 0, SEEK_SET) != 0)
                return false;
        return same;
}

/* Copies the file src to dst (or links the last-good copy's file when it holds the same
 * bytes) and remembers what it was; 0 or -errno (logged). */
static int stage_file(vd_state_stage *s, const char *src, const char *dst)
{
        int in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
                int e = errno;
                log_failure("read", src, e);
                return -e;
        }
        struct stat st;
        int rc = fstat(in, &st) == 0 ? 0 : -errno;
        if (rc == 0 && s->n_files >= MAX_COPIED)
                rc = -E2BIG;
        char prev[PATH_MAX];
        bool linked = false;
        if (rc == 0 && snprintf(prev, sizeof(prev), "%s/%s%s", s->state_dir, LAST_GOOD,
                                dst + strlen(s->dir)) < (int)sizeof(prev))
                linked = same_content(in, st.st_size, prev) && link(prev, dst) == 0;
        if (rc == 0 && !linked)
                rc = copy_fd(in, dst);
        close(in);
        if (rc == 0) {
                struct copied *c = &s->files[s->n_files];
                c->path = strdup(src);
                if (c->path == NULL)
                        rc = -ENOMEM;
                c->dev = st.st_dev;
                c->ino = st.st_ino;
                c->size = st.st_size;
                c->mtime = st.st_mtim;
                if (rc == 0)
                        s->n_files++;
        }
        if (rc != 0)
                log_failure("copy", src, -rc);
        return rc;
}

/* The regular files directly in the snapshot directory src, into the new directory dst. */
static int stage_dir(vd_state_stage *s, const char *src, const char *dst)
{
        if (mkdir(dst, 0750) != 0) {
                int e = errno;
                log_failure("mkdir", dst, e);
                return -e;
        }
        DIR *d = opendir(src);
        if (d == NULL) {
                int e = errno;
                log_failure("read", src, e);
                return -e;
        }
        int rc = 0;
        struct dirent *e;
        while (rc == 0 && (e = readdir(d)) != NULL) {
                char from[PATH_MAX], to[PATH_MAX];
                struct stat st;
                if (e->d_name[0] == '.')
                        continue;
                if (snprintf(from, sizeof(from), "%s/%s", src, e->d_name) >= (int)sizeof(from) ||
                    snprintf(to, sizeof(to), "%s/%s", dst, e->d_name) >= (int)sizeof(to)) {
                        log_failure("copy", from, ENAMETOOLONG);
                        rc = -ENAMETOOLONG;
                        break;
                }
                if (stat(from, &st) != 0)
                        continue;
                /* captured hosted zones (hosted_zone.h) are loaded with the directory */
                if (S_ISDIR(st.st_mode) && strcmp(e->d_name, VD_HOSTED_ZONES_SUBDIR) == 0) {
                        rc = stage_dir(s, from, to);
                        continue;
                }
                if (!S_ISREG(st.st_mode))
                        continue;
                rc = stage_file(s, from, to);
        }
        closedir(d);
        return rc;
}

static void free_stage(vd_state_stage *s)
{
        for (size_t i = 0; i < s->n_files; i++)
                free(s->files[i].path);
        free(s->dir);
        free(s->state_dir);
        free(s);
}

static int fsync_dir(const char *dir)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int rc = fsync(fd) == 0 ? 0 : -errno;
        close(fd);
        return rc;
}

/* The manifest: where each part came from, in the order of the config. */
static int write_manifest(const vd_state_stage *s, char *const *snapshot_dirs, size_t n_snapshots,
                          char *const *zone_files, size_t n_zones, char *const *hosted,
                          size_t n_hosted)
{
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", s->dir, MANIFEST);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (f == NULL) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                log_failure("write", path, e);
                return -e;
        }
        for (size_t i = 0; i < n_snapshots; i++)
                fprintf(f, "snapshot %zu %s\n", i, snapshot_dirs[i]);
        for (size_t i = 0; i < n_zones; i++)
                fprintf(f, "zone %zu %s\n", i, zone_files[i]);
        for (size_t i = 0; i < n_hosted; i++)
                fprintf(f, "hosted-zone %zu %s\n", i, hosted[i]);
        fprintf(f, "saved %" PRIu64 "\n", (uint64_t)time(NULL));
        int rc = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -errno;
        if (fclose(f) != 0 && rc == 0)
                rc = -errno;
        if (rc != 0)
                log_failure("write", path, -rc);
        return rc;
}

/* A file into its own directory DIR/KIND-N/NAME of the staging directory. */
static int stage_single(vd_state_stage *s, const char *kind, size_t i, const char *file)
{
        char to[PATH_MAX];
        const char *slash = strrchr(file, '/');
        const char *name = slash != NULL ? slash + 1 : file;
        snprintf(to, sizeof(to), "%s/%s-%zu", s->dir, kind, i);
        if (mkdir(to, 0750) != 0) {
                int rc = -errno;
                log_failure("mkdir", to, -rc);
                return rc;
        }
        size_t used = strlen(to);
        snprintf(to + used, sizeof(to) - used, "/%s", name[0] != '\0' ? name : kind);
        return stage_file(s, file, to);
}

vd_state_stage *vd_state_stage_new(const char *state_dir, char *const *snapshot_dirs,
                                   size_t n_snapshots, char *const *zone_files, size_t n_zones)
{
        return vd_state_stage_new_hosted(state_dir, snapshot_dirs, n_snapshots, zone_files, n_zones,
                                         NULL, 0);
}

vd_state_stage *vd_state_stage_new_hosted(const char *state_dir, char *const *snapshot_dirs,
                                          size_t n_snapshots, char *const *zone_files,
                                          size_t n_zones, char *const *hosted_zone_files,
                                          size_t n_hosted_zones)
{
        vd_state_stage *s = calloc(1, sizeof(*s));
        int rc = 0;
        if (s == NULL || (s->state_dir = strdup(state_dir)) == NULL ||
            asprintf(&s->dir, "%s/.staging-%ld", state_dir, (long)getpid()) < 0) {
                if (s != NULL)
                        s->dir = NULL;
                log_failure("memory", state_dir, ENOMEM);
                goto fail;
        }
        if (mkdir(state_dir, 0750) != 0 && errno != EEXIST) {
                log_failure("mkdir", state_dir, errno);
                goto fail;
        }
        remove_tree(s->dir, 1); /* what a crashed save of this pid left */
        if (mkdir(s->dir, 0750) != 0) {
                log_failure("mkdir", s->dir, errno);
                goto fail;
        }
        for (size_t i = 0; i < n_snapshots && rc == 0; i++) {
                char to[PATH_MAX];
                snprintf(to, sizeof(to), "%s/snapshot-%zu", s->dir, i);
                rc = stage_dir(s, snapshot_dirs[i], to);
        }
        for (size_t i = 0; i < n_zones && rc == 0; i++) {
                char to[PATH_MAX];
                const char *slash = strrchr(zone_files[i], '/');
                const char *name = slash != NULL ? slash + 1 : zone_files[i];
                snprintf(to, sizeof(to), "%s/zone-%zu", s->dir, i);
                if (mkdir(to, 0750) != 0) {
                        rc = -errno;
                        log_failure("mkdir", to, -rc);
                        break;
                }
                size_t used = strlen(to);
                snprintf(to + used, sizeof(to) - used, "/%s", name[0] != '\0' ? name : "zone");
                rc = stage_file(s, zone_files[i], to);
        }
        for (size_t i = 0; i < n_hosted_zones && rc == 0; i++)
                rc = stage_single(s, "hosted-zone", i, hosted_zone_files[i]);
        if (rc == 0)
                rc = write_manifest(s, snapshot_dirs, n_snapshots, zone_files, n_zones,
                                    hosted_zone_files, n_hosted_zones);
        if (rc != 0) {
                vd_state_discard(s);
                return NULL;
        }
        return s;
fail:
        if (s != NULL) {
                if (s->dir != NULL)
                        remove_tree(s->dir, 1);
                free_stage(s);
        }
        return NULL;
}

void vd_state_discard(vd_state_stage *s)
{
        if (s == NULL)
                return;
        remove_tree(s->dir, 1);
        free_stage(s);
}

/* True when every original is still the file that was copied. */
static bool originals_unchanged(const vd_state_stage *s)
{
        for (size_t i = 0; i < s->n_files; i++) {
                const struct copied *c = &s->files[i];
                struct stat st;
                if (stat(c->path, &st) != 0 || st.st_dev != c->dev || st.st_ino != c->ino ||
                    st.st_size != c->size || st.st_mtim.tv_sec != c->mtime.tv_sec ||
                    st.st_mtim.tv_nsec != c->mtime.tv_nsec) {
                        char p[PATH_MAX + 16];
                        vd_log(VD_LOG_DEBUG, "state_save_skipped",
                               "path=%s reason=\"changed while it loaded\"",
                               vd_log_value(c->path, p, sizeof(p)));
                        return false;
                }
        }
        return true;
}

int vd_state_commit(vd_state_stage *s)
{
        if (s == NULL)
                return 0;
        char last[PATH_MAX], old[PATH_MAX];
        int rc = 0;
        snprintf(last, sizeof(last), "%s/%s", s->state_dir, LAST_GOOD);
        snprintf(old, sizeof(old), "%s/.old-%ld", s->state_dir, (long)getpid());
        if (!originals_unchanged(s)) {
                vd_state_discard(s);
                return 0;
        }
        if (fsync_dir(s->dir) != 0)
                rc = -errno;
        /* Swap the new copy in, the old one out, in one step where the file system can:
         * a reader (a start after a crash) finds either the old copy or the new one. */
        remove_tree(old, 1);
        if (rc == 0 && renameat2(AT_FDCWD, s->dir, AT_FDCWD, last, RENAME_EXCHANGE) == 0) {
                remove_tree(s->dir, 1); /* now the previous copy */
        } else if (rc == 0 && (errno == ENOENT || errno == EINVAL || errno == ENOSYS)) {
                /* no copy yet, or no RENAME_EXCHANGE here: move the old one aside first */
                if (rename(last, old) != 0 && errno != ENOENT)
                        rc = -errno;
                if (rc == 0 && rename(s->dir, last) != 0)
                        rc = -errno;
                remove_tree(old, 1);
        } else if (rc == 0) {
                rc = -errno;
        }
        if (rc == 0)
                rc = fsync_dir(s->state_dir);
        if (rc != 0) {
                log_failure("rename", last, -rc);
                vd_state_discard(s);
                return rc;
        }
        char p[PATH_MAX + 16];
        vd_log(VD_LOG_DEBUG, "state_saved", "path=%s files=%zu", vd_log_value(last, p, sizeof(p)),
               s->n_files);
        free_stage(s);
        return 0;
}

void vd_state_copy_free(vd_state_copy *c)
{
        for (size_t i = 0; i < c->n_snapshots; i++)
                free(c->snapshot_dirs[i]);
        for (size_t i = 0; i < c->n_zones; i++)
                free(c->zone_files[i]);
        for (size_t i = 0; i < c->n_hosted_zones; i++)
                free(c->hosted_zone_files[i]);
        c->n_snapshots = 0;
        c->n_zones = 0;
        c->n_hosted_zones = 0;
}

/* The one file in DIR (a zone-N directory): its path in *out. */
static int only_file(const char *dir, char **out)
{
        DIR *d = opendir(dir);
        if (d == NULL)
                return -errno;
        struct dirent *e;
        int rc = -ENOENT;
        while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                        continue;
                rc = asprintf(out, "%s/%s", dir, e->d_name) < 0 ? -ENOMEM : 0;
                break;
        }
        closedir(d);
        return rc;
}

int vd_state_find(const char *state_dir, vd_state_copy *out, vd_error *err)
{
        char path[PATH_MAX], line[PATH_MAX + 64];
        memset(out, 0, sizeof(*out));
        snprintf(path, sizeof(path), "%s/%s/%s", state_dir, LAST_GOOD, MANIFEST);
        FILE *f = fopen(path, "re");
        if (f == NULL) {
                int e = errno;
                vd_error_set(err, "%s: %s", path, strerror(e));
                return -e;
        }
        int rc = 0;
        size_t lineno = 0;
        while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
                char kind[16];
                size_t index;
                unsigned long long saved;
                lineno++;
                if (sscanf(line, "saved %llu", &saved) == 1) {
                        out->saved_unix = saved;
                        continue;
                }
                if (sscanf(line, "%15s %zu ", kind, &index) != 2) {
                        rc =
                            vd_error_set(err, "%s:%zu: expected 'snapshot N PATH' or 'zone N PATH'",
                                         path, lineno);
                        break;
                }
                if (strcmp(kind, "hosted-zone") == 0 && index == out->n_hosted_zones &&
                    index < VD_MAX_SOURCES) {
                        char hz[PATH_MAX];
                        snprintf(hz, sizeof(hz), "%s/%s/%s-%zu", state_dir, LAST_GOOD, kind, index);
                        rc = only_file(hz, &out->hosted_zone_files[index]);
                        if (rc == 0)
                                out->n_hosted_zones++;
                        else
                                vd_error_set(err, "%s: %s", hz, strerror(-rc));
                        continue;
                }
                char part[PATH_MAX];
                snprintf(part, sizeof(part), "%s/%s/%s-%zu", state_dir, LAST_GOOD, kind, index);
                if (strcmp(kind, "snapshot") == 0 && index == out->n_snapshots &&
                    index < VD_MAX_SOURCES) {
                        out->snapshot_dirs[index] = strdup(part);
                        rc = out->snapshot_dirs[index] == NULL ? -ENOMEM : 0;
                        if (rc == 0)
                                out->n_snapshots++;
                } else if (strcmp(kind, "zone") == 0 && index == out->n_zones &&
                           index < VD_MAX_SOURCES) {
                        rc = only_file(part, &out->zone_files[index]);
                        if (rc == 0)
                                out->n_zones++;
                        else
                                vd_error_set(err, "%s: %s", part, strerror(-rc));
                } else {
                        rc = vd_error_set(err, "%s:%zu: unexpected '%s %zu'", path, lineno, kind,
                                          index);
                }
        }
        fclose(f);
        if (rc != 0)
                vd_state_copy_free(out);
        return rc;
}

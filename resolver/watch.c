/* watch.c — the inputs of local data (a set of paths), their content fingerprint, and the
 * file-system watch (libuv fs events, inotify on Linux) that says when they changed and have
 * settled. Owns: vd_inputs, vd_fingerprint, vd_debounce, vd_watch.
 *
 * Must not: parse or load any data (aws.c, zonefile.c do), decide what a reload does
 * (main.c, server.c do), or run its callback anywhere but on the loop it was made on.
 *
 * Why three watches per input: a watch on a path follows the inode it names when it was
 * armed. Writing into a zone file or into a snapshot directory is seen on that inode; a
 * directory or file replaced by a rename (a refresher's atomic swap), or a symlink pointed
 * elsewhere, is seen only in the parent directory, as an event for the input's own name. For
 * a symlink, the target's parent directory is watched too. Inodes change at every swap, so
 * the owner re-arms after every reload. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpcdns/hosted_zone.h"
#include "vpcdns/log.h"
#include "vpcdns/siphash.h"
#include "vpcdns/watch.h"

/* ---- inputs ------------------------------------------------------------------------------ */

void vd_inputs_init(vd_inputs *in)
{
        memset(in, 0, sizeof(*in));
}

void vd_inputs_free(vd_inputs *in)
{
        for (size_t i = 0; i < in->n; i++)
                free(in->path[i]);
        vd_inputs_init(in);
}

int vd_inputs_add(vd_inputs *in, const char *path)
{
        for (size_t i = 0; i < in->n; i++)
                if (strcmp(in->path[i], path) == 0)
                        return 0;
        if (in->n >= VD_INPUTS_MAX)
                return -ENOSPC;
        char *copy = strdup(path);
        if (copy == NULL)
                return -ENOMEM;
        in->path[in->n++] = copy;
        return 0;
}

int vd_inputs_copy(vd_inputs *out, const vd_inputs *in)
{
        vd_inputs_free(out);
        for (size_t i = 0; i < in->n; i++) {
                int r = vd_inputs_add(out, in->path[i]);
                if (r < 0) {
                        vd_inputs_free(out);
                        return r;
                }
        }
        return 0;
}

int vd_inputs_from_config(const vd_config *cfg, vd_inputs *out)
{
        int r = 0;
        vd_inputs_free(out);
        for (size_t i = 0; i < cfg->n_snapshots && r == 0; i++)
                r = vd_inputs_add(out, cfg->snapshot_dirs[i]);
        for (size_t i = 0; i < cfg->n_zones && r == 0; i++)
                r = vd_inputs_add(out, cfg->zone_files[i]);
        for (size_t i = 0; i < cfg->n_hosted_zones && r == 0; i++)
                r = vd_inputs_add(out, cfg->hosted_zone_files[i]);
        /* A snapshot directory's captured hosted zones: a directory inside an input directory
         * is not read, so the one that exists is an input of its own. */
        for (size_t i = 0; i < cfg->n_snapshots && r == 0; i++) {
                char sub[PATH_MAX];
                struct stat st;
                if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", cfg->snapshot_dirs[i],
                                     VD_HOSTED_ZONES_SUBDIR) < sizeof(sub) &&
                    stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                        r = vd_inputs_add(out, sub);
        }
        /* A reload reads the config file again: it is watched and fingerprinted with the
         * data, so that a change to it alone reloads (and is never skipped). */
        if (r == 0 && cfg->config_path != NULL)
                r = vd_inputs_add(out, cfg->config_path);
        if (r < 0)
                vd_inputs_free(out);
        return r;
}

/* ---- fingerprints -------------------------------------------------------------------------- */

/* A fixed key: fingerprints are compared within one process and nobody gains by aiming at a
 * collision (whoever can write the inputs decides the data anyway). */
#define FP_K0 0x7670636466702d31ULL
#define FP_K1 0x6e70757473686173ULL
#define FP_CHUNK (64 * 1024)
#define FP_DIR_MAX 4096 /* files of one directory that are hashed by name and content */

enum { TAG_FILE = 1, TAG_DIR, TAG_ERROR, TAG_LENGTH, TAG_NAME, TAG_MANY };

/* One step of the chain: the previous hash keys the next block. */
static uint64_t chain(uint64_t h, uint64_t tag, const void *data, size_t n)
{
        static const uint8_t none[1] = {0};
        return vd_siphash13(FP_K0 ^ h, FP_K1 + tag, n > 0 ? data : none, n);
}

/* A hash no content has: the input could not be read, and why. */
static uint64_t error_hash(int e)
{
        return chain(0, TAG_ERROR, &e, sizeof(e));
}

/* The bytes of the open file fd, in FP_CHUNK blocks through buf; closes fd. */
static uint64_t hash_fd(int fd, uint8_t *buf)
{
        uint64_t h = chain(0, TAG_FILE, NULL, 0), total = 0;
        for (;;) {
                ssize_t got = read(fd, buf, FP_CHUNK);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        h = error_hash(errno);
                        break;
                }
                if (got == 0) {
                        h = chain(h, TAG_LENGTH, &total, sizeof(total));
                        break;
                }
                h = chain(h, total, buf, (size_t)got);
                total += (uint64_t)got;
        }
        close(fd);
        return h;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint64_t hash_path(const char *path, uint8_t *buf, int depth);

/* The names and contents of the regular files in dir (symlinks followed), in name order; no
 * recursion into subdirectories. */
static uint64_t hash_dir(const char *path, DIR *dir, uint8_t *buf, int depth)
{
        char **names = NULL;
        size_t n = 0, cap = 0;
        bool many = false;
        uint64_t h;
        struct dirent *de;

        while ((de = readdir(dir)) != NULL) {
                char full[PATH_MAX];
                struct stat st;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if ((size_t)snprintf(full, sizeof(full), "%s/%s", path, de->d_name) >= sizeof(full))
                        continue;
                if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
                        continue;
                if (n == FP_DIR_MAX) {
                        many = true;
                        break;
                }
                if (n == cap) {
                        size_t grow = cap == 0 ? 16 : cap * 2;
                        char **more = realloc(names, grow * sizeof(*names));
                        if (more == NULL)
                                goto fail;
                        names = more;
                        cap = grow;
                }
                if ((names[n] = strdup(de->d_name)) == NULL)
                        goto fail;
                n++;
        }
        qsort(names, n, sizeof(*names), compare_names);
        h = chain(0, TAG_DIR, NULL, 0);
        for (size_t i = 0; i < n; i++) {
                char full[PATH_MAX];
                snprintf(full, sizeof(full), "%s/%s", path, names[i]);
                uint64_t file = hash_path(full, buf, depth + 1);
                h = chain(h, TAG_NAME, names[i], strlen(names[i]) + 1);
                h = chain(h, i, &file, sizeof(file));
        }
        if (many)
                h = chain(h, TAG_MANY, NULL, 0);
        goto out;
fail:
        h = error_hash(ENOMEM);
out:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return h;
}

static uint64_t hash_path(const char *path, uint8_t *buf, int depth)
{
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return error_hash(errno);
        if (fstat(fd, &st) != 0) {
                int e = errno;
                close(fd);
                return error_hash(e);
        }
        if (!S_ISDIR(st.st_mode))
                return hash_fd(fd, buf);
        if (depth > 0) { /* a directory inside an input directory is not read */
                close(fd);
                return chain(0, TAG_DIR, NULL, 0);
        }
        DIR *dir = fdopendir(fd);
        if (dir == NULL) {
                int e = errno;
                close(fd);
                return error_hash(e);
        }
        uint64_t h = hash_dir(path, dir, buf, depth);
        closedir(dir);
        return h;
}

void vd_fingerprint_take(const vd_inputs *in, vd_fingerprint *out)
{
        uint8_t *buf = malloc(FP_CHUNK);
        memset(out, 0, sizeof(*out));
        out->n = in->n;
        for (size_t i = 0; i < in->n; i++)
                out->hash[i] = buf != NULL ? hash_path(in->path[i], buf, 0) : error_hash(ENOMEM);
        out->valid = buf != NULL;
        free(buf);
}

bool vd_fingerprint_equal(const vd_fingerprint *a, const vd_fingerprint *b)
{
        return vd_fingerprint_first_change(a, b) < 0;
}

long vd_fingerprint_first_change(const vd_fingerprint *was, const vd_fingerprint *now)
{
        if (!was->valid || !now->valid || was->n != now->n)
                return 0;
        for (size_t i = 0; i < now->n; i++)
                if (was->hash[i] != now->hash[i])
                        return (long)i;
        return -1;
}

/* ---- debounce ------------------------------------------------------------------------------ */

void vd_debounce_init(vd_debounce *d, uint64_t quiet_ms, uint64_t max_ms)
{
        memset(d, 0, sizeof(*d));
        d->quiet_ms = quiet_ms;
        d->max_ms = max_ms < quiet_ms ? quiet_ms : max_ms;
}

static uint64_t deadline(const vd_debounce *d)
{
        uint64_t quiet = d->last + d->quiet_ms, latest = d->first + d->max_ms;
        return quiet < latest ? quiet : latest;
}

uint64_t vd_debounce_event(vd_debounce *d, uint64_t now_ms)
{
        if (!d->pending) {
                d->pending = true;
                d->first = now_ms;
                d->last = now_ms;
        } else if (now_ms > d->last) {
                d->last = now_ms;
        }
        uint64_t due = deadline(d);
        return due > now_ms ? due - now_ms : 0;
}

bool vd_debounce_due(vd_debounce *d, uint64_t now_ms, uint64_t *wait_ms)
{
        *wait_ms = 0;
        if (!d->pending)
                return false;
        uint64_t due = deadline(d);
        if (now_ms >= due) {
                d->pending = false;
                return true;
        }
        *wait_ms = due - now_ms;
        return false;
}

/* ---- the watch ----------------------------------------------------------------------------- */

#define WATCHES_PER_INPUT 3

struct entry {
        uv_fs_event_t handle; /* first: the close callback gets the entry from it */
        vd_watch *watch;
        size_t input;
        char name[NAME_MAX + 1]; /* in a parent directory: the only name that counts; "" any */
};

struct vd_watch {
        uv_loop_t *loop;
        vd_inputs inputs;
        vd_debounce debounce;
        uv_timer_t timer;
        vd_watch_fn fn;
        void *arg;
        struct entry *armed[WATCHES_PER_INPUT * VD_INPUTS_MAX];
        size_t n_armed;
        size_t open_handles; /* entries and the timer not yet closed: the memory waits */
        long changed;        /* the first input a change was seen for in this burst, or -1 */
        bool closing;
};

static void maybe_free(vd_watch *w)
{
        if (w->closing && w->open_handles == 0) {
                vd_inputs_free(&w->inputs);
                free(w);
        }
}

static void entry_closed(uv_handle_t *h)
{
        struct entry *e = (struct entry *)h;
        vd_watch *w = e->watch;
        free(e);
        w->open_handles--;
        maybe_free(w);
}

static void timer_closed(uv_handle_t *h)
{
        vd_watch *w = h->data;
        w->open_handles--;
        maybe_free(w);
}

static void on_settled(uv_timer_t *t)
{
        vd_watch *w = t->data;
        uint64_t wait;
        if (w->closing)
                return;
        if (!vd_debounce_due(&w->debounce, uv_now(w->loop), &wait)) {
                if (wait > 0)
                        uv_timer_start(&w->timer, on_settled, wait, 0);
                return;
        }
        long input = w->changed;
        w->changed = -1;
        w->fn(w->arg, input >= 0 && (size_t)input < w->inputs.n ? w->inputs.path[input] : "?");
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
        struct entry *e = (struct entry *)h;
        vd_watch *w = e->watch;
        (void)events;
        if (w->closing)
                return;
        if (status == 0 && e->name[0] != '\0' &&
            (filename == NULL || strcmp(filename, e->name) != 0))
                return; /* another file of the parent directory */
        if (w->changed < 0)
                w->changed = (long)e->input;
        uint64_t wait = vd_debounce_event(&w->debounce, uv_now(w->loop));
        uv_timer_start(&w->timer, on_settled, wait, 0);
}

/* Watches path for input; name: only events for that entry of the directory path count.
 * Returns 0 or the libuv error (nothing armed). */
static int arm_one(vd_watch *w, size_t input, const char *path, const char *name)
{
        if (w->n_armed >= WATCHES_PER_INPUT * VD_INPUTS_MAX || strlen(name) > NAME_MAX)
                return UV_ENOSPC;
        struct entry *e = calloc(1, sizeof(*e));
        if (e == NULL)
                return UV_ENOMEM;
        e->watch = w;
        e->input = input;
        memcpy(e->name, name, strlen(name) + 1);
        int r = uv_fs_event_init(w->loop, &e->handle);
        if (r < 0) {
                free(e);
                return r;
        }
        w->open_handles++;
        r = uv_fs_event_start(&e->handle, on_event, path, 0);
        if (r < 0) {
                uv_close((uv_handle_t *)&e->handle, entry_closed);
                return r;
        }
        w->armed[w->n_armed++] = e;
        return 0;
}

static void log_watch_error(vd_log_level level, const char *input, const char *path, int r)
{
        char a[PATH_MAX + 8], b[PATH_MAX + 8];
        vd_log(level, "watch_error", "input=%s path=%s error=\"%s\"",
               vd_log_value(input, a, sizeof(a)), vd_log_value(path, b, sizeof(b)), uv_strerror(r));
}

/* The parent directory of path, and the last component, in the buffers given. */
static void split_path(const char *path, char *dir, char *base)
{
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s", path);
        size_t len = strlen(tmp);
        while (len > 1 && tmp[len - 1] == '/') /* "snap/" names snap */
                tmp[--len] = '\0';
        char copy[PATH_MAX];
        memcpy(copy, tmp, len + 1);
        snprintf(dir, PATH_MAX, "%s", dirname(copy));
        memcpy(copy, tmp, len + 1);
        snprintf(base, NAME_MAX + 1, "%s", basename(copy));
}

static void arm_input(vd_watch *w, size_t i)
{
        const char *path = w->inputs.path[i];
        char dir[PATH_MAX], base[NAME_MAX + 1], real[PATH_MAX];
        int r = arm_one(w, i, path, "");
        if (r < 0 && r != UV_ENOENT)
                log_watch_error(VD_LOG_WARN, path, path, r);
        split_path(path, dir, base);
        r = arm_one(w, i, dir, base);
        if (r < 0)
                log_watch_error(VD_LOG_WARN, path, dir, r);
        if (realpath(path, real) != NULL) {
                char real_dir[PATH_MAX], real_base[NAME_MAX + 1], abs_dir[PATH_MAX];
                split_path(real, real_dir, real_base);
                /* a symlink somewhere on the way: the target's own directory too */
                if (realpath(dir, abs_dir) == NULL || strcmp(abs_dir, real_dir) != 0 ||
                    strcmp(base, real_base) != 0) {
                        r = arm_one(w, i, real_dir, real_base);
                        if (r < 0)
                                log_watch_error(VD_LOG_DEBUG, path, real_dir, r);
                }
        }
}

static void disarm(vd_watch *w)
{
        for (size_t i = 0; i < w->n_armed; i++)
                uv_close((uv_handle_t *)&w->armed[i]->handle, entry_closed);
        w->n_armed = 0;
}

void vd_watch_rearm(vd_watch *w)
{
        if (w == NULL || w->closing)
                return;
        disarm(w);
        for (size_t i = 0; i < w->inputs.n; i++)
                arm_input(w, i);
}

int vd_watch_set_inputs(vd_watch *w, const vd_inputs *in)
{
        vd_inputs copy;
        vd_inputs_init(&copy);
        int r = vd_inputs_copy(&copy, in);
        if (r < 0)
                return r;
        vd_inputs_free(&w->inputs);
        w->inputs = copy;
        w->changed = -1;
        vd_watch_rearm(w);
        return 0;
}

size_t vd_watch_armed(const vd_watch *w)
{
        return w != NULL ? w->n_armed : 0;
}

int vd_watch_new(uv_loop_t *loop, const vd_inputs *in, uint64_t quiet_ms, uint64_t max_ms,
                 vd_watch_fn fn, void *arg, vd_watch **out)
{
        *out = NULL;
        vd_watch *w = calloc(1, sizeof(*w));
        if (w == NULL)
                return -ENOMEM;
        w->loop = loop;
        w->fn = fn;
        w->arg = arg;
        w->changed = -1;
        vd_debounce_init(&w->debounce, quiet_ms, max_ms);
        int r = vd_inputs_copy(&w->inputs, in);
        if (r == 0)
                r = uv_timer_init(loop, &w->timer);
        if (r < 0) {
                vd_inputs_free(&w->inputs);
                free(w);
                return r;
        }
        w->timer.data = w;
        w->open_handles = 1;
        vd_watch_rearm(w);
        *out = w;
        return 0;
}

void vd_watch_close(vd_watch *w)
{
        if (w == NULL || w->closing)
                return;
        w->closing = true;
        disarm(w);
        uv_close((uv_handle_t *)&w->timer, timer_closed);
}

/* aws_json.c — the JSON reader of the AWS snapshot loader: reads a whole file, parses it with
 * cJSON into the load's arena (errors with line and column), and reads members with their
 * type checked (errors with the JSON path). Also the text builders for JSON paths and claims.
 * Must not: know the fields of either AWS document, or free a tree (the arena does). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aws_int.h"

#define FILE_SIZE_MAX ((size_t)1 << 30) /* 1 GiB: far above any real VPC */

/* Text builders for paths and claims, made for every endpoint and ENI: snprintf with %.Ns
 * cost over 700 instructions a call there. Each appends to out (capacity cap, at *at),
 * truncating, and keeps it NUL-terminated. */
void vd_aws_put_text(char *out, size_t cap, size_t *at, const char *text, size_t max)
{
        size_t n = strnlen(text, max);
        if (*at >= cap)
                return;
        if (n > cap - 1 - *at)
                n = cap - 1 - *at;
        memcpy(out + *at, text, n);
        *at += n;
        out[*at] = '\0';
}

void vd_aws_put_index(char *out, size_t cap, size_t *at, size_t index)
{
        char digits[24];
        size_t n = sizeof(digits);
        digits[--n] = '\0';
        do {
                digits[--n] = (char)('0' + index % 10);
                index /= 10;
        } while (index > 0 && n > 0);
        vd_aws_put_text(out, cap, at, "[", 1);
        vd_aws_put_text(out, cap, at, digits + n, sizeof(digits));
        vd_aws_put_text(out, cap, at, "]", 1);
}

static const char *json_kind(const json_t *v)
{
        if (cJSON_IsObject(v))
                return "an object";
        if (cJSON_IsArray(v))
                return "an array";
        if (cJSON_IsString(v))
                return "a string";
        if (cJSON_IsNumber(v))
                return "a number";
        if (cJSON_IsBool(v))
                return "a boolean";
        if (cJSON_IsNull(v))
                return "null";
        return "something else";
}

static const char *expected_kind(json_want t)
{
        switch (t) {
        case WANT_OBJECT:
                return "an object";
        case WANT_ARRAY:
                return "an array";
        case WANT_STRING:
                return "a string";
        case WANT_BOOL:
        default:
                return "true or false";
        }
}

static bool json_is(const json_t *v, json_want t)
{
        switch (t) {
        case WANT_OBJECT:
                return cJSON_IsObject(v);
        case WANT_ARRAY:
                return cJSON_IsArray(v);
        case WANT_STRING:
                return cJSON_IsString(v);
        case WANT_BOOL:
        default:
                return cJSON_IsBool(v);
        }
}

int vd_aws_no_memory(loader *l)
{
        vd_error_set(l->err, "%s: out of memory", l->ep_file);
        return -ENOMEM;
}

int vd_aws_type_error(loader *l, const char *file, const char *path, const char *expected,
                      const json_t *got)
{
        return vd_error_set(l->err, "%s: %s: expected %s, got %s", file, path, expected,
                            json_kind(got));
}

/* The members of obj named keys[0..n), in one pass over obj: found[k] (NULL when absent) and
 * twice[k], whether keys[k] appears more than once. RFC 8259 §4 leaves duplicate names to
 * the reader; the AWS CLI never writes them, so a field we read that appears twice was edited
 * by hand and is refused rather than read one way or the other. */
void vd_aws_pick(const json_t *obj, const char *const *keys, size_t n, const json_t **found,
                 bool *twice)
{
        for (size_t k = 0; k < n; k++) {
                found[k] = NULL;
                twice[k] = false;
        }
        if (!cJSON_IsObject(obj))
                return;
        for (const json_t *c = obj->child; c != NULL; c = c->next) {
                if (c->string == NULL)
                        continue;
                for (size_t k = 0; k < n; k++) {
                        if (c->string[0] != keys[k][0] || strcmp(c->string, keys[k]) != 0)
                                continue;
                        if (found[k] != NULL)
                                twice[k] = true;
                        else
                                found[k] = c;
                        break;
                }
        }
}

static const json_t *lookup(const json_t *obj, const char *key, bool *twice)
{
        const json_t *found;
        vd_aws_pick(obj, &key, 1, &found, twice);
        return found;
}

/* obj[key] when it is a string, appears once and obj is an object; else NULL (and the caller
 * takes the slow path through vd_aws_member() for the message). */
const json_t *vd_aws_string_member(const json_t *obj, const char *key)
{
        bool twice;
        const json_t *v = lookup(obj, key, &twice);
        return !twice && cJSON_IsString(v) ? v : NULL;
}

/* v, the vd_aws_member key of the object at JSON path `where` (twice: key appears more than once).
 * Absent or null → *out = NULL and 0. Present with another type than want, or twice → error.
 * required → absent is an error. The path is formatted only for an error: this runs for
 * every field of every endpoint and ENI. */
int vd_aws_check_member(loader *l, const char *file, const char *where, const char *key,
                        const json_t *v, bool twice, json_want want, bool required,
                        const json_t **out)
{
        char path[JSON_PATH_CAP];

        *out = NULL;
        if (twice) {
                snprintf(path, sizeof(path), "%s%s%s", where, where[0] ? "." : "", key);
                return vd_error_set(l->err,
                                    "%s: %s: expected one value, but the key appears twice in "
                                    "the object",
                                    file, path);
        }
        if (v == NULL || cJSON_IsNull(v)) {
                if (!required)
                        return 0;
                snprintf(path, sizeof(path), "%s%s%s", where, where[0] ? "." : "", key);
                return vd_error_set(l->err, "%s: %s: expected %s, but it is missing", file, path,
                                    expected_kind(want));
        }
        if (!json_is(v, want)) {
                snprintf(path, sizeof(path), "%s%s%s", where, where[0] ? "." : "", key);
                return vd_aws_type_error(l, file, path, expected_kind(want), v);
        }
        *out = v;
        return 0;
}

/* obj[key] at JSON path `where`, checked as vd_aws_check_member says. */
int vd_aws_member(loader *l, const char *file, const json_t *obj, const char *where,
                  const char *key, json_want want, bool required, const json_t **out)
{
        bool twice;
        const json_t *v = lookup(obj, key, &twice);
        return vd_aws_check_member(l, file, where, key, v, twice, want, required, out);
}

/* The JSON trees of one load live in an arena: a few large mappings instead of a malloc per
 * value (a 45 MB snapshot has over a million), released at once when the load ends, so the
 * freed trees neither fragment the heap nor stay in the resident set. cJSON's hooks are
 * process-wide, so they route to the arena of the calling thread while a load runs and to
 * malloc/free otherwise; a tree made in an arena is never passed to cJSON_Delete. */
#define ARENA_CHUNK ((size_t)4 << 20)
#define ARENA_ALIGN 16

typedef struct arena_chunk {
        struct arena_chunk *next;
        size_t size, used;
} arena_chunk;

static _Thread_local json_arena *current_arena;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static size_t round_up(size_t n, size_t to)
{
        return (n + to - 1) / to * to;
}

void *vd_aws_arena_malloc(size_t n)
{
        json_arena *a = current_arena;
        const size_t header = round_up(sizeof(arena_chunk), ARENA_ALIGN);

        if (a == NULL)
                return malloc(n);
        if (n > SIZE_MAX / 2)
                return NULL;
        n = round_up(n ? n : 1, ARENA_ALIGN);
        arena_chunk *c = a->head;
        if (c == NULL || c->size - c->used < n) {
                size_t size = n + header > ARENA_CHUNK ? round_up(n + header, 4096) : ARENA_CHUNK;
                void *p =
                    mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                        return NULL;
                c = p;
                c->size = size;
                c->used = header;
                c->next = a->head;
                a->head = c;
        }
        void *r = (char *)c + c->used;
        c->used += n;
        return r;
}

static void arena_free(void *p)
{
        if (current_arena == NULL)
                free(p);
}

static void install_hooks(void)
{
        cJSON_Hooks hooks = {.malloc_fn = vd_aws_arena_malloc, .free_fn = arena_free};
        cJSON_InitHooks(&hooks);
}

static void arena_release(json_arena *a)
{
        while (a->head != NULL) {
                arena_chunk *c = a->head;
                a->head = c->next;
                munmap(c, c->size);
        }
}

void vd_aws_arena_begin(json_arena *a)
{
        pthread_once(&hooks_once, install_hooks);
        current_arena = a;
}

void vd_aws_arena_end(json_arena *a)
{
        current_arena = NULL;
        arena_release(a);
}

static bool is_json_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Line and column (both from 1) of offset off in buf. */
static void text_position(const char *buf, size_t off, unsigned *line, unsigned *col)
{
        *line = 1;
        *col = 1;
        for (size_t i = 0; i < off; i++) {
                if (buf[i] == '\n') {
                        (*line)++;
                        *col = 1;
                } else {
                        (*col)++;
                }
        }
}

#if defined(__SANITIZE_THREAD__)
#define VD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VD_TSAN 1
#endif
#endif

/* name in the directory dir_fd was opened on. ThreadSanitizer (clang 14) does not intercept
 * openat, so a descriptor number that another thread used before would look like a race to
 * it; under TSan the same directory is reached through its /proc/self/fd link with open(),
 * which it does intercept. */
static int open_in_dir(int dir_fd, const char *name)
{
#ifdef VD_TSAN
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dir_fd, name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
                errno = ENAMETOOLONG;
                return -1;
        }
        return open(path, O_RDONLY | O_CLOEXEC);
#else
        return openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
#endif
}

/* The whole file in one buffer (sized from fstat for a regular file, grown for a pipe). Not
 * mapped: a snapshot rewritten in place while it is read would raise SIGBUS. */
static int read_file(loader *l, const char *file, char **out, size_t *out_len)
{
        char *buf = NULL;
        size_t len = 0, cap = 0;
        struct stat st;
        int rc = 0;
        const char *slash = strrchr(file, '/');
        int fd = open_in_dir(l->dir_fd, slash != NULL ? slash + 1 : file);

        *out = NULL;
        *out_len = 0;
        if (fd < 0)
                return vd_error_set(l->err, "%s: cannot open: %s", file, strerror(errno));
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
                if ((uint64_t)st.st_size > FILE_SIZE_MAX) {
                        rc = vd_error_set(l->err, "%s: larger than %zu bytes", file, FILE_SIZE_MAX);
                        goto out;
                }
                cap = (size_t)st.st_size + 1; /* one more: a file that grew is noticed */
        }
        for (;;) {
                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : 65536;
                        char *nbuf;
                        if (ncap > FILE_SIZE_MAX + 1)
                                ncap = FILE_SIZE_MAX + 1;
                        if (len == ncap) {
                                rc = vd_error_set(l->err, "%s: larger than %zu bytes", file,
                                                  FILE_SIZE_MAX);
                                goto out;
                        }
                        nbuf = realloc(buf, ncap);
                        if (nbuf == NULL) {
                                rc = vd_aws_no_memory(l);
                                goto out;
                        }
                        buf = nbuf;
                        cap = ncap;
                } else if (buf == NULL) {
                        buf = malloc(cap);
                        if (buf == NULL) {
                                rc = vd_aws_no_memory(l);
                                goto out;
                        }
                }
                ssize_t got = read(fd, buf + len, cap - len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        rc = vd_error_set(l->err, "%s: cannot read: %s", file, strerror(errno));
                        goto out;
                }
                if (got == 0)
                        break;
                len += (size_t)got;
        }
        if (len > FILE_SIZE_MAX) {
                rc = vd_error_set(l->err, "%s: larger than %zu bytes", file, FILE_SIZE_MAX);
                goto out;
        }
out:
        close(fd);
        if (rc < 0) {
                free(buf);
                return rc;
        }
        *out = buf;
        *out_len = len;
        return 0;
}

/* Reads a whole file and parses it. Errors: unreadable, empty, too large, not JSON. */
int vd_aws_load_json(loader *l, const char *file, json_t **out)
{
        char *buf = NULL;
        size_t len = 0, skip = 0;
        int rc = 0;

        *out = NULL;
        if ((rc = read_file(l, file, &buf, &len)) < 0)
                return rc;
        if (len >= 2 && (((uint8_t)buf[0] == 0xff && (uint8_t)buf[1] == 0xfe) ||
                         ((uint8_t)buf[0] == 0xfe && (uint8_t)buf[1] == 0xff))) {
                rc = vd_error_set(l->err,
                                  "%s: the file is UTF-16 (it starts with a UTF-16 byte-order "
                                  "mark, as PowerShell 5 redirection writes); expected UTF-8 "
                                  "JSON as the AWS CLI prints it (save it with Out-File "
                                  "-Encoding utf8)",
                                  file);
                goto out;
        }
        if (len >= 3 && (uint8_t)buf[0] == 0xef && (uint8_t)buf[1] == 0xbb &&
            (uint8_t)buf[2] == 0xbf) {
                skip = 3; /* a UTF-8 byte-order mark: ignored (see the top of aws.c) */
        }
        if (len == skip) {
                rc = vd_error_set(l->err, "%s: the file is empty, expected a JSON object", file);
                goto out;
        }
        const char *end = NULL;
        *out = cJSON_ParseWithLengthOpts(buf + skip, len - skip, &end, false);
        if (*out == NULL) {
                /* cJSON points at or just after the offending character, and at the last one
                 * when the text ends too early. */
                const char *text = buf + skip;
                size_t n = len - skip, off = end != NULL ? (size_t)(end - text) : n;
                unsigned line, col;
                bool rest_blank = true;
                if (off > n)
                        off = n;
                for (size_t i = off; i < n && rest_blank; i++)
                        rest_blank = is_json_space(text[i]);
                if (rest_blank && off + 1 >= n) {
                        text_position(text, n, &line, &col);
                        rc = vd_error_set(l->err, "%s:%u:%u: not valid JSON: the text ends early",
                                          file, line, col);
                        goto out;
                }
                while (off > 0 && (off >= n || is_json_space(text[off])))
                        off--;
                text_position(text, off, &line, &col);
                unsigned char c = (unsigned char)text[off];
                if (c > 0x20 && c < 0x7f)
                        rc = vd_error_set(l->err, "%s:%u:%u: not valid JSON near '%c'", file, line,
                                          col, c);
                else
                        rc = vd_error_set(l->err, "%s:%u:%u: not valid JSON near byte 0x%02x", file,
                                          line, col, c);
                goto out;
        }
        size_t off = (size_t)(end - buf);
        while (off < len &&
               (buf[off] == ' ' || buf[off] == '\t' || buf[off] == '\n' || buf[off] == '\r'))
                off++;
        if (off < len) {
                unsigned line, col;
                text_position(buf + skip, off - skip, &line, &col);
                rc = vd_error_set(l->err, "%s:%u:%u: not valid JSON: text after the JSON value",
                                  file, line, col);
                goto out;
        }
        if (!cJSON_IsObject(*out)) {
                rc = vd_aws_type_error(l, file, "top level", "an object", *out);
                goto out;
        }
out:
        if (rc < 0)
                *out = NULL; /* the tree stays in the arena */
        free(buf);
        return rc;
}

/* metrics.c — the HTTP endpoint (libmicrohttpd on its own internal thread) that serves GET
 * /metrics, /health and /ready through the handlers it is given, and the Prometheus text
 * exposition helpers (escaping, samples, the process metrics from /proc/self).
 *
 * It owns nothing of the DNS service: it must never run on a worker, never wait for one, and
 * never answer anything but the three paths. What it reports comes from its handlers
 * (server.c), which read published values only. */
#include <dirent.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "vpcdns/metrics.h"

struct vd_http {
        struct MHD_Daemon *daemon;
        vd_http_handlers h;
};

/* ---- the exposition format ---------------------------------------------------------- */

/* (The FILE of a scrape belongs to the HTTP thread alone: the _unlocked calls are safe.)
 * Writes text with backslash and newline escaped, and the double quote too when quote: the
 * runs between those characters go out whole (a scrape writes a few kilobytes of help text). */
static void put_escaped(FILE *out, const char *text, bool quote)
{
        const char *specials = quote ? "\\\n\"" : "\\\n";
        const char *p = text;
        for (;;) {
                size_t run = strcspn(p, specials);
                fwrite_unlocked(p, 1, run, out);
                p += run;
                if (*p == '\0')
                        return;
                fputs_unlocked(*p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : "\\\"", out);
                p++;
        }
}

void vd_prom_family(FILE *out, const char *name, const char *type, const char *help)
{
        fputs_unlocked("# HELP ", out);
        fputs_unlocked(name, out);
        fputc_unlocked(' ', out);
        put_escaped(out, help, false);
        fputs_unlocked("\n# TYPE ", out);
        fputs_unlocked(name, out);
        fputc_unlocked(' ', out);
        fputs_unlocked(type, out);
        fputc_unlocked('\n', out);
}

void vd_prom_label_value(FILE *out, const char *value)
{
        put_escaped(out, value, true);
}

static void put_name(FILE *out, const char *name, const char *key, const char *value)
{
        fputs_unlocked(name, out);
        if (key != NULL) {
                fputc_unlocked('{', out);
                fputs_unlocked(key, out);
                fputs_unlocked("=\"", out);
                vd_prom_label_value(out, value != NULL ? value : "");
                fputs_unlocked("\"}", out);
        }
}

void vd_prom_u64(FILE *out, uint64_t v)
{
        char digits[24];
        size_t n = sizeof(digits);
        digits[--n] = '\0';
        do {
                digits[--n] = (char)('0' + v % 10);
                v /= 10;
        } while (v != 0);
        fputs_unlocked(digits + n, out);
}

void vd_prom_sample(FILE *out, const char *name, const char *key, const char *value, uint64_t v)
{
        put_name(out, name, key, value);
        fputc_unlocked(' ', out);
        vd_prom_u64(out, v);
        fputc_unlocked('\n', out);
}

void vd_prom_sample_double(FILE *out, const char *name, const char *key, const char *value,
                           double v)
{
        put_name(out, name, key, value);
        fprintf(out, " %.17g\n", v);
}

/* Field n (1-based, as proc(5) numbers them) of /proc/self/stat, after the command name. */
static bool proc_stat_field(const char *stat, int n, unsigned long long *out)
{
        const char *p = strrchr(stat, ')');
        if (p == NULL)
                return false;
        p++;
        for (int field = 3; field <= n; field++) {
                while (*p == ' ')
                        p++;
                if (*p == '\0')
                        return false;
                if (field == n) {
                        char *end;
                        *out = strtoull(p, &end, 10);
                        return end != p;
                }
                while (*p != ' ' && *p != '\0')
                        p++;
        }
        return false;
}

static bool read_small_file(const char *path, char *buf, size_t cap)
{
        FILE *f = fopen(path, "re");
        if (f == NULL)
                return false;
        size_t n = fread(buf, 1, cap - 1, f);
        fclose(f);
        buf[n] = '\0';
        return n > 0;
}

/* The boot time in unix seconds (btime of /proc/stat), 0 when unknown. Read once: only the
 * HTTP thread calls it. */
static unsigned long long boot_time(void)
{
        static unsigned long long known;
        char buf[16384];
        if (known != 0)
                return known;
        if (!read_small_file("/proc/stat", buf, sizeof(buf)))
                return 0;
        const char *p = strstr(buf, "\nbtime ");
        known = p != NULL ? strtoull(p + 7, NULL, 10) : 0;
        return known;
}

void vd_prom_process(FILE *out)
{
        char stat[1024];
        long ticks = sysconf(_SC_CLK_TCK);
        long page = sysconf(_SC_PAGESIZE);
        unsigned long long utime, stime, start, rss;

        if (ticks > 0 && read_small_file("/proc/self/stat", stat, sizeof(stat))) {
                if (proc_stat_field(stat, 14, &utime) && proc_stat_field(stat, 15, &stime)) {
                        vd_prom_family(out, "process_cpu_seconds_total", "counter",
                                       "Total user and system CPU time spent in seconds.");
                        vd_prom_sample_double(out, "process_cpu_seconds_total", NULL, NULL,
                                              (double)(utime + stime) / (double)ticks);
                }
                if (page > 0 && proc_stat_field(stat, 24, &rss)) {
                        vd_prom_family(out, "process_resident_memory_bytes", "gauge",
                                       "Resident memory size in bytes.");
                        vd_prom_sample(out, "process_resident_memory_bytes", NULL, NULL,
                                       rss * (unsigned long long)page);
                }
                unsigned long long boot = boot_time();
                if (boot > 0 && proc_stat_field(stat, 22, &start)) {
                        vd_prom_family(out, "process_start_time_seconds", "gauge",
                                       "Start time of the process since unix epoch in seconds.");
                        vd_prom_sample_double(out, "process_start_time_seconds", NULL, NULL,
                                              (double)boot + (double)start / (double)ticks);
                }
        }
        DIR *d = opendir("/proc/self/fd");
        if (d != NULL) {
                uint64_t fds = 0;
                struct dirent *e;
                while ((e = readdir(d)) != NULL)
                        if (e->d_name[0] != '.')
                                fds++;
                closedir(d);
                vd_prom_family(out, "process_open_fds", "gauge",
                               "Number of open file descriptors.");
                vd_prom_sample(out, "process_open_fds", NULL, NULL, fds > 0 ? fds - 1 : 0);
        }
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                vd_prom_family(out, "process_max_fds", "gauge",
                               "Maximum number of open file descriptors.");
                vd_prom_sample(out, "process_max_fds", NULL, NULL, (uint64_t)rl.rlim_cur);
        }
}

/* ---- the endpoint ------------------------------------------------------------------- */

/* The body being rendered: stdio writes into a 64 KiB buffer of its own (memcpy for every
 * fputs) and hands it here in large pieces. open_memstream would be simpler but its stdio
 * copies byte by byte for short strings, which a scrape is made of: twice the instructions. */
typedef struct render_buf {
        char *data;
        size_t len, cap;
        bool failed;
} render_buf;

static ssize_t body_write(void *cookie, const char *buf, size_t n)
{
        render_buf *b = cookie;
        if (b->failed)
                return -1;
        if (b->cap - b->len < n + 1) {
                size_t cap = b->cap > 0 ? b->cap : 65536;
                while (cap - b->len < n + 1)
                        cap *= 2;
                char *grown = realloc(b->data, cap);
                if (grown == NULL) {
                        b->failed = true;
                        return -1;
                }
                b->data = grown;
                b->cap = cap;
        }
        memcpy(b->data + b->len, buf, n);
        b->len += n;
        b->data[b->len] = '\0';
        return (ssize_t)n;
}

char *vd_http_render_metrics(const vd_http_handlers *h, size_t *len)
{
        render_buf b = {0};
        cookie_io_functions_t io = {.write = body_write};
        FILE *out = fopencookie(&b, "w", io);
        if (out == NULL)
                return NULL;
        setvbuf(out, NULL, _IOFBF, 65536);
        h->metrics(h->arg, out);
        if (fclose(out) != 0 || b.failed || b.data == NULL) {
                free(b.data);
                return NULL;
        }
        *len = b.len;
        return b.data;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             const char *type)
{
        struct MHD_Response *r =
            MHD_create_response_from_buffer_with_free_callback(len, body, free);
        if (r == NULL) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, MHD_HTTP_METHOD_GET);
        enum MHD_Result rc = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
        char *body = strdup(text);
        if (body == NULL)
                return MHD_NO;
        return reply(c, status, body, strlen(body), "text/plain; charset=utf-8");
}

/* A probe: 200 "OK", or 503 with the reason. */
static enum MHD_Result reply_probe(struct MHD_Connection *c, bool ok, const char *why)
{
        char text[512];
        if (ok && why[0] == '\0')
                return reply_text(c, MHD_HTTP_OK, "OK\n");
        if (ok) { /* ready, with a warning (serving the last-good copy of the data) */
                snprintf(text, sizeof(text), "OK: %s\n", why);
                return reply_text(c, MHD_HTTP_OK, text);
        }
        snprintf(text, sizeof(text), "%s\n", why);
        return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **state)
{
        vd_http *h = cls;
        char why[400] = "";
        (void)version;
        (void)upload_data;
        (void)state;

        bool metrics = strcmp(url, "/metrics") == 0;
        bool health = strcmp(url, "/health") == 0;
        bool ready = strcmp(url, "/ready") == 0;
        if (!metrics && !health && !ready)
                return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
                *upload_size = 0; /* a body is never read */
                return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        if (health) {
                bool ok = h->h.health(h->h.arg, why, sizeof(why));
                return reply_probe(c, ok, why);
        }
        if (ready) {
                bool ok = h->h.ready(h->h.arg, why, sizeof(why));
                return reply_probe(c, ok, why);
        }
        size_t len = 0;
        char *body = vd_http_render_metrics(&h->h, &len);
        if (body == NULL)
                return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return reply(c, MHD_HTTP_OK, body, len, VD_PROM_CONTENT_TYPE);
}

/* Whether a listening TCP socket holds addr: a bind without SO_REUSEPORT fails then. */
static bool address_served(const vd_addr *addr)
{
        int one = 1;
        int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (addr->ss.ss_family == AF_INET6)
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        bool served =
            bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0 && errno == EADDRINUSE;
        close(fd);
        return served;
}

int vd_http_start(const vd_addr *addr, const vd_http_handlers *handlers, bool beside, vd_http **out,
                  vd_error *err)
{
        char text[64];
        *out = NULL;
        vd_addr_format(addr, text, sizeof(text));
        if (!beside && address_served(addr))
                return vd_error_set(err,
                                    "metrics_listen %s: %s by another program (a second vpcdns "
                                    "here would answer part of the probes); choose another "
                                    "address, or start with --takeover to replace the vpcdns "
                                    "that serves it",
                                    text, strerror(EADDRINUSE));
        vd_http *h = calloc(1, sizeof(*h));
        if (h == NULL) {
                vd_error_set(err, "metrics_listen %s: out of memory", text);
                return -ENOMEM;
        }
        h->h = *handlers;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
        if (addr->ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        h->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
            (const struct sockaddr *)&addr->ss, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)VD_HTTP_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            (unsigned)VD_HTTP_PER_IP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)VD_HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)VD_HTTP_MEMORY,
            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
        if (h->daemon == NULL) {
                int e = errno != 0 ? errno : EADDRINUSE;
                free(h);
                vd_error_set(err, "metrics_listen %s: cannot start the HTTP server: %s", text,
                             strerror(e));
                return -e;
        }
        *out = h;
        return 0;
}

void vd_http_stop(vd_http *h)
{
        if (h == NULL)
                return;
        MHD_stop_daemon(h->daemon);
        free(h);
}

/* metrics.c — the HTTP endpoint (libmicrohttpd on its own internal thread) that serves GET
 * /metrics, /health and /ready through the handlers it is given, and the Prometheus text
 * exposition helpers: the text buffer a scrape is written into (appends and number formatting
 * without stdio), escaping, samples, the process metrics from /proc/self.
 *
 * It owns nothing of the DNS service: it must never run on a worker, never wait for one, and
 * never answer anything but the three paths. What it reports comes from its handlers
 * (server.c), which read published values only. */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "vpcdns/metrics.h"

struct vd_http {
        struct MHD_Daemon *daemon;
        vd_http_handlers h;
};

/* ---- the text buffer --------------------------------------------------------------- */

#define TEXT_FIRST_CAP 65536 /* a scrape is about 30 KB: one allocation serves it */

void vd_text_fail(vd_text *t)
{
        t->failed = true;
        if (t->data != NULL)
                t->cap = t->len + 1; /* no room: every later append goes to vd_text_grow */
}

bool vd_text_grow(vd_text *t, size_t n)
{
        if (t->failed)
                return false;
        if (t->cap - t->len > n)
                return true;
        size_t cap = t->cap > 0 ? t->cap : TEXT_FIRST_CAP;
        while (cap - t->len <= n) {
                if (cap > SIZE_MAX / 2) {
                        vd_text_fail(t);
                        return false;
                }
                cap *= 2;
        }
        char *grown = realloc(t->data, cap);
        if (grown == NULL) {
                vd_text_fail(t);
                return false;
        }
        grown[t->len] = '\0';
        t->data = grown;
        t->cap = cap;
        return true;
}

void vd_text_free(vd_text *t)
{
        free(t->data);
        *t = (vd_text){0};
}

void vd_text_u64(vd_text *t, uint64_t v)
{
        char digits[20];
        size_t n = sizeof(digits);
        do {
                digits[--n] = (char)('0' + v % 10);
                v /= 10;
        } while (v != 0);
        vd_text_put(t, digits + n, sizeof(digits) - n);
}

/* Below this, ns is exact as a double and (double)ns / 1e9, under 2^22, is within half its last
 * place (at most 2^-32 s) of ns / 1e9: "%.9f" rounds it back to exactly ns's digits, which can
 * then be written without printf. Above it (48 days of summed latency) printf decides. */
#define SECONDS_NS_EXACT (4194304ull * 1000000000ull) /* 2^22 s in ns */

void vd_text_seconds_ns(vd_text *t, uint64_t ns)
{
        if (ns >= SECONDS_NS_EXACT) {
                char text[64];
                int n = snprintf(text, sizeof(text), "%.9f", (double)ns / 1e9);
                if (n > 0 && (size_t)n < sizeof(text))
                        vd_text_put(t, text, (size_t)n);
                return;
        }
        char frac[10];
        uint64_t f = ns % 1000000000u;
        vd_text_u64(t, ns / 1000000000u);
        frac[0] = '.';
        for (int i = 9; i >= 1; i--) {
                frac[i] = (char)('0' + f % 10);
                f /= 10;
        }
        vd_text_put(t, frac, sizeof(frac));
}

#ifdef __SIZEOF_INT128__
/* "%.17g" of v, 1e-4 <= |v| < 1e16, exactly as printf writes it, in digits (a NUL-terminated
 * string of at most 24 bytes); false when v is outside that range (printf's notation there is
 * the exponent one, left to printf). v = m * 2^e exactly; then q = m * 2^e * 10^p rounded to
 * the nearest integer, ties to even (as glibc rounds), for the p that gives q 17 digits: every
 * product fits in 128 bits in this range (m < 2^53, 10^p <= 10^20, e >= -67). */
static bool format_g17(double v, char *out)
{
        static const unsigned __int128 ten17 = (unsigned __int128)100000000000000000ull;
        bool negative = signbit(v);
        double a = negative ? -v : v;
        if (!(a >= 1e-4 && a < 1e16))
                return false;
        uint64_t bits;
        memcpy(&bits, &a, sizeof(bits));
        int e = (int)((bits >> 52) & 0x7ff) - 1075;
        uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
        /* p: 16 - the decimal exponent; a first guess from the binary one (log10 2 ~ 1233 / 2^12),
         * then corrected on the exact product */
        int p = 16 - (((52 + e) * 1233) >> 12);
        unsigned __int128 q = 0;
        bool found = false;
        for (int tries = 0; tries < 4 && !found; tries++) {
                if (p < 0 || p > 20)
                        return false;
                unsigned __int128 scaled = m;
                for (int i = 0; i < p; i++)
                        scaled *= 10;
                unsigned __int128 rem = 0, half = 0;
                if (e >= 0) {
                        scaled <<= e;
                        q = scaled;
                } else {
                        q = scaled >> -e;
                        rem = scaled & ((((unsigned __int128)1) << -e) - 1);
                        half = ((unsigned __int128)1) << (-e - 1);
                }
                if (q >= ten17) {
                        p--;
                        continue;
                }
                if (q < ten17 / 10) {
                        p++;
                        continue;
                }
                if (rem > half || (rem == half && e < 0 && (q & 1) != 0))
                        q++;
                if (q == ten17) { /* rounded up to 18 digits: one fewer decimal */
                        q = ten17 / 10;
                        p--;
                }
                found = true;
        }
        int x = 16 - p; /* the decimal exponent, -4..16: printf's fixed notation */
        if (!found || x < -4 || x > 16)
                return false;
        char digits[17];
        for (int i = 16; i >= 0; i--) {
                digits[i] = (char)('0' + (unsigned)(q % 10));
                q /= 10;
        }
        char *o = out;
        if (negative)
                *o++ = '-';
        int point; /* digits before the decimal point */
        if (x >= 0) {
                memcpy(o, digits, (size_t)x + 1);
                o += x + 1;
                point = x + 1;
        } else {
                *o++ = '0';
                point = 0;
        }
        int last = 16; /* the last digit that is not a trailing zero of the fraction */
        while (last >= point && digits[last] == '0')
                last--;
        if (last >= point) {
                *o++ = '.';
                for (int i = x; i < -1; i++)
                        *o++ = '0';
                memcpy(o, digits + point, (size_t)(last - point + 1));
                o += last - point + 1;
        }
        *o = '\0';
        return true;
}
#endif

/* Process CPU time, start time and file ages: without printf in the range they live in, with
 * it elsewhere. */
void vd_text_double(vd_text *t, double v)
{
        char text[40];
        int n;
#ifdef __SIZEOF_INT128__
        if (v == 0 && !signbit(v)) {
                vd_text_putc(t, '0');
                return;
        }
        if (format_g17(v, text)) {
                vd_text_puts(t, text);
                return;
        }
#endif
        n = snprintf(text, sizeof(text), "%.17g", v);
        if (n > 0 && (size_t)n < sizeof(text))
                vd_text_put(t, text, (size_t)n);
}

/* ---- the exposition format ---------------------------------------------------------- */

/* Writes text with backslash and newline escaped, and the double quote too when quote, in one
 * pass: the runs between those characters go out whole (a scrape writes a few kilobytes of help
 * text, and strcspn finds the next special character faster than a loop over bytes). */
static void put_escaped(vd_text *out, const char *text, bool quote)
{
        const char *specials = quote ? "\\\n\"" : "\\\n";
        const char *p = text;
        for (;;) {
                size_t run = strcspn(p, specials);
                vd_text_put(out, p, run);
                p += run;
                if (*p == '\0')
                        return;
                vd_text_put(out, *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : "\\\"", 2);
                p++;
        }
}

void vd_prom_family(vd_text *out, const char *name, const char *type, const char *help)
{
        size_t name_len = strlen(name);
        vd_text_put(out, "# HELP ", 7);
        vd_text_put(out, name, name_len);
        vd_text_putc(out, ' ');
        put_escaped(out, help, false);
        vd_text_put(out, "\n# TYPE ", 8);
        vd_text_put(out, name, name_len);
        vd_text_putc(out, ' ');
        vd_text_puts(out, type);
        vd_text_putc(out, '\n');
}

void vd_prom_label_value(vd_text *out, const char *value)
{
        put_escaped(out, value, true);
}

static void put_name(vd_text *out, const char *name, const char *key, const char *value)
{
        vd_text_puts(out, name);
        if (key != NULL) {
                vd_text_putc(out, '{');
                vd_text_puts(out, key);
                vd_text_put(out, "=\"", 2);
                vd_prom_label_value(out, value != NULL ? value : "");
                vd_text_put(out, "\"}", 2);
        }
}

void vd_prom_u64(vd_text *out, uint64_t v)
{
        vd_text_u64(out, v);
}

void vd_prom_sample(vd_text *out, const char *name, const char *key, const char *value, uint64_t v)
{
        put_name(out, name, key, value);
        vd_text_putc(out, ' ');
        vd_text_u64(out, v);
        vd_text_putc(out, '\n');
}

void vd_prom_sample_double(vd_text *out, const char *name, const char *key, const char *value,
                           double v)
{
        put_name(out, name, key, value);
        vd_text_putc(out, ' ');
        vd_text_double(out, v);
        vd_text_putc(out, '\n');
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

/* The start of a /proc file, NUL-terminated (read(2): no stdio stream for a few hundred bytes). */
static bool read_small_file(const char *path, char *buf, size_t cap)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        size_t n = 0;
        while (n < cap - 1) {
                ssize_t got = read(fd, buf + n, cap - 1 - n);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0)
                        break;
                n += (size_t)got;
        }
        close(fd);
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

void vd_prom_process(vd_text *out)
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

char *vd_http_render_metrics(const vd_http_handlers *h, size_t *len)
{
        vd_text out = {0};
        h->metrics(h->arg, &out);
        if (out.failed || !vd_text_grow(&out, 0)) {
                vd_text_free(&out);
                return NULL;
        }
        *len = out.len;
        return out.data;
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

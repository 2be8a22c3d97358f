/* vpcdns-bench.c — a DNS load generator for any server, over UDP or TCP: open loop at a fixed
 * offered rate or closed loop with N queries in flight; reports achieved QPS, losses,
 * rcodes and latency percentiles from a log-linear histogram, as text and JSON.
 *
 * It owns one core: single-threaded, non-blocking sockets driven by epoll, every query's wire
 * form built once at start (per send only the ID is patched), UDP sends and receives batched
 * with sendmmsg/recvmmsg. Answers are matched by (socket, ID) and checked against the
 * question. Nothing is allocated per query and no text is formatted during the run (the
 * timeout queue may double in size a few times early on).
 *
 * It must never be pointed at a server the operator does not own; it sends exactly what it
 * is told, as fast as it is told. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "vpcdns/aws.h"
#include "vpcdns/common.h"
#include "vpcdns/config.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/wire.h"

#define PROG "vpcdns-bench"
#define IDS_PER_SOCKET 65536u
#define MAX_SOCKETS 1024u
#define MAX_BATCH 1024u
#define SOCKET_BUFFER (4 << 20)
#define TCP_IN_BUFFER (256 * 1024)
#define NS_PER_S 1000000000ull
#define EXIT_USAGE 1
#define EXIT_SETUP 2

/* ------------------------------------------------------------------------- options */

struct options {
        const char *server_text;
        vd_addr server;
        const char *data_file;
        const char *snapshot_dir;
        double rate;       /* 0: closed loop */
        long outstanding;  /* -1: the mode's default */
        double duration;   /* seconds measured */
        double warmup;     /* seconds before measuring */
        uint64_t max_sent; /* 0: unbounded */
        unsigned timeout_ms;
        unsigned sockets;
        unsigned batch;
        bool tcp;
        int edns; /* -1: no OPT record */
        bool dnssec_ok;
        long pid; /* 0: no server sampling */
        int cpu;  /* -1: not pinned */
        const char *json_path;
        const char *histogram_path;
        const char *label;
        bool quiet;
};

static const char usage_text[] =
    "usage: " PROG " [options]\n"
    "A DNS load generator: UDP (sendmmsg/recvmmsg batches) or TCP, open or closed loop.\n"
    "  -s, --server ADDR:PORT   target (default 127.0.0.1:53); IPv4 or [IPv6]:port\n"
    "  -d, --data FILE          queries, one `name type` per line (dnsperf format; '#'\n"
    "                           comments and blank lines skipped), sent round-robin\n"
    "      --snapshot DIR       instead of -d: every owner name with an A record in the\n"
    "                           AWS snapshot DIR, type A\n"
    "  -r, --rate QPS           open loop at this offered rate; 0 or absent = closed loop\n"
    "  -c, --outstanding N      closed loop: queries in flight (default 200); open loop:\n"
    "                           cap on queries in flight (default 65536 * sockets)\n"
    "  -l, --duration SEC       measured duration (default 10, fractions allowed)\n"
    "  -w, --warmup SEC         traffic before measuring, excluded from every figure\n"
    "                           (default 0)\n"
    "  -n, --max-queries N      stop after N measured queries sent (besides -l)\n"
    "  -t, --timeout MS         a query unanswered this long is lost (default 1000)\n"
    "      --sockets N          UDP sockets (source ports) or TCP connections (default 4)\n"
    "      --batch N            datagrams per sendmmsg/recvmmsg (default 32)\n"
    "      --tcp                DNS over TCP: RFC 7766 pipelining on --sockets connections\n"
    "      --edns SIZE          add an OPT record with this UDP payload size\n"
    "      --do                 set the DO bit (implies --edns 1232)\n"
    "      --pid PID            sample the server's CPU time and RSS (/proc/PID) at the\n"
    "                           start and end of the measured window: CPU us per answer\n"
    "      --cpu N              pin the generator to core N\n"
    "      --json FILE          write the JSON report to FILE ('-' = stdout, and the\n"
    "                           text report goes to stderr)\n"
    "      --histogram FILE     latency distribution for gnuplot: `latency_us\n"
    "                           cumulative_fraction`, one line per non-empty bucket\n"
    "      --label TEXT         copied into the JSON report\n"
    "  -q, --quiet              no text report\n"
    "  -h, --help\n"
    "Latency: closed loop measures from the send; open loop measures from the time the\n"
    "query was scheduled to be sent, so a stalled server or generator shows up in the\n"
    "percentiles (no coordinated omission). Queries in flight at the end get --timeout\n"
    "to be answered. Exit status: 0 when the run completed (losses are figures), 1 on bad\n"
    "usage or when nothing was answered, 2 on setup errors.\n";

static void usage_error(const char *fmt, const char *arg)
{
        fprintf(stderr, PROG ": ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n(" PROG " --help for the options)\n");
        exit(EXIT_USAGE);
}

static double parse_double(const char *opt, const char *text, double min, double max)
{
        char *end = NULL;
        errno = 0;
        double v = strtod(text, &end);
        if (errno != 0 || end == text || *end != '\0' || !(v >= min && v <= max)) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s: expected a number from %g to %g, got \"%%s\"", opt,
                         min, max);
                usage_error(msg, text);
        }
        return v;
}

static uint64_t parse_uint(const char *opt, const char *text, uint64_t min, uint64_t max)
{
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > max) {
                char msg[160];
                snprintf(msg, sizeof msg,
                         "%s: expected an integer from %" PRIu64 " to %" PRIu64 ", got \"%%s\"",
                         opt, min, max);
                usage_error(msg, text);
        }
        return v;
}

enum {
        OPT_SNAPSHOT = 256,
        OPT_SOCKETS,
        OPT_BATCH,
        OPT_TCP,
        OPT_EDNS,
        OPT_DO,
        OPT_PID,
        OPT_CPU,
        OPT_JSON,
        OPT_HISTOGRAM,
        OPT_LABEL,
};

static void parse_options(int argc, char **argv, struct options *o)
{
        static const struct option longopts[] = {
            {"server", required_argument, NULL, 's'},
            {"data", required_argument, NULL, 'd'},
            {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
            {"rate", required_argument, NULL, 'r'},
            {"outstanding", required_argument, NULL, 'c'},
            {"duration", required_argument, NULL, 'l'},
            {"warmup", required_argument, NULL, 'w'},
            {"max-queries", required_argument, NULL, 'n'},
            {"timeout", required_argument, NULL, 't'},
            {"sockets", required_argument, NULL, OPT_SOCKETS},
            {"batch", required_argument, NULL, OPT_BATCH},
            {"tcp", no_argument, NULL, OPT_TCP},
            {"edns", required_argument, NULL, OPT_EDNS},
            {"do", no_argument, NULL, OPT_DO},
            {"pid", required_argument, NULL, OPT_PID},
            {"cpu", required_argument, NULL, OPT_CPU},
            {"json", required_argument, NULL, OPT_JSON},
            {"histogram", required_argument, NULL, OPT_HISTOGRAM},
            {"label", required_argument, NULL, OPT_LABEL},
            {"quiet", no_argument, NULL, 'q'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        *o = (struct options){
            .server_text = "127.0.0.1:53",
            .outstanding = -1,
            .duration = 10,
            .timeout_ms = 1000,
            .sockets = 4,
            .batch = 32,
            .edns = -1,
            .cpu = -1,
        };
        opterr = 0;
        int c;
        while ((c = getopt_long(argc, argv, ":s:d:r:c:l:w:n:t:qh", longopts, NULL)) != -1) {
                switch (c) {
                case 's':
                        o->server_text = optarg;
                        break;
                case 'd':
                        o->data_file = optarg;
                        break;
                case OPT_SNAPSHOT:
                        o->snapshot_dir = optarg;
                        break;
                case 'r':
                        o->rate = parse_double("--rate", optarg, 0, 1e8);
                        break;
                case 'c':
                        o->outstanding = (long)parse_uint("--outstanding", optarg, 1,
                                                          (uint64_t)IDS_PER_SOCKET * MAX_SOCKETS);
                        break;
                case 'l':
                        o->duration = parse_double("--duration", optarg, 0.001, 86400);
                        break;
                case 'w':
                        o->warmup = parse_double("--warmup", optarg, 0, 86400);
                        break;
                case 'n':
                        o->max_sent = parse_uint("--max-queries", optarg, 1, UINT64_MAX / 2);
                        break;
                case 't':
                        o->timeout_ms = (unsigned)parse_uint("--timeout", optarg, 1, 600000);
                        break;
                case OPT_SOCKETS:
                        o->sockets = (unsigned)parse_uint("--sockets", optarg, 1, MAX_SOCKETS);
                        break;
                case OPT_BATCH:
                        o->batch = (unsigned)parse_uint("--batch", optarg, 1, MAX_BATCH);
                        break;
                case OPT_TCP:
                        o->tcp = true;
                        break;
                case OPT_EDNS:
                        o->edns = (int)parse_uint("--edns", optarg, 512, 65535);
                        break;
                case OPT_DO:
                        o->dnssec_ok = true;
                        break;
                case OPT_PID:
                        o->pid = (long)parse_uint("--pid", optarg, 1, 1u << 30);
                        break;
                case OPT_CPU:
                        o->cpu = (int)parse_uint("--cpu", optarg, 0, CPU_SETSIZE - 1);
                        break;
                case OPT_JSON:
                        o->json_path = optarg;
                        break;
                case OPT_HISTOGRAM:
                        o->histogram_path = optarg;
                        break;
                case OPT_LABEL:
                        o->label = optarg;
                        break;
                case 'q':
                        o->quiet = true;
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        exit(0);
                case ':':
                        usage_error("%s needs a value", argv[optind - 1]);
                        break;
                default:
                        usage_error("unknown option \"%s\"", argv[optind - 1]);
                }
        }
        if (optind < argc)
                usage_error("unexpected argument \"%s\"", argv[optind]);
        if (o->data_file != NULL && o->snapshot_dir != NULL)
                usage_error("%s", "-d/--data and --snapshot exclude each other");
        if (o->data_file == NULL && o->snapshot_dir == NULL)
                usage_error("%s", "no queries: give -d FILE or --snapshot DIR");
        if (o->dnssec_ok && o->edns < 0)
                o->edns = VD_UDP_PAYLOAD;
        if (vd_addr_parse(o->server_text, 53, &o->server) != 0)
                usage_error("--server: expected ADDR:PORT or [IPv6]:PORT, got \"%s\"",
                            o->server_text);
        uint64_t max_in_flight = (uint64_t)IDS_PER_SOCKET * o->sockets;
        if (o->outstanding < 0)
                o->outstanding = o->rate > 0 ? (long)max_in_flight : 200;
        if ((uint64_t)o->outstanding > max_in_flight) {
                char text[32];
                snprintf(text, sizeof text, "%ld", o->outstanding);
                usage_error("--outstanding %s is more than 65536 per socket: raise --sockets",
                            text);
        }
}

/* ------------------------------------------------------------------------- queries */

/* Every query's wire form (header with ID 0, question, optional OPT), back to back. */
struct query {
        uint32_t offset;
        uint16_t len;
        uint16_t qname_len;
        uint16_t qtype;
};

struct query_set {
        struct query *q;
        size_t n, cap;
        uint8_t *wire;
        size_t wire_len, wire_cap;
        size_t max_len;
};

static int query_add(struct query_set *qs, const uint8_t *qname, size_t qname_len, uint16_t qtype,
                     int edns, bool dnssec_ok)
{
        size_t len = VD_HEADER_LEN + qname_len + 4 + (edns >= 0 ? 11 : 0);
        if (qs->n == qs->cap) {
                size_t cap = qs->cap ? qs->cap * 2 : 1024;
                struct query *q = realloc(qs->q, cap * sizeof *q);
                if (q == NULL)
                        return -ENOMEM;
                qs->q = q;
                qs->cap = cap;
        }
        if (qs->wire_len + len > qs->wire_cap) {
                size_t cap = qs->wire_cap ? qs->wire_cap * 2 : 65536;
                uint8_t *w = realloc(qs->wire, cap);
                if (w == NULL)
                        return -ENOMEM;
                qs->wire = w;
                qs->wire_cap = cap;
        }
        if (qs->wire_len + len > UINT32_MAX)
                return -E2BIG;
        uint8_t *p = qs->wire + qs->wire_len;
        memset(p, 0, VD_HEADER_LEN);
        vd_wire_put16(p + 2, 0x0100); /* RD */
        vd_wire_put16(p + 4, 1);
        vd_wire_put16(p + 10, edns >= 0 ? 1 : 0);
        memcpy(p + VD_HEADER_LEN, qname, qname_len);
        size_t pos = VD_HEADER_LEN + qname_len;
        vd_wire_put16(p + pos, qtype);
        vd_wire_put16(p + pos + 2, VD_CLASS_IN);
        pos += 4;
        if (edns >= 0) {
                p[pos] = 0; /* root owner */
                vd_wire_put16(p + pos + 1, VD_TYPE_OPT);
                vd_wire_put16(p + pos + 3, (uint16_t)edns);
                vd_wire_put32(p + pos + 5, dnssec_ok ? 0x8000u : 0); /* ext rcode, version, DO */
                vd_wire_put16(p + pos + 9, 0);
        }
        qs->q[qs->n++] = (struct query){.offset = (uint32_t)qs->wire_len,
                                        .len = (uint16_t)len,
                                        .qname_len = (uint16_t)qname_len,
                                        .qtype = qtype};
        qs->wire_len += len;
        if (len > qs->max_len)
                qs->max_len = len;
        return 0;
}

static const struct {
        const char *name;
        uint16_t type;
} type_names[] = {
    {"A", VD_TYPE_A},     {"AAAA", VD_TYPE_AAAA}, {"CNAME", VD_TYPE_CNAME}, {"MX", VD_TYPE_MX},
    {"TXT", VD_TYPE_TXT}, {"SOA", VD_TYPE_SOA},   {"NS", VD_TYPE_NS},       {"PTR", VD_TYPE_PTR},
    {"SRV", VD_TYPE_SRV}, {"ANY", VD_TYPE_ANY},
};

static int parse_type(const char *text, uint16_t *out)
{
        for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
                if (strcasecmp(text, type_names[i].name) == 0) {
                        *out = type_names[i].type;
                        return 0;
                }
        }
        if (strncasecmp(text, "TYPE", 4) == 0 && isdigit((unsigned char)text[4])) {
                char *end = NULL;
                errno = 0;
                unsigned long v = strtoul(text + 4, &end, 10);
                if (errno == 0 && *end == '\0' && v >= 1 && v <= 65535) {
                        *out = (uint16_t)v;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Reads a dnsperf data file. On error prints "FILE:LINE: what" and returns -1. */
static int load_data_file(const char *path, const struct options *o, struct query_set *qs)
{
        FILE *f = fopen(path, "r");
        if (f == NULL) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                return -1;
        }
        char *line = NULL;
        size_t cap = 0;
        unsigned long lineno = 0;
        int rc = 0;
        while (rc == 0 && getline(&line, &cap, f) != -1) {
                lineno++;
                char *save = NULL;
                char *name = strtok_r(line, " \t\r\n", &save);
                if (name == NULL || name[0] == '#')
                        continue;
                char *type = strtok_r(NULL, " \t\r\n", &save);
                char *extra = strtok_r(NULL, " \t\r\n", &save);
                if (type == NULL || (extra != NULL && extra[0] != '#')) {
                        fprintf(stderr, PROG ": %s:%lu: expected `name type`\n", path, lineno);
                        rc = -1;
                        break;
                }
                uint8_t wire[VD_NAME_MAX];
                size_t wire_len = 0;
                if (vd_name_from_text(name, wire, &wire_len) != 0) {
                        fprintf(stderr, PROG ": %s:%lu: bad name \"%s\"\n", path, lineno, name);
                        rc = -1;
                        break;
                }
                uint16_t qtype;
                if (parse_type(type, &qtype) != 0) {
                        fprintf(stderr, PROG ": %s:%lu: unknown type \"%s\"\n", path, lineno, type);
                        rc = -1;
                        break;
                }
                if (query_add(qs, wire, wire_len, qtype, o->edns, o->dnssec_ok) != 0) {
                        fprintf(stderr, PROG ": %s:%lu: out of memory\n", path, lineno);
                        rc = -1;
                }
        }
        if (rc == 0 && ferror(f)) {
                fprintf(stderr, PROG ": %s: read error\n", path);
                rc = -1;
        }
        if (rc == 0 && qs->n == 0) {
                fprintf(stderr, PROG ": %s: no queries in the file\n", path);
                rc = -1;
        }
        free(line);
        fclose(f);
        return rc;
}

struct snapshot_visit {
        const struct options *o;
        struct query_set *qs;
        uint8_t last[VD_NAME_MAX];
        size_t last_len;
        int rc;
};

static int visit_record(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                        const uint8_t *rdata, uint16_t rdlen)
{
        struct snapshot_visit *v = arg;
        if (type != VD_TYPE_A)
                return 0;
        size_t len = vd_name_len(owner, VD_NAME_MAX);
        if (len == 0)
                return 0;
        /* Records of one name come together: skip the second A record of a name. */
        if (len == v->last_len && memcmp(owner, v->last, len) == 0)
                return 0;
        memcpy(v->last, owner, len);
        v->last_len = len;
        v->rc = query_add(v->qs, owner, len, VD_TYPE_A, v->o->edns, v->o->dnssec_ok);
        return v->rc;
}

static int load_snapshot_dir(const char *dir, const struct options *o, struct query_set *qs)
{
        vd_error err = {{0}};
        vd_snapshot *snap = NULL;
        vd_builder *b = vd_builder_new();
        if (b == NULL) {
                fprintf(stderr, PROG ": out of memory\n");
                return -1;
        }
        int rc = vd_aws_load(b, dir, NULL, &err);
        if (rc == 0)
                rc = vd_builder_finish(b, &snap, &err);
        vd_builder_free(b);
        if (rc != 0) {
                fprintf(stderr, PROG ": %s\n", err.msg);
                return -1;
        }
        struct snapshot_visit v = {.o = o, .qs = qs};
        vd_snapshot_foreach(snap, visit_record, &v);
        vd_snapshot_unref(snap);
        if (v.rc != 0) {
                fprintf(stderr, PROG ": %s: out of memory\n", dir);
                return -1;
        }
        if (qs->n == 0) {
                fprintf(stderr, PROG ": %s: the snapshot holds no name with an A record\n", dir);
                return -1;
        }
        return 0;
}

/* ------------------------------------------------------------------------- histogram */

/* Log-linear, in microseconds: 1 us buckets below 2048 us, then 1024 buckets per power of
 * two (relative width under 0.1 %) up to 2^26 us (67 s); larger values land in the last. */
#define HIST_LINEAR 2048u
#define HIST_SUB 1024u
#define HIST_GROUPS 15u /* powers 2^11 .. 2^25 */
#define HIST_BUCKETS (HIST_LINEAR + HIST_GROUPS * HIST_SUB)

struct histogram {
        uint64_t count[HIST_BUCKETS];
        uint64_t total;
        uint64_t sum_ns;
        uint64_t min_ns, max_ns;
};

static unsigned hist_index(uint64_t us)
{
        if (us < HIST_LINEAR)
                return (unsigned)us;
        unsigned k = 63u - (unsigned)__builtin_clzll(us);
        if (k >= 11 + HIST_GROUPS)
                return HIST_BUCKETS - 1;
        unsigned shift = k - 10;
        return HIST_LINEAR + (k - 11) * HIST_SUB + (unsigned)((us >> shift) - HIST_SUB);
}

/* The value a bucket reports: its only value below 2048 us, its middle above. */
static double hist_value(unsigned idx)
{
        if (idx < HIST_LINEAR)
                return idx;
        unsigned g = (idx - HIST_LINEAR) / HIST_SUB, sub = (idx - HIST_LINEAR) % HIST_SUB;
        unsigned shift = g + 1;
        double lower = (double)((uint64_t)(HIST_SUB + sub) << shift);
        return lower + (double)((uint64_t)1 << shift) / 2;
}

static inline void hist_record(struct histogram *h, uint64_t ns)
{
        h->count[hist_index(ns / 1000)]++;
        h->total++;
        h->sum_ns += ns;
        if (ns < h->min_ns)
                h->min_ns = ns;
        if (ns > h->max_ns)
                h->max_ns = ns;
}

static void hist_reset(struct histogram *h)
{
        memset(h, 0, sizeof *h);
        h->min_ns = UINT64_MAX;
}

static double clamp(double v, double lo, double hi)
{
        return v < lo ? lo : v > hi ? hi : v;
}

/* The latency in us at or under which `fraction` of the answers fall. */
static double hist_quantile(const struct histogram *h, double fraction)
{
        uint64_t target = (uint64_t)ceil(fraction * (double)h->total);
        if (target == 0)
                target = 1;
        uint64_t seen = 0;
        double min_us = h->min_ns / 1000.0, max_us = h->max_ns / 1000.0;
        for (unsigned i = 0; i < HIST_BUCKETS; i++) {
                seen += h->count[i];
                if (seen >= target)
                        return clamp(hist_value(i), min_us, max_us);
        }
        return max_us;
}

/* ------------------------------------------------------------------------- state */

enum slot_state { SLOT_FREE = 0, SLOT_IN_FLIGHT, SLOT_TIMED_OUT };

struct slot {
        uint64_t t_sched; /* latency counts from here */
        uint32_t query;
        uint32_t gen;
        uint8_t state;
        uint8_t measured;
};

/* The timeout queue: every send in order; answered entries are skipped when they reach the
 * head (their slot's generation moved on). */
struct pending {
        uint64_t t_sent;
        uint32_t gen;
        uint16_t sock;
        uint16_t id;
};

struct sock {
        int fd;
        uint16_t next_id;
        uint32_t in_flight;
        struct slot *slots; /* IDS_PER_SOCKET */
        /* TCP */
        bool up;
        bool want_out;
        uint8_t *out;
        size_t out_len, out_off, out_cap;
        uint8_t *in;
        size_t in_len;
        uint64_t retry_at;
};

struct stats {
        uint64_t sent, answered, timeouts, mismatched, late, truncated;
        uint64_t rcodes[16];
        struct histogram hist;
};

struct cpu_sample {
        bool ok;
        unsigned long long utime, stime;
        long rss_kb;
};

enum phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_DRAIN, PHASE_DONE };

struct bench {
        struct options o;
        struct query_set qs;
        struct sock *socks;
        int epfd;
        struct pending *ring;
        size_t ring_cap, ring_head, ring_count;
        uint64_t in_flight, measured_in_flight;
        uint64_t next_query;
        uint64_t sends;        /* every send since the start: the open-loop schedule index */
        uint64_t t_start;      /* the schedule's origin */
        uint64_t t_measure;    /* start of the measured window */
        uint64_t t_window_end; /* planned end of the measured window */
        uint64_t t_end;        /* end used for QPS */
        uint64_t t_last_answer;
        uint64_t t_last_send;
        bool stopped_by_count; /* -n ended the window */
        uint64_t t_drain_deadline;
        uint64_t timeout_ns;
        double ns_per_query; /* open loop */
        enum phase phase;
        unsigned rr;
        struct stats st;
        uint64_t reconnects, refused, send_errors, late_discards;
        struct cpu_sample cpu0, cpu1;
        /* UDP batch buffers */
        struct mmsghdr *msgs;
        struct iovec *iov;
        uint8_t *ids;
        uint8_t *rx;
        size_t rx_size;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
        (void)sig;
        stop_requested = stop_requested + 1; /* a second signal also cuts the drain short */
}

static inline uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------- server sampling */

static void sample_process(long pid, struct cpu_sample *s)
{
        char path[64], buf[4096];
        s->ok = false;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
                return;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (p == NULL)
                return;
        /* After "pid (comm)": state is field 3, utime 14, stime 15. */
        if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &s->utime,
                   &s->stime) != 2)
                return;
        s->rss_kb = -1;
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        f = fopen(path, "r");
        if (f != NULL) {
                char line[256];
                while (fgets(line, sizeof line, f) != NULL) {
                        if (strncmp(line, "VmRSS:", 6) == 0) {
                                s->rss_kb = strtol(line + 6, NULL, 10);
                                break;
                        }
                }
                fclose(f);
        }
        s->ok = true;
}

/* ------------------------------------------------------------------------- sockets */

static void set_buffers(int fd)
{
        int size = SOCKET_BUFFER;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static int set_nonblocking(int fd)
{
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
                return -errno;
        return 0;
}

/* A connected socket to the server: blocking connect (loopback is immediate), then
 * non-blocking. Returns the fd or -errno. */
static int open_socket(const struct options *o)
{
        int type = o->tcp ? SOCK_STREAM : SOCK_DGRAM;
        int fd = socket(o->server.ss.ss_family, type | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        set_buffers(fd);
        if (o->tcp) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        if (connect(fd, (const struct sockaddr *)&o->server.ss, o->server.len) != 0 ||
            set_nonblocking(fd) != 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        return fd;
}

static void epoll_set(struct bench *b, unsigned s, bool want_out, int op)
{
        struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = s};
        epoll_ctl(b->epfd, op, b->socks[s].fd, &ev);
        b->socks[s].want_out = want_out;
}

/* ------------------------------------------------------------------------- sending */

static int ring_grow(struct bench *b)
{
        size_t cap = b->ring_cap * 2;
        struct pending *r = malloc(cap * sizeof *r);
        if (r == NULL)
                return -ENOMEM;
        for (size_t i = 0; i < b->ring_count; i++)
                r[i] = b->ring[(b->ring_head + i) & (b->ring_cap - 1)];
        free(b->ring);
        b->ring = r;
        b->ring_cap = cap;
        b->ring_head = 0;
        return 0;
}

/* Takes a free ID of socket s for the next query and fills its slot; the caller commits or
 * releases it. The socket has fewer than IDS_PER_SOCKET in flight, so the loop ends. */
static uint16_t slot_take(struct bench *b, struct sock *sk)
{
        while (sk->slots[sk->next_id].state == SLOT_IN_FLIGHT)
                sk->next_id++;
        uint16_t id = sk->next_id++;
        struct slot *sl = &sk->slots[id];
        sl->state = SLOT_IN_FLIGHT;
        sl->query = (uint32_t)(b->next_query % b->qs.n);
        b->next_query++;
        sk->in_flight++;
        return id;
}

static void slot_release(struct bench *b, struct sock *sk, uint16_t id)
{
        sk->slots[id].state = SLOT_FREE;
        sk->in_flight--;
        b->next_query--;
}

static void slot_commit(struct bench *b, unsigned s, uint16_t id, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        struct slot *sl = &sk->slots[id];
        sl->gen++;
        sl->measured = b->phase == PHASE_MEASURE;
        sl->t_sched =
            b->o.rate > 0 ? b->t_start + (uint64_t)((double)b->sends * b->ns_per_query) : now;
        if (sl->t_sched > now)
                sl->t_sched = now;
        b->sends++;
        b->in_flight++;
        if (sl->measured) {
                b->measured_in_flight++;
                b->st.sent++;
                b->t_last_send = now;
        }
        if (b->ring_count == b->ring_cap && ring_grow(b) != 0) {
                fprintf(stderr, PROG ": out of memory for the timeout queue\n");
                exit(EXIT_SETUP);
        }
        b->ring[(b->ring_head + b->ring_count) & (b->ring_cap - 1)] =
            (struct pending){.t_sent = now, .gen = sl->gen, .sock = (uint16_t)s, .id = id};
        b->ring_count++;
}

/* Sends up to want queries on UDP socket s in one sendmmsg; returns how many went out. */
static unsigned send_udp(struct bench *b, unsigned s, unsigned want, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        uint16_t ids[MAX_BATCH];
        for (unsigned i = 0; i < want; i++) {
                ids[i] = slot_take(b, sk);
                const struct query *q = &b->qs.q[sk->slots[ids[i]].query];
                vd_wire_put16(b->ids + 2 * i, ids[i]);
                b->iov[2 * i] = (struct iovec){.iov_base = b->ids + 2 * i, .iov_len = 2};
                b->iov[2 * i + 1] = (struct iovec){.iov_base = b->qs.wire + q->offset + 2,
                                                   .iov_len = (size_t)q->len - 2};
                b->msgs[i].msg_hdr = (struct msghdr){.msg_iov = &b->iov[2 * i], .msg_iovlen = 2};
        }
        int n = sendmmsg(sk->fd, b->msgs, want, MSG_DONTWAIT);
        if (n < 0) {
                if (errno == ECONNREFUSED)
                        b->refused++;
                else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS &&
                         errno != EINTR)
                        b->send_errors++;
                n = 0;
        }
        for (unsigned i = want; i-- > (unsigned)n;)
                slot_release(b, sk, ids[i]);
        for (unsigned i = 0; i < (unsigned)n; i++)
                slot_commit(b, s, ids[i], now);
        return (unsigned)n;
}

static void tcp_down(struct bench *b, unsigned s, uint64_t now);

/* Writes what is queued on TCP connection s; returns false when some is left. */
static bool tcp_flush(struct bench *b, unsigned s, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        while (sk->out_off < sk->out_len) {
                ssize_t n = send(sk->fd, sk->out + sk->out_off, sk->out_len - sk->out_off,
                                 MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                if (!sk->want_out)
                                        epoll_set(b, s, true, EPOLL_CTL_MOD);
                                return false;
                        }
                        tcp_down(b, s, now);
                        return false;
                }
                sk->out_off += (size_t)n;
        }
        sk->out_off = sk->out_len = 0;
        if (sk->want_out)
                epoll_set(b, s, false, EPOLL_CTL_MOD);
        return true;
}

/* Queues up to want framed queries on TCP connection s and writes them. */
static unsigned send_tcp(struct bench *b, unsigned s, unsigned want, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        if (!sk->up || sk->out_len > 0)
                return 0;
        unsigned i = 0;
        for (; i < want && sk->out_len + 2 + b->qs.max_len <= sk->out_cap; i++) {
                uint16_t id = slot_take(b, sk);
                const struct query *q = &b->qs.q[sk->slots[id].query];
                uint8_t *p = sk->out + sk->out_len;
                vd_wire_put16(p, q->len);
                memcpy(p + 2, b->qs.wire + q->offset, q->len);
                vd_wire_put16(p + 2, id);
                sk->out_len += 2 + (size_t)q->len;
                slot_commit(b, s, id, now);
        }
        tcp_flush(b, s, now);
        return i;
}

/* How many queries may go out now. */
static uint64_t send_budget(const struct bench *b, uint64_t now)
{
        if (b->phase != PHASE_WARMUP && b->phase != PHASE_MEASURE)
                return 0;
        uint64_t cap = (uint64_t)b->o.outstanding;
        uint64_t budget = b->in_flight >= cap ? 0 : cap - b->in_flight;
        if (b->o.rate > 0) {
                uint64_t due = (uint64_t)((double)(now - b->t_start) / b->ns_per_query) + 1;
                uint64_t behind = due > b->sends ? due - b->sends : 0;
                if (behind < budget)
                        budget = behind;
        }
        if (b->phase == PHASE_MEASURE && b->o.max_sent > 0) {
                uint64_t left = b->o.max_sent - b->st.sent;
                if (left < budget)
                        budget = left;
        }
        return budget;
}

/* Sends what is due, batch by batch, the sockets in turn; returns whether a socket was full
 * or blocked while queries were still due. */
static bool send_due(struct bench *b, uint64_t now)
{
        uint64_t budget = send_budget(b, now);
        unsigned n = b->o.sockets, idle = 0;
        while (budget > 0 && idle < n) {
                unsigned s = b->rr;
                b->rr = (b->rr + 1) % n;
                struct sock *sk = &b->socks[s];
                uint64_t room = IDS_PER_SOCKET - sk->in_flight;
                uint64_t want = budget < b->o.batch ? budget : b->o.batch;
                if (want > room)
                        want = room;
                unsigned sent = 0;
                if (want > 0)
                        sent = b->o.tcp ? send_tcp(b, s, (unsigned)want, now)
                                        : send_udp(b, s, (unsigned)want, now);
                budget -= sent;
                idle = sent < want || want == 0 ? idle + 1 : 0;
        }
        return budget > 0;
}

/* ------------------------------------------------------------------------- receiving */

static inline uint8_t ascii_lower(uint8_t c)
{
        return (uint8_t)((unsigned)c - 'A' < 26u ? c + 32 : c);
}

/* Whether the response's question is the query's (name case-insensitively, type, class). */
static bool same_question(const uint8_t *msg, size_t len, const uint8_t *query,
                          const struct query *q)
{
        size_t qlen = (size_t)q->qname_len + 4;
        if (len < VD_HEADER_LEN + qlen || vd_wire_get16(msg + 4) != 1)
                return false;
        const uint8_t *a = msg + VD_HEADER_LEN, *e = query + VD_HEADER_LEN;
        for (size_t i = 0; i < q->qname_len; i++) {
                if (ascii_lower(a[i]) != e[i])
                        return false;
        }
        return memcmp(a + q->qname_len, e + q->qname_len, 4) == 0;
}

static void on_response(struct bench *b, unsigned s, const uint8_t *msg, size_t len, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        if (len < VD_HEADER_LEN || !(msg[2] & 0x80)) {
                b->st.mismatched++;
                return;
        }
        uint16_t id = vd_wire_get16(msg);
        struct slot *sl = &sk->slots[id];
        if (sl->state == SLOT_FREE) {
                b->st.mismatched++;
                return;
        }
        const struct query *q = &b->qs.q[sl->query];
        uint8_t rcode = msg[3] & 0x0f;
        /* A FORMERR or NOTIMP may come without the question. */
        bool ok = same_question(msg, len, b->qs.wire + q->offset, q) ||
                  (vd_wire_get16(msg + 4) == 0 && rcode != 0);
        if (!ok) {
                if (sl->measured)
                        b->st.mismatched++;
                return;
        }
        if (sl->state == SLOT_TIMED_OUT) {
                sl->state = SLOT_FREE;
                if (sl->measured)
                        b->st.late++;
                return;
        }
        sl->state = SLOT_FREE;
        sk->in_flight--;
        b->in_flight--;
        if (!sl->measured)
                return;
        b->measured_in_flight--;
        b->st.answered++;
        b->st.rcodes[rcode]++;
        if (msg[2] & 0x02)
                b->st.truncated++;
        hist_record(&b->st.hist, now > sl->t_sched ? now - sl->t_sched : 0);
        b->t_last_answer = now;
}

static void receive_udp(struct bench *b, unsigned s)
{
        struct sock *sk = &b->socks[s];
        unsigned batch = b->o.batch;
        for (unsigned round = 0; round < 64; round++) {
                for (unsigned i = 0; i < batch; i++) {
                        b->iov[i] = (struct iovec){.iov_base = b->rx + i * b->rx_size,
                                                   .iov_len = b->rx_size};
                        b->msgs[i].msg_hdr =
                            (struct msghdr){.msg_iov = &b->iov[i], .msg_iovlen = 1};
                }
                int n = recvmmsg(sk->fd, b->msgs, batch, MSG_DONTWAIT, NULL);
                if (n < 0) {
                        if (errno == ECONNREFUSED) {
                                b->refused++;
                                continue;
                        }
                        return;
                }
                uint64_t now = now_ns();
                for (int i = 0; i < n; i++) {
                        size_t len = b->msgs[i].msg_len;
                        if (len > b->rx_size)
                                len = b->rx_size;
                        on_response(b, s, b->rx + (size_t)i * b->rx_size, len, now);
                }
                if ((unsigned)n < batch)
                        return;
        }
}

/* Connection s is gone: its queries in flight are lost now; reconnects at once or later. */
static void tcp_down(struct bench *b, unsigned s, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        if (sk->fd >= 0) {
                epoll_ctl(b->epfd, EPOLL_CTL_DEL, sk->fd, NULL);
                close(sk->fd);
                sk->fd = -1;
        }
        sk->up = false;
        sk->want_out = false;
        sk->out_len = sk->out_off = sk->in_len = 0;
        for (uint32_t id = 0; id < IDS_PER_SOCKET && sk->in_flight > 0; id++) {
                struct slot *sl = &sk->slots[id];
                if (sl->state != SLOT_IN_FLIGHT)
                        continue;
                sl->state = SLOT_FREE;
                sk->in_flight--;
                b->in_flight--;
                if (sl->measured) {
                        b->measured_in_flight--;
                        b->st.timeouts++;
                }
        }
        b->reconnects++;
        sk->retry_at = now;
}

static void tcp_reconnect(struct bench *b, unsigned s, uint64_t now)
{
        struct sock *sk = &b->socks[s];
        if (sk->up || now < sk->retry_at)
                return;
        int fd = open_socket(&b->o);
        if (fd < 0) {
                sk->retry_at = now + 100 * 1000000ull;
                return;
        }
        sk->fd = fd;
        sk->up = true;
        epoll_set(b, s, false, EPOLL_CTL_ADD);
}

static void receive_tcp(struct bench *b, unsigned s)
{
        struct sock *sk = &b->socks[s];
        for (unsigned round = 0; round < 64 && sk->up; round++) {
                ssize_t n =
                    recv(sk->fd, sk->in + sk->in_len, TCP_IN_BUFFER - sk->in_len, MSG_DONTWAIT);
                uint64_t now = now_ns();
                if (n == 0 ||
                    (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                        tcp_down(b, s, now);
                        return;
                }
                if (n < 0)
                        return;
                sk->in_len += (size_t)n;
                size_t pos = 0;
                while (sk->in_len - pos >= 2) {
                        size_t len = vd_wire_get16(sk->in + pos);
                        if (sk->in_len - pos - 2 < len)
                                break;
                        on_response(b, s, sk->in + pos + 2, len, now);
                        pos += 2 + len;
                }
                memmove(sk->in, sk->in + pos, sk->in_len - pos);
                sk->in_len -= pos;
        }
}

/* ------------------------------------------------------------------------- the run */

static void expire(struct bench *b, uint64_t now)
{
        while (b->ring_count > 0) {
                const struct pending *p = &b->ring[b->ring_head];
                struct sock *sk = &b->socks[p->sock];
                struct slot *sl = &sk->slots[p->id];
                if (sl->gen == p->gen && sl->state == SLOT_IN_FLIGHT) {
                        if (p->t_sent + b->timeout_ns > now)
                                return;
                        sl->state = SLOT_TIMED_OUT;
                        sk->in_flight--;
                        b->in_flight--;
                        if (sl->measured) {
                                b->measured_in_flight--;
                                b->st.timeouts++;
                        }
                }
                b->ring_head = (b->ring_head + 1) & (b->ring_cap - 1);
                b->ring_count--;
        }
}

static void begin_measure(struct bench *b, uint64_t now)
{
        memset(b->st.rcodes, 0, sizeof b->st.rcodes);
        b->st.sent = b->st.answered = b->st.timeouts = b->st.mismatched = b->st.late = 0;
        b->st.truncated = 0;
        hist_reset(&b->st.hist);
        b->t_measure = now;
        b->t_window_end = now + (uint64_t)(b->o.duration * 1e9);
        b->phase = PHASE_MEASURE;
        if (b->o.pid > 0)
                sample_process(b->o.pid, &b->cpu0);
}

/* Sending stops; queries in flight get the timeout to come back. by_time: the window ended
 * (its length is the duration); otherwise -n (the window ends with the last send or answer)
 * or a signal (it ends now). */
static void end_window(struct bench *b, uint64_t now, bool by_time)
{
        if (b->phase == PHASE_WARMUP)
                begin_measure(b, now);
        b->phase = PHASE_DRAIN;
        b->t_end = by_time ? b->t_window_end : now;
        if (b->stopped_by_count)
                b->t_end = b->t_last_send > b->t_last_answer ? b->t_last_send : b->t_last_answer;
        b->t_drain_deadline = now + b->timeout_ns + 1000000;
        if (b->o.pid > 0 && by_time)
                sample_process(b->o.pid, &b->cpu1);
}

/* Lowers *limit to the time left until deadline (0 when it has passed). */
static void until(uint64_t *limit, uint64_t deadline, uint64_t now)
{
        uint64_t left = deadline > now ? deadline - now : 0;
        if (left < *limit)
                *limit = left;
}

/* How long the loop may sleep in epoll: until the next event it must act on. */
static uint64_t wait_ns(const struct bench *b, uint64_t now, bool blocked)
{
        uint64_t limit = 100 * 1000000ull; /* 100 ms: stop requests and reconnects */
        if (blocked)
                return 20000;
        if (b->phase == PHASE_WARMUP)
                until(&limit, b->t_measure, now);
        if (b->phase == PHASE_MEASURE)
                until(&limit, b->t_window_end, now);
        if (b->phase == PHASE_DRAIN)
                until(&limit, b->t_drain_deadline, now);
        if (b->ring_count > 0)
                until(&limit, b->ring[b->ring_head].t_sent + b->timeout_ns, now);
        if (b->o.rate > 0 && (b->phase == PHASE_WARMUP || b->phase == PHASE_MEASURE) &&
            b->in_flight < (uint64_t)b->o.outstanding)
                until(&limit, b->t_start + (uint64_t)((double)b->sends * b->ns_per_query), now);
        return limit;
}

static void run(struct bench *b)
{
        struct epoll_event events[MAX_SOCKETS];
        b->t_start = now_ns();
        b->t_measure = b->t_start + (uint64_t)(b->o.warmup * 1e9);
        if (b->o.warmup > 0)
                b->phase = PHASE_WARMUP;
        else
                begin_measure(b, b->t_start);
        bool blocked = false;
        bool have_pwait2 = true;
        for (;;) {
                uint64_t now = now_ns();
                if (b->phase == PHASE_WARMUP && now >= b->t_measure)
                        begin_measure(b, now);
                if (b->phase == PHASE_MEASURE && now >= b->t_window_end)
                        end_window(b, now, true);
                if ((b->phase == PHASE_WARMUP || b->phase == PHASE_MEASURE) && stop_requested)
                        end_window(b, now, false);
                expire(b, now);
                if (b->phase == PHASE_MEASURE && b->o.max_sent > 0 && b->st.sent >= b->o.max_sent &&
                    b->measured_in_flight == 0) {
                        b->stopped_by_count = true;
                        end_window(b, now, false);
                }
                if (b->phase == PHASE_DRAIN &&
                    (b->in_flight == 0 || now >= b->t_drain_deadline || stop_requested > 1))
                        break;
                if (b->o.tcp) {
                        for (unsigned s = 0; s < b->o.sockets; s++)
                                tcp_reconnect(b, s, now);
                }
                blocked = send_due(b, now);
                uint64_t wait = wait_ns(b, now_ns(), blocked);
                int n;
                if (have_pwait2) {
                        struct timespec ts = {.tv_sec = (time_t)(wait / NS_PER_S),
                                              .tv_nsec = (long)(wait % NS_PER_S)};
                        n = epoll_pwait2(b->epfd, events, (int)b->o.sockets, &ts, NULL);
                        if (n < 0 && errno == ENOSYS) {
                                have_pwait2 = false;
                                n = 0;
                        }
                } else {
                        /* Millisecond timeouts: poll without sleeping below 1 ms. */
                        n = epoll_wait(b->epfd, events, (int)b->o.sockets,
                                       (int)(wait >= 1000000 ? wait / 1000000 : 0));
                }
                for (int i = 0; i < n; i++) {
                        unsigned s = events[i].data.u32;
                        if (!b->o.tcp) {
                                receive_udp(b, s);
                                continue;
                        }
                        if (b->socks[s].up && (events[i].events & EPOLLOUT))
                                tcp_flush(b, s, now_ns());
                        if (b->socks[s].up)
                                receive_tcp(b, s);
                }
        }
        if (b->t_end < b->t_measure)
                b->t_end = b->t_measure;
        if (b->o.pid > 0 && !b->cpu1.ok)
                sample_process(b->o.pid, &b->cpu1);
}

/* ------------------------------------------------------------------------- reports */

static const char *const rcode_names[16] = {
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",  "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",  "DSOTYPENI", "RCODE12", "RCODE13", "RCODE14",  "RCODE15",
};

struct figures {
        double duration_s, qps, loss_pct;
        uint64_t lost;
        bool have_latency;
        double min, p50, p90, p99, p999, max, mean;
        bool have_cpu;
        double user_us, sys_us;
        unsigned long long utime, stime;
        long rss_kb;
};

static void compute(const struct bench *b, struct figures *f)
{
        const struct stats *st = &b->st;
        memset(f, 0, sizeof *f);
        f->duration_s = (double)(b->t_end - b->t_measure) / 1e9;
        f->qps = f->duration_s > 0 ? (double)st->answered / f->duration_s : 0;
        f->lost = st->timeouts + b->measured_in_flight;
        f->loss_pct = st->sent > 0 ? 100.0 * (double)f->lost / (double)st->sent : 0;
        const struct histogram *h = &st->hist;
        f->have_latency = h->total > 0;
        if (f->have_latency) {
                f->min = h->min_ns / 1000.0;
                f->max = h->max_ns / 1000.0;
                f->mean = (double)h->sum_ns / (double)h->total / 1000.0;
                f->p50 = hist_quantile(h, 0.50);
                f->p90 = hist_quantile(h, 0.90);
                f->p99 = hist_quantile(h, 0.99);
                f->p999 = hist_quantile(h, 0.999);
        }
        f->rss_kb = b->cpu1.ok ? b->cpu1.rss_kb : -1;
        if (b->o.pid > 0 && b->cpu0.ok && b->cpu1.ok) {
                f->have_cpu = true;
                f->utime = b->cpu1.utime - b->cpu0.utime;
                f->stime = b->cpu1.stime - b->cpu0.stime;
                double us_per_tick = 1e6 / (double)sysconf(_SC_CLK_TCK);
                double answered = st->answered > 0 ? (double)st->answered : 1;
                f->user_us = (double)f->utime * us_per_tick / answered;
                f->sys_us = (double)f->stime * us_per_tick / answered;
        }
}

static void mode_text(const struct options *o, char *out, size_t cap)
{
        if (o->rate > 0)
                snprintf(out, cap, "open-loop rate %.0f qps (at most %ld in flight)", o->rate,
                         o->outstanding);
        else
                snprintf(out, cap, "closed-loop outstanding %ld", o->outstanding);
}

static void text_report(const struct bench *b, const struct figures *f, FILE *out)
{
        const struct stats *st = &b->st;
        char mode[128];
        mode_text(&b->o, mode, sizeof mode);
        fprintf(out, PROG ": %s %s %s, %.2f s\n", b->o.server_text, b->o.tcp ? "tcp" : "udp", mode,
                f->duration_s);
        fprintf(out,
                "sent %" PRIu64 "  answered %" PRIu64 "  lost %" PRIu64 " (%.4f %%)  qps %.0f\n",
                st->sent, st->answered, f->lost, f->loss_pct, f->qps);
        fprintf(out, "rcodes");
        for (unsigned i = 0; i < 16; i++) {
                if (st->rcodes[i] > 0)
                        fprintf(out, " %s %" PRIu64, rcode_names[i], st->rcodes[i]);
        }
        if (st->answered == 0)
                fprintf(out, " none");
        fprintf(out, "\n");
        if (st->mismatched || st->late || st->truncated || b->reconnects || b->refused ||
            b->send_errors)
                fprintf(out,
                        "other  mismatched %" PRIu64 "  late %" PRIu64 "  truncated %" PRIu64
                        "  reconnects %" PRIu64 "  icmp-refused %" PRIu64 "  send-errors %" PRIu64
                        "\n",
                        st->mismatched, st->late, st->truncated, b->reconnects, b->refused,
                        b->send_errors);
        if (f->have_latency)
                fprintf(out,
                        "latency us  min %.0f  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f"
                        "  mean %.1f\n",
                        f->min, f->p50, f->p90, f->p99, f->p999, f->max, f->mean);
        else
                fprintf(out, "latency us  (no answers)\n");
        if (f->have_cpu)
                fprintf(out,
                        "server cpu  user %.2f us/q  sys %.2f us/q  total %.2f us/q  rss %ld kB\n",
                        f->user_us, f->sys_us, f->user_us + f->sys_us, f->rss_kb);
        else if (b->o.pid > 0)
                fprintf(out, "server cpu  (could not read /proc/%ld)\n", b->o.pid);
}

static cJSON *json_number_or_null(bool have, double v)
{
        return have ? cJSON_CreateNumber(round(v * 10) / 10) : cJSON_CreateNull();
}

/* Adds key: value to obj, or frees value; false when either could not be made (out of
 * memory). */
static bool put(cJSON *obj, const char *key, cJSON *value)
{
        if (value == NULL)
                return false;
        if (obj == NULL || !cJSON_AddItemToObject(obj, key, value)) {
                cJSON_Delete(value);
                return false;
        }
        return true;
}

static int json_report(const struct bench *b, const struct figures *f, const char *path)
{
        const struct stats *st = &b->st;
        bool ok = true;
        cJSON *root = cJSON_CreateObject();
        cJSON *rcodes = cJSON_CreateObject();
        for (unsigned i = 0; i < 16; i++) {
                if (st->rcodes[i] > 0)
                        ok &=
                            put(rcodes, rcode_names[i], cJSON_CreateNumber((double)st->rcodes[i]));
        }
        cJSON *lat = cJSON_CreateObject();
        ok &= put(lat, "min", json_number_or_null(f->have_latency, f->min));
        ok &= put(lat, "p50", json_number_or_null(f->have_latency, f->p50));
        ok &= put(lat, "p90", json_number_or_null(f->have_latency, f->p90));
        ok &= put(lat, "p99", json_number_or_null(f->have_latency, f->p99));
        ok &= put(lat, "p99_9", json_number_or_null(f->have_latency, f->p999));
        ok &= put(lat, "max", json_number_or_null(f->have_latency, f->max));
        ok &= put(lat, "mean", json_number_or_null(f->have_latency, f->mean));
        cJSON *cpu;
        if (!f->have_cpu) {
                cpu = cJSON_CreateNull();
        } else {
                cpu = cJSON_CreateObject();
                ok &= put(cpu, "user_us_per_query", cJSON_CreateNumber(f->user_us));
                ok &= put(cpu, "sys_us_per_query", cJSON_CreateNumber(f->sys_us));
                ok &= put(cpu, "total_us_per_query", cJSON_CreateNumber(f->user_us + f->sys_us));
                ok &= put(cpu, "utime_ticks", cJSON_CreateNumber((double)f->utime));
                ok &= put(cpu, "stime_ticks", cJSON_CreateNumber((double)f->stime));
        }
        ok &= put(root, "label", b->o.label ? cJSON_CreateString(b->o.label) : cJSON_CreateNull());
        ok &= put(root, "server", cJSON_CreateString(b->o.server_text));
        ok &= put(root, "transport", cJSON_CreateString(b->o.tcp ? "tcp" : "udp"));
        ok &= put(root, "mode", cJSON_CreateString(b->o.rate > 0 ? "open" : "closed"));
        ok &= put(root, "rate_offered",
                  b->o.rate > 0 ? cJSON_CreateNumber(b->o.rate) : cJSON_CreateNull());
        ok &= put(root, "outstanding", cJSON_CreateNumber(b->o.outstanding));
        ok &= put(root, "duration_s", cJSON_CreateNumber(f->duration_s));
        ok &= put(root, "sent", cJSON_CreateNumber((double)st->sent));
        ok &= put(root, "answered", cJSON_CreateNumber((double)st->answered));
        ok &= put(root, "lost", cJSON_CreateNumber((double)f->lost));
        ok &= put(root, "timeouts", cJSON_CreateNumber((double)st->timeouts));
        ok &= put(root, "mismatched", cJSON_CreateNumber((double)st->mismatched));
        ok &= put(root, "late", cJSON_CreateNumber((double)st->late));
        ok &= put(root, "truncated", cJSON_CreateNumber((double)st->truncated));
        ok &= put(root, "reconnects", cJSON_CreateNumber((double)b->reconnects));
        ok &= put(root, "qps", cJSON_CreateNumber(round(f->qps * 10) / 10));
        ok &= put(root, "rcodes", rcodes);
        ok &= put(root, "latency_us", lat);
        ok &= put(root, "server_cpu", cpu);
        ok &= put(root, "server_rss_kb",
                  f->rss_kb >= 0 && b->o.pid > 0 ? cJSON_CreateNumber(f->rss_kb)
                                                 : cJSON_CreateNull());
        ok &= put(root, "queries", cJSON_CreateNumber((double)b->qs.n));
        ok &= put(root, "sockets", cJSON_CreateNumber(b->o.sockets));
        ok &= put(root, "batch", cJSON_CreateNumber(b->o.batch));
        char *text = ok && root != NULL ? cJSON_Print(root) : NULL;
        cJSON_Delete(root);
        if (text == NULL) {
                fprintf(stderr, PROG ": %s: out of memory\n", path);
                return -1;
        }
        int rc = 0;
        FILE *out = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
        if (out == NULL) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                rc = -1;
        } else {
                if (fputs(text, out) == EOF || fputc('\n', out) == EOF)
                        rc = -1;
                if (out != stdout ? fclose(out) != 0 : fflush(out) != 0)
                        rc = -1;
                if (rc != 0)
                        fprintf(stderr, PROG ": %s: write error\n", path);
        }
        free(text);
        return rc;
}

static int histogram_report(const struct bench *b, const char *path)
{
        FILE *out = fopen(path, "w");
        if (out == NULL) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                return -1;
        }
        const struct histogram *h = &b->st.hist;
        uint64_t seen = 0;
        fprintf(out, "# latency_us cumulative_fraction (%" PRIu64 " answers)\n", h->total);
        for (unsigned i = 0; i < HIST_BUCKETS && h->total > 0; i++) {
                if (h->count[i] == 0)
                        continue;
                seen += h->count[i];
                fprintf(out, "%.1f %.9f\n", hist_value(i), (double)seen / (double)h->total);
        }
        if (fclose(out) != 0) {
                fprintf(stderr, PROG ": %s: write error\n", path);
                return -1;
        }
        return 0;
}

/* ------------------------------------------------------------------------- setup */

static int setup(struct bench *b)
{
        const struct options *o = &b->o;
        b->timeout_ns = (uint64_t)o->timeout_ms * 1000000ull;
        if (o->rate > 0)
                b->ns_per_query = 1e9 / o->rate;
        b->ring_cap = 1u << 16;
        double expect = (o->rate > 0 ? o->rate : 300000.0) * (o->timeout_ms / 1000.0) * 1.25;
        while ((double)b->ring_cap < expect && b->ring_cap < (1u << 26))
                b->ring_cap <<= 1;
        b->ring = malloc(b->ring_cap * sizeof *b->ring);
        b->msgs = calloc(o->batch, sizeof *b->msgs);
        b->iov = calloc(2 * (size_t)o->batch, sizeof *b->iov);
        b->ids = calloc(o->batch, 2);
        b->rx_size = o->edns > 4096 ? (size_t)o->edns : 4096;
        b->rx = malloc(o->batch * b->rx_size);
        b->socks = calloc(o->sockets, sizeof *b->socks);
        b->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (b->ring == NULL || b->msgs == NULL || b->iov == NULL || b->ids == NULL ||
            b->rx == NULL || b->socks == NULL) {
                fprintf(stderr, PROG ": out of memory\n");
                return -1;
        }
        if (b->epfd < 0) {
                fprintf(stderr, PROG ": epoll_create1: %s\n", strerror(errno));
                return -1;
        }
        for (unsigned s = 0; s < o->sockets; s++) {
                struct sock *sk = &b->socks[s];
                sk->fd = -1;
                sk->slots = calloc(IDS_PER_SOCKET, sizeof *sk->slots);
                if (sk->slots == NULL) {
                        fprintf(stderr, PROG ": out of memory\n");
                        return -1;
                }
                /* Spread the sockets' IDs so that two sockets rarely use the same one. */
                sk->next_id = (uint16_t)(s * (IDS_PER_SOCKET / o->sockets));
                if (o->tcp) {
                        sk->out_cap = (size_t)o->batch * (2 + b->qs.max_len);
                        sk->out = malloc(sk->out_cap);
                        sk->in = malloc(TCP_IN_BUFFER);
                        if (sk->out == NULL || sk->in == NULL) {
                                fprintf(stderr, PROG ": out of memory\n");
                                return -1;
                        }
                }
                int fd = open_socket(o);
                if (fd < 0) {
                        fprintf(stderr, PROG ": %s %s: %s\n", o->tcp ? "connect" : "socket",
                                o->server_text, strerror(-fd));
                        return -1;
                }
                sk->fd = fd;
                sk->up = true;
                epoll_set(b, s, false, EPOLL_CTL_ADD);
        }
        return 0;
}

static void teardown(struct bench *b)
{
        for (unsigned s = 0; b->socks != NULL && s < b->o.sockets; s++) {
                if (b->socks[s].fd >= 0)
                        close(b->socks[s].fd);
                free(b->socks[s].slots);
                free(b->socks[s].out);
                free(b->socks[s].in);
        }
        if (b->epfd >= 0)
                close(b->epfd);
        free(b->socks);
        free(b->ring);
        free(b->msgs);
        free(b->iov);
        free(b->ids);
        free(b->rx);
        free(b->qs.q);
        free(b->qs.wire);
}

int main(int argc, char **argv)
{
        static struct bench bench; /* large (the histogram): not on the stack */
        struct bench *b = &bench;
        b->epfd = -1;
        parse_options(argc, argv, &b->o);
        hist_reset(&b->st.hist);

        int status = EXIT_SETUP;
        if (b->o.data_file ? load_data_file(b->o.data_file, &b->o, &b->qs) != 0
                           : load_snapshot_dir(b->o.snapshot_dir, &b->o, &b->qs) != 0)
                goto out;
        if (b->o.cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(b->o.cpu, &set);
                if (sched_setaffinity(0, sizeof set, &set) != 0) {
                        fprintf(stderr, PROG ": --cpu %d: %s\n", b->o.cpu, strerror(errno));
                        goto out;
                }
        }
        if (setup(b) != 0)
                goto out;
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        run(b);

        struct figures f;
        compute(b, &f);
        status = b->st.answered > 0 ? 0 : 1;
        if (!b->o.quiet)
                text_report(b, &f,
                            b->o.json_path && strcmp(b->o.json_path, "-") == 0 ? stderr : stdout);
        if (b->o.json_path != NULL && json_report(b, &f, b->o.json_path) != 0)
                status = EXIT_SETUP;
        if (b->o.histogram_path != NULL && histogram_report(b, b->o.histogram_path) != 0)
                status = EXIT_SETUP;
        if (b->st.answered == 0)
                fprintf(stderr, PROG ": no query was answered by %s\n", b->o.server_text);
out:
        teardown(b);
        return status;
}

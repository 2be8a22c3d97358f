/* aws.c — the AWS snapshot loader (what it answers: docs/endpoint-dns.md).
 *
 * Owns: reading DIR/describe-vpc-endpoints.json and DIR/describe-network-interfaces.json with
 * cJSON, checking every field it uses, mapping each endpoint to its ENIs' addresses and
 * feeding the resulting zones and records to a vd_builder. Must not: answer queries, touch
 * sockets, or keep anything after vd_aws_load() returns (both JSON documents are freed).
 *
 * Choices made here where AWS documents nothing:
 * - JSON null counts as absent (the CLI prints "NextToken": null).
 * - An endpoint without VpcEndpointType or without State is not served (counted in
 *   `endpoints` only). Interface endpoints and the State field have existed since
 *   interface endpoints launched (endpoints older than that were all Gateway endpoints), so
 *   a missing field means a Gateway endpoint or a hand-trimmed file; serving addresses we are
 *   not sure about could blackhole traffic, while forwarding falls back to public DNS.
 * - PrivateDnsEnabled absent → false: private DNS names are served only when it is true.
 * - Only served endpoints must have their NetworkInterfaceIds in the interfaces file
 *   (a pendingAcceptance endpoint may list ENIs that do not exist yet).
 * - Every ENI in the interfaces file is checked (id present and unique, addresses valid),
 *   so a damaged file is rejected whole even where no endpoint uses the damaged part.
 * - A zonal name whose AZ has none of the endpoint's ENIs is skipped with a warning.
 * - Spec §4: an endpoint with DnsOptions.PrivateDnsOnlyForInboundResolverEndpoint true
 *   serves its vpce names but not its private DNS names, because every client counts as
 *   inside the VPC for now (there is no inbound-endpoint view yet).
 * - DnsRecordIpType / IpAddressType values are compared case-insensitively; an unknown
 *   value is an error rather than a guess.
 * - A file that starts with a UTF-8 byte-order mark is read as if the mark were not there.
 *   The AWS CLI never writes one, but Windows tools do when a user saves its output
 *   (PowerShell 5's Out-File -Encoding utf8, Notepad); RFC 8259 §8.1 lets a parser ignore
 *   it, and the text after it is the CLI's JSON unchanged, so refusing would only make the
 *   user strip an invisible character. UTF-16 (PowerShell 5's `>`) is refused by name.
 * - A served endpoint that ends up with no address record for any of its names (say ipv6
 *   records while its ENIs have no IPv6 address) is loaded (its names answer NODATA) with one
 *   warning line naming the endpoint and the reason.
 * - Claims name the endpoint's VpcId, and a name claimed by endpoints of two VPCs says that
 *   the snapshot mixes VPCs (an unfiltered describe-vpc-endpoints lists the whole region). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "vpcdns/aws.h"
#include "vpcdns/log.h"
#include "vpcdns/wire.h"

#define ENDPOINTS_FILE "describe-vpc-endpoints.json"
#define INTERFACES_FILE "describe-network-interfaces.json"
#define FILE_SIZE_MAX ((size_t)1 << 30) /* 1 GiB: far above any real VPC */
#define FILE_PATH_CAP 4096
#define JSON_WHERE_CAP 64 /* "VpcEndpoints[N]", "NetworkInterfaces[N]" */
#define JSON_PATH_CAP 256
#define CLAIM_CAP (FILE_PATH_CAP + 320)

/* Route 53's SOA and NS for private hosted zones (the hidden zone of docs/endpoint-dns.md), TTL and
 * MINIMUM 60. */
#define SOA_MNAME "ns-1536.awsdns-00.co.uk."
#define SOA_RNAME "awsdns-hostmaster.amazon.com."
#define SOA_SERIAL 1
#define SOA_REFRESH 7200
#define SOA_RETRY 900
#define SOA_EXPIRE 1209600
#define SOA_MINIMUM 60
#define SOA_TTL 60
#define NS_TTL 172800
static const char *const zone_ns[] = {
    "ns-1536.awsdns-00.co.uk.",
    "ns-0.awsdns-00.com.",
    "ns-1024.awsdns-00.org.",
    "ns-512.awsdns-00.net.",
};
#define ZONE_NS_COUNT (sizeof(zone_ns) / sizeof(zone_ns[0]))

typedef struct address {
        uint16_t type; /* VD_TYPE_A or VD_TYPE_AAAA */
        uint8_t bytes[16];
} address;

typedef struct eni {
        const char *id; /* borrowed from the interfaces document */
        const char *az; /* borrowed; NULL when absent */
        size_t index;   /* position in NetworkInterfaces[] */
        address *addrs;
        size_t n_addrs;
} eni;

typedef enum ip_mode {
        IP_V4 = 0,
        IP_V6,
        IP_DUALSTACK,
        IP_SERVICE_DEFINED,
} ip_mode;

typedef enum name_kind {
        NAME_PRIVATE = 0,
        NAME_REGIONAL, /* vpce-<id>-<8>.<svc>.<region>.vpce.amazonaws.com[.cn] */
        NAME_ZONAL,    /* the same with -<az> appended to the first label */
} name_kind;

typedef struct dns_name {
        name_kind kind;
        bool wildcard;
        size_t entry;               /* DnsEntries[entry] */
        char text[VD_NAME_MAX + 2]; /* lower-cased, without a final dot */
        uint8_t wire[VD_NAME_MAX];  /* the owner, "*" label included */
        uint8_t zone[VD_NAME_MAX];  /* private: the apex; vpce: the region's public zone */
        char az[VD_LABEL_MAX + 1];  /* zonal: the AZ name */
} dns_name;

typedef struct loader {
        vd_builder *b;
        vd_error *err;
        char ep_file[FILE_PATH_CAP]; /* DIR/describe-vpc-endpoints.json */
        char if_file[FILE_PATH_CAP]; /* DIR/describe-network-interfaces.json */
        eni *enis;                   /* in file order */
        size_t n_enis;
        size_t *eni_table; /* indexes into enis by id hash, SIZE_MAX empty */
        size_t eni_mask;   /* table size - 1 */
        uint8_t soa[2 * VD_NAME_MAX + 20];
        uint16_t soa_len;
        uint8_t ns[ZONE_NS_COUNT][VD_NAME_MAX];
        uint16_t ns_len[ZONE_NS_COUNT];
        const char **vpcs; /* distinct VpcIds of the endpoints file, borrowed, file order */
        size_t n_vpcs;
        size_t ep_records; /* A, AAAA and CNAME records added for the current endpoint */
        vd_aws_summary sum;
} loader;

/* One endpoint being loaded. */
typedef struct endpoint {
        size_t index;
        const char *id;  /* "?" when absent */
        const char *vpc; /* VpcId; NULL when absent */
        char path[JSON_WHERE_CAP];
        char claim[CLAIM_CAP];
        ip_mode mode;
        bool private_dns; /* PrivateDnsEnabled, and not §4 */
        bool service;     /* an endpoint service: private names are CNAMEs */
        const eni **enis; /* its ENIs, duplicates removed */
        size_t n_enis;
        dns_name *names;
        size_t n_names;
        const dns_name *regional; /* the regional non-wildcard vpce name, or NULL */
} endpoint;

/* cJSON's tree, read through these helpers only. */
typedef cJSON json_t;
typedef enum json_want { WANT_OBJECT, WANT_ARRAY, WANT_STRING, WANT_BOOL } json_want;

/* Every element of an array (cJSON arrays are lists: never index them in a loop). */
#define JSON_EACH(item, array)                                                                     \
        for (const json_t *item = (array) != NULL ? (array)->child : NULL; item != NULL;           \
             item = item->next)

/* Text builders for paths and claims, made for every endpoint and ENI: snprintf with %.Ns
 * cost over 700 instructions a call there. Each appends to out (capacity cap, at *at),
 * truncating, and keeps it NUL-terminated. */
static void put_text(char *out, size_t cap, size_t *at, const char *text, size_t max)
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

static void put_index(char *out, size_t cap, size_t *at, size_t index)
{
        char digits[24];
        size_t n = sizeof(digits);
        digits[--n] = '\0';
        do {
                digits[--n] = (char)('0' + index % 10);
                index /= 10;
        } while (index > 0 && n > 0);
        put_text(out, cap, at, "[", 1);
        put_text(out, cap, at, digits + n, sizeof(digits));
        put_text(out, cap, at, "]", 1);
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

/* A string's text; NULL for anything else. */
static const char *json_str(const json_t *v)
{
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static size_t json_len(const json_t *array)
{
        size_t n = 0;
        JSON_EACH(item, array)
        n++;
        return n;
}

static int no_memory(loader *l)
{
        vd_error_set(l->err, "%s: out of memory", l->ep_file);
        return -ENOMEM;
}

static int type_error(loader *l, const char *file, const char *path, const char *expected,
                      const json_t *got)
{
        return vd_error_set(l->err, "%s: %s: expected %s, got %s", file, path, expected,
                            json_kind(got));
}

/* The members of obj named keys[0..n), in one pass over obj: found[k] (NULL when absent) and
 * twice[k], whether keys[k] appears more than once. RFC 8259 §4 leaves duplicate names to
 * the reader; the AWS CLI never writes them, so a field we read that appears twice was edited
 * by hand and is refused rather than read one way or the other. */
static void pick(const json_t *obj, const char *const *keys, size_t n, const json_t **found,
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
        pick(obj, &key, 1, &found, twice);
        return found;
}

/* obj[key] when it is a string, appears once and obj is an object; else NULL (and the caller
 * takes the slow path through member() for the message). */
static const json_t *string_member(const json_t *obj, const char *key)
{
        bool twice;
        const json_t *v = lookup(obj, key, &twice);
        return !twice && cJSON_IsString(v) ? v : NULL;
}

/* v, the member key of the object at JSON path `where` (twice: key appears more than once).
 * Absent or null → *out = NULL and 0. Present with another type than want, or twice → error.
 * required → absent is an error. The path is formatted only for an error: this runs for
 * every field of every endpoint and ENI. */
static int check_member(loader *l, const char *file, const char *where, const char *key,
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
                return type_error(l, file, path, expected_kind(want), v);
        }
        *out = v;
        return 0;
}

/* obj[key] at JSON path `where`, checked as check_member says. */
static int member(loader *l, const char *file, const json_t *obj, const char *where,
                  const char *key, json_want want, bool required, const json_t **out)
{
        bool twice;
        const json_t *v = lookup(obj, key, &twice);
        return check_member(l, file, where, key, v, twice, want, required, out);
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

typedef struct json_arena {
        arena_chunk *head;
} json_arena;

static _Thread_local json_arena *current_arena;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static size_t round_up(size_t n, size_t to)
{
        return (n + to - 1) / to * to;
}

static void *arena_malloc(size_t n)
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
        cJSON_Hooks hooks = {.malloc_fn = arena_malloc, .free_fn = arena_free};
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

/* The whole file in one buffer (sized from fstat for a regular file, grown for a pipe). Not
 * mapped: a snapshot rewritten in place while it is read would raise SIGBUS. */
static int read_file(loader *l, const char *file, char **out, size_t *out_len)
{
        char *buf = NULL;
        size_t len = 0, cap = 0;
        struct stat st;
        int rc = 0;
        int fd = open(file, O_RDONLY | O_CLOEXEC);

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
                                rc = no_memory(l);
                                goto out;
                        }
                        buf = nbuf;
                        cap = ncap;
                } else if (buf == NULL) {
                        buf = malloc(cap);
                        if (buf == NULL) {
                                rc = no_memory(l);
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
static int load_json(loader *l, const char *file, json_t **out)
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
                skip = 3; /* a UTF-8 byte-order mark: ignored (see the top of this file) */
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
                rc = type_error(l, file, "top level", "an object", *out);
                goto out;
        }
out:
        if (rc < 0)
                *out = NULL; /* the tree stays in the arena */
        free(buf);
        return rc;
}

static int parse_address(loader *l, const json_t *v, const char *path, int family, address *out)
{
        const char *text;

        if (!cJSON_IsString(v))
                return type_error(
                    l, l->if_file, path,
                    family == AF_INET ? "an IPv4 address string" : "an IPv6 address string", v);
        text = json_str(v);
        memset(out, 0, sizeof(*out));
        out->type = family == AF_INET ? VD_TYPE_A : VD_TYPE_AAAA;
        if (inet_pton(family, text, out->bytes) != 1)
                return vd_error_set(l->err, "%s: %s: expected an %s address, got \"%.80s\"",
                                    l->if_file, path, family == AF_INET ? "IPv4" : "IPv6", text);
        return 0;
}

/* where.array[i].key as an address (item is array[i]). The path is formatted only for an
 * error: this runs for every address of every ENI. */
static int read_address(loader *l, const json_t *item, const char *where, const char *array,
                        size_t i, const char *key, int family, address *out)
{
        const json_t *ip = string_member(item, key);
        char path[JSON_PATH_CAP];
        int rc;

        memset(out, 0, sizeof(*out));
        if (ip != NULL && inet_pton(family, ip->valuestring, out->bytes) == 1) {
                out->type = family == AF_INET ? VD_TYPE_A : VD_TYPE_AAAA;
                return 0;
        }
        snprintf(path, sizeof(path), "%s.%s[%zu]", where, array, i);
        if (!cJSON_IsObject(item))
                return type_error(l, l->if_file, path, "an object", item);
        if ((rc = member(l, l->if_file, item, path, key, WANT_STRING, true, &ip)) < 0)
                return rc;
        snprintf(path, sizeof(path), "%s.%s[%zu].%s", where, array, i, key);
        return parse_address(l, ip, path, family, out);
}

/* FNV-1a of an ENI id, for the id table. Ids come from the operator's file, not from the
 * network, so no keyed hash is needed. */
static uint64_t eni_hash(const char *id)
{
        uint64_t h = 0xcbf29ce484222325ull;
        for (; *id != '\0'; id++)
                h = (h ^ (uint8_t)*id) * 0x100000001b3ull;
        return h;
}

static int load_one_eni(loader *l, const json_t *v, size_t index, eni *e)
{
        char where[JSON_WHERE_CAP], path[JSON_PATH_CAP];
        const json_t *id, *az, *list, *primary, *v6;
        size_t n4 = 0, n6 = 0, n = 0, i;
        int rc;

        size_t at = 0;
        where[0] = '\0';
        put_text(where, sizeof(where), &at, "NetworkInterfaces", FILE_PATH_CAP);
        put_index(where, sizeof(where), &at, index);
        e->index = index;
        if (!cJSON_IsObject(v))
                return type_error(l, l->if_file, where, "an object", v);
        static const char *const keys[] = {"NetworkInterfaceId", "AvailabilityZone",
                                           "PrivateIpAddresses", "PrivateIpAddress",
                                           "Ipv6Addresses"};
        const json_t *f[5];
        bool two[5];
        const char *file = l->if_file;
        pick(v, keys, 5, f, two);
        if ((rc = check_member(l, file, where, keys[0], f[0], two[0], WANT_STRING, true, &id)) <
                0 ||
            (rc = check_member(l, file, where, keys[1], f[1], two[1], WANT_STRING, false, &az)) <
                0 ||
            (rc = check_member(l, file, where, keys[2], f[2], two[2], WANT_ARRAY, false, &list)) <
                0 ||
            (rc = check_member(l, file, where, keys[3], f[3], two[3], WANT_STRING, false,
                               &primary)) < 0 ||
            (rc = check_member(l, file, where, keys[4], f[4], two[4], WANT_ARRAY, false, &v6)) < 0)
                return rc;
        e->id = json_str(id);
        e->az = az ? json_str(az) : NULL;
        n4 = list ? json_len(list) : 0;
        if (n4 == 0 && primary != NULL)
                n4 = 1;
        n6 = v6 ? json_len(v6) : 0;
        if (n4 + n6 == 0)
                return 0;
        /* In the load's arena, with the documents: released with them, no free per ENI. */
        e->addrs = arena_malloc((n4 + n6) * sizeof(*e->addrs));
        if (e->addrs == NULL)
                return no_memory(l);
        memset(e->addrs, 0, (n4 + n6) * sizeof(*e->addrs));
        if (list != NULL && list->child != NULL) {
                i = 0;
                JSON_EACH(item, list)
                {
                        if ((rc = read_address(l, item, where, "PrivateIpAddresses", i++,
                                               "PrivateIpAddress", AF_INET, &e->addrs[n])) < 0)
                                return rc;
                        n++;
                }
        } else if (primary != NULL) {
                snprintf(path, sizeof(path), "%s.PrivateIpAddress", where);
                if ((rc = parse_address(l, primary, path, AF_INET, &e->addrs[n])) < 0)
                        return rc;
                n++;
        }
        i = 0;
        JSON_EACH(item, v6)
        {
                if ((rc = read_address(l, item, where, "Ipv6Addresses", i++, "Ipv6Address",
                                       AF_INET6, &e->addrs[n])) < 0)
                        return rc;
                n++;
        }
        e->n_addrs = n;
        return 0;
}

static int load_interfaces(loader *l, const json_t *root)
{
        const json_t *list;
        size_t i;
        int rc;

        if ((rc = member(l, l->if_file, root, "", "NetworkInterfaces", WANT_ARRAY, true, &list)) <
            0)
                return rc;
        l->n_enis = json_len(list);
        if (l->n_enis == 0)
                return 0;
        l->enis = calloc(l->n_enis, sizeof(*l->enis));
        if (l->enis == NULL)
                return no_memory(l);
        i = 0;
        JSON_EACH(item, list)
        {
                if ((rc = load_one_eni(l, item, i, &l->enis[i])) < 0)
                        return rc;
                i++;
        }
        /* The id table: open addressing over indexes into l->enis, at most half full. */
        l->eni_mask = 1;
        while (l->eni_mask + 1 < 2 * l->n_enis)
                l->eni_mask = l->eni_mask * 2 + 1;
        l->eni_table = malloc((l->eni_mask + 1) * sizeof(*l->eni_table));
        if (l->eni_table == NULL)
                return no_memory(l);
        memset(l->eni_table, 0xff, (l->eni_mask + 1) * sizeof(*l->eni_table));
        for (i = 0; i < l->n_enis; i++) {
                size_t slot = eni_hash(l->enis[i].id) & l->eni_mask;
                for (; l->eni_table[slot] != SIZE_MAX; slot = (slot + 1) & l->eni_mask) {
                        const eni *other = &l->enis[l->eni_table[slot]];
                        if (strcmp(other->id, l->enis[i].id) == 0)
                                return vd_error_set(
                                    l->err,
                                    "%s: NetworkInterfaces[%zu].NetworkInterfaceId: expected a "
                                    "unique id, but %s is also NetworkInterfaces[%zu]",
                                    l->if_file, i, l->enis[i].id, other->index);
                }
                l->eni_table[slot] = i;
        }
        return 0;
}

static const eni *find_eni(const loader *l, const char *id)
{
        if (l->n_enis == 0)
                return NULL;
        for (size_t slot = eni_hash(id) & l->eni_mask; l->eni_table[slot] != SIZE_MAX;
             slot = (slot + 1) & l->eni_mask) {
                const eni *e = &l->enis[l->eni_table[slot]];
                if (strcmp(e->id, id) == 0)
                        return e;
        }
        return NULL;
}

static int parse_mode(loader *l, const json_t *v, const char *path, ip_mode *out)
{
        static const struct {
                const char *text;
                ip_mode mode;
        } modes[] = {
            {"ipv4", IP_V4},
            {"ipv6", IP_V6},
            {"dualstack", IP_DUALSTACK},
            {"service-defined", IP_SERVICE_DEFINED},
        };
        const char *text = json_str(v);

        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
                if (strcasecmp(text, modes[i].text) == 0) {
                        *out = modes[i].mode;
                        return 0;
                }
        }
        return vd_error_set(l->err,
                            "%s: %s: expected ipv4, ipv6, dualstack or service-defined, got "
                            "\"%.80s\"",
                            l->ep_file, path, text);
}

static bool is_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_lower_alnum(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z');
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);
        return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Decides whether name->text (lower case, no final dot, "*." stripped into s) is a vpce
 * name; fills kind, az and the text of its region's public zone into zone_text. */
static void classify(dns_name *name, const char *s, char *zone_text, size_t zone_cap)
{
        size_t len = strlen(s), suffix_at, first_end, region_at, i, hex;

        name->kind = NAME_PRIVATE;
        if (ends_with(s, len, ".vpce.amazonaws.com"))
                suffix_at = len - strlen(".vpce.amazonaws.com");
        else if (ends_with(s, len, ".vpce.amazonaws.com.cn"))
                suffix_at = len - strlen(".vpce.amazonaws.com.cn");
        else
                return;
        /* The region label is the one just before "vpce"; the first label must be another. */
        region_at = suffix_at;
        while (region_at > 0 && s[region_at - 1] != '.')
                region_at--;
        if (region_at == 0 || region_at == suffix_at)
                return;
        first_end = (size_t)(strchr(s, '.') - s);
        /* vpce-<8 or 17 hex>-<8 [a-z0-9]>[-<az>] */
        if (first_end < 5 || strncmp(s, "vpce-", 5) != 0)
                return;
        for (i = 5, hex = 0; i < first_end && is_hex(s[i]); i++)
                hex++;
        if ((hex != 8 && hex != 17) || i >= first_end || s[i] != '-')
                return;
        i++;
        for (size_t k = 0; k < 8; k++, i++)
                if (i >= first_end || !is_lower_alnum(s[i]))
                        return;
        if (i == first_end) {
                name->kind = NAME_REGIONAL;
        } else {
                size_t az_len = first_end - i - 1;
                if (s[i] != '-' || az_len == 0 || az_len >= sizeof(name->az))
                        return;
                for (size_t k = i + 1; k < first_end; k++)
                        if (!is_lower_alnum(s[k]) && s[k] != '-')
                                return;
                memcpy(name->az, s + i + 1, az_len);
                name->az[az_len] = '\0';
                name->kind = NAME_ZONAL;
        }
        size_t at = 0;
        zone_text[0] = '\0';
        put_text(zone_text, zone_cap, &at, s + region_at, FILE_PATH_CAP);
}

/* DnsEntries[i].DnsName → a classified, validated name. */
static int parse_name(loader *l, const endpoint *ep, const json_t *v, size_t entry, dns_name *name)
{
        char path[JSON_PATH_CAP], zone_text[VD_NAME_MAX + 2];
        const char *raw = json_str(v), *s;
        size_t len = strlen(raw), wire_len;

        memset(name, 0, sizeof(*name));
        name->entry = entry;
        if (len > 0 && raw[len - 1] == '.')
                len--;
        if (len == 0 || len >= sizeof(name->text))
                goto bad;
        for (size_t i = 0; i < len; i++) {
                char c = raw[i];
                name->text[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        name->text[len] = '\0';
        if (vd_name_from_text(name->text, name->wire, &wire_len) < 0)
                goto bad;
        s = name->text;
        if (strncmp(s, "*.", 2) == 0) {
                name->wildcard = true;
                s += 2;
        }
        if (strchr(s, '*') != NULL)
                goto bad;
        zone_text[0] = '\0';
        classify(name, s, zone_text, sizeof(zone_text));
        /* Private names: the apex is the name without "*."; vpce names: the region zone. */
        if (vd_name_from_text(name->kind == NAME_PRIVATE ? s : zone_text, name->zone, &wire_len) <
            0)
                goto bad;
        return 0;
bad:
        snprintf(path, sizeof(path), "%s.DnsEntries[%zu].DnsName", ep->path, entry);
        return vd_error_set(l->err, "%s: %s: expected a DNS name, got \"%.300s\"", l->ep_file, path,
                            raw);
}

/* When msg (a claim conflict) names an endpoint of another VPC than ep's, writes into hint
 * how to take one VPC; else hint is "". Claims end in "(<endpoint id>, <VpcId>)". */
static void several_vpcs_hint(const loader *l, const endpoint *ep, const char *msg, char *hint,
                              size_t cap)
{
        char needle[JSON_PATH_CAP];
        bool other = false;
        size_t pos;
        int w;

        hint[0] = '\0';
        if (ep->vpc == NULL || l->n_vpcs < 2)
                return;
        for (size_t i = 0; i < l->n_vpcs && !other; i++) {
                if (strcmp(l->vpcs[i], ep->vpc) == 0)
                        continue;
                snprintf(needle, sizeof(needle), ", %.200s)", l->vpcs[i]);
                other = strstr(msg, needle) != NULL;
        }
        if (!other)
                return;
        w = snprintf(hint, cap, "; the snapshot holds endpoints of several VPCs (");
        pos = w > 0 ? (size_t)w : 0;
        for (size_t i = 0; i < l->n_vpcs && pos < cap; i++) {
                if (i == 4) {
                        w = snprintf(hint + pos, cap - pos, ", and %zu more", l->n_vpcs - i);
                        pos += w > 0 ? (size_t)w : 0;
                        break;
                }
                w = snprintf(hint + pos, cap - pos, "%s%.64s", i > 0 ? ", " : "", l->vpcs[i]);
                pos += w > 0 ? (size_t)w : 0;
        }
        if (pos < cap)
                snprintf(hint + pos, cap - pos,
                         "): capture one VPC with --filters Name=vpc-id,Values=<id>");
}

/* Puts the DnsName's file and JSON path in front of an error the builder reported. */
static int builder_failed(loader *l, const endpoint *ep, const dns_name *name, int rc)
{
        char msg[sizeof(l->err->msg)];
        char hint[384];
        size_t fixed;
        int keep;

        if (l->err == NULL || rc == -ENOMEM)
                return rc;
        memcpy(msg, l->err->msg, sizeof(msg));
        msg[sizeof(msg) - 1] = '\0';
        hint[0] = '\0';
        if (rc == -EEXIST)
                several_vpcs_hint(l, ep, msg, hint, sizeof(hint));
        /* the hint goes last but must survive a long message: cut msg, not the hint */
        fixed = strlen(hint) + strlen(l->ep_file) + strlen(ep->path) + 48;
        keep = sizeof(msg) > fixed ? (int)(sizeof(msg) - fixed) : 0;
        vd_error_set(l->err, "%s: %s.DnsEntries[%zu].DnsName: %.*s%s", l->ep_file, ep->path,
                     name->entry, keep, msg, hint);
        return rc;
}

static int add_rr(loader *l, const endpoint *ep, const uint8_t *owner, uint16_t type, uint32_t ttl,
                  const uint8_t *rdata, size_t rdlen)
{
        int rc =
            vd_builder_add_rr(l->b, owner, type, ttl, rdata, (uint16_t)rdlen, ep->claim, l->err);
        if (rc == 0 && type != VD_TYPE_NS)
                l->ep_records++;
        return rc;
}

/* A/AAAA records for one name: all ENIs, or only those in name->az for a zonal name.
 * *added receives the number of records; *matched whether any ENI qualified. */
static int add_addresses(loader *l, const endpoint *ep, const dns_name *name, bool want_a,
                         bool want_aaaa, size_t *added, bool *matched)
{
        int rc;

        *added = 0;
        *matched = false;
        for (size_t i = 0; i < ep->n_enis; i++) {
                const eni *e = ep->enis[i];
                if (name->kind == NAME_ZONAL && (e->az == NULL || strcasecmp(e->az, name->az) != 0))
                        continue;
                *matched = true;
                for (size_t k = 0; k < e->n_addrs; k++) {
                        const address *a = &e->addrs[k];
                        if ((a->type == VD_TYPE_A && !want_a) ||
                            (a->type == VD_TYPE_AAAA && !want_aaaa))
                                continue;
                        rc = add_rr(l, ep, name->wire, a->type, VD_ENDPOINT_TTL, a->bytes,
                                    a->type == VD_TYPE_A ? 4 : 16);
                        if (rc < 0)
                                return rc;
                        (*added)++;
                }
        }
        l->sum.addresses += *added;
        return 0;
}

static int add_vpce_name(loader *l, const endpoint *ep, const dns_name *name)
{
        bool want_a = ep->mode != IP_V6, want_aaaa = ep->mode != IP_V4, matched;
        size_t added;
        int rc;

        if (name->kind == NAME_ZONAL) {
                bool any = false;
                for (size_t i = 0; i < ep->n_enis && !any; i++)
                        any = ep->enis[i]->az != NULL && strcasecmp(ep->enis[i]->az, name->az) == 0;
                if (!any) {
                        vd_log(VD_LOG_WARN, "aws_zonal_name_skipped",
                               "file=%s path=%s.DnsEntries[%zu] name=%s az=%s "
                               "reason=no_eni_in_az",
                               l->ep_file, ep->path, name->entry, name->text, name->az);
                        return 0;
                }
        }
        rc = vd_builder_add_zone(l->b, name->zone, false, l->soa, l->soa_len, SOA_TTL, ep->claim,
                                 l->err);
        if (rc < 0)
                return builder_failed(l, ep, name, rc);
        if ((rc = add_addresses(l, ep, name, want_a, want_aaaa, &added, &matched)) < 0)
                return builder_failed(l, ep, name, rc);
        if (added > 0)
                l->sum.names++;
        return 0;
}

static int add_private_name(loader *l, const endpoint *ep, const dns_name *name)
{
        bool matched;
        size_t added = 0;
        int rc;

        rc = vd_builder_add_zone(l->b, name->zone, true, l->soa, l->soa_len, SOA_TTL, ep->claim,
                                 l->err);
        if (rc < 0)
                return builder_failed(l, ep, name, rc);
        for (size_t i = 0; i < ZONE_NS_COUNT; i++)
                if ((rc = add_rr(l, ep, name->zone, VD_TYPE_NS, NS_TTL, l->ns[i], l->ns_len[i])) <
                    0)
                        return builder_failed(l, ep, name, rc);
        if (ep->service) {
                /* Endpoint service: a CNAME to the regional vpce name (checked to exist). */
                size_t len = vd_name_len(ep->regional->wire, sizeof(ep->regional->wire));
                if ((rc = add_rr(l, ep, name->wire, VD_TYPE_CNAME, VD_ENDPOINT_TTL,
                                 ep->regional->wire, len)) < 0)
                        return builder_failed(l, ep, name, rc);
                added = 1;
        } else {
                /* service-defined: AAAA only on vpce names, so A alone here. */
                bool want_a = ep->mode != IP_V6;
                bool want_aaaa = ep->mode == IP_V6 || ep->mode == IP_DUALSTACK;
                if ((rc = add_addresses(l, ep, name, want_a, want_aaaa, &added, &matched)) < 0)
                        return builder_failed(l, ep, name, rc);
        }
        if (added > 0)
                l->sum.names++;
        return 0;
}

/* Fields of a served endpoint: ENIs, record types, DNS flags and names. */
/* The fields of an endpoint that vpcdns reads, picked in one pass over the object. */
enum {
        EP_ID,
        EP_TYPE,
        EP_STATE,
        EP_VPC,
        EP_ENIS,
        EP_OPTIONS,
        EP_IP_TYPE,
        EP_DNS_ENABLED,
        EP_SERVICE,
        EP_ENTRIES,
        EP_FIELDS
};
static const char *const endpoint_keys[EP_FIELDS] = {
    "VpcEndpointId",       "VpcEndpointType", "State",         "VpcId",
    "NetworkInterfaceIds", "DnsOptions",      "IpAddressType", "PrivateDnsEnabled",
    "ServiceName",         "DnsEntries"};

static int read_served_endpoint(loader *l, const json_t *const *fv, const bool *two, endpoint *ep)
{
        const json_t *ids, *options, *rec_type = NULL, *ip_type, *dns_enabled, *inbound_only = NULL,
                                     *service, *entries;
        char path[JSON_PATH_CAP];
        const char *f = l->ep_file;
        const char *const *k = endpoint_keys;
        size_t i, n;
        int rc;

        if ((rc = check_member(l, f, ep->path, k[EP_ENIS], fv[EP_ENIS], two[EP_ENIS], WANT_ARRAY,
                               false, &ids)) < 0 ||
            (rc = check_member(l, f, ep->path, k[EP_OPTIONS], fv[EP_OPTIONS], two[EP_OPTIONS],
                               WANT_OBJECT, false, &options)) < 0 ||
            (rc = check_member(l, f, ep->path, k[EP_IP_TYPE], fv[EP_IP_TYPE], two[EP_IP_TYPE],
                               WANT_STRING, false, &ip_type)) < 0 ||
            (rc = check_member(l, f, ep->path, k[EP_DNS_ENABLED], fv[EP_DNS_ENABLED],
                               two[EP_DNS_ENABLED], WANT_BOOL, false, &dns_enabled)) < 0 ||
            (rc = check_member(l, f, ep->path, k[EP_SERVICE], fv[EP_SERVICE], two[EP_SERVICE],
                               WANT_STRING, false, &service)) < 0 ||
            (rc = check_member(l, f, ep->path, k[EP_ENTRIES], fv[EP_ENTRIES], two[EP_ENTRIES],
                               WANT_ARRAY, false, &entries)) < 0)
                return rc;
        if (options != NULL) {
                snprintf(path, sizeof(path), "%s.DnsOptions", ep->path);
                if ((rc = member(l, f, options, path, "DnsRecordIpType", WANT_STRING, false,
                                 &rec_type)) < 0 ||
                    (rc = member(l, f, options, path, "PrivateDnsOnlyForInboundResolverEndpoint",
                                 WANT_BOOL, false, &inbound_only)) < 0)
                        return rc;
        }

        /* Record types: DnsRecordIpType, else IpAddressType, else ipv4. */
        ep->mode = IP_V4;
        if (rec_type != NULL) {
                snprintf(path, sizeof(path), "%s.DnsOptions.DnsRecordIpType", ep->path);
                if ((rc = parse_mode(l, rec_type, path, &ep->mode)) < 0)
                        return rc;
        } else if (ip_type != NULL) {
                snprintf(path, sizeof(path), "%s.IpAddressType", ep->path);
                if ((rc = parse_mode(l, ip_type, path, &ep->mode)) < 0)
                        return rc;
        }
        /* Spec §4: all clients count as inside the VPC for now, so an endpoint whose private
         * names are only for inbound Resolver endpoints serves its vpce names alone. */
        ep->private_dns = dns_enabled != NULL && cJSON_IsTrue(dns_enabled) &&
                          !(inbound_only != NULL && cJSON_IsTrue(inbound_only));
        ep->service = service != NULL && strstr(json_str(service), ".vpce-svc-") != NULL;

        /* ENIs, only through NetworkInterfaceIds (never by InterfaceType or Description). */
        n = ids ? json_len(ids) : 0;
        if (n > 0) {
                ep->enis = calloc(n, sizeof(*ep->enis));
                if (ep->enis == NULL)
                        return no_memory(l);
        }
        i = 0;
        JSON_EACH(id, ids)
        {
                const eni *e = cJSON_IsString(id) ? find_eni(l, id->valuestring) : NULL;
                bool seen = false;
                if (e == NULL) {
                        snprintf(path, sizeof(path), "%s.NetworkInterfaceIds[%zu]", ep->path, i);
                        if (!cJSON_IsString(id))
                                return type_error(l, f, path, "a string", id);
                        return vd_error_set(l->err,
                                            "%s: %s: expected a NetworkInterfaceId of %s, but "
                                            "%.80s is not there",
                                            f, path, l->if_file, json_str(id));
                }
                for (size_t j = 0; j < ep->n_enis && !seen; j++)
                        seen = ep->enis[j] == e;
                if (!seen)
                        ep->enis[ep->n_enis++] = e;
                i++;
        }

        /* Names, only from DnsEntries[].DnsName. */
        n = entries ? json_len(entries) : 0;
        if (n > 0) {
                ep->names = calloc(n, sizeof(*ep->names));
                if (ep->names == NULL)
                        return no_memory(l);
        }
        i = 0;
        JSON_EACH(entry, entries)
        {
                const json_t *dns_name_v = string_member(entry, "DnsName");
                if (dns_name_v == NULL) { /* the message needs the path */
                        snprintf(path, sizeof(path), "%s.DnsEntries[%zu]", ep->path, i);
                        if (!cJSON_IsObject(entry))
                                return type_error(l, f, path, "an object", entry);
                        if ((rc = member(l, f, entry, path, "DnsName", WANT_STRING, true,
                                         &dns_name_v)) < 0)
                                return rc;
                }
                if ((rc = parse_name(l, ep, dns_name_v, i, &ep->names[ep->n_names])) < 0)
                        return rc;
                if (ep->regional == NULL && ep->names[ep->n_names].kind == NAME_REGIONAL &&
                    !ep->names[ep->n_names].wildcard)
                        ep->regional = &ep->names[ep->n_names];
                ep->n_names++;
                i++;
        }
        return 0;
}

/* text for a key=value log field: at most cap - 1 octets, anything but a visible character
 * other than '=' and '"' replaced by '?', so untrusted ids cannot break the line. */
static const char *log_value(const char *text, char *out, size_t cap)
{
        size_t n = 0;

        for (; text[n] != '\0' && n + 1 < cap; n++)
                out[n] = (text[n] > ' ' && text[n] < 0x7f && text[n] != '=' && text[n] != '"')
                             ? text[n]
                             : '?';
        out[n] = '\0';
        return out;
}

/* Why a served endpoint yielded no address record for any of its names. */
static const char *no_address_reason(const endpoint *ep)
{
        bool v4 = false, v6 = false, served_name = false;

        if (ep->n_names == 0)
                return "no_dns_entries";
        if (ep->n_enis == 0)
                return "no_network_interfaces";
        for (size_t i = 0; i < ep->n_enis; i++) {
                for (size_t k = 0; k < ep->enis[i]->n_addrs; k++) {
                        v4 = v4 || ep->enis[i]->addrs[k].type == VD_TYPE_A;
                        v6 = v6 || ep->enis[i]->addrs[k].type == VD_TYPE_AAAA;
                }
        }
        if (ep->mode == IP_V6 && !v6)
                return "ipv6_records_but_its_enis_have_no_ipv6_address";
        if ((ep->mode == IP_V4 || ep->mode == IP_SERVICE_DEFINED) && !v4)
                return "ipv4_records_but_its_enis_have_no_ipv4_address";
        if (!v4 && !v6)
                return "its_enis_have_no_address";
        for (size_t i = 0; i < ep->n_names; i++)
                served_name = served_name || ep->names[i].kind != NAME_PRIVATE || ep->private_dns;
        if (!served_name)
                return "only_private_dns_names_and_private_dns_is_off";
        return "no_eni_in_the_availability_zones_of_its_names";
}

static void warn_no_address(const loader *l, const endpoint *ep)
{
        static const char *const modes[] = {"ipv4", "ipv6", "dualstack", "service-defined"};
        char id[128], vpc[128];

        vd_log(VD_LOG_WARN, "aws_endpoint_without_addresses",
               "file=%s path=%s endpoint=%s vpc=%s record_ip_type=%s enis=%zu names=%zu "
               "reason=%s",
               l->ep_file, ep->path, log_value(ep->id, id, sizeof(id)),
               ep->vpc != NULL ? log_value(ep->vpc, vpc, sizeof(vpc)) : "-", modes[ep->mode],
               ep->n_enis, ep->n_names, no_address_reason(ep));
}

static int load_endpoint(loader *l, const json_t *v, size_t index)
{
        const json_t *id, *type, *state, *vpc;
        endpoint ep;
        const char *f = l->ep_file;
        bool served, has_private = false;
        int rc;

        memset(&ep, 0, sizeof(ep));
        ep.index = index;
        size_t at = 0;
        put_text(ep.path, sizeof(ep.path), &at, "VpcEndpoints", FILE_PATH_CAP);
        put_index(ep.path, sizeof(ep.path), &at, index);
        l->sum.endpoints++;
        if (!cJSON_IsObject(v))
                return type_error(l, f, ep.path, "an object", v);
        const json_t *fv[EP_FIELDS];
        bool two[EP_FIELDS];
        const char *const *k = endpoint_keys;
        pick(v, endpoint_keys, EP_FIELDS, fv, two);
        if ((rc = check_member(l, f, ep.path, k[EP_ID], fv[EP_ID], two[EP_ID], WANT_STRING, false,
                               &id)) < 0 ||
            (rc = check_member(l, f, ep.path, k[EP_TYPE], fv[EP_TYPE], two[EP_TYPE], WANT_STRING,
                               false, &type)) < 0 ||
            (rc = check_member(l, f, ep.path, k[EP_STATE], fv[EP_STATE], two[EP_STATE], WANT_STRING,
                               false, &state)) < 0 ||
            (rc = check_member(l, f, ep.path, k[EP_VPC], fv[EP_VPC], two[EP_VPC], WANT_STRING,
                               false, &vpc)) < 0)
                return rc;
        ep.id = id ? json_str(id) : "?";
        ep.vpc = vpc ? json_str(vpc) : NULL;
        /* "FILE: VpcEndpoints[N] (vpce-..., vpc-...)", as several_vpcs_hint() expects */
        at = 0;
        ep.claim[0] = '\0';
        put_text(ep.claim, sizeof(ep.claim), &at, f, FILE_PATH_CAP);
        put_text(ep.claim, sizeof(ep.claim), &at, ": ", 2);
        put_text(ep.claim, sizeof(ep.claim), &at, ep.path, sizeof(ep.path));
        put_text(ep.claim, sizeof(ep.claim), &at, " (", 2);
        put_text(ep.claim, sizeof(ep.claim), &at, ep.id, 100);
        if (ep.vpc != NULL) {
                put_text(ep.claim, sizeof(ep.claim), &at, ", ", 2);
                put_text(ep.claim, sizeof(ep.claim), &at, ep.vpc, 100);
        }
        put_text(ep.claim, sizeof(ep.claim), &at, ")", 1);

        /* Absent type or state: not served (see the top of this file). */
        served = type != NULL && strcasecmp(json_str(type), "Interface") == 0 && state != NULL &&
                 strcasecmp(json_str(state), "available") == 0;
        if (!served)
                return 0;
        l->sum.endpoints_served++;

        if ((rc = read_served_endpoint(l, fv, two, &ep)) < 0)
                goto out;
        for (size_t i = 0; i < ep.n_names; i++)
                has_private = has_private || ep.names[i].kind == NAME_PRIVATE;
        if (ep.service && ep.private_dns && has_private && ep.regional == NULL) {
                rc = vd_error_set(l->err,
                                  "%s: %s.DnsEntries: endpoint %s is for an endpoint service, "
                                  "expected a regional vpce name for its private DNS names to "
                                  "point to",
                                  f, ep.path, ep.id);
                goto out;
        }
        l->ep_records = 0;
        for (size_t i = 0; i < ep.n_names; i++) {
                const dns_name *name = &ep.names[i];
                rc = 0;
                if (name->kind != NAME_PRIVATE)
                        rc = add_vpce_name(l, &ep, name);
                else if (ep.private_dns)
                        rc = add_private_name(l, &ep, name);
                if (rc < 0)
                        goto out;
        }
        if (l->ep_records == 0)
                warn_no_address(l, &ep);
out:
        free(ep.enis);
        free(ep.names);
        return rc;
}

static int build_zone_data(loader *l)
{
        uint8_t name[VD_NAME_MAX];
        size_t len, pos = 0;
        const uint32_t fields[] = {SOA_SERIAL, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, SOA_MINIMUM};

        VD_CHECK(vd_name_from_text(SOA_MNAME, name, &len) == 0);
        memcpy(l->soa + pos, name, len);
        pos += len;
        VD_CHECK(vd_name_from_text(SOA_RNAME, name, &len) == 0);
        memcpy(l->soa + pos, name, len);
        pos += len;
        for (size_t i = 0; i < 5; i++, pos += 4)
                vd_wire_put32(l->soa + pos, fields[i]);
        l->soa_len = (uint16_t)pos;
        for (size_t i = 0; i < ZONE_NS_COUNT; i++) {
                VD_CHECK(vd_name_from_text(zone_ns[i], l->ns[i], &len) == 0);
                l->ns_len[i] = (uint16_t)len;
        }
        return 0;
}

/* The distinct VpcIds of the endpoints, for the several-VPCs hint. Fields of the wrong type
 * are left to load_endpoint() to report. */
static int collect_vpcs(loader *l, const json_t *list)
{
        size_t n = json_len(list);

        if (n == 0)
                return 0;
        l->vpcs = calloc(n, sizeof(*l->vpcs));
        if (l->vpcs == NULL)
                return no_memory(l);
        JSON_EACH(item, list)
        {
                const json_t *v = string_member(item, "VpcId");
                const char *vpc = v != NULL ? v->valuestring : NULL;
                bool seen = false;
                if (vpc == NULL)
                        continue;
                for (size_t k = 0; k < l->n_vpcs && !seen; k++)
                        seen = strcmp(l->vpcs[k], vpc) == 0;
                if (!seen)
                        l->vpcs[l->n_vpcs++] = vpc;
        }
        return 0;
}

static int join_path(loader *l, const char *dir, const char *file, char *out, size_t cap)
{
        size_t n = strlen(dir);
        int w;

        while (n > 1 && dir[n - 1] == '/')
                n--;
        w = snprintf(out, cap, "%.*s%s%s", (int)n, dir, (n == 1 && dir[0] == '/') ? "" : "/", file);
        if (w < 0 || (size_t)w >= cap)
                return vd_error_set(l->err, "%s: snapshot directory path too long", dir);
        return 0;
}

int vd_aws_load(vd_builder *b, const char *dir, vd_aws_summary *sum, vd_error *err)
{
        loader *l = NULL;
        json_arena arena = {NULL};
        json_t *endpoints_doc = NULL, *interfaces_doc = NULL;
        const json_t *list;
        int rc;

        VD_CHECK(b != NULL && dir != NULL);
        if (dir[0] == '\0')
                return vd_error_set(err, "snapshot directory: expected a path, got \"\"");
        l = calloc(1, sizeof(*l));
        if (l == NULL) {
                vd_error_set(err, "%s: out of memory", dir);
                return -ENOMEM;
        }
        l->b = b;
        l->err = err;
        if ((rc = join_path(l, dir, ENDPOINTS_FILE, l->ep_file, sizeof(l->ep_file))) < 0 ||
            (rc = join_path(l, dir, INTERFACES_FILE, l->if_file, sizeof(l->if_file))) < 0 ||
            (rc = build_zone_data(l)) < 0)
                goto out;
        pthread_once(&hooks_once, install_hooks);
        current_arena = &arena;
        if ((rc = load_json(l, l->ep_file, &endpoints_doc)) < 0 ||
            (rc = load_json(l, l->if_file, &interfaces_doc)) < 0)
                goto out;
        /* NextToken and every field not read below are ignored. */
        if ((rc = member(l, l->ep_file, endpoints_doc, "", "VpcEndpoints", WANT_ARRAY, true,
                         &list)) < 0)
                goto out;
        if ((rc = load_interfaces(l, interfaces_doc)) < 0 || (rc = collect_vpcs(l, list)) < 0)
                goto out;
        size_t index = 0;
        JSON_EACH(item, list)
        {
                if ((rc = load_endpoint(l, item, index++)) < 0)
                        goto out;
        }
        if (sum != NULL) {
                sum->endpoints += l->sum.endpoints;
                sum->endpoints_served += l->sum.endpoints_served;
                sum->names += l->sum.names;
                sum->addresses += l->sum.addresses;
        }
out:
        free(l->enis); /* their addresses are in the arena */
        free(l->eni_table);
        free(l->vpcs);
        free(l);
        current_arena = NULL;
        arena_release(&arena); /* both documents */
        return rc;
}

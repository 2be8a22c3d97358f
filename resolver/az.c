/* az.c — the clients' AZ for AZ-local endpoint answers: the az setting as given, or the AZ ID
 * that the EC2 instance metadata service (IMDSv2, through libcurl) reports for this instance,
 * asked once at the start; and the operator log line naming the affinity in force. Runs on
 * the control thread before the workers start. Must not: run on a worker thread (it blocks
 * for up to two 1 s timeouts), or reach any address but the IMDS one (or the test variable's
 * loopback address). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/az.h"
#include "vpcdns/log.h"
#include "vpcdns/wire.h"

#define IMDS_TIMEOUT_MS 1000
#define IMDS_BODY_MAX 512

const char *vd_az_source_name(vd_az_source source)
{
        switch (source) {
        case VD_AZ_SOURCE_SUBNETS:
                return "subnets";
        case VD_AZ_SOURCE_CONFIG:
                return "config";
        case VD_AZ_SOURCE_IMDS:
                return "imds";
        case VD_AZ_SOURCE_NONE:
                return "none";
        }
        return "?";
}

/* A response body, cut at IMDS_BODY_MAX - 1 octets (the token is 56, an AZ ID about 8). */
struct body {
        char text[IMDS_BODY_MAX];
        size_t len;
        bool too_long;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
        struct body *b = arg;
        size_t len = size * n;
        if (b->len + len >= sizeof(b->text)) {
                b->too_long = true;
                return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
        }
        memcpy(b->text + b->len, data, len);
        b->len += len;
        b->text[b->len] = '\0';
        return len;
}

/* One IMDS request: method PUT (with the TTL header) or GET (with the token header). */
static int imds_request(const char *url, const char *header, bool put, unsigned timeout_ms,
                        struct body *b, vd_error *err)
{
        CURL *c = curl_easy_init();
        struct curl_slist *headers = NULL;
        char why[CURL_ERROR_SIZE] = "";
        long status = 0;
        int rc = 0;

        memset(b, 0, sizeof(*b));
        if (c == NULL)
                return vd_error_set(err, "out of memory");
        headers = curl_slist_append(headers, header);
        if (headers == NULL) {
                curl_easy_cleanup(c);
                return vd_error_set(err, "out of memory");
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* never through an http_proxy */
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
        if (put) {
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
        }
        CURLcode res = curl_easy_perform(c);
        if (res != CURLE_OK) {
                rc = vd_error_set(err, "%s %s: %s", put ? "PUT" : "GET", url,
                                  b->too_long      ? "response too long"
                                  : why[0] != '\0' ? why
                                                   : curl_easy_strerror(res));
        } else {
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                if (status != 200)
                        rc = vd_error_set(err, "%s %s: HTTP status %ld, expected 200",
                                          put ? "PUT" : "GET", url, status);
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        return rc;
}

/* True for text that can be an AZ ID or a token: printable, no blank, not empty. */
static bool plain_text(const char *s)
{
        if (s[0] == '\0')
                return false;
        for (; *s != '\0'; s++)
                if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
                        return false;
        return true;
}

int vd_az_imds(const char *host_port, unsigned timeout_ms, char *out, size_t cap, vd_error *err)
{
        char url[256], header[IMDS_BODY_MAX + 64];
        struct body b;
        int rc;

        if (cap > 0)
                out[0] = '\0';
        snprintf(url, sizeof(url), "http://%s/latest/api/token", host_port);
        rc = imds_request(url, "X-aws-ec2-metadata-token-ttl-seconds: 60", true, timeout_ms, &b,
                          err);
        if (rc != 0)
                return rc;
        while (b.len > 0 && (b.text[b.len - 1] == '\n' || b.text[b.len - 1] == '\r'))
                b.text[--b.len] = '\0';
        if (!plain_text(b.text))
                return vd_error_set(
                    err, "PUT %s: expected a token, got %zu octets that are not one", url, b.len);
        snprintf(header, sizeof(header), "X-aws-ec2-metadata-token: %s", b.text);
        snprintf(url, sizeof(url), "http://%s/latest/meta-data/placement/availability-zone-id",
                 host_port);
        rc = imds_request(url, header, false, timeout_ms, &b, err);
        if (rc != 0)
                return rc;
        while (b.len > 0 && (b.text[b.len - 1] == '\n' || b.text[b.len - 1] == '\r'))
                b.text[--b.len] = '\0';
        if (!plain_text(b.text) || b.len >= cap)
                return vd_error_set(err, "GET %s: expected an AZ ID (use1-az4), got \"%.64s\"", url,
                                    b.text);
        memcpy(out, b.text, b.len + 1);
        return 0;
}

vd_az_source vd_az_resolve(const char *configured, char *out, size_t cap)
{
        char e[1024], where[300];
        if (cap > 0)
                out[0] = '\0';
        if (configured == NULL || configured[0] == '\0')
                return VD_AZ_SOURCE_SUBNETS;
        if (strcmp(configured, "imds") != 0) {
                snprintf(out, cap, "%s", configured);
                return VD_AZ_SOURCE_CONFIG;
        }
        const char *test = getenv(VD_IMDS_TEST_ENV);
        const char *host = VD_IMDS_DEFAULT;
        if (test != NULL && test[0] != '\0') {
                /* Tests only: a fake on loopback. Anything else is ignored, so the variable
                 * cannot send the instance's metadata token elsewhere. */
                if (strncmp(test, "127.", 4) == 0 || strncmp(test, "[::1]", 5) == 0)
                        host = test;
                else
                        vd_log(VD_LOG_WARN, "az_imds_test_ignored",
                               "value=%s detail=\"" VD_IMDS_TEST_ENV
                               " is for tests and takes a loopback HOST:PORT only\"",
                               vd_log_value(test, where, sizeof(where)));
        }
        vd_error err = {{0}};
        if (curl_global_init(CURL_GLOBAL_NOTHING) != CURLE_OK) {
                vd_error_set(&err, "libcurl could not start");
        } else {
                int rc = vd_az_imds(host, IMDS_TIMEOUT_MS, out, cap, &err);
                curl_global_cleanup();
                if (rc == 0) {
                        vd_log(VD_LOG_INFO, "az_imds", "az=%s imds=%s",
                               vd_log_value(out, e, sizeof(e)),
                               vd_log_value(host, where, sizeof(where)));
                        return VD_AZ_SOURCE_IMDS;
                }
        }
        if (cap > 0)
                out[0] = '\0';
        vd_log(VD_LOG_WARN, "az_imds_failed",
               "imds=%s error=%s detail=\"the instance metadata service did not tell this "
               "instance's AZ: starting without AZ affinity (set az: to an AZ ID instead)\"",
               vd_log_value(host, where, sizeof(where)), vd_log_value(err.msg, e, sizeof(e)));
        return VD_AZ_SOURCE_NONE;
}

void vd_az_log(const vd_snapshot *s, vd_az_affinity mode, const char *az, vd_az_source source,
               const char *event)
{
        static const char *const modes[] = {"off", "prefer", "strict"};
        const char *mode_text = (unsigned)mode < 3 ? modes[mode] : "?";
        char a[128], name[128], id[128];
        size_t n_enis = s != NULL ? vd_snapshot_eni_count(s) : 0;
        size_t n_azs = s != NULL ? vd_snapshot_az_count(s) : 0;
        size_t n_subnets = s != NULL ? vd_snapshot_subnet_count(s) : 0;
        int found = -1;
        if (az != NULL && az[0] != '\0' && s != NULL) {
                vd_answer_client c = {mode, az, NULL};
                found = vd_snapshot_client_az(s, &c);
        }
        vd_log(VD_LOG_INFO, "az_affinity",
               "phase=%s mode=%s az=%s az_name=%s az_id=%s source=%s eni_addresses=%zu azs=%zu "
               "subnets=%zu",
               event, mode_text, vd_log_value(az != NULL ? az : "", a, sizeof(a)),
               vd_log_value(found >= 0 ? vd_snapshot_az_name(s, (size_t)found) : "", name,
                            sizeof(name)),
               vd_log_value(found >= 0 ? vd_snapshot_az_id(s, (size_t)found) : "", id, sizeof(id)),
               vd_az_source_name(source), n_enis, n_azs, n_subnets);
        if (mode != VD_AZ_AFFINITY_OFF && az != NULL && az[0] != '\0' && found < 0 && n_enis > 0)
                vd_log(VD_LOG_WARN, "az_unknown",
                       "az=%s detail=\"no ENI or subnet of the snapshot is in this AZ (by ID or "
                       "name): answers have no AZ affinity\"",
                       vd_log_value(az, a, sizeof(a)));
        else if (mode != VD_AZ_AFFINITY_OFF && source == VD_AZ_SOURCE_SUBNETS && n_subnets == 0 &&
                 n_enis > 0)
                vd_log(VD_LOG_INFO, "az_no_subnets",
                       "detail=\"no az setting and no describe-subnets.json in the snapshot: "
                       "clients have no known AZ, answers have no AZ affinity\"");
}

/* ---- --dump --client ------------------------------------------------------------------------ */

struct dump {
        const vd_snapshot *s;
        const vd_answer_client *client;
        FILE *out;
        const uint8_t *last_owner; /* records of one name come together */
        int failed;
};

static bool is_eni_address(const vd_snapshot *s, int family, const uint8_t *addr)
{
        size_t alen = family == AF_INET ? 4 : 16;
        for (size_t i = 0; i < vd_snapshot_eni_count(s); i++) {
                const vd_snapshot_eni *e = vd_snapshot_eni_at(s, i);
                if (e->family == family && memcmp(e->addr, addr, alen) == 0)
                        return true;
        }
        return false;
}

/* Asks owner/type as the client would and prints the addresses of the answer, when one of
 * them is an ENI address. */
static void dump_answer(struct dump *d, const uint8_t *owner, uint16_t type)
{
        uint8_t q[VD_HEADER_LEN + VD_NAME_MAX + 4], resp[4096];
        size_t nlen = vd_name_len(owner, VD_NAME_MAX), len = 0, pos;
        char text[VD_NAME_MAX * 4 + 2], line[4096], ip[INET6_ADDRSTRLEN];
        vd_query_info qi;
        memset(q, 0, VD_HEADER_LEN);
        vd_wire_put16(q + 2, 0x0100); /* RD */
        vd_wire_put16(q + 4, 1);
        memcpy(q + VD_HEADER_LEN, owner, nlen);
        vd_wire_put16(q + VD_HEADER_LEN + nlen, type);
        vd_wire_put16(q + VD_HEADER_LEN + nlen + 2, VD_CLASS_IN);
        if (vd_wire_parse_query(q, VD_HEADER_LEN + nlen + 4, &qi) != VD_PARSE_OK)
                return;
        vd_local_chase lc;
        memset(&lc, 0, sizeof(lc));
        lc.client = d->client;
        if (vd_snapshot_answer_chase(d->s, &qi, 0, resp, sizeof(resp), &len, &lc) !=
            VD_LOCAL_ANSWERED)
                return;
        unsigned an = vd_wire_get16(resp + 6);
        size_t at = 0;
        bool eni = false;
        line[0] = '\0';
        pos = qi.question_end;
        for (unsigned i = 0; i < an; i++) {
                uint16_t t;
                size_t fixed;
                if (vd_wire_skip_rr(resp, len, &pos, &t, &fixed) != 0)
                        return;
                if (t != type)
                        continue; /* the CNAME of an endpoint service */
                int family = t == VD_TYPE_A ? AF_INET : AF_INET6;
                const uint8_t *rdata = resp + pos - (t == VD_TYPE_A ? 4 : 16);
                eni = eni || is_eni_address(d->s, family, rdata);
                inet_ntop(family, rdata, ip, sizeof(ip));
                int w = snprintf(line + at, sizeof(line) - at, " %s", ip);
                if (w > 0 && (size_t)w < sizeof(line) - at)
                        at += (size_t)w;
        }
        if (!eni)
                return;
        vd_name_to_text(owner, text, sizeof(text));
        if (fprintf(d->out, "%s %s%s\n", text, type == VD_TYPE_A ? "A" : "AAAA", line) < 0)
                d->failed = -1;
}

static int dump_visit(void *arg, const uint8_t *owner, uint16_t type, uint32_t ttl,
                      const uint8_t *rdata, uint16_t rdlen)
{
        struct dump *d = arg;
        (void)type;
        (void)ttl;
        (void)rdata;
        (void)rdlen;
        if (owner == d->last_owner)
                return 0;
        d->last_owner = owner;
        dump_answer(d, owner, VD_TYPE_A);
        dump_answer(d, owner, VD_TYPE_AAAA);
        return d->failed;
}

int vd_az_dump_client(const vd_snapshot *s, vd_az_affinity mode, const char *az,
                      vd_az_source source, const struct sockaddr *addr, FILE *out)
{
        static const char *const modes[] = {"off", "prefer", "strict"};
        char ip[INET6_ADDRSTRLEN] = "?";
        vd_answer_client c = {mode, az != NULL && az[0] != '\0' ? az : NULL, addr};
        if (addr->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, ip,
                          sizeof(ip));
        else if (addr->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr,
                          ip, sizeof(ip));
        int found = source == VD_AZ_SOURCE_NONE ? -1 : vd_snapshot_client_az(s, &c);
        if (fprintf(out, "; client %s az_id=%s az_name=%s source=%s affinity=%s\n", ip,
                    found >= 0 ? vd_snapshot_az_id(s, (size_t)found) : "",
                    found >= 0 ? vd_snapshot_az_name(s, (size_t)found) : "",
                    found >= 0 ? vd_az_source_name(source) : "unknown",
                    (unsigned)mode < 3 ? modes[mode] : "?") < 0)
                return -1;
        struct dump d = {s, &c, out, NULL, 0};
        return vd_snapshot_foreach(s, dump_visit, &d) != 0 ? -1 : 0;
}

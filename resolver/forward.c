/* forward.c — the forwarder's queries and lifetime: vd_forwarder_new/resolve/close. For each
 * query it picks a server (forward_select.c) among those its name goes to (forward_rules.c),
 * sends with a fresh random ID and, under 0x20, a random letter case (forward_random.c)
 * through c-ares (forward_ares.c), moves on to another server or resends when a send fails or
 * its per-try time passes, and completes the query exactly once within its budget. It does
 * not cache or merge questions (resolve.c does), and does not build client responses
 * (vd_forward_relay, forward_relay.c).
 *
 * Lifetime of a query (struct fwd_query): it is completed once (its callback run) by whichever
 * comes first — a usable answer, its budget, running out of servers, or vd_forwarder_close —
 * and freed once every send (struct attempt: one query handed to c-ares, whose callback c-ares
 * fires exactly once) has ended and its timer handle has been closed. Sends may outlive the
 * completion: a late answer still feeds server health. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "forward_int.h"
#include "vpcdns/counters.h"
#include "vpcdns/log.h"
#include "vpcdns/qlog.h"
#include "vpcdns/stats.h"

#define DEFAULT_BUDGET_MS 2000u
#define DEFAULT_PORTS 16u
#define MAX_PORTS 256u
#define OPT_RR_LEN 11
#define QUERY_MAX (VD_HEADER_LEN + VD_NAME_MAX + 4 + OPT_RR_LEN)
#define QUERY_FREELIST_MAX 64
#define EXPLORE_ONE_IN 64u /* one first send in this many ignores RTTs (alive servers only) */

static void on_query_timer(uv_timer_t *t);

/* ---- servers ------------------------------------------------------------------------- */

static uint64_t now_ms(const vd_forwarder *f)
{
        return uv_now(f->loop);
}

/* ---- health changes, for the operator log -----------------------------------------------------
 */

/* s went down (this forwarder avoids it now) or came back: logged once for the process when the
 * forwarders share a budget (every worker's forwarder does), else once per forwarder. */
static void log_health_change(struct server *s, bool down, const char *reason)
{
        if (s->shared != NULL && !(down ? vd_upstream_budget_report_down(s->shared)
                                        : vd_upstream_budget_report_up(s->shared)))
                return;
        char text[64];
        vd_addr_format(&s->addr, text, sizeof(text));
        if (down)
                vd_log(VD_LOG_WARN, "upstream_down", "server=%s reason=%s", text, reason);
        else
                vd_log(VD_LOG_INFO, "upstream_up", "server=%s", text);
}

/* Publishes s's up/down level for the metrics thread after its health changed. */
static void note_health(struct server *s)
{
        vd_count_set(&s->stats.up, vd_fwd_health_failing(&s->health) ? 0 : 1);
}

/* vd_fwd_health_failed, and the log line when that made the server dead. */
static void health_failed(struct server *s, bool was_probe, uint64_t now, const char *reason)
{
        bool was_dead = s->health.dead;
        vd_fwd_health_failed(&s->health, was_probe, now);
        note_health(s);
        if (!was_dead && s->health.dead)
                log_health_change(s, true, reason);
}

/* vd_fwd_health_answered, and the log line when that brought a dead server back. */
static void health_answered(struct server *s, uint64_t rtt_us)
{
        bool was_dead = s->health.dead;
        vd_fwd_health_answered(&s->health, rtt_us);
        note_health(s);
        if (was_dead)
                log_health_change(s, false, NULL);
}

/* A c-ares status as a reason word for upstream_down. */
static const char *failure_reason(int status)
{
        switch (status) {
        case ARES_ETIMEOUT:
                return "timeout";
        case ARES_ECONNREFUSED:
                return "refused";
        default:
                return "error";
        }
}

/* The server's budget: the process-wide one when the forwarder was given it, else its own. */
static bool server_has_token(vd_forwarder *f, struct server *s, uint64_t now)
{
        if (s->shared != NULL)
                return vd_upstream_budget_has(s->shared, now);
        return vd_fwd_bucket_has(&s->bucket, f->max_qps, now);
}

static bool server_take_token(vd_forwarder *f, struct server *s, uint64_t now)
{
        if (s->shared != NULL)
                return vd_upstream_budget_take(s->shared, now);
        return vd_fwd_bucket_take(&s->bucket, f->max_qps, now);
}

/* The position in q->list of the server for the next send, or -1 (see vd_fwd_choose).
 * untried_only: only servers this query has not used yet; exclude: a bit per position not to
 * use. */
static int pick_server(vd_forwarder *f, const struct fwd_query *q, uint64_t now, bool untried_only,
                       unsigned exclude, bool explore)
{
        const vd_fwd_server_list *l = q->list;
        vd_fwd_candidate c[VD_MAX_UPSTREAM];
        for (size_t i = 0; i < l->n; i++) {
                struct server *s = &f->servers[l->idx[i]];
                c[i].health = &s->health;
                c[i].tries = q->tries[i];
                c[i].usable = !(untried_only && q->tries[i] > 0) && !((exclude >> i) & 1u) &&
                              server_has_token(f, s, now);
        }
        uint16_t r = 0;
        (void)vd_fwd_random_u16(&f->random, &r);
        return vd_fwd_choose(c, l->n, explore, r);
}

/* ---- queries ------------------------------------------------------------------------- */

static void query_unlink(struct fwd_query *q)
{
        vd_forwarder *f = q->f;
        if (q->prev != NULL)
                q->prev->next = q->next;
        else
                f->queries = q->next;
        if (q->next != NULL)
                q->next->prev = q->prev;
}

static void query_free(struct fwd_query *q)
{
        vd_forwarder *f = q->f;
        if (f->n_free < QUERY_FREELIST_MAX && !f->closing) {
                q->next = f->freelist;
                f->freelist = q;
                f->n_free++;
        } else {
                free(q);
        }
}

static void maybe_release(struct fwd_query *q)
{
        if (q->answered && q->timer_closed && q->pending == 0) {
                query_unlink(q);
                query_free(q);
        }
}

static void timer_closed(uv_handle_t *h)
{
        struct fwd_query *q = h->data;
        vd_forwarder *f = q->f;
        q->timer_closed = true;
        maybe_release(q);
        vd_fwd_handle_closed(f);
}

static void close_timer(struct fwd_query *q)
{
        if (!uv_is_closing((uv_handle_t *)&q->timer))
                uv_close((uv_handle_t *)&q->timer, timer_closed);
}

/* Runs the query's callback once: status 0 with the answer (client's question case), or a
 * negative code. */
static void complete(struct fwd_query *q, int status, const uint8_t *answer, size_t len)
{
        vd_forwarder *f = q->f;
        if (q->answered)
                return;
        q->answered = true;
        close_timer(q);
        if (status != 0 && status != -ECANCELED)
                vd_count_add(&f->counters.failures, 1);
        q->done(q->arg, status, status == 0 ? answer : NULL, status == 0 ? len : 0);
}

/* Upstream query: fresh ID, RD, the client's CD (RFC 4035 §3.2.2: a client that validates
 * itself asks for unvalidated data), the question as sent upstream, our OPT with its DO. */
static size_t build_upstream_query(const struct fwd_query *q, uint16_t id, uint8_t *buf)
{
        const vd_query_info *qi = &q->qi;
        size_t n = 0;
        vd_wire_put16(buf, id);
        vd_wire_put16(buf + 2, (uint16_t)(VD_FLAG_RD | (qi->flags & VD_FLAG_CD)));
        vd_wire_put16(buf + 4, 1);
        vd_wire_put16(buf + 6, 0);
        vd_wire_put16(buf + 8, 0);
        vd_wire_put16(buf + 10, 1);
        n = VD_HEADER_LEN;
        memcpy(buf + n, q->sent, qi->qname_len);
        n += qi->qname_len;
        vd_wire_put16(buf + n, qi->qtype);
        vd_wire_put16(buf + n + 2, qi->qclass);
        n += 4;
        buf[n] = 0; /* root owner */
        vd_wire_put16(buf + n + 1, VD_TYPE_OPT);
        vd_wire_put16(buf + n + 3, VD_UDP_PAYLOAD);
        vd_wire_put32(buf + n + 5, qi->edns_do ? VD_EDNS_DO : 0u); /* ext rcode 0, version 0 */
        vd_wire_put16(buf + n + 9, 0);
        return n + OPT_RR_LEN;
}

static int ares_to_errno(int status)
{
        return status == ARES_ENOMEM ? -ENOMEM : -EIO;
}

/* The query log's view of upstream traffic: a query as sent, an answer that matched it. */
static void qlog_upstream(vd_forwarder *f, const struct server *s, unsigned kind,
                          const uint8_t *msg, size_t len)
{
        const struct sockaddr *sa = (const struct sockaddr *)&s->addr.ss;
        uint16_t port = sa->sa_family == AF_INET6
                            ? ((const struct sockaddr_in6 *)(const void *)sa)->sin6_port
                            : ((const struct sockaddr_in *)(const void *)sa)->sin_port;
        if (vd_qlog_sampled(f->qlog, msg, len, port))
                vd_qlog_put(f->qlog, kind, false, sa, NULL, msg, len, f->qlog_dropped);
}

/* One send of q to the server at list position pos, on a random channel of that server.
 * Returns 0, or a negative code when nothing was sent (no attempt slot, over budget, no ID,
 * c-ares failed at once). Never runs q's callback. */
static int send_attempt(struct fwd_query *q, size_t pos, bool is_probe, uint64_t now)
{
        vd_forwarder *f = q->f;
        struct server *s = &f->servers[q->list->idx[pos]];
        uint16_t r = 0, id = 0;
        int rc;

        if (q->n_att >= VD_FWD_MAX_ATTEMPTS)
                return -EAGAIN;
        rc = vd_fwd_random_u16(&f->random, &r);
        struct channel *chan = &s->chans[r % s->n_chans];
        if (rc == 0)
                rc = vd_fwd_random_id(&f->random, q->qi.id, vd_fwd_id_in_use, chan, &id);
        if (rc < 0)
                return rc;
        if (!server_take_token(f, s, now)) {
                vd_count_add(&s->stats.budget_refused, 1);
                return -EBUSY;
        }
        struct attempt *a = &q->att[q->n_att];
        memset(a, 0, sizeof(*a));
        a->q = q;
        a->chan = chan;
        a->pos = pos;
        a->id = id;
        a->is_probe = is_probe;
        a->sent_ns = uv_hrtime();
        a->pending = true;
        a->sending = true;
        q->n_att++;
        q->pending++;
        chan->inflight++;
        vd_fwd_chan_link(chan, a);
        q->tries[pos]++;

        uint8_t pkt[QUERY_MAX];
        size_t len = build_upstream_query(q, id, pkt);
        vd_fwd_ares_send(a, pkt, len);
        a->sending = false;
        if (a->sync_failed) /* the callback already undid the counts */
                return ares_to_errno(a->sync_status);
        vd_count_add(&f->counters.upstream_queries, 1);
        vd_count_add(&s->stats.queries, 1);
        if (f->qlog != NULL)
                qlog_upstream(f, s, VD_QLOG_FWD_QUERY, pkt, len);
        if (is_probe)
                vd_fwd_health_probe_sent(&s->health, now);
        return 0;
}

static void arm_query_timer(struct fwd_query *q, uint64_t now)
{
        uint64_t at = q->deadline_ms;
        if (q->cur >= 0 && q->try_deadline_ms < at)
                at = q->try_deadline_ms;
        uv_timer_start(&q->timer, on_query_timer, at > now ? at - now : 0, 0);
}

/* Sends q to the next server (see pick_server). Returns true when a send went out. */
static bool send_next(struct fwd_query *q, uint64_t now, bool untried_only)
{
        vd_forwarder *f = q->f;
        int prev = q->cur;
        size_t prev_pos = prev >= 0 ? q->att[prev].pos : SIZE_MAX;
        unsigned exclude = 0;
        while (q->n_att < VD_FWD_MAX_ATTEMPTS) {
                int pos = pick_server(f, q, now, untried_only, exclude, false);
                if (pos < 0)
                        return false;
                int rc = send_attempt(q, (size_t)pos, false, now);
                if (rc < 0) {
                        /* Out of memory, IDs or attempt slots: stop. Otherwise (c-ares could
                         * not send, e.g. no socket; or the budget ran out) try another. */
                        if (rc == -ENOMEM || rc == -EAGAIN)
                                return false;
                        exclude |= 1u << pos;
                        continue;
                }
                if (prev >= 0 && (size_t)pos != prev_pos)
                        vd_count_add(&f->counters.failovers, 1);
                q->cur = (int)q->n_att - 1;
                uint64_t until = now + vd_fwd_health_try_ms(&f->servers[q->list->idx[pos]].health);
                q->try_deadline_ms = until < q->deadline_ms ? until : q->deadline_ms;
                return true;
        }
        return false;
}

/* Nothing in flight and nothing more to send: the query fails now. */
static void fail_if_exhausted(struct fwd_query *q, uint64_t now)
{
        if (!q->answered && q->pending == 0)
                complete(q, now >= q->deadline_ms ? -ETIMEDOUT : -EIO, NULL, 0);
}

static void on_query_timer(uv_timer_t *t)
{
        struct fwd_query *q = t->data;
        vd_forwarder *f = q->f;
        uint64_t now = now_ms(f);
        if (q->answered)
                return;
        vd_fwd_enter(f);
        if (now >= q->deadline_ms) {
                complete(q, -ETIMEDOUT, NULL, 0);
                goto out;
        }
        if (q->cur >= 0 && now >= q->try_deadline_ms) {
                struct attempt *a = &q->att[q->cur];
                if (a->pending && !a->timeout_counted) {
                        a->timeout_counted = true;
                        vd_count_add(&f->counters.timeouts, 1);
                        vd_count_add(&a->chan->srv->stats.timeouts, 1);
                        health_failed(a->chan->srv, false, now, "timeout");
                }
                if (!send_next(q, now, false)) {
                        q->cur = -1; /* wait for what is in flight, up to the budget */
                        fail_if_exhausted(q, now);
                }
        }
        if (!q->answered)
                arm_query_timer(q, now);
out:
        vd_fwd_leave(f);
}

bool vd_fwd_answer_matches(const struct fwd_query *q, const uint8_t *a, size_t len)
{
        uint8_t name[VD_NAME_MAX];
        size_t name_len, pos = VD_HEADER_LEN;
        const vd_query_info *qi = &q->qi;

        if (len < VD_HEADER_LEN || !(vd_wire_get16(a + 2) & VD_FLAG_QR) ||
            vd_wire_get16(a + 4) != 1)
                return false;
        if (vd_wire_read_name(a, len, &pos, name, &name_len, false) != 0 ||
            name_len != qi->qname_len || pos != VD_HEADER_LEN + name_len || pos + 4 > len ||
            vd_wire_get16(a + pos) != qi->qtype || vd_wire_get16(a + pos + 2) != qi->qclass)
                return false;
        if (q->f->use_0x20)
                return memcmp(name, q->sent, name_len) == 0;
        vd_name_lower(name, name_len);
        return memcmp(name, qi->qname_lower, name_len) == 0;
}

void vd_fwd_on_answer(struct attempt *a, int status, const uint8_t *abuf, size_t len)
{
        struct fwd_query *q = a->q;
        vd_forwarder *f = q->f;
        struct server *s = a->chan->srv;
        uint64_t now = now_ms(f);

        a->pending = false;
        q->pending--;
        a->chan->inflight--;
        vd_fwd_chan_unlink(a->chan, a);
        if (a->sending) {
                /* Synchronous failure inside the send: undo it. */
                a->sync_failed = true;
                a->sync_status = status;
                q->n_att--;
                return;
        }
        if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION) {
                if (a->is_probe)
                        vd_fwd_health_probe_gone(&s->health);
                goto out;
        }
        if (status != ARES_SUCCESS || abuf == NULL || len == 0) {
                if (status == ARES_ETIMEOUT && !a->timeout_counted) {
                        vd_count_add(&f->counters.timeouts, 1);
                        vd_count_add(&s->stats.timeouts, 1);
                } else if (status != ARES_ETIMEOUT) {
                        vd_count_add(&s->stats.failures, 1);
                }
                if (!a->timeout_counted)
                        health_failed(s, a->is_probe, now, failure_reason(status));
                a->timeout_counted = true;
                /* The send being watched ended: move on at once. An error rules its server
                 * out for this query; a timeout does not (c-ares 1.32 and later end a send
                 * after 5 times the server's average RTT, at least 250 ms, which can come
                 * before our per-try deadline). */
                if (!q->answered && q->cur == (int)(a - q->att) &&
                    !send_next(q, now, status != ARES_ETIMEOUT))
                        q->cur = -1;
                if (!q->answered && q->cur >= 0)
                        arm_query_timer(q, now);
                fail_if_exhausted(q, now);
                goto out;
        }
        if (!vd_fwd_answer_matches(q, abuf, len)) {
                /* spoofed, or an upstream that broke 0x20 */
                vd_count_add(&f->counters.mismatches, 1);
                vd_count_add(&s->stats.mismatches, 1);
                if (a->is_probe)
                        health_failed(s, true, now, "mismatch"); /* no proof of life */
                if (!q->answered) {
                        if (send_next(q, now, false))
                                arm_query_timer(q, now);
                        else if (q->cur == (int)(a - q->att))
                                q->cur = -1;
                        fail_if_exhausted(q, now);
                }
                goto out;
        }
        uint64_t rtt_ns = uv_hrtime() - a->sent_ns;
        health_answered(s, rtt_ns / 1000u);
        if (f->stats != NULL)
                vd_stats_upstream_rtt(f->stats, (unsigned)(s - f->servers), rtt_ns);
        if (f->qlog != NULL)
                qlog_upstream(f, s, VD_QLOG_FWD_RESPONSE, abuf, len);
        unsigned rcode = abuf[3] & 0x0Fu;
        if (!q->answered && (rcode == VD_RCODE_SERVFAIL || rcode == VD_RCODE_REFUSED)) {
                /* Another server may know. When none is left, a SERVFAIL is the answer; a
                 * REFUSED never is: a recursive service answers, says the name does not
                 * exist, or fails (RFC 1034 §4.3.1), so the query fails and the caller
                 * serves stale data or SERVFAIL. */
                if (send_next(q, now, true)) {
                        arm_query_timer(q, now);
                        goto out;
                }
                if (rcode == VD_RCODE_REFUSED) {
                        complete(q, -ECONNREFUSED, NULL, 0);
                        goto out;
                }
        }
        if (!q->answered) {
                /* Callers get the client's spelling of the question (same length, uncompressed). */
                memcpy(f->answer, abuf, len);
                memcpy(f->answer + VD_HEADER_LEN, q->qi.qname, q->qi.qname_len);
                complete(q, 0, f->answer, len);
        }
out:
        maybe_release(q);
}

void vd_forwarder_set_stats(vd_forwarder *f, struct vd_stats *stats)
{
        f->stats = stats;
        for (size_t i = 0; i < f->n_servers; i++) {
                char text[VD_STATS_LABEL_MAX];
                vd_addr_format(&f->servers[i].addr, text, sizeof(text));
                vd_stats_set_upstream(stats, (unsigned)i, text);
        }
}

static struct fwd_query *query_alloc(vd_forwarder *f)
{
        struct fwd_query *q = f->freelist;
        if (q != NULL) {
                f->freelist = q->next;
                f->n_free--;
                return q;
        }
        return malloc(sizeof(*q));
}

/* Starts q's first send and a probe to each dead server of its list that is due one. */
int vd_forwarder_resolve(vd_forwarder *f, const vd_query_info *qi, vd_upstream_fn done, void *arg)
{
        if (f == NULL || qi == NULL || done == NULL)
                return -EINVAL;
        if (f->closing)
                return -ESHUTDOWN;
        if (!qi->question_ok || qi->qname == NULL || qi->qname_len == 0)
                return -EINVAL;
        const vd_fwd_server_list *list = vd_fwd_routes_servers_for(&f->routes, qi);
        if (list == NULL)
                return -ENOENT;

        struct fwd_query *q = query_alloc(f);
        if (q == NULL)
                return -ENOMEM;
        memset(q, 0, offsetof(struct fwd_query, qi));
        q->f = f;
        q->done = done;
        q->arg = arg;
        q->list = list;
        q->cur = -1;
        q->qi = *qi;
        memcpy(q->qname, qi->qname, qi->qname_len);
        q->qi.qname = q->qname;
        int rc = 0;
        if (f->use_0x20)
                rc = vd_fwd_random_case(&f->random, qi->qname_lower, qi->qname_len, q->sent);
        else
                memcpy(q->sent, qi->qname, qi->qname_len);
        if (rc < 0) {
                query_free(q);
                return rc;
        }

        uv_update_time(f->loop); /* the budget counts from now, not from the loop's last tick */
        uint64_t now = now_ms(f);
        q->deadline_ms = now + f->budget_ms;
        vd_fwd_enter(f);
        uint16_t dice = 1;
        (void)vd_fwd_random_u16(&f->random, &dice);
        int pos = pick_server(f, q, now, false, 0, dice % EXPLORE_ONE_IN == 0);
        if (pos < 0) {
                vd_count_add(&f->counters.budget_refused, 1);
                rc = -EBUSY;
        } else {
                rc = send_attempt(q, (size_t)pos, false, now);
                if (rc == -EBUSY)
                        vd_count_add(&f->counters.budget_refused, 1);
        }
        if (rc < 0) {
                query_free(q);
                if (rc == -EIO)
                        rc = -EAGAIN;
                goto out;
        }
        q->cur = 0;
        uint64_t until = now + vd_fwd_health_try_ms(&f->servers[list->idx[pos]].health);
        q->try_deadline_ms = until < q->deadline_ms ? until : q->deadline_ms;

        /* From here on the query is on the list and owns a timer handle. */
        q->next = f->queries;
        if (f->queries != NULL)
                f->queries->prev = q;
        f->queries = q;
        uv_timer_init(f->loop, &q->timer);
        q->timer.data = q;
        f->open_handles++;
        arm_query_timer(q, now);

        for (size_t i = 0; i < list->n; i++) {
                struct server *s = &f->servers[list->idx[i]];
                if ((int)i != pos && vd_fwd_health_probe_due(&s->health, now))
                        (void)send_attempt(q, i, true, now);
        }
out:
        vd_fwd_leave(f);
        return rc;
}

bool vd_forwarder_rule_covers(const vd_forwarder *f, const vd_query_info *qi)
{
        if (f == NULL || qi == NULL || !qi->question_ok)
                return false;
        return vd_fwd_routes_rule_covers(&f->routes, qi);
}

size_t vd_forwarder_n_servers(const vd_forwarder *f)
{
        return f->n_servers;
}

void vd_forwarder_server_stats(const vd_forwarder *f, size_t i, vd_forward_server_stats *out)
{
        const vd_forward_server_stats *s = &f->servers[i].stats;
        out->addr = f->servers[i].addr; /* set before the workers start, never changed */
        out->queries = vd_count_read(&s->queries);
        out->timeouts = vd_count_read(&s->timeouts);
        out->failures = vd_count_read(&s->failures);
        out->mismatches = vd_count_read(&s->mismatches);
        out->budget_refused = vd_count_read(&s->budget_refused);
        out->up = vd_count_read(&s->up);
}

/* Any thread while f is open: every counter has one writer, the forwarder's thread, and
 * servers_down comes from the up levels that note_health publishes. */
void vd_forwarder_counters_get(const vd_forwarder *f, vd_forward_counters *out)
{
        out->upstream_queries = vd_count_read(&f->counters.upstream_queries);
        out->timeouts = vd_count_read(&f->counters.timeouts);
        out->failures = vd_count_read(&f->counters.failures);
        out->budget_refused = vd_count_read(&f->counters.budget_refused);
        out->mismatches = vd_count_read(&f->counters.mismatches);
        out->failovers = vd_count_read(&f->counters.failovers);
        out->servers_down = 0;
        for (size_t i = 0; i < f->n_servers; i++)
                if (vd_count_read(&f->servers[i].stats.up) == 0)
                        out->servers_down++;
}

/* ---- lifetime ------------------------------------------------------------------------ */

static void free_forwarder(vd_forwarder *f)
{
        while (f->freelist != NULL) {
                struct fwd_query *q = f->freelist;
                f->freelist = q->next;
                free(q);
        }
        for (size_t i = 0; i < f->n_servers; i++)
                free(f->servers[i].chans);
        free(f->servers);
        vd_fwd_routes_free(&f->routes);
        free(f);
}

void vd_fwd_handle_closed(vd_forwarder *f)
{
        VD_CHECK(f->open_handles > 0);
        f->open_handles--;
        if (f->closing && !f->channels_live && f->open_handles == 0) {
                VD_CHECK(f->queries == NULL);
                free_forwarder(f);
        }
}

int vd_forwarder_new(uv_loop_t *loop, const vd_forward_options *opt, vd_forwarder **out,
                     vd_error *err)
{
        vd_forwarder *f = NULL;
        int rc = 0;

        *out = NULL;
        if (loop == NULL || opt == NULL || (opt->n_servers > 0 && opt->servers == NULL) ||
            (opt->n_rules > 0 && opt->rules == NULL))
                return vd_error_set(err, "forwarder: invalid options");
        rc = vd_fwd_ares_library(err);
        if (rc < 0)
                return rc;

        f = calloc(1, sizeof(*f));
        if (f == NULL) {
                vd_error_set(err, "forwarder: out of memory");
                return -ENOMEM;
        }
        f->qlog = opt->qlog;
        f->qlog_dropped = opt->qlog_dropped;
        rc = vd_fwd_routes_build(&f->routes, opt, err);
        if (rc < 0)
                goto out;
        if (f->routes.n_addrs > 0) {
                f->servers = calloc(f->routes.n_addrs, sizeof(*f->servers));
                if (f->servers == NULL) {
                        rc = -ENOMEM;
                        vd_error_set(err, "forwarder: out of memory");
                        goto out;
                }
        }
        f->loop = loop;
        f->budget_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_BUDGET_MS;
        f->max_qps = opt->max_qps;
        f->use_0x20 = opt->use_0x20;
        vd_fwd_random_init(&f->random);
        unsigned ports = opt->ports_per_server ? opt->ports_per_server : DEFAULT_PORTS;
        if (ports > MAX_PORTS)
                ports = MAX_PORTS;

        f->n_servers = f->routes.n_addrs;
        f->channels_live = true;
        for (size_t i = 0; i < f->n_servers; i++) {
                f->servers[i].addr = f->routes.addrs[i];
                vd_fwd_health_init(&f->servers[i].health);
                f->servers[i].stats.up = 1; /* before the workers start: a plain store */
                if (opt->budget == NULL)
                        continue;
                f->servers[i].shared =
                    vd_upstream_budget_slot_for(opt->budget, &f->servers[i].addr);
                if (f->servers[i].shared == NULL) {
                        rc = -ENOMEM;
                        vd_error_set(err, "forwarder: out of memory");
                        goto out;
                }
        }
        for (size_t i = 0; i < f->n_servers; i++) {
                rc = vd_fwd_channels_open(f, &f->servers[i], ports, err);
                if (rc < 0)
                        goto out;
        }
        uv_update_time(loop); /* opening channels takes a while: budgets start from now */
        for (size_t i = 0; i < f->n_servers; i++)
                vd_fwd_bucket_init(&f->servers[i].bucket, f->max_qps, now_ms(f));
        vd_fwd_ares_timer_init(f);
        *out = f;
        f = NULL;
out:
        if (f != NULL) {
                vd_fwd_channels_destroy(f);
                free_forwarder(f);
        }
        return rc;
}

void vd_fwd_finish_close(vd_forwarder *f)
{
        if (f->channels_live) {
                f->depth++;
                vd_fwd_channels_destroy(f);
                f->depth--;
        }
        for (struct fwd_query *q = f->queries; q != NULL; q = q->next)
                close_timer(q);
        vd_fwd_glue_close(f);
}

void vd_forwarder_close(vd_forwarder *f)
{
        if (f == NULL || f->closing)
                return;
        f->closing = true;
        /* Every query still waiting gets its one callback: -ECANCELED. */
        for (struct fwd_query *q = f->queries; q != NULL; q = q->next)
                complete(q, -ECANCELED, NULL, 0);
        if (f->depth > 0)
                f->destroy_deferred = true; /* inside a c-ares call: destroy on return */
        else
                vd_fwd_finish_close(f);
}

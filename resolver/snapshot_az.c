/* snapshot_az.c — the availability zones of a snapshot: the AZ table (every AZ its ENI
 * addresses and subnets name, keyed by AZ ID when known, else by name), the AZ of each ENI
 * address, the subnet table that maps a client address to its AZ (longest prefix wins), and
 * finding a client's AZ. Compiling runs at load time and may allocate; the lookups run on the
 * answer path and must not allocate or lock. Must not: answer queries (snapshot_answer.c
 * orders the addresses) or read any file. */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "snapshot_int.h"
#include "vpcdns/snapshot.h"

void vd_snap_free_azs(vd_snapshot *s)
{
        free(s->eni_az);
        free(s->azs);
        free(s->subnets[0]);
        free(s->subnets[1]);
}

/* The index of the AZ (name, id) in s->azs, added when new (the array has room for it). Two
 * AZs are the same when their IDs are; without an ID, when their names are. An AZ known by
 * both is found by a name-only one with that name, and the other way round. */
static uint16_t az_index(vd_snapshot *s, const char *name, const char *id)
{
        if (name[0] == '\0' && id[0] == '\0')
                return NO_AZ;
        for (size_t i = 0; i < s->n_azs; i++) {
                struct saz *z = &s->azs[i];
                if (id[0] != '\0' && z->id[0] != '\0') {
                        if (strcasecmp(z->id, id) == 0)
                                return (uint16_t)i;
                        continue;
                }
                if (name[0] != '\0' && z->name[0] != '\0' && strcasecmp(z->name, name) == 0) {
                        if (z->id[0] == '\0' && id[0] != '\0')
                                memcpy(z->id, id, sizeof(z->id));
                        return (uint16_t)i;
                }
        }
        struct saz *z = &s->azs[s->n_azs];
        memcpy(z->name, name, sizeof(z->name));
        memcpy(z->id, id, sizeof(z->id));
        return (uint16_t)s->n_azs++;
}

static int subnet_order(const void *a, const void *b)
{
        const struct ssubnet *x = a, *y = b;
        if (x->len != y->len)
                return x->len > y->len ? -1 : 1;
        int c = memcmp(x->addr, y->addr, sizeof(x->addr));
        if (c != 0)
                return c;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int vd_snap_compile_azs(const vd_builder *b, vd_snapshot *s)
{
        size_t most = b->n_enis + b->n_subnets;
        s->azs = calloc(most ? most : 1, sizeof(*s->azs));
        s->eni_az = calloc(b->n_enis ? b->n_enis : 1, sizeof(*s->eni_az));
        s->subnets[0] = calloc(b->n_subnets ? b->n_subnets : 1, sizeof(struct ssubnet));
        s->subnets[1] = calloc(b->n_subnets ? b->n_subnets : 1, sizeof(struct ssubnet));
        if (s->azs == NULL || s->eni_az == NULL || s->subnets[0] == NULL || s->subnets[1] == NULL)
                return -ENOMEM;
        /* Subnets first: they pair names with IDs, so an ENI known by name only finds the ID. */
        for (size_t i = 0; i < b->n_subnets; i++) {
                const struct bsubnet *n = &b->subnets[i];
                int f = n->family == AF_INET ? 0 : 1;
                struct ssubnet *t = &s->subnets[f][s->n_subnets[f]++];
                memcpy(t->addr, n->addr, sizeof(t->addr));
                t->len = n->len;
                t->seq = (uint32_t)i;
                t->az = az_index(s, n->az_name, n->az_id);
        }
        for (size_t i = 0; i < b->n_enis; i++)
                s->eni_az[i] = az_index(s, b->enis[i].az_name, b->enis[i].az_id);
        for (int f = 0; f < 2; f++) {
                qsort(s->subnets[f], s->n_subnets[f], sizeof(struct ssubnet), subnet_order);
                /* The same prefix twice: the first given (sorted first, by seq). */
                size_t kept = 0;
                for (size_t i = 0; i < s->n_subnets[f]; i++) {
                        const struct ssubnet *prev = &s->subnets[f][kept - (kept > 0)];
                        const struct ssubnet *cur = &s->subnets[f][i];
                        if (kept > 0 && prev->len == cur->len &&
                            memcmp(prev->addr, cur->addr, sizeof(cur->addr)) == 0)
                                continue;
                        s->subnets[f][kept++] = s->subnets[f][i];
                }
                s->n_subnets[f] = kept;
        }
        return 0;
}

/* The client's address bytes: 4 for IPv4 (and IPv4-mapped IPv6), 16 for IPv6; 0 otherwise. */
static size_t client_bytes(const struct sockaddr *sa, uint8_t *out)
{
        if (sa == NULL)
                return 0;
        if (sa->sa_family == AF_INET) {
                memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
                return 4;
        }
        if (sa->sa_family != AF_INET6)
                return 0;
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
                memcpy(out, a + 12, 4);
                return 4;
        }
        memcpy(out, a, 16);
        return 16;
}

/* Longest prefix: for each prefix length (longest first), a binary search of its run. */
static int subnet_az(const vd_snapshot *s, const struct sockaddr *sa)
{
        uint8_t addr[16] = {0}, masked[16];
        size_t alen = client_bytes(sa, addr);
        if (alen == 0)
                return -1;
        const struct ssubnet *t = s->subnets[alen == 4 ? 0 : 1];
        size_t n = s->n_subnets[alen == 4 ? 0 : 1];
        for (size_t run = 0; run < n;) {
                uint8_t len = t[run].len;
                size_t end = run;
                while (end < n && t[end].len == len)
                        end++;
                memset(masked, 0, sizeof(masked));
                memcpy(masked, addr, len / 8);
                if (len % 8)
                        masked[len / 8] = (uint8_t)(addr[len / 8] & (0xFF00u >> (len % 8)));
                size_t lo = run, hi = end;
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        int c = memcmp(t[mid].addr, masked, sizeof(masked));
                        if (c == 0)
                                return t[mid].az == NO_AZ ? -1 : t[mid].az;
                        if (c < 0)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                run = end;
        }
        return -1;
}

int vd_snapshot_client_az(const vd_snapshot *s, const vd_answer_client *c)
{
        if (c == NULL)
                return -1;
        if (c->az != NULL && c->az[0] != '\0') {
                for (size_t i = 0; i < s->n_azs; i++)
                        if (s->azs[i].id[0] != '\0' && strcasecmp(s->azs[i].id, c->az) == 0)
                                return (int)i;
                for (size_t i = 0; i < s->n_azs; i++)
                        if (s->azs[i].name[0] != '\0' && strcasecmp(s->azs[i].name, c->az) == 0)
                                return (int)i;
                return -1;
        }
        return subnet_az(s, c->addr);
}

size_t vd_snapshot_az_count(const vd_snapshot *s)
{
        return s->n_azs;
}

const char *vd_snapshot_az_name(const vd_snapshot *s, size_t i)
{
        VD_CHECK(i < s->n_azs);
        return s->azs[i].name;
}

const char *vd_snapshot_az_id(const vd_snapshot *s, size_t i)
{
        VD_CHECK(i < s->n_azs);
        return s->azs[i].id;
}

int vd_snapshot_eni_az(const vd_snapshot *s, size_t i)
{
        VD_CHECK(i < s->n_enis);
        return s->eni_az[i] == NO_AZ ? -1 : s->eni_az[i];
}

size_t vd_snapshot_subnet_count(const vd_snapshot *s)
{
        return s->n_subnets[0] + s->n_subnets[1];
}

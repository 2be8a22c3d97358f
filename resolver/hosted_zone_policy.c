/* hosted_zone_policy.c — which record sets of a routing policy (the record sets that share a
 * name and type, each with a SetIdentifier) a hosted zone answers, by the fixed rule of
 * vpcdns/hosted_zone.h (weighted, multivalue and failover ones are all kept: the snapshot
 * chooses among them per answer), and a --check note for every choice. Must not: parse JSON or feed
 * the builder. Load time only. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hosted_zone_int.h"
#include "vpcdns/wire.h"

static const char *policy_name(hz_policy p)
{
        switch (p) {
        case POLICY_WEIGHTED:
                return "weighted";
        case POLICY_LATENCY:
                return "latency";
        case POLICY_FAILOVER:
                return "failover";
        case POLICY_GEOLOCATION:
                return "geolocation";
        case POLICY_GEOPROXIMITY:
                return "geoproximity";
        case POLICY_MULTIVALUE:
                return "multivalue answer";
        case POLICY_CIDR:
                return "IP-based (CIDR)";
        case POLICY_NONE:
        default:
                return "simple";
        }
}

static bool same_group(const hz_set *a, const hz_set *b)
{
        size_t la = vd_name_len(a->owner, VD_NAME_MAX);
        return b->set_id != NULL && a->type == b->type &&
               la == vd_name_len(b->owner, VD_NAME_MAX) && memcmp(a->owner, b->owner, la) == 0;
}

/* Appends "'id' (detail)" of each member with answered == want to out. */
static void list_members(const hz_set *sets, size_t n, size_t first, bool want, char *out,
                         size_t cap)
{
        size_t used = 0;
        out[0] = '\0';
        for (size_t i = first; i < n && used + 1 < cap; i++) {
                if (!same_group(&sets[first], &sets[i]) || sets[i].answered != want)
                        continue;
                int w = snprintf(out + used, cap - used, "%s'%s'%s%s%s", used ? ", " : "",
                                 sets[i].set_id, sets[i].detail ? " (" : "",
                                 sets[i].detail ? sets[i].detail : "", sets[i].detail ? ")" : "");
                if (w < 0)
                        break;
                used += (size_t)w;
                if (used >= cap)
                        used = cap - 1;
        }
}

/* Decides one group: the record sets from first on with its name and type. */
static int choose_group(const char *file, hz_set *sets, size_t n, size_t first, const char *region,
                        vd_hosted_zone_summary *sum, vd_error *err)
{
        hz_set *g = &sets[first];
        size_t count = 0, pick = SIZE_MAX;
        for (size_t i = first; i < n; i++) {
                if (!same_group(g, &sets[i]))
                        continue;
                if (sets[i].policy != g->policy)
                        return vd_error_set(err,
                                            "%s: %s: a %s record set beside %s ones (%s); expected "
                                            "one routing policy per name and type",
                                            file, sets[i].label, policy_name(sets[i].policy),
                                            policy_name(g->policy), g->where);
                sets[i].grouped = true;
                sets[i].answered = false;
                count++;
                switch (g->policy) {
                case POLICY_LATENCY:
                        if (pick == SIZE_MAX && region[0] != '\0' && sets[i].detail != NULL &&
                            strcmp(sets[i].detail, region) == 0)
                                pick = i;
                        break;
                case POLICY_GEOLOCATION:
                case POLICY_CIDR:
                        if (pick == SIZE_MAX && sets[i].detail != NULL &&
                            strcmp(sets[i].detail, "*") == 0)
                                pick = i;
                        break;
                case POLICY_WEIGHTED:
                case POLICY_MULTIVALUE:
                case POLICY_FAILOVER:
                        sets[i].answered = true; /* chosen per answer */
                        break;
                default:
                        break;
                }
        }
        const char *how = "";
        if (g->policy == POLICY_LATENCY && pick == SIZE_MAX) {
                pick = first;
                how = region[0] ? " (no record set for the snapshot's region: the first)"
                                : " (the snapshot has no region: the first)";
        }
        if (pick != SIZE_MAX)
                sets[pick].answered = true;

        char yes[1024], no[1024];
        list_members(sets, n, first, true, yes, sizeof(yes));
        list_members(sets, n, first, false, no, sizeof(no));
        const char *rule, *applied = "";
        switch (g->policy) {
        case POLICY_WEIGHTED:
                rule = "one record set per answer, chosen by Weight, from";
                break;
        case POLICY_MULTIVALUE:
                rule = "up to eight record sets per answer, at random, those with all ENI "
                       "addresses down left out, from";
                break;
        case POLICY_FAILOVER:
                rule = "the PRIMARY, or the SECONDARY while the PRIMARY is an alias with "
                       "EvaluateTargetHealth whose ENI addresses are all down, from";
                break;
        case POLICY_LATENCY:
                rule = "the snapshot's region";
                break;
        case POLICY_GEOLOCATION:
        case POLICY_CIDR:
                applied = " not applied";
                rule = "the default location '*' only";
                break;
        default:
                applied = " not applied";
                rule = "none";
                break;
        }
        vd_hz_note(sum, "  routing policy%s: %s %s %s, %zu record sets; answers %s%s: %s%s%s",
                   applied, g->owner_text, g->type_text, policy_name(g->policy), count, rule, how,
                   yes[0] ? yes : "nothing (no record set matches)",
                   no[0] ? "; not answered: " : "", no);
        return 0;
}

int vd_hz_choose(const char *file, hz_set *sets, size_t n, const char *region,
                 vd_hosted_zone_summary *sum, vd_error *err)
{
        for (size_t i = 0; i < n; i++) {
                if (sets[i].set_id == NULL || sets[i].grouped)
                        continue;
                int rc = choose_group(file, sets, n, i, region, sum, err);
                if (rc != 0)
                        return rc;
        }
        return 0;
}

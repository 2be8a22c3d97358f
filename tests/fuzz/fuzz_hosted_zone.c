/* fuzz_hosted_zone.c — libFuzzer harness for the Route 53 hosted zone loader
 * (vd_hosted_zone_load: JSON, escaped names, values through ldns, routing policies) and the
 * alias resolution of the builder. The input is written to a scratch file made once per
 * process; a zone that loads is compiled, its aliases printed to /dev/null, dumped and asked
 * a few questions. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "vpcdns/hosted_zone.h"
#include "vpcdns/zonefile.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (devnull == NULL) {
                devnull = fopen("/dev/null", "w");
                FUZZ_CHECK(devnull != NULL);
        }
        const char *path = fuzz_write_file("input.json", data, size);

        vd_error err = {{0}};
        vd_hosted_zone_summary sum = {0};
        vd_snapshot *s = NULL;
        vd_builder *b = vd_builder_new();
        FUZZ_CHECK(b != NULL);
        int rc = vd_hosted_zone_load(b, path, &sum, &err);
        if (rc == 0) {
                FUZZ_CHECK(sum.zones == 1 && sum.records > 0); /* at least the SOA */
                rc = vd_builder_finish(b, &s, &err);
        }
        if (rc != 0)
                FUZZ_CHECK(err.msg[0] != '\0');
        vd_hosted_zone_summary_free(&sum);
        vd_builder_free(b);
        if (s != NULL) {
                vd_hosted_zone_check_aliases(s, devnull);
                FUZZ_CHECK(vd_hosted_zone_dump_aliases(s, devnull) == 0);
                FUZZ_CHECK(vd_zonefile_dump(s, devnull) == 0);
                fuzz_answer_snapshot(s, 16);
                vd_snapshot_unref(s);
        }
        return 0;
}

/* fuzz_zonefile.c — libFuzzer harness for the zone-file loader (vd_zonefile_load, through
 * ldns) and the dump printer. The input is written to a scratch file made once per process;
 * a zone that loads is compiled, dumped to /dev/null and asked a few questions. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "vpcdns/zonefile.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (devnull == NULL) {
                devnull = fopen("/dev/null", "w");
                FUZZ_CHECK(devnull != NULL);
        }
        const char *path = fuzz_write_file("input.zone", data, size);

        vd_error err = {{0}};
        size_t records = 0;
        vd_snapshot *s = NULL;
        vd_builder *b = vd_builder_new();
        FUZZ_CHECK(b != NULL);
        int rc = vd_zonefile_load(b, path, &records, &err);
        if (rc == 0) {
                FUZZ_CHECK(records > 0); /* at least the SOA */
                rc = vd_builder_finish(b, &s, &err);
        }
        if (rc != 0)
                FUZZ_CHECK(err.msg[0] != '\0');
        vd_builder_free(b);
        if (s != NULL) {
                FUZZ_CHECK(vd_zonefile_dump(s, devnull) == 0);
                fuzz_answer_snapshot(s, 16);
                vd_snapshot_unref(s);
        }
        return 0;
}

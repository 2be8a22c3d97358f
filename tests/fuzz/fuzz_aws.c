/* fuzz_aws.c — libFuzzer harness for the AWS snapshot loader (vd_aws_load).
 * The input up to its first NUL byte becomes describe-vpc-endpoints.json, the rest
 * describe-network-interfaces.json, both in one scratch directory made once per process.
 * A snapshot that loads is compiled and asked a few questions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "vpcdns/aws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *dir = fuzz_setup();
        const uint8_t *nul = memchr(data, 0, size);
        size_t first = nul != NULL ? (size_t)(nul - data) : size;
        size_t rest_off = nul != NULL ? first + 1 : size;
        fuzz_write_file("describe-vpc-endpoints.json", data, first);
        fuzz_write_file("describe-network-interfaces.json", data + rest_off, size - rest_off);

        vd_error err = {{0}};
        vd_aws_summary sum = {0};
        vd_snapshot *s = NULL;
        vd_builder *b = vd_builder_new();
        FUZZ_CHECK(b != NULL);
        int rc = vd_aws_load(b, dir, &sum, &err);
        if (rc == 0) {
                FUZZ_CHECK(sum.endpoints_served <= sum.endpoints);
                rc = vd_builder_finish(b, &s, &err);
        }
        if (rc != 0)
                FUZZ_CHECK(err.msg[0] != '\0'); /* every failure says why */
        vd_builder_free(b);
        if (s != NULL) {
                vd_snapshot_summary ss;
                vd_snapshot_summarize(s, &ss);
                fuzz_answer_snapshot(s, 16);
                vd_snapshot_unref(s);
        }
        return 0;
}

/* fuzz_config.c — libFuzzer harness for the YAML config reader (vd_config_load_file, through
 * libyaml) and its validation (vd_config_finalize, with a fixed resolv.conf). The input is
 * written to a scratch file made once per process. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "vpcdns/config.h"

#ifndef VD_SOURCE_DIR
#error "build with -DVD_SOURCE_DIR=\"/path/to/repo\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *path = fuzz_write_file("input.yaml", data, size);
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, path, &err);
        if (rc == 0) {
                FUZZ_CHECK(cfg.n_listen <= VD_MAX_LISTEN && cfg.n_upstream <= VD_MAX_UPSTREAM);
                FUZZ_CHECK(cfg.n_snapshots <= VD_MAX_SOURCES && cfg.n_zones <= VD_MAX_SOURCES);
                rc = vd_config_finalize(&cfg, VD_SOURCE_DIR "/tests/data/config/resolv.conf", &err);
        }
        if (rc != 0)
                FUZZ_CHECK(err.msg[0] != '\0');
        vd_config_free(&cfg);
        return 0;
}

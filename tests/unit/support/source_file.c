/* source_file.c — see source_file.h. */
#include "support/source_file.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

char *vd_test_read_source(const char *relative)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", VD_SOURCE_DIR, relative);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "cannot open %s", path);
        cr_assert_eq(fseek(f, 0, SEEK_END), 0);
        long size = ftell(f);
        cr_assert_gt(size, 0);
        rewind(f);
        char *text = malloc((size_t)size + 1);
        cr_assert_not_null(text);
        cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
        fclose(f);
        text[size] = '\0';
        return text;
}

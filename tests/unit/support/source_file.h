/* source_file.h — reading a file of the source tree in a unit test, for the tests that check
 * docs and man pages against the code. A file that cannot be read fails the calling test. */
#ifndef VD_TEST_SOURCE_FILE_H
#define VD_TEST_SOURCE_FILE_H

/* The whole file at VD_SOURCE_DIR/relative, NUL-terminated; freed by the caller. */
char *vd_test_read_source(const char *relative);

#endif

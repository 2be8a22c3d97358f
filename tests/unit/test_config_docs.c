/* test_config_docs.c — the documentation of the settings agrees with the code: every config file
 * key and every flag of the tables in resolver/config_keys.c and resolver/config_cli.c is in
 * docs/configuration.md with its default and range, and nothing else is; the comments of
 * zones/example/vpcdns.yaml give the same defaults and ranges; README's usage names every flag.
 * A failure here means a key or flag was added, removed or changed without its docs. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/source_file.h"
#include "vpcdns/config.h"

#define KEYS_CHAPTER "\n## Config file keys\n"
#define FLAGS_CHAPTER "\n## Command-line flags\n"

TestSuite(config_docs);

/* The text of one "## " chapter (from its heading to the next chapter or the end), copied. */
static char *chapter(const char *doc, const char *heading)
{
        const char *start = strstr(doc, heading);
        cr_assert_not_null(start, "docs/configuration.md has no chapter '%s'", heading + 1);
        start += 1;
        const char *end = strstr(start + 3, "\n## ");
        size_t len = end != NULL ? (size_t)(end - start) + 1 : strlen(start);
        char *out = strndup(start, len);
        cr_assert_not_null(out);
        return out;
}

/* The "### `NAME`..." section of chapter whose first backticked word is name, copied; NULL
 * when there is none. */
static char *section(const char *chap, const char *name)
{
        char heading[96];
        snprintf(heading, sizeof(heading), "\n### `%s`", name);
        const char *start = strstr(chap, heading);
        while (start != NULL && start[strlen(heading)] != '\n' && start[strlen(heading)] != ',')
                start = strstr(start + 1, heading);
        if (start == NULL)
                return NULL;
        start += 1;
        const char *end = strstr(start, "\n### ");
        char *out = strndup(start, end != NULL ? (size_t)(end - start) + 1 : strlen(start));
        cr_assert_not_null(out);
        return out;
}

static bool is_key(const char *name)
{
        return vd_config_key_find(name) != NULL;
}

static bool is_flag(const char *name)
{
        size_t n;
        const vd_config_flag *flags = vd_config_flags(&n);
        for (size_t i = 0; i < n; i++) {
                if (name[0] == '-' && name[1] == '-' && strcmp(name + 2, flags[i].name) == 0)
                        return true;
        }
        return false;
}

/* Every "### `NAME`" heading of chap names something known to known(). */
static void headings_are_known(const char *chap, bool (*known)(const char *), const char *what)
{
        size_t count = 0;
        for (const char *h = strstr(chap, "\n### `"); h != NULL; h = strstr(h + 1, "\n### `")) {
                const char *name = h + strlen("\n### `");
                size_t len = strcspn(name, "`\n");
                char word[96];
                snprintf(word, sizeof(word), "%.*s", (int)len, name);
                cr_assert(known(word),
                          "docs/configuration.md documents %s '%s', which the code does not have",
                          what, word);
                count++;
        }
        cr_assert_gt(count, 0);
}

Test(config_docs, every_key_is_documented_with_its_default_and_range)
{
        char *doc = vd_test_read_source("docs/configuration.md");
        char *chap = chapter(doc, KEYS_CHAPTER);
        size_t n;
        const vd_config_key *keys = vd_config_keys(&n);
        for (size_t i = 0; i < n; i++) {
                const vd_config_key *k = &keys[i];
                char *sec = section(chap, k->name);
                cr_assert_not_null(sec, "docs/configuration.md lacks the key '%s'", k->name);
                char def[128], line[192];
                vd_config_key_default(k, def, sizeof(def));
                snprintf(line, sizeof(line), "\n- Default: %s\n", def);
                cr_assert_not_null(strstr(sec, line), "docs: '%s' lacks the line '%s'", k->name,
                                   line + 1);
                if (k->type == VD_KEY_UINT) {
                        snprintf(line, sizeof(line), "\n- Range: %u to %u\n", k->min, k->max);
                        cr_assert_not_null(strstr(sec, line), "docs: '%s' lacks the line '%s'",
                                           k->name, line + 1);
                } else if (k->cap > 0) {
                        snprintf(line, sizeof(line), "\n- Range: at most %zu ", k->cap);
                        cr_assert_not_null(strstr(sec, line), "docs: '%s' lacks '%s'", k->name,
                                           line + 1);
                }
                snprintf(line, sizeof(line), "\n- Reload: %s\n", k->restart ? "restart" : "live");
                cr_assert_not_null(strstr(sec, line),
                                   "docs: '%s' lacks the line '%s' (the key "
                                   "table's reload flag)",
                                   k->name, line + 1);
                snprintf(line, sizeof(line), "\n- Example: `%s: ", k->name);
                cr_assert_not_null(strstr(sec, line), "docs: '%s' has no example", k->name);
                free(sec);
        }
        headings_are_known(chap, is_key, "the key");
        free(chap);
        free(doc);
}

Test(config_docs, every_flag_is_documented)
{
        char *doc = vd_test_read_source("docs/configuration.md");
        char *chap = chapter(doc, FLAGS_CHAPTER);
        size_t n;
        const vd_config_flag *flags = vd_config_flags(&n);
        for (size_t i = 0; i < n; i++) {
                const vd_config_flag *f = &flags[i];
                char name[64], text[96];
                snprintf(name, sizeof(name), "--%s", f->name);
                char *sec = section(chap, name);
                cr_assert_not_null(sec, "docs/configuration.md lacks the flag '%s'", name);
                const char *heading_end = strchr(sec, '\n');
                if (f->short_name != 0) {
                        snprintf(text, sizeof(text), "`-%c`", f->short_name);
                        const char *at = strstr(sec, text);
                        cr_assert(at != NULL && at < heading_end,
                                  "docs: the heading of %s lacks %s", name, text);
                }
                snprintf(text, sizeof(text), "\n- Argument: %s", f->arg != NULL ? f->arg : "none");
                cr_assert_not_null(strstr(sec, text), "docs: '%s' lacks '%s'", name, text + 1);
                cr_assert_not_null(strstr(sec, "\n- Example: `vpcdns "),
                                   "docs: '%s' has no example", name);
                free(sec);
        }
        headings_are_known(chap, is_flag, "the flag");
        free(chap);
        free(doc);
}

Test(config_docs, readme_usage_names_every_flag)
{
        char *readme = vd_test_read_source("README.md");
        const char *usage = strstr(readme, "\n## Usage\n");
        cr_assert_not_null(usage);
        const char *open = strstr(usage, "\n```\n");
        cr_assert_not_null(open);
        const char *close = strstr(open + 5, "\n```\n");
        cr_assert_not_null(close);
        char *block = strndup(open, (size_t)(close - open));
        size_t n;
        const vd_config_flag *flags = vd_config_flags(&n);
        for (size_t i = 0; i < n; i++) {
                char text[64];
                snprintf(text, sizeof(text), "--%s", flags[i].name);
                cr_assert_not_null(strstr(block, text), "README's usage lacks %s", text);
                if (flags[i].short_name != 0) {
                        snprintf(text, sizeof(text), "-%c|", flags[i].short_name);
                        cr_assert_not_null(strstr(block, text), "README's usage lacks %s", text);
                }
        }
        free(block);
        free(readme);
}

/* ---- zones/example/vpcdns.yaml ------------------------------------------------------------- */

/* The comment block that documents the key whose line ("key:" or "# key:") starts at line: the
 * comment lines above it, past other key lines of the same group, without their "#", joined
 * by single spaces and lower-cased. */
static void comment_block(const char *text, const char *line, char *out, size_t cap)
{
        const char *starts[256];
        size_t n = 0;
        const char *p = line;
        bool seen_comment = false;
        while (p > text && n < 256) {
                const char *prev = p - 1; /* the '\n' ending the line above */
                while (prev > text && prev[-1] != '\n')
                        prev--;
                size_t len = (size_t)(p - 1 - prev);
                if (len == 0)
                        break; /* a blank line ends the block */
                if (prev[0] != '#') {
                        if (seen_comment)
                                break;
                        p = prev; /* a sibling key of the same comment */
                        continue;
                }
                seen_comment = true;
                starts[n++] = prev;
                p = prev;
        }
        size_t used = 0;
        out[0] = '\0';
        for (size_t i = n; i-- > 0;) {
                const char *s = starts[i] + 1;
                while (*s == ' ')
                        s++;
                size_t len = strcspn(s, "\n");
                for (size_t j = 0; j < len && used + 2 < cap; j++)
                        out[used++] = (char)tolower((unsigned char)s[j]);
                if (used + 2 < cap)
                        out[used++] = ' ';
                out[used] = '\0';
        }
}

/* The start of the line documenting name, "name:" or "# name:". */
static const char *key_line(const char *text, const char *name)
{
        char needle[96];
        for (int commented = 0; commented < 2; commented++) {
                snprintf(needle, sizeof(needle), "\n%s%s:", commented ? "# " : "", name);
                const char *at = strstr(text, needle);
                if (at != NULL)
                        return at + 1;
        }
        return NULL;
}

/* "default 10000", "default: 10000" or "10000 (default)" in block (lower case). */
static bool says_default(const char *block, const char *def)
{
        char lower[128], text[160];
        size_t i;
        for (i = 0; def[i] != '\0' && i + 1 < sizeof(lower); i++)
                lower[i] = (char)tolower((unsigned char)def[i]);
        lower[i] = '\0';
        for (const char *p = strstr(block, "default"); p != NULL; p = strstr(p + 1, "default")) {
                const char *q = p + strlen("default");
                if (*q == ':')
                        q++;
                while (*q == ' ')
                        q++;
                if (strncmp(q, lower, strlen(lower)) == 0 &&
                    !isalnum((unsigned char)q[strlen(lower)]))
                        return true;
        }
        snprintf(text, sizeof(text), "%s (default", lower);
        for (const char *p = strstr(block, text); p != NULL; p = strstr(p + 1, text)) {
                if (p == block || !isalnum((unsigned char)p[-1]))
                        return true;
        }
        return false;
}

Test(config_docs, example_yaml_comments_agree_with_the_table)
{
        char *example = vd_test_read_source("zones/example/vpcdns.yaml");
        size_t n;
        const vd_config_key *keys = vd_config_keys(&n);
        static char block[8192];
        for (size_t i = 0; i < n; i++) {
                const vd_config_key *k = &keys[i];
                const char *line = key_line(example, k->name);
                cr_assert_not_null(line, "vpcdns.yaml lacks the key '%s'", k->name);
                if (k->type != VD_KEY_UINT && k->type != VD_KEY_BOOL && k->type != VD_KEY_LEVEL &&
                    k->type != VD_KEY_DENY)
                        continue; /* lists: their defaults are prose */
                comment_block(example, line, block, sizeof(block));
                char def[128];
                vd_config_key_default(k, def, sizeof(def));
                cr_assert(says_default(block, def),
                          "vpcdns.yaml: the comment of '%s' does not give its default '%s': %s",
                          k->name, def, block);
                if (k->type == VD_KEY_UINT) {
                        char range[64];
                        snprintf(range, sizeof(range), "%u to %u", k->min, k->max);
                        cr_assert_not_null(strstr(block, range),
                                           "vpcdns.yaml: the comment of '%s' lacks its range '%s'",
                                           k->name, range);
                }
                /* A value written out (not commented) is the default: the example shows them. */
                if (line[0] != '#' && k->default_text == NULL) {
                        const char *value = line + strlen(k->name) + 1;
                        while (*value == ' ')
                                value++;
                        size_t len = strcspn(value, " #\n");
                        cr_assert(len == strlen(def) && strncmp(value, def, len) == 0,
                                  "vpcdns.yaml sets '%s' to %.*s, not its default %s", k->name,
                                  (int)len, value, def);
                }
                cr_assert(line[0] == '#' || k->default_text == NULL || k->type != VD_KEY_UINT,
                          "vpcdns.yaml sets '%s', whose default depends on the machine: "
                          "leave it commented out",
                          k->name);
        }
        free(example);
}

/* The per-client limits are counted for the whole process (the tables every worker shares):
 * every description says so, and none says "per worker". */
Test(config_docs, per_client_limits_are_described_as_process_wide)
{
        static const char *const names[] = {
            "rrl_responses_per_second", "tcp_max_connections_per_client", "max_pending_per_client"};
        char *example = vd_test_read_source("zones/example/vpcdns.yaml");
        char *doc = vd_test_read_source("docs/configuration.md");
        char *chap = chapter(doc, KEYS_CHAPTER);
        static char block[8192];
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                const vd_config_key *k = vd_config_key_find(names[i]);
                cr_assert_not_null(k);
                cr_assert_not_null(strstr(k->doc, "all workers together"), "%s: %s", k->name,
                                   k->doc);
                char *sec = section(chap, k->name);
                cr_assert_not_null(sec);
                for (char *c = sec; *c != '\0'; c++)
                        *c = *c == '\n' ? ' ' : *c; /* the phrase may wrap */
                cr_assert_not_null(strstr(sec, "all workers together"), "docs: %s", sec);
                cr_assert_null(strstr(sec, "per worker"), "docs: %s", sec);
                free(sec);
                comment_block(example, key_line(example, k->name), block, sizeof(block));
                cr_assert_not_null(strstr(block, "all workers together"), "vpcdns.yaml: %s", block);
                cr_assert_null(strstr(block, "per worker"), "vpcdns.yaml: %s", block);
                cr_assert_null(strstr(block, "one worker"), "vpcdns.yaml: %s", block);
        }
        free(chap);
        free(doc);
        free(example);
}

/* test_man_pages.c — the man pages agree with the code, so they cannot rot: every key of the
 * key table (resolver/config_keys.c) has an entry in man/vpcdns.yaml.5 with the table's default
 * and range, every flag of the flag table (resolver/config_cli.c) has one in man/vpcdns.8 with
 * its argument and is in its synopsis, and neither page documents a key or flag the code does
 * not have. It reads the pages as mdoc source text; whether they are well-formed mdoc is
 * contrib/check.sh's job (mandoc -Tlint). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/source_file.h"
#include "vpcdns/config.h"

TestSuite(man_pages);

/* The text of the ".Sh NAME" section of page (from its line to the next .Sh), copied. */
static char *man_section(const char *page, const char *file, const char *name)
{
        char heading[64];
        snprintf(heading, sizeof(heading), "\n.Sh %s\n", name);
        const char *start = strstr(page, heading);
        cr_assert_not_null(start, "%s has no section '%s'", file, name);
        start += 1;
        const char *end = strstr(start + 1, "\n.Sh ");
        char *out = strndup(start, end != NULL ? (size_t)(end - start) + 1 : strlen(start));
        cr_assert_not_null(out);
        return out;
}

/* The item of the list entry that starts with the line head (".It Ic listen"), up to the next
 * entry of the same kind (a line starting with prefix) or the end of the section; copied, or
 * NULL when there is no such entry. */
static char *man_item(const char *sec, const char *head, const char *prefix)
{
        char line[256];
        cr_assert_lt(strlen(head), sizeof(line) - 3, "entry head too long: %s", head);
        snprintf(line, sizeof(line), "\n%.*s\n", (int)(sizeof(line) - 3), head);
        const char *start = strstr(sec, line);
        if (start == NULL)
                return NULL;
        start += 1;
        char next[64];
        snprintf(next, sizeof(next), "\n%s", prefix);
        const char *end = strstr(start + strlen(line) - 2, next);
        char *out = strndup(start, end != NULL ? (size_t)(end - start) + 1 : strlen(start));
        cr_assert_not_null(out);
        return out;
}

/* text as it is written in mdoc: a backslash is \e, a double quote \(dq. */
static void mdoc_escape(const char *text, char *out, size_t cap)
{
        size_t used = 0;
        for (const char *p = text; *p != '\0' && used + 5 < cap; p++) {
                const char *rep = *p == '\\' ? "\\e" : *p == '"' ? "\\(dq" : NULL;
                if (rep != NULL) {
                        memcpy(out + used, rep, strlen(rep));
                        used += strlen(rep);
                } else {
                        out[used++] = *p;
                }
        }
        out[used] = '\0';
}

Test(man_pages, every_key_is_in_vpcdns_yaml_5_with_its_default_and_range)
{
        char *page = vd_test_read_source("man/vpcdns.yaml.5");
        char *keys_sec = man_section(page, "man/vpcdns.yaml.5", "KEYS");
        size_t n;
        const vd_config_key *keys = vd_config_keys(&n);
        for (size_t i = 0; i < n; i++) {
                const vd_config_key *k = &keys[i];
                char head[96], def[128], escaped[256], line[320];
                snprintf(head, sizeof(head), ".It Ic %s", k->name);
                char *item = man_item(keys_sec, head, ".It Ic ");
                cr_assert_not_null(item, "man/vpcdns.yaml.5 lacks the key '%s' (a line '%s')",
                                   k->name, head);
                vd_config_key_default(k, def, sizeof(def));
                mdoc_escape(def, escaped, sizeof(escaped));
                snprintf(line, sizeof(line), "\n.It Default:\n%s\n", escaped);
                cr_assert_not_null(strstr(item, line),
                                   "man/vpcdns.yaml.5: '%s' lacks its default, the lines '%s'",
                                   k->name, line + 1);
                if (k->type == VD_KEY_UINT) {
                        snprintf(line, sizeof(line), "\n.It Range:\n%u to %u\n", k->min, k->max);
                        cr_assert_not_null(strstr(item, line),
                                           "man/vpcdns.yaml.5: '%s' lacks its range, the lines "
                                           "'%s'",
                                           k->name, line + 1);
                }
                snprintf(line, sizeof(line), "\n.It Example:\n\\(oq%s: ", k->name);
                cr_assert_not_null(strstr(item, line), "man/vpcdns.yaml.5: '%s' has no example",
                                   k->name);
                free(item);
        }
        /* and nothing the table does not have */
        size_t entries = 0;
        for (const char *h = strstr(keys_sec, "\n.It Ic "); h != NULL;
             h = strstr(h + 1, "\n.It Ic ")) {
                const char *name = h + strlen("\n.It Ic ");
                char word[96];
                snprintf(word, sizeof(word), "%.*s", (int)strcspn(name, " \n"), name);
                cr_assert_not_null(vd_config_key_find(word),
                                   "man/vpcdns.yaml.5 documents the key '%s', which the code "
                                   "does not have",
                                   word);
                entries++;
        }
        cr_assert_eq(entries, n, "man/vpcdns.yaml.5 has %zu key entries, the table %zu keys",
                     entries, n);
        free(keys_sec);
        free(page);
}

Test(man_pages, every_flag_is_in_vpcdns_8_with_its_argument)
{
        char *page = vd_test_read_source("man/vpcdns.8");
        char *options = man_section(page, "man/vpcdns.8", "OPTIONS");
        char *synopsis = man_section(page, "man/vpcdns.8", "SYNOPSIS");
        size_t n;
        const vd_config_flag *flags = vd_config_flags(&n);
        for (size_t i = 0; i < n; i++) {
                const vd_config_flag *f = &flags[i];
                char head[128];
                if (f->short_name != 0)
                        snprintf(head, sizeof(head), ".It Fl %c , Fl -%s", f->short_name, f->name);
                else if (f->arg != NULL)
                        snprintf(head, sizeof(head), ".It Fl -%s Ar %s", f->name, f->arg);
                else
                        snprintf(head, sizeof(head), ".It Fl -%s", f->name);
                char *item = man_item(options, head, ".It Fl ");
                cr_assert_not_null(item, "man/vpcdns.8 lacks the flag --%s: no line '%s'", f->name,
                                   head);
                cr_assert_gt(strlen(item), strlen(head) + 2, "man/vpcdns.8: --%s says nothing",
                             f->name);
                free(item);
                /* the synopsis names it: "Fl -NAME" (or "-NAME" after "Fl X |") */
                char text[96];
                snprintf(text, sizeof(text), f->short_name != 0 ? " -%s\n" : "Fl -%s", f->name);
                const char *at = strstr(synopsis, text);
                cr_assert_not_null(at, "the synopsis of man/vpcdns.8 lacks --%s", f->name);
        }
        size_t entries = 0;
        for (const char *h = strstr(options, "\n.It Fl "); h != NULL;
             h = strstr(h + 1, "\n.It Fl ")) {
                const char *name = strstr(h, "Fl -");
                cr_assert_not_null(name);
                name += strlen("Fl -");
                char word[64];
                snprintf(word, sizeof(word), "%.*s", (int)strcspn(name, " \n"), name);
                bool known = false;
                for (size_t i = 0; i < n; i++)
                        known = known || strcmp(word, flags[i].name) == 0;
                cr_assert(known,
                          "man/vpcdns.8 documents the flag --%s, which the code does not have",
                          word);
                entries++;
        }
        cr_assert_eq(entries, n, "man/vpcdns.8 has %zu flag entries, the table %zu flags", entries,
                     n);
        free(synopsis);
        free(options);
        free(page);
}

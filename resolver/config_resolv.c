/* config_resolv.c — the default upstreams: the nameserver lines of a resolv.conf, minus our
 * own listen addresses and duplicates. Reads the file only; it never fails (a missing or odd
 * file gives fewer upstreams) and knows nothing of the config file or the command line. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpcdns/addr.h"
#include "vpcdns/config.h"

#include "config_int.h"

void vd_cfg_read_resolv_conf(vd_config *cfg, const char *path)
{
        FILE *f = fopen(path, "r");
        if (f == NULL)
                return;
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0 && cfg->n_upstream < VD_MAX_UPSTREAM) {
                char *save = NULL;
                char *hash = strpbrk(line, "#;");
                if (hash != NULL)
                        *hash = '\0';
                char *word = strtok_r(line, " \t\r\n", &save);
                if (word == NULL || strcmp(word, "nameserver") != 0)
                        continue;
                char *text = strtok_r(NULL, " \t\r\n", &save);
                if (text == NULL || text[0] == '[') /* resolv.conf has no brackets or ports */
                        continue;
                vd_addr addr;
                bool v6 = strchr(text, ':') != NULL;
                if (!v6 && strchr(text, '%') != NULL)
                        continue;
                if (!v6 && vd_addr_parse_host(text, VD_CFG_DEFAULT_PORT, &addr) != 0)
                        continue;
                if (v6 && vd_addr_parse_host(text, VD_CFG_DEFAULT_PORT, &addr) != 0) {
                        /* An unknown interface after '%': a link-local address is useless
                         * without it; any other address works without the suffix. */
                        char *pct = strchr(text, '%');
                        if (pct == NULL)
                                continue;
                        *pct = '\0';
                        if (vd_addr_parse_host(text, VD_CFG_DEFAULT_PORT, &addr) != 0)
                                continue;
                        if (IN6_IS_ADDR_LINKLOCAL(
                                &((const struct sockaddr_in6 *)&addr.ss)->sin6_addr))
                                continue;
                }
                if (vd_addr_is_own(&addr, cfg->listen, cfg->n_listen))
                        continue;
                bool dup = false;
                for (size_t i = 0; i < cfg->n_upstream; i++)
                        dup = dup || vd_addr_equal(&addr, &cfg->upstream[i]);
                if (!dup)
                        cfg->upstream[cfg->n_upstream++] = addr;
        }
        free(line);
        fclose(f);
}

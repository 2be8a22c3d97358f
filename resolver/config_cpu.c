/* config_cpu.c — the default worker count: the CPUs this process may run on (affinity mask),
 * lowered to its cgroup v2 CPU quota. Reads /proc and /sys only; sets nothing, and knows
 * nothing of the config file or the command line. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vpcdns/config.h"

#include "config_int.h"

#define WORKERS_MAX VD_CFG_WORKERS_MAX

unsigned vd_cpu_max_workers(const char *cpu_max)
{
        char quota[32], rest;
        unsigned long long period;
        if (sscanf(cpu_max, "%31s %llu %c", quota, &period, &rest) != 2 || period == 0)
                return 0;
        char *end;
        errno = 0;
        unsigned long long q = strtoull(quota, &end, 10);
        if (errno != 0 || end == quota || *end != '\0' || q == 0)
                return 0; /* "max": no quota */
        unsigned long long cpus = q / period + (q % period != 0);
        return cpus > WORKERS_MAX ? WORKERS_MAX : (unsigned)cpus;
}

static unsigned read_cpu_max(const char *path)
{
        char text[64];
        FILE *f = fopen(path, "re");
        if (f == NULL)
                return 0;
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        return vd_cpu_max_workers(text);
}

/* The quota of our own cgroup (the line "0::PATH" of /proc/self/cgroup), or of the root that
 * a container's cgroup namespace shows; 0 when there is none or no cgroup v2. */
static unsigned cgroup_cpu_quota(void)
{
        char line[PATH_MAX], path[PATH_MAX + 32];
        unsigned cpus = 0;
        FILE *f = fopen("/proc/self/cgroup", "re");
        if (f != NULL) {
                while (cpus == 0 && fgets(line, sizeof(line), f) != NULL) {
                        if (strncmp(line, "0::", 3) != 0)
                                continue;
                        line[strcspn(line, "\n")] = '\0';
                        snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", line + 3);
                        cpus = read_cpu_max(path);
                }
                fclose(f);
        }
        return cpus > 0 ? cpus : read_cpu_max("/sys/fs/cgroup/cpu.max");
}

unsigned vd_default_workers(void)
{
        long n = 0;
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = CPU_COUNT(&set);
        if (n <= 0)
                n = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned quota = cgroup_cpu_quota();
        if (quota > 0 && quota < n)
                n = quota;
        if (n < 1)
                n = 1;
        return n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
}

/* test_config.c — the config file, the command line, defaults from resolv.conf and address
 * text (resolver/config*.c, resolver/addr.c). Each error test pins the exact FILE:LINE:COL a
 * user would see. The docs are held to the key table by test_config_docs.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vpcdns/config.h"

static char tmpdir[64];

static void setup(void)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/vd-test-config-XXXXXX");
        cr_assert_not_null(mkdtemp(tmpdir));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void teardown(void)
{
        nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes text to tmpdir/name and returns the path (static buffer per call site is enough:
 * each test writes at most a few files and copies what it needs). */
static const char *write_file(const char *name, const char *text)
{
        static char paths[8][256];
        static int next;
        char *path = paths[next++ % 8];
        snprintf(path, 256, "%s/%s", tmpdir, name);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
        return path;
}

static const char *addr_text(const vd_addr *a)
{
        static char buf[4][128];
        static int next;
        char *out = buf[next++ % 4];
        vd_addr_format(a, out, 128);
        return out;
}

/* Loads text as a config file; returns rc and leaves the message in err. */
static int load_text(vd_config *cfg, const char *text, vd_error *err, const char **path)
{
        const char *p = write_file("vpcdns.yaml", text);
        if (path != NULL)
                *path = p;
        return vd_config_load_file(cfg, p, err);
}

/* Asserts that text fails with "PATH:where: expected..." and that the message holds needle. */
static void expect_error(const char *text, const char *where, const char *needle)
{
        vd_config cfg;
        vd_error err = {{0}};
        const char *path;
        vd_config_init(&cfg);
        cfg.workers = 7;
        int rc = load_text(&cfg, text, &err, &path);
        cr_assert_lt(rc, 0, "accepted: %s", text);
        char prefix[512];
        snprintf(prefix, sizeof(prefix), "%s:%s: expected ", path, where);
        cr_assert(strncmp(err.msg, prefix, strlen(prefix)) == 0, "message '%s' does not start '%s'",
                  err.msg, prefix);
        cr_assert_not_null(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
        cr_assert_eq(cfg.workers, 7, "a rejected file changed the config");
        cr_assert_eq(cfg.n_listen, 0);
        cr_assert_null(cfg.config_path);
        vd_config_free(&cfg);
}

/* ---- the file ---------------------------------------------------------------------------- */

Test(config, every_key_from_file)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, VD_TEST_DATA "/config/full.yaml", &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_listen, 3);
        cr_assert_str_eq(addr_text(&cfg.listen[0]), "127.0.0.1:5300");
        cr_assert_str_eq(addr_text(&cfg.listen[1]), "[::1]:5301");
        cr_assert_str_eq(addr_text(&cfg.listen[2]), "127.0.0.2:53");
        cr_assert_eq(cfg.n_upstream, 2);
        cr_assert_str_eq(addr_text(&cfg.upstream[0]), "192.0.2.1:53");
        cr_assert_str_eq(addr_text(&cfg.upstream[1]), "[2001:db8::53]:5353");
        cr_assert_eq(cfg.n_snapshots, 1);
        cr_assert_str_eq(cfg.snapshot_dirs[0], "/var/lib/vpcdns/prod");
        cr_assert_eq(cfg.n_zones, 2);
        cr_assert_str_eq(cfg.zone_files[0], "/etc/vpcdns/corp.zone");
        cr_assert_str_eq(cfg.zone_files[1], "/etc/vpcdns/lab.zone");
        cr_assert_eq(cfg.log_level, VD_LOG_DEBUG);
        cr_assert_eq(cfg.workers, 4);
        cr_assert_eq(cfg.tcp_idle_timeout_ms, 30000);
        cr_assert_eq(cfg.tcp_max_connections, 200);
        cr_assert_eq(cfg.upstream_timeout_ms, 1500);
        cr_assert_str_eq(cfg.config_path, VD_TEST_DATA "/config/full.yaml");
        vd_config_free(&cfg);
}

/* The default worker count follows the CPUs the process may use, and a cgroup v2 quota
 * (cpu.max) lowers it: a Kubernetes limit of 1500m is 2 workers, not one per node core. */
Test(config, cgroup_cpu_quota_in_whole_cpus)
{
        cr_assert_eq(vd_cpu_max_workers("max 100000\n"), 0);
        cr_assert_eq(vd_cpu_max_workers("150000 100000\n"), 2);
        cr_assert_eq(vd_cpu_max_workers("100000 100000"), 1);
        cr_assert_eq(vd_cpu_max_workers("50000 100000\n"), 1);
        cr_assert_eq(vd_cpu_max_workers("200000 100000\n"), 2);
        cr_assert_eq(vd_cpu_max_workers("100000000 1000\n"), 64);
        cr_assert_eq(vd_cpu_max_workers(""), 0);
        cr_assert_eq(vd_cpu_max_workers("100000"), 0);
        cr_assert_eq(vd_cpu_max_workers("0 100000"), 0);
        cr_assert_eq(vd_cpu_max_workers("12x 100000"), 0);
        cr_assert_eq(vd_cpu_max_workers("100000 0"), 0);
        cr_assert_eq(vd_cpu_max_workers("100000 100000 extra"), 0);
}

Test(config, defaults_before_anything)
{
        vd_config cfg;
        vd_config_init(&cfg);
        cr_assert_eq(cfg.workers, vd_default_workers());
        cr_assert(cfg.workers >= 1 && cfg.workers <= 64, "%u workers", cfg.workers);
        cr_assert_eq(cfg.tcp_idle_timeout_ms, 10000);
        cr_assert_eq(cfg.tcp_max_connections, 1024);
        cr_assert_eq(cfg.upstream_timeout_ms, 2000);
        cr_assert_eq(cfg.log_level, VD_LOG_INFO);
        cr_assert_eq(cfg.n_listen + cfg.n_upstream + cfg.n_snapshots + cfg.n_zones, 0);
        cr_assert_eq(cfg.deny_action, VD_DENY_REFUSE);
        cr_assert_eq(cfg.rrl_responses_per_second, 0, "rate limiting is off by default");
        cr_assert_eq(cfg.rrl_slip, 2);
        cr_assert_eq(cfg.rrl_ipv4_prefix, 24);
        cr_assert_eq(cfg.rrl_ipv6_prefix, 56);
        cr_assert_eq(cfg.tcp_max_connections_per_client, 64);
        cr_assert_eq(cfg.tcp_max_queries_per_connection, 0);
        cr_assert_eq(cfg.max_pending_per_client, 100);
        cr_assert_null(cfg.user);
        vd_config_free(&cfg);
}

Test(config, single_string_for_a_list)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, VD_TEST_DATA "/config/single.yaml", &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_listen, 1);
        cr_assert_str_eq(addr_text(&cfg.listen[0]), "127.0.0.1:5300");
        cr_assert_eq(cfg.n_upstream, 1);
        cr_assert_str_eq(addr_text(&cfg.upstream[0]), "192.0.2.7:5353");
        cr_assert_eq(cfg.n_snapshots, 1);
        cr_assert_str_eq(cfg.snapshot_dirs[0], VD_TEST_DATA "/config/snap");
        cr_assert_eq(cfg.n_zones, 1);
        cr_assert_str_eq(cfg.zone_files[0], VD_TEST_DATA "/config/corp.zone");
        vd_config_free(&cfg);
}

Test(config, empty_and_comment_only_files_change_nothing)
{
        const char *texts[] = {"", "# only a comment\n\n", "---\n", "~\n"};
        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                vd_config cfg;
                vd_error err = {{0}};
                vd_config_init(&cfg);
                cfg.workers = 3;
                cr_assert_eq(vd_addr_parse("127.0.0.1:5300", 53, &cfg.listen[0]), 0);
                cfg.n_listen = 1;
                int rc = load_text(&cfg, texts[i], &err, NULL);
                cr_assert_eq(rc, 0, "'%s': %s", texts[i], err.msg);
                cr_assert_eq(cfg.workers, 3);
                cr_assert_eq(cfg.n_listen, 1);
                vd_config_free(&cfg);
        }
}

Test(config, hosted_zones_take_paths_and_path_vpcs_mappings)
{
        vd_config cfg;
        vd_error err = {{0}};
        const char *path;
        vd_config_init(&cfg);
        int rc = load_text(&cfg,
                           "hosted_zones:\n  - /z/corp.json\n"
                           "  - {path: sqs.json, vpcs: [vpc-0abc, vpc-0def]}\n",
                           &err, &path);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_hosted_zones, 2);
        cr_assert_str_eq(cfg.hosted_zone_files[0], "/z/corp.json");
        cr_assert_null(cfg.hosted_zone_vpcs[0]);
        cr_assert_not_null(strstr(cfg.hosted_zone_files[1], "/sqs.json"));
        cr_assert_str_eq(cfg.hosted_zone_vpcs[1], "vpc-0abc vpc-0def");
        vd_config_free(&cfg);
        expect_error("hosted_zones:\n  - {vpcs: [vpc-0abc]}\n", "2:5", "path: FILE");
        expect_error("hosted_zones:\n  - {path: a.json, vpcs: [subnet-1]}\n", "2:27", "a VPC id");
        expect_error("hosted_zones:\n  - {path: a.json, zone: x}\n", "2:20", "path or vpcs");
}

Test(config, relative_paths_follow_the_config_file)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, VD_TEST_DATA "/config/sub/relative.yaml", &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_snapshots, 3);
        cr_assert_str_eq(cfg.snapshot_dirs[0], VD_TEST_DATA "/config/sub/aws");
        cr_assert_str_eq(cfg.snapshot_dirs[1], VD_TEST_DATA "/config/sub/../shared/aws");
        cr_assert_str_eq(cfg.snapshot_dirs[2], "/srv/aws");
        cr_assert_eq(cfg.n_zones, 1);
        cr_assert_str_eq(cfg.zone_files[0], VD_TEST_DATA "/config/sub/zones/corp.zone");
        vd_config_free(&cfg);
}

Test(config, config_in_current_directory_keeps_relative_paths)
{
        write_file("here.yaml", "zone: corp.zone\n");
        char old[4096];
        cr_assert_not_null(getcwd(old, sizeof(old)));
        cr_assert_eq(chdir(tmpdir), 0);
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, "here.yaml", &err);
        cr_assert_eq(chdir(old), 0);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_str_eq(cfg.zone_files[0], "corp.zone");
        vd_config_free(&cfg);
}

Test(config, file_lists_replace_what_cfg_held)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cfg.zone_files[0] = strdup("/old.zone");
        cfg.n_zones = 1;
        cr_assert_eq(vd_addr_parse("192.0.2.99", 53, &cfg.upstream[0]), 0);
        cfg.n_upstream = 1;
        int rc = load_text(&cfg, "zone: [/a.zone, /b.zone]\n", &err, NULL);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_zones, 2);
        cr_assert_str_eq(cfg.zone_files[0], "/a.zone");
        cr_assert_str_eq(cfg.zone_files[1], "/b.zone");
        cr_assert_eq(cfg.n_upstream, 1, "a key absent from the file must keep its value");
        vd_config_free(&cfg);
}

Test(config, example_config_is_valid)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, VD_SOURCE_DIR "/zones/example/vpcdns.yaml", &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_zones, 1);
        cr_assert_str_eq(cfg.zone_files[0], VD_SOURCE_DIR "/zones/example/corp.zone");
        cr_assert_eq(access(cfg.zone_files[0], R_OK), 0, "the example zone file is missing");
        vd_config_free(&cfg);
}

/* ---- file errors, each with its position --------------------------------------------------- */

Test(config, error_unknown_key)
{
        /* A typo gets the closest key, not the list of all 31. */
        expect_error("listen: 127.0.0.1:53\nlisen: 127.0.0.1:54\n", "2:1",
                     "expected a config key (did you mean 'listen'?), got 'lisen'");
        expect_error("worker: 2\n", "1:1", "(did you mean 'workers'?), got 'worker'");
        expect_error("cache_max_ttls: 5\n", "1:1", "(did you mean 'cache_max_ttl'?)");
        expect_error("rrl_ipv4_prefx: 24\n", "1:1", "(did you mean 'rrl_ipv4_prefix'?)");
        expect_error("upstream0x20: true\n", "1:1", "(did you mean 'upstream_0x20'?)");
        /* Nothing near: no guess, and no wall of key names. */
        expect_error("no_such_key: 1\n", "1:1",
                     "expected a config key (vpcdns --help lists them all), got 'no_such_key'");
        expect_error("x: 1\n", "1:1", "expected a config key (vpcdns --help lists them all)");
}

Test(config, error_wrong_type)
{
        expect_error("workers: [1]\n", "1:10", "integer from 1 to 64 for 'workers', got a list");
        expect_error("listen:\n  addr: 127.0.0.1\n", "2:3", "got a mapping");
        expect_error("log_level:\n", "1:11", "got nothing (null)");
        expect_error("workers: '4'\n", "1:10", "got '4'");
        expect_error("zone:\n  - [a.zone]\n", "2:5", "expected a zone file path, got a list");
}

Test(config, error_bad_address)
{
        expect_error("listen:\n  - 127.0.0.1:53\n  - 300.1.1.1:53\n", "3:5",
                     "expected a listen address ADDR:PORT (127.0.0.1:53, [::1]:53), got "
                     "'300.1.1.1:53'");
        expect_error("upstream: [192.0.2.1, \"[::1]:0\"]\n", "1:23", "got '[::1]:0'");
        expect_error("upstream: []\n", "1:11", "got an empty list");
}

Test(config, error_out_of_range)
{
        expect_error("workers: 0\n", "1:10",
                     "expected an integer from 1 to 64 for 'workers', got '0'");
        expect_error("# comment\nworkers: 65\n", "2:10", "got '65'");
        expect_error("upstream_timeout_ms: 60001\n", "1:22", "from 1 to 60000");
        expect_error("tcp_idle_timeout_ms: -5\n", "1:22", "got '-5'");
        expect_error("tcp_max_connections: 99999999999999999999\n", "1:22", "from 1 to 1000000");
        expect_error("log_level: loud\n", "1:12",
                     "a log level (error, warn, info, debug), got 'loud'");
}

Test(config, error_duplicate_key)
{
        expect_error("workers: 2\nlog_level: info\nworkers: 3\n", "3:1",
                     "expected each key once ('workers' is at line 1), got 'workers' again");
}

Test(config, error_yaml_syntax)
{
        expect_error("listen: [127.0.0.1:53\n", "2:1", "expected valid YAML, got a syntax error");
        expect_error("workers: 2\n  bad: 3\n", "2:6", "mapping values are not allowed");
        expect_error("workers: 1\nlisten: x\xff\n", "2:10", "unreadable text");
        expect_error("workers: 2\n---\nworkers: 3\n", "3:1",
                     "expected a single YAML document, got a second document");
        expect_error("- listen\n", "1:1", "expected a mapping of settings");
}

Test(config, error_too_many_addresses)
{
        char text[1024];
        size_t len = (size_t)snprintf(text, sizeof(text), "listen:\n");
        for (int i = 0; i <= VD_MAX_LISTEN; i++)
                len +=
                    (size_t)snprintf(text + len, sizeof(text) - len, "  - 127.0.0.%d:53\n", i + 1);
        expect_error(text, "18:5", "expected at most 16 listen addresses, got '127.0.0.17:53'");
}

Test(config, error_missing_file)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_load_file(&cfg, "/nonexistent/vpcdns.yaml", &err);
        cr_assert_eq(rc, -ENOENT);
        cr_assert_not_null(strstr(err.msg, "/nonexistent/vpcdns.yaml: cannot open"), "%s", err.msg);
        rc = vd_config_load_file(&cfg, tmpdir, &err);
        cr_assert_lt(rc, 0);
        cr_assert_not_null(strstr(err.msg, "directory"), "%s", err.msg);
        vd_config_free(&cfg);
}

/* ---- the command line ---------------------------------------------------------------------- */

#define ARGS(...) ((char *[]){"vpcdns", __VA_ARGS__, NULL})

/* argv is NULL-terminated; argc counts argv[0] like main()'s. */
static int run_args(vd_config *cfg, char **argv, vd_error *err)
{
        int argc = 0;
        while (argv[argc] != NULL)
                argc++;
        return vd_config_from_args(cfg, argc, argv, err);
}

Test(config, flags_override_file_and_lists_replace)
{
        write_file("base.yaml", "listen: [127.0.0.1:5300, 127.0.0.2:5300]\n"
                                "upstream: 192.0.2.1\n"
                                "snapshot: [a, b]\n"
                                "log_level: debug\n"
                                "workers: 4\n"
                                "tcp_max_connections: 77\n");
        char path[256];
        snprintf(path, sizeof(path), "%s/base.yaml", tmpdir);
        char **argv = ARGS("--workers", "2", "--listen", "127.0.0.9:5400", "--config", path,
                           "--listen", "[::1]:5401", "--snapshot", "/x");
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = run_args(&cfg, argv, &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.workers, 2, "the flag must win over the file, wherever --config is");
        cr_assert_eq(cfg.log_level, VD_LOG_DEBUG);
        cr_assert_eq(cfg.tcp_max_connections, 77);
        cr_assert_eq(cfg.n_listen, 2);
        cr_assert_str_eq(addr_text(&cfg.listen[0]), "127.0.0.9:5400");
        cr_assert_str_eq(addr_text(&cfg.listen[1]), "[::1]:5401");
        cr_assert_eq(cfg.n_upstream, 1);
        cr_assert_str_eq(addr_text(&cfg.upstream[0]), "192.0.2.1:53");
        cr_assert_eq(cfg.n_snapshots, 1);
        cr_assert_str_eq(cfg.snapshot_dirs[0], "/x");
        cr_assert_str_eq(cfg.config_path, path);
        vd_config_free(&cfg);
}

Test(config, flag_equals_value_form)
{
        write_file("eq.yaml", "workers: 9\nzone: z.zone\n");
        char config[300];
        snprintf(config, sizeof(config), "--config=%s/eq.yaml", tmpdir);
        char **argv =
            ARGS("--listen=127.0.0.1:5300", "--upstream=[2001:db8::1]:5353", "--zone=/a.zone",
                 "--zone=/b.zone", "--log-level=warning", config, "--snapshot=/s", "--check");
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = run_args(&cfg, argv, &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.workers, 9);
        cr_assert_str_eq(addr_text(&cfg.listen[0]), "127.0.0.1:5300");
        cr_assert_str_eq(addr_text(&cfg.upstream[0]), "[2001:db8::1]:5353");
        cr_assert_eq(cfg.n_zones, 2);
        cr_assert_str_eq(cfg.zone_files[0], "/a.zone");
        cr_assert_str_eq(cfg.zone_files[1], "/b.zone");
        cr_assert_eq(cfg.log_level, VD_LOG_WARN);
        cr_assert_str_eq(cfg.snapshot_dirs[0], "/s");
        cr_assert(cfg.check);
        cr_assert_not(cfg.dump);
        vd_config_free(&cfg);
}

Test(config, no_flags_keeps_defaults)
{
        char *argv[] = {"vpcdns", NULL};
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, argv, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.workers, vd_default_workers());
        cr_assert_eq(cfg.n_listen, 0);
        cr_assert_null(cfg.config_path);
        vd_config_free(&cfg);
}

/* Runs argv and asserts a usage error whose message holds needle; cfg must be untouched. */
static void expect_usage_error(char **argv, const char *needle)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cfg.workers = 5;
        int rc = run_args(&cfg, argv, &err);
        cr_assert_lt(rc, 0, "accepted %s", argv[1]);
        cr_assert_not_null(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
        cr_assert_eq(cfg.workers, 5);
        cr_assert_eq(cfg.n_listen, 0);
        vd_config_free(&cfg);
}

Test(config, flag_errors_name_the_flag)
{
        char **a = ARGS("--check", "--bogus");
        expect_usage_error(a, "unknown flag '--bogus'");
        char **b = ARGS("--check", "--listen");
        expect_usage_error(b, "flag '--listen' needs an argument");
        char **c = ARGS("--check=yes");
        expect_usage_error(c, "flag '--check' takes no argument");
        char **d = ARGS("--listen", "127.0.0.1:99999");
        expect_usage_error(d, "--listen: expected ADDR:PORT (127.0.0.1:53, [::1]:53), got "
                              "'127.0.0.1:99999'");
        char **e = ARGS("--workers", "0");
        expect_usage_error(e, "--workers: expected an integer from 1 to 64, got '0'");
        char **f = ARGS("--log-level", "loud");
        expect_usage_error(f, "--log-level: expected error, warn, info or debug, got 'loud'");
        char **g = ARGS("extra");
        expect_usage_error(g, "unexpected argument 'extra'");
        char **h = ARGS("-x");
        expect_usage_error(h, "unknown flag '-x'");
        char **i = ARGS("--upstream=nameserver.example");
        expect_usage_error(i, "--upstream: expected ADDR[:PORT]");
        char **j = ARGS("--check", "--dump");
        expect_usage_error(j, "--check and --dump cannot be combined");
}

Test(config, config_file_errors_come_through_the_flags)
{
        const char *path = write_file("bad.yaml", "workers: 2\nwrkers: 3\n");
        char **argv = ARGS("--config", (char *)path, "--workers", "4");
        char expected[300];
        snprintf(expected, sizeof(expected),
                 "%s:2:1: expected a config key (did you mean 'workers'?)", path);
        expect_usage_error(argv, expected);
        char **missing = ARGS("--config", "/nonexistent.yaml");
        expect_usage_error(missing, "/nonexistent.yaml: cannot open");
}

Test(config, help_and_version_win_over_a_broken_config)
{
        char **argv = ARGS("--config", "/nonexistent.yaml", "--help");
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, argv, &err), 0, "%s", err.msg);
        cr_assert(cfg.help);
        vd_config_free(&cfg);

        char **v = ARGS("--version");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, v, &err), 0, "%s", err.msg);
        cr_assert(cfg.version);
        cr_assert_not(cfg.help);
        vd_config_free(&cfg);
}

Test(config, usage_mentions_every_flag)
{
        const char *u = vd_config_usage();
        const char *flags[] = {"--config FILE",  "--listen ADDR:PORT", "--upstream ADDR[:PORT]",
                               "--snapshot DIR", "--zone FILE",        "--check",
                               "--dump",         "--log-level LEVEL",  "--workers N",
                               "--allow CIDR",   "--user USER",        "--version",
                               "--help",         "127.0.0.1:53",       "/etc/resolv.conf"};
        for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
                cr_assert_not_null(strstr(u, flags[i]), "usage lacks %s", flags[i]);
}

Test(config, short_help_and_version_flags)
{
        vd_config cfg;
        vd_error err = {{0}};
        char **h = ARGS("-h");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, h, &err), 0, "%s", err.msg);
        cr_assert(cfg.help);
        vd_config_free(&cfg);

        char **v = ARGS("-V");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, v, &err), 0, "%s", err.msg);
        cr_assert(cfg.version);
        cr_assert_not(cfg.help);
        vd_config_free(&cfg);

        char **x = ARGS("-v");
        expect_usage_error(x, "unknown flag '-v'");
        char **hv = ARGS("-hV");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, hv, &err), 0, "%s", err.msg);
        cr_assert(cfg.help && cfg.version);
        vd_config_free(&cfg);
}

Test(config, usage_lists_every_key_and_ends_without_a_path)
{
        const char *u = vd_config_usage();
        size_t n;
        const vd_config_key *keys = vd_config_keys(&n);
        cr_assert_eq(n, 42);
        for (size_t i = 0; i < n; i++) {
                char line[160], def[96];
                vd_config_key_default(&keys[i], def, sizeof(def));
                if (keys[i].type == VD_KEY_UINT)
                        snprintf(line, sizeof(line), "  %s: %u to %u, default %s\n", keys[i].name,
                                 keys[i].min, keys[i].max, def);
                else
                        snprintf(line, sizeof(line), "  %s: default %s\n", keys[i].name, def);
                cr_assert_not_null(strstr(u, line), "usage lacks the line '%s'", line);
                cr_assert_not_null(strstr(u, keys[i].doc), "usage lacks the doc of %s",
                                   keys[i].name);
        }
        cr_assert_not_null(strstr(u, "  -h, --help"));
        cr_assert_not_null(strstr(u, "  -V, --version"));
        cr_assert_not_null(
            strstr(u, "  workers: 1 to 64, default the CPUs this process may use\n"));
        /* The last line is a key's description, not a file of the source tree. */
        size_t len = strlen(u);
        cr_assert(len > 2 && u[len - 1] == '\n');
        const char *last = u + len - 2;
        while (last > u && *last != '\n')
                last--;
        cr_assert_null(strchr(last + 1, '/'), "usage ends with a path: %s", last + 1);
        cr_assert_null(strstr(u, "zones/example"));
        cr_assert_null(strstr(u, ".yaml"));
        for (const char *line = u; *line != '\0';) {
                size_t w = strcspn(line, "\n");
                cr_assert_leq(w, 80, "usage line over 80 columns: %.*s", (int)w, line);
                line += w + (line[w] == '\n');
        }
}

/* The table gives every one-value key's current value and whether it is the default (what
 * --check prints as "changed from the defaults"). */
Test(config, key_values_and_their_defaults)
{
        vd_config cfg;
        vd_error err = {{0}};
        size_t n;
        char value[64];
        const vd_config_key *keys = vd_config_keys(&n);
        vd_config_init(&cfg);
        for (size_t i = 0; i < n; i++) {
                cr_assert_not(vd_config_key_value(&cfg, &keys[i], value, sizeof(value)),
                              "%s = %s is not its default after vd_config_init", keys[i].name,
                              value);
                char def[96];
                vd_config_key_default(&keys[i], def, sizeof(def));
                if (keys[i].type == VD_KEY_UINT && keys[i].default_text == NULL)
                        cr_assert_str_eq(value, def, "%s", keys[i].name);
        }
        cr_assert_eq(load_text(&cfg,
                               "cache_size: 5000\nprefetch: false\ndeny_action: drop\n"
                               "log_level: debug\nuser: nobody\nworkers: 3\nrrl_slip: 2\n",
                               &err, NULL),
                     0, "%s", err.msg);
        static const char *const changed[][2] = {{"cache_size", "5000"},
                                                 {"prefetch", "false"},
                                                 {"deny_action", "drop"},
                                                 {"log_level", "debug"},
                                                 {"user", "nobody"}};
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
                count += vd_config_key_value(&cfg, &keys[i], value, sizeof(value));
        cr_assert_eq(count, 5, "rrl_slip at its default and workers are not 'changed'");
        for (size_t i = 0; i < sizeof(changed) / sizeof(changed[0]); i++) {
                cr_assert(vd_config_key_value(&cfg, vd_config_key_find(changed[i][0]), value,
                                              sizeof(value)));
                cr_assert_str_eq(value, changed[i][1]);
        }
        vd_config_free(&cfg);
}

/* "::1:5300" is a valid IPv6 address (port 53), but almost always meant as [::1]:5300. */
Test(config, ipv6_with_unbracketed_port_is_refused_with_a_hint)
{
        char **a = ARGS("--listen", "::1:5300");
        expect_usage_error(a, "--listen: expected ADDR:PORT (127.0.0.1:53, [::1]:53), got "
                              "'::1:5300' (an IPv6 address with a port is written in brackets: "
                              "did you mean [::1]:5300?)");
        char **b = ARGS("--upstream", "fd00::2:53");
        expect_usage_error(b, "did you mean [fd00::2]:53?");
        expect_error("listen: \"::1:5300\"\n", "1:9",
                     "expected a listen address ADDR:PORT (127.0.0.1:53, [::1]:53), got "
                     "'::1:5300' (an IPv6 address with a port is written in brackets: did you "
                     "mean \"[::1]:5300\"?)");
        expect_error("forward:\n  - domain: corp.example\n    servers: ['fd00::53:5353']\n", "3:15",
                     "did you mean \"[fd00::53]:5353\"?");

        /* Not ambiguous: bracketed, no port-like last group, or a full address. */
        vd_config cfg;
        vd_error err = {{0}};
        char **ok = ARGS("--listen", "[::1]:5300", "--upstream", "fd00::2", "--upstream",
                         "2001:db8:0:0:0:0:0:53", "--upstream", "[::1:5300]");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, ok, &err), 0, "%s", err.msg);
        cr_assert_str_eq(addr_text(&cfg.listen[0]), "[::1]:5300");
        cr_assert_str_eq(addr_text(&cfg.upstream[0]), "[fd00::2]:53");
        cr_assert_str_eq(addr_text(&cfg.upstream[1]), "[2001:db8::53]:53");
        /* inet_ntop shows what "::1:5300" really is */
        cr_assert_str_eq(addr_text(&cfg.upstream[2]), "[::0.1.83.0]:53");
        vd_config_free(&cfg);
}

/* libyaml reads "[" as a list and ": " as a mapping; the error says to quote the address. */
Test(config, unquoted_ipv6_in_yaml_gets_a_hint)
{
        const char *hint = "; an IPv6 address must be quoted in YAML: \"[::1]:53\"";
        expect_error("listen:\n  - [::1]:5300\n", "2:6", hint);
        expect_error("listen: [::1]:5300\n", "1:10", hint);
        expect_error("upstream:\n  - 192.0.2.1\n  - [fd00::2]:53\n", "3:14", hint);
        /* Other syntax errors get no such hint. */
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_lt(load_text(&cfg, "listen: [127.0.0.1:53\n", &err, NULL), 0);
        cr_assert_null(strstr(err.msg, "IPv6"), "%s", err.msg);
        cr_assert_lt(load_text(&cfg, "workers: 2\n  bad: 3 # fd00::1\n", &err, NULL), 0);
        cr_assert_null(strstr(err.msg, "IPv6"), "%s", err.msg);
        vd_config_free(&cfg);
}

/* ---- finalize: defaults from resolv.conf ---------------------------------------------------- */

static void add_listen(vd_config *cfg, const char *text)
{
        cr_assert_eq(vd_addr_parse(text, 53, &cfg->listen[cfg->n_listen]), 0, "%s", text);
        cfg->n_listen++;
}

/* Formats every upstream as "a b c". */
static const char *upstreams(const vd_config *cfg)
{
        static char out[1024];
        size_t len = 0;
        out[0] = '\0';
        for (size_t i = 0; i < cfg->n_upstream; i++)
                len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", i ? " " : "",
                                        addr_text(&cfg->upstream[i]));
        return out;
}

Test(config, finalize_default_listen_and_resolv_conf)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = vd_config_finalize(&cfg, VD_TEST_DATA "/config/resolv.conf", &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_listen, 2);
        cr_assert_str_eq(addr_text(&cfg.listen[0]), "127.0.0.1:53");
        cr_assert_str_eq(addr_text(&cfg.listen[1]), "[::1]:53");
        /* 127.0.0.1 is us; comments, options, duplicates and junk are skipped */
        cr_assert_str_eq(upstreams(&cfg), "10.0.0.2:53 [fd00:ec2::253]:53 192.0.2.53:53");
        vd_config_free(&cfg);
}

Test(config, finalize_keeps_our_address_on_another_port)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        add_listen(&cfg, "127.0.0.1:5300");
        int rc = vd_config_finalize(&cfg, VD_TEST_DATA "/config/resolv.conf", &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_listen, 1);
        cr_assert_str_eq(upstreams(&cfg),
                         "10.0.0.2:53 127.0.0.1:53 [fd00:ec2::253]:53 192.0.2.53:53");
        vd_config_free(&cfg);
}

Test(config, finalize_wildcard_listen_excludes_local_addresses)
{
        const char *conf = write_file("resolv.conf", "nameserver 127.0.0.53\n"
                                                     "nameserver ::1\n"
                                                     "nameserver 192.0.2.1\n");
        vd_config cfg;
        vd_error err = {{0}};

        /* 0.0.0.0:53 is every IPv4 address of the host: 127.0.0.53 would be us; ::1 not. */
        vd_config_init(&cfg);
        add_listen(&cfg, "0.0.0.0:53");
        cr_assert_eq(vd_config_finalize(&cfg, conf, &err), 0, "%s", err.msg);
        cr_assert_str_eq(upstreams(&cfg), "[::1]:53 192.0.2.1:53");
        vd_config_free(&cfg);

        /* [::]:53 is dual-stack: both loopback servers would be us; a remote one stays. */
        vd_config_init(&cfg);
        add_listen(&cfg, "[::]:53");
        cr_assert_eq(vd_config_finalize(&cfg, conf, &err), 0, "%s", err.msg);
        cr_assert_str_eq(upstreams(&cfg), "192.0.2.1:53");
        vd_config_free(&cfg);

        /* A wildcard on another port excludes nothing. */
        vd_config_init(&cfg);
        add_listen(&cfg, "0.0.0.0:5300");
        cr_assert_eq(vd_config_finalize(&cfg, conf, &err), 0, "%s", err.msg);
        cr_assert_str_eq(upstreams(&cfg), "127.0.0.53:53 [::1]:53 192.0.2.1:53");
        vd_config_free(&cfg);
}

Test(config, finalize_scoped_link_local)
{
        const char *conf = write_file("resolv.conf", "nameserver fe80::1%lo\n"
                                                     "nameserver fe80::2%nosuchif0\n"
                                                     "nameserver 2001:db8::5%nosuchif0\n");
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(vd_config_finalize(&cfg, conf, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_upstream, 2, "%s", upstreams(&cfg));
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&cfg.upstream[0].ss;
        cr_assert_eq(s6->sin6_scope_id, if_nametoindex("lo"));
        cr_assert_str_eq(addr_text(&cfg.upstream[0]), "[fe80::1%lo]:53");
        /* link-local on an unknown interface is unusable; a global address loses the suffix */
        cr_assert_str_eq(addr_text(&cfg.upstream[1]), "[2001:db8::5]:53");
        vd_config_free(&cfg);
}

Test(config, finalize_without_resolv_conf_has_no_upstream)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(vd_config_finalize(&cfg, "/nonexistent/resolv.conf", &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_upstream, 0);
        cr_assert_eq(cfg.n_listen, 2);
        vd_config_free(&cfg);
}

Test(config, finalize_caps_resolv_conf_at_max_upstreams)
{
        char text[1024];
        size_t len = 0;
        for (int i = 1; i <= VD_MAX_UPSTREAM + 3; i++)
                len +=
                    (size_t)snprintf(text + len, sizeof(text) - len, "nameserver 192.0.2.%d\n", i);
        const char *conf = write_file("resolv.conf", text);
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(vd_config_finalize(&cfg, conf, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_upstream, VD_MAX_UPSTREAM);
        cr_assert_str_eq(addr_text(&cfg.upstream[VD_MAX_UPSTREAM - 1]), "192.0.2.8:53");
        vd_config_free(&cfg);
}

Test(config, finalize_explicit_upstream_is_not_replaced)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(vd_addr_parse("198.51.100.1:5353", 53, &cfg.upstream[0]), 0);
        cfg.n_upstream = 1;
        cr_assert_eq(vd_config_finalize(&cfg, VD_TEST_DATA "/config/resolv.conf", &err), 0, "%s",
                     err.msg);
        cr_assert_str_eq(upstreams(&cfg), "198.51.100.1:5353");
        vd_config_free(&cfg);
}

Test(config, finalize_rejects_loops_and_duplicates)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        add_listen(&cfg, "127.0.0.1:5300");
        cr_assert_eq(vd_addr_parse("127.0.0.1:5300", 53, &cfg.upstream[0]), 0);
        cfg.n_upstream = 1;
        cr_assert_lt(vd_config_finalize(&cfg, NULL, &err), 0);
        cr_assert_not_null(strstr(err.msg, "upstream 127.0.0.1:5300 is one of our own listen"),
                           "%s", err.msg);
        vd_config_free(&cfg);

        vd_config_init(&cfg);
        add_listen(&cfg, "[::1]:5300");
        add_listen(&cfg, "::1:5300"); /* bare IPv6: this is ::1:5300 on port 53, not a dup */
        add_listen(&cfg, "[0::1]:5300");
        cr_assert_lt(vd_config_finalize(&cfg, NULL, &err), 0);
        cr_assert_str_eq(err.msg, "listen address [::1]:5300 is given twice");
        vd_config_free(&cfg);

        vd_config_init(&cfg);
        cfg.workers = 0;
        cr_assert_lt(vd_config_finalize(&cfg, NULL, &err), 0);
        cr_assert_not_null(strstr(err.msg, "workers"), "%s", err.msg);
        vd_config_free(&cfg);
}

/* ---- addresses ----------------------------------------------------------------------------- */

static void expect_addr(const char *text, const char *formatted)
{
        vd_addr a;
        cr_assert_eq(vd_addr_parse(text, 53, &a), 0, "rejected '%s'", text);
        cr_assert_str_eq(addr_text(&a), formatted, "'%s'", text);
}

Test(config, addr_parse_accepts)
{
        expect_addr("127.0.0.1", "127.0.0.1:53");
        expect_addr("127.0.0.1:5300", "127.0.0.1:5300");
        expect_addr("10.1.2.3:65535", "10.1.2.3:65535");
        expect_addr("::1", "[::1]:53");
        expect_addr("[::1]:5300", "[::1]:5300");
        expect_addr("[::1]", "[::1]:53");
        expect_addr("2001:DB8::0:1", "[2001:db8::1]:53");
        expect_addr("[::ffff:192.0.2.1]:1", "[::ffff:192.0.2.1]:1");
        expect_addr("0.0.0.0:53", "0.0.0.0:53");
        expect_addr("[::]:53", "[::]:53");
        expect_addr("[fe80::1%lo]:53", "[fe80::1%lo]:53");

        vd_addr a;
        cr_assert_eq(vd_addr_parse("192.0.2.1", 5353, &a), 0);
        cr_assert_str_eq(addr_text(&a), "192.0.2.1:5353", "default port not used");
        cr_assert_eq(a.len, sizeof(struct sockaddr_in));
        cr_assert_eq(vd_addr_parse("::1", 53, &a), 0);
        cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
}

Test(config, addr_parse_rejects)
{
        const char *bad[] = {"",
                             "127.0.0.1:",
                             "127.0.0.1:0",
                             "127.0.0.1:65536",
                             "127.0.0.1:99999999999",
                             "127.0.0.1:-1",
                             "127.0.0.1:+53",
                             "127.0.0.1:53x",
                             "127.0.0.1: 53",
                             " 127.0.0.1",
                             "127.1",
                             "256.0.0.1",
                             "1.2.3.4.5",
                             "localhost",
                             "localhost:53",
                             "[::1]:",
                             "[::1]:0",
                             "[::1]:65536",
                             "[::1",
                             "[]:53",
                             "[127.0.0.1]:53",
                             "[::1]53",
                             "::1::2",
                             "fe80::1%",
                             "fe80::1%nosuchif0",
                             "garbage"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                vd_addr a;
                cr_assert_eq(vd_addr_parse(bad[i], 53, &a), -EINVAL, "accepted '%s'", bad[i]);
        }
        vd_addr a;
        cr_assert_eq(vd_addr_parse("127.0.0.1", 0, &a), -EINVAL, "no port at all");
        cr_assert_eq(vd_addr_parse(NULL, 53, &a), -EINVAL);
}

Test(config, addr_equal)
{
        vd_addr a, b;
        cr_assert_eq(vd_addr_parse("[::1]:53", 53, &a), 0);
        cr_assert_eq(vd_addr_parse("0:0::1", 53, &b), 0);
        cr_assert(vd_addr_equal(&a, &b));
        cr_assert_eq(vd_addr_parse("[::1]:54", 53, &b), 0);
        cr_assert_not(vd_addr_equal(&a, &b), "ports differ");
        cr_assert_eq(vd_addr_parse("127.0.0.1", 53, &a), 0);
        cr_assert_eq(vd_addr_parse("127.0.0.1:53", 53, &b), 0);
        cr_assert(vd_addr_equal(&a, &b));
        cr_assert_eq(vd_addr_parse("[::ffff:127.0.0.1]:53", 53, &b), 0);
        cr_assert_not(vd_addr_equal(&a, &b), "families differ");
}

Test(config, addr_format_truncates_safely)
{
        vd_addr a;
        char out[8];
        cr_assert_eq(vd_addr_parse("[2001:db8::1]:5353", 53, &a), 0);
        memset(out, 'x', sizeof(out));
        vd_addr_format(&a, out, sizeof(out));
        cr_assert_str_eq(out, "[2001:d");
}

/* ---- access control, limits, user ----------------------------------------------------------- */

static const char *cidr_text(const vd_cidr *c)
{
        static char out[4][INET6_ADDRSTRLEN + 8];
        static int next;
        char *buf = out[next++ % 4];
        char host[INET6_ADDRSTRLEN];
        const void *addr = c->ss.ss_family == AF_INET
                               ? (const void *)&((const struct sockaddr_in *)&c->ss)->sin_addr
                               : (const void *)&((const struct sockaddr_in6 *)&c->ss)->sin6_addr;
        cr_assert_not_null(inet_ntop(c->ss.ss_family, addr, host, sizeof(host)));
        snprintf(buf, INET6_ADDRSTRLEN + 8, "%s/%u", host, c->prefix);
        return buf;
}

static const char *hardening_yaml = "allow:\n"
                                    "  - 10.20.0.0/16\n"
                                    "  - 2001:db8::/32\n"
                                    "  - 192.0.2.1\n"
                                    "deny_action: drop\n"
                                    "rrl_responses_per_second: 50\n"
                                    "rrl_slip: 0\n"
                                    "rrl_ipv4_prefix: 32\n"
                                    "rrl_ipv6_prefix: 64\n"
                                    "tcp_max_connections_per_client: 8\n"
                                    "tcp_max_queries_per_connection: 1000\n"
                                    "max_pending_per_client: 25\n"
                                    "user: vpcdns\n";

Test(config, hardening_keys_from_file)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = load_text(&cfg, hardening_yaml, &err, NULL);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_allow, 3);
        cr_assert_str_eq(cidr_text(&cfg.allow[0]), "10.20.0.0/16");
        cr_assert_str_eq(cidr_text(&cfg.allow[1]), "2001:db8::/32");
        cr_assert_str_eq(cidr_text(&cfg.allow[2]), "192.0.2.1/32");
        cr_assert_eq(cfg.deny_action, VD_DENY_DROP);
        cr_assert_eq(cfg.rrl_responses_per_second, 50);
        cr_assert_eq(cfg.rrl_slip, 0);
        cr_assert_eq(cfg.rrl_ipv4_prefix, 32);
        cr_assert_eq(cfg.rrl_ipv6_prefix, 64);
        cr_assert_eq(cfg.tcp_max_connections_per_client, 8);
        cr_assert_eq(cfg.tcp_max_queries_per_connection, 1000);
        cr_assert_eq(cfg.max_pending_per_client, 25);
        cr_assert_str_eq(cfg.user, "vpcdns");

        /* finalize keeps an explicit list: no default prefix is added to it */
        cr_assert_eq(vd_config_finalize(&cfg, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_allow, 3);
        vd_config_free(&cfg);
        cr_assert_null(cfg.user, "vd_config_free must free and clear user");
}

Test(config, hardening_keys_single_values_and_refuse)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cfg.deny_action = VD_DENY_DROP;
        int rc = load_text(&cfg,
                           "allow: fd00::/8\ndeny_action: refuse\nuser: '65534'\n"
                           "tcp_max_queries_per_connection: 0\nrrl_slip: 10\n",
                           &err, NULL);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_allow, 1);
        cr_assert_str_eq(cidr_text(&cfg.allow[0]), "fd00::/8");
        cr_assert_eq(cfg.deny_action, VD_DENY_REFUSE);
        cr_assert_str_eq(cfg.user, "65534");
        cr_assert_eq(cfg.rrl_slip, 10);
        vd_config_free(&cfg);
}

Test(config, finalize_fills_the_default_allow_list)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(vd_config_finalize(&cfg, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_allow, 9);
        const char *want[] = {"127.0.0.0/8",   "::1/128",        "10.0.0.0/8",
                              "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                              "fe80::/10",     "fc00::/7",       "100.64.0.0/10"};
        for (size_t i = 0; i < 9; i++)
                cr_assert_str_eq(cidr_text(&cfg.allow[i]), want[i]);
        vd_config_free(&cfg);
}

Test(config, finalize_checks_hardening_ranges)
{
        struct {
                size_t offset;
                unsigned value;
                const char *needle;
        } cases[] = {
            {offsetof(vd_config, rrl_ipv4_prefix), 7,
             "rrl_ipv4_prefix: expected an integer from 8 to 32"},
            {offsetof(vd_config, rrl_ipv6_prefix), 129,
             "rrl_ipv6_prefix: expected an integer from 16 to 128"},
            {offsetof(vd_config, max_pending_per_client), 0, "max_pending_per_client"},
            {offsetof(vd_config, tcp_max_connections_per_client), 0,
             "tcp_max_connections_per_client"},
            {offsetof(vd_config, rrl_slip), 11, "rrl_slip"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                vd_config cfg;
                vd_error err = {{0}};
                vd_config_init(&cfg);
                *(unsigned *)((char *)&cfg + cases[i].offset) = cases[i].value;
                cr_assert_lt(vd_config_finalize(&cfg, NULL, &err), 0, "%s", cases[i].needle);
                cr_assert_not_null(strstr(err.msg, cases[i].needle), "'%s' lacks '%s'", err.msg,
                                   cases[i].needle);
                vd_config_free(&cfg);
        }
}

Test(config, error_hardening_keys)
{
        expect_error("allow: []\n", "1:8",
                     "expected at least one prefix for 'allow' (an empty list would refuse every "
                     "client; omit the key for the default), got an empty list");
        expect_error("allow:\n  - 10.0.0.0/8\n  - 10.1.2.3/16\n", "3:5",
                     "expected an address prefix (10.0.0.0/8, fd00::/8, 192.0.2.1) with the host "
                     "bits zero, got '10.1.2.3/16' (host bits set: did you mean 10.1.0.0/16?)");
        expect_error("allow: [fd00::1/8]\n", "1:9", "did you mean fd00::/8?");
        expect_error("allow: [10.0.0.0/33]\n", "1:9",
                     "expected an address prefix (10.0.0.0/8, fd00::/8, 192.0.2.1), got "
                     "'10.0.0.0/33'");
        expect_error("allow: [corp.example]\n", "1:9", "got 'corp.example'");
        expect_error("allow: [10.0.0.0/08]\n", "1:9",
                     "prefix (10.0.0.0/8, fd00::/8, 192.0.2.1), got");
        expect_error("allow:\n  net: 10.0.0.0/8\n", "2:3",
                     "expected a list of address prefixes for 'allow', got a mapping");
        expect_error("deny_action: block\n", "1:14",
                     "expected refuse or drop for 'deny_action', got 'block'");
        expect_error("deny_action: [drop]\n", "1:14", "got a list");
        expect_error("rrl_ipv4_prefix: 7\n", "1:18", "from 8 to 32 for 'rrl_ipv4_prefix', got '7'");
        expect_error("rrl_ipv4_prefix: 33\n", "1:18", "got '33'");
        expect_error("rrl_ipv6_prefix: 15\n", "1:18", "from 16 to 128 for 'rrl_ipv6_prefix'");
        expect_error("rrl_ipv6_prefix: 129\n", "1:18", "got '129'");
        expect_error("rrl_slip: 11\n", "1:11", "from 0 to 10 for 'rrl_slip'");
        expect_error("rrl_responses_per_second: -1\n", "1:27", "from 0 to 1000000");
        expect_error("tcp_max_connections_per_client: 0\n", "1:33", "from 1 to 1000000");
        expect_error("tcp_max_queries_per_connection: many\n", "1:33", "got 'many'");
        expect_error("max_pending_per_client: 0\n", "1:25",
                     "from 1 to 1000000 for 'max_pending_per_client', got '0'");
        expect_error("user:\n", "1:6",
                     "expected a user name for 'user' (vpcdns, nobody), got nothing");
        expect_error("user: ''\n", "1:7", "got ''");
        expect_error("user: 'dns user'\n", "1:7", "got 'dns user'");
        expect_error("user: [nobody]\n", "1:7", "got a list");
        expect_error("user: -root\n", "1:7", "got '-root'");
        expect_error("workers: 2\nuser: a\nuser: b\n", "3:1", "('user' is at line 2)");
}

Test(config, error_too_many_allow_prefixes)
{
        char text[4096];
        size_t len = (size_t)snprintf(text, sizeof(text), "allow:\n");
        for (int i = 0; i <= VD_MAX_ACL; i++)
                len += (size_t)snprintf(text + len, sizeof(text) - len, "  - 10.0.%d.0/24\n", i);
        expect_error(text, "66:5", "expected at most 64 allow prefixes, got '10.0.64.0/24'");
}

Test(config, rejected_file_keeps_allow_and_user)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(load_text(&cfg, "allow: 10.0.0.0/8\nuser: first\n", &err, NULL), 0, "%s",
                     err.msg);
        cr_assert_lt(load_text(&cfg, "allow: 192.0.2.0/24\nuser: second\nworkers: 0\n", &err, NULL),
                     0);
        cr_assert_eq(cfg.n_allow, 1);
        cr_assert_str_eq(cidr_text(&cfg.allow[0]), "10.0.0.0/8");
        cr_assert_str_eq(cfg.user, "first");
        vd_config_free(&cfg);
}

Test(config, allow_and_user_flags_override_the_file)
{
        const char *path = write_file("acl.yaml", "allow: [10.0.0.0/8, 192.168.0.0/16]\n"
                                                  "user: fromfile\n");
        char **argv = ARGS("--allow", "203.0.113.0/24", "--config", (char *)path, "--allow=::1",
                           "--user", "nobody");
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, argv, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_allow, 2, "--allow replaces the file's list");
        cr_assert_str_eq(cidr_text(&cfg.allow[0]), "203.0.113.0/24");
        cr_assert_str_eq(cidr_text(&cfg.allow[1]), "::1/128");
        cr_assert_str_eq(cfg.user, "nobody");
        vd_config_free(&cfg);

        char **keep = ARGS("--config", (char *)path, "--workers", "2");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, keep, &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_allow, 2);
        cr_assert_str_eq(cidr_text(&cfg.allow[1]), "192.168.0.0/16");
        cr_assert_str_eq(cfg.user, "fromfile");
        vd_config_free(&cfg);
}

Test(config, allow_and_user_flag_errors)
{
        char **a = ARGS("--allow", "10.0.0.1/8");
        expect_usage_error(a, "--allow: expected an address prefix (10.0.0.0/8, fd00::/8, "
                              "192.0.2.1) with the host bits zero, got '10.0.0.1/8' (did you mean "
                              "10.0.0.0/8?)");
        char **b = ARGS("--allow", "everyone");
        expect_usage_error(b, "--allow: expected an address prefix (10.0.0.0/8, fd00::/8, "
                              "192.0.2.1), got 'everyone'");
        char **c = ARGS("--allow");
        expect_usage_error(c, "flag '--allow' needs an argument");
        char **d = ARGS("--user", "");
        expect_usage_error(d, "--user: expected a user name, got ''");
        char **e = ARGS("--user", "a:b");
        expect_usage_error(e, "--user: expected a user name, got 'a:b'");

        char many[VD_MAX_ACL + 2][32];
        char *argv[2 * (VD_MAX_ACL + 1) + 2];
        int argc = 0;
        argv[argc++] = "vpcdns";
        for (int i = 0; i <= VD_MAX_ACL; i++) {
                snprintf(many[i], sizeof(many[i]), "10.%d.0.0/16", i);
                argv[argc++] = "--allow";
                argv[argc++] = many[i];
        }
        argv[argc] = NULL;
        expect_usage_error(argv, "--allow: expected at most 64 prefixes");
}

/* Every key of the table is documented, as "key:", in the example config that users copy
 * from (docs: test_config_docs.c holds the comments to the table's ranges and defaults). */
Test(config, example_config_documents_every_key)
{
        FILE *f = fopen(VD_SOURCE_DIR "/zones/example/vpcdns.yaml", "r");
        cr_assert_not_null(f);
        static char example[65536];
        size_t n = fread(example, 1, sizeof(example) - 1, f);
        fclose(f);
        example[n] = '\0';

        size_t n_keys;
        const vd_config_key *keys = vd_config_keys(&n_keys);
        for (size_t i = 0; i < n_keys; i++) {
                char needle[80], commented[84];
                snprintf(needle, sizeof(needle), "\n%s:", keys[i].name);
                snprintf(commented, sizeof(commented), "\n# %s:", keys[i].name);
                cr_assert(strstr(example, needle) != NULL || strstr(example, commented) != NULL,
                          "zones/example/vpcdns.yaml does not document '%s'", keys[i].name);
        }
        cr_assert_eq(n_keys, 42, "every key of the table was checked");
}

Test(config, cache_keys_and_their_checks)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(cfg.cache_size, 100000);
        cr_assert_eq(cfg.cache_servfail_ttl, 5);
        cr_assert_eq(load_text(&cfg,
                               "cache_size: 0\ncache_min_ttl: 30\ncache_max_ttl: 600\n"
                               "cache_max_negative_ttl: 120\ncache_servfail_ttl: 0\n",
                               &err, NULL),
                     0, "%s", err.msg);
        cr_assert_eq(cfg.cache_size, 0);
        cr_assert_eq(cfg.cache_min_ttl, 30);
        cr_assert_eq(cfg.cache_max_ttl, 600);
        cr_assert_eq(cfg.cache_max_negative_ttl, 120);
        cr_assert_eq(cfg.cache_servfail_ttl, 0);
        vd_config_free(&cfg);

        vd_config_init(&cfg);
        cr_assert_lt(load_text(&cfg, "cache_servfail_ttl: 301\n", &err, NULL), 0);
        cr_assert_not_null(strstr(err.msg, "1:21"), "%s", err.msg);
        vd_config_free(&cfg);

        vd_config_init(&cfg);
        cr_assert_eq(load_text(&cfg, "cache_min_ttl: 700\ncache_max_ttl: 600\n", &err, NULL), 0);
        cfg.n_upstream = 1;
        vd_addr_parse("127.0.0.1:9", 53, &cfg.upstream[0]);
        cr_assert_lt(vd_config_finalize(&cfg, NULL, &err), 0);
        cr_assert_not_null(strstr(err.msg, "cache_min_ttl (700) is above cache_max_ttl (600)"),
                           "%s", err.msg);
        vd_config_free(&cfg);
}

/* ---- forwarding rules and the upstream settings --------------------------------------------- */

Test(config, forwarding_defaults)
{
        vd_config cfg;
        vd_config_init(&cfg);
        cr_assert_eq(cfg.n_rules, 0);
        cr_assert_eq(cfg.upstream_max_qps, 0, "the upstream budget is off by default");
        cr_assert_eq(cfg.upstream_ports, 16);
        cr_assert(!cfg.upstream_0x20);
        cr_assert_eq(cfg.stale_max, 3600);
        cr_assert_eq(cfg.stale_answer_ms, 1800);
        cr_assert(cfg.prefetch);
        vd_config_free(&cfg);
}

Test(config, forward_rules_from_file)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        int rc = load_text(&cfg,
                           "forward:\n"
                           "  - domain: Corp.Example\n"
                           "    servers: [10.1.0.2, \"[fd00::53]:5353\"]\n"
                           "  - domain: public.corp.example.\n"
                           "    servers: default\n"
                           "  - servers: 192.0.2.9:5300\n"
                           "    domain: lab.corp.example\n"
                           "upstream_max_qps: 1000\n"
                           "upstream_ports: 64\n"
                           "upstream_0x20: true\n"
                           "stale_max: 0\n"
                           "stale_answer_ms: 250\n"
                           "prefetch: false\n",
                           &err, NULL);
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_eq(cfg.n_rules, 3);
        cr_assert_str_eq(cfg.rules[0].domain, "corp.example.");
        cr_assert(!cfg.rules[0].use_default);
        cr_assert_eq(cfg.rules[0].n_servers, 2);
        cr_assert_str_eq(addr_text(&cfg.rules[0].servers[0]), "10.1.0.2:53");
        cr_assert_str_eq(addr_text(&cfg.rules[0].servers[1]), "[fd00::53]:5353");
        cr_assert_str_eq(cfg.rules[1].domain, "public.corp.example.");
        cr_assert(cfg.rules[1].use_default);
        cr_assert_eq(cfg.rules[1].n_servers, 0);
        cr_assert_str_eq(cfg.rules[2].domain, "lab.corp.example.");
        cr_assert_eq(cfg.rules[2].n_servers, 1);
        cr_assert_str_eq(addr_text(&cfg.rules[2].servers[0]), "192.0.2.9:5300");
        cr_assert_eq(cfg.upstream_max_qps, 1000);
        cr_assert_eq(cfg.upstream_ports, 64);
        cr_assert(cfg.upstream_0x20);
        cr_assert_eq(cfg.stale_max, 0);
        cr_assert_eq(cfg.stale_answer_ms, 250);
        cr_assert(!cfg.prefetch);

        /* A second file without forward keeps the rules; one with forward replaces them. */
        cr_assert_eq(load_text(&cfg, "workers: 2\n", &err, NULL), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_rules, 3);
        cr_assert_eq(load_text(&cfg, "forward: []\n", &err, NULL), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_rules, 0);
        vd_config_free(&cfg);
}

Test(config, forward_rule_errors_name_the_place)
{
        expect_error("forward: corp.example\n", "1:10", "a list of forward rules");
        expect_error("forward:\n  - corp.example\n", "2:5", "expected a rule {domain: NAME");
        expect_error("forward:\n  - domain: bad..name\n    servers: default\n", "2:13",
                     "a domain name for 'domain'");
        expect_error("forward:\n  - domain: '*.corp.example'\n    servers: default\n", "2:13",
                     "got '*.corp.example'");
        expect_error("forward:\n  - domain: corp.example\n", "2:5", "a rule without 'servers'");
        expect_error("forward:\n  - servers: default\n", "2:5", "a rule without 'domain'");
        expect_error("forward:\n  - domain: corp.example\n    servers: []\n", "3:14",
                     "at least one address");
        expect_error("forward:\n  - domain: corp.example\n    servers: [10.0.0.2, nowhere]\n",
                     "3:25", "got 'nowhere'");
        expect_error("forward:\n  - domain: corp.example\n    servers: defaults\n", "3:14",
                     "got 'defaults'");
        expect_error("forward:\n  - domain: corp.example\n    servers: default\n    zone: x\n",
                     "4:5", "domain or servers in a forward rule, got 'zone'");
        expect_error("forward:\n"
                     "  - {domain: corp.example, servers: default}\n"
                     "  - {domain: CORP.example., servers: [10.0.0.2]}\n",
                     "3:14", "each domain once in 'forward' (corp.example. is at line 2)");
        expect_error("upstream_0x20: yes please\n", "1:16", "true or false for 'upstream_0x20'");
        expect_error("prefetch: 1\n", "1:11", "true or false for 'prefetch'");
        expect_error("upstream_ports: 0\n", "1:17", "an integer from 1 to 256");
        expect_error("upstream_ports: 257\n", "1:17", "an integer from 1 to 256");
        expect_error("stale_answer_ms: 99\n", "1:18", "an integer from 100 to 60000");
        expect_error("stale_max: 604801\n", "1:12", "an integer from 0 to 604800");
        expect_error("upstream_max_qps: 1000001\n", "1:19", "an integer from 0 to 1000000");
}

Test(config, at_most_64_rules)
{
        static char text[65 * 64 + 16];
        size_t len = (size_t)snprintf(text, sizeof(text), "forward:\n");
        for (int i = 0; i < VD_MAX_RULES + 1; i++)
                len += (size_t)snprintf(text + len, sizeof(text) - len,
                                        "  - {domain: d%d.example, servers: default}\n", i);
        expect_error(text, "66:5", "at most 64 forward rules");
}

Test(config, rule_server_must_not_be_ourselves)
{
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(load_text(&cfg,
                               "listen: 127.0.0.1:5300\nupstream: 192.0.2.1\n"
                               "forward:\n  - {domain: corp.example, servers: [127.0.0.1:5300]}\n",
                               &err, NULL),
                     0, "%s", err.msg);
        cr_assert_lt(vd_config_finalize(&cfg, NULL, &err), 0);
        cr_assert_not_null(strstr(err.msg, "forward: rule for corp.example.: server "
                                           "127.0.0.1:5300 is one of our own listen addresses"),
                           "%s", err.msg);
        vd_config_free(&cfg);

        vd_config_init(&cfg);
        cr_assert_eq(load_text(&cfg,
                               "listen: 127.0.0.1:5300\nupstream: 192.0.2.1\n"
                               "forward:\n  - {domain: corp.example, servers: [127.0.0.1:5301]}\n",
                               &err, NULL),
                     0, "%s", err.msg);
        cr_assert_eq(vd_config_finalize(&cfg, NULL, &err), 0, "%s", err.msg);
        vd_config_free(&cfg);
}

/* The command line reads the file into a copy first: rules survive the copy, and a failing
 * command line leaves the caller's rules alone. */
Test(config, rules_survive_the_command_line)
{
        write_file("rules.yaml", "forward:\n  - {domain: corp.example, servers: [10.0.0.2]}\n");
        char path[256];
        snprintf(path, sizeof(path), "%s/rules.yaml", tmpdir);
        vd_config cfg;
        vd_error err = {{0}};
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, ARGS("--config", path, "--workers", "2"), &err), 0, "%s",
                     err.msg);
        cr_assert_eq(cfg.n_rules, 1);
        cr_assert_str_eq(cfg.rules[0].domain, "corp.example.");
        cr_assert_eq(run_args(&cfg, ARGS("--config", path, "--workers", "0"), &err), -EINVAL);
        cr_assert_eq(cfg.n_rules, 1, "a rejected command line changed the rules");
        cr_assert_str_eq(cfg.rules[0].domain, "corp.example.");
        cr_assert_eq(run_args(&cfg, ARGS("--workers", "3"), &err), 0, "%s", err.msg);
        cr_assert_eq(cfg.n_rules, 1, "the copy of the config lost the rules");
        cr_assert_str_eq(cfg.rules[0].domain, "corp.example.");
        vd_config_free(&cfg);
}

/* state_dir: a path relative to the config file's directory, or the flag's argument as given;
 * shown among the changed keys; an empty value names the place. */
Test(config, state_dir_from_file_and_flag)
{
        vd_config cfg;
        vd_error err = {{0}};
        char expected[300], value[300];
        vd_config_init(&cfg);
        cr_assert_null(cfg.state_dir);
        cr_assert_eq(load_text(&cfg, "state_dir: state\n", &err, NULL), 0, "%s", err.msg);
        snprintf(expected, sizeof(expected), "%s/state", tmpdir);
        cr_assert_str_eq(cfg.state_dir, expected);
        cr_assert(vd_config_key_value(&cfg, vd_config_key_find("state_dir"), value, sizeof(value)));
        cr_assert_str_eq(value, expected);
        vd_config_free(&cfg);

        char **argv = ARGS("--state-dir", "/var/lib/vpcdns");
        vd_config_init(&cfg);
        cr_assert_eq(run_args(&cfg, argv, &err), 0, "%s", err.msg);
        cr_assert_str_eq(cfg.state_dir, "/var/lib/vpcdns");
        vd_config_free(&cfg);

        expect_error("state_dir: ''\n", "1:12", "a directory path for 'state_dir'");
}

/* The reload flags of the key table: what binds sockets, threads or shared tables at the start
 * needs a restart; what a worker copies or rebuilds on its own loop does not. */
Test(config, reload_flags_of_the_key_table)
{
        static const char *const restart[] = {"listen",           "workers",   "user",
                                              "metrics_listen",   "query_log", "cache_size",
                                              "upstream_max_qps", "eni_health"};
        static const char *const live[] = {"upstream",
                                           "forward",
                                           "allow",
                                           "deny_action",
                                           "log_level",
                                           "snapshot",
                                           "zone",
                                           "state_dir",
                                           "tcp_max_connections_per_client",
                                           "lameduck_ms",
                                           "rrl_responses_per_second",
                                           "rrl_slip"};
        for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++)
                cr_assert(vd_config_key_find(restart[i])->restart, "%s", restart[i]);
        for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
                cr_assert_not(vd_config_key_find(live[i])->restart, "%s", live[i]);
}

/* vd_config_key_same tells a changed key from an unchanged one, lists item by item. */
Test(config, key_same_compares_values_and_lists)
{
        vd_config a, b;
        vd_error err = {{0}};
        const char *text = "listen: [127.0.0.1:5300]\nupstream: 192.0.2.1\nworkers: 2\n"
                           "forward: [{domain: corp.example, servers: [192.0.2.9]}]\n"
                           "user: nobody\n";
        vd_config_init(&a);
        vd_config_init(&b);
        cr_assert_eq(load_text(&a, text, &err, NULL), 0, "%s", err.msg);
        cr_assert_eq(load_text(&b, text, &err, NULL), 0, "%s", err.msg);
        size_t n;
        const vd_config_key *keys = vd_config_keys(&n);
        for (size_t i = 0; i < n; i++)
                cr_assert(vd_config_key_same(&a, &b, &keys[i]), "%s", keys[i].name);
        vd_config_free(&b);
        vd_config_init(&b);
        cr_assert_eq(load_text(&b,
                               "listen: [127.0.0.1:5301]\nupstream: 192.0.2.1\nworkers: 3\n"
                               "forward: [{domain: corp.example, servers: [192.0.2.8]}]\n"
                               "user: daemon\n",
                               &err, NULL),
                     0, "%s", err.msg);
        static const char *const differ[] = {"listen", "workers", "forward", "user"};
        for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++)
                cr_assert_not(vd_config_key_same(&a, &b, vd_config_key_find(differ[i])), "%s",
                              differ[i]);
        cr_assert(vd_config_key_same(&a, &b, vd_config_key_find("upstream")));
        vd_config_free(&a);
        vd_config_free(&b);
}

Test(config, az_keys_and_flags)
{
        vd_config cfg;
        vd_error err = {{0}};
        char value[64];
        vd_config_init(&cfg);
        cr_assert_str_eq(cfg.az, "");
        cr_assert_eq(cfg.az_affinity, VD_AZ_AFFINITY_PREFER);
        cr_assert_eq(load_text(&cfg, "az: use1-az4\naz_affinity: strict\n", &err, NULL), 0, "%s",
                     err.msg);
        cr_assert_str_eq(cfg.az, "use1-az4");
        cr_assert_eq(cfg.az_affinity, VD_AZ_AFFINITY_STRICT);
        const vd_config_key *k = vd_config_key_find("az_affinity");
        cr_assert(vd_config_key_value(&cfg, k, value, sizeof(value)));
        cr_assert_str_eq(value, "strict");
        cr_assert(vd_config_key_value(&cfg, vd_config_key_find("az"), value, sizeof(value)));
        cr_assert_str_eq(value, "use1-az4");
        cr_assert_eq(run_args(&cfg, ARGS("--az", "imds", "--az-affinity", "off"), &err), 0, "%s",
                     err.msg);
        cr_assert_str_eq(cfg.az, "imds");
        cr_assert_eq(cfg.az_affinity, VD_AZ_AFFINITY_OFF);
        cr_assert_eq(run_args(&cfg, ARGS("--dump", "--client", "10.0.1.5"), &err), 0, "%s",
                     err.msg);
        cr_assert_str_eq(cfg.dump_client, "10.0.1.5");
        vd_config_free(&cfg);

        expect_error("az: us east 1a\n", "1:5",
                     "expected an AZ name or ID (us-east-1a, use1-az4) or imds for 'az', got "
                     "'us east 1a'");
        expect_error("az: [use1-az4]\n", "1:5", "got a list");
        expect_error("az_affinity: always\n", "1:14",
                     "expected off, prefer or strict for 'az_affinity', got 'always'");
        expect_usage_error(ARGS("--az", "us-east-1a-much-too-long-for-an-az-name"),
                           "--az: expected an AZ name or ID");
        expect_usage_error(ARGS("--az-affinity", "on"), "--az-affinity: expected off, prefer or "
                                                        "strict, got 'on'");
        expect_usage_error(ARGS("--dump", "--client", "nowhere"), "--client: expected a client "
                                                                  "address");
        expect_usage_error(ARGS("--client", "10.0.1.5"), "--client needs --dump");
}

/* eni_health: off unless set; a mapping whose omitted fields take the defaults; each field in
 * its range, the timeout within the interval; errors name the line and the field. */
Test(config, eni_health_mapping_defaults_and_ranges)
{
        vd_config cfg;
        vd_error err = {{0}};
        char value[128];
        const vd_config_key *k = vd_config_key_find("eni_health");
        cr_assert_not_null(k);
        vd_config_init(&cfg);
        cr_assert_not(cfg.eni_health.on);
        cr_assert_not(vd_config_key_value(&cfg, k, value, sizeof(value)));
        cr_assert_eq(load_text(&cfg, "eni_health: {interval_ms: 200, fall: 3}\n", &err, NULL), 0,
                     "%s", err.msg);
        cr_assert(cfg.eni_health.on);
        cr_assert_eq(cfg.eni_health.port, 443);
        cr_assert_eq(cfg.eni_health.interval_ms, 200);
        cr_assert_eq(cfg.eni_health.timeout_ms, 200, "the default timeout fits the interval");
        cr_assert_eq(cfg.eni_health.fall, 3);
        cr_assert_eq(cfg.eni_health.rise, 2);
        cr_assert(vd_config_key_value(&cfg, k, value, sizeof(value)));
        cr_assert_str_eq(value, "port=443 interval_ms=200 timeout_ms=200 fall=3 rise=2");
        vd_config_free(&cfg);

        vd_config_init(&cfg);
        cr_assert_eq(load_text(&cfg, "eni_health: {}\n", &err, NULL), 0, "%s", err.msg);
        cr_assert(cfg.eni_health.on);
        cr_assert_eq(cfg.eni_health.interval_ms, 5000);
        cr_assert_eq(cfg.eni_health.timeout_ms, 1000);
        vd_config_free(&cfg);

        expect_error("eni_health: true\n", "1:13", "ENI probing {port");
        expect_error("eni_health: {port: 0}\n", "1:20", "an integer from 1 to 65535 for 'port'");
        expect_error("eni_health: {fall: 101}\n", "1:20", "an integer from 1 to 100 for 'fall'");
        expect_error("eni_health: {rise: two}\n", "1:20", "for 'rise' in 'eni_health'");
        expect_error("eni_health: {interval_ms: 50}\n", "1:27", "from 100 to 3600000");
        expect_error("eni_health: {interval_ms: 500, timeout_ms: 600}\n", "1:44",
                     "a 'timeout_ms' of at most 'interval_ms' (500)");
        expect_error("eni_health: {prot: 443}\n", "1:14", "port, interval_ms, timeout_ms");
        expect_error("eni_health: {fall: 2, fall: 3}\n", "1:23", "each key of 'eni_health' once");
}

/* The synopsis at the top of --help (up to the first empty line) names every flag, so a new
 * flag cannot be left out of it. */
Test(config, usage_synopsis_names_every_flag)
{
        const char *u = vd_config_usage();
        const char *end = strstr(u, "\n\n");
        cr_assert_not_null(end);
        char *synopsis = strndup(u, (size_t)(end - u));
        size_t n;
        const vd_config_flag *flags = vd_config_flags(&n);
        for (size_t i = 0; i < n; i++) {
                char text[64];
                snprintf(text, sizeof(text), "[--%s", flags[i].name);
                if (flags[i].short_name != 0)
                        snprintf(text, sizeof(text), "|--%s]", flags[i].name);
                cr_assert_not_null(strstr(synopsis, text), "--help's synopsis lacks --%s",
                                   flags[i].name);
        }
        free(synopsis);
}

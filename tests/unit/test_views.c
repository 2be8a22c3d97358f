/* test_views.c — several VPCs in one snapshot: the AWS loader's options (a VPC filter, the
 * refusal of several VPCs, inbound clients), the choice of a view for a client address
 * (resolver/snapshot_views.c), the build of a root with views (resolver/views.c) and the keys
 * views and vpc of the config file. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/client.h"
#include "vpcdns/aws.h"
#include "vpcdns/config.h"
#include "vpcdns/log.h"
#include "vpcdns/snapshot.h"
#include "vpcdns/views.h"
#include "vpcdns/wire.h"

#define DATA VD_TEST_DATA "/aws/"
#define GOV_VPC "vpc-0606060606060606a"
#define CN_VPC "vpc-0c0c0c0c0c0c0c0c0"
#define VIEWS_DIR VD_TEST_DATA "/integ/views"
#define VPC_A "vpc-0a1a1a1a1a1a1a1a1"
#define VPC_B "vpc-0b2b2b2b2b2b2b2b2"

/* True when s answers name (text) with local data. */
static bool holds(const vd_snapshot *s, const char *name)
{
        dns_msg m;
        vd_query_info qi;
        client_query(&m, &qi, 1, name, VD_TYPE_A, false, false);
        return vd_snapshot_holds(s, &qi);
}

static int load(const char *dir, const vd_aws_options *opt, vd_snapshot **out, vd_aws_summary *sum,
                vd_error *err)
{
        vd_builder *b = vd_builder_new();
        cr_assert_not_null(b);
        vd_log_set_level(VD_LOG_ERROR);
        int rc = vd_aws_load_with(b, dir, opt, sum, err);
        if (rc == 0)
                rc = vd_builder_finish(b, out, err);
        vd_builder_free(b);
        return rc;
}

Test(views, loader_serves_the_chosen_vpc_only)
{
        vd_aws_options opt = {.vpc = GOV_VPC};
        vd_aws_summary sum;
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        memset(&sum, 0, sizeof(sum));
        cr_assert_eq(load(DATA "partitions", &opt, &s, &sum, &err), 0, "%s", err.msg);
        cr_expect(holds(s, "sts.us-gov-west-1.amazonaws.com"));
        cr_expect(holds(s, "vpce-0606060606060606a-gov00001.sts.us-gov-west-1.vpce.amazonaws.com"));
        cr_expect_not(holds(s, "sqs.cn-north-1.amazonaws.com.cn"));
        cr_expect_eq(sum.endpoints, 2);
        cr_expect_eq(sum.endpoints_served, 1);
        /* both VPCs are listed, served or not */
        cr_assert_eq(sum.n_vpcs, 2);
        cr_expect(vd_aws_has_vpc(&sum, GOV_VPC) && vd_aws_has_vpc(&sum, CN_VPC));
        cr_expect_not(vd_aws_has_vpc(&sum, "vpc-0123456789abcdef0"));
        cr_expect_eq(vd_aws_served_vpcs(&sum), 2);
        vd_snapshot_unref(s);
}

Test(views, several_vpcs_are_refused_naming_them_and_the_fix)
{
        vd_aws_options opt = {.one_vpc = true};
        vd_snapshot *s = NULL;
        vd_error err = {{0}};
        cr_assert_lt(load(DATA "partitions", &opt, &s, NULL, &err), 0);
        cr_expect_not_null(strstr(err.msg, "partitions/describe-vpc-endpoints.json: the snapshot "
                                           "serves endpoints of 2 VPCs"),
                           "%s", err.msg);
        cr_expect_not_null(strstr(err.msg, GOV_VPC), "%s", err.msg);
        cr_expect_not_null(strstr(err.msg, CN_VPC), "%s", err.msg);
        cr_expect_not_null(strstr(err.msg, "--vpc"), "%s", err.msg);
        cr_expect_not_null(strstr(err.msg, "views"), "%s", err.msg);
        /* one VPC: no refusal; without one_vpc: loaded as before */
        cr_assert_eq(load(DATA "ap-southeast-2", &opt, &s, NULL, &err), 0, "%s", err.msg);
        vd_snapshot_unref(s);
        cr_assert_eq(load(DATA "partitions", NULL, &s, NULL, &err), 0, "%s", err.msg);
        vd_snapshot_unref(s);
}

Test(views, inbound_clients_get_the_private_names_of_inbound_only_s3)
{
        vd_aws_options inside = {0}, inbound = {.inbound = true};
        vd_snapshot *a = NULL, *b = NULL;
        vd_error err = {{0}};
        cr_assert_eq(load(DATA "cases", &inside, &a, NULL, &err), 0, "%s", err.msg);
        cr_assert_eq(load(DATA "cases", &inbound, &b, NULL, &err), 0, "%s", err.msg);
        cr_expect_not(holds(a, "s3.us-west-2.amazonaws.com"));
        cr_expect_not(holds(a, "bucket.s3.us-west-2.amazonaws.com"));
        cr_expect(holds(b, "s3.us-west-2.amazonaws.com"));
        cr_expect(holds(b, "bucket.s3.us-west-2.amazonaws.com"));
        const char *vpce = "x.vpce-0a1b2c3d4e5f60009-s3inbd09.s3.us-west-2.vpce.amazonaws.com";
        cr_expect(holds(a, vpce) && holds(b, vpce));
        /* an endpoint without the option is the same for both */
        cr_expect_eq(holds(a, "sqs.us-west-2.amazonaws.com"),
                     holds(b, "sqs.us-west-2.amazonaws.com"));
        vd_snapshot_unref(a);
        vd_snapshot_unref(b);
}

/* A snapshot holding the one name NAME. */
static vd_snapshot *one_name(const char *name)
{
        uint8_t wire[VD_NAME_MAX], addr[4] = {192, 0, 2, 1};
        size_t len;
        vd_error err = {{0}};
        vd_snapshot *s = NULL;
        vd_builder *b = vd_builder_new();
        cr_assert_eq(vd_name_from_text(name, wire, &len), 0);
        cr_assert_eq(vd_builder_add_rr(b, wire, VD_TYPE_A, 60, addr, 4, name, &err), 0);
        cr_assert_eq(vd_builder_finish(b, &s, &err), 0, "%s", err.msg);
        vd_builder_free(b);
        return s;
}

static vd_cidr cidr(const char *text)
{
        vd_cidr c;
        cr_assert_eq(vd_cidr_parse(text, &c), 0, "%s", text);
        return c;
}

static int view_of(const vd_snapshot *root, const char *addr)
{
        struct sockaddr_storage ss = client_addr(addr);
        return vd_snapshot_view_of(root, (const struct sockaddr *)&ss);
}

/* Views a (10.0.0.0/8, fd00::/8), b (10.1.0.0/16, 10.1.2.3/32 is c's, fd00:1::/32) and c. */
static vd_snapshot *three_views(bool with_default)
{
        static vd_cidr a[2], b[2], c[1];
        vd_error err = {{0}};
        a[0] = cidr("10.0.0.0/8");
        a[1] = cidr("fd00::/8");
        b[0] = cidr("10.1.0.0/16");
        b[1] = cidr("fd00:1::/32");
        c[0] = cidr("10.1.2.3/32");
        vd_view_spec specs[3] = {
            {.name = "a", .clients = a, .n_clients = 2, .snap = one_name("a.test")},
            {.name = "b", .clients = b, .n_clients = 2, .snap = one_name("b.test")},
            {.name = "c",
             .clients = c,
             .n_clients = 1,
             .snap = one_name("c.test"),
             .is_default = with_default},
        };
        vd_snapshot *root = one_name("zone.test");
        cr_assert_eq(vd_snapshot_set_views(root, specs, 3, &err), 0, "%s", err.msg);
        return root;
}

Test(views, the_most_specific_prefix_picks_the_view)
{
        vd_snapshot *root = three_views(false);
        cr_expect_eq(view_of(root, "10.9.9.9"), 0);
        cr_expect_eq(view_of(root, "10.1.9.9"), 1);
        cr_expect_eq(view_of(root, "10.1.2.3"), 2);
        cr_expect_eq(view_of(root, "10.1.2.4"), 1);
        cr_expect_eq(view_of(root, "fd00:2::1"), 0);
        cr_expect_eq(view_of(root, "fd00:1::1"), 1);
        cr_expect_eq(view_of(root, "::ffff:10.1.2.3"), 2); /* IPv4-mapped counts as IPv4 */
        cr_expect_eq(view_of(root, "192.0.2.1"), -1);
        cr_expect_eq(view_of(root, "2001:db8::1"), -1);
        cr_expect_eq(vd_snapshot_view_of(root, NULL), -1);
        cr_expect_eq(vd_snapshot_view_count(root), 3);
        const char *name = NULL;
        cr_expect_not_null(vd_snapshot_view(root, 1, &name));
        cr_expect_str_eq(name, "b");
        cr_expect_null(vd_snapshot_view(root, 3, &name));
        vd_snapshot_unref(root); /* frees the views too (valgrind and ASan check) */
}

Test(views, outsiders_are_refused_view_names_only_and_a_default_takes_them)
{
        vd_snapshot *root = three_views(false);
        struct sockaddr_in out = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0xC0000201)};
        bool outsider = false;
        const vd_snapshot *s = vd_snapshot_for_client(root, (struct sockaddr *)&out, &outsider);
        cr_expect(outsider);
        cr_expect_eq(s, root);
        dns_msg m;
        vd_query_info qi;
        client_query(&m, &qi, 1, "b.test", VD_TYPE_A, false, false);
        cr_expect(vd_snapshot_refuses(root, &qi));
        client_query(&m, &qi, 1, "zone.test", VD_TYPE_A, false, false);
        cr_expect_not(vd_snapshot_refuses(root, &qi));
        client_query(&m, &qi, 1, "www.example.com", VD_TYPE_A, false, false);
        cr_expect_not(vd_snapshot_refuses(root, &qi));
        vd_snapshot_unref(root);

        root = three_views(true);
        s = vd_snapshot_for_client(root, (struct sockaddr *)&out, &outsider);
        cr_expect_not(outsider);
        cr_expect_eq(s, vd_snapshot_view(root, 2, NULL));
        cr_expect_eq(vd_snapshot_view_of(root, NULL), 2);
        vd_snapshot_unref(root);
}

Test(views, without_views_a_snapshot_answers_everyone)
{
        vd_snapshot *s = one_name("zone.test");
        struct sockaddr_in6 a = {.sin6_family = AF_INET6};
        bool outsider = true;
        cr_expect_eq(vd_snapshot_for_client(s, (struct sockaddr *)&a, &outsider), s);
        cr_expect_not(outsider);
        cr_expect_eq(vd_snapshot_view_count(s), 0);
        cr_expect_eq(vd_snapshot_view_of(s, (struct sockaddr *)&a), -1);
        vd_snapshot_unref(s);
}

Test(views, data_build_makes_a_root_and_checks_each_views_vpc)
{
        char *dirs[] = {VIEWS_DIR};
        vd_config_view views[2];
        memset(views, 0, sizeof(views));
        snprintf(views[0].name, sizeof(views[0].name), "a");
        snprintf(views[0].vpc, sizeof(views[0].vpc), VPC_A);
        views[0].clients[0] = cidr("10.0.0.0/8");
        views[0].n_clients = 1;
        snprintf(views[1].name, sizeof(views[1].name), "b");
        snprintf(views[1].vpc, sizeof(views[1].vpc), VPC_B);
        views[1].clients[0] = cidr("fd00::/8");
        views[1].n_clients = 1;
        vd_data_sources src = {
            .snapshot_dirs = dirs, .n_snapshots = 1, .views = views, .n_views = 2};
        vd_load_totals t;
        vd_snapshot *root = NULL;
        vd_error err = {{0}};
        memset(&t, 0, sizeof(t));
        vd_log_set_level(VD_LOG_ERROR);
        cr_assert_eq(vd_data_build(&src, &root, &t, &err), 0, "%s", err.msg);
        cr_expect_eq(t.n_views, 2);
        cr_expect_eq(t.aws.endpoints, 4);
        cr_expect_eq(t.aws.endpoints_served, 4);
        cr_expect_eq(t.views[0].endpoints_served, 2);
        cr_expect_not(holds(root, "sqs.eu-west-1.amazonaws.com"));
        cr_expect(holds(vd_snapshot_view(root, 1, NULL), "athena.eu-west-1.amazonaws.com"));
        cr_expect_not(holds(vd_snapshot_view(root, 0, NULL), "athena.eu-west-1.amazonaws.com"));
        vd_snapshot_unref(root);

        /* a view of a VPC the data lacks */
        snprintf(views[1].vpc, sizeof(views[1].vpc), "vpc-0c3c3c3c3c3c3c3c3");
        memset(&t, 0, sizeof(t));
        cr_assert_lt(vd_data_build(&src, &root, &t, &err), 0);
        cr_expect_not_null(strstr(err.msg, "views: view 'b': vpc vpc-0c3c3c3c3c3c3c3c3 is not in "
                                           "the snapshot"),
                           "%s", err.msg);
        cr_expect_not_null(strstr(err.msg, VPC_A ", " VPC_B), "%s", err.msg);

        /* without views: refused; with vpc: that VPC only */
        src.n_views = 0;
        memset(&t, 0, sizeof(t));
        cr_assert_lt(vd_data_build(&src, &root, &t, &err), 0);
        cr_expect_not_null(strstr(err.msg, "2 VPCs"), "%s", err.msg);
        src.vpc = VPC_B;
        memset(&t, 0, sizeof(t));
        cr_assert_eq(vd_data_build(&src, &root, &t, &err), 0, "%s", err.msg);
        cr_expect(holds(root, "athena.eu-west-1.amazonaws.com"));
        cr_expect_eq(t.aws.endpoints_served, 2);
        vd_snapshot_unref(root);
}

/* The two endpoint files of one VPC each in two directories: refused together. */
Test(views, several_directories_of_different_vpcs_are_refused)
{
        char *dirs[] = {DATA "ap-southeast-2", VD_TEST_DATA "/integ/snapshot"};
        vd_data_sources src = {.snapshot_dirs = dirs, .n_snapshots = 2};
        vd_load_totals t;
        vd_snapshot *root = NULL;
        vd_error err = {{0}};
        memset(&t, 0, sizeof(t));
        vd_log_set_level(VD_LOG_ERROR);
        int rc = vd_data_build(&src, &root, &t, &err);
        if (rc == 0)
                vd_snapshot_unref(root);
        cr_assert_lt(rc, 0);
        cr_expect_not_null(strstr(err.msg, "snapshot directories: the snapshot serves endpoints "
                                           "of 2 VPCs"),
                           "%s", err.msg);
}

/* ---- the config file ---------------------------------------------------------------------- */

static char yaml_path[256];

static int load_yaml(vd_config *cfg, const char *text, vd_error *err)
{
        snprintf(yaml_path, sizeof(yaml_path), "/tmp/vpcdns-test-views-%d.yaml", (int)getpid());
        FILE *f = fopen(yaml_path, "w");
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
        vd_config_init(cfg);
        int rc = vd_config_load_file(cfg, yaml_path, err);
        unlink(yaml_path);
        return rc;
}

static void expect_yaml_error(const char *text, const char *where, const char *needle)
{
        vd_config cfg;
        vd_error err = {{0}};
        cr_assert_lt(load_yaml(&cfg, text, &err), 0, "accepted: %s", text);
        char prefix[300];
        snprintf(prefix, sizeof(prefix), "%s:%s: expected ", yaml_path, where);
        cr_expect(strncmp(err.msg, prefix, strlen(prefix)) == 0, "'%s' does not start '%s'",
                  err.msg, prefix);
        cr_expect_not_null(strstr(err.msg, needle), "'%s' lacks '%s'", err.msg, needle);
        vd_config_free(&cfg);
}

Test(views, config_reads_views_and_vpc)
{
        vd_config cfg;
        vd_error err = {{0}};
        cr_assert_eq(load_yaml(&cfg,
                               "views:\n"
                               "  - name: prod\n"
                               "    clients: [10.1.0.0/16, \"fd00:1::/48\"]\n"
                               "    vpc: " VPC_A "\n"
                               "  - {name: onprem, clients: 192.168.0.0/16, vpc: " VPC_A
                               ", inbound: true}\n"
                               "  - {name: rest, vpc: vpc-0b2b2b2b, default: true}\n",
                               &err),
                     0, "%s", err.msg);
        cr_assert_eq(cfg.n_views, 3);
        cr_expect_str_eq(cfg.views[0].name, "prod");
        cr_expect_eq(cfg.views[0].n_clients, 2);
        cr_expect_str_eq(cfg.views[0].vpc, VPC_A);
        cr_expect(cfg.views[1].inbound && !cfg.views[1].is_default);
        cr_expect_eq(cfg.views[1].n_clients, 1);
        cr_expect(cfg.views[2].is_default && cfg.views[2].n_clients == 0);
        cr_expect_eq(vd_config_finalize(&cfg, NULL, &err), 0, "%s", err.msg);
        vd_config_free(&cfg);

        cr_assert_eq(load_yaml(&cfg, "vpc: " VPC_B "\n", &err), 0, "%s", err.msg);
        cr_expect_str_eq(cfg.vpc, VPC_B);
        cfg.views[0] = (vd_config_view){.name = "x", .vpc = VPC_A, .is_default = true};
        cfg.n_views = 1;
        cr_expect_lt(vd_config_finalize(&cfg, NULL, &err), 0);
        cr_expect_not_null(strstr(err.msg, "vpc (" VPC_B ") and views"), "%s", err.msg);
        vd_config_free(&cfg);
}

Test(views, config_errors_name_the_place)
{
        const char *b = "  - {name: b, clients: [10.2.0.0/16], vpc: " VPC_B "}\n";
        char text[512];
        expect_yaml_error("vpc: vpc-xyz\n", "1:6", "a VPC id");
        expect_yaml_error("views: 3\n", "1:8", "a list of views");
        expect_yaml_error("views:\n  - {clients: [10.0.0.0/8], vpc: " VPC_A "}\n", "2:5",
                          "a view without 'name'");
        expect_yaml_error("views:\n  - {name: a, clients: [10.0.0.0/8]}\n", "2:5",
                          "a view without 'vpc'");
        expect_yaml_error("views:\n  - {name: a b, clients: [10.0.0.0/8], vpc: " VPC_A "}\n",
                          "2:12", "a view name");
        expect_yaml_error("views:\n  - {name: a, clients: [10.0.0.1/8], vpc: " VPC_A "}\n", "2:25",
                          "host bits set: did you mean 10.0.0.0/8?");
        expect_yaml_error("views:\n  - {name: a, clients: [nonsense], vpc: " VPC_A "}\n", "2:25",
                          "address prefix");
        expect_yaml_error("views:\n  - {name: a, clients: [], vpc: " VPC_A "}\n", "2:24",
                          "only the default view may have none");
        expect_yaml_error("views:\n  - {name: a, clients: [10.0.0.0/8], vpc: " VPC_A
                          ", colour: red}\n",
                          "2:66", "name, clients, vpc, default or inbound");
        expect_yaml_error("views:\n  - {name: a, clients: [10.0.0.0/8], vpc: " VPC_A
                          ", default: maybe}\n",
                          "2:75", "true or false for 'default'");
        snprintf(text, sizeof(text),
                 "views:\n%s  - {name: b, clients: [10.3.0.0/16], vpc: " VPC_A "}\n", b);
        expect_yaml_error(text, "3:12", "'b' again");
        snprintf(text, sizeof(text),
                 "views:\n%s  - {name: c, clients: [10.2.0.0/16], vpc: " VPC_A "}\n", b);
        expect_yaml_error(text, "3:24", "10.2.0.0/16, which view 'b' has too");
        snprintf(text, sizeof(text),
                 "views:\n  - {name: a, vpc: " VPC_A ", default: true}\n"
                 "  - {name: b, vpc: " VPC_B ", default: true}\n");
        expect_yaml_error(text, "3:52", "at most one view with default: true");
}

Test(views, vpc_ids_are_checked)
{
        cr_expect(vd_config_vpc_ok("vpc-0a1b2c3d"));
        cr_expect(vd_config_vpc_ok("vpc-0a1b2c3d4e5f60718"));
        cr_expect_not(vd_config_vpc_ok("vpc-0A1B2C3D"));
        cr_expect_not(vd_config_vpc_ok("vpc-0a1b2c3"));
        cr_expect_not(vd_config_vpc_ok("vpce-0a1b2c3d"));
        cr_expect_not(vd_config_vpc_ok(""));
        cr_expect_not(vd_config_vpc_ok(NULL));
}

/* Prefix lengths at the edges of the two words a prefix is kept in: /0, /64, /65, /128. */
Test(views, prefix_lengths_at_word_edges)
{
        static vd_cidr a[2], b[2], c[1];
        vd_error err = {{0}};
        a[0] = cidr("0.0.0.0/0");
        a[1] = cidr("fd00:1:2:3::/64");
        b[0] = cidr("fd00:1:2:3:8000::/65");
        b[1] = cidr("::/0");
        c[0] = cidr("fd00:1:2:3:8000::1/128");
        vd_view_spec specs[3] = {
            {.name = "a", .clients = a, .n_clients = 2, .snap = one_name("a.test")},
            {.name = "b", .clients = b, .n_clients = 2, .snap = one_name("b.test")},
            {.name = "c", .clients = c, .n_clients = 1, .snap = one_name("c.test")},
        };
        vd_snapshot *root = one_name("zone.test");
        cr_assert_eq(vd_snapshot_set_views(root, specs, 3, &err), 0, "%s", err.msg);
        cr_expect_eq(view_of(root, "192.0.2.1"), 0);
        cr_expect_eq(view_of(root, "fd00:1:2:3::1"), 0);
        cr_expect_eq(view_of(root, "fd00:1:2:3:7fff:ffff:ffff:ffff"), 0);
        cr_expect_eq(view_of(root, "fd00:1:2:3:8000::2"), 1);
        cr_expect_eq(view_of(root, "fd00:1:2:3:8000::1"), 2);
        cr_expect_eq(view_of(root, "fd00:1:2:4::1"), 1);
        cr_expect_eq(view_of(root, "2001:db8::1"), 1);
        vd_snapshot_unref(root);
}

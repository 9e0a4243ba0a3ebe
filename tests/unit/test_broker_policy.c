/* test_broker_policy.c — policy_decide: which grant a principal's token
 * request uses, and the order of refusals (docs/PROTOCOL.md). Runs on an
 * in-memory grant table; no vault, socket or audit store. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_int.h"

#define SCOPE_A "https://api.securitycenter.microsoft.com/.default"
#define SCOPE_B "https://graph.microsoft.com/.default"
#define TID "72f988bf-86f1-41af-91ab-2d7cd011db47"

static const char *config_text =
	"{\"state_dir\":\"/tmp/x\",\"principals\":["
	"{\"name\":\"siem\",\"match\":{\"uid\":1001},\"tenants\":[\"*\"]},"
	"{\"name\":\"tier1\",\"match\":{\"uid\":1002},\"tenants\":[\"contoso\"],"
	"\"scopes\":[\"" SCOPE_B "\"]},"
	"{\"name\":\"slow\",\"match\":{\"uid\":1003},\"rate\":{\"per_second\":0.5,\"burst\":2}},"
	"{\"name\":\"careful\",\"match\":{\"uid\":1004},\"require_purpose\":true}]}";

struct fixture {
	struct broker b;
	struct loop *loop;
};

static struct grant *make_grant(const char *id, const char *tenant_id, const char *name,
				const char *extra, int64_t imported_at)
{
	char json[2048];
	struct grant *g = NULL;
	struct cerr err = {{0}};

	snprintf(json, sizeof(json),
		 "{\"custody_grant\":1,\"tenant_id\":\"%s\",\"tenant_name\":\"%s\","
		 "\"client_id\":\"c\",\"client_secret\":\"s\",\"scopes\":[\"" SCOPE_A "\",\"" SCOPE_B
		 "\"]%s}",
		 tenant_id, name, extra);
	if (grant_validate(json, strlen(json), NULL, &g, NULL, &err) != 0)
		fail_msg("grant_validate: %s", err.msg);
	snprintf(g->id, sizeof(g->id), "%s", id);
	g->imported_at = imported_at;
	return g;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct cerr err = {{0}};

	assert_non_null(f);
	assert_int_equal(loop_new(&f->loop), 0);
	f->b.loop = f->loop;
	assert_int_equal(broker_config_parse(config_text, strlen(config_text), "t", "/", &f->b.cfg,
					     &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	grants_free(&f->b);
	suspensions_free(&f->b);
	rates_free(&f->b);
	broker_config_free(f->b.cfg);
	loop_free(f->loop);
	free(f);
	return 0;
}

static const struct principal_config *pr(struct fixture *f, const char *name)
{
	for (size_t i = 0; i < f->b.cfg->n_principals; i++)
		if (strcmp(f->b.cfg->principals[i].name, name) == 0)
			return &f->b.cfg->principals[i];
	fail_msg("no principal %s", name);
	return NULL;
}

static const char *decide(struct fixture *f, const char *who, const char *tenant,
			  const char *scope, const char *purpose, struct decision *d)
{
	policy_decide(&f->b, pr(f, who), tenant, scope, purpose, d);
	return d->error ? d->error : "ok";
}

static void test_newest_active_grant(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	grants_put(&f->b, make_grant("g_old", TID, "contoso", "", 100));
	grants_put(&f->b, make_grant("g_new", TID, "contoso", "", 200));
	grants_put(&f->b, make_grant("g_future", TID, "contoso",
				     ",\"not_before\":\"2999-01-01T00:00:00Z\"", 300));
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_new");
	assert_string_equal(d.scope, SCOPE_A);
	assert_string_equal(d.tenant_id, TID);
	/* by id, case-insensitively; explicit scope */
	assert_string_equal(decide(f, "siem", "72F988BF-86F1-41AF-91AB-2D7CD011DB47", SCOPE_B,
				   NULL, &d), "ok");
	assert_string_equal(d.scope, SCOPE_B);
	/* tier1 may use only SCOPE_B: that is its default */
	assert_string_equal(decide(f, "tier1", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(d.scope, SCOPE_B);
	assert_string_equal(decide(f, "tier1", "contoso", SCOPE_A, NULL, &d), "denied");
}

static void test_refusal_order(void **state)
{
	struct fixture *f = *state;
	struct decision d;
	struct grant *g;

	grants_put(&f->b, make_grant("g_1", TID, "contoso", "", 100));
	grants_put(&f->b, make_grant("g_fab", "11111111-86f1-41af-91ab-2d7cd011db47", "fabrikam",
				     ",\"principals\":[\"someone\"]", 100));
	assert_string_equal(decide(f, "siem", "nowhere", NULL, NULL, &d), "unknown_tenant");
	/* a tenant outside the principal's list: denied, known or not */
	assert_string_equal(decide(f, "tier1", "nowhere", NULL, NULL, &d), "denied");
	assert_string_equal(decide(f, "tier1", "fabrikam", NULL, NULL, &d), "denied");
	assert_non_null(d.tenant_id);   /* still recorded under the tenant */
	/* the grant names other principals */
	assert_string_equal(decide(f, "siem", "fabrikam", NULL, NULL, &d), "denied");
	assert_string_equal(decide(f, "siem", "contoso", "https://x.example/.default", NULL, &d),
			    "scope_not_granted");
	assert_string_equal(decide(f, "careful", "contoso", NULL, NULL, &d), "denied");
	assert_non_null(strstr(d.message, "purpose"));
	assert_string_equal(decide(f, "careful", "contoso", NULL, "INC-1", &d), "ok");
	/* suspended before tenant questions, lockdown before everything */
	f->b.susp = calloc(1, sizeof(*f->b.susp));
	f->b.susp[0] = (struct suspension){strdup("siem"), strdup("alice"), strdup("finding"), 0};
	f->b.n_susp = 1;
	assert_string_equal(decide(f, "siem", "nowhere", NULL, NULL, &d), "suspended");
	assert_non_null(strstr(d.message, "finding"));
	f->b.lockdown = true;
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "locked_down");
	f->b.lockdown = false;
	/* revoked only */
	g = grants_find(&f->b, "g_1");
	g->revoked = true;
	snprintf(g->revoked_by, sizeof(g->revoked_by), "bob");
	snprintf(g->reason, sizeof(g->reason), "contract ended");
	assert_string_equal(decide(f, "careful", "contoso", NULL, "x", &d), "revoked");
	assert_non_null(strstr(d.message, "contract ended"));
	assert_non_null(strstr(d.message, "g_1"));
	/* pending wins over expired and revoked */
	grants_put(&f->b, make_grant("g_exp", TID, "contoso",
				     ",\"not_before\":\"2000-01-01T00:00:00Z\","
				     "\"not_after\":\"2001-01-01T00:00:00Z\"", 50));
	assert_string_equal(decide(f, "careful", "contoso", NULL, "x", &d), "grant_expired");
	grants_put(&f->b, make_grant("g_pend", TID, "contoso",
				     ",\"not_before\":\"2999-01-01T00:00:00Z\"", 60));
	assert_string_equal(decide(f, "careful", "contoso", NULL, "x", &d), "grant_pending");
}

static void test_ambiguous_name(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	grants_put(&f->b, make_grant("g_a", TID, "contoso", "", 100));
	grants_put(&f->b, make_grant("g_b", "22222222-86f1-41af-91ab-2d7cd011db47", "Contoso", "",
				     200));
	/* two customers named themselves alike: never guess between them */
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "unknown_tenant");
	assert_non_null(strstr(d.message, "more than one tenant"));
	assert_null(d.tenant_id);
	assert_string_equal(decide(f, "siem", TID, NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_a");
	assert_string_equal(decide(f, "siem", "22222222-86F1-41AF-91AB-2D7CD011DB47", NULL, NULL,
				   &d), "ok");
	assert_string_equal(d.grant->id, "g_b");
}

static void test_rate_bucket(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	grants_put(&f->b, make_grant("g_1", TID, "contoso", "", 100));
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "rate_limited");
	/* 0.5 per second: the next token is 2 s away */
	assert_int_equal(d.retry_after, 2);
	/* refusals before the bucket do not drain it */
	assert_string_equal(decide(f, "slow", "nowhere", NULL, NULL, &d), "unknown_tenant");
	/* other principals are not limited by it */
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_newest_active_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusal_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ambiguous_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_bucket, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_broker_policy.c — policy_decide: which grant a principal's token
 * request uses, the order of refusals (docs/PROTOCOL.md), and the re-check
 * of a chosen grant. Runs on a struct policy alone: no broker, vault,
 * socket or audit store. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "policy.h"

#define SCOPE_A "https://api.securitycenter.microsoft.com/.default"
#define SCOPE_B "https://graph.microsoft.com/.default"
#define TID "72f988bf-86f1-41af-91ab-2d7cd011db47"

static const char *config_text =
	"{\"state_dir\":\"/tmp/x\",\"principals\":["
	"{\"name\":\"siem\",\"match\":{\"uid\":1001},\"tenants\":[\"*\"]},"
	"{\"name\":\"tier1\",\"match\":{\"uid\":1002},\"tenants\":[\"contoso\"],"
	"\"scopes\":[\"" SCOPE_B "\"]},"
	"{\"name\":\"slow\",\"match\":{\"uid\":1003},\"rate\":{\"per_second\":0.5,\"burst\":2}},"
	"{\"name\":\"careful\",\"match\":{\"uid\":1004},\"require_purpose\":true},"
	"{\"name\":\"by-id\",\"match\":{\"uid\":1005},\"tenants\":[\"" TID "\"]}]}";

struct fixture {
	struct policy *pol;
	struct broker_config *cfg;
	int64_t mono_ms;          /* the rate buckets' clock, moved by the tests */
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
	assert_int_equal(policy_new(&f->pol), 0);
	assert_int_equal(broker_config_parse(config_text, strlen(config_text), "t", "/", &f->cfg,
					     &err), 0);
	policy_set_config(f->pol, f->cfg);
	f->mono_ms = 1000000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	policy_free(f->pol);
	broker_config_free(f->cfg);
	free(f);
	return 0;
}

static const char *decide(struct fixture *f, const char *who, const char *tenant,
			  const char *scope, const char *purpose, struct decision *d)
{
	struct policy_ask a = {.principal = who, .tenant = tenant, .scope = scope,
			       .purpose = purpose, .now_s = time(NULL), .mono_ms = f->mono_ms};

	policy_decide(f->pol, &a, d);
	return d->error ? d->error : "ok";
}

/* The re-check of grant_id, chosen earlier for tenant_id and scope. */
static const char *recheck(struct fixture *f, const char *who, const char *tenant_id,
			   const char *grant_id, const char *scope, struct decision *d)
{
	struct policy_ask a = {.principal = who, .tenant = tenant_id, .scope = scope,
			       .grant_id = grant_id, .now_s = time(NULL), .mono_ms = f->mono_ms};

	policy_decide(f->pol, &a, d);
	return d->error ? d->error : "ok";
}

/* A copy of grant id marked revoked, put in its place. */
static void revoke(struct fixture *f, const char *id, const char *by, const char *reason)
{
	struct grant *g = grant_dup(policy_grant_find(f->pol, id));

	assert_non_null(g);
	g->revoked = true;
	g->revoked_at = time(NULL);
	snprintf(g->revoked_by, sizeof(g->revoked_by), "%s", by);
	snprintf(g->reason, sizeof(g->reason), "%s", reason);
	policy_grant_put(f->pol, g);
}

static void test_newest_active_grant(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	policy_grant_put(f->pol, make_grant("g_old", TID, "contoso", "", 100));
	policy_grant_put(f->pol, make_grant("g_new", TID, "contoso", "", 200));
	policy_grant_put(f->pol, make_grant("g_future", TID, "contoso",
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

	policy_grant_put(f->pol, make_grant("g_1", TID, "contoso", "", 100));
	policy_grant_put(f->pol, make_grant("g_fab", "11111111-86f1-41af-91ab-2d7cd011db47", "fabrikam",
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
	assert_int_equal(policy_suspend(f->pol, "siem", "alice", "finding", 0), 0);
	assert_string_equal(decide(f, "siem", "nowhere", NULL, NULL, &d), "suspended");
	assert_non_null(strstr(d.message, "finding"));
	policy_lockdown_set(f->pol, true, "incident 7");
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "locked_down");
	assert_non_null(strstr(d.message, "incident 7"));
	policy_lockdown_set(f->pol, false, NULL);
	policy_resume(f->pol, "siem");
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
	/* revoked only */
	revoke(f, "g_1", "bob", "contract ended");
	assert_string_equal(decide(f, "careful", "contoso", NULL, "x", &d), "revoked");
	assert_non_null(strstr(d.message, "contract ended"));
	assert_non_null(strstr(d.message, "g_1"));
	/* pending wins over expired and revoked */
	policy_grant_put(f->pol, make_grant("g_exp", TID, "contoso",
				     ",\"not_before\":\"2000-01-01T00:00:00Z\","
				     "\"not_after\":\"2001-01-01T00:00:00Z\"", 50));
	assert_string_equal(decide(f, "careful", "contoso", NULL, "x", &d), "grant_expired");
	policy_grant_put(f->pol, make_grant("g_pend", TID, "contoso",
				     ",\"not_before\":\"2999-01-01T00:00:00Z\"", 60));
	assert_string_equal(decide(f, "careful", "contoso", NULL, "x", &d), "grant_pending");
}

static void test_ambiguous_name(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	policy_grant_put(f->pol, make_grant("g_a", TID, "contoso", "", 100));
	policy_grant_put(f->pol, make_grant("g_b", "22222222-86f1-41af-91ab-2d7cd011db47", "Contoso", "",
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

/* issue 12 item 7: a customer's tenant_name in the form of another
 * tenant's id (in a vault from before such names were refused) must not
 * widen a policy entry that names that id */
static void test_name_in_id_form(void **state)
{
	struct fixture *f = *state;
	struct decision d;
	struct grant *g = NULL, *evil;
	struct cerr err = {{0}};
	const char *other = "33333333-86f1-41af-91ab-2d7cd011db47";
	char json[512];

	snprintf(json, sizeof(json),
		 "{\"custody_grant\":1,\"tenant_id\":\"%s\",\"tenant_name\":\"%s\","
		 "\"client_id\":\"c\",\"client_secret\":\"s\",\"scopes\":[\"" SCOPE_A "\"]}",
		 other, TID);
	assert_int_equal(grant_validate(json, strlen(json), NULL, &g, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "form of a tenant id"));
	snprintf(json, sizeof(json),
		 "{\"custody_grant\":1,\"tenant_id\":\"%s\",\"tenant_name\":\"contoso.com\","
		 "\"client_id\":\"c\",\"client_secret\":\"s\",\"scopes\":[\"" SCOPE_A "\"]}",
		 other);
	assert_int_equal(grant_validate(json, strlen(json), NULL, &g, NULL, &err), -EINVAL);
	/* the legacy record, as a vault from before would hand it over */
	evil = make_grant("g_evil", other, "evil", "", 100);
	snprintf(evil->tenant_name, sizeof(evil->tenant_name), "%s", TID);
	policy_grant_put(f->pol, evil);
	policy_grant_put(f->pol, make_grant("g_contoso", TID, "contoso", "", 50));
	assert_string_equal(decide(f, "by-id", other, NULL, NULL, &d), "denied");
	assert_string_equal(decide(f, "by-id", TID, NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_contoso");
	/* and a request in the form of an id is never taken for a name */
	assert_string_equal(decide(f, "siem", TID, NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_contoso");
}

static void test_rate_bucket(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	policy_grant_put(f->pol, make_grant("g_1", TID, "contoso", "", 100));
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "rate_limited");
	/* 0.5 per second: the next token is 2 s away */
	assert_int_equal(d.retry_after, 2);
	f->mono_ms += 2000;
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(decide(f, "slow", "contoso", NULL, NULL, &d), "rate_limited");
	/* the re-check of a token already counted does not draw on it */
	assert_string_equal(recheck(f, "slow", TID, "g_1", SCOPE_A, &d), "ok");
	/* refusals before the bucket do not drain it */
	assert_string_equal(decide(f, "slow", "nowhere", NULL, NULL, &d), "unknown_tenant");
	/* other principals are not limited by it */
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
}

/* The re-check runs the same rules for the grant chosen before the audit:
 * what changed meanwhile stops the token with the code and message it
 * would have had before. */
static void test_recheck(void **state)
{
	struct fixture *f = *state;
	struct decision before, d;

	policy_grant_put(f->pol, make_grant("g_1", TID, "contoso", "", 100));
	policy_grant_put(f->pol, make_grant("g_2", TID, "contoso", "", 50));
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &before), "ok");
	assert_string_equal(before.grant->id, "g_1");
	assert_string_equal(recheck(f, "siem", TID, "g_1", SCOPE_A, &d), "ok");
	assert_ptr_equal(d.grant, policy_grant_find(f->pol, "g_1"));
	/* only the chosen grant may serve: another active one does not */
	revoke(f, "g_1", "bob", "leaked");
	assert_string_equal(recheck(f, "siem", TID, "g_1", SCOPE_A, &d), "revoked");
	assert_non_null(strstr(d.message, "leaked"));
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &before), "ok");
	assert_string_equal(before.grant->id, "g_2");
	/* a grant the table no longer holds */
	assert_string_equal(recheck(f, "siem", TID, "g_gone", SCOPE_A, &d), "revoked");
	/* suspension and lockdown: the same messages as before the audit */
	assert_int_equal(policy_suspend(f->pol, "siem", "alice", "finding", 0), 0);
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &before), "suspended");
	assert_string_equal(recheck(f, "siem", TID, "g_2", SCOPE_A, &d), "suspended");
	assert_string_equal(d.message, before.message);
	policy_resume(f->pol, "siem");
	policy_lockdown_set(f->pol, true, "incident 7");
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &before), "locked_down");
	assert_string_equal(recheck(f, "siem", TID, "g_2", SCOPE_A, &d), "locked_down");
	assert_string_equal(d.message, before.message);
	policy_lockdown_set(f->pol, false, NULL);
	/* a reload narrowed the policy: scope, tenant, the principal itself */
	assert_string_equal(recheck(f, "tier1", TID, "g_2", SCOPE_A, &d), "denied");
	assert_string_equal(recheck(f, "nobody", TID, "g_2", SCOPE_A, &d), "denied");
	assert_non_null(strstr(d.message, "nobody"));
	assert_string_equal(recheck(f, "siem", TID, "g_2", SCOPE_A, &d), "ok");
}

/* A grant whose credential failed is kept but serves only when no other
 * active grant is left; one never tried counts as working (issue 13 #6). */
static void test_failed_credential_not_preferred(void **state)
{
	struct fixture *f = *state;
	struct decision d;

	policy_grant_put(f->pol, make_grant("g_works", TID, "contoso", "", 100));
	policy_grant_put(f->pol, make_grant("g_bad", TID, "contoso", "", 200));
	policy_grant_set_credential(f->pol, "g_works", GRANT_CRED_WORKS, NULL, 100);
	policy_grant_set_credential(f->pol, "g_bad", GRANT_CRED_FAILED,
				    "invalid_client: AADSTS7000215", 200);
	assert_string_equal(policy_grant_find(f->pol, "g_bad")->credential_error,
			    "invalid_client: AADSTS7000215");
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_works");
	assert_string_equal(policy_tenant_serving(f->pol, TID, time(NULL))->id, "g_works");
	/* a newer grant never tried takes over (a rotation without --probe) */
	policy_grant_put(f->pol, make_grant("g_rotated", TID, "contoso", "", 300));
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_rotated");
	/* the failed one serves only when it is the last one left */
	revoke(f, "g_rotated", "bob", "x");
	revoke(f, "g_works", "bob", "x");
	assert_string_equal(decide(f, "siem", "contoso", NULL, NULL, &d), "ok");
	assert_string_equal(d.grant->id, "g_bad");
	assert_string_equal(policy_tenant_serving(f->pol, TID, time(NULL))->id, "g_bad");
	/* a fetch that works clears the mark */
	policy_grant_set_credential(f->pol, "g_bad", GRANT_CRED_WORKS, "ignored", 400);
	assert_int_equal(policy_grant_find(f->pol, "g_bad")->credential, GRANT_CRED_WORKS);
	assert_string_equal(policy_grant_find(f->pol, "g_bad")->credential_error, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_newest_active_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusal_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ambiguous_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_in_id_form, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_bucket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recheck, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_credential_not_preferred, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_broker_dispatch.c — the dispatcher as the server drives it, over a
 * socketpair (tests/broker/broker_rig.c): each line is parsed against the
 * socket's op table, run by its op, audited, and its reply leaves only
 * once the record is durable (it carries audit_seq, and the store holds
 * the record by then). Refusals are audited too; a line that is not this
 * protocol closes the connection after its answer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_rig.h"

static char config[512];

static json_t *ask(struct rig *r, const char *line)
{
	json_t *all, *one;

	rig_line(r, line, strlen(line));
	all = rig_replies(r);
	assert_int_equal(json_array_size(all), 1);
	one = json_incref(json_array_get(all, 0));
	json_decref(all);
	assert_true(json_is_object(one));
	return one;
}

struct at {
	uint64_t seq;
	json_t *got;
};

static int at_cb(void *ctx, uint64_t s, const char *body, size_t len)
{
	struct at *a = ctx;

	if (s == a->seq)
		a->got = json_loadb(body, len, 0, NULL);
	return 1;
}

/* The record the store holds at seq, parsed. */
static json_t *record_at(struct rig *r, uint64_t seq)
{
	struct audit_filter f = {.after_seq = seq - 1, .limit = 1};
	struct at a = {.seq = seq};

	(void)audit_query(r->b.audit, &f, at_cb, &a);
	assert_non_null(a.got);
	return a.got;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void test_tool_ops(void **state)
{
	struct rig r;
	json_t *a, *rec;
	uint64_t seq;

	assert_int_equal(rig_open(&r, config, false), 0);
	/* ping: anyone; answered after its record is durable */
	a = ask(&r, "{\"v\":1,\"id\":1,\"op\":\"ping\"}");
	assert_true(json_is_true(json_object_get(a, "ok")));
	assert_true(json_is_true(json_object_get(a, "pong")));
	seq = (uint64_t)json_integer_value(json_object_get(a, "audit_seq"));
	assert_true(seq >= 1);
	assert_true(audit_size(r.b.audit) >= seq);
	rec = record_at(&r, seq);
	assert_string_equal(str(rec, "event"), "ping");
	assert_string_equal(str(rec, "outcome"), "ok");
	assert_int_equal(json_integer_value(json_object_get(rec, "request_id")), 1);
	json_decref(rec);
	json_decref(a);
	/* whoami: this uid is principal "me" */
	a = ask(&r, "{\"v\":1,\"id\":\"w\",\"op\":\"whoami\"}");
	assert_string_equal(str(a, "principal"), "me");
	assert_int_equal(json_integer_value(json_object_get(a, "uid")), (json_int_t)getuid());
	json_decref(a);
	/* token: the policy refuses an unknown tenant, audited as such */
	a = ask(&r, "{\"v\":1,\"id\":3,\"op\":\"token\",\"tenant\":\"nowhere\"}");
	assert_false(json_is_true(json_object_get(a, "ok")));
	assert_string_equal(str(a, "error"), "unknown_tenant");
	rec = record_at(&r, (uint64_t)json_integer_value(json_object_get(a, "audit_seq")));
	assert_string_equal(str(rec, "event"), "token");
	assert_string_equal(str(rec, "outcome"), "unknown_tenant");
	assert_string_equal(str(rec, "principal"), "me");
	assert_string_equal(str(rec, "requested_tenant"), "nowhere");
	json_decref(rec);
	json_decref(a);
	/* an op of the other socket, a field the op does not take */
	a = ask(&r, "{\"v\":1,\"id\":4,\"op\":\"status\"}");
	assert_string_equal(str(a, "error"), "unknown_op");
	assert_non_null(strstr(str(a, "message"), "tool socket"));
	json_decref(a);
	a = ask(&r, "{\"v\":1,\"id\":5,\"op\":\"ping\",\"tenant\":\"x\"}");
	assert_string_equal(str(a, "error"), "bad_request");
	rec = record_at(&r, (uint64_t)json_integer_value(json_object_get(a, "audit_seq")));
	assert_string_equal(str(rec, "event"), "request");
	assert_string_equal(str(rec, "socket"), "tool");
	json_decref(rec);
	json_decref(a);
	/* not this protocol: answered once, then the connection closes */
	a = ask(&r, "GET / HTTP/1.1");
	assert_string_equal(str(a, "error"), "bad_request");
	json_decref(a);
	assert_null(r.c);
	assert_int_equal(json_integer_value(json_object_get(r.b.outcomes, "ok")), 2);
	assert_int_equal(json_integer_value(json_object_get(r.b.outcomes, "bad_request")), 2);
	assert_int_equal(r.b.n_pending, 0);
	rig_close(&r);
}

static void test_admin_ops(void **state)
{
	struct rig r;
	json_t *a;

	assert_int_equal(rig_open(&r, config, true), 0);
	a = ask(&r, "{\"v\":1,\"id\":1,\"op\":\"grant.show\",\"grant\":\"g_none\"}");
	/* root holds every role (the grant is unknown); another uid none */
	assert_string_equal(str(a, "error"), getuid() == 0 ? "bad_request" : "denied");
	assert_non_null(json_object_get(a, "audit_seq"));
	json_decref(a);
	a = ask(&r, "{\"v\":1,\"id\":2,\"op\":\"ping\"}");
	assert_string_equal(str(a, "error"), "unknown_op");
	json_decref(a);
	if (getuid() != 0) {
		rig_close(&r);
		return;
	}
	/* an officer action: the reply waits for the checkpoint signed over
	 * its record (on the audit writer, answered through its eventfd) */
	a = ask(&r, "{\"v\":1,\"id\":3,\"op\":\"audit.checkpoint\"}");
	assert_true(json_is_true(json_object_get(a, "ok")));
	assert_non_null(str(a, "checkpoint"));
	assert_true(json_integer_value(json_object_get(a, "size")) >=
		    json_integer_value(json_object_get(a, "audit_seq")));
	assert_true(audit_checkpoint_size(r.b.audit) >=
		    (uint64_t)json_integer_value(json_object_get(a, "audit_seq")));
	json_decref(a);
	a = ask(&r, "{\"v\":1,\"id\":4,\"op\":\"lockdown\",\"reason\":\"drill\"}");
	assert_true(json_is_true(json_object_get(a, "ok")));
	json_decref(a);
	assert_true(policy_locked_down(r.b.policy, NULL));
	a = ask(&r, "{\"v\":1,\"id\":5,\"op\":\"status\"}");
	assert_true(json_is_true(json_object_get(json_object_get(a, "status"), "lockdown")));
	json_decref(a);
	/* audit.query runs on the admin-reads thread and comes back */
	a = ask(&r, "{\"v\":1,\"id\":6,\"op\":\"audit.query\",\"event\":\"admin.lockdown\"}");
	assert_true(json_is_true(json_object_get(a, "ok")));
	assert_int_equal(json_array_size(json_object_get(a, "records")), 1);
	json_decref(a);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tool_ops),
		cmocka_unit_test(test_admin_ops),
	};

	snprintf(config, sizeof(config),
		 "{\"principals\":[{\"name\":\"me\",\"match\":{\"uid\":%u}}]}", (unsigned)getuid());
	return cmocka_run_group_tests(tests, NULL, NULL);
}

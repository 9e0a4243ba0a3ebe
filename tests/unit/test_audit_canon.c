/* test_audit_canon.c — audit_canonical_json must write exactly the bytes
 * of json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII):
 * record bodies are hashed in that encoding, and verify re-encodes with
 * jansson. Fixed edge cases, then thousands of generated trees. And a
 * record made from a member list (fields.c, the token path) must be the
 * very item the tree path makes of the same members. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"
#include "audit_int.h"

#define FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)

/* Both encoders agree on v (both fail, or both write the same bytes). */
static void same(json_t *v)
{
	char *want = json_dumps(v, FLAGS);
	size_t len = 0;
	char *got = audit_canonical_json(v, &len);

	if (want == NULL) {
		assert_null(got);
		assert_null(audit_json_compact(v, NULL));
		return;
	}
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(want);
	free(got);
	/* and unsorted, as replies are written */
	want = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
	got = audit_json_compact(v, &len);
	assert_non_null(want);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	free(want);
	free(got);
}

static void test_fixed(void **state)
{
	static const char *const docs[] = {
		"{}",
		"[]",
		"{\"b\":1,\"a\":2,\"ab\":3,\"\":4,\"B\":5}",
		"{\"s\":\"quote\\\" backslash\\\\ slash/ tab\\t nl\\n cr\\r bs\\b ff\\f\"}",
		"{\"c\":\"\\u0001\\u001f\\u007f\\u0000 end\"}",
		"{\"u\":\"caf\\u00e9 \\u20ac \\ud83d\\ude00 \\uffff \\u0800 \\u07ff\"}",
		"{\"\\u00e9\":1,\"e\":2,\"\\ud83d\\ude00\":3,\"z\":4}",
		"{\"n\":[true,false,null,0,-1,9223372036854775807,-9223372036854775808]}",
		"{\"deep\":{\"a\":{\"b\":[{\"c\":[[],{}]}]}}}",
		"[1,\"two\",{\"three\":3}]",
		"{\"r\":1.5,\"e\":1e300,\"z\":-0.0}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		json_t *v = json_loads(docs[i], JSON_ALLOW_NUL, NULL);

		assert_non_null(v);
		same(v);
		json_decref(v);
	}
}

static void test_not_encodable(void **state)
{
	json_t *o = json_object(), *a = json_array();

	(void)state;
	/* invalid UTF-8 slipped in with the unchecked constructor */
	json_object_set_new_nocheck(o, "bad", json_stringn_nocheck("\xc3\x28", 2));
	assert_null(audit_canonical_json(o, NULL));
	json_object_clear(o);
	json_object_set_new_nocheck(o, "surrogate", json_stringn_nocheck("\xed\xa0\x80", 3));
	assert_null(audit_canonical_json(o, NULL));
	json_object_clear(o);
	json_object_set_new_nocheck(o, "overlong", json_stringn_nocheck("\xc0\xaf", 2));
	assert_null(audit_canonical_json(o, NULL));
	json_object_clear(o);
	json_object_set_new_nocheck(o, "truncated", json_stringn_nocheck("ab\xe2\x82", 4));
	assert_null(audit_canonical_json(o, NULL));
	json_object_clear(o);
	/* a tree that contains itself */
	json_object_set(o, "a", a);
	json_array_append(a, o);
	assert_null(audit_canonical_json(o, NULL));
	json_array_clear(a);
	json_decref(a);
	json_decref(o);
	/* scalars are not documents for json_dumps either */
	o = json_integer(1);
	assert_null(audit_canonical_json(o, NULL));
	json_decref(o);
	assert_null(audit_canonical_json(NULL, NULL));
}

static void test_fallbacks(void **state)
{
	json_t *o = json_object(), *v = o;
	char key[16];

	(void)state;
	/* more keys than the fast path sorts */
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k%03d", (i * 37) % 200);
		json_object_set_new(o, key, json_integer(i));
	}
	same(o);
	json_decref(o);
	/* deeper than the fast path walks */
	o = json_object();
	v = o;
	for (int i = 0; i < 40; i++) {
		json_t *n = json_object();

		json_object_set_new(v, i % 2 ? "b" : "a", n);
		json_object_set_new(v, "x", json_string("\xe2\x82\xac"));
		v = n;
	}
	same(o);
	json_decref(o);
}

/* ---- generated trees ---------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* A short string from a palette that hits every escaping rule. */
static size_t rnd_text(char *out, size_t cap)
{
	static const char *const pieces[] = {
		"a", "Z", "0", " ", "-", "_", "/", "\"", "\\", "\t", "\n", "\r", "\b", "\f",
		"\x01", "\x1f", "\x7f", "~", "\xc3\xa9", "\xdf\xbf", "\xe0\xa0\x80", "\xe2\x82\xac",
		"\xef\xbf\xbf", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "tenant", "ok", "\x00",
	};
	size_t n = rnd(12), len = 0;

	for (size_t i = 0; i < n; i++) {
		const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
		size_t pl = p[0] == '\0' ? 1 : strlen(p);

		if (len + pl >= cap)
			break;
		memcpy(out + len, p, pl);
		len += pl;
	}
	out[len] = '\0';
	return len;
}

static json_t *rnd_value(int depth)
{
	char buf[128];
	size_t len;
	uint32_t kind = depth > 4 ? 2 + rnd(5) : rnd(7);

	switch (kind) {
	case 0: {
		json_t *o = json_object();
		uint32_t n = rnd(8);

		for (uint32_t i = 0; i < n; i++) {
			len = rnd_text(buf, sizeof(buf));
			json_object_setn_new(o, buf, len, rnd_value(depth + 1));
		}
		return o;
	}
	case 1: {
		json_t *a = json_array();
		uint32_t n = rnd(6);

		for (uint32_t i = 0; i < n; i++)
			json_array_append_new(a, rnd_value(depth + 1));
		return a;
	}
	case 2:
	case 3:
		len = rnd_text(buf, sizeof(buf));
		return json_stringn(buf, len);
	case 4:
		return json_integer((json_int_t)((int64_t)(rng >> 1) * (rnd(2) ? 1 : -1)) >>
				    rnd(63));
	case 5:
		return rnd(2) ? json_true() : json_false();
	default:
		return json_null();
	}
}

static void test_generated(void **state)
{
	(void)state;
	for (int i = 0; i < 20000; i++) {
		json_t *o = json_object();
		uint32_t n = 1 + rnd(20);
		char key[128];

		for (uint32_t k = 0; k < n; k++) {
			size_t len = rnd_text(key, sizeof(key));

			json_object_setn_new(o, key, len, rnd_value(1));
		}
		same(o);
		json_decref(o);
	}
}

/* ---- records from member lists (fields.c) -------------------------------- */

static struct audit *ph_store(void)
{
	struct audit *a = calloc(1, sizeof(*a));

	assert_non_null(a);
	audit_placeholders_init(a);
	return a;
}

/* Both paths make the same item of the same members, and the writer's
 * splice gives the same final body. */
static void same_item(struct audit *a, json_t *tree, const struct audit_fields *f)
{
	struct audit_item *x = NULL, *y = NULL;
	int rx, ry;

	json_incref(tree);
	rx = audit_item_new(a, tree, &x);
	ry = audit_item_from_fields(a, f, &y);
	assert_int_equal(ry, rx);
	if (rx == 0) {
		char *bx = NULL, *by = NULL;
		size_t cx = 0, cy = 0, lx = 0, ly = 0;

		assert_int_equal(y->len0, x->len0);
		assert_memory_equal(y->body0, x->body0, x->len0);
		assert_int_equal(y->has_tenant, x->has_tenant);
		for (int i = 0; i < 4; i++) {
			if (x->col[i] == NULL)
				assert_null(y->col[i]);
			else
				assert_string_equal(y->col[i], x->col[i]);
		}
		assert_int_equal(audit_body_splice(a, x, 123456789, "2026-12-03T12:00:00.123456Z", 42,
						   "ab01", &bx, &cx, &lx), 0);
		assert_int_equal(audit_body_splice(a, y, 123456789, "2026-12-03T12:00:00.123456Z", 42,
						   "ab01", &by, &cy, &ly), 0);
		assert_int_equal(ly, lx);
		assert_memory_equal(by, bx, lx);
		/* and the spliced body is the canonical encoding of the record
		 * (jansson cannot read back a key holding NUL) */
		if (memmem(bx, lx, "\\u0000", 6) == NULL) {
			json_error_t e;
			json_t *back = json_loadb(bx, lx, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
			char *again;

			if (back == NULL)
				fail_msg("spliced body does not parse: %s: %.300s", e.text, bx);
			again = audit_canonical_json(back, NULL);
			assert_non_null(again);
			assert_string_equal(again, bx);
			assert_int_equal(json_integer_value(json_object_get(back, "seq")), 123456789);
			free(again);
			json_decref(back);
		}
		free(bx);
		free(by);
	}
	audit_item_free(x);
	audit_item_free(y);
}

static void test_fields_fixed(void **state)
{
	struct audit *a = ph_store();
	json_t *peer = json_pack("{s:i,s:i,s:i,s:s}", "uid", 1000, "gid", 1000, "pid", 77, "exe",
				 "/usr/bin/tool \"q\" \xe2\x80\xae");
	json_t *id = json_string("req-\u00e9"), *tree;
	struct audit_fields f = {0};

	(void)state;
	/* a token record as the broker writes it */
	audit_fields_str(&f, "event", "token");
	audit_fields_str(&f, "outcome", "ok");
	audit_fields_json(&f, "peer", peer);
	audit_fields_str(&f, "principal", "siem");
	audit_fields_json(&f, "request_id", id);
	audit_fields_str(&f, "tenant", "7f3c0e2a-0000-4000-8000-000000000001");
	audit_fields_str(&f, "grant", "g-1");
	audit_fields_str(&f, "scope", "https://api.securitycenter.microsoft.com/.default");
	audit_fields_str(&f, "purpose", "<script>alert(1)</script> \xe2\x80\xae");
	audit_fields_str(&f, "token_uti", NULL);
	audit_fields_int(&f, "expires_in", -5);
	tree = json_pack("{s:s,s:s,s:O,s:s,s:O,s:s,s:s,s:s,s:s,s:n,s:i}", "event", "token",
			 "outcome", "ok", "peer", peer, "principal", "siem", "request_id", id,
			 "tenant", "7f3c0e2a-0000-4000-8000-000000000001", "grant", "g-1", "scope",
			 "https://api.securitycenter.microsoft.com/.default", "purpose",
			 "<script>alert(1)</script> \xe2\x80\xae", "token_uti", "expires_in", -5);
	assert_non_null(tree);
	same_item(a, tree, &f);
	json_decref(tree);

	/* no tenant: no tenant_prev / tenant_seq placeholders */
	f = (struct audit_fields){0};
	audit_fields_str(&f, "event", "ping");
	audit_fields_str(&f, "tenant", NULL);
	tree = json_pack("{s:s,s:n}", "event", "ping", "tenant");
	same_item(a, tree, &f);
	json_decref(tree);
	json_decref(peer);
	json_decref(id);
	free(a);
}

static void test_fields_refused(void **state)
{
	struct audit *a = ph_store();
	struct audit_item *it = NULL;
	struct audit_fields f;
	json_t *num = json_integer(3);

	(void)state;
	/* no event; an event that is not a string */
	f = (struct audit_fields){0};
	audit_fields_str(&f, "outcome", "ok");
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	f = (struct audit_fields){0};
	audit_fields_int(&f, "event", 1);
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	f = (struct audit_fields){0};
	audit_fields_str(&f, "event", "token");
	audit_fields_json(&f, "tenant", num);
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	/* a key twice; a store key; too many members */
	f = (struct audit_fields){0};
	audit_fields_str(&f, "event", "token");
	audit_fields_str(&f, "grant", "a");
	audit_fields_str(&f, "grant", "b");
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	for (int k = 0; k < 4; k++) {
		static const char *const sk[] = {"seq", "time", "tenant_seq", "tenant_prev"};

		f = (struct audit_fields){0};
		audit_fields_str(&f, "event", "token");
		audit_fields_int(&f, sk[k], 1);
		assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	}
	f = (struct audit_fields){0};
	audit_fields_str(&f, "event", "token");
	for (int i = 0; i < AUDIT_FIELDS_MAX + 3; i++)
		audit_fields_int(&f, "k", i);
	assert_true(f.overflow);
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	/* a string that is not UTF-8, as key or as value */
	f = (struct audit_fields){0};
	audit_fields_str(&f, "event", "token");
	audit_fields_str(&f, "purpose", "bad \xc3\x28 utf-8");
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	f = (struct audit_fields){0};
	audit_fields_str(&f, "event", "token");
	audit_fields_str(&f, "\xff", "x");
	assert_int_equal(audit_item_from_fields(a, &f, &it), -EINVAL);
	assert_null(it);
	json_decref(num);
	free(a);
}

static void test_fields_generated(void **state)
{
	static const char *const cols[] = {"event", "outcome", "tenant", "principal"};
	struct audit *a = ph_store();

	(void)state;
	for (int i = 0; i < 4000; i++) {
		json_t *tree = json_object(), *vals[AUDIT_FIELDS_MAX];
		struct audit_fields f = {0};
		char keys[AUDIT_FIELDS_MAX][128], strs[AUDIT_FIELDS_MAX][128];
		size_t nv = 0;
		uint32_t n = rnd(AUDIT_FIELDS_MAX - 4);

		/* the columns, each present or not, string or null (event
		 * mostly present) */
		for (int c = 0; c < 4; c++) {
			if (rnd(c == 0 ? 10 : 3) == 0)
				continue;
			if (c > 0 && rnd(4) == 0) {
				audit_fields_str(&f, cols[c], NULL);
				json_object_set_new(tree, cols[c], json_null());
				continue;
			}
			snprintf(strs[f.n], sizeof(strs[0]), "%s-%u", cols[c], rnd(1000));
			audit_fields_str(&f, cols[c], strs[f.n]);
			json_object_set_new(tree, cols[c], json_string(strs[f.n - 1]));
		}
		for (uint32_t k = 0; k < n; k++) {
			size_t kl = rnd_text(keys[f.n], sizeof(keys[0]));
			char *key = keys[f.n];
			json_t *v;

			if (memchr(key, '\0', kl) != NULL || json_object_get(tree, key) != NULL ||
			    strcmp(key, "seq") == 0 || strcmp(key, "time") == 0 ||
			    strcmp(key, "tenant_seq") == 0 || strcmp(key, "tenant_prev") == 0)
				continue;
			switch (rnd(4)) {
			case 0: { /* a C string */
				size_t sl = rnd_text(strs[f.n], sizeof(strs[0]));

				if (memchr(strs[f.n], '\0', sl) != NULL)
					continue;
				json_object_set_new(tree, key, json_string(strs[f.n]));
				audit_fields_str(&f, key, strs[f.n]);
				break;
			}
			case 1: { /* an integer */
				int64_t x = (int64_t)(rng >> 1) * (rnd(2) ? 1 : -1) >> rnd(63);

				json_object_set_new(tree, key, json_integer(x));
				audit_fields_int(&f, key, x);
				break;
			}
			case 2: /* null */
				json_object_set_new(tree, key, json_null());
				audit_fields_str(&f, key, NULL);
				break;
			default: /* any value, borrowed */
				v = rnd_value(1);
				vals[nv++] = v;
				json_object_set(tree, key, v);
				audit_fields_json(&f, key, v);
			}
		}
		same_item(a, tree, &f);
		json_decref(tree);
		for (size_t k = 0; k < nv; k++)
			json_decref(vals[k]);
	}
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_not_encodable),
		cmocka_unit_test(test_fallbacks),
		cmocka_unit_test(test_generated),
		cmocka_unit_test(test_fields_fixed),
		cmocka_unit_test(test_fields_refused),
		cmocka_unit_test(test_fields_generated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

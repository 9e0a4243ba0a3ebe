/* test_audit_canon.c — audit_canonical_json must write exactly the bytes
 * of json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII):
 * record bodies are hashed in that encoding, and verify re-encodes with
 * jansson. Fixed edge cases, then thousands of generated trees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_not_encodable),
		cmocka_unit_test(test_fallbacks),
		cmocka_unit_test(test_generated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_upstream.c — what custody makes of every answer Entra can give
 * (broker/token_response.c) and the endpoint checks in broker/upstream.c.
 * Bodies are shaped like the real ones in /work/shared/ENTRA.md.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "upstream.h"

#define NOW 1795925000

/* A JWT-shaped token whose payload is {"tid":"t","uti":"AbC-dEf_123","exp":1}. */
static char jwt[512];

static void make_jwt(const char *payload_json, char *out, size_t outlen)
{
	char p[400];

	sodium_bin2base64(p, sizeof(p), (const unsigned char *)payload_json, strlen(payload_json),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(out, outlen, "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.%s.c2lnbmF0dXJl", p);
}

static int setup(void **state)
{
	make_jwt("{\"tid\":\"t\",\"uti\":\"AbC-dEf_123\",\"exp\":1}", jwt, sizeof(jwt));
	return 0;
}

static void parse(long status, const char *ra, const char *body, struct upstream_token *t)
{
	assert_int_equal(upstream_parse_token_response(status, ra, body, strlen(body), NOW, t), 0);
}

static void test_v2_success(void **state)
{
	char body[1024];
	struct upstream_token t;
	unsigned char d[32];
	char hex[65];

	snprintf(body, sizeof(body),
		 "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,"
		 "\"access_token\":\"%s\"}", jwt);
	parse(200, NULL, body, &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_int_equal(t.http_status, 200);
	assert_non_null(t.access_token);
	assert_string_equal(t.access_token, jwt);
	assert_int_equal(t.token_len, strlen(jwt));
	assert_int_equal(t.expires_at, NOW + 3599);
	assert_int_equal(t.refresh_at, 0);
	assert_string_equal(t.uti, "AbC-dEf_123");
	crypto_hash_sha256(d, (const unsigned char *)jwt, strlen(jwt));
	util_hex(d, 32, hex);
	assert_string_equal(t.token_sha256, hex);
	assert_null(strstr(t.message, "eyJ"));
	upstream_token_clear(&t);
	assert_null(t.access_token);
}

static void test_v2_refresh_in(void **state)
{
	char body[1024];
	struct upstream_token t;

	snprintf(body, sizeof(body),
		 "{\"token_type\":\"Bearer\",\"expires_in\":4000,\"ext_expires_in\":4000,"
		 "\"refresh_in\":2000,\"access_token\":\"%s\"}", jwt);
	parse(200, NULL, body, &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_int_equal(t.refresh_at, NOW + 2000);
	upstream_token_clear(&t);

	/* refresh_in not below expires_in is ignored */
	snprintf(body, sizeof(body),
		 "{\"token_type\":\"Bearer\",\"expires_in\":100,\"refresh_in\":500,"
		 "\"access_token\":\"%s\"}", jwt);
	parse(200, NULL, body, &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_int_equal(t.refresh_at, 0);
	upstream_token_clear(&t);
}

static void test_v1_success(void **state)
{
	char body[1024];
	struct upstream_token t;

	snprintf(body, sizeof(body),
		 "{\"token_type\":\"Bearer\",\"expires_in\":\"3599\",\"ext_expires_in\":\"3599\","
		 "\"expires_on\":\"1622089429\",\"not_before\":\"1622085529\","
		 "\"resource\":\"https://api.securitycenter.microsoft.com\",\"access_token\":\"%s\"}",
		 jwt);
	parse(200, NULL, body, &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_int_equal(t.expires_at, NOW + 3599);
	assert_string_equal(t.uti, "AbC-dEf_123");
	upstream_token_clear(&t);
}

static void test_opaque_token_no_uti(void **state)
{
	struct upstream_token t;

	parse(200, NULL, "{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"opaque-1\"}",
	      &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_string_equal(t.uti, "");
	upstream_token_clear(&t);
}

struct err_case {
	int status;
	const char *error;
	uint32_t code;
	const char *words; /* expected in the message */
};

static void test_aadsts_errors(void **state)
{
	static const struct err_case cases[] = {
		{401, "invalid_client", 7000215, "invalid client secret"},
		{401, "invalid_client", 7000222, "expired"},
		{401, "invalid_client", 7000218, "no client secret"},
		{400, "invalid_tenant", 90002, "no such tenant"},
		{400, "invalid_request", 90002, "no such tenant"},
		{400, "unauthorized_client", 700016, "no consent"},
		{400, "invalid_client", 7000229, "service principal"},
		{400, "invalid_scope", 70011, "scope"},
		{400, "invalid_scope", 1002012, "/.default"},
		{400, "invalid_resource", 500011, "not provisioned"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[2048];
		struct upstream_token t;

		snprintf(body, sizeof(body),
			 "{\"error\":\"%s\",\"error_description\":\"AADSTS%u: Something. secret=hunter2"
			 "\\r\\nTrace ID: 0a1b\\r\\nCorrelation ID: 5c6d\\r\\nTimestamp: 2026-11-29 "
			 "02:02:12Z\",\"error_codes\":[%u],\"timestamp\":\"2026-11-29 02:02:12Z\","
			 "\"trace_id\":\"0a1b\",\"correlation_id\":\"5c6d\","
			 "\"error_uri\":\"https://login.microsoftonline.com/error?code=%u\"}",
			 cases[i].error, cases[i].code, cases[i].code, cases[i].code);
		parse(cases[i].status, NULL, body, &t);
		assert_int_equal(t.outcome, UPSTREAM_REJECTED);
		assert_false(t.retryable);
		assert_int_equal(t.http_status, cases[i].status);
		assert_string_equal(t.error, cases[i].error);
		assert_int_equal(t.n_codes, 1);
		assert_int_equal(t.codes[0], cases[i].code);
		assert_null(t.access_token);
		assert_non_null(strstr(t.message, cases[i].words));
		/* The provider's description is never echoed. */
		assert_null(strstr(t.message, "hunter2"));
		upstream_token_clear(&t);
	}
}

static void test_error_odd_shapes(void **state)
{
	struct upstream_token t;

	/* error word with junk is replaced, codes that are not uint32 skipped */
	parse(400, NULL, "{\"error\":\"bad thing\\nInjected\",\"error_codes\":[-1,\"x\",70011,1,2,3,4,5,6,7,8]}",
	      &t);
	assert_int_equal(t.outcome, UPSTREAM_REJECTED);
	assert_string_equal(t.error, "invalid_answer");
	assert_int_equal(t.n_codes, 8);
	assert_int_equal(t.codes[0], 70011);
	upstream_token_clear(&t);

	/* 4xx that is not an OAuth error */
	parse(404, NULL, "<html>Not Found</html>", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	upstream_token_clear(&t);
	parse(403, NULL, "{\"message\":\"nope\"}", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	upstream_token_clear(&t);

	/* a redirect is not followed */
	parse(302, NULL, "", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	assert_false(t.retryable);
	assert_non_null(strstr(t.message, "302"));
	upstream_token_clear(&t);
}

static void test_429(void **state)
{
	struct upstream_token t;

	parse(429, "60", "Too Many Requests", &t);
	assert_int_equal(t.outcome, UPSTREAM_RATE_LIMITED);
	assert_int_equal(t.retry_after, 60);
	upstream_token_clear(&t);

	parse(429, NULL, "Too Many Requests", &t);
	assert_int_equal(t.outcome, UPSTREAM_RATE_LIMITED);
	assert_int_equal(t.retry_after, UPSTREAM_RETRY_AFTER_DEFAULT);
	upstream_token_clear(&t);

	parse(429, " 999999999999 \r\n", "", &t);
	assert_int_equal(t.retry_after, UPSTREAM_RETRY_AFTER_MAX);
	upstream_token_clear(&t);

	parse(429, "Wed, 21 Oct 2015 07:28:00 GMT", "", &t);
	assert_int_equal(t.retry_after, UPSTREAM_RETRY_AFTER_DEFAULT);
	upstream_token_clear(&t);

	parse(429, "0", "", &t);
	assert_int_equal(t.retry_after, 1);
	upstream_token_clear(&t);

	parse(429, "-5", "", &t);
	assert_int_equal(t.retry_after, UPSTREAM_RETRY_AFTER_DEFAULT);
	upstream_token_clear(&t);
}

static void test_5xx(void **state)
{
	struct upstream_token t;
	static const long st[] = {500, 502, 503, 504};

	for (size_t i = 0; i < 4; i++) {
		parse(st[i], NULL, "{\"error\":\"server_error\"}", &t);
		assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
		assert_true(t.retryable);
		assert_int_equal(t.http_status, st[i]);
		upstream_token_clear(&t);
	}
}

static void test_garbage_truncated_huge(void **state)
{
	struct upstream_token t;
	size_t n = 8 * 1024 * 1024;
	char *huge;

	parse(200, NULL, "<html><body>Sign in to your account</body></html>", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	assert_false(t.retryable);
	assert_non_null(strstr(t.message, "not a JSON object"));
	upstream_token_clear(&t);

	parse(200, NULL, "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":35", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	upstream_token_clear(&t);

	parse(200, NULL, "", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	upstream_token_clear(&t);

	parse(200, NULL, "[1,2]", &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	upstream_token_clear(&t);

	huge = malloc(n);
	assert_non_null(huge);
	memset(huge, ' ', n);
	memcpy(huge, "{\"access_token\":\"", 17);
	assert_int_equal(upstream_parse_token_response(200, NULL, huge, n, NOW, &t), 0);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	assert_non_null(strstr(t.message, "too large"));
	upstream_token_clear(&t);
	free(huge);
}

static void test_missing_and_bad_fields(void **state)
{
	static const char *const bodies[] = {
		"{\"token_type\":\"Bearer\",\"expires_in\":3599}",
		"{\"token_type\":\"Bearer\",\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":-5,\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":0,\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":\"-5\",\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":\"12x\",\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":3.5,\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":42}",
		"{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"a b\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"a\\nb\"}",
		"{\"token_type\":\"mac\",\"expires_in\":60,\"access_token\":\"abc\"}",
		"{\"token_type\":\"Bearer\",\"expires_in\":60,\"access_token\":\"a\",\"access_token\":\"b\"}",
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct upstream_token t;

		parse(200, NULL, bodies[i], &t);
		assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
		assert_null(t.access_token);
		assert_null(strstr(t.message, "abc"));
		upstream_token_clear(&t);
	}
}

static void test_huge_expires_in_capped(void **state)
{
	struct upstream_token t;

	parse(200, NULL,
	      "{\"token_type\":\"Bearer\",\"expires_in\":9223372036854775807,\"access_token\":\"abc\"}",
	      &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_int_equal(t.expires_at, NOW + UPSTREAM_MAX_LIFETIME);
	upstream_token_clear(&t);

	parse(200, NULL,
	      "{\"token_type\":\"Bearer\",\"expires_in\":\"999999999999\",\"access_token\":\"abc\"}",
	      &t);
	assert_int_equal(t.outcome, UPSTREAM_OK);
	assert_int_equal(t.expires_at, NOW + UPSTREAM_MAX_LIFETIME);
	upstream_token_clear(&t);

	parse(200, NULL,
	      "{\"token_type\":\"Bearer\",\"expires_in\":\"9999999999999\",\"access_token\":\"abc\"}",
	      &t);
	assert_int_equal(t.outcome, UPSTREAM_UNAVAILABLE);
	upstream_token_clear(&t);
}

static void test_jwt_uti(void **state)
{
	char out[128], tok[512];

	assert_int_equal(upstream_jwt_uti(jwt, strlen(jwt), out, sizeof(out)), 0);
	assert_string_equal(out, "AbC-dEf_123");
	assert_int_equal(upstream_jwt_uti("abc", 3, out, sizeof(out)), -EINVAL);
	assert_string_equal(out, "");
	assert_int_equal(upstream_jwt_uti("a.!!!.c", 7, out, sizeof(out)), -EINVAL);
	make_jwt("{\"tid\":\"t\"}", tok, sizeof(tok));
	assert_int_equal(upstream_jwt_uti(tok, strlen(tok), out, sizeof(out)), -EINVAL);
	make_jwt("{\"uti\":5}", tok, sizeof(tok));
	assert_int_equal(upstream_jwt_uti(tok, strlen(tok), out, sizeof(out)), -EINVAL);
	make_jwt("[\"uti\"]", tok, sizeof(tok));
	assert_int_equal(upstream_jwt_uti(tok, strlen(tok), out, sizeof(out)), -EINVAL);
	/* uti too long for the buffer */
	assert_int_equal(upstream_jwt_uti(jwt, strlen(jwt), out, 5), -EINVAL);
}

static void test_url_allowed(void **state)
{
	char *hosts[] = {"login.microsoftonline.com", "127.0.0.1", NULL};

	assert_true(upstream_url_allowed(
		"https://login.microsoftonline.com/contoso/oauth2/v2.0/token", hosts));
	assert_true(upstream_url_allowed("https://LOGIN.microsoftonline.com/x", hosts));
	assert_true(upstream_url_allowed("https://127.0.0.1:8443/t/oauth2/v2.0/token", hosts));
	assert_false(upstream_url_allowed("http://login.microsoftonline.com/x", hosts));
	assert_false(upstream_url_allowed("https://evil.example/x", hosts));
	assert_false(upstream_url_allowed("https://login.microsoftonline.com.evil.example/x", hosts));
	assert_false(upstream_url_allowed("https://user:pw@login.microsoftonline.com/x", hosts));
	assert_false(upstream_url_allowed("ftp://login.microsoftonline.com/x", hosts));
	assert_false(upstream_url_allowed("not a url", hosts));
	assert_false(upstream_url_allowed("https://login.microsoftonline.com/x", NULL));
}

static void test_endpoint_v1(void **state)
{
	assert_true(upstream_endpoint_is_v1("https://login.microsoftonline.com/t/oauth2/token"));
	assert_false(upstream_endpoint_is_v1("https://login.microsoftonline.com/t/oauth2/v2.0/token"));
	assert_false(upstream_endpoint_is_v1("https://login.microsoftonline.com/t/oauth2/tokens"));
	assert_true(upstream_endpoint_is_v1("https://127.0.0.1:5/t/oauth2/token?x=1"));
}

static void test_code_meaning(void **state)
{
	assert_non_null(upstream_code_meaning(7000222));
	assert_null(upstream_code_meaning(1));
}

/* Mutated real answers (fixed seed): whatever the bytes, the parser gives
 * one of the four outcomes, a token only with OK, and a bounded message. */
static void test_mutated_bodies(void **state)
{
	char seeds[3][1024];
	uint32_t x = 2463534242u;
	int iters = getenv("CUSTODY_VALGRIND") ? 2000 : 50000;

	snprintf(seeds[0], sizeof(seeds[0]),
		 "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,"
		 "\"refresh_in\":1800,\"access_token\":\"%s\"}", jwt);
	snprintf(seeds[1], sizeof(seeds[1]),
		 "{\"token_type\":\"Bearer\",\"expires_in\":\"3599\",\"expires_on\":\"1622089429\","
		 "\"access_token\":\"%s\"}", jwt);
	snprintf(seeds[2], sizeof(seeds[2]),
		 "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000222: x\","
		 "\"error_codes\":[7000222],\"trace_id\":\"a\"}");
	for (int i = 0; i < iters; i++) {
		char body[1024];
		size_t len;
		struct upstream_token t;
		static const long st[] = {200, 400, 401, 429, 500};

		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		len = strlen(seeds[x % 3]);
		memcpy(body, seeds[x % 3], len);
		for (int k = 0; k < 1 + (int)(x % 4); k++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			if (x % 5 == 0 || len == 0)
				len = x % (len + 1);          /* truncate */
			else
				body[x % len] = (char)(x >> 8); /* flip a byte */
		}
		assert_int_equal(upstream_parse_token_response(st[x % 5], NULL, body, len, NOW, &t),
				 0);
		assert_true(t.outcome <= UPSTREAM_UNAVAILABLE);
		assert_true((t.outcome == UPSTREAM_OK) == (t.access_token != NULL));
		assert_true(strlen(t.message) < sizeof(t.message));
		if (t.outcome == UPSTREAM_OK)
			assert_true(t.expires_at > NOW && t.expires_at <= NOW + UPSTREAM_MAX_LIFETIME);
		upstream_token_clear(&t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v2_success),
		cmocka_unit_test(test_v2_refresh_in),
		cmocka_unit_test(test_v1_success),
		cmocka_unit_test(test_opaque_token_no_uti),
		cmocka_unit_test(test_aadsts_errors),
		cmocka_unit_test(test_error_odd_shapes),
		cmocka_unit_test(test_429),
		cmocka_unit_test(test_5xx),
		cmocka_unit_test(test_garbage_truncated_huge),
		cmocka_unit_test(test_missing_and_bad_fields),
		cmocka_unit_test(test_huge_expires_in_capped),
		cmocka_unit_test(test_jwt_uti),
		cmocka_unit_test(test_url_allowed),
		cmocka_unit_test(test_endpoint_v1),
		cmocka_unit_test(test_code_meaning),
		cmocka_unit_test(test_mutated_bodies),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, NULL);
}

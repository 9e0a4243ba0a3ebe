/* test_libcustody.c — libcustody against a scripted fake broker: framing,
 * id matching, error decoding, timeouts and bad replies. (The real daemon
 * is exercised by tests/integration/test_cli_*.py.) */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcustody.h"

/* The fake broker: accepts one connection, reads one request line, checks
 * nothing but records it, then writes `script` (with "%ID%" replaced by the
 * request's id) and, unless hold is set, closes. */
struct fake {
	char path[108];
	int lfd;
	pthread_t thr;
	const char *script;
	bool hold;                /* keep the connection open (timeout tests) */
	char request[4096];
};

static void *fake_run(void *arg)
{
	struct fake *f = arg;
	char out[8192], idbuf[32];
	const char *p, *idp;
	size_t n = 0, o = 0;
	ssize_t r;
	int fd;

	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	while (n < sizeof(f->request) - 1 && memchr(f->request, '\n', n) == NULL) {
		r = read(fd, f->request + n, sizeof(f->request) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	f->request[n] = '\0';
	idp = strstr(f->request, "\"id\":");
	snprintf(idbuf, sizeof(idbuf), "%ld", idp ? strtol(idp + 5, NULL, 10) : -1L);
	for (p = f->script; *p && o < sizeof(out) - 32;) {
		if (strncmp(p, "%ID%", 4) == 0) {
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", idbuf);
			p += 4;
		} else {
			out[o++] = *p++;
		}
	}
	/* MSG_NOSIGNAL: a client that already hung up must not kill the test */
	if (o > 0 && send(fd, out, o, MSG_NOSIGNAL) != (ssize_t)o)
		fprintf(stderr, "fake: short write\n");
	if (f->hold)
		sleep(2);
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, const char *script, bool hold)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/test-libcustody.%d.sock", (int)getpid());
	unlink(f->path);
	f->script = script;
	f->hold = hold;
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(pthread_create(&f->thr, NULL, fake_run, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thr, NULL);
	close(f->lfd);
	unlink(f->path);
}

static json_t *ping(void)
{
	return json_pack("{s:s}", "op", "ping");
}

static void test_connect_missing_socket(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;

	(void)state;
	assert_int_equal(custody_connect("/nonexistent/custody.sock", &c, &e), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(e.message, "/nonexistent/custody.sock"));
}

static void test_connect_env_socket(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;

	(void)state;
	setenv("CUSTODY_SOCKET", "/nonexistent/env.sock", 1);
	assert_int_equal(custody_connect(NULL, &c, &e), -ENOENT);
	assert_non_null(strstr(e.message, "/nonexistent/env.sock"));
	unsetenv("CUSTODY_SOCKET");
}

static void test_call_ok_sets_v_and_id(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":true,\"pong\":true}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), 0);
	assert_true(json_is_true(json_object_get(reply, "pong")));
	/* one line, v:1, an integer id */
	assert_non_null(strstr(f.request, "\"v\":1"));
	assert_non_null(strstr(f.request, "\"id\":1"));
	assert_ptr_equal(strchr(f.request, '\n'), f.request + strlen(f.request) - 1);
	/* the caller's object is left as it was */
	assert_null(json_object_get(req, "id"));
	json_decref(reply);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_call_skips_other_ids(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":999,\"ok\":true,\"stale\":true}\n"
		       "{\"v\":1,\"id\":%ID%,\"ok\":true,\"mine\":true}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), 0);
	assert_true(json_is_true(json_object_get(reply, "mine")));
	assert_null(json_object_get(reply, "stale"));
	json_decref(reply);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_error_rate_limited(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":false,\"error\":\"rate_limited\","
		       "\"message\":\"slow down\",\"retry_after\":7,\"audit_seq\":41}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), -EREMOTEIO);
	assert_null(reply);
	assert_string_equal(e.code, "rate_limited");
	assert_string_equal(e.message, "slow down");
	assert_int_equal(e.retry_after, 7);
	assert_int_equal(e.audit_seq, 41);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_error_upstream_codes(void **state)
{
	struct custody_token_request r = { .tenant = "contoso" };
	struct custody_client *c = NULL;
	struct custody_token *t = NULL;
	struct custody_error e;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":false,\"error\":\"upstream_rejected\","
		       "\"message\":\"client secret expired\",\"upstream_error\":\"invalid_client\","
		       "\"upstream_codes\":[7000222,50000]}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_token_request(c, &r, 5000, &t, &e), -EREMOTEIO);
	assert_null(t);
	assert_string_equal(e.code, "upstream_rejected");
	assert_string_equal(e.upstream_error, "invalid_client");
	assert_int_equal(e.n_upstream_codes, 2);
	assert_int_equal(e.upstream_codes[0], 7000222);
	assert_int_equal(e.upstream_codes[1], 50000);
	custody_close(c);
	fake_stop(&f);
}

static void test_token_request_fields(void **state)
{
	struct custody_token_request r = {
		.tenant = "contoso", .scope = "s/.default", .min_ttl = 600, .purpose = "ticket 7",
	};
	struct custody_client *c = NULL;
	struct custody_token *t = NULL;
	struct custody_error e;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":true,\"token_type\":\"Bearer\","
		       "\"access_token\":\"eyJ.abc.def\",\"expires_at\":\"2026-11-29T05:00:00Z\","
		       "\"expires_in\":3599,\"tenant\":\"72f9\",\"scope\":\"s/.default\","
		       "\"grant\":\"g_0123\",\"audit_seq\":12,\"cache\":\"miss\"}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_token_request(c, &r, 5000, &t, &e), 0);
	assert_string_equal(t->access_token, "eyJ.abc.def");
	assert_int_equal(t->token_len, 11);
	assert_string_equal(t->token_type, "Bearer");
	assert_string_equal(t->expires_at, "2026-11-29T05:00:00Z");
	assert_int_equal(t->expires_in, 3599);
	assert_string_equal(t->tenant, "72f9");
	assert_string_equal(t->grant, "g_0123");
	assert_string_equal(t->cache, "miss");
	assert_int_equal(t->audit_seq, 12);
	/* what went on the wire */
	assert_non_null(strstr(f.request, "\"op\":\"token\""));
	assert_non_null(strstr(f.request, "\"tenant\":\"contoso\""));
	assert_non_null(strstr(f.request, "\"min_ttl\":600"));
	assert_non_null(strstr(f.request, "\"purpose\":\"ticket 7\""));
	assert_non_null(strstr(f.request, "\"scope\":\"s/.default\""));
	custody_token_free(t);
	custody_close(c);
	fake_stop(&f);
}

static void test_token_without_token_is_eproto(void **state)
{
	struct custody_token_request r = { .tenant = "contoso" };
	struct custody_client *c = NULL;
	struct custody_token *t = NULL;
	struct custody_error e;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":true}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_token_request(c, &r, 5000, &t, &e), -EPROTO);
	assert_null(t);
	custody_close(c);
	fake_stop(&f);
}

static void test_trailing_garbage_is_eproto(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":true} trailing\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), -EPROTO);
	assert_null(reply);
	/* the stream cannot be framed any more: the handle refuses further use */
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), -ECONNRESET);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_no_ok_is_eproto(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), -EPROTO);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_closed_without_reply(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":%ID%,\"ok\":tr", false);   /* half a line, then EOF */
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), -ECONNRESET);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_timeout(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "", true);   /* reads the request, never answers */
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 200, &reply, &e), -ETIMEDOUT);
	assert_null(reply);
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_null_id_error(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req = ping(), *reply = NULL;
	struct fake f;

	(void)state;
	fake_start(&f, "{\"v\":1,\"id\":null,\"ok\":false,\"error\":\"bad_request\","
		       "\"message\":\"not JSON\"}\n", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 5000, &reply, &e), -EREMOTEIO);
	assert_string_equal(e.code, "bad_request");
	json_decref(req);
	custody_close(c);
	fake_stop(&f);
}

static void test_bad_arguments(void **state)
{
	struct custody_token_request r = { .tenant = NULL };
	struct custody_token *t = NULL;
	struct custody_error e;
	json_t *reply = NULL, *noop = json_object();

	(void)state;
	assert_int_equal(custody_token_request(NULL, &r, 100, &t, &e), -EINVAL);
	assert_int_equal(custody_call(NULL, noop, 100, &reply, &e), -EINVAL);
	json_decref(noop);
	custody_token_free(NULL);
	custody_close(NULL);
	custody_json_wipe(NULL);
	assert_non_null(custody_strerror(-ETIMEDOUT));
	assert_non_null(custody_strerror(-12345));
}

static void test_request_too_large(void **state)
{
	struct custody_client *c = NULL;
	struct custody_error e;
	json_t *req, *reply = NULL;
	char *big;
	struct fake f;

	(void)state;
	big = malloc(CUSTODY_MAX_REQUEST + 1);
	assert_non_null(big);
	memset(big, 'a', CUSTODY_MAX_REQUEST);
	big[CUSTODY_MAX_REQUEST] = '\0';
	req = json_pack("{s:s, s:s}", "op", "ping", "pad", big);
	fake_start(&f, "", false);
	assert_int_equal(custody_connect(f.path, &c, &e), 0);
	assert_int_equal(custody_call(c, req, 1000, &reply, &e), -EMSGSIZE);
	custody_close(c);   /* the fake sees EOF and exits */
	fake_stop(&f);
	json_decref(req);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_missing_socket),
		cmocka_unit_test(test_connect_env_socket),
		cmocka_unit_test(test_call_ok_sets_v_and_id),
		cmocka_unit_test(test_call_skips_other_ids),
		cmocka_unit_test(test_error_rate_limited),
		cmocka_unit_test(test_error_upstream_codes),
		cmocka_unit_test(test_token_request_fields),
		cmocka_unit_test(test_token_without_token_is_eproto),
		cmocka_unit_test(test_trailing_garbage_is_eproto),
		cmocka_unit_test(test_no_ok_is_eproto),
		cmocka_unit_test(test_closed_without_reply),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_null_id_error),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_request_too_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

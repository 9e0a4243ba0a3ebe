/* test_tokens.c — the token cache against the real upstream code, the real
 * loop, a real vault and the fake identity provider (tests/fixtures/idp.py)
 * running as a subprocess: cache hits and misses, single flight, refresh
 * ahead of expiry, failed refreshes, 429 holds, the v1 endpoint, Entra's
 * rejections, misbehaving providers (bounded time, clear error), TLS
 * failures, forgetting a grant, the import probe, connection reuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "loop.h"
#include "tokens.h"
#include "util.h"
#include "vault.h"

#define SCOPE "https://api.securitycenter.microsoft.com/.default"
#define MAX_SECRETS 64

struct idp {
	pid_t pid;
	int port, cport;
	char dir[256];
	char log[256];
};

static char tmpdir[64];
static struct idp idp1, idp2;       /* idp2: certificate for a wrong name, own CA */
static struct loop *L;
static struct vault *V;
static struct tokens *T;
static struct loop_timer *guard;
static int pending;
static char *secrets[MAX_SECRETS];
static size_t n_secrets;
static char *hosts[] = {"127.0.0.1", NULL};
static struct upstream_config cfg;

static bool under_valgrind(void)
{
	return getenv("CUSTODY_VALGRIND") != NULL;
}

/* Generous bounds under valgrind, where everything is ~20x slower. */
static int64_t slack(int64_t ms)
{
	return under_valgrind() ? ms * 10 : ms;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

/* ---- the identity provider ------------------------------------------- */

static int read_int_file(const char *path)
{
	char *buf = NULL;
	size_t len;
	int v = -1;

	if (util_read_file(path, 64, &buf, &len) == 0)
		v = atoi(buf);
	free(buf);
	return v;
}

static void idp_start(struct idp *p, const char *name, bool wrong_name)
{
	const char *src = getenv("CUSTODY_SOURCE_DIR");
	char fixture[512], pf[300], cpf[300];

	snprintf(fixture, sizeof(fixture), "%s/tests/fixtures/idp.py", src ? src : ".");
	snprintf(p->dir, sizeof(p->dir), "%s/%s", tmpdir, name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", tmpdir, name);
	snprintf(pf, sizeof(pf), "%s/%s.port", tmpdir, name);
	snprintf(cpf, sizeof(cpf), "%s/%s.cport", tmpdir, name);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("python3", "python3", fixture, "--dir", p->dir, "--port-file", pf,
		       "--control-port-file", cpf, wrong_name ? "--wrong-name-cert" : NULL,
		       (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		p->port = read_int_file(pf);
		p->cport = read_int_file(cpf);
		if (p->port > 0 && p->cport > 0)
			return;
		usleep(50 * 1000);
	}
	fail_msg("idp.py did not start (see %s)", p->log);
}

static void idp_stop(struct idp *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGTERM);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
	char **buf = ctx;
	size_t old = *buf ? strlen(*buf) : 0;
	char *nb = realloc(*buf, old + size * n + 1);

	if (nb == NULL)
		return 0;
	memcpy(nb + old, data, size * n);
	nb[old + size * n] = '\0';
	*buf = nb;
	return size * n;
}

/* Plain HTTP to the control port; returns the parsed JSON answer. */
static json_t *idp_ctl(const struct idp *p, const char *path, const char *body)
{
	CURL *e = curl_easy_init();
	char url[128], *out = NULL;
	json_t *j;
	long code = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", p->cport, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
	if (body != NULL)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	assert_int_equal(curl_easy_perform(e), CURLE_OK);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	assert_int_equal(code, 200);
	j = json_loads(out, 0, NULL);
	free(out);
	assert_non_null(j);
	return j;
}

static void idp_ctl_void(const struct idp *p, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void idp_ctl_void(const struct idp *p, const char *path, const char *fmt, ...)
{
	char body[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	json_decref(idp_ctl(p, path, body));
}

static long idp_calls(const struct idp *p, const char *tenant)
{
	json_t *c = idp_ctl(p, "/counters", NULL);
	long n = (long)json_integer_value(json_object_get(json_object_get(c, "token_calls"), tenant));

	json_decref(c);
	return n;
}

static long idp_connections(const struct idp *p)
{
	json_t *c = idp_ctl(p, "/counters", NULL);
	long n = (long)json_integer_value(json_object_get(c, "connections"));

	json_decref(c);
	return n;
}

static void idp_fault(const char *tenant, const char *mode, const char *extra)
{
	char body[512];

	snprintf(body, sizeof(body), "{\"mode\":\"%s\"%s%s%s%s}", mode,
		 tenant ? ",\"tenant\":\"" : "", tenant ? tenant : "", tenant ? "\"" : "",
		 extra ? extra : "");
	json_decref(idp_ctl(&idp1, "/fault", body));
}

/* If a setup assertion ends the run early, no provider is left behind. */
static void stop_idps_at_exit(void)
{
	idp_stop(&idp1);
	idp_stop(&idp2);
}

/* ---- grants ----------------------------------------------------------- */

static const char *remember_secret(const char *s)
{
	assert_true(n_secrets < MAX_SECRETS);
	secrets[n_secrets] = strdup(s);
	return secrets[n_secrets++];
}

/* Register an app with the IdP (extra: more JSON members) and import a
 * sealed grant for it. */
static struct grant *grant_for(const struct idp *p, int n, const char *extra, bool v1,
			       bool register_app)
{
	char tenant[64], client[64], secret[96], json[2048], endpoint[256];
	char *env = NULL;
	struct grant *g = NULL;
	struct cerr err = {{0}};
	bool already;
	int rc;

	snprintf(tenant, sizeof(tenant), "00000000-0000-4000-8000-0000000000%02d", n);
	snprintf(client, sizeof(client), "11111111-0000-4000-8000-0000000000%02d", n);
	/* Characters that need URL-encoding, as real Entra secrets hold. */
	snprintf(secret, sizeof(secret), "Q~%02dsEcr+t/x=y&z%%_%u", n, randombytes_random());
	remember_secret(secret);
	snprintf(endpoint, sizeof(endpoint), "https://127.0.0.1:%d/%s/oauth2/%stoken", p->port,
		 tenant, v1 ? "" : "v2.0/");
	if (register_app)
		idp_ctl_void(p, "/apps",
			     "{\"tenant_id\":\"%s\",\"tenant_name\":\"t%02d.example\",\"client_id\":\"%s\","
			     "\"secret\":\"%s\"%s}",
			     tenant, n, client, secret, extra ? extra : "");
	snprintf(json, sizeof(json),
		 "{\"custody_grant\":1,\"tenant_id\":\"%s\",\"tenant_name\":\"t%02d\","
		 "\"token_endpoint\":\"%s\",\"client_id\":\"%s\",\"client_secret\":\"%s\","
		 "\"scopes\":[\"%s\"]}",
		 tenant, n, endpoint, client, secret, SCOPE);
	rc = grant_seal(json, strlen(json), vault_public_keys(V)->seal_pk, &env, &err);
	if (rc < 0)
		fail_msg("grant_seal: %s", err.msg);
	rc = vault_grant_import(V, env, strlen(env), (const char *const *)hosts,
				util_now_us() / 1000000, &g, &already, &err);
	free(env);
	if (rc < 0)
		fail_msg("vault_grant_import: %s", err.msg);
	sodium_memzero(json, sizeof(json));
	return g;
}

/* ---- running requests on the loop -------------------------------------- */

struct res {
	bool done;
	bool cb;                  /* tokens_get returned 0: the answer comes by callback */
	enum token_status status;
	const char *cache;
	bool has_token;
	size_t token_len;
	char sha[65];
	char uti[128];
	char crid[37];
	int64_t expires_at;
	int retry_after;
	int max_min_ttl;
	int http;
	char err[64];
	uint32_t codes[8];
	size_t n_codes;
	char msg[256];
	int64_t at_ms;
};

static void got(void *ctx, const struct token_reply *r)
{
	struct res *x = ctx;

	assert_false(x->done);
	x->done = true;
	x->status = r->status;
	x->max_min_ttl = r->max_min_ttl;
	x->cache = r->cache;
	x->has_token = r->access_token != NULL;
	x->token_len = r->token_len;
	if (r->access_token != NULL) {
		unsigned char d[32];
		char hex[65];

		/* The fingerprint is the token's, and the token is JWT-shaped. */
		crypto_hash_sha256(d, (const unsigned char *)r->access_token, r->token_len);
		util_hex(d, 32, hex);
		assert_string_equal(hex, r->token_sha256);
		assert_int_equal(strlen(r->access_token), r->token_len);
	}
	memcpy(x->sha, r->token_sha256, sizeof(x->sha));
	memcpy(x->uti, r->uti, sizeof(x->uti));
	memcpy(x->crid, r->client_request_id, sizeof(x->crid));
	x->expires_at = r->expires_at;
	x->retry_after = r->retry_after;
	x->http = r->http_status;
	memcpy(x->err, r->upstream_error, sizeof(x->err));
	memcpy(x->codes, r->upstream_codes, sizeof(x->codes));
	x->n_codes = r->n_upstream_codes;
	memcpy(x->msg, r->message, sizeof(x->msg));
	x->at_ms = util_mono_ms();
	for (size_t i = 0; i < n_secrets; i++)
		assert_null(strstr(r->message, secrets[i]));
	assert_null(strstr(r->message, "eyJ"));
	if (--pending == 0)
		loop_stop(L);
}

/* The callback for answers that come later: records them like got. */
static void got_never(void *ctx, const struct token_reply *r)
{
	struct res *x = ctx;

	assert_true(x->cb);   /* tokens_get returned 0: only then may it run */
	got(ctx, r);
}

static void guard_fired(struct loop *l, struct loop_timer *t, void *ctx)
{
	loop_stop(l);
}

static void run_for(int64_t ms)
{
	loop_timer_arm(guard, ms);
	loop_run(L);
	loop_timer_disarm(guard);
}

static void run_until_done(int64_t max_ms)
{
	if (pending > 0)
		run_for(max_ms);
	assert_int_equal(pending, 0);
}

static void get_async(const struct grant *g, const char *scope, int min_ttl, int64_t deadline_in,
		      struct res *x)
{
	struct token_request req = {
		.grant = g,
		.scope = scope,
		.min_ttl = min_ttl,
		.deadline_ms = deadline_in > 0 ? util_mono_ms() + deadline_in : 0,
	};

	struct token_reply now;
	int rc;

	memset(x, 0, sizeof(*x));
	pending++;
	rc = tokens_get(T, &req, &now, got_never, x, NULL);
	assert_true(rc == 0 || rc == 1);
	if (rc == 1)
		got(x, &now);   /* answered at once: the callback never runs */
	else
		x->cb = true;
}

static void get(const struct grant *g, int min_ttl, struct res *x)
{
	get_async(g, SCOPE, min_ttl, 20000, x);
	run_until_done(slack(25000));
	assert_true(x->done);
}

/* ---- fixtures ---------------------------------------------------------- */

static int group_setup(void **state)
{
	char key[128], vdir[128];
	struct vault_key_source src;
	struct cerr err = {{0}};
	char ca[300];

	assert_int_equal(sodium_init() >= 0, 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	strcpy(tmpdir, "/tmp/custody-tokens-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	atexit(stop_idps_at_exit);
	idp_start(&idp1, "idp1", false);
	idp_start(&idp2, "idp2", true);

	snprintf(key, sizeof(key), "%s/master.key", tmpdir);
	snprintf(vdir, sizeof(vdir), "%s/vault", tmpdir);
	src = (struct vault_key_source){.key_file = key};
	assert_int_equal(vault_key_file_create(key, &err), 0);
	assert_int_equal(vault_create(vdir, &src, &err), 0);
	assert_int_equal(vault_open(vdir, &src, &V, &err), 0);

	assert_int_equal(loop_new(&L), 0);
	assert_int_equal(loop_timer_new(L, guard_fired, NULL, &guard), 0);
	snprintf(ca, sizeof(ca), "%s/ca.pem", idp1.dir);
	cfg = (struct upstream_config){
		.ca_file = strdup(ca),
		/* valgrind makes even a good answer take seconds */
		.timeout_ms = under_valgrind() ? 8000 : 1500,
		.retries = 1,
		.allowed_hosts = hosts,
		.probe_wait_s = 8,
	};
	assert_int_equal(tokens_new(L, V, &cfg, &T), 0);
	return 0;
}

static int group_teardown(void **state)
{
	char *log = NULL;
	size_t len = 0;
	bool leaked = false;

	tokens_free(T);
	loop_timer_free(guard);
	loop_free(L);
	vault_close(V);
	idp_stop(&idp1);
	idp_stop(&idp2);
	/* The provider saw every secret; its log must hold none of them. */
	if (util_read_file(idp1.log, 1 << 24, &log, &len) == 0) {
		leaked = strstr(log, "eyJ") != NULL;
		for (size_t i = 0; i < n_secrets; i++)
			leaked |= strstr(log, secrets[i]) != NULL;
		free(log);
	}
	for (size_t i = 0; i < n_secrets; i++)
		free(secrets[i]);
	free(cfg.ca_file);
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	curl_global_cleanup();
	if (leaked)
		fail_msg("a secret or a token reached the IdP's log");
	return 0;
}

/* Every test starts with no faults. */
static int test_setup(void **state)
{
	json_decref(idp_ctl(&idp1, "/fault", "{\"mode\":\"ok\"}"));
	return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_miss_hit_refetch(void **state)
{
	struct grant *g = grant_for(&idp1, 1, NULL, false, true);
	struct res a, b, c;
	json_t *ctr;
	int64_t t0;
	bool seen = false;
	size_t i;
	json_t *v;

	t0 = util_mono_ms();
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	assert_string_equal(a.cache, "miss");
	assert_true(a.has_token);
	assert_int_equal(a.http, 200);
	assert_true(strlen(a.uti) > 0);
	assert_true(a.expires_at >= util_now_us() / 1000000 + 3590);
	print_message("cold fetch (TLS handshake + token) took %lld ms\n",
		      (long long)(util_mono_ms() - t0));
	/* The client-request-id we report is the one the provider saw. */
	ctr = idp_ctl(&idp1, "/counters", NULL);
	json_array_foreach(json_object_get(ctr, "client_request_ids"), i, v)
		seen |= strcmp(json_string_value(v), a.crid) == 0;
	assert_true(seen);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(ctr, "last_token_request"), "return_client_request_id")),
			    "true");
	json_decref(ctr);

	get(g, 300, &b);
	assert_int_equal(b.status, TOKEN_OK);
	assert_string_equal(b.cache, "hit");
	/* a hit is the return value, never a callback from inside the call */
	assert_false(b.cb);
	assert_true(a.cb);   /* the miss came later, by callback */
	assert_string_equal(b.sha, a.sha);
	assert_string_equal(b.uti, a.uti);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);

	/* min_ttl beyond what this provider's tokens last (3599 s): refused
	 * at once, never another fetch (issue 12 item 8) */
	get(g, 3650, &c);
	assert_int_equal(c.status, TOKEN_TTL_TOO_LONG);
	assert_false(c.cb);
	assert_int_equal(c.max_min_ttl, 3599 - 300);
	assert_non_null(strstr(c.msg, "ask for at most"));
	get(g, 3299, &c);
	assert_int_equal(c.status, TOKEN_OK);
	assert_string_equal(c.cache, "hit");
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);

	/* Hits cost no upstream call and little time. */
	t0 = util_mono_ms();
	for (int k = 0; k < 10000; k++) {
		get_async(g, SCOPE, 300, 0, &b);
		assert_string_equal(b.cache, "hit");
	}
	print_message("10000 cache hits took %lld ms\n", (long long)(util_mono_ms() - t0));
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	grant_free(g);
}

static void test_single_flight_200(void **state)
{
	struct grant *g = grant_for(&idp1, 2, NULL, false, true);
	static struct res r[200];
	struct tokens_stats st0, st1;

	tokens_get_stats(T, &st0);
	for (int i = 0; i < 200; i++)
		get_async(g, SCOPE, 300, 20000, &r[i]);
	run_until_done(slack(25000));
	for (int i = 0; i < 200; i++) {
		assert_int_equal(r[i].status, TOKEN_OK);
		assert_string_equal(r[i].cache, "miss");
		assert_string_equal(r[i].sha, r[0].sha);
	}
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	tokens_get_stats(T, &st1);
	assert_int_equal(st1.upstream_calls - st0.upstream_calls, 1);
	assert_int_equal(st1.misses - st0.misses, 200);
	grant_free(g);
}

static void test_refresh_ahead(void **state)
{
	struct grant *g = grant_for(&idp1, 3, ",\"refresh_in\":1", false, true);
	struct res a, b;
	struct tokens_stats st0, st1;

	tokens_get_stats(T, &st0);
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	/* refresh_in=1: the background refresh runs after a second, once
	 * (nobody used the refreshed token, so it is not refreshed again). */
	run_for(slack(3000));
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 2);
	tokens_get_stats(T, &st1);
	assert_int_equal(st1.refreshes - st0.refreshes, 1);
	get(g, 300, &b);
	assert_int_equal(b.status, TOKEN_OK);
	assert_string_equal(b.cache, "hit");
	assert_string_not_equal(b.sha, a.sha);
	grant_free(g);
}

static void test_failed_refresh_keeps_serving(void **state)
{
	struct grant *g = grant_for(&idp1, 4, ",\"refresh_in\":1", false, true);
	struct res a, b;
	struct tokens_stats st0, st1;

	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	tokens_get_stats(T, &st0);
	idp_fault(g->tenant_id, "500", NULL);
	run_for(slack(2500));
	/* The refresh ran (1 + 1 retry), failed, and the token still serves. */
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 3);
	tokens_get_stats(T, &st1);
	assert_true(st1.upstream_errors > st0.upstream_errors);
	get(g, 300, &b);
	assert_int_equal(b.status, TOKEN_OK);
	assert_string_equal(b.cache, "hit");
	assert_string_equal(b.sha, a.sha);
	/* A caller no token of this provider can satisfy causes no call. */
	get(g, 3650, &b);
	assert_int_equal(b.status, TOKEN_TTL_TOO_LONG);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 3);
	grant_free(g);
}

static void test_429_holds(void **state)
{
	struct grant *g = grant_for(&idp1, 5, NULL, false, true);
	struct res a, b, c;

	idp_fault(g->tenant_id, "429", ",\"retry_after\":2");
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_RATE_LIMITED);
	assert_int_equal(a.retry_after, 2);
	assert_int_equal(a.http, 429);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	/* Held: no upstream call until Retry-After has passed. */
	get(g, 300, &b);
	assert_int_equal(b.status, TOKEN_RATE_LIMITED);
	assert_true(b.retry_after >= 1 && b.retry_after <= 2);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	idp_fault(g->tenant_id, "ok", NULL);
	run_for(2100);
	get(g, 300, &c);
	assert_int_equal(c.status, TOKEN_OK);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 2);
	grant_free(g);

	/* No Retry-After header: 5 s, as MSAL. */
	g = grant_for(&idp1, 6, NULL, false, true);
	idp_fault(g->tenant_id, "429", ",\"retry_after\":null");
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_RATE_LIMITED);
	assert_int_equal(a.retry_after, 5);
	grant_free(g);
}

static void test_v1_endpoint(void **state)
{
	struct grant *g = grant_for(&idp1, 7, NULL, true, true);
	struct res a;
	json_t *ctr, *last;

	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	assert_true(strlen(a.uti) > 0);
	assert_true(a.expires_at >= util_now_us() / 1000000 + 3590);
	ctr = idp_ctl(&idp1, "/counters", NULL);
	last = json_object_get(ctr, "last_token_request");
	assert_string_equal(json_string_value(json_object_get(last, "endpoint")), "v1");
	assert_string_equal(json_string_value(json_object_get(last, "resource")),
			    "https://api.securitycenter.microsoft.com");
	assert_true(json_is_null(json_object_get(last, "scope")));
	json_decref(ctr);
	grant_free(g);
}

static void expect_rejected(const struct grant *g, const char *scope, int http, const char *error,
			    uint32_t code)
{
	struct res a;

	get_async(g, scope, 300, 20000, &a);
	run_until_done(slack(25000));
	assert_int_equal(a.status, TOKEN_UPSTREAM_REJECTED);
	assert_int_equal(a.http, http);
	assert_string_equal(a.err, error);
	assert_int_equal(a.n_codes, 1);
	assert_int_equal(a.codes[0], code);
	assert_false(a.has_token);
}

static void test_rejections(void **state)
{
	struct grant *g;
	long before;

	/* wrong secret: the app is registered with another one */
	g = grant_for(&idp1, 8, NULL, false, false);
	idp_ctl_void(&idp1, "/apps", "{\"tenant_id\":\"%s\",\"client_id\":\"%s\",\"secret\":\"other\"}",
		     g->tenant_id, g->client_id);
	expect_rejected(g, SCOPE, 401, "invalid_client", 7000215);
	/* a failure is never cached: the next request asks again */
	before = idp_calls(&idp1, g->tenant_id);
	expect_rejected(g, SCOPE, 401, "invalid_client", 7000215);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), before + 1);
	grant_free(g);

	g = grant_for(&idp1, 9, ",\"secret_expired\":true", false, true);
	expect_rejected(g, SCOPE, 401, "invalid_client", 7000222);
	grant_free(g);

	/* unknown tenant */
	g = grant_for(&idp1, 10, NULL, false, false);
	expect_rejected(g, SCOPE, 400, "invalid_tenant", 90002);
	grant_free(g);

	/* the tenant exists, the app does not (no consent) */
	g = grant_for(&idp1, 11, NULL, false, false);
	idp_ctl_void(&idp1, "/apps", "{\"tenant_id\":\"%s\",\"client_id\":\"someone-else\",\"secret\":\"x\"}",
		     g->tenant_id);
	expect_rejected(g, SCOPE, 400, "unauthorized_client", 700016);
	grant_free(g);

	/* Defender not provisioned in the tenant */
	g = grant_for(&idp1, 12, ",\"resources\":[\"https://graph.microsoft.com\"]", false, true);
	expect_rejected(g, SCOPE, 400, "invalid_resource", 500011);
	/* scope without /.default */
	expect_rejected(g, "https://graph.microsoft.com", 400, "invalid_scope", 1002012);
	grant_free(g);
}

static void expect_unavailable(const struct grant *g, const char *mode, const char *extra,
			       int64_t max_ms, const char *words)
{
	struct res a;
	int64_t t0 = util_mono_ms();

	idp_fault(g->tenant_id, mode, extra);
	get_async(g, SCOPE, 300, 20000, &a);
	run_until_done(slack(25000));
	assert_int_equal(a.status, TOKEN_UPSTREAM_UNAVAILABLE);
	assert_false(a.has_token);
	assert_true(strlen(a.msg) > 0);
	if (strstr(a.msg, words) == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\"", mode, a.msg, words);
	if (!under_valgrind() && a.at_ms - t0 > max_ms)
		fail_msg("%s: took %lld ms", mode, (long long)(a.at_ms - t0));
	print_message("%-9s -> %s (%lld ms)\n", mode, a.msg, (long long)(a.at_ms - t0));
	idp_fault(g->tenant_id, "ok", NULL);
}

static void test_misbehaving_provider(void **state)
{
	struct grant *g = grant_for(&idp1, 13, NULL, false, true);
	struct res a;

	/* timeout 1500 ms, 1 retry: at most ~3.2 s for retryable failures */
	expect_unavailable(g, "garbage", NULL, 1000, "not a JSON object");
	expect_unavailable(g, "truncated", NULL, 1000, "not a JSON object");
	expect_unavailable(g, "huge", NULL, 2000, "exceeds");
	expect_unavailable(g, "500", NULL, 2000, "HTTP 500");
	expect_unavailable(g, "reset", NULL, 4000, "could not reach");
	expect_unavailable(g, "slow", NULL, 4000, "did not answer within");
	expect_unavailable(g, "hang", NULL, 4000, "did not answer within");
	/* and afterwards the provider works again */
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	grant_free(g);
}

static void test_caller_deadline(void **state)
{
	struct grant *g = grant_for(&idp1, 14, NULL, false, true);
	struct res a, b;
	int64_t t0 = util_mono_ms();

	idp_fault(g->tenant_id, "slow", ",\"delay_s\":1");
	get_async(g, SCOPE, 300, 300, &a);
	run_until_done(slack(5000));
	assert_int_equal(a.status, TOKEN_UPSTREAM_UNAVAILABLE);
	assert_string_equal(a.msg, "identity provider did not answer in time");
	if (!under_valgrind())
		assert_true(a.at_ms - t0 < 800);
	/* The fetch went on and its token is cached for the next caller. */
	run_for(slack(1500));
	get(g, 300, &b);
	assert_int_equal(b.status, TOKEN_OK);
	assert_string_equal(b.cache, "hit");
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	grant_free(g);
}

static void test_tls_failures(void **state)
{
	struct grant *g1 = grant_for(&idp1, 15, NULL, false, true);
	struct grant *g2 = grant_for(&idp2, 16, NULL, false, true);
	struct upstream_config c2 = cfg;
	char ca2[300];
	struct res a;
	long conns;

	/* The provider's CA is not the one custody trusts. */
	snprintf(ca2, sizeof(ca2), "%s/ca.pem", idp2.dir);
	c2.ca_file = ca2;
	assert_int_equal(tokens_configure(T, &c2), 0);
	get(g1, 300, &a);
	assert_int_equal(a.status, TOKEN_UPSTREAM_UNAVAILABLE);
	print_message("unknown CA -> %s\n", a.msg);
	assert_non_null(strstr(a.msg, "certificate"));
	assert_int_equal(idp_calls(&idp1, g1->tenant_id), 0);

	/* Trusted CA, certificate for another name. */
	conns = idp_connections(&idp2);
	get(g2, 300, &a);
	assert_int_equal(a.status, TOKEN_UPSTREAM_UNAVAILABLE);
	print_message("wrong name -> %s\n", a.msg);
	assert_int_equal(idp_calls(&idp2, g2->tenant_id), 0);
	/* not retried: a verification failure is permanent */
	assert_int_equal(idp_connections(&idp2) - conns, 1);

	assert_int_equal(tokens_configure(T, &cfg), 0);
	get(g1, 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	grant_free(g1);
	grant_free(g2);
}

static void test_endpoint_not_allowed(void **state)
{
	struct grant *g = grant_for(&idp1, 17, NULL, false, true);
	struct upstream_config c2 = cfg;
	char *only[] = {"login.microsoftonline.com", NULL};
	struct res a;

	c2.allowed_hosts = only;
	assert_int_equal(tokens_configure(T, &c2), 0);
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_UPSTREAM_UNAVAILABLE);
	assert_non_null(strstr(a.msg, "allowed_hosts"));
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 0);
	assert_int_equal(tokens_configure(T, &cfg), 0);
	grant_free(g);
}

struct forget_ctx {
	const char *grant_id;
};

static void forget_now(struct loop *l, struct loop_timer *t, void *ctx)
{
	tokens_forget_grant(T, ((struct forget_ctx *)ctx)->grant_id);
}

static void test_forget_grant(void **state)
{
	struct grant *g = grant_for(&idp1, 18, NULL, false, true);
	struct grant *other = grant_for(&idp1, 19, NULL, false, true);
	struct forget_ctx fc = {g->id};
	struct loop_timer *tm;
	struct res a, b, c, o;
	struct tokens_stats st;

	get(g, 300, &a);
	get(other, 300, &o);
	assert_int_equal(a.status, TOKEN_OK);
	/* A waiter on a hanging fetch, then the grant is forgotten. (The
	 * cached token goes first: a min_ttl it cannot meet would now be
	 * refused rather than fetched for.) */
	tokens_forget_grant(T, g->id);
	idp_fault(g->tenant_id, "hang", NULL);
	get_async(g, SCOPE, 300, 20000, &b);
	assert_int_equal(loop_timer_new(L, forget_now, &fc, &tm), 0);
	loop_timer_arm(tm, 200);
	run_until_done(slack(3000));
	loop_timer_free(tm);
	assert_int_equal(b.status, TOKEN_REVOKED);
	assert_non_null(strstr(b.msg, g->id));
	idp_fault(g->tenant_id, "ok", NULL);
	/* the cached token is gone: the next request fetches */
	get(g, 300, &c);
	assert_int_equal(c.status, TOKEN_OK);
	assert_string_equal(c.cache, "miss");
	assert_string_not_equal(c.sha, a.sha);
	/* other grants keep theirs */
	get(other, 300, &b);
	assert_string_equal(b.cache, "hit");
	assert_string_equal(b.sha, o.sha);

	tokens_forget_all(T);
	tokens_get_stats(T, &st);
	assert_int_equal(st.cached, 0);
	get(other, 300, &b);
	assert_string_equal(b.cache, "miss");
	grant_free(g);
	grant_free(other);
}

static void test_revoked_in_vault(void **state)
{
	struct grant *g = grant_for(&idp1, 20, NULL, false, true);
	struct cerr err = {{0}};
	struct res a;

	assert_int_equal(vault_grant_revoke(V, g->id, "officer", "test", util_now_us() / 1000000,
					    &err), 0);
	get(g, 300, &a);
	assert_int_equal(a.status, TOKEN_REVOKED);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 0);
	grant_free(g);
}

static void test_probe(void **state)
{
	struct grant *g = grant_for(&idp1, 21, ",\"valid_after_s\":3", false, true);
	struct token_reply now;
	struct res a;
	int64_t t0 = util_mono_ms();

	/* The secret is unknown to the provider for 3 s: the probe waits. */
	memset(&a, 0, sizeof(a));
	pending++;
	a.cb = true;
	assert_int_equal(tokens_probe(T, g, SCOPE, &now, got_never, &a, NULL), 0);
	run_until_done(slack(15000));
	assert_int_equal(a.status, TOKEN_OK);
	assert_false(a.has_token);
	assert_true(strlen(a.sha) == 64);
	assert_true(a.at_ms - t0 >= 2900);
	assert_true(idp_calls(&idp1, g->tenant_id) >= 2);
	grant_free(g);

	/* An expired secret is final: one call, no waiting. */
	g = grant_for(&idp1, 22, ",\"secret_expired\":true", false, true);
	memset(&a, 0, sizeof(a));
	pending++;
	a.cb = true;
	assert_int_equal(tokens_probe(T, g, SCOPE, &now, got_never, &a, NULL), 0);
	run_until_done(slack(5000));
	assert_int_equal(a.status, TOKEN_UPSTREAM_REJECTED);
	assert_int_equal(a.codes[0], 7000222);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	grant_free(g);
}

static void test_cancel(void **state)
{
	struct grant *g = grant_for(&idp1, 23, NULL, false, true);
	struct token_request req = {.grant = g, .scope = SCOPE, .min_ttl = 300,
				    .deadline_ms = util_mono_ms() + 5000};
	struct token_wait *w = NULL;
	struct token_reply now;
	struct res a, b;

	idp_fault(g->tenant_id, "slow", ",\"delay_s\":0.5");
	memset(&a, 0, sizeof(a));
	a.cb = true;
	assert_int_equal(tokens_get(T, &req, &now, got_never, &a, &w), 0);
	assert_non_null(w);
	get_async(g, SCOPE, 300, 5000, &b);
	tokens_cancel(w);
	run_until_done(slack(5000));
	assert_false(a.done);
	assert_int_equal(b.status, TOKEN_OK);
	assert_int_equal(idp_calls(&idp1, g->tenant_id), 1);
	grant_free(g);
}

static void test_connection_reuse(void **state)
{
	struct grant *g[5];
	struct res a;
	long before;
	struct tokens_stats st0, st1;

	for (int i = 0; i < 5; i++)
		g[i] = grant_for(&idp1, 30 + i, NULL, false, true);
	get(g[0], 300, &a);
	assert_int_equal(a.status, TOKEN_OK);
	before = idp_connections(&idp1);
	tokens_get_stats(T, &st0);
	for (int i = 1; i < 5; i++) {
		get(g[i], 300, &a);
		assert_int_equal(a.status, TOKEN_OK);
	}
	/* Four tenants, one host: the connection is reused. */
	assert_int_equal(idp_connections(&idp1) - before, 0);
	tokens_get_stats(T, &st1);
	assert_int_equal(st1.connections_opened - st0.connections_opened, 0);
	for (int i = 0; i < 5; i++)
		grant_free(g[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_miss_hit_refetch, test_setup),
		cmocka_unit_test_setup(test_single_flight_200, test_setup),
		cmocka_unit_test_setup(test_refresh_ahead, test_setup),
		cmocka_unit_test_setup(test_failed_refresh_keeps_serving, test_setup),
		cmocka_unit_test_setup(test_429_holds, test_setup),
		cmocka_unit_test_setup(test_v1_endpoint, test_setup),
		cmocka_unit_test_setup(test_rejections, test_setup),
		cmocka_unit_test_setup(test_misbehaving_provider, test_setup),
		cmocka_unit_test_setup(test_caller_deadline, test_setup),
		cmocka_unit_test_setup(test_tls_failures, test_setup),
		cmocka_unit_test_setup(test_endpoint_not_allowed, test_setup),
		cmocka_unit_test_setup(test_forget_grant, test_setup),
		cmocka_unit_test_setup(test_revoked_in_vault, test_setup),
		cmocka_unit_test_setup(test_probe, test_setup),
		cmocka_unit_test_setup(test_cancel, test_setup),
		cmocka_unit_test_setup(test_connection_reuse, test_setup),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* upstream.c — token-endpoint calls over libcurl's multi_socket API.
 *
 * One multi handle for the broker: its connection cache lets calls to the
 * same host (every tenant on login.microsoftonline.com) reuse connections.
 * It runs on the broker's loop (curl_loop.c), so nothing here blocks and no
 * thread is needed.
 */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <malloc.h>
#include <sodium.h>

#include "curl_loop.h"
#include "util.h"

#define BACKOFF_FIRST_MS 200
#define CONNECT_TIMEOUT_MAX_MS 5000
#define MIN_ATTEMPT_MS 100
#define UPSTREAM_MAX_CONNS 256
#define POOL_MAX 64             /* spare secret buffers kept per size */
#define BODY_BUF 4096           /* pooled request bodies; longer ones are not pooled */

/* Secret buffers (request bodies with the client secret, answers with the
 * access token) are sodium_malloc memory. Allocating and freeing them per
 * fetch cost an mmap, mprotects, mlock and munmap each, and the munmap and
 * mprotect of touched pages shoot down TLBs on every CPU the broker's
 * threads ran on: most of custodyd's CPU on a cold start. Wiped buffers are
 * kept here for the next fetch instead, still guarded and locked. */
struct pool {
	void *buf[POOL_MAX];
	size_t n;
};

struct upstream {
	struct loop *loop;
	struct curl_loop curl;   /* its multi handle on the loop */
	CURLSH *share;           /* TLS sessions, so a new connection resumes */
	char *ca_file;
	long timeout_ms;
	int retries;
	char **allowed_hosts;
	struct upstream_stats stats;
	struct upstream_call *calls;
	struct pool bodies;      /* BODY_BUF bytes each */
	struct pool answers;     /* UPSTREAM_MAX_BODY bytes each */
};

struct upstream_call {
	struct upstream *u;
	struct upstream_call *prev, *next;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *body;              /* sodium_malloc: holds the client secret */
	size_t body_len;
	size_t body_cap;
	char *resp;              /* sodium_malloc: holds the access token */
	size_t resp_len;
	bool too_large;
	char retry_after[32];
	char crid[37];
	char errbuf[CURL_ERROR_SIZE];
	int attempt;
	long attempt_timeout_ms;
	int64_t deadline_ms;
	struct loop_timer *backoff;
	upstream_cb cb;
	void *ctx;
};

/* ---- URL checks ------------------------------------------------------- */

bool upstream_url_allowed(const char *url, char *const *allowed_hosts)
{
	CURLU *h = curl_url();
	char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL;
	bool ok = false;

	if (h == NULL || url == NULL || allowed_hosts == NULL)
		goto out;
	if (curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    strcasecmp(scheme, "https") != 0)
		goto out;
	/* User info in a token endpoint is never legitimate. */
	if (curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	    curl_url_get(h, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
		goto out;
	if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto out;
	for (char *const *a = allowed_hosts; *a != NULL; a++)
		if (strcasecmp(*a, host) == 0)
			ok = true;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(h);
	return ok;
}

bool upstream_endpoint_is_v1(const char *url)
{
	CURLU *h = curl_url();
	char *path = NULL;
	bool v1 = false;
	size_t n;

	if (h != NULL && curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(h, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		n = strlen(path);
		v1 = n >= 13 && strcmp(path + n - 13, "/oauth2/token") == 0;
	}
	curl_free(path);
	curl_url_cleanup(h);
	return v1;
}

/* ---- configuration ---------------------------------------------------- */

static void free_strv(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

int upstream_configure(struct upstream *u, const struct upstream_config *cfg)
{
	char *ca = NULL, **hosts = NULL;
	size_t n = 0;
	int rc = -ENOMEM;

	if (cfg->ca_file != NULL && (ca = strdup(cfg->ca_file)) == NULL)
		goto out;
	while (cfg->allowed_hosts != NULL && cfg->allowed_hosts[n] != NULL)
		n++;
	hosts = calloc(n + 1, sizeof(*hosts));
	if (hosts == NULL)
		goto out;
	for (size_t i = 0; i < n; i++)
		if ((hosts[i] = strdup(cfg->allowed_hosts[i])) == NULL)
			goto out;
	free(u->ca_file);
	free_strv(u->allowed_hosts);
	u->ca_file = ca;
	u->allowed_hosts = hosts;
	ca = NULL;
	hosts = NULL;
	u->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
	u->retries = cfg->retries >= 0 ? cfg->retries : 3;
	rc = 0;
out:
	free(ca);
	free_strv(hosts);
	return rc;
}

/* ---- secret buffers ------------------------------------------------- */

static void *pool_get(struct pool *p, size_t size)
{
	if (p->n > 0)
		return p->buf[--p->n];
	return sodium_malloc(size);
}

/* Wipes the `used` bytes (the rest is still wiped from before) and keeps
 * the buffer for reuse, or frees it when the pool is full. */
static void pool_put(struct pool *p, void *buf, size_t used)
{
	if (buf == NULL)
		return;
	sodium_memzero(buf, used);
	if (p->n < POOL_MAX)
		p->buf[p->n++] = buf;
	else
		sodium_free(buf);
}

static void pool_drain(struct pool *p)
{
	while (p->n > 0)
		sodium_free(p->buf[--p->n]);
}

/* ---- one call --------------------------------------------------------- */

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct upstream_call *c = ctx;
	size_t n = size * nmemb;

	if (n > UPSTREAM_MAX_BODY - c->resp_len) {
		c->too_large = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	memcpy(c->resp + c->resp_len, data, n);
	c->resp_len += n;
	return n;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct upstream_call *c = ctx;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";

	/* A new status line starts a new header block (after 100 Continue). */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		c->retry_after[0] = '\0';
	if (n > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		size_t vlen = n - (sizeof(name) - 1);

		if (vlen >= sizeof(c->retry_after))
			vlen = sizeof(c->retry_after) - 1;
		memcpy(c->retry_after, data + sizeof(name) - 1, vlen);
		c->retry_after[vlen] = '\0';
	}
	return n;
}

static void call_free(struct upstream_call *c)
{
	struct upstream *u = c->u;

	if (c->easy != NULL) {
		curl_multi_remove_handle(u->curl.multi, c->easy);
		curl_easy_cleanup(c->easy);
	}
	curl_slist_free_all(c->headers);
	if (c->body != NULL && c->body_cap == BODY_BUF) {
		pool_put(&u->bodies, c->body, c->body_len);
	} else if (c->body != NULL) {
		sodium_memzero(c->body, c->body_len);
		sodium_free(c->body);
	}
	/* each attempt wipes what it received: only the current one is left */
	pool_put(&u->answers, c->resp, c->resp_len);
	loop_timer_free(c->backoff);
	free(c->url);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		u->calls = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
}

static int attempt_setup(struct upstream_call *c, struct cerr *err)
{
	struct upstream *u = c->u;
	char hdr[64];
	struct curl_slist *h = NULL, *t;
	int64_t left = c->deadline_ms - util_mono_ms();
	CURL *e = NULL;
	CURLcode cc = CURLE_OK;

	if (!upstream_url_allowed(c->url, u->allowed_hosts))
		return cerr_set(err, -EPERM,
				"token endpoint is not https or its host is not in upstream.allowed_hosts");
	if (left < MIN_ATTEMPT_MS)
		return cerr_set(err, -ETIMEDOUT, "identity provider did not answer in time");
	c->attempt_timeout_ms = left < u->timeout_ms ? (long)left : u->timeout_ms;

	util_uuid4(c->crid);
	snprintf(hdr, sizeof(hdr), "client-request-id: %s", c->crid);
	static const char *const fixed[] = {
		"Content-Type: application/x-www-form-urlencoded",
		"Accept: application/json",
		"return-client-request-id: true",
		"Expect:",
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if ((t = curl_slist_append(h, fixed[i])) == NULL)
			goto nomem;
		h = t;
	}
	if ((t = curl_slist_append(h, hdr)) == NULL)
		goto nomem;
	h = t;
	if ((e = curl_easy_init()) == NULL)
		goto nomem;

#define SET(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_URL, c->url);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (u->ca_file != NULL)
		SET(CURLOPT_CAINFO, u->ca_file);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, c->attempt_timeout_ms < CONNECT_TIMEOUT_MAX_MS
				       ? c->attempt_timeout_ms : (long)CONNECT_TIMEOUT_MAX_MS);
	SET(CURLOPT_TIMEOUT_MS, c->attempt_timeout_ms);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)UPSTREAM_MAX_BODY);
	SET(CURLOPT_HTTPHEADER, h);
	SET(CURLOPT_USERAGENT, "custody/0.1");
	SET(CURLOPT_POST, 1L);
	/* Not COPYPOSTFIELDS: libcurl must not keep its own copy of the secret. */
	SET(CURLOPT_POSTFIELDS, c->body);
	SET(CURLOPT_POSTFIELDSIZE, (long)c->body_len);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, c);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, c);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_PRIVATE, c);
	SET(CURLOPT_SHARE, u->share);
#undef SET
	if (cc != CURLE_OK) {
		curl_easy_cleanup(e);
		curl_slist_free_all(h);
		return cerr_set(err, -EINVAL, "libcurl refused an option: %s",
				curl_easy_strerror(cc));
	}
	c->errbuf[0] = '\0';
	c->retry_after[0] = '\0';
	c->too_large = false;
	sodium_memzero(c->resp, c->resp_len);
	c->resp_len = 0;
	if (curl_multi_add_handle(u->curl.multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		curl_slist_free_all(h);
		return cerr_set(err, -ENOMEM, "libcurl could not start the transfer");
	}
	curl_slist_free_all(c->headers);
	c->headers = h;
	c->easy = e;
	u->stats.attempts++;
	return 0;
nomem:
	curl_slist_free_all(h);
	return cerr_set(err, -ENOMEM, "out of memory");
}

static bool transport_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false; /* TLS verification, too large, bad URL: permanent */
	}
}

static void transport_result(struct upstream_call *c, CURLcode cc, struct upstream_token *res)
{
	memset(res, 0, sizeof(*res));
	res->outcome = UPSTREAM_UNAVAILABLE;
	res->retryable = transport_retryable(cc);
	if (c->too_large || cc == CURLE_FILESIZE_EXCEEDED)
		snprintf(res->message, sizeof(res->message),
			 "identity provider answer exceeds %d bytes", UPSTREAM_MAX_BODY);
	else if (cc == CURLE_OPERATION_TIMEDOUT)
		snprintf(res->message, sizeof(res->message),
			 "identity provider did not answer within %ld ms", c->attempt_timeout_ms);
	else
		/* libcurl's error buffer names hosts and TLS problems, never the
		 * request body or the answer. */
		snprintf(res->message, sizeof(res->message),
			 "could not reach the identity provider: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
}

static void call_finish(struct upstream_call *c, struct upstream_token *res)
{
	upstream_cb cb = c->cb;
	void *ctx = c->ctx;

	memcpy(res->client_request_id, c->crid, sizeof(res->client_request_id));
	call_free(c);
	cb(ctx, res);
	upstream_token_clear(res);
}

static void on_backoff(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct upstream_call *c = ctx;
	struct upstream_token res;
	struct cerr err = {{0}};
	int rc = attempt_setup(c, &err);

	if (rc == 0)
		return;
	memset(&res, 0, sizeof(res));
	res.outcome = UPSTREAM_UNAVAILABLE;
	snprintf(res.message, sizeof(res.message), "%s", err.msg);
	call_finish(c, &res);
}

/* curl_loop's done callback: one attempt's transfer ended. */
static void attempt_done(void *ctx, CURLcode cc)
{
	struct upstream_call *c = ctx;
	struct upstream *u = c->u;
	struct upstream_token res;
	long status = 0, conns = 0;
	int64_t now, backoff;

	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &conns);
	u->stats.connections_opened += (uint64_t)(conns > 0 ? conns : 0);
	curl_multi_remove_handle(u->curl.multi, c->easy);
	curl_easy_cleanup(c->easy);
	c->easy = NULL;

	if (cc == CURLE_OK) {
		if (upstream_parse_token_response(status, c->retry_after[0] ? c->retry_after : NULL,
						  c->resp, c->resp_len, util_now_us() / 1000000,
						  &res) < 0) {
			memset(&res, 0, sizeof(res));
			res.outcome = UPSTREAM_UNAVAILABLE;
			snprintf(res.message, sizeof(res.message), "out of memory");
		}
	} else {
		transport_result(c, cc, &res);
		res.http_status = (int)status;
	}
	sodium_memzero(c->resp, c->resp_len);
	c->resp_len = 0;

	now = util_mono_ms();
	backoff = (int64_t)BACKOFF_FIRST_MS << (c->attempt < 10 ? c->attempt : 10);
	if (res.retryable && c->attempt < u->retries &&
	    now + backoff + MIN_ATTEMPT_MS <= c->deadline_ms) {
		upstream_token_clear(&res);
		c->attempt++;
		loop_timer_arm(c->backoff, backoff);
		return;
	}
	call_finish(c, &res);
}

/* ---- body ------------------------------------------------------------- */

/* grant_type=client_credentials&client_id=…&scope=…&client_secret=… (v2) or
 * …&resource=… (v1), URL-encoded, into sodium_malloc memory. */
static int build_body(struct upstream *u, const struct upstream_request *req, bool v1,
		      char **out, size_t *outlen, size_t *outcap)
{
	char *cid = NULL, *sec = NULL, *sc = NULL, *body = NULL;
	char *scope = NULL;
	size_t n, slen = strlen(req->scope);
	static const char sfx[] = "/.default";
	int rc = -ENOMEM;

	scope = strdup(req->scope);
	if (scope == NULL)
		goto out;
	if (v1 && slen >= sizeof(sfx) - 1 && strcmp(scope + slen - (sizeof(sfx) - 1), sfx) == 0)
		scope[slen - (sizeof(sfx) - 1)] = '\0';
	cid = curl_easy_escape(NULL, req->client_id, 0);
	sc = curl_easy_escape(NULL, scope, 0);
	sec = curl_easy_escape(NULL, req->client_secret, 0);
	if (cid == NULL || sc == NULL || sec == NULL)
		goto out;
	n = strlen("grant_type=client_credentials&client_id=") + strlen(cid) +
	    strlen("&resource=") + strlen(sc) + strlen("&client_secret=") + strlen(sec) + 1;
	body = n <= BODY_BUF ? pool_get(&u->bodies, BODY_BUF) : sodium_malloc(n);
	if (body == NULL)
		goto out;
	snprintf(body, n, "grant_type=client_credentials&client_id=%s&%s=%s&client_secret=%s", cid,
		 v1 ? "resource" : "scope", sc, sec);
	*outlen = strlen(body);
	*outcap = n <= BODY_BUF ? BODY_BUF : n;
	*out = body;
	rc = 0;
out:
	if (sec != NULL) {
		sodium_memzero(sec, strlen(sec));
		curl_free(sec);
	}
	curl_free(cid);
	curl_free(sc);
	free(scope);
	return rc;
}

/* ---- public ----------------------------------------------------------- */

int upstream_fetch(struct upstream *u, const struct upstream_request *req, upstream_cb cb,
		   void *ctx, struct upstream_call **out, struct cerr *err)
{
	struct upstream_call *c = NULL;
	int rc;

	if (req->token_endpoint == NULL || req->client_id == NULL || req->client_secret == NULL ||
	    req->scope == NULL || cb == NULL)
		return cerr_set(err, -EINVAL, "incomplete upstream request");
	if (!upstream_url_allowed(req->token_endpoint, u->allowed_hosts))
		return cerr_set(err, -EPERM,
				"token endpoint is not https or its host is not in upstream.allowed_hosts");
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	c->u = u;
	c->cb = cb;
	c->ctx = ctx;
	c->deadline_ms = req->deadline_ms;
	c->next = u->calls;
	if (u->calls != NULL)
		u->calls->prev = c;
	u->calls = c;
	rc = -ENOMEM;
	c->url = strdup(req->token_endpoint);
	c->resp = pool_get(&u->answers, UPSTREAM_MAX_BODY);
	if (c->url == NULL || c->resp == NULL ||
	    loop_timer_new(u->loop, on_backoff, c, &c->backoff) < 0) {
		cerr_set(err, rc, "out of memory");
		goto fail;
	}
	rc = build_body(u, req, upstream_endpoint_is_v1(req->token_endpoint), &c->body,
			&c->body_len, &c->body_cap);
	if (rc < 0) {
		cerr_set(err, rc, "out of memory");
		goto fail;
	}
	rc = attempt_setup(c, err);
	if (rc < 0)
		goto fail;
	if (out != NULL)
		*out = c;
	return 0;
fail:
	call_free(c);
	return rc;
}

void upstream_cancel(struct upstream_call *c)
{
	if (c != NULL)
		call_free(c);
}

void upstream_get_stats(const struct upstream *u, struct upstream_stats *st)
{
	*st = u->stats;
}

/* jansson keeps every parsed string (the access token among them) in
 * malloc'd memory it frees without wiping. Wiping on free in jansson's
 * allocator keeps tokens from lingering in freed heap; it applies to the
 * whole process, which only costs a memset per JSON free. */
static void *json_wipe_malloc(size_t n)
{
	return malloc(n);
}

static void json_wipe_free(void *p)
{
	if (p != NULL)
		sodium_memzero(p, malloc_usable_size(p));
	free(p);
}

int upstream_new(struct loop *l, const struct upstream_config *cfg, struct upstream **out)
{
	struct upstream *u;
	int rc = -ENOMEM;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	json_set_alloc_funcs(json_wipe_malloc, json_wipe_free);
	u = calloc(1, sizeof(*u));
	if (u == NULL)
		goto fail_global;
	u->loop = l;
	u->share = curl_share_init();
	if (curl_loop_init(&u->curl, l, attempt_done) < 0 || u->share == NULL)
		goto fail;
	/* Each fetch is a new easy handle, and libcurl keeps TLS sessions per
	 * easy handle unless shared: without this every new connection paid a
	 * full handshake. One thread uses the share, so it needs no locks. */
	if (curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
		goto fail;
	rc = upstream_configure(u, cfg);
	if (rc < 0)
		goto fail;
	/* The cache limit counts connections in use too: past it libcurl
	 * closes each connection as its transfer ends, so with more fetches in
	 * flight than the limit (a cold start of many tenants) nearly every
	 * fetch paid a new TCP connection and TLS handshake. Room for the
	 * fetches one busy broker has in flight at once. */
	curl_multi_setopt(u->curl.multi, CURLMOPT_MAXCONNECTS, (long)UPSTREAM_MAX_CONNS);
	*out = u;
	return 0;
fail:
	curl_loop_cleanup(&u->curl);
	if (u->share != NULL)
		curl_share_cleanup(u->share);
	free(u);
fail_global:
	curl_global_cleanup();
	return rc;
}

void upstream_free(struct upstream *u)
{
	if (u == NULL)
		return;
	while (u->calls != NULL)
		call_free(u->calls);
	curl_loop_cleanup(&u->curl);
	curl_share_cleanup(u->share);
	pool_drain(&u->bodies);
	pool_drain(&u->answers);
	free(u->ca_file);
	free_strv(u->allowed_hosts);
	free(u);
	curl_global_cleanup();
}

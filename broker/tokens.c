/* tokens.c — the token cache: one entry per (grant id, scope), single
 * flight, background refresh, 429 holds (see tokens.h).
 *
 * Lifecycle of an entry: a caller whose min_ttl the cached token does not
 * satisfy becomes a waiter; the first waiter starts the one upstream fetch
 * for the key and later ones join it. When the fetch ends every waiter gets
 * its result; a token is cached, a failure never is (a 429 only holds the
 * key). A token that was used is refreshed in the background ahead of
 * expiry; one nobody used is wiped when it can no longer be served.
 *
 * Waiters are completed only after the entry's own state is updated and
 * from a list detached from the entry, so a callback may call back into
 * tokens_* (get, cancel, forget) safely.
 */
#include "tokens.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "upstream.h"
#include "util.h"

#define MIN_SERVE_S 60          /* never hand out a token with less left */
#define REFRESH_RETRY_MS 30000  /* first pause after a failed refresh */
#define PROBE_PAUSE_MS 2000     /* between probes while AADSTS7000215 */
#define AADSTS_NEW_SECRET 7000215

struct link {
	struct link *prev, *next;
};

#define LINK_ITEM(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static void link_init(struct link *l)
{
	l->prev = l->next = l;
}

static bool link_empty(const struct link *l)
{
	return l->next == l;
}

static void link_add_tail(struct link *head, struct link *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static void link_del(struct link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	link_init(n);
}

/* Move every item of from to (empty) to. */
static void link_move(struct link *from, struct link *to)
{
	link_init(to);
	if (link_empty(from))
		return;
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	link_init(from);
}

struct entry {
	struct link node;           /* in tokens.entries */
	struct tokens *t;
	char grant_id[GRANT_ID_LEN];
	char *scope;
	struct grant *grant;        /* endpoint and client id for fetches */
	char *token;                /* sodium_malloc, NUL-ended; NULL: none */
	size_t token_len;
	int64_t expires_at;         /* unix seconds */
	int64_t lifetime_s;         /* what the provider's last token lasted; 0: none fetched yet */
	char token_sha256[65];
	char uti[128];
	char crid[37];
	int http_status;
	bool used;                  /* served since the last fetch */
	int refresh_failures;
	int64_t hold_until_ms;      /* 429: no upstream call before this */
	struct upstream_call *call; /* the one fetch in flight */
	bool call_had_token;        /* the fetch replaces a cached token */
	struct loop_timer *timer;   /* refresh, retry or wipe */
	struct link waiters;
};

struct token_wait {
	struct link node;           /* in entry.waiters or tokens.probes */
	struct tokens *t;
	token_cb cb;
	void *ctx;
	struct loop_timer *timer;   /* waiter: deadline; probe: pause */
	/* probes only */
	bool probe;
	struct grant *grant;
	char *scope;
	struct upstream_call *call;
	int64_t probe_until_ms;
};

struct tokens {
	struct loop *loop;
	struct vault *vault;
	struct upstream *up;
	long timeout_ms;
	int retries;
	int probe_wait_s;
	struct link entries;
	struct link probes;
	struct tokens_stats st;
};

/* ---- helpers ---------------------------------------------------------- */

static int64_t now_s(void)
{
	return util_now_us() / 1000000;
}

static void token_wipe(struct entry *e)
{
	if (e->token != NULL) {
		sodium_memzero(e->token, e->token_len);
		sodium_free(e->token);
	}
	e->token = NULL;
	e->token_len = 0;
	e->expires_at = 0;
}

/* How long one fetch may take with all its retries and backoffs. */
static int64_t fetch_budget_ms(const struct tokens *t)
{
	int64_t backoff = 0;

	for (int i = 0; i < t->retries && i < 10; i++)
		backoff += 200LL << i;
	return t->timeout_ms * (t->retries + 1) + backoff + 1000;
}

static void reply_init(struct token_reply *r, enum token_status s, const char *msg)
{
	memset(r, 0, sizeof(*r));
	r->status = s;
	r->cache = "miss";
	snprintf(r->message, sizeof(r->message), "%s", msg);
}

static void reply_from_entry(struct token_reply *r, const struct entry *e, const char *cache)
{
	reply_init(r, TOKEN_OK, "token issued");
	r->access_token = e->token;
	r->token_len = e->token_len;
	r->expires_at = e->expires_at;
	r->cache = cache;
	r->http_status = e->http_status;
	memcpy(r->token_sha256, e->token_sha256, sizeof(r->token_sha256));
	memcpy(r->uti, e->uti, sizeof(r->uti));
	memcpy(r->client_request_id, e->crid, sizeof(r->client_request_id));
}

static void reply_from_result(struct token_reply *r, const struct upstream_token *res)
{
	static const enum token_status map[] = {
		[UPSTREAM_OK] = TOKEN_OK,
		[UPSTREAM_REJECTED] = TOKEN_UPSTREAM_REJECTED,
		[UPSTREAM_RATE_LIMITED] = TOKEN_RATE_LIMITED,
		[UPSTREAM_UNAVAILABLE] = TOKEN_UPSTREAM_UNAVAILABLE,
	};

	reply_init(r, map[res->outcome], res->message);
	r->http_status = res->http_status;
	r->retry_after = res->retry_after;
	r->expires_at = res->expires_at;
	memcpy(r->token_sha256, res->token_sha256, sizeof(r->token_sha256));
	memcpy(r->uti, res->uti, sizeof(r->uti));
	memcpy(r->client_request_id, res->client_request_id, sizeof(r->client_request_id));
	snprintf(r->upstream_error, sizeof(r->upstream_error), "%s", res->error);
	r->n_upstream_codes = res->n_codes;
	memcpy(r->upstream_codes, res->codes, sizeof(r->upstream_codes));
}

static void wait_free(struct token_wait *w)
{
	link_del(&w->node);
	loop_timer_free(w->timer);
	if (w->call != NULL)
		upstream_cancel(w->call);
	grant_free(w->grant);
	free(w->scope);
	free(w);
}

/* Unlink and free w, then run its callback (w is gone by then). */
static void wait_complete(struct token_wait *w, const struct token_reply *r)
{
	token_cb cb = w->cb;
	void *ctx = w->ctx;

	wait_free(w);
	cb(ctx, r);
}

static void complete_all(struct link *list, const struct token_reply *r)
{
	while (!link_empty(list))
		wait_complete(LINK_ITEM(list->next, struct token_wait, node), r);
}

/* ---- entries ---------------------------------------------------------- */

static void entry_timer_fired(struct loop *l, struct loop_timer *tm, void *ctx);

static struct entry *entry_find(struct tokens *t, const char *grant_id, const char *scope)
{
	for (struct link *n = t->entries.next; n != &t->entries; n = n->next) {
		struct entry *e = LINK_ITEM(n, struct entry, node);

		if (strcmp(e->grant_id, grant_id) == 0 && strcmp(e->scope, scope) == 0)
			return e;
	}
	return NULL;
}

static int entry_new(struct tokens *t, const struct grant *g, const char *scope,
		     struct entry **out)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return -ENOMEM;
	e->t = t;
	link_init(&e->waiters);
	snprintf(e->grant_id, sizeof(e->grant_id), "%s", g->id);
	e->scope = strdup(scope);
	e->grant = grant_dup(g);
	if (e->scope == NULL || e->grant == NULL ||
	    loop_timer_new(t->loop, entry_timer_fired, e, &e->timer) < 0) {
		free(e->scope);
		grant_free(e->grant);
		free(e);
		return -ENOMEM;
	}
	link_add_tail(&t->entries, &e->node);
	*out = e;
	return 0;
}

/* Free e; its waiters move to `orphans` (the caller completes them). */
static void entry_free(struct entry *e, struct link *orphans)
{
	if (e->call != NULL)
		upstream_cancel(e->call);
	token_wipe(e);
	loop_timer_free(e->timer);
	while (!link_empty(&e->waiters)) {
		struct link *n = e->waiters.next;

		link_del(n);
		link_add_tail(orphans, n);
	}
	link_del(&e->node);
	free(e->scope);
	grant_free(e->grant);
	free(e);
}

static void entry_fetched(void *ctx, struct upstream_token *res);

/* A fetch that could not start: a host not allowed or no time left is the
 * upstream's matter; anything else (memory, libcurl) is ours. */
static enum token_status fetch_error_status(int rc)
{
	return rc == -EPERM || rc == -ETIMEDOUT ? TOKEN_UPSTREAM_UNAVAILABLE : TOKEN_INTERNAL;
}

/* Read the grant's secret, start one upstream call with it and drop the
 * secret at once: the request body keeps its own wiped copy. Shared by
 * cache fetches and probes. On failure *fail says why for the waiters. */
static int fetch_start(struct tokens *t, const struct grant *g, const char *scope,
		       upstream_cb cb, void *ctx, struct upstream_call **call,
		       struct token_reply *fail)
{
	char *secret = NULL;
	size_t slen = 0;
	struct cerr err = {{0}};
	struct upstream_request ureq;
	int rc;

	rc = vault_grant_secret(t->vault, g->id, &secret, &slen);
	if (rc == -EKEYREVOKED) {
		reply_init(fail, TOKEN_REVOKED, "");
		snprintf(fail->message, sizeof(fail->message), "grant %s was revoked", g->id);
		return rc;
	}
	if (rc < 0) {
		reply_init(fail, TOKEN_INTERNAL, "");
		snprintf(fail->message, sizeof(fail->message),
			 "could not read grant %s from the vault", g->id);
		return rc;
	}
	ureq = (struct upstream_request){
		.token_endpoint = g->token_endpoint,
		.client_id = g->client_id,
		.client_secret = secret,
		.scope = scope,
		.deadline_ms = util_mono_ms() + fetch_budget_ms(t),
	};
	rc = upstream_fetch(t->up, &ureq, cb, ctx, call, &err);
	vault_secret_free(secret);
	if (rc < 0) {
		t->st.upstream_errors++;
		reply_init(fail, fetch_error_status(rc), err.msg);
		return rc;
	}
	t->st.upstream_calls++;
	return 0;
}

/* Start the entry's fetch. On failure *fail says why for the waiters. */
static int entry_fetch(struct entry *e, struct token_reply *fail)
{
	int rc = fetch_start(e->t, e->grant, e->scope, entry_fetched, e, &e->call, fail);

	if (rc < 0)
		return rc;
	e->call_had_token = e->token != NULL;
	return 0;
}

/* When to refresh a token just fetched: at refresh_in when the provider
 * gave one, else at ~75 % of its lifetime with ±5 % jitter so tokens
 * fetched together are not refreshed together. */
static int64_t refresh_delay_ms(const struct upstream_token *res, int64_t now)
{
	int64_t life_ms = (res->expires_at - now) * 1000, base, jitter;

	if (res->refresh_at > 0)
		return (res->refresh_at - now) * 1000;
	base = life_ms * 3 / 4;
	jitter = life_ms / 20;
	if (jitter <= 0 || jitter > UINT32_MAX / 2)
		return base;
	return base - jitter + (int64_t)randombytes_uniform((uint32_t)(2 * jitter + 1));
}

/* After a failed fetch: while the cached token can still be served, try
 * again later (pauses doubling from 30 s); else wipe it when it expires. */
static void entry_schedule_after_failure(struct entry *e, int64_t now)
{
	int64_t left_ms, pause;

	if (e->token == NULL)
		return;
	left_ms = (e->expires_at - MIN_SERVE_S - now) * 1000;
	if (left_ms <= 0) {
		token_wipe(e);
		return;
	}
	pause = (int64_t)REFRESH_RETRY_MS << (e->refresh_failures < 6 ? e->refresh_failures : 6);
	if (e->hold_until_ms > 0) {
		int64_t hold = e->hold_until_ms - util_mono_ms();

		if (hold > pause)
			pause = hold;
	}
	e->refresh_failures++;
	loop_timer_arm(e->timer, pause < left_ms ? pause : left_ms);
}

static void entry_fetched(void *ctx, struct upstream_token *res)
{
	struct entry *e = ctx;
	struct tokens *t = e->t;
	struct token_reply r;
	struct link waiters;
	char *copy = NULL;
	int64_t now = now_s();
	const char *cache = e->call_had_token ? "refresh" : "miss";

	e->call = NULL;
	link_move(&e->waiters, &waiters);
	if (res->outcome == UPSTREAM_OK) {
		token_wipe(e);
		e->token = res->access_token;       /* taken: upstream will not wipe it */
		res->access_token = NULL;
		e->token_len = res->token_len;
		e->expires_at = res->expires_at;
		e->lifetime_s = res->expires_at - now;
		e->http_status = res->http_status;
		memcpy(e->token_sha256, res->token_sha256, sizeof(e->token_sha256));
		memcpy(e->uti, res->uti, sizeof(e->uti));
		memcpy(e->crid, res->client_request_id, sizeof(e->crid));
		e->used = !link_empty(&waiters);
		e->refresh_failures = 0;
		e->hold_until_ms = 0;
		loop_timer_arm(e->timer, refresh_delay_ms(res, now));
		/* Waiters get a private copy: a callback may forget this entry.
		 * It lives only until complete_all returns, so it is a wiped
		 * malloc buffer like the connections' copies: a sodium_malloc
		 * per fetch cost mmap/mprotect/munmap with TLB shootdowns. */
		copy = malloc(e->token_len + 1);
		if (copy == NULL) {
			reply_init(&r, TOKEN_INTERNAL, "out of memory");
		} else {
			memcpy(copy, e->token, e->token_len + 1);
			reply_from_entry(&r, e, cache);
			r.access_token = copy;
		}
	} else {
		t->st.upstream_errors++;
		if (res->outcome == UPSTREAM_RATE_LIMITED)
			e->hold_until_ms = util_mono_ms() + (int64_t)res->retry_after * 1000;
		entry_schedule_after_failure(e, now);
		reply_from_result(&r, res);
		r.cache = cache;
	}
	complete_all(&waiters, &r);
	if (copy != NULL) {
		sodium_memzero(copy, r.token_len);
		free(copy);
	}
}

static void entry_timer_fired(struct loop *l, struct loop_timer *tm, void *ctx)
{
	struct entry *e = ctx;
	struct token_reply fail;
	int64_t now = now_s();
	int64_t held;

	if (e->token == NULL || e->call != NULL)
		return;
	if (e->expires_at - now < MIN_SERVE_S) {
		token_wipe(e);
		return;
	}
	held = e->hold_until_ms - util_mono_ms();
	if (held > 0) {
		loop_timer_arm(e->timer, held);
		return;
	}
	if (!e->used) {
		/* Nobody asked since the last fetch: no refresh; wipe the token
		 * when it can no longer be served. */
		loop_timer_arm(e->timer, (e->expires_at - MIN_SERVE_S - now) * 1000);
		return;
	}
	e->t->st.refreshes++;
	if (entry_fetch(e, &fail) < 0)
		entry_schedule_after_failure(e, now);
}

/* The longest min_ttl served for tokens that last lifetime seconds: a
 * fresh token meets it for at least min(300 s, half the lifetime), so
 * fetches for it are that far apart at least. */
static int64_t max_min_ttl(int64_t lifetime)
{
	return lifetime - (lifetime / 2 < 300 ? lifetime / 2 : 300);
}

/* ---- waiters ---------------------------------------------------------- */

static void wait_deadline(struct loop *l, struct loop_timer *tm, void *ctx)
{
	struct token_reply r;

	reply_init(&r, TOKEN_UPSTREAM_UNAVAILABLE, "identity provider did not answer in time");
	wait_complete(ctx, &r);
}

int tokens_get(struct tokens *t, const struct token_request *req, struct token_reply *now_r,
	       token_cb cb, void *ctx, struct token_wait **wait_out)
{
	struct entry *e;
	struct token_wait *w;
	int64_t now = now_s(), mono = util_mono_ms();
	int need, rc;

	if (wait_out != NULL)
		*wait_out = NULL;
	if (req == NULL || req->grant == NULL || req->scope == NULL || cb == NULL || now_r == NULL)
		return -EINVAL;
	need = req->min_ttl > MIN_SERVE_S ? req->min_ttl : MIN_SERVE_S;
	e = entry_find(t, req->grant->id, req->scope);
	if (e == NULL && (rc = entry_new(t, req->grant, req->scope, &e)) < 0)
		return rc;

	if (e->token != NULL && e->expires_at - now >= need) {
		e->used = true;
		t->st.hits++;
		reply_from_entry(now_r, e, "hit");
		return 1;
	}
	/* A min_ttl no token of this provider can meet would make every
	 * request a fetch (and the provider throttle the MSSP's app): once
	 * a fetch has shown how long its tokens last, such a request is
	 * answered at once with the longest min_ttl that is served. */
	if (e->lifetime_s > 0 && need > max_min_ttl(e->lifetime_s)) {
		reply_init(now_r, TOKEN_TTL_TOO_LONG, "");
		now_r->max_min_ttl = (int)max_min_ttl(e->lifetime_s);
		snprintf(now_r->message, sizeof(now_r->message),
			 "min_ttl %d s is longer than this identity provider's tokens last (%lld s): ask for at most %d s",
			 need, (long long)e->lifetime_s, now_r->max_min_ttl);
		return 1;
	}
	if (e->hold_until_ms > mono) {
		reply_init(now_r, TOKEN_RATE_LIMITED, "");
		now_r->retry_after = (int)((e->hold_until_ms - mono + 999) / 1000);
		now_r->http_status = 429;
		snprintf(now_r->message, sizeof(now_r->message),
			 "identity provider is throttling requests for this tenant; retry after %d s",
			 now_r->retry_after);
		return 1;
	}
	if (req->deadline_ms > 0 && req->deadline_ms <= mono) {
		reply_init(now_r, TOKEN_UPSTREAM_UNAVAILABLE, "identity provider did not answer in time");
		return 1;
	}

	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->t = t;
	w->cb = cb;
	w->ctx = ctx;
	link_init(&w->node);
	if (req->deadline_ms > 0) {
		if (loop_timer_new(t->loop, wait_deadline, w, &w->timer) < 0) {
			free(w);
			return -ENOMEM;
		}
		loop_timer_arm(w->timer, req->deadline_ms - mono);
	}
	link_add_tail(&e->waiters, &w->node);
	t->st.misses++;
	if (e->call == NULL && entry_fetch(e, now_r) < 0) {
		/* No fetch, so w is the only waiter. */
		wait_free(w);
		return 1;
	}
	if (wait_out != NULL)
		*wait_out = w;
	return 0;
}

void tokens_cancel(struct token_wait *w)
{
	if (w == NULL)
		return;
	link_del(&w->node);
	loop_timer_free(w->timer);
	if (w->call != NULL)
		upstream_cancel(w->call);
	grant_free(w->grant);
	free(w->scope);
	free(w);
}

/* ---- probe ------------------------------------------------------------ */

static void probe_fetched(void *ctx, struct upstream_token *res);

static int probe_start(struct token_wait *w, struct token_reply *fail)
{
	return fetch_start(w->t, w->grant, w->scope, probe_fetched, w, &w->call, fail);
}

static void probe_pause_over(struct loop *l, struct loop_timer *tm, void *ctx)
{
	struct token_wait *w = ctx;
	struct token_reply fail;

	if (probe_start(w, &fail) < 0)
		wait_complete(w, &fail);
}

static void probe_fetched(void *ctx, struct upstream_token *res)
{
	struct token_wait *w = ctx;
	struct token_reply r;
	int64_t left = w->probe_until_ms - util_mono_ms();
	bool new_secret = false;

	w->call = NULL;
	for (size_t i = 0; i < res->n_codes; i++)
		new_secret |= res->codes[i] == AADSTS_NEW_SECRET;
	if (res->outcome == UPSTREAM_REJECTED && new_secret && left > PROBE_PAUSE_MS) {
		/* Entra does not know a new secret for a minute or two. */
		loop_timer_arm(w->timer, PROBE_PAUSE_MS);
		return;
	}
	if (res->outcome != UPSTREAM_OK)
		w->t->st.upstream_errors++;
	reply_from_result(&r, res);
	r.cache = "miss";
	wait_complete(w, &r);
}

int tokens_probe(struct tokens *t, const struct grant *g, const char *scope,
		 struct token_reply *now, token_cb cb, void *ctx, struct token_wait **wait_out)
{
	struct token_wait *w;

	if (wait_out != NULL)
		*wait_out = NULL;
	if (g == NULL || scope == NULL || cb == NULL || now == NULL)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->t = t;
	w->cb = cb;
	w->ctx = ctx;
	w->probe = true;
	link_init(&w->node);
	w->grant = grant_dup(g);
	w->scope = strdup(scope);
	w->probe_until_ms = util_mono_ms() + (int64_t)t->probe_wait_s * 1000;
	if (w->grant == NULL || w->scope == NULL ||
	    loop_timer_new(t->loop, probe_pause_over, w, &w->timer) < 0) {
		tokens_cancel(w);
		return -ENOMEM;
	}
	link_add_tail(&t->probes, &w->node);
	if (probe_start(w, now) < 0) {
		wait_free(w);
		return 1;
	}
	if (wait_out != NULL)
		*wait_out = w;
	return 0;
}

/* ---- forgetting ------------------------------------------------------- */

static void forget(struct tokens *t, const char *grant_id, enum token_status s, const char *msg)
{
	struct link orphans;
	struct token_reply r;
	struct link *n, *next;

	link_init(&orphans);
	for (n = t->entries.next; n != &t->entries; n = next) {
		struct entry *e = LINK_ITEM(n, struct entry, node);

		next = n->next;
		if (grant_id == NULL || strcmp(e->grant_id, grant_id) == 0)
			entry_free(e, &orphans);
	}
	for (n = t->probes.next; n != &t->probes; n = next) {
		struct token_wait *w = LINK_ITEM(n, struct token_wait, node);

		next = n->next;
		if (grant_id == NULL || strcmp(w->grant->id, grant_id) == 0) {
			link_del(&w->node);
			link_add_tail(&orphans, &w->node);
		}
	}
	reply_init(&r, s, msg);
	complete_all(&orphans, &r);
}

void tokens_forget_grant(struct tokens *t, const char *grant_id)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "grant %s was revoked", grant_id);
	forget(t, grant_id, TOKEN_REVOKED, msg);
}

void tokens_forget_all(struct tokens *t)
{
	forget(t, NULL, TOKEN_REVOKED, "every cached token was wiped (lockdown)");
}

/* ---- life ------------------------------------------------------------- */

static void take_config(struct tokens *t, const struct upstream_config *cfg)
{
	t->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
	t->retries = cfg->retries >= 0 ? cfg->retries : 3;
	t->probe_wait_s = cfg->probe_wait_s > 0 ? cfg->probe_wait_s : 90;
}

int tokens_new(struct loop *l, struct vault *v, const struct upstream_config *cfg,
	       struct tokens **out)
{
	struct tokens *t = calloc(1, sizeof(*t));
	int rc;

	if (t == NULL)
		return -ENOMEM;
	t->loop = l;
	t->vault = v;
	link_init(&t->entries);
	link_init(&t->probes);
	take_config(t, cfg);
	rc = upstream_new(l, cfg, &t->up);
	if (rc < 0) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int tokens_configure(struct tokens *t, const struct upstream_config *cfg)
{
	int rc = upstream_configure(t->up, cfg);

	if (rc == 0)
		take_config(t, cfg);
	return rc;
}

void tokens_free(struct tokens *t)
{
	if (t == NULL)
		return;
	forget(t, NULL, TOKEN_INTERNAL, "custodyd is shutting down");
	upstream_free(t->up);
	free(t);
}

void tokens_get_stats(const struct tokens *t, struct tokens_stats *st)
{
	struct upstream_stats us;

	*st = t->st;
	st->cached = 0;
	for (const struct link *n = t->entries.next; n != &t->entries; n = n->next)
		st->cached += LINK_ITEM(n, struct entry, node)->token != NULL;
	upstream_get_stats(t->up, &us);
	st->connections_opened = us.connections_opened;
}

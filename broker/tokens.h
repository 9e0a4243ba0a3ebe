/* tokens.h — the token cache and the upstream (OAuth 2.0 client
 * credentials over libcurl multi on the broker's loop). Private to broker/.
 *
 * Cache entries are keyed by (grant id, scope) and hold the access token in
 * sodium_malloc memory. A request is served from the cache while the token
 * still satisfies min_ttl; otherwise one upstream fetch runs however many
 * callers wait for that key (single flight). Tokens are refreshed ahead of
 * expiry in the background; a failed refresh keeps the valid token serving.
 * A 429 holds the key until Retry-After. The client secret is read from the
 * vault only for the duration of a fetch and wiped right after.
 */
#ifndef CUSTODY_BROKER_TOKENS_H
#define CUSTODY_BROKER_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "loop.h"
#include "vault.h"


enum token_status {
	TOKEN_OK = 0,
	TOKEN_RATE_LIMITED,        /* retry_after set */
	TOKEN_UPSTREAM_REJECTED,   /* upstream_error, upstream_codes set */
	TOKEN_UPSTREAM_UNAVAILABLE,
	TOKEN_REVOKED,             /* the grant was revoked while waiting */
	TOKEN_TTL_TOO_LONG,        /* min_ttl beyond what the provider's tokens last: max_min_ttl set */
	TOKEN_INTERNAL,
};

struct token_reply {
	enum token_status status;
	/* TOKEN_OK: valid only during the callback; copy, never log. */
	const char *access_token;
	size_t token_len;
	int64_t expires_at;        /* unix seconds */
	const char *cache;         /* "hit", "miss" or "refresh" */
	char token_sha256[65];     /* hex of SHA-256(access_token) */
	char uti[128];             /* the JWT's uti claim, "" when none */
	char client_request_id[37];/* of the upstream call that produced it */
	int retry_after;           /* seconds, TOKEN_RATE_LIMITED */
	int max_min_ttl;           /* seconds, TOKEN_TTL_TOO_LONG */
	int http_status;           /* of the last upstream answer, 0 if none */
	char upstream_error[64];   /* e.g. "invalid_client" */
	uint32_t upstream_codes[8];/* e.g. 7000222 */
	size_t n_upstream_codes;
	char message[256];         /* for people; never a secret */
};

struct token_request {
	const struct grant *grant; /* copied as needed; caller may free after the call */
	const char *scope;
	int min_ttl;               /* seconds */
	int64_t deadline_ms;       /* monotonic (loop_now_ms clock) */
};

typedef void (*token_cb)(void *ctx, const struct token_reply *r);

struct tokens;
struct token_wait;

struct tokens_stats {
	uint64_t hits, misses, refreshes, upstream_calls, upstream_errors;
	uint64_t cached;           /* entries holding a token */
	uint64_t connections_opened;
};

int tokens_new(struct loop *l, struct vault *v, const struct upstream_config *cfg,
	       struct tokens **out);
void tokens_free(struct tokens *t);
/* New upstream settings after a reload (copied). */
int tokens_configure(struct tokens *t, const struct upstream_config *cfg);

/* Ask for a token. Either answered at once or later, never both and never
 * from inside the call:
 *   1  answered now in *now (a cache hit, or a refusal known without the
 *      provider: throttled, past the deadline, the fetch could not start);
 *      cb is not called. A token in *now stays valid until the next call
 *      into tokens or the loop runs again: copy it before either.
 *   0  waiting: cb runs exactly once later, from the loop, unless
 *      tokens_cancel(*wait_out) comes first. *wait_out (may be NULL) is
 *      valid until then.
 *   <0 -EINVAL, -ENOMEM: nothing happens. */
int tokens_get(struct tokens *t, const struct token_request *req, struct token_reply *now,
	       token_cb cb, void *ctx, struct token_wait **wait_out)
	__attribute__((warn_unused_result));
void tokens_cancel(struct token_wait *w);

/* grant.import --probe: one fetch bypassing the cache, retried while the
 * provider answers AADSTS7000215 (a new secret not yet known) for up to
 * probe_wait_s. The final answer has access_token NULL. Returns as
 * tokens_get: 1 answered in *now (the fetch could not start), 0 cb later. */
int tokens_probe(struct tokens *t, const struct grant *g, const char *scope,
		 struct token_reply *now, token_cb cb, void *ctx, struct token_wait **wait_out)
	__attribute__((warn_unused_result));

/* Wipe every cached token of the grant and complete its waiters with
 * TOKEN_REVOKED. Used on revoke and expiry. */
void tokens_forget_grant(struct tokens *t, const char *grant_id);
/* Wipe everything (lockdown). */
void tokens_forget_all(struct tokens *t);

void tokens_get_stats(const struct tokens *t, struct tokens_stats *st);

#endif

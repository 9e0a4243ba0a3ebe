/* upstream.h — OAuth 2.0 client-credentials calls to a token endpoint over
 * libcurl's multi_socket API on the broker's loop. Private to broker/ (used
 * by tokens.c only).
 *
 * HTTPS only, certificate and host name verified, no redirects, bounded
 * answers, a timeout on every transfer, a fresh client-request-id per call.
 * The request body (which holds the client secret) lives in sodium_malloc
 * memory and is wiped when the call ends. 5xx answers and transport errors
 * are retried with backoff within the call's deadline.
 */
#ifndef CUSTODY_BROKER_UPSTREAM_H
#define CUSTODY_BROKER_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "tokens.h"

#define UPSTREAM_MAX_BODY (64 * 1024)   /* larger answers are refused */
#define UPSTREAM_MAX_TOKEN (16 * 1024)  /* longer access tokens are refused */
#define UPSTREAM_RETRY_AFTER_DEFAULT 5  /* 429 without Retry-After (as MSAL) */
#define UPSTREAM_RETRY_AFTER_MAX 3600
#define UPSTREAM_MAX_LIFETIME 86400     /* expires_in beyond a day is capped */

enum upstream_outcome {
	UPSTREAM_OK = 0,
	UPSTREAM_REJECTED,      /* an OAuth error answer: error, codes */
	UPSTREAM_RATE_LIMITED,  /* 429: retry_after */
	UPSTREAM_UNAVAILABLE,   /* 5xx, bad answer, transport or TLS failure */
};

struct upstream_token {
	enum upstream_outcome outcome;
	bool retryable;            /* 5xx / timeout / connection failure */
	int http_status;           /* 0: no HTTP answer */
	/* UPSTREAM_OK: sodium_malloc'd, NUL-terminated; a callback may take it
	 * (set the pointer to NULL); otherwise it is wiped after the callback. */
	char *access_token;
	size_t token_len;
	int64_t expires_at;        /* unix seconds */
	int64_t refresh_at;        /* unix seconds; 0 when no refresh_in came */
	char token_sha256[65];
	char uti[128];
	char client_request_id[37];
	int retry_after;           /* seconds, UPSTREAM_RATE_LIMITED */
	char error[64];            /* OAuth "error", UPSTREAM_REJECTED */
	uint32_t codes[8];         /* "error_codes" (AADSTS numbers) */
	size_t n_codes;
	char message[256];         /* for people; never a secret or token */
};

/* Wipe and free the token and reset *t. */
void upstream_token_clear(struct upstream_token *t);

/* Classify one token-endpoint answer (pure; no I/O). retry_after is the
 * Retry-After header's value or NULL. now_s: unix seconds. Fills *out (any
 * earlier content is overwritten, not freed). 0, or -ENOMEM. */
int upstream_parse_token_response(long http_status, const char *retry_after, const char *body,
				  size_t len, int64_t now_s, struct upstream_token *out);

/* The human meaning of an AADSTS code custody knows, or NULL. */
const char *upstream_code_meaning(uint32_t code);

/* The JWT's uti claim into out ("" when the token is no JWT or has none).
 * 0 or -EINVAL. */
int upstream_jwt_uti(const char *token, size_t len, char *out, size_t outlen);

/* True when url is https:// with a host on the NULL-terminated list and no
 * user info. */
bool upstream_url_allowed(const char *url, char *const *allowed_hosts);

/* True for a v1 endpoint (path ends in /oauth2/token): resource= instead
 * of scope=. */
bool upstream_endpoint_is_v1(const char *url);

struct upstream;
struct upstream_call;

struct upstream_stats {
	uint64_t attempts;            /* HTTP transfers started */
	uint64_t connections_opened;  /* new TCP connections (reuse keeps it low) */
};

/* The callback runs exactly once per call unless upstream_cancel is called
 * first; the call handle is invalid from the moment it runs. */
typedef void (*upstream_cb)(void *ctx, struct upstream_token *res);

int upstream_new(struct loop *l, const struct upstream_config *cfg, struct upstream **out);
/* Aborts calls in flight without calling their callbacks. */
void upstream_free(struct upstream *u);
/* New settings (copied) for calls started afterwards. 0 or -ENOMEM. */
int upstream_configure(struct upstream *u, const struct upstream_config *cfg);

struct upstream_request {
	const char *token_endpoint;
	const char *client_id;
	const char *client_secret;  /* copied into the wiped body; free it right after */
	const char *scope;
	int64_t deadline_ms;        /* monotonic; retries stop there */
};

/* Start a call. -EPERM endpoint not https or host not allowed (message in
 * err), -EINVAL, -ENOMEM. */
int upstream_fetch(struct upstream *u, const struct upstream_request *req, upstream_cb cb,
		   void *ctx, struct upstream_call **out, struct cerr *err);
void upstream_cancel(struct upstream_call *c);

void upstream_get_stats(const struct upstream *u, struct upstream_stats *st);

#endif

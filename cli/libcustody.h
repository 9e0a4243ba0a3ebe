/* libcustody.h — the C client for custodyd's sockets.
 *
 * A tool asks the broker for a short-lived access token for one tenant and
 * scope; the broker decides from the tool's kernel-verified identity
 * (SO_PEERCRED) whether to hand one out. There is no password: connecting
 * is all the authentication a tool does.
 *
 *     struct custody_client *c;
 *     struct custody_token *t;
 *     struct custody_error e;
 *     struct custody_token_request r = { .tenant = "contoso", .min_ttl = 300 };
 *
 *     if (custody_connect(NULL, &c, &e) < 0) { fprintf(stderr, "%s\n", e.message); ... }
 *     if (custody_token_request(c, &r, 15000, &t, &e) < 0) { ... e.code ... }
 *     use(t->access_token);            // never log it
 *     custody_token_free(t);           // wipes the token
 *     custody_close(c);
 *
 * Wire format (DESIGN.md §5, docs/PROTOCOL.md): one JSON object per line,
 * every request carries "v":1 and an "id" that the reply echoes. The
 * library numbers requests itself and skips replies to requests it has
 * given up on (after a timeout), so a handle stays usable.
 *
 * Every function returns 0 or a negative errno, and fills a struct
 * custody_error (when one is passed) with a line for a person. Errors:
 *
 *   -EREMOTEIO   the broker answered with "ok":false; err->code holds the
 *                stable error code (DESIGN.md §5: "revoked", "denied",
 *                "rate_limited", "upstream_rejected", ...)
 *   -ENOENT, -ECONNREFUSED, -EACCES
 *                the socket is missing, nobody listens, or no permission
 *                (the broker is not reachable)
 *   -ETIMEDOUT   no reply within timeout_ms
 *   -ECONNRESET  the broker closed the connection
 *   -EPROTO      the reply was not a valid protocol line
 *   -EMSGSIZE    the request is longer than CUSTODY_MAX_REQUEST, or the
 *                reply longer than CUSTODY_MAX_REPLY
 *   -EINVAL      a bad argument (message names it)
 *   -ENOMEM
 *
 * Thread safety: one handle per thread (a handle holds one connection and
 * one read buffer). Different handles are independent.
 *
 * Secrets: access tokens are copied into sodium_malloc memory; the read
 * buffer and the parsed reply are wiped before they are freed. The library
 * never prints anything.
 */
#ifndef LIBCUSTODY_H
#define LIBCUSTODY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUSTODY_DEFAULT_SOCKET "/run/custody/custody.sock"
#define CUSTODY_MAX_REQUEST 65536u           /* bytes per request line, newline included */
#define CUSTODY_MAX_REPLY (64u * 1024 * 1024) /* bytes per reply line (audit exports are big) */
#define CUSTODY_MAX_UPSTREAM_CODES 8

struct custody_client;

struct custody_error {
	/* The broker's error code when the call returned -EREMOTEIO, else "". */
	char code[32];
	/* One line for a person; never holds a secret or a token. */
	char message[512];
	int retry_after;                 /* seconds; "rate_limited" only, else 0 */
	char upstream_error[128];        /* "upstream_rejected": the provider's error, e.g. "invalid_client" */
	long upstream_codes[CUSTODY_MAX_UPSTREAM_CODES]; /* e.g. 7000222 for AADSTS7000222 */
	size_t n_upstream_codes;
	uint64_t audit_seq;              /* the audit record of the refusal; 0 when none */
};

struct custody_token_request {
	const char *tenant;   /* tenant id or name; required */
	const char *scope;    /* NULL: the grant's first scope */
	int min_ttl;          /* seconds the token must still be valid; 0: broker default (300) */
	const char *purpose;  /* NULL or free text up to 256 bytes, recorded in the audit */
};

struct custody_token {
	char *access_token;   /* sodium_malloc'd, NUL-terminated; never log it */
	size_t token_len;
	char token_type[16];  /* "Bearer" */
	char expires_at[40];  /* RFC 3339 */
	int64_t expires_in;   /* seconds from the reply */
	char tenant[128];     /* the tenant id */
	char scope[512];
	char grant[48];       /* "g_..." */
	char cache[16];       /* "hit", "miss" or "refresh"; "" when not given */
	uint64_t audit_seq;
};

/* Connect to the broker's socket: path, else $CUSTODY_SOCKET, else
 * CUSTODY_DEFAULT_SOCKET. The same call connects to the admin socket when
 * given its path. Errors: -ENOENT, -ECONNREFUSED, -EACCES (not reachable),
 * -ENAMETOOLONG, -ENOMEM. */
int custody_connect(const char *path, struct custody_client **out, struct custody_error *err)
	__attribute__((warn_unused_result));

/* Close the connection and wipe the buffers. NULL is fine. */
void custody_close(struct custody_client *c);

/* Send one request and wait up to timeout_ms (negative: no limit) for its
 * reply. request: a JSON object with at least "op"; the library sets "v"
 * and "id" on it (the caller keeps ownership). On 0, *reply holds the
 * reply object ("ok":true) and the caller json_decref's it (and, if it
 * holds a token, should wipe it: custody_json_wipe). On -EREMOTEIO the
 * broker's error is in err (code, message, retry_after, upstream_*,
 * audit_seq) and *reply is untouched. Other errors as listed above. */
int custody_call(struct custody_client *c, json_t *request, int timeout_ms, json_t **reply,
		 struct custody_error *err) __attribute__((warn_unused_result));

/* Ask for a token ("op":"token"). On 0, *out holds it: free it with
 * custody_token_free. Errors as custody_call. */
int custody_token_request(struct custody_client *c, const struct custody_token_request *r,
			  int timeout_ms, struct custody_token **out, struct custody_error *err)
	__attribute__((warn_unused_result));

/* Wipe the token and free it. NULL is fine. */
void custody_token_free(struct custody_token *t);

/* Overwrite every string inside a JSON value with zero bytes, then
 * json_decref it: for replies that held a token. NULL is fine. */
void custody_json_wipe(json_t *j);

/* The errno a call returned, as a short phrase ("broker not reachable",
 * "timed out", ...). Never NULL. */
const char *custody_strerror(int rc);

#ifdef __cplusplus
}
#endif

#endif

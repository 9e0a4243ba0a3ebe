/* tool_ops.c — the tool socket's ops: ping, whoami, tenants, keys, token.
 *
 * ping answers anyone (it proves the broker is up and says nothing else);
 * every other op needs a principal. The token path: policy → token cache /
 * upstream → audit record → (durable) → re-check → reply. The re-check
 * runs on the loop thread right before the token is written to the
 * socket, so a revocation, suspension or lockdown that landed while the
 * record was being synced still stops it, as does a recycled pid.
 */
#include "broker_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const char *const f_none[] = {NULL};
static const char *const f_token[] = {"tenant", "scope", "min_ttl", "purpose", NULL};

static const struct principal_config *principal_of(struct broker *b, int ix)
{
	return ix >= 0 && (size_t)ix < b->cfg->n_principals ? &b->cfg->principals[ix] : NULL;
}

/* Reply with an error (and retry_after when > 0, and the fields of
 * extra_reply, stolen) and audit it under event. p may be gone when this
 * returns (the refusal guard frees it): nothing may touch p after. */
static void answer_error_full(struct pending *p, const char *event, json_t *id,
			      const char *code, const char *message, json_t *extra_rec,
			      int retry_after, json_t *extra_reply)
{
	struct broker *b = p->b;
	json_t *rec;

	/* refusals of callers that map to no principal, and malformed
	 * requests, are what a flood is made of: bounded per uid */
	if (p->conn != NULL && (p->principal_name[0] == '\0' || strcmp(code, "bad_request") == 0) &&
	    !guard_refusal(p->conn, id)) {
		json_decref(extra_rec);
		json_decref(extra_reply);
		pending_free(p);
		return;
	}
	rec = record_new(b, event, code, p->conn, p->principal_name, id);
	p->reply = reply_error(id, code, "%s", message);
	if (retry_after > 0 && p->reply != NULL)
		json_object_set_new(p->reply, "retry_after", json_integer(retry_after));
	if (extra_reply != NULL && p->reply != NULL)
		json_object_update(p->reply, extra_reply);
	json_decref(extra_reply);
	if (rec != NULL) {
		json_object_set_new(rec, "error", json_string(code));
		if (extra_rec != NULL)
			json_object_update(rec, extra_rec);
	}
	json_decref(extra_rec);
	broker_count_outcome(b, code);
	snprintf(p->log, sizeof(p->log), "%s %s: principal=%s uid=%u pid=%d", event, code,
		 p->principal_name[0] ? p->principal_name : "-",
		 p->conn ? (unsigned)p->conn->peer.uid : 0, p->conn ? (int)p->conn->peer.pid : 0);
	pending_audit(p, rec);
}

static void answer_error_retry(struct pending *p, const char *event, json_t *id,
			       const char *code, const char *message, json_t *extra_rec,
			       int retry_after)
{
	answer_error_full(p, event, id, code, message, extra_rec, retry_after, NULL);
}

static void answer_error(struct pending *p, const char *event, json_t *id, const char *code,
			 const char *message, json_t *extra_rec)
{
	answer_error_full(p, event, id, code, message, extra_rec, 0, NULL);
}

/* Why a peer maps to no principal, for the person reading the error. */
static const char *unauth_message(const struct conn *c, char *buf, size_t len)
{
	if (c != NULL && c->peer.hash == PEER_HASH_FAILED && c->peer.hash_err == -E2BIG) {
		snprintf(buf, len,
			 "this executable (%lld bytes) is larger than limits.max_exe_bytes (%llu), so exe_sha256 principals cannot match it",
			 (long long)c->peer.exe_size,
			 (unsigned long long)c->b->cfg->limits.max_exe_bytes);
		return buf;
	}
	return "this process maps to no principal: ask an admin to add a match for your uid/group/executable to the config";
}

/* unauthenticated: what the broker saw of the caller, so the admin can
 * write the principal's match from the message alone (the caller learns
 * only facts about itself), and the same as the reply's "peer". */
static void answer_unauthenticated(struct pending *p, const char *event, json_t *id,
				   json_t *extra_rec)
{
	const struct peer *peer = p->conn != NULL ? &p->conn->peer : NULL;
	char groups[256] = "", msg[512], why[256];
	size_t n = 0;

	for (size_t i = 0; peer != NULL && i < peer->n_groups && n < sizeof(groups) - 16; i++)
		n += (size_t)snprintf(groups + n, sizeof(groups) - n, "%s%u", i ? "," : "",
				      (unsigned)peer->groups[i]);
	if (peer == NULL || (peer->hash == PEER_HASH_FAILED && peer->hash_err == -E2BIG))
		snprintf(msg, sizeof(msg), "%s", unauth_message(p->conn, why, sizeof(why)));
	else
		snprintf(msg, sizeof(msg),
			 "this process maps to no principal: the broker sees uid %u (%s), gid %u, "
			 "groups [%s], exe %s; ask an admin to add a principal whose match "
			 "holds (uid, gid, user, group, exe) and reload",
			 (unsigned)peer->uid, peer->user, (unsigned)peer->gid, groups,
			 peer->exe ? peer->exe : "(unknown)");
	answer_error_full(p, event, id, "unauthenticated", msg, extra_rec, 0,
			  peer == NULL ? NULL
				       : json_pack("{s:{s:I,s:I,s:s,s:s?}}", "peer", "uid",
						   (json_int_t)peer->uid, "gid", (json_int_t)peer->gid,
						   "user", peer->user, "exe", peer->exe));
}

static void answer_ok(struct pending *p, const char *event, json_t *id, json_t *reply)
{
	struct broker *b = p->b;

	p->reply = reply;
	broker_count_outcome(b, "ok");
	snprintf(p->log, sizeof(p->log), "%s ok: principal=%s uid=%u pid=%d", event,
		 p->principal_name[0] ? p->principal_name : "-",
		 p->conn ? (unsigned)p->conn->peer.uid : 0, p->conn ? (int)p->conn->peer.pid : 0);
	pending_audit(p, record_new(b, event, "ok", p->conn, p->principal_name, id));
}

static void op_ping(struct pending *p, json_t *id, json_t *req)
{
	json_t *r = reply_new(id, true);

	json_object_set_new(r, "pong", json_true());
	answer_ok(p, "ping", id, r);
}

static void op_whoami(struct pending *p, json_t *id, json_t *req)
{
	const struct peer *peer = &p->conn->peer;
	json_t *r = reply_new(id, true);

	json_object_set_new(r, "principal", json_string(p->principal_name));
	json_object_set_new(r, "uid", json_integer(peer->uid));
	json_object_set_new(r, "gid", json_integer(peer->gid));
	json_object_set_new(r, "pid", json_integer(peer->pid));
	json_object_set_new(r, "exe", peer->exe ? json_string(peer->exe) : json_null());
	answer_ok(p, "whoami", id, r);
}

static void op_tenants(struct pending *p, json_t *id, json_t *req)
{
	const struct principal_config *pc = principal_of(p->b, p->principal_ix);
	json_t *arr = policy_tenants_json(p->b->policy, pc, util_now_us() / 1000000), *r;

	r = reply_new(id, true);
	json_object_set_new(r, "tenants", arr ? arr : json_array());
	answer_ok(p, "tenants", id, r);
}

static void op_keys(struct pending *p, json_t *id, json_t *req)
{
	json_t *r = reply_new(id, true);

	json_object_update_new(r, broker_keys_json(p->b));
	answer_ok(p, "keys", id, r);
}

json_t *broker_keys_json(struct broker *b)
{
	const struct vault_public *pub = vault_public_keys(b->vault);
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	char vkey[512];

	sodium_bin2base64(b64, sizeof(b64), pub->seal_pk, 32, sodium_base64_VARIANT_ORIGINAL);
	if (vault_vkey_format(b->origin, pub->sign_pk, vkey, sizeof(vkey)) < 0)
		vkey[0] = '\0';
	return json_pack("{s:s,s:s,s:s}", "seal_public_key", b64, "seal_key_id", pub->seal_key_id,
			 "audit_verifier_key", vkey);
}

/* ---- token ------------------------------------------------------------- */

/* A token request's own state, from the policy's answer to the reply. */
struct token_op {
	struct token_wait *wait;  /* while the cache or the provider is asked */
	char *token;              /* wiped before free; never logged */
	size_t token_len;
	char grant_id[GRANT_ID_LEN];
	char tenant_id[128];
	char *scope;
	int64_t expires_at;
	char expires_ts[UTIL_TIME_LEN]; /* expires_at as the record and reply say it */
	const char *cache;        /* "hit", "miss" or "refresh" (static) */
};

/* The token copy lives only between the upstream answer and the reply:
 * plain malloc, wiped before it is freed (sodium_malloc's guard pages cost
 * an mmap/mprotect/munmap per token, with TLB shootdowns across threads). */
static void token_wipe(struct token_op *tk)
{
	if (tk->token != NULL) {
		sodium_memzero(tk->token, tk->token_len + 1);
		free(tk->token);
		tk->token = NULL;
		tk->token_len = 0;
	}
}

static void token_op_free(void *op)
{
	struct token_op *tk = op;

	tokens_cancel(tk->wait);
	token_wipe(tk);
	free(tk->scope);
	free(tk);
}

static const char *token_error_code(enum token_status s)
{
	switch (s) {
	case TOKEN_OK:
		return "ok";
	case TOKEN_RATE_LIMITED:
		return "rate_limited";
	case TOKEN_UPSTREAM_REJECTED:
		return "upstream_rejected";
	case TOKEN_UPSTREAM_UNAVAILABLE:
		return "upstream_unavailable";
	case TOKEN_REVOKED:
		return "revoked";
	case TOKEN_TTL_TOO_LONG:
		return "bad_request";
	default:
		return "internal";
	}
}

/* The members every token record carries, borrowed from p and its
 * request (the record is made before either changes). Token records are
 * written from a member list, not a jansson tree: issuing a token from the
 * cache is the busiest thing custodyd does (audit.h, fields.c). */
static void token_fields(struct pending *p, struct audit_fields *f, const char *event,
			 const char *outcome)
{
	struct token_op *tk = p->op;
	json_t *purpose = json_object_get(p->request, "purpose");

	record_fields(f, event, outcome, p->conn, p->principal_name,
		      json_object_get(p->request, "id"));
	audit_fields_str(f, "tenant", tk->tenant_id);
	audit_fields_str(f, "grant", tk->grant_id);
	audit_fields_str(f, "scope", tk->scope);
	if (purpose != NULL)
		audit_fields_json(f, "purpose", purpose);
}

static void token_recheck_and_send(struct pending *p, uint64_t seq);

/* The cache or the provider gave a token: copy it (until the reply) and
 * audit it; the re-check runs once the record is durable. The reply is
 * made only then, from tk (send_token). */
static void token_issued(struct pending *p, const struct token_reply *r)
{
	struct token_op *tk = p->op;
	struct broker *b = p->b;
	struct audit_fields f = {0};

	tk->token = malloc(r->token_len + 1);
	tk->token_len = 0;
	if (tk->token == NULL ||
	    util_time_format(r->expires_at * 1000000, false, tk->expires_ts) < 0) {
		token_wipe(tk);
		p->on_durable = NULL;
		p->reply = reply_error(json_object_get(p->request, "id"), "internal", "out of memory");
		broker_count_outcome(b, "internal");
		token_fields(p, &f, "token", "internal");
		pending_audit_fields(p, &f);
		return;
	}
	memcpy(tk->token, r->access_token, r->token_len);
	tk->token[r->token_len] = '\0';
	tk->token_len = r->token_len;
	tk->expires_at = r->expires_at;
	tk->cache = r->cache;
	token_fields(p, &f, "token", "ok");
	audit_fields_str(&f, "cache", r->cache);
	audit_fields_str(&f, "token_sha256", r->token_sha256);
	audit_fields_str(&f, "token_uti", r->uti[0] ? r->uti : NULL);
	audit_fields_str(&f, "client_request_id",
			 r->client_request_id[0] ? r->client_request_id : NULL);
	audit_fields_str(&f, "expires_at", tk->expires_ts);
	/* A fetch that worked clears a failure noted earlier (a probe
	 * while the provider did not know the secret yet, say). */
	if (strcmp(r->cache, "hit") != 0)
		policy_credential_note(b->policy, b->vault, tk->grant_id, GRANT_CRED_WORKS, NULL, false);
	/* Cache hits are not logged one by one (a busy tool asks
	 * thousands of times a second, and a write(2) per token was a
	 * tenth of the hot path): each is in the audit store and
	 * counted in `status`. Fetches from upstream are logged. */
	if (strcmp(r->cache, "hit") != 0)
		snprintf(p->log, sizeof(p->log),
			 "token ok: principal=%s tenant=%s grant=%s cache=%s",
			 p->principal_name, tk->tenant_id, tk->grant_id, r->cache);
	p->on_durable = token_recheck_and_send;
	pending_audit_fields(p, &f);
}

/* No token: the refusal is answered and audited with what the provider said. */
static void token_refused(struct pending *p, const struct token_reply *r)
{
	struct token_op *tk = p->op;
	struct broker *b = p->b;
	json_t *id = json_object_get(p->request, "id");
	const char *code = token_error_code(r->status);
	struct audit_fields f = {0};
	json_t *codes = NULL;

	token_fields(p, &f, "token", code);
	audit_fields_str(&f, "error", code);
	if (r->client_request_id[0])
		audit_fields_str(&f, "client_request_id", r->client_request_id);
	p->reply = reply_error(id, code, "%s", r->message[0] ? r->message : code);
	if (r->status == TOKEN_TTL_TOO_LONG) {
		json_object_set_new(p->reply, "max_min_ttl", json_integer(r->max_min_ttl));
		audit_fields_int(&f, "max_min_ttl", r->max_min_ttl);
	}
	if (r->status == TOKEN_RATE_LIMITED) {
		json_object_set_new(p->reply, "retry_after", json_integer(r->retry_after));
		audit_fields_int(&f, "retry_after", r->retry_after);
	}
	if (r->status == TOKEN_UPSTREAM_REJECTED &&
	    (strcmp(r->upstream_error, "invalid_client") == 0 ||
	     strcmp(r->upstream_error, "unauthorized_client") == 0)) {
		/* The provider refused the credential itself (a wrong or
		 * expired secret, an app gone): the next request prefers
		 * another grant of the tenant, if one works. */
		char why[256];

		snprintf(why, sizeof(why), "%s: %s", r->upstream_error, r->message);
		policy_credential_note(b->policy, b->vault, tk->grant_id, GRANT_CRED_FAILED, why, false);
	}
	if (r->status == TOKEN_UPSTREAM_REJECTED) {
		codes = json_array();
		for (size_t i = 0; codes != NULL && i < r->n_upstream_codes && i < 8; i++)
			json_array_append_new(codes, json_integer(r->upstream_codes[i]));
		json_object_set_new(p->reply, "upstream_error", json_string(r->upstream_error));
		json_object_set(p->reply, "upstream_codes", codes);
		audit_fields_str(&f, "upstream_error", r->upstream_error);
		audit_fields_json(&f, "upstream_codes", codes);
		audit_fields_int(&f, "http_status", r->http_status);
	}
	broker_count_outcome(b, code);
	snprintf(p->log, sizeof(p->log), "token %s: principal=%s tenant=%s grant=%s", code,
		 p->principal_name, tk->tenant_id, tk->grant_id);
	p->on_durable = NULL;
	pending_audit_fields(p, &f); /* p may be gone now */
	json_decref(codes);
}

/* tokens_get's answer, now (a hit) or later (a fetch). */
static void token_answered(void *ctx, const struct token_reply *r)
{
	struct pending *p = ctx;
	struct token_op *tk = p->op;

	tk->wait = NULL;
	if (r->status == TOKEN_OK)
		token_issued(p, r);
	else
		token_refused(p, r);
}

/* The token op's own fields: NULL when they are well formed, else the
 * bad_request message. */
static const char *token_fields_bad(json_t *tenant, json_t *scope, json_t *min_ttl,
				    json_t *purpose)
{
	if (tenant == NULL || !json_is_string(tenant) || json_string_length(tenant) == 0 ||
	    json_string_length(tenant) > 256)
		return "tenant: required (a tenant id or name)";
	if (scope != NULL && (!json_is_string(scope) || json_string_length(scope) == 0 ||
			      json_string_length(scope) > 1024))
		return "scope: expected a non-empty string";
	if (min_ttl != NULL && (!json_is_integer(min_ttl) || json_integer_value(min_ttl) < 0 ||
				json_integer_value(min_ttl) > 86400))
		return "min_ttl: expected an integer from 0 to 86400 (seconds)";
	if (purpose != NULL && (!json_is_string(purpose) ||
				json_string_length(purpose) > BROKER_PURPOSE_MAX))
		return "purpose: expected a string of at most 256 bytes";
	return NULL;
}

static void op_token(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	const struct principal_config *pc = principal_of(b, p->principal_ix);
	json_t *tenant = json_object_get(req, "tenant"), *scope = json_object_get(req, "scope");
	json_t *min_ttl = json_object_get(req, "min_ttl"), *purpose = json_object_get(req, "purpose");
	json_t *extra;
	struct policy_ask ask;
	struct decision d;
	struct token_request treq;
	struct token_reply now;
	struct token_op *tk;
	const char *bad;
	int rc;

	if ((bad = token_fields_bad(tenant, scope, min_ttl, purpose)) != NULL) {
		answer_error(p, "token", id, "bad_request", bad, NULL);
		return;
	}
	if (pc == NULL) {
		answer_unauthenticated(p, "token", id,
				       json_pack("{s:s}", "requested_tenant", json_string_value(tenant)));
		return;
	}
	ask = (struct policy_ask){
		.principal = pc->name,
		.tenant = json_string_value(tenant),
		.scope = scope ? json_string_value(scope) : NULL,
		.purpose = purpose ? json_string_value(purpose) : NULL,
		.now_s = util_now_us() / 1000000,
		.mono_ms = loop_now_ms(b->loop),
	};
	policy_decide(b->policy, &ask, &d);
	if (d.error != NULL) {
		extra = json_object();
		if (d.tenant_id != NULL)
			json_object_set_new(extra, "tenant", json_string(d.tenant_id));
		else
			json_object_set_new(extra, "requested_tenant", json_string(json_string_value(tenant)));
		if (scope != NULL)
			json_object_set(extra, "scope", scope);
		if (purpose != NULL)
			json_object_set(extra, "purpose", purpose);
		if (d.retry_after > 0)
			json_object_set_new(extra, "retry_after", json_integer(d.retry_after));
		answer_error_retry(p, "token", id, d.error, d.message, extra, d.retry_after);
		return;
	}
	tk = calloc(1, sizeof(*tk));
	if (tk == NULL) {
		answer_error(p, "token", id, "internal", "out of memory", NULL);
		return;
	}
	p->op = tk;
	p->op_free = token_op_free;
	/* The names, not a copy of the grant (a 2 KiB malloc per request):
	 * tokens_get copies what it keeps, and the re-check before the token
	 * leaves finds the grant again by id. */
	snprintf(tk->grant_id, sizeof(tk->grant_id), "%s", d.grant->id);
	snprintf(tk->tenant_id, sizeof(tk->tenant_id), "%s", d.grant->tenant_id);
	tk->scope = strdup(d.scope);
	if (tk->scope == NULL) {
		answer_error(p, "token", id, "internal", "out of memory", NULL);
		return;
	}
	treq = (struct token_request){
		.grant = d.grant,
		.scope = tk->scope,
		.min_ttl = min_ttl ? (int)json_integer_value(min_ttl) : 300,
		.deadline_ms = loop_now_ms(b->loop) +
			       (int64_t)b->cfg->upstream.timeout_ms * (b->cfg->upstream.retries + 1) + 5000,
	};
	rc = tokens_get(b->tokens, &treq, &now, token_answered, p, &tk->wait);
	if (rc < 0) {
		answer_error(p, "token", id, "internal", "the token cache failed: see custodyd's log",
			     NULL);
		return;
	}
	if (rc == 1)
		token_answered(p, &now);   /* a hit: last thing here, it may free p */
}

/* `,"key":` then s as a JSON string */
static int put_member(struct audit_jbuf *h, const char *key, const char *s)
{
	int rc = audit_jbuf_raw(h, ",\"", 2);

	if (rc == 0)
		rc = audit_jbuf_raw(h, key, strlen(key));
	if (rc == 0)
		rc = audit_jbuf_raw(h, "\":", 2);
	if (rc == 0)
		rc = audit_jbuf_string(h, s, strlen(s));
	return rc;
}

/* The reply's members before the token, in the order the reply has
 * always had (docs/PROTOCOL.md), written from the op's own state: no
 * JSON tree is made for a token reply. Reuses b->reply_head. */
static int token_reply_head(struct pending *p, uint64_t seq)
{
	struct token_op *tk = p->op;
	struct audit_jbuf *h = &p->b->reply_head;
	json_t *id = json_object_get(p->request, "id");
	int64_t in = tk->expires_at - util_now_us() / 1000000;
	int rc;

	h->len = 0;
	rc = audit_jbuf_raw(h, "{\"v\":1,\"id\":", 12);
	if (rc == 0)
		rc = id != NULL ? audit_jbuf_value(h, id, false) : audit_jbuf_raw(h, "null", 4);
	if (rc == 0)
		rc = audit_jbuf_raw(h, ",\"ok\":true", 10);
	if (rc == 0)
		rc = put_member(h, "token_type", "Bearer");
	if (rc == 0)
		rc = put_member(h, "expires_at", tk->expires_ts);
	if (rc == 0)
		rc = put_member(h, "tenant", tk->tenant_id);
	if (rc == 0)
		rc = put_member(h, "scope", tk->scope);
	if (rc == 0)
		rc = put_member(h, "grant", tk->grant_id);
	if (rc == 0)
		rc = put_member(h, "cache", tk->cache);
	if (rc == 0)
		rc = audit_jbuf_raw(h, ",\"audit_seq\":", 13);
	if (rc == 0)
		rc = audit_jbuf_int(h, (int64_t)seq);
	if (rc == 0)
		rc = audit_jbuf_raw(h, ",\"expires_in\":", 14);
	if (rc == 0)
		rc = audit_jbuf_int(h, in > 0 ? in : 0);
	return rc;
}

/* Write the token reply: the token is spliced after the head straight in
 * the connection's output buffer (wiped once sent), so it never sits in a
 * jansson string or a temporary copy. */
static int send_token(struct pending *p, uint64_t seq)
{
	struct token_op *tk = p->op;
	struct audit_jbuf *h = &p->b->reply_head;
	char *line;
	size_t tl = 0, o = 0;
	bool plain;

	if (token_reply_head(p, seq) < 0)
		return -ENOMEM;
	/* token_response admits printable ASCII only: '"' and '\\' are all
	 * that could need escaping, and a JWT has neither (two memchr, one
	 * memcpy; a byte loop here was ~8% of the loop thread) */
	plain = memchr(tk->token, '"', tk->token_len) == NULL &&
		memchr(tk->token, '\\', tk->token_len) == NULL;
	tl = tk->token_len;
	for (size_t i = 0; !plain && i < tk->token_len; i++)
		tl += tk->token[i] == '"' || tk->token[i] == '\\';
	line = conn_out_reserve(p->conn, h->len + 17 + tl + 3);
	if (line == NULL)
		return -EPIPE;
	memcpy(line, h->p, h->len);
	o = h->len;
	memcpy(line + o, ",\"access_token\":\"", 17);
	o += 17;
	if (plain) {
		memcpy(line + o, tk->token, tk->token_len);
		o += tk->token_len;
	}
	for (size_t i = 0; !plain && i < tk->token_len; i++) {
		if (tk->token[i] == '"' || tk->token[i] == '\\')
			line[o++] = '\\';
		line[o++] = tk->token[i];
	}
	memcpy(line + o, "\"}\n", 3);
	o += 3;
	conn_out_commit(p->conn, o);
	/* a failed send (EPIPE) closed the connection: the token did not leave */
	return p->conn->dead ? -EPIPE : 0;
}

/* Does the principal match on the executable? Then the process must still
 * run that file when its token leaves (an exec keeps pid and pidfd). */
static bool principal_uses_exe(struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->cfg->n_principals; i++) {
		const struct principal_config *pc = &b->cfg->principals[i];

		if (strcmp(pc->name, name) == 0)
			return pc->match.exe != NULL || pc->match.has_exe_sha256;
	}
	return false;
}

static void token_recheck_and_send(struct pending *p, uint64_t seq)
{
	struct broker *b = p->b;
	struct token_op *tk = p->op;
	const char *purpose = json_string_value(json_object_get(p->request, "purpose"));
	/* the same rules as before the audit, for the grant chosen then */
	struct policy_ask ask = {
		.principal = p->principal_name,
		.tenant = tk->tenant_id,
		.scope = tk->scope,
		.purpose = purpose,
		.grant_id = tk->grant_id,
		.now_s = util_now_us() / 1000000,
	};
	json_t *id = json_object_get(p->request, "id");
	const char *code = NULL;
	char msg[512];
	struct decision d;
	struct audit_fields f = {0};
	int peer_rc;

	policy_decide(b->policy, &ask, &d);
	if (d.error != NULL) {
		code = d.error;
		snprintf(msg, sizeof(msg), "%s", d.message);
	} else {
		peer_rc = p->conn == NULL || p->conn->dead ? -EPIPE
							   : peer_check_conn(&p->conn->peer, p->conn->fd,
									     principal_uses_exe(b, p->principal_name));
		if (peer_rc == -EPIPE) {
			code = "gone";
			snprintf(msg, sizeof(msg), "the client closed its connection");
		} else if (peer_rc < 0) {
			code = "unauthenticated";
			snprintf(msg, sizeof(msg), "the requesting process exited, was replaced (pid reused) or now runs another executable: ask again");
		}
	}
	if (code == NULL) {
		int rc = send_token(p, seq);

		if (rc == 0) {
			broker_count_outcome(b, "ok");
			if (p->log[0] != '\0')
				broker_log("%s seq=%llu", p->log, (unsigned long long)seq);
			pending_free(p);
			return;
		}
		code = rc == -EPIPE ? "gone" : "internal";
		snprintf(msg, sizeof(msg), rc == -EPIPE ? "the client closed its connection"
							: "out of memory");
	}
	/* Withheld: the token record is durable, so say so in another one. */
	broker_log("token withheld (%s): principal=%s grant=%s seq=%llu", code,
		   p->principal_name, tk->grant_id, (unsigned long long)seq);
	token_wipe(tk);
	token_fields(p, &f, "token.withheld", code);
	audit_fields_str(&f, "error", code);
	audit_fields_int(&f, "token_seq", (int64_t)seq);
	json_decref(p->reply);
	p->reply = strcmp(code, "gone") == 0 ? NULL : reply_error(id, code, "%s", msg);
	p->on_durable = NULL;
	p->log[0] = '\0';
	broker_count_outcome(b, "withheld");
	pending_audit_fields(p, &f);
}

/* Every tool op first maps the caller to a principal; all but ping (and
 * token, whose refusal names the tenant asked for) need one. */
static void tool_begin(struct pending *p, const struct op_def *def, json_t *id)
{
	struct broker *b = p->b;
	const struct principal_config *pc;

	p->principal_ix = peer_match_principal(&p->conn->peer, b->cfg);
	pc = principal_of(b, p->principal_ix);
	if (pc != NULL)
		snprintf(p->principal_name, sizeof(p->principal_name), "%s", pc->name);
	if (pc == NULL && !def->anyone) {
		answer_unauthenticated(p, def->name, id, NULL);
		return;
	}
	def->run(p, id, p->request);
}

static const struct op_def tool_ops[] = {
	{.name = "ping", .fields = f_none, .run = op_ping, .anyone = true},
	{.name = "whoami", .fields = f_none, .run = op_whoami},
	{.name = "tenants", .fields = f_none, .run = op_tenants},
	{.name = "keys", .fields = f_none, .run = op_keys},
	{.name = "token", .fields = f_token, .run = op_token, .anyone = true},
};

const struct op_table tool_op_table = {
	.socket = "tool",
	.ops = tool_ops,
	.n = sizeof(tool_ops) / sizeof(tool_ops[0]),
	.begin = tool_begin,
};

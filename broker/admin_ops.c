/* admin_ops.c — the admin socket's ops (DESIGN §6, docs/PROTOCOL.md).
 *
 * Roles come from the config; root holds all. Every op, allowed or
 * refused, is audited as "admin.<op>" with the caller's user name as
 * actor. Officer actions change the persistent state in the vault (durable
 * before the call returns) and the in-memory policy at once, so the
 * token path's re-check stops any token that was still on its way; their
 * reply leaves after the audit record is durable and a checkpoint signed.
 */
#include "broker_int.h"
#include "custody_version.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUDIT_QUERY_MAX 10000
#define EXPOSURE_LOOKBACK_US (24LL * 3600 * 1000000)

static const char *const f_none[] = {NULL};
static const char *const f_import[] = {"sealed", "probe", NULL};
static const char *const f_list[] = {"tenant", NULL};
static const char *const f_show[] = {"grant", NULL};
static const char *const f_revoke[] = {"grant", "tenant", "reason", NULL};
static const char *const f_suspend[] = {"principal", "reason", NULL};
static const char *const f_resume[] = {"principal", NULL};
static const char *const f_lockdown[] = {"reason", NULL};
static const char *const f_query[] = {"tenant", "principal", "event", "outcome", "since",
				      "until", "after_seq", "limit", "order", "follow", NULL};
static const char *const f_export[] = {"tenant", "since", "until", "from_checkpoint", NULL};

static void officer_durable(struct pending *p, uint64_t seq);
static void checkpoint_durable(struct pending *p, uint64_t seq);
static void op_import(struct pending *p, json_t *id, json_t *req);
static void op_list(struct pending *p, json_t *id, json_t *req);
static void op_show(struct pending *p, json_t *id, json_t *req);
static void op_revoke(struct pending *p, json_t *id, json_t *req);
static void op_suspend(struct pending *p, json_t *id, json_t *req);
static void op_resume(struct pending *p, json_t *id, json_t *req);
static void op_lockdown(struct pending *p, json_t *id, json_t *req);
static void op_unlock(struct pending *p, json_t *id, json_t *req);
static void op_status(struct pending *p, json_t *id, json_t *req);
static void op_reload(struct pending *p, json_t *id, json_t *req);
static void op_query(struct pending *p, json_t *id, json_t *req);
static void op_export(struct pending *p, json_t *id, json_t *req);
static void op_checkpoint(struct pending *p, json_t *id, json_t *req);
static void op_ack_conflict(struct pending *p, json_t *id, json_t *req);

static bool holds_role(const struct broker *b, const struct peer *peer, enum broker_role r)
{
	const struct broker_role_config *rc = &b->cfg->roles[r];

	if (peer->uid == 0)
		return true;
	for (size_t i = 0; i < rc->n_uids; i++)
		if (rc->uids[i] == peer->uid)
			return true;
	for (size_t i = 0; i < rc->n_gids; i++)
		if (peer_in_group(peer, rc->gids[i]))
			return true;
	return false;
}

/* The record every admin op gets; op-specific fields are added by the op. */
static json_t *admin_record(struct pending *p, const char *outcome)
{
	char event[64];
	json_t *id = json_object_get(p->request, "id");

	snprintf(event, sizeof(event), "admin.%s", json_string_value(json_object_get(p->request, "op")));
	return record_new(p->b, event, outcome, p->conn, NULL, id);
}

static void admin_fail(struct pending *p, json_t *id, const char *code, json_t *extra,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void admin_fail(struct pending *p, json_t *id, const char *code, json_t *extra,
		       const char *fmt, ...)
{
	char msg[512];
	json_t *rec;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->on_durable = NULL;
	p->reply = reply_error(id, code, "%s", msg);
	rec = admin_record(p, code);
	if (rec != NULL) {
		json_object_set_new(rec, "error", json_string(code));
		if (extra != NULL)
			json_object_update(rec, extra);
	}
	json_decref(extra);
	broker_count_outcome(p->b, code);
	snprintf(p->log, sizeof(p->log), "admin.%s %s: actor=%s",
		 json_string_value(json_object_get(p->request, "op")), code,
		 p->conn ? p->conn->peer.user : "-");
	pending_audit(p, rec);
}

/* Success: reply r, record fields extra (both stolen). */
static void admin_ok(struct pending *p, json_t *reply, json_t *extra)
{
	json_t *rec = admin_record(p, "ok");

	p->reply = reply;
	if (rec != NULL && extra != NULL)
		json_object_update(rec, extra);
	json_decref(extra);
	broker_count_outcome(p->b, "ok");
	snprintf(p->log, sizeof(p->log), "admin.%s ok: actor=%s",
		 json_string_value(json_object_get(p->request, "op")),
		 p->conn ? p->conn->peer.user : "-");
	pending_audit(p, rec);
}

static const char *opt_string(json_t *req, const char *key, bool *bad)
{
	json_t *v = json_object_get(req, key);

	if (v == NULL)
		return NULL;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 1024) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

static json_t *time_json(int64_t s)
{
	char ts[UTIL_TIME_LEN];

	if (s == INT64_MIN || s == INT64_MAX || util_time_format(s * 1000000, false, ts) < 0)
		return json_null();
	return json_string(ts);
}

static json_t *strv_json(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

json_t *grant_json(const struct grant *g, int64_t now)
{
	json_t *o = json_pack("{s:s,s:s,s:s?,s:s,s:s,s:o,s:o,s:s,s:o,s:o,s:o}", "id", g->id,
			      "tenant_id", g->tenant_id, "tenant_name",
			      g->tenant_name[0] ? g->tenant_name : NULL, "client_id", g->client_id,
			      "token_endpoint", g->token_endpoint, "scopes",
			      strv_json(g->scopes, g->n_scopes), "principals",
			      strv_json(g->principals, g->n_principals), "state",
			      grant_state_name(grant_state(g, now)), "not_before",
			      time_json(g->not_before), "not_after", time_json(g->not_after),
			      "imported_at", time_json(g->imported_at));

	if (o != NULL && g->revoked) {
		json_object_set_new(o, "revoked_at", time_json(g->revoked_at));
		json_object_set_new(o, "revoked_by", json_string(g->revoked_by));
		json_object_set_new(o, "reason", json_string(g->reason));
	}
	if (o != NULL) {
		json_object_set_new(o, "credential", json_string(grant_credential_name(g->credential)));
		if (g->credential != GRANT_CRED_UNTRIED)
			json_object_set_new(o, "credential_checked_at", time_json(g->credential_at));
		if (g->credential == GRANT_CRED_FAILED)
			json_object_set_new(o, "credential_error", json_string(g->credential_error));
	}
	return o;
}

/* Which grant of its tenant serves token requests, and why: "serving"
 * and "serving_why" on the grant's object o. best: the tenant's
 * preferred active grant (tenant_serving), NULL when none is. */
static void serving_json(json_t *o, const struct grant *g, const struct grant *best,
			 int64_t now)
{
	enum grant_state st = grant_state(g, now);
	char why[512];

	if (o == NULL)
		return;
	if (st != GRANT_ACTIVE)
		snprintf(why, sizeof(why), "%s: %s", grant_state_name(st),
			 st == GRANT_PENDING   ? "not valid before its not_before"
			 : st == GRANT_EXPIRED ? "past its not_after"
					       : "revoked grants never serve again");
	else if (g == best && g->credential == GRANT_CRED_FAILED)
		snprintf(why, sizeof(why), "serves only because no other active grant of the tenant "
			 "is left, though its credential failed (%s); the customer must seal a "
			 "working grant", g->credential_error);
	else if (g == best)
		snprintf(why, sizeof(why), "the newest active grant of the tenant whose credential %s",
			 g->credential == GRANT_CRED_WORKS ? "works"
							   : "has not failed (never probed)");
	else if (g->credential == GRANT_CRED_FAILED && best != NULL)
		snprintf(why, sizeof(why), "standby: its credential failed (%s); %s serves",
			 g->credential_error, best->id);
	else
		snprintf(why, sizeof(why), "standby: %s is newer and serves",
			 best != NULL ? best->id : "another grant");
	json_object_set_new(o, "serving", json_boolean(g == best));
	json_object_set_new(o, "serving_why", json_string(why));
}

/* grant_json with which grant serves its tenant. */
static json_t *grant_json_serving(struct broker *b, const struct grant *g, int64_t now)
{
	json_t *o = grant_json(g, now);

	serving_json(o, g, policy_tenant_serving(b->policy, g->tenant_id, now), now);
	return o;
}

/* ---- grant.import ------------------------------------------------------- */

/* grant.import's own state while a probe runs. */
struct import_op {
	struct token_wait *wait;
	struct grant *grant;      /* the grant imported */
	bool already;             /* it was there before */
};

static void import_op_free(void *op)
{
	struct import_op *im = op;

	tokens_cancel(im->wait);
	grant_free(im->grant);
	free(im);
}

/* The grant as it stands now (a probe may have marked its credential). */
static json_t *import_reply(struct pending *p, json_t *id, bool already)
{
	struct import_op *im = p->op;
	struct broker *b = p->b;
	const struct grant *g = policy_grant_find(b->policy, im->grant->id);
	json_t *r = reply_new(id, true), *warnings = json_array();

	if (g == NULL)
		g = im->grant;
	json_object_set_new(r, "grant", grant_json_serving(b, g, util_now_us() / 1000000));
	json_object_set_new(r, "already", json_boolean(already));
	/* A principal the MSSP's config does not know can never use the
	 * grant: a typo on either side, said now rather than at the first
	 * refused token. */
	for (size_t i = 0; warnings != NULL && i < g->n_principals; i++) {
		bool known = false;

		for (size_t k = 0; k < b->cfg->n_principals && !known; k++)
			known = strcmp(b->cfg->principals[k].name, g->principals[i]) == 0;
		if (!known)
			json_array_append_new(warnings, json_sprintf(
				"the grant names principal %s, which is not in this broker's config: "
				"no tool can use the grant as that principal (add it to principals, "
				"or ask the customer to seal the grant for a principal you have)",
				g->principals[i]));
	}
	if (json_array_size(warnings) > 0)
		json_object_set_new(r, "warnings", warnings);
	else
		json_decref(warnings);
	return r;
}

static json_t *import_record(struct pending *p, bool already)
{
	struct import_op *im = p->op;

	/* the name too: an auditor's `audit list --tenant contoso` resolves it
	 * from these records when the broker is not running */
	return json_pack("{s:s,s:s?,s:s,s:b}", "tenant", im->grant->tenant_id, "tenant_name",
			 im->grant->tenant_name[0] ? im->grant->tenant_name : NULL, "grant",
			 im->grant->id, "already", already);
}

static void probe_answered(void *ctx, const struct token_reply *r)
{
	struct pending *p = ctx;
	json_t *id = json_object_get(p->request, "id");
	json_t *probe, *reply, *extra;
	struct import_op *im = p->op;
	bool already = im->already;

	im->wait = NULL;
	/* Kept with the grant, so a failed one is not preferred over a grant
	 * that works, now and after a restart. A provider that could not be
	 * reached said nothing about the credential. */
	if (r->status == TOKEN_OK) {
		policy_credential_note(p->b->policy, p->b->vault, im->grant->id, GRANT_CRED_WORKS, NULL, true);
	} else if (r->status == TOKEN_UPSTREAM_REJECTED) {
		char why[256];

		snprintf(why, sizeof(why), "%s%s%s", r->upstream_error[0] ? r->upstream_error : "",
			 r->upstream_error[0] ? ": " : "", r->message);
		policy_credential_note(p->b->policy, p->b->vault, im->grant->id, GRANT_CRED_FAILED, why, true);
	}
	if (r->status == TOKEN_OK) {
		probe = json_pack("{s:b}", "ok", 1);
	} else {
		json_t *codes = json_array();

		for (size_t i = 0; codes != NULL && i < r->n_upstream_codes && i < 8; i++)
			json_array_append_new(codes, json_integer(r->upstream_codes[i]));
		probe = json_pack("{s:b,s:s,s:s,s:o}", "ok", 0, "error",
				  r->status == TOKEN_UPSTREAM_REJECTED ? "upstream_rejected"
				  : r->status == TOKEN_RATE_LIMITED    ? "rate_limited"
				  : r->status == TOKEN_REVOKED         ? "revoked"
				  : r->status == TOKEN_INTERNAL        ? "internal"
								       : "upstream_unavailable",
				  "message", r->message, "upstream_codes", codes);
	}
	reply = import_reply(p, id, already);
	json_object_set(reply, "probe", probe);
	extra = import_record(p, already);
	if (extra != NULL)
		json_object_set_new(extra, "probe", probe);
	else
		json_decref(probe);
	admin_ok(p, reply, extra);
}

static void op_import(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	json_t *sealed = json_object_get(req, "sealed"), *probe = json_object_get(req, "probe");
	struct grant *g = NULL;
	struct import_op *im;
	struct token_reply now;
	struct cerr err = {0};
	bool already = false;
	int rc;

	if (sealed == NULL || !json_is_string(sealed) || json_string_length(sealed) > 65536) {
		admin_fail(p, id, "bad_request", NULL, "sealed: required (the sealed grant file's text)");
		return;
	}
	if (probe != NULL && !json_is_boolean(probe)) {
		admin_fail(p, id, "bad_request", NULL, "probe: expected true or false");
		return;
	}
	rc = vault_grant_import(b->vault, json_string_value(sealed), json_string_length(sealed),
				(const char *const *)b->cfg->upstream.allowed_hosts,
				util_now_us() / 1000000, &g, &already, &err);
	if (rc == -EKEYEXPIRED) {
		admin_fail(p, id, "grant_expired", NULL, "%s", err.msg);
		return;
	}
	if (rc < 0) {
		const char *code = rc == -EIO || rc == -ENOMEM || rc == -ENOSPC ? "internal"
										 : "bad_request";

		admin_fail(p, id, code, NULL, "grant not imported: %s",
			   err.msg[0] ? err.msg : strerror(-rc));
		return;
	}
	if (already && grant_state(g, util_now_us() / 1000000) == GRANT_EXPIRED) {
		char at[UTIL_TIME_LEN] = "?";

		util_time_format(g->not_after * 1000000, false, at);
		admin_fail(p, id, "grant_expired", json_pack("{s:s,s:s}", "tenant", g->tenant_id, "grant", g->id),
			   "grant %s is stored but expired at %s (its not_after): ask the customer "
			   "to seal a new grant", g->id, at);
		grant_free(g);
		return;
	}
	im = calloc(1, sizeof(*im));
	if (im == NULL) {
		grant_free(g);
		admin_fail(p, id, "internal", NULL, "out of memory");
		return;
	}
	im->grant = g;
	p->op = im;
	p->op_free = import_op_free;
	if (!already || policy_grant_find(b->policy, g->id) == NULL)
		policy_grant_put(b->policy, grant_dup(g));
	broker_log("grant %s imported for tenant %s%s", g->id, g->tenant_id,
		   already ? " (already there)" : "");
	if (probe == NULL || !json_is_true(probe)) {
		admin_ok(p, import_reply(p, id, already), import_record(p, already));
		return;
	}
	im->already = already;
	rc = tokens_probe(b->tokens, g, g->scopes[0], &now, probe_answered, p, &im->wait);
	if (rc < 0) {
		json_t *reply = import_reply(p, id, already);

		json_object_set_new(reply, "probe",
				    json_pack("{s:b,s:s,s:s}", "ok", 0, "error", "internal",
					      "message", "the probe could not start"));
		admin_ok(p, reply, import_record(p, already));
		return;
	}
	if (rc == 1)
		probe_answered(p, &now);   /* could not start: answered at once */
}

/* ---- grant.list / grant.show ----------------------------------------------- */

static void op_list(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *tenant = opt_string(req, "tenant", &bad);
	int64_t now = util_now_us() / 1000000;
	json_t *arr, *r;

	if (bad) {
		admin_fail(p, id, "bad_request", NULL, "tenant: expected a tenant id or name");
		return;
	}
	arr = json_array();
	for (size_t i = 0; arr != NULL && i < policy_grant_count(b->policy); i++) {
		const struct grant *g = policy_grant_at(b->policy, i);

		if (tenant == NULL || grant_names_tenant(g, tenant))
			json_array_append_new(arr, grant_json_serving(b, g, now));
	}
	r = reply_new(id, true);
	json_object_set_new(r, "grants", arr);
	admin_ok(p, r, tenant ? json_pack("{s:s}", "requested_tenant", tenant) : NULL);
}

static void op_show(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *gid = opt_string(req, "grant", &bad);
	const struct grant *g;
	json_t *r;

	if (gid == NULL) {
		admin_fail(p, id, "bad_request", NULL, "grant: required (a grant id g_...)");
		return;
	}
	g = policy_grant_find(b->policy, gid);
	if (g == NULL) {
		admin_fail(p, id, "bad_request", NULL, "no grant %s: see `custody grant list`", gid);
		return;
	}
	r = reply_new(id, true);
	json_object_set_new(r, "grant", grant_json_serving(b, g, util_now_us() / 1000000));
	admin_ok(p, r, json_pack("{s:s,s:s}", "tenant", g->tenant_id, "grant", g->id));
}

/* ---- grant.revoke ------------------------------------------------------- */

struct exposure {
	const char *grant;
	int64_t now_s;
	json_t *seen;       /* token_sha256 → true */
	int64_t until;      /* latest expires_at still in the future, or 0 */
};

static int exposure_record(void *ctx, uint64_t seq, const char *body, size_t len)
{
	struct exposure *e = ctx;
	json_t *rec = json_loadb(body, len, 0, NULL);
	const char *g, *sha, *exp;
	int64_t at;

	if (rec == NULL)
		return 0;
	g = json_string_value(json_object_get(rec, "grant"));
	sha = json_string_value(json_object_get(rec, "token_sha256"));
	exp = json_string_value(json_object_get(rec, "expires_at"));
	if (g != NULL && sha != NULL && exp != NULL && strcmp(g, e->grant) == 0 &&
	    util_time_parse(exp, &at) == 0 && at / 1000000 > e->now_s) {
		json_object_set_new(e->seen, sha, json_true());
		if (at / 1000000 > e->until)
			e->until = at / 1000000;
	}
	json_decref(rec);
	return 0;
}

/* A revocation's answer: the exposure window of each grant revoked is
 * read from the audit store, which can take a while on a busy store, so
 * it runs on the admin-reads thread (offload.c) and the reply is built
 * when it is back. */
struct revoke_job {
	struct offload_job job;
	struct pending *p;
	struct revoked_grant {
		char id[GRANT_ID_LEN];
		char tenant_id[128];
	} *grants;
	size_t n, cap;
	json_t *list;             /* built on the worker, used on the loop */
	json_t *already;          /* grants revoked before: who did it first (loop) */
	struct audit *audit;      /* the worker's only way to the broker */
	int64_t now_us;
	int rc;                   /* of the revocation itself */
	char err[256];
	char tid[128], one[GRANT_ID_LEN];
};

static void revoke_job_free(struct revoke_job *j)
{
	json_decref(j->list);
	json_decref(j->already);
	free(j->grants);
	free(j);
}

/* The exposure window of a revoked grant: tokens handed out that are still
 * valid, from the durable "token"/"ok" records of the last 24 hours
 * (longer than any Entra token lives). Worker thread. */
static json_t *exposure_of(struct audit *a, const struct revoked_grant *g, int64_t now_us)
{
	struct exposure e = {.grant = g->id, .now_s = now_us / 1000000, .seen = json_object()};
	struct audit_filter f = {.tenant = g->tenant_id, .event = "token", .outcome = "ok",
				 .since_us = now_us - EXPOSURE_LOOKBACK_US};
	json_t *o;

	if (e.seen == NULL)
		return NULL;
	if (audit_query(a, &f, exposure_record, &e) < 0)
		broker_log("exposure window of %s: cannot read the audit store", g->id);
	o = json_pack("{s:s,s:s,s:I,s:o}", "grant", g->id, "state", "revoked",
		      "outstanding_tokens", (json_int_t)json_object_size(e.seen), "valid_until",
		      e.until > 0 ? time_json(e.until) : json_null());
	json_decref(e.seen);
	return o;
}

static void revoke_run(struct offload_job *job)
{
	struct revoke_job *j = (struct revoke_job *)job;

	for (size_t i = 0; j->list != NULL && i < j->n; i++)
		json_array_append_new(j->list, exposure_of(j->audit, &j->grants[i], j->now_us));
}

static void revoke_done(struct offload_job *job, bool cancelled)
{
	struct revoke_job *j = (struct revoke_job *)job;
	struct pending *p = j->p;
	json_t *id = json_object_get(p->request, "id");
	const char *reason = json_string_value(json_object_get(p->request, "reason"));
	json_t *r, *extra;

	if (cancelled) {
		revoke_job_free(j);
		return;
	}
	if (j->rc < 0) {
		extra = json_pack("{s:O,s:s}", "revoked", j->list, "tenant", j->tid);
		admin_fail(p, id, "internal", extra, "revocation failed: %s", j->err);
		revoke_job_free(j);
		return;
	}
	extra = json_pack("{s:O,s:s,s:s}", "revoked", j->list, "reason", reason, "tenant", j->tid);
	if (j->one[0] != '\0')
		json_object_set_new(extra, "grant", json_string(j->one));
	/* Revoking again changes nothing, and says so with who did it first. */
	if (json_array_size(j->already) > 0 && extra != NULL)
		json_object_set(extra, "already_revoked", j->already);
	r = reply_new(id, true);
	json_object_set(r, "revoked", j->list);
	json_object_set(r, "already_revoked", j->already);
	p->on_durable = officer_durable;
	admin_ok(p, r, extra);
	revoke_job_free(j);
}

static int revoke_one(struct pending *p, const struct grant *g, const char *reason,
		      struct revoke_job *j, struct cerr *err)
{
	struct broker *b = p->b;
	struct grant *fresh = NULL;
	int rc;

	if (j->n == j->cap) {
		size_t n = j->cap ? j->cap * 2 : 4;
		struct revoked_grant *ng = realloc(j->grants, n * sizeof(*ng));

		if (ng == NULL)
			return cerr_set(err, -ENOMEM, "out of memory");
		j->grants = ng;
		j->cap = n;
	}
	rc = vault_grant_revoke(b->vault, g->id, p->conn ? p->conn->peer.user : "?", reason,
				util_now_us() / 1000000, err);
	if (rc < 0 && rc != -EALREADY)
		return rc;
	snprintf(j->grants[j->n].id, sizeof(j->grants[j->n].id), "%s", g->id);
	snprintf(j->grants[j->n].tenant_id, sizeof(j->grants[j->n].tenant_id), "%s", g->tenant_id);
	j->n++;
	/* the vault's copy carries who revoked it and when; failing that, a
	 * copy marked revoked keeps the policy from serving it */
	if (vault_grant_get(b->vault, g->id, &fresh) < 0 && (fresh = grant_dup(g)) != NULL)
		fresh->revoked = true;
	if (fresh != NULL) {
		policy_grant_put(b->policy, fresh);
		g = fresh;
	}
	tokens_forget_grant(b->tokens, g->id);
	broker_log("grant %s for tenant %s revoked by %s", g->id, g->tenant_id,
		   p->conn ? p->conn->peer.user : "?");
	return 0;
}

static json_t *already_json(const struct grant *g)
{
	return json_pack("{s:s,s:s,s:b,s:o,s:s,s:s}", "grant", g->id, "state", "revoked",
			 "already", 1, "revoked_at", time_json(g->revoked_at), "revoked_by",
			 g->revoked_by, "reason", g->reason);
}

static void op_revoke(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *gid = opt_string(req, "grant", &bad);
	const char *tenant = opt_string(req, "tenant", &bad);
	const char *reason = opt_string(req, "reason", &bad);
	struct cerr err = {0};
	struct revoke_job *j;
	int rc = 0;

	if (bad || (gid == NULL) == (tenant == NULL)) {
		admin_fail(p, id, "bad_request", NULL, "give either grant (an id) or tenant, and a reason");
		return;
	}
	if (reason == NULL) {
		admin_fail(p, id, "bad_request", NULL, "reason: required (why the grant is revoked)");
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->list = json_array()) == NULL || (j->already = json_array()) == NULL) {
		if (j != NULL)
			revoke_job_free(j);
		admin_fail(p, id, "internal", NULL, "out of memory");
		return;
	}
	j->job = (struct offload_job){.run = revoke_run, .done = revoke_done};
	j->p = p;
	j->audit = b->audit;
	j->now_us = util_now_us();
	if (gid != NULL) {
		const struct grant *g = policy_grant_find(b->policy, gid);

		if (g == NULL) {
			revoke_job_free(j);
			admin_fail(p, id, "bad_request", NULL, "no grant %s: see `custody grant list`", gid);
			return;
		}
		snprintf(j->tid, sizeof(j->tid), "%s", g->tenant_id);
		snprintf(j->one, sizeof(j->one), "%s", g->id);
		if (g->revoked)
			json_array_append_new(j->already, already_json(g));
		else
			rc = revoke_one(p, g, reason, j, &err);
	} else {
		const char *resolved;

		rc = policy_tenant_resolve(b->policy, tenant, &resolved);
		if (rc < 0) {
			revoke_job_free(j);
			admin_fail(p, id, "unknown_tenant", json_pack("{s:s}", "requested_tenant", tenant),
				   rc == -EEXIST ? "tenant name %s belongs to more than one tenant: revoke by tenant id"
						 : "no grant for tenant %s: see `custody grant list`",
				   tenant);
			return;
		}
		snprintf(j->tid, sizeof(j->tid), "%s", resolved);
		/* every grant of the tenant that is not revoked yet */
		for (size_t i = 0; i < policy_grant_count(b->policy) && rc == 0; i++) {
			const struct grant *g = policy_grant_at(b->policy, i);

			if (strcasecmp(g->tenant_id, j->tid) != 0)
				continue;
			if (g->revoked) {
				json_array_append_new(j->already, already_json(g));
				continue;
			}
			rc = revoke_one(p, g, reason, j, &err);
		}
	}
	j->rc = rc;
	if (rc < 0)
		snprintf(j->err, sizeof(j->err), "%s", err.msg[0] ? err.msg : strerror(-rc));
	offload_submit(b, &j->job);
}

/* ---- principals, lockdown --------------------------------------------------- */

static bool principal_known(const struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->cfg->n_principals; i++)
		if (strcmp(b->cfg->principals[i].name, name) == 0)
			return true;
	return false;
}

static void op_suspend(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *name = opt_string(req, "principal", &bad);
	const char *reason = opt_string(req, "reason", &bad);
	int64_t now;
	json_t *r;
	int rc;

	if (bad || name == NULL || reason == NULL) {
		admin_fail(p, id, "bad_request", NULL, "principal and reason: required");
		return;
	}
	if (!principal_known(b, name)) {
		admin_fail(p, id, "bad_request", json_pack("{s:s}", "principal", name),
			   "no principal named %s in the config", name);
		return;
	}
	now = util_now_us() / 1000000;
	rc = vault_principal_suspend(b->vault, name, p->conn->peer.user, reason, now);
	if (rc == 0)
		rc = policy_suspend(b->policy, name, p->conn->peer.user, reason, now);
	if (rc < 0) {
		admin_fail(p, id, "internal", NULL, "cannot store the suspension: %s", strerror(-rc));
		return;
	}
	broker_log("principal %s suspended by %s", name, p->conn->peer.user);
	r = reply_new(id, true);
	json_object_set_new(r, "principal", json_string(name));
	json_object_set_new(r, "state", json_string("suspended"));
	p->on_durable = officer_durable;
	admin_ok(p, r, json_pack("{s:s,s:s}", "principal", name, "reason", reason));
}

static void op_resume(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *name = opt_string(req, "principal", &bad);
	json_t *r;
	int rc;

	if (bad || name == NULL) {
		admin_fail(p, id, "bad_request", NULL, "principal: required");
		return;
	}
	rc = vault_principal_resume(b->vault, name);
	if (rc == -ENOENT) {
		admin_fail(p, id, "bad_request", json_pack("{s:s}", "principal", name),
			   "principal %s is not suspended", name);
		return;
	}
	if (rc == 0)
		policy_resume(b->policy, name);
	if (rc < 0) {
		admin_fail(p, id, "internal", NULL, "cannot store the resumption: %s", strerror(-rc));
		return;
	}
	broker_log("principal %s resumed by %s", name, p->conn->peer.user);
	r = reply_new(id, true);
	json_object_set_new(r, "principal", json_string(name));
	json_object_set_new(r, "state", json_string("active"));
	p->on_durable = officer_durable;
	admin_ok(p, r, json_pack("{s:s}", "principal", name));
}

static void op_lockdown(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *reason = opt_string(req, "reason", &bad);
	json_t *r;
	int rc;

	if (bad || reason == NULL) {
		admin_fail(p, id, "bad_request", NULL, "reason: required (why everything stops)");
		return;
	}
	rc = vault_lockdown_set(b->vault, true, p->conn->peer.user, reason, util_now_us() / 1000000);
	if (rc < 0) {
		admin_fail(p, id, "internal", NULL, "cannot store the lockdown: %s", strerror(-rc));
		return;
	}
	policy_lockdown_set(b->policy, true, reason);
	tokens_forget_all(b->tokens);
	broker_log("LOCKDOWN by %s", p->conn->peer.user);
	r = reply_new(id, true);
	json_object_set_new(r, "lockdown", json_true());
	p->on_durable = officer_durable;
	admin_ok(p, r, json_pack("{s:s}", "reason", reason));
}

static void op_unlock(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	json_t *r;
	int rc;

	rc = vault_lockdown_set(b->vault, false, p->conn->peer.user, NULL, util_now_us() / 1000000);
	if (rc < 0) {
		admin_fail(p, id, "internal", NULL, "cannot store the unlock: %s", strerror(-rc));
		return;
	}
	policy_lockdown_set(b->policy, false, NULL);
	broker_log("unlocked by %s", p->conn->peer.user);
	r = reply_new(id, true);
	json_object_set_new(r, "lockdown", json_false());
	p->on_durable = officer_durable;
	admin_ok(p, r, NULL);
}

/* ---- status, reload ------------------------------------------------------------ */

static void op_status(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	int64_t now = util_now_us() / 1000000;
	struct tokens_stats ts = {0};
	size_t counts[4];
	const char *lockdown_reason;
	bool lockdown = policy_locked_down(b->policy, &lockdown_reason);
	json_t *susp = policy_suspended_json(b->policy), *st, *r;

	policy_grant_counts(b->policy, now, counts);
	tokens_get_stats(b->tokens, &ts);
	/* "requests": a copy (the counts go on changing in place while this
	 * reply waits for its record) */
	st = json_pack("{s:s,s:I,s:b,s:s?,s:{s:I,s:I,s:I,s:I},s:o,s:o,s:{s:I,s:I,s:I,s:I},"
		       "s:{s:I,s:I},s:{s:I,s:b},s:{s:I,s:I}}",
		       "version", CUSTODY_VERSION,
		       "uptime_s", (json_int_t)((util_now_us() - b->started_us) / 1000000),
		       "lockdown", lockdown,
		       "lockdown_reason", lockdown ? lockdown_reason : NULL,
		       "grants", "active", (json_int_t)counts[GRANT_ACTIVE],
		       "pending", (json_int_t)counts[GRANT_PENDING],
		       "expired", (json_int_t)counts[GRANT_EXPIRED],
		       "revoked", (json_int_t)counts[GRANT_REVOKED],
		       "suspended", susp,
		       "requests", json_deep_copy(b->outcomes),
		       "cache", "hits", (json_int_t)ts.hits, "misses", (json_int_t)ts.misses,
		       "refreshes", (json_int_t)ts.refreshes, "entries", (json_int_t)ts.cached,
		       "upstream", "calls", (json_int_t)ts.upstream_calls, "errors",
		       (json_int_t)ts.upstream_errors,
		       "audit", "seq", (json_int_t)audit_size(b->audit), "writable",
		       audit_writable(b->audit),
		       "connections", "tool", (json_int_t)b->n_tool, "admin", (json_int_t)b->n_admin);
	if (st == NULL) {
		admin_fail(p, id, "internal", NULL, "out of memory");
		return;
	}
	{
		/* records the newest signed checkpoint does not cover yet */
		uint64_t size = audit_size(b->audit), cp = audit_checkpoint_size(b->audit);
		json_t *au = json_object_get(st, "audit");

		json_object_set_new(au, "checkpoint_size", json_integer((json_int_t)cp));
		json_object_set_new(au, "uncovered",
				    json_integer((json_int_t)(size > cp ? size - cp : 0)));
	}
	json_object_set_new(st, "refusal_guard", guard_status_json(b));
	if (b->ship != NULL)
		json_object_set_new(st, "ship", shipper_status(b->ship, audit_size(b->audit)));
	if (b->wc != NULL) {
		/* witnesses, and a conflict shown until an officer acknowledges it */
		json_t *ws = witness_client_status(b->wc);

		if (ws != NULL) {
			json_object_set(st, "witnesses", json_object_get(ws, "witnesses"));
			json_object_set(st, "witness_quorum", json_object_get(ws, "quorum"));
			json_object_set(st, "witness_conflict", json_object_get(ws, "conflict")
								? json_object_get(ws, "conflict")
								: json_null());
			json_decref(ws);
		}
	}
	r = reply_new(id, true);
	json_object_set_new(r, "status", st);
	admin_ok(p, r, NULL);
}

/* audit.ack_conflict: an officer has looked at the witness conflict; the
 * record keeps what was acknowledged, by whom and why. */
static void op_ack_conflict(struct pending *p, json_t *id, json_t *req)
{
	bool bad = false;
	const char *reason = opt_string(req, "reason", &bad);
	json_t *was, *r;

	if (bad || reason == NULL) {
		admin_fail(p, id, "bad_request", NULL,
			   "reason: required (what was found about the witness conflict)");
		return;
	}
	if (!witness_client_has_alarm(p->b->wc)) {
		admin_fail(p, id, "bad_request", NULL, "no witness conflict is shown");
		return;
	}
	was = witness_client_ack(p->b->wc);
	broker_log("witness conflict acknowledged by %s: %s", p->conn->peer.user, reason);
	r = reply_new(id, true);
	json_object_set(r, "acknowledged", was);
	p->on_durable = officer_durable;
	admin_ok(p, r, json_pack("{s:s,s:o}", "reason", reason, "conflict", was));
}

static void op_reload(struct pending *p, json_t *id, json_t *req)
{
	struct cerr err = {0};
	json_t *r, *na = json_array();

	if (broker_reload(p->b, &err, na) < 0) {
		json_decref(na);
		admin_fail(p, id, "bad_request", json_pack("{s:s}", "message", err.msg),
			   "reload failed, the running policy stays: %s", err.msg);
		return;
	}
	r = reply_new(id, true);
	json_object_set_new(r, "reloaded", json_true());
	json_object_set(r, "not_applied", na);
	admin_ok(p, r, json_pack("{s:o}", "not_applied", na));
}

/* ---- audit ---------------------------------------------------------------------- */

struct query_ctx {
	json_t *records;
	uint64_t last_seq;
};

static int query_record(void *ctx, uint64_t seq, const char *body, size_t len)
{
	struct query_ctx *q = ctx;
	json_t *rec = json_loadb(body, len, 0, NULL);

	if (rec == NULL)
		return -EBADMSG;
	json_array_append_new(q->records, rec);
	if (seq > q->last_seq)
		q->last_seq = seq;
	return 0;
}

static int opt_time(json_t *req, const char *key, int64_t *out)
{
	json_t *v = json_object_get(req, key);

	*out = 0;
	if (v == NULL)
		return 0;
	if (!json_is_string(v) || util_time_parse(json_string_value(v), out) < 0)
		return -EINVAL;
	return 0;
}

/* audit.list and audit.export read on the admin-reads thread (offload.c):
 * a large export reads every leaf of the tree, and the loop must keep
 * answering token requests meanwhile. The filter's strings belong to
 * p->request, which nothing else touches until the job is done. */
struct list_job {
	struct offload_job job;
	struct pending *p;
	struct audit_filter f;
	struct query_ctx q;
	char *tenant;        /* the tenant id (a grant may go while the job runs) */
	bool follow;         /* audit tail --follow: audited at start and stop only */
	bool resolved;       /* tenant is a grant's id; else the store resolves it */
	struct cerr err;
	int rc;
};

/* A tenant no grant names: the store may still know it (an id with
 * records, a name from a grant-import record); else an error listing the
 * tenants it knows. */
static int store_tenant(struct broker *b, char **tenant, struct cerr *err)
{
	char *id = NULL;
	int rc = audit_tenant_resolve(b->audit, *tenant, &id, err);

	if (rc == 0) {
		free(*tenant);
		*tenant = id;
	}
	return rc;
}

static void list_run(struct offload_job *job)
{
	struct list_job *j = (struct list_job *)job;

	j->rc = audit_filter_check(j->p->b->audit, &j->f, &j->err);
	if (j->rc == 0 && j->tenant != NULL && !j->resolved)
		j->rc = store_tenant(j->p->b, &j->tenant, &j->err);
	j->f.tenant = j->tenant;
	if (j->rc == 0)
		j->rc = audit_query(j->p->b->audit, &j->f, query_record, &j->q);
}

/* The error an audit read answers with. */
static const char *read_error(int rc)
{
	return rc == -ENOENT || rc == -EEXIST ? "unknown_tenant"
	       : rc == -EINVAL		      ? "bad_request"
					      : "audit_unavailable";
}

/* audit.query follow: the connection follows once its start is durable. */
static void follow_durable(struct pending *p, uint64_t seq)
{
	if (p->conn != NULL && !p->conn->dead)
		p->conn->following = true;
	pending_answer(p, seq, true);
}

static void list_done(struct offload_job *job, bool cancelled)
{
	struct list_job *j = (struct list_job *)job;
	struct pending *p = j->p;
	json_t *id = json_object_get(p->request, "id"), *filter, *r;

	if (cancelled || j->rc < 0) {
		json_decref(j->q.records);
		if (!cancelled && j->err.msg[0])
			admin_fail(p, id, read_error(j->rc), NULL, "%s", j->err.msg);
		else if (!cancelled)
			admin_fail(p, id, "audit_unavailable", NULL, "cannot read the audit store: %s",
				   strerror(-j->rc));
		free(j->tenant);
		free(j);
		return;
	}
	if (j->follow && p->conn != NULL && p->conn->following) {
		/* a follower's next poll: its start was audited and its stop
		 * will be; a record per poll would flood the log it follows */
		p->conn->follow_sent += json_array_size(j->q.records);
		r = reply_new(id, true);
		json_object_set_new(r, "last_seq", json_integer((json_int_t)j->q.last_seq));
		json_object_set_new(r, "records", j->q.records);
		if (!p->conn->dead)
			conn_send_json(p->conn, r);
		else
			json_decref(r);
		free(j->tenant);
		free(j);
		pending_free(p);
		return;
	}
	if (j->follow && p->conn != NULL && !p->conn->dead) {
		/* following starts once this record is durable: a start the
		 * store could not write leaves every poll audited */
		p->on_durable = follow_durable;
		p->conn->follow_sent = json_array_size(j->q.records);
	}
	/* the query itself is audited, filter and count included */
	filter = json_deep_copy(p->request);
	json_object_del(filter, "v");
	json_object_del(filter, "id");
	json_object_del(filter, "op");
	r = reply_new(id, true);
	json_object_set_new(r, "last_seq", json_integer((json_int_t)j->q.last_seq));
	json_object_set_new(r, "records", j->q.records);
	admin_ok(p, r, json_pack("{s:o,s:I,s:s?}", "filter", filter, "returned",
				 (json_int_t)json_array_size(j->q.records), "follow",
				 j->follow ? "start" : NULL));
	free(j->tenant);
	free(j);
}

static void op_query(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	struct audit_filter f = {.limit = 100};
	struct query_ctx q = {.records = json_array()};
	struct list_job *j;
	bool bad = false;
	json_t *v;

	f.tenant = opt_string(req, "tenant", &bad);
	f.principal = opt_string(req, "principal", &bad);
	f.event = opt_string(req, "event", &bad);
	f.outcome = opt_string(req, "outcome", &bad);
	if (bad) {
		json_decref(q.records);
		admin_fail(p, id, "bad_request", NULL,
			   "tenant, principal, event, outcome: expected non-empty strings");
		return;
	}
	if (opt_time(req, "since", &f.since_us) < 0 || opt_time(req, "until", &f.until_us) < 0) {
		json_decref(q.records);
		admin_fail(p, id, "bad_request", NULL, "since/until: expected RFC 3339 times");
		return;
	}
	if ((v = json_object_get(req, "after_seq")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			json_decref(q.records);
			admin_fail(p, id, "bad_request", NULL, "after_seq: expected an integer >= 0");
			return;
		}
		f.after_seq = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(req, "limit")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1) {
			json_decref(q.records);
			admin_fail(p, id, "bad_request", NULL, "limit: expected an integer from 1 to 10000");
			return;
		}
		f.limit = json_integer_value(v) > AUDIT_QUERY_MAX ? AUDIT_QUERY_MAX
								  : (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(req, "order")) != NULL) {
		if (!json_is_string(v) || (strcmp(json_string_value(v), "asc") != 0 &&
					   strcmp(json_string_value(v), "desc") != 0)) {
			json_decref(q.records);
			admin_fail(p, id, "bad_request", NULL, "order: expected \"asc\" or \"desc\"");
			return;
		}
		f.descending = strcmp(json_string_value(v), "desc") == 0;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL) {
		json_decref(q.records);
		admin_fail(p, id, "internal", NULL, "out of memory");
		return;
	}
	*j = (struct list_job){.job = {.run = list_run, .done = list_done}, .p = p, .f = f, .q = q};
	if ((v = json_object_get(req, "follow")) != NULL) {
		if (!json_is_boolean(v)) {
			json_decref(q.records);
			free(j);
			admin_fail(p, id, "bad_request", NULL, "follow: expected true or false");
			return;
		}
		j->follow = json_is_true(v);
	}
	if (f.tenant != NULL) {
		/* a name (or an id in another case) queries by the tenant id the
		 * records carry */
		const char *resolved = NULL;
		int rc = policy_tenant_resolve(b->policy, f.tenant, &resolved);

		if (rc == -EEXIST) {
			json_decref(q.records);
			free(j);
			admin_fail(p, id, "unknown_tenant", NULL, "tenant name %s belongs to more "
				   "than one tenant: give the tenant id", f.tenant);
			return;
		}
		j->resolved = rc == 0;
		j->tenant = strdup(rc == 0 ? resolved : f.tenant);
		if (j->tenant == NULL) {
			json_decref(q.records);
			free(j);
			admin_fail(p, id, "internal", NULL, "out of memory");
			return;
		}
	}
	offload_submit(b, &j->job);
}

struct export_job {
	struct offload_job job;
	struct pending *p;
	char *tenant, *from; /* copies: a grant may go while the job runs */
	bool resolved;       /* tenant is a grant's id; else the store resolves it */
	int64_t since, until;
	char *buf;
	size_t len;
	struct cerr err;
	int rc;
};

static void export_job_free(struct export_job *j)
{
	free(j->tenant);
	free(j->from);
	free(j->buf);
	free(j);
}

static void export_run(struct offload_job *job)
{
	struct export_job *j = (struct export_job *)job;
	FILE *f = open_memstream(&j->buf, &j->len);

	if (f == NULL) {
		j->rc = -ENOMEM;
		return;
	}
	j->rc = j->resolved ? 0 : store_tenant(j->p->b, &j->tenant, &j->err);
	j->resolved = j->rc == 0;
	if (j->rc == 0)
		j->rc = audit_export(j->p->b->audit, j->tenant, j->since, j->until, j->from, f,
				     &j->err);
	if (fclose(f) != 0 && j->rc == 0)
		j->rc = -ENOMEM;
}

static void export_done(struct offload_job *job, bool cancelled)
{
	struct export_job *j = (struct export_job *)job;
	struct pending *p = j->p;
	json_t *id = json_object_get(p->request, "id"), *doc, *r;

	if (cancelled) {
		export_job_free(j);
		return;
	}
	if (j->rc < 0) {
		admin_fail(p, id,
			   j->rc == -ENOENT || j->rc == -EEXIST		? "unknown_tenant"
			   : j->rc == -EINVAL || j->rc == -EBADMSG ? "bad_request"
								   : "audit_unavailable",
			   /* a tenant nobody knows is no tenant's record */
			   json_pack("{s:s}", j->resolved ? "tenant" : "requested_tenant", j->tenant),
			   "export failed: %s",
			   j->err.msg[0] ? j->err.msg : strerror(-j->rc));
		export_job_free(j);
		return;
	}
	doc = json_loadb(j->buf, j->len, 0, NULL);
	if (doc == NULL) {
		admin_fail(p, id, "internal", NULL, "the export is not valid JSON");
		export_job_free(j);
		return;
	}
	r = reply_new(id, true);
	json_object_set_new(r, "export", doc);
	admin_ok(p, r, json_pack("{s:s}", "tenant", j->tenant));
	export_job_free(j);
}

static void op_export(struct pending *p, json_t *id, json_t *req)
{
	struct broker *b = p->b;
	bool bad = false;
	const char *tenant = opt_string(req, "tenant", &bad);
	json_t *from = json_object_get(req, "from_checkpoint");
	struct export_job *j;
	int64_t since, until;
	int rc;

	if (bad || tenant == NULL) {
		admin_fail(p, id, "bad_request", NULL, "tenant: required");
		return;
	}
	if (from != NULL && !json_is_string(from)) {
		admin_fail(p, id, "bad_request", NULL, "from_checkpoint: expected the signed note text");
		return;
	}
	if (opt_time(req, "since", &since) < 0 || opt_time(req, "until", &until) < 0) {
		admin_fail(p, id, "bad_request", NULL, "since/until: expected RFC 3339 times");
		return;
	}
	/* A tenant name is exported under its id: the chain is keyed by id.
	 * One no grant names is resolved from the store by the job (an id
	 * with records, a name from its grant-import records), or refused. */
	{
		const char *resolved;

		rc = policy_tenant_resolve(b->policy, tenant, &resolved);
		if (rc == -EEXIST) {
			admin_fail(p, id, "bad_request", json_pack("{s:s}", "requested_tenant", tenant),
				   "tenant name %s belongs to more than one tenant: export by tenant id",
				   tenant);
			return;
		}
		if (rc == 0)
			tenant = resolved;
	}
	j = calloc(1, sizeof(*j));
	if (j != NULL)
		j->resolved = rc == 0;
	if (j != NULL) {
		j->tenant = strdup(tenant);
		j->from = from ? strdup(json_string_value(from)) : NULL;
	}
	if (j == NULL || j->tenant == NULL || (from != NULL && j->from == NULL)) {
		if (j != NULL)
			export_job_free(j);
		admin_fail(p, id, "internal", NULL, "out of memory");
		return;
	}
	j->job = (struct offload_job){.run = export_run, .done = export_done};
	j->p = p;
	j->since = since;
	j->until = until;
	offload_submit(b, &j->job);
}

static void op_checkpoint(struct pending *p, json_t *id, json_t *req)
{
	json_t *r = reply_new(id, true);

	p->on_durable = checkpoint_durable;
	admin_ok(p, r, NULL);
}

/* After an officer action's record is durable a checkpoint is signed over
 * it, on the audit writer (pending_checkpoint); the reply leaves once it
 * is (audit.checkpoint: with the note). */
static void officer_signed(struct pending *p, int rc, char *note, uint64_t size,
			   bool note_in_reply)
{
	if (rc < 0) {
		broker_log("checkpoint after record %llu failed: %s", (unsigned long long)p->seq,
			   strerror(-rc));
		if (note_in_reply) {
			json_t *id = json_object_get(p->reply, "id");
			json_t *r = reply_error(id, "audit_unavailable",
						"cannot sign a checkpoint: %s", strerror(-rc));

			json_decref(p->reply);
			p->reply = r;
		}
	} else {
		broker_log("checkpoint signed at size %llu", (unsigned long long)size);
		if (note_in_reply && p->reply != NULL) {
			json_object_set_new(p->reply, "checkpoint", json_string(note));
			json_object_set_new(p->reply, "size", json_integer((json_int_t)size));
		}
	}
	free(note);
	pending_answer(p, p->seq, true);
}

static void officer_signed_plain(struct pending *p, int rc, char *note, uint64_t size)
{
	officer_signed(p, rc, note, size, false);
}

static void officer_signed_note(struct pending *p, int rc, char *note, uint64_t size)
{
	officer_signed(p, rc, note, size, true);
}

static void officer_durable(struct pending *p, uint64_t seq)
{
	pending_checkpoint(p, officer_signed_plain);
}

static void checkpoint_durable(struct pending *p, uint64_t seq)
{
	pending_checkpoint(p, officer_signed_note);
}

/* A connection that followed the log closes: the stop of its following is
 * audited, with how many records it was sent. */
void admin_follow_stop(struct conn *c)
{
	struct pending *p;
	json_t *rec;

	if (!c->following)
		return;
	c->following = false;
	p = pending_new(c->b, NULL);
	rec = record_new(c->b, "admin.audit.query", "ok", c, NULL, NULL);
	if (p == NULL || rec == NULL) {
		json_decref(rec);
		if (p != NULL)
			pending_free(p);
		return;
	}
	json_object_set_new(rec, "follow", json_string("stop"));
	json_object_set_new(rec, "returned", json_integer((json_int_t)c->follow_sent));
	pending_audit(p, rec);
}

/* Every admin op first checks the caller's role. */
static void admin_begin(struct pending *p, const struct op_def *def, json_t *id)
{
	const struct peer *peer = &p->conn->peer;

	if (!holds_role(p->b, peer, (enum broker_role)def->role)) {
		admin_fail(p, id, "denied", NULL, "%s needs the %s role; %s holds none that allows it",
			   def->name, broker_role_name((enum broker_role)def->role), peer->user);
		return;
	}
	def->run(p, id, p->request);
}

static const struct op_def admin_ops[] = {
	{.name = "grant.import", .role = ROLE_ADMIN, .fields = f_import, .run = op_import},
	{.name = "grant.list", .role = ROLE_AUDITOR, .fields = f_list, .run = op_list},
	{.name = "grant.show", .role = ROLE_AUDITOR, .fields = f_show, .run = op_show},
	{.name = "grant.revoke", .role = ROLE_OFFICER, .fields = f_revoke, .run = op_revoke},
	{.name = "principal.suspend", .role = ROLE_OFFICER, .fields = f_suspend, .run = op_suspend},
	{.name = "principal.resume", .role = ROLE_OFFICER, .fields = f_resume, .run = op_resume},
	{.name = "lockdown", .role = ROLE_OFFICER, .fields = f_lockdown, .run = op_lockdown},
	{.name = "unlock", .role = ROLE_OFFICER, .fields = f_none, .run = op_unlock},
	{.name = "status", .role = ROLE_AUDITOR, .fields = f_none, .run = op_status},
	{.name = "reload", .role = ROLE_ADMIN, .fields = f_none, .run = op_reload},
	{.name = "audit.query", .role = ROLE_AUDITOR, .fields = f_query, .run = op_query},
	{.name = "audit.export", .role = ROLE_AUDITOR, .fields = f_export, .run = op_export},
	{.name = "audit.checkpoint", .role = ROLE_OFFICER, .fields = f_none, .run = op_checkpoint},
	{.name = "audit.ack_conflict", .role = ROLE_OFFICER, .fields = f_lockdown,
	 .run = op_ack_conflict},
};

const struct op_table admin_op_table = {
	.socket = "admin",
	.ops = admin_ops,
	.n = sizeof(admin_ops) / sizeof(admin_ops[0]),
	.begin = admin_begin,
};

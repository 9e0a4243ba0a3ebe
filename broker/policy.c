/* policy.c — the token policy's state and which grant a principal's token
 * request uses, or why none (policy.h).
 *
 * Both sides must allow a token (DESIGN §4): the customer's grant (its
 * principals, scopes and validity) and the MSSP's own policy (the
 * principal's tenants, scopes and rate). Refusals are checked in an order
 * that tells the caller the most useful thing without telling a principal
 * about tenants it may not see (the order is listed in policy.h). The same
 * function re-checks a token right before it leaves, so a revocation,
 * suspension, lockdown or reload that landed meanwhile stops it with the
 * same code and message it would have had before the audit.
 *
 * Among the grants that allow a request, the newest serves, except that a
 * grant whose credential the provider rejected (a failed probe at import,
 * or a token fetch refused as invalid_client) serves only when no other
 * can: a bad import never displaces a grant that works. A grant never
 * tried counts as working, so a rotation imported without --probe still
 * takes over; should its secret be wrong, its first refusal marks it and
 * the next request goes back to the older grant.
 *
 * Owns (loop thread only): the grant table, its tenant index and expiry
 * marks, the suspensions, the lockdown and the rate buckets.
 */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

struct rate_bucket {
	char *principal;
	double tokens;
	int64_t last_ms;
};

struct suspension {
	char *name, *actor, *reason;
	int64_t at;
};

struct policy {
	const struct broker_config *cfg;
	struct grant **grants;
	size_t n_grants, cap_grants;
	bool *expired_noted;      /* parallel to grants: its grant.expired record exists */
	json_t *tenant_index;     /* lowercase tenant id/name -> [slots in grants] */
	struct suspension *susp;
	size_t n_susp;
	bool lockdown;
	char lockdown_reason[512];
	struct rate_bucket *rates;
	size_t n_rates;
};

int policy_new(struct policy **out)
{
	struct policy *pol = calloc(1, sizeof(*pol));

	if (pol == NULL)
		return -ENOMEM;
	*out = pol;
	return 0;
}

static void grants_free(struct policy *pol)
{
	for (size_t i = 0; i < pol->n_grants; i++)
		grant_free(pol->grants[i]);
	free(pol->grants);
	free(pol->expired_noted);
	pol->grants = NULL;
	pol->expired_noted = NULL;
	pol->n_grants = pol->cap_grants = 0;
	json_decref(pol->tenant_index);
	pol->tenant_index = NULL;
}

static void suspensions_free(struct policy *pol)
{
	for (size_t i = 0; i < pol->n_susp; i++) {
		free(pol->susp[i].name);
		free(pol->susp[i].actor);
		free(pol->susp[i].reason);
	}
	free(pol->susp);
	pol->susp = NULL;
	pol->n_susp = 0;
}

void policy_free(struct policy *pol)
{
	if (pol == NULL)
		return;
	grants_free(pol);
	suspensions_free(pol);
	for (size_t i = 0; i < pol->n_rates; i++)
		free(pol->rates[i].principal);
	free(pol->rates);
	free(pol);
}

void policy_set_config(struct policy *pol, const struct broker_config *cfg)
{
	pol->cfg = cfg;
}

/* ---- grants and the tenant index ------------------------------------------- */

/* The tenant index: lowercase tenant id and lowercase tenant name ->
 * JSON array of slots in pol->grants, so a token request looks only at
 * its tenant's grants however many the broker holds. */
static void index_key(const char *s, char out[static 128])
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < 127; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
}

static int index_put(struct policy *pol, const char *key, size_t slot)
{
	json_t *arr;

	if (pol->tenant_index == NULL && (pol->tenant_index = json_object()) == NULL)
		return -ENOMEM;
	arr = json_object_get(pol->tenant_index, key);
	if (arr == NULL) {
		arr = json_array();
		if (arr == NULL || json_object_set_new(pol->tenant_index, key, arr) < 0)
			return -ENOMEM;
	}
	return json_array_append_new(arr, json_integer((json_int_t)slot)) < 0 ? -ENOMEM : 0;
}

static int index_add(struct policy *pol, size_t slot)
{
	const struct grant *g = pol->grants[slot];
	char id[128], name[128];
	int rc;

	index_key(g->tenant_id, id);
	rc = index_put(pol, id, slot);
	if (rc < 0 || g->tenant_name[0] == '\0')
		return rc;
	index_key(g->tenant_name, name);
	return strcmp(id, name) == 0 ? 0 : index_put(pol, name, slot);
}

/* Takes ownership of g in every case. */
static int grants_append(struct policy *pol, struct grant *g)
{
	if (pol->n_grants == pol->cap_grants) {
		size_t n = pol->cap_grants ? pol->cap_grants * 2 : 16;
		struct grant **ng = realloc(pol->grants, n * sizeof(*ng));
		bool *ne;

		if (ng == NULL) {
			grant_free(g);
			return -ENOMEM;
		}
		pol->grants = ng;
		ne = realloc(pol->expired_noted, n * sizeof(*ne));
		if (ne == NULL) {
			grant_free(g);
			return -ENOMEM;
		}
		pol->expired_noted = ne;
		pol->cap_grants = n;
	}
	pol->expired_noted[pol->n_grants] = false;
	pol->grants[pol->n_grants++] = g;
	return index_add(pol, pol->n_grants - 1);
}

/* The vault yields each grant once: append without looking for it. */
static int collect_grant(void *ctx, const struct grant *g)
{
	struct policy *pol = ctx;
	struct grant *copy = grant_dup(g);

	if (copy == NULL)
		return -ENOMEM;
	return grants_append(pol, copy);
}

const struct grant *policy_grant_find(const struct policy *pol, const char *id)
{
	for (size_t i = 0; i < pol->n_grants; i++)
		if (strcmp(pol->grants[i]->id, id) == 0)
			return pol->grants[i];
	return NULL;
}

size_t policy_grant_count(const struct policy *pol)
{
	return pol->n_grants;
}

const struct grant *policy_grant_at(const struct policy *pol, size_t i)
{
	return i < pol->n_grants ? pol->grants[i] : NULL;
}

void policy_grant_put(struct policy *pol, struct grant *g)
{
	for (size_t i = 0; i < pol->n_grants; i++)
		if (strcmp(pol->grants[i]->id, g->id) == 0) {
			grant_free(pol->grants[i]);
			pol->grants[i] = g;
			return;
		}
	if (grants_append(pol, g) < 0)
		broker_log("out of memory: grant %s is in the vault but may not be in force until a restart",
			   g->id);
}

void policy_grant_counts(const struct policy *pol, int64_t now_s, size_t counts[static 4])
{
	for (size_t i = 0; i < 4; i++)
		counts[i] = 0;
	for (size_t i = 0; i < pol->n_grants; i++)
		counts[grant_state(pol->grants[i], now_s)]++;
}

void policy_expiry_init(struct policy *pol, int64_t now_s,
			bool (*seen)(void *ctx, const struct grant *g), void *ctx)
{
	for (size_t i = 0; i < pol->n_grants; i++)
		if (grant_state(pol->grants[i], now_s) == GRANT_EXPIRED)
			pol->expired_noted[i] = seen(ctx, pol->grants[i]);
}

void policy_expiry_take(struct policy *pol, int64_t now_s,
			void (*cb)(void *ctx, const struct grant *g), void *ctx)
{
	for (size_t i = 0; i < pol->n_grants; i++) {
		if (pol->expired_noted[i] || grant_state(pol->grants[i], now_s) != GRANT_EXPIRED)
			continue;
		pol->expired_noted[i] = true;
		cb(ctx, pol->grants[i]);
	}
}

bool grant_names_tenant(const struct grant *g, const char *s)
{
	if (strcasecmp(g->tenant_id, s) == 0)
		return true;
	return g->tenant_name[0] != '\0' && strcasecmp(g->tenant_name, s) == 0;
}

static bool principal_allows_tenant(const struct principal_config *p, const struct grant *g)
{
	for (size_t i = 0; i < p->n_tenants; i++) {
		const char *t = p->tenants[i];

		if (strcmp(t, "*") == 0)
			return true;
		/* an entry in the form of a tenant id names that id only: a
		 * customer's tenant_name (from a grant imported before names
		 * of that form were refused) must never widen it */
		if (vault_tenant_id_form(t) ? strcasecmp(g->tenant_id, t) == 0
					    : grant_names_tenant(g, t))
			return true;
	}
	return false;
}

static bool principal_lists_name(const struct principal_config *p, const char *s)
{
	for (size_t i = 0; i < p->n_tenants; i++)
		if (strcmp(p->tenants[i], "*") == 0 || strcasecmp(p->tenants[i], s) == 0)
			return true;
	return false;
}

static bool principal_allows_scope(const struct principal_config *p, const char *scope)
{
	if (p->scopes == NULL)
		return true;
	for (size_t i = 0; i < p->n_scopes; i++)
		if (strcmp(p->scopes[i], scope) == 0)
			return true;
	return false;
}

static const struct principal_config *principal_find(const struct policy *pol, const char *name)
{
	if (pol->cfg == NULL || name == NULL)
		return NULL;
	for (size_t i = 0; i < pol->cfg->n_principals; i++)
		if (strcmp(pol->cfg->principals[i].name, name) == 0)
			return &pol->cfg->principals[i];
	return NULL;
}

/* ---- the tenants op -------------------------------------------------------- */

static int state_rank(enum grant_state s)
{
	switch (s) {
	case GRANT_ACTIVE:
		return 3;
	case GRANT_PENDING:
		return 2;
	case GRANT_EXPIRED:
		return 1;
	default:
		return 0;
	}
}

static json_t *scopes_json(char **scopes, size_t n, const struct principal_config *pc)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < n; i++)
		if (principal_allows_scope(pc, scopes[i]))
			json_array_append_new(a, json_string(scopes[i]));
	return a;
}

json_t *policy_tenants_json(const struct policy *pol, const struct principal_config *pc,
			    int64_t now)
{
	const struct grant **best = calloc(pol->n_grants + 1, sizeof(*best));
	size_t n = 0;
	json_t *arr = json_array(), *index = json_object();

	/* index: lowercase tenant id -> slot in best (a hash, so thousands of
	 * tenants stay cheap) */
	for (size_t i = 0; best != NULL && arr != NULL && index != NULL && i < pol->n_grants; i++) {
		const struct grant *g = pol->grants[i];
		char key[128];
		json_t *slot;
		size_t j;

		if (!principal_allows_tenant(pc, g) || !grant_allows_principal(g, pc->name))
			continue;
		index_key(g->tenant_id, key);
		slot = json_object_get(index, key);
		if (slot == NULL) {
			json_object_set_new(index, key, json_integer((json_int_t)n));
			best[n++] = g;
			continue;
		}
		j = (size_t)json_integer_value(slot);
		if (state_rank(grant_state(g, now)) > state_rank(grant_state(best[j], now)) ||
		    (grant_state(g, now) == grant_state(best[j], now) &&
		     g->imported_at > best[j]->imported_at))
			best[j] = g;
	}
	for (size_t j = 0; best != NULL && arr != NULL && j < n; j++)
		json_array_append_new(arr, json_pack("{s:s,s:s?,s:o,s:s}", "tenant_id",
						     best[j]->tenant_id, "tenant_name",
						     best[j]->tenant_name[0] ? best[j]->tenant_name : NULL,
						     "scopes",
						     scopes_json(best[j]->scopes, best[j]->n_scopes, pc),
						     "state", grant_state_name(grant_state(best[j], now))));
	if (best == NULL || index == NULL) {
		json_decref(arr);
		arr = NULL;
	}
	free(best);
	json_decref(index);
	return arr;
}

/* ---- suspensions, lockdown ------------------------------------------------------ */

static const struct suspension *suspension_find(const struct policy *pol, const char *name)
{
	for (size_t i = 0; i < pol->n_susp; i++)
		if (strcmp(pol->susp[i].name, name) == 0)
			return &pol->susp[i];
	return NULL;
}

static void suspension_clear(struct suspension *s)
{
	free(s->name);
	free(s->actor);
	free(s->reason);
}

void policy_resume(struct policy *pol, const char *name)
{
	for (size_t i = 0; i < pol->n_susp; i++)
		if (strcmp(pol->susp[i].name, name) == 0) {
			suspension_clear(&pol->susp[i]);
			/* keep the order: `status` lists them as the vault does */
			memmove(&pol->susp[i], &pol->susp[i + 1],
				(pol->n_susp - i - 1) * sizeof(pol->susp[0]));
			pol->n_susp--;
			return;
		}
}

int policy_suspend(struct policy *pol, const char *name, const char *actor, const char *reason,
		   int64_t at)
{
	struct suspension s = {
		.name = strdup(name), .actor = strdup(actor ? actor : ""),
		.reason = strdup(reason ? reason : ""), .at = at};
	struct suspension *ns;

	if (s.name == NULL || s.actor == NULL || s.reason == NULL) {
		suspension_clear(&s);
		return -ENOMEM;
	}
	ns = realloc(pol->susp, (pol->n_susp + 1) * sizeof(*ns));
	if (ns == NULL) {
		suspension_clear(&s);
		return -ENOMEM;
	}
	pol->susp = ns;
	policy_resume(pol, name);
	pol->susp[pol->n_susp++] = s;
	return 0;
}

static int collect_susp(void *ctx, const char *name, const char *actor, const char *reason,
			int64_t at)
{
	return policy_suspend(ctx, name, actor, reason, at);
}

json_t *policy_suspended_json(const struct policy *pol)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < pol->n_susp; i++)
		json_array_append_new(a, json_string(pol->susp[i].name));
	return a;
}

void policy_lockdown_set(struct policy *pol, bool on, const char *reason)
{
	pol->lockdown = on;
	snprintf(pol->lockdown_reason, sizeof(pol->lockdown_reason), "%s",
		 on && reason != NULL ? reason : "");
}

bool policy_locked_down(const struct policy *pol, const char **reason)
{
	if (reason != NULL)
		*reason = pol->lockdown_reason;
	return pol->lockdown;
}

int policy_load(struct policy *pol, struct vault *v)
{
	char reason[512] = "";
	bool on = false;
	int rc;

	rc = vault_grant_foreach(v, collect_grant, pol);
	if (rc < 0) {
		broker_log("cannot read the grants from the vault: %s", strerror(-rc));
		return rc;
	}
	suspensions_free(pol);
	rc = vault_principal_foreach_suspended(v, collect_susp, pol);
	if (rc < 0) {
		broker_log("cannot read the suspensions from the vault: %s", strerror(-rc));
		return rc;
	}
	rc = vault_lockdown_get(v, &on, NULL, reason, NULL);
	if (rc < 0) {
		broker_log("cannot read the lockdown state from the vault: %s", strerror(-rc));
		return rc;
	}
	policy_lockdown_set(pol, on, reason);
	return 0;
}

/* ---- rates ---------------------------------------------------------------- */

/* Token bucket per principal name; refilled by elapsed monotonic time.
 * 0 allowed; >0 seconds to wait. */
static int rate_take(struct policy *pol, const struct principal_config *p, int64_t now)
{
	struct rate_bucket *rb = NULL;
	double wait;

	if (!p->has_rate)
		return 0;
	for (size_t i = 0; i < pol->n_rates; i++)
		if (strcmp(pol->rates[i].principal, p->name) == 0)
			rb = &pol->rates[i];
	if (rb == NULL) {
		struct rate_bucket *nr = realloc(pol->rates, (pol->n_rates + 1) * sizeof(*nr));

		if (nr == NULL)
			return 1;
		pol->rates = nr;
		rb = &nr[pol->n_rates];
		*rb = (struct rate_bucket){.principal = strdup(p->name), .tokens = p->rate_burst,
					   .last_ms = now};
		if (rb->principal == NULL)
			return 1;
		pol->n_rates++;
	}
	rb->tokens += (double)(now - rb->last_ms) / 1000.0 * p->rate_per_second;
	if (rb->tokens > p->rate_burst)
		rb->tokens = p->rate_burst;
	rb->last_ms = now;
	if (rb->tokens >= 1.0) {
		rb->tokens -= 1.0;
		return 0;
	}
	wait = ceil((1.0 - rb->tokens) / p->rate_per_second);
	return wait < 1 ? 1 : (int)wait;
}

/* ---- the decision ------------------------------------------------------------------ */

static void refuse(struct decision *d, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void refuse(struct decision *d, const char *code, const char *fmt, ...)
{
	va_list ap;

	d->error = code;
	va_start(ap, fmt);
	vsnprintf(d->message, sizeof(d->message), fmt, ap);
	va_end(ap);
}

/* The scope a grant would serve: the one asked for, or by default the
 * grant's first scope the principal's policy allows. */
static const char *grant_scope_for(const struct grant *g, const struct principal_config *p,
				   const char *scope)
{
	if (scope != NULL)
		return grant_has_scope(g, scope) ? scope : NULL;
	for (size_t i = 0; i < g->n_scopes; i++)
		if (principal_allows_scope(p, g->scopes[i]))
			return g->scopes[i];
	return NULL;
}

/* Imported later; within one second by the microseconds: with seconds
 * alone two grants imported in the same second tied, and the table's
 * order picked one — import order while running, grant id order after a
 * restart — so which grant served could flip at a restart. */
static bool newer(const struct grant *a, const struct grant *b)
{
	if (a->imported_at != b->imported_at)
		return a->imported_at > b->imported_at;
	if (a->imported_us != b->imported_us)
		return a->imported_us > b->imported_us;
	return a->not_before > b->not_before;
}

/* A grant whose credential failed serves only when no other can (it is
 * kept: the failure may have been the provider's); else the newest. */
static bool preferred(const struct grant *a, const struct grant *b)
{
	bool a_failed = a->credential == GRANT_CRED_FAILED;
	bool b_failed = b->credential == GRANT_CRED_FAILED;

	if (a_failed != b_failed)
		return !a_failed;
	return newer(a, b);
}

/* The grants a tenant string names, as slots in pol->grants (NULL: none):
 * by id when it is some grant's tenant id (*by_id), else by name.
 * *first: one of them. *ambiguous when a name belongs to grants of more
 * than one tenant id (two customers may pick the same name: never guess
 * between them). */
static json_t *tenant_slots(const struct policy *pol, const char *tenant, bool *by_id,
			    const struct grant **first, bool *ambiguous)
{
	char key[128];
	json_t *slots, *v;
	size_t i;

	*by_id = *ambiguous = false;
	*first = NULL;
	if (pol->tenant_index == NULL)
		return NULL;
	index_key(tenant, key);
	slots = json_object_get(pol->tenant_index, key);
	json_array_foreach(slots, i, v) {
		if (strcasecmp(pol->grants[json_integer_value(v)]->tenant_id, tenant) == 0)
			*by_id = true;
	}
	json_array_foreach(slots, i, v) {
		const struct grant *g = pol->grants[json_integer_value(v)];

		if (*by_id ? strcasecmp(g->tenant_id, tenant) != 0 : !grant_names_tenant(g, tenant))
			continue;
		/* a string in the form of a tenant id is never a name */
		if (!*by_id && vault_tenant_id_form(tenant))
			continue;
		if (*first == NULL)
			*first = g;
		else if (strcasecmp((*first)->tenant_id, g->tenant_id) != 0)
			*ambiguous = true;
	}
	return *first != NULL ? slots : NULL;
}

int policy_tenant_resolve(const struct policy *pol, const char *tenant, const char **tenant_id)
{
	const struct grant *first;
	bool by_id, ambiguous;

	if (tenant_slots(pol, tenant, &by_id, &first, &ambiguous) == NULL)
		return -ENOENT;
	if (ambiguous)
		return -EEXIST;
	*tenant_id = first->tenant_id;
	return 0;
}

const struct grant *policy_tenant_serving(const struct policy *pol, const char *tenant_id,
					   int64_t now_s)
{
	const struct grant *best = NULL, *first;
	bool by_id, ambiguous;
	json_t *slots, *v;
	size_t i;

	slots = tenant_slots(pol, tenant_id, &by_id, &first, &ambiguous);
	json_array_foreach(slots, i, v) {
		const struct grant *g = pol->grants[json_integer_value(v)];

		if (strcasecmp(g->tenant_id, tenant_id) != 0 || grant_state(g, now_s) != GRANT_ACTIVE)
			continue;
		if (best == NULL || preferred(g, best))
			best = g;
	}
	return best;
}

void policy_grant_set_credential(struct policy *pol, const char *id, enum grant_credential c,
				 const char *error, int64_t at)
{
	for (size_t i = 0; i < pol->n_grants; i++) {
		struct grant *g = pol->grants[i];

		if (strcmp(g->id, id) != 0)
			continue;
		g->credential = c;
		g->credential_at = at;
		snprintf(g->credential_error, sizeof(g->credential_error), "%s",
			 c == GRANT_CRED_FAILED && error != NULL ? error : "");
		return;
	}
}

/* The grant refusals and the choice among the tenant's grants (slots, by
 * id or by name), once the principal may ask for the tenant: revoked,
 * grant_pending, grant_expired, scope_not_granted, denied, rate_limited. */
static void decide_grant(struct policy *pol, const struct policy_ask *a,
			 const struct principal_config *p, json_t *slots, bool by_id,
			 struct decision *d)
{
	const char *tenant = a->tenant, *scope = a->scope;
	const struct grant *best = NULL, *revoked = NULL;
	const char *best_scope = NULL;
	size_t i, n_active = 0, n_pending = 0, n_expired = 0, n_scope = 0;
	json_t *v;
	int wait;

	json_array_foreach(slots, i, v) {
		const struct grant *g = pol->grants[json_integer_value(v)];
		const char *gs;

		if (by_id ? strcasecmp(g->tenant_id, tenant) != 0 : !grant_names_tenant(g, tenant))
			continue;
		if (a->grant_id != NULL && strcmp(g->id, a->grant_id) != 0)
			continue;
		switch (grant_state(g, a->now_s)) {
		case GRANT_REVOKED:
			if (revoked == NULL || g->revoked_at > revoked->revoked_at)
				revoked = g;
			continue;
		case GRANT_PENDING:
			n_pending++;
			continue;
		case GRANT_EXPIRED:
			n_expired++;
			continue;
		case GRANT_ACTIVE:
			break;
		}
		n_active++;
		gs = grant_scope_for(g, p, scope);
		if (gs == NULL)
			continue;
		n_scope++;
		if (!grant_allows_principal(g, p->name))
			continue;
		if (best == NULL || preferred(g, best)) {
			best = g;
			best_scope = gs;
		}
	}
	if (n_active == 0) {
		if (n_pending > 0)
			refuse(d, "grant_pending", "the grant for tenant %s is not valid yet: wait for its not_before",
			       tenant);
		else if (n_expired > 0)
			refuse(d, "grant_expired", "the grant for tenant %s has expired: the customer must issue a new one",
			       tenant);
		else if (revoked != NULL)
			refuse(d, "revoked", "grant %s for tenant %s was revoked by officer %s: %s",
			       revoked->id, tenant, revoked->revoked_by, revoked->reason);
		else   /* the re-check's grant is gone from the table */
			refuse(d, "revoked", "grant %s for tenant %s is no longer in force",
			       a->grant_id ? a->grant_id : "?", tenant);
		return;
	}
	if (n_scope == 0) {
		if (scope != NULL)
			refuse(d, "scope_not_granted", "no active grant for tenant %s holds scope %s: ask the customer to add it",
			       tenant, scope);
		else
			refuse(d, "scope_not_granted", "no active grant for tenant %s holds a scope principal %s may use",
			       tenant, p->name);
		return;
	}
	if (best == NULL) {
		refuse(d, "denied", "the grants for tenant %s do not name principal %s: the customer must add it",
		       tenant, p->name);
		return;
	}
	if (a->grant_id == NULL && (wait = rate_take(pol, p, a->mono_ms)) > 0) {
		refuse(d, "rate_limited", "principal %s is over its rate limit: retry in %d s", p->name,
		       wait);
		d->retry_after = wait;
		return;
	}
	d->grant = best;
	d->scope = best_scope;
	d->tenant_id = best->tenant_id;
}

void policy_decide(struct policy *pol, const struct policy_ask *a, struct decision *d)
{
	const struct principal_config *p = principal_find(pol, a->principal);
	const char *tenant = a->tenant, *scope = a->scope;
	const struct grant *first;
	const struct suspension *s;
	json_t *slots;
	bool by_id, ambiguous;

	*d = (struct decision){0};
	slots = tenant_slots(pol, tenant, &by_id, &first, &ambiguous);
	/* the tenant id goes into the audit record whatever the answer */
	if (first != NULL && !ambiguous)
		d->tenant_id = first->tenant_id;
	if (pol->lockdown) {
		refuse(d, "locked_down", "custodyd is locked down (%s): no tokens until an officer runs `custody unlock`",
		       pol->lockdown_reason);
		return;
	}
	if (p == NULL) {
		/* only in the re-check: a reload took the principal away */
		refuse(d, "denied", "principal %s is no longer in the config: ask an admin",
		       a->principal ? a->principal : "?");
		return;
	}
	if ((s = suspension_find(pol, p->name)) != NULL) {
		refuse(d, "suspended", "principal %s was suspended by %s: %s", p->name, s->actor,
		       s->reason);
		return;
	}
	if (slots == NULL) {
		if (!principal_lists_name(p, tenant))
			refuse(d, "denied", "principal %s may not ask for tenant %s", p->name, tenant);
		else
			refuse(d, "unknown_tenant",
			       "no grant for tenant %s: the customer must seal one and an admin import it (`custody grant list`)",
			       tenant);
		return;
	}
	if (ambiguous) {
		refuse(d, "unknown_tenant",
		       "tenant name %s belongs to more than one tenant: ask by tenant id (`custody grant list`)",
		       tenant);
		return;
	}
	if (!principal_allows_tenant(p, first)) {
		refuse(d, "denied", "principal %s may not ask for tenant %s", p->name, tenant);
		return;
	}
	if (p->require_purpose && (a->purpose == NULL || a->purpose[0] == '\0')) {
		refuse(d, "denied", "principal %s must say why: give a purpose (custody token --purpose TEXT)",
		       p->name);
		return;
	}
	if (scope != NULL && !principal_allows_scope(p, scope)) {
		refuse(d, "denied", "principal %s may not ask for scope %s", p->name, scope);
		return;
	}
	decide_grant(pol, a, p, slots, by_id, d);
}

void policy_credential_note(struct policy *pol, struct vault *v, const char *id,
			    enum grant_credential c, const char *error, bool always)
{
	const struct grant *g = policy_grant_find(pol, id);
	int64_t now = util_now_us() / 1000000;
	int rc;

	if (g == NULL || g->revoked || (!always && g->credential == c))
		return;
	/* A fetch that works only clears a failure: marking every untried
	 * grant on its first fetch would cost the cold path a vault sync per
	 * tenant, and untried already counts as working. */
	if (!always && c == GRANT_CRED_WORKS && g->credential == GRANT_CRED_UNTRIED)
		return;
	rc = vault_grant_set_credential(v, id, c, error, now);
	if (rc < 0) {
		broker_log("grant %s: cannot record that its credential %s: %s", id,
			   c == GRANT_CRED_WORKS ? "works" : "failed", strerror(-rc));
		return;
	}
	if (g->credential != c)
		broker_log("grant %s for tenant %s: credential %s%s%s", id, g->tenant_id,
			   grant_credential_name(c), error != NULL && *error ? ": " : "",
			   error != NULL ? error : "");
	policy_grant_set_credential(pol, id, c, error, now);
}

/* policy.c — which grant a principal's token request uses, or why none.
 *
 * Both sides must allow a token (DESIGN §4): the customer's grant (its
 * principals, scopes and validity) and the MSSP's own policy (the
 * principal's tenants, scopes and rate). Refusals are checked in an order
 * that tells the caller the most useful thing without telling a principal
 * about tenants it may not see:
 *
 *   locked_down, suspended, denied (tenant not in the principal's list;
 *   also for an unknown tenant outside that list), unknown_tenant (also
 *   for a name two tenants share),
 *   denied (purpose required), revoked (only revoked grants remain),
 *   grant_pending, grant_expired, scope_not_granted, denied (the grant or
 *   the principal's policy excludes it), rate_limited.
 */
#include "broker_int.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The tenant index: lowercase tenant id and lowercase tenant name ->
 * JSON array of slots in b->grants, so a token request looks only at its
 * tenant's grants however many the broker holds. */
static void index_key(const char *s, char out[static 128])
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < 127; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
}

static int index_put(struct broker *b, const char *key, size_t slot)
{
	json_t *arr;

	if (b->tenant_index == NULL && (b->tenant_index = json_object()) == NULL)
		return -ENOMEM;
	arr = json_object_get(b->tenant_index, key);
	if (arr == NULL) {
		arr = json_array();
		if (arr == NULL || json_object_set_new(b->tenant_index, key, arr) < 0)
			return -ENOMEM;
	}
	return json_array_append_new(arr, json_integer((json_int_t)slot)) < 0 ? -ENOMEM : 0;
}

static int index_add(struct broker *b, size_t slot)
{
	const struct grant *g = b->grants[slot];
	char id[128], name[128];
	int rc;

	index_key(g->tenant_id, id);
	rc = index_put(b, id, slot);
	if (rc < 0 || g->tenant_name[0] == '\0')
		return rc;
	index_key(g->tenant_name, name);
	return strcmp(id, name) == 0 ? 0 : index_put(b, name, slot);
}

/* Takes ownership of g in every case. */
static int grants_append(struct broker *b, struct grant *g)
{
	if (b->n_grants == b->cap_grants) {
		size_t n = b->cap_grants ? b->cap_grants * 2 : 16;
		struct grant **ng = realloc(b->grants, n * sizeof(*ng));
		bool *ne;

		if (ng == NULL) {
			grant_free(g);
			return -ENOMEM;
		}
		b->grants = ng;
		ne = realloc(b->expired_noted, n * sizeof(*ne));
		if (ne == NULL) {
			grant_free(g);
			return -ENOMEM;
		}
		b->expired_noted = ne;
		b->cap_grants = n;
	}
	b->expired_noted[b->n_grants] = false;
	b->grants[b->n_grants++] = g;
	return index_add(b, b->n_grants - 1);
}

/* The vault yields each grant once: append without looking for it. */
static int collect_grant(void *ctx, const struct grant *g)
{
	struct broker *b = ctx;
	struct grant *copy = grant_dup(g);

	if (copy == NULL)
		return -ENOMEM;
	return grants_append(b, copy);
}

int grants_load(struct broker *b)
{
	return vault_grant_foreach(b->vault, collect_grant, b);
}

void grants_free(struct broker *b)
{
	for (size_t i = 0; i < b->n_grants; i++)
		grant_free(b->grants[i]);
	free(b->grants);
	free(b->expired_noted);
	b->grants = NULL;
	b->expired_noted = NULL;
	b->n_grants = b->cap_grants = 0;
	json_decref(b->tenant_index);
	b->tenant_index = NULL;
}

struct grant *grants_find(struct broker *b, const char *id)
{
	for (size_t i = 0; i < b->n_grants; i++)
		if (strcmp(b->grants[i]->id, id) == 0)
			return b->grants[i];
	return NULL;
}

void grants_put(struct broker *b, struct grant *g)
{
	for (size_t i = 0; i < b->n_grants; i++)
		if (strcmp(b->grants[i]->id, g->id) == 0) {
			grant_free(b->grants[i]);
			b->grants[i] = g;
			return;
		}
	if (grants_append(b, g) < 0)
		broker_log("out of memory: grant %s is in the vault but may not be in force until a restart",
			   g->id);
}

bool grant_names_tenant(const struct grant *g, const char *s)
{
	if (strcasecmp(g->tenant_id, s) == 0)
		return true;
	return g->tenant_name[0] != '\0' && strcasecmp(g->tenant_name, s) == 0;
}

bool principal_allows_tenant(const struct principal_config *p, const struct grant *g)
{
	for (size_t i = 0; i < p->n_tenants; i++)
		if (strcmp(p->tenants[i], "*") == 0 || grant_names_tenant(g, p->tenants[i]))
			return true;
	return false;
}

static bool principal_lists_name(const struct principal_config *p, const char *s)
{
	for (size_t i = 0; i < p->n_tenants; i++)
		if (strcmp(p->tenants[i], "*") == 0 || strcasecmp(p->tenants[i], s) == 0)
			return true;
	return false;
}

bool principal_allows_scope(const struct principal_config *p, const char *scope)
{
	if (p->scopes == NULL)
		return true;
	for (size_t i = 0; i < p->n_scopes; i++)
		if (strcmp(p->scopes[i], scope) == 0)
			return true;
	return false;
}

const struct suspension *suspension_find(const struct broker *b, const char *name)
{
	for (size_t i = 0; i < b->n_susp; i++)
		if (strcmp(b->susp[i].name, name) == 0)
			return &b->susp[i];
	return NULL;
}

static int collect_susp(void *ctx, const char *name, const char *actor, const char *reason,
			int64_t at)
{
	struct broker *b = ctx;
	struct suspension *ns = realloc(b->susp, (b->n_susp + 1) * sizeof(*ns));

	if (ns == NULL)
		return -ENOMEM;
	b->susp = ns;
	ns[b->n_susp] = (struct suspension){
		.name = strdup(name), .actor = strdup(actor ? actor : ""),
		.reason = strdup(reason ? reason : ""), .at = at};
	b->n_susp++;
	return 0;
}

void suspensions_free(struct broker *b)
{
	for (size_t i = 0; i < b->n_susp; i++) {
		free(b->susp[i].name);
		free(b->susp[i].actor);
		free(b->susp[i].reason);
	}
	free(b->susp);
	b->susp = NULL;
	b->n_susp = 0;
}

int suspensions_load(struct broker *b)
{
	suspensions_free(b);
	return vault_principal_foreach_suspended(b->vault, collect_susp, b);
}

/* Token bucket per principal name; refilled by elapsed monotonic time. */
int rate_take(struct broker *b, const struct principal_config *p)
{
	struct rate_bucket *rb = NULL;
	int64_t now = loop_now_ms(b->loop);
	double wait;

	if (!p->has_rate)
		return 0;
	for (size_t i = 0; i < b->n_rates; i++)
		if (strcmp(b->rates[i].principal, p->name) == 0)
			rb = &b->rates[i];
	if (rb == NULL) {
		struct rate_bucket *nr = realloc(b->rates, (b->n_rates + 1) * sizeof(*nr));

		if (nr == NULL)
			return 1;
		b->rates = nr;
		rb = &nr[b->n_rates];
		*rb = (struct rate_bucket){.principal = strdup(p->name), .tokens = p->rate_burst,
					   .last_ms = now};
		if (rb->principal == NULL)
			return 1;
		b->n_rates++;
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

void rates_free(struct broker *b)
{
	for (size_t i = 0; i < b->n_rates; i++)
		free(b->rates[i].principal);
	free(b->rates);
	b->rates = NULL;
	b->n_rates = 0;
}

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

static bool newer(const struct grant *a, const struct grant *b)
{
	if (a->imported_at != b->imported_at)
		return a->imported_at > b->imported_at;
	return a->not_before > b->not_before;
}

/* The grants a tenant string names, as slots in b->grants (NULL: none):
 * by id when it is some grant's tenant id (*by_id), else by name.
 * *first: one of them. *ambiguous when a name belongs to grants of more
 * than one tenant id (two customers may pick the same name: never guess
 * between them). */
static json_t *tenant_slots(struct broker *b, const char *tenant, bool *by_id,
			    const struct grant **first, bool *ambiguous)
{
	char key[128];
	json_t *slots, *v;
	size_t i;

	*by_id = *ambiguous = false;
	*first = NULL;
	if (b->tenant_index == NULL)
		return NULL;
	index_key(tenant, key);
	slots = json_object_get(b->tenant_index, key);
	json_array_foreach(slots, i, v) {
		if (strcasecmp(b->grants[json_integer_value(v)]->tenant_id, tenant) == 0)
			*by_id = true;
	}
	json_array_foreach(slots, i, v) {
		const struct grant *g = b->grants[json_integer_value(v)];

		if (*by_id ? strcasecmp(g->tenant_id, tenant) != 0 : !grant_names_tenant(g, tenant))
			continue;
		if (*first == NULL)
			*first = g;
		else if (strcasecmp((*first)->tenant_id, g->tenant_id) != 0)
			*ambiguous = true;
	}
	return *first != NULL ? slots : NULL;
}

int tenant_resolve(struct broker *b, const char *tenant, const char **tenant_id)
{
	const struct grant *first;
	bool by_id, ambiguous;

	if (tenant_slots(b, tenant, &by_id, &first, &ambiguous) == NULL)
		return -ENOENT;
	if (ambiguous)
		return -EEXIST;
	*tenant_id = first->tenant_id;
	return 0;
}

void policy_decide(struct broker *b, const struct principal_config *p, const char *tenant,
		   const char *scope, const char *purpose, struct decision *d)
{
	int64_t now = util_now_us() / 1000000;
	const struct grant *first, *best = NULL, *revoked = NULL;
	const char *best_scope = NULL;
	size_t i, n_active = 0, n_pending = 0, n_expired = 0, n_scope = 0;
	const struct suspension *s;
	json_t *slots, *v;
	bool by_id, ambiguous;
	int wait;

	*d = (struct decision){0};
	slots = tenant_slots(b, tenant, &by_id, &first, &ambiguous);
	/* the tenant id goes into the audit record whatever the answer */
	if (first != NULL && !ambiguous)
		d->tenant_id = first->tenant_id;
	if (b->lockdown) {
		refuse(d, "locked_down", "custodyd is locked down (%s): no tokens until an officer runs `custody unlock`",
		       b->lockdown_reason);
		return;
	}
	if ((s = suspension_find(b, p->name)) != NULL) {
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
	if (p->require_purpose && (purpose == NULL || purpose[0] == '\0')) {
		refuse(d, "denied", "principal %s must say why: give a purpose (custody token --purpose TEXT)",
		       p->name);
		return;
	}
	if (scope != NULL && !principal_allows_scope(p, scope)) {
		refuse(d, "denied", "principal %s may not ask for scope %s", p->name, scope);
		return;
	}
	json_array_foreach(slots, i, v) {
		const struct grant *g = b->grants[json_integer_value(v)];
		const char *gs;

		if (by_id ? strcasecmp(g->tenant_id, tenant) != 0 : !grant_names_tenant(g, tenant))
			continue;
		switch (grant_state(g, now)) {
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
		if (best == NULL || newer(g, best)) {
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
		else
			refuse(d, "revoked", "grant %s for tenant %s was revoked by officer %s: %s",
			       revoked->id, tenant, revoked->revoked_by, revoked->reason);
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
	wait = rate_take(b, p);
	if (wait > 0) {
		refuse(d, "rate_limited", "principal %s is over its rate limit: retry in %d s", p->name,
		       wait);
		d->retry_after = wait;
		return;
	}
	d->grant = best;
	d->scope = best_scope;
	d->tenant_id = best->tenant_id;
}

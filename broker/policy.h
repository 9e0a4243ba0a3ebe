/* policy.h — the token policy: its state and its one decision.
 *
 * struct policy is the only owner of the state a token decision reads: the
 * grant table and its tenant index, which expired grants have had their
 * record, the suspensions, the lockdown and the principals' rate buckets.
 * Other files read it and change it only through these functions (loop
 * thread only, no locks). The principals themselves come from the config
 * in force (policy_set_config), which the daemon owns.
 *
 * policy_decide is the one set of refusal rules, used both before a
 * token's audit record is written and for the re-check right before the
 * token leaves (DESIGN §4, docs/PROTOCOL.md).
 *
 * Errors: 0 or a negative errno; -ENOMEM on allocation failure, and what
 * the vault returns for the loads.
 */
#ifndef CUSTODY_POLICY_H
#define CUSTODY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "broker.h"
#include "vault.h"

struct policy;

int policy_new(struct policy **out) __attribute__((warn_unused_result));
void policy_free(struct policy *pol);
/* The config whose principals the decisions use (borrowed; set again on
 * every reload, before the old one is freed). */
void policy_set_config(struct policy *pol, const struct broker_config *cfg);
/* Grants, suspensions and lockdown from the vault (at start). */
int policy_load(struct policy *pol, struct vault *v) __attribute__((warn_unused_result));

/* ---- grants ---------------------------------------------------------------- */

/* Replace the grant with g's id, or add g (takes ownership). */
void policy_grant_put(struct policy *pol, struct grant *g);
const struct grant *policy_grant_find(const struct policy *pol, const char *id);
size_t policy_grant_count(const struct policy *pol);
/* The i-th grant (i < policy_grant_count); valid until the next put. */
const struct grant *policy_grant_at(const struct policy *pol, size_t i);
/* Does s name the tenant of g (id case-insensitively, or its name)? */
bool grant_names_tenant(const struct grant *g, const char *s);
/* The tenant id a tenant id or name stands for (pointer into the grant
 * table, valid until it changes). -ENOENT no grant names it, -EEXIST a
 * name two tenants share. */
int policy_tenant_resolve(const struct policy *pol, const char *tenant, const char **tenant_id);
/* The tenants principal pc may see, each by its best grant: the `tenants`
 * op's list. NULL on allocation failure. */
json_t *policy_tenants_json(const struct policy *pol, const struct principal_config *pc,
			    int64_t now_s);
/* The active grant of tenant_id (an id) a request prefers, ignoring
 * principals and scopes: the newest whose credential has not failed, else
 * the newest. NULL when none is active. */
const struct grant *policy_tenant_serving(const struct policy *pol, const char *tenant_id,
					   int64_t now_s);
/* Set what the provider said of grant id's credential, in place (a
 * request on its way may hold a pointer to the grant). The caller has
 * stored it in the vault first. No-op for an unknown id. */
void policy_grant_set_credential(struct policy *pol, const char *id, enum grant_credential c,
				 const char *error, int64_t at);
/* Counts of grants per state, indexed by enum grant_state. */
void policy_grant_counts(const struct policy *pol, int64_t now_s, size_t counts[static 4]);

/* Grants expired while custodyd was down: seen(ctx, g) says whether their
 * grant.expired record exists already (called once per expired grant). */
void policy_expiry_init(struct policy *pol, int64_t now_s,
			bool (*seen)(void *ctx, const struct grant *g), void *ctx);
/* Every grant that has expired since the last call (or init): cb once each. */
void policy_expiry_take(struct policy *pol, int64_t now_s,
			void (*cb)(void *ctx, const struct grant *g), void *ctx);

/* Record what the provider said of grant id's credential: in the vault
 * (durable, so it survives a restart), then in the policy's grant. Only
 * when it changed, unless always (a probe records its time); a fetch that
 * works on a grant never tried records nothing (no vault sync per first
 * fetch). */
void policy_credential_note(struct policy *pol, struct vault *v, const char *id,
			    enum grant_credential c, const char *error, bool always);

/* ---- suspensions and lockdown ------------------------------------------------ */

/* Suspend name (replacing an earlier suspension of it) or lift it, once
 * the vault holds the change. -ENOMEM; lifting one not there is a no-op. */
int policy_suspend(struct policy *pol, const char *name, const char *actor, const char *reason,
		   int64_t at) __attribute__((warn_unused_result));
void policy_resume(struct policy *pol, const char *name);
/* The suspended principals' names, as a JSON array (NULL: out of memory). */
json_t *policy_suspended_json(const struct policy *pol);
void policy_lockdown_set(struct policy *pol, bool on, const char *reason);
/* True when locked down; *reason (may be NULL) the officer's reason. */
bool policy_locked_down(const struct policy *pol, const char **reason);

/* ---- the decision -------------------------------------------------------------- */

struct policy_ask {
	const char *principal;    /* the principal's name (looked up in the config) */
	const char *tenant;       /* a tenant id or name */
	const char *scope;        /* NULL: the grant's default for the principal */
	const char *purpose;      /* NULL or "": none given */
	/* The re-check: the grant chosen before the audit; only it may serve,
	 * and the rate bucket is not drawn on again. NULL: choose a grant. */
	const char *grant_id;
	int64_t now_s;            /* wall clock (grant validity) */
	int64_t mono_ms;          /* monotonic (rate buckets) */
};

struct decision {
	const char *error;        /* NULL: allowed */
	char message[512];
	const struct grant *grant;
	const char *scope;        /* points into grant or the ask */
	const char *tenant_id;    /* for the audit when the tenant is known */
	int retry_after;
};

/* Refusals, in this order (the first that applies):
 *   locked_down, denied (principal not in the config), suspended,
 *   denied (tenant not in the principal's list; also for an unknown
 *   tenant outside that list), unknown_tenant (also for a name two
 *   tenants share), denied (purpose required), denied (scope outside the
 *   principal's), revoked (only revoked grants remain), grant_pending,
 *   grant_expired, scope_not_granted, denied (no grant names the
 *   principal), rate_limited (with retry_after; not in the re-check). */
void policy_decide(struct policy *pol, const struct policy_ask *a, struct decision *d);

#endif

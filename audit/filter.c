/* filter.c — what an audit filter may name: the events and outcomes
 * custody writes (or the store holds), and tenants by id or by the name
 * their grant-import records carry. A value that can match nothing is an
 * error naming the accepted values, never an empty answer an auditor
 * reads as "no activity". */
#include "audit_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Events this version writes: tool ops, refused requests, lifecycle, and
 * "admin.<op>" for every admin op. Others (from newer parts) are accepted
 * when the store holds them. */
static const char *const events[] = {
	"token", "token.withheld", "ping", "whoami", "tenants", "keys", "request",
	"refusals.limited", "start", "stop", "reload",
	"grant.expired", "admin.grant.import", "admin.grant.list", "admin.grant.show",
	"admin.grant.revoke", "admin.principal.suspend", "admin.principal.resume",
	"admin.lockdown", "admin.unlock", "admin.status", "admin.reload", "admin.audit.query",
	"admin.audit.export", "admin.audit.checkpoint", NULL,
};

/* "ok" and the stable error codes (DESIGN §5). */
static const char *const outcomes[] = {
	"ok", "bad_request", "too_large", "unsupported_version", "unknown_op", "unauthenticated",
	"denied", "unknown_tenant", "scope_not_granted", "grant_pending", "grant_expired", "revoked",
	"suspended", "locked_down", "rate_limited", "upstream_rejected", "upstream_unavailable",
	"audit_unavailable", "internal", NULL,
};

static bool listed(const char *const *l, const char *v)
{
	for (; *l; l++)
		if (strcmp(*l, v) == 0)
			return true;
	return false;
}

/* 1 when some record has column = v, 0 when none, -EIO. */
static int store_has(sqlite3 *db, const char *sql, const char *v)
{
	sqlite3_stmt *st = NULL;
	int src;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, v, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	sqlite3_finalize(st);
	return src == SQLITE_ROW ? 1 : src == SQLITE_DONE ? 0 : -EIO;
}

/* The static list and the store's other values, comma-separated. */
static void accepted(sqlite3 *db, const char *const *l, const char *sql, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	size_t n = 0;

	buf[0] = '\0';
	for (const char *const *p = l; *p && n < cap; p++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", *p);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return;
	while (n < cap && sqlite3_step(st) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(st, 0);

		if (v != NULL && !listed(l, v))
			n += (size_t)snprintf(buf + n, cap - n, ", %s", v);
	}
	sqlite3_finalize(st);
}

static int check_value(sqlite3 *db, const char *what, const char *const *l, const char *col,
		       const char *v, struct cerr *err)
{
	char sql[128], dsql[128], list[CERR_MAX / 2 + 64];
	int rc;

	if (v == NULL || listed(l, v))
		return 0;
	snprintf(sql, sizeof(sql), "SELECT 1 FROM events WHERE %s = ?1 LIMIT 1", col);
	rc = store_has(db, sql, v);
	if (rc != 0)
		return rc < 0 ? cerr_set(err, rc, "cannot read the audit store: %s",
					 sqlite3_errmsg(db)) : 0;
	snprintf(dsql, sizeof(dsql), "SELECT DISTINCT %s FROM events ORDER BY 1 LIMIT 64", col);
	accepted(db, l, dsql, list, sizeof(list));
	return cerr_set(err, -EINVAL, "unknown %s '%.64s': one of %s", what, v, list);
}

int audit_filter_check(struct audit *a, const struct audit_filter *f, struct cerr *err)
{
	int rc;

	pthread_mutex_lock(&a->rlock);
	rc = check_value(a->rdb, "event", events, "event", f->event, err);
	if (rc == 0)
		rc = check_value(a->rdb, "outcome", outcomes, "outcome", f->outcome, err);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

/* "name (id), ..." of the tenants the store knows, into buf. */
static void known_tenants(sqlite3 *db, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	size_t n = 0;

	buf[0] = '\0';
	if (sqlite3_prepare_v2(db,
			       "SELECT t.tenant, (SELECT json_extract(e.body, '$.tenant_name') FROM "
			       "events e WHERE e.tenant = t.tenant AND e.event = 'admin.grant.import'"
			       " AND json_extract(e.body, '$.tenant_name') IS NOT NULL ORDER BY e.seq"
			       " DESC LIMIT 1) FROM (SELECT DISTINCT tenant FROM events WHERE tenant"
			       " IS NOT NULL ORDER BY tenant LIMIT 32) t", -1, &st, NULL) != SQLITE_OK)
		return;
	while (n < cap && sqlite3_step(st) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *name = (const char *)sqlite3_column_text(st, 1);

		if (name != NULL)
			n += (size_t)snprintf(buf + n, cap - n, "%s%s (%s)", n ? ", " : "", name, id);
		else
			n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", id);
	}
	sqlite3_finalize(st);
	if (n == 0)
		snprintf(buf, cap, "none yet");
}

int audit_tenant_resolve(struct audit *a, const char *tenant, char **id_out, struct cerr *err)
{
	sqlite3_stmt *st = NULL;
	char *id = NULL, list[CERR_MAX / 2];
	int rc = 0, src;

	*id_out = NULL;
	pthread_mutex_lock(&a->rlock);
	/* an id with records (the (tenant, time) index answers) */
	rc = store_has(a->rdb, "SELECT 1 FROM events WHERE tenant = ?1 LIMIT 1", tenant);
	if (rc == 1) {
		id = strdup(tenant);
		rc = id ? 0 : -ENOMEM;
		goto out;
	}
	if (rc < 0)
		goto out_io;
	/* a name, from the grant-import records (they carry tenant_name) */
	if (sqlite3_prepare_v2(a->rdb,
			       "SELECT DISTINCT tenant FROM events WHERE event = 'admin.grant.import'"
			       " AND tenant IS NOT NULL AND json_extract(body, '$.tenant_name') = ?1"
			       " COLLATE NOCASE LIMIT 2", -1, &st, NULL) != SQLITE_OK)
		goto out_io;
	sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (id != NULL) {
			rc = cerr_set(err, -EEXIST, "tenant name %.64s belongs to more than one "
				      "tenant: give the tenant id", tenant);
			goto out;
		}
		id = strdup((const char *)sqlite3_column_text(st, 0));
		if (id == NULL) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (src != SQLITE_DONE)
		goto out_io;
	if (id == NULL) {
		known_tenants(a->rdb, list, sizeof(list));
		rc = cerr_set(err, -ENOENT, "unknown tenant '%.64s': the audit store knows %s",
			      tenant, list);
	}
	goto out;
out_io:
	rc = cerr_set(err, -EIO, "cannot read the audit store: %s", sqlite3_errmsg(a->rdb));
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->rlock);
	if (rc < 0) {
		free(id);
		if (rc == -ENOMEM)
			cerr_set(err, rc, "out of memory");
		return rc;
	}
	*id_out = id;
	return 0;
}

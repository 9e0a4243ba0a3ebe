/* state.c — custody-alerts' state: state_dir/state.db (SQLite, WAL,
 * synchronous=FULL).
 *
 *   tenants    per tenant: the cursor (lastUpdateTime the next pass asks
 *              from), the API budget windows, last success and error,
 *              alerts delivered
 *   delivered  (tenant, alert id) -> the lastUpdateTime delivered: an
 *              alert goes out again only when it changed; rows older than
 *              the cursor are pruned (the filter never returns them)
 *   taken      (output, tenant, alert id) -> the lastUpdateTime one output
 *              took in a pass where another did not: the next pass sends
 *              it to the others only, so a healthy output gets no
 *              duplicates while another is down; pruned with delivered
 *   notified   (rule, tenant, alert id): one e-mail per rule and alert,
 *              ever; state queued -> sending -> sent | failed. A crash
 *              while "sending" leaves the row there: it is never sent
 *              again (status counts it as unconfirmed)
 *   outputs    per output: alerts waiting, last error
 *
 * One writer at a time (`run` holds state_dir/lock); `status` reads.
 */
#include "alerts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

enum {
	Q_TENANT_GET, Q_TENANT_PUT, Q_TENANT_ERR, Q_DELIVERED, Q_MARK, Q_PRUNE, Q_TAKEN,
	Q_TAKE, Q_PRUNE_TAKEN, Q_OUTPUT, Q_NOTIFIED, Q_NQUEUE, Q_NDONE, Q_COUNT,
};

static const char *const queries[Q_COUNT] = {
	[Q_TENANT_GET] = "SELECT cursor, not_before, min_start, min_calls, hour_start, hour_calls"
			 " FROM tenants WHERE tenant_id = ?1",
	[Q_TENANT_PUT] = "INSERT INTO tenants(tenant_id, name, cursor, not_before, min_start,"
			 " min_calls, hour_start, hour_calls, last_attempt, last_success,"
			 " last_error, delivered) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9,"
			 " NULL, ?10) ON CONFLICT(tenant_id) DO UPDATE SET name = ?2,"
			 " cursor = ?3, not_before = ?4, min_start = ?5, min_calls = ?6,"
			 " hour_start = ?7, hour_calls = ?8, last_attempt = ?9,"
			 " last_success = ?9, last_error = NULL, delivered = delivered + ?10",
	[Q_TENANT_ERR] = "INSERT INTO tenants(tenant_id, name, cursor, not_before, min_start,"
			 " min_calls, hour_start, hour_calls, last_attempt, last_error,"
			 " delivered) VALUES(?1, ?2, NULLIF(?3, ''), ?4, ?5, ?6, ?7, ?8, ?9, ?11,"
			 " ?10) ON CONFLICT(tenant_id) DO UPDATE SET name = ?2,"
			 " not_before = ?4, min_start = ?5, min_calls = ?6, hour_start = ?7,"
			 " hour_calls = ?8, last_attempt = ?9, last_error = ?11,"
			 " delivered = delivered + ?10",
	[Q_DELIVERED] = "SELECT last_update FROM delivered WHERE tenant_id = ?1 AND alert_id = ?2",
	[Q_MARK] = "INSERT OR REPLACE INTO delivered(tenant_id, alert_id, last_update, lut_us)"
		   " VALUES(?1, ?2, ?3, ?4)",
	[Q_PRUNE] = "DELETE FROM delivered WHERE tenant_id = ?1 AND lut_us < ?2",
	[Q_TAKEN] = "SELECT last_update FROM taken WHERE tenant_id = ?1 AND alert_id = ?2"
		    " AND output = ?3",
	[Q_TAKE] = "INSERT OR REPLACE INTO taken(output, tenant_id, alert_id, last_update, lut_us)"
		   " VALUES(?3, ?1, ?2, ?4, ?5)",
	[Q_PRUNE_TAKEN] = "DELETE FROM taken WHERE tenant_id = ?1 AND lut_us < ?2",
	[Q_OUTPUT] = "INSERT INTO outputs(label, waiting, last_error, time) VALUES(?1, ?2, ?3, ?4)"
		     " ON CONFLICT(label) DO UPDATE SET waiting = ?2, last_error = ?3, time = ?4",
	[Q_NOTIFIED] = "SELECT 1 FROM notified WHERE rule = ?1 AND tenant_id = ?2 AND alert_id = ?3",
	[Q_NQUEUE] = "INSERT INTO notified(rule, tenant_id, alert_id, state, message, time)"
		     " VALUES(?1, ?2, ?3, 'queued', ?4, ?5)",
	[Q_NDONE] = "UPDATE notified SET state = ?2, error = ?3, time = ?4,"
		    " message = CASE WHEN ?2 = 'sent' THEN NULL ELSE message END WHERE rowid = ?1",
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"CREATE TABLE IF NOT EXISTS tenants(tenant_id TEXT PRIMARY KEY, name TEXT, cursor TEXT,"
	" not_before INTEGER NOT NULL DEFAULT 0, min_start INTEGER NOT NULL DEFAULT 0,"
	" min_calls INTEGER NOT NULL DEFAULT 0, hour_start INTEGER NOT NULL DEFAULT 0,"
	" hour_calls INTEGER NOT NULL DEFAULT 0, last_attempt TEXT, last_success TEXT,"
	" last_error TEXT, delivered INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS delivered(tenant_id TEXT NOT NULL, alert_id TEXT NOT NULL,"
	" last_update TEXT NOT NULL, lut_us INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, alert_id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS taken(output TEXT NOT NULL, tenant_id TEXT NOT NULL,"
	" alert_id TEXT NOT NULL, last_update TEXT NOT NULL, lut_us INTEGER NOT NULL,"
	" PRIMARY KEY(tenant_id, alert_id, output)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS notified(rule TEXT NOT NULL, tenant_id TEXT NOT NULL,"
	" alert_id TEXT NOT NULL, state TEXT NOT NULL, message TEXT, error TEXT, time TEXT,"
	" UNIQUE(rule, tenant_id, alert_id));"
	"CREATE INDEX IF NOT EXISTS notified_state ON notified(state);"
	"CREATE TABLE IF NOT EXISTS outputs(label TEXT PRIMARY KEY, waiting INTEGER NOT NULL,"
	" last_error TEXT, time TEXT);";

struct state {
	sqlite3 *db;
	sqlite3_stmt *q[Q_COUNT];
	int lock_fd;
	bool in_tx;
	bool any_taken;    /* the taken table may have rows: look there */
};

static void now_text(char out[static UTIL_TIME_LEN])
{
	util_time_format(util_now_us(), false, out);
}

int state_open(const char *state_dir, bool writer, struct state **out, struct cerr *err)
{
	struct state *s;
	char *path = NULL, *lock = NULL;
	int rc;

	if (writer && util_mkdir_p(state_dir, 0750) < 0)
		return cerr_set(err, -errno ? -errno : -EIO, "state_dir %s: cannot create it: %s",
				state_dir, strerror(errno));
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->lock_fd = -1;
	path = util_path_join(state_dir, "state.db");
	lock = util_path_join(state_dir, "lock");
	if (path == NULL || lock == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (writer) {
		s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (s->lock_fd < 0) {
			rc = cerr_set(err, -errno, "%s: cannot open: %s", lock, strerror(errno));
			goto fail;
		}
		if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			rc = cerr_set(err, -EBUSY, "%s: another custody-alerts runs on this state_dir",
				      state_dir);
			goto fail;
		}
	} else if (access(path, R_OK) < 0) {
		rc = cerr_set(err, -ENOENT, "%s: no state yet (custody-alerts has not run): %s",
			      path, strerror(errno));
		goto fail;
	}
	if (sqlite3_open_v2(path, &s->db, writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE :
				     SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		rc = cerr_set(err, -EIO, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	if (writer && (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
		       sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK)) {
		rc = cerr_set(err, -EIO, "%s: %s", path, sqlite3_errmsg(s->db));
		goto fail;
	}
	for (int i = 0; writer && i < Q_COUNT; i++) {
		if (sqlite3_prepare_v2(s->db, queries[i], -1, &s->q[i], NULL) != SQLITE_OK) {
			rc = cerr_set(err, -EIO, "%s: %s", path, sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	if (writer) {
		sqlite3_stmt *st = NULL;

		/* an output was down in an earlier run: its peers' takes count */
		if (sqlite3_prepare_v2(s->db, "SELECT EXISTS(SELECT 1 FROM taken)", -1, &st, NULL) !=
			    SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_ROW) {
			rc = cerr_set(err, -EIO, "%s: %s", path, sqlite3_errmsg(s->db));
			sqlite3_finalize(st);
			goto fail;
		}
		s->any_taken = sqlite3_column_int(st, 0) != 0;
		sqlite3_finalize(st);
	}
	free(path);
	free(lock);
	*out = s;
	return 0;
fail:
	free(path);
	free(lock);
	state_close(s);
	return rc;
}

void state_close(struct state *s)
{
	if (s == NULL)
		return;
	if (s->in_tx)
		state_rollback(s);
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(s->q[i]);
	sqlite3_close(s->db);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
}

int state_begin(struct state *s)
{
	if (s->in_tx)
		return 0;
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	s->in_tx = true;
	return 0;
}

int state_commit(struct state *s, struct cerr *err)
{
	if (!s->in_tx)
		return 0;
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		cerr_set(err, -EIO, "state database: cannot commit: %s", sqlite3_errmsg(s->db));
		state_rollback(s);
		return -EIO;
	}
	s->in_tx = false;
	return 0;
}

void state_rollback(struct state *s)
{
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->in_tx = false;
}

static sqlite3_stmt *q(struct state *s, int which)
{
	sqlite3_reset(s->q[which]);
	sqlite3_clear_bindings(s->q[which]);
	return s->q[which];
}

static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -EIO;
}

int state_tenant_get(struct state *s, const char *tenant_id, struct tenant_state *ts)
{
	sqlite3_stmt *st = q(s, Q_TENANT_GET);
	int rc;

	memset(ts, 0, sizeof(*ts));
	sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *c = (const char *)sqlite3_column_text(st, 0);

		snprintf(ts->cursor, sizeof(ts->cursor), "%s", c ? c : "");
		ts->not_before = sqlite3_column_int64(st, 1);
		ts->min_start = sqlite3_column_int64(st, 2);
		ts->min_calls = sqlite3_column_int(st, 3);
		ts->hour_start = sqlite3_column_int64(st, 4);
		ts->hour_calls = sqlite3_column_int(st, 5);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int state_tenant_put(struct state *s, const char *tenant_id, const char *name,
		     const struct tenant_state *ts, const char *error, uint64_t delivered)
{
	sqlite3_stmt *st = q(s, error ? Q_TENANT_ERR : Q_TENANT_PUT);
	char now[UTIL_TIME_LEN];

	now_text(now);
	sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, ts->cursor, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, ts->not_before);
	sqlite3_bind_int64(st, 5, ts->min_start);
	sqlite3_bind_int(st, 6, ts->min_calls);
	sqlite3_bind_int64(st, 7, ts->hour_start);
	sqlite3_bind_int(st, 8, ts->hour_calls);
	sqlite3_bind_text(st, 9, now, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)delivered);
	if (error)
		sqlite3_bind_text(st, 11, error, -1, SQLITE_STATIC);
	return step_done(st);
}

int state_delivered(struct state *s, const char *output, const char *tenant_id, const char *id,
		    const char *lut)
{
	sqlite3_stmt *st = q(s, output ? Q_TAKEN : Q_DELIVERED);
	int rc, found = 0;

	if (output != NULL && !s->any_taken)
		return 0;   /* the common case: no output was ever down */
	sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	if (output != NULL)
		sqlite3_bind_text(st, 3, output, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		found = strcmp((const char *)sqlite3_column_text(st, 0), lut) == 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -EIO;
}

int state_mark_delivered(struct state *s, const char *output, const char *tenant_id,
			 const char *id, const char *lut, int64_t lut_us)
{
	sqlite3_stmt *st = q(s, output ? Q_TAKE : Q_MARK);

	sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	if (output != NULL) {
		sqlite3_bind_text(st, 3, output, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, lut, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, lut_us);
		s->any_taken = true;
	} else {
		sqlite3_bind_text(st, 3, lut, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, lut_us);
	}
	return step_done(st);
}

int state_prune(struct state *s, const char *tenant_id, int64_t before_us)
{
	static const int which[] = {Q_PRUNE, Q_PRUNE_TAKEN};

	for (size_t k = 0; k < sizeof(which) / sizeof(which[0]); k++) {
		sqlite3_stmt *st = q(s, which[k]);
		int rc;

		sqlite3_bind_text(st, 1, tenant_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, before_us);
		rc = step_done(st);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int state_outputs_clear(struct state *s)
{
	return sqlite3_exec(s->db, "DELETE FROM outputs", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

int state_output_put(struct state *s, const char *label, uint64_t waiting, const char *error)
{
	sqlite3_stmt *st = q(s, Q_OUTPUT);
	char now[UTIL_TIME_LEN];

	now_text(now);
	sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)waiting);
	if (error != NULL)
		sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
	return step_done(st);
}

int state_notified(struct state *s, const char *rule, const char *tenant_id, const char *id)
{
	sqlite3_stmt *st = q(s, Q_NOTIFIED);
	int rc;

	sqlite3_bind_text(st, 1, rule, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int state_notify_queue(struct state *s, const char *rule, const char *tenant_id,
		       const char *id, const char *message)
{
	sqlite3_stmt *st = q(s, Q_NQUEUE);
	char now[UTIL_TIME_LEN];

	now_text(now);
	sqlite3_bind_text(st, 1, rule, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, tenant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, message, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
	return step_done(st);
}

int state_notify_take(struct state *s, struct notice **out, size_t *n, struct cerr *err)
{
	sqlite3_stmt *st = NULL;
	struct notice *v = NULL, *nv;
	size_t cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = state_begin(s);
	if (rc < 0)
		return cerr_set(err, rc, "state database: %s", sqlite3_errmsg(s->db));
	if (sqlite3_prepare_v2(s->db, "SELECT rowid, rule, message FROM notified WHERE state IN"
			       " ('queued', 'failed') ORDER BY rowid", -1, &st, NULL) != SQLITE_OK)
		goto dberr;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		nv = realloc(v, (cnt + 1) * sizeof(*v));
		if (nv == NULL)
			goto oom;
		v = nv;
		v[cnt].rowid = sqlite3_column_int64(st, 0);
		v[cnt].rule = strdup((const char *)sqlite3_column_text(st, 1));
		v[cnt].message = strdup(sqlite3_column_text(st, 2) ?
					(const char *)sqlite3_column_text(st, 2) : "");
		cnt++;
		if (v[cnt - 1].rule == NULL || v[cnt - 1].message == NULL)
			goto oom;
	}
	if (rc != SQLITE_DONE)
		goto dberr;
	sqlite3_finalize(st);
	st = NULL;
	if (cnt > 0 && sqlite3_exec(s->db, "UPDATE notified SET state = 'sending' WHERE state IN"
				    " ('queued', 'failed')", NULL, NULL, NULL) != SQLITE_OK)
		goto dberr;
	rc = state_commit(s, err);
	if (rc < 0) {
		notices_free(v, cnt);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
oom:
	sqlite3_finalize(st);
	state_rollback(s);
	notices_free(v, cnt);
	return cerr_set(err, -ENOMEM, "out of memory");
dberr:
	rc = cerr_set(err, -EIO, "state database: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	state_rollback(s);
	notices_free(v, cnt);
	return rc;
}

int state_notify_done(struct state *s, int64_t rowid, const char *error)
{
	sqlite3_stmt *st = q(s, Q_NDONE);
	char now[UTIL_TIME_LEN];

	now_text(now);
	sqlite3_bind_int64(st, 1, rowid);
	sqlite3_bind_text(st, 2, error ? "failed" : "sent", -1, SQLITE_STATIC);
	if (error != NULL)
		sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, now, -1, SQLITE_TRANSIENT);
	return step_done(st);
}

void notices_free(struct notice *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		free(v[i].rule);
		free(v[i].message);
	}
	free(v);
}

static json_t *text_or_null(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? json_string((const char *)t) : json_null();
}

int state_status(struct state *s, json_t **out)
{
	json_t *r = json_object(), *tenants = json_array(), *outputs = json_array(), *n = json_object();
	sqlite3_stmt *st = NULL;
	int rc = -EIO;

	if (r == NULL || tenants == NULL || outputs == NULL || n == NULL)
		goto out;
	if (sqlite3_prepare_v2(s->db, "SELECT tenant_id, name, cursor, last_success, last_error,"
			       " delivered, last_attempt, not_before FROM tenants ORDER BY name,"
			       " tenant_id", -1, &st, NULL) != SQLITE_OK)
		goto out;
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(tenants, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:I}",
			"tenant", text_or_null(st, 1), "tenant_id", text_or_null(st, 0),
			"cursor", text_or_null(st, 2), "last_success", text_or_null(st, 3),
			"last_attempt", text_or_null(st, 6), "last_error", text_or_null(st, 4),
			"alerts_delivered", (json_int_t)sqlite3_column_int64(st, 5)));
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "SELECT label, waiting, last_error, time FROM outputs"
			       " ORDER BY label", -1, &st, NULL) != SQLITE_OK)
		goto out;
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(outputs, json_pack("{s:o,s:I,s:o,s:o}",
			"output", text_or_null(st, 0), "alerts_waiting",
			(json_int_t)sqlite3_column_int64(st, 1), "last_error", text_or_null(st, 2),
			"last_pass", text_or_null(st, 3)));
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "SELECT state, count(*) FROM notified GROUP BY state", -1,
			       &st, NULL) != SQLITE_OK)
		goto out;
	json_object_set_new(n, "sent", json_integer(0));
	json_object_set_new(n, "failed", json_integer(0));
	json_object_set_new(n, "unconfirmed", json_integer(0));
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(st, 0);

		json_object_set_new(n, strcmp(state, "sending") == 0 ? "unconfirmed" : state,
				    json_integer(sqlite3_column_int64(st, 1)));
	}
	sqlite3_finalize(st);
	st = NULL;
	json_object_set(r, "tenants", tenants);
	json_object_set(r, "outputs", outputs);
	json_object_set(r, "notifications", n);
	*out = json_incref(r);
	rc = 0;
out:
	sqlite3_finalize(st);
	json_decref(tenants);
	json_decref(outputs);
	json_decref(n);
	json_decref(r);
	return rc;
}

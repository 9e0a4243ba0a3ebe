/* query.c — filtered, streamed reads over the read connection. */
#include "audit_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int audit_query(struct audit *a, const struct audit_filter *f,
		int (*cb)(void *ctx, uint64_t seq, const char *body, size_t len), void *ctx)
{
	char sql[512], since[UTIL_TIME_LEN], until[UTIL_TIME_LEN];
	sqlite3_stmt *st = NULL;
	bool by_time = f->tenant != NULL || f->principal != NULL;
	const char *dir = f->descending ? "DESC" : "ASC";
	int n, rc, src, i = 1;

	if ((f->since_us && util_time_format(f->since_us, true, since) < 0) ||
	    (f->until_us && util_time_format(f->until_us, true, until) < 0) ||
	    f->limit > INT64_MAX || f->after_seq > INT64_MAX)
		return -EINVAL;
	/* times are RFC 3339 of one fixed width and never decrease with seq,
	 * so text order is time order and (tenant|principal, time) indexes
	 * give seq order without a sort */
	n = snprintf(sql, sizeof(sql),
		     "SELECT seq, body FROM events WHERE 1%s%s%s%s%s%s%s ORDER BY %s%s%s seq %s LIMIT ?",
		     f->tenant ? " AND tenant = ?" : "", f->principal ? " AND principal = ?" : "",
		     f->event ? " AND event = ?" : "", f->outcome ? " AND outcome = ?" : "",
		     f->since_us ? " AND time >= ?" : "", f->until_us ? " AND time <= ?" : "",
		     f->after_seq ? " AND seq > ?" : "", by_time ? "time " : "",
		     by_time ? dir : "", by_time ? "," : "", dir);
	if (n < 0 || (size_t)n >= sizeof(sql))
		return -EINVAL;
	pthread_mutex_lock(&a->rlock);
	rc = audit_sqlite_rc(sqlite3_prepare_v2(a->rdb, sql, -1, &st, NULL));
	if (rc < 0)
		goto out;
	if (f->tenant)
		sqlite3_bind_text(st, i++, f->tenant, -1, SQLITE_STATIC);
	if (f->principal)
		sqlite3_bind_text(st, i++, f->principal, -1, SQLITE_STATIC);
	if (f->event)
		sqlite3_bind_text(st, i++, f->event, -1, SQLITE_STATIC);
	if (f->outcome)
		sqlite3_bind_text(st, i++, f->outcome, -1, SQLITE_STATIC);
	if (f->since_us)
		sqlite3_bind_text(st, i++, since, -1, SQLITE_STATIC);
	if (f->until_us)
		sqlite3_bind_text(st, i++, until, -1, SQLITE_STATIC);
	if (f->after_seq)
		sqlite3_bind_int64(st, i++, (sqlite3_int64)f->after_seq);
	sqlite3_bind_int64(st, i, f->limit ? (sqlite3_int64)f->limit : -1);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *body = (const char *)sqlite3_column_text(st, 1);
		size_t len = (size_t)sqlite3_column_bytes(st, 1);

		if (body == NULL) {
			rc = -EIO;
			goto out;
		}
		rc = cb(ctx, (uint64_t)sqlite3_column_int64(st, 0), body, len);
		if (rc != 0)
			goto out;
	}
	rc = src == SQLITE_DONE ? 0 : -EIO;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

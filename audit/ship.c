/* ship.c — what a shipper reads from the store (records and checkpoints in
 * seq order) and the per-sink cursor it keeps there (table ship_cursors:
 * sink, the last record seq and checkpoint size handed over). DESIGN §11.2.
 *
 * Threads: a struct audit_shipdb belongs to one shipper thread: its own
 * read connection (never the store's rdb, so exports and shipping do not
 * wait for each other) and its own connection for the cursor. */
#include "audit_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct audit_shipdb {
	sqlite3 *rdb, *wdb;
	sqlite3_stmt *st_rec, *st_cp;
	char *sink;
};

static const char cursor_sql[] =
	"CREATE TABLE IF NOT EXISTS ship_cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
	" cp_size INTEGER NOT NULL, updated TEXT NOT NULL);";

void audit_shipdb_close(struct audit_shipdb *s)
{
	if (s == NULL)
		return;
	sqlite3_finalize(s->st_rec);
	sqlite3_finalize(s->st_cp);
	sqlite3_close(s->rdb);
	sqlite3_close(s->wdb);
	free(s->sink);
	free(s);
}

int audit_shipdb_open(struct audit *a, const char *sink, struct audit_shipdb **out,
		      struct cerr *err)
{
	struct audit_shipdb *s = calloc(1, sizeof(*s));
	int rc;

	if (s == NULL || (s->sink = strdup(sink)) == NULL) {
		free(s);
		return cerr_set(err, -ENOMEM, "out of memory");
	}
	rc = audit_db_open(a->path, true, false, &s->rdb, err);
	if (rc == 0)
		rc = audit_db_open(a->path, false, false, &s->wdb, err);
	if (rc < 0)
		goto fail;
	/* a lost cursor advance only means sending again (at least once) */
	if (audit_exec(s->wdb, "PRAGMA synchronous = NORMAL") < 0 ||
	    audit_exec(s->wdb, cursor_sql) < 0 ||
	    audit_exec(s->rdb, "PRAGMA query_only = 1") < 0 ||
	    sqlite3_prepare_v2(s->rdb,
			       "SELECT seq, time, event, tenant, leaf, body FROM events"
			       " WHERE seq > ?1 ORDER BY seq LIMIT ?2", -1, &s->st_rec, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->rdb,
			       "SELECT size, time, note FROM checkpoints WHERE size > ?1 AND size <= ?2"
			       " ORDER BY size", -1, &s->st_cp, NULL) != SQLITE_OK) {
		rc = cerr_set(err, -EIO, "cannot prepare shipping reads: %s", sqlite3_errmsg(s->rdb));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	audit_shipdb_close(s);
	return rc;
}

int audit_shipdb_cursor(struct audit_shipdb *s, uint64_t *seq, uint64_t *cp)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;

	*seq = *cp = 0;
	if (sqlite3_prepare_v2(s->wdb, "SELECT seq, cp_size FROM ship_cursors WHERE sink = ?1", -1,
			       &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, s->sink, -1, SQLITE_STATIC);
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		*seq = (uint64_t)sqlite3_column_int64(st, 0);
		*cp = (uint64_t)sqlite3_column_int64(st, 1);
		break;
	case SQLITE_DONE:
		break;
	default:
		rc = -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

int audit_shipdb_advance(struct audit_shipdb *s, uint64_t seq, uint64_t cp)
{
	sqlite3_stmt *st = NULL;
	char now[UTIL_TIME_LEN];
	int rc;

	if (util_time_format(util_now_us(), false, now) < 0)
		now[0] = '\0';
	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		s->wdb, "INSERT OR REPLACE INTO ship_cursors(sink, seq, cp_size, updated)"
			" VALUES (?1, ?2, ?3, ?4)", -1, &st, NULL));
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, s->sink, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)cp);
	sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
	rc = audit_sqlite_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	return rc;
}

int audit_shipdb_read(struct audit_shipdb *s, uint64_t after_seq, uint64_t after_cp, size_t max,
		      int (*cb)(void *ctx, const struct audit_ship_item *it), void *ctx)
{
	uint64_t last = after_seq;
	int rc = 0, src, cpsrc = SQLITE_DONE;
	bool have_cp = false;

	/* one read transaction: records and checkpoints from one snapshot,
	 * so a checkpoint committed before a record is never skipped */
	if (sqlite3_exec(s->rdb, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(s->st_rec, 1, (sqlite3_int64)after_seq);
	sqlite3_bind_int64(s->st_rec, 2, (sqlite3_int64)max);
	/* checkpoints up to the last record of this batch: find it first */
	sqlite3_bind_int64(s->st_cp, 1, (sqlite3_int64)after_cp);
	{
		sqlite3_stmt *mx = NULL;

		if (sqlite3_prepare_v2(s->rdb,
				       "SELECT coalesce(max(seq), 0) FROM (SELECT seq FROM events WHERE"
				       " seq > ?1 ORDER BY seq LIMIT ?2)", -1, &mx, NULL) != SQLITE_OK) {
			rc = -EIO;
			goto out;
		}
		sqlite3_bind_int64(mx, 1, (sqlite3_int64)after_seq);
		sqlite3_bind_int64(mx, 2, (sqlite3_int64)max);
		if (sqlite3_step(mx) == SQLITE_ROW)
			last = (uint64_t)sqlite3_column_int64(mx, 0);
		sqlite3_finalize(mx);
		if (last < after_seq)
			last = after_seq;
	}
	sqlite3_bind_int64(s->st_cp, 2, (sqlite3_int64)last);
	cpsrc = sqlite3_step(s->st_cp);
	have_cp = cpsrc == SQLITE_ROW;
	/* a checkpoint at the cursor's own seq not yet handed over */
	while (have_cp && (uint64_t)sqlite3_column_int64(s->st_cp, 0) <= after_seq) {
		struct audit_ship_item it = {0};

		it.checkpoint = true;
		it.seq = (uint64_t)sqlite3_column_int64(s->st_cp, 0);
		it.time = (const char *)sqlite3_column_text(s->st_cp, 1);
		it.body = (const char *)sqlite3_column_text(s->st_cp, 2);
		it.len = (size_t)sqlite3_column_bytes(s->st_cp, 2);
		rc = cb(ctx, &it);
		if (rc != 0)
			goto out;
		cpsrc = sqlite3_step(s->st_cp);
		have_cp = cpsrc == SQLITE_ROW;
	}
	while ((src = sqlite3_step(s->st_rec)) == SQLITE_ROW) {
		struct audit_ship_item it = {0};

		it.seq = (uint64_t)sqlite3_column_int64(s->st_rec, 0);
		it.time = (const char *)sqlite3_column_text(s->st_rec, 1);
		it.event = (const char *)sqlite3_column_text(s->st_rec, 2);
		it.tenant = (const char *)sqlite3_column_text(s->st_rec, 3);
		if (sqlite3_column_bytes(s->st_rec, 4) == MERKLE_HASH)
			memcpy(it.leaf, sqlite3_column_blob(s->st_rec, 4), MERKLE_HASH);
		it.body = (const char *)sqlite3_column_text(s->st_rec, 5);
		it.len = (size_t)sqlite3_column_bytes(s->st_rec, 5);
		rc = cb(ctx, &it);
		if (rc != 0)
			goto out;
		/* the checkpoints at this size follow the record */
		while (have_cp && (uint64_t)sqlite3_column_int64(s->st_cp, 0) <= it.seq) {
			struct audit_ship_item c = {0};

			c.checkpoint = true;
			c.seq = (uint64_t)sqlite3_column_int64(s->st_cp, 0);
			c.time = (const char *)sqlite3_column_text(s->st_cp, 1);
			c.body = (const char *)sqlite3_column_text(s->st_cp, 2);
			c.len = (size_t)sqlite3_column_bytes(s->st_cp, 2);
			rc = cb(ctx, &c);
			if (rc != 0)
				goto out;
			cpsrc = sqlite3_step(s->st_cp);
			have_cp = cpsrc == SQLITE_ROW;
		}
	}
	if (src != SQLITE_DONE)
		rc = -EIO;
out:
	(void)cpsrc;
	sqlite3_reset(s->st_rec);
	sqlite3_reset(s->st_cp);
	sqlite3_exec(s->rdb, "COMMIT", NULL, NULL, NULL);
	return rc;
}

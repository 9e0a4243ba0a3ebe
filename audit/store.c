/* store.c — opening the SQLite file, its schema, and the writer's state as
 * committed (tree size, compact range, tenant chain heads). */
#include "audit_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "note.h"

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
	"CREATE TABLE IF NOT EXISTS events("
	" seq INTEGER PRIMARY KEY, time TEXT NOT NULL, event TEXT NOT NULL,"
	" outcome TEXT, tenant TEXT, principal TEXT, body TEXT NOT NULL, leaf BLOB NOT NULL);"
	"CREATE INDEX IF NOT EXISTS events_tenant_time ON events(tenant, time);"
	"CREATE INDEX IF NOT EXISTS events_principal_time ON events(principal, time);"
	"CREATE TABLE IF NOT EXISTS checkpoints("
	" size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, time TEXT NOT NULL);"
	/* the writer's state as of the tree row's size (tenant chain heads and
	 * the compact range), rewritten with every checkpoint, at close and at
	 * least every AUDIT_DERIVED_EVERY records; opening replays the records
	 * after it (derived data: verification recomputes it from events) */
	"CREATE TABLE IF NOT EXISTS tenants("
	" tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, last_leaf BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS tree("
	" id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, nodes BLOB NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events"
	" BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events"
	" BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints"
	" BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
	"CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints"
	" BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
	"INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', 1), ('probe', 0);"
	"INSERT OR IGNORE INTO tree(id, size, nodes) VALUES (1, 0, x'');";

int audit_sqlite_rc(int src)
{
	switch (src & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_CONSTRAINT:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

int audit_exec(sqlite3 *db, const char *sql)
{
	return audit_sqlite_rc(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

int audit_db_open(const char *path, bool read_only, bool create, sqlite3 **out, struct cerr *err)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
	int src;

	flags |= read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	src = sqlite3_open_v2(path, &db, flags, NULL);
	if (src != SQLITE_OK) {
		int rc = audit_sqlite_rc(src);

		cerr_set(err, rc, "cannot open the audit store %s: %s", path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
		sqlite3_close(db);
		return rc;
	}
	sqlite3_busy_timeout(db, 2000);
	*out = db;
	return 0;
}

static int get_u64(sqlite3 *db, const char *sql, uint64_t *out)
{
	sqlite3_stmt *st = NULL;
	int rc = audit_sqlite_rc(sqlite3_prepare_v2(db, sql, -1, &st, NULL));

	if (rc < 0)
		return rc;
	switch (sqlite3_step(st)) {
	case SQLITE_ROW:
		*out = (uint64_t)sqlite3_column_int64(st, 0);
		rc = 0;
		break;
	case SQLITE_DONE:
		*out = 0;
		rc = 0;
		break;
	default:
		rc = audit_sqlite_rc(sqlite3_errcode(db));
		if (rc == 0)
			rc = -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Bring the derived state from the tree row's size up to the newest
 * record: append each later leaf to the range and move its tenant's head,
 * marking the head dirty (the tenants table is behind it). */
static int derived_replay(struct audit *a, struct tenant_map *tm, uint64_t from)
{
	sqlite3_stmt *st = NULL;
	int rc, src;

	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		a->db, "SELECT seq, leaf, tenant FROM events WHERE seq > ?1 ORDER BY seq", -1, &st,
		NULL));
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *tenant = (const char *)sqlite3_column_text(st, 2);

		if ((uint64_t)sqlite3_column_int64(st, 0) != a->range.size + 1 ||
		    sqlite3_column_bytes(st, 1) != MERKLE_HASH) {
			rc = -EBADMSG;
			goto out;
		}
		merkle_range_append(&a->range, sqlite3_column_blob(st, 1));
		if (tenant != NULL) {
			struct tenant_ent *e = tenant_map_put(tm, tenant);

			if (e == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			e->seq++;
			memcpy(e->leaf, sqlite3_column_blob(st, 1), MERKLE_HASH);
			if (!e->dirty) {
				e->dirty = true;
				e->next_dirty = a->dirty;
				a->dirty = e;
			}
		}
	}
	rc = src == SQLITE_DONE ? 0 : -EIO;
out:
	sqlite3_finalize(st);
	return rc;
}

int audit_state_load(struct audit *a, struct cerr *err)
{
	sqlite3_stmt *st = NULL;
	uint64_t size = 0, cp = 0, ncp = 0, from = 0;
	struct tenant_map tm = {0};
	int rc, src;

	rc = get_u64(a->db, "SELECT coalesce(max(seq), 0) FROM events", &size);
	if (rc == 0)
		rc = get_u64(a->db, "SELECT coalesce(max(size), 0) FROM checkpoints", &cp);
	if (rc == 0)
		rc = get_u64(a->db, "SELECT count(*) FROM checkpoints", &ncp);
	if (rc < 0)
		return cerr_set(err, rc, "cannot read the audit store: %s", sqlite3_errmsg(a->db));
	rc = tenant_map_init(&tm);
	if (rc < 0)
		return cerr_set(err, rc, "out of memory");
	a->dirty = NULL;
	merkle_range_init(&a->range);

	/* the compact range and tenant heads as last written; a row that does
	 * not fit the records (missing, ahead, wrong length) is ignored and
	 * everything is replayed from the first record */
	rc = audit_sqlite_rc(sqlite3_prepare_v2(a->db, "SELECT size, nodes FROM tree WHERE id = 1",
						-1, &st, NULL));
	if (rc < 0)
		goto fail_sql;
	src = sqlite3_step(st);
	if (src == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) <= size &&
	    (size_t)sqlite3_column_bytes(st, 1) ==
		    merkle_range_count((uint64_t)sqlite3_column_int64(st, 0)) * MERKLE_HASH) {
		from = (uint64_t)sqlite3_column_int64(st, 0);
		a->range.size = from;
		if (from > 0)
			memcpy(a->range.node, sqlite3_column_blob(st, 1),
			       merkle_range_count(from) * MERKLE_HASH);
	} else if (src != SQLITE_ROW && src != SQLITE_DONE) {
		rc = -EIO;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc < 0)
		goto fail_sql;
	if (from > 0) {
		rc = audit_sqlite_rc(sqlite3_prepare_v2(
			a->db, "SELECT tenant, seq, last_leaf FROM tenants", -1, &st, NULL));
		while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
			const char *name = (const char *)sqlite3_column_text(st, 0);
			struct tenant_ent *e;

			if (name == NULL || sqlite3_column_bytes(st, 2) != MERKLE_HASH) {
				rc = -EBADMSG;
				break;
			}
			e = tenant_map_put(&tm, name);
			if (e == NULL) {
				rc = -ENOMEM;
				break;
			}
			e->seq = (uint64_t)sqlite3_column_int64(st, 1);
			memcpy(e->leaf, sqlite3_column_blob(st, 2), MERKLE_HASH);
		}
		if (rc == 0 && src != SQLITE_DONE)
			rc = -EIO;
		sqlite3_finalize(st);
		st = NULL;
		if (rc < 0) {
			tenant_map_free(&tm);
			return cerr_set(err, rc, "cannot read the tenant chains: %s",
					rc == -EBADMSG ? "malformed row" : sqlite3_errmsg(a->db));
		}
	}
	rc = derived_replay(a, &tm, from);
	if (rc == 0 && a->range.size != size)
		rc = -EBADMSG;
	if (rc < 0) {
		tenant_map_free(&tm);
		a->dirty = NULL;
		return cerr_set(err, rc, "cannot rebuild the audit tree: %s",
				rc == -EBADMSG ? "records are not numbered 1..n" :
						 sqlite3_errmsg(a->db));
	}
	a->derived_size = from;

	/* newest record's time: times never go backwards in the store */
	a->last_time_us = 0;
	rc = audit_sqlite_rc(sqlite3_prepare_v2(a->db,
						"SELECT time FROM events ORDER BY seq DESC LIMIT 1",
						-1, &st, NULL));
	if (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);

		if (t == NULL || util_time_parse(t, &a->last_time_us) < 0)
			a->last_time_us = 0;
	}
	sqlite3_finalize(st);

	tenant_map_free(&a->tenants);
	a->tenants = tm;
	a->last_cp_size = cp;
	a->have_cp = ncp > 0;
	atomic_store(&a->cp_size, cp);
	atomic_store(&a->size, size);
	return 0;
fail_sql:
	tenant_map_free(&tm);
	return cerr_set(err, rc, "cannot read the audit store: %s", sqlite3_errmsg(a->db));
}

int audit_newest_checkpoint(sqlite3 *db, uint64_t *size, char **note)
{
	sqlite3_stmt *st = NULL;
	int rc, src;

	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		db, "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1", -1, &st, NULL));
	if (rc < 0)
		return rc;
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		char *n = strdup(sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "");

		if (n == NULL) {
			rc = -ENOMEM;
		} else {
			*size = (uint64_t)sqlite3_column_int64(st, 0);
			*note = n;
		}
	} else {
		rc = src == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

static int wal_hook(void *ctx, sqlite3 *db, const char *name, int pages)
{
	struct audit *a = ctx;

	a->wal_pages = pages;
	return SQLITE_OK;
}

static int prepare_writer(struct audit *a)
{
	static const struct {
		size_t off;
		const char *sql;
	} stmts[] = {
		{offsetof(struct audit, st_event),
		 "INSERT INTO events(seq, time, event, outcome, tenant, principal, body, leaf)"
		 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
		{offsetof(struct audit, st_tenant),
		 "INSERT INTO tenants(tenant, seq, last_leaf) VALUES (?1, ?2, ?3)"
		 " ON CONFLICT(tenant) DO UPDATE SET seq = excluded.seq, last_leaf = excluded.last_leaf"},
		{offsetof(struct audit, st_range),
		 "INSERT INTO tree(id, size, nodes) VALUES (1, ?1, ?2)"
		 " ON CONFLICT(id) DO UPDATE SET size = excluded.size, nodes = excluded.nodes"},
		{offsetof(struct audit, st_cp),
		 "INSERT INTO checkpoints(size, root, note, time) VALUES (?1, ?2, ?3, ?4)"},
		{offsetof(struct audit, st_probe),
		 "UPDATE meta SET value = value + 1 WHERE key = 'probe'"},
		{offsetof(struct audit, st_begin), "BEGIN IMMEDIATE"},
		{offsetof(struct audit, st_commit), "COMMIT"},
	};

	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		sqlite3_stmt **st = (sqlite3_stmt **)((char *)a + stmts[i].off);
		int rc = audit_sqlite_rc(sqlite3_prepare_v3(a->db, stmts[i].sql, -1,
							    SQLITE_PREPARE_PERSISTENT, st, NULL));

		if (rc < 0)
			return rc;
	}
	return 0;
}

static int check_schema(sqlite3 *db, struct cerr *err)
{
	uint64_t v = 0;
	int rc = get_u64(db, "SELECT value FROM meta WHERE key = 'schema'", &v);

	if (rc < 0)
		return cerr_set(err, rc == -EIO ? -EIO : rc,
				"not a custody audit store (no schema version): %s",
				sqlite3_errmsg(db));
	if (v != AUDIT_SCHEMA_VERSION)
		return cerr_set(err, -EPROTO, "audit store schema version %" PRIu64
				" is not supported (this build reads %d)", v, AUDIT_SCHEMA_VERSION);
	return 0;
}

/* SQLite rewinds its WAL after a fold that caught up and then overwrites
 * blocks the file already has; syncing such a commit costs far less than
 * syncing one that grows the file (one-row commits here: 0.20 ms against
 * 0.40 ms p50, tests/bench/sqlite-floor). So a WAL shorter than
 * wal_prefill_frames frames is written out to that length with zeros, past
 * the end of what SQLite wrote, before the writer starts: the first laps
 * overwrite too. Zeros are never a valid frame (a frame must carry the
 * header's salts and a running checksum), so SQLite's recovery stops where
 * they begin, as it does at the stale frames of an earlier lap; the length
 * stays a whole number of frames, which verify's truncation check expects.
 * Bytes SQLite wrote are never touched. An optimisation only: skipped on a
 * nearly full filesystem, and undone if a write fails. */
static void wal_prefill(struct audit *a)
{
	static const char zeros[65536];
	struct statvfs vs;
	struct stat sb;
	uint64_t page = 0;
	off_t frame, want, off;

	if (a->wal_prefill_frames == 0 || get_u64(a->db, "PRAGMA page_size", &page) < 0 ||
	    page < 512 || page > 65536 || fstat(a->wal_fd, &sb) < 0)
		return;
	frame = 24 + (off_t)page;
	want = 32 + (off_t)a->wal_prefill_frames * frame;
	if (sb.st_size >= want || fstatvfs(a->wal_fd, &vs) < 0 ||
	    (uint64_t)vs.f_bavail * vs.f_frsize < 4 * (uint64_t)want)
		return;
	/* from a frame boundary on (a crash can leave a partial frame) */
	off = sb.st_size <= 32 ? sb.st_size : 32 + (sb.st_size - 32 + frame - 1) / frame * frame;
	if (off > sb.st_size && ftruncate(a->wal_fd, off) < 0)
		return;
	while (off < want) {
		size_t n = want - off < (off_t)sizeof(zeros) ? (size_t)(want - off) : sizeof(zeros);
		ssize_t w = pwrite(a->wal_fd, zeros, n, off);

		if (w <= 0)
			break;
		off += w;
	}
	if (off < want || fdatasync(a->wal_fd) < 0) {
		if (ftruncate(a->wal_fd, sb.st_size) < 0) {
			/* the zeros stay: harmless, SQLite ignores them */
		}
	}
}

/* The log's name and key are fixed by its first checkpoint: a store signed
 * as one origin (or with one key) and then as another would verify with
 * neither verifier key, and the keys customers hold would stop working. */
static int signer_check(struct audit *a, struct cerr *err)
{
	char origin[NOTE_NAME_MAX], *note = NULL;
	char have_hex[9] = "none", want_hex[9];
	uint8_t id[4], want[4];
	uint64_t size = 0;
	bool has_id = false;
	int rc;

	if (!a->has_signer || !a->have_cp)
		return 0;
	rc = audit_newest_checkpoint(a->db, &size, &note);
	if (rc < 0)
		return cerr_set(err, rc, "cannot read the newest checkpoint of %s", a->path);
	rc = note_signer(note, origin, id, &has_id);
	free(note);
	if (rc < 0)
		return cerr_set(err, -EBADMSG, "the newest checkpoint of %s (size %" PRIu64 ") is "
				"malformed: run `custody audit verify`", a->path, size);
	note_key_id(a->signer.origin, a->signer.public_key, want);
	util_hex(want, 4, want_hex);
	if (has_id)
		util_hex(id, 4, have_hex);
	if (strcmp(origin, a->signer.origin) != 0 || !has_id || memcmp(id, want, 4) != 0)
		return cerr_set(err, -EKEYREJECTED,
				"the audit store %s is signed as origin %s (key id %s), but this "
				"broker signs as audit.origin %s (key id %s): the origin and key are "
				"fixed at init; set audit.origin back to %s", a->path, origin,
				have_hex, a->signer.origin, want_hex, origin);
	return 0;
}

static int open_writer(struct audit *a, struct cerr *err)
{
	struct stat sb;
	int fd, rc;
	char *wal = NULL;

	/* create the file ourselves so it is never world-readable */
	fd = open(a->path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return cerr_set(err, -errno, "cannot open the audit store %s: %s", a->path,
				strerror(errno));
	/* closed before SQLite opens the file: a close of any descriptor of
	 * it later would drop the POSIX locks SQLite holds on it */
	rc = fstat(fd, &sb) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return cerr_set(err, rc, "cannot stat %s: %s", a->path, strerror(-rc));
	a->dev = sb.st_dev;
	a->ino = sb.st_ino;
	rc = audit_db_open(a->path, false, true, &a->db, err);
	if (rc < 0)
		return rc;
	if (audit_exec(a->db, "PRAGMA journal_mode = WAL") < 0 ||
	    audit_exec(a->db, "PRAGMA synchronous = FULL") < 0 ||
	    audit_exec(a->db, "PRAGMA wal_autocheckpoint = 0") < 0 ||
	    /* index pages of a large store stay in memory: fewer reads */
	    audit_exec(a->db, "PRAGMA cache_size = -65536") < 0 ||
	    audit_exec(a->db, "BEGIN IMMEDIATE") < 0)
		return cerr_set(err, -EIO, "cannot set up the audit store %s: %s", a->path,
				sqlite3_errmsg(a->db));
	if (audit_exec(a->db, schema_sql) < 0 || audit_exec(a->db, "COMMIT") < 0) {
		rc = cerr_set(err, -EIO, "cannot create the audit schema in %s: %s", a->path,
			      sqlite3_errmsg(a->db));
		(void)audit_exec(a->db, "ROLLBACK");
		return rc;
	}
	/* journal_mode may silently stay DELETE (e.g. on some file systems) */
	{
		sqlite3_stmt *st = NULL;
		bool ok = false;

		if (sqlite3_prepare_v2(a->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			ok = strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
		sqlite3_finalize(st);
		if (!ok)
			return cerr_set(err, -EIO, "the audit store %s cannot use WAL mode", a->path);
	}
	rc = check_schema(a->db, err);
	if (rc < 0)
		return rc;
	sqlite3_wal_hook(a->db, wal_hook, a);
	rc = prepare_writer(a);
	if (rc < 0)
		return cerr_set(err, rc, "cannot prepare audit statements: %s",
				sqlite3_errmsg(a->db));
	rc = audit_state_load(a, err);
	if (rc < 0)
		return rc;
	rc = signer_check(a, err);
	if (rc < 0)
		return rc;
	/* the WAL exists now (the schema transaction wrote it): watch it too,
	 * a removed WAL loses every record not yet checkpointed */
	if (asprintf(&wal, "%s-wal", a->path) < 0)
		return cerr_set(err, -ENOMEM, "out of memory");
	a->wal_fd = open(wal, O_RDWR | O_CLOEXEC);
	free(wal);
	if (a->wal_fd < 0)
		return cerr_set(err, -errno, "cannot open the audit WAL of %s: %s", a->path,
				strerror(errno));
	wal_prefill(a);
	return 0;
}

int audit_open(const char *path, const struct audit_opts *o, struct audit **out,
	       struct cerr *err)
{
	struct audit *a;
	pthread_condattr_t ca;
	int rc;

	if (path == NULL || o == NULL || out == NULL)
		return cerr_set(err, -EINVAL, "audit_open: missing argument");
	if (o->signer != NULL &&
	    (o->signer->sign == NULL || o->signer->origin == NULL ||
	     !note_name_valid(o->signer->origin)))
		return cerr_set(err, -EINVAL, "audit origin must be printable ASCII without '+' or spaces");
	if (o->n_witnesses > AUDIT_WITNESS_MAX || o->witness_quorum > o->n_witnesses)
		return cerr_set(err, -EINVAL, "at most %d witnesses and a quorum up to their number",
				AUDIT_WITNESS_MAX);
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < o->n_witnesses; i++)
		a->wkeys[i] = o->witnesses[i];
	a->n_wkeys = o->n_witnesses;
	a->wquorum = o->witness_quorum ? o->witness_quorum : (unsigned)o->n_witnesses;
	a->efd = a->wal_fd = -1;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->rlock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->wake, &ca);
	pthread_condattr_destroy(&ca);
	a->read_only = o->read_only;
	a->wal_prefill_frames = o->wal_prefill_frames;
	audit_placeholders_init(a);
	a->cp_every = o->checkpoint_every;
	a->cp_interval_s = o->checkpoint_interval_s;
	a->path = strdup(path);
	if (a->path == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if (o->signer != NULL) {
		a->signer = *o->signer;
		a->signer.origin = strdup(o->signer->origin);
		if (a->signer.origin == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			goto fail;
		}
		a->has_signer = true;
	}
	rc = tenant_map_init(&a->tenants);
	if (rc < 0) {
		cerr_set(err, rc, "out of memory");
		goto fail;
	}
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->done = calloc(AUDIT_QUEUE_MAX, sizeof(*a->done));
	if (a->efd < 0 || a->done == NULL) {
		rc = cerr_set(err, a->efd < 0 ? -errno : -ENOMEM, "cannot set up completions");
		goto fail;
	}
	a->done_cap = AUDIT_QUEUE_MAX;

	if (!a->read_only) {
		rc = open_writer(a, err);
		if (rc < 0)
			goto fail;
		rc = audit_db_open(path, false, false, &a->rdb, err);
		if (rc == 0 && (audit_exec(a->rdb, "PRAGMA query_only = 1") < 0 ||
				audit_exec(a->rdb, "PRAGMA cache_size = -16384") < 0))
			rc = cerr_set(err, -EIO, "cannot open a read connection to %s", path);
	} else {
		struct stat sb;

		if (stat(path, &sb) < 0) {
			rc = cerr_set(err, -errno, "cannot open the audit store %s: %s", path,
				      strerror(errno));
			goto fail;
		}
		rc = audit_db_open(path, true, false, &a->rdb, err);
		if (rc == 0)
			rc = check_schema(a->rdb, err);
		if (rc == 0) {
			uint64_t size = 0;

			rc = get_u64(a->rdb, "SELECT coalesce(max(seq), 0) FROM events", &size);
			if (rc == 0)
				atomic_store(&a->size, size);
			if (rc == 0)
				rc = get_u64(a->rdb, "SELECT coalesce(max(size), 0) FROM checkpoints",
					     &size);
			if (rc < 0)
				cerr_set(err, rc, "cannot read %s: %s", path, sqlite3_errmsg(a->rdb));
			atomic_store(&a->cp_size, size);
		}
	}
	if (rc < 0)
		goto fail;

	if (!a->read_only) {
		rc = audit_fold_start(a, err);
		if (rc < 0)
			goto fail;
		a->last_cp_ms = util_mono_ms();
		atomic_store(&a->writable, true);
		rc = -pthread_create(&a->thread, NULL, audit_writer_main, a);
		if (rc < 0) {
			cerr_set(err, rc, "cannot start the audit writer: %s", strerror(-rc));
			goto fail;
		}
		a->thread_started = true;
	}
	*out = a;
	return 0;
fail:
	a->stopping = true;
	(void)audit_close(a);
	return rc;
}

int audit_close(struct audit *a)
{
	int rc;

	if (a == NULL)
		return 0;
	if (a->thread_started) {
		pthread_mutex_lock(&a->lock);
		a->stopping = true;
		pthread_cond_signal(&a->wake);
		pthread_mutex_unlock(&a->lock);
		pthread_join(a->thread, NULL);
	}
	audit_fold_stop(a);
	rc = a->close_rc;
	sqlite3_finalize(a->st_event);
	sqlite3_finalize(a->st_tenant);
	sqlite3_finalize(a->st_range);
	sqlite3_finalize(a->st_cp);
	sqlite3_finalize(a->st_probe);
	sqlite3_finalize(a->st_begin);
	sqlite3_finalize(a->st_commit);
	if (a->rdb != NULL && sqlite3_close(a->rdb) != SQLITE_OK && rc == 0)
		rc = -EIO;
	if (a->db != NULL) {
		/* fold the WAL into the file so auditors copying only the
		 * main file get every record */
		if (!a->gone)
			(void)sqlite3_wal_checkpoint_v2(a->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
							NULL, NULL);
		if (sqlite3_close(a->db) != SQLITE_OK && rc == 0)
			rc = -EIO;
	}
	if (a->wal_fd >= 0)
		close(a->wal_fd);
	if (a->efd >= 0)
		close(a->efd);
	/* nothing is queued once the writer has stopped; an open that failed
	 * never queued anything */
	tenant_map_free(&a->tenants);
	/* checkpoint answers nobody polled */
	for (size_t i = 0; a->done != NULL && i < a->done_len; i++)
		free(a->done[(a->done_head + i) % a->done_cap].note);
	free(a->done);
	free(a->body_buf);
	free((char *)a->signer.origin);
	free(a->path);
	pthread_cond_destroy(&a->wake);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->rlock);
	free(a);
	return rc;
}

uint64_t audit_size(struct audit *a)
{
	return atomic_load(&a->size);
}

uint64_t audit_checkpoint_size(struct audit *a)
{
	return atomic_load(&a->cp_size);
}

bool audit_writable(struct audit *a)
{
	return atomic_load(&a->writable);
}

int audit_event_fd(const struct audit *a)
{
	return a->efd;
}

size_t audit_poll(struct audit *a, struct audit_done *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&a->lock);
	while (n < max && a->done_len > 0) {
		out[n++] = a->done[a->done_head];
		a->done_head = (a->done_head + 1) % a->done_cap;
		a->done_len--;
	}
	if (a->done_len == 0) {
		uint64_t v;

		/* nothing left: make the fd unreadable again */
		if (read(a->efd, &v, sizeof(v)) < 0) {
			/* EAGAIN: it was not readable */
		}
	}
	a->outstanding -= n;
	pthread_mutex_unlock(&a->lock);
	return n;
}

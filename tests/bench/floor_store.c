/* floor_store.c — see floor_store.h. */
#include "floor_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"

int floor_store_exec(struct floor_store *fs, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(fs->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "%s: %s: %s\n", fs->prog, sql, msg ? msg : sqlite3_errmsg(fs->db));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

int floor_store_open(struct floor_store *fs, const char *dir, const char *prog)
{
	struct audit_opts o = {0};
	struct audit *a = NULL;
	struct cerr err = {{0}};

	memset(fs, 0, sizeof(*fs));
	fs->prog = prog;
	if ((size_t)snprintf(fs->path, sizeof(fs->path), "%s/%s-%d.db", dir, prog, (int)getpid()) >=
	    sizeof(fs->path)) {
		fprintf(stderr, "%s: store directory name too long: %s\n", prog, dir);
		fs->path[0] = '\0';
		return -EIO;
	}
	/* the real store makes the file: schema, triggers, page size */
	if (audit_open(fs->path, &o, &a, &err) < 0) {
		fprintf(stderr, "%s: audit_open: %s\n", prog, err.msg);
		goto fail;
	}
	if (audit_close(a) < 0) {
		fprintf(stderr, "%s: audit_close failed\n", prog);
		goto fail;
	}
	if (sqlite3_open_v2(fs->path, &fs->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: cannot open %s\n", prog, fs->path);
		goto fail;
	}
	/* the store's own pragmas (audit/store.c) */
	if (floor_store_exec(fs, "PRAGMA journal_mode = WAL") < 0 ||
	    floor_store_exec(fs, "PRAGMA synchronous = FULL") < 0 ||
	    floor_store_exec(fs, "PRAGMA wal_autocheckpoint = 0") < 0 ||
	    floor_store_exec(fs, "PRAGMA cache_size = -65536") < 0)
		goto fail;
	if (sqlite3_prepare_v2(fs->db,
			       "INSERT INTO events(seq, time, event, outcome, tenant, principal, body, leaf)"
			       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &fs->insert, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: prepare: %s\n", prog, sqlite3_errmsg(fs->db));
		goto fail;
	}
	return 0;
fail:
	floor_store_close(fs);
	return -EIO;
}

int floor_store_insert(struct floor_store *fs, uint64_t seq, int tenants)
{
	char time[40], tenant[48], principal[24], body[FLOOR_BODY_BYTES + 1];
	unsigned char leaf[32];
	sqlite3_stmt *st = fs->insert;
	int n, rc;

	snprintf(time, sizeof(time), "2026-11-29T00:00:%02u.%06uZ", (unsigned)(seq / 1000000 % 60),
		 (unsigned)(seq % 1000000));
	snprintf(tenant, sizeof(tenant), "%08x-1111-2222-3333-%012x", (unsigned)(seq % tenants),
		 (unsigned)(seq % tenants));
	snprintf(principal, sizeof(principal), "tool-%u", (unsigned)(seq % 4));
	n = snprintf(body, sizeof(body), "{\"event\":\"token\",\"seq\":%" PRIu64 ",\"tenant\":\"%s\"",
		     seq, tenant);
	memset(body + n, 'x', FLOOR_BODY_BYTES - n - 1);
	body[FLOOR_BODY_BYTES - 1] = '}';
	body[FLOOR_BODY_BYTES] = '\0';
	for (int i = 0; i < 32; i++)
		leaf[i] = (unsigned char)(seq * 131 + i * 7);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	sqlite3_bind_text(st, 2, time, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, "token", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, "granted", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, tenant, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 6, principal, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, body, FLOOR_BODY_BYTES, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 8, leaf, sizeof(leaf), SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		fprintf(stderr, "%s: insert: %s\n", fs->prog, sqlite3_errmsg(fs->db));
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* SQLite calls this after each commit with the WAL's length in frames. */
static int wal_frames_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
	(void)db;
	(void)name;
	((struct floor_store *)ctx)->wal_frames = frames;
	return SQLITE_OK;
}

void floor_store_watch_wal(struct floor_store *fs, bool on)
{
	fs->wal_frames = 0;
	sqlite3_wal_hook(fs->db, on ? wal_frames_hook : NULL, on ? fs : NULL);
}

void floor_store_close(struct floor_store *fs)
{
	static const char *const sfx[] = {"", "-wal", "-shm"};

	sqlite3_finalize(fs->insert);
	fs->insert = NULL;
	sqlite3_close(fs->db);
	fs->db = NULL;
	if (fs->path[0] == '\0')
		return;
	for (size_t i = 0; i < 3; i++) {
		char p[sizeof(fs->path) + 8];

		snprintf(p, sizeof(p), "%s%s", fs->path, sfx[i]);
		unlink(p);
	}
	fs->path[0] = '\0';
}

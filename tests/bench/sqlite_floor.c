/* sqlite_floor.c — what the audit store's storage alone costs: the floor
 * under every durable figure custody can reach while DESIGN.md §7 holds
 * (SQLite, WAL, synchronous=FULL, events indexed by (tenant, time) and
 * (principal, time)).
 *
 * The store is created by the real audit library (same schema, same page
 * size), then closed; this program inserts rows into its events table
 * straight through SQLite with the store's pragmas, from one thread, with
 * none of custody's work: no hashing, no JSON, no signing, no threads, no
 * WAL folding on the clock (each shape is timed while it overwrites a WAL
 * an untimed pass wrote, the fastest case; see run_shape). Shapes, each
 * for --seconds:
 *
 *   1 row per commit                (the broker's path at 1 connection)
 *   1 row per commit, WAL growing   (the same, appending to the WAL file)
 *   8, 32, 64 rows per commit, 1 tenant (8-64 connections asking for one
 *                                    tenant, as the cached-token bench does)
 *   64 rows per commit, 100 tenants (bench-audit's 64 appenders)
 *
 *   sqlite-floor [--seconds S] [--dir DIR]
 *
 * Prints a markdown table and one JSON line of the same numbers. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "audit.h"

#define BODY_BYTES 600          /* a token record's canonical JSON is ~550-650 bytes */
#define WAL_CAP (512LL << 20)   /* stop a shape early rather than fill the disk */
#define MAX_COMMITS 200000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "sqlite-floor: %s: %s\n", sql, msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}

static int cmp_d(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

struct shape {
	const char *name;
	int rows, tenants;
	bool grow;
	double rows_per_s, commit_p50_us, commit_p99_us;
};

/* One row as the writer binds it: seq is the rowid, the body a stand-in
 * of a token record's size, the leaf 32 bytes. */
static int insert_row(sqlite3_stmt *st, uint64_t seq, int tenants)
{
	char time[40], tenant[48], principal[24], body[BODY_BYTES + 1];
	unsigned char leaf[32];
	int n;

	snprintf(time, sizeof(time), "2026-11-29T00:00:%02u.%06uZ", (unsigned)(seq / 1000000 % 60),
		 (unsigned)(seq % 1000000));
	snprintf(tenant, sizeof(tenant), "%08x-1111-2222-3333-%012x", (unsigned)(seq % tenants),
		 (unsigned)(seq % tenants));
	snprintf(principal, sizeof(principal), "tool-%u", (unsigned)(seq % 4));
	n = snprintf(body, sizeof(body), "{\"event\":\"token\",\"seq\":%" PRIu64 ",\"tenant\":\"%s\"",
		     seq, tenant);
	memset(body + n, 'x', BODY_BYTES - n - 1);
	body[BODY_BYTES - 1] = '}';
	body[BODY_BYTES] = '\0';
	for (int i = 0; i < 32; i++)
		leaf[i] = (unsigned char)(seq * 131 + i * 7);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	sqlite3_bind_text(st, 2, time, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, "token", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, "granted", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, tenant, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 6, principal, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 7, body, BODY_BYTES, SQLITE_TRANSIENT);
	sqlite3_bind_blob(st, 8, leaf, sizeof(leaf), SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE)
		return -EIO;
	sqlite3_reset(st);
	return 0;
}

/* SQLite calls this after each commit with the WAL's length in frames. */
static int wal_frames_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
	(void)db;
	(void)name;
	*(int *)ctx = frames;
	return SQLITE_OK;
}

/* Commit s->rows rows at a time for up to `seconds` or until the WAL
 * holds max_frames frames (0: WAL_CAP bytes); per-commit latencies into
 * lat (NULL: untimed). */
static int commit_loop(sqlite3 *db, sqlite3_stmt *st, const struct shape *s, double seconds,
		       int max_frames, const int *frames, double *lat, size_t *n_out,
		       uint64_t *rows_out, uint64_t *seq)
{
	double end = now_s() + seconds;
	size_t n = 0;
	uint64_t rows = 0;

	while (n < MAX_COMMITS) {
		double c0 = now_s(), t1;

		if (exec(db, "BEGIN IMMEDIATE") < 0)
			return -EIO;
		for (int i = 0; i < s->rows; i++) {
			if (insert_row(st, ++*seq, s->tenants) < 0) {
				fprintf(stderr, "sqlite-floor: insert: %s\n", sqlite3_errmsg(db));
				return -EIO;
			}
		}
		if (exec(db, "COMMIT") < 0)
			return -EIO;
		t1 = now_s();
		if (lat != NULL)
			lat[n] = (t1 - c0) * 1e6;
		n++;
		rows += (uint64_t)s->rows;
		if (t1 >= end)
			break;
		if (max_frames > 0 ? *frames + 2 * s->rows >= max_frames
				   : (long long)*frames * 4120 > WAL_CAP)
			break;
	}
	*n_out = n;
	*rows_out = rows;
	return 0;
}

/* One shape. SQLite keeps the WAL file and rewinds it after a fold that
 * caught up; overwriting blocks the file already has syncs faster than
 * growing it. So, for the best case: an untimed pass writes the WAL to its
 * length, a fold rewinds it, and the timed pass overwrites it, stopping
 * before it would grow (or after `seconds`). `grow`: time the first pass
 * instead, the WAL growing all along. */
static int run_shape(sqlite3 *db, sqlite3_stmt *st, struct shape *s, double seconds, bool grow,
		     uint64_t *seq)
{
	double *lat = calloc(MAX_COMMITS, sizeof(*lat));
	double t0;
	size_t n = 0;
	uint64_t rows = 0;
	int frames = 0, rc = -EIO;

	if (lat == NULL)
		return -ENOMEM;
	sqlite3_wal_hook(db, wal_frames_hook, &frames);
	if (!grow) {
		int warm_frames;

		if (commit_loop(db, st, s, seconds, 0, &frames, NULL, &n, &rows, seq) < 0)
			goto out;
		warm_frames = frames;
		if (exec(db, "PRAGMA wal_checkpoint(PASSIVE)") < 0)
			goto out;
		t0 = now_s();
		if (commit_loop(db, st, s, seconds, warm_frames, &frames, lat, &n, &rows, seq) < 0)
			goto out;
	} else {
		t0 = now_s();
		if (commit_loop(db, st, s, seconds, 0, &frames, lat, &n, &rows, seq) < 0)
			goto out;
	}
	s->rows_per_s = (double)rows / (now_s() - t0);
	qsort(lat, n, sizeof(*lat), cmp_d);
	s->commit_p50_us = lat[n / 2];
	s->commit_p99_us = lat[n * 99 / 100];
	/* untimed: empty the WAL file before the next shape */
	rc = exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
out:
	sqlite3_wal_hook(db, NULL, NULL);
	free(lat);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"seconds", 1, NULL, 's'}, {"dir", 1, NULL, 'd'},
					   {NULL, 0, NULL, 0}};
	struct shape shapes[] = {
		{"1 row per commit", 1, 1, false, 0, 0, 0},
		{"1 row per commit, WAL growing", 1, 1, true, 0, 0, 0},
		{"8 rows per commit, 1 tenant", 8, 1, false, 0, 0, 0},
		{"32 rows per commit, 1 tenant", 32, 1, false, 0, 0, 0},
		{"64 rows per commit, 1 tenant", 64, 1, false, 0, 0, 0},
		{"64 rows per commit, 100 tenants", 64, 100, false, 0, 0, 0},
	};
	const size_t nshapes = sizeof(shapes) / sizeof(shapes[0]);
	const char *dir = "/tmp";
	double seconds = 5;
	char path[4096];
	struct audit_opts o = {0};
	struct audit *a = NULL;
	struct cerr err = {{0}};
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	uint64_t seq = 0;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			seconds = atof(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s [--seconds S] [--dir DIR]\n", argv[0]);
			return 2;
		}
	}
	if (seconds <= 0) {
		fprintf(stderr, "sqlite-floor: --seconds must be positive\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/sqlite-floor-%d.db", dir, (int)getpid());
	/* the real store makes the file: schema, triggers, page size */
	if (audit_open(path, &o, &a, &err) < 0) {
		fprintf(stderr, "sqlite-floor: audit_open: %s\n", err.msg);
		return 1;
	}
	if (audit_close(a) < 0) {
		fprintf(stderr, "sqlite-floor: audit_close failed\n");
		goto out;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite-floor: cannot open %s\n", path);
		goto out;
	}
	/* the store's own pragmas (audit/store.c) */
	if (exec(db, "PRAGMA journal_mode = WAL") < 0 || exec(db, "PRAGMA synchronous = FULL") < 0 ||
	    exec(db, "PRAGMA wal_autocheckpoint = 0") < 0 ||
	    exec(db, "PRAGMA cache_size = -65536") < 0)
		goto out;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO events(seq, time, event, outcome, tenant, principal, body, leaf)"
			       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite-floor: prepare: %s\n", sqlite3_errmsg(db));
		goto out;
	}
	for (size_t i = 0; i < nshapes; i++) {
		if (run_shape(db, st, &shapes[i], seconds, shapes[i].grow, &seq) < 0)
			goto out;
	}
	printf("| SQLite floor (%d-byte bodies, one thread, no custody code) | rows/s | commit p50 | "
	       "commit p99 |\n|---|---|---|---|\n", BODY_BYTES);
	for (size_t i = 0; i < nshapes; i++)
		printf("| %s | %.0f | %.3f ms | %.3f ms |\n", shapes[i].name, shapes[i].rows_per_s,
		       shapes[i].commit_p50_us / 1000, shapes[i].commit_p99_us / 1000);
	/* keys floor_<rows>x<tenants>_{per_s,p50_us,p99_us} for run.py */
	printf("{");
	for (size_t i = 0; i < nshapes; i++)
		printf("%s\"floor_%dx%d%s_per_s\":%.0f,\"floor_%dx%d%s_p50_us\":%.1f,"
		       "\"floor_%dx%d%s_p99_us\":%.1f", i ? "," : "", shapes[i].rows,
		       shapes[i].tenants, shapes[i].grow ? "_grow" : "", shapes[i].rows_per_s,
		       shapes[i].rows, shapes[i].tenants, shapes[i].grow ? "_grow" : "",
		       shapes[i].commit_p50_us, shapes[i].rows, shapes[i].tenants,
		       shapes[i].grow ? "_grow" : "", shapes[i].commit_p99_us);
	printf("}\n");
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	{
		static const char *const sfx[] = {"", "-wal", "-shm"};

		for (size_t i = 0; i < 3; i++) {
			char p[4300];

			snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
			unlink(p);
		}
	}
	return rc;
}

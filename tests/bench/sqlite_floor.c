/* sqlite_floor.c — what the audit store's storage alone costs: the floor
 * under every durable figure custody can reach while DESIGN.md §7 holds
 * (SQLite, WAL, synchronous=FULL, events indexed by (tenant, time) and
 * (principal, time)).
 *
 * The store is created by the real audit library (same schema, same page
 * size), then closed; this program inserts rows into its events table
 * straight through SQLite with the store's pragmas (floor_store.c), from
 * one thread, with
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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sqlite3.h>

#include "floor_store.h"

#define WAL_CAP (512LL << 20)   /* stop a shape early rather than fill the disk */
#define MAX_COMMITS 200000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

/* Commit s->rows rows at a time for up to `seconds` or until the WAL
 * holds max_frames frames (0: WAL_CAP bytes); per-commit latencies into
 * lat (NULL: untimed). */
static int commit_loop(struct floor_store *fs, const struct shape *s, double seconds,
		       int max_frames, const int *frames, double *lat, size_t *n_out,
		       uint64_t *rows_out, uint64_t *seq)
{
	double end = now_s() + seconds;
	size_t n = 0;
	uint64_t rows = 0;

	while (n < MAX_COMMITS) {
		double c0 = now_s(), t1;

		if (floor_store_exec(fs, "BEGIN IMMEDIATE") < 0)
			return -EIO;
		for (int i = 0; i < s->rows; i++) {
			if (floor_store_insert(fs, ++*seq, s->tenants) < 0)
				return -EIO;
		}
		if (floor_store_exec(fs, "COMMIT") < 0)
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
static int run_shape(struct floor_store *fs, struct shape *s, double seconds, bool grow,
		     uint64_t *seq)
{
	double *lat = calloc(MAX_COMMITS, sizeof(*lat));
	double t0;
	size_t n = 0;
	uint64_t rows = 0;
	int rc = -EIO;

	if (lat == NULL)
		return -ENOMEM;
	floor_store_watch_wal(fs, true);
	if (!grow) {
		int warm_frames;

		if (commit_loop(fs, s, seconds, 0, &fs->wal_frames, NULL, &n, &rows, seq) < 0)
			goto out;
		warm_frames = fs->wal_frames;
		if (floor_store_exec(fs, "PRAGMA wal_checkpoint(PASSIVE)") < 0)
			goto out;
		t0 = now_s();
		if (commit_loop(fs, s, seconds, warm_frames, &fs->wal_frames, lat, &n, &rows, seq) < 0)
			goto out;
	} else {
		t0 = now_s();
		if (commit_loop(fs, s, seconds, 0, &fs->wal_frames, lat, &n, &rows, seq) < 0)
			goto out;
	}
	s->rows_per_s = (double)rows / (now_s() - t0);
	qsort(lat, n, sizeof(*lat), cmp_d);
	s->commit_p50_us = lat[n / 2];
	s->commit_p99_us = lat[n * 99 / 100];
	/* untimed: empty the WAL file before the next shape */
	rc = floor_store_exec(fs, "PRAGMA wal_checkpoint(TRUNCATE)");
out:
	floor_store_watch_wal(fs, false);
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
	struct floor_store fs;
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
	if (floor_store_open(&fs, dir, "sqlite-floor") < 0)
		return 1;
	for (size_t i = 0; i < nshapes; i++) {
		if (run_shape(&fs, &shapes[i], seconds, shapes[i].grow, &seq) < 0)
			goto out;
	}
	printf("| SQLite floor (%d-byte bodies, one thread, no custody code) | rows/s | commit p50 | "
	       "commit p99 |\n|---|---|---|---|\n", FLOOR_BODY_BYTES);
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
	floor_store_close(&fs);
	return rc;
}

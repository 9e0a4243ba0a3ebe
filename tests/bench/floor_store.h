/* floor_store.h — the audit store's storage alone, for the benchmark's
 * floors (sqlite-floor, echo_server --store).
 *
 * The store file is created by the real audit library (same schema, page
 * size, triggers), closed, then reopened with plain SQLite and the store's
 * own pragmas (audit/store.c: WAL, synchronous=FULL, no automatic WAL
 * checkpoints, 64 MiB cache), so rows go in exactly as durably as the
 * broker's do, with none of custody's work around them.
 *
 * Errors: 0 or -EIO; each failing function has printed one line naming the
 * program (prog) and what failed.
 */
#ifndef CUSTODY_BENCH_FLOOR_STORE_H
#define CUSTODY_BENCH_FLOOR_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#define FLOOR_BODY_BYTES 600 /* a token record's canonical JSON is ~550-650 bytes */

struct floor_store {
	const char *prog;     /* prefix of error lines */
	char path[4096];      /* DIR/<prog>-<pid>.db */
	sqlite3 *db;
	sqlite3_stmt *insert; /* the writer's INSERT INTO events */
	int wal_frames;       /* the WAL's length after the last commit, when watched */
};

/* Create DIR/<prog>-<pid>.db and open it as above; on failure nothing is
 * left open or on disk. */
int floor_store_open(struct floor_store *fs, const char *dir, const char *prog);
/* Run one statement (BEGIN IMMEDIATE, COMMIT, a PRAGMA). */
int floor_store_exec(struct floor_store *fs, const char *sql);
/* Insert one row as the writer binds it: seq the rowid, a body of
 * FLOOR_BODY_BYTES standing in for a token record, tenant number
 * seq % tenants, a 32-byte leaf. */
int floor_store_insert(struct floor_store *fs, uint64_t seq, int tenants);
/* Keep wal_frames up to date from each commit on (sqlite3_wal_hook), or
 * stop; either way wal_frames starts again from 0. */
void floor_store_watch_wal(struct floor_store *fs, bool on);
/* Finalize, close (an open transaction is rolled back) and unlink the
 * store's files (db, -wal, -shm). Safe on a store that failed to open. */
void floor_store_close(struct floor_store *fs);

#endif

/* fold.c — folding the WAL back into the database file, on its own thread
 * and its own connection, so the writer never stalls on it.
 *
 * A fold (SQLite's PASSIVE checkpoint — unrelated to the store's signed
 * checkpoints) copies committed WAL pages into the main file and syncs
 * it: several milliseconds, most of it the file's fsync. Done by the
 * writer, every reply waiting behind it waited that long (the broker's
 * p99 at 64 connections was such stalls, one every ~0.7 s). A PASSIVE
 * checkpoint on a second connection runs beside the writer's commits:
 * SQLite lets one writer and one checkpointer work at once.
 *
 * Durability does not depend on it: every record is in the synced WAL
 * before anyone hears of it. A failed fold (say a full disk) is logged
 * and tried again at the next request; the WAL only grows meanwhile.
 * SQLite restarts the WAL from its start at the writer's next commit
 * after a fold that caught up; under constant load that may not happen,
 * so the writer folds itself past WAL_FORCE_PAGES (~64 MiB; writer.c),
 * a few milliseconds once per that much WAL. */
#include "audit_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FOLD_PASSES 8 /* a fold that stops converging stops earlier */

static void *fold_main(void *arg)
{
	struct audit *a = arg;
	int64_t last_log_ms = 0;

	pthread_setname_np(pthread_self(), "audit-fold");
	pthread_mutex_lock(&a->fold_lock);
	for (;;) {
		int src, log_frames = 0, done_frames = 0;

		while (!a->fold_wanted && !a->fold_stop)
			pthread_cond_wait(&a->fold_wake, &a->fold_lock);
		if (a->fold_stop)
			break;
		a->fold_wanted = false;
		atomic_store(&a->fold_busy, true);
		pthread_mutex_unlock(&a->fold_lock);

		/* Passes while they gain on the writer (each copies what was
		 * committed during the one before). What is left is a commit
		 * or two: the writer folds that itself, between two batches,
		 * so that its next commit rewinds the WAL (writer.c). */
		for (int pass = 0; pass < FOLD_PASSES; pass++) {
			int behind = log_frames - done_frames;

			src = sqlite3_wal_checkpoint_v2(a->fdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
							&log_frames, &done_frames);
			if (src != SQLITE_OK || log_frames <= done_frames ||
			    (pass > 0 && log_frames - done_frames >= behind))
				break;
		}
		atomic_store(&a->fold_behind, src == SQLITE_OK ? log_frames - done_frames : -1);
		atomic_store(&a->fold_busy, false);
		if (src != SQLITE_OK && src != SQLITE_BUSY && util_mono_ms() - last_log_ms > 60000) {
			/* at most once a minute: the store still works */
			last_log_ms = util_mono_ms();
			fprintf(stderr, "custody audit: cannot fold the WAL into %s (%s); "
				"it grows until that works\n", a->path, sqlite3_errmsg(a->fdb));
		}
		pthread_mutex_lock(&a->fold_lock);
	}
	pthread_mutex_unlock(&a->fold_lock);
	return NULL;
}

int audit_fold_start(struct audit *a, struct cerr *err)
{
	int rc = audit_db_open(a->path, false, false, &a->fdb, err);

	if (rc < 0)
		return rc;
	/* the fold syncs the file before SQLite may reuse the WAL */
	if (audit_exec(a->fdb, "PRAGMA synchronous = FULL") < 0)
		return cerr_set(err, -EIO, "cannot set up the audit fold connection: %s",
				sqlite3_errmsg(a->fdb));
	atomic_store(&a->fold_behind, -1);
	pthread_mutex_init(&a->fold_lock, NULL);
	pthread_cond_init(&a->fold_wake, NULL);
	a->fold_init = true;
	rc = -pthread_create(&a->fold_thread, NULL, fold_main, a);
	if (rc < 0)
		return cerr_set(err, rc, "cannot start the audit fold thread: %s", strerror(-rc));
	a->fold_started = true;
	return 0;
}

void audit_fold_request(struct audit *a)
{
	if (!a->fold_started)
		return;
	/* what the last fold left is stale now */
	atomic_store(&a->fold_behind, -1);
	pthread_mutex_lock(&a->fold_lock);
	a->fold_wanted = true;
	pthread_cond_signal(&a->fold_wake);
	pthread_mutex_unlock(&a->fold_lock);
}

void audit_fold_stop(struct audit *a)
{
	if (a->fold_started) {
		pthread_mutex_lock(&a->fold_lock);
		a->fold_stop = true;
		pthread_cond_signal(&a->fold_wake);
		pthread_mutex_unlock(&a->fold_lock);
		/* a fold under way finishes first */
		pthread_join(a->fold_thread, NULL);
		a->fold_started = false;
	}
	if (a->fold_init) {
		pthread_cond_destroy(&a->fold_wake);
		pthread_mutex_destroy(&a->fold_lock);
		a->fold_init = false;
	}
	if (a->fdb != NULL) {
		sqlite3_close(a->fdb);
		a->fdb = NULL;
	}
}

/* writer.c — the writer thread: group commit, checkpoints, fail-closed
 * state and recovery; and the calls that hand it work. */
#include "audit_int.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "note.h"

#define WAL_FOLD_PAGES 1000     /* ask the fold thread every ~4 MiB of WAL */
#define WAL_FORCE_PAGES 16384   /* ~64 MiB never restarted: fold here */
#define WAL_REWIND_BEHIND 32    /* the fold left at most this: finish it here */
#define RETRY_MIN_MS 10
#define RETRY_MAX_MS 1000

static void audit_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void audit_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("custody audit: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- calls from other threads ------------------------------------------ */

/* Refuse while the store cannot write; else queue it. Under a->lock; the
 * caller wakes the writer (after unlocking, where it can: a writer woken
 * under the lock only blocks on it again). */
static int enqueue_locked(struct audit *a, struct audit_item *it)
{
	if (a->read_only || a->stopping)
		return -EIO;
	if (!atomic_load(&a->writable))
		return atomic_load(&a->fail_rc);
	if (a->q_tail)
		a->q_tail->next = it;
	else
		a->q_head = it;
	a->q_tail = it;
	a->q_len++;
	return 0;
}

/* Queue a made item; its completion comes through audit_poll. */
static int enqueue_async(struct audit *a, struct audit_item *it, uint64_t cookie)
{
	int rc;

	it->cookie = cookie;
	pthread_mutex_lock(&a->lock);
	if (a->outstanding >= AUDIT_QUEUE_MAX) {
		rc = -EAGAIN;
	} else {
		rc = enqueue_locked(a, it);
		if (rc == 0)
			a->outstanding++;
	}
	pthread_mutex_unlock(&a->lock);
	if (rc < 0)
		audit_item_free(it);
	else if (a->batch_wakes)
		atomic_store(&a->wake_due, true);
	else
		pthread_cond_signal(&a->wake);
	return rc;
}

void audit_batch_wakes(struct audit *a)
{
	a->batch_wakes = true;
}

void audit_flush(struct audit *a)
{
	/* The writer waits for a non-empty queue, which the appends made
	 * under the lock: a signal after them is never lost, and one with
	 * the writer busy costs nothing (it looks at the queue again). */
	if (atomic_exchange(&a->wake_due, false))
		pthread_cond_signal(&a->wake);
}

int audit_append_async(struct audit *a, json_t *fields, uint64_t cookie)
{
	struct audit_item *it = NULL;
	int rc;

	rc = audit_item_new(a, fields, &it);
	if (rc < 0)
		return rc;
	return enqueue_async(a, it, cookie);
}

int audit_append_fields_async(struct audit *a, const struct audit_fields *f, uint64_t cookie)
{
	struct audit_item *it = NULL;
	int rc;

	rc = audit_item_from_fields(a, f, &it);
	if (rc < 0)
		return rc;
	return enqueue_async(a, it, cookie);
}

int audit_append(struct audit *a, json_t *fields, uint64_t *seq)
{
	struct audit_waiter w = {0};
	struct audit_item *it = NULL;
	int rc;

	rc = audit_item_new(a, fields, &it);
	if (rc < 0)
		return rc;
	it->w = &w;
	pthread_cond_init(&w.cond, NULL);
	pthread_mutex_lock(&a->lock);
	rc = enqueue_locked(a, it);
	if (rc == 0) {
		pthread_cond_signal(&a->wake);
		while (!w.done)
			pthread_cond_wait(&w.cond, &a->lock);
		rc = w.rc;
	}
	pthread_mutex_unlock(&a->lock);
	pthread_cond_destroy(&w.cond);
	if (!w.done) /* never queued: still ours */
		audit_item_free(it);
	if (rc == 0 && seq != NULL)
		*seq = w.seq;
	return rc;
}

int audit_checkpoint(struct audit *a, char **note_out, uint64_t *size_out)
{
	struct audit_waiter w = {0};
	struct audit_cpreq req = {.w = &w};
	int rc = 0;

	if (a->read_only)
		return -EROFS;
	if (!a->has_signer)
		return -ENOKEY;
	pthread_cond_init(&w.cond, NULL);
	pthread_mutex_lock(&a->lock);
	if (a->stopping)
		rc = -EIO;
	else if (!atomic_load(&a->writable))
		rc = atomic_load(&a->fail_rc);
	if (rc == 0) {
		if (a->cp_tail)
			a->cp_tail->next = &req;
		else
			a->cp_head = &req;
		a->cp_tail = &req;
		pthread_cond_signal(&a->wake);
		while (!w.done)
			pthread_cond_wait(&w.cond, &a->lock);
		rc = w.rc;
	}
	pthread_mutex_unlock(&a->lock);
	pthread_cond_destroy(&w.cond);
	if (rc == 0) {
		if (size_out)
			*size_out = w.seq;
		if (note_out)
			*note_out = w.note;
		else
			free(w.note);
	}
	return rc;
}

int audit_checkpoint_async(struct audit *a, uint64_t cookie)
{
	struct audit_cpreq *req;
	int rc = 0;

	if (a->read_only)
		return -EROFS;
	if (!a->has_signer)
		return -ENOKEY;
	req = calloc(1, sizeof(*req));
	if (req == NULL)
		return -ENOMEM;
	req->cookie = cookie;
	pthread_mutex_lock(&a->lock);
	if (a->stopping)
		rc = -EIO;
	else if (!atomic_load(&a->writable))
		rc = atomic_load(&a->fail_rc);
	else if (a->outstanding >= AUDIT_QUEUE_MAX)
		rc = -EAGAIN;
	if (rc == 0) {
		if (a->cp_tail)
			a->cp_tail->next = req;
		else
			a->cp_head = req;
		a->cp_tail = req;
		a->outstanding++;
		pthread_cond_signal(&a->wake);
	}
	pthread_mutex_unlock(&a->lock);
	if (rc < 0)
		free(req);
	return rc;
}

/* ---- the writer thread --------------------------------------------------- */

struct file_ident {
	dev_t dev;
	ino_t ino;
	nlink_t nlink;
};

/* The link count and identity of a file, and nothing else. Asking for
 * its times would cost a disk write per commit: on kernels with
 * fine-grained ("multigrain") timestamps, a query of a file's times makes
 * its next write update them, which marks the WAL's inode dirty, and
 * every fdatasync then writes the inode too (a second synchronous device
 * round trip). statx with this mask queries neither times nor i_version.
 * A file system that does not fill both fields (or a kernel without
 * statx) gets the plain stat: slower, never a false "removed". */
static int stat_ident(int dirfd, const char *path, int flags, struct file_ident *id)
{
	const unsigned int want = STATX_NLINK | STATX_INO;
	struct statx sx;
	struct stat st;

	if (statx(dirfd, path, flags, want, &sx) == 0 && (sx.stx_mask & want) == want) {
		id->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
		id->ino = sx.stx_ino;
		id->nlink = sx.stx_nlink;
		return 0;
	}
	if (fstatat(dirfd, path, &st, flags) < 0)
		return -1;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->nlink = st.st_nlink;
	return 0;
}

/* The file we opened must still be the file at path, with a link: SQLite
 * would happily keep writing to a removed file (or WAL) and every record
 * would be lost at the next start. The file at path being ours says both
 * (a file a path names has a link); the WAL must still have one. */
static int file_check(struct audit *a)
{
	struct file_ident at, wal;

	if (a->gone)
		return -EIO;
	if (stat_ident(AT_FDCWD, a->path, 0, &at) < 0 || at.dev != a->dev || at.ino != a->ino ||
	    stat_ident(a->wal_fd, "", AT_EMPTY_PATH, &wal) < 0 || wal.nlink == 0) {
		a->gone = true;
		audit_log("%s was removed or replaced while open; refusing every append "
			  "(restart the broker once the file is restored)", a->path);
		return -EIO;
	}
	return 0;
}

static void set_failed(struct audit *a, int rc, const char *what)
{
	if (rc != -ENOSPC)
		rc = -EIO;
	if (!sqlite3_get_autocommit(a->db))
		(void)sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	atomic_store(&a->fail_rc, rc);
	if (atomic_exchange(&a->writable, false))
		audit_log("cannot write %s (%s: %s); refusing appends until it can", a->path,
			  what, a->gone ? "file removed" : sqlite3_errmsg(a->db));
	a->retry_ms = RETRY_MIN_MS;
	a->retry_at_ms = util_mono_ms() + a->retry_ms;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int src = sqlite3_step(st);
	int rc = src == SQLITE_DONE ? 0 : audit_sqlite_rc(sqlite3_errcode(db));

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (src != SQLITE_DONE && rc == 0)
		rc = -EIO;
	return rc;
}

/* Add one record to the open transaction. -EINVAL: this record alone is
 * refused (too large); other errors fail the batch. */
static int record_add(struct audit *a, struct audit_item *it, uint64_t seq, const char *time)
{
	const char *tenant = it->col[AUDIT_COL_TENANT];
	struct tenant_ent *te = NULL;
	uint8_t leaf[MERKLE_HASH];
	char hex[2 * MERKLE_HASH + 1];
	size_t len = 0;
	int rc;

	if (tenant != NULL) {
		te = tenant_map_put(&a->tenants, tenant);
		if (te == NULL)
			return -ENOMEM;
		util_hex(te->leaf, MERKLE_HASH, hex);
	}
	rc = audit_body_splice(a, it, seq, time, te ? te->seq + 1 : 0,
			       te && te->seq ? hex : NULL, &a->body_buf, &a->body_cap, &len);
	if (rc < 0)
		return rc;
	if (len > AUDIT_BODY_MAX)
		return -EINVAL;
	merkle_leaf_hash(a->body_buf, len, leaf);
	sqlite3_bind_int64(a->st_event, 1, (sqlite3_int64)seq);
	sqlite3_bind_text(a->st_event, 2, time, -1, SQLITE_STATIC);
	sqlite3_bind_text(a->st_event, 3, it->col[AUDIT_COL_EVENT], -1, SQLITE_STATIC);
	sqlite3_bind_text(a->st_event, 4, it->col[AUDIT_COL_OUTCOME], -1, SQLITE_STATIC);
	sqlite3_bind_text(a->st_event, 5, tenant, -1, SQLITE_STATIC);
	sqlite3_bind_text(a->st_event, 6, it->col[AUDIT_COL_PRINCIPAL], -1, SQLITE_STATIC);
	sqlite3_bind_text(a->st_event, 7, a->body_buf, (int)len, SQLITE_STATIC);
	sqlite3_bind_blob(a->st_event, 8, leaf, MERKLE_HASH, SQLITE_STATIC);
	rc = step_done(a->db, a->st_event);
	if (rc < 0)
		return rc == -EINVAL ? -EIO : rc;
	merkle_range_append(&a->range, leaf);
	if (te != NULL) {
		te->seq++;
		memcpy(te->leaf, leaf, MERKLE_HASH);
		if (!te->dirty) {
			te->dirty = true;
			te->next_dirty = a->dirty;
			a->dirty = te;
		}
	}
	return 0;
}

/* Inside an open transaction: the changed tenant heads and the compact
 * range as of now. derived_written() once that transaction committed. */
static int derived_write(struct audit *a)
{
	int rc;

	for (struct tenant_ent *te = a->dirty; te; te = te->next_dirty) {
		sqlite3_bind_text(a->st_tenant, 1, te->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(a->st_tenant, 2, (sqlite3_int64)te->seq);
		sqlite3_bind_blob(a->st_tenant, 3, te->leaf, MERKLE_HASH, SQLITE_STATIC);
		rc = step_done(a->db, a->st_tenant);
		if (rc < 0)
			return rc;
	}
	sqlite3_bind_int64(a->st_range, 1, (sqlite3_int64)a->range.size);
	sqlite3_bind_blob(a->st_range, 2, a->range.node,
			  (int)(merkle_range_count(a->range.size) * MERKLE_HASH), SQLITE_STATIC);
	return step_done(a->db, a->st_range);
}

static void derived_written(struct audit *a)
{
	struct tenant_ent *te = a->dirty, *next;

	for (; te; te = next) {
		next = te->next_dirty;
		te->dirty = false;
		te->next_dirty = NULL;
	}
	a->dirty = NULL;
	a->derived_size = a->range.size;
}

/* Write every record of the list in one transaction. Per-record results
 * go to each item (rc, seq). Returns 0, or the error that failed all. */
static int batch_commit(struct audit *a, struct audit_item *list)
{
	char time[UTIL_TIME_LEN];
	uint64_t size = atomic_load(&a->size), seq = size;
	int64_t now = util_now_us();
	const char *what = "begin";
	bool derived;
	int rc;

	if (now < a->last_time_us)
		now = a->last_time_us; /* times never go backwards within the store */
	if (util_time_format(now, true, time) < 0)
		return -EIO;
	rc = file_check(a);
	if (rc < 0)
		goto fail;
	rc = step_done(a->db, a->st_begin);
	if (rc < 0)
		goto fail;
	what = "insert";
	for (struct audit_item *it = list; it; it = it->next) {
		rc = record_add(a, it, seq + 1, time);
		if (rc == -EINVAL) {
			it->rc = -EINVAL;
			continue;
		}
		if (rc < 0)
			goto fail;
		it->rc = 0;
		it->seq = ++seq;
	}
	what = "tree";
	derived = a->range.size - a->derived_size >= AUDIT_DERIVED_EVERY;
	if (derived) {
		rc = derived_write(a);
		if (rc < 0)
			goto fail;
	}
	what = "commit";
	rc = step_done(a->db, a->st_commit);
	if (rc < 0)
		goto fail;
	if (derived)
		derived_written(a);
	a->last_time_us = now;
	atomic_store(&a->size, seq);
	return 0;
fail:
	/* nothing of the batch is committed; the in-memory range and tenant
	 * heads are reloaded from the file (and its records replayed) before
	 * the next write */
	set_failed(a, rc, what);
	return atomic_load(&a->fail_rc);
}

static int stored_note(struct audit *a, uint64_t size, char **note)
{
	sqlite3_stmt *st = NULL;
	int rc = audit_sqlite_rc(sqlite3_prepare_v2(a->db,
						    "SELECT note FROM checkpoints WHERE size = ?1",
						    -1, &st, NULL));

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*note = strdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
		rc = *note ? 0 : -ENOMEM;
	} else {
		rc = -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Sign and store a checkpoint of the current tree (its own transaction). */
static int checkpoint_make(struct audit *a, char **note_out, uint64_t *size_out)
{
	uint64_t size = atomic_load(&a->size);
	uint8_t root[MERKLE_HASH];
	char time[UTIL_TIME_LEN];
	char *note = NULL;
	int rc;

	if (!atomic_load(&a->writable))
		return atomic_load(&a->fail_rc);
	if (a->have_cp && a->last_cp_size == size) {
		rc = stored_note(a, size, &note);
		goto out;
	}
	merkle_range_root(&a->range, root);
	rc = note_checkpoint_sign(&a->signer, size, root, &note);
	if (rc < 0) {
		audit_log("cannot sign a checkpoint at size %" PRIu64 ": %s", size, strerror(-rc));
		goto out;
	}
	if (util_time_format(util_now_us(), true, time) < 0) {
		rc = -EIO;
		goto out;
	}
	rc = file_check(a);
	if (rc == 0)
		rc = step_done(a->db, a->st_begin);
	if (rc == 0) {
		sqlite3_bind_int64(a->st_cp, 1, (sqlite3_int64)size);
		sqlite3_bind_blob(a->st_cp, 2, root, MERKLE_HASH, SQLITE_STATIC);
		sqlite3_bind_text(a->st_cp, 3, note, -1, SQLITE_STATIC);
		sqlite3_bind_text(a->st_cp, 4, time, -1, SQLITE_STATIC);
		rc = step_done(a->db, a->st_cp);
	}
	if (rc == 0)
		rc = derived_write(a);
	if (rc == 0)
		rc = step_done(a->db, a->st_commit);
	if (rc < 0) {
		set_failed(a, rc, "checkpoint");
		rc = atomic_load(&a->fail_rc);
		goto out;
	}
	derived_written(a);
	a->last_cp_size = size;
	a->have_cp = true;
	atomic_store(&a->cp_size, size);
	a->last_cp_ms = util_mono_ms();
out:
	if (rc == 0) {
		if (size_out)
			*size_out = size;
		if (note_out) {
			*note_out = note;
			note = NULL;
		}
	}
	free(note);
	return rc;
}

/* Probe with a real write, then reload what is committed. */
static void try_recover(struct audit *a)
{
	struct cerr err = {{0}};
	int rc;

	if (a->gone)
		return;
	rc = file_check(a);
	if (rc == 0)
		rc = step_done(a->db, a->st_begin);
	if (rc == 0)
		rc = step_done(a->db, a->st_probe);
	if (rc == 0)
		rc = step_done(a->db, a->st_commit);
	if (rc == 0)
		rc = audit_state_load(a, &err);
	if (rc < 0) {
		if (!sqlite3_get_autocommit(a->db))
			(void)sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		if (rc == -ENOSPC)
			atomic_store(&a->fail_rc, -ENOSPC);
		a->retry_ms = a->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->retry_ms * 2;
		a->retry_at_ms = util_mono_ms() + a->retry_ms;
		return;
	}
	atomic_store(&a->writable, true);
	audit_log("%s is writable again at size %" PRIu64, a->path, atomic_load(&a->size));
}

/* Hand results back: waiters wake, async completions go to the ring and
 * the eventfd. Frees the items. */
static void complete(struct audit *a, struct audit_item *list, int batch_rc)
{
	struct audit_item *done = list;
	bool signal = false;

	pthread_mutex_lock(&a->lock);
	for (struct audit_item *it = list; it != NULL; it = it->next) {
		int rc = batch_rc < 0 ? batch_rc : it->rc;

		if (it->w != NULL) {
			it->w->rc = rc;
			it->w->seq = rc == 0 ? it->seq : 0;
			it->w->done = true;
			pthread_cond_signal(&it->w->cond);
		} else {
			/* room is reserved: outstanding <= done_cap */
			size_t i = (a->done_head + a->done_len) % a->done_cap;

			a->done[i] = (struct audit_done){.cookie = it->cookie, .rc = rc,
							 .seq = rc == 0 ? it->seq : 0};
			a->done_len++;
			signal = true;
		}
	}
	pthread_mutex_unlock(&a->lock);
	/* Outside the lock, so the woken loop does not block on it. No wake
	 * is lost: the poller drains under the lock and only then empties the
	 * eventfd, so a write after that leaves it readable. */
	if (signal) {
		uint64_t one = 1;

		if (write(a->efd, &one, sizeof(one)) < 0) {
			/* counter saturated: it is readable anyway */
		}
	}
	while (done != NULL) {
		struct audit_item *it = done;

		done = it->next;
		audit_item_free(it); /* ours: a blocking appender only reads its waiter */
	}
}

static void complete_cps(struct audit *a, struct audit_cpreq *cps, int rc, const char *note,
			 uint64_t size)
{
	bool signal = false;

	pthread_mutex_lock(&a->lock);
	while (cps) {
		struct audit_cpreq *c = cps;

		cps = c->next;
		if (c->w == NULL) {
			/* async: room is reserved like an append's */
			size_t i = (a->done_head + a->done_len) % a->done_cap;

			a->done[i] = (struct audit_done){.cookie = c->cookie, .rc = rc,
							 .checkpoint = true};
			if (rc == 0) {
				a->done[i].seq = size;
				a->done[i].note = strdup(note);
				if (a->done[i].note == NULL)
					a->done[i].rc = -ENOMEM;
			}
			a->done_len++;
			signal = true;
			free(c);
			continue;
		}
		c->w->rc = rc;
		c->w->seq = size;
		if (rc == 0) {
			c->w->note = strdup(note);
			if (c->w->note == NULL)
				c->w->rc = -ENOMEM;
		}
		c->w->done = true;
		pthread_cond_signal(&c->w->cond);
	}
	if (signal) {
		uint64_t one = 1;

		if (write(a->efd, &one, sizeof(one)) < 0) {
			/* counter saturated: it is readable anyway */
		}
	}
	pthread_mutex_unlock(&a->lock);
}

static bool timer_due(struct audit *a, int64_t now_ms)
{
	return a->has_signer && a->cp_interval_s > 0 && atomic_load(&a->writable) &&
	       atomic_load(&a->size) > a->last_cp_size &&
	       now_ms - a->last_cp_ms >= (int64_t)a->cp_interval_s * 1000;
}

static int64_t next_deadline_ms(struct audit *a)
{
	int64_t d = INT64_MAX;

	if (!atomic_load(&a->writable) && !a->gone)
		d = a->retry_at_ms;
	else if (a->has_signer && a->cp_interval_s > 0 && atomic_load(&a->size) > a->last_cp_size)
		d = a->last_cp_ms + (int64_t)a->cp_interval_s * 1000;
	return d;
}

static void wait_for_work(struct audit *a)
{
	while (!a->q_head && !a->cp_head && !a->stopping) {
		int64_t d = next_deadline_ms(a), now = util_mono_ms();
		struct timespec ts;

		if (d == INT64_MAX) {
			pthread_cond_wait(&a->wake, &a->lock);
			continue;
		}
		if (d <= now)
			return;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (d - now) / 1000;
		ts.tv_nsec += ((d - now) % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&a->wake, &a->lock, &ts) == ETIMEDOUT)
			return;
	}
}

/* Nobody waits for the writer. */
static bool writer_idle(struct audit *a)
{
	bool idle;

	pthread_mutex_lock(&a->lock);
	idle = a->q_head == NULL && a->cp_head == NULL;
	pthread_mutex_unlock(&a->lock);
	return idle;
}

/* Keep the WAL short without folding it on the reply path: the fold
 * thread does it (fold.c). SQLite restarts the WAL at a commit after a
 * fold that caught up; if constant load never lets that happen, fold
 * here once (with nothing new written meanwhile, the next commit
 * restarts it). */
static void wal_fold(struct audit *a)
{
	int behind;

	if (a->wal_pages < a->fold_asked) /* the WAL restarted */
		a->fold_asked = 0;
	/* The fold thread got within a few frames of the writer and nobody
	 * waits for the writer: fold the rest here (a handful of pages and
	 * one sync of the file), so the next commit rewinds the WAL and
	 * overwrites blocks it has; left to itself the fold stays a commit
	 * behind under steady load and the WAL grows (store.c: wal_prefill).
	 * Under heavy load (records waiting, large commits) the writer keeps
	 * writing instead: there a stall costs more than the faster syncs
	 * win (bench-audit, 64 appenders). */
	behind = atomic_load(&a->fold_behind);
	if (a->fold_asked > 0 && !atomic_load(&a->fold_busy) && behind >= 0 &&
	    behind <= WAL_REWIND_BEHIND && writer_idle(a)) {
		atomic_store(&a->fold_behind, -1);
		if (sqlite3_wal_checkpoint_v2(a->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
		    SQLITE_OK)
			a->wal_pages = a->fold_asked = 0;
		return;
	}
	if (a->wal_pages >= WAL_FORCE_PAGES) {
		if (sqlite3_wal_checkpoint_v2(a->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
		    SQLITE_OK)
			a->wal_pages = a->fold_asked = 0;
		return;
	}
	if (a->wal_pages >= a->fold_asked + WAL_FOLD_PAGES) {
		a->fold_asked = a->wal_pages;
		audit_fold_request(a);
	}
}

void *audit_writer_main(void *arg)
{
	struct audit *a = arg;

	pthread_setname_np(pthread_self(), "audit-writer");
	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct audit_item *list;
		struct audit_cpreq *cps;
		bool stopping, cp_count = false;
		int rc = 0;

		wait_for_work(a);
		list = a->q_head;
		cps = a->cp_head;
		a->q_head = a->q_tail = NULL;
		a->cp_head = a->cp_tail = NULL;
		a->q_len = 0;
		stopping = a->stopping;
		pthread_mutex_unlock(&a->lock);

		if (!atomic_load(&a->writable) && !a->gone && util_mono_ms() >= a->retry_at_ms)
			try_recover(a);
		if (list != NULL) {
			if (atomic_load(&a->writable))
				rc = batch_commit(a, list);
			else
				rc = atomic_load(&a->fail_rc);
			complete(a, list, rc);
			cp_count = rc == 0 && a->has_signer && a->cp_every > 0 &&
				   atomic_load(&a->size) - a->last_cp_size >= a->cp_every;
		}
		if (cps != NULL || cp_count || timer_due(a, util_mono_ms())) {
			char *note = NULL;
			uint64_t size = 0;

			rc = a->has_signer ? checkpoint_make(a, &note, &size) : -ENOKEY;
			complete_cps(a, cps, rc, note, size);
			free(note);
		}
		if (atomic_load(&a->writable))
			wal_fold(a);
		pthread_mutex_lock(&a->lock);
		if (stopping && a->q_head == NULL && a->cp_head == NULL)
			break;
	}
	pthread_mutex_unlock(&a->lock);

	if (a->has_signer && atomic_load(&a->writable) &&
	    (!a->have_cp || a->last_cp_size != atomic_load(&a->size))) {
		int rc = checkpoint_make(a, NULL, NULL);

		if (rc < 0)
			a->close_rc = rc;
	}
	/* a clean close leaves nothing to replay at the next open */
	if (atomic_load(&a->writable) && a->derived_size != a->range.size) {
		int rc = file_check(a);

		if (rc == 0)
			rc = step_done(a->db, a->st_begin);
		if (rc == 0)
			rc = derived_write(a);
		if (rc == 0)
			rc = step_done(a->db, a->st_commit);
		if (rc == 0)
			derived_written(a);
		else
			set_failed(a, rc, "close");
	}
	if (!atomic_load(&a->writable) && a->close_rc == 0)
		a->close_rc = atomic_load(&a->fail_rc);
	return NULL;
}

/* test_audit_fault.c — fail closed: a full disk (a real 4 MiB tmpfs),
 * injected write and sync errors (a SQLite VFS shim in front of the real
 * one), a removed or replaced file; nothing partial becomes visible, every
 * append is refused while the store cannot write, and the store recovers
 * by itself when it can write again (but never onto a file that was
 * removed). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "audit.h"
#include "test_audit_util.h"

#define ORIGIN "custody.test/audit"

struct tmpfs {
	char *dir;
	bool mounted;
};

static int tmpfs_setup(void **state)
{
	struct tmpfs *t = calloc(1, sizeof(*t));

	t->dir = tdir_new();
	if (mount("tmpfs", t->dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") == 0)
		t->mounted = true;
	*state = t;
	return 0;
}

static int tmpfs_teardown(void **state)
{
	struct tmpfs *t = *state;

	if (t->mounted && umount2(t->dir, MNT_DETACH) < 0)
		fprintf(stderr, "umount %s: %s\n", t->dir, strerror(errno));
	tdir_free(t->dir);
	free(t);
	return 0;
}

/* Fill the file system but leave bytes free; returns the filler's path. */
static char *fill_disk(const char *dir, off_t leave)
{
	char *p = tpath(dir, "filler");
	char buf[65536];
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	memset(buf, 'x', sizeof(buf));
	for (;;) {
		ssize_t n = write(fd, buf, sizeof(buf));

		if (n <= 0)
			break;
	}
	/* the last partial blocks too */
	while (write(fd, buf, 512) > 0)
		;
	if (leave > 0) {
		struct stat sb;

		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(ftruncate(fd, sb.st_size > leave ? sb.st_size - leave : 0), 0);
	}
	close(fd);
	return p;
}

static json_t *big_record(unsigned i)
{
	char pad[3001];

	memset(pad, 'p', 3000);
	pad[3000] = '\0';
	return json_pack("{s:s,s:s,s:s,s:i,s:s}", "event", "token", "outcome", "ok", "tenant",
			 i % 2 ? "ta" : "tb", "n", (int)i, "pad", pad);
}

static bool wait_writable(struct audit *a, bool want, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (audit_writable(a) == want)
			return true;
		usleep(10000);
	}
	return audit_writable(a) == want;
}

static void test_fault_disk_full(void **state)
{
	struct tmpfs *t = *state;
	struct tkey k;
	struct audit *a;
	char *path, *filler;
	struct audit_done d[64];
	uint64_t before, seq = 0, ok = 0, failed = 0, max_ok = 0;
	struct audit_verify_stats st = {0};
	struct cerr err = {{0}};
	int rc = 0;

	if (!t->mounted)
		{ print_message("SKIP: %s\n", "cannot mount a tmpfs (not root?): full-disk test skipped"); skip(); }
	tkey_init(&k, ORIGIN, 5);
	path = tpath(t->dir, "audit.db");
	a = topen(path, &k);
	tfill(a, 20, 3);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	filler = fill_disk(t->dir, 0);

	/* blocking appends until the disk says no */
	for (unsigned i = 0; i < 5000; i++) {
		rc = audit_append(a, big_record(i), &seq);
		if (rc < 0)
			break;
	}
	assert_true(rc == -ENOSPC || rc == -EIO);
	assert_false(audit_writable(a));
	before = audit_size(a);
	/* refused at once while it cannot write, both ways */
	rc = audit_append(a, big_record(1), &seq);
	assert_true(rc == -ENOSPC || rc == -EIO);
	rc = audit_append_async(a, big_record(1), 77);
	assert_true(rc == -ENOSPC || rc == -EIO);
	assert_int_equal(audit_size(a), before);

	/* space again: it recovers by itself, numbering continues densely */
	assert_int_equal(unlink(filler), 0);
	assert_true(wait_writable(a, true, 5000));
	assert_int_equal(audit_size(a), before);
	assert_int_equal(audit_append(a, big_record(1), &seq), 0);
	assert_int_equal(seq, before + 1);

	/* async batches into a disk filling up again: whatever reported ok is
	 * in the store, nothing else is */
	free(fill_disk(t->dir, 256 * 1024));
	before = audit_size(a);
	/* chunks of 10 (one batch each, or a few) until the disk says no */
	for (unsigned chunk = 0; chunk < 200 && failed == 0; chunk++) {
		uint64_t want = ok + failed + 10;

		for (unsigned i = 0; i < 10; i++)
			if (audit_append_async(a, big_record(i), i + 1) < 0)
				failed++;
		for (int tries = 0; ok + failed < want && tries < 500; tries++) {
			size_t n = audit_poll(a, d, 64);

			for (size_t i = 0; i < n; i++) {
				if (d[i].rc == 0) {
					ok++;
					if (d[i].seq > max_ok)
						max_ok = d[i].seq;
				} else {
					assert_true(d[i].rc == -ENOSPC || d[i].rc == -EIO);
					failed++;
				}
			}
			if (n == 0)
				usleep(10000);
		}
		assert_int_equal(ok + failed, want);
	}
	assert_true(failed > 0);
	assert_true(ok > 0);
	assert_int_equal(audit_size(a), before + ok);
	assert_true(max_ok == 0 || max_ok == before + ok);
	assert_int_equal(unlink(filler), 0);
	assert_true(wait_writable(a, true, 5000));
	tfill(a, 5, 3);
	assert_int_equal(audit_close(a), 0);

	/* everything written verifies: dense, chains intact, checkpoints */
	assert_int_equal(audit_verify_db(path, k.vkey, &st, &err), 0);
	assert_int_equal(st.records, before + ok + 5);
	free(filler);
	free(path);
}


/* ---- injected I/O errors: a VFS that forwards to the real one and fails
 * writes or syncs on demand, as a dying disk or a file made read-only
 * under the store would. ---------------------------------------------- */

enum { FAIL_NONE, FAIL_WRITE, FAIL_SYNC };
static atomic_int shim_fail = FAIL_NONE;
static atomic_int shim_failed; /* how many calls were failed */
static sqlite3_vfs *shim_real;
static sqlite3_vfs shim_vfs;

struct shim_file {
	sqlite3_file base;
	sqlite3_file *real; /* right after this struct, in the same block */
};

#define REAL(f) (((struct shim_file *)(f))->real)

static int shim_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static int shim_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int shim_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	if (atomic_load(&shim_fail) == FAIL_WRITE) {
		atomic_fetch_add(&shim_failed, 1);
		return SQLITE_IOERR_WRITE;
	}
	return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int shim_sync(sqlite3_file *f, int flags)
{
	if (atomic_load(&shim_fail) == FAIL_SYNC) {
		atomic_fetch_add(&shim_failed, 1);
		return SQLITE_IOERR_FSYNC;
	}
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int shim_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int shim_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int shim_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int shim_check_lock(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int shim_fcntl(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int shim_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int shim_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int shim_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, ext, pp);
}
static int shim_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void shim_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int shim_shm_unmap(sqlite3_file *f, int del)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

/* version 2: no xFetch, so SQLite never maps the file and every write
 * goes through xWrite */
static const sqlite3_io_methods shim_io = {
	2,	       shim_close,     shim_read,	shim_write,	  shim_truncate,
	shim_sync,     shim_size,      shim_lock,	shim_unlock,	  shim_check_lock,
	shim_fcntl,    shim_sector,    shim_devchar,	shim_shm_map,	  shim_shm_lock,
	shim_shm_barrier, shim_shm_unmap, NULL,		NULL,
};

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
		     int *out_flags)
{
	struct shim_file *sf = (struct shim_file *)f;
	int rc;

	(void)vfs;
	sf->real = (sqlite3_file *)(sf + 1);
	rc = shim_real->xOpen(shim_real, name, sf->real, flags, out_flags);
	f->pMethods = rc == SQLITE_OK && sf->real->pMethods ? &shim_io : NULL;
	return rc;
}

static void shim_install(void)
{
	shim_real = sqlite3_vfs_find(NULL);
	assert_non_null(shim_real);
	shim_vfs = *shim_real;
	shim_vfs.zName = "custody-test-faults";
	shim_vfs.szOsFile = (int)sizeof(struct shim_file) + shim_real->szOsFile;
	shim_vfs.xOpen = shim_open;
	shim_vfs.pAppData = NULL;
	assert_int_equal(sqlite3_vfs_register(&shim_vfs, 1), SQLITE_OK);
	atomic_store(&shim_fail, FAIL_NONE);
	atomic_store(&shim_failed, 0);
}

static void shim_remove(void)
{
	atomic_store(&shim_fail, FAIL_NONE);
	sqlite3_vfs_register(shim_real, 1);
	sqlite3_vfs_unregister(&shim_vfs);
}

/* Writes fail, then syncs fail: every append is refused with -EIO while
 * they do, the size never moves, the store recovers by itself once the
 * disk works, numbering continues without a gap, and the whole store
 * verifies — no record of a failed batch is in it. */
static void io_error_round(int mode)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct audit_verify_stats st = {0};
	struct cerr err = {{0}};
	struct audit_done d[16];
	struct tkey k;
	struct audit *a;
	uint64_t before, seq = 0;
	size_t got = 0;

	shim_install();
	tkey_init(&k, ORIGIN, 7);
	a = topen(path, &k);
	tfill(a, 10, 2);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	before = audit_size(a);

	atomic_store(&shim_fail, mode);
	assert_int_equal(audit_append(a, big_record(1), &seq), -EIO);
	assert_true(atomic_load(&shim_failed) > 0);
	assert_false(audit_writable(a));
	assert_int_equal(audit_size(a), before);
	/* refused at once while it cannot write, both ways, and no checkpoint */
	assert_int_equal(audit_append(a, big_record(2), &seq), -EIO);
	assert_int_equal(audit_append_async(a, big_record(3), 9), -EIO);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), -EIO);
	assert_int_equal(audit_size(a), before);
	/* still failing after a few retries: still closed */
	usleep(100 * 1000);
	assert_false(audit_writable(a));

	atomic_store(&shim_fail, FAIL_NONE);
	assert_true(wait_writable(a, true, 5000));
	assert_int_equal(audit_size(a), before);
	assert_int_equal(audit_append(a, big_record(4), &seq), 0);
	assert_int_equal(seq, before + 1);
	assert_int_equal(audit_append_async(a, big_record(5), 10), 0);
	for (int tries = 0; got == 0 && tries < 500; tries++) {
		got = audit_poll(a, d, 16);
		if (got == 0)
			usleep(10000);
	}
	assert_int_equal(got, 1);
	assert_int_equal(d[0].rc, 0);
	assert_int_equal(d[0].seq, before + 2);
	assert_int_equal(audit_close(a), 0);
	shim_remove();

	assert_int_equal(audit_verify_db(path, k.vkey, &st, &err), 0);
	assert_int_equal(st.records, before + 2);
	free(path);
	tdir_free(dir);
}

static void test_fault_write_error(void **state)
{
	(void)state;
	io_error_round(FAIL_WRITE);
}

static void test_fault_sync_error(void **state)
{
	(void)state;
	io_error_round(FAIL_SYNC);
}

static void test_fault_removed_file(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct tkey k;
	struct audit *a;
	uint64_t seq;

	tkey_init(&k, ORIGIN, 6);
	a = topen(path, &k);
	tfill(a, 5, 2);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(audit_append(a, json_pack("{s:s}", "event", "e"), &seq), -EIO);
	assert_false(audit_writable(a));
	assert_int_equal(audit_append_async(a, json_pack("{s:s}", "event", "e"), 1), -EIO);
	/* no recovery onto a new file: records written there would be lost */
	usleep(300 * 1000);
	assert_false(audit_writable(a));
	assert_int_equal(audit_append(a, json_pack("{s:s}", "event", "e"), &seq), -EIO);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), -EIO);
	assert_int_equal(audit_close(a), -EIO);
	free(path);
	tdir_free(dir);
}

static void test_fault_replaced_file(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db"), *other = tpath(dir, "other.db");
	struct audit *a, *b;
	uint64_t seq;

	b = topen(other, NULL);
	assert_int_equal(audit_close(b), 0);
	a = topen(path, NULL);
	tfill(a, 3, 1);
	assert_int_equal(rename(other, path), 0);
	assert_int_equal(audit_append(a, json_pack("{s:s}", "event", "e"), &seq), -EIO);
	assert_false(audit_writable(a));
	assert_int_equal(audit_close(a), -EIO);
	free(other);
	free(path);
	tdir_free(dir);
}

static void test_fault_removed_wal(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db"), *wal = NULL;
	struct audit *a;
	uint64_t seq;

	assert_true(asprintf(&wal, "%s-wal", path) > 0);
	a = topen(path, NULL);
	tfill(a, 3, 1);
	assert_int_equal(unlink(wal), 0);
	assert_int_equal(audit_append(a, json_pack("{s:s}", "event", "e"), &seq), -EIO);
	assert_false(audit_writable(a));
	assert_int_equal(audit_close(a), -EIO);
	free(wal);
	free(path);
	tdir_free(dir);
}

/* The async queue is bounded: beyond it, -EAGAIN, never unbounded memory. */
static void test_fault_queue_bound(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct audit *a;
	struct audit_done d[256];
	unsigned queued = 0, again = 0;
	size_t n, got = 0;

	if (getenv("CUSTODY_VALGRIND") != NULL) {
		tdir_free(dir);
		free(path);
		{ print_message("SKIP: %s\n", "65536 appends are too slow under valgrind"); skip(); }
	}
	a = topen(path, NULL);
	for (unsigned i = 0; i < 70000; i++) {
		int rc = audit_append_async(a, json_pack("{s:s}", "event", "e"), i);

		if (rc == 0)
			queued++;
		else if (rc == -EAGAIN)
			again++;
		else
			fail_msg("append_async: %d", rc);
	}
	assert_int_equal(queued, 65536);
	assert_int_equal(again, 70000 - 65536);
	while (got < queued) {
		n = audit_poll(a, d, 256);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(d[i].rc, 0);
		got += n;
		if (n == 0)
			usleep(1000);
	}
	assert_int_equal(audit_append_async(a, json_pack("{s:s}", "event", "e"), 1), 0);
	assert_int_equal(audit_close(a), 0); /* the unpolled completion is freed */
	free(path);
	tdir_free(dir);
}

int audit_group_fault(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fault_disk_full, tmpfs_setup, tmpfs_teardown),
		cmocka_unit_test(test_fault_write_error),
		cmocka_unit_test(test_fault_sync_error),
		cmocka_unit_test(test_fault_removed_file),
		cmocka_unit_test(test_fault_replaced_file),
		cmocka_unit_test(test_fault_removed_wal),
		cmocka_unit_test(test_fault_queue_bound),
	};

	return cmocka_run_group_tests_name("audit faults", tests, NULL, NULL);
}

/* test_audit_fault.c — fail closed: a full disk (a real 4 MiB tmpfs), a
 * removed or replaced file; nothing partial becomes visible, every append
 * is refused while the store cannot write, and the store recovers by
 * itself when space comes back (but never onto a file that was removed). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

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
		cmocka_unit_test(test_fault_removed_file),
		cmocka_unit_test(test_fault_replaced_file),
		cmocka_unit_test(test_fault_removed_wal),
		cmocka_unit_test(test_fault_queue_bound),
	};

	return cmocka_run_group_tests_name("audit faults", tests, NULL, NULL);
}

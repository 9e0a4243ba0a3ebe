/* test_audit_verify.c — offline verification names tampering: altered
 * bodies, leaves, columns, checkpoints and signatures, moved and deleted
 * rows, a corrupt file, a truncated WAL; and tenant exports that verify
 * with only the public key and fail when anything in them changes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "audit.h"
#include "merkle.h"
#include "note.h"
#include "test_audit_util.h"

#define ORIGIN "custody.test/audit"
#define NREC 40

struct fx {
	char *dir, *path;
	struct tkey k, other;
};

static char *tmpl_dir, *tmpl_path;

static void copy_file(const char *from, const char *to)
{
	char *buf = NULL;
	size_t len = 0;

	assert_int_equal(util_read_file(from, 1 << 28, &buf, &len), 0);
	assert_int_equal(util_write_file(to, buf, len, 0600), 0);
	free(buf);
}

/* Once per group: a closed store of 40 records over 3 tenants (and some
 * without a tenant), checkpoints at 0, 10, 25 and 40 (the close). Closing
 * folds the WAL into the file, so each test gets a copy of one file. */
static int tmpl_setup(void **state)
{
	struct tkey k;
	struct audit *a;

	tmpl_dir = tdir_new();
	tmpl_path = tpath(tmpl_dir, "audit.db");
	tkey_init(&k, ORIGIN, 21);
	a = topen(tmpl_path, &k);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	tfill(a, 10, 3);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	for (int i = 0; i < 15; i++)
		assert_int_equal(audit_append_async(a, json_pack("{s:s,s:s,s:i}", "event",
								 i % 2 ? "token" : "admin", "outcome",
								 "ok", "n", i),
						    (uint64_t)i),
				 0);
	for (unsigned got = 0; got < 15;) {
		struct audit_done d[16];
		size_t n = audit_poll(a, d, 16);

		for (size_t i = 0; i < n; i++)
			assert_int_equal(d[i].rc, 0);
		got += (unsigned)n;
		if (n == 0)
			usleep(1000);
	}
	assert_int_equal(audit_size(a), 25);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	tfill(a, 15, 3);
	assert_int_equal(audit_close(a), 0);
	return 0;
}

static int tmpl_teardown(void **state)
{
	tdir_free(tmpl_dir);
	free(tmpl_path);
	return 0;
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = tdir_new();
	f->path = tpath(f->dir, "audit.db");
	tkey_init(&f->k, ORIGIN, 21);
	tkey_init(&f->other, ORIGIN, 22);
	copy_file(tmpl_path, f->path);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	tdir_free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

static int verify(struct fx *f, const char *vkey, struct audit_verify_stats *st, char *msg)
{
	struct cerr err = {{0}};
	int rc = audit_verify_db(f->path, vkey, st, &err);

	strcpy(msg, err.msg);
	return rc;
}

static void drop_triggers(const char *path)
{
	tsql(path, "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;"
		   "DROP TRIGGER checkpoints_no_update; DROP TRIGGER checkpoints_no_delete;");
}

static void expect_bad(struct fx *f, const char *needle)
{
	char msg[CERR_MAX];
	int rc = verify(f, f->k.vkey, NULL, msg);

	if (rc != -EBADMSG || strstr(msg, needle) == NULL)
		fail_msg("expected -EBADMSG naming \"%s\", got %d: %s", needle, rc, msg);
}

/* Rewrite one record's body with edit(), recomputing its leaf so only the
 * tree (or the chain) can show it. */
static void rewrite_body(const char *path, uint64_t seq, void (*edit)(json_t *), bool fix_leaf)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	json_t *j;
	char *body;
	uint8_t leaf[32];

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT body FROM events WHERE seq = ?", -1, &st, NULL), 0);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	j = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
	sqlite3_finalize(st);
	assert_non_null(j);
	edit(j);
	body = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	json_decref(j);
	merkle_leaf_hash(body, strlen(body), leaf);
	assert_int_equal(sqlite3_prepare_v2(db,
					    fix_leaf ? "UPDATE events SET body = ?1, leaf = ?2 WHERE seq = ?3"
						     : "UPDATE events SET body = ?1 WHERE seq = ?3",
					    -1, &st, NULL),
			 0);
	sqlite3_bind_text(st, 1, body, -1, SQLITE_TRANSIENT);
	if (fix_leaf)
		sqlite3_bind_blob(st, 2, leaf, 32, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(body);
}

static void edit_outcome(json_t *j)
{
	json_object_set_new(j, "outcome", json_string("denied"));
}

static void edit_tenant_seq(json_t *j)
{
	json_object_set_new(j, "tenant_seq", json_integer(9));
}

/* ---- database -------------------------------------------------------------- */

static void test_verify_clean(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st = {0};
	char msg[CERR_MAX];

	assert_int_equal(verify(f, f->k.vkey, &st, msg), 0);
	assert_int_equal(st.records, NREC);
	assert_int_equal(st.checkpoints, 4);
	assert_int_equal(st.tenants, 3);
	/* without a key: hashes and chains, no signatures counted */
	assert_int_equal(verify(f, NULL, &st, msg), 0);
	assert_int_equal(st.checkpoints, 0);
	/* what a report needs: every record covered by the newest checkpoint */
	assert_int_equal(verify(f, f->k.vkey, &st, msg), 0);
	assert_int_equal(st.covered, NREC);
	assert_int_equal(st.uncovered, 0);
	assert_int_equal(st.uncovered_from, 0);
	assert_true(st.have_cp);
	assert_int_equal(st.cp_size, NREC);
	assert_int_equal(strlen(st.cp_key_id), 8);
	assert_non_null(strstr(f->k.vkey, st.cp_key_id));
	assert_true(strncmp(st.cp_note, ORIGIN "\n40\n", strlen(ORIGIN) + 4) == 0);
	/* another key of the same name: not this log's key (its own error,
	 * not tampering), naming both key ids */
	assert_int_equal(verify(f, f->other.vkey, &st, msg), -EKEYREJECTED);
	assert_non_null(strstr(msg, "this key is not the key of this log: key id "));
	{
		char want[64], have[64];

		snprintf(want, sizeof(want), "key id %.8s (" ORIGIN ")", strchr(f->other.vkey, '+') + 1);
		snprintf(have, sizeof(have), "log signed by %.8s (" ORIGIN ")", strchr(f->k.vkey, '+') + 1);
		assert_non_null(strstr(msg, want));
		assert_non_null(strstr(msg, have));
	}
	/* a malformed key is a usage error, not tampering */
	assert_int_equal(verify(f, "junk", &st, msg), -EINVAL);
}

static void test_verify_missing_file(void **state)
{
	struct cerr err = {{0}};
	struct fx *f = *state;
	char *p = tpath(f->dir, "nope.db");

	assert_int_equal(audit_verify_db(p, f->k.vkey, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "nope.db"));
	free(p);
}

static void test_verify_triggers_hold(void **state)
{
	struct fx *f = *state;
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE events SET outcome = 'x' WHERE seq = 2", 0, 0, 0),
			     SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events WHERE seq = 40", 0, 0, 0), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE checkpoints SET note = 'x'", 0, 0, 0), SQLITE_OK);
	sqlite3_close(db);
	{
		struct audit_verify_stats st = {0};
		char msg[CERR_MAX];

		assert_int_equal(verify(f, f->k.vkey, &st, msg), 0);
		assert_int_equal(st.records, NREC);
	}
}

static void test_verify_altered_body(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	rewrite_body(f->path, 7, edit_outcome, false);
	expect_bad(f, "record 7: body does not match its leaf hash");
}

static void test_verify_altered_body_and_leaf(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	/* the newest record: nothing chains to it, only the tree shows it */
	rewrite_body(f->path, NREC, edit_outcome, true);
	tsql(f->path, "UPDATE events SET outcome = 'denied' WHERE seq = 40");
	expect_bad(f, "checkpoint at size 40: root does not match the records");
}

static void test_verify_altered_chain(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	rewrite_body(f->path, 5, edit_tenant_seq, true); /* t1's 2nd record (2,5,8..) */
	expect_bad(f, "tenant t1: record 5 has tenant_seq 9, expected 2");
}

static void test_verify_altered_leaf(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	tsql(f->path, "UPDATE events SET leaf = zeroblob(32) WHERE seq = 12");
	expect_bad(f, "record 12: body does not match its leaf hash");
}

static void test_verify_altered_column(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	tsql(f->path, "UPDATE events SET tenant = 't0' WHERE seq = 3");
	expect_bad(f, "record 3: indexed columns differ from its body");
}

static void test_verify_deleted_row(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	tsql(f->path, "DELETE FROM events WHERE seq = 20");
	expect_bad(f, "record 20 is missing (next is 21)");
}

static void test_verify_deleted_tail(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	tsql(f->path, "DELETE FROM events WHERE seq > 37");
	expect_bad(f, "checkpoint at size 40 covers records that are missing (the store ends at 37)");
}

static void test_verify_deleted_tail_and_checkpoint(void **state)
{
	struct fx *f = *state;

	/* a careful attacker also drops the checkpoint: the stored tenant
	 * heads and range (written at close) still cover the lost records */
	drop_triggers(f->path);
	tsql(f->path, "DELETE FROM events WHERE seq > 37; DELETE FROM checkpoints WHERE size = 40");
	expect_bad(f, "the stored compact range and tenant heads are ahead of the records "
		      "(at 40; the store ends at 37)");
}

static void test_verify_reordered(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	/* swap rows 5 and 6 completely (bodies, leaves and columns) */
	tsql(f->path, "CREATE TEMP TABLE s AS SELECT * FROM events WHERE seq IN (5, 6);"
		      "DELETE FROM events WHERE seq IN (5, 6);"
		      "INSERT INTO events SELECT CASE seq WHEN 5 THEN 6 ELSE 5 END, time, event, outcome,"
		      " tenant, principal, body, leaf FROM s;");
	expect_bad(f, "record 5: body says seq 6");
}

static void test_verify_checkpoint_note(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	/* flip one base64 character of the signature of the checkpoint at 25 */
	tsql(f->path, "UPDATE checkpoints SET note = substr(note, 1, length(note) - 30) ||"
		      " CASE substr(note, -30, 1) WHEN 'A' THEN 'B' ELSE 'A' END || substr(note, -29)"
		      " WHERE size = 25");
	expect_bad(f, "checkpoint at size 25: signature does not verify");
}

static void test_verify_checkpoint_forged(void **state)
{
	struct fx *f = *state;
	uint8_t root[32];
	char *note = NULL, *sql = NULL;
	struct merkle_range r;

	/* a checkpoint for a different root, signed by another key that
	 * claims the right name */
	merkle_range_init(&r);
	memset(root, 0x42, sizeof(root));
	assert_int_equal(note_checkpoint_sign(&f->other.signer, 10, root, &note), 0);
	drop_triggers(f->path);
	assert_true(asprintf(&sql, "UPDATE checkpoints SET note = '%s', root = x'%s' WHERE size = 10", note,
			     "4242424242424242424242424242424242424242424242424242424242424242") > 0);
	tsql(f->path, sql);
	expect_bad(f, "checkpoint at size 10: root does not match the records");
	free(sql);
	free(note);
}

static void test_verify_checkpoint_size(void **state)
{
	struct fx *f = *state;

	drop_triggers(f->path);
	/* claim the checkpoint at 10 covers 11 */
	tsql(f->path, "UPDATE checkpoints SET size = 11 WHERE size = 10");
	expect_bad(f, "checkpoint at size 11:");
}

static void test_verify_corrupt_file(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	FILE *fp;
	struct stat sb;

	/* garbage over the middle of the file: unreadable or tampered, never ok */
	assert_int_equal(stat(f->path, &sb), 0);
	fp = fopen(f->path, "r+");
	assert_non_null(fp);
	fseek(fp, sb.st_size / 2, SEEK_SET);
	for (int i = 0; i < 4096; i++)
		fputc(0xa5, fp);
	fclose(fp);
	{
		int rc = audit_verify_db(f->path, f->k.vkey, NULL, &err);

		assert_true(rc == -EIO || rc == -EBADMSG);
		assert_true(strlen(err.msg) > 0);
	}
	/* and a file that is not SQLite at all */
	fp = fopen(f->path, "r+");
	fputs("definitely not a database header", fp);
	fclose(fp);
	assert_int_equal(audit_verify_db(f->path, f->k.vkey, NULL, &err), -EIO);
	assert_true(strlen(err.msg) > 0);
}

static void test_verify_truncated_wal(void **state)
{
	struct fx *f = *state;
	char *p2 = tpath(f->dir, "live.db"), *c = tpath(f->dir, "copy.db");
	char *w2 = NULL, *wc = NULL;
	struct cerr err = {{0}};
	struct audit_verify_stats st = {0};
	struct audit *a;
	struct stat sb;

	assert_true(asprintf(&w2, "%s-wal", p2) > 0 && asprintf(&wc, "%s-wal", c) > 0);
	a = topen(p2, &f->k);
	tfill(a, 30, 2);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	/* a copy of the live store: main file + WAL, records in the WAL */
	copy_file(p2, c);
	copy_file(w2, wc);
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), 0);
	assert_int_equal(st.records, 30);
	assert_int_equal(stat(wc, &sb), 0);
	assert_true(sb.st_size > 32);
	assert_int_equal(truncate(wc, sb.st_size - 100), 0);
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), -EIO);
	assert_non_null(strstr(err.msg, "truncated"));
	assert_int_equal(truncate(wc, 20), 0);
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), -EIO);
	assert_int_equal(audit_close(a), 0);
	free(p2);
	free(c);
	free(w2);
	free(wc);
}

/* A WAL written out with zeros at open (wal_prefill_frames): whole frames
 * only, records after a crash all there (SQLite's recovery stops at the
 * zeros), a crash image with a WAL shorter than the prefill extended on
 * reopen without losing a record, and verify content with all of it. */
static off_t wal_size(const char *wal)
{
	struct stat sb;

	assert_int_equal(stat(wal, &sb), 0);
	return sb.st_size;
}

static struct audit *topen_prefill(const char *path, struct tkey *k, unsigned frames)
{
	struct audit_opts o = {.signer = &k->signer, .wal_prefill_frames = frames};
	struct cerr err = {{0}};
	struct audit *a = NULL;

	if (audit_open(path, &o, &a, &err) != 0)
		fail_msg("audit_open: %s", err.msg);
	return a;
}

static void test_wal_prefill(void **state)
{
	struct fx *f = *state;
	char *p = tpath(f->dir, "live.db"), *c = tpath(f->dir, "copy.db");
	char *w = NULL, *wc = NULL;
	const off_t frame = 24 + 4096, want = 32 + 256 * frame;
	struct audit_verify_stats st = {0};
	struct cerr err = {{0}};
	struct audit *a;
	uint64_t seq = 0;

	assert_true(asprintf(&w, "%s-wal", p) > 0 && asprintf(&wc, "%s-wal", c) > 0);
	a = topen_prefill(p, &f->k, 256);
	assert_int_equal(wal_size(w), want);
	tfill(a, 30, 3);
	assert_int_equal(audit_checkpoint(a, NULL, NULL), 0);
	/* a crash now: main file + WAL (valid frames, then zeros) */
	copy_file(p, c);
	copy_file(w, wc);
	assert_int_equal(wal_size(wc), want);
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), 0);
	assert_int_equal(st.records, 30);
	assert_int_equal(audit_close(a), 0);

	/* reopening the crash image: every record, numbering goes on */
	a = topen_prefill(c, &f->k, 512);
	assert_int_equal(audit_size(a), 30);
	assert_int_equal((wal_size(wc) - 32) % frame, 0);
	assert_true(wal_size(wc) >= 32 + 512 * frame);
	assert_int_equal(audit_append(a, json_pack("{s:s,s:s}", "event", "token", "tenant", "t1"),
				      &seq), 0);
	assert_int_equal(seq, 31);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), 0);
	assert_int_equal(st.records, 31);

	/* a WAL cut to its valid frames (no zeros after them) is extended on
	 * reopen from a frame boundary, and loses nothing */
	a = topen_prefill(p, &f->k, 0);
	tfill(a, 5, 2);
	copy_file(p, c);
	copy_file(w, wc);
	assert_int_equal(audit_close(a), 0);
	{
		off_t sz = wal_size(wc);
		char *before = NULL, *after = NULL;
		size_t bl = 0, al = 0;

		assert_true(sz > 32 && sz < want && (sz - 32) % frame == 0);
		assert_int_equal(util_read_file(wc, 1 << 28, &before, &bl), 0);
		a = topen_prefill(c, &f->k, 1024);
		assert_int_equal(audit_size(a), 35);
		assert_int_equal(wal_size(wc), 32 + 1024 * frame);
		/* what SQLite wrote is untouched */
		assert_int_equal(util_read_file(wc, 1 << 28, &after, &al), 0);
		assert_memory_equal(before, after, bl);
		assert_int_equal(audit_close(a), 0);
		free(before);
		free(after);
	}
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), 0);
	assert_int_equal(st.records, 35);

	/* written out but not yet committed to: a WAL of zeros, header too
	 * (SQLite reads it as empty), is not a truncated WAL */
	{
		char *z = calloc(1, (size_t)(32 + 64 * frame));

		assert_non_null(z);
		assert_int_equal(util_write_file(wc, z, (size_t)(32 + 64 * frame), 0600), 0);
		free(z);
	}
	assert_int_equal(audit_verify_db(c, f->k.vkey, &st, &err), 0);
	assert_int_equal(st.records, 35);
	free(p);
	free(c);
	free(w);
	free(wc);
}

/* Under steady one-record commits the WAL rewinds (the fold thread gets
 * close, the writer finishes it): it never grows past the prefill, so
 * commits keep overwriting blocks the file has (writer.c: wal_fold). */
static void test_wal_rewinds(void **state)
{
	struct fx *f = *state;
	char *p = tpath(f->dir, "steady.db"), *w = NULL;
	const off_t frame = 24 + 4096, want = 32 + 2048 * frame;
	struct audit *a;

	if (getenv("CUSTODY_VALGRIND") != NULL) {
		free(p);
		skip();
	}
	assert_true(asprintf(&w, "%s-wal", p) > 0);
	a = topen_prefill(p, &f->k, 2048);
	/* ~3.5 frames a commit: ~5,300 frames without a rewind. A fold is
	 * asked for every 1,000 frames; a slow machine may let the WAL grow
	 * a little past the prefill before one completes, not to this. */
	tfill(a, 1500, 7);
	assert_true(wal_size(w) >= want);
	assert_true(wal_size(w) <= 32 + 3072 * frame);
	assert_int_equal(audit_size(a), 1500);
	assert_int_equal(audit_close(a), 0);
	free(p);
	free(w);
}


/* ---- honesty: coverage, the key, a checkpoint the user kept ---------------- */

static char *stored_note(const char *path, uint64_t size)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char *n;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT note FROM checkpoints WHERE size = ?", -1,
					    &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	n = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static int verify_opts(struct fx *f, const char *vkey, const char *note,
		       struct audit_verify_stats *st, char *msg)
{
	struct cerr err = {{0}};
	struct audit_verify_opts o = {.vkey = vkey, .checkpoint = note};
	int rc = audit_verify_db_with(f->path, &o, st, &err);

	strcpy(msg, err.msg);
	return rc;
}

static void test_verify_wrong_origin(void **state)
{
	struct fx *f = *state;
	struct tkey k;
	char msg[CERR_MAX], hex[9];
	struct audit_verify_stats st;

	/* another broker's key (another origin) */
	tkey_init(&k, "other.example/audit", 21);
	assert_int_equal(verify(f, k.vkey, &st, msg), -EKEYREJECTED);
	memcpy(hex, strchr(k.vkey, '+') + 1, 8);
	hex[8] = '\0';
	assert_non_null(strstr(msg, hex));
	assert_non_null(strstr(msg, "(other.example/audit), log signed by "));
	assert_non_null(strstr(msg, "(" ORIGIN ")"));
}

/* records after the newest checkpoint are reported, not called verified */
static void test_verify_uncovered_tail(void **state)
{
	struct fx *f = *state;
	struct audit_opts o = {0};
	struct audit_verify_stats st;
	struct cerr err = {{0}};
	struct audit *a;
	char msg[CERR_MAX];

	assert_int_equal(audit_open(f->path, &o, &a, &err), 0); /* no signer: no checkpoint */
	tfill(a, 5, 3);
	assert_int_equal(audit_checkpoint_size(a), NREC);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(verify(f, f->k.vkey, &st, msg), 0);
	assert_int_equal(st.records, NREC + 5);
	assert_int_equal(st.covered, NREC);
	assert_int_equal(st.uncovered, 5);
	assert_int_equal(st.uncovered_from, NREC + 1);
	assert_int_equal(st.cp_size, NREC);
}

/* no checkpoint covers any record: not verified (-ENODATA), whatever the
 * hashes say */
static void test_verify_nothing_covered(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st;
	char msg[CERR_MAX];

	drop_triggers(f->path);
	tsql(f->path, "DELETE FROM checkpoints WHERE size > 0");
	assert_int_equal(verify(f, f->k.vkey, &st, msg), -ENODATA);
	assert_non_null(strstr(msg, "none of its 40 records is covered by a signed checkpoint"));
	assert_int_equal(st.records, NREC);
	assert_int_equal(st.covered, 0);
	assert_int_equal(st.uncovered, NREC);
	assert_int_equal(st.uncovered_from, 1);
	tsql(f->path, "DELETE FROM checkpoints");
	assert_int_equal(verify(f, f->k.vkey, &st, msg), -ENODATA);
}

/* a record rewritten after its checkpoints were dropped (and the stored
 * tree row rewound): the log's own checkpoints cannot show it, the one the
 * user kept does */
static void test_verify_trusted_checkpoint(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st;
	char msg[CERR_MAX], *n25 = stored_note(f->path, 25), *alien = NULL;
	uint8_t root[32] = {7};

	/* untouched: the kept checkpoint matches */
	assert_int_equal(verify_opts(f, f->k.vkey, n25, &st, msg), 0);
	assert_true(st.trusted);
	assert_int_equal(st.trusted_size, 25);
	/* a checkpoint signed by another key is the user's mistake: -EINVAL */
	assert_int_equal(note_checkpoint_sign(&f->other.signer, 25, root, &alien), 0);
	assert_int_equal(verify_opts(f, f->k.vkey, alien, &st, msg), -EINVAL);
	free(alien);
	/* a checkpoint beyond the store's end: records were removed */
	assert_int_equal(note_checkpoint_sign(&f->k.signer, 45, root, &alien), 0);
	assert_int_equal(verify_opts(f, f->k.vkey, alien, &st, msg), -EBADMSG);
	assert_non_null(strstr(msg, "the store ends at record 40, before the checkpoint you trust "
				    "(size 45)"));
	free(alien);

	drop_triggers(f->path);
	rewrite_body(f->path, 12, edit_outcome, true); /* no tenant: no chain */
	tsql(f->path, "UPDATE events SET outcome = 'denied' WHERE seq = 12;"
		      "DELETE FROM checkpoints WHERE size >= 25; DELETE FROM tenants;"
		      "UPDATE tree SET size = 0, nodes = x''");
	if (verify(f, f->k.vkey, &st, msg) != 0)
		fail_msg("%s", msg);
	assert_int_equal(st.covered, 10);
	assert_int_equal(st.uncovered, 30);
	assert_int_equal(st.uncovered_from, 11);
	assert_int_equal(verify_opts(f, f->k.vkey, n25, &st, msg), -EBADMSG);
	assert_non_null(strstr(msg, "the checkpoint you trust (size 25) does not match this log"));
	free(n25);
}

/* custodyd must not sign an existing log under another origin or key */
static void test_open_other_origin(void **state)
{
	struct fx *f = *state;
	struct tkey k;
	struct audit_opts o = {0};
	struct cerr err = {{0}};
	struct audit *a = NULL;

	tkey_init(&k, "renamed.example/audit", 21);
	o.signer = &k.signer;
	assert_int_equal(audit_open(f->path, &o, &a, &err), -EKEYREJECTED);
	assert_non_null(strstr(err.msg, "signed as origin " ORIGIN));
	assert_non_null(strstr(err.msg, "audit.origin renamed.example/audit"));
	assert_non_null(strstr(err.msg, "fixed at init"));
	/* same origin, another key */
	o.signer = &f->other.signer;
	assert_int_equal(audit_open(f->path, &o, &a, &err), -EKEYREJECTED);
	/* the right one opens */
	o.signer = &f->k.signer;
	assert_int_equal(audit_open(f->path, &o, &a, &err), 0);
	assert_int_equal(audit_close(a), 0);
}

/* ---- exports --------------------------------------------------------------- */

static char *do_export(struct fx *f, const char *tenant, int64_t since, int64_t until,
		       const char *from, int *rc_out)
{
	char *out = tpath(f->dir, "export.json");
	struct audit_opts o = {.signer = &f->k.signer};
	struct cerr err = {{0}};
	struct audit *a;
	FILE *fp = fopen(out, "w");

	assert_non_null(fp);
	assert_int_equal(audit_open(f->path, &o, &a, &err), 0);
	*rc_out = audit_export(a, tenant, since, until, from, fp, &err);
	fclose(fp);
	assert_int_equal(audit_close(a), 0);
	return out;
}

static int vexport(struct fx *f, const char *path, struct audit_verify_stats *st, char *msg)
{
	struct cerr err = {{0}};
	int rc = verify_export_both(path, f->k.vkey, NULL, st, &err);

	if (rc != 0 && getenv("TEST_VERBOSE"))
		fprintf(stderr, "verify export: %d %s\n", rc, err.msg);
	strcpy(msg, err.msg);
	return rc;
}

static void test_export_roundtrip(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st = {0};
	char msg[CERR_MAX];
	int rc;
	char *p = do_export(f, "t1", 0, 0, NULL, &rc);
	json_t *doc;

	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.records, 8); /* t1: 10 records -> 3, 15 -> 5 */
	assert_int_equal(st.checkpoints, 1);
	doc = json_load_file(p, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(doc, "format")), "custody-audit-export/1");
	assert_int_equal(json_integer_value(json_object_get(doc, "tree_size")), NREC);
	assert_true(json_is_null(json_object_get(doc, "consistency")));
	/* the window and chain it states */
	assert_true(json_is_null(json_object_get(doc, "since")));
	assert_true(json_is_null(json_object_get(doc, "until")));
	assert_int_equal(json_integer_value(json_object_get(doc, "first_tenant_seq")), 1);
	assert_int_equal(json_integer_value(json_object_get(doc, "last_tenant_seq")), 8);
	/* nothing of other tenants but hashes: no other tenant's name */
	{
		char *s = json_dumps(doc, 0);

		assert_null(strstr(s, "\\\"t0\\\""));
		assert_null(strstr(s, "\\\"t2\\\""));
		free(s);
	}
	json_decref(doc);
	assert_int_equal(st.first_tenant_seq, 1);
	assert_int_equal(st.last_tenant_seq, 8);
	assert_int_equal(st.cp_size, NREC);
	/* a wrong key: its own error, not tampering */
	{
		struct cerr err = {{0}};
		struct tkey k;

		assert_int_equal(verify_export_both(p, f->other.vkey, NULL, &st, &err), -EKEYREJECTED);
		assert_non_null(strstr(err.msg, "this key is not the key of this log"));
		tkey_init(&k, "other.example/audit", 21);
		assert_int_equal(verify_export_both(p, k.vkey, NULL, &st, &err), -EKEYREJECTED);
		assert_non_null(strstr(err.msg, "log signed by "));
	}
	/* unknown tenant: an empty, valid export */
	free(p);
	p = do_export(f, "nobody", 0, 0, NULL, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.records, 0);
	free(p);
}

/* an earlier checkpoint the customer kept: consistency proof */
static void test_export_consistency(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st = {0};
	char msg[CERR_MAX], *note = NULL, *p;
	struct audit *a;
	int rc;

	a = topen(f->path, &f->k);
	assert_int_equal(audit_checkpoint(a, &note, NULL), 0); /* size 40 */
	tfill(a, 7, 3);
	assert_int_equal(audit_close(a), 0);
	p = do_export(f, "t2", 0, 0, note, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.checkpoints, 2);
	free(p);
	/* a checkpoint of another log (other key): refused */
	{
		uint8_t root[32] = {1};
		char *alien = NULL;
		struct tkey k2;

		tkey_init(&k2, ORIGIN, 99);
		assert_int_equal(note_checkpoint_sign(&k2.signer, 12, root, &alien), 0);
		p = do_export(f, "t2", 0, 0, alien, &rc);
		assert_int_equal(rc, -EINVAL);
		free(p);
		/* same key but a root this log never had: a fork */
		free(alien);
		assert_int_equal(note_checkpoint_sign(&f->k.signer, 12, root, &alien), 0);
		p = do_export(f, "t2", 0, 0, alien, &rc);
		assert_int_equal(rc, -EBADMSG);
		free(p);
		free(alien);
	}
	free(note);
}

static void test_export_time_window(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st = {0};
	char msg[CERR_MAX], *p;
	int64_t mid;
	struct audit *a;
	int rc;

	usleep(20000);
	mid = util_now_us();
	a = topen(f->path, &f->k);
	tfill(a, 9, 3);
	assert_int_equal(audit_close(a), 0);
	/* only the newest three t0 records: the first's tenant_prev is given */
	p = do_export(f, "t0", mid, 0, NULL, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.records, 3);
	free(p);
	p = do_export(f, "t0", 0, mid, NULL, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.records, 9);
	free(p);
}

/* Load the export, apply edit, write it back, expect -EBADMSG naming needle. */
static void export_tamper(struct fx *f, void (*edit)(json_t *), const char *needle)
{
	char msg[CERR_MAX];
	int rc;
	char *note = NULL, *p;
	json_t *doc;
	struct audit *a = topen(f->path, &f->k);

	assert_int_equal(audit_checkpoint(a, &note, NULL), 0); /* size 40 */
	tfill(a, 6, 3);
	assert_int_equal(audit_close(a), 0);
	p = do_export(f, "t1", 0, 0, note, &rc);
	free(note);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, NULL, msg), 0);
	doc = json_load_file(p, 0, NULL);
	assert_non_null(doc);
	edit(doc);
	assert_int_equal(json_dump_file(doc, p, JSON_COMPACT), 0);
	json_decref(doc);
	rc = vexport(f, p, NULL, msg);
	if (rc != -EBADMSG || strstr(msg, needle) == NULL)
		fail_msg("expected -EBADMSG naming \"%s\", got %d: %s", needle, rc, msg);
	free(p);
}

static void ed_remove_record(json_t *d)
{
	json_array_remove(json_object_get(d, "records"), 3);
}

static void ed_change_body(json_t *d)
{
	json_t *r = json_array_get(json_object_get(d, "records"), 2);
	char *b = strdup(json_string_value(json_object_get(r, "body")));
	char *o = strstr(b, "\"outcome\":\"ok\"");

	assert_non_null(o);
	memcpy(o + 11, "no", 2);
	json_object_set_new(r, "body", json_string(b));
	free(b);
}

static void ed_swap_records(json_t *d)
{
	json_t *recs = json_object_get(d, "records"), *r1 = json_incref(json_array_get(recs, 1));

	json_array_remove(recs, 1);
	json_array_insert_new(recs, 2, r1);
}

static void ed_proof_hash(json_t *d)
{
	json_t *inc = json_object_get(json_array_get(json_object_get(d, "records"), 0), "inclusion");

	json_array_set_new(inc, 0, json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
}

/* The top sibling of the third record's proof changed: records 1 and 2
 * verified first, so the verifier remembers the nodes this walk meets;
 * the forged sibling must still fail, naming that record. */
static char forged_needle[64];

static void ed_proof_top_sibling(json_t *d)
{
	json_t *r = json_array_get(json_object_get(d, "records"), 2);
	json_t *inc = json_object_get(r, "inclusion");
	size_t n = json_array_size(inc);
	char *h;

	assert_true(n >= 2);
	h = strdup(json_string_value(json_array_get(inc, n - 1)));
	h[0] = h[0] == 'A' ? 'B' : 'A';
	json_array_set_new(inc, n - 1, json_string(h));
	free(h);
	snprintf(forged_needle, sizeof(forged_needle),
		 "record %" JSON_INTEGER_FORMAT ": body is not in the signed tree",
		 json_integer_value(json_object_get(r, "seq")));
}

static void ed_checkpoint(json_t *d)
{
	char *n = strdup(json_string_value(json_object_get(d, "checkpoint")));

	n[strlen(ORIGIN) + 1] = '9'; /* the size line */
	json_object_set_new(d, "checkpoint", json_string(n));
	free(n);
}

static void ed_tree_size(json_t *d)
{
	json_object_set_new(d, "tree_size", json_integer(3));
}

static void ed_consistency(json_t *d)
{
	json_t *p = json_object_get(json_object_get(d, "consistency"), "proof");

	json_array_set_new(p, 0, json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
}

static void ed_tenant(json_t *d)
{
	json_object_set_new(d, "tenant", json_string("t2"));
}

static void ed_not_json(json_t *d)
{
	json_object_clear(d);
}

static void test_export_removed_record(void **state)
{
	export_tamper(*state, ed_remove_record, "tenant t1: record");
}

static void test_export_changed_body(void **state)
{
	export_tamper(*state, ed_change_body, "inclusion proof does not verify");
}

static void test_export_swapped(void **state)
{
	export_tamper(*state, ed_swap_records, "has tenant_seq 3, expected 2");
}

static void test_export_proof(void **state)
{
	export_tamper(*state, ed_proof_hash, "inclusion proof does not verify");
}

static void test_export_proof_memo(void **state)
{
	export_tamper(*state, ed_proof_top_sibling, forged_needle);
}

static void test_export_checkpoint(void **state)
{
	export_tamper(*state, ed_checkpoint, "signature does not verify");
}

static void test_export_tree_size(void **state)
{
	export_tamper(*state, ed_tree_size, "tree_size");
}

static void test_export_consistency_tamper(void **state)
{
	export_tamper(*state, ed_consistency, "consistency proof does not verify");
}

static void test_export_other_tenant(void **state)
{
	export_tamper(*state, ed_tenant, "belongs to another tenant");
}

/* Export t1 (since: from that time on), apply edit, expect rc naming needle. */
static void export_edit(struct fx *f, int64_t since, void (*edit)(json_t *), int want,
			const char *needle)
{
	char msg[CERR_MAX];
	int rc;
	char *p = do_export(f, "t1", since, 0, NULL, &rc);
	json_t *doc;

	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, NULL, msg), 0);
	doc = json_load_file(p, 0, NULL);
	assert_non_null(doc);
	edit(doc);
	assert_int_equal(json_dump_file(doc, p, JSON_COMPACT), 0);
	json_decref(doc);
	rc = vexport(f, p, NULL, msg);
	if (rc != want || strstr(msg, needle) == NULL)
		fail_msg("expected %d naming \"%s\", got %d: %s", want, needle, rc, msg);
	free(p);
}

/* the tenant's two oldest records cut, first_tenant_seq adjusted to fit */
static void ed_drop_oldest(json_t *d)
{
	json_array_remove(json_object_get(d, "records"), 0);
	json_array_remove(json_object_get(d, "records"), 0);
	json_object_set_new(d, "first_tenant_seq", json_integer(3));
}

static void ed_drop_oldest_only(json_t *d)
{
	json_array_remove(json_object_get(d, "records"), 0);
}

static void ed_no_since(json_t *d)
{
	json_object_del(d, "since");
}

static void ed_no_previous(json_t *d)
{
	json_t *body;

	json_array_remove(json_object_get(d, "records"), 0);
	json_object_set_new(d, "previous", json_null());
	body = json_loads(json_string_value(json_object_get(
				  json_array_get(json_object_get(d, "records"), 0), "body")),
			  0, NULL);
	json_object_set(d, "first_tenant_seq", json_object_get(body, "tenant_seq"));
	json_decref(body);
}

static void ed_drop_newest(json_t *d)
{
	json_t *r = json_object_get(d, "records");

	json_array_remove(r, json_array_size(r) - 1);
	json_object_set_new(d, "last_tenant_seq",
			    json_integer(json_integer_value(json_object_get(d, "last_tenant_seq")) - 1));
}

static void ed_no_next(json_t *d)
{
	json_object_set_new(d, "until", json_null());
}

/* Export t1 up to until, apply edit, expect rc naming needle. */
static void export_edit_until(struct fx *f, int64_t until, void (*edit)(json_t *), int want,
			      const char *needle)
{
	char msg[CERR_MAX];
	int rc;
	char *p = do_export(f, "t1", 0, until, NULL, &rc);
	json_t *doc;

	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, NULL, msg), 0);
	doc = json_load_file(p, 0, NULL);
	assert_non_null(doc);
	assert_true(json_is_object(json_object_get(doc, "next")));
	edit(doc);
	assert_int_equal(json_dump_file(doc, p, JSON_COMPACT), 0);
	json_decref(doc);
	rc = vexport(f, p, NULL, msg);
	if (rc != want || strstr(msg, needle) == NULL)
		fail_msg("expected %d naming \"%s\", got %d: %s", want, needle, rc, msg);
	free(p);
}

static void ed_last_claim(json_t *d)
{
	json_object_set_new(d, "last_tenant_seq", json_integer(9));
}

static void ed_later_since(json_t *d)
{
	json_object_set_new(d, "since", json_string("2999-01-01T00:00:00Z"));
}

static void ed_early_until(json_t *d)
{
	json_object_set_new(d, "until", json_string("2000-01-01T00:00:00Z"));
}

/* an export missing a tenant's oldest records does not verify */
static void test_export_oldest_missing(void **state)
{
	struct fx *f = *state;

	export_edit(f, 0, ed_drop_oldest, -EBADMSG, "tenant t1: the export starts at its record 3 "
						     "(tenant_seq): its oldest records are missing");
	export_edit(f, 0, ed_drop_oldest_only, -EBADMSG, "is not first_tenant_seq 1");
	export_edit(f, 0, ed_no_since, -EBADMSG, "since/until missing");
	export_edit(f, 0, ed_later_since, -EBADMSG, "outside the export's window");
	export_edit(f, 0, ed_early_until, -EBADMSG, "outside the export's window");
	export_edit(f, 0, ed_last_claim, -EBADMSG, "says its last record is tenant_seq 9");
}

/* with since, the record before the window anchors its start */
static void test_export_window_start(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st = {0};
	char msg[CERR_MAX], *p;
	int64_t mid;
	struct audit *a;
	json_t *doc;
	int rc;

	usleep(20000);
	mid = util_now_us();
	a = topen(f->path, &f->k);
	tfill(a, 9, 3);
	assert_int_equal(audit_close(a), 0);
	p = do_export(f, "t1", mid, 0, NULL, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.records, 3);
	assert_int_equal(st.first_tenant_seq, 9);
	assert_true(st.since_us == mid);
	doc = json_load_file(p, 0, NULL);
	assert_true(json_is_object(json_object_get(doc, "previous")));
	json_decref(doc);
	free(p);
	/* the window's first record cut, and the record before it with it */
	export_edit(f, mid, ed_no_previous, -EBADMSG, "without the record before its window");
	export_edit(f, mid, ed_drop_oldest_only, -EBADMSG, "is not first_tenant_seq 9");
	/* with until, the record after the window anchors its end */
	p = do_export(f, "t1", 0, mid, NULL, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(vexport(f, p, &st, msg), 0);
	assert_int_equal(st.records, 8);
	assert_int_equal(st.last_tenant_seq, 8);
	assert_true(st.until_us == mid);
	free(p);
	export_edit_until(f, mid, ed_drop_newest, -EBADMSG, "has tenant_seq 9, expected 8");
	export_edit_until(f, mid, ed_no_next, -EBADMSG, "a record after the window, but no until");
}

/* --checkpoint on an export: the same size must have the same root; an
 * older one needs the export's consistency proof from it */
static void test_export_trusted(void **state)
{
	struct fx *f = *state;
	struct audit_verify_stats st = {0};
	struct audit_verify_opts o = {.vkey = f->k.vkey};
	struct cerr err = {{0}};
	char *n25 = stored_note(f->path, 25), *n40 = stored_note(f->path, 40), *p, *forged = NULL;
	uint8_t root[32] = {9};
	struct audit *a;
	int rc;

	p = do_export(f, "t1", 0, 0, NULL, &rc);
	assert_int_equal(rc, 0);
	o.checkpoint = n40;
	assert_int_equal(verify_export_both(p, o.vkey, o.checkpoint, &st, &err), 0);
	assert_true(st.trusted);
	assert_int_equal(st.trusted_size, 40);
	o.checkpoint = n25;
	assert_int_equal(verify_export_both(p, o.vkey, o.checkpoint, &st, &err), -ENODATA);
	assert_non_null(strstr(err.msg, "no consistency proof from the checkpoint you trust"));
	assert_int_equal(note_checkpoint_sign(&f->k.signer, 40, root, &forged), 0);
	o.checkpoint = forged;
	assert_int_equal(verify_export_both(p, o.vkey, o.checkpoint, &st, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "has another root than the checkpoint you trust"));
	free(p);
	/* the log grew; an export from the kept checkpoint proves it only grew */
	a = topen(f->path, &f->k);
	tfill(a, 4, 3);
	assert_int_equal(audit_close(a), 0);
	p = do_export(f, "t1", 0, 0, n25, &rc);
	assert_int_equal(rc, 0);
	o.checkpoint = n25;
	assert_int_equal(verify_export_both(p, o.vkey, o.checkpoint, &st, &err), 0);
	assert_int_equal(st.trusted_size, 25);
	assert_true(st.cp_size > 40);
	free(p);
	free(forged);
	free(n25);
	free(n40);
}

static void test_export_empty_doc(void **state)
{
	export_tamper(*state, ed_not_json, "not a custody-audit-export/1");
}

int audit_group_verify(void)
{
#define T(x) cmocka_unit_test_setup_teardown(x, fx_setup, fx_teardown)
	const struct CMUnitTest tests[] = {
		T(test_verify_clean),
		T(test_verify_missing_file),
		T(test_verify_triggers_hold),
		T(test_verify_altered_body),
		T(test_verify_altered_body_and_leaf),
		T(test_verify_altered_chain),
		T(test_verify_altered_leaf),
		T(test_verify_altered_column),
		T(test_verify_deleted_row),
		T(test_verify_deleted_tail),
		T(test_verify_deleted_tail_and_checkpoint),
		T(test_verify_reordered),
		T(test_verify_checkpoint_note),
		T(test_verify_checkpoint_forged),
		T(test_verify_checkpoint_size),
		T(test_verify_corrupt_file),
		T(test_verify_truncated_wal),
		T(test_verify_wrong_origin),
		T(test_verify_uncovered_tail),
		T(test_verify_nothing_covered),
		T(test_verify_trusted_checkpoint),
		T(test_open_other_origin),
		T(test_wal_prefill),
		T(test_wal_rewinds),
		T(test_export_roundtrip),
		T(test_export_consistency),
		T(test_export_time_window),
		T(test_export_removed_record),
		T(test_export_changed_body),
		T(test_export_swapped),
		T(test_export_proof),
		T(test_export_proof_memo),
		T(test_export_checkpoint),
		T(test_export_tree_size),
		T(test_export_consistency_tamper),
		T(test_export_other_tenant),
		T(test_export_empty_doc),
		T(test_export_oldest_missing),
		T(test_export_window_start),
		T(test_export_trusted),
	};
#undef T
	return cmocka_run_group_tests_name("audit verify", tests, tmpl_setup, tmpl_teardown);
}

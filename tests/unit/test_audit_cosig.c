/* test_audit_cosig.c — C2SP witness cosignatures: witness keys, note
 * parsing of hostile text, cosignature/v1 signing and verifying (other
 * key, tampered body, future timestamp), storage beside the checkpoint,
 * consistency proofs for add-checkpoint, and verify --witness on a
 * database and on an export. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "audit.h"
#include "test_audit_util.h"

#define ORIGIN "custody.test/audit"

struct wit {
	uint8_t pk[32], sk[64];
	struct audit_vkey k;
	char *vkey;
};

static void wit_init(struct wit *w, const char *name, uint8_t seed_byte)
{
	uint8_t seed[32];
	struct cerr err = {{0}};

	memset(seed, seed_byte, sizeof(seed));
	crypto_sign_seed_keypair(w->pk, w->sk, seed);
	assert_int_equal(audit_vkey_format_type(name, AUDIT_SIG_TYPE_COSIG_V1, w->pk, &w->vkey), 0);
	assert_int_equal(audit_vkey_parse(w->vkey, AUDIT_SIG_TYPE_COSIG_V1, &w->k, &err), 0);
}

static char *cat(const char *a, const char *b)
{
	char *s = NULL;

	assert_true(asprintf(&s, "%s%s", a, b) > 0);
	return s;
}

static void test_wkey(void **state)
{
	struct wit w;
	struct audit_vkey k;
	struct cerr err = {{0}};
	struct tkey lk;
	char *bad;

	(void)state;
	wit_init(&w, "witness.test/w1", 7);
	assert_int_equal(w.k.type, AUDIT_SIG_TYPE_COSIG_V1);
	assert_string_equal(w.k.name, "witness.test/w1");
	/* a log key is not a witness key, and the other way round */
	tkey_init(&lk, ORIGIN, 3);
	assert_int_equal(audit_vkey_parse(lk.vkey, AUDIT_SIG_TYPE_COSIG_V1, &k, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "expected 0x04"));
	assert_int_equal(audit_vkey_parse(w.vkey, AUDIT_SIG_TYPE_ED25519, &k, &err), -EINVAL);
	assert_int_equal(audit_vkey_parse(lk.vkey, 0, &k, &err), 0);
	assert_int_equal(k.type, AUDIT_SIG_TYPE_ED25519);
	/* the key id commits to the type byte: same name and key, type 0x01 id */
	bad = strdup(w.vkey);
	memcpy(strchr(bad, '+') + 1, strchr(lk.vkey, '+') + 1, 8);
	assert_int_equal(audit_vkey_parse(bad, 0, &k, &err), -EINVAL);
	free(bad);
	assert_int_equal(audit_vkey_parse("w+zzzzzzzz+AA==", 0, &k, &err), -EINVAL);
	assert_int_equal(audit_vkey_parse("no-plus", 0, &k, &err), -EINVAL);
	free(w.vkey);
}

static void test_note_parse_hostile(void **state)
{
	static const char *bad[] = {
		"",
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",           /* no sigs */
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",         /* none */
		"o\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAAAAAA\n",
		"o\n1\nAAAA\n\n\xe2\x80\x94 o AAAAAAAA\n",                      /* short root */
		"o\n1\n\n\xe2\x80\x94 o AAAAAAAA\n",                            /* two lines */
		"\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAAAAAA\n",
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n- o AAAAAAAA\n",
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAAAAAA",
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o A\n",
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o+x AAAAAAAA\n",
		"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAA\tAAAA\n",
		"o\n18446744073709551616\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAAAAAA\n",
		"o\xff\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o AAAAAAAA\n",
	};
	struct audit_note *n = malloc(sizeof(*n));
	struct cerr err = {{0}};
	char *many;
	size_t off;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		assert_int_equal(audit_note_parse(bad[i], strlen(bad[i]), n, &err), -EBADMSG);
		assert_true(err.msg[0] != '\0');
	}
	/* extension lines are fine; 64 signatures are, 65 are not */
	many = malloc(100000);
	off = (size_t)sprintf(many, "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n\n");
	for (int i = 0; i < AUDIT_NOTE_SIGS_MAX; i++)
		off += (size_t)sprintf(many + off, "\xe2\x80\x94 o AAAAAAAA\n");
	assert_int_equal(audit_note_parse(many, off, n, &err), 0);
	assert_int_equal(n->nsigs, AUDIT_NOTE_SIGS_MAX);
	assert_int_equal(n->size, 1);
	assert_string_equal(n->origin, "o");
	off += (size_t)sprintf(many + off, "\xe2\x80\x94 o AAAAAAAA\n");
	assert_int_equal(audit_note_parse(many, off, n, &err), -EBADMSG);
	free(many);
	free(n);
}

/* A signed checkpoint note from a store of 5 records. */
static char *signed_note(struct tkey *lk, char **dir_out, struct audit **a_out, uint64_t *size)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db"), *note = NULL;
	struct audit *a;

	a = topen(path, lk);
	tfill(a, 5, 2);
	assert_int_equal(audit_checkpoint(a, &note, size), 0);
	free(path);
	*dir_out = dir;
	*a_out = a;
	return note;
}

static void test_cosig_sign_verify(void **state)
{
	struct tkey lk;
	struct wit w1, w2;
	struct audit *a;
	char *dir, *note, *line, *joined, *tampered;
	uint64_t size = 0, t = 0;
	struct audit_note *n = malloc(sizeof(*n));
	struct audit_witness_check c;
	struct audit_vkey keys[2];
	struct cerr err = {{0}};
	char why[512];
	int64_t now = (int64_t)time(NULL);
	struct audit_vkey logk;

	(void)state;
	tkey_init(&lk, ORIGIN, 3);
	wit_init(&w1, "witness.test/w1", 7);
	wit_init(&w2, "witness.test/w2", 8);
	note = signed_note(&lk, &dir, &a, &size);
	assert_int_equal(size, 5);
	assert_int_equal(audit_note_parse(note, strlen(note), n, &err), 0);
	/* the log's own signature verifies through the generic path */
	assert_int_equal(audit_vkey_parse(lk.vkey, AUDIT_SIG_TYPE_ED25519, &logk, &err), 0);
	assert_int_equal(audit_note_verify_sig(n, &logk, NULL, &err), 0);
	assert_int_equal(audit_note_verify_sig(n, &w1.k, NULL, &err), -ENOENT);

	assert_int_equal(audit_cosig_sign(w1.k.name, w1.sk, note, n->body_len, (uint64_t)now, &line),
			 0);
	assert_int_equal(strncmp(line, "\xe2\x80\x94 witness.test/w1 ", 20), 0);
	joined = cat(note, line);
	assert_int_equal(audit_note_parse(joined, strlen(joined), n, &err), 0);
	assert_int_equal(audit_note_verify_sig(n, &w1.k, &t, &err), 0);
	assert_int_equal(t, (uint64_t)now);
	/* another witness's key: not its signature */
	assert_int_equal(audit_note_verify_sig(n, &w2.k, &t, &err), -ENOENT);
	/* the cosignature over another body: same name and id, does not verify */
	tampered = strdup(joined);
	tampered[strlen(ORIGIN) + 1] = '4';
	assert_int_equal(audit_note_parse(tampered, strlen(tampered), n, &err), 0);
	assert_int_equal(audit_note_verify_sig(n, &w1.k, &t, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "does not verify"));

	/* quorum check: w1 valid, w2 absent */
	keys[0] = w1.k;
	keys[1] = w2.k;
	assert_int_equal(audit_witness_check_note(joined, keys, 2, now, &c, &err), 0);
	assert_int_equal(c.valid, 1);
	assert_int_equal(c.w[0].rc, 0);
	assert_int_equal(c.w[1].rc, -ENOENT);
	audit_witness_check_describe(&c, keys, 2, why, sizeof(why));
	assert_string_equal(why, "witness.test/w2: no cosignature");
	/* a timestamp an hour ahead counts as future */
	free(line);
	free(joined);
	assert_int_equal(audit_cosig_sign(w1.k.name, w1.sk, note, n->body_len,
					  (uint64_t)now + 3600, &line), 0);
	joined = cat(note, line);
	assert_int_equal(audit_witness_check_note(joined, keys, 1, now, &c, &err), 0);
	assert_int_equal(c.valid, 0);
	assert_int_equal(c.w[0].rc, -ERANGE);
	audit_witness_check_describe(&c, keys, 1, why, sizeof(why));
	assert_non_null(strstr(why, "in the future"));

	free(line);
	free(joined);
	free(tampered);
	free(note);
	free(n);
	assert_int_equal(audit_close(a), 0);
	tdir_free(dir);
	free(w1.vkey);
	free(w2.vkey);
}

static void test_cosig_store_and_verify(void **state)
{
	struct tkey lk;
	struct wit w1, w2;
	struct audit *a;
	char *dir, *note, *note2 = NULL, *line, *line2, *got, *path, *lines, *bad;
	uint64_t size = 0, size2 = 0, last = 0;
	struct audit_note *n = malloc(sizeof(*n)), *n2 = malloc(sizeof(*n2));
	struct audit_vkey keys[2];
	struct audit_witness_check c;
	struct cerr err = {{0}};
	int64_t now = (int64_t)time(NULL);

	(void)state;
	tkey_init(&lk, ORIGIN, 3);
	wit_init(&w1, "witness.test/w1", 7);
	wit_init(&w2, "witness.test/w2", 8);
	keys[0] = w1.k;
	keys[1] = w2.k;
	note = signed_note(&lk, &dir, &a, &size);
	path = tpath(dir, "audit.db");
	assert_int_equal(audit_note_parse(note, strlen(note), n, &err), 0);

	/* nothing witnessed yet */
	assert_int_equal(audit_checkpoint_witnessed(a, keys, 1, 1, &last, NULL), -ENOENT);
	assert_int_equal(audit_cosig_last_size(a, &w1.k, &last), 0);
	assert_int_equal(last, 0);

	assert_int_equal(audit_cosig_sign(w1.k.name, w1.sk, note, n->body_len, (uint64_t)now, &line),
			 0);
	/* a line by w1 stored as w2's, or for another size: refused */
	assert_int_equal(audit_cosig_store(a, size, &w2.k, line, strlen(line), &err), -EBADMSG);
	assert_int_equal(audit_cosig_store(a, 999, &w1.k, line, strlen(line), &err), -ENOENT);
	bad = strdup(line);
	bad[30] = bad[30] == 'A' ? 'B' : 'A';
	assert_int_equal(audit_cosig_store(a, size, &w1.k, bad, strlen(bad), &err), -EBADMSG);
	free(bad);
	assert_int_equal(audit_cosig_store(a, size, &w1.k, line, strlen(line), &err), 0);
	/* idempotent */
	assert_int_equal(audit_cosig_store(a, size, &w1.k, line, strlen(line), &err), 0);
	assert_int_equal(audit_cosig_last_size(a, &w1.k, &last), 0);
	assert_int_equal(last, size);
	assert_int_equal(audit_checkpoint_cosigned(a, size, &got), 0);
	assert_int_equal(strncmp(got, note, strlen(note)), 0);
	assert_string_equal(got + strlen(note), line);
	free(got);
	assert_int_equal(audit_checkpoint_witnessed(a, keys, 1, 1, &last, &got), 0);
	assert_int_equal(last, size);
	free(got);
	assert_int_equal(audit_checkpoint_witnessed(a, keys, 2, 2, &last, NULL), -ENOENT);

	/* a later checkpoint and the consistency proof to it */
	tfill(a, 6, 2);
	assert_int_equal(audit_checkpoint(a, &note2, &size2), 0);
	assert_int_equal(size2, 11);
	assert_int_equal(audit_note_parse(note2, strlen(note2), n2, &err), 0);
	for (uint64_t m = 1; m <= size2; m++) {
		char *p;
		uint8_t proof[64][32];
		size_t cnt = 0;

		assert_int_equal(audit_consistency_lines(a, m, size2, &lines), 0);
		for (p = lines; *p; p += 45) {
			size_t gotb = 0;

			assert_int_equal(sodium_base642bin(proof[cnt], 32, p, 44, NULL, &gotb, NULL,
							   sodium_base64_VARIANT_ORIGINAL), 0);
			assert_int_equal(p[44], '\n');
			cnt++;
		}
		if (m == size) {
			assert_true(audit_consistency_ok(m, size2, n->root, n2->root,
							 (const uint8_t(*)[32])proof, cnt));
			assert_false(audit_consistency_ok(m, size2, n2->root, n2->root,
							  (const uint8_t(*)[32])proof, cnt));
		}
		free(lines);
	}
	assert_int_equal(audit_consistency_lines(a, 0, size2, &lines), -EINVAL);
	assert_int_equal(audit_consistency_lines(a, size2, size2 - 1, &lines), -EINVAL);
	assert_int_equal(audit_close(a), 0);

	/* verify --witness on the database: the newest witnessed checkpoint
	 * (size 5) holds for w1; w1+w2 quorum 2 fails naming w2 */
	assert_int_equal(audit_verify_db_witnessed(path, keys, 1, 1, now, &c, &err), 0);
	assert_int_equal(c.size, size);
	assert_int_equal(audit_verify_db_witnessed(path, keys, 2, 2, now, &c, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "witness.test/w2: no cosignature"));
	assert_non_null(strstr(err.msg, "size 11 carries 0 of the 2"));
	assert_int_equal(audit_verify_db_witnessed(path, keys, 2, 3, now, &c, &err), -EINVAL);
	/* a second cosignature later makes quorum 2 hold */
	{
		struct audit_opts o = {.signer = &lk.signer};

		assert_int_equal(audit_open(path, &o, &a, &err), 0);
	}
	assert_int_equal(audit_cosig_sign(w2.k.name, w2.sk, note2, n2->body_len, (uint64_t)now,
					  &line2), 0);
	assert_int_equal(audit_cosig_store(a, size2, &w2.k, line2, strlen(line2), &err), 0);
	free(line2);
	assert_int_equal(audit_cosig_sign(w1.k.name, w1.sk, note2, n2->body_len, (uint64_t)now,
					  &line2), 0);
	assert_int_equal(audit_cosig_store(a, size2, &w1.k, line2, strlen(line2), &err), 0);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(audit_verify_db_witnessed(path, keys, 2, 2, now, &c, &err), 0);
	assert_int_equal(c.size, size2);
	assert_int_equal(c.valid, 2);
	/* the store itself still verifies (the new table does not disturb it) */
	{
		struct audit_verify_stats st;

		assert_int_equal(audit_verify_db(path, lk.vkey, &st, &err), 0);
	}

	free(line2);
	free(line);
	free(note);
	free(note2);
	free(n);
	free(n2);
	free(path);
	tdir_free(dir);
	free(w1.vkey);
	free(w2.vkey);
}

/* Exports carry cosignatures; with witnesses configured they end at the
 * newest checkpoint carrying the quorum, and verify --witness holds. */
static void test_cosig_export(void **state)
{
	struct tkey lk;
	struct wit w1;
	struct audit *a;
	struct audit_opts o;
	char *dir, *note, *line, *path, *xpath, *buf = NULL;
	uint64_t size = 0, size2 = 0;
	size_t len = 0;
	struct audit_note *n = malloc(sizeof(*n));
	struct audit_witness_check c;
	struct audit_verify_stats st;
	struct cerr err = {{0}};
	int64_t now = (int64_t)time(NULL);
	json_t *doc;
	FILE *f;

	(void)state;
	tkey_init(&lk, ORIGIN, 3);
	wit_init(&w1, "witness.test/w1", 7);
	note = signed_note(&lk, &dir, &a, &size);
	path = tpath(dir, "audit.db");
	xpath = tpath(dir, "export.json");
	assert_int_equal(audit_note_parse(note, strlen(note), n, &err), 0);
	assert_int_equal(audit_cosig_sign(w1.k.name, w1.sk, note, n->body_len, (uint64_t)now, &line),
			 0);
	assert_int_equal(audit_cosig_store(a, size, &w1.k, line, strlen(line), &err), 0);
	tfill(a, 6, 2);
	assert_int_equal(audit_checkpoint(a, NULL, &size2), 0);
	assert_int_equal(audit_close(a), 0);

	/* with the witness configured: the export ends at size 5, cosigned */
	memset(&o, 0, sizeof(o));
	o.signer = &lk.signer;
	o.witnesses = &w1.k;
	o.n_witnesses = 1;
	assert_int_equal(audit_open(path, &o, &a, &err), 0);
	f = fopen(xpath, "w");
	assert_int_equal(audit_export(a, "t0", 0, 0, NULL, f, &err), 0);
	fclose(f);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(util_read_file(xpath, 1 << 20, &buf, &len), 0);
	doc = json_loads(buf, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(doc, "tree_size")), (json_int_t)size);
	assert_non_null(strstr(json_string_value(json_object_get(doc, "checkpoint")), line));
	assert_int_equal(json_array_size(json_object_get(doc, "records")), 3);
	json_decref(doc);
	free(buf);
	assert_int_equal(audit_verify_export(xpath, lk.vkey, &st, &err), 0);
	assert_int_equal(audit_verify_export_witnessed(xpath, &w1.k, 1, 1, now, &c, &err), 0);
	assert_int_equal(c.valid, 1);
	assert_int_equal(c.size, size);

	/* without witnesses: the newest checkpoint, not cosigned: the
	 * witness check fails and names the witness */
	o.witnesses = NULL;
	o.n_witnesses = 0;
	assert_int_equal(audit_open(path, &o, &a, &err), 0);
	f = fopen(xpath, "w");
	assert_int_equal(audit_export(a, "t0", 0, 0, NULL, f, &err), 0);
	fclose(f);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(audit_verify_export(xpath, lk.vkey, &st, &err), 0);
	assert_int_equal(audit_verify_export_witnessed(xpath, &w1.k, 1, 1, now, &c, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "witness.test/w1: no cosignature"));
	assert_int_equal(c.size, size2);
	free(line);
	free(note);

	/* a store whose checkpoints nobody cosigned cannot export with witnesses */
	{
		struct wit w2;

		wit_init(&w2, "witness.test/w2", 8);
		o.witnesses = &w2.k;
		o.n_witnesses = 1;
		assert_int_equal(audit_open(path, &o, &a, &err), 0);
		f = fopen(xpath, "w");
		assert_int_equal(audit_export(a, "t0", 0, 0, NULL, f, &err), -ENOENT);
		assert_non_null(strstr(err.msg, "witness"));
		fclose(f);
		assert_int_equal(audit_close(a), 0);
		free(w2.vkey);
	}
	free(n);
	free(path);
	free(xpath);
	tdir_free(dir);
	free(w1.vkey);
}

int audit_group_cosig(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wkey),
		cmocka_unit_test(test_note_parse_hostile),
		cmocka_unit_test(test_cosig_sign_verify),
		cmocka_unit_test(test_cosig_store_and_verify),
		cmocka_unit_test(test_cosig_export),
	};

	return cmocka_run_group_tests_name("audit_cosig", tests, NULL, NULL);
}

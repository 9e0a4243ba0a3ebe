/* test_audit_scan.c — an export is read a record at a time (export_scan.c
 * finds the pieces, jansson parses each): the scan on its own, and the
 * whole verification against the reference that parses the document as
 * one tree (audit_verify_export_whole) on hostile documents: truncated,
 * duplicate keys, nested garbage, huge strings, keys spelled with escapes,
 * a syntax error behind a tampered record. Every answer, message and
 * statistic must be the same. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit_int.h"
#include "test_audit_util.h"

#define ORIGIN "custody.test/audit"

/* ---- the scan ----------------------------------------------------------- */

static void expect_pieces(const char *doc, size_t n, const char *const *want)
{
	struct xscan s;

	if (audit_export_scan(doc, strlen(doc), &s) != 0)
		fail_msg("scan refused %s", doc);
	assert_int_equal(s.n, n);
	for (size_t i = 0; i < n; i++) {
		if (s.piece[i].len != strlen(want[i]) ||
		    memcmp(doc + s.piece[i].off, want[i], s.piece[i].len) != 0)
			fail_msg("piece %zu of %s: \"%.*s\", want \"%s\"", i, doc,
				 (int)s.piece[i].len, doc + s.piece[i].off, want[i]);
	}
	assert_int_equal(doc[s.rec_off], '[');
	assert_int_equal(doc[s.rec_off + s.rec_len - 1], ']');
	audit_export_scan_free(&s);
}

static void expect_refused(const char *doc, size_t len)
{
	struct xscan s;

	if (audit_export_scan(doc, len, &s) != -EINVAL)
		fail_msg("scan took %.*s", (int)(len > 200 ? 200 : len), doc);
}

static void test_scan_pieces(void **state)
{
	(void)state;
	expect_pieces("{\"records\":[]}", 0, NULL);
	expect_pieces(" {\"records\" :\n[ \t\r\n] }", 0, NULL);
	expect_pieces("{\"a\":1,\"records\":[1]}", 1, (const char *const[]){"1"});
	/* separators inside strings, escaped quotes and backslash runs */
	expect_pieces("{\"records\":[ {\"x\":\"a,]\\\"b\"} ,2,[3,[4]],\"\\\\\",\"\\\\\\\"]\"]}", 5,
		      (const char *const[]){" {\"x\":\"a,]\\\"b\"} ", "2", "[3,[4]]", "\"\\\\\"",
					   "\"\\\\\\\"]\""});
	/* "records" as a value, and inside an inner object, is not the key */
	expect_pieces("{\"a\":\"records\",\"b\":{\"records\":[9]},\"records\":[7,8]}", 2,
		      (const char *const[]){"7", "8"});
	/* empty elements are pieces (jansson refuses them) */
	expect_pieces("{\"records\":[1,]}", 2, (const char *const[]){"1", ""});
	expect_pieces("{\"records\":[,]}", 2, (const char *const[]){"", ""});
	expect_pieces("{\"records\":[ , ]}", 2, (const char *const[]){" ", " "});
	/* after the records: not looked at */
	expect_pieces("{\"records\":[1]} trailing garbage \"", 1, (const char *const[]){"1"});
}

static void test_scan_refused(void **state)
{
	static const char *const bad[] = {
		"", "   ", "[{\"records\":[1]}]", "\"records\"",
		"{\"records\":{}}", "{\"records\":1}", "{\"records\":",
		"{\"records\":[1", "{\"records\":[\"1]}", "{\"records\":[1}",
		"{\"rec\\u006frds\":[1]}",    /* an escaped key: the whole parse */
		"{\"x\":1}", "{\"records\"", "{\"records\":[\"\\\"]}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_refused(bad[i], strlen(bad[i]));
	}
	/* nesting deeper than XSCAN_DEPTH inside the records */
	{
		char doc[512];
		size_t n = 0;

		n += (size_t)sprintf(doc, "{\"records\":[");
		for (int i = 0; i < XSCAN_DEPTH; i++)
			doc[n++] = '[';
		for (int i = 0; i < XSCAN_DEPTH; i++)
			doc[n++] = ']';
		n += (size_t)sprintf(doc + n, "]}");
		expect_refused(doc, n);
	}
	/* a NUL byte is only a byte */
	expect_pieces("{\"records\":[\"a\"]}", 1, (const char *const[]){"\"a\""});
	{
		static const char nul[] = "{\"records\":[\"a\0\",1]}";
		struct xscan s;

		assert_int_equal(audit_export_scan(nul, sizeof(nul) - 1, &s), 0);
		assert_int_equal(s.n, 2);
		audit_export_scan_free(&s);
	}
}

/* ---- the verification: both ways the same -------------------------------- */

struct seen {
	uint64_t seq[4096];
	size_t n;
};

static int seen_cb(void *ctx, uint64_t seq, const char *body, size_t len, json_t *parsed)
{
	struct seen *s = ctx;

	assert_non_null(body);
	assert_true(json_is_object(parsed));
	if (s->n < 4096)
		s->seq[s->n++] = seq;
	return 0;
}

int verify_export_both(const char *path, const char *vkey, const char *checkpoint,
		       struct audit_verify_stats *st, struct cerr *err)
{
	struct seen *s1 = calloc(1, sizeof(*s1)), *s2 = calloc(1, sizeof(*s2));
	struct audit_verify_opts o1 = {.vkey = vkey, .checkpoint = checkpoint,
				       .on_record = seen_cb, .ctx = s1};
	struct audit_verify_opts o2 = o1;
	struct audit_verify_stats st1, st2;
	struct cerr e1 = {{0}}, e2 = {{0}};
	int rc1, rc2;

	assert_non_null(s1);
	assert_non_null(s2);
	o2.ctx = s2;
	rc1 = audit_verify_export_with(path, &o1, &st1, &e1);
	rc2 = audit_verify_export_whole(path, &o2, &st2, &e2);
	if (rc1 != rc2 || strcmp(e1.msg, e2.msg) != 0)
		fail_msg("record at a time: %d %s; whole: %d %s", rc1, e1.msg, rc2, e2.msg);
	assert_memory_equal(&st1, &st2, sizeof(st1));
	/* the records handed over: the same, except that a document that is
	 * not JSON may have shown (verified) records before its bad piece */
	if (strstr(e2.msg, "is not JSON") == NULL) {
		assert_int_equal(s1->n, s2->n);
		assert_memory_equal(s1->seq, s2->seq, s1->n * sizeof(s1->seq[0]));
	} else {
		assert_int_equal(s2->n, 0);
	}
	if (st != NULL)
		*st = st1;
	if (err != NULL)
		*err = e1;
	free(s1);
	free(s2);
	return rc1;
}

struct xfx {
	char *dir, *db, *exp;
	struct tkey k;
	char *text; /* the export as written */
	size_t len;
};

/* A store of 400 records of 2 tenants; t0's export (200 records, a few
 * batches, so the workers take turns). */
static int xfx_setup(void **state)
{
	struct xfx *f = calloc(1, sizeof(*f));
	struct audit_opts o = {0};
	struct cerr err = {{0}};
	struct audit *a;
	FILE *fp;

	f->dir = tdir_new();
	f->db = tpath(f->dir, "audit.db");
	f->exp = tpath(f->dir, "export.json");
	tkey_init(&f->k, ORIGIN, 21);
	a = topen(f->db, &f->k);
	tfill(a, 400, 2);
	assert_int_equal(audit_close(a), 0);
	o.signer = &f->k.signer;
	assert_int_equal(audit_open(f->db, &o, &a, &err), 0);
	fp = fopen(f->exp, "w");
	assert_non_null(fp);
	assert_int_equal(audit_export(a, "t0", 0, 0, NULL, fp, &err), 0);
	fclose(fp);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(util_read_file(f->exp, 1 << 26, &f->text, &f->len), 0);
	*state = f;
	return 0;
}

static int xfx_teardown(void **state)
{
	struct xfx *f = *state;

	tdir_free(f->dir);
	free(f->db);
	free(f->exp);
	free(f->text);
	free(f);
	return 0;
}

/* Write doc (len bytes) as the export and verify it both ways. */
static int vdoc(struct xfx *f, const char *doc, size_t len, struct cerr *err)
{
	struct audit_verify_stats st;

	assert_int_equal(util_write_file(f->exp, doc, len, 0600), 0);
	return verify_export_both(f->exp, f->k.vkey, NULL, &st, err);
}

/* The text with [at, at + cut) replaced by ins. */
static char *splice(const struct xfx *f, size_t at, size_t cut, const char *ins, size_t *len)
{
	size_t il = strlen(ins);
	char *s = malloc(f->len - cut + il + 1);

	assert_non_null(s);
	memcpy(s, f->text, at);
	memcpy(s + at, ins, il);
	memcpy(s + at + il, f->text + at + cut, f->len - at - cut);
	*len = f->len - cut + il;
	s[*len] = '\0';
	return s;
}

static size_t find(const struct xfx *f, const char *needle, unsigned nth)
{
	const char *p = f->text;

	for (unsigned i = 0; i <= nth; i++) {
		p = strstr(i ? p + 1 : p, needle);
		assert_non_null(p);
	}
	return (size_t)(p - f->text);
}

static void expect_vdoc(struct xfx *f, char *doc, size_t len, int rc, const char *needle)
{
	struct cerr err = {{0}};
	int got = vdoc(f, doc, len, &err);

	if (got != rc || strstr(err.msg, needle) == NULL)
		fail_msg("expected %d naming \"%s\", got %d: %s", rc, needle, got, err.msg);
	free(doc);
}

/* The export with [at, at + cut) replaced by ins: rc, naming needle. */
static void expect_splice(struct xfx *f, size_t at, size_t cut, const char *ins, int rc,
			  const char *needle)
{
	size_t len;
	char *d = splice(f, at, cut, ins, &len);

	expect_vdoc(f, d, len, rc, needle);
}

static void test_export_pieces_valid(void **state)
{
	struct xfx *f = *state;
	struct audit_verify_stats st;
	struct cerr err = {{0}};

	assert_int_equal(verify_export_both(f->exp, f->k.vkey, NULL, &st, &err), 0);
	assert_int_equal(st.records, 200);
	/* whitespace anywhere JSON allows it reads the same */
	{
		size_t len;
		char *d = splice(f, find(f, "\"records\":[", 0) + 11, 0, " \n\t\r ", &len);

		expect_vdoc(f, d, len, 0, "");
	}
}

static void test_export_pieces_hostile(void **state)
{
	struct xfx *f = *state;
	size_t len, recs = find(f, "\"records\":[", 0) + 11;
	char *big;

	/* truncated anywhere: in the head, in a record, at its end */
	for (size_t cut = 1; cut < f->len; cut += f->len / 37 + 1) {
		char *d = malloc(cut);

		memcpy(d, f->text, cut);
		expect_vdoc(f, d, cut, -EBADMSG, "is not JSON");
	}
	/* a duplicate key in a record, in a body, at the top */
	expect_splice(f, find(f, "{\"seq\":", 150) + 1, 0, "\"x\":1,\"x\":2,", -EBADMSG, "duplicate object key");
	expect_splice(f, find(f, "\"seq\":", 100), 0, "\"seq\":1,", -EBADMSG,
		    "duplicate object key");
	expect_splice(f, 1, 0, "\"records\":[],", -EBADMSG,
		    "duplicate object key");
	expect_splice(f, 1, 0, "\"tenant\":\"t1\",", -EBADMSG,
		    "duplicate object key");
	/* a duplicate key inside a body string: the body is not JSON, said
	 * as that record's failure (both ways) */
	expect_splice(f, find(f, "\"body\":\"{", 7) + 9, 0, "\\\"a\\\":1,\\\"a\\\":1,", -EBADMSG, "");
	/* nested garbage: deep, deeper than the scan goes, deeper than jansson */
	for (int depth = 10; depth <= 2300; depth = depth < 200 ? depth * 3 : depth + 1000) {
		char *g = malloc((size_t)depth * 2 + 2);

		for (int i = 0; i < depth; i++) {
			g[i] = '[';
			g[depth + i] = ']';
		}
		g[2 * depth] = ',';
		g[2 * depth + 1] = '\0';
		expect_splice(f, recs, 0, g, -EBADMSG, "");
		free(g);
	}
	expect_splice(f, recs, 0, "{\"a\":[{\"b\":[1,{}]}],\"c\":{\"d\":\"\\u0041\"}},", -EBADMSG, "record #1 is malformed");
	expect_splice(f, recs, 0, "1,", -EBADMSG, "record #1 is malformed");
	expect_splice(f, recs, 0, "1 2,", -EBADMSG, "is not JSON");
	expect_splice(f, recs, 0, ",", -EBADMSG, "is not JSON");
	expect_splice(f, recs, 0, "\"\\u0000\",", -EBADMSG, "is not JSON");
	expect_splice(f, recs, 0, "\"\xff\",", -EBADMSG, "is not JSON");
	expect_splice(f, recs, 0, "123456789012345678901234567890,", -EBADMSG,
		    "is not JSON");
	/* a huge string (2 MiB) in a record, then in the head */
	big = malloc(2 * 1024 * 1024 + 32);
	assert_non_null(big);
	strcpy(big, "{\"junk\":\"");
	memset(big + 9, 'A', 2 * 1024 * 1024);
	strcpy(big + 9 + 2 * 1024 * 1024, "\"},");
	expect_splice(f, recs, 0, big, -EBADMSG, "record #1 is malformed");
	big[strlen(big) - 2] = '\0'; /* "{\"junk\":\"AAA\"" */
	memcpy(big, "  \"junk\":\"", 10);
	strcat(big, ",");
	expect_splice(f, 1, 0, big + 2, 0, "");
	free(big);
	/* the records key spelled with an escape: read whole, same answer */
	expect_splice(f, find(f, "\"records\"", 0) + 4, 1, "\\u006f", 0, "");
	/* records that are not an array */
	expect_splice(f, recs - 1, 0, "{},\"x\":", -EBADMSG,
		    "records is not an array");
	/* trailing bytes after the document */
	{
		char *d = splice(f, f->len, 0, " x", &len);

		expect_vdoc(f, d, len, -EBADMSG, "is not JSON");
	}
	/* a tampered record before a syntax error late in the records: the
	 * document is not JSON, as the whole parse says, not "tampered" */
	{
		char *d = splice(f, find(f, "\"leaf_index\":", 3) + 13, 0, "7777", &len);
		struct xfx g = *f;

		expect_splice(f, find(f, "\"leaf_index\":", 3), 0, "\"leaf_index\":7,", -EBADMSG, "duplicate object key");
		g.text = d;
		g.len = len;
		expect_splice(&g, find(&g, "{\"seq\":", 190), 0, "x", -EBADMSG,
			    "is not JSON");
		free(d);
	}
	/* a wrong key with a syntax error in the records: not JSON first */
	{
		struct tkey other;
		struct cerr err = {{0}};
		size_t at = find(f, "{\"seq\":", 120);
		char *d = splice(f, at, 1, "[", &len);

		tkey_init(&other, ORIGIN, 22);
		assert_int_equal(util_write_file(f->exp, d, len, 0600), 0);
		assert_int_equal(verify_export_both(f->exp, other.vkey, NULL, NULL, &err), -EBADMSG);
		assert_non_null(strstr(err.msg, "is not JSON"));
		assert_int_equal(util_write_file(f->exp, f->text, f->len, 0600), 0);
		assert_int_equal(verify_export_both(f->exp, other.vkey, NULL, NULL, &err),
				 -EKEYREJECTED);
		free(d);
	}
	/* a record changed in the middle: the same first mismatch */
	expect_splice(f, find(f, "\\\"n\\\":", 130) + 6, 1, "9", -EBADMSG,
		    "inclusion proof does not verify");
}

int audit_group_scan(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_pieces),
		cmocka_unit_test(test_scan_refused),
		cmocka_unit_test_setup_teardown(test_export_pieces_valid, xfx_setup, xfx_teardown),
		cmocka_unit_test_setup_teardown(test_export_pieces_hostile, xfx_setup, xfx_teardown),
	};

	return cmocka_run_group_tests_name("audit export scan", tests, NULL, NULL);
}

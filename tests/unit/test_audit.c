/* test_audit.c — audit store: Merkle hashing and proofs (RFC 6962 vectors),
 * signed notes, and the store's append / query / checkpoint behaviour. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "audit.h"
#include "merkle.h"
#include "note.h"
#include "test_audit_util.h"

/* ---- fixtures ------------------------------------------------------------ */

static int tsign(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	struct tkey *k = ctx;

	return crypto_sign_detached(sig, NULL, msg, len, k->sk) == 0 ? 0 : -EIO;
}

void tkey_init(struct tkey *k, const char *origin, uint8_t seed_byte)
{
	uint8_t seed[32], id[4], raw[33], pk[32];
	char b64[64], *vk = NULL;

	memset(seed, seed_byte, sizeof(seed));
	crypto_sign_seed_keypair(k->pk, k->sk, seed);
	k->signer.origin = origin;
	memcpy(k->signer.public_key, k->pk, 32);
	k->signer.sign = tsign;
	k->signer.ctx = k;
	memcpy(pk, k->pk, sizeof(pk)); /* a local: gcc's UBSan build misjudges k->pk */
	note_key_id(origin, pk, id);
	raw[0] = 0x01;
	memcpy(raw + 1, k->pk, 32);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	snprintf(k->vkey, sizeof(k->vkey), "%s+%02x%02x%02x%02x+%s", origin, id[0], id[1], id[2],
		 id[3], b64);
	/* the public formatter agrees */
	assert_int_equal(audit_vkey(origin, pk, &vk), 0);
	assert_string_equal(vk, k->vkey);
	free(vk);
}

char *tdir_new(void)
{
	char *d = strdup("/tmp/custody-audit-test-XXXXXX");

	assert_non_null(d);
	assert_non_null(mkdtemp(d));
	return d;
}

static int rm_cb(const char *p, const struct stat *sb, int type, struct FTW *f)
{
	return remove(p);
}

void tdir_free(char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

char *tpath(const char *dir, const char *name)
{
	char *p = NULL;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

struct audit *topen(const char *path, struct tkey *k)
{
	struct audit_opts o = {.signer = k ? &k->signer : NULL};
	struct cerr err = {{0}};
	struct audit *a = NULL;

	if (audit_open(path, &o, &a, &err) != 0)
		fail_msg("audit_open: %s", err.msg);
	return a;
}

void tfill(struct audit *a, unsigned n, unsigned ntenants)
{
	for (unsigned i = 0; i < n; i++) {
		char t[32];
		uint64_t seq = 0;

		snprintf(t, sizeof(t), "t%u", ntenants ? i % ntenants : 0);
		assert_int_equal(audit_append(a, json_pack("{s:s,s:s,s:s,s:s,s:i}", "event", "token",
							   "outcome", "ok", "tenant", t,
							   "principal", "p1", "n", (int)i),
					      &seq),
				 0);
		assert_true(seq > 0);
	}
}

void tsql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("sql %s: %s", sql, msg);
	sqlite3_close(db);
}

/* ---- Merkle: RFC 6962 test vectors (certificate-transparency-go) -------- */

static const char *const ct_inputs_hex[8] = {
	"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
	"606162636465666768696a6b6c6d6e6f",
};

static const char *const ct_roots[8] = {
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static void ct_leaves(uint8_t leaves[8][MERKLE_HASH])
{
	for (int i = 0; i < 8; i++) {
		uint8_t in[16];
		size_t n = 0;

		assert_int_equal(sodium_hex2bin(in, sizeof(in), ct_inputs_hex[i],
						strlen(ct_inputs_hex[i]), NULL, &n, NULL),
				 0);
		merkle_leaf_hash(in, n, leaves[i]);
	}
}

static void assert_hash_hex(const uint8_t h[MERKLE_HASH], const char *hex)
{
	char got[2 * MERKLE_HASH + 1];

	util_hex(h, MERKLE_HASH, got);
	assert_string_equal(got, hex);
}

static void test_merkle_roots(void **state)
{
	uint8_t leaves[8][MERKLE_HASH], root[MERKLE_HASH];
	struct merkle_range r;

	ct_leaves(leaves);
	merkle_range_init(&r);
	merkle_range_root(&r, root);
	assert_hash_hex(root, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	for (int n = 1; n <= 8; n++) {
		struct merkle_tree t;

		merkle_range_append(&r, leaves[n - 1]);
		merkle_range_root(&r, root);
		assert_hash_hex(root, ct_roots[n - 1]);
		assert_int_equal(merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, (uint64_t)n, &t), 0);
		merkle_tree_root(&t, root);
		assert_hash_hex(root, ct_roots[n - 1]);
		merkle_tree_free(&t);
	}
}

/* RFC 9162 / CT inclusion proof vectors for the 8-leaf tree */
static void test_merkle_inclusion_vectors(void **state)
{
	uint8_t leaves[8][MERKLE_HASH], root[MERKLE_HASH];
	uint8_t(*path)[MERKLE_HASH] = NULL;
	struct merkle_tree t;
	size_t n = 0;

	ct_leaves(leaves);
	assert_int_equal(merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, 8, &t), 0);
	merkle_tree_root(&t, root);
	/* leaf 0 of 8: three siblings */
	assert_int_equal(merkle_tree_inclusion(&t, 0, &path, &n), 0);
	assert_int_equal(n, 3);
	assert_hash_hex(path[0], "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
	assert_hash_hex(path[1], "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e");
	assert_hash_hex(path[2], "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4");
	free(path);
	/* leaf 5 of 8 */
	assert_int_equal(merkle_tree_inclusion(&t, 5, &path, &n), 0);
	assert_int_equal(n, 3);
	assert_hash_hex(path[0], "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b");
	assert_hash_hex(path[1], "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0");
	assert_hash_hex(path[2], "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7");
	free(path);
	merkle_tree_free(&t);
}

/* Every proof generated for sizes 1..8 (and a larger odd tree) verifies,
 * and each one fails with any single bit flipped, a wrong index or size. */
static void test_merkle_proofs_roundtrip(void **state)
{
	enum { N = 37 };
	uint8_t leaves[N][MERKLE_HASH], roots[N + 1][MERKLE_HASH];
	struct merkle_range r;

	for (int i = 0; i < N; i++) {
		uint8_t b = (uint8_t)i;

		merkle_leaf_hash(&b, 1, leaves[i]);
	}
	merkle_range_init(&r);
	merkle_range_root(&r, roots[0]);
	for (int i = 0; i < N; i++) {
		merkle_range_append(&r, leaves[i]);
		merkle_range_root(&r, roots[i + 1]);
	}
	for (uint64_t n = 1; n <= N; n++) {
		struct merkle_tree t;

		assert_int_equal(merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, n, &t), 0);
		for (uint64_t i = 0; i < n; i++) {
			uint8_t(*p)[MERKLE_HASH] = NULL;
			size_t c = 0;

			assert_int_equal(merkle_tree_inclusion(&t, i, &p, &c), 0);
			assert_true(merkle_verify_inclusion(i, n, leaves[i],
							    (const uint8_t(*)[MERKLE_HASH])p, c, roots[n]));
			if (n > 1) {
				assert_false(merkle_verify_inclusion((i + 1) % n, n, leaves[i],
								     (const uint8_t(*)[MERKLE_HASH])p, c,
								     roots[n]));
				assert_false(merkle_verify_inclusion(i, n, leaves[(i + 1) % n],
								     (const uint8_t(*)[MERKLE_HASH])p, c,
								     roots[n]));
				p[c - 1][3] ^= 0x40;
				assert_false(merkle_verify_inclusion(i, n, leaves[i],
								     (const uint8_t(*)[MERKLE_HASH])p, c,
								     roots[n]));
			}
			assert_false(merkle_verify_inclusion(i, n + 1, leaves[i],
							     (const uint8_t(*)[MERKLE_HASH])p, c,
							     roots[n]));
			free(p);
		}
		for (uint64_t m = 1; m <= n; m++) {
			uint8_t(*p)[MERKLE_HASH] = NULL;
			size_t c = 0;

			assert_int_equal(merkle_tree_consistency(&t, m, &p, &c), 0);
			assert_true(merkle_verify_consistency(m, n, roots[m], roots[n],
							      (const uint8_t(*)[MERKLE_HASH])p, c));
			if (m < n) {
				assert_false(merkle_verify_consistency(m, n, roots[m - 1], roots[n],
								       (const uint8_t(*)[MERKLE_HASH])p, c));
				assert_false(merkle_verify_consistency(m, n, roots[m], roots[n - 1],
								       (const uint8_t(*)[MERKLE_HASH])p, c));
				p[0][0] ^= 1;
				assert_false(merkle_verify_consistency(m, n, roots[m], roots[n],
								       (const uint8_t(*)[MERKLE_HASH])p, c));
				assert_false(merkle_verify_consistency(m, n, roots[m], roots[n],
								       (const uint8_t(*)[MERKLE_HASH])p, c - 1));
			}
			free(p);
		}
		merkle_tree_free(&t);
	}
}

/* RFC 9162 §2.1.5 example tree of 7 leaves: consistency 3 -> 7 is
 * [c, d, g, l] (4 hashes), 4 -> 7 is [l] (1 hash), 6 -> 7 is [i, j, k]. */
static void test_merkle_consistency_shapes(void **state)
{
	uint8_t leaves[7][MERKLE_HASH];
	struct merkle_tree t;
	uint8_t(*p)[MERKLE_HASH] = NULL;
	size_t c = 0;

	for (int i = 0; i < 7; i++) {
		uint8_t b = (uint8_t)i;

		merkle_leaf_hash(&b, 1, leaves[i]);
	}
	assert_int_equal(merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, 7, &t), 0);
	assert_int_equal(merkle_tree_consistency(&t, 3, &p, &c), 0);
	assert_int_equal(c, 4);
	assert_memory_equal(p[0], leaves[2], MERKLE_HASH); /* c */
	assert_memory_equal(p[1], leaves[3], MERKLE_HASH); /* d */
	free(p);
	assert_int_equal(merkle_tree_consistency(&t, 4, &p, &c), 0);
	assert_int_equal(c, 1);
	free(p);
	assert_int_equal(merkle_tree_consistency(&t, 6, &p, &c), 0);
	assert_int_equal(c, 3);
	free(p);
	assert_int_equal(merkle_tree_consistency(&t, 0, &p, &c), -EINVAL);
	assert_int_equal(merkle_tree_consistency(&t, 8, &p, &c), -EINVAL);
	assert_int_equal(merkle_tree_inclusion(&t, 7, &p, &c), -EINVAL);
	merkle_tree_free(&t);
}

/* ---- signed notes -------------------------------------------------------- */

static void test_note_vkey(void **state)
{
	struct note_key k;
	struct cerr err = {{0}};
	uint8_t id[4];

	/* the key of golang.org/x/mod/sumdb/note's documentation */
	assert_int_equal(note_vkey_parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
					 &k, &err),
			 0);
	assert_string_equal(k.name, "example.com/foo");
	note_key_id(k.name, k.pk, id);
	assert_memory_equal(id, "\x53\x0d\x90\x3a", 4);
	/* wrong id, wrong name, bad base64, wrong type byte */
	assert_int_equal(note_vkey_parse("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
					 &k, &err),
			 -EINVAL);
	assert_int_equal(note_vkey_parse("example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
					 &k, &err),
			 -EINVAL);
	assert_int_equal(note_vkey_parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2", &k,
					 &err),
			 -EINVAL);
	assert_int_equal(note_vkey_parse("example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", &k,
					 &err),
			 -EINVAL);
	assert_int_equal(note_vkey_parse("nokey", &k, &err), -EINVAL);
	assert_int_equal(note_vkey_parse(NULL, &k, &err), -EINVAL);
}

static void test_note_checkpoint(void **state)
{
	struct tkey k, other;
	struct note_key nk;
	struct note_checkpoint cp;
	struct cerr err = {{0}};
	uint8_t root[32];
	char *note = NULL, *bad;
	char root64[64];

	tkey_init(&k, "custody.test/audit", 7);
	tkey_init(&other, "custody.test/audit", 8);
	assert_int_equal(note_vkey_parse(k.vkey, &nk, &err), 0);
	memset(root, 0xab, sizeof(root));
	assert_int_equal(note_checkpoint_sign(&k.signer, 1234, root, &note), 0);
	sodium_bin2base64(root64, sizeof(root64), root, 32, sodium_base64_VARIANT_ORIGINAL);
	/* exact C2SP shape */
	{
		char *want = NULL;

		assert_true(asprintf(&want, "custody.test/audit\n1234\n%s\n\n\xe2\x80\x94 custody.test/audit ",
				     root64) > 0);
		assert_int_equal(strncmp(note, want, strlen(want)), 0);
		assert_int_equal(strlen(note), strlen(want) + 92 + 1); /* base64(68) + \n */
		free(want);
	}
	assert_int_equal(note_checkpoint_verify(note, &nk, &cp, &err), 0);
	assert_int_equal(cp.size, 1234);
	assert_memory_equal(cp.root, root, 32);

	/* changed size: signature must fail */
	bad = strdup(note);
	bad[strlen("custody.test/audit\n")] = '2';
	assert_int_equal(note_checkpoint_verify(bad, &nk, &cp, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "signature does not verify"));
	free(bad);
	/* signature by another key under the same name and a forged id */
	{
		struct note_key onk;

		assert_int_equal(note_vkey_parse(other.vkey, &onk, &err), 0);
		assert_int_equal(note_checkpoint_verify(note, &onk, &cp, &err), -EBADMSG);
		assert_non_null(strstr(err.msg, "no signature by"));
		memcpy(onk.id, nk.id, 4); /* same name and id, other key */
		assert_int_equal(note_checkpoint_verify(note, &onk, &cp, &err), -EBADMSG);
	}
	/* truncated, no signature, trailing garbage */
	bad = strndup(note, strlen(note) - 10);
	assert_int_equal(note_checkpoint_verify(bad, &nk, &cp, &err), -EBADMSG);
	free(bad);
	bad = strndup(note, strlen("custody.test/audit\n1234\n") + strlen(root64) + 2);
	assert_int_equal(note_checkpoint_verify(bad, &nk, &cp, &err), -EBADMSG);
	free(bad);
	assert_int_equal(note_checkpoint_verify("custody.test/audit\n", &nk, &cp, &err), -EBADMSG);
	assert_int_equal(note_checkpoint_verify("", &nk, &cp, &err), -EBADMSG);
	free(note);
}

/* ---- store --------------------------------------------------------------- */

struct collect {
	unsigned n;
	uint64_t seqs[256];
	json_t *last;
};

static int collect_cb(void *ctx, uint64_t seq, const char *body, size_t len)
{
	struct collect *c = ctx;

	assert_int_equal(strlen(body), len);
	if (c->n < 256)
		c->seqs[c->n] = seq;
	c->n++;
	json_decref(c->last);
	c->last = json_loadb(body, len, 0, NULL);
	assert_non_null(c->last);
	return 0;
}

static void test_store_append_query(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct tkey k;
	struct audit *a;
	struct collect c = {0};
	uint64_t seq = 0;

	tkey_init(&k, "custody.test/audit", 1);
	a = topen(path, &k);
	assert_int_equal(audit_size(a), 0);
	assert_true(audit_writable(a));
	assert_int_equal(audit_append(a, json_pack("{s:s,s:s,s:n}", "event", "start", "outcome", "ok",
						   "tenant"),
				      &seq),
			 0);
	assert_int_equal(seq, 1);
	tfill(a, 9, 3); /* seq 2..10; t0: 2,5,8,11.. */
	assert_int_equal(audit_size(a), 10);

	/* malformed: no event, event not a string, tenant a number */
	assert_int_equal(audit_append(a, json_pack("{s:s}", "outcome", "ok"), &seq), -EINVAL);
	assert_int_equal(audit_append(a, json_pack("{s:i}", "event", 3), &seq), -EINVAL);
	assert_int_equal(audit_append(a, json_pack("{s:s,s:i}", "event", "x", "tenant", 3), &seq),
			 -EINVAL);
	assert_int_equal(audit_append(a, json_array(), &seq), -EINVAL);
	assert_int_equal(audit_append(a, NULL, &seq), -EINVAL);
	assert_int_equal(audit_size(a), 10);

	/* tenant chain */
	struct audit_filter f = {.tenant = "t1"};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.seqs[0], 3);
	assert_int_equal(c.seqs[2], 9);
	assert_int_equal(json_integer_value(json_object_get(c.last, "tenant_seq")), 3);
	assert_true(json_is_string(json_object_get(c.last, "tenant_prev")));
	assert_int_equal(json_integer_value(json_object_get(c.last, "seq")), 9);
	assert_non_null(json_string_value(json_object_get(c.last, "time")));

	/* descending, limit */
	json_decref(c.last);
	memset(&c, 0, sizeof(c));
	f = (struct audit_filter){.descending = true, .limit = 2};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.seqs[0], 10);
	assert_int_equal(c.seqs[1], 9);
	json_decref(c.last);
	/* after_seq + event */
	memset(&c, 0, sizeof(c));
	f = (struct audit_filter){.after_seq = 7, .event = "token"};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.seqs[0], 8);
	json_decref(c.last);
	/* the first record has no tenant: no chain fields */
	memset(&c, 0, sizeof(c));
	f = (struct audit_filter){.limit = 1};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_null(json_object_get(c.last, "tenant_seq"));
	assert_null(json_object_get(c.last, "tenant_prev"));
	json_decref(c.last);
	/* time window: nothing in 1970, everything since then */
	memset(&c, 0, sizeof(c));
	f = (struct audit_filter){.until_us = 1000000};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.n, 0);
	f = (struct audit_filter){.since_us = 1000000, .principal = "p1"};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.n, 9);
	json_decref(c.last);

	/* restart: seq and chains continue */
	assert_int_equal(audit_close(a), 0);
	a = topen(path, &k);
	assert_int_equal(audit_size(a), 10);
	tfill(a, 3, 3);
	assert_int_equal(audit_size(a), 13);
	memset(&c, 0, sizeof(c));
	f = (struct audit_filter){.tenant = "t0", .descending = true, .limit = 1};
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.seqs[0], 11);
	assert_int_equal(json_integer_value(json_object_get(c.last, "tenant_seq")), 4);
	json_decref(c.last);
	assert_int_equal(audit_close(a), 0);
	free(path);
	tdir_free(dir);
}

/* The tenant heads and the compact range are written only with
 * checkpoints, at close and every AUDIT_DERIVED_EVERY (4096) records, so a
 * crash leaves them behind the records. A crash image (the committed
 * state, taken with SQLite's backup API while the store is open) must
 * verify as it is, and opening it replays the records after them: seq,
 * tenant chains and the tree continue exactly. */
static void test_store_crash_replay(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db"), *img = tpath(dir, "crash.db");
	struct audit_verify_stats st = {0};
	struct audit_opts o = {0};
	struct cerr err = {{0}};
	struct audit_done d[256];
	struct audit *a;
	sqlite3 *src = NULL, *dst = NULL;
	sqlite3_backup *bk;
	const unsigned n1 = 4500, n = 4800;
	size_t got = 0;
	uint64_t seq = 0, tree_size = 0;

	(void)state;
	/* no signer: no checkpoint writes the derived state, only the count */
	assert_int_equal(audit_open(path, &o, &a, &err), 0);
	for (unsigned i = 0; i < n1; i++) {
		char t[16];

		snprintf(t, sizeof(t), "t%u", i % 7);
		while (audit_append_async(a, json_pack("{s:s,s:s,s:i}", "event", "token", "tenant", t,
						       "n", (int)i),
					  i) == -EAGAIN)
			usleep(1000);
	}
	while (got < n1) {
		size_t k = audit_poll(a, d, 256);

		for (size_t i = 0; i < k; i++)
			assert_int_equal(d[i].rc, 0);
		got += k;
		if (k == 0)
			usleep(1000);
	}
	/* then one record per commit: the derived state stays behind these */
	for (unsigned i = n1; i < n; i++) {
		char t[16];

		snprintf(t, sizeof(t), "t%u", i % 7);
		assert_int_equal(audit_append(a, json_pack("{s:s,s:s,s:i}", "event", "token", "tenant",
							   t, "n", (int)i),
					      &seq),
				 0);
	}
	assert_int_equal(audit_size(a), n);

	/* the committed state now, as a crash would leave it */
	assert_int_equal(sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_open(img, &dst), SQLITE_OK);
	bk = sqlite3_backup_init(dst, "main", src, "main");
	assert_non_null(bk);
	assert_int_equal(sqlite3_backup_step(bk, -1), SQLITE_DONE);
	assert_int_equal(sqlite3_backup_finish(bk), SQLITE_OK);
	sqlite3_close(src);
	sqlite3_close(dst);
	assert_int_equal(audit_close(a), 0);

	/* behind the records, by less than the interval */
	{
		sqlite3_stmt *q = NULL;

		assert_int_equal(sqlite3_open_v2(img, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(src, "SELECT size FROM tree", -1, &q, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(q), SQLITE_ROW);
		tree_size = (uint64_t)sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
		sqlite3_close(src);
	}
	print_message("tree row at %llu of %u records\n", (unsigned long long)tree_size, n);
	assert_true(tree_size >= 4096 && tree_size < n);
	assert_int_equal(audit_verify_db(img, NULL, &st, &err), 0);
	assert_int_equal(st.records, n);

	/* reopen the image: the replayed heads continue every chain */
	assert_int_equal(audit_open(img, &o, &a, &err), 0);
	assert_int_equal(audit_size(a), n);
	for (unsigned i = 0; i < 14; i++) {
		char t[16];

		snprintf(t, sizeof(t), "t%u", i % 7);
		assert_int_equal(audit_append(a, json_pack("{s:s,s:s}", "event", "token", "tenant", t),
					      &seq),
				 0);
		assert_int_equal(seq, n + i + 1);
	}
	assert_int_equal(audit_close(a), 0);
	memset(&st, 0, sizeof(st));
	assert_int_equal(audit_verify_db(img, NULL, &st, &err), 0);
	assert_int_equal(st.records, n + 14);
	assert_int_equal(st.tenants, 7);
	/* and the original, closed cleanly, verifies too */
	assert_int_equal(audit_verify_db(path, NULL, &st, &err), 0);
	free(img);
	free(path);
	tdir_free(dir);
}

static int canon_cb(void *ctx, uint64_t seq, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	char *again;

	assert_non_null(j);
	/* canonical: re-encoding gives the stored bytes back */
	again = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	assert_string_equal(again, body);
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), seq);
	free(again);
	json_decref(j);
	(*(unsigned *)ctx)++;
	return 0;
}

/* Bodies are canonical whatever the caller sends: non-ASCII, nested
 * objects, strings that look like the store's placeholders, store keys the
 * caller tried to set itself. */
static void test_store_canonical(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct audit *a = topen(path, NULL);
	struct audit_filter f = {0};
	unsigned n = 0;
	uint64_t seq = 0;

	assert_int_equal(audit_append(a, json_pack("{s:s,s:s,s:{s:s,s:i},s:s}", "event", "tok\u00e9n \u2014",
						   "tenant", "t\u00fc", "peer", "seq", "\x01x", "uid", 3,
						   "a\"b", "\x01\x02"),
				      &seq),
			 0);
	assert_int_equal(audit_append(a, json_pack("{s:s,s:i,s:s,s:i,s:s,s:n}", "event", "e", "seq", 99, "time",
						   "yesterday", "tenant_seq", 5, "tenant_prev", "x", "tenant"),
				      &seq),
			 0);
	assert_int_equal(seq, 2);
	assert_int_equal(audit_append(a, json_pack("{s:s,s:s,s:f,s:[i,s]}", "event", "e", "tenant", "t\u00fc", "r",
						   0.1, "l", 1, "z"),
				      &seq),
			 0);
	assert_int_equal(audit_query(a, &f, canon_cb, &n), 0);
	assert_int_equal(n, 3);
	{
		struct collect c = {0};

		f.after_seq = 1;
		f.limit = 1;
		assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
		/* the caller's seq/time/chain were replaced; no tenant: no chain */
		assert_int_equal(json_integer_value(json_object_get(c.last, "seq")), 2);
		assert_string_not_equal(json_string_value(json_object_get(c.last, "time")), "yesterday");
		assert_null(json_object_get(c.last, "tenant_seq"));
		json_decref(c.last);
	}
	assert_int_equal(audit_close(a), 0);
	free(path);
	tdir_free(dir);
}

static void test_store_async(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct audit *a = topen(path, NULL);
	struct audit_done d[16];
	bool seen[101] = {0};
	unsigned got = 0;
	struct pollfd pfd = {.fd = audit_event_fd(a), .events = POLLIN};

	assert_int_equal(poll(&pfd, 1, 0), 0); /* nothing waiting: not readable */
	for (unsigned i = 1; i <= 100; i++)
		assert_int_equal(audit_append_async(a, json_pack("{s:s}", "event", "e"), i), 0);
	assert_int_equal(audit_append_async(a, json_pack("{s:b}", "event", 1), 999), -EINVAL);
	while (got < 100) {
		size_t n;

		assert_int_equal(poll(&pfd, 1, 5000), 1);
		n = audit_poll(a, d, 16);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(d[i].rc, 0);
			assert_true(d[i].cookie >= 1 && d[i].cookie <= 100);
			assert_false(seen[d[i].cookie]);
			seen[d[i].cookie] = true;
			assert_true(d[i].seq >= 1 && d[i].seq <= 100);
		}
		got += (unsigned)n;
	}
	assert_int_equal(audit_poll(a, d, 16), 0);
	assert_int_equal(poll(&pfd, 1, 0), 0); /* drained: not readable */
	assert_int_equal(audit_size(a), 100);
	/* no signer: no checkpoint */
	assert_int_equal(audit_checkpoint(a, NULL, NULL), -ENOKEY);
	assert_int_equal(audit_close(a), 0);
	free(path);
	tdir_free(dir);
}

struct hammer {
	struct audit *a;
	unsigned n;
	uint64_t max_seq;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;

	for (unsigned i = 0; i < h->n; i++) {
		uint64_t seq = 0;

		if (audit_append(h->a, json_pack("{s:s,s:s}", "event", "token", "tenant", "tx"), &seq) != 0)
			return NULL;
		if (seq > h->max_seq)
			h->max_seq = seq;
	}
	return h;
}

/* Concurrent blocking appenders: every record gets a distinct seq, the
 * tenant chain stays dense. */
static void test_store_concurrent(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct audit *a = topen(path, NULL);
	pthread_t th[8];
	struct hammer h[8];
	struct collect c = {0};
	struct audit_filter f = {.tenant = "tx", .descending = true, .limit = 1};

	for (int i = 0; i < 8; i++) {
		h[i] = (struct hammer){.a = a, .n = 50};
		assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		void *r;

		pthread_join(th[i], &r);
		assert_ptr_equal(r, &h[i]);
	}
	assert_int_equal(audit_size(a), 400);
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(json_integer_value(json_object_get(c.last, "tenant_seq")), 400);
	json_decref(c.last);
	assert_int_equal(audit_close(a), 0);
	free(path);
	tdir_free(dir);
}

static void test_store_checkpoints(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct tkey k;
	struct audit *a;
	struct note_key nk;
	struct note_checkpoint cp;
	struct cerr err = {{0}};
	char *note = NULL, *note2 = NULL;
	uint64_t size = 99;
	struct audit_opts o = {.checkpoint_every = 5};

	tkey_init(&k, "custody.test/audit", 3);
	assert_int_equal(note_vkey_parse(k.vkey, &nk, &err), 0);
	a = topen(path, &k);
	/* size 0: the empty tree's root */
	assert_int_equal(audit_checkpoint(a, &note, &size), 0);
	assert_int_equal(size, 0);
	assert_int_equal(note_checkpoint_verify(note, &nk, &cp, &err), 0);
	assert_int_equal(cp.size, 0);
	assert_hash_hex(cp.root, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	free(note);
	tfill(a, 8, 2);
	assert_int_equal(audit_checkpoint(a, &note, &size), 0);
	assert_int_equal(size, 8);
	/* nothing new: the same note again */
	assert_int_equal(audit_checkpoint(a, &note2, &size), 0);
	assert_string_equal(note, note2);
	free(note2);
	free(note);
	/* async: the note comes through the completion ring, after the
	 * records queued with it, never by blocking the caller */
	{
		struct pollfd pfd = {.fd = audit_event_fd(a), .events = POLLIN};
		struct audit_done d[8];
		bool got_rec = false, got_cp = false;

		assert_int_equal(audit_append_async(a, json_pack("{s:s}", "event", "e"), 41), 0);
		assert_int_equal(audit_checkpoint_async(a, 42), 0);
		while (!got_cp) {
			size_t n;

			assert_int_equal(poll(&pfd, 1, 5000), 1);
			n = audit_poll(a, d, 8);
			for (size_t i = 0; i < n; i++) {
				if (d[i].cookie == 41) {
					assert_false(d[i].checkpoint);
					assert_null(d[i].note);
					got_rec = true;
					continue;
				}
				assert_int_equal(d[i].cookie, 42);
				assert_true(d[i].checkpoint);
				assert_true(got_rec);
				assert_int_equal(d[i].rc, 0);
				assert_int_equal(d[i].seq, 9);
				assert_int_equal(note_checkpoint_verify(d[i].note, &nk, &cp, &err), 0);
				assert_int_equal(cp.size, 9);
				free(d[i].note);
				got_cp = true;
			}
		}
		/* one nobody polls is freed at close */
		assert_int_equal(audit_checkpoint_async(a, 43), 0);
	}
	assert_int_equal(audit_close(a), 0); /* final checkpoint at 9 */

	/* checkpoint_every: count-based ones appear */
	o.signer = &k.signer;
	assert_int_equal(audit_open(path, &o, &a, &err), 0);
	tfill(a, 12, 2);
	assert_int_equal(audit_close(a), 0);
	{
		sqlite3 *db;
		sqlite3_stmt *st;
		int n = 0;
		uint64_t sizes[16];

		assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT size FROM checkpoints ORDER BY size", -1, &st, NULL),
				 SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW && n < 16)
			sizes[n++] = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		/* the store's contract on the table: no UPDATE, no DELETE */
		assert_int_not_equal(sqlite3_exec(db, "DELETE FROM checkpoints", NULL, NULL, NULL), SQLITE_OK);
		assert_int_not_equal(sqlite3_exec(db, "UPDATE events SET body = 'x' WHERE seq = 1", NULL, NULL, NULL),
				     SQLITE_OK);
		assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events WHERE seq = 3", NULL, NULL, NULL),
				     SQLITE_OK);
		sqlite3_close(db);
		assert_int_equal(n, 6);
		assert_int_equal(sizes[0], 0);
		assert_int_equal(sizes[1], 8);
		assert_int_equal(sizes[2], 9);
		assert_int_equal(sizes[3], 14);
		assert_int_equal(sizes[4], 19);
		assert_int_equal(sizes[5], 21);
	}
	free(path);
	tdir_free(dir);
}

static void test_store_interval_checkpoint(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct tkey k;
	struct audit *a;
	struct cerr err = {{0}};
	struct audit_opts o = {.checkpoint_interval_s = 1};
	uint64_t n = 0;

	tkey_init(&k, "custody.test/audit", 3);
	o.signer = &k.signer;
	assert_int_equal(audit_open(path, &o, &a, &err), 0);
	tfill(a, 3, 1);
	usleep(1600 * 1000);
	{
		sqlite3 *db;
		sqlite3_stmt *st;

		assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM checkpoints WHERE size = 3", -1, &st,
						    NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		n = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		sqlite3_close(db);
	}
	assert_int_equal(n, 1);
	assert_int_equal(audit_close(a), 0);
	free(path);
	tdir_free(dir);
}

static void test_store_read_only(void **state)
{
	char *dir = tdir_new(), *path = tpath(dir, "audit.db");
	struct audit_opts o = {.read_only = true};
	struct cerr err = {{0}};
	struct audit *a = NULL;
	struct collect c = {0};
	struct audit_filter f = {0};

	assert_int_equal(audit_open(path, &o, &a, &err), -ENOENT);
	a = topen(path, NULL);
	tfill(a, 4, 2);
	assert_int_equal(audit_close(a), 0);
	assert_int_equal(audit_open(path, &o, &a, &err), 0);
	assert_int_equal(audit_size(a), 4);
	assert_false(audit_writable(a));
	assert_int_equal(audit_append(a, json_pack("{s:s}", "event", "e"), NULL), -EIO);
	assert_int_equal(audit_query(a, &f, collect_cb, &c), 0);
	assert_int_equal(c.n, 4);
	json_decref(c.last);
	assert_int_equal(audit_close(a), 0);
	/* not an audit store */
	{
		char *junk = tpath(dir, "junk.db");

		assert_int_equal(util_write_file(junk, "this is not sqlite", 18, 0600), 0);
		assert_int_not_equal(audit_open(junk, &o, &a, &err), 0);
		assert_true(strlen(err.msg) > 0);
		o.read_only = false;
		assert_int_not_equal(audit_open(junk, &o, &a, &err), 0);
		free(junk);
	}
	free(path);
	tdir_free(dir);
}

/* A memoized walk must never let a forged proof ride on a neighbour's
 * verified one. Leaves 10 and 11 meet at node (1, 5): after 10 verified,
 * 11's walk reaches a remembered node after one hash. A memo that stopped
 * there would accept any siblings above it; this one compares them and
 * computes the walk in full when one differs. */
static void test_merkle_memo_forged_sibling(void **state)
{
	enum { N = 1000 };
	static uint8_t leaves[N][MERKLE_HASH];
	uint8_t root[MERKLE_HASH];
	uint8_t(*p10)[MERKLE_HASH] = NULL, (*p11)[MERKLE_HASH] = NULL;
	size_t c10 = 0, c11 = 0;
	struct merkle_tree t;
	struct merkle_memo m = {0};

	for (int i = 0; i < N; i++) {
		uint32_t b = (uint32_t)i;

		merkle_leaf_hash(&b, sizeof(b), leaves[i]);
	}
	assert_int_equal(merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, N, &t), 0);
	merkle_tree_root(&t, root);
	assert_int_equal(merkle_tree_inclusion(&t, 10, &p10, &c10), 0);
	assert_int_equal(merkle_tree_inclusion(&t, 11, &p11, &c11), 0);
	assert_int_equal(c10, c11);
	assert_true(merkle_verify_inclusion_memo(&m, 10, N, leaves[10],
						 (const uint8_t(*)[MERKLE_HASH])p10, c10, root));
	/* the memo holds 10's walk: the node 11 reaches first is in it */
	assert_int_equal(m.count, c10);
	assert_int_not_equal(m.at_level[1], 0);
	/* each sibling above the shared node forged in turn: rejected, as
	 * the walk without a memo rejects it */
	for (size_t k = 1; k < c11; k++) {
		p11[k][7] ^= 0x01;
		assert_false(merkle_verify_inclusion(11, N, leaves[11],
						     (const uint8_t(*)[MERKLE_HASH])p11, c11, root));
		assert_false(merkle_verify_inclusion_memo(&m, 11, N, leaves[11],
							  (const uint8_t(*)[MERKLE_HASH])p11, c11,
							  root));
		p11[k][7] ^= 0x01;
	}
	/* a forged leaf-level sibling, a wrong leaf, a wrong index, a
	 * truncated path: all still fail */
	p11[0][0] ^= 0x80;
	assert_false(merkle_verify_inclusion_memo(&m, 11, N, leaves[11],
						  (const uint8_t(*)[MERKLE_HASH])p11, c11, root));
	p11[0][0] ^= 0x80;
	assert_false(merkle_verify_inclusion_memo(&m, 11, N, leaves[12],
						  (const uint8_t(*)[MERKLE_HASH])p11, c11, root));
	assert_false(merkle_verify_inclusion_memo(&m, 10, N, leaves[11],
						  (const uint8_t(*)[MERKLE_HASH])p11, c11, root));
	assert_false(merkle_verify_inclusion_memo(&m, 11, N, leaves[11],
						  (const uint8_t(*)[MERKLE_HASH])p11, c11 - 1, root));
	/* the failures left the memo as it was: the honest proof verifies */
	assert_true(merkle_verify_inclusion_memo(&m, 11, N, leaves[11],
						 (const uint8_t(*)[MERKLE_HASH])p11, c11, root));
	free(p10);
	free(p11);

	/* every leaf in order, then in a scattered order, each proof honest
	 * and then with one byte of one sibling changed: the memo's verdict
	 * is the plain walk's, proof by proof */
	for (int pass = 0; pass < 2; pass++) {
		struct merkle_memo mm = {0};

		for (uint64_t j = 0; j < N; j++) {
			uint64_t i = pass == 0 ? j : (j * 389) % N;
			uint8_t(*p)[MERKLE_HASH] = NULL;
			size_t c = 0;

			assert_int_equal(merkle_tree_inclusion(&t, i, &p, &c), 0);
			assert_true(merkle_verify_inclusion_memo(&mm, i, N, leaves[i],
								 (const uint8_t(*)[MERKLE_HASH])p, c,
								 root));
			p[j % c][j % MERKLE_HASH] ^= 0x10;
			assert_false(merkle_verify_inclusion_memo(&mm, i, N, leaves[i],
								  (const uint8_t(*)[MERKLE_HASH])p, c,
								  root));
			free(p);
		}
	}
	merkle_tree_free(&t);
}

int audit_group_store(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merkle_roots),
		cmocka_unit_test(test_merkle_inclusion_vectors),
		cmocka_unit_test(test_merkle_proofs_roundtrip),
		cmocka_unit_test(test_merkle_memo_forged_sibling),
		cmocka_unit_test(test_merkle_consistency_shapes),
		cmocka_unit_test(test_note_vkey),
		cmocka_unit_test(test_note_checkpoint),
		cmocka_unit_test(test_store_append_query),
		cmocka_unit_test(test_store_canonical),
		cmocka_unit_test(test_store_crash_replay),
		cmocka_unit_test(test_store_async),
		cmocka_unit_test(test_store_concurrent),
		cmocka_unit_test(test_store_checkpoints),
		cmocka_unit_test(test_store_interval_checkpoint),
		cmocka_unit_test(test_store_read_only),
	};

	return cmocka_run_group_tests_name("audit store", tests, NULL, NULL);
}

int main(void)
{
	int rc = 0;

	if (sodium_init() < 0)
		return 1;
	/* AUDIT_TEST_FILTER=test_name (cmocka pattern) runs only those */
	if (getenv("AUDIT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("AUDIT_TEST_FILTER"));
	rc |= audit_group_store();
	rc |= audit_group_verify();
	rc |= audit_group_fault();
	rc |= audit_group_cosig();
	rc |= audit_group_scan();
	return rc ? 1 : 0;
}

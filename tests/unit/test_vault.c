/* test_vault.c — the vault: keys and their sources, sealed grants, records
 * and their tamper evidence, officer state, rekey. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <sodium.h>

#include "vault.h"

#define SECRET "Zx9~sEcReT-value.4711_do-not-leak"
#define TENANT "72f988bf-86f1-41af-91ab-2d7cd011db47"
#define NOW 1795924800 /* 2026-11-29T04:00:00Z */

struct fx {
	char dir[64];
	char vdir[128];
	char key[128];
	struct vault_key_source src;
};

static bool under_valgrind(void)
{
	return getenv("CUSTODY_VALGRIND") != NULL;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct cerr err = {{0}};

	assert_non_null(f);
	strcpy(f->dir, "/tmp/custody-vault-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->vdir, sizeof(f->vdir), "%s/state/vault", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/master.key", f->dir);
	assert_int_equal(vault_key_file_create(f->key, &err), 0);
	f->src.key_file = f->key;
	assert_int_equal(vault_create(f->vdir, &f->src, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	rm_rf(f->dir);
	free(f);
	return 0;
}

static struct vault *open_ok(struct fx *f)
{
	struct vault *v = NULL;
	struct cerr err = {{0}};
	int rc = vault_open(f->vdir, &f->src, &v, &err);

	if (rc != 0)
		fail_msg("vault_open: %d %s", rc, err.msg);
	return v;
}

static void write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static char *read_all(const char *path, size_t *len)
{
	char *buf = NULL;

	assert_int_equal(util_read_file(path, 64 << 20, &buf, len), 0);
	return buf;
}

static bool file_contains(const char *path, const void *needle, size_t n)
{
	size_t len = 0;
	char *buf = read_all(path, &len);
	bool found = memmem(buf, len, needle, n) != NULL;

	free(buf);
	return found;
}

static char *grant_json(const char *extra)
{
	char *s = NULL;

	assert_true(asprintf(&s,
			     "{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\","
			     "\"tenant_name\":\"contoso\",\"client_id\":\"00000000-0000-0000-0000-000000000001\","
			     "\"client_secret\":\"" SECRET "\"%s%s}",
			     extra[0] ? "," : "", extra) > 0);
	return s;
}

static char *seal(const struct vault_public *pub, const char *extra)
{
	char *json = grant_json(extra), *env = NULL;
	struct cerr err = {{0}};
	int rc = grant_seal(json, strlen(json), pub->seal_pk, &env, &err);

	if (rc != 0)
		fail_msg("grant_seal: %d %s", rc, err.msg);
	free(json);
	return env;
}

static const char *const hosts[] = {"login.microsoftonline.com", "127.0.0.1", NULL};

static struct grant *import_ok(struct vault *v, const char *env, bool want_already)
{
	struct grant *g = NULL;
	struct cerr err = {{0}};
	bool already = !want_already;
	int rc = vault_grant_import(v, env, strlen(env), hosts, NOW, &g, &already, &err);

	if (rc != 0)
		fail_msg("import: %d %s", rc, err.msg);
	assert_int_equal(already, want_already);
	return g;
}

/* ---- keys -------------------------------------------------------------- */

static void test_create_open_roundtrip(void **state)
{
	struct fx *f = *state;
	struct vault_public pub;
	struct cerr err = {{0}};
	struct stat st;
	struct vault *v;
	uint8_t h[32];
	char hex[17], path[256];

	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(vault_key_file_create(f->key, &err), -EEXIST);
	assert_int_equal(vault_create(f->vdir, &f->src, &err), -EEXIST);
	assert_int_equal(stat(f->vdir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/data.mdb", f->vdir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);

	assert_int_equal(vault_read_public(f->vdir, &pub, &err), 0);
	crypto_hash_sha256(h, pub.seal_pk, 32);
	util_hex(h, 8, hex);
	assert_string_equal(pub.seal_key_id, hex);

	v = open_ok(f);
	assert_memory_equal(vault_public_keys(v)->seal_pk, pub.seal_pk, 32);
	assert_memory_equal(vault_public_keys(v)->sign_pk, pub.sign_pk, 32);
	assert_string_equal(vault_public_keys(v)->seal_key_id, pub.seal_key_id);
	/* the audit key signs, and the public key verifies */
	{
		uint8_t sig[64];
		const uint8_t msg[] = "checkpoint";

		assert_int_equal(vault_audit_sign(v, msg, sizeof(msg), sig), 0);
		assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), pub.sign_pk), 0);
		sig[3] ^= 1;
		assert_int_not_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), pub.sign_pk), 0);
	}
	vault_close(v);
	v = open_ok(f);
	assert_memory_equal(vault_public_keys(v)->seal_pk, pub.seal_pk, 32);
	vault_close(v);

	snprintf(path, sizeof(path), "%s/nothing-here", f->dir);
	assert_int_equal(vault_open(path, &f->src, &v, &err), -ENOENT);
	assert_non_null(strstr(err.msg, path));
	assert_int_equal(vault_read_public(path, &pub, &err), -ENOENT);
}

static void test_key_file_forms(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	uint8_t raw[32];
	char b64[64], buf[128], vdir[256], key[256];
	struct vault_key_source src = {.key_file = key};
	struct vault *v = NULL;

	snprintf(vdir, sizeof(vdir), "%s/raw", f->dir);
	snprintf(key, sizeof(key), "%s/raw.key", f->dir);
	randombytes_buf(raw, sizeof(raw));
	raw[0] = ' '; /* raw keys may start or end with "white space" bytes */
	raw[31] = '\n';
	write_file(key, raw, 32, 0600);
	assert_int_equal(vault_create(vdir, &src, &err), 0);
	assert_int_equal(vault_open(vdir, &src, &v, &err), 0);
	vault_close(v);
	/* the same key as base64 with surrounding white space opens it */
	sodium_bin2base64(b64, sizeof(b64), raw, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(buf, sizeof(buf), "  \n%s\n\n", b64);
	write_file(key, buf, strlen(buf), 0600);
	assert_int_equal(vault_open(vdir, &src, &v, &err), 0);
	vault_close(v);
	/* neither form */
	write_file(key, "short\n", 6, 0600);
	assert_int_equal(vault_open(vdir, &src, &v, &err), -EINVAL);
	assert_non_null(strstr(err.msg, key));
	snprintf(buf, sizeof(buf), "%s x", b64);
	write_file(key, buf, strlen(buf), 0600);
	assert_int_equal(vault_open(vdir, &src, &v, &err), -EINVAL);
	write_file(key, raw, 31, 0600);
	assert_int_equal(vault_open(vdir, &src, &v, &err), -EINVAL);
}

static void test_passphrase(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	char vdir[256], pass[256], pass2[256];
	struct vault_key_source src = {.passphrase_file = pass};
	struct vault_key_source other = {.passphrase_file = pass2};
	struct vault_key_source wrong_kind = {.key_file = f->key};
	struct vault *v = NULL;

	snprintf(vdir, sizeof(vdir), "%s/pp", f->dir);
	snprintf(pass, sizeof(pass), "%s/pass", f->dir);
	snprintf(pass2, sizeof(pass2), "%s/pass2", f->dir);
	write_file(pass, "correct horse battery staple\n", 29, 0600);
	write_file(pass2, "correct horse battery stapler\n", 30, 0600);
	assert_int_equal(vault_create(vdir, &src, &err), 0);
	assert_int_equal(vault_open(vdir, &src, &v, &err), 0);
	vault_close(v);
	v = NULL;
	assert_int_equal(vault_open(vdir, &other, &v, &err), -EKEYREJECTED);
	assert_null(v);
	assert_non_null(strstr(err.msg, "wrong master key"));
	assert_int_equal(vault_open(vdir, &wrong_kind, &v, &err), -EKEYREJECTED);
	/* the same passphrase without its newline is the same passphrase */
	write_file(pass2, "correct horse battery staple", 28, 0600);
	assert_int_equal(vault_open(vdir, &other, &v, &err), 0);
	vault_close(v);
	write_file(pass2, "\n", 1, 0600);
	assert_int_equal(vault_open(vdir, &other, &v, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "empty"));
}

static void test_credentials_directory(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault_key_source rel = {.key_file = "master.key"};
	struct vault *v = NULL;
	char cwd[4096];

	/* relative name, found in $CREDENTIALS_DIRECTORY (not in the cwd) */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	setenv("CREDENTIALS_DIRECTORY", f->dir, 1);
	assert_int_equal(vault_open(f->vdir, &rel, &v, &err), 0);
	vault_close(v);
	v = NULL;
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(vault_open(f->vdir, &rel, &v, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "master.key"));
	/* systemd may hand the credential over as a root-owned file with a
	 * read ACL for the service's user: the ACL mask shows as group bits.
	 * Accepted there, and only there; "others" bits never. */
	assert_int_equal(chmod(f->key, 0440), 0);
	setenv("CREDENTIALS_DIRECTORY", f->dir, 1);
	assert_int_equal(vault_open(f->vdir, &rel, &v, &err), 0);
	vault_close(v);
	v = NULL;
	assert_int_equal(vault_open(f->vdir, &f->src, &v, &err), 0); /* same file, absolute */
	vault_close(v);
	v = NULL;
	assert_int_equal(chmod(f->key, 0444), 0);
	assert_int_equal(vault_open(f->vdir, &rel, &v, &err), -EACCES);
	assert_non_null(strstr(err.msg, "readable by group/others"));
	assert_int_equal(chmod(f->key, 0440), 0);
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(vault_open(f->vdir, &f->src, &v, &err), -EACCES);
	assert_null(v);
	assert_int_equal(chmod(f->key, 0600), 0);
	/* set, but the file is not there: the path is used as given */
	setenv("CREDENTIALS_DIRECTORY", "/nonexistent-creds", 1);
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(vault_open(f->vdir, &rel, &v, &err), 0);
	vault_close(v);
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(chdir(cwd), 0);
}

static void test_wrong_key(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	char key2[256];
	struct vault_key_source src = {.key_file = key2};
	struct vault *v = NULL;

	snprintf(key2, sizeof(key2), "%s/other.key", f->dir);
	assert_int_equal(vault_key_file_create(key2, &err), 0);
	assert_int_equal(vault_open(f->vdir, &src, &v, &err), -EKEYREJECTED);
	assert_null(v);
	assert_non_null(strstr(err.msg, "wrong master key"));
	/* and the right key still works afterwards (nothing was disturbed) */
	vault_close(open_ok(f));
}

static void test_key_file_permissions(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = NULL;
	static const mode_t bad[] = {0640, 0604, 0660, 0644, 0601, 0610};
	char dirkey[256];
	struct vault_key_source dsrc = {.key_file = dirkey};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char mode[16];

		assert_int_equal(chmod(f->key, bad[i]), 0);
		memset(&err, 0, sizeof(err));
		assert_int_equal(vault_open(f->vdir, &f->src, &v, &err), -EACCES);
		assert_null(v);
		assert_non_null(strstr(err.msg, f->key));
		assert_non_null(strstr(err.msg, "chmod 600"));
		snprintf(mode, sizeof(mode), "%04o", (unsigned)bad[i]);
		assert_non_null(strstr(err.msg, mode));
	}
	assert_int_equal(chmod(f->key, 0400), 0);
	vault_close(open_ok(f));
	assert_int_equal(chmod(f->key, 0600), 0);
	/* another owner */
	assert_int_equal(chown(f->key, 65534, 65534), 0);
	assert_int_equal(vault_open(f->vdir, &f->src, &v, &err), -EACCES);
	assert_non_null(strstr(err.msg, f->key));
	assert_non_null(strstr(err.msg, "65534"));
	assert_int_equal(chown(f->key, geteuid(), getegid()), 0);
	vault_close(open_ok(f));
	/* not a regular file */
	snprintf(dirkey, sizeof(dirkey), "%s/keydir", f->dir);
	assert_int_equal(mkdir(dirkey, 0700), 0);
	assert_int_equal(vault_open(f->vdir, &dsrc, &v, &err), -EACCES);
	assert_non_null(strstr(err.msg, "regular file"));
	/* a passphrase file follows the same rules */
	{
		char pass[256];
		struct vault_key_source p = {.passphrase_file = pass};

		snprintf(pass, sizeof(pass), "%s/loose.pass", f->dir);
		write_file(pass, "pw\n", 3, 0644);
		assert_int_equal(vault_create(dirkey, &p, &err), -EACCES);
		assert_non_null(strstr(err.msg, pass));
	}
}

static void test_busy(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = open_ok(f), *v2 = NULL;
	struct vault_public pub;

	assert_int_equal(vault_open(f->vdir, &f->src, &v2, &err), -EBUSY);
	assert_null(v2);
	assert_non_null(strstr(err.msg, f->vdir));
	assert_non_null(strstr(err.msg, "in use by another process"));
	assert_int_equal(vault_rekey(f->vdir, &f->src, NULL, &err), -EBUSY);
	vault_close(v);
	/* the public part needs neither key nor lock */
	assert_int_equal(vault_read_public(f->vdir, &pub, &err), 0);
	v = open_ok(f);
	vault_close(v);
}

static void test_vkey(void **state)
{
	static const char example[] =
		"example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
	uint8_t kb[64];
	size_t kblen = 0;
	char out[128];

	(void)state;
	assert_int_equal(sodium_base642bin(kb, sizeof(kb), strrchr(example, '+') + 1,
					   strlen(strrchr(example, '+') + 1), NULL, &kblen, NULL,
					   sodium_base64_VARIANT_ORIGINAL),
			 0);
	assert_int_equal(kblen, 33);
	assert_int_equal(kb[0], 1);
	assert_int_equal(vault_vkey_format("example.com/foo", kb + 1, out, sizeof(out)), 0);
	assert_string_equal(out, example);
	kb[5] ^= 1;
	assert_int_equal(vault_vkey_format("example.com/foo", kb + 1, out, sizeof(out)), 0);
	assert_null(strstr(out, "530d903a"));
	assert_int_equal(vault_vkey_format("example.com/foo", kb + 1, out, 20), -ENOSPC);
	assert_int_equal(vault_vkey_format("bad+name", kb + 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(vault_vkey_format("", kb + 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(vault_vkey_format("a b", kb + 1, out, sizeof(out)), -EINVAL);
}

/* ---- grants ------------------------------------------------------------ */

struct collect {
	int n;
	char ids[8][GRANT_ID_LEN];
};

static int collect_cb(void *ctx, const struct grant *g)
{
	struct collect *c = ctx;

	if (c->n < 8)
		strcpy(c->ids[c->n], g->id);
	c->n++;
	return 0;
}

static void test_import_roundtrip(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v),
			 "\"scopes\":[\"a/.default\",\"b/.default\"],\"principals\":[\"siem\"],"
			 "\"not_before\":\"2026-11-01T00:00:00Z\",\"not_after\":\"2027-05-29T00:00:00+02:00\"");
	char id[GRANT_ID_LEN], *secret = NULL;
	struct grant *g, *g2 = NULL, *d;
	struct collect c = {0};
	size_t slen = 0;

	/* one line, the documented envelope */
	assert_int_equal(strncmp(env, "{\"format\":\"custody-sealed-grant/1\",\"recipient\":\"", 48), 0);
	assert_non_null(strstr(env, vault_public_keys(v)->seal_key_id));
	assert_int_equal(strchr(env, '\n'), env + strlen(env) - 1);
	assert_null(strstr(env, SECRET));

	assert_int_equal(grant_id_of_envelope(env, strlen(env), id, &err), 0);
	assert_int_equal(strlen(id), 34);
	assert_int_equal(strncmp(id, "g_", 2), 0);
	g = import_ok(v, env, false);
	assert_string_equal(g->id, id);
	assert_string_equal(g->tenant_id, TENANT);
	assert_string_equal(g->tenant_name, "contoso");
	assert_string_equal(g->client_id, "00000000-0000-0000-0000-000000000001");
	assert_string_equal(g->token_endpoint,
			    "https://login.microsoftonline.com/" TENANT "/oauth2/v2.0/token");
	assert_int_equal(g->n_scopes, 2);
	assert_string_equal(g->scopes[1], "b/.default");
	assert_true(grant_has_scope(g, "a/.default"));
	assert_false(grant_has_scope(g, "c/.default"));
	assert_true(grant_allows_principal(g, "siem"));
	assert_false(grant_allows_principal(g, "tier1"));
	assert_int_equal(g->not_before, 1793491200);
	assert_int_equal(g->not_after, 1811541600); /* 2027-05-28T22:00:00Z */
	assert_int_equal(g->imported_at, NOW);
	assert_false(g->revoked);
	d = grant_dup(g);
	assert_string_equal(d->scopes[0], "a/.default");
	assert_ptr_not_equal(d->scopes, g->scopes);
	grant_free(d);

	assert_int_equal(vault_grant_secret(v, id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	assert_int_equal(slen, strlen(SECRET));
	vault_secret_free(secret);

	/* idempotent: the same file again is the same grant */
	g2 = import_ok(v, env, true);
	assert_string_equal(g2->id, id);
	grant_free(g2);
	/* sealing the same JSON again makes a new envelope and a new grant */
	{
		char *env2 = seal(vault_public_keys(v), "");
		char id2[GRANT_ID_LEN];

		assert_int_equal(grant_id_of_envelope(env2, strlen(env2), id2, &err), 0);
		assert_string_not_equal(id2, id);
		g2 = import_ok(v, env2, false);
		assert_string_equal(g2->id, id2);
		assert_int_equal(g2->n_scopes, 1);
		assert_string_equal(g2->scopes[0], "https://api.securitycenter.microsoft.com/.default");
		assert_int_equal(g2->n_principals, 0);
		assert_true(grant_allows_principal(g2, "anyone"));
		assert_int_equal(g2->not_before, INT64_MIN);
		assert_int_equal(g2->not_after, INT64_MAX);
		grant_free(g2);
		free(env2);
	}
	assert_int_equal(vault_grant_foreach(v, collect_cb, &c), 0);
	assert_int_equal(c.n, 2);
	assert_true(strcmp(c.ids[0], c.ids[1]) < 0);
	assert_int_equal(vault_grant_get(v, "g_00000000000000000000000000000000", &g2), -ENOENT);
	assert_int_equal(vault_grant_secret(v, "g_nope", &secret, &slen), -ENOENT);
	vault_close(v);

	/* survives close/open */
	v = open_ok(f);
	assert_int_equal(vault_grant_get(v, id, &g2), 0);
	assert_string_equal(g2->tenant_name, "contoso");
	assert_int_equal(g2->n_principals, 1);
	grant_free(g2);
	assert_int_equal(vault_grant_secret(v, id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	vault_secret_free(secret);
	vault_close(v);
	grant_free(g);
	free(env);
}

/* A grant bigger than an LMDB page lives on overflow pages: still opens. */
static void test_large_grant(void **state)
{
	struct fx *f = *state;
	struct vault *v = open_ok(f);
	char *extra = malloc(64 * 220 + 32), *p = extra, *env, *secret = NULL;
	struct grant *g, *g2 = NULL;
	size_t slen;

	p += sprintf(p, "\"scopes\":[");
	for (int i = 0; i < 64; i++) {
		p += sprintf(p, "%s\"https://api-%02d.example/", i ? "," : "", i);
		memset(p, 'x', 180);
		p += 180;
		p += sprintf(p, "/.default\"");
	}
	sprintf(p, "]");
	env = seal(vault_public_keys(v), extra);
	g = import_ok(v, env, false);
	assert_int_equal(g->n_scopes, 64);
	for (int i = 0; i < 50; i++) {
		char *e2 = seal(vault_public_keys(v), "");

		grant_free(import_ok(v, e2, false));
		free(e2);
	}
	vault_close(v);
	v = open_ok(f);
	assert_int_equal(vault_grant_get(v, g->id, &g2), 0);
	assert_int_equal(g2->n_scopes, 64);
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	vault_secret_free(secret);
	vault_close(v);
	grant_free(g);
	grant_free(g2);
	free(env);
	free(extra);
}

static int stop_cb(void *ctx, const struct grant *g)
{
	(void)g;
	(*(int *)ctx)++;
	return 42;
}

static void test_foreach_stops(void **state)
{
	struct fx *f = *state;
	struct vault *v = open_ok(f);
	int calls = 0;

	for (int i = 0; i < 3; i++) {
		char *env = seal(vault_public_keys(v), "");

		grant_free(import_ok(v, env, false));
		free(env);
	}
	assert_int_equal(vault_grant_foreach(v, stop_cb, &calls), 42);
	assert_int_equal(calls, 1);
	vault_close(v);
}

static void test_sealed_for_other_broker(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	char vdir2[256];
	struct vault_public other;
	struct vault *v;
	struct grant *g = NULL;
	bool already = false;
	char *env;

	snprintf(vdir2, sizeof(vdir2), "%s/other-broker", f->dir);
	assert_int_equal(vault_create(vdir2, &f->src, &err), 0);
	assert_int_equal(vault_read_public(vdir2, &other, &err), 0);
	env = seal(&other, "");
	v = open_ok(f);
	assert_string_not_equal(other.seal_key_id, vault_public_keys(v)->seal_key_id);
	assert_int_equal(vault_grant_import(v, env, strlen(env), hosts, NOW, &g, &already, &err),
			 -ENOKEY);
	assert_null(g);
	assert_non_null(strstr(err.msg, "different broker"));
	assert_non_null(strstr(err.msg, other.seal_key_id));
	assert_non_null(strstr(err.msg, vault_public_keys(v)->seal_key_id));
	/* pretending it was sealed to us does not help */
	memcpy(strstr(env, other.seal_key_id), vault_public_keys(v)->seal_key_id, 16);
	assert_int_equal(vault_grant_import(v, env, strlen(env), hosts, NOW, &g, &already, &err),
			 -EBADMSG);
	assert_string_equal(err.msg, "sealed grant is damaged or was tampered with");
	vault_close(v);
	free(env);
}

static void test_envelope_tamper(void **state)
{
	struct fx *f = *state;
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v), "");
	size_t len = strlen(env);
	char id[GRANT_ID_LEN];
	struct cerr err;
	int failed = 0;

	assert_int_equal(grant_id_of_envelope(env, len, id, &err), 0);
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 8; b += under_valgrind() ? 7 : 3) {
			struct grant *g = NULL;
			bool already = false;
			int rc;

			memset(&err, 0, sizeof(err));
			env[i] ^= (char)(1 << b);
			rc = vault_grant_import(v, env, len, hosts, NOW, &g, &already, &err);
			env[i] ^= (char)(1 << b);
			if (rc == 0) {
				/* only an equivalent encoding of the very same bytes
				 * may pass, and then it is the same grant */
				assert_string_equal(g->id, id);
				assert_false(already);
				grant_free(g);
				/* drop it again so later flips start clean */
				vault_close(v);
				rm_rf(f->vdir);
				assert_int_equal(vault_create(f->vdir, &f->src, &err), 0);
				v = open_ok(f);
				fail_msg("a flipped envelope (byte %zu bit %d) imported", i, b);
			}
			assert_true(rc == -EBADMSG || rc == -ENOKEY || rc == -EINVAL);
			assert_null(g);
			assert_true(strlen(err.msg) > 0);
			assert_null(strstr(err.msg, SECRET));
			failed++;
		}
	}
	assert_true(failed > (int)len);
	/* truncated, oversized, trailing junk */
	{
		struct grant *g = NULL;
		bool already;
		char *big = malloc(70000);

		for (size_t n = 0; n < len; n += 13)
			assert_int_not_equal(vault_grant_import(v, env, n, hosts, NOW, &g, &already, &err), 0);
		memset(big, ' ', 70000);
		memcpy(big, env, len);
		assert_int_equal(vault_grant_import(v, big, 70000, hosts, NOW, &g, &already, &err),
				 -EBADMSG);
		memcpy(big, env, len);
		memcpy(big + len, "{}", 2);
		assert_int_equal(vault_grant_import(v, big, len + 2, hosts, NOW, &g, &already, &err),
				 -EBADMSG);
		free(big);
	}
	/* the real one still imports */
	grant_free(import_ok(v, env, false));
	vault_close(v);
	free(env);
}

struct schema_case {
	const char *json;
	const char *msg; /* expected substring */
};

static void test_schema_errors(void **state)
{
	static const struct schema_case cases[] = {
		{"[]", "grant: expected a JSON object"},
		{"{\"custody_grant\":1,", "grant: not valid JSON"},
		{"{\"tenant_id\":\"x\"}", "custody_grant: required"},
		{"{\"custody_grant\":2}", "custody_grant: unsupported version 2"},
		{"{\"custody_grant\":\"1\"}", "custody_grant: expected the integer 1"},
		{"{\"custody_grant\":1,\"client_secret\":\"" SECRET "\",\"foo\":1}", "unknown field: foo"},
		{"{\"custody_grant\":1,\"client_secret\":\"" SECRET "\",\"client_secret\":\"x\"}",
		 "appears twice"},
		{"{\"custody_grant\":1,\"client_secret\":\"" SECRET "\"}", "tenant_id: required"},
		{"{\"custody_grant\":1,\"tenant_id\":7,\"client_secret\":\"" SECRET "\"}",
		 "tenant_id: expected a string"},
		{"{\"custody_grant\":1,\"tenant_id\":\"not a tenant\",\"client_secret\":\"" SECRET "\"}",
		 "tenant_id: expected a GUID or a domain name"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"tenant_name\":\"con toso\",\"client_secret\":\"" SECRET "\"}",
		 "tenant_name:"},
		{"{\"custody_grant\":1,\"tenant_id\":\"contoso.onmicrosoft.com\",\"client_secret\":\"" SECRET "\"}",
		 "client_id: required"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"a b\",\"client_secret\":\"" SECRET "\"}",
		 "client_id: must not contain"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\"}",
		 "client_secret: required"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"\"}",
		 "client_secret: must not be empty"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":[\"" SECRET "\"]}",
		 "client_secret: expected a string"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"scopes\":[]}",
		 "scopes: must not be empty"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"scopes\":\"a\"}",
		 "scopes: expected an array of strings"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"scopes\":[\"a\",3]}",
		 "scopes[1]: expected a string"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"scopes\":[\"a b\"]}",
		 "scopes[0]: must not contain spaces"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"not_before\":\"yesterday\"}",
		 "not_before: not an RFC 3339 time"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"not_after\":\"2027-02-30T00:00:00Z\"}",
		 "not_after: not an RFC 3339 time"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"not_after\":1}",
		 "not_after: expected a string"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"not_before\":\"2027-01-01T00:00:00Z\",\"not_after\":\"2027-01-01T00:00:00Z\"}",
		 "not_after: must be later than not_before"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"principals\":{}}",
		 "principals: expected an array of strings"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"principals\":[\"\"]}",
		 "principals[0]:"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"http://login.microsoftonline.com/t\"}",
		 "token_endpoint: must be https://"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"https://evil.example/token\"}",
		 "token_endpoint: host evil.example is not in upstream.allowed_hosts"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"https://login.microsoftonline.com@evil.example/token\"}",
		 "token_endpoint: must not contain user info"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"https://login.microsoftonline.com:99999/token\"}",
		 "token_endpoint: bad port"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"https:///token\"}",
		 "token_endpoint: has no host"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"https://a b/\"}",
		 "token_endpoint: must not contain spaces"},
		{"{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\",\"client_secret\":\"" SECRET "\",\"" SECRET "\":1}",
		 "unknown field: (name not shown)"},
		/* a parse error right inside the secret must not quote it */
		{"{\"custody_grant\":1,\"client_secret\":\"" SECRET "\\q\"}", "grant: not valid JSON"},
		{"{\"custody_grant\":1,\"client_secret\":" SECRET "}", "grant: not valid JSON"},
	};
	struct grant *g = NULL;
	char *secret = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cerr err = {{0}};
		int rc = grant_validate(cases[i].json, strlen(cases[i].json), hosts, &g, &secret, &err);

		if (rc != -EINVAL || strstr(err.msg, cases[i].msg) == NULL)
			fail_msg("case %zu: rc %d msg \"%s\", wanted \"%s\"", i, rc, err.msg,
				 cases[i].msg);
		assert_null(g);
		assert_null(secret);
		assert_null(strstr(err.msg, SECRET));
		assert_null(strstr(err.msg, "Zx9"));
	}
}

static void test_validate_accepts(void **state)
{
	struct cerr err = {{0}};
	struct grant *g = NULL;
	char *secret = NULL;
	static const char *const ok_hosts[] = {"LOGIN.microsoftonline.com", "::1", NULL};
	static const char *const ok[] = {
		"\"token_endpoint\":\"https://login.microsoftonline.com/x/oauth2/v2.0/token\"",
		"\"token_endpoint\":\"https://Login.MicrosoftOnline.com:443/x\"",
		"\"token_endpoint\":\"https://[::1]:8443/token\"",
		"\"principals\":[]",
		"\"not_after\":\"2030-01-01T00:00:00.5Z\"",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char *json = grant_json(ok[i]);
		int rc = grant_validate(json, strlen(json), ok_hosts, &g, &secret, &err);

		if (rc != 0)
			fail_msg("case %zu: %d %s", i, rc, err.msg);
		assert_string_equal(secret, SECRET);
		vault_secret_free(secret);
		secret = NULL;
		grant_free(g);
		g = NULL;
		free(json);
	}
	/* hosts unchecked with a NULL list; checked with an empty one */
	{
		char *json = grant_json("\"token_endpoint\":\"https://idp.example:8443/t\"");
		static const char *const none[] = {NULL};

		assert_int_equal(grant_validate(json, strlen(json), NULL, &g, NULL, &err), 0);
		grant_free(g);
		g = NULL;
		assert_int_equal(grant_validate(json, strlen(json), none, &g, NULL, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "idp.example"));
		free(json);
	}
	/* a domain-like tenant */
	{
		const char *json = "{\"custody_grant\":1,\"tenant_id\":\"contoso.onmicrosoft.com\","
				   "\"client_id\":\"c\",\"client_secret\":\"s\"}";

		assert_int_equal(grant_validate(json, strlen(json), hosts, &g, NULL, &err), 0);
		assert_string_equal(g->token_endpoint,
				    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
		assert_string_equal(g->tenant_name, "");
		grant_free(g);
	}
}

static void test_import_invalid_grant(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = open_ok(f);
	const char *json = "{\"custody_grant\":1,\"tenant_id\":\"" TENANT "\",\"client_id\":\"c\","
			   "\"client_secret\":\"" SECRET "\",\"token_endpoint\":\"https://evil.example/t\"}";
	char *env = NULL;
	struct grant *g = NULL;
	bool already = false;
	struct collect c = {0};

	/* the customer side does not know the broker's host list */
	assert_int_equal(grant_seal(json, strlen(json), vault_public_keys(v)->seal_pk, &env, &err), 0);
	assert_int_equal(vault_grant_import(v, env, strlen(env), hosts, NOW, &g, &already, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "token_endpoint: host evil.example"));
	assert_null(strstr(err.msg, SECRET));
	assert_int_equal(vault_grant_foreach(v, collect_cb, &c), 0);
	assert_int_equal(c.n, 0);
	free(env);
	/* grant_seal validates too */
	env = NULL;
	assert_int_equal(grant_seal("{\"custody_grant\":1}", 19, vault_public_keys(v)->seal_pk, &env,
				    &err),
			 -EINVAL);
	assert_null(env);
	vault_close(v);
}

static void test_revoke(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v), "");
	struct grant *g = import_ok(v, env, false), *g2 = NULL;
	char *secret = NULL;
	size_t slen = 0;

	assert_int_equal(vault_grant_revoke(v, g->id, "alice", "contract ended", NOW + 5, &err), 0);
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), -EKEYREVOKED);
	assert_null(secret);
	assert_int_equal(vault_grant_revoke(v, g->id, "bob", "again", NOW + 6, &err), -EALREADY);
	assert_non_null(strstr(err.msg, g->id));
	assert_int_equal(vault_grant_revoke(v, "g_0000", "bob", "x", NOW, &err), -ENOENT);
	/* outputs are optional */
	assert_int_equal(vault_grant_import(v, env, strlen(env), hosts, NOW, NULL, NULL, &err), 0);
	vault_close(v);

	v = open_ok(f);
	assert_int_equal(vault_grant_get(v, g->id, &g2), 0);
	assert_true(g2->revoked);
	assert_int_equal(g2->revoked_at, NOW + 5);
	assert_string_equal(g2->revoked_by, "alice");
	assert_string_equal(g2->reason, "contract ended");
	assert_int_equal(grant_state(g2, NOW), GRANT_REVOKED);
	grant_free(g2);
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), -EKEYREVOKED);
	/* final: importing the same file again does not bring it back */
	g2 = import_ok(v, env, true);
	assert_true(g2->revoked);
	grant_free(g2);
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), -EKEYREVOKED);
	vault_close(v);
	grant_free(g);
	free(env);
}

/* What the provider said of a credential is kept with the grant, its
 * secret untouched, across a reopen; an expired grant is not imported. */
static void test_credential(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v), ""), *secret = NULL;
	char *old = seal(vault_public_keys(v), "\"not_before\":\"2001-01-01T00:00:00Z\","
			 "\"not_after\":\"2002-01-01T00:00:00Z\"");
	struct grant *g = import_ok(v, env, false), *g2 = NULL;
	size_t slen = 0;

	assert_int_equal(g->credential, GRANT_CRED_UNTRIED);
	assert_int_equal(vault_grant_set_credential(v, g->id, GRANT_CRED_FAILED,
						    "invalid_client: AADSTS7000215", NOW + 1), 0);
	assert_int_equal(vault_grant_set_credential(v, "g_0000", GRANT_CRED_WORKS, NULL, NOW),
			 -ENOENT);
	assert_int_equal(vault_grant_import(v, old, strlen(old), hosts, NOW, NULL, NULL, &err),
			 -EKEYEXPIRED);
	assert_non_null(strstr(err.msg, "2002-01-01T00:00:00Z"));
	vault_close(v);

	v = open_ok(f);
	assert_int_equal(vault_grant_get(v, g->id, &g2), 0);
	assert_int_equal(g2->credential, GRANT_CRED_FAILED);
	assert_int_equal(g2->credential_at, NOW + 1);
	assert_string_equal(g2->credential_error, "invalid_client: AADSTS7000215");
	grant_free(g2);
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	vault_secret_free(secret);
	assert_int_equal(vault_grant_set_credential(v, g->id, GRANT_CRED_WORKS, NULL, NOW + 2), 0);
	assert_int_equal(vault_grant_get(v, g->id, &g2), 0);
	assert_int_equal(g2->credential, GRANT_CRED_WORKS);
	assert_string_equal(g2->credential_error, "");
	grant_free(g2);
	assert_int_equal(vault_grant_revoke(v, g->id, "alice", "x", NOW + 3, &err), 0);
	assert_int_equal(vault_grant_set_credential(v, g->id, GRANT_CRED_WORKS, NULL, NOW + 4),
			 -EKEYREVOKED);
	vault_close(v);
	grant_free(g);
	free(env);
	free(old);
}

static void test_states(void **state)
{
	struct grant *g;
	struct cerr err = {{0}};
	char *json = grant_json("\"not_before\":\"2026-12-01T00:00:00Z\",\"not_after\":\"2027-01-01T00:00:00Z\"");
	const int64_t nb = 1796083200, na = 1798761600;

	(void)state;
	assert_int_equal(grant_validate(json, strlen(json), hosts, &g, NULL, &err), 0);
	assert_int_equal(g->not_before, nb);
	assert_int_equal(g->not_after, na);
	assert_int_equal(grant_state(g, nb - 1), GRANT_PENDING);
	assert_int_equal(grant_state(g, nb), GRANT_ACTIVE);
	assert_int_equal(grant_state(g, na - 1), GRANT_ACTIVE);
	assert_int_equal(grant_state(g, na), GRANT_EXPIRED);
	assert_string_equal(grant_state_name(grant_state(g, nb - 1)), "pending");
	assert_string_equal(grant_state_name(GRANT_ACTIVE), "active");
	assert_string_equal(grant_state_name(GRANT_EXPIRED), "expired");
	assert_string_equal(grant_state_name(GRANT_REVOKED), "revoked");
	g->revoked = true;
	assert_int_equal(grant_state(g, nb - 1), GRANT_REVOKED);
	assert_int_equal(grant_state(g, nb), GRANT_REVOKED);
	assert_int_equal(grant_state(g, na), GRANT_REVOKED);
	grant_free(g);
	free(json);
}

/* ---- officer state ----------------------------------------------------- */

struct susp {
	int n;
	char names[4][32];
	char reasons[4][64];
	int64_t at[4];
};

static int susp_cb(void *ctx, const char *name, const char *actor, const char *reason, int64_t at)
{
	struct susp *s = ctx;

	assert_string_equal(actor, "officer");
	if (s->n < 4) {
		snprintf(s->names[s->n], 32, "%s", name);
		snprintf(s->reasons[s->n], 64, "%s", reason);
		s->at[s->n] = at;
	}
	s->n++;
	return 0;
}

static void test_officer_state(void **state)
{
	struct fx *f = *state;
	struct vault *v = open_ok(f);
	struct susp s = {0};
	bool on = true;
	char actor[128], reason[512];
	int64_t at = -1;

	assert_int_equal(vault_lockdown_get(v, &on, actor, reason, &at), 0);
	assert_false(on);
	assert_int_equal(vault_principal_suspend(v, "tier1", "officer", "phished", NOW), 0);
	assert_int_equal(vault_principal_suspend(v, "siem-connector", "officer", "leak", NOW + 1), 0);
	assert_int_equal(vault_principal_suspend(v, "zz", "officer", "x", NOW + 2), 0);
	assert_int_equal(vault_principal_resume(v, "zz"), 0);
	assert_int_equal(vault_principal_resume(v, "zz"), -ENOENT);
	assert_int_equal(vault_principal_resume(v, "never"), -ENOENT);
	assert_int_equal(vault_principal_suspend(v, "", "officer", "x", NOW), -EINVAL);
	assert_int_equal(vault_principal_suspend(v, "a\nb", "officer", "x", NOW), -EINVAL);
	{
		char longr[600];

		memset(longr, 'r', sizeof(longr) - 1);
		longr[sizeof(longr) - 1] = '\0';
		assert_int_equal(vault_principal_suspend(v, "p", "officer", longr, NOW), -EINVAL);
		assert_int_equal(vault_lockdown_set(v, true, "officer", longr, NOW), -EINVAL);
		assert_int_equal(vault_principal_resume(v, "p"), -ENOENT);
	}
	assert_int_equal(vault_lockdown_set(v, true, "alice", "incident 42", NOW + 3), 0);
	vault_close(v);

	v = open_ok(f);
	assert_int_equal(vault_principal_foreach_suspended(v, susp_cb, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.names[0], "siem-connector");
	assert_string_equal(s.reasons[0], "leak");
	assert_int_equal(s.at[0], NOW + 1);
	assert_string_equal(s.names[1], "tier1");
	assert_int_equal(vault_lockdown_get(v, &on, actor, reason, &at), 0);
	assert_true(on);
	assert_string_equal(actor, "alice");
	assert_string_equal(reason, "incident 42");
	assert_int_equal(at, NOW + 3);
	assert_int_equal(vault_lockdown_get(v, &on, NULL, NULL, NULL), 0);
	assert_true(on);
	assert_int_equal(vault_lockdown_set(v, false, "bob", "all clear", NOW + 4), 0);
	vault_close(v);

	v = open_ok(f);
	assert_int_equal(vault_lockdown_get(v, &on, actor, reason, &at), 0);
	assert_false(on);
	assert_string_equal(actor, "bob");
	vault_close(v);
}

/* ---- tampering with the stored data ----------------------------------- */

struct raw_rec {
	char db[8];
	MDB_val key;
	MDB_val val;
};

/* Every record of the vault's LMDB databases, copied out. */
static size_t raw_records(const char *vdir, struct raw_rec *out, size_t max)
{
	static const char *const dbs[] = {"meta", "grants", "state"};
	MDB_env *env;
	MDB_txn *txn;
	size_t n = 0;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, vdir, MDB_RDONLY, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	for (size_t d = 0; d < 3; d++) {
		MDB_dbi dbi;
		MDB_cursor *cur;
		MDB_val k, val;

		assert_int_equal(mdb_dbi_open(txn, dbs[d], 0, &dbi), 0);
		assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
		while (mdb_cursor_get(cur, &k, &val, MDB_NEXT) == 0) {
			assert_true(n < max);
			strcpy(out[n].db, dbs[d]);
			out[n].key.mv_size = k.mv_size;
			out[n].key.mv_data = malloc(k.mv_size);
			memcpy(out[n].key.mv_data, k.mv_data, k.mv_size);
			out[n].val.mv_size = val.mv_size;
			out[n].val.mv_data = malloc(val.mv_size);
			memcpy(out[n].val.mv_data, val.mv_data, val.mv_size);
			n++;
		}
		mdb_cursor_close(cur);
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return n;
}

static void raw_free(struct raw_rec *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(r[i].key.mv_data);
		free(r[i].val.mv_data);
	}
}

/* Replace (or delete, val NULL) one record, outside the vault. */
static void raw_put(const char *vdir, const char *db, MDB_val *key, MDB_val *val)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
	assert_int_equal(mdb_env_open(env, vdir, MDB_NOSYNC, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	if (val != NULL)
		assert_int_equal(mdb_put(txn, dbi, key, val, 0), 0);
	else
		assert_int_equal(mdb_del(txn, dbi, key, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static int noop_susp(void *ctx, const char *n, const char *a, const char *r, int64_t at)
{
	(void)ctx;
	(void)n;
	(void)a;
	(void)r;
	(void)at;
	return 0;
}

static int noop_grant(void *ctx, const struct grant *g)
{
	(void)ctx;
	(void)g;
	return 0;
}

/* Everything a broker would read after opening; every outcome must be a
 * clean error for a tampered record, never the original data passing. */
static int read_everything(struct fx *f, const char *gid, struct cerr *err)
{
	struct vault *v = NULL;
	struct grant *g = NULL;
	char *secret = NULL;
	size_t slen;
	bool on;
	int rc;

	rc = vault_open(f->vdir, &f->src, &v, err);
	if (rc < 0)
		return rc;
	rc = vault_grant_get(v, gid, &g);
	grant_free(g);
	if (rc == 0) {
		rc = vault_grant_secret(v, gid, &secret, &slen);
		if (rc == 0) {
			assert_string_equal(secret, SECRET);
			vault_secret_free(secret);
		}
	}
	if (rc == 0)
		rc = vault_grant_foreach(v, noop_grant, NULL);
	if (rc == 0)
		rc = vault_principal_foreach_suspended(v, noop_susp, NULL);
	if (rc == 0)
		rc = vault_lockdown_get(v, &on, NULL, NULL, NULL);
	vault_close(v);
	return rc;
}

static void test_record_tamper(void **state)
{
	struct fx *f = *state;
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v), "");
	struct grant *g = import_ok(v, env, false);
	char *env2 = seal(vault_public_keys(v), "");
	struct grant *g2 = import_ok(v, env2, false);
	struct raw_rec recs[16];
	struct cerr err;
	size_t n, tried = 0;
	int step = under_valgrind() ? 37 : 1;

	assert_int_equal(vault_principal_suspend(v, "tier1", "officer", "x", NOW), 0);
	assert_int_equal(vault_lockdown_set(v, true, "officer", "y", NOW), 0);
	vault_close(v);
	memset(&err, 0, sizeof(err));
	assert_int_equal(read_everything(f, g->id, &err), 0);

	n = raw_records(f->vdir, recs, 16);
	assert_int_equal(n, 6); /* header, keys, 2 grants, lockdown, 1 suspension */
	for (size_t r = 0; r < n; r++) {
		uint8_t *p = recs[r].val.mv_data;

		assert_null(memmem(p, recs[r].val.mv_size, SECRET, strlen(SECRET)));
		for (size_t i = 0; i < recs[r].val.mv_size; i += step) {
			/* one bit per byte, a different one at each position */
			for (int b = (int)(i % 8); b < 8; b += 8) {
				int rc;

				p[i] ^= (uint8_t)(1 << b);
				raw_put(f->vdir, recs[r].db, &recs[r].key, &recs[r].val);
				memset(&err, 0, sizeof(err));
				rc = read_everything(f, g->id, &err);
				p[i] ^= (uint8_t)(1 << b);
				if (rc >= 0)
					fail_msg("%s record %zu byte %zu bit %d: tamper not detected",
						 recs[r].db, r, i, b);
				assert_true(rc == -EBADMSG || rc == -EKEYREJECTED ||
					    rc == -EPROTONOSUPPORT);
				assert_null(strstr(err.msg, SECRET));
				tried++;
			}
		}
		/* truncated */
		{
			MDB_val shortv = {.mv_size = recs[r].val.mv_size / 2,
					  .mv_data = recs[r].val.mv_data};

			raw_put(f->vdir, recs[r].db, &recs[r].key, &shortv);
			assert_true(read_everything(f, g->id, &err) < 0);
		}
		raw_put(f->vdir, recs[r].db, &recs[r].key, &recs[r].val);
	}
	assert_true(tried > 1000 / (size_t)step);
	assert_int_equal(read_everything(f, g->id, &err), 0);

	/* swapping two grants' records between their keys is detected */
	{
		size_t a = 2, b = 3;

		assert_string_equal(recs[a].db, "grants");
		assert_string_equal(recs[b].db, "grants");
		raw_put(f->vdir, "grants", &recs[a].key, &recs[b].val);
		assert_int_equal(read_everything(f, g->id, &err), -EBADMSG);
		raw_put(f->vdir, "grants", &recs[a].key, &recs[a].val);
		/* a record copied into the state database does not pass either */
		raw_put(f->vdir, "state", &recs[a].key, &recs[a].val);
		assert_int_equal(read_everything(f, g->id, &err), 0); /* not read by key... */
		v = open_ok(f);
		assert_int_equal(vault_principal_foreach_suspended(v, noop_susp, NULL), 0);
		vault_close(v);
		raw_put(f->vdir, "state", &recs[a].key, NULL);
	}
	/* deleting the broker keys or the header */
	raw_put(f->vdir, "meta", &recs[1].key, NULL);
	assert_int_equal(read_everything(f, g->id, &err), -EBADMSG);
	raw_put(f->vdir, "meta", &recs[1].key, &recs[1].val);
	raw_put(f->vdir, "meta", &recs[0].key, NULL);
	assert_int_equal(read_everything(f, g->id, &err), -EBADMSG);
	raw_put(f->vdir, "meta", &recs[0].key, &recs[0].val);
	assert_int_equal(read_everything(f, g->id, &err), 0);

	raw_free(recs, n);
	grant_free(g);
	grant_free(g2);
	free(env);
	free(env2);
}

/* Flipping bytes of data.mdb itself: LMDB may notice or not; the vault
 * must either fail cleanly or return the right data. */
static void test_file_tamper(void **state)
{
	struct fx *f = *state;
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v), "");
	struct grant *g = import_ok(v, env, false);
	char path[256];
	size_t len = 0, ok = 0, bad = 0;
	char *orig;
	int step = under_valgrind() ? 2039 : (getenv("VAULT_TEST_FILE_STEP") ? atoi(getenv("VAULT_TEST_FILE_STEP")) : 61);

	vault_close(v);
	snprintf(path, sizeof(path), "%s/data.mdb", f->vdir);
	orig = read_all(path, &len);
	for (size_t i = 0; i < len; i += step) {
		struct cerr err = {{0}};
		int rc;

		orig[i] ^= 0x10;
		write_file(path, orig, len, 0600);
		orig[i] ^= 0x10;
		rc = read_everything(f, g->id, &err); /* asserts the secret if read */
		if (rc == 0)
			ok++;
		else
			bad++;
		assert_null(strstr(err.msg, SECRET));
	}
	/* LMDB's meta pages (magic, version, page size, map size, roots) at
	 * 0 and 4096: a damaged page size once crashed LMDB itself */
	for (size_t page = 0; page < 2; page++) {
		size_t from = under_valgrind() ? 40 : 16, to = under_valgrind() ? 44 : 64;

		for (size_t i = page * 4096 + from; i < page * 4096 + to; i++) {
			for (int b = 4; b < 8; b += 3) {
				struct cerr err = {{0}};

				orig[i] ^= (char)(1 << b);
				write_file(path, orig, len, 0600);
				orig[i] ^= (char)(1 << b);
				if (read_everything(f, g->id, &err) != 0)
					bad++;
			}
		}
	}
	write_file(path, orig, len, 0600);
	assert_int_equal(read_everything(f, g->id, &(struct cerr){{0}}), 0);
	assert_true(bad > 0);
	(void)ok;
	free(orig);
	grant_free(g);
	free(env);
}

/* ---- rekey ------------------------------------------------------------- */

static void test_rekey_key_file(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	struct vault *v = open_ok(f);
	char *env1 = seal(vault_public_keys(v), ""), *env2 = seal(vault_public_keys(v), "");
	struct grant *g1 = import_ok(v, env1, false), *g2 = import_ok(v, env2, false), *g = NULL;
	struct vault_public before, after;
	char oldkey[256], path[256], *secret = NULL;
	size_t klen = 0, slen = 0, dlen = 0;
	char *kbuf, *data;
	struct raw_rec recs[16];
	size_t n;
	MDB_val old_g1 = {0};
	struct vault_key_source oldsrc = {.key_file = oldkey};
	struct stat st;

	before = *vault_public_keys(v);
	vault_close(v);
	/* the record of g1 while it still held the secret */
	n = raw_records(f->vdir, recs, 16);
	for (size_t i = 0; i < n; i++)
		if (recs[i].key.mv_size == strlen(g1->id) &&
		    memcmp(recs[i].key.mv_data, g1->id, recs[i].key.mv_size) == 0)
			old_g1 = recs[i].val;
	assert_non_null(old_g1.mv_data);
	v = open_ok(f);
	assert_int_equal(vault_grant_revoke(v, g1->id, "alice", "gone", NOW, &err), 0);
	vault_close(v);
	snprintf(path, sizeof(path), "%s/data.mdb", f->vdir);
	/* before the rekey, the old record survives in LMDB's free pages */
	assert_true(file_contains(path, old_g1.mv_data, old_g1.mv_size));

	kbuf = read_all(f->key, &klen);
	snprintf(oldkey, sizeof(oldkey), "%s/old.key", f->dir);
	write_file(oldkey, kbuf, klen, 0600);
	/* the vault belongs to the broker's user; the rekey runs as root */
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_int_equal(vault_rekey(f->vdir, &f->src, NULL, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	{
		char lk[256];

		snprintf(lk, sizeof(lk), "%s/lock.mdb", f->vdir);
		assert_int_equal(stat(lk, &st), 0);
		assert_int_equal(st.st_uid, 65534);
	}

	/* the key file was replaced, mode 0600 */
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_false(file_contains(f->key, kbuf, klen));
	/* the old key opens nothing */
	assert_int_equal(vault_open(f->vdir, &oldsrc, &v, &err), -EKEYREJECTED);
	/* the old record (and so the revoked secret) is gone from the file */
	assert_false(file_contains(path, old_g1.mv_data, old_g1.mv_size));
	assert_false(file_contains(path, SECRET, strlen(SECRET)));
	data = read_all(path, &dlen);
	assert_true(dlen > 0);
	free(data);
	/* the new key opens it: same broker keys, same grants */
	v = open_ok(f);
	after = *vault_public_keys(v);
	assert_memory_equal(&before, &after, sizeof(before));
	assert_int_equal(vault_grant_get(v, g1->id, &g), 0);
	assert_true(g->revoked);
	grant_free(g);
	assert_int_equal(vault_grant_secret(v, g1->id, &secret, &slen), -EKEYREVOKED);
	assert_int_equal(vault_grant_secret(v, g2->id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	vault_secret_free(secret);
	vault_close(v);
	/* no leftovers */
	snprintf(path, sizeof(path), "%s/rekey.new", f->vdir);
	assert_int_not_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s.rekey", f->key);
	assert_int_not_equal(access(path, F_OK), 0);

	raw_free(recs, n);
	free(kbuf);
	grant_free(g1);
	grant_free(g2);
	free(env1);
	free(env2);
}

static void test_rekey_symlinked_key(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	char real[256], link_[256], *before, *after;
	size_t lb = 0, la = 0;
	struct vault_key_source src = {.key_file = link_};
	struct vault *v = NULL;
	struct stat st;

	snprintf(real, sizeof(real), "%s/real.key", f->dir);
	snprintf(link_, sizeof(link_), "%s/link.key", f->dir);
	assert_int_equal(rename(f->key, real), 0);
	assert_int_equal(symlink(real, link_), 0);
	before = read_all(real, &lb);
	assert_int_equal(vault_rekey(f->vdir, &src, NULL, &err), 0);
	assert_int_equal(lstat(link_, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	after = read_all(real, &la);
	assert_false(la == lb && memcmp(before, after, la) == 0);
	assert_int_equal(vault_open(f->vdir, &src, &v, &err), 0);
	vault_close(v);
	free(before);
	free(after);
}

static void test_rekey_passphrase(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	char vdir[256], pass[256], pass2[256], *secret = NULL;
	struct vault_key_source src = {.passphrase_file = pass};
	struct vault_key_source nsrc = {.passphrase_file = pass2};
	struct vault *v = NULL;
	struct grant *g;
	char *env;
	size_t slen;

	snprintf(vdir, sizeof(vdir), "%s/pp", f->dir);
	snprintf(pass, sizeof(pass), "%s/pass", f->dir);
	snprintf(pass2, sizeof(pass2), "%s/pass2", f->dir);
	write_file(pass, "old passphrase\n", 15, 0600);
	write_file(pass2, "new passphrase\n", 15, 0600);
	assert_int_equal(vault_create(vdir, &src, &err), 0);
	assert_int_equal(vault_open(vdir, &src, &v, &err), 0);
	env = seal(vault_public_keys(v), "");
	g = import_ok(v, env, false);
	vault_close(v);
	assert_int_equal(vault_rekey(vdir, &src, NULL, &err), -EINVAL);
	assert_int_equal(vault_rekey(vdir, &src, pass2, &err), 0);
	assert_int_equal(vault_open(vdir, &src, &v, &err), -EKEYREJECTED);
	assert_int_equal(vault_open(vdir, &nsrc, &v, &err), 0);
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	vault_secret_free(secret);
	vault_close(v);
	grant_free(g);
	free(env);
}

/* The crash windows of a rekey, recreated by hand. */
static void test_rekey_recovery(void **state)
{
	struct fx *f = *state;
	struct cerr err = {{0}};
	char path[256], pending[256], *kold, *knew, *secret = NULL;
	size_t lold = 0, lnew = 0, slen;
	struct vault *v = open_ok(f);
	char *env = seal(vault_public_keys(v), "");
	struct grant *g = import_ok(v, env, false);

	vault_close(v);
	snprintf(pending, sizeof(pending), "%s.rekey", f->key);
	/* crash before the swap: a half-built new vault and a new key lie
	 * around; the old key still opens the old vault and they are removed */
	snprintf(path, sizeof(path), "%s/rekey.new", f->vdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/rekey.new/data.mdb", f->vdir);
	write_file(path, "garbage", 7, 0600);
	assert_int_equal(vault_key_file_create(pending, &err), 0);
	v = open_ok(f);
	vault_close(v);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_not_equal(access(pending, F_OK), 0);

	/* crash between the swap and the key rename: the vault is new, the key
	 * file old, the new key waits in KEYFILE.rekey */
	kold = read_all(f->key, &lold);
	assert_int_equal(vault_rekey(f->vdir, &f->src, NULL, &err), 0);
	knew = read_all(f->key, &lnew);
	assert_int_equal(rename(f->key, pending), 0);
	write_file(f->key, kold, lold, 0600);
	v = open_ok(f); /* finishes the rename */
	assert_int_equal(vault_grant_secret(v, g->id, &secret, &slen), 0);
	assert_string_equal(secret, SECRET);
	vault_secret_free(secret);
	vault_close(v);
	assert_int_not_equal(access(pending, F_OK), 0);
	assert_true(file_contains(f->key, knew, lnew));
	/* a stale pending key that does not match is not taken */
	write_file(f->key, kold, lold, 0600);
	assert_int_equal(vault_key_file_create(pending, &err), 0);
	assert_int_equal(vault_open(f->vdir, &f->src, &v, &err), -EKEYREJECTED);
	free(kold);
	free(knew);
	grant_free(g);
	free(env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_open_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_passphrase, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file_permissions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
		cmocka_unit_test(test_vkey),
		cmocka_unit_test_setup_teardown(test_import_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreach_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sealed_for_other_broker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_envelope_tamper, setup, teardown),
		cmocka_unit_test(test_schema_errors),
		cmocka_unit_test(test_validate_accepts),
		cmocka_unit_test_setup_teardown(test_import_invalid_grant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credential, setup, teardown),
		cmocka_unit_test(test_states),
		cmocka_unit_test_setup_teardown(test_officer_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_key_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_symlinked_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_passphrase, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rekey_recovery, setup, teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* vault_store.c — creating, opening and closing a vault; its public keys.
 *
 * Rekey recovery (see vault_rekey.c for the writing side): a rekey builds
 * the new environment in DIR/rekey.new/, writes the new key to
 * KEYFILE.rekey, renames rekey.new/data.mdb over DIR/data.mdb (the commit
 * point), then renames KEYFILE.rekey over KEYFILE. vault_open, holding the
 * lock, finishes or rolls back what a crash interrupted:
 *   - rekey.new/data.mdb still there: the swap never happened; the old
 *     vault and old key are intact; the new files are removed.
 *   - the key file is rejected but KEYFILE.rekey opens the vault: the crash
 *     came between the two renames; the second rename is done now.
 */
#include "vault_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS_REC "keys"
#define KEYS_LEN (crypto_box_SECRETKEYBYTES + crypto_sign_SECRETKEYBYTES)

static int path_in(const char *dir, const char *name, char **out)
{
	*out = util_path_join(dir, name);
	return *out == NULL ? -ENOMEM : 0;
}

static bool file_exists(const char *dir, const char *name)
{
	char *p = util_path_join(dir, name);
	bool yes = p != NULL && access(p, F_OK) == 0;

	free(p);
	return yes;
}

bool vault_exists(const char *dir)
{
	return file_exists(dir, VAULT_DATA);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Check that the broker's secret keys belong to the public keys in the
 * (MAC-checked) header, so swapped or damaged keys are never used. */
static int keys_match(const uint8_t *keys, const struct vault_header *h)
{
	uint8_t pk[32], spk[crypto_sign_PUBLICKEYBYTES];
	uint8_t *ssk;
	int rc = 0;

	crypto_scalarmult_base(pk, keys);
	if (sodium_memcmp(pk, h->seal_pk, 32) != 0)
		rc = -EBADMSG;
	ssk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (ssk == NULL)
		return -ENOMEM;
	crypto_sign_seed_keypair(spk, ssk, keys + crypto_box_SECRETKEYBYTES);
	if (sodium_memcmp(ssk, keys + crypto_box_SECRETKEYBYTES, crypto_sign_SECRETKEYBYTES) != 0 ||
	    sodium_memcmp(spk, h->sign_pk, 32) != 0)
		rc = -EBADMSG;
	sodium_free(ssk);
	return rc;
}

static void public_from_header(const struct vault_header *h, struct vault_public *pub)
{
	memset(pub, 0, sizeof(*pub));
	memcpy(pub->seal_pk, h->seal_pk, 32);
	memcpy(pub->sign_pk, h->sign_pk, 32);
	vault_seal_key_id(h->seal_pk, pub->seal_key_id);
}

int vault_create(const char *dir, const struct vault_key_source *src, struct cerr *err)
{
	struct vault_header h;
	struct vault_subkeys *sk = NULL;
	uint8_t *master = NULL, *keys = NULL, *ct = NULL;
	uint8_t hdr[VAULT_HDR_LEN];
	size_t ctlen = 0;
	MDB_env *env = NULL;
	MDB_dbi dmeta, dgrants, dstate;
	MDB_txn *txn = NULL;
	MDB_val k, val;
	bool made_env = false;
	int lock_fd = -1, rc;

	if (src == NULL || dir == NULL)
		return cerr_set(err, -EINVAL, "no vault directory or key source given");
	if (sodium_init() < 0)
		return cerr_set(err, -EIO, "libsodium failed to initialise");
	rc = util_mkdir_p(dir, 0700);
	if (rc < 0)
		return cerr_set(err, rc, "cannot create the vault directory %s: %s", dir,
				strerror(-rc));
	if (chmod(dir, 0700) < 0) {
		rc = -errno;
		return cerr_set(err, rc, "cannot chmod 700 %s: %s", dir, strerror(-rc));
	}
	rc = vault_lock_take(dir, &lock_fd, err);
	if (rc < 0)
		return rc;
	if (file_exists(dir, VAULT_DATA)) {
		rc = cerr_set(err, -EEXIST, "a vault already exists at %s; not overwriting it", dir);
		goto out;
	}
	memset(&h, 0, sizeof(h));
	master = sodium_malloc(VAULT_KEY_LEN);
	sk = sodium_malloc(sizeof(*sk));
	keys = sodium_malloc(KEYS_LEN);
	if (master == NULL || sk == NULL || keys == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (src->key_file != NULL) {
		h.kdf = VAULT_KDF_KEYFILE;
	} else {
		/* Interactive limits: unlocking happens at every broker start. */
		h.kdf = VAULT_KDF_ARGON2ID;
		h.alg = crypto_pwhash_ALG_ARGON2ID13;
		h.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
		h.memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
		randombytes_buf(h.salt, sizeof(h.salt));
	}
	rc = vault_master_from_source(src, &h, master, err);
	if (rc < 0)
		goto out;
	vault_subkeys_derive(master, sk);
	sodium_memzero(master, VAULT_KEY_LEN);
	crypto_box_keypair(h.seal_pk, keys);
	crypto_sign_keypair(h.sign_pk, keys + crypto_box_SECRETKEYBYTES);
	memcpy(h.kcv, sk->kcv, 32);
	vault_header_encode(&h, sk->mac, hdr);
	rc = vault_record_seal(sk->rec, REC_KEYS, KEYS_REC, strlen(KEYS_REC), keys, KEYS_LEN, &ct,
			       &ctlen);
	if (rc < 0) {
		cerr_set(err, rc, "cannot encrypt the broker keys: %s", strerror(-rc));
		goto out;
	}
	made_env = true;
	rc = vault_env_open(dir, false, &env, &dmeta, &dgrants, &dstate);
	if (rc < 0) {
		cerr_set(err, rc, "cannot create the vault database in %s: %s", dir, strerror(-rc));
		goto out;
	}
	rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc == 0) {
		k.mv_data = (void *)"header";
		k.mv_size = 6;
		val.mv_data = hdr;
		val.mv_size = sizeof(hdr);
		rc = mdb_put(txn, dmeta, &k, &val, MDB_NOOVERWRITE);
	}
	if (rc == 0) {
		k.mv_data = (void *)KEYS_REC;
		k.mv_size = strlen(KEYS_REC);
		val.mv_data = ct;
		val.mv_size = ctlen;
		rc = mdb_put(txn, dmeta, &k, &val, MDB_NOOVERWRITE);
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (rc != 0) {
		rc = vault_mdb_errno(rc);
		cerr_set(err, rc, "cannot write the vault in %s: %s", dir, strerror(-rc));
		goto out;
	}
	made_env = false; /* complete: keep it */
	/* the new files' directory entries must be durable too */
	rc = fsync_dir(dir);
	if (rc < 0)
		cerr_set(err, rc, "cannot sync %s: %s", dir, strerror(-rc));
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (env != NULL)
		mdb_env_close(env);
	if (made_env) {
		/* We checked there was no data.mdb: these half-made files are ours. */
		char *p = NULL;

		if (path_in(dir, VAULT_DATA, &p) == 0)
			unlink(p);
		free(p);
		if (path_in(dir, VAULT_LMDB_LOCK, &p) == 0)
			unlink(p);
		free(p);
	}
	free(ct);
	if (keys != NULL)
		sodium_free(keys);
	if (sk != NULL)
		sodium_free(sk);
	if (master != NULL)
		sodium_free(master);
	if (lock_fd >= 0)
		close(lock_fd);
	return rc;
}

static int read_header(MDB_env *env, MDB_dbi dmeta, uint8_t hdr[static VAULT_HDR_LEN],
		       struct vault_header *h)
{
	MDB_txn *txn = NULL;
	MDB_val k = {.mv_size = 6, .mv_data = (void *)"header"}, val;
	int rc;

	rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return vault_mdb_errno(rc);
	rc = mdb_get(txn, dmeta, &k, &val);
	if (rc == MDB_NOTFOUND || (rc == 0 && val.mv_size != VAULT_HDR_LEN)) {
		rc = -EBADMSG;
	} else if (rc != 0) {
		rc = vault_mdb_errno(rc);
	} else {
		memcpy(hdr, val.mv_data, VAULT_HDR_LEN);
		rc = vault_header_decode(hdr, VAULT_HDR_LEN, h);
	}
	mdb_txn_abort(txn);
	return rc;
}

static int header_error(const char *dir, int rc, struct cerr *err)
{
	if (rc == -EPROTONOSUPPORT)
		return cerr_set(err, rc, "the vault at %s has a format this custody cannot read",
				dir);
	if (rc == -EBADMSG)
		return cerr_set(err, rc, "the vault header at %s is damaged or was tampered with",
				dir);
	return cerr_set(err, rc, "cannot read the vault at %s: %s", dir, strerror(-rc));
}

/* Roll back a rekey that never reached its swap; tidy one that did. */
static void rekey_cleanup(const char *dir, const struct vault_key_source *src)
{
	char *rd = util_path_join(dir, VAULT_REKEY_DIR);
	char *p = NULL;
	bool swapped;

	if (rd == NULL)
		return;
	if (access(rd, F_OK) != 0) {
		free(rd);
		return;
	}
	swapped = !file_exists(rd, VAULT_DATA);
	if (path_in(rd, VAULT_DATA, &p) == 0)
		unlink(p);
	free(p);
	if (path_in(rd, VAULT_LMDB_LOCK, &p) == 0)
		unlink(p);
	free(p);
	rmdir(rd);
	if (!swapped && src->key_file != NULL) {
		char *kf = NULL;

		if (vault_key_rekey_paths(src->key_file, &kf, &p) == 0) {
			unlink(p);
			free(p);
			free(kf);
		}
	}
	free(rd);
}

/* The key file was rejected: if an interrupted rekey left the new key next
 * to it and that key opens the vault, finish the rekey's last rename. */
static int rekey_finish_key(const struct vault_key_source *src, const struct vault_header *h,
			    struct vault_subkeys *sk, struct cerr *err)
{
	char *kf = NULL, *pending = NULL;
	uint8_t *master = NULL;
	struct vault_subkeys *nsk = NULL;
	struct cerr ignored;
	int rc = -EKEYREJECTED;

	if (src->key_file == NULL)
		return -EKEYREJECTED;
	if (vault_key_rekey_paths(src->key_file, &kf, &pending) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	if (access(pending, F_OK) != 0)
		goto out;
	master = sodium_malloc(VAULT_KEY_LEN);
	nsk = sodium_malloc(sizeof(*nsk));
	if (master == NULL || nsk == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (vault_key_file_load(pending, master, &ignored) < 0)
		goto out;
	vault_subkeys_derive(master, nsk);
	if (sodium_memcmp(nsk->kcv, h->kcv, 32) != 0)
		goto out;
	if (rename(pending, kf) < 0) {
		rc = -errno;
		cerr_set(err, rc,
			 "an interrupted rekey left the new master key in %s and it cannot be moved into place (%s); run: mv %s %s",
			 pending, strerror(-rc), pending, kf);
		goto out;
	}
	{
		char *slash = strrchr(kf, '/');

		if (slash != NULL && slash != kf) {
			*slash = '\0';
			(void)fsync_dir(kf);
		} else if (slash == NULL) {
			(void)fsync_dir(".");
		}
	}
	memcpy(sk, nsk, sizeof(*sk));
	rc = 0;
out:
	if (rc == -ENOMEM)
		cerr_set(err, rc, "out of memory");
	if (nsk != NULL)
		sodium_free(nsk);
	if (master != NULL)
		sodium_free(master);
	free(pending);
	free(kf);
	return rc;
}

static int load_keys(struct vault *v, const struct vault_header *h, const uint8_t rec[static 32])
{
	MDB_txn *txn = NULL;
	MDB_val k = {.mv_size = strlen(KEYS_REC), .mv_data = (void *)KEYS_REC}, val;
	uint8_t *pt = NULL;
	size_t ptlen = 0;
	int rc;

	rc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return vault_mdb_errno(rc);
	rc = mdb_get(txn, v->db_meta, &k, &val);
	if (rc != 0) {
		rc = rc == MDB_NOTFOUND ? -EBADMSG : vault_mdb_errno(rc);
		goto out;
	}
	rc = vault_record_open(rec, REC_KEYS, KEYS_REC, strlen(KEYS_REC), val.mv_data,
			       val.mv_size, &pt, &ptlen);
	if (rc < 0)
		goto out;
	if (ptlen != KEYS_LEN) {
		rc = -EBADMSG;
		goto out;
	}
	rc = keys_match(pt, h);
	if (rc < 0)
		goto out;
	memcpy(v->sec->rec, rec, 32);
	memcpy(v->sec->seal_sk, pt, crypto_box_SECRETKEYBYTES);
	memcpy(v->sec->sign_sk, pt + crypto_box_SECRETKEYBYTES, crypto_sign_SECRETKEYBYTES);
out:
	vault_plain_free(pt, ptlen);
	mdb_txn_abort(txn);
	return rc;
}

int vault_open(const char *dir, const struct vault_key_source *src, struct vault **out,
	       struct cerr *err)
{
	struct vault *v = NULL;
	struct vault_header h;
	struct vault_subkeys *sk = NULL;
	uint8_t *master = NULL;
	uint8_t hdr[VAULT_HDR_LEN];
	int rc;

	if (src == NULL || dir == NULL)
		return cerr_set(err, -EINVAL, "no vault directory or key source given");
	if (sodium_init() < 0)
		return cerr_set(err, -EIO, "libsodium failed to initialise");
	if (!file_exists(dir, VAULT_DATA)) {
		char *rd = util_path_join(dir, VAULT_REKEY_DIR);
		bool rekeying = rd != NULL && file_exists(rd, VAULT_DATA);

		free(rd);
		if (!rekeying)
			return cerr_set(err, -ENOENT, "no vault at %s (run: custody init)", dir);
	}
	v = calloc(1, sizeof(*v));
	if (v == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	v->lock_fd = -1;
	v->dir = strdup(dir);
	master = sodium_malloc(VAULT_KEY_LEN);
	sk = sodium_malloc(sizeof(*sk));
	v->sec = sodium_malloc(sizeof(*v->sec));
	if (v->dir == NULL || master == NULL || sk == NULL || v->sec == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	rc = vault_lock_take(dir, &v->lock_fd, err);
	if (rc < 0)
		goto out;
	rekey_cleanup(dir, src);
	if (!file_exists(dir, VAULT_DATA)) {
		rc = cerr_set(err, -ENOENT, "no vault at %s (run: custody init)", dir);
		goto out;
	}
	rc = vault_env_open(dir, false, &v->env, &v->db_meta, &v->db_grants, &v->db_state);
	if (rc < 0) {
		header_error(dir, rc, err);
		goto out;
	}
	rc = read_header(v->env, v->db_meta, hdr, &h);
	if (rc < 0) {
		header_error(dir, rc, err);
		goto out;
	}
	rc = vault_master_from_source(src, &h, master, err);
	if (rc < 0)
		goto out;
	vault_subkeys_derive(master, sk);
	sodium_memzero(master, VAULT_KEY_LEN);
	if (sodium_memcmp(sk->kcv, h.kcv, 32) != 0) {
		rc = rekey_finish_key(src, &h, sk, err);
		if (rc == -EKEYREJECTED) {
			rc = cerr_set(err, -EKEYREJECTED,
				      "wrong master key for the vault at %s (check %s)", dir,
				      src->key_file != NULL ? "key_file" : "passphrase_file");
			goto out;
		}
		if (rc < 0)
			goto out;
	} else if (src->key_file != NULL) {
		/* The current key is right: a leftover KEYFILE.rekey is from a
		 * rekey that never swapped; it opens nothing. */
		char *kf = NULL, *p = NULL;

		if (vault_key_rekey_paths(src->key_file, &kf, &p) == 0) {
			unlink(p);
			free(p);
			free(kf);
		}
	}
	if (vault_header_check_mac(hdr, sk->mac) < 0) {
		rc = cerr_set(err, -EBADMSG,
			      "the vault header at %s was tampered with (its public keys or parameters changed)",
			      dir);
		goto out;
	}
	rc = load_keys(v, &h, sk->rec);
	if (rc < 0) {
		if (rc == -EBADMSG)
			cerr_set(err, rc, "the broker keys in the vault at %s are damaged or were tampered with",
				 dir);
		else
			cerr_set(err, rc, "cannot read the broker keys in %s: %s", dir,
				 strerror(-rc));
		goto out;
	}
	sodium_mprotect_readonly(v->sec);
	public_from_header(&h, &v->pub);
	*out = v;
	v = NULL;
	rc = 0;
out:
	if (sk != NULL)
		sodium_free(sk);
	if (master != NULL)
		sodium_free(master);
	vault_close(v);
	return rc;
}

void vault_close(struct vault *v)
{
	if (v == NULL)
		return;
	if (v->env != NULL)
		mdb_env_close(v->env);
	if (v->sec != NULL)
		sodium_free(v->sec); /* makes it writable, wipes, frees */
	if (v->lock_fd >= 0)
		close(v->lock_fd);
	free(v->dir);
	free(v);
}

int vault_read_public(const char *dir, struct vault_public *out, struct cerr *err)
{
	struct vault_header h;
	uint8_t hdr[VAULT_HDR_LEN];
	MDB_env *env = NULL;
	MDB_dbi dmeta, dgrants, dstate;
	int rc;

	if (sodium_init() < 0)
		return cerr_set(err, -EIO, "libsodium failed to initialise");
	if (!file_exists(dir, VAULT_DATA))
		return cerr_set(err, -ENOENT, "no vault at %s (run: custody init)", dir);
	rc = vault_env_open(dir, true, &env, &dmeta, &dgrants, &dstate);
	if (rc < 0)
		return header_error(dir, rc, err);
	rc = read_header(env, dmeta, hdr, &h);
	mdb_env_close(env);
	if (rc < 0)
		return header_error(dir, rc, err);
	/* Unverified here (no key): vault_open checks the header MAC. */
	public_from_header(&h, out);
	return 0;
}

const struct vault_public *vault_public_keys(const struct vault *v)
{
	return &v->pub;
}

int vault_audit_sign(void *vault, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
	struct vault *v = vault;

	if (v == NULL || v->sec == NULL)
		return -EINVAL;
	/* The secrets stay read-only while open, so this is safe from the
	 * audit writer thread. */
	if (crypto_sign_detached(sig, NULL, msg, len, v->sec->sign_sk) != 0)
		return -EIO;
	return 0;
}

int vault_vkey_format(const char *origin, const uint8_t sign_pk[static 32], char *out,
		      size_t outlen)
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES], kb[33];
	char id[9], b64[sodium_base64_ENCODED_LEN(33, sodium_base64_VARIANT_ORIGINAL)];
	const uint8_t nl = 0x0a;
	size_t olen;
	int n;

	if (origin == NULL || out == NULL)
		return -EINVAL;
	olen = strlen(origin);
	/* C2SP signed-note key names: non-empty, no '+', no white space. */
	if (olen == 0 || !util_utf8_valid(origin, olen))
		return -EINVAL;
	for (size_t i = 0; i < olen; i++)
		if (origin[i] == '+' || (unsigned char)origin[i] <= 0x20 || origin[i] == 0x7f)
			return -EINVAL;
	kb[0] = 0x01; /* Ed25519 */
	memcpy(kb + 1, sign_pk, 32);
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)origin, olen);
	crypto_hash_sha256_update(&st, &nl, 1);
	crypto_hash_sha256_update(&st, kb, sizeof(kb));
	crypto_hash_sha256_final(&st, h);
	util_hex(h, 4, id);
	sodium_bin2base64(b64, sizeof(b64), kb, sizeof(kb), sodium_base64_VARIANT_ORIGINAL);
	n = snprintf(out, outlen, "%s+%s+%s", origin, id, b64);
	if (n < 0 || (size_t)n >= outlen)
		return -ENOSPC;
	return 0;
}

/* vault_rekey.c — re-encrypt everything under a new master key, into a
 * fresh (hence compact) LMDB environment.
 *
 * Order, so that a crash at any point leaves either the old key opening the
 * old vault or the new key opening the new one (vault_open, holding the
 * lock, completes or rolls back; see vault_store.c):
 *   1. build DIR/rekey.new/data.mdb under the new key; sync it
 *   2. key file only: write the new key to KEYFILE.rekey; fsync file, dir
 *   3. rename rekey.new/data.mdb over DIR/data.mdb; fsync DIR  (commit)
 *   4. key file only: rename KEYFILE.rekey over KEYFILE; fsync its dir
 *   5. remove rekey.new; overwrite the old data file's blocks with zeros
 * Records revoked before the rekey lived on only in LMDB's free pages of the
 * old file; the new file never holds them, and the old key opens nothing
 * in it. (Step 5's overwrite is best effort: on copy-on-write or
 * wear-levelled storage old blocks may survive physically, but only
 * encrypted under a key that no longer exists anywhere.) */
#include "vault_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fsync_path(const char *path, bool dir)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0)), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int parent_dir(const char *path, char **out)
{
	char *d = strdup(path), *slash;

	if (d == NULL)
		return -ENOMEM;
	slash = strrchr(d, '/');
	if (slash == NULL)
		strcpy(d, ".");
	else if (slash == d)
		d[1] = '\0';
	else
		*slash = '\0';
	*out = d;
	return 0;
}

/* Copy every record of one database, re-encrypted. */
static int copy_db(MDB_txn *from, MDB_dbi fdbi, MDB_txn *to, MDB_dbi tdbi, char kind,
		   const uint8_t old_key[static 32], const uint8_t new_key[static 32],
		   const char *only)
{
	MDB_cursor *cur = NULL;
	MDB_val k, val, nv;
	int rc, mrc;

	rc = vault_mdb_errno(mdb_cursor_open(from, fdbi, &cur));
	if (rc < 0)
		return rc;
	for (mrc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		uint8_t *pt = NULL, *ct = NULL;
		size_t ptlen = 0, ctlen = 0;

		if (only != NULL &&
		    (k.mv_size != strlen(only) || memcmp(k.mv_data, only, k.mv_size) != 0))
			continue;
		rc = vault_record_open(old_key, kind, k.mv_data, k.mv_size, val.mv_data,
				       val.mv_size, &pt, &ptlen);
		if (rc == 0)
			rc = vault_record_seal(new_key, kind, k.mv_data, k.mv_size, pt, ptlen, &ct,
					       &ctlen);
		vault_plain_free(pt, ptlen);
		if (rc == 0) {
			nv.mv_data = ct;
			nv.mv_size = ctlen;
			rc = vault_mdb_errno(mdb_put(to, tdbi, &k, &nv, MDB_NOOVERWRITE));
		}
		free(ct);
		if (rc < 0)
			goto out;
	}
	rc = mrc == MDB_NOTFOUND ? 0 : vault_mdb_errno(mrc);
out:
	mdb_cursor_close(cur);
	return rc;
}

static int build_new_env(struct vault *v, const char *newdir, const uint8_t hdr[VAULT_HDR_LEN],
			 const uint8_t new_rec[static 32])
{
	MDB_env *env = NULL;
	MDB_dbi m, g, s;
	MDB_txn *rt = NULL, *wt = NULL;
	MDB_val k = {.mv_size = 6, .mv_data = (void *)"header"};
	MDB_val val = {.mv_size = VAULT_HDR_LEN, .mv_data = (void *)hdr};
	int rc;

	rc = vault_env_open(newdir, false, &env, &m, &g, &s);
	if (rc < 0)
		return rc;
	rc = vault_mdb_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &rt));
	if (rc == 0)
		rc = vault_mdb_errno(mdb_txn_begin(env, NULL, 0, &wt));
	if (rc == 0)
		rc = vault_mdb_errno(mdb_put(wt, m, &k, &val, MDB_NOOVERWRITE));
	if (rc == 0)
		rc = copy_db(rt, v->db_meta, wt, m, REC_KEYS, v->sec->rec, new_rec, "keys");
	if (rc == 0)
		rc = copy_db(rt, v->db_grants, wt, g, REC_GRANT, v->sec->rec, new_rec, NULL);
	if (rc == 0)
		rc = copy_db(rt, v->db_state, wt, s, REC_STATE, v->sec->rec, new_rec, NULL);
	if (rc == 0) {
		rc = vault_mdb_errno(mdb_txn_commit(wt));
		wt = NULL;
	}
	if (rc == 0)
		rc = vault_mdb_errno(mdb_env_sync(env, 1));
	if (wt != NULL)
		mdb_txn_abort(wt);
	if (rt != NULL)
		mdb_txn_abort(rt);
	mdb_env_close(env);
	return rc;
}

static void remove_new_dir(const char *newdir)
{
	char *p;

	if ((p = util_path_join(newdir, VAULT_DATA)) != NULL)
		unlink(p);
	free(p);
	if ((p = util_path_join(newdir, VAULT_LMDB_LOCK)) != NULL)
		unlink(p);
	free(p);
	rmdir(newdir);
}

/* Best effort: zero the old file's blocks through a descriptor kept open
 * across the rename. */
static void wipe_old(int fd)
{
	static const uint8_t zero[65536];
	struct stat st;
	off_t off = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		return;
	while (off < st.st_size) {
		size_t n = (size_t)(st.st_size - off) < sizeof(zero) ? (size_t)(st.st_size - off)
								       : sizeof(zero);
		ssize_t w = pwrite(fd, zero, n, off);

		if (w <= 0)
			break;
		off += w;
	}
	(void)fsync(fd);
}

int vault_rekey(const char *dir, const struct vault_key_source *src,
		const char *new_passphrase_file, struct cerr *err)
{
	struct vault *v = NULL;
	struct vault_header h;
	struct vault_subkeys *sk = NULL;
	uint8_t *master = NULL;
	uint8_t hdr[VAULT_HDR_LEN];
	char *newdir = NULL, *newdata = NULL, *data = NULL, *kf = NULL, *kf_new = NULL;
	char *kf_dir = NULL;
	struct stat dst;
	int old_fd = -1, rc, sync_rc;
	bool committed = false;

	rc = vault_open(dir, src, &v, err);
	if (rc < 0)
		return rc;
	memset(&h, 0, sizeof(h));
	master = sodium_malloc(VAULT_KEY_LEN);
	sk = sodium_malloc(sizeof(*sk));
	newdir = util_path_join(dir, VAULT_REKEY_DIR);
	newdata = newdir != NULL ? util_path_join(newdir, VAULT_DATA) : NULL;
	data = util_path_join(dir, VAULT_DATA);
	if (master == NULL || sk == NULL || newdir == NULL || newdata == NULL || data == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (src->key_file != NULL) {
		h.kdf = VAULT_KDF_KEYFILE;
		randombytes_buf(master, VAULT_KEY_LEN);
		if (vault_key_rekey_paths(src->key_file, &kf, &kf_new) < 0 ||
		    parent_dir(kf, &kf_dir) < 0) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			goto out;
		}
	} else {
		struct vault_key_source ns = {.key_file = NULL,
					      .passphrase_file = new_passphrase_file};

		if (new_passphrase_file == NULL) {
			rc = cerr_set(err, -EINVAL, "rekey of a passphrase vault needs a new passphrase file");
			goto out;
		}
		h.kdf = VAULT_KDF_ARGON2ID;
		h.alg = crypto_pwhash_ALG_ARGON2ID13;
		h.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
		h.memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
		randombytes_buf(h.salt, sizeof(h.salt));
		rc = vault_master_from_source(&ns, &h, master, err);
		if (rc < 0)
			goto out;
	}
	vault_subkeys_derive(master, sk);
	memcpy(h.seal_pk, v->pub.seal_pk, 32);
	memcpy(h.sign_pk, v->pub.sign_pk, 32);
	memcpy(h.kcv, sk->kcv, 32);
	vault_header_encode(&h, sk->mac, hdr);

	/* 1. the new environment */
	remove_new_dir(newdir);
	if (mkdir(newdir, 0700) < 0) {
		rc = -errno;
		cerr_set(err, rc, "cannot create %s: %s", newdir, strerror(-rc));
		goto out;
	}
	rc = build_new_env(v, newdir, hdr, sk->rec);
	if (rc < 0) {
		if (rc == -EBADMSG)
			cerr_set(err, rc, "a record in the vault at %s is damaged or was tampered with; nothing was changed",
				 dir);
		else
			cerr_set(err, rc, "cannot write the new vault in %s: %s", newdir,
				 strerror(-rc));
		goto out;
	}
	/* 2. the new key, next to the old one */
	if (kf != NULL) {
		rc = vault_key_file_write_new(kf_new, kf, master, err);
		if (rc < 0)
			goto out;
	}
	sodium_memzero(master, VAULT_KEY_LEN);
	/* The new file keeps the old one's owner: a rekey run as root must
	 * not leave the broker's user a vault it cannot open. */
	if (stat(data, &dst) < 0 || chown(newdata, dst.st_uid, dst.st_gid) < 0) {
		rc = -errno;
		cerr_set(err, rc, "cannot give %s the owner of %s: %s; nothing was changed", newdata,
			 data, strerror(-rc));
		goto out;
	}
	/* 3. the swap: from here on the new key opens the vault */
	old_fd = open(data, O_RDWR | O_CLOEXEC);
	mdb_env_close(v->env);
	v->env = NULL;
	if (rename(newdata, data) < 0) {
		rc = -errno;
		cerr_set(err, rc, "cannot move the new vault into place: %s; nothing was changed",
			 strerror(-rc));
		goto out;
	}
	committed = true;
	sync_rc = fsync_path(dir, true);
	/* 4. the key file (even when the sync failed: the vault is new now) */
	if (kf != NULL) {
		if (rename(kf_new, kf) < 0) {
			rc = -errno;
			cerr_set(err, rc,
				 "the vault was rekeyed but the new key could not replace %s (%s); run: mv %s %s",
				 kf, strerror(-rc), kf_new, kf);
			goto out;
		}
		rc = fsync_path(kf_dir, true);
		if (rc < 0) {
			cerr_set(err, rc, "cannot sync %s: %s", kf_dir, strerror(-rc));
			goto out;
		}
	}
	if (sync_rc < 0) {
		rc = sync_rc;
		cerr_set(err, rc, "cannot sync %s: %s", dir, strerror(-rc));
		goto out;
	}
	/* 5. tidy up. LMDB's reader table described the old file: start the
	 * new one with a fresh, empty lock file owned like the data. */
	{
		char *lk = util_path_join(dir, VAULT_LMDB_LOCK);
		int lfd;

		if (lk != NULL) {
			unlink(lk);
			lfd = open(lk, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (lfd >= 0) {
				/* best effort: a lock file LMDB recreates; !: _FORTIFY_SOURCE */
				(void)!fchown(lfd, dst.st_uid, dst.st_gid);
				close(lfd);
			}
		}
		free(lk);
	}
	wipe_old(old_fd);
	rc = 0;
out:
	if (!committed && newdir != NULL) {
		remove_new_dir(newdir);
		if (kf_new != NULL)
			unlink(kf_new);
	} else if (newdir != NULL) {
		remove_new_dir(newdir);
	}
	if (old_fd >= 0)
		close(old_fd);
	free(kf_dir);
	free(kf_new);
	free(kf);
	free(data);
	free(newdata);
	free(newdir);
	if (sk != NULL)
		sodium_free(sk);
	if (master != NULL)
		sodium_free(master);
	vault_close(v);
	return rc;
}

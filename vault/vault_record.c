/* vault_record.c — encrypted records and the LMDB environment under them. */
#include "vault_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

static int record_ad(char kind, const void *k, size_t klen, uint8_t **ad, size_t *adlen)
{
	uint8_t *p;

	if (klen > 511)
		return -EINVAL; /* LMDB's default maximum key size */
	p = malloc(2 + klen);
	if (p == NULL)
		return -ENOMEM;
	p[0] = VAULT_FORMAT_VERSION;
	p[1] = (uint8_t)kind;
	memcpy(p + 2, k, klen);
	*ad = p;
	*adlen = 2 + klen;
	return 0;
}

int vault_record_seal(const uint8_t key[static 32], char kind, const void *k, size_t klen,
		      const uint8_t *pt, size_t ptlen, uint8_t **out, size_t *outlen)
{
	uint8_t *ad = NULL, *ct = NULL;
	size_t adlen = 0;
	unsigned long long clen = 0;
	int rc;

	if (ptlen > VAULT_MAX_RECORD)
		return -EMSGSIZE;
	rc = record_ad(kind, k, klen, &ad, &adlen);
	if (rc < 0)
		return rc;
	ct = malloc(VAULT_REC_OVERHEAD + ptlen);
	if (ct == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	ct[0] = VAULT_FORMAT_VERSION;
	randombytes_buf(ct + 1, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(
		ct + 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen, pt, ptlen, ad, adlen,
		NULL, ct + 1, key);
	*out = ct;
	*outlen = 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + (size_t)clen;
	ct = NULL;
	rc = 0;
out:
	free(ct);
	free(ad);
	return rc;
}

/* *pt is NUL-terminated for convenience (the NUL is not counted in
 * *ptlen); it may hold a secret, so free it with vault_plain_free, which
 * wipes it. Plain malloc, not sodium_malloc: this buffer lives for
 * microseconds, and sodium_malloc's guard pages (mmap, mprotect, munmap
 * and the TLB shootdowns they cause) made every read ~20x slower. */
int vault_record_open(const uint8_t key[static 32], char kind, const void *k, size_t klen,
		      const uint8_t *ct, size_t ctlen, uint8_t **pt, size_t *ptlen)
{
	const size_t hdr = 1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
	uint8_t *ad = NULL, *p = NULL;
	size_t adlen = 0, plen;
	unsigned long long got = 0;
	int rc;

	if (ctlen < VAULT_REC_OVERHEAD || ctlen > VAULT_MAX_RECORD + VAULT_REC_OVERHEAD ||
	    ct[0] != VAULT_FORMAT_VERSION)
		return -EBADMSG;
	rc = record_ad(kind, k, klen, &ad, &adlen);
	if (rc < 0)
		return rc;
	plen = ctlen - VAULT_REC_OVERHEAD;
	p = malloc(plen + 1);
	if (p == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(p, &got, NULL, ct + hdr, ctlen - hdr, ad,
						       adlen, ct + 1, key) != 0 ||
	    got != plen) {
		rc = -EBADMSG;
		goto out;
	}
	p[plen] = 0;
	*pt = p;
	*ptlen = plen;
	p = NULL;
	rc = 0;
out:
	vault_plain_free(p, plen);
	free(ad);
	return rc;
}

void vault_plain_free(uint8_t *pt, size_t len)
{
	if (pt == NULL)
		return;
	sodium_memzero(pt, len + 1);
	free(pt);
}

int vault_mdb_errno(int mdb_rc)
{
	if (mdb_rc == 0)
		return 0;
	if (mdb_rc > 0 && mdb_rc < MDB_KEYEXIST)
		return -mdb_rc; /* a system errno */
	switch (mdb_rc) {
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_DBS_FULL:
	case MDB_READERS_FULL:
		return -ENOSPC;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_DBI:
	case MDB_BAD_TXN:
	case MDB_BAD_VALSIZE:
		return -EBADMSG;
	default:
		return -EIO;
	}
}

/* LMDB trusts its meta pages: a damaged page size there makes
 * mdb_env_open divide by zero or map past the file (SIGFPE, SIGBUS; found
 * by flipping every byte of a data.mdb). Check the two meta pages' magic
 * and page size ourselves first, so a damaged file is an error, not a
 * crash. Layout (64-bit LMDB 0.9): page header 16 bytes, then mm_magic
 * (u32) at 16, the free DB's md_pad = page size (u32) at 40. */
static int lmdb_meta_check(const char *dir)
{
	char *path = util_path_join(dir, VAULT_DATA);
	uint8_t m[2][48];
	uint32_t magic, psize = 0, ps;
	struct stat st;
	int fd, rc = 0;

	if (path == NULL)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size == 0)
		goto out; /* new: LMDB initialises it */
	for (int i = 0; i < 2; i++) {
		if (pread(fd, m[i], sizeof(m[i]), (off_t)i * psize) != (ssize_t)sizeof(m[i])) {
			rc = -EBADMSG;
			goto out;
		}
		memcpy(&magic, m[i] + 16, 4);
		memcpy(&ps, m[i] + 40, 4);
		if (magic != 0xBEEFC0DEu || ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0 ||
		    (i == 1 && ps != psize) || (uint64_t)st.st_size < 2 * (uint64_t)ps) {
			rc = -EBADMSG;
			goto out;
		}
		psize = ps;
	}
out:
	close(fd);
	return rc;
}

int vault_env_open(const char *dir, bool rdonly, MDB_env **envp, MDB_dbi *meta,
		   MDB_dbi *grants, MDB_dbi *state)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	unsigned dflags = rdonly ? 0 : MDB_CREATE;
	int rc;

	/* Read-only opens (vault_read_public) run beside a possible writer, so
	 * they check only the meta pages; the owner of the lock walks it all. */
	rc = rdonly ? lmdb_meta_check(dir) : vault_lmdb_check(dir);
	if (rc < 0)
		return rc;
	rc = mdb_env_create(&env);
	if (rc != 0)
		return vault_mdb_errno(rc);
	/* Default (synchronous) commits: every write transaction is durable
	 * before it returns. MDB_NOTLS: read transactions are not bound to the
	 * thread that began them. */
	if ((rc = mdb_env_set_maxdbs(env, 4)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, VAULT_MAPSIZE)) != 0 ||
	    (rc = mdb_env_open(env, dir, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, rdonly ? MDB_RDONLY : 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", dflags, meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "grants", dflags, grants)) != 0 ||
	    (rc = mdb_dbi_open(txn, "state", dflags, state)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0)
			mdb_txn_abort(txn);
		mdb_env_close(env);
		/* A missing named database is a damaged vault, not a missing one. */
		return rc == MDB_NOTFOUND ? -EBADMSG : vault_mdb_errno(rc);
	}
	*envp = env;
	return 0;
}

int vault_put(struct vault *v, MDB_dbi dbi, char kind, const char *k, const uint8_t *pt,
	      size_t ptlen, unsigned flags)
{
	uint8_t *ct = NULL;
	size_t ctlen = 0;
	MDB_txn *txn = NULL;
	MDB_val key, val;
	int rc;

	rc = vault_record_seal(v->sec->rec, kind, k, strlen(k), pt, ptlen, &ct, &ctlen);
	if (rc < 0)
		return rc;
	key.mv_data = (void *)k;
	key.mv_size = strlen(k);
	val.mv_data = ct;
	val.mv_size = ctlen;
	rc = mdb_txn_begin(v->env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_put(txn, dbi, &key, &val, flags);
	if (rc == 0) {
		rc = mdb_txn_commit(txn); /* synchronous: durable on return */
		txn = NULL;
	}
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(ct);
	return vault_mdb_errno(rc);
}

int vault_get(struct vault *v, MDB_dbi dbi, char kind, const char *k, uint8_t **pt,
	      size_t *ptlen)
{
	MDB_txn *txn = NULL;
	MDB_val key, val;
	size_t klen = strlen(k);
	int rc;

	if (klen == 0 || klen > 511)
		return -ENOENT;
	key.mv_data = (void *)k;
	key.mv_size = klen;
	rc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return vault_mdb_errno(rc);
	rc = mdb_get(txn, dbi, &key, &val);
	if (rc != 0)
		rc = vault_mdb_errno(rc);
	else
		rc = vault_record_open(v->sec->rec, kind, k, klen, val.mv_data, val.mv_size, pt,
				       ptlen);
	mdb_txn_abort(txn);
	return rc;
}

/* vault_grants.c — importing, reading and revoking stored grants. */
#include "vault_private.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Read a grant's record: metadata always, secret bytes only when asked
 * (*pt keeps them alive; vault_plain_free it). */
static int grant_load(struct vault *v, const char *id, struct grant **g)
{
	uint8_t *pt = NULL;
	size_t ptlen = 0;
	int rc;

	rc = vault_get(v, v->db_grants, REC_GRANT, id, &pt, &ptlen);
	if (rc < 0)
		return rc;
	rc = grant_record_parse(pt, ptlen, id, g, NULL, NULL);
	vault_plain_free(pt, ptlen);
	return rc;
}

int vault_grant_import(struct vault *v, const char *envelope, size_t len,
		       const char *const *allowed_hosts, int64_t now_s, struct grant **out,
		       bool *already, struct cerr *err)
{
	char rcp[VAULT_KEY_ID_HEX], id[GRANT_ID_LEN];
	uint8_t *sealed = NULL, *plain = NULL, *rec = NULL;
	size_t slen = 0, plen = 0, reclen = 0;
	struct grant *g = NULL, *dup = NULL;
	char *secret = NULL;
	int rc;

	rc = grant_envelope_parse(envelope, len, rcp, &sealed, &slen, err);
	if (rc < 0)
		return rc;
	if (strcmp(rcp, v->pub.seal_key_id) != 0) {
		rc = cerr_set(err, -ENOKEY,
			      "sealed for a different broker (key id %s; this broker's is %s)", rcp,
			      v->pub.seal_key_id);
		goto out;
	}
	grant_id_of_sealed(sealed, slen, id);
	plen = slen - crypto_box_SEALBYTES;
	plain = sodium_malloc(plen + 1);
	if (plain == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (crypto_box_seal_open(plain, sealed, slen, v->pub.seal_pk, v->sec->seal_sk) != 0) {
		rc = cerr_set(err, -EBADMSG, "sealed grant is damaged or was tampered with");
		goto out;
	}
	plain[plen] = 0;
	/* Same sealed bytes, same id: importing a file twice is a no-op. */
	rc = grant_load(v, id, &g);
	if (rc == 0) {
		if (already != NULL)
			*already = true;
		if (out != NULL) {
			*out = g;
			g = NULL;
		}
		goto out;
	}
	if (rc != -ENOENT) {
		cerr_set(err, rc, "the stored grant %s cannot be read: %s", id,
			 rc == -EBADMSG ? "damaged or tampered with" : strerror(-rc));
		goto out;
	}
	rc = grant_validate((const char *)plain, plen, allowed_hosts, &g, &secret, err);
	if (rc < 0)
		goto out;
	if (g->not_after != INT64_MAX && g->not_after <= now_s) {
		/* it could never serve: storing it would only clutter the list */
		char at[UTIL_TIME_LEN] = "?";

		util_time_format(g->not_after * 1000000, false, at);
		rc = cerr_set(err, -EKEYEXPIRED, "grant %s expired at %s (its not_after); not "
			      "imported: ask the customer to seal a new grant", id, at);
		goto out;
	}
	memcpy(g->id, id, GRANT_ID_LEN);
	g->imported_at = now_s;
	g->imported_us = util_now_us();
	if (g->imported_us / 1000000 != now_s)   /* a caller's own clock (tests) */
		g->imported_us = now_s * 1000000;
	dup = grant_dup(g);
	if (dup == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	rc = grant_record_build(g, secret, strlen(secret), &rec, &reclen);
	if (rc == 0)
		rc = vault_put(v, v->db_grants, REC_GRANT, id, rec, reclen, MDB_NOOVERWRITE);
	if (rc == -EEXIST) {
		/* stored meanwhile by another thread: same bytes, same grant */
		grant_free(dup);
		dup = NULL;
		rc = grant_load(v, id, &dup);
		if (rc == 0 && already != NULL)
			*already = true;
		if (rc == 0 && out != NULL) {
			*out = dup;
			dup = NULL;
		}
		if (rc < 0)
			cerr_set(err, rc, "cannot read grant %s: %s", id, strerror(-rc));
		goto out;
	}
	if (rc < 0) {
		cerr_set(err, rc, "cannot store grant %s: %s", id, strerror(-rc));
		goto out;
	}
	if (already != NULL)
		*already = false;
	if (out != NULL) {
		*out = dup;
		dup = NULL;
	}
	rc = 0;
out:
	vault_plain_free(rec, reclen);
	if (secret != NULL)
		vault_secret_free(secret);
	if (plain != NULL)
		sodium_free(plain);
	free(sealed);
	grant_free(dup);
	grant_free(g);
	return rc;
}

int vault_grant_get(struct vault *v, const char *id, struct grant **out)
{
	return grant_load(v, id, out);
}

int vault_grant_foreach(struct vault *v, int (*cb)(void *ctx, const struct grant *g), void *ctx)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, val;
	struct grant **all = NULL;
	size_t n = 0, cap = 0;
	int rc, mrc;

	/* Collect first, call back after the read transaction ends, so the
	 * callback may use the vault (revoke, secret) freely. */
	rc = vault_mdb_errno(mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn));
	if (rc < 0)
		return rc;
	rc = vault_mdb_errno(mdb_cursor_open(txn, v->db_grants, &cur));
	if (rc < 0)
		goto out;
	for (mrc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		char id[GRANT_ID_LEN];
		uint8_t *pt = NULL;
		size_t ptlen = 0;
		struct grant *g = NULL;

		if (k.mv_size == 0 || k.mv_size >= sizeof(id)) {
			rc = -EBADMSG;
			goto out;
		}
		memcpy(id, k.mv_data, k.mv_size);
		id[k.mv_size] = '\0';
		rc = vault_record_open(v->sec->rec, REC_GRANT, id, k.mv_size, val.mv_data,
				       val.mv_size, &pt, &ptlen);
		if (rc == 0)
			rc = grant_record_parse(pt, ptlen, id, &g, NULL, NULL);
		vault_plain_free(pt, ptlen);
		if (rc < 0)
			goto out;
		if (n == cap) {
			size_t ncap = cap == 0 ? 16 : cap * 2;
			struct grant **na = realloc(all, ncap * sizeof(*na));

			if (na == NULL) {
				grant_free(g);
				rc = -ENOMEM;
				goto out;
			}
			all = na;
			cap = ncap;
		}
		all[n++] = g;
	}
	if (mrc != MDB_NOTFOUND) {
		rc = vault_mdb_errno(mrc);
		goto out;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	mdb_txn_abort(txn);
	txn = NULL;
	rc = 0;
	/* free each grant once the callback has it: a caller that keeps
	 * copies (custodyd, at start-up) then never holds two full sets */
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = cb(ctx, all[i]);
		grant_free(all[i]);
		all[i] = NULL;
	}
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	for (size_t i = 0; i < n; i++)
		grant_free(all[i]);
	free(all);
	return rc;
}

int vault_grant_secret(struct vault *v, const char *id, char **secret_out, size_t *len)
{
	uint8_t *pt = NULL;
	size_t ptlen = 0, slen = 0;
	const uint8_t *s = NULL;
	struct grant *g = NULL;
	char *out = NULL;
	int rc;

	rc = vault_get(v, v->db_grants, REC_GRANT, id, &pt, &ptlen);
	if (rc < 0)
		return rc;
	rc = grant_record_parse(pt, ptlen, id, &g, &s, &slen);
	if (rc < 0)
		goto out;
	if (g->revoked) {
		rc = -EKEYREVOKED;
		goto out;
	}
	if (slen == 0) {
		rc = -EBADMSG; /* a live grant always has its secret */
		goto out;
	}
	out = malloc(slen + 1);   /* wiped by vault_secret_free: see there */
	if (out == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(out, s, slen);
	out[slen] = '\0';
	*secret_out = out;
	if (len != NULL)
		*len = slen;
	rc = 0;
out:
	grant_free(g);
	vault_plain_free(pt, ptlen);
	return rc;
}

/* Secrets handed out live for microseconds (a fetch copies the secret
 * into its request body at once), like the decrypted record they come
 * from (vault_record_open): plain malloc, wiped here before it is freed.
 * sodium_malloc's guard pages cost an mmap, mprotects, mlock and munmap
 * per fetch, with TLB shootdowns across the broker's threads. */
void vault_secret_free(char *secret)
{
	if (secret != NULL) {
		sodium_memzero(secret, malloc_usable_size(secret));
		free(secret);
	}
}

int vault_grant_revoke(struct vault *v, const char *id, const char *actor, const char *reason,
		       int64_t now_s, struct cerr *err)
{
	struct grant *g = NULL;
	uint8_t *pt = NULL, *rec = NULL, *ct = NULL;
	size_t ptlen = 0, reclen = 0, ctlen = 0, idlen = strlen(id);
	MDB_txn *txn = NULL;
	MDB_val key = {.mv_size = idlen, .mv_data = (void *)id}, val;
	int rc;

	actor = actor != NULL ? actor : "";
	reason = reason != NULL ? reason : "";
	if (strlen(actor) >= sizeof(g->revoked_by))
		return cerr_set(err, -EINVAL, "actor: longer than %zu bytes", sizeof(g->revoked_by) - 1);
	if (strlen(reason) >= sizeof(g->reason))
		return cerr_set(err, -EINVAL, "reason: longer than %zu bytes", sizeof(g->reason) - 1);
	if (!util_utf8_valid(actor, strlen(actor)) || !util_utf8_valid(reason, strlen(reason)))
		return cerr_set(err, -EINVAL, "actor and reason must be valid UTF-8");
	if (idlen == 0 || idlen >= GRANT_ID_LEN)
		return cerr_set(err, -ENOENT, "no grant %s", idlen == 0 ? "(empty id)" : "with that id");
	/* Read, check and rewrite in one write transaction: two revocations
	 * cannot both succeed. */
	rc = mdb_txn_begin(v->env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_get(txn, v->db_grants, &key, &val);
	if (rc != 0) {
		rc = vault_mdb_errno(rc);
		if (rc == -ENOENT)
			cerr_set(err, rc, "no grant %s", id);
		else
			cerr_set(err, rc, "cannot read grant %s: %s", id, strerror(-rc));
		goto out;
	}
	rc = vault_record_open(v->sec->rec, REC_GRANT, id, idlen, val.mv_data, val.mv_size, &pt,
			       &ptlen);
	if (rc == 0)
		rc = grant_record_parse(pt, ptlen, id, &g, NULL, NULL);
	if (rc < 0) {
		cerr_set(err, rc, "cannot read grant %s: %s", id,
			 rc == -EBADMSG ? "damaged or tampered with" : strerror(-rc));
		goto out;
	}
	if (g->revoked) {
		rc = cerr_set(err, -EALREADY, "grant %s was already revoked", id);
		goto out;
	}
	g->revoked = true;
	g->revoked_at = now_s;
	strcpy(g->revoked_by, actor);
	strcpy(g->reason, reason);
	/* The new record has no secret; the old one lingers only in LMDB's
	 * free pages, encrypted, until `custody vault rekey` compacts. */
	rc = grant_record_build(g, NULL, 0, &rec, &reclen);
	if (rc == 0)
		rc = vault_record_seal(v->sec->rec, REC_GRANT, id, idlen, rec, reclen, &ct, &ctlen);
	if (rc == 0) {
		val.mv_data = ct;
		val.mv_size = ctlen;
		rc = vault_mdb_errno(mdb_put(txn, v->db_grants, &key, &val, 0));
	}
	if (rc == 0) {
		rc = vault_mdb_errno(mdb_txn_commit(txn)); /* synchronous: durable */
		txn = NULL;
	}
	if (rc < 0)
		cerr_set(err, rc, "cannot store the revocation of grant %s: %s", id, strerror(-rc));
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(ct);
	vault_plain_free(rec, reclen);
	vault_plain_free(pt, ptlen);
	grant_free(g);
	return rc;
}

int vault_grant_set_credential(struct vault *v, const char *id, enum grant_credential c,
			       const char *error, int64_t now_s)
{
	struct grant *g = NULL;
	uint8_t *pt = NULL, *rec = NULL, *ct = NULL;
	size_t ptlen = 0, reclen = 0, ctlen = 0, slen = 0, idlen = strlen(id), elen;
	const uint8_t *secret = NULL;
	MDB_txn *txn = NULL;
	MDB_val key = {.mv_size = idlen, .mv_data = (void *)id}, val;
	int rc;

	error = error != NULL ? error : "";
	elen = strlen(error);
	if (elen >= sizeof(g->credential_error))
		elen = sizeof(g->credential_error) - 1;
	while (elen > 0 && !util_utf8_valid(error, elen))
		elen--;   /* cut on a character boundary */
	if (idlen == 0 || idlen >= GRANT_ID_LEN)
		return -ENOENT;
	/* read and rewrite in one write transaction, like a revocation: a
	 * revocation in between cannot be undone by this write */
	rc = vault_mdb_errno(mdb_txn_begin(v->env, NULL, 0, &txn));
	if (rc == 0)
		rc = vault_mdb_errno(mdb_get(txn, v->db_grants, &key, &val));
	if (rc == 0)
		rc = vault_record_open(v->sec->rec, REC_GRANT, id, idlen, val.mv_data, val.mv_size,
				       &pt, &ptlen);
	if (rc == 0)
		rc = grant_record_parse(pt, ptlen, id, &g, &secret, &slen);
	if (rc < 0)
		goto out;
	if (g->revoked) {
		rc = -EKEYREVOKED;
		goto out;
	}
	g->credential = c;
	g->credential_at = now_s;
	memcpy(g->credential_error, error, elen);
	g->credential_error[elen] = '\0';
	rc = grant_record_build(g, (const char *)secret, slen, &rec, &reclen);
	if (rc == 0)
		rc = vault_record_seal(v->sec->rec, REC_GRANT, id, idlen, rec, reclen, &ct, &ctlen);
	if (rc == 0) {
		val.mv_data = ct;
		val.mv_size = ctlen;
		rc = vault_mdb_errno(mdb_put(txn, v->db_grants, &key, &val, 0));
	}
	if (rc == 0) {
		rc = vault_mdb_errno(mdb_txn_commit(txn)); /* synchronous: durable */
		txn = NULL;
	}
out:
	if (txn != NULL)
		mdb_txn_abort(txn);
	free(ct);
	vault_plain_free(rec, reclen);
	vault_plain_free(pt, ptlen);
	grant_free(g);
	return rc;
}

/* export.c — a tenant's records with inclusion proofs against a signed
 * checkpoint, and a consistency proof from the customer's last one.
 * Format: audit/EXPORT.md. */
#include "audit_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "note.h"

int audit_load_leaves(sqlite3 *db, uint64_t size, uint8_t (**out)[MERKLE_HASH])
{
	sqlite3_stmt *st = NULL;
	uint8_t(*l)[MERKLE_HASH];
	uint64_t n = 0;
	int rc = 0, src;

	l = malloc((size ? size : 1) * MERKLE_HASH);
	if (l == NULL)
		return -ENOMEM;
	if (sqlite3_prepare_v2(db, "SELECT seq, leaf FROM events WHERE seq <= ?1 ORDER BY seq", -1,
			       &st, NULL) != SQLITE_OK) {
		rc = -EIO;
		goto out;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if ((uint64_t)sqlite3_column_int64(st, 0) != n + 1 ||
		    sqlite3_column_bytes(st, 1) != MERKLE_HASH) {
			rc = -EBADMSG;
			goto out;
		}
		memcpy(l[n++], sqlite3_column_blob(st, 1), MERKLE_HASH);
	}
	if (src != SQLITE_DONE)
		rc = -EIO;
	else if (n != size)
		rc = -EBADMSG;
out:
	sqlite3_finalize(st);
	if (rc < 0) {
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

static json_t *proof_json(const uint8_t (*h)[MERKLE_HASH], size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++) {
		char b64[sodium_base64_ENCODED_LEN(MERKLE_HASH, sodium_base64_VARIANT_ORIGINAL)];

		sodium_bin2base64(b64, sizeof(b64), h[i], MERKLE_HASH, sodium_base64_VARIANT_ORIGINAL);
		if (json_array_append_new(arr, json_string(b64)) < 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* Write one value compactly; -EIO when out fails. */
static int emit(FILE *out, const char *prefix, json_t *v)
{
	int rc = 0;

	if (v == NULL)
		return -ENOMEM;
	if (fputs(prefix, out) == EOF || json_dumpf(v, out, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
		rc = -EIO;
	json_decref(v);
	return rc;
}

/* {"seq", "body", "leaf_index", "inclusion"} of one stored row. */
static json_t *record_json(const struct merkle_tree *t, uint64_t seq, const char *body, size_t len)
{
	uint8_t(*path)[MERKLE_HASH] = NULL;
	size_t n = 0;
	json_t *r;

	if (body == NULL || merkle_tree_inclusion(t, seq - 1, &path, &n) < 0)
		return NULL;
	r = json_pack("{s:I,s:s%,s:I,s:o}", "seq", (json_int_t)seq, "body", body, len, "leaf_index",
		      (json_int_t)(seq - 1), "inclusion",
		      proof_json((const uint8_t(*)[MERKLE_HASH])path, n));
	free(path);
	return r;
}

/* The tenant's newest record before since, or (after) its oldest one
 * after until, up to the checkpoint: they show where the window starts and
 * ends, since the exported records chain from the one and to the other.
 * json null when there is none. */
static int edge_json(sqlite3 *db, const struct merkle_tree *t, const char *tenant,
		     uint64_t size, const char *at, bool after, json_t **out)
{
	sqlite3_stmt *st = NULL;
	int rc = 0, src;

	*out = NULL;
	if (sqlite3_prepare_v2(db,
			       after ? "SELECT seq, body FROM events WHERE tenant = ?1 AND seq <= ?2"
				       " AND time > ?3 ORDER BY time, seq LIMIT 1"
				     : "SELECT seq, body FROM events WHERE tenant = ?1 AND seq <= ?2"
				       " AND time < ?3 ORDER BY time DESC, seq DESC LIMIT 1",
			       -1, &st, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	sqlite3_bind_text(st, 3, at, -1, SQLITE_STATIC);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*out = record_json(t, (uint64_t)sqlite3_column_int64(st, 0),
				   (const char *)sqlite3_column_text(st, 1),
				   (size_t)sqlite3_column_bytes(st, 1));
		if (*out == NULL)
			rc = -ENOMEM;
	} else if (src == SQLITE_DONE) {
		*out = json_null();
	} else {
		rc = -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

static int consistency_json(const struct merkle_tree *t, const struct note_checkpoint *cp,
			    const char *from_note, const struct note_key *key, json_t **out,
			    struct cerr *err)
{
	struct note_checkpoint from;
	struct merkle_tree ft = {0};
	uint8_t(*proof)[MERKLE_HASH] = NULL, root[MERKLE_HASH];
	size_t n = 0;
	struct cerr e2 = {{0}};
	json_t *o;
	int rc;

	rc = note_checkpoint_verify(from_note, key, &from, &e2);
	if (rc < 0)
		return cerr_set(err, -EINVAL, "the earlier checkpoint is not valid: %s", e2.msg);
	if (from.size > cp->size)
		return cerr_set(err, -EINVAL,
				"the earlier checkpoint (size %" PRIu64 ") is newer than the log's "
				"newest (size %" PRIu64 ")", from.size, cp->size);
	/* the customer's root must be this log's root at that size */
	rc = merkle_tree_build((const uint8_t(*)[MERKLE_HASH])t->level[0], from.size, &ft);
	if (rc < 0)
		return cerr_set(err, rc, "out of memory");
	merkle_tree_root(&ft, root);
	merkle_tree_free(&ft);
	if (sodium_memcmp(root, from.root, MERKLE_HASH) != 0)
		return cerr_set(err, -EBADMSG,
				"the earlier checkpoint at size %" PRIu64 " does not match this log",
				from.size);
	if (from.size > 0 && from.size < cp->size) {
		rc = merkle_tree_consistency(t, from.size, &proof, &n);
		if (rc < 0)
			return cerr_set(err, rc, "cannot make a consistency proof");
	}
	o = json_pack("{s:I,s:s,s:o}", "from_size", (json_int_t)from.size, "from_checkpoint",
		      from_note, "proof", proof_json((const uint8_t(*)[MERKLE_HASH])proof, n));
	free(proof);
	if (o == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	*out = o;
	return 0;
}

int audit_export(struct audit *a, const char *tenant, int64_t since_us, int64_t until_us,
		 const char *from_checkpoint, FILE *out, struct cerr *err)
{
	struct note_checkpoint cp;
	struct note_key key, *kp = NULL;
	struct merkle_tree t = {0};
	uint8_t(*leaves)[MERKLE_HASH] = NULL, root[MERKLE_HASH];
	char since[UTIL_TIME_LEN], until[UTIL_TIME_LEN];
	char *note = NULL;
	json_t *cons = NULL, *prev = NULL, *next = NULL;
	sqlite3_stmt *st = NULL;
	uint64_t size = 0;
	int64_t first_ts = 0, last_ts = 0;
	struct cerr e2 = {{0}};
	bool first = true;
	int rc, src;

	if (tenant == NULL || out == NULL ||
	    (since_us && util_time_format(since_us, true, since) < 0) ||
	    (until_us && util_time_format(until_us, true, until) < 0))
		return cerr_set(err, -EINVAL, "export: tenant and a valid time range are required");
	if (a->has_signer) {
		/* cover the newest record: sign now (returns the stored note
		 * when nothing is new) */
		memset(&key, 0, sizeof(key));
		snprintf(key.name, sizeof(key.name), "%s", a->signer.origin);
		memcpy(key.pk, a->signer.public_key, 32);
		note_key_id(key.name, key.pk, key.id);
		kp = &key;
		/* a store that cannot write right now still exports up to its
		 * newest stored checkpoint; with witnesses the export ends at
		 * a witnessed one instead (below) */
		if (a->n_wkeys == 0 && audit_checkpoint(a, &note, &size) < 0)
			note = NULL;
	}
	pthread_mutex_lock(&a->rlock);
	if (a->n_wkeys > 0) {
		/* witnesses configured: end at the newest checkpoint that
		 * already carries the quorum, so the export verifies with
		 * --witness at any moment (cosig.c) */
		rc = audit_cosig_witnessed_db(a, &size, &note);
		if (rc < 0) {
			cerr_set(err, rc, rc == -ENOENT ? "no checkpoint carries the %u witness "
				 "cosignatures audit.witness_quorum asks for yet; see 'custody "
				 "status' for the witnesses and try again once they answered"
							: "cannot read checkpoints", a->wquorum);
			goto out;
		}
	} else if (note != NULL) {
		/* the cosignatures it already has, as extra signature lines */
		rc = audit_cosig_attach(a->rdb, size, &note);
		if (rc < 0) {
			cerr_set(err, rc, "cannot read cosignatures");
			goto out;
		}
	}
	if (note == NULL) {
		rc = audit_newest_checkpoint(a->rdb, &size, &note);
		if (rc == 0)
			rc = audit_cosig_attach(a->rdb, size, &note);
		if (rc < 0) {
			cerr_set(err, rc, rc == -ENOENT ? "the store has no signed checkpoint yet"
							: "cannot read checkpoints");
			goto out;
		}
	}
	rc = note_checkpoint_verify(note, kp, &cp, &e2);
	if (rc == 0 && cp.size != size)
		rc = -EBADMSG;
	if (rc < 0) {
		cerr_set(err, rc, "the newest checkpoint is not valid: %s", e2.msg);
		goto out;
	}
	rc = audit_load_leaves(a->rdb, size, &leaves);
	if (rc == 0)
		rc = merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, size, &t);
	if (rc < 0) {
		cerr_set(err, rc, "cannot read the tree: %s",
			 rc == -EBADMSG ? "records are not numbered 1..n" : strerror(-rc));
		goto out;
	}
	merkle_tree_root(&t, root);
	if (sodium_memcmp(root, cp.root, MERKLE_HASH) != 0) {
		rc = cerr_set(err, -EBADMSG,
			      "the records do not match the checkpoint at size %" PRIu64
			      " (run audit verify)", size);
		goto out;
	}
	if (from_checkpoint != NULL) {
		rc = consistency_json(&t, &cp, from_checkpoint, kp, &cons, err);
		if (rc < 0)
			goto out;
	}

	rc = 0;
	if (since_us)
		rc = edge_json(a->rdb, &t, tenant, size, since, false, &prev);
	if (rc == 0 && until_us)
		rc = edge_json(a->rdb, &t, tenant, size, until, true, &next);
	if (rc < 0) {
		cerr_set(err, rc, "cannot read the records around the window: %s",
			 rc == -EIO ? sqlite3_errmsg(a->rdb) : strerror(-rc));
		goto out;
	}

	/* the origin is the checkpoint's first line (verified against the
	 * signer's name above when there is one) */
	{
		char *o = strndup(note, strcspn(note, "\n"));

		rc = o ? emit(out, "{\"format\":\"custody-audit-export/1\",\"origin\":",
			      json_string(o))
		       : -ENOMEM;
		free(o);
	}
	if (rc == 0)
		rc = emit(out, ",\"tenant\":", json_string(tenant));
	/* the window asked for: a verifier checks every record is inside it
	 * and, without since, that the export starts at the tenant's first */
	if (rc == 0)
		rc = emit(out, ",\"since\":", since_us ? json_string(since) : json_null());
	if (rc == 0)
		rc = emit(out, ",\"until\":", until_us ? json_string(until) : json_null());
	if (rc == 0)
		rc = emit(out, ",\"checkpoint\":", json_string(note));
	if (rc == 0)
		rc = emit(out, ",\"tree_size\":", json_integer((json_int_t)size));
	if (rc == 0) {
		rc = emit(out, ",\"previous\":", prev ? prev : json_null());
		prev = NULL;
	}
	if (rc == 0 && fputs(",\"records\":[", out) == EOF)
		rc = -EIO;
	if (rc < 0) {
		cerr_set(err, rc, "cannot write the export");
		goto out;
	}
	{
		char sql[256];

		snprintf(sql, sizeof(sql),
			 "SELECT seq, body, json_extract(body, '$.tenant_seq') FROM events"
			 " WHERE tenant = ?1 AND seq <= ?2%s%s ORDER BY seq",
			 since_us ? " AND time >= ?3" : "", until_us ? " AND time <= ?4" : "");
		if (sqlite3_prepare_v2(a->rdb, sql, -1, &st, NULL) != SQLITE_OK) {
			rc = cerr_set(err, -EIO, "cannot read records: %s", sqlite3_errmsg(a->rdb));
			goto out;
		}
	}
	sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	if (since_us)
		sqlite3_bind_text(st, 3, since, -1, SQLITE_STATIC);
	if (until_us)
		sqlite3_bind_text(st, 4, until, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		json_t *r;

		r = record_json(&t, seq, (const char *)sqlite3_column_text(st, 1),
				(size_t)sqlite3_column_bytes(st, 1));
		if (r == NULL) {
			rc = cerr_set(err, -ENOMEM, "cannot prove record %" PRIu64, seq);
			goto out;
		}
		if (first)
			first_ts = sqlite3_column_int64(st, 2);
		last_ts = sqlite3_column_int64(st, 2);
		rc = emit(out, first ? "" : ",", r);
		if (rc < 0) {
			cerr_set(err, rc, "cannot write the export");
			goto out;
		}
		first = false;
	}
	if (src != SQLITE_DONE) {
		rc = cerr_set(err, -EIO, "cannot read records: %s", sqlite3_errmsg(a->rdb));
		goto out;
	}
	rc = fputs("]", out) == EOF ? -EIO : 0;
	if (rc == 0)
		rc = emit(out, ",\"first_tenant_seq\":",
			  first ? json_null() : json_integer((json_int_t)first_ts));
	if (rc == 0)
		rc = emit(out, ",\"last_tenant_seq\":",
			  first ? json_null() : json_integer((json_int_t)last_ts));
	if (rc == 0) {
		rc = emit(out, ",\"next\":", next ? next : json_null());
		next = NULL;
	}
	if (rc == 0)
		rc = emit(out, ",\"consistency\":", cons ? cons : json_null());
	cons = NULL;
	if (rc == 0 && (fputs("}\n", out) == EOF || fflush(out) == EOF))
		rc = -EIO;
	if (rc < 0)
		cerr_set(err, rc, "cannot write the export");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->rlock);
	json_decref(cons);
	json_decref(prev);
	json_decref(next);
	merkle_tree_free(&t);
	free(leaves);
	free(note);
	return rc;
}

/* state.c — the witness's key and its record of each log (witness.db),
 * and the add-checkpoint rule applied to that record.
 *
 * Threads: one SQLite connection under w->lock; libmicrohttpd calls
 * witness_add_checkpoint from its threads, each call holds the lock for
 * the check-and-update transaction, so checks and writes are atomic. */
#include "witness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "audit.h"

struct witness {
	char *dir;
	char name[AUDIT_KEY_NAME_MAX];
	uint8_t *sk;                 /* sodium_malloc'd, 64 bytes */
	uint8_t pk[32];
	sqlite3 *db;
	pthread_mutex_t lock;
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS logs(origin TEXT PRIMARY KEY, vkey TEXT NOT NULL,"
	" size INTEGER NOT NULL DEFAULT 0, root BLOB, note TEXT, cosigned_at INTEGER);";

static int db_open(const char *dir, bool create, sqlite3 **out, struct cerr *err)
{
	char *path = util_path_join(dir, "witness.db");
	sqlite3 *db = NULL;
	int src;

	if (path == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	src = sqlite3_open_v2(path, &db,
			      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
				      (create ? SQLITE_OPEN_CREATE : 0),
			      NULL);
	if (src != SQLITE_OK) {
		cerr_set(err, src == SQLITE_CANTOPEN ? -ENOENT : -EIO,
			 "cannot open %s: %s; run 'custody witness init --state %s' first", path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(src), dir);
		sqlite3_close(db);
		free(path);
		return src == SQLITE_CANTOPEN ? -ENOENT : -EIO;
	}
	free(path);
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA synchronous=FULL;", NULL, NULL, NULL) != SQLITE_OK) {
		cerr_set(err, -EIO, "cannot prepare the witness database in %s: %s", dir,
			 sqlite3_errmsg(db));
		sqlite3_close(db);
		return -EIO;
	}
	*out = db;
	return 0;
}

static int meta_get(sqlite3 *db, const char *key, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	int rc = -ENOENT;

	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL) {
		snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc;
}

int witness_create(const char *dir, const char *name, char **vkey, struct cerr *err)
{
	uint8_t seed[32], pk[32], sk[64];
	char *keypath = NULL, *v = NULL, *sql = NULL;
	sqlite3 *db = NULL;
	struct stat sb;
	int rc;

	rc = audit_vkey_format_type(name, AUDIT_SIG_TYPE_COSIG_V1, (const uint8_t[32]){0}, &v);
	free(v);
	v = NULL;
	if (rc < 0)
		return cerr_set(err, -EINVAL,
				"witness name '%s': use a schema-less URL without spaces or '+' "
				"(like witness.example.com/w1)", name);
	keypath = util_path_join(dir, "witness.key");
	if (keypath == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	if (stat(keypath, &sb) == 0) {
		rc = cerr_set(err, -EEXIST, "%s already holds a witness; its key is %s", dir,
			      keypath);
		goto out;
	}
	rc = util_mkdir_p(dir, 0700);
	if (rc < 0) {
		cerr_set(err, rc, "cannot create %s: %s", dir, strerror(-rc));
		goto out;
	}
	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	rc = util_write_file(keypath, seed, sizeof(seed), 0600);
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	if (rc < 0) {
		cerr_set(err, rc, "cannot write %s: %s", keypath, strerror(-rc));
		goto out;
	}
	rc = db_open(dir, true, &db, err);
	if (rc < 0)
		goto out;
	{
		char hex[65];

		util_hex(pk, 32, hex);
		sql = sqlite3_mprintf("INSERT OR REPLACE INTO meta(key, value) VALUES ('name', %Q),"
				      " ('public_key', %Q);", name, hex);
	}
	if (sql == NULL || sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		rc = cerr_set(err, -EIO, "cannot write the witness database: %s",
			      sqlite3_errmsg(db));
		goto out;
	}
	rc = audit_vkey_format_type(name, AUDIT_SIG_TYPE_COSIG_V1, pk, vkey);
	if (rc < 0)
		cerr_set(err, rc, "out of memory");
out:
	sqlite3_free(sql);
	sqlite3_close(db);
	free(keypath);
	return rc;
}

int witness_open(const char *dir, struct witness **out, struct cerr *err)
{
	struct witness *w = calloc(1, sizeof(*w));
	char *keypath = NULL, *seed = NULL, hex[80];
	size_t len = 0;
	uint8_t pk[32];
	int rc;

	if (w == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&w->lock, NULL);
	w->dir = strdup(dir);
	keypath = util_path_join(dir, "witness.key");
	w->sk = sodium_malloc(64);
	if (w->dir == NULL || keypath == NULL || w->sk == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	rc = util_read_file(keypath, 64, &seed, &len);
	if (rc < 0 || len != 32) {
		rc = cerr_set(err, rc < 0 ? rc : -EINVAL,
			      "cannot read the witness key %s%s; run 'custody witness init --state "
			      "%s --name NAME' first", keypath, rc < 0 ? "" : " (not 32 bytes)", dir);
		goto fail;
	}
	crypto_sign_seed_keypair(w->pk, w->sk, (const uint8_t *)seed);
	sodium_memzero(seed, len);
	rc = db_open(dir, false, &w->db, err);
	if (rc < 0)
		goto fail;
	if (meta_get(w->db, "name", w->name, sizeof(w->name)) < 0 ||
	    meta_get(w->db, "public_key", hex, sizeof(hex)) < 0 ||
	    sodium_hex2bin(pk, 32, hex, strlen(hex), NULL, NULL, NULL) != 0 ||
	    sodium_memcmp(pk, w->pk, 32) != 0) {
		rc = cerr_set(err, -EINVAL, "%s: the key file does not match the witness database",
			      dir);
		goto fail;
	}
	free(seed);
	free(keypath);
	*out = w;
	return 0;
fail:
	free(seed);
	free(keypath);
	witness_close(w);
	return rc;
}

void witness_close(struct witness *w)
{
	if (w == NULL)
		return;
	sqlite3_close(w->db);
	sodium_free(w->sk);
	pthread_mutex_destroy(&w->lock);
	free(w->dir);
	free(w);
}

const char *witness_name(const struct witness *w)
{
	return w->name;
}

int witness_vkey(struct witness *w, char **out)
{
	return audit_vkey_format_type(w->name, AUDIT_SIG_TYPE_COSIG_V1, w->pk, out);
}

int witness_add_log(struct witness *w, const char *log_vkey, const char *origin, struct cerr *err)
{
	struct audit_vkey k;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = audit_vkey_parse(log_vkey, AUDIT_SIG_TYPE_ED25519, &k, err);
	if (rc < 0)
		return rc;
	if (origin == NULL)
		origin = k.name;
	if (*origin == '\0' || strchr(origin, '\n') != NULL || strlen(origin) >= AUDIT_KEY_NAME_MAX)
		return cerr_set(err, -EINVAL, "bad origin");
	pthread_mutex_lock(&w->lock);
	rc = sqlite3_prepare_v2(w->db, "SELECT vkey FROM logs WHERE origin = ?1", -1, &st, NULL) ==
			     SQLITE_OK ? 0 : -EIO;
	if (rc == 0) {
		sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			const char *have = (const char *)sqlite3_column_text(st, 0);

			rc = have && strcmp(have, log_vkey) == 0
				     ? 1
				     : cerr_set(err, -EEXIST,
						"the witness already follows %s with another key",
						origin);
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (rc == 0) {
		if (sqlite3_prepare_v2(w->db, "INSERT INTO logs(origin, vkey) VALUES (?1, ?2)", -1,
				       &st, NULL) != SQLITE_OK)
			rc = -EIO;
		else {
			sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, log_vkey, -1, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				rc = -EIO;
		}
		if (rc < 0)
			cerr_set(err, rc, "cannot add the log: %s", sqlite3_errmsg(w->db));
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&w->lock);
	return rc > 0 ? 0 : rc;
}

int witness_status(struct witness *w, json_t **out, struct cerr *err)
{
	sqlite3_stmt *st = NULL;
	json_t *logs = json_array(), *o = NULL;
	char *vkey = NULL;
	int src;

	if (logs == NULL || witness_vkey(w, &vkey) < 0) {
		json_decref(logs);
		return cerr_set(err, -ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&w->lock);
	if (sqlite3_prepare_v2(w->db,
			       "SELECT origin, vkey, size, root, cosigned_at FROM logs ORDER BY origin",
			       -1, &st, NULL) != SQLITE_OK) {
		pthread_mutex_unlock(&w->lock);
		json_decref(logs);
		free(vkey);
		return cerr_set(err, -EIO, "cannot read the witness database");
	}
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		char b64[64] = "";
		json_t *l;

		if (sqlite3_column_bytes(st, 3) == 32)
			sodium_bin2base64(b64, sizeof(b64), sqlite3_column_blob(st, 3), 32,
					  sodium_base64_VARIANT_ORIGINAL);
		l = json_pack("{s:s,s:s,s:I,s:s?,s:o}", "origin", sqlite3_column_text(st, 0), "key",
			      sqlite3_column_text(st, 1), "size",
			      (json_int_t)sqlite3_column_int64(st, 2), "root", b64[0] ? b64 : NULL,
			      "cosigned_at",
			      sqlite3_column_type(st, 4) == SQLITE_NULL
				      ? json_null()
				      : json_integer(sqlite3_column_int64(st, 4)));
		json_array_append_new(logs, l);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&w->lock);
	o = json_pack("{s:s,s:s,s:o}", "name", w->name, "vkey", vkey, "logs", logs);
	free(vkey);
	if (o == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	*out = o;
	return src == SQLITE_DONE ? 0 : -EIO;
}

/* ---- add-checkpoint ------------------------------------------------------- */

static int reply(struct witness_reply *r, unsigned status, const char *ctype, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int reply(struct witness_reply *r, unsigned status, const char *ctype, const char *fmt, ...)
{
	va_list ap;
	int n;

	r->status = status;
	r->content_type = ctype;
	va_start(ap, fmt);
	n = vasprintf(&r->body, fmt, ap);
	va_end(ap);
	if (n < 0) {
		r->body = NULL;
		r->len = 0;
		return -ENOMEM;
	}
	r->len = (size_t)n;
	return 0;
}

int witness_add_checkpoint(struct witness *w, const char *body, size_t len, int64_t now_s,
			   struct witness_reply *r)
{
	struct witness_request *req = NULL;
	struct audit_note *n = NULL;
	struct audit_vkey lk;
	struct cerr e = {{0}};
	sqlite3_stmt *st = NULL;
	uint64_t have_size = 0;
	uint8_t have_root[32];
	bool have_root_ok = false, in_tx = false;
	char *line = NULL;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	req = malloc(sizeof(*req));
	n = malloc(sizeof(*n));
	if (req == NULL || n == NULL) {
		rc = reply(r, 500, "text/plain", "out of memory\n");
		goto out;
	}
	if (witness_request_parse(body, len, req, &e) < 0 ||
	    audit_note_parse(req->note, req->note_len, n, &e) < 0) {
		snprintf(r->log, sizeof(r->log), "400 malformed request: %s", e.msg);
		rc = reply(r, 400, "text/plain", "malformed request: %s\n", e.msg);
		goto out;
	}
	pthread_mutex_lock(&w->lock);
	/* the log, its key and what we cosigned last, read and updated in one
	 * write transaction: the compare-and-swap on the old size */
	if (sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto dberr;
	in_tx = true;
	if (sqlite3_prepare_v2(w->db, "SELECT vkey, size, root FROM logs WHERE origin = ?1", -1,
			       &st, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(st, 1, n->origin, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		snprintf(r->log, sizeof(r->log), "404 unknown log %.160s", n->origin);
		rc = reply(r, 404, "text/plain", "unknown log origin\n");
		goto unlock;
	}
	if (audit_vkey_parse((const char *)sqlite3_column_text(st, 0), AUDIT_SIG_TYPE_ED25519, &lk,
			     NULL) < 0)
		goto dberr;
	have_size = (uint64_t)sqlite3_column_int64(st, 1);
	if (sqlite3_column_bytes(st, 2) == 32) {
		memcpy(have_root, sqlite3_column_blob(st, 2), 32);
		have_root_ok = true;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (audit_note_verify_sig(n, &lk, NULL, NULL) != 0) {
		snprintf(r->log, sizeof(r->log), "403 %.160s: no valid signature by the log's key",
			 n->origin);
		rc = reply(r, 403, "text/plain", "no signature by a known key of the log\n");
		goto unlock;
	}
	if (req->old > n->size) {
		snprintf(r->log, sizeof(r->log), "400 %.160s: old size %" PRIu64
			 " is larger than the checkpoint's %" PRIu64, n->origin, req->old, n->size);
		rc = reply(r, 400, "text/plain", "old size is larger than the checkpoint size\n");
		goto unlock;
	}
	if (req->old != have_size) {
		snprintf(r->log, sizeof(r->log), "409 %.160s: old size %" PRIu64
			 ", the witness has %" PRIu64, n->origin, req->old, have_size);
		rc = reply(r, 409, "text/x.tlog.size", "%" PRIu64 "\n", have_size);
		goto unlock;
	}
	if (req->old == 0 && req->nproof != 0) {
		snprintf(r->log, sizeof(r->log), "400 %.160s: a proof from size 0", n->origin);
		rc = reply(r, 400, "text/plain", "the proof must be empty when old is 0\n");
		goto unlock;
	}
	if (req->old == n->size) {
		/* same size: same root, or the log forked */
		if (have_size > 0 && (!have_root_ok || sodium_memcmp(have_root, n->root, 32) != 0)) {
			snprintf(r->log, sizeof(r->log),
				 "409 %.160s: size %" PRIu64 " with another root than cosigned",
				 n->origin, n->size);
			rc = reply(r, 409, "text/x.tlog.size", "%" PRIu64 "\n", have_size);
			goto unlock;
		}
		if (req->nproof != 0) {
			snprintf(r->log, sizeof(r->log), "422 %.160s: proof for equal sizes",
				 n->origin);
			rc = reply(r, 422, "text/plain", "consistency proof does not verify\n");
			goto unlock;
		}
	} else if (req->old > 0 &&
		   (!have_root_ok ||
		    !audit_consistency_ok(req->old, n->size, have_root, n->root,
					  (const uint8_t(*)[32])req->proof, req->nproof))) {
		snprintf(r->log, sizeof(r->log),
			 "422 %.160s: consistency proof %" PRIu64 " -> %" PRIu64 " does not verify",
			 n->origin, req->old, n->size);
		rc = reply(r, 422, "text/plain", "consistency proof does not verify\n");
		goto unlock;
	}
	/* compare-and-swap and persist before answering */
	if (sqlite3_prepare_v2(w->db,
			       "UPDATE logs SET size = ?1, root = ?2, note = ?3, cosigned_at = ?4"
			       " WHERE origin = ?5 AND size = ?6", -1, &st, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)n->size);
	sqlite3_bind_blob(st, 2, n->root, 32, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, req->note, (int)req->note_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_s);
	sqlite3_bind_text(st, 5, n->origin, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)have_size);
	if (sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(w->db) != 1)
		goto dberr;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto dberr;
	in_tx = false;
	if (audit_cosig_sign(w->name, w->sk, req->note, n->body_len, (uint64_t)now_s, &line) < 0) {
		rc = reply(r, 500, "text/plain", "cannot sign\n");
		goto unlock;
	}
	snprintf(r->log, sizeof(r->log), "200 %.160s: cosigned size %" PRIu64 " (old %" PRIu64 ")",
		 n->origin, n->size, req->old);
	rc = reply(r, 200, "text/plain; charset=utf-8", "%s", line);
	goto unlock;
dberr:
	snprintf(r->log, sizeof(r->log), "500 witness database: %.160s", sqlite3_errmsg(w->db));
	rc = reply(r, 500, "text/plain", "witness database error\n");
unlock:
	sqlite3_finalize(st);
	if (in_tx)
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&w->lock);
out:
	free(line);
	free(req);
	free(n);
	return rc;
}

/* cosig.c — C2SP signed notes and witness cosignatures (tlog-checkpoint,
 * signed-note, tlog-cosignature "cosignature/v1"): parsing, signing and
 * verifying, and keeping cosignatures beside their checkpoints in the
 * audit database (table `cosignatures`, created on first use; the events
 * and checkpoints tables are untouched).
 *
 * Threads: the parsing and signing functions are pure. The store
 * functions open their own SQLite connection per call (cosignatures are
 * rare: one per witness per checkpoint), so they never touch the writer's
 * or the reader's connection; they may wait for SQLite's write lock, so
 * the broker calls them off its event loop.
 */
#include "audit_int.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define EM_DASH "\xe2\x80\x94"
#define COSIG_RAW (4 + 8 + 64)
#define LOGSIG_RAW (4 + 64)
#define FUTURE_SKEW_S 60

static const char cosig_table_sql[] =
	"CREATE TABLE IF NOT EXISTS cosignatures("
	" size INTEGER NOT NULL, witness TEXT NOT NULL, key_id TEXT NOT NULL,"
	" time INTEGER NOT NULL, line TEXT NOT NULL, received TEXT NOT NULL,"
	" PRIMARY KEY (size, witness, key_id));";

static void key_id(const char *name, uint8_t type, const uint8_t pk[static 32], uint8_t id[static 4])
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];
	uint8_t sep[2] = {0x0a, type};

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
	crypto_hash_sha256_update(&st, sep, sizeof(sep));
	crypto_hash_sha256_update(&st, pk, 32);
	crypto_hash_sha256_final(&st, h);
	memcpy(id, h, 4);
}

/* signed-note key names: non-empty, no spaces, no '+', printable ASCII
 * (stricter than the spec's "no Unicode spaces": every name we meet is a
 * schema-less URL) */
static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= AUDIT_KEY_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '+')
			return false;
	return true;
}

static int b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *got)
{
	const char *end = NULL;

	if (len == 0 || sodium_base642bin(out, cap, s, len, NULL, got, &end,
					  sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != s + len)
		return -EINVAL;
	return 0;
}

int audit_vkey_parse(const char *vkey, uint8_t type, struct audit_vkey *k, struct cerr *err)
{
	struct audit_vkey nk;
	const char *p1, *p2;
	uint8_t raw[34], id[4];
	size_t nlen, got = 0;

	memset(&nk, 0, sizeof(nk));
	if (vkey == NULL)
		return cerr_set(err, -EINVAL, "no verifier key given");
	p1 = strchr(vkey, '+');
	p2 = p1 ? strchr(p1 + 1, '+') : NULL;
	if (p1 == NULL || p2 == NULL)
		return cerr_set(err, -EINVAL,
				"verifier key: expected <name>+<hex key id>+<base64 key>");
	nlen = (size_t)(p1 - vkey);
	if (!name_ok(vkey, nlen))
		return cerr_set(err, -EINVAL, "verifier key: bad key name");
	memcpy(nk.name, vkey, nlen);
	if (p2 - p1 - 1 != 8 || sodium_hex2bin(nk.id, 4, p1 + 1, 8, NULL, NULL, NULL) != 0)
		return cerr_set(err, -EINVAL, "verifier key: key id is not 8 hex digits");
	if (b64_decode(p2 + 1, strlen(p2 + 1), raw, sizeof(raw), &got) < 0 || got != 33)
		return cerr_set(err, -EINVAL,
				"verifier key: key is not base64 of a type byte and a 32-byte key");
	if (raw[0] != AUDIT_SIG_TYPE_ED25519 && raw[0] != AUDIT_SIG_TYPE_COSIG_V1)
		return cerr_set(err, -EINVAL,
				"verifier key: signature type 0x%02x is not supported (0x01 "
				"Ed25519 or 0x04 cosignature/v1)", raw[0]);
	if (type != 0 && raw[0] != type)
		return cerr_set(err, -EINVAL,
				"verifier key: type 0x%02x, expected 0x%02x (%s)", raw[0], type,
				type == AUDIT_SIG_TYPE_COSIG_V1 ? "a witness key" : "a log key");
	nk.type = raw[0];
	memcpy(nk.pk, raw + 1, 32);
	key_id(nk.name, nk.type, nk.pk, id);
	if (memcmp(id, nk.id, 4) != 0)
		return cerr_set(err, -EINVAL, "verifier key: key id does not match name and key");
	*k = nk;
	return 0;
}

int audit_vkey_format_type(const char *name, uint8_t type, const uint8_t pk[static 32], char **out)
{
	char b64[sodium_base64_ENCODED_LEN(33, sodium_base64_VARIANT_ORIGINAL)];
	uint8_t raw[33], id[4];
	char *s = NULL;

	if (name == NULL || !name_ok(name, strlen(name)))
		return -EINVAL;
	key_id(name, type, pk, id);
	raw[0] = type;
	memcpy(raw + 1, pk, 32);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	if (asprintf(&s, "%s+%02x%02x%02x%02x+%s", name, id[0], id[1], id[2], id[3], b64) < 0)
		return -ENOMEM;
	*out = s;
	return 0;
}

int audit_note_parse(const char *text, size_t len, struct audit_note *n, struct cerr *err)
{
	const char *p, *end, *eol, *sep;
	uint8_t tmp[4096];
	size_t got;
	int line;

	if (text == NULL || len == 0)
		return cerr_set(err, -EBADMSG, "empty checkpoint");
	if (len > AUDIT_NOTE_MAX)
		return cerr_set(err, -EBADMSG, "checkpoint longer than %d bytes", AUDIT_NOTE_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)text[i] < 0x20 && text[i] != '\n')
			return cerr_set(err, -EBADMSG, "control character in checkpoint");
	if (!util_utf8_valid(text, len))
		return cerr_set(err, -EBADMSG, "checkpoint is not UTF-8");
	if (text[len - 1] != '\n')
		return cerr_set(err, -EBADMSG, "checkpoint does not end with a newline");
	sep = memmem(text, len, "\n\n", 2);
	if (sep == NULL)
		return cerr_set(err, -EBADMSG, "checkpoint has no signature block");
	memset(n, 0, offsetof(struct audit_note, sig));
	n->text = text;
	n->len = len;
	n->body_len = (size_t)(sep - text) + 1;
	/* body: origin, size, root, then any extension lines */
	p = text;
	end = text + n->body_len;
	for (line = 0; p < end; line++, p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (line == 0) {
			if (eol == p || (size_t)(eol - p) >= AUDIT_KEY_NAME_MAX)
				return cerr_set(err, -EBADMSG, "checkpoint origin line is malformed");
			memcpy(n->origin, p, (size_t)(eol - p));
		} else if (line == 1) {
			if (util_parse_dec(p, (size_t)(eol - p), &n->size) < 0)
				return cerr_set(err, -EBADMSG, "checkpoint size line is malformed");
		} else if (line == 2) {
			if (b64_decode(p, (size_t)(eol - p), tmp, sizeof(tmp), &got) < 0 ||
			    got != 32)
				return cerr_set(err, -EBADMSG, "checkpoint root line is malformed");
			memcpy(n->root, tmp, 32);
		}
		/* extension lines are part of the signed body, nothing more */
	}
	if (line < 3)
		return cerr_set(err, -EBADMSG, "checkpoint body has fewer than three lines");
	/* signature lines */
	p = sep + 2;
	if (p >= text + len)
		return cerr_set(err, -EBADMSG, "checkpoint has no signature");
	for (; p < text + len; p = eol + 1) {
		struct audit_note_sig *s;
		const char *name, *sp;

		eol = memchr(p, '\n', (size_t)(text + len - p));
		if (n->nsigs == AUDIT_NOTE_SIGS_MAX)
			return cerr_set(err, -EBADMSG, "checkpoint has more than %d signatures",
					AUDIT_NOTE_SIGS_MAX);
		if ((size_t)(eol - p) < 4 || memcmp(p, EM_DASH " ", 4) != 0)
			return cerr_set(err, -EBADMSG,
					"checkpoint signature line %zu does not start with '— '",
					n->nsigs + 1);
		name = p + 4;
		sp = memchr(name, ' ', (size_t)(eol - name));
		if (sp == NULL || !name_ok(name, (size_t)(sp - name)))
			return cerr_set(err, -EBADMSG,
					"checkpoint signature line %zu has a bad key name",
					n->nsigs + 1);
		if (b64_decode(sp + 1, (size_t)(eol - sp - 1), tmp, sizeof(tmp), &got) < 0 || got < 5)
			return cerr_set(err, -EBADMSG,
					"checkpoint signature line %zu is not base64 of a key id "
					"and a signature", n->nsigs + 1);
		s = &n->sig[n->nsigs++];
		s->line = p;
		s->line_len = (size_t)(eol - p);
		s->name = name;
		s->name_len = (size_t)(sp - name);
		s->raw_len = got;
		memcpy(s->raw, tmp, got < sizeof(s->raw) ? got : sizeof(s->raw));
	}
	return 0;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* "cosignature/v1\ntime <t>\n" + body, malloc'd */
static int cosig_message(const char *body, size_t body_len, uint64_t t, uint8_t **msg,
			 size_t *len)
{
	char hdr[64];
	int h = snprintf(hdr, sizeof(hdr), "cosignature/v1\ntime %" PRIu64 "\n", t);
	uint8_t *m = malloc((size_t)h + body_len);

	if (m == NULL)
		return -ENOMEM;
	memcpy(m, hdr, (size_t)h);
	memcpy(m + h, body, body_len);
	*msg = m;
	*len = (size_t)h + body_len;
	return 0;
}

int audit_note_verify_sig(const struct audit_note *n, const struct audit_vkey *k, uint64_t *time,
			  struct cerr *err)
{
	size_t ix;

	return audit_note_find_sig(n, k, time, &ix, err);
}

int audit_note_find_sig(const struct audit_note *n, const struct audit_vkey *k, uint64_t *time,
			size_t *index, struct cerr *err)
{
	size_t nlen = strlen(k->name);
	bool seen = false;

	for (size_t i = 0; i < n->nsigs; i++) {
		const struct audit_note_sig *s = &n->sig[i];
		uint8_t *msg = NULL;
		size_t mlen = 0;
		uint64_t t;
		int ok;

		if (s->name_len != nlen || memcmp(s->name, k->name, nlen) != 0 ||
		    memcmp(s->raw, k->id, 4) != 0)
			continue;
		seen = true;
		if (k->type == AUDIT_SIG_TYPE_ED25519) {
			if (s->raw_len != LOGSIG_RAW)
				continue;
			if (crypto_sign_verify_detached(s->raw + 4, (const uint8_t *)n->text,
							n->body_len, k->pk) == 0) {
				*index = i;
				return 0;
			}
			continue;
		}
		if (s->raw_len != COSIG_RAW)
			continue;
		t = be64(s->raw + 4);
		if (t > INT64_MAX)
			continue;
		if (cosig_message(n->text, n->body_len, t, &msg, &mlen) < 0)
			return cerr_set(err, -ENOMEM, "out of memory");
		ok = crypto_sign_verify_detached(s->raw + 12, msg, mlen, k->pk) == 0;
		free(msg);
		if (ok) {
			if (time != NULL)
				*time = t;
			*index = i;
			return 0;
		}
	}
	if (!seen)
		return cerr_set(err, -ENOENT, "no signature by %s", k->name);
	return cerr_set(err, -EBADMSG, "the signature by %s does not verify", k->name);
}

int audit_cosig_sign(const char *name, const uint8_t sk[static 64], const char *body,
		     size_t body_len, uint64_t t, char **line)
{
	char b64[sodium_base64_ENCODED_LEN(COSIG_RAW, sodium_base64_VARIANT_ORIGINAL)];
	uint8_t raw[COSIG_RAW], *msg = NULL;
	size_t mlen = 0;
	char *s = NULL;
	int rc;

	if (name == NULL || !name_ok(name, strlen(name)) || t > INT64_MAX)
		return -EINVAL;
	key_id(name, AUDIT_SIG_TYPE_COSIG_V1, sk + 32, raw);
	for (int i = 0; i < 8; i++)
		raw[4 + i] = (uint8_t)(t >> (56 - 8 * i));
	rc = cosig_message(body, body_len, t, &msg, &mlen);
	if (rc < 0)
		return rc;
	crypto_sign_detached(raw + 12, NULL, msg, mlen, sk);
	free(msg);
	sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
	if (asprintf(&s, EM_DASH " %s %s\n", name, b64) < 0)
		return -ENOMEM;
	*line = s;
	return 0;
}

int audit_witness_check_note(const char *note, const struct audit_vkey *keys, size_t n,
			     int64_t now_s, struct audit_witness_check *out, struct cerr *err)
{
	struct audit_note *pn;
	int rc;

	if (n > AUDIT_WITNESS_MAX)
		return cerr_set(err, -EINVAL, "more than %d witness keys", AUDIT_WITNESS_MAX);
	pn = malloc(sizeof(*pn));
	if (pn == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	rc = audit_note_parse(note, note ? strlen(note) : 0, pn, err);
	if (rc < 0)
		goto out;
	memset(out, 0, sizeof(*out));
	out->size = pn->size;
	for (size_t i = 0; i < n; i++) {
		uint64_t t = 0;

		out->w[i].rc = audit_note_verify_sig(pn, &keys[i], &t, NULL);
		out->w[i].time = t;
		if (out->w[i].rc == 0 && t > (uint64_t)now_s + FUTURE_SKEW_S)
			out->w[i].rc = -ERANGE;
		if (out->w[i].rc == 0)
			out->valid++;
	}
out:
	free(pn);
	return rc;
}

void audit_witness_check_describe(const struct audit_witness_check *c,
				  const struct audit_vkey *keys, size_t n, char *buf, size_t cap)
{
	size_t off = 0;

	if (cap == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < n && off < cap; i++) {
		const char *why = c->w[i].rc == -ENOENT   ? "no cosignature"
				  : c->w[i].rc == -EBADMSG ? "cosignature does not verify"
				  : c->w[i].rc == -ERANGE  ? "cosignature timestamp is in the future"
							   : NULL;
		int w;

		if (why == NULL)
			continue;
		w = snprintf(buf + off, cap - off, "%s%s: %s", off ? "; " : "", keys[i].name, why);
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

/* ---- the store ------------------------------------------------------------ */

static int open_rw(struct audit *a, sqlite3 **db, struct cerr *err)
{
	int rc;

	if (a->read_only)
		return cerr_set(err, -EROFS, "the audit store is open read-only");
	rc = audit_db_open(a->path, false, false, db, err);
	if (rc < 0)
		return rc;
	rc = audit_exec(*db, "PRAGMA synchronous=FULL;");
	if (rc == 0)
		rc = audit_exec(*db, cosig_table_sql);
	if (rc < 0) {
		cerr_set(err, rc, "cannot prepare the cosignatures table: %s", sqlite3_errmsg(*db));
		sqlite3_close(*db);
		*db = NULL;
	}
	return rc;
}

static bool has_cosig_table(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	bool yes;

	if (sqlite3_prepare_v2(db,
			       "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
			       "'cosignatures'", -1, &st, NULL) != SQLITE_OK)
		return false;
	yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

static int cp_note(sqlite3 *db, uint64_t size, char **note)
{
	sqlite3_stmt *st = NULL;
	int rc, src;

	rc = audit_sqlite_rc(sqlite3_prepare_v2(db, "SELECT note FROM checkpoints WHERE size = ?1",
						-1, &st, NULL));
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*note = strdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0)
							  : "");
		rc = *note ? 0 : -ENOMEM;
	} else {
		rc = src == SQLITE_DONE ? -ENOENT : -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

/* note + every stored cosignature line for size (in witness order) */
static int note_with_cosigs(sqlite3 *db, uint64_t size, char **out)
{
	sqlite3_stmt *st = NULL;
	char *note = NULL, *buf = NULL;
	size_t len, cap;
	int rc, src;

	rc = cp_note(db, size, &note);
	if (rc < 0)
		return rc;
	if (!has_cosig_table(db)) {
		*out = note;
		return 0;
	}
	len = strlen(note);
	cap = len + 1;
	buf = note;
	note = NULL;
	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		db, "SELECT line FROM cosignatures WHERE size = ?1 ORDER BY witness, key_id", -1, &st,
		NULL));
	if (rc < 0)
		goto out;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *l = (const char *)sqlite3_column_text(st, 0);
		size_t ll = l ? strlen(l) : 0;
		char *nb;

		if (ll == 0)
			continue;
		if (len + ll + 2 > cap) {
			cap = (len + ll + 2) * 2;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		memcpy(buf + len, l, ll);
		len += ll;
		if (l[ll - 1] != '\n')
			buf[len++] = '\n';
		buf[len] = '\0';
	}
	if (src != SQLITE_DONE)
		rc = -EIO;
out:
	sqlite3_finalize(st);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

int audit_cosig_store(struct audit *a, uint64_t size, const struct audit_vkey *k, const char *line,
		      size_t line_len, struct cerr *err)
{
	struct audit_note *pn = NULL;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char *note = NULL, *joined = NULL, kid[9], now[UTIL_TIME_LEN];
	uint64_t t = 0;
	size_t nl;
	int rc;

	while (line_len > 0 && line[line_len - 1] == '\n')
		line_len--;
	if (k->type != AUDIT_SIG_TYPE_COSIG_V1)
		return cerr_set(err, -EINVAL, "%s is not a witness key", k->name);
	rc = open_rw(a, &db, err);
	if (rc < 0)
		return rc;
	rc = cp_note(db, size, &note);
	if (rc < 0) {
		cerr_set(err, rc, "no stored checkpoint at size %" PRIu64, size);
		goto out;
	}
	/* verify again over exactly the stored checkpoint: never store a
	 * line that does not sign it */
	nl = strlen(note);
	joined = malloc(nl + line_len + 2);
	pn = malloc(sizeof(*pn));
	if (joined == NULL || pn == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	memcpy(joined, note, nl);
	memcpy(joined + nl, line, line_len);
	joined[nl + line_len] = '\n';
	joined[nl + line_len + 1] = '\0';
	rc = audit_note_parse(joined, nl + line_len + 1, pn, err);
	if (rc == 0)
		rc = audit_note_verify_sig(pn, k, &t, err);
	if (rc < 0) {
		rc = -EBADMSG;
		goto out;
	}
	util_hex(k->id, 4, kid);
	if (util_time_format(util_now_us(), true, now) < 0) {
		rc = cerr_set(err, -EINVAL, "clock out of range");
		goto out;
	}
	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		db,
		"INSERT OR IGNORE INTO cosignatures(size, witness, key_id, time, line, received)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &st, NULL));
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, (sqlite3_int64)size);
		sqlite3_bind_text(st, 2, k->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, kid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)t);
		sqlite3_bind_text(st, 5, line, (int)line_len, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, now, -1, SQLITE_STATIC);
		rc = audit_sqlite_rc(sqlite3_step(st));
	}
	if (rc < 0)
		cerr_set(err, rc, "cannot store the cosignature: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(pn);
	free(joined);
	free(note);
	return rc;
}

/* Reads share the store's read connection (its lock), like exports. */
int audit_checkpoint_cosigned(struct audit *a, uint64_t size, char **note)
{
	int rc;

	pthread_mutex_lock(&a->rlock);
	rc = note_with_cosigs(a->rdb, size, note);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

int audit_cosig_last_size(struct audit *a, const struct audit_vkey *k, uint64_t *size)
{
	sqlite3_stmt *st = NULL;
	char kid[9];
	int rc = 0;

	*size = 0;
	util_hex(k->id, 4, kid);
	pthread_mutex_lock(&a->rlock);
	if (!has_cosig_table(a->rdb))
		goto out;
	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		a->rdb,
		"SELECT coalesce(max(size), 0) FROM cosignatures WHERE witness = ?1 AND key_id = ?2",
		-1, &st, NULL));
	if (rc < 0)
		goto out;
	sqlite3_bind_text(st, 1, k->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, kid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		*size = (uint64_t)sqlite3_column_int64(st, 0);
	else
		rc = -EIO;
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

/* Newest checkpoint (by size, descending) whose cosignatures by keys reach
 * quorum. *check: that checkpoint's, or the newest checkpoint's when none
 * reaches it. -ENOENT when none does. */
static int witnessed(sqlite3 *db, const struct audit_vkey *keys, size_t n, unsigned quorum,
		     int64_t now_s, uint64_t *size, char **note, struct audit_witness_check *check)
{
	sqlite3_stmt *st = NULL;
	bool first = true;
	int rc, src;

	if (!has_cosig_table(db)) {
		char *nt = NULL;
		uint64_t sz = 0;

		/* describe the newest checkpoint: no cosignatures at all */
		if (check != NULL && audit_newest_checkpoint(db, &sz, &nt) == 0) {
			memset(check, 0, sizeof(*check));
			check->size = sz;
			for (size_t i = 0; i < n; i++)
				check->w[i].rc = -ENOENT;
		}
		free(nt);
		return -ENOENT;
	}
	/* only checkpoints with at least one cosignature are candidates (and
	 * the newest checkpoint, to describe what it lacks) */
	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		db,
		"SELECT size FROM checkpoints WHERE size IN (SELECT size FROM cosignatures)"
		" OR size = (SELECT max(size) FROM checkpoints) ORDER BY size DESC", -1, &st, NULL));
	if (rc < 0)
		return rc;
	rc = -ENOENT;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t sz = (uint64_t)sqlite3_column_int64(st, 0);
		struct audit_witness_check c;
		char *nt = NULL;
		int r;

		r = note_with_cosigs(db, sz, &nt);
		if (r < 0) {
			rc = r;
			break;
		}
		r = audit_witness_check_note(nt, keys, n, now_s, &c, NULL);
		if (r < 0) {
			free(nt);
			continue;
		}
		if (check != NULL && (first || c.valid >= quorum))
			*check = c;
		first = false;
		if (c.valid >= quorum) {
			*size = sz;
			if (note != NULL)
				*note = nt;
			else
				free(nt);
			rc = 0;
			break;
		}
		free(nt);
	}
	sqlite3_finalize(st);
	return rc;
}

int audit_cosig_witnessed_db(struct audit *a, uint64_t *size, char **note)
{
	return witnessed(a->rdb, a->wkeys, a->n_wkeys, a->wquorum, util_now_us() / 1000000, size,
			 note, NULL);
}

int audit_cosig_attach(sqlite3 *db, uint64_t size, char **note)
{
	char *full = NULL;
	int rc = note_with_cosigs(db, size, &full);

	if (rc == -ENOENT)
		return 0; /* not a stored checkpoint: nothing to attach */
	if (rc < 0)
		return rc;
	/* only when the stored note is the one given (it always is) */
	if (strncmp(full, *note, strlen(*note)) == 0) {
		free(*note);
		*note = full;
	} else {
		free(full);
	}
	return 0;
}

int audit_checkpoint_witnessed(struct audit *a, const struct audit_vkey *keys, size_t n,
			       unsigned quorum, uint64_t *size, char **note)
{
	int rc;

	pthread_mutex_lock(&a->rlock);
	rc = witnessed(a->rdb, keys, n, quorum, util_now_us() / 1000000, size, note, NULL);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

int audit_consistency_lines(struct audit *a, uint64_t m, uint64_t n, char **lines)
{
	uint8_t(*leaves)[MERKLE_HASH] = NULL, (*proof)[MERKLE_HASH] = NULL;
	struct merkle_tree t = {0};
	size_t count = 0, off = 0;
	char *buf = NULL;
	int rc;

	if (m == 0 || m > n)
		return -EINVAL;
	if (m == n) {
		buf = strdup("");
		if (buf == NULL)
			return -ENOMEM;
		*lines = buf;
		return 0;
	}
	pthread_mutex_lock(&a->rlock);
	rc = audit_load_leaves(a->rdb, n, &leaves);
	pthread_mutex_unlock(&a->rlock);
	if (rc < 0)
		return rc;
	rc = merkle_tree_build((const uint8_t(*)[MERKLE_HASH])leaves, n, &t);
	if (rc == 0)
		rc = merkle_tree_consistency(&t, m, &proof, &count);
	if (rc < 0)
		goto out;
	buf = malloc(count * 45 + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		sodium_bin2base64(buf + off, 45, proof[i], MERKLE_HASH,
				  sodium_base64_VARIANT_ORIGINAL);
		off += 44;
		buf[off++] = '\n';
	}
	buf[off] = '\0';
	*lines = buf;
	buf = NULL;
out:
	free(buf);
	free(proof);
	free(leaves);
	merkle_tree_free(&t);
	return rc;
}

bool audit_consistency_ok(uint64_t size1, uint64_t size2, const uint8_t root1[static 32],
			  const uint8_t root2[static 32], const uint8_t (*proof)[32], size_t count)
{
	return merkle_verify_consistency(size1, size2, root1, root2, proof, count);
}

/* ---- verify --witness ------------------------------------------------------ */

static void shortfall(const struct audit_witness_check *c, const struct audit_vkey *keys, size_t n,
		      unsigned quorum, bool db, struct cerr *err)
{
	char why[CERR_MAX / 2];

	audit_witness_check_describe(c, keys, n, why, sizeof(why));
	cerr_set(err, -EBADMSG,
		 "%scheckpoint at size %" PRIu64 " carries %u of the %u required witness "
		 "cosignatures (%s)", db ? "no checkpoint is witnessed: the newest " : "the ",
		 c->size, c->valid, quorum, why[0] ? why : "none given");
}

int audit_verify_db_witnessed(const char *path, const struct audit_vkey *keys, size_t n,
			      unsigned quorum, int64_t now_s, struct audit_witness_check *out,
			      struct cerr *err)
{
	struct audit_witness_check c;
	sqlite3 *db = NULL;
	uint64_t size = 0;
	int rc;

	if (n > AUDIT_WITNESS_MAX || quorum == 0 || quorum > n)
		return cerr_set(err, -EINVAL, "quorum must be 1..%zu", n);
	rc = audit_db_open(path, true, false, &db, err);
	if (rc < 0)
		return rc;
	memset(&c, 0, sizeof(c));
	rc = witnessed(db, keys, n, quorum, now_s, &size, NULL, &c);
	sqlite3_close(db);
	if (out != NULL)
		*out = c;
	if (rc == -ENOENT) {
		shortfall(&c, keys, n, quorum, true, err);
		return -EBADMSG;
	}
	if (rc < 0)
		return cerr_set(err, rc, "cannot read the cosignatures in %s", path);
	return 0;
}

int audit_verify_export_witnessed(const char *path, const struct audit_vkey *keys, size_t n,
				  unsigned quorum, int64_t now_s, struct audit_witness_check *out,
				  struct cerr *err)
{
	struct audit_witness_check c;
	json_t *doc = NULL;
	char *buf = NULL;
	size_t len = 0;
	const char *note;
	struct cerr e2 = {{0}};
	int rc;

	if (n > AUDIT_WITNESS_MAX || quorum == 0 || quorum > n)
		return cerr_set(err, -EINVAL, "quorum must be 1..%zu", n);
	rc = util_read_file(path, (size_t)1 << 31, &buf, &len);
	if (rc < 0)
		return cerr_set(err, rc, "cannot read %s: %s", path, strerror(-rc));
	doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	note = json_string_value(json_object_get(doc, "checkpoint"));
	if (note == NULL) {
		rc = cerr_set(err, -EBADMSG, "%s has no checkpoint", path);
		goto out;
	}
	rc = audit_witness_check_note(note, keys, n, now_s, &c, &e2);
	if (rc < 0) {
		rc = cerr_set(err, -EBADMSG, "export checkpoint: %s", e2.msg);
		goto out;
	}
	if (out != NULL)
		*out = c;
	if (c.valid < quorum) {
		shortfall(&c, keys, n, quorum, false, err);
		rc = -EBADMSG;
	}
out:
	json_decref(doc);
	free(buf);
	return rc;
}

/* ---- the witness alarm ----------------------------------------------------- */

static const char alarm_table_sql[] =
	"CREATE TABLE IF NOT EXISTS witness_alarm("
	" id INTEGER PRIMARY KEY CHECK (id = 1), detail TEXT NOT NULL, since TEXT NOT NULL);";

int audit_checkpoint_note(struct audit *a, uint64_t size, char **note)
{
	int rc;

	pthread_mutex_lock(&a->rlock);
	rc = cp_note(a->rdb, size, note);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

static int alarm_exec(struct audit *a, const char *sql, const char *detail)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char now[UTIL_TIME_LEN];
	int rc;

	rc = open_rw(a, &db, NULL);
	if (rc < 0)
		return rc;
	rc = audit_exec(db, alarm_table_sql);
	if (rc == 0)
		rc = audit_sqlite_rc(sqlite3_prepare_v2(db, sql, -1, &st, NULL));
	if (rc == 0 && detail != NULL) {
		if (util_time_format(util_now_us(), false, now) < 0)
			now[0] = '\0';
		sqlite3_bind_text(st, 1, detail, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	}
	if (rc == 0)
		rc = audit_sqlite_rc(sqlite3_step(st));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

int audit_alarm_put(struct audit *a, const char *detail)
{
	/* the first alarm stays until acknowledged: a later one does not
	 * replace what the officer has not seen yet */
	return alarm_exec(a, "INSERT OR IGNORE INTO witness_alarm(id, detail, since)"
			     " VALUES (1, ?1, ?2)", detail);
}

int audit_alarm_clear(struct audit *a)
{
	return alarm_exec(a, "DELETE FROM witness_alarm", NULL);
}

int audit_alarm_get(struct audit *a, char **detail)
{
	sqlite3_stmt *st = NULL;
	int rc = -ENOENT;

	pthread_mutex_lock(&a->rlock);
	if (sqlite3_prepare_v2(a->rdb, "SELECT detail FROM witness_alarm WHERE id = 1", -1, &st,
			       NULL) != SQLITE_OK)
		goto out; /* no table: never an alarm */
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL) {
		*detail = strdup((const char *)sqlite3_column_text(st, 0));
		rc = *detail ? 0 : -ENOMEM;
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&a->rlock);
	return rc;
}

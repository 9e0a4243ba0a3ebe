/* verify.c — offline verification of a database file or a tenant export:
 * every leaf recomputed from the stored bytes (never re-encoded), the root
 * at every checkpoint, every signature, every tenant chain. Names the
 * first thing that does not match. */
#include "audit_int.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "note.h"

#define EXPORT_MAX ((size_t)1 << 31)

struct stored_cp {
	uint64_t size;
	uint8_t root[MERKLE_HASH];
	bool root_ok;
	char *note;
};

/* The writer's derived state as stored (store.c): the compact range and
 * every tenant's chain head as of the tree row's size. */
struct dtenant {
	char *name;
	uint64_t seq;
	uint8_t leaf[MERKLE_HASH];
};

struct vderived {
	bool have_row, checked;
	uint64_t size;
	uint8_t *nodes;
	size_t nodes_len;
	struct dtenant *t;
	size_t nt;
};

struct vstate {
	const struct note_key *key;
	const struct note_checkpoint *trusted; /* opts.checkpoint, parsed */
	const struct audit_verify_opts *o;     /* on_record */
	struct tenant_map tenants;
	struct merkle_range range;
	struct vderived d;
	struct cerr *err;
};

/* Hand a checked record to the caller (opts.on_record). */
static int record_seen(struct vstate *v, uint64_t seq, const char *body, size_t len,
		       json_t *parsed)
{
	int rc;

	if (v->o == NULL || v->o->on_record == NULL)
		return 0;
	rc = v->o->on_record(v->o->ctx, seq, body, len, parsed);
	if (rc < 0)
		return cerr_set(v->err, rc == -EBADMSG ? -EIO : rc, "record %" PRIu64 ": %s", seq,
				strerror(-rc));
	return 0;
}

static void cps_free(struct stored_cp *cps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(cps[i].note);
	free(cps);
}

/* A WAL cut mid-frame means the newest transactions cannot be read: SQLite
 * silently stops at the last whole commit. */
static int wal_check(const char *path, struct cerr *err)
{
	char *wal = NULL;
	uint8_t hdr[32];
	struct stat sb;
	int fd, rc = 0;
	uint32_t pgsz;

	if (asprintf(&wal, "%s-wal", path) < 0)
		return -ENOMEM;
	fd = open(wal, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out; /* no WAL: everything is in the main file */
	if (fstat(fd, &sb) < 0) {
		rc = cerr_set(err, -EIO, "cannot stat %s: %s", wal, strerror(errno));
		goto out;
	}
	if (sb.st_size == 0)
		goto out;
	if (sb.st_size < 32 || pread(fd, hdr, 32, 0) != 32) {
		rc = cerr_set(err, -EIO, "%s is truncated inside its header: the newest records "
			      "cannot be read", wal);
		goto out;
	}
	/* custodyd writes a new WAL out with zeros (store.c: wal_prefill);
	 * until its first commit the header is zeros too, and SQLite reads
	 * such a WAL as empty */
	if (sodium_is_zero(hdr, sizeof(hdr)))
		goto out;
	pgsz = (uint32_t)hdr[8] << 24 | (uint32_t)hdr[9] << 16 | (uint32_t)hdr[10] << 8 | hdr[11];
	if (pgsz < 512 || pgsz > 65536 || (pgsz & (pgsz - 1)) ||
	    (sb.st_size - 32) % (off_t)(24 + pgsz) != 0)
		rc = cerr_set(err, -EIO, "%s is truncated mid-frame (%lld bytes): the newest records "
			      "cannot be read; compare with the last checkpoint you hold", wal,
			      (long long)sb.st_size);
out:
	if (fd >= 0)
		close(fd);
	free(wal);
	return rc;
}

/* A record's chain fields, however they were read (SQLite's JSON functions
 * for the database, jansson for an export). */
struct chain_fields {
	bool ts_ok;            /* tenant_seq is an integer >= 1 */
	uint64_t ts;
	bool ts_present;       /* present and not null */
	bool tp_null;          /* tenant_prev null or absent */
	const char *tp;        /* tenant_prev when it is a string */
};

/* The tenant chain rule shared by database and export verification.
 * first_free: the first record seen of this tenant may start anywhere
 * (an export cut by since/until), its tenant_prev is taken as given. */
static int chain_check(struct vstate *v, const char *tenant, const struct chain_fields *c,
		       uint64_t seq, const uint8_t leaf[static MERKLE_HASH], bool first_free)
{
	struct tenant_ent *e;
	uint64_t want;

	if (tenant == NULL) {
		if (c->ts_present || !c->tp_null)
			return cerr_set(v->err, -EBADMSG,
					"record %" PRIu64 ": tenant chain fields without a tenant", seq);
		return 0;
	}
	if (!c->ts_ok || (!c->tp_null && c->tp == NULL))
		return cerr_set(v->err, -EBADMSG,
				"tenant %s: record %" PRIu64 " has no valid tenant_seq/tenant_prev",
				tenant, seq);
	e = tenant_map_get(&v->tenants, tenant);
	if (e == NULL) {
		e = tenant_map_put(&v->tenants, tenant);
		if (e == NULL)
			return cerr_set(v->err, -ENOMEM, "out of memory");
		if (first_free) {
			if (c->ts == 1 && !c->tp_null)
				return cerr_set(v->err, -EBADMSG,
						"tenant %s: record %" PRIu64 " is its first but has a "
						"tenant_prev", tenant, seq);
			if (c->ts > 1 && c->tp == NULL)
				return cerr_set(v->err, -EBADMSG,
						"tenant %s: record %" PRIu64 " has no tenant_prev",
						tenant, seq);
			goto advance;
		}
	}
	want = e->seq + 1;
	if (c->ts != want)
		return cerr_set(v->err, -EBADMSG,
				"tenant %s: record %" PRIu64 " has tenant_seq %" PRIu64
				", expected %" PRIu64, tenant, seq, c->ts, want);
	if (e->seq == 0) {
		if (!c->tp_null)
			return cerr_set(v->err, -EBADMSG,
					"tenant %s: record %" PRIu64 " is its first but has a "
					"tenant_prev", tenant, seq);
	} else {
		char hex[2 * MERKLE_HASH + 1];

		util_hex(e->leaf, MERKLE_HASH, hex);
		if (c->tp == NULL || strcmp(c->tp, hex) != 0)
			return cerr_set(v->err, -EBADMSG,
					"tenant %s: record %" PRIu64 " has a tenant_prev that is not "
					"the leaf of its previous record", tenant, seq);
	}
advance:
	e->seq = c->ts;
	memcpy(e->leaf, leaf, MERKLE_HASH);
	return 0;
}

static void chain_fields_json(json_t *body, struct chain_fields *c)
{
	json_t *ts = json_object_get(body, "tenant_seq"), *tp = json_object_get(body, "tenant_prev");

	memset(c, 0, sizeof(*c));
	c->ts_present = ts != NULL && !json_is_null(ts);
	c->ts_ok = json_is_integer(ts) && json_integer_value(ts) >= 1;
	c->ts = c->ts_ok ? (uint64_t)json_integer_value(ts) : 0;
	c->tp_null = tp == NULL || json_is_null(tp);
	c->tp = json_string_value(tp);
}

static int cp_check_note(struct vstate *v, struct stored_cp *c)
{
	struct note_checkpoint nc;
	struct cerr e2 = {{0}};
	int rc;

	rc = note_checkpoint_verify(c->note, v->key, &nc, &e2);
	if (rc < 0)
		return cerr_set(v->err, -EBADMSG, "checkpoint at size %" PRIu64 ": %s", c->size,
				e2.msg);
	if (nc.size != c->size)
		return cerr_set(v->err, -EBADMSG,
				"checkpoint at size %" PRIu64 ": its note says size %" PRIu64, c->size,
				nc.size);
	if (!c->root_ok || sodium_memcmp(nc.root, c->root, MERKLE_HASH) != 0)
		return cerr_set(v->err, -EBADMSG,
				"checkpoint at size %" PRIu64 ": root column differs from its note",
				c->size);
	return 0;
}

static int cp_check_root(struct vstate *v, struct stored_cp *c)
{
	uint8_t root[MERKLE_HASH];

	merkle_range_root(&v->range, root);
	if (sodium_memcmp(root, c->root, MERKLE_HASH) != 0)
		return cerr_set(v->err, -EBADMSG,
				"checkpoint at size %" PRIu64 ": root does not match the records",
				c->size);
	return cp_check_note(v, c);
}

static int load_cps(sqlite3 *db, struct stored_cp **out, size_t *count, struct cerr *err)
{
	sqlite3_stmt *st = NULL;
	struct stored_cp *cps = NULL;
	size_t n = 0, cap = 0;
	int rc, src;

	rc = audit_sqlite_rc(sqlite3_prepare_v2(
		db, "SELECT size, root, note FROM checkpoints ORDER BY size", -1, &st, NULL));
	if (rc < 0)
		return cerr_set(err, -EIO, "cannot read checkpoints: %s", sqlite3_errmsg(db));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *note = (const char *)sqlite3_column_text(st, 2);

		if (n == cap) {
			struct stored_cp *nc;

			cap = cap ? 2 * cap : 16;
			nc = realloc(cps, cap * sizeof(*cps));
			if (nc == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			cps = nc;
		}
		memset(&cps[n], 0, sizeof(cps[n]));
		cps[n].size = (uint64_t)sqlite3_column_int64(st, 0);
		if (sqlite3_column_bytes(st, 1) == MERKLE_HASH) {
			memcpy(cps[n].root, sqlite3_column_blob(st, 1), MERKLE_HASH);
			cps[n].root_ok = true;
		}
		cps[n].note = strdup(note ? note : "");
		if (cps[n].note == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (src != SQLITE_DONE) {
		rc = cerr_set(err, -EIO, "cannot read checkpoints: %s", sqlite3_errmsg(db));
		goto out;
	}
	*out = cps;
	*count = n;
	cps = NULL;
	n = 0;
	rc = 0;
out:
	if (rc == -ENOMEM)
		cerr_set(err, rc, "out of memory");
	cps_free(cps, n);
	sqlite3_finalize(st);
	return rc;
}

static void derived_free(struct vderived *d)
{
	for (size_t i = 0; i < d->nt; i++)
		free(d->t[i].name);
	free(d->t);
	free(d->nodes);
	*d = (struct vderived){0};
}

/* Read the tree row and the tenants table before the records are walked. */
static int derived_load(sqlite3 *db, struct vstate *v, struct cerr *err)
{
	struct vderived *d = &v->d;
	sqlite3_stmt *st = NULL;
	int rc = 0, src;

	if (sqlite3_prepare_v2(db, "SELECT size, nodes FROM tree WHERE id = 1", -1, &st, NULL) !=
	    SQLITE_OK)
		return cerr_set(err, -EIO, "cannot read the tree row: %s", sqlite3_errmsg(db));
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		d->have_row = true;
		d->size = (uint64_t)sqlite3_column_int64(st, 0);
		d->nodes_len = (size_t)sqlite3_column_bytes(st, 1);
		if (d->nodes_len > 0) {
			d->nodes = malloc(d->nodes_len);
			if (d->nodes == NULL)
				rc = cerr_set(err, -ENOMEM, "out of memory");
			else
				memcpy(d->nodes, sqlite3_column_blob(st, 1), d->nodes_len);
		}
	} else if (src != SQLITE_DONE) {
		rc = cerr_set(err, -EIO, "cannot read the tree row: %s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc < 0)
		return rc;
	if (sqlite3_prepare_v2(db, "SELECT tenant, seq, last_leaf FROM tenants", -1, &st, NULL) !=
	    SQLITE_OK)
		return cerr_set(err, -EIO, "cannot read tenants: %s", sqlite3_errmsg(db));
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		struct dtenant *n = realloc(d->t, (d->nt + 1) * sizeof(*n));

		if (n == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			break;
		}
		d->t = n;
		n = &d->t[d->nt];
		*n = (struct dtenant){.seq = (uint64_t)sqlite3_column_int64(st, 1)};
		n->name = strdup(t ? t : "");
		if (n->name == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			break;
		}
		d->nt++;
		if (t == NULL || sqlite3_column_bytes(st, 2) != MERKLE_HASH) {
			rc = cerr_set(err, -EBADMSG,
				      "tenant %s: the tenants table disagrees with its records",
				      t ? t : "(null)");
			break;
		}
		memcpy(n->leaf, sqlite3_column_blob(st, 2), MERKLE_HASH);
	}
	if (rc == 0 && src != SQLITE_DONE)
		rc = cerr_set(err, -EIO, "cannot read tenants: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc;
}

/* The walk has reached the tree row's size: the stored derived state must
 * agree with what the records say up to there. */
static int derived_check_at(struct vstate *v)
{
	const struct vderived *d = &v->d;

	for (size_t i = 0; i < d->nt; i++) {
		struct tenant_ent *e = tenant_map_get(&v->tenants, d->t[i].name);

		if (e == NULL || e->seq != d->t[i].seq ||
		    memcmp(e->leaf, d->t[i].leaf, MERKLE_HASH) != 0)
			return cerr_set(v->err, -EBADMSG,
					"tenant %s: the tenants table disagrees with its records",
					d->t[i].name);
	}
	if (d->nt != v->tenants.count)
		return cerr_set(v->err, -EBADMSG,
				"the tenants table lacks tenants that have records");
	if (d->nodes_len != merkle_range_count(v->range.size) * MERKLE_HASH ||
	    (d->nodes_len && memcmp(d->nodes, v->range.node, d->nodes_len) != 0))
		return cerr_set(v->err, -EBADMSG,
				"the stored compact range disagrees with the records");
	v->d.checked = true;
	return 0;
}

/* After the walk: the derived state was checked where it stands. */
static int derived_check_end(struct vstate *v, uint64_t records)
{
	if (!v->d.have_row)
		return records == 0 ? 0 : cerr_set(v->err, -EBADMSG, "the stored compact range is missing");
	if (v->d.size > records)
		return cerr_set(v->err, -EBADMSG,
				"the stored compact range and tenant heads are ahead of the records "
				"(at %" PRIu64 "; the store ends at %" PRIu64 ")",
				v->d.size, records);
	return v->d.checked ? 0 : cerr_set(v->err, -EBADMSG,
					   "the stored compact range disagrees with the records");
}

/* Bodies are read with SQLite's own JSON functions in the same statement
 * (one parse per row, cached across the calls): much cheaper than handing
 * every body to a second parser, and the bytes hashed are still exactly
 * the stored ones. Columns: 0 seq, 1 body, 2 leaf, 3 tenant, 4 body is a
 * JSON object, 5 the body's seq, 6 indexed columns equal the body's,
 * 7 tenant_seq, 8 tenant_prev. Types are checked in C from the values. */
static const char rows_sql[] =
	"SELECT seq, body, leaf, tenant, ok,"
	" CASE WHEN ok THEN json_extract(body, '$.seq') END,"
	" CASE WHEN ok THEN json_extract(body, '$.time') IS time"
	"  AND json_extract(body, '$.event') IS event AND json_extract(body, '$.outcome') IS outcome"
	"  AND json_extract(body, '$.tenant') IS tenant"
	"  AND json_extract(body, '$.principal') IS principal END,"
	" CASE WHEN ok THEN json_extract(body, '$.tenant_seq') END,"
	" CASE WHEN ok THEN json_extract(body, '$.tenant_prev') END"
	" FROM (SELECT *, json_valid(body) AND substr(body, 1, 1) = '{' AS ok FROM events)"
	" ORDER BY seq";

/* ---- the row pipeline: one thread reads rows out of SQLite (and its JSON
 * functions), the caller's thread hashes and checks them in order. On two
 * cores this nearly halves the time of a large verification. */

#define VB_ROWS 2048

struct vrow {
	uint64_t seq;
	size_t body, body_len;    /* offsets into the batch's arena */
	size_t tenant, tp;        /* (size_t)-1: NULL */
	uint8_t leafcol[MERKLE_HASH];
	bool leaf_ok;             /* the leaf column holds 32 bytes */
	bool ok, cols_ok;
	bool bseq_int;
	int64_t bseq;
	int ts_type, tp_type;
	int64_t ts;
};

struct vbatch {
	struct vrow rows[VB_ROWS];
	size_t n;
	char *arena;
	size_t alen, acap;
	bool full, last;
	int rc;
	char msg[CERR_MAX];
};

struct vpipe {
	sqlite3 *db;
	sqlite3_stmt *st;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vbatch b[2];
	bool stop;
};

#define NOSTR ((size_t)-1)

static size_t arena_put(struct vbatch *b, const void *p, size_t n)
{
	size_t off;

	if (p == NULL)
		return NOSTR;
	if (b->alen + n + 1 > b->acap) {
		size_t nc = (b->alen + n + 1) * 2;
		char *na = realloc(b->arena, nc);

		if (na == NULL)
			return (size_t)-2;
		b->arena = na;
		b->acap = nc;
	}
	off = b->alen;
	memcpy(b->arena + off, p, n);
	b->arena[off + n] = '\0';
	b->alen += n + 1;
	return off;
}

static void *vpipe_reader(void *arg)
{
	struct vpipe *vp = arg;
	int idx = 0;

	for (;;) {
		struct vbatch *b = &vp->b[idx];
		sqlite3_stmt *st = vp->st;
		int src = SQLITE_ROW;

		pthread_mutex_lock(&vp->lock);
		while (b->full && !vp->stop)
			pthread_cond_wait(&vp->cond, &vp->lock);
		pthread_mutex_unlock(&vp->lock);
		if (vp->stop)
			break;
		b->n = 0;
		b->alen = 0;
		while (b->n < VB_ROWS && (src = sqlite3_step(st)) == SQLITE_ROW) {
			struct vrow *r = &b->rows[b->n];
			const void *body = sqlite3_column_blob(st, 1);

			r->seq = (uint64_t)sqlite3_column_int64(st, 0);
			r->body_len = (size_t)sqlite3_column_bytes(st, 1);
			r->body = arena_put(b, body ? body : "", r->body_len);
			r->leaf_ok = sqlite3_column_bytes(st, 2) == MERKLE_HASH;
			if (r->leaf_ok)
				memcpy(r->leafcol, sqlite3_column_blob(st, 2), MERKLE_HASH);
			r->tenant = arena_put(b, sqlite3_column_text(st, 3),
					      (size_t)sqlite3_column_bytes(st, 3));
			r->ok = sqlite3_column_int(st, 4) != 0;
			r->bseq_int = sqlite3_column_type(st, 5) == SQLITE_INTEGER;
			r->bseq = sqlite3_column_int64(st, 5);
			r->cols_ok = sqlite3_column_int(st, 6) != 0;
			r->ts_type = sqlite3_column_type(st, 7);
			r->ts = sqlite3_column_int64(st, 7);
			r->tp_type = sqlite3_column_type(st, 8);
			r->tp = r->tp_type == SQLITE_TEXT
					? arena_put(b, sqlite3_column_text(st, 8),
						    (size_t)sqlite3_column_bytes(st, 8))
					: NOSTR;
			if (r->body == (size_t)-2 || r->tenant == (size_t)-2 || r->tp == (size_t)-2) {
				src = SQLITE_NOMEM;
				break;
			}
			b->n++;
		}
		b->last = src != SQLITE_ROW;
		b->rc = 0;
		if (src == SQLITE_NOMEM) {
			b->rc = -ENOMEM;
			snprintf(b->msg, sizeof(b->msg), "out of memory");
		} else if (b->last && src != SQLITE_DONE) {
			b->rc = -EIO;
			snprintf(b->msg, sizeof(b->msg), "%s", sqlite3_errmsg(vp->db));
		}
		pthread_mutex_lock(&vp->lock);
		b->full = true;
		pthread_cond_broadcast(&vp->cond);
		pthread_mutex_unlock(&vp->lock);
		if (b->last)
			break;
		idx ^= 1;
	}
	return NULL;
}

/* The in-order checks of one row. */
static int verify_row(struct vstate *v, const struct vbatch *b, const struct vrow *r,
		      uint64_t expect)
{
	const char *tenant = r->tenant == NOSTR ? NULL : b->arena + r->tenant;
	struct chain_fields cf = {0};
	uint8_t leaf[MERKLE_HASH];

	if (r->seq != expect)
		return cerr_set(v->err, -EBADMSG,
				r->seq > expect ? "record %" PRIu64 " is missing (next is %" PRIu64 ")"
						: "record %" PRIu64 " is out of order (found %" PRIu64 ")",
				expect, r->seq);
	merkle_leaf_hash(b->arena + r->body, r->body_len, leaf);
	if (!r->leaf_ok || sodium_memcmp(leaf, r->leafcol, MERKLE_HASH) != 0)
		return cerr_set(v->err, -EBADMSG,
				"record %" PRIu64 ": body does not match its leaf hash", r->seq);
	if (!r->ok)
		return cerr_set(v->err, -EBADMSG, "record %" PRIu64 ": body is not a JSON object",
				r->seq);
	if (!r->bseq_int || (uint64_t)r->bseq != r->seq)
		return cerr_set(v->err, -EBADMSG,
				"record %" PRIu64 ": body says seq %" PRIu64 " (rows moved?)", r->seq,
				(uint64_t)r->bseq);
	if (!r->cols_ok)
		return cerr_set(v->err, -EBADMSG,
				"record %" PRIu64 ": indexed columns differ from its body", r->seq);
	/* JSON null and absent both read as SQL NULL; an object or array
	 * reads as text and then fails the hex comparison */
	cf.ts_present = r->ts_type != SQLITE_NULL;
	cf.ts_ok = r->ts_type == SQLITE_INTEGER && r->ts >= 1;
	cf.ts = cf.ts_ok ? (uint64_t)r->ts : 0;
	cf.tp_null = r->tp_type == SQLITE_NULL;
	cf.tp = r->tp == NOSTR ? NULL : b->arena + r->tp;
	return chain_check(v, tenant, &cf, r->seq, leaf, false);
}

/* The walk has reached the size of the checkpoint the user trusts: the
 * log's root there must be the one that checkpoint signed. */
static int trusted_check_at(struct vstate *v)
{
	uint8_t root[MERKLE_HASH];

	merkle_range_root(&v->range, root);
	if (sodium_memcmp(root, v->trusted->root, MERKLE_HASH) != 0)
		return cerr_set(v->err, -EBADMSG,
				"the checkpoint you trust (size %" PRIu64 ") does not match this "
				"log: its records 1..%" PRIu64 " were rewritten, or the log forked",
				v->trusted->size, v->trusted->size);
	return 0;
}

static int verify_rows(sqlite3 *db, struct vstate *v, struct stored_cp *cps, size_t ncps,
		       uint64_t *records)
{
	struct vpipe *vp;
	pthread_t th;
	size_t ci = 0;
	uint64_t expect = 1;
	int rc = 0, idx = 0;

	/* a checkpoint of the empty tree */
	while (ci < ncps && cps[ci].size == 0) {
		rc = cp_check_root(v, &cps[ci++]);
		if (rc < 0)
			return rc;
	}
	if (v->d.have_row && v->d.size == 0) {
		rc = derived_check_at(v);
		if (rc < 0)
			return rc;
	}
	if (v->trusted != NULL && v->trusted->size == 0) {
		rc = trusted_check_at(v);
		if (rc < 0)
			return rc;
	}
	vp = calloc(1, sizeof(*vp));
	if (vp == NULL)
		return cerr_set(v->err, -ENOMEM, "out of memory");
	vp->db = db;
	if (sqlite3_prepare_v2(db, rows_sql, -1, &vp->st, NULL) != SQLITE_OK) {
		rc = cerr_set(v->err, -EIO, "cannot read records: %s", sqlite3_errmsg(db));
		free(vp);
		return rc;
	}
	pthread_mutex_init(&vp->lock, NULL);
	pthread_cond_init(&vp->cond, NULL);
	rc = -pthread_create(&th, NULL, vpipe_reader, vp);
	if (rc < 0) {
		cerr_set(v->err, rc, "cannot start the reader: %s", strerror(-rc));
		goto out_nothread;
	}
	for (;;) {
		struct vbatch *b = &vp->b[idx];
		bool last;

		pthread_mutex_lock(&vp->lock);
		while (!b->full)
			pthread_cond_wait(&vp->cond, &vp->lock);
		pthread_mutex_unlock(&vp->lock);
		for (size_t i = 0; i < b->n && rc == 0; i++) {
			rc = verify_row(v, b, &b->rows[i], expect);
			if (rc == 0)
				rc = record_seen(v, expect, b->arena + b->rows[i].body,
						 b->rows[i].body_len, NULL);
			if (rc < 0)
				break;
			merkle_range_append(&v->range, (const uint8_t *)b->rows[i].leafcol);
			while (ci < ncps && cps[ci].size == expect) {
				rc = cp_check_root(v, &cps[ci++]);
				if (rc < 0)
					break;
			}
			if (rc == 0 && v->trusted != NULL && v->trusted->size == expect)
				rc = trusted_check_at(v);
			/* after the signed roots: a mismatch there names more */
			if (rc == 0 && v->d.have_row && v->d.size == expect)
				rc = derived_check_at(v);
			if (rc < 0)
				break;
			expect++;
		}
		if (rc == 0 && b->rc < 0)
			rc = cerr_set(v->err, b->rc, "cannot read record %" PRIu64 ": %s", expect,
				      b->msg);
		last = b->last;
		pthread_mutex_lock(&vp->lock);
		b->full = false;
		if (rc < 0)
			vp->stop = true;
		pthread_cond_broadcast(&vp->cond);
		pthread_mutex_unlock(&vp->lock);
		if (rc < 0 || last)
			break;
		idx ^= 1;
	}
	pthread_join(th, NULL);
	if (rc == 0 && ci < ncps)
		rc = cerr_set(v->err, -EBADMSG,
			      "checkpoint at size %" PRIu64 " covers records that are missing "
			      "(the store ends at %" PRIu64 ")", cps[ci].size, expect - 1);
	if (rc == 0 && v->trusted != NULL && v->trusted->size > expect - 1)
		rc = cerr_set(v->err, -EBADMSG,
			      "the store ends at record %" PRIu64 ", before the checkpoint you trust "
			      "(size %" PRIu64 "): records were removed or the store was replaced",
			      expect - 1, v->trusted->size);
	*records = expect - 1;
out_nothread:
	sqlite3_finalize(vp->st);
	pthread_cond_destroy(&vp->cond);
	pthread_mutex_destroy(&vp->lock);
	free(vp->b[0].arena);
	free(vp->b[1].arena);
	free(vp);
	return rc;
}

/* Parse the key and the trusted checkpoint of o into key/trusted; v->key
 * and v->trusted point at them when given. */
static int opts_load(const struct audit_verify_opts *o, struct vstate *v, struct note_key *key,
		     struct note_checkpoint *trusted, struct cerr *err)
{
	struct cerr e2 = {{0}};
	int rc;

	v->o = o;
	if (o->vkey != NULL) {
		rc = note_vkey_parse(o->vkey, key, err);
		if (rc < 0)
			return rc;
		v->key = key;
	}
	if (o->checkpoint != NULL) {
		if (v->key == NULL)
			return cerr_set(err, -EINVAL, "a checkpoint to check against needs the "
					"verifier key");
		if (note_checkpoint_verify(o->checkpoint, key, trusted, &e2) < 0)
			return cerr_set(err, -EINVAL, "the checkpoint you gave is not one signed by "
					"the key %s: %s", key->name, e2.msg);
		v->trusted = trusted;
	}
	return 0;
}

static void key_id_hex(const uint8_t id[static 4], char out[static 9])
{
	util_hex(id, 4, out);
}

/* A log none of whose checkpoints names the key was signed by another
 * key: that is a wrong key, not tampering (a forged checkpoint among
 * genuine ones still shows as tampering). */
static int key_check(const struct note_key *k, const char *note, size_t n_signed,
		     struct cerr *err)
{
	char origin[NOTE_NAME_MAX], want[9], have[9] = "none";
	uint8_t id[4];
	bool has_id = false;

	if (n_signed > 0 || note == NULL)
		return 0;
	(void)note_signer(note, origin, id, &has_id);
	key_id_hex(k->id, want);
	if (has_id)
		key_id_hex(id, have);
	return cerr_set(err, -EKEYREJECTED,
			"this key is not the key of this log: key id %s (%s), log signed by %s (%s)",
			want, k->name, have, origin[0] ? origin : "no origin");
}

/* Coverage and the newest checkpoint into st, once the walk is done. */
static void stats_cover(struct audit_verify_stats *st, const struct vstate *v,
			const char *note, uint64_t size, const uint8_t root[static MERKLE_HASH])
{
	if (v->key != NULL && note != NULL) {
		st->have_cp = true;
		st->cp_size = size;
		memcpy(st->cp_root, root, MERKLE_HASH);
		key_id_hex(v->key->id, st->cp_key_id);
		if (strlen(note) < sizeof(st->cp_note))
			snprintf(st->cp_note, sizeof(st->cp_note), "%s", note);
		st->covered = size;
	}
	if (v->trusted != NULL) {
		st->trusted = true;
		st->trusted_size = v->trusted->size;
		if (v->trusted->size > st->covered)
			st->covered = v->trusted->size;
	}
	if (st->covered > st->records)
		st->covered = st->records;
	st->uncovered = st->records - st->covered;
	st->uncovered_from = st->uncovered ? st->covered + 1 : 0;
}

static int nothing_covered(struct cerr *err, uint64_t records)
{
	return cerr_set(err, -ENODATA,
			"none of its %" PRIu64 " records is covered by a signed checkpoint, so "
			"nothing shows they are the ones the broker wrote (records 1..%" PRIu64
			" are unverified); check it against a checkpoint you kept (--checkpoint "
			"NOTE)", records, records);
}

int audit_verify_db_with(const char *path, const struct audit_verify_opts *o,
			 struct audit_verify_stats *st, struct cerr *err)
{
	struct note_key key;
	struct note_checkpoint trusted;
	struct vstate v = {.err = err};
	struct audit_verify_stats dummy;
	struct stored_cp *cps = NULL;
	size_t ncps = 0, n_signed = 0;
	sqlite3 *db = NULL;
	struct stat sb;
	uint64_t records = 0, schema = 0;
	sqlite3_stmt *q = NULL;
	int rc;

	if (st == NULL)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	rc = opts_load(o, &v, &key, &trusted, err);
	if (rc < 0)
		return rc;
	if (stat(path, &sb) < 0)
		return cerr_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	rc = wal_check(path, err);
	if (rc < 0)
		return rc;
	rc = audit_db_open(path, true, false, &db, err);
	if (rc < 0)
		return rc == -ENOENT ? rc : -EIO;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &q, NULL) !=
		    SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_ROW) {
		rc = cerr_set(err, -EIO, "%s is not a readable custody audit store: %s", path,
			      sqlite3_errmsg(db));
		goto out;
	}
	schema = (uint64_t)sqlite3_column_int64(q, 0);
	if (schema != AUDIT_SCHEMA_VERSION) {
		rc = cerr_set(err, -EIO, "%s has audit schema %" PRIu64 ", this build reads %d", path,
			      schema, AUDIT_SCHEMA_VERSION);
		goto out;
	}
	rc = tenant_map_init(&v.tenants);
	if (rc < 0)
		goto out;
	merkle_range_init(&v.range);
	rc = load_cps(db, &cps, &ncps, err);
	if (rc < 0)
		goto out;
	if (v.key != NULL) {
		for (size_t i = 0; i < ncps; i++)
			n_signed += note_names_key(cps[i].note, v.key);
		rc = key_check(v.key, ncps ? cps[ncps - 1].note : NULL, n_signed, err);
		if (rc < 0)
			goto out;
	}
	rc = derived_load(db, &v, err);
	if (rc < 0)
		goto out;
	rc = verify_rows(db, &v, cps, ncps, &records);
	st->records = records;
	st->tenants = v.tenants.count;
	if (rc < 0)
		goto out;
	rc = derived_check_end(&v, records);
	if (rc < 0)
		goto out;
	st->checkpoints = v.key ? ncps : 0;
	if (ncps > 0)
		stats_cover(st, &v, cps[ncps - 1].note, cps[ncps - 1].size, cps[ncps - 1].root);
	else
		stats_cover(st, &v, NULL, 0, (const uint8_t[MERKLE_HASH]){0});
	if (v.key != NULL && records > 0 && st->covered == 0)
		rc = nothing_covered(err, records);
out:
	sqlite3_finalize(q);
	cps_free(cps, ncps);
	derived_free(&v.d);
	tenant_map_free(&v.tenants);
	sqlite3_close(db);
	return rc;
}

int audit_verify_db(const char *path, const char *vkey, struct audit_verify_stats *st,
		    struct cerr *err)
{
	struct audit_verify_opts o = {.vkey = vkey};

	return audit_verify_db_with(path, &o, st, err);
}

/* ---- exports ------------------------------------------------------------- */

static int b64_hash(json_t *s, uint8_t out[static MERKLE_HASH])
{
	const char *t = json_string_value(s), *end = NULL;
	size_t got = 0;

	if (t == NULL || strlen(t) != 44 ||
	    sodium_base642bin(out, MERKLE_HASH, t, 44, NULL, &got, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    got != MERKLE_HASH || end != t + 44)
		return -EINVAL;
	return 0;
}

/* The most hashes a proof may hold (a path has at most 64; more is
 * malformed, said as such). */
#define PROOF_MAX 130

/* Each position's last decoded hash with its text: neighbouring records'
 * proofs repeat most siblings, and the same 44 characters decode to the
 * same bytes (they decoded without error before), so they are copied.
 * Zeroed, no entry matches: a hash's text has no NUL. */
struct b64_cache {
	char text[PROOF_MAX][44];
	uint8_t hash[PROOF_MAX][MERKLE_HASH];
};

/* An array of base64 hashes into h[max]: decoded in place, no allocation
 * per proof; c (or NULL) remembers what decoded. */
static int hash_list_into(json_t *arr, uint8_t (*h)[MERKLE_HASH], size_t max, size_t *count,
			  struct b64_cache *c)
{
	size_t n = json_array_size(arr);

	if (!json_is_array(arr) || n > max)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		json_t *js = json_array_get(arr, i);
		const char *t = json_string_value(js);

		if (c != NULL && t != NULL && json_string_length(js) == 44 &&
		    memcmp(c->text[i], t, 44) == 0) {
			memcpy(h[i], c->hash[i], MERKLE_HASH);
			continue;
		}
		if (b64_hash(js, h[i]) < 0)
			return -EINVAL;
		if (c != NULL) {
			memcpy(c->text[i], t, 44);
			memcpy(c->hash[i], h[i], MERKLE_HASH);
		}
	}
	*count = n;
	return 0;
}

/* An array of base64 hashes into a malloc'd array. */
static int hash_list(json_t *arr, uint8_t (**out)[MERKLE_HASH], size_t *count)
{
	size_t n = json_array_size(arr);
	uint8_t(*h)[MERKLE_HASH];

	if (!json_is_array(arr) || n > PROOF_MAX)
		return -EINVAL;
	h = malloc((n ? n : 1) * MERKLE_HASH);
	if (h == NULL)
		return -ENOMEM;
	if (hash_list_into(arr, h, n, count, NULL) < 0) {
		free(h);
		return -EINVAL;
	}
	*out = h;
	return 0;
}

/* What one export's proofs share, kept from record to record. */
struct xmemo {
	struct merkle_memo walk;
};

/* The export's window and chain claims. */
struct xwin {
	int64_t since, until;      /* 0: unbounded */
	bool has_first;
	uint64_t first_ts, last_ts;
	bool has_next;             /* the record after the window was checked */
};

/* One exported record as read, before it is checked: what can be worked
 * out from it alone (its fields' types, leaf hash, decoded proof, parsed
 * body), so that on two cores reading runs beside the in-order checks.
 * The checks (xrec_check) then say exactly what export_record said. */
struct xrec {
	json_t *r;               /* the record (owned) */
	json_t *body;            /* its body parsed, NULL when it is not JSON (owned) */
	bool shape_ok;           /* seq >= 1, body a string, leaf_index an integer */
	int proof_rc;            /* decoding the inclusion proof */
	size_t npath;
	uint8_t leaf[MERKLE_HASH];
	uint8_t path[PROOF_MAX][MERKLE_HASH];
};

static void xrec_clear(struct xrec *x)
{
	json_decref(x->body);
	json_decref(x->r);
	x->r = NULL;
	x->body = NULL;
}

/* Read r (taking it) into x; c is this reader's memory of decoded hashes.
 * Touches nothing shared, so any thread may read. */
static void xrec_read(struct xrec *x, json_t *r, struct b64_cache *c)
{
	json_t *jseq = json_object_get(r, "seq"), *jbody = json_object_get(r, "body");
	json_t *jidx = json_object_get(r, "leaf_index");

	x->r = r;
	x->body = NULL;
	x->npath = 0;
	x->proof_rc = 0;
	x->shape_ok = json_is_integer(jseq) && json_integer_value(jseq) >= 1 &&
		      json_is_string(jbody) && json_is_integer(jidx);
	if (!x->shape_ok)
		return;
	merkle_leaf_hash(json_string_value(jbody), json_string_length(jbody), x->leaf);
	x->proof_rc = hash_list_into(json_object_get(r, "inclusion"), x->path, PROOF_MAX,
				     &x->npath, c);
	x->body = json_loadb(json_string_value(jbody), json_string_length(jbody),
			     JSON_REJECT_DUPLICATES, NULL);
}

/* One exported record (or the one before or after the window), read: its
 * proof against the checkpoint, its seq, tenant and time, in this order. */
static int xrec_check(struct vstate *v, const struct xrec *x, const char *what,
		      const char *tenant, const struct note_checkpoint *cp, struct xmemo *memo,
		      uint64_t *seq_out, int64_t *time_out)
{
	json_t *body = x->body, *bt;
	uint64_t seq;

	if (!x->shape_ok)
		return cerr_set(v->err, -EBADMSG, "export: %s is malformed", what);
	seq = (uint64_t)json_integer_value(json_object_get(x->r, "seq"));
	if (seq > cp->size ||
	    (uint64_t)json_integer_value(json_object_get(x->r, "leaf_index")) != seq - 1)
		return cerr_set(v->err, -EBADMSG,
				"record %" PRIu64 ": not in the checkpoint's tree of %" PRIu64, seq,
				cp->size);
	if (x->proof_rc < 0)
		return cerr_set(v->err, -EBADMSG, "record %" PRIu64 ": malformed inclusion proof",
				seq);
	/* the memo ends the walk where a neighbour's verified one went on
	 * with the very same siblings: same verdict, a fraction of the hashes */
	if (!merkle_verify_inclusion_memo(&memo->walk, seq - 1, cp->size, x->leaf,
					  (const uint8_t(*)[MERKLE_HASH])x->path, x->npath, cp->root))
		return cerr_set(v->err, -EBADMSG,
				"record %" PRIu64 ": body is not in the signed tree (inclusion "
				"proof does not verify)", seq);
	bt = json_object_get(body, "tenant");
	if (!json_is_object(body) || !json_is_integer(json_object_get(body, "seq")) ||
	    (uint64_t)json_integer_value(json_object_get(body, "seq")) != seq)
		return cerr_set(v->err, -EBADMSG, "record %" PRIu64 ": body does not say seq %" PRIu64,
				seq, seq);
	if (!json_is_string(bt) || strcmp(json_string_value(bt), tenant) != 0)
		return cerr_set(v->err, -EBADMSG, "record %" PRIu64 ": belongs to another tenant",
				seq);
	if (!json_is_string(json_object_get(body, "time")) ||
	    util_time_parse(json_string_value(json_object_get(body, "time")), time_out) < 0)
		return cerr_set(v->err, -EBADMSG, "record %" PRIu64 ": body has no valid time", seq);
	*seq_out = seq;
	return 0;
}

/* ---- reading records a batch at a time: the text's pieces (export_scan.c)
 * are parsed in batches, in turn by the caller's thread (just before it
 * checks them, in order) and by worker threads a few batches ahead.
 * Memory stays at a few batches of records instead of one tree of the
 * whole document (several times its size), and each is freed by the
 * thread that read it: freeing what another thread allocated costs
 * glibc's malloc a lock, and records freed long after they were made
 * are out of the cache (measured: a third more CPU). */

#define XB_RECS 16      /* records per batch */
#define XB_SLOTS 12     /* batches read ahead of the checks, at most; a multiple of
			 * every reading cycle (1, 2, 4), so a slot has one reader */
#define XP_THREADS 3    /* workers at most */

struct xbatch {
	json_t *arr;       /* the batch's records */
	struct xrec rec[XB_RECS];
	size_t n;          /* records read; fewer than its pieces: they did not parse */
	/* under the lock: */
	bool claimed;      /* batch is being read or was read into this slot */
	size_t batch;
	bool ready;        /* batch is read */
	bool mine;         /* ... by the checking thread */
};

struct xpipe {
	const char *buf;
	const struct xscan *scan;
	size_t nbatch;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t check;      /* the batch being checked; those before it are done */
	size_t cycle;      /* the checking thread reads batch k when k % cycle == cycle - 1 */
	bool stop;
	struct xbatch slot[XB_SLOTS]; /* batch k in slot k % XB_SLOTS */
	pthread_t th[XP_THREADS];
	size_t nth;
};

struct xworker {
	struct xpipe *p;
	size_t id;
};

/* A reader's own buffer for a batch's text. */
struct xtext {
	char *p;
	size_t cap;
};

/* Where the exported records come from: the records array of a tree of
 * the whole document, or the pipeline over the text's pieces. */
struct xsrc {
	json_t *arr;             /* whole document */
	struct xrec one;         /* whole document: the record handed out */
	struct xpipe *p;         /* pieces */
	struct xworker w[XP_THREADS];
	const char *buf;         /* pieces: the document's text */
	const struct xscan *scan;
	size_t n, i;             /* records; the next to hand out */
	bool unparsed;           /* a piece is not JSON */
	struct b64_cache b64;    /* the checking thread's */
	struct xtext text;       /* the checking thread's */
};

/* Who reads batch k: worker 0 .. nth-1, or nth, the checking thread. */
static size_t xreader(const struct xpipe *p, size_t k)
{
	size_t c = k % p->cycle;

	return c == p->cycle - 1 ? p->nth : c % p->nth;
}

static void xbatch_release(struct xbatch *b)
{
	for (size_t i = 0; i < b->n; i++)
		xrec_clear(&b->rec[i]);
	b->n = 0;
	json_decref(b->arr);
	b->arr = NULL;
}

/* Read batch k into its slot, freeing the batch it held. Its pieces are
 * parsed as one array, "[" the text from its first to its last piece "]":
 * the pieces with the commas between them, so it parses exactly when each
 * piece is one value (and one lexer buffer serves the batch, not one per
 * record). */
static void xbatch_read(struct xpipe *p, size_t k, struct b64_cache *c, struct xtext *t)
{
	struct xbatch *b = &p->slot[k % XB_SLOTS];
	size_t first = k * XB_RECS, n = p->scan->n - first, from, len;

	xbatch_release(b);
	if (n > XB_RECS)
		n = XB_RECS;
	from = p->scan->piece[first].off;
	len = p->scan->piece[first + n - 1].off + p->scan->piece[first + n - 1].len - from;
	if (len + 2 > t->cap) {
		char *np = realloc(t->p, len + 2);

		if (np == NULL)
			return; /* read as not parsing: the whole parse says what it is */
		t->p = np;
		t->cap = len + 2;
	}
	t->p[0] = '[';
	memcpy(t->p + 1, p->buf + from, len);
	t->p[len + 1] = ']';
	b->arr = json_loadb(t->p, len + 2, JSON_REJECT_DUPLICATES, NULL);
	if (json_array_size(b->arr) != n)
		return;
	for (size_t i = 0; i < n; i++) {
		xrec_read(&b->rec[i], json_incref(json_array_get(b->arr, i)), c);
		b->n++;
	}
}

static void *xpipe_worker(void *arg)
{
	struct xworker *w = arg;
	struct xpipe *p = w->p;
	struct b64_cache *c = calloc(1, sizeof(*c));
	struct xtext t = {0};

	for (size_t k = 0; k < p->nbatch; k++) {
		struct xbatch *b = &p->slot[k % XB_SLOTS];
		bool stop, skip;

		if (xreader(p, k) != w->id)
			continue;
		pthread_mutex_lock(&p->lock);
		/* the slot is free once the batch it held is checked */
		while (!p->stop && k >= p->check + XB_SLOTS)
			pthread_cond_wait(&p->cond, &p->lock);
		stop = p->stop;
		/* the checking thread got there first (this one was not
		 * running): it reads this batch itself */
		skip = b->claimed && b->batch == k;
		if (!stop && !skip) {
			b->claimed = true;
			b->batch = k;
			b->ready = false;
			b->mine = false;
		}
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
		if (skip)
			continue;
		/* without the memory of decoded hashes, every one is decoded */
		xbatch_read(p, k, c, &t);
		pthread_mutex_lock(&p->lock);
		b->ready = true;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	free(t.p);
	free(c);
	return NULL;
}

static void xsrc_pipe_stop(struct xsrc *s)
{
	struct xpipe *p = s->p;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (size_t i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	for (size_t i = 0; i < XB_SLOTS; i++)
		xbatch_release(&p->slot[i]);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
	s->p = NULL;
}

/* Start reading the pieces: one worker on two or three cores, three on
 * more, none on one. */
static int xsrc_pipe_start(struct xsrc *s, const char *buf, const struct xscan *scan)
{
	struct xpipe *p = calloc(1, sizeof(*p));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t want = ncpu >= 4 ? 3 : ncpu >= 2 ? 1 : 0;
	int rc = 0;

	if (p == NULL)
		return -ENOMEM;
	p->buf = buf;
	p->scan = scan;
	p->nbatch = (scan->n + XB_RECS - 1) / XB_RECS;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	s->p = p;
	s->buf = buf;
	s->scan = scan;
	s->n = scan->n;
	/* each reader's batches are fixed: all workers start, or none reads.
	 * The checking thread reads an equal share (its records are still in
	 * its cache when checked) */
	p->nth = want;
	p->cycle = want + 1;
	for (size_t i = 0; i < want && rc == 0; i++) {
		s->w[i] = (struct xworker){p, i};
		rc = -pthread_create(&p->th[i], NULL, xpipe_worker, &s->w[i]);
		if (rc < 0)
			p->nth = i;
	}
	if (rc < 0)
		xsrc_pipe_stop(s);
	return rc;
}

static void xsrc_free(struct xsrc *s)
{
	xsrc_pipe_stop(s);
	xrec_clear(&s->one);
	free(s->text.p);
}

/* The next record into *x: 1; 0 at the end; -EBADMSG with s->unparsed
 * when its piece is not JSON. *x stays valid until the next call. */
static int xsrc_next(struct xsrc *s, struct xrec **x)
{
	struct xpipe *p = s->p;
	struct xbatch *b;
	size_t k = s->i / XB_RECS, j = s->i % XB_RECS;

	if (s->i >= s->n)
		return 0;
	if (p == NULL) {
		xrec_clear(&s->one);
		xrec_read(&s->one, json_incref(json_array_get(s->arr, s->i)), &s->b64);
		s->i++;
		*x = &s->one;
		return 1;
	}
	b = &p->slot[k % XB_SLOTS];
	pthread_mutex_lock(&p->lock);
	if (j == 0 && k > 0) {
		struct xbatch *prev = &p->slot[(k - 1) % XB_SLOTS];

		/* the batch before is checked: its slot may be read into.
		 * This thread's own are freed now, still in its cache */
		if (prev->mine)
			xbatch_release(prev);
		p->check = k;
		pthread_cond_broadcast(&p->cond);
	}
	if (!(b->claimed && b->batch == k)) {
		/* this thread's share, or a worker's it has not begun (it is
		 * not running): read it now, just before its checks */
		b->claimed = true;
		b->batch = k;
		b->ready = false;
		b->mine = true;
		pthread_mutex_unlock(&p->lock);
		xbatch_read(p, k, &s->b64, &s->text);
		pthread_mutex_lock(&p->lock);
		b->ready = true;
	}
	while (!b->ready)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (j >= b->n) {
		s->unparsed = true;
		return -EBADMSG;
	}
	s->i++;
	*x = &b->rec[j];
	return 1;
}

/* After a failure: would the whole document have parsed? The records not
 * handed out yet are parsed (and dropped) one by one. */
static bool xsrc_rest_parses(struct xsrc *s)
{
	if (s->unparsed)
		return false;
	xsrc_pipe_stop(s);
	for (size_t i = s->i; i < s->n; i++) {
		const struct xspan *sp = &s->scan->piece[i];
		json_t *r = json_loadb(s->buf + sp->off, sp->len,
				       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);

		if (r == NULL)
			return false;
		json_decref(r);
	}
	return true;
}

static int export_records(struct vstate *v, struct xsrc *src, json_t *prev, json_t *next,
			  const char *tenant, const struct note_checkpoint *cp, struct xwin *w,
			  uint64_t *count)
{
	uint64_t last = 0, pseq = 0;
	size_t i;
	struct xrec *x, *one = NULL;
	struct chain_fields cf;
	struct xmemo *memo = NULL; /* every proof here is against cp */
	int64_t t;
	int rc;

	if (src->p == NULL && !json_is_array(src->arr))
		return cerr_set(v->err, -EBADMSG, "export: records is not an array");
	memo = calloc(1, sizeof(*memo));
	one = calloc(1, sizeof(*one));
	if (memo == NULL || one == NULL) {
		rc = cerr_set(v->err, -ENOMEM, "out of memory");
		goto out;
	}
	/* The record before the window anchors its start: it is older than
	 * since and the first exported record chains to it, so none between
	 * them can be left out. Without since the export must start at the
	 * tenant's first record. */
	if (prev != NULL && !json_is_null(prev)) {
		if (w->since == 0) {
			rc = cerr_set(v->err, -EBADMSG,
				      "export: a record before the window, but no since");
			goto out;
		}
		xrec_read(one, json_incref(prev), &src->b64);
		rc = xrec_check(v, one, "the record before the window", tenant, cp, memo, &pseq,
				&t);
		if (rc < 0)
			goto out;
		/* cf points into the body: checked before it goes */
		chain_fields_json(one->body, &cf);
		if (t >= w->since)
			rc = cerr_set(v->err, -EBADMSG,
				      "record %" PRIu64 ": given as the one before the window but "
				      "is not older than since", pseq);
		else
			rc = chain_check(v, tenant, &cf, pseq, one->leaf, true);
		xrec_clear(one);
		if (rc < 0)
			goto out;
		last = pseq;
	}
	rc = -EBADMSG;
	if (src->n != 0 && !w->has_first) {
		cerr_set(v->err, rc, "export: records but no first_tenant_seq");
		goto out;
	}
	if (src->n == 0 && w->has_first) {
		cerr_set(v->err, rc, "export: a first_tenant_seq but no records");
		goto out;
	}
	if (w->has_first && w->first_ts > 1 && pseq == 0) {
		cerr_set(v->err, rc,
			 w->since == 0
				 ? "tenant %s: the export starts at its record %" PRIu64 " (tenant_seq): "
				   "its oldest records are missing"
				 : "tenant %s: the export starts at its record %" PRIu64 " (tenant_seq) "
				   "without the record before its window: records at the start may be "
				   "missing", tenant, w->first_ts);
		goto out;
	}
	for (i = 0; (rc = xsrc_next(src, &x)) > 0; i++) {
		uint64_t seq;
		char what[48];

		snprintf(what, sizeof(what), "record #%zu", i + 1);
		rc = xrec_check(v, x, what, tenant, cp, memo, &seq, &t);
		if (rc < 0)
			goto out;
		if (seq <= last) {
			rc = cerr_set(v->err, -EBADMSG,
				      "record %" PRIu64 ": out of order (after %" PRIu64 ")", seq, last);
			goto out;
		}
		if ((w->since && t < w->since) || (w->until && t > w->until)) {
			rc = cerr_set(v->err, -EBADMSG,
				      "record %" PRIu64 ": its time is outside the export's window",
				      seq);
			goto out;
		}
		chain_fields_json(x->body, &cf);
		if (i == 0 && (!cf.ts_ok || cf.ts != w->first_ts))
			rc = cerr_set(v->err, -EBADMSG,
				      "tenant %s: the first exported record %" PRIu64 " is not "
				      "first_tenant_seq %" PRIu64, tenant, seq, w->first_ts);
		else
			/* no record may start anywhere: it chains to nothing
			 * (tenant_seq 1) or to the record before the window */
			rc = chain_check(v, tenant, &cf, seq, x->leaf, false);
		if (rc == 0) {
			json_t *jb = json_object_get(x->r, "body");

			rc = record_seen(v, seq, json_string_value(jb), json_string_length(jb),
					 x->body);
		}
		if (rc < 0)
			goto out;
		w->last_ts = cf.ts;
		last = seq;
	}
	if (rc < 0)
		goto out;
	if (w->has_first && i > 0 && w->last_ts != w->first_ts + i - 1) {
		rc = cerr_set(v->err, -EBADMSG, "tenant %s: the export's chain is not dense", tenant);
		goto out;
	}
	*count = i;
	/* The record after the window anchors its end: newer than until and
	 * chained to the last exported one, so none at the end was left out.
	 * (Without it the export ends at the checkpoint: records cut from its
	 * end show only against a later export.) */
	if (next != NULL && !json_is_null(next)) {
		uint64_t nseq;

		if (w->until == 0) {
			rc = cerr_set(v->err, -EBADMSG,
				      "export: a record after the window, but no until");
			goto out;
		}
		xrec_read(one, json_incref(next), &src->b64);
		rc = xrec_check(v, one, "the record after the window", tenant, cp, memo, &nseq,
				&t);
		if (rc < 0)
			goto out;
		chain_fields_json(one->body, &cf);
		if (nseq <= last || t <= w->until)
			rc = cerr_set(v->err, -EBADMSG,
				      "record %" PRIu64 ": given as the one after the window but is "
				      "not newer than until", nseq);
		else
			rc = chain_check(v, tenant, &cf, nseq, one->leaf, false);
		if (rc < 0)
			goto out;
		w->has_next = true;
	}
	rc = 0;
out:
	if (one != NULL)
		xrec_clear(one);
	free(one);
	free(memo);
	return rc;
}

/* "since"/"until": present, null or an RFC 3339 time. */
static int window_time(json_t *doc, const char *k, int64_t *out)
{
	json_t *j = json_object_get(doc, k);

	*out = 0;
	if (j == NULL)
		return -EINVAL;
	if (json_is_null(j))
		return 0;
	if (!json_is_string(j) || util_time_parse(json_string_value(j), out) < 0 || *out == 0)
		return -EINVAL;
	return 0;
}

/* The document without its records' elements: the text with the records
 * array cut down to "[]", parsed. NULL when it is not JSON, or the "[]"
 * is not where the scan says (then the whole document is parsed). */
static json_t *export_head(const char *buf, size_t len, const struct xscan *scan)
{
	size_t tail = scan->rec_off + scan->rec_len, n = scan->rec_off + 2 + (len - tail);
	char *h = malloc(n + 1);
	json_t *doc, *recs;

	if (h == NULL)
		return NULL;
	memcpy(h, buf, scan->rec_off);
	memcpy(h + scan->rec_off, "[]", 2);
	memcpy(h + scan->rec_off + 2, buf + tail, len - tail);
	h[n] = '\0';
	doc = json_loadb(h, n, JSON_REJECT_DUPLICATES, NULL);
	free(h);
	recs = json_object_get(doc, "records");
	if (!json_is_array(recs) || json_array_size(recs) != 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static int not_json(const char *path, const char *buf, size_t len, struct cerr *err)
{
	json_error_t jerr;
	json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);

	if (doc != NULL) {
		/* its pieces parse when it does (export_scan.c): one failed
		 * for want of memory */
		json_decref(doc);
		return cerr_set(err, -ENOMEM, "out of memory reading %s", path);
	}
	return cerr_set(err, -EBADMSG, "%s is not JSON (line %d: %s)", path, jerr.line, jerr.text);
}

/* whole: one tree of the whole document (the reference); otherwise the
 * records are parsed one at a time, beside the checks. Both give the same
 * result, message and statistics for every input; only the order in which
 * the work is done differs. A document that is not JSON is refused as such
 * before any check is reported; but on_record may have seen the records
 * before the piece that is not JSON (each of them verified). */
static int verify_export(const char *path, const struct audit_verify_opts *o,
			 struct audit_verify_stats *st, struct cerr *err, bool whole)
{
	struct note_key key;
	struct note_checkpoint cp, from, trusted;
	struct vstate v = {.err = err};
	struct audit_verify_stats dummy;
	struct xwin w = {0};
	struct xscan scan = {0};
	struct xsrc *src = NULL;
	json_t *doc = NULL, *cons, *jf, *jl;
	json_error_t jerr;
	const char *tenant, *fmt, *origin, *note;
	char *buf = NULL;
	size_t len = 0;
	uint64_t nrec = 0, ncp = 1;
	bool have_from = false, pieces = false;
	struct cerr e2 = {{0}};
	int rc;

	if (st == NULL)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	if (o->vkey == NULL)
		return cerr_set(err, -EINVAL, "an export is verified with the verifier key");
	rc = opts_load(o, &v, &key, &trusted, err);
	if (rc < 0)
		return rc;
	rc = util_read_file(path, EXPORT_MAX, &buf, &len);
	if (rc < 0)
		return cerr_set(err, rc == -ENOENT ? -ENOENT : -EIO, "cannot read %s: %s", path,
				strerror(-rc));
	rc = tenant_map_init(&v.tenants);
	if (rc < 0)
		goto out;
	src = calloc(1, sizeof(*src));
	if (src == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (!whole && audit_export_scan(buf, len, &scan) == 0) {
		doc = export_head(buf, len, &scan);
		/* no threads: the whole document on this one */
		pieces = doc != NULL && xsrc_pipe_start(src, buf, &scan) == 0;
		if (!pieces) {
			json_decref(doc);
			doc = NULL;
		}
	}
	if (doc == NULL) {
		doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
		if (doc == NULL) {
			rc = cerr_set(err, -EBADMSG, "%s is not JSON (line %d: %s)", path, jerr.line,
				      jerr.text);
			goto out;
		}
	}
	if (!pieces) {
		src->arr = json_object_get(doc, "records");
		src->n = json_array_size(src->arr);
	}
	fmt = json_string_value(json_object_get(doc, "format"));
	tenant = json_string_value(json_object_get(doc, "tenant"));
	origin = json_string_value(json_object_get(doc, "origin"));
	note = json_string_value(json_object_get(doc, "checkpoint"));
	if (fmt == NULL || strcmp(fmt, "custody-audit-export/1") != 0) {
		rc = cerr_set(err, -EBADMSG, "%s is not a custody-audit-export/1 document", path);
		goto out;
	}
	if (tenant == NULL || origin == NULL) {
		rc = cerr_set(err, -EBADMSG, "export: tenant or origin missing");
		goto out;
	}
	/* another log's export, or this log's with another key: a wrong key,
	 * not tampering */
	if (strcmp(origin, key.name) != 0 || (note != NULL && !note_names_key(note, &key))) {
		char n[NOTE_NAME_MAX], want[9], have[9] = "none";
		uint8_t id[4];
		bool has_id = false;

		if (note != NULL && note_signer(note, n, id, &has_id) == 0 && has_id)
			key_id_hex(id, have);
		key_id_hex(key.id, want);
		if (strcmp(origin, key.name) != 0 || has_id) {
			rc = cerr_set(err, -EKEYREJECTED,
				      "this key is not the key of this log: key id %s (%s), log "
				      "signed by %s (%s)", want, key.name, have, origin);
			goto out;
		}
	}
	rc = note_checkpoint_verify(note, &key, &cp, &e2);
	if (rc < 0) {
		rc = cerr_set(err, -EBADMSG, "export checkpoint: %s", e2.msg);
		goto out;
	}
	if (!json_is_integer(json_object_get(doc, "tree_size")) ||
	    (uint64_t)json_integer_value(json_object_get(doc, "tree_size")) != cp.size) {
		rc = cerr_set(err, -EBADMSG, "export: tree_size differs from its checkpoint");
		goto out;
	}
	if (window_time(doc, "since", &w.since) < 0 || window_time(doc, "until", &w.until) < 0) {
		rc = cerr_set(err, -EBADMSG, "export: since/until missing or not RFC 3339 times "
			      "(an export from an older custody? export again)");
		goto out;
	}
	jf = json_object_get(doc, "first_tenant_seq");
	if (jf == NULL || (!json_is_null(jf) && (!json_is_integer(jf) || json_integer_value(jf) < 1))) {
		rc = cerr_set(err, -EBADMSG, "export: first_tenant_seq missing or malformed");
		goto out;
	}
	w.has_first = json_is_integer(jf);
	w.first_ts = w.has_first ? (uint64_t)json_integer_value(jf) : 0;
	jl = json_object_get(doc, "last_tenant_seq");
	if (jl == NULL || json_is_integer(jl) != w.has_first ||
	    (!json_is_null(jl) && !json_is_integer(jl))) {
		rc = cerr_set(err, -EBADMSG, "export: last_tenant_seq missing or malformed");
		goto out;
	}
	rc = export_records(&v, src, json_object_get(doc, "previous"), json_object_get(doc, "next"),
			    tenant, &cp, &w, &nrec);
	st->records = nrec;
	if (rc == 0 && w.has_first && (uint64_t)json_integer_value(jl) != w.last_ts)
		rc = cerr_set(err, -EBADMSG, "tenant %s: the export says its last record is "
			      "tenant_seq %" PRIu64 ", its records end at %" PRIu64, tenant,
			      (uint64_t)json_integer_value(jl), w.last_ts);
	if (rc < 0)
		goto out;
	cons = json_object_get(doc, "consistency");
	if (cons != NULL && !json_is_null(cons)) {
		uint8_t(*proof)[MERKLE_HASH] = NULL;
		size_t n = 0;
		json_t *fs = json_object_get(cons, "from_size");

		rc = note_checkpoint_verify(json_string_value(json_object_get(cons, "from_checkpoint")),
					    &key, &from, &e2);
		if (rc < 0) {
			rc = cerr_set(err, -EBADMSG, "export: earlier checkpoint: %s", e2.msg);
			goto out;
		}
		if (!json_is_integer(fs) || (uint64_t)json_integer_value(fs) != from.size) {
			rc = cerr_set(err, -EBADMSG, "export: from_size differs from its checkpoint");
			goto out;
		}
		rc = hash_list(json_object_get(cons, "proof"), &proof, &n);
		if (rc < 0) {
			rc = cerr_set(err, rc == -ENOMEM ? rc : -EBADMSG,
				      "export: malformed consistency proof");
			goto out;
		}
		if (!merkle_verify_consistency(from.size, cp.size, from.root, cp.root,
					       (const uint8_t(*)[MERKLE_HASH])proof, n)) {
			free(proof);
			rc = cerr_set(err, -EBADMSG,
				      "checkpoint at size %" PRIu64 " is not a prefix of the one at size "
				      "%" PRIu64 " (consistency proof does not verify)", from.size, cp.size);
			goto out;
		}
		free(proof);
		have_from = true;
		ncp++;
	}
	if (v.trusted != NULL) {
		if (trusted.size > cp.size) {
			rc = cerr_set(err, -ENODATA,
				      "the export ends at size %" PRIu64 ", before the checkpoint you "
				      "trust (size %" PRIu64 "): it cannot show the log still holds "
				      "what that checkpoint signed; ask for a newer export", cp.size,
				      trusted.size);
			goto out;
		}
		if (trusted.size == cp.size) {
			if (sodium_memcmp(trusted.root, cp.root, MERKLE_HASH) != 0) {
				rc = cerr_set(err, -EBADMSG,
					      "the export's checkpoint at size %" PRIu64 " has another "
					      "root than the checkpoint you trust: the log was rewritten "
					      "or forked", cp.size);
				goto out;
			}
		} else if (!have_from || from.size != trusted.size) {
			rc = cerr_set(err, -ENODATA,
				      "the export holds no consistency proof from the checkpoint you "
				      "trust (size %" PRIu64 "): ask for an export made with "
				      "--from-checkpoint of it", trusted.size);
			goto out;
		} else if (sodium_memcmp(trusted.root, from.root, MERKLE_HASH) != 0) {
			rc = cerr_set(err, -EBADMSG,
				      "the export's earlier checkpoint at size %" PRIu64 " has another "
				      "root than the checkpoint you trust: the log was rewritten or "
				      "forked", trusted.size);
			goto out;
		}
	}
	st->checkpoints = ncp;
	st->tenants = 1;
	st->since_us = w.since;
	st->until_us = w.until;
	st->first_tenant_seq = w.first_ts;
	st->last_tenant_seq = w.last_ts;
	/* every exported record is in the signed tree (its inclusion proof) */
	st->records = nrec;
	stats_cover(st, &v, note, cp.size, cp.root);
	st->covered = nrec;
	st->uncovered = 0;
	st->uncovered_from = 0;
	rc = 0;
out:
	/* a failure before every piece was parsed: the whole document would
	 * not have parsed, and that is what it says */
	if (rc < 0 && rc != -ENOMEM && pieces && !xsrc_rest_parses(src)) {
		memset(st, 0, sizeof(*st));
		rc = not_json(path, buf, len, err);
	}
	if (rc == -ENOMEM)
		cerr_set(err, rc, "out of memory");
	if (src != NULL)
		xsrc_free(src);
	free(src);
	audit_export_scan_free(&scan);
	json_decref(doc);
	free(buf);
	tenant_map_free(&v.tenants);
	return rc;
}

int audit_verify_export_with(const char *path, const struct audit_verify_opts *o,
			     struct audit_verify_stats *st, struct cerr *err)
{
	return verify_export(path, o, st, err, false);
}

int audit_verify_export_whole(const char *path, const struct audit_verify_opts *o,
			      struct audit_verify_stats *st, struct cerr *err)
{
	return verify_export(path, o, st, err, true);
}

int audit_verify_export(const char *path, const char *vkey, struct audit_verify_stats *st,
			struct cerr *err)
{
	struct audit_verify_opts o = {.vkey = vkey};

	return audit_verify_export_with(path, &o, st, err);
}

/* audit_int.h — the audit store's private state, shared by its files. */
#ifndef CUSTODY_AUDIT_INT_H
#define CUSTODY_AUDIT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "audit.h"
#include "merkle.h"

#define AUDIT_SCHEMA_VERSION 1
#define AUDIT_QUEUE_MAX 65536          /* queued records beyond: -EAGAIN */
#define AUDIT_BODY_MAX (64 * 1024)     /* a canonical body larger: -EINVAL */
#define AUDIT_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
/* The tenants table and the tree row (the writer's derived state) are
 * written with every checkpoint, at close, and at least every this many
 * records; opening replays the records after them (store.c). Writing them
 * with every commit cost two more pages and statements per batch (~20%
 * of a single-record commit). */
#define AUDIT_DERIVED_EVERY 4096

/* tenant -> its chain head (the writer's copy of the `tenants` table) */
struct tenant_ent {
	struct tenant_ent *next;       /* hash chain */
	struct tenant_ent *next_dirty; /* changed since the tenants table was written */
	bool dirty;
	uint64_t seq;
	uint8_t leaf[MERKLE_HASH];
	char name[];
};

struct tenant_map {
	struct tenant_ent **b;
	size_t nb, count;
};

int tenant_map_init(struct tenant_map *m);
void tenant_map_free(struct tenant_map *m);
struct tenant_ent *tenant_map_get(struct tenant_map *m, const char *name);
/* Get or add (seq 0); NULL on -ENOMEM. */
struct tenant_ent *tenant_map_put(struct tenant_map *m, const char *name);

struct audit_waiter {
	pthread_cond_t cond;
	bool done;
	int rc;
	uint64_t seq;
	char *note;   /* checkpoint requests */
};

enum { AUDIT_PH_SEQ, AUDIT_PH_TPREV, AUDIT_PH_TSEQ, AUDIT_PH_TIME, AUDIT_PH_COUNT };
enum { AUDIT_COL_EVENT, AUDIT_COL_OUTCOME, AUDIT_COL_TENANT, AUDIT_COL_PRINCIPAL };

struct audit_item {
	struct audit_item *next;
	char *body0;             /* canonical body with placeholders */
	size_t len0;
	size_t ph_off[AUDIT_PH_COUNT]; /* where each placeholder member starts */
	char *strs;              /* the indexed columns' text */
	const char *col[4];      /* event, outcome, tenant, principal */
	bool has_tenant;
	uint64_t cookie;
	struct audit_waiter *w;  /* blocking append; NULL: async */
	int rc;                  /* set by the writer */
	uint64_t seq;
};

struct audit_cpreq {
	struct audit_cpreq *next;
	struct audit_waiter *w;  /* blocking; NULL: async, answered in the ring */
	uint64_t cookie;         /* async */
};

struct audit {
	char *path;
	bool read_only;
	unsigned wal_prefill_frames;
	sqlite3 *db;                 /* writer connection, writer thread only */
	sqlite3 *rdb;                /* queries and exports */
	pthread_mutex_t rlock;       /* rdb */

	struct audit_signer signer;  /* copy; origin owned */
	struct audit_vkey wkeys[AUDIT_WITNESS_MAX]; /* audit_opts.witnesses */
	size_t n_wkeys;
	unsigned wquorum;
	bool has_signer;
	uint64_t cp_every;
	unsigned cp_interval_s;

	/* between appenders, the loop and the writer, under lock */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct audit_item *q_head, *q_tail;
	size_t q_len;
	struct audit_cpreq *cp_head, *cp_tail;
	bool stopping;
	struct audit_done *done;
	size_t done_head, done_len, done_cap; /* ring of async completions */
	size_t outstanding;           /* async appends not yet polled */
	bool batch_wakes;             /* audit_batch_wakes: the appender flushes */
	atomic_bool wake_due;         /* appended since the last audit_flush */
	int efd;
	pthread_t thread;
	bool thread_started;
	int close_rc;

	atomic_uint_fast64_t size;    /* committed records */
	atomic_uint_fast64_t cp_size; /* the newest signed checkpoint's size */
	atomic_bool writable;
	atomic_int fail_rc;           /* why not writable */

	/* writer thread only */
	bool gone;                    /* the file was removed or replaced */
	struct merkle_range range;
	struct tenant_map tenants;
	struct tenant_ent *dirty;     /* heads newer than the tenants table */
	uint64_t derived_size;        /* the tree row's size (records covered) */
	uint64_t last_cp_size;
	bool have_cp;
	int64_t last_cp_ms;
	int64_t last_time_us;
	int wal_pages;                /* frames in the WAL (wal_hook) */
	int fold_asked;               /* wal_pages at the last fold request */
	/* fold.c: the WAL folded into the file on its own thread/connection */
	sqlite3 *fdb;
	pthread_t fold_thread;
	pthread_mutex_t fold_lock;
	pthread_cond_t fold_wake;
	bool fold_init, fold_started, fold_wanted, fold_stop;
	atomic_bool fold_busy;        /* a fold is under way */
	atomic_int fold_behind;       /* frames it left unfolded last time; -1: none yet */
	int64_t retry_ms, retry_at_ms;
	dev_t dev;
	ino_t ino;
	int wal_fd;                   /* opened by us, only to watch nlink */
	sqlite3_stmt *st_event, *st_tenant, *st_range, *st_cp, *st_probe;
	/* prepared once: sqlite3_exec parses (and allocates) at every commit */
	sqlite3_stmt *st_begin, *st_commit;
	char *body_buf;               /* reused for every body */
	size_t body_cap;

	/* record.c */
	char ph[AUDIT_PH_COUNT][40];
	char ph_member[AUDIT_PH_COUNT][64];
	size_t ph_member_len[AUDIT_PH_COUNT];
};

/* store.c */
int audit_db_open(const char *path, bool read_only, bool create, sqlite3 **out, struct cerr *err);
int audit_sqlite_rc(int src);
int audit_state_load(struct audit *a, struct cerr *err);
int audit_exec(sqlite3 *db, const char *sql);

/* record.c */
void audit_placeholders_init(struct audit *a);
/* Validate and serialise fields (ownership taken in every case).
 * 0, -EINVAL, -ENOMEM. */
int audit_item_new(struct audit *a, json_t *fields, struct audit_item **out);
void audit_item_free(struct audit_item *it);
/* The indexed columns (event, outcome, tenant, principal; NULL: none)
 * copied into one allocation, it->strs, with it->col pointing in. */
int audit_item_copy_columns(struct audit_item *it, const char *const s[4]);
/* The same from a member list (fields.c; nothing owned). */
int audit_item_from_fields(struct audit *a, const struct audit_fields *f,
			   struct audit_item **out);
/* Where body0's placeholder members start (it->ph_off). 0 or -EINVAL. */
int audit_item_find_placeholders(const struct audit *a, struct audit_item *it);
/* The final body into *buf (grown as needed). 0, -EINVAL, -ENOMEM. */
int audit_body_splice(const struct audit *a, const struct audit_item *it, uint64_t seq,
		      const char *time, uint64_t tenant_seq, const char *tenant_prev_hex,
		      char **buf, size_t *cap, size_t *len_out);

/* writer.c */
void *audit_writer_main(void *arg);
/* fold.c */
int audit_fold_start(struct audit *a, struct cerr *err);
void audit_fold_request(struct audit *a);
void audit_fold_stop(struct audit *a);

/* cosig.c, for export (the caller holds rlock): the newest checkpoint with
 * the configured witness quorum, cosignatures appended (-ENOENT: none);
 * and *note (the stored checkpoint at size) with its stored cosignature
 * lines appended. */
int audit_cosig_witnessed_db(struct audit *a, uint64_t *size, char **note);
int audit_cosig_attach(sqlite3 *db, uint64_t size, char **note);

/* checkpoint lookup shared by export: newest stored (size, note) */
int audit_newest_checkpoint(sqlite3 *db, uint64_t *size, char **note);

/* Leaves 1..size from db (the read connection), checked dense: an array
 * of size hashes in *out (free it). -ENOMEM, -EIO, -EBADMSG (a gap or a
 * leaf of the wrong size). Used by exports and witness consistency proofs. */
int audit_load_leaves(sqlite3 *db, uint64_t size, uint8_t (**out)[MERKLE_HASH]);

/* export_scan.c: where an export's records array and its elements lie.
 * Nesting deeper than this inside the records is left to the whole parse
 * (jansson allows 2048 levels; an element parsed alone would have two
 * more than inside the document). */
#define XSCAN_DEPTH 64

struct xspan {
	size_t off, len;
};

struct xscan {
	size_t rec_off, rec_len; /* the records array, '[' to ']' */
	struct xspan *piece;     /* the text between its separators, in order */
	size_t n;
};

/* Find the value of the top-level key "records" (spelled without escapes)
 * in buf and the text of each of its elements: the bytes between '[', each
 * ',' at the array's level and ']'. Strings are told apart and brackets
 * counted, nothing else is checked. Sound because of what the caller
 * checks after it: if jansson parses buf with the records array replaced
 * by "[]" (and finds "records" an empty array there) and parses each
 * piece as exactly one value, then buf is valid JSON whose tree is that
 * one with the pieces' trees as the records; the reverse holds too (for
 * valid JSON this scan is exact). 0; -EINVAL: not an object with such an
 * array, or nested deeper than XSCAN_DEPTH (parse the whole document);
 * -ENOMEM. */
int audit_export_scan(const char *buf, size_t len, struct xscan *out);
void audit_export_scan_free(struct xscan *s);

/* verify.c: audit_verify_export_with without the record-at-a-time read:
 * one jansson tree of the whole document, on one thread. The reference the
 * fast path is compared with (unit test, fuzz target). */
int audit_verify_export_whole(const char *path, const struct audit_verify_opts *o,
			      struct audit_verify_stats *st, struct cerr *err)
	__attribute__((warn_unused_result));

#endif

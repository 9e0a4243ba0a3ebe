/* audit.h — custody's append-only, signed audit store (SQLite).
 *
 * One Merkle tree (RFC 6962 / RFC 9162) over every record; each record's
 * body is canonical JSON (sorted keys, compact) stored exactly as hashed.
 * A dedicated writer thread group-commits appends (one transaction, one
 * sync per batch) and signals completions on a file descriptor that the
 * broker's event loop watches, so a reply leaves only once its record is
 * durable. Knows nothing of sockets or HTTP.
 *
 * Errors: 0 or negative errno. -EIO (or -ENOSPC) from appends means the
 * store cannot write: the caller must fail closed (audit_unavailable).
 * Verification: -EBADMSG means tampered (the cerr names the first record
 * that does not match), -EIO / -ENOENT means cannot read.
 */
#ifndef CUSTODY_AUDIT_H
#define CUSTODY_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "util.h"

struct audit;
struct audit_vkey;

struct audit_signer {
	const char *origin;          /* checkpoint origin line and note key name */
	uint8_t public_key[32];      /* Ed25519 */
	/* 0 or -errno; same shape as vault_audit_sign */
	int (*sign)(void *ctx, const uint8_t *msg, size_t len, uint8_t sig[static 64]);
	void *ctx;
};

struct audit_opts {
	uint64_t checkpoint_every;       /* records; 0: not by count */
	unsigned checkpoint_interval_s;  /* 0: not by time */
	const struct audit_signer *signer; /* NULL: no checkpoints are made */
	bool read_only;                  /* query/verify/export only; no writer thread */
	unsigned wal_prefill_frames;     /* write a new WAL out to this many frames
					  * (zeros) at open; 0: no (see store.c) */
	/* witnesses (audit.witnesses, type 0x04 keys, copied): exports end at
	 * the newest checkpoint carrying witness_quorum valid cosignatures by
	 * them (0: all of them); none: at the newest checkpoint */
	const struct audit_vkey *witnesses;
	size_t n_witnesses;              /* at most AUDIT_WITNESS_MAX */
	unsigned witness_quorum;
};

/* Open (creating when absent and not read_only) the store at path. */
int audit_open(const char *path, const struct audit_opts *o, struct audit **out,
	       struct cerr *err) __attribute__((warn_unused_result));
/* Drain pending appends, write a final checkpoint (when signing), stop the
 * writer, close. Returns the first error met. */
int audit_close(struct audit *a);

/* Queue one record. fields: a JSON object of the record's fields (event,
 * outcome, principal, peer, tenant, grant, scope, cache, token_sha256,
 * token_uti, client_request_id, expires_at, error, purpose, request_id,
 * actor, ... — any of them, null or absent when not relevant); ownership
 * is taken in every case. The store adds seq, time, tenant_seq and
 * tenant_prev. "event" (string) is required; "tenant", "principal" and
 * "outcome" fill the indexed columns. Returns 0 once queued (the result
 * comes through audit_poll), -EIO/-ENOSPC while the store cannot write,
 * -EINVAL for a malformed fields object, -EAGAIN when 65536 completions
 * are already outstanding (queued or not yet polled).
 * The body is serialised on the caller's thread; the store's own members
 * overwrite any the caller set. A record whose canonical body exceeds
 * 64 KiB completes with -EINVAL. */
int audit_append_async(struct audit *a, json_t *fields, uint64_t cookie);

/* v (an object or array) as canonical JSON: exactly the bytes of
 * json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII), the
 * encoding record bodies are hashed in, several times faster. Malloc'd,
 * NUL-terminated, length in *len (may be NULL); NULL on bad UTF-8, a
 * cycle or no memory. */
char *audit_canonical_json(json_t *v, size_t *len);
/* The same without sorting: json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII)
 * bytes, keys in insertion order (the broker's replies). */
char *audit_json_compact(json_t *v, size_t *len);

/* JSON text written piece by piece into a growing buffer, with the same
 * encoding as audit_canonical_json / audit_json_compact (strings escaped
 * as jansson's JSON_ENSURE_ASCII does). For replies and records built
 * without a tree. Each call: 0, -ENOMEM, -EINVAL (a string that is not
 * UTF-8; a value the encoder does not write, such as a real). */
struct audit_jbuf {
	char *p;
	size_t len, cap;
};
int audit_jbuf_raw(struct audit_jbuf *b, const char *s, size_t n);
int audit_jbuf_string(struct audit_jbuf *b, const char *s, size_t n);
int audit_jbuf_int(struct audit_jbuf *b, int64_t v);
/* v as JSON text: sorted keys (canonical) or insertion order. */
int audit_jbuf_value(struct audit_jbuf *b, json_t *v, bool sort);
/* The text, NUL-terminated and malloc'd (b is emptied); NULL: no memory. */
char *audit_jbuf_finish(struct audit_jbuf *b, size_t *len);
void audit_jbuf_free(struct audit_jbuf *b);
/* The canonical order of two keys (jansson's: memcmp, then shorter). */
int audit_key_cmp(const char *x, size_t xl, const char *y, size_t yl);

/* ---- records without a tree --------------------------------------------
 * The busiest records (a token from the cache, thousands a second) as a
 * flat list of members: no allocation per member, and the canonical body
 * is written straight from the list, byte for byte what
 * audit_append_async writes for the equivalent object (checked by
 * tests/unit/test_audit_canon.c). Values are borrowed: they must live
 * until audit_append_fields_async returns. A key set twice, one of the
 * store's own (seq, time, tenant_seq, tenant_prev), more than
 * AUDIT_FIELDS_MAX members or a string that is not UTF-8 make the append
 * fail with -EINVAL. */
#define AUDIT_FIELDS_MAX 32
struct audit_field {
	const char *key;
	const char *str;  /* a string (NUL-terminated), or */
	json_t *json;     /* any JSON value (borrowed), or */
	const char *raw;  /* canonical JSON text, written as it is, or */
	size_t raw_len;
	int64_t num;      /* an integer when all are NULL and is_num, else null */
	bool is_num;
};
struct audit_fields {
	struct audit_field f[AUDIT_FIELDS_MAX];
	size_t n;
	bool overflow;
};
/* str NULL: null */
void audit_fields_str(struct audit_fields *f, const char *key, const char *str);
void audit_fields_int(struct audit_fields *f, const char *key, int64_t v);
/* v NULL: null */
void audit_fields_json(struct audit_fields *f, const char *key, json_t *v);
/* text: an object or array exactly as audit_canonical_json wrote it (a
 * value serialised once and carried by many records); not checked. */
void audit_fields_raw(struct audit_fields *f, const char *key, const char *text, size_t len);
/* audit_append_async for a member list (nothing to take ownership of). */
int audit_append_fields_async(struct audit *a, const struct audit_fields *f, uint64_t cookie);

/* Batched wakes: from this call on, async appends do not wake the writer
 * one by one; the caller calls audit_flush() after each run of appends
 * (the broker: once per loop iteration, before it waits), so the records
 * of one run reach the writer together and its commit starts with all of
 * them instead of with the first. Call from the appending thread. */
void audit_batch_wakes(struct audit *a);
void audit_flush(struct audit *a);

/* Readable (EPOLLIN) whenever completions are waiting. */
int audit_event_fd(const struct audit *a);

struct audit_done {
	uint64_t cookie;
	int rc;          /* 0 durable; -EIO/-ENOSPC not written (fail closed) */
	uint64_t seq;    /* when rc == 0 (a checkpoint's: the tree size it signs) */
	bool checkpoint; /* the answer to audit_checkpoint_async, not a record */
	char *note;      /* checkpoint, rc == 0: the signed note (malloc'd: the
			  * poller frees it); NULL otherwise */
};
/* Drain up to max completions; returns how many were written to out. */
size_t audit_poll(struct audit *a, struct audit_done *out, size_t max);

/* Blocking append: returns once the record is durable (or failed). Must
 * not be mixed with async appends that share a cookie space; it uses its
 * own wait. */
int audit_append(struct audit *a, json_t *fields, uint64_t *seq);

/* Make and store a signed checkpoint of the current tree now, durably
 * (the stored one when nothing was appended since). *note_out (may be
 * NULL): malloc'd signed-note text. -ENOKEY without a signer, -EROFS on a
 * read-only store, -EIO/-ENOSPC while the store cannot write, or the
 * signer's error. */
int audit_checkpoint(struct audit *a, char **note_out, uint64_t *size_out);
/* The same without waiting: the answer comes through audit_poll as a
 * completion with cookie, checkpoint set, seq the size and note the text
 * (so an event loop never blocks on the signing). Its place among the
 * record completions is not by cookie: after the records written with it.
 * 0 queued, or what audit_checkpoint refuses with at once, -ENOMEM, or
 * -EAGAIN when 65536 completions are outstanding. */
int audit_checkpoint_async(struct audit *a, uint64_t cookie);

/* Records committed so far (the tree size) and the writer's health.
 * After a write error the writer retries by itself (backoff up to 1 s) and
 * audit_writable turns true again once a probe write commits; a database
 * or WAL file removed or replaced while open is never written again
 * (those records would be lost): restart once the file is back. */
uint64_t audit_size(struct audit *a);
bool audit_writable(struct audit *a);

/* ---- reading ---------------------------------------------------------- */

struct audit_filter {
	const char *tenant, *principal, *event, *outcome; /* NULL: any */
	int64_t since_us, until_us;   /* 0: unbounded */
	uint64_t after_seq;           /* only seq > after_seq (ascending order) */
	uint64_t limit;               /* 0: no limit */
	bool descending;              /* newest first */
};

/* Stream matching records to cb (body is the stored canonical JSON, not
 * NUL-terminated beyond len... it is NUL-terminated for convenience). A
 * non-zero cb return stops and is returned. Uses its own read connection,
 * so it never waits for the writer. */
int audit_query(struct audit *a, const struct audit_filter *f,
		int (*cb)(void *ctx, uint64_t seq, const char *body, size_t len), void *ctx);

/* A filter's event and outcome must be values custody writes or the store
 * holds: 0, or -EINVAL with err naming the accepted values (-EIO). */
int audit_filter_check(struct audit *a, const struct audit_filter *f, struct cerr *err)
	__attribute__((warn_unused_result));
/* The tenant id the records carry for tenant (an id with records, or the
 * tenant_name of a grant-import record, case-insensitive), from the store
 * alone; *id malloc'd. -ENOENT (err lists the tenants the store knows),
 * -EEXIST (a name of several tenants), -EIO, -ENOMEM. */
int audit_tenant_resolve(struct audit *a, const char *tenant, char **id, struct cerr *err)
	__attribute__((warn_unused_result));

/* Tenant export (format: audit/EXPORT.md): the tenant's records
 * in [since, until], each with an inclusion proof against the newest
 * signed checkpoint, that checkpoint, and a consistency proof from
 * from_checkpoint (a signed note the customer kept; NULL: none). Written
 * to out as one JSON document. */
int audit_export(struct audit *a, const char *tenant, int64_t since_us, int64_t until_us,
		 const char *from_checkpoint, FILE *out, struct cerr *err)
	__attribute__((warn_unused_result));

#define AUDIT_VERIFY_NOTE_MAX 16384  /* a checkpoint note kept in the result */

/* What to verify against. */
struct audit_verify_opts {
	/* the verifier key "<origin>+<hex>+<base64>"; NULL: hashes and
	 * chains only, no signature, nothing counts as covered */
	const char *vkey;
	/* the text of a signed checkpoint note the user trusts (kept from an
	 * earlier verification or export), or NULL: the log must hold exactly
	 * the tree it signed (the root at its size must match) */
	const char *checkpoint;
	/* Each record, in seq order, once its own checks passed (leaf hash,
	 * inclusion proof, tenant chain): custody audit report builds its page
	 * from these alone. body: the stored bytes, NUL-terminated, valid
	 * during the call; parsed: the body as the verifier parsed it (exports;
	 * borrowed: json_incref to keep it) or NULL (databases, read with
	 * SQLite). A record handed over is not proven yet: only the result
	 * says the whole file held. Returns 0 or a negative errno, which stops
	 * the verification and is returned (-EBADMSG becomes -EIO: a caller's
	 * failure never reads as tampering). NULL: nobody watches. */
	int (*on_record)(void *ctx, uint64_t seq, const char *body, size_t len, json_t *parsed);
	void *ctx;
};

/* The result, filled as far as verification got (records and tenants
 * count what was checked before a mismatch). */
struct audit_verify_stats {
	uint64_t records;
	uint64_t checkpoints;      /* signed checkpoints verified */
	uint64_t tenants;
	/* Records 1..covered are under a verified signed checkpoint (the
	 * newest stored one, or the trusted one when it is larger); the
	 * uncovered ones from seq uncovered_from on are not, and anyone who
	 * could write the file could have rewritten them. */
	uint64_t covered;
	uint64_t uncovered;
	uint64_t uncovered_from;   /* 0 when uncovered is 0 */
	/* the newest verified checkpoint (have_cp false: none) */
	bool have_cp;
	uint64_t cp_size;
	uint8_t cp_root[32];
	char cp_key_id[9];         /* 8 lowercase hex digits */
	char cp_note[AUDIT_VERIFY_NOTE_MAX]; /* its text; "" when longer than that */
	/* opts.checkpoint matched the log at this size */
	bool trusted;
	uint64_t trusted_size;
	/* exports: the window the export states, and the tenant chain it
	 * holds (0: unbounded / none) */
	int64_t since_us, until_us;
	uint64_t first_tenant_seq, last_tenant_seq;
};

/* Verify a database file offline (opened read-only), or an export file
 * with only the verifier key. Results:
 *   0              verified; st->uncovered records (if any) are not under
 *                  a signed checkpoint yet (a running broker signs every
 *                  checkpoint_every records / checkpoint_interval_s)
 *   -EBADMSG       tampered: err names the first record or checkpoint that
 *                  does not match (also: opts.checkpoint does not match)
 *   -EKEYREJECTED  the key is not the key of this log (another origin or
 *                  key id signed it); err names both
 *   -ENODATA       not verified, nothing shown tampered: records exist but
 *                  no signed checkpoint covers any of them, or an export
 *                  cannot be checked against opts.checkpoint
 *   -EINVAL        a malformed key or opts.checkpoint
 *   -EIO/-ENOENT   cannot read */
int audit_verify_db_with(const char *path, const struct audit_verify_opts *o,
			 struct audit_verify_stats *st, struct cerr *err)
	__attribute__((warn_unused_result));
int audit_verify_export_with(const char *path, const struct audit_verify_opts *o,
			     struct audit_verify_stats *st, struct cerr *err)
	__attribute__((warn_unused_result));
/* The same with only a key (NULL for the database: hashes and chains). */
int audit_verify_db(const char *path, const char *vkey, struct audit_verify_stats *st,
		    struct cerr *err) __attribute__((warn_unused_result));
int audit_verify_export(const char *path, const char *vkey, struct audit_verify_stats *st,
			struct cerr *err) __attribute__((warn_unused_result));

/* The newest signed checkpoint's size (0: none yet); records beyond it are
 * not covered by a signature yet. */
uint64_t audit_checkpoint_size(struct audit *a);

/* The verifier key for a signer: "<origin>+<hex key id>+base64(0x01 ||
 * public key)" (C2SP signed-note form), malloc'd into *out. 0, -EINVAL
 * (origin not a valid key name), -ENOMEM. */
int audit_vkey(const char *origin, const uint8_t public_key[static 32], char **out);

/* ---- C2SP signed notes, cosignatures and witnesses (cosig.c) -----------
 *
 * A cosignature (c2sp.org/tlog-cosignature, Ed25519 "cosignature/v1") is a
 * note signature line "— <witness name> base64(key id(4) || timestamp(8,
 * big-endian) || Ed25519 sig(64))" over "cosignature/v1\ntime <secs>\n"
 * followed by the checkpoint's body; key id = SHA-256(name || 0x0A || 0x04
 * || public key)[:4]. Stored in the audit database's `cosignatures` table
 * (size, witness, key_id, time, line, received) beside the checkpoint it
 * signs; exports carry them as extra signature lines of the note.
 */

#define AUDIT_KEY_NAME_MAX 256
#define AUDIT_NOTE_MAX (64 * 1024)   /* a longer signed note is refused */
#define AUDIT_NOTE_SIGS_MAX 64       /* more signature lines are refused */
#define AUDIT_WITNESS_MAX 16         /* witnesses one check can name */
#define AUDIT_SIG_TYPE_ED25519 0x01
#define AUDIT_SIG_TYPE_COSIG_V1 0x04

/* A verifier key "<name>+<hex key id>+base64(type || public key)". */
struct audit_vkey {
	char name[AUDIT_KEY_NAME_MAX];
	uint8_t type;                /* AUDIT_SIG_TYPE_* */
	uint8_t id[4];
	uint8_t pk[32];
};

/* Parse a verifier key of the given type (0: either). 0 or -EINVAL (err
 * says which part is wrong). */
int audit_vkey_parse(const char *vkey, uint8_t type, struct audit_vkey *k, struct cerr *err)
	__attribute__((warn_unused_result));
/* Format a verifier key of the type, malloc'd. 0, -EINVAL, -ENOMEM. */
int audit_vkey_format_type(const char *name, uint8_t type, const uint8_t pk[static 32],
			   char **out);

/* A parsed checkpoint note; pointers into the text given to the parser. */
struct audit_note_sig {
	const char *line;            /* "— name base64...", no newline */
	size_t line_len;
	const char *name;
	size_t name_len;
	uint8_t raw[128];            /* decoded signature: key id || ... */
	size_t raw_len;
};

struct audit_note {
	const char *text;
	size_t len;
	size_t body_len;             /* signed text: up to its last '\n' before the blank line */
	char origin[AUDIT_KEY_NAME_MAX];
	uint64_t size;
	uint8_t root[32];
	size_t nsigs;
	struct audit_note_sig sig[AUDIT_NOTE_SIGS_MAX];
};

/* Parse a checkpoint note (c2sp.org/tlog-checkpoint, signed-note): body of
 * origin, size, base64 root and optional extension lines; a blank line;
 * one or more signature lines; UTF-8, no control characters but '\n',
 * at most AUDIT_NOTE_MAX bytes, ends with '\n'. No signature is checked.
 * 0 or -EBADMSG (err says what is wrong). */
int audit_note_parse(const char *text, size_t len, struct audit_note *n, struct cerr *err)
	__attribute__((warn_unused_result));
/* Check the note's signatures by k (type 0x01: the log's signature over
 * the body; 0x04: a cosignature/v1, its timestamp into *time when not
 * NULL). 0 one verifies; -ENOENT no line has k's name and key id;
 * -EBADMSG a line of k's does not verify (err says so). */
int audit_note_verify_sig(const struct audit_note *n, const struct audit_vkey *k,
			  uint64_t *time, struct cerr *err) __attribute__((warn_unused_result));
/* The same, also giving the index in n->sig of the line that verifies. */
int audit_note_find_sig(const struct audit_note *n, const struct audit_vkey *k, uint64_t *time,
			size_t *index, struct cerr *err) __attribute__((warn_unused_result));

/* Sign the checkpoint body (body_len bytes) as cosigner (name, Ed25519
 * secret key sk) at time t: *line malloc'd "— name base64(...)\n".
 * 0, -EINVAL, -ENOMEM. */
int audit_cosig_sign(const char *name, const uint8_t sk[static 64], const char *body,
		     size_t body_len, uint64_t t, char **line);

/* A witness check: the note's cosignatures by each of the keys. */
struct audit_witness_check {
	uint64_t size;               /* the checkpoint's tree size */
	unsigned valid;              /* keys with a valid cosignature */
	struct {
		int rc;              /* 0 valid, -ENOENT none, -EBADMSG does not verify,
				      * -ERANGE timestamp in the future */
		uint64_t time;       /* cosignature time (when rc is 0 or -ERANGE) */
	} w[AUDIT_WITNESS_MAX];
};
/* Check note's cosignatures by keys[0..n) at now_s (a timestamp later
 * than now_s + 60 counts as future). 0 (see out), or -EBADMSG when the
 * note itself does not parse, -EINVAL when n > AUDIT_WITNESS_MAX. */
int audit_witness_check_note(const char *note, const struct audit_vkey *keys, size_t n,
			     int64_t now_s, struct audit_witness_check *out, struct cerr *err)
	__attribute__((warn_unused_result));
/* One line naming what each failing key lacks ("w1: no cosignature; w2:
 * timestamp in the future"), into buf. */
void audit_witness_check_describe(const struct audit_witness_check *c,
				  const struct audit_vkey *keys, size_t n, char *buf, size_t cap);

/* Store one verified cosignature line of witness k for the stored
 * checkpoint at size (its own connection; may wait for the writer's
 * lock, so call it off the event loop). Idempotent. 0, -ENOENT (no such
 * checkpoint), -EBADMSG (the line does not verify over that checkpoint),
 * -EIO. */
int audit_cosig_store(struct audit *a, uint64_t size, const struct audit_vkey *k,
		      const char *line, size_t line_len, struct cerr *err)
	__attribute__((warn_unused_result));
/* The stored checkpoint at size with every stored cosignature line
 * appended (malloc'd). 0, -ENOENT, -EIO, -ENOMEM. */
int audit_checkpoint_cosigned(struct audit *a, uint64_t size, char **note);
/* The largest stored checkpoint size k has cosigned (0: none). */
int audit_cosig_last_size(struct audit *a, const struct audit_vkey *k, uint64_t *size);
/* The newest stored checkpoint with valid cosignatures by at least quorum
 * of keys[0..n), cosignature lines appended; -ENOENT when none has. */
int audit_checkpoint_witnessed(struct audit *a, const struct audit_vkey *keys, size_t n,
			       unsigned quorum, uint64_t *size, char **note);
/* The RFC 6962 consistency proof from size m to size n (0 < m <= n, both
 * within the tree) as base64 hashes, one per line each ending '\n'
 * (malloc'd; "" when m == n). -EINVAL, -EBADMSG, -EIO, -ENOMEM. */
int audit_consistency_lines(struct audit *a, uint64_t m, uint64_t n, char **lines);
/* RFC 6962 consistency check of two tree heads (wraps the verifier). */
bool audit_consistency_ok(uint64_t size1, uint64_t size2, const uint8_t root1[static 32],
			  const uint8_t root2[static 32], const uint8_t (*proof)[32], size_t count)
	__attribute__((warn_unused_result));

/* The stored checkpoint note at size (malloc'd, no cosignatures). 0,
 * -ENOENT, -EIO, -ENOMEM. */
int audit_checkpoint_note(struct audit *a, uint64_t size, char **note);

/* The witness alarm (a conflict custodyd shows until an officer
 * acknowledges it), kept in the audit database (table witness_alarm) so it
 * survives a restart; detail is JSON text. Own connection, like
 * audit_cosig_store: call off the event loop. get: -ENOENT when none. */
int audit_alarm_put(struct audit *a, const char *detail);
int audit_alarm_get(struct audit *a, char **detail);
int audit_alarm_clear(struct audit *a);

/* ---- shipping to a SIEM (ship.c, DESIGN §11.2) ----------------------------- */

struct audit_shipdb;
/* One item handed to a sink: a record, or the checkpoint at size seq
 * (which follows record seq). Pointers valid during the callback. */
struct audit_ship_item {
	uint64_t seq;
	bool checkpoint;
	const char *time;            /* RFC 3339 as stored */
	const char *event, *tenant;  /* records; tenant may be NULL */
	uint8_t leaf[32];            /* records */
	const char *body;            /* the stored body, or the checkpoint note */
	size_t len;
};
/* A shipper's own connections to the store (one thread each). */
int audit_shipdb_open(struct audit *a, const char *sink, struct audit_shipdb **out,
		      struct cerr *err);
void audit_shipdb_close(struct audit_shipdb *s);
/* The sink's cursor: last record seq and checkpoint size handed over
 * (0, 0 for a new sink). 0 or -EIO. */
int audit_shipdb_cursor(struct audit_shipdb *s, uint64_t *seq, uint64_t *cp);
int audit_shipdb_advance(struct audit_shipdb *s, uint64_t seq, uint64_t cp);
/* Up to max records after after_seq, each followed by the checkpoints at
 * its size (and first any checkpoint above after_cp at or below
 * after_seq), to cb in order; a non-zero cb return stops and is returned. */
int audit_shipdb_read(struct audit_shipdb *s, uint64_t after_seq, uint64_t after_cp, size_t max,
		      int (*cb)(void *ctx, const struct audit_ship_item *it), void *ctx);

/* audit verify --witness: the database's newest checkpoint carrying the
 * quorum of valid cosignatures by keys (out describes it, or the newest
 * checkpoint's shortfall when none does: then -EBADMSG with err naming
 * what failed). Opens path read-only. */
int audit_verify_db_witnessed(const char *path, const struct audit_vkey *keys, size_t n,
			      unsigned quorum, int64_t now_s, struct audit_witness_check *out,
			      struct cerr *err) __attribute__((warn_unused_result));
/* The same for an export: its checkpoint (the one its proofs end at)
 * must carry the quorum. */
int audit_verify_export_witnessed(const char *path, const struct audit_vkey *keys, size_t n,
				  unsigned quorum, int64_t now_s, struct audit_witness_check *out,
				  struct cerr *err) __attribute__((warn_unused_result));

#endif

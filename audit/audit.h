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

/* Readable (EPOLLIN) whenever completions are waiting. */
int audit_event_fd(const struct audit *a);

struct audit_done {
	uint64_t cookie;
	int rc;          /* 0 durable; -EIO/-ENOSPC not written (fail closed) */
	uint64_t seq;    /* when rc == 0 */
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

/* Tenant export (format: audit/EXPORT.md): the tenant's records
 * in [since, until], each with an inclusion proof against the newest
 * signed checkpoint, that checkpoint, and a consistency proof from
 * from_checkpoint (a signed note the customer kept; NULL: none). Written
 * to out as one JSON document. */
int audit_export(struct audit *a, const char *tenant, int64_t since_us, int64_t until_us,
		 const char *from_checkpoint, FILE *out, struct cerr *err)
	__attribute__((warn_unused_result));

struct audit_verify_stats {
	uint64_t records;
	uint64_t checkpoints;
	uint64_t tenants;
};

/* Verify a database file offline (opened read-only). vkey: the verifier
 * key "<origin>+<hex>+<base64>"; NULL checks hashes and chains but no
 * signatures (the stats say so via checkpoints == 0 ... callers should
 * insist on a key). 0 ok, -EBADMSG tampered, -EIO/-ENOENT unreadable. */
int audit_verify_db(const char *path, const char *vkey, struct audit_verify_stats *st,
		    struct cerr *err) __attribute__((warn_unused_result));
/* Verify an export file offline with only the verifier key. */
int audit_verify_export(const char *path, const char *vkey, struct audit_verify_stats *st,
			struct cerr *err) __attribute__((warn_unused_result));

/* The verifier key for a signer: "<origin>+<hex key id>+base64(0x01 ||
 * public key)" (C2SP signed-note form), malloc'd into *out. 0, -EINVAL
 * (origin not a valid key name), -ENOMEM. */
int audit_vkey(const char *origin, const uint8_t public_key[static 32], char **out);

#endif

/* witness.h — a C2SP tlog-witness a customer runs on their own machine
 * (`custody witness`): its key, the logs it follows, the add-checkpoint
 * rule, and an HTTP/1.1 server (GNU libmicrohttpd) speaking it.
 *
 * State directory: witness.key (the Ed25519 seed, 0600) and witness.db
 * (SQLite, synchronous=FULL): meta(name, public key) and one row per
 * log: origin, its verifier key, the size, root and note of the newest
 * checkpoint cosigned, and when. An update is a compare-and-swap on the
 * old size inside one transaction, committed before the reply leaves, so
 * two racing requests cannot roll the log back and the witness never
 * cosigns a checkpoint inconsistent with one it already cosigned.
 *
 * Errors: 0 or negative errno with a one-line message in the cerr.
 */
#ifndef CUSTODY_WITNESS_H
#define CUSTODY_WITNESS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util.h"

#define WITNESS_REQUEST_MAX (128 * 1024) /* a larger add-checkpoint body: 413 */
#define WITNESS_PROOF_MAX 63             /* consistency proof lines (spec) */

struct witness;

/* Create DIR (0700) with a new key named name; *vkey (malloc'd) is its
 * verifier key "<name>+<hex id>+base64(0x04 || key)". -EEXIST when DIR
 * already holds a witness, -EINVAL for a bad name, -EIO. */
int witness_create(const char *dir, const char *name, char **vkey, struct cerr *err);
/* Open an existing state directory. -ENOENT when it holds no witness. */
int witness_open(const char *dir, struct witness **out, struct cerr *err);
void witness_close(struct witness *w);
/* The witness's name and verifier key (malloc'd). */
int witness_vkey(struct witness *w, char **out);
const char *witness_name(const struct witness *w);

/* Follow a log: its verifier key (type 0x01), the origin its checkpoints
 * carry (NULL: the key's name). -EEXIST when the origin is followed
 * already with another key, -EINVAL for a bad key. */
int witness_add_log(struct witness *w, const char *log_vkey, const char *origin, struct cerr *err);

/* {"name","vkey","logs":[{"origin","key","size","root","cosigned_at"}]} */
int witness_status(struct witness *w, json_t **out, struct cerr *err);

/* A parsed add-checkpoint request body (pointers into the body). */
struct witness_request {
	uint64_t old;
	size_t nproof;
	uint8_t proof[WITNESS_PROOF_MAX][32];
	const char *note;            /* the checkpoint: the rest of the body */
	size_t note_len;
};
/* "old N\n", up to 63 base64 hash lines, "\n", the checkpoint.
 * 0 or -EBADMSG (err says what is malformed). */
int witness_request_parse(const char *body, size_t len, struct witness_request *r,
			  struct cerr *err) __attribute__((warn_unused_result));

struct witness_reply {
	unsigned status;             /* 200, 400, 403, 404, 409, 422 (or 500) */
	const char *content_type;
	char *body;                  /* malloc'd */
	size_t len;
	char log[1024];              /* one line for the server's log */
};
/* Apply one add-checkpoint request (c2sp.org/tlog-witness) at time now_s:
 * verify, compare-and-swap the stored size, persist, cosign. Always fills
 * r (r->body NULL only on -ENOMEM); returns 0 or -ENOMEM. */
int witness_add_checkpoint(struct witness *w, const char *body, size_t len, int64_t now_s,
			   struct witness_reply *r);

/* Serve add-checkpoint on listen ("ADDR:PORT", port 0: any) until *stop
 * becomes non-zero; TLS when cert_file and key_file are given. Prints
 * "listening on ADDR:PORT" to stdout once accepting, one line per request
 * to stderr. */
int witness_serve(struct witness *w, const char *listen, const char *cert_file,
		  const char *key_file, volatile sig_atomic_t *stop, struct cerr *err);

#endif

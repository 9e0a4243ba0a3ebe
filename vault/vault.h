/* vault.h — custody's sealed credential store (LMDB + libsodium).
 *
 * The vault lives in `state_dir/vault/`. It holds a header (format version,
 * key-derivation parameters and salt, a key check value), the broker's key
 * pairs (X25519 for sealed grants, Ed25519 for audit checkpoints; secret
 * halves encrypted under the master key), the grants (XChaCha20-Poly1305
 * IETF, fresh nonce per write, associated data = format version || grant
 * id) and the persistent officer state (revocations, suspensions, lockdown).
 *
 * Errors: 0 or a negative errno (see util.h for custody's meanings) and,
 * where a struct cerr is taken, one line for a person. No message ever holds
 * a secret.
 */
#ifndef CUSTODY_VAULT_H
#define CUSTODY_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define VAULT_KEY_LEN 32
#define VAULT_KEY_ID_HEX 17    /* 16 lowercase hex chars + NUL */
#define GRANT_ID_LEN 40        /* "g_" + 32 lowercase hex + NUL, padded */
#define GRANT_FORMAT "custody-sealed-grant/1"

/* Where the master key comes from. Exactly one of the two is used:
 * key_file (raw 32 bytes, or base64 of them, surrounding white space
 * ignored; must be a regular file owned by the euid with no group/other
 * permission bits) or, when key_file is NULL, passphrase_file (same
 * ownership rules; Argon2id with the vault header's salt and parameters).
 * A relative path is looked up in $CREDENTIALS_DIRECTORY when that is set
 * and the file exists there. */
struct vault_key_source {
	const char *key_file;
	const char *passphrase_file;
};

struct vault_public {
	uint8_t seal_pk[32];                 /* X25519: customers seal grants to it */
	char seal_key_id[VAULT_KEY_ID_HEX];  /* hex of SHA-256(seal_pk)[0..8) */
	uint8_t sign_pk[32];                 /* Ed25519: verifies audit checkpoints */
};

struct vault;

/* Generate a new random master key and write it, base64, to path with mode
 * 0600 (refuses to overwrite: -EEXIST). */
int vault_key_file_create(const char *path, struct cerr *err)
	__attribute__((warn_unused_result));

/* Is there a vault in dir (its data file exists, whatever its state)? */
bool vault_exists(const char *dir);

/* Create a new vault in dir (created 0700 with parents) with fresh broker
 * keys. -EEXIST if a vault is already there (never overwritten). */
int vault_create(const char *dir, const struct vault_key_source *src, struct cerr *err)
	__attribute__((warn_unused_result));

/* Open the vault, taking an exclusive lock on it for the life of the handle
 * (-EBUSY if another process holds it). -ENOENT no vault, -EACCES unsafe key
 * file, -EKEYREJECTED wrong master key, -EBADMSG tampered header or keys. */
int vault_open(const char *dir, const struct vault_key_source *src, struct vault **out,
	       struct cerr *err) __attribute__((warn_unused_result));
void vault_close(struct vault *v);

/* Read the public keys without the master key and without the lock. */
int vault_read_public(const char *dir, struct vault_public *out, struct cerr *err)
	__attribute__((warn_unused_result));
const struct vault_public *vault_public_keys(const struct vault *v);

/* Ed25519-sign msg with the audit key. Matches audit_signer.sign. */
int vault_audit_sign(void *vault, const uint8_t *msg, size_t len, uint8_t sig[static 64]);

/* The verifier key in C2SP vkey form: "<origin>+<8 hex key id>+base64(0x01||pk)".
 * out must hold at least strlen(origin) + 64 bytes. */
int vault_vkey_format(const char *origin, const uint8_t sign_pk[static 32], char *out,
		      size_t outlen);

/* ---- grants ---------------------------------------------------------- */

enum grant_state { GRANT_PENDING, GRANT_ACTIVE, GRANT_EXPIRED, GRANT_REVOKED };

/* What the provider last said of a grant's credential (grant.import
 * --probe, or a token fetch). A grant whose credential failed is kept but
 * not preferred while another active grant of its tenant may work. */
enum grant_credential { GRANT_CRED_UNTRIED, GRANT_CRED_WORKS, GRANT_CRED_FAILED };

/* A grant's metadata. Never holds the client secret (see vault_grant_secret). */
struct grant {
	char id[GRANT_ID_LEN];
	char tenant_id[128];
	char tenant_name[128];    /* "" when the customer gave none */
	char token_endpoint[1024];
	char client_id[256];
	char **scopes;            /* at least one */
	size_t n_scopes;
	char **principals;        /* empty: any principal the MSSP's policy allows */
	size_t n_principals;
	int64_t not_before;       /* unix seconds; INT64_MIN when absent */
	int64_t not_after;        /* unix seconds; INT64_MAX when absent */
	int64_t imported_at;      /* unix seconds */
	int64_t imported_us;      /* the same instant in unix microseconds, so two
				   * grants imported within a second still have an
				   * order; 0 in records stored before it was kept */
	bool revoked;
	int64_t revoked_at;
	char revoked_by[128];
	char reason[512];
	enum grant_credential credential;
	int64_t credential_at;    /* unix seconds; 0 while untried */
	char credential_error[256]; /* why it failed, "" otherwise; never a secret */
};

void grant_free(struct grant *g);
struct grant *grant_dup(const struct grant *g);
enum grant_state grant_state(const struct grant *g, int64_t now_s);
const char *grant_state_name(enum grant_state s);   /* "pending", "active", ... */
const char *grant_credential_name(enum grant_credential c); /* "untried", "works", "failed" */
bool grant_has_scope(const struct grant *g, const char *scope);
bool grant_allows_principal(const struct grant *g, const char *principal);

/* Validate a grant JSON document (DESIGN §4). allowed_hosts, when not NULL,
 * is a NULL-terminated list the token_endpoint host must be on. On success
 * *out holds the metadata (id left empty) and, when secret_out is not NULL,
 * *secret_out a NUL-terminated copy of client_secret
 * (free with vault_secret_free). Errors name the field:
 * "not_after: not an RFC 3339 time". */
int grant_validate(const char *json, size_t len, const char *const *allowed_hosts,
		   struct grant **out, char **secret_out, struct cerr *err)
	__attribute__((warn_unused_result));

/* Does s have the form of a tenant id: a GUID, or a domain name with at
 * least two labels? A tenant_name must not (grant_validate refuses it),
 * and a policy entry of that form names a tenant by id only. */
bool vault_tenant_id_form(const char *s);

/* Customer side: validate grant_json (hosts not checked) and seal it to
 * seal_pk. *envelope_out: malloc'd one-line JSON envelope, newline ended. */
int grant_seal(const char *grant_json, size_t len, const uint8_t seal_pk[static 32],
	       char **envelope_out, struct cerr *err) __attribute__((warn_unused_result));

/* The grant id of a sealed envelope: "g_" + hex of SHA-256(sealed bytes)[0..16). */
int grant_id_of_envelope(const char *envelope, size_t len, char id[static GRANT_ID_LEN],
			 struct cerr *err) __attribute__((warn_unused_result));

/* Broker side: open, validate and store a sealed grant. Idempotent: the same
 * envelope again gives the stored grant and *already = true. -EBADMSG
 * tampered, -EKEYEXPIRED a new grant whose not_after has passed (not
 * stored; the message says when), -ENOKEY sealed for a different broker (message names the key
 * id), -EINVAL invalid grant (message names the field). *out: a copy of the
 * stored metadata. */
int vault_grant_import(struct vault *v, const char *envelope, size_t len,
		       const char *const *allowed_hosts, int64_t now_s, struct grant **out,
		       bool *already, struct cerr *err) __attribute__((warn_unused_result));

/* Record what the provider said of a grant's credential; the record is
 * rewritten (secret kept) durably before returning. error: why it failed
 * (NULL: ""; cut at 255 bytes). -ENOENT no grant, -EKEYREVOKED revoked
 * (nothing to record), -EINVAL error not UTF-8. */
int vault_grant_set_credential(struct vault *v, const char *id, enum grant_credential c,
			       const char *error, int64_t now_s) __attribute__((warn_unused_result));

/* -ENOENT when there is no such grant. */
int vault_grant_get(struct vault *v, const char *id, struct grant **out)
	__attribute__((warn_unused_result));

/* Call cb for every grant (revoked ones included), in id order. A non-zero
 * return from cb stops the walk and is returned. g is valid only during
 * the call (grant_dup to keep it). All records are read and authenticated
 * before the first call: -EBADMSG (no call made) when any is damaged; cb
 * may use the vault (revoke, secret). */
int vault_grant_foreach(struct vault *v, int (*cb)(void *ctx, const struct grant *g),
			void *ctx);

/* Decrypt a grant's client secret, NUL-ended; vault_secret_free wipes it.
 * -ENOENT no grant, -EKEYREVOKED revoked (its secret is gone), -EBADMSG. */
int vault_grant_secret(struct vault *v, const char *id, char **secret_out, size_t *len)
	__attribute__((warn_unused_result));
void vault_secret_free(char *secret);

/* Revoke: final. Rewrites the record without its secret, durably, before
 * returning. -ENOENT, -EALREADY already revoked. */
int vault_grant_revoke(struct vault *v, const char *id, const char *actor,
		       const char *reason, int64_t now_s, struct cerr *err)
	__attribute__((warn_unused_result));

/* ---- officer state (persistent, durable before return) --------------- */
/* Names are 1-255 bytes of UTF-8 without control characters; actor at most
 * 127 and reason at most 511 bytes (NULL means ""); -EINVAL otherwise.
 * Suspending a suspended principal replaces its actor, reason and time.
 * Readers return -EBADMSG for a damaged record. */

int vault_principal_suspend(struct vault *v, const char *name, const char *actor,
			    const char *reason, int64_t now_s);
/* -ENOENT when the principal was not suspended. */
int vault_principal_resume(struct vault *v, const char *name);
int vault_principal_foreach_suspended(struct vault *v,
				      int (*cb)(void *ctx, const char *name, const char *actor,
						const char *reason, int64_t at),
				      void *ctx);

int vault_lockdown_set(struct vault *v, bool on, const char *actor, const char *reason,
		       int64_t now_s);
/* actor/reason may be NULL when not wanted; sizes 128 and 512. */
int vault_lockdown_get(struct vault *v, bool *on, char *actor, char *reason, int64_t *at);

/* ---- maintenance ------------------------------------------------------ */

/* Re-encrypt every live record under a new master key and compact the
 * environment, so records revoked earlier cannot be recovered. Takes the
 * vault lock (-EBUSY while a broker runs). With src->key_file, a new random
 * key replaces that file (atomically, mode 0600); with a passphrase, the
 * new passphrase is read from new_passphrase_file. Crash-safe: either the
 * old key opens the old vault or the new key opens the new one. */
int vault_rekey(const char *dir, const struct vault_key_source *src,
		const char *new_passphrase_file, struct cerr *err)
	__attribute__((warn_unused_result));

#endif

/* vault_private.h — what the vault's own files share; not for other folders.
 *
 * On-disk layout (one LMDB environment in the vault directory, data.mdb and
 * lock.mdb, plus `lock`, the flock file that says who owns the vault):
 *
 *   meta   "header"  VAULT_HDR_LEN bytes in clear (see vault_header.c):
 *                    format, key-derivation parameters, public keys, a key
 *                    check value and a MAC over all of it
 *          "keys"    record: seal_sk (32) || sign_sk (64)
 *   grants <id>      record: grant record (see grant_record.c)
 *   state  "lockdown", "suspend/<name>"  record: small JSON objects
 *
 * A record is: version (1) || nonce (24) || XChaCha20-Poly1305 ciphertext,
 * with associated data version || kind || LMDB key, kind being the
 * database ('K', 'G', 'S'), so a record moved to another key or database
 * fails to authenticate.
 *
 * What this does not protect against, knowingly:
 *  - Rollback: an attacker who can write data.mdb can put back an older
 *    record for the same key (say, a grant from before its revocation) or
 *    an older copy of the whole file; nothing outside the file remembers
 *    what was current. The audit store records every revocation.
 *  - LMDB's own structure: LMDB keeps no checksums and trusts its pages.
 *    vault_open walks the tree first (lmdb_check.c) so that damage found
 *    there is an error, not a fault; that walk checks bounds, not every
 *    invariant LMDB relies on, and vault_read_public (no lock) checks
 *    only the meta pages. Record contents are always authenticated:
 *    damage never yields wrong data.
 *  - jansson's scratch copies of a grant's text while it is validated
 *    (see grant.c).
 */
#ifndef CUSTODY_VAULT_PRIVATE_H
#define CUSTODY_VAULT_PRIVATE_H

#include <lmdb.h>
#include <sodium.h>

#include "vault.h"

#define VAULT_FORMAT_VERSION 1
#define VAULT_HDR_LEN 176
#define VAULT_SALT_LEN 16
#define VAULT_REC_OVERHEAD (1 + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + \
			    crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define VAULT_MAX_RECORD (64 * 1024)
#define VAULT_MAPSIZE ((size_t)256 * 1024 * 1024)

#define VAULT_KDF_KEYFILE 1
#define VAULT_KDF_ARGON2ID 2

#define REC_KEYS 'K'
#define REC_GRANT 'G'
#define REC_STATE 'S'

/* Names inside the vault directory. */
#define VAULT_DATA "data.mdb"
#define VAULT_LMDB_LOCK "lock.mdb"
#define VAULT_LOCK "lock"
#define VAULT_REKEY_DIR "rekey.new"
#define VAULT_KEY_REKEY_SUFFIX ".rekey"

struct vault_header {
	uint8_t kdf;                 /* VAULT_KDF_* */
	uint32_t alg;                /* crypto_pwhash alg, 0 for a key file */
	uint64_t opslimit, memlimit; /* 0 for a key file */
	uint8_t salt[VAULT_SALT_LEN];
	uint8_t seal_pk[32];
	uint8_t sign_pk[32];
	uint8_t kcv[32];             /* key check value: subkey 3 of the master key */
	uint8_t mac[32];             /* keyed BLAKE2b of the bytes before it (subkey 2) */
};

/* Keys derived from the master key; the master key itself is wiped once
 * these exist. Lives in sodium_malloc memory. */
struct vault_subkeys {
	uint8_t rec[32];   /* record encryption */
	uint8_t mac[32];   /* header MAC */
	uint8_t kcv[32];   /* stored in the header to recognise the right key */
};

/* The long-lived secrets of an open vault: sodium_malloc, read-only after
 * open (vault_audit_sign reads them from the audit writer thread, so they
 * are never flipped to no-access while the vault is open). */
struct vault_secrets {
	uint8_t rec[32];
	uint8_t seal_sk[crypto_box_SECRETKEYBYTES];
	uint8_t sign_sk[crypto_sign_SECRETKEYBYTES];
};

struct vault {
	char *dir;
	int lock_fd;
	MDB_env *env;
	MDB_dbi db_meta, db_grants, db_state;
	struct vault_secrets *sec;
	struct vault_public pub;
};

/* vault_key.c */
int vault_key_path_resolve(const char *path, char **out);
/* The key file a rekey replaces (symlinks resolved) and where the new key
 * waits until the swap is complete (KEYFILE.rekey). */
int vault_key_rekey_paths(const char *key_file, char **kf, char **pending);
int vault_key_file_load(const char *path, uint8_t key[static 32], struct cerr *err);
int vault_passphrase_load(const char *path, char **pass, size_t *len, struct cerr *err);
int vault_master_from_source(const struct vault_key_source *src, const struct vault_header *h,
			     uint8_t master[static 32], struct cerr *err);
void vault_subkeys_derive(const uint8_t master[static 32], struct vault_subkeys *sk);
int vault_key_file_write_new(const char *path, const char *owner_like, uint8_t key[static 32],
			     struct cerr *err);

/* vault_header.c */
void vault_header_encode(const struct vault_header *h, const uint8_t mac_key[static 32],
			 uint8_t out[static VAULT_HDR_LEN]);
int vault_header_decode(const uint8_t *buf, size_t len, struct vault_header *h);
int vault_header_check_mac(const uint8_t buf[static VAULT_HDR_LEN],
			   const uint8_t mac_key[static 32]);
void vault_seal_key_id(const uint8_t pk[static 32], char id[static VAULT_KEY_ID_HEX]);

/* vault_record.c */
int vault_record_seal(const uint8_t key[static 32], char kind, const void *k, size_t klen,
		      const uint8_t *pt, size_t ptlen, uint8_t **out, size_t *outlen);
int vault_record_open(const uint8_t key[static 32], char kind, const void *k, size_t klen,
		      const uint8_t *ct, size_t ctlen, uint8_t **pt, size_t *ptlen);
void vault_plain_free(uint8_t *pt, size_t len);
int vault_mdb_errno(int mdb_rc);
int vault_env_open(const char *dir, bool rdonly, MDB_env **envp, MDB_dbi *meta,
		   MDB_dbi *grants, MDB_dbi *state);
/* Encrypt pt under the open vault's record key and put it at k in dbi,
 * committing durably. */
int vault_put(struct vault *v, MDB_dbi dbi, char kind, const char *k, const uint8_t *pt,
	      size_t ptlen, unsigned flags);
/* Get and decrypt; -ENOENT when absent. */
int vault_get(struct vault *v, MDB_dbi dbi, char kind, const char *k, uint8_t **pt,
	      size_t *ptlen);

/* lmdb_check.c: walk data.mdb's structure before LMDB maps it (call with
 * the vault lock held). 0, -EBADMSG, or an errno from reading. */
int vault_lmdb_check(const char *dir);

/* vault_lock.c */
int vault_lock_take(const char *dir, int *fd, struct cerr *err);

/* grant_record.c: the plaintext of a grant record is
 *   version (1) || secret length (u32 LE) || secret || metadata JSON
 * so reading metadata never runs the secret through a JSON parser. */
int grant_record_build(const struct grant *g, const char *secret, size_t slen, uint8_t **out,
		       size_t *outlen);
int grant_record_parse(const uint8_t *pt, size_t len, const char *id, struct grant **g,
		       const uint8_t **secret, size_t *slen);

/* grant.c */
struct grant *grant_new(void);

/* grant_seal.c: parse an envelope strictly; *sealed malloc'd. */
int grant_envelope_parse(const char *envelope, size_t len, char recipient[static VAULT_KEY_ID_HEX],
			 uint8_t **sealed, size_t *sealed_len, struct cerr *err);
void grant_id_of_sealed(const uint8_t *sealed, size_t len, char id[static GRANT_ID_LEN]);

#endif

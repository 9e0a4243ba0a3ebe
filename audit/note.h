/* note.h — C2SP signed notes carrying tlog-checkpoints, and verifier keys
 * (private to the audit library).
 *
 * Checkpoint note:  "<origin>\n<size>\n<base64 root>\n" "\n"
 *                   "— <key name> <base64(key id(4) || Ed25519 sig(64))>\n"
 * key id = SHA-256(key name || 0x0A || 0x01 || public key)[:4]
 * verifier key = "<key name>+<8 hex key id>+<base64(0x01 || public key)>"
 */
#ifndef CUSTODY_AUDIT_NOTE_H
#define CUSTODY_AUDIT_NOTE_H

#include <stdint.h>

#include "audit.h"

#define NOTE_NAME_MAX 256

struct note_key {
	char name[NOTE_NAME_MAX];
	uint8_t id[4];
	uint8_t pk[32];
};

struct note_checkpoint {
	uint64_t size;
	uint8_t root[32];
};

void note_key_id(const char *name, const uint8_t pk[static 32], uint8_t id[static 4]);
/* A key name: non-empty, at most NOTE_NAME_MAX-1 bytes, printable ASCII
 * without '+' or spaces. */
bool note_name_valid(const char *name);
/* Parse a verifier key. 0 or -EINVAL (the message says which part). */
int note_vkey_parse(const char *vkey, struct note_key *k, struct cerr *err)
	__attribute__((warn_unused_result));
/* Sign a checkpoint for (size, root) with s; *out malloc'd note text.
 * 0, -EINVAL (bad origin), -ENOMEM, or the signer's error. */
int note_checkpoint_sign(const struct audit_signer *s, uint64_t size, const uint8_t root[static 32],
			 char **out) __attribute__((warn_unused_result));
/* Parse a checkpoint note and verify its signature by k (whose name must
 * be the checkpoint's origin); k NULL: parse only, no signature check.
 * 0, or -EBADMSG with the reason in err. */
int note_checkpoint_verify(const char *note, const struct note_key *k, struct note_checkpoint *out,
			   struct cerr *err) __attribute__((warn_unused_result));

/* Who signed a note, without checking any signature: its origin (the
 * first line) and the key id of the first signature line in the origin's
 * name (*has_id false when there is none). Other signature lines (a
 * witness's cosignatures) are skipped. 0, or -EBADMSG when the note has no
 * origin line or signature block. */
int note_signer(const char *note, char origin[static NOTE_NAME_MAX], uint8_t id[static 4],
		bool *has_id);
/* True when the note is in k's name and has a signature line with k's key
 * id (the signature itself is not checked here). */
bool note_names_key(const char *note, const struct note_key *k);

/* "<name>+<hex id>+<base64(0x01 || pk)>", malloc'd. 0, -EINVAL, -ENOMEM. */
int note_vkey_format(const char *name, const uint8_t pk[static 32], char **out);

#endif

/* fuzz_cosig_note.c — the signed-note / cosignature parser (cosig.c):
 * audit_note_parse on arbitrary bytes, then every signature check a
 * witness or verifier runs on what parsed (a log key 0x01 and a witness
 * key 0x04 whose cosignatures are in the seeds), and the quorum check.
 * Invariants: no crash or leak; what parsed has a body ending in '\n'
 * inside the text and at most AUDIT_NOTE_SIGS_MAX signatures. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the keys make_cosig_seeds.py signed the seeds with (seed bytes 3 and 7) */
static struct audit_vkey keys[2];
static bool ready;

static void setup(void)
{
	uint8_t seed[32], pk[32], sk[64];
	char *v = NULL;

	if (sodium_init() < 0)
		abort();
	memset(seed, 3, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	if (audit_vkey_format_type("custody.test/audit", AUDIT_SIG_TYPE_ED25519, pk, &v) < 0 ||
	    audit_vkey_parse(v, 0, &keys[0], NULL) < 0)
		abort();
	free(v);
	memset(seed, 7, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	if (audit_vkey_format_type("witness.test/w1", AUDIT_SIG_TYPE_COSIG_V1, pk, &v) < 0 ||
	    audit_vkey_parse(v, 0, &keys[1], NULL) < 0)
		abort();
	free(v);
	ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct audit_note n;
	struct audit_witness_check c;
	uint64_t t = 0;
	char *s;

	if (!ready)
		setup();
	if (audit_note_parse((const char *)data, size, &n, NULL) == 0) {
		if (n.body_len == 0 || n.body_len >= size || data[n.body_len - 1] != '\n' ||
		    n.nsigs == 0 || n.nsigs > AUDIT_NOTE_SIGS_MAX)
			abort();
		(void)!audit_note_verify_sig(&n, &keys[0], NULL, NULL);
		(void)!audit_note_verify_sig(&n, &keys[1], &t, NULL);
	}
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (audit_witness_check_note(s, keys + 1, 1, 1700000000, &c, NULL) == 0 && c.valid > 1)
		abort();
	free(s);
	return 0;
}

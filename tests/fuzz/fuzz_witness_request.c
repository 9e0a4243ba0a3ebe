/* fuzz_witness_request.c — the add-checkpoint request body a witness
 * accepts from the network (witness/request.c), then what the witness does
 * with what parsed: the checkpoint through audit_note_parse, its signature
 * by the test log key, and the consistency proof against the seeds' stored
 * tree head (size 5 of make_cosig_seeds.py). Invariants: no crash or
 * leak; a parsed request has at most 63 proof lines and its checkpoint
 * lies inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "audit.h"
#include "witness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct audit_vkey logkey;
static uint8_t root5[32];
static bool ready;

static void setup(void)
{
	uint8_t seed[32], pk[32], sk[64];
	const char *r5 = "q1uiQNXF9m1XxD/D6UjYe+ylGdTaiwKLbFgv2nu/mbQ=";
	char *v = NULL;

	if (sodium_init() < 0)
		abort();
	memset(seed, 3, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	if (audit_vkey_format_type("custody.test/audit", AUDIT_SIG_TYPE_ED25519, pk, &v) < 0 ||
	    audit_vkey_parse(v, 0, &logkey, NULL) < 0)
		abort();
	free(v);
	if (sodium_base642bin(root5, 32, r5, strlen(r5), NULL, NULL, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0)
		abort();
	ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct witness_request r;
	static struct audit_note n;

	if (!ready)
		setup();
	if (witness_request_parse((const char *)data, size, &r, NULL) != 0)
		return 0;
	if (r.nproof > WITNESS_PROOF_MAX || r.note < (const char *)data ||
	    r.note + r.note_len != (const char *)data + size)
		abort();
	if (audit_note_parse(r.note, r.note_len, &n, NULL) != 0)
		return 0;
	(void)!audit_note_verify_sig(&n, &logkey, NULL, NULL);
	if (r.old > 0 && r.old <= n.size)
		(void)!audit_consistency_ok(r.old, n.size, root5, n.root,
					    (const uint8_t(*)[32])r.proof, r.nproof);
	return 0;
}

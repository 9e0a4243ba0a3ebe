/* vault_header.c — the vault header: format, key derivation parameters,
 * public keys, key check value, MAC. Fixed layout, little-endian:
 *
 *     0  magic "custodyV"        8
 *     8  format version          1
 *     9  kdf (1 key file, 2 Argon2id)
 *    10  reserved, zero          2
 *    12  pwhash alg              4
 *    16  opslimit                8
 *    24  memlimit                8
 *    32  salt                   16
 *    48  seal_pk (X25519)       32
 *    80  sign_pk (Ed25519)      32
 *   112  key check value        32
 *   144  MAC of bytes 0..143    32
 *
 * The public keys are in clear so `custody keys` works without the master
 * key; the MAC makes any change to them fail the next vault_open. */
#include "vault_private.h"

#include <errno.h>
#include <string.h>

static const uint8_t magic[8] = {'c', 'u', 's', 't', 'o', 'd', 'y', 'V'};

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void header_mac(const uint8_t *buf, const uint8_t key[static 32], uint8_t out[static 32])
{
	crypto_generichash(out, 32, buf, 144, key, 32);
}

void vault_header_encode(const struct vault_header *h, const uint8_t mac_key[static 32],
			 uint8_t out[static VAULT_HDR_LEN])
{
	memset(out, 0, VAULT_HDR_LEN);
	memcpy(out, magic, 8);
	out[8] = VAULT_FORMAT_VERSION;
	out[9] = h->kdf;
	put_le(out + 12, h->alg, 4);
	put_le(out + 16, h->opslimit, 8);
	put_le(out + 24, h->memlimit, 8);
	memcpy(out + 32, h->salt, VAULT_SALT_LEN);
	memcpy(out + 48, h->seal_pk, 32);
	memcpy(out + 80, h->sign_pk, 32);
	memcpy(out + 112, h->kcv, 32);
	header_mac(out, mac_key, out + 144);
}

/* Structure only: the MAC needs the key (vault_header_check_mac). Bounds on
 * the KDF parameters keep a tampered header from making us allocate
 * gigabytes or spin for minutes before "wrong master key". */
int vault_header_decode(const uint8_t *buf, size_t len, struct vault_header *h)
{
	struct vault_header t;

	if (len != VAULT_HDR_LEN || memcmp(buf, magic, 8) != 0)
		return -EBADMSG;
	if (buf[8] != VAULT_FORMAT_VERSION)
		return -EPROTONOSUPPORT;
	if (buf[10] != 0 || buf[11] != 0)
		return -EBADMSG;
	memset(&t, 0, sizeof(t));
	t.kdf = buf[9];
	t.alg = (uint32_t)get_le(buf + 12, 4);
	t.opslimit = get_le(buf + 16, 8);
	t.memlimit = get_le(buf + 24, 8);
	memcpy(t.salt, buf + 32, VAULT_SALT_LEN);
	memcpy(t.seal_pk, buf + 48, 32);
	memcpy(t.sign_pk, buf + 80, 32);
	memcpy(t.kcv, buf + 112, 32);
	memcpy(t.mac, buf + 144, 32);
	if (t.kdf == VAULT_KDF_KEYFILE) {
		if (t.alg != 0 || t.opslimit != 0 || t.memlimit != 0)
			return -EBADMSG;
	} else if (t.kdf == VAULT_KDF_ARGON2ID) {
		if (t.alg != (uint32_t)crypto_pwhash_ALG_ARGON2ID13 ||
		    t.opslimit < crypto_pwhash_OPSLIMIT_MIN ||
		    t.opslimit > crypto_pwhash_OPSLIMIT_SENSITIVE ||
		    t.memlimit < crypto_pwhash_MEMLIMIT_MIN ||
		    t.memlimit > crypto_pwhash_MEMLIMIT_SENSITIVE)
			return -EBADMSG;
	} else {
		return -EBADMSG;
	}
	*h = t;
	return 0;
}

int vault_header_check_mac(const uint8_t buf[static VAULT_HDR_LEN],
			   const uint8_t mac_key[static 32])
{
	uint8_t want[32];
	int rc;

	header_mac(buf, mac_key, want);
	rc = sodium_memcmp(want, buf + 144, 32) == 0 ? 0 : -EBADMSG;
	sodium_memzero(want, sizeof(want));
	return rc;
}

void vault_seal_key_id(const uint8_t pk[static 32], char id[static VAULT_KEY_ID_HEX])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, pk, 32);
	util_hex(h, 8, id);
}

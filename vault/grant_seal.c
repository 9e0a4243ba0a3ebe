/* grant_seal.c — the sealed grant envelope (DESIGN §4):
 *   {"format":"custody-sealed-grant/1","recipient":"<key id>","sealed":"<base64>"}
 * sealed = crypto_box_seal(grant JSON, broker's X25519 key). */
#include "vault_private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define ENVELOPE_MAX (64 * 1024)
/* The grant JSON is at most 64 KiB; its sealed form a little more. */
#define SEALED_MAX (64 * 1024 + crypto_box_SEALBYTES)

int grant_seal(const char *grant_json, size_t len, const uint8_t seal_pk[static 32],
	       char **envelope_out, struct cerr *err)
{
	struct grant *g = NULL;
	uint8_t *sealed = NULL;
	char *b64 = NULL, *env = NULL;
	char kid[VAULT_KEY_ID_HEX];
	size_t slen, b64len;
	int rc;

	if (sodium_init() < 0)
		return cerr_set(err, -EIO, "libsodium failed to initialise");
	/* The customer seals without knowing the broker's host list. */
	rc = grant_validate(grant_json, len, NULL, &g, NULL, err);
	if (rc < 0)
		return rc;
	slen = len + crypto_box_SEALBYTES;
	sealed = malloc(slen);
	b64len = sodium_base64_ENCODED_LEN(slen, sodium_base64_VARIANT_ORIGINAL);
	b64 = malloc(b64len);
	if (sealed == NULL || b64 == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (crypto_box_seal(sealed, (const uint8_t *)grant_json, len, seal_pk) != 0) {
		rc = cerr_set(err, -EINVAL, "cannot seal to this broker key (is it a valid X25519 public key?)");
		goto out;
	}
	sodium_bin2base64(b64, b64len, sealed, slen, sodium_base64_VARIANT_ORIGINAL);
	vault_seal_key_id(seal_pk, kid);
	if (asprintf(&env, "{\"format\":\"%s\",\"recipient\":\"%s\",\"sealed\":\"%s\"}\n",
		     GRANT_FORMAT, kid, b64) < 0) {
		env = NULL;
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	*envelope_out = env;
	rc = 0;
out:
	free(b64);
	free(sealed);
	grant_free(g);
	return rc;
}

static bool is_key_id(const char *s)
{
	if (strlen(s) != VAULT_KEY_ID_HEX - 1)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

int grant_envelope_parse(const char *envelope, size_t len, char recipient[static VAULT_KEY_ID_HEX],
			 uint8_t **sealed, size_t *sealed_len, struct cerr *err)
{
	json_t *root = NULL, *fmt, *rcp, *sl;
	json_error_t jerr;
	const char *b64, *b64_end = NULL;
	uint8_t *bin = NULL;
	size_t blen = 0, b64len;
	int rc;

	if (len > ENVELOPE_MAX)
		return cerr_set(err, -EBADMSG, "sealed grant: larger than %d bytes", ENVELOPE_MAX);
	root = json_loadb(envelope, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return cerr_set(err, -EBADMSG,
				"sealed grant: not a custody sealed grant (invalid JSON at line %d, column %d)",
				jerr.line, jerr.column);
	fmt = json_object_get(root, "format");
	rcp = json_object_get(root, "recipient");
	sl = json_object_get(root, "sealed");
	if (!json_is_object(root) || json_object_size(root) != 3 || !json_is_string(fmt) ||
	    !json_is_string(rcp) || !json_is_string(sl)) {
		rc = cerr_set(err, -EBADMSG,
			      "sealed grant: not a custody sealed grant (expected exactly format, recipient, sealed)");
		goto out;
	}
	if (strcmp(json_string_value(fmt), GRANT_FORMAT) != 0) {
		rc = cerr_set(err, -EBADMSG, "sealed grant: format is not %s", GRANT_FORMAT);
		goto out;
	}
	if (!is_key_id(json_string_value(rcp))) {
		rc = cerr_set(err, -EBADMSG, "sealed grant: recipient is not a key id (16 hex digits)");
		goto out;
	}
	b64 = json_string_value(sl);
	b64len = json_string_length(sl);
	bin = malloc(b64len / 4 * 3 + 3);
	if (bin == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (b64len == 0 ||
	    sodium_base642bin(bin, b64len / 4 * 3 + 3, b64, b64len, NULL, &blen, &b64_end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    b64_end != b64 + b64len || blen <= crypto_box_SEALBYTES || blen > SEALED_MAX) {
		rc = cerr_set(err, -EBADMSG, "sealed grant: sealed is not valid base64 of a sealed box");
		goto out;
	}
	memcpy(recipient, json_string_value(rcp), VAULT_KEY_ID_HEX);
	*sealed = bin;
	*sealed_len = blen;
	bin = NULL;
	rc = 0;
out:
	free(bin);
	json_decref(root);
	return rc;
}

void grant_id_of_sealed(const uint8_t *sealed, size_t len, char id[static GRANT_ID_LEN])
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, sealed, len);
	memset(id, 0, GRANT_ID_LEN);
	id[0] = 'g';
	id[1] = '_';
	util_hex(h, 16, id + 2);
}

int grant_id_of_envelope(const char *envelope, size_t len, char id[static GRANT_ID_LEN],
			 struct cerr *err)
{
	char rcp[VAULT_KEY_ID_HEX];
	uint8_t *sealed = NULL;
	size_t slen = 0;
	int rc;

	if (sodium_init() < 0)
		return cerr_set(err, -EIO, "libsodium failed to initialise");
	rc = grant_envelope_parse(envelope, len, rcp, &sealed, &slen, err);
	if (rc < 0)
		return rc;
	grant_id_of_sealed(sealed, slen, id);
	free(sealed);
	return 0;
}

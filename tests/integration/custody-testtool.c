/* custody-testtool.c — makes state for the integration tests without the
 * CLI: a vault with a key file, and sealed grants.
 *
 *   custody-testtool init VAULT_DIR KEY_FILE
 *   custody-testtool seal VAULT_DIR GRANT_JSON_FILE   (envelope on stdout)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util.h"
#include "vault.h"

int main(int argc, char **argv)
{
	struct cerr err = {0};
	int rc;

	if (sodium_init() < 0)
		return 1;
	if (argc == 4 && strcmp(argv[1], "init") == 0) {
		struct vault_key_source src = {.key_file = argv[3]};

		rc = vault_key_file_create(argv[3], &err);
		if (rc < 0 && rc != -EEXIST) {
			fprintf(stderr, "testtool: %s\n", err.msg);
			return 1;
		}
		rc = vault_create(argv[2], &src, &err);
		if (rc < 0) {
			fprintf(stderr, "testtool: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "seal") == 0) {
		struct vault_public pub;
		char *json = NULL, *env = NULL;
		size_t len;

		rc = vault_read_public(argv[2], &pub, &err);
		if (rc < 0) {
			fprintf(stderr, "testtool: %s\n", err.msg);
			return 1;
		}
		rc = util_read_file(argv[3], 1 << 20, &json, &len);
		if (rc < 0) {
			fprintf(stderr, "testtool: cannot read %s: %s\n", argv[3], strerror(-rc));
			return 1;
		}
		rc = grant_seal(json, len, pub.seal_pk, &env, &err);
		sodium_memzero(json, len);
		free(json);
		if (rc < 0) {
			fprintf(stderr, "testtool: %s\n", err.msg);
			return 1;
		}
		fputs(env, stdout);
		free(env);
		return 0;
	}
	/* seal-raw: what a hostile customer's own sealer makes (no checks) */
	if (argc == 4 && strcmp(argv[1], "seal-raw") == 0) {
		struct vault_public pub;
		char *json = NULL;
		uint8_t *sealed;
		char *b64, kid[VAULT_KEY_ID_HEX];
		size_t len, slen, b64len;

		rc = vault_read_public(argv[2], &pub, &err);
		if (rc < 0 || util_read_file(argv[3], 1 << 20, &json, &len) < 0) {
			fprintf(stderr, "testtool: cannot read the vault or the grant\n");
			return 1;
		}
		slen = len + crypto_box_SEALBYTES;
		b64len = sodium_base64_ENCODED_LEN(slen, sodium_base64_VARIANT_ORIGINAL);
		sealed = malloc(slen);
		b64 = malloc(b64len);
		if (sealed == NULL || b64 == NULL ||
		    crypto_box_seal(sealed, (const uint8_t *)json, len, pub.seal_pk) != 0) {
			fprintf(stderr, "testtool: cannot seal\n");
			return 1;
		}
		sodium_bin2base64(b64, b64len, sealed, slen, sodium_base64_VARIANT_ORIGINAL);
		snprintf(kid, sizeof(kid), "%s", pub.seal_key_id);
		printf("{\"format\":\"custody-sealed-grant/1\",\"recipient\":\"%s\",\"sealed\":\"%s\"}\n",
		       kid, b64);
		sodium_memzero(json, len);
		free(json);
		free(sealed);
		free(b64);
		return 0;
	}
	fprintf(stderr, "usage: custody-testtool init VAULT_DIR KEY_FILE | seal|seal-raw VAULT_DIR GRANT_JSON\n");
	return 2;
}

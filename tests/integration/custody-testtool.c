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
	fprintf(stderr, "usage: custody-testtool init VAULT_DIR KEY_FILE | seal VAULT_DIR GRANT_JSON\n");
	return 2;
}

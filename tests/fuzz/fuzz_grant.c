/* fuzz_grant.c — grant_validate on arbitrary bytes: the customer-written
 * grant JSON the broker parses after opening a sealed envelope. Checks
 * that no input crashes it, that outputs are set only on success, and that
 * the client secret never shows up in an error message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (sodium_init() < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = {"login.microsoftonline.com", "127.0.0.1", NULL};
	struct grant *g = NULL;
	char *secret = NULL;
	struct cerr err = {{0}};
	/* An exact-size copy, so a read past the end is caught by ASan. */
	char *buf = malloc(size ? size : 1);
	int rc;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	rc = grant_validate(buf, size, hosts, &g, &secret, &err);
	if (rc == 0) {
		if (g == NULL || secret == NULL || g->n_scopes == 0)
			abort();
		(void)grant_state(g, 1800000000);
		(void)grant_has_scope(g, "https://api.securitycenter.microsoft.com/.default");
		(void)grant_allows_principal(g, "siem-connector");
		struct grant *d = grant_dup(g);
		grant_free(d);
		/* a secret long enough to be unambiguous must not be echoed */
		if (strlen(secret) >= 8 && strstr(err.msg, secret) != NULL)
			abort();
		vault_secret_free(secret);
		grant_free(g);
	} else {
		if (g != NULL || secret != NULL)
			abort(); /* outputs set only on success */
		if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL)
			abort();
	}
	free(buf);
	return 0;
}

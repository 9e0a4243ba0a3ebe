/* fuzz_grant_import.c — vault_grant_import against a real vault made once
 * in a temporary directory.
 *
 * The first input byte picks the mode:
 *   even: the rest is a sealed-grant envelope as it arrives from outside
 *         (JSON framing, base64, crypto_box_seal opening, recipient check);
 *   odd:  the rest is grant JSON, sealed here to the vault's own key and
 *         imported, so the fuzzer reaches the validation and storage that
 *         follow a successful opening (it cannot forge a seal itself).
 * An import that succeeds must be idempotent: importing the same envelope
 * again reports already = true with the same grant id. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "util.h"
#include "vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct vault *vault;
static struct vault_public pub;
/* How often each outcome came up: printed at exit, so a run shows it
 * reached past the seal (imports that succeed) and not only refusals. */
static unsigned long n_imported, n_refused;
static char tmpdir[] = "/tmp/custody-fuzz-import-XXXXXX";

static void cleanup(void)
{
	char cmd[128];

	fprintf(stderr, "fuzz-grant_import: %lu imported, %lu refused\n", n_imported, n_refused);
	vault_close(vault);
	vault = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: could not remove %s\n", tmpdir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct cerr err = {{0}};
	char keyfile[128], dir[128];
	struct vault_key_source src = {.key_file = keyfile};

	if (sodium_init() < 0 || mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(keyfile, sizeof(keyfile), "%s/master.key", tmpdir);
	snprintf(dir, sizeof(dir), "%s/vault", tmpdir);
	if (vault_key_file_create(keyfile, &err) < 0 || vault_create(dir, &src, &err) < 0 ||
	    vault_open(dir, &src, &vault, &err) < 0) {
		fprintf(stderr, "fuzz: vault setup: %s\n", err.msg);
		abort();
	}
	pub = *vault_public_keys(vault);
	atexit(cleanup);
	return 0;
}

static void import_one(const char *env, size_t len)
{
	static const char *const hosts[] = {"login.microsoftonline.com", "127.0.0.1", NULL};
	struct grant *g = NULL, *g2 = NULL;
	struct cerr err = {{0}};
	bool already = false;
	char *copy = malloc(len ? len : 1);
	int rc;

	if (copy == NULL)
		return;
	memcpy(copy, env, len);
	rc = vault_grant_import(vault, copy, len, hosts, 1800000000, &g, &already, &err);
	if (rc < 0) {
		if (g != NULL)
			abort(); /* outputs set only on success */
		n_refused++;
		goto out;
	}
	if (g == NULL || strncmp(g->id, "g_", 2) != 0)
		abort();
	rc = vault_grant_import(vault, copy, len, hosts, 1800000000, &g2, &already, &err);
	if (rc < 0 || !already || strcmp(g->id, g2->id) != 0)
		abort(); /* idempotence */
	n_imported++;
out:
	grant_free(g);
	grant_free(g2);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *env = NULL;
	struct cerr err = {{0}};

	if (size == 0)
		return 0;
	if ((data[0] & 1) == 0) {
		import_one((const char *)data + 1, size - 1);
		return 0;
	}
	if (grant_seal((const char *)data + 1, size - 1, pub.seal_pk, &env, &err) == 0) {
		import_one(env, strlen(env));
		free(env);
	}
	return 0;
}

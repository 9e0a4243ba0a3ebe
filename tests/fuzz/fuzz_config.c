/* fuzz_config.c — broker_config_parse on arbitrary text: the daemon's
 * config is read at start and at every reload, and a bad one must give an
 * error naming the key path, never a crash or a half-built config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct broker_config *c = NULL;
	struct cerr err = {{0}};
	char *buf = malloc(size ? size : 1);
	int rc;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	rc = broker_config_parse(buf, size, "/etc/custody/fuzz.json", "/etc/custody", &c, &err);
	if (rc == 0) {
		struct vault_key_source src;

		if (c == NULL || c->state_dir == NULL || c->audit_db == NULL)
			abort();
		broker_config_key_source(c, &src);
		broker_config_free(c);
	} else {
		if (c != NULL || err.msg[0] == '\0')
			abort(); /* outputs only on success; an error says why */
	}
	free(buf);
	return 0;
}

/* fuzz_alerts_config.c — alerts_config_parse: custody-alerts' config file
 * (DESIGN.md §12). Every refusal must say why. */
#include <stdint.h>
#include <stdlib.h>

#include "alerts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct alerts_config *c = NULL;
	struct cerr err = { "" };

	if (alerts_config_parse((const char *)data, size, "fuzz.json", "/etc/custody", &c, &err) < 0) {
		if (err.msg[0] == '\0')
			abort();
		return 0;
	}
	alerts_config_free(c);
	return 0;
}

/* fuzz_dispatch.c — the whole dispatcher, not just the parser: every line
 * of the input goes through dispatch_line on a socketpair connection of a
 * broker with a real audit store (tests/broker/broker_rig.c), alternating
 * tool and admin sockets by the first byte. Each line is parsed, run by
 * its op, audited and answered. Invariants: every request is answered
 * (or its connection closed), nothing stays in flight, every reply is a
 * JSON object with "v":1 and "ok", and nothing leaks or crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_rig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rig rigs[2];
static bool ready;

static void rig_setup(void)
{
	char config[256];

	snprintf(config, sizeof(config),
		 "{\"principals\":[{\"name\":\"me\",\"match\":{\"uid\":%u},\"rate\":{\"per_second\":1000,\"burst\":1000}}]}",
		 (unsigned)getuid());
	if (rig_open(&rigs[0], config, false) < 0 || rig_open(&rigs[1], config, true) < 0)
		abort();
	ready = true;
}

static void check_replies(struct rig *r)
{
	json_t *all = rig_replies(r), *v;
	size_t i;

	json_array_foreach(all, i, v) {
		if (!json_is_object(v) || json_integer_value(json_object_get(v, "v")) != 1 ||
		    !json_is_boolean(json_object_get(v, "ok")))
			abort();
	}
	json_decref(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rig *r;
	size_t start = 1;

	if (!ready)
		rig_setup();
	if (size == 0)
		return 0;
	r = &rigs[data[0] & 1];
	for (size_t i = 1; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		if (r->c == NULL && rig_reconnect(r) < 0)
			abort();
		rig_line(r, (const char *)data + start, i - start);
		if (r->b.n_pending != 0)
			abort();
		check_replies(r);
		start = i + 1;
	}
	return 0;
}

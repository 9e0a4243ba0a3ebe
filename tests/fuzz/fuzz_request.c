/* fuzz_request.c — custodyd's request framing and validation
 * (request_parse, the code every line from either socket goes through
 * before any op runs) on arbitrary bytes split into lines the way the
 * server splits them. Invariants: a line that passes is a JSON object with
 * "v":1, an id and a known op; a line that fails carries an error code and
 * a message; nothing leaks or crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const char *line, size_t len, bool admin)
{
	const struct op_table *t = admin ? &admin_op_table : &tool_op_table;
	struct request_parsed r;
	json_t *v;

	if (request_parse(line, len, t, &r) == 0) {
		v = json_object_get(r.req, "v");
		if (!json_is_object(r.req) || r.op == NULL || r.id == NULL || r.error != NULL ||
		    !json_is_integer(v) || json_integer_value(v) != 1)
			abort();
		if (op_find(t, r.op) != r.def || r.def == NULL)
			abort();
	} else if (r.error == NULL || r.message[0] == '\0' || r.op != NULL) {
		abort();
	}
	request_parsed_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	size_t start = 0;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	for (size_t i = 0; i <= size; i++) {
		if (i == size || buf[i] == '\n') {
			one(buf + start, i - start, false);
			one(buf + start, i - start, true);
			start = i + 1;
		}
	}
	free(buf);
	return 0;
}

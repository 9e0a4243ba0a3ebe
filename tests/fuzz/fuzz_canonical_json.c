/* fuzz_canonical_json.c — audit_canonical_json (canon.c) against jansson's
 * own json_dumps with the same flags (and audit_json_compact against
 * JSON_COMPACT | JSON_ENSURE_ASCII), on every document jansson parses
 * from arbitrary bytes. Record bodies are hashed in this encoding and
 * verify re-encodes with jansson, so one differing byte would make a
 * good store look tampered: the invariant is byte equality, or both
 * refusing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(json_t *v, size_t flags, char *(*ours)(json_t *, size_t *))
{
	char *want = json_dumps(v, flags), *got;
	size_t len = 0;

	got = ours(v, &len);
	if ((want == NULL) != (got == NULL))
		abort();
	if (want != NULL && (strcmp(want, got) != 0 || len != strlen(want)))
		abort();
	free(want);
	free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = json_loadb((const char *)data, size, JSON_ALLOW_NUL, NULL);

	if (v == NULL)
		return 0;
	same(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII, audit_canonical_json);
	/* unsorted, as the broker writes replies */
	same(v, JSON_COMPACT | JSON_ENSURE_ASCII, audit_json_compact);
	json_decref(v);
	return 0;
}

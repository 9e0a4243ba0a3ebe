/* fuzz_token_response.c — upstream_parse_token_response: everything the
 * identity provider (or whoever answers on its address) sends back.
 *
 * Input layout: 2 bytes HTTP status (big endian, taken mod 1000), 1 byte
 * n, n bytes of Retry-After header value (NUL-free; none when n == 0),
 * then the body. The JWT, URL and endpoint helpers get the body too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "upstream.h"

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
	struct upstream_token t;
	char retry[256], uti[128], *body, *str;
	const char *ra = NULL;
	long status;
	size_t n;
	int rc;

	if (size < 3)
		return 0;
	status = (long)(((unsigned)data[0] << 8 | data[1]) % 1000);
	n = data[2];
	data += 3;
	size -= 3;
	if (n > size)
		n = size;
	if (n > 0) {
		memcpy(retry, data, n);
		retry[n] = '\0';
		ra = retry;
	}
	data += n;
	size -= n;
	body = malloc(size ? size : 1);
	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	memset(&t, 0, sizeof(t));
	rc = upstream_parse_token_response(status, ra, body, size, 1800000000, &t);
	if (rc == 0) {
		if (t.outcome == UPSTREAM_OK) {
			if (t.access_token == NULL || t.token_len == 0 ||
			    t.token_len > UPSTREAM_MAX_TOKEN ||
			    strlen(t.access_token) != t.token_len || t.expires_at <= 0)
				abort();
			/* the token must not leak into the people-facing message */
			if (t.token_len >= 8 && strstr(t.message, t.access_token) != NULL)
				abort();
		}
		if (t.outcome == UPSTREAM_RATE_LIMITED &&
		    (t.retry_after < 0 || t.retry_after > UPSTREAM_RETRY_AFTER_MAX))
			abort();
		if (t.n_codes > 8 || memchr(t.message, '\0', sizeof(t.message)) == NULL ||
		    memchr(t.error, '\0', sizeof(t.error)) == NULL)
			abort();
	}
	upstream_token_clear(&t);

	(void)upstream_jwt_uti(body, size, uti, sizeof(uti));
	str = malloc(size + 1);
	if (str != NULL) {
		static char *hosts[] = {"login.microsoftonline.com", "127.0.0.1", NULL};

		memcpy(str, body, size);
		str[size] = '\0';
		(void)upstream_url_allowed(str, hosts);
		(void)upstream_endpoint_is_v1(str);
		free(str);
	}
	free(body);
	return 0;
}

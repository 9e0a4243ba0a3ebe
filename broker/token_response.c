/* token_response.c — what a token endpoint's answer means (pure, no I/O).
 *
 * Entra answers: 200 with a JSON token (v2: integer numbers; v1: numbers as
 * strings plus expires_on), 400/401 with a JSON OAuth error keyed by
 * `error` and `error_codes` (never the description's words), 429 with a
 * plain-text body and Retry-After, 5xx. Anything else is an unusable answer.
 * No message built here holds the token, the secret or the provider's text.
 */
#include "upstream.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "util.h"

static const struct {
	uint32_t code;
	const char *meaning;
} known_codes[] = {
	{7000215, "invalid client secret (a new secret can take a minute or two to work)"},
	{7000222, "the client secret expired: the customer must issue a new one"},
	{7000218, "no client secret was sent"},
	{90002, "no such tenant"},
	{700016, "the application is not in the customer's tenant (no consent)"},
	{7000229, "the application has no service principal in the customer's tenant"},
	{70011, "the scope is not valid"},
	{1002012, "the scope must end in /.default for client credentials"},
	{500011, "the resource is not provisioned in the customer's tenant"},
};

const char *upstream_code_meaning(uint32_t code)
{
	for (size_t i = 0; i < sizeof(known_codes) / sizeof(known_codes[0]); i++)
		if (known_codes[i].code == code)
			return known_codes[i].meaning;
	return NULL;
}

void upstream_token_clear(struct upstream_token *t)
{
	if (t->access_token != NULL) {
		sodium_memzero(t->access_token, t->token_len);
		sodium_free(t->access_token);
	}
	sodium_memzero(t, sizeof(*t));
}

/* Returns 0 so parse_success can `return set_unavailable(...)`. */
static int __attribute__((format(printf, 3, 4)))
set_unavailable(struct upstream_token *out, bool retryable, const char *fmt, ...)
{
	va_list ap;

	out->outcome = UPSTREAM_UNAVAILABLE;
	out->retryable = retryable;
	va_start(ap, fmt);
	vsnprintf(out->message, sizeof(out->message), fmt, ap);
	va_end(ap);
	return 0;
}

/* Whole seconds of a Retry-After header; an HTTP date or garbage falls back
 * to the default, as MSAL does. */
static int parse_retry_after(const char *v)
{
	long n = 0;
	size_t digits = 0;

	if (v == NULL)
		return UPSTREAM_RETRY_AFTER_DEFAULT;
	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v >= '0' && *v <= '9'; v++, digits++) {
		n = n * 10 + (*v - '0');
		if (n > UPSTREAM_RETRY_AFTER_MAX)
			n = UPSTREAM_RETRY_AFTER_MAX;
	}
	while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
		v++;
	if (digits == 0 || *v != '\0')
		return UPSTREAM_RETRY_AFTER_DEFAULT;
	return n < 1 ? 1 : (int)n;
}

/* A JSON integer, or a string of decimal digits (v1). -EINVAL otherwise. */
static int json_seconds(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		int64_t x = 0;

		if (n == 0 || n > 12)
			return -EINVAL;
		for (size_t i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return -EINVAL;
			x = x * 10 + (s[i] - '0');
		}
		*out = x;
		return 0;
	}
	return -EINVAL;
}

/* Access tokens go into JSON replies and HTTP headers: visible ASCII only. */
static bool token_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

int upstream_jwt_uti(const char *token, size_t len, char *out, size_t outlen)
{
	const char *p1 = memchr(token, '.', len), *p2;
	size_t plen, blen;
	unsigned char *buf = NULL;
	json_t *payload = NULL;
	const char *uti;
	int rc = -EINVAL;

	if (outlen == 0)
		return -EINVAL;
	out[0] = '\0';
	if (p1 == NULL)
		goto out;
	p2 = memchr(p1 + 1, '.', len - (size_t)(p1 + 1 - token));
	if (p2 == NULL)
		goto out;
	plen = (size_t)(p2 - (p1 + 1));
	if (plen == 0 || plen > UPSTREAM_MAX_TOKEN)
		goto out;
	buf = malloc(plen);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (sodium_base642bin(buf, plen, p1 + 1, plen, NULL, &blen, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		goto out;
	payload = json_loadb((const char *)buf, blen, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(payload))
		goto out;
	uti = json_string_value(json_object_get(payload, "uti"));
	if (uti == NULL || strlen(uti) >= outlen || !token_chars_ok(uti, strlen(uti)))
		goto out;
	memcpy(out, uti, strlen(uti) + 1);
	rc = 0;
out:
	json_decref(payload);
	if (buf != NULL) {
		/* The payload is part of the bearer token's text: wipe it. */
		sodium_memzero(buf, plen);
		free(buf);
	}
	return rc;
}

static int parse_success(const json_t *root, int64_t now_s, struct upstream_token *out)
{
	const json_t *tok = json_object_get(root, "access_token");
	const json_t *type = json_object_get(root, "token_type");
	int64_t expires_in, refresh_in;
	unsigned char digest[crypto_hash_sha256_BYTES];
	size_t n;

	if (!json_is_string(tok) || json_string_length(tok) == 0)
		return set_unavailable(out, false,
				       "identity provider answered HTTP %d without an access_token",
				       200);
	n = json_string_length(tok);
	if (n > UPSTREAM_MAX_TOKEN || !token_chars_ok(json_string_value(tok), n))
		return set_unavailable(out, false,
				       "identity provider sent an unusable access_token (HTTP %d)",
				       200);
	if (type != NULL && (!json_is_string(type) ||
			     strcasecmp(json_string_value(type), "Bearer") != 0))
		return set_unavailable(out, false,
				       "identity provider sent a token that is not a Bearer token (HTTP %d)",
				       200);
	if (json_seconds(json_object_get(root, "expires_in"), &expires_in) != 0 ||
	    expires_in <= 0)
		return set_unavailable(out, false,
				       "identity provider sent no valid expires_in (HTTP %d)", 200);
	if (expires_in > UPSTREAM_MAX_LIFETIME)
		expires_in = UPSTREAM_MAX_LIFETIME;
	out->refresh_at = 0;
	if (json_object_get(root, "refresh_in") != NULL &&
	    json_seconds(json_object_get(root, "refresh_in"), &refresh_in) == 0 &&
	    refresh_in > 0 && refresh_in < expires_in)
		out->refresh_at = now_s + refresh_in;

	out->access_token = sodium_malloc(n + 1);
	if (out->access_token == NULL)
		return -ENOMEM;
	memcpy(out->access_token, json_string_value(tok), n + 1);
	out->token_len = n;
	out->expires_at = now_s + expires_in;
	crypto_hash_sha256(digest, (const unsigned char *)out->access_token, n);
	util_hex(digest, sizeof(digest), out->token_sha256);
	if (upstream_jwt_uti(out->access_token, n, out->uti, sizeof(out->uti)) == -ENOMEM) {
		upstream_token_clear(out);
		return -ENOMEM;
	}
	out->outcome = UPSTREAM_OK;
	snprintf(out->message, sizeof(out->message), "token issued");
	return 0;
}

/* Copy `error` if it is a plain OAuth error word; anything else is replaced,
 * so a hostile answer cannot put arbitrary text into our messages. */
static void copy_error_word(const char *s, char *out, size_t outlen)
{
	size_t n = strlen(s);
	bool ok = n > 0 && n < outlen;

	for (size_t i = 0; ok && i < n; i++)
		ok = (s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || (s[i] >= '0' && s[i] <= '9');
	snprintf(out, outlen, "%s", ok ? s : "invalid_answer");
}

static void parse_error(const json_t *root, int status, struct upstream_token *out)
{
	const json_t *codes = json_object_get(root, "error_codes");
	const char *meaning = NULL;
	size_t i;
	json_t *c;
	int off;

	out->outcome = UPSTREAM_REJECTED;
	copy_error_word(json_string_value(json_object_get(root, "error")), out->error,
			sizeof(out->error));
	json_array_foreach(codes, i, c) {
		if (out->n_codes == sizeof(out->codes) / sizeof(out->codes[0]))
			break;
		if (!json_is_integer(c) || json_integer_value(c) < 0 ||
		    json_integer_value(c) > UINT32_MAX)
			continue;
		out->codes[out->n_codes++] = (uint32_t)json_integer_value(c);
	}
	off = snprintf(out->message, sizeof(out->message),
		       "identity provider rejected the request (HTTP %d): %s", status, out->error);
	if (out->n_codes > 0 && off > 0 && (size_t)off < sizeof(out->message)) {
		meaning = upstream_code_meaning(out->codes[0]);
		snprintf(out->message + off, sizeof(out->message) - (size_t)off, " AADSTS%u%s%s",
			 out->codes[0], meaning ? ": " : "", meaning ? meaning : "");
	}
}

int upstream_parse_token_response(long http_status, const char *retry_after, const char *body,
				  size_t len, int64_t now_s, struct upstream_token *out)
{
	json_t *root = NULL;
	int status = http_status < 0 || http_status > 999 ? 0 : (int)http_status;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->http_status = status;
	if (status == 429) {
		out->outcome = UPSTREAM_RATE_LIMITED;
		out->retry_after = parse_retry_after(retry_after);
		snprintf(out->message, sizeof(out->message),
			 "identity provider is throttling requests (HTTP 429); retry after %d s",
			 out->retry_after);
		return 0;
	}
	if (status >= 500) {
		set_unavailable(out, true, "identity provider failed (HTTP %d)", status);
		return 0;
	}
	if (len > UPSTREAM_MAX_BODY) {
		set_unavailable(out, false, "identity provider answer is too large (HTTP %d)", status);
		return 0;
	}
	if (status != 200 && (status < 400 || status > 499)) {
		set_unavailable(out, false,
				"identity provider answered HTTP %d (redirects are not followed)",
				status);
		return 0;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root)) {
		set_unavailable(out, false, "identity provider answer is not a JSON object (HTTP %d)",
				status);
		goto out;
	}
	if (status == 200) {
		rc = parse_success(root, now_s, out);
		goto out;
	}
	if (!json_is_string(json_object_get(root, "error"))) {
		set_unavailable(out, false,
				"identity provider answered HTTP %d without an OAuth error", status);
		goto out;
	}
	parse_error(root, status, out);
out:
	json_decref(root);
	return rc;
}

/* smtp.c — one message through the configured SMTP server (libcurl),
 * STARTTLS as smtp.tls says: "required" (no TLS, no message), "try", or
 * "none". smtps:// URLs use TLS from the first byte. */
#include "alerts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct reader {
	const char *p;
	size_t left;
};

static size_t read_cb(char *dst, size_t size, size_t nitems, void *ctx)
{
	struct reader *r = ctx;
	size_t n = size * nitems;

	if (n > r->left)
		n = r->left;
	memcpy(dst, r->p, n);
	r->p += n;
	r->left -= n;
	return n;
}

static int read_password(const char *path, char **out, struct cerr *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = util_read_file(path, 4096, &text, &len);
	if (rc < 0)
		return cerr_set(err, rc, "smtp.password_file %s: cannot read it: %s", path,
				strerror(-rc));
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	*out = sodium_malloc(len + 1);
	if (*out != NULL)
		memcpy(*out, text, len + 1);
	sodium_memzero(text, len);
	free(text);
	return *out ? 0 : -ENOMEM;
}

int smtp_send(const struct alerts_config *c, const struct rule_config *r, const char *message,
	      struct cerr *err)
{
	const struct smtp_config *s = &c->smtp;
	struct reader rd = { message, strlen(message) };
	struct curl_slist *rcpt = NULL;
	char from[320], *password = NULL, errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	CURL *h;
	int rc = 0;

	h = curl_easy_init();
	if (h == NULL)
		return cerr_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < r->n_to; i++) {
		char to[320];
		struct curl_slist *n;

		snprintf(to, sizeof(to), "<%s>", r->to[i]);
		n = curl_slist_append(rcpt, to);
		if (n == NULL) {
			rc = cerr_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		rcpt = n;
	}
	if (s->password_file != NULL && (rc = read_password(s->password_file, &password, err)) < 0)
		goto out;
	snprintf(from, sizeof(from), "<%s>", s->from);
	curl_easy_setopt(h, CURLOPT_URL, s->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(h, CURLOPT_USE_SSL, (long)(s->tls == SMTP_TLS_REQUIRED ? CURLUSESSL_ALL :
						    s->tls == SMTP_TLS_TRY ? CURLUSESSL_TRY :
						    CURLUSESSL_NONE));
	if (s->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
	if (s->username != NULL) {
		curl_easy_setopt(h, CURLOPT_USERNAME, s->username);
		curl_easy_setopt(h, CURLOPT_PASSWORD, password);
	}
	curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h, CURLOPT_READDATA, &rd);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_s * 1000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_s * 1000L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	cc = curl_easy_perform(h);
	if (cc == CURLE_USE_SSL_FAILED)
		rc = cerr_set(err, -EPROTO, "SMTP server %s offers no STARTTLS, and smtp.tls is "
			      "\"required\": no message sent (fix the server, or set smtp.tls to "
			      "\"try\" or \"none\")", s->url);
	else if (cc == CURLE_LOGIN_DENIED)
		rc = cerr_set(err, -EACCES, "SMTP server %s refused the login of smtp.username",
			      s->url);
	else if (cc != CURLE_OK)
		rc = cerr_set(err, -EIO, "SMTP server %s: %s", s->url,
			      errbuf[0] ? errbuf : curl_easy_strerror(cc));
out:
	if (password != NULL)
		sodium_free(password);
	curl_slist_free_all(rcpt);
	curl_easy_cleanup(h);
	return rc;
}

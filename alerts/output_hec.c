/* output_hec.c — the "splunk_hec" output: HTTPS POST of one
 * {"time","host","source","sourcetype","event"} object per alert,
 * concatenated, with "Authorization: Splunk <token>" (the token read from
 * token_file when the pass starts, held in locked memory, never logged). */
#include "alerts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

int output_hec_open(struct output *o, struct cerr *err)
{
	char *text = NULL;
	size_t len = 0, size;
	int rc;

	rc = util_read_file(o->cfg->token_file, 4096, &text, &len);
	if (rc < 0) {
		cerr_set(err, rc, "%s: token_file %s: cannot read it: %s", o->cfg->label,
			 o->cfg->token_file, strerror(-rc));
		goto broken;
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)text[i] < 0x21 || (unsigned char)text[i] > 0x7e)
			len = 0;
	if (len == 0) {
		rc = cerr_set(err, -EINVAL, "%s: token_file %s: expected the HEC token on one line",
			      o->cfg->label, o->cfg->token_file);
		goto broken;
	}
	size = len + 32;
	o->auth = sodium_malloc(size);
	if (o->auth == NULL) {
		rc = cerr_set(err, -ENOMEM, "out of memory");
		goto broken;
	}
	snprintf(o->auth, size, "Authorization: Splunk %s", text);
	sodium_memzero(text, len);
	free(text);
	return 0;
broken:
	if (text != NULL) {
		sodium_memzero(text, len);
		free(text);
	}
	o->broken = true;
	snprintf(o->error, sizeof(o->error), "%s", err ? err->msg : "cannot start");
	return rc;
}

static int to_buf(const char *p, size_t n, void *ctx)
{
	buf_add(ctx, p, n);
	return 0;
}

static const char *text_or(const json_t *j)
{
	const char *t = json_string_value(json_object_get(j, "text"));

	return t ? t : "no reason given";
}

static size_t reply_write(char *ptr, size_t size, size_t nmemb, void *ctx)
{
	struct buf *b = ctx;
	size_t n = size * nmemb;

	if (b->len + n > 65536)
		return 0;
	buf_add(b, ptr, n);
	return n;
}

int output_hec_put(struct output *o, json_t *const *alerts, size_t n, struct cerr *err)
{
	struct curl_slist *hdrs = NULL;
	struct buf reply = { 0 };
	char errbuf[CURL_ERROR_SIZE] = "", host[300];
	long code = 0;
	CURLcode cc;
	json_t *j = NULL;
	int rc = 0;

	buf_reset(&o->out);
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(json_object_get(alerts[i], "alertCreationTime"));
		int64_t us = 0;

		if (t == NULL || util_time_parse(t, &us) < 0)
			us = util_now_us();
		buf_printf(&o->out, "{\"time\":%lld.%06lld,\"host\":", (long long)(us / 1000000),
			   (long long)(us % 1000000));
		snprintf(host, sizeof(host), "\"%s\"", o->hostname);
		buf_str(&o->out, host);
		buf_str(&o->out, ",\"source\":\"custody-alerts\",\"sourcetype\":\"mde:alert\","
			"\"event\":");
		json_dump_callback(alerts[i], to_buf, &o->out, JSON_COMPACT);
		buf_str(&o->out, "}\n");
	}
	if (o->out.oom)
		return cerr_set(err, -ENOMEM, "%s: out of memory", o->cfg->label);
	if (o->conn == NULL && (o->conn = curl_easy_init()) == NULL)
		return cerr_set(err, -ENOMEM, "%s: out of memory", o->cfg->label);
	hdrs = curl_slist_append(NULL, o->auth);
	if (hdrs != NULL)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (hdrs == NULL)
		return cerr_set(err, -ENOMEM, "%s: out of memory", o->cfg->label);
	curl_easy_setopt(o->conn, CURLOPT_URL, o->cfg->url);
	curl_easy_setopt(o->conn, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(o->conn, CURLOPT_FOLLOWLOCATION, 0L);
	if (o->cfg->ca_file != NULL)
		curl_easy_setopt(o->conn, CURLOPT_CAINFO, o->cfg->ca_file);
	curl_easy_setopt(o->conn, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(o->conn, CURLOPT_POSTFIELDS, o->out.p);
	curl_easy_setopt(o->conn, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->out.len);
	curl_easy_setopt(o->conn, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(o->conn, CURLOPT_TIMEOUT_MS, (long)o->conf->timeout_s * 1000L);
	curl_easy_setopt(o->conn, CURLOPT_WRITEFUNCTION, reply_write);
	curl_easy_setopt(o->conn, CURLOPT_WRITEDATA, &reply);
	curl_easy_setopt(o->conn, CURLOPT_ERRORBUFFER, errbuf);
	cc = curl_easy_perform(o->conn);
	curl_easy_getinfo(o->conn, CURLINFO_RESPONSE_CODE, &code);
	j = reply.len ? json_loadb(reply.p, reply.len, 0, NULL) : NULL;
	if (cc != CURLE_OK)
		rc = cerr_set(err, -EIO, "%s: %s", o->cfg->label,
			      errbuf[0] ? errbuf : curl_easy_strerror(cc));
	else if (code == 401 || code == 403)
		rc = cerr_set(err, -EACCES, "%s: the collector refused the token from %s (HTTP %ld: "
			      "%.100s)", o->cfg->label, o->cfg->token_file, code,
			      text_or(j));
	else if (code != 200 || json_integer_value(json_object_get(j, "code")) != 0)
		rc = cerr_set(err, -EIO, "%s: the collector answered HTTP %ld (%.100s)",
			      o->cfg->label, code,
			      text_or(j));
	json_decref(j);
	buf_free(&reply);
	for (struct curl_slist *l = hdrs; l != NULL; l = l->next)
		sodium_memzero(l->data, strlen(l->data));
	curl_slist_free_all(hdrs);
	curl_easy_setopt(o->conn, CURLOPT_HTTPHEADER, NULL);
	return rc;
}

/* serve.c — `custody witness serve`: add-checkpoint over HTTP/1.1 with GNU
 * libmicrohttpd (plain, or TLS through its GnuTLS backend). We write no
 * HTTP: libmicrohttpd parses requests, keeps connections alive and bounds
 * their memory; we collect each POST body (at most WITNESS_REQUEST_MAX
 * bytes) and answer it with witness_add_checkpoint.
 *
 * Threads: libmicrohttpd's internal polling thread calls the handler; the
 * caller's thread waits for *stop. */
#include "witness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

struct upload {
	char *buf;
	size_t len, cap;
	bool too_large;
};

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *ctype,
				 const char *body, size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result r;

	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	r = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static bool path_ok(const char *url)
{
	size_t n = strlen(url), k = strlen("/add-checkpoint");

	return n >= k && strcmp(url + n - k, "/add-checkpoint") == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *data_len, void **con_cls)
{
	struct witness *w = cls;
	struct upload *u = *con_cls;
	struct witness_reply r;
	enum MHD_Result ret;

	if (u == NULL) {
		u = calloc(1, sizeof(*u));
		if (u == NULL)
			return MHD_NO;
		*con_cls = u;
		return MHD_YES;
	}
	if (*data_len > 0) {
		/* keep reading a body that is too large, but not its bytes */
		if (!u->too_large && u->len + *data_len > WITNESS_REQUEST_MAX) {
			u->too_large = true;
		} else if (!u->too_large) {
			if (u->len + *data_len + 1 > u->cap) {
				size_t cap = (u->len + *data_len + 1) * 2;
				char *nb = realloc(u->buf, cap);

				if (nb == NULL)
					return MHD_NO;
				u->buf = nb;
				u->cap = cap;
			}
			memcpy(u->buf + u->len, data, *data_len);
			u->len += *data_len;
		}
		*data_len = 0;
		return MHD_YES;
	}
	if (!path_ok(url)) {
		fprintf(stderr, "witness: 404 %s %.200s\n", method, url);
		return send_text(c, MHD_HTTP_NOT_FOUND, "text/plain", "not found\n", 10);
	}
	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
		struct MHD_Response *resp = MHD_create_response_from_buffer(
			23, (void *)"use POST add-checkpoint\n", MHD_RESPMEM_PERSISTENT);

		if (resp == NULL)
			return MHD_NO;
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
		fprintf(stderr, "witness: 405 %s %.200s\n", method, url);
		ret = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (u->too_large) {
		fprintf(stderr, "witness: 413 request body larger than %d bytes\n",
			WITNESS_REQUEST_MAX);
		return send_text(c, MHD_HTTP_CONTENT_TOO_LARGE, "text/plain",
				 "request body too large\n", 23);
	}
	if (witness_add_checkpoint(w, u->buf ? u->buf : "", u->len, (int64_t)time(NULL), &r) < 0 ||
	    r.body == NULL)
		return MHD_NO;
	fprintf(stderr, "witness: %s\n", r.log);
	ret = send_text(c, r.status, r.content_type, r.body, r.len);
	free(r.body);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *con_cls;

	if (u != NULL) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

static int parse_listen(const char *listen, struct sockaddr_in *sa, struct cerr *err)
{
	const char *colon = strrchr(listen, ':');
	char host[64];
	char *end = NULL;
	long port;

	memset(sa, 0, sizeof(*sa));
	if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
		return cerr_set(err, -EINVAL, "--listen: expected ADDR:PORT (like 127.0.0.1:8080)");
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*(colon + 1) == '\0' || *end != '\0' || port < 0 || port > 65535)
		return cerr_set(err, -EINVAL, "--listen: bad port '%s'", colon + 1);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return cerr_set(err, -EINVAL, "--listen: '%s' is not an IPv4 address", host);
	return 0;
}

int witness_serve(struct witness *w, const char *listen, const char *cert_file,
		  const char *key_file, volatile sig_atomic_t *stop, struct cerr *err)
{
	struct sockaddr_in sa;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	char *cert = NULL, *key = NULL, addr[INET_ADDRSTRLEN];
	size_t len = 0;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	sigset_t sigs, old;
	int rc;

	rc = parse_listen(listen, &sa, err);
	if (rc < 0)
		return rc;
	if ((cert_file == NULL) != (key_file == NULL))
		return cerr_set(err, -EINVAL, "give both --tls-cert and --tls-key, or neither");
	if (cert_file != NULL) {
		rc = util_read_file(cert_file, 1 << 20, &cert, &len);
		if (rc < 0)
			return cerr_set(err, rc, "cannot read %s: %s", cert_file, strerror(-rc));
		rc = util_read_file(key_file, 1 << 20, &key, &len);
		if (rc < 0) {
			free(cert);
			return cerr_set(err, rc, "cannot read %s: %s", key_file, strerror(-rc));
		}
		flags |= MHD_USE_TLS;
	}
	/* the server's threads inherit a mask without SIGINT/SIGTERM, so
	 * the signal reaches this thread and ends pause() */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, &old);
	d = cert ? MHD_start_daemon(flags, 0, NULL, NULL, handle, w, MHD_OPTION_SOCK_ADDR, &sa,
				    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
				    MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
				    MHD_OPTION_END)
		 : MHD_start_daemon(flags, 0, NULL, NULL, handle, w, MHD_OPTION_SOCK_ADDR, &sa,
				    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
				    MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (key != NULL) {
		memset(key, 0, strlen(key));
		free(key);
	}
	free(cert);
	if (d == NULL)
		return cerr_set(err, -EADDRINUSE,
				"cannot listen on %s (address in use, not local, or a bad TLS "
				"certificate or key)", listen);
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr));
	printf("listening on %s:%u (%s)\n", addr, info ? (unsigned)info->port : 0u,
	       cert_file ? "https" : "http");
	fflush(stdout);
	while (!*stop)
		pause();
	MHD_stop_daemon(d);
	return 0;
}

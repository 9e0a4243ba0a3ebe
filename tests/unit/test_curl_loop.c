/* test_curl_loop.c — broker/curl_loop.c: libcurl transfers driven by the
 * broker's loop reach their done callback once, with their private pointer
 * and result, through the socket path (an answer, a refused connection) and
 * the timer path (a server that never answers); cleanup with a transfer in
 * flight calls nothing and leaks nothing. A tiny HTTP server on loopback
 * runs on the same loop.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "curl_loop.h"

#define GUARD_MS 5000 /* a test whose transfer never ends stops here */

struct rig {
	struct loop *loop;
	struct curl_loop cl;
	struct loop_timer *guard;
	int listen_fd, conn_fd;
	unsigned short port;
	bool answer;           /* else: accept and stay silent */
	char req[2048];
	size_t req_len;
	/* what done saw */
	int done_calls;
	void *done_priv;
	CURLcode done_result;
	char body[64];
	size_t body_len;
	bool guard_fired;
};

static struct rig *cur;

static void on_conn(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct rig *r = ctx;
	static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
	ssize_t n = read(fd, r->req + r->req_len, sizeof(r->req) - 1 - r->req_len);

	if (n > 0) {
		r->req_len += (size_t)n;
		r->req[r->req_len] = '\0';
		if (strstr(r->req, "\r\n\r\n") == NULL)
			return;
		assert_int_equal(write(fd, ans, sizeof(ans) - 1), (ssize_t)(sizeof(ans) - 1));
	}
	loop_fd_del(l, fd);
	close(fd);
	r->conn_fd = -1;
}

static void on_accept(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct rig *r = ctx;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (c < 0)
		return;
	r->conn_fd = c;
	if (r->answer)
		assert_int_equal(loop_fd_add(l, c, EPOLLIN, on_conn, r), 0);
}

static void on_guard(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct rig *r = ctx;

	r->guard_fired = true;
	loop_stop(l);
}

static void on_done(void *priv, CURLcode result)
{
	CURL *e = priv;

	cur->done_calls++;
	cur->done_priv = priv;
	cur->done_result = result;
	/* the owner removes its finished handle, as upstream.c and
	 * witness_client.c do */
	curl_multi_remove_handle(cur->cl.multi, e);
	curl_easy_cleanup(e);
	loop_stop(cur->loop);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct rig *r = ctx;
	size_t n = size * nmemb;

	if (n > sizeof(r->body) - 1 - r->body_len)
		return 0;
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return n;
}

static unsigned short listen_loopback(int *fd_out)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*fd_out = fd;
	return ntohs(a.sin_port);
}

static int setup(void **state)
{
	static struct rig r;

	memset(&r, 0, sizeof(r));
	r.conn_fd = -1;
	assert_int_equal(loop_new(&r.loop), 0);
	assert_int_equal(curl_loop_init(&r.cl, r.loop, on_done), 0);
	assert_int_equal(loop_timer_new(r.loop, on_guard, &r, &r.guard), 0);
	loop_timer_arm(r.guard, GUARD_MS);
	r.port = listen_loopback(&r.listen_fd);
	assert_int_equal(loop_fd_add(r.loop, r.listen_fd, EPOLLIN, on_accept, &r), 0);
	cur = &r;
	*state = &r;
	return 0;
}

static int teardown(void **state)
{
	struct rig *r = *state;

	curl_loop_cleanup(&r->cl);
	loop_fd_del(r->loop, r->listen_fd);
	close(r->listen_fd);
	if (r->conn_fd >= 0) {
		loop_fd_del(r->loop, r->conn_fd);
		close(r->conn_fd);
	}
	loop_timer_free(r->guard);
	loop_free(r->loop);
	cur = NULL;
	return 0;
}

static CURL *start(struct rig *r, unsigned short port, long timeout_ms)
{
	char url[64];
	CURL *e = curl_easy_init();

	assert_non_null(e);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", port);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, e);
	assert_int_equal(curl_multi_add_handle(r->cl.multi, e), CURLM_OK);
	return e;
}

static void test_answer(void **state)
{
	struct rig *r = *state;
	CURL *e;

	r->answer = true;
	e = start(r, r->port, 3000);
	assert_int_equal(loop_run(r->loop), 0);
	assert_false(r->guard_fired);
	assert_int_equal(r->done_calls, 1);
	assert_ptr_equal(r->done_priv, e);
	assert_int_equal(r->done_result, CURLE_OK);
	assert_string_equal(r->body, "ok");
	assert_non_null(strstr(r->req, "GET /x HTTP/1.1\r\n"));
}

static void test_refused(void **state)
{
	struct rig *r = *state;
	int fd;
	unsigned short closed = listen_loopback(&fd);

	close(fd); /* nobody listens there any more */
	start(r, closed, 3000);
	assert_int_equal(loop_run(r->loop), 0);
	assert_false(r->guard_fired);
	assert_int_equal(r->done_calls, 1);
	assert_int_equal(r->done_result, CURLE_COULDNT_CONNECT);
}

/* Only libcurl's timer (a loop timer here) can end this transfer. */
static void test_silent_server_times_out(void **state)
{
	struct rig *r = *state;

	r->answer = false;
	start(r, r->port, 300);
	assert_int_equal(loop_run(r->loop), 0);
	assert_false(r->guard_fired);
	assert_int_equal(r->done_calls, 1);
	assert_int_equal(r->done_result, CURLE_OPERATION_TIMEDOUT);
}

/* The owner removes its handle and cleans up mid-transfer: done never
 * runs; teardown's cleanup must leave the loop with no curl fds. */
static void test_cleanup_in_flight(void **state)
{
	struct rig *r = *state;
	CURL *e;

	r->answer = false;
	e = start(r, r->port, 3000);
	loop_timer_arm(r->guard, 200);
	assert_int_equal(loop_run(r->loop), 0);
	assert_true(r->guard_fired);
	assert_int_equal(r->done_calls, 0);
	curl_multi_remove_handle(r->cl.multi, e);
	curl_easy_cleanup(e);
}

static void test_cleanup_twice_and_zeroed(void **state)
{
	struct curl_loop z;

	memset(&z, 0, sizeof(z));
	curl_loop_cleanup(&z);
	curl_loop_cleanup(&z);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_server_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_in_flight, setup, teardown),
		cmocka_unit_test(test_cleanup_twice_and_zeroed),
	};
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}

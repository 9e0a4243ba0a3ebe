/* curl_loop.c — libcurl's multi_socket API on the broker's loop: libcurl
 * says which sockets to watch and when to time out; the loop watches them
 * and calls back into libcurl, and finished transfers go to the owner. */
#include "curl_loop.h"

#include <errno.h>
#include <string.h>

static void check_done(struct curl_loop *cl)
{
	CURLMsg *m;
	int left;

	/* One message at a time: a done callback may remove other transfers,
	 * and curl_multi_remove_handle drops their queued messages. */
	while ((m = curl_multi_info_read(cl->multi, &left)) != NULL) {
		void *priv = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&priv);
		if (priv != NULL)
			cl->done(priv, m->data.result);
	}
}

static void on_socket(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct curl_loop *cl = ctx;
	int flags = 0, running;

	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(cl->multi, fd, flags, &running);
	check_done(cl);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct curl_loop *cl = userp;
	uint32_t ev = 0;

	if (what == CURL_POLL_REMOVE) {
		loop_fd_del(cl->loop, s);
		return 0;
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev |= EPOLLOUT;
	if (socketp == NULL) {
		int rc = loop_fd_add(cl->loop, s, ev, on_socket, cl);

		if (rc == -EEXIST)
			rc = loop_fd_mod(cl->loop, s, ev);
		if (rc < 0)
			return -1;
		/* Marks the socket as known to the loop (any non-NULL pointer). */
		curl_multi_assign(cl->multi, s, cl);
		return 0;
	}
	return loop_fd_mod(cl->loop, s, ev) < 0 ? -1 : 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct curl_loop *cl = userp;

	if (timeout_ms < 0)
		loop_timer_disarm(cl->timer);
	else
		loop_timer_arm(cl->timer, timeout_ms);
	return 0;
}

static void on_timer(struct loop *l, struct loop_timer *t, void *ctx)
{
	struct curl_loop *cl = ctx;
	int running;

	curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(cl);
}

int curl_loop_init(struct curl_loop *cl, struct loop *l, curl_loop_done_cb done)
{
	memset(cl, 0, sizeof(*cl));
	cl->loop = l;
	cl->done = done;
	cl->multi = curl_multi_init();
	if (cl->multi == NULL || loop_timer_new(l, on_timer, cl, &cl->timer) < 0) {
		curl_loop_cleanup(cl);
		return -ENOMEM;
	}
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
	return 0;
}

void curl_loop_cleanup(struct curl_loop *cl)
{
	/* libcurl closes its cached connections here and says CURL_POLL_REMOVE
	 * for each: the loop and the timer must still be there. */
	if (cl->multi != NULL)
		curl_multi_cleanup(cl->multi);
	cl->multi = NULL;
	loop_timer_free(cl->timer);
	cl->timer = NULL;
}

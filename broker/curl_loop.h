/* curl_loop.h — libcurl's multi_socket API driven by the broker's loop.
 * Private to broker/ (upstream.c, witness_client.c).
 *
 * One multi handle whose sockets are loop fds and whose one timer is a loop
 * timer, so transfers never block the loop and need no thread. The owner
 * adds and removes its easy handles on `multi` itself; each transfer that
 * completes is handed to `done` with its CURLOPT_PRIVATE pointer.
 */
#ifndef CUSTODY_BROKER_CURL_LOOP_H
#define CUSTODY_BROKER_CURL_LOOP_H

#include <curl/curl.h>

#include "loop.h"

/* priv: the easy handle's CURLOPT_PRIVATE (never NULL: transfers without
 * one are skipped). The handle is still on the multi; `done` removes it. */
typedef void (*curl_loop_done_cb)(void *priv, CURLcode result);

struct curl_loop {
	struct loop *loop;
	CURLM *multi;
	struct loop_timer *timer;
	curl_loop_done_cb done;
};

/* Set up *cl (embedded in its owner, which must not move). 0 or -ENOMEM;
 * on failure *cl is left clean for curl_loop_cleanup. */
int curl_loop_init(struct curl_loop *cl, struct loop *l, curl_loop_done_cb done);
/* Remove the owner's easy handles first. Safe on a zeroed or failed *cl. */
void curl_loop_cleanup(struct curl_loop *cl);

#endif

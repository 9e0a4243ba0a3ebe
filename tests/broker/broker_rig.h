/* broker_rig.h — custodyd's dispatcher on a socketpair, for the unit test
 * and the fuzz target: a struct broker with a real loop, vault, audit
 * store (signed by the vault's key), token cache, admin-reads thread and
 * policy, all in a temporary directory, the config given, and one
 * connection whose other end the test reads. Lines go through
 * dispatch_line exactly as the server hands them over; the loop runs
 * until every request's record is durable and its reply sent. No
 * listening sockets, signals or witnesses (the integration tests have
 * those). */
#ifndef CUSTODY_BROKER_RIG_H
#define CUSTODY_BROKER_RIG_H

#include <stdbool.h>
#include <stddef.h>

#include "broker_int.h"

struct rig {
	struct broker b;
	char *dir;
	int peer_fd;              /* the client's end */
	struct conn *c;           /* NULL once closed */
	bool admin;
};

/* config: the JSON config text ("{}"-like; state_dir is set by the rig).
 * 0 or -errno. */
int rig_open(struct rig *r, const char *config, bool admin);
/* A new connection after the last one closed. 0 or -errno. */
int rig_reconnect(struct rig *r);
/* Hand one line (without its newline) to the dispatcher and run the loop
 * until nothing is in flight. */
void rig_line(struct rig *r, const char *line, size_t len);
/* The reply lines the client end has received so far, as a JSON array of
 * the parsed objects (a line that does not parse is a JSON string). */
json_t *rig_replies(struct rig *r);
void rig_close(struct rig *r);

#endif

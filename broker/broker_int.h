/* broker_int.h — custodyd's internals, shared by the files of broker/ only.
 *
 * One struct broker holds the daemon's state; every callback runs on the
 * loop thread, so none of it is locked. A request becomes a struct pending
 * the moment it is parsed: its audit record is queued, and its reply leaves
 * only when the audit writer says the record is durable (DESIGN §7).
 */
#ifndef CUSTODY_BROKER_INT_H
#define CUSTODY_BROKER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "audit.h"
#include "broker.h"
#include "log.h"
#include "loop.h"
#include "policy.h"
#include "tokens.h"
#include "vault.h"

#define BROKER_MAX_OUT_BACKLOG (1024 * 1024) /* unsent bytes before a new reply drops the client */
#define BROKER_MAX_INFLIGHT 64               /* requests in flight before reading pauses */
#define BROKER_READ_PAUSE_BACKLOG (256 * 1024) /* unsent bytes before reading pauses */
#define BROKER_PURPOSE_MAX 256
#define BROKER_MAX_ADMIN_CONNS 64               /* admin socket, on top of max_connections */
#define BROKER_STOP_GRACE_MS 5000

/* ---- peer identity (peer.c) ------------------------------------------ */

/* Where the executable's SHA-256 stands (only principals with exe_sha256
 * ask for it). */
enum peer_hash { PEER_HASH_NONE = 0, PEER_HASH_PENDING, PEER_HASH_DONE, PEER_HASH_FAILED };

struct peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t *groups;            /* supplementary groups (SO_PEERGROUPS) */
	size_t n_groups;
	uint64_t start_time;      /* /proc/<pid>/stat field 22; 0: unknown */
	int pidfd;                /* the peer process itself; valid if has_pidfd */
	bool has_pidfd;
	char *exe;                /* readlink /proc/<pid>/exe, for logs only; NULL: unknown */
	/* The executable itself, from fstat of /proc/<pid>/exe at accept:
	 * what `exe` matches and what the token re-check compares. */
	bool have_exe_id;
	dev_t exe_dev;
	ino_t exe_ino;
	off_t exe_size;
	struct timespec exe_mtime, exe_ctime;
	int exe_fd;               /* open for hashing while hash is PENDING; else -1 */
	enum peer_hash hash;
	int hash_err;             /* FAILED: -E2BIG (over limits.max_exe_bytes) or -errno */
	uint8_t exe_sha256[32];   /* valid when hash is DONE */
	char user[64];            /* uid's name, or "uid:N" */
	json_t *json;             /* peer_json's cached object */
	char *json_canon;         /* and its canonical text (records) */
	size_t json_canon_len;
};

struct conn;

/* Fill p from a connected socket: SO_PEERCRED, the pidfd, groups and the
 * executable's identity. 0 or -errno (the peer is then unusable). */
int peer_from_socket(int fd, struct peer *p);
void peer_clear(struct peer *p);
/* Right after accept: on a tool connection, start hashing the executable
 * when some principal of the config in force asks for exe_sha256 and
 * could match this peer otherwise (answered from the cache at once, or
 * hashed on the offload worker). Closes the executable's fd when no hash
 * is needed. True: the hash is PENDING, and done(ctx) runs once it is in
 * (or cancelled); the caller keeps p alive until then and reads no
 * request meanwhile. False: settled now (done never runs). */
struct broker;
bool peer_resolve(struct broker *b, struct peer *p, bool admin,
		  void (*done)(void *ctx, bool cancelled), void *ctx);
/* Before a token leaves: 0 when the client is still there and still the
 * same process (and, with same_exe, still runs the executable seen at
 * accept: same device and inode), -EPIPE when it hung up, -ESRCH when the
 * process is gone, the pid was recycled or it exec'd something else. */
int peer_check_conn(const struct peer *p, int sock, bool same_exe);
/* recv(2) that also returns the kernel's word on who sent the bytes
 * (SCM_CREDENTIALS; SO_PASSCRED is on for every client socket). *have is
 * false when no credentials came with them. Any passed fds are closed.
 * Bytes read, 0 at EOF, or -errno. */
ssize_t peer_recv(int fd, void *buf, size_t len, struct ucred *sender, bool *have);
/* Did the process that connected send these bytes (same pid, uid, gid)? */
bool peer_sent_by(const struct peer *p, const struct ucred *sender, bool have);
/* Index of the first matching principal of c, or -1. */
int peer_match_principal(struct peer *p, const struct broker_config *c);
bool peer_in_group(const struct peer *p, gid_t g);
/* JSON {uid, gid, pid, exe} for audit records. */
json_t *peer_json(struct peer *p);
/* The same object, borrowed (it lives as long as the peer); NULL: no memory. */
json_t *peer_json_borrow(struct peer *p);
/* Its canonical JSON text, made once (every record of the connection
 * carries it); NULL: no memory. */
const char *peer_json_canon(struct peer *p, size_t *len);
void peer_cache_free(void);

/* ---- connections (server.c) ------------------------------------------ */

struct pending;

struct conn {
	struct broker *b;
	struct conn *prev, *next;
	int fd;
	bool admin;
	bool closing;             /* no more reading; close when flushed */
	bool dead;                /* closed; freed once no pending refers to it */
	bool reading;             /* EPOLLIN wanted */
	uint32_t events;          /* the epoll mask in force */
	bool hung_up;             /* peer gone; fd no longer watched */
	bool lines_waiting;       /* complete lines buffered, not yet handled */
	struct peer peer;
	char *in;
	size_t in_len;
	size_t in_cap;            /* grows on demand up to max_line + 1 */
	size_t max_line;          /* limits.max_request_bytes when accepted */
	char *out;
	size_t out_off, out_len, out_cap;
	int64_t last_active_ms;
	unsigned inflight;
	unsigned refs;            /* pendings pointing here */
	bool following;           /* audit tail --follow: its stop is audited at close */
	uint64_t follow_sent;     /* records sent to the follower */
};

/* Queue a reply line (object; adds "\n"); drops the client when its unsent
 * backlog is already over the limit. Steals reply. */
void conn_send_json(struct conn *c, json_t *reply);
/* Queue raw bytes (one complete line, newline included). */
void conn_send_raw(struct conn *c, const char *buf, size_t len);
/* Room for len more bytes at the end of c's output (NULL: the connection
 * is closed, or was just dropped); conn_out_commit sends what was written
 * there. The output buffer is wiped once sent, so a token may be written
 * straight into it. */
char *conn_out_reserve(struct conn *c, size_t len);
void conn_out_commit(struct conn *c, size_t len);
void conn_close(struct conn *c);
/* Drop a reference taken with c->refs++ (freed once closed and unreferenced). */
void conn_unref(struct conn *c);
/* A request on c begins (c stays allocated until it ends, even closed) and
 * ends (its reply was queued or dropped). */
void conn_request_begin(struct conn *c);
void conn_request_end(struct conn *c);
/* Read no more requests; close once the replies due are sent. */
void conn_stop_reading(struct conn *c);

/* ---- socket activation (listen_fds.c) ---------------------------------- */

/* The sockets systemd passed (LISTEN_FDS, names "tool" and "admin"). */
struct listen_fds {
	int tool_fd, admin_fd;              /* -1: not passed, custodyd binds it */
	char tool_path[108], admin_path[108];
};

/* Take the passed sockets and unset LISTEN_*; call before any thread
 * starts. 0 with both fds -1 when nothing was passed; -EINVAL, -ENOTSOCK,
 * -EBADF with err set when something passed is not a listening Unix stream
 * socket named tool or admin. */
int listen_fds_take(struct listen_fds *out, struct cerr *err);
/* Move a passed socket into *fd and *path: 1 when there was one, 0 when the
 * caller must bind it itself, -ENOMEM. */
int listen_fds_use(int *passed, const char *passed_path, const char *what,
		   const char *config_path, int *fd, char **path);
void listen_fds_close(struct listen_fds *fds);

int server_listen(struct broker *b);
void server_stop_listening(struct broker *b);
void server_close_all(struct broker *b);
unsigned server_count(const struct broker *b, bool admin);

/* ---- the wire protocol (protocol.c) ------------------------------------ */

/* The audit WAL is written out this far at start (audit_opts). */
#define BROKER_WAL_PREFILL_FRAMES 4096

struct pending;

/* One op of a socket: its name, the fields it takes besides v, id and op,
 * and what runs it. A socket's ops are a table (tool_ops.c, admin_ops.c). */
struct op_def {
	const char *name;
	const char *const *fields;   /* NULL-terminated */
	void (*run)(struct pending *p, json_t *id, json_t *req);
	int role;                    /* admin ops: the enum broker_role it needs */
	bool anyone;                 /* tool ops: runs without a principal */
};

struct op_table {
	const char *socket;          /* "tool" or "admin", for messages */
	const struct op_def *ops;
	size_t n;
	/* What every op of the socket does first (the caller's principal or
	 * role); it ends by calling def->run or answering a refusal. */
	void (*begin)(struct pending *p, const struct op_def *def, json_t *id);
};
extern const struct op_table tool_op_table, admin_op_table;
const struct op_def *op_find(const struct op_table *t, const char *name);

json_t *reply_new(json_t *id, bool ok);
json_t *reply_error(json_t *id, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* An audit record skeleton: event, outcome, peer, principal, request id. */
json_t *record_new(struct broker *b, const char *event, const char *outcome,
		   struct conn *c, const char *principal, json_t *id);
/* The same members into a list (the token path's records; values
 * borrowed from c and id). */
void record_fields(struct audit_fields *f, const char *event, const char *outcome,
		   struct conn *c, const char *principal, json_t *id);

/* A request line checked against the framing rules and the op's fields,
 * without acting on it (pure: the fuzz target drives it directly). */
struct request_parsed {
	json_t *req;              /* owned; the object when it parsed */
	json_t *id;               /* borrowed from req; NULL when none could be read */
	const char *op;           /* set on success */
	const struct op_def *def; /* set on success: the op in t */
	const char *error;        /* on failure: the error code... */
	char message[256];        /* ...and a message for a person */
	bool close;               /* not this protocol at all: close after the reply */
};
/* 0, or -EINVAL with error/message/close set. Clear r in both cases. */
int request_parse(const char *line, size_t len, const struct op_table *t,
		  struct request_parsed *r);
void request_parsed_clear(struct request_parsed *r);

/* ---- the dispatcher (dispatch.c): the server's line handlers ----------- */

/* One complete line from a client (without the newline). */
void dispatch_line(struct conn *c, const char *line, size_t len);
/* A line over the limit: answered too_large, the connection closes after. */
void dispatch_too_large(struct conn *c);
/* Bytes on c were sent by a process other than the one that connected
 * (sender NULL: the kernel named none): unauthenticated, audited with the
 * sender's credentials, and the connection closes after the reply. */
void dispatch_foreign_sender(struct conn *c, const struct ucred *sender);

/* ---- pending requests (pending.c) ---------------------------------------- */

struct pending {
	struct broker *b;
	struct pending *prev, *next;  /* every pending */
	struct pending *qnext;        /* the audit FIFO, while cookie != 0 */
	struct conn *conn;        /* NULL when the reply goes nowhere */
	uint64_t cookie;          /* 0: not queued with the audit */
	json_t *reply;            /* the reply to send once durable */
	json_t *request;          /* the parsed request */
	int principal_ix;
	char principal_name[72];  /* "" when the peer maps to no principal */
	/* Once the record is durable (seq): NULL sends the reply with its
	 * audit_seq; an op that does more (re-check a token, sign a
	 * checkpoint) sets its own, which ends in pending_answer or frees p. */
	void (*on_durable)(struct pending *p, uint64_t seq);
	uint64_t seq;             /* the record's, once durable */
	/* pending_checkpoint's answer (note: the callee frees it) */
	void (*on_checkpoint)(struct pending *p, int rc, char *note, uint64_t size);
	void *op;                 /* the op's own state, freed by op_free */
	void (*op_free)(void *op);
	char log[256];            /* the log line to print when done */
};

struct pending *pending_new(struct broker *b, struct conn *c);
void pending_free(struct pending *p);
/* Free the op's state now (its token wiped). */
void pending_op_free(struct pending *p);
/* Queue the audit record (steals rec) for p; the reply leaves when it is
 * durable. On a store that cannot write, p is answered audit_unavailable
 * at once (and freed). */
void pending_audit(struct pending *p, json_t *rec);
/* The same for a record given as a member list (values borrowed: made
 * into the record before this returns). */
void pending_audit_fields(struct pending *p, const struct audit_fields *f);
/* Have a checkpoint signed over everything durable so far; cb runs on the
 * loop with its result once the audit writer has signed it (the loop never
 * waits for the signing). */
void pending_checkpoint(struct pending *p,
			void (*cb)(struct pending *p, int rc, char *note, uint64_t size));
/* Send p's reply (with audit_seq when with_seq), log its line, free p. */
void pending_answer(struct pending *p, uint64_t seq, bool with_seq);
/* The audit completion fd's handler. */
void pending_audit_ready(struct loop *l, int fd, uint32_t events, void *ctx);
/* Count a request's outcome for `status`. */
void broker_count_outcome(struct broker *b, const char *outcome);

/* Work for the admin-reads thread (offload.c). run() executes there and
 * may use only what the job owns and the audit store's read side; done()
 * runs back on the loop thread (cancelled: custodyd is shutting down and
 * done() must only free what the job owns; the pending is freed apart). */
struct offload_job {
	struct offload_job *next;
	void (*run)(struct offload_job *j);
	void (*done)(struct offload_job *j, bool cancelled);
};
int offload_init(struct broker *b);
void offload_submit(struct broker *b, struct offload_job *j);
/* Stop the worker (a running job finishes) and cancel the rest. */
void offload_fini(struct broker *b);

/* ---- ops (tool_ops.c, admin_ops.c) ------------------------------------- */

/* ---- the refusal guard (guard.c) ----------------------------------------- */

struct refusal_guard;
int guard_init(struct broker *b);
void guard_fini(struct broker *b);
/* A request of c is about to be refused (answered and audited). True:
 * audit it as usual. False: the uid is over limits.max_refusals in its
 * window — do not audit or answer it; the guard counted it and, unless c
 * was closing already, sent c one unaudited rate_limited line (id) and
 * closes it. */
bool guard_refusal(struct conn *c, json_t *id);
/* Write the summary record of ended windows (all: every window). */
void guard_flush(struct broker *b, bool all);
json_t *guard_status_json(struct broker *b);

json_t *broker_keys_json(struct broker *b);
/* A connection closes: the stop of its audit tail --follow is audited
 * (the server's on_conn_close handler). */
void admin_follow_stop(struct conn *c);
json_t *grant_json(const struct grant *g, int64_t now);

/* ---- the daemon (daemon.c) ------------------------------------------- */

struct broker_stats {
	uint64_t requests_ok;
	json_t *outcomes;          /* {outcome: count} */
};

struct broker {
	struct loop *loop;
	struct broker_config *cfg;
	struct vault *vault;
	struct audit *audit;
	struct tokens *tokens;
	struct audit_signer signer;
	char *origin;             /* the audit origin in force (fixed at start) */
	char *config_path;
	int64_t started_us;
	int sigfd;
	/* listening */
	int tool_fd, admin_fd;
	char *tool_path, *admin_path;
	struct listen_fds passed;       /* from systemd, until server_listen takes them */
	bool tool_passed, admin_passed; /* systemd owns these socket files: never unlink */
	struct loop_timer *accept_timer;
	bool accept_paused;
	/* connections */
	struct conn *conns;
	unsigned n_tool, n_admin;
	struct loop_timer *sweep_timer;
	struct loop_timer *drain_timer;  /* handles buffered lines once a client may send more */
	/* the server's line handlers (dispatch.c) */
	void (*on_line)(struct conn *c, const char *line, size_t len);
	void (*on_too_large)(struct conn *c);
	void (*on_foreign_sender)(struct conn *c, const struct ucred *sender);
	void (*on_conn_close)(struct conn *c);
	/* requests in flight (pending.c) */
	struct pending *pend_head, *pend_tail;
	struct pending *queued_head, *queued_tail;  /* records queued, in cookie order */
	struct pending *cp_waiting;  /* waiting for a checkpoint (few: officer actions) */
	uint64_t next_cookie;
	unsigned n_pending;
	void (*on_drained)(struct broker *b);  /* n_pending fell to 0 */
	/* the admin-reads worker (offload.c) */
	pthread_t off_thread;
	pthread_mutex_t off_lock;
	pthread_cond_t off_wake;
	struct offload_job *off_queue, *off_done;
	int off_efd;
	bool off_started, off_stop;
	struct policy *policy;    /* grants, suspensions, lockdown, rates (policy.h) */
	struct refusal_guard *guard;  /* refusals per uid (guard.c) */
	struct witness_client *wc; /* audit.witnesses; NULL: none configured */
	struct shipper *ship;      /* audit.ship; NULL: none configured */
	struct loop_timer *expiry_timer;
	/* stopping */
	bool stopping;
	struct loop_timer *stop_timer;
	int64_t stop_deadline_ms;
	json_t *outcomes;
	struct audit_jbuf reply_head;  /* a token reply's head, reused (loop thread) */
};

/* The client of the configured witnesses (witness_client.c). new: *out
 * stays NULL when none are configured. status: {"witnesses": [...],
 * "quorum", "conflict": the alarm or absent}. ack: the alarm taken away
 * (the caller owns it) and the witnesses in conflict asked again; NULL
 * when no alarm is shown. */
/* The shippers of audit.ship (ship.c): one thread per sink. start: *out
 * stays NULL when no sink is configured; stop joins the threads (before
 * the audit store closes). status: [{"name","type","shipped_through",
 * "shipped_checkpoint","backlog","last_error"}]. */
struct shipper;
int shipper_start(struct broker *b, struct shipper **out);
void shipper_stop(struct shipper *sh);
json_t *shipper_status(struct shipper *sh, uint64_t audit_size_now);

struct witness_client;
int witness_client_new(struct broker *b, struct witness_client **out);
void witness_client_free(struct witness_client *wc);
json_t *witness_client_status(struct witness_client *wc);
bool witness_client_has_alarm(const struct witness_client *wc);
json_t *witness_client_ack(struct witness_client *wc);

/* Re-read the config; 0 or -EINVAL with err filled (the running policy
 * stays). Settings that changed but apply only at the next start (state
 * and key paths, a socket's path, mode or group, the audit origin) are
 * logged and appended to not_applied (may be NULL) as "key (old -> new)". */
int broker_reload(struct broker *b, struct cerr *err, json_t *not_applied);
/* The actor name for a uid ("alice" or "uid:N"). */
void broker_user_name(uid_t uid, char out[static 64]);


#endif

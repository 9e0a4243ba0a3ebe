/* broker.h — custodyd's public interface, the one header broker/ exports:
 * the configuration (DESIGN §8; libcustody_broker_config, which the CLI
 * links without the daemon) and the daemon's entry point. The CLI uses the
 * config API to find the state directory, the key source and the sockets.
 *
 * Errors: 0 or a negative errno (util.h); config errors are -EINVAL with a
 * cerr message that names the key path ("principals[1].match.uid: expected
 * an integer", "unknown key: limits.foo"), -ENOENT/-EACCES/-EIO when the
 * file cannot be read.
 */
#ifndef CUSTODY_BROKER_H
#define CUSTODY_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "util.h"
#include "vault.h"

/* The identity provider client's settings (upstream.c, tokens.c). */
struct upstream_config {
	char *ca_file;            /* NULL: system trust store */
	long timeout_ms;          /* total per transfer; default 10000 */
	int retries;              /* 5xx/timeout retries; default 3 */
	char **allowed_hosts;     /* NULL-terminated */
	int probe_wait_s;         /* default 90 */
};

#define BROKER_DEFAULT_CONFIG "/etc/custody/custody.json"

enum broker_role { ROLE_ADMIN = 0, ROLE_OFFICER, ROLE_AUDITOR, ROLE_COUNT };

struct broker_socket_config {
	char *path;       /* absolute: runtime_dir joined with the configured path */
	mode_t mode;      /* default 0660 */
	char *group;      /* NULL: the broker's own group (no chown) */
	gid_t gid;        /* resolved at load when group != NULL */
};

struct broker_role_config {
	uid_t *uids;      /* root (uid 0) holds every role regardless */
	size_t n_uids;
	gid_t *gids;      /* resolved from the configured group names */
	size_t n_gids;
};

struct principal_match {
	bool has_uid, has_gid, has_user, has_group, has_exe_sha256;
	uid_t uid;
	gid_t gid;
	uid_t user_uid;           /* "user" resolved with getpwnam at load */
	gid_t group_gid;          /* "group" resolved with getgrnam at load */
	char *user, *group;       /* names as configured (for messages) */
	char *exe;                /* NULL: any executable */
	uint8_t exe_sha256[32];
};

struct principal_config {
	char *name;
	struct principal_match match;
	char **tenants;           /* ids or names; "*" is any */
	size_t n_tenants;         /* default ["*"] */
	char **scopes;            /* NULL (absent): any scope the grant holds */
	size_t n_scopes;
	bool has_rate;            /* absent: unlimited */
	double rate_per_second, rate_burst;
	bool require_purpose;
};

struct broker_limits {
	unsigned max_connections;          /* 1024 */
	unsigned max_connections_per_uid;  /* 64 */
	size_t max_request_bytes;          /* 65536 */
	unsigned idle_timeout_s;           /* 60 */
	uint64_t max_exe_bytes;            /* 256 MiB: largest executable hashed for exe_sha256 */
	unsigned max_refusals;             /* 20: refused requests per uid per window, audited one by one */
	unsigned refusal_window_s;         /* 10 */
};

/* audit.witnesses[] (DESIGN §11.1) */
struct broker_witness_config {
	char *name;               /* a label for status and log lines */
	char *url;                /* the add-checkpoint URL (https:// or http://) */
	char *key;                /* the witness's verifier key as configured */
	struct audit_vkey vkey;   /* parsed (type 0x04) */
	char *ca_file;            /* NULL: the system's CAs */
};

/* audit.ship[] (DESIGN §11.2) */
struct broker_ship_config {
	bool syslog;              /* "type": "syslog" (else "file") */
	char *url;                /* syslog: tls://host:port */
	char *ca_file, *cert_file, *key_file;  /* syslog; NULL: system CAs, no client cert */
	char *path;               /* file */
	char *name;               /* "syslog <url>" or "file <path>": status and cursor key */
};

struct broker_config {
	char *path;               /* the file loaded (absolute) */
	char *state_dir;          /* absolute */
	char *runtime_dir;        /* absolute; default /run/custody */
	char *vault_dir;          /* state_dir/vault */
	char *audit_db;           /* state_dir/audit.db */
	/* Exactly one of the two is set (default key_file /etc/custody/master.key).
	 * A relative path given in the config is resolved against the config's
	 * directory unless $CREDENTIALS_DIRECTORY holds it (see vault.h). */
	char *key_file;
	char *passphrase_file;
	struct broker_socket_config tool_socket;   /* default custody.sock */
	struct broker_socket_config admin_socket;  /* default admin.sock */
	struct broker_role_config roles[ROLE_COUNT];
	struct principal_config *principals;
	size_t n_principals;
	struct upstream_config upstream;
	char *audit_origin;                        /* "custody.example.net/audit" */
	uint64_t checkpoint_every;                 /* 1000 */
	unsigned checkpoint_interval_s;            /* 60 */
	struct broker_witness_config *witnesses;   /* audit.witnesses */
	size_t n_witnesses;
	unsigned witness_quorum;                   /* default: n_witnesses */
	struct broker_ship_config *ship;           /* audit.ship */
	size_t n_ship;
	struct broker_limits limits;
};

/* The config path to use: arg (from --config) when not NULL, else
 * $CUSTODY_CONFIG when set and non-empty, else BROKER_DEFAULT_CONFIG. */
const char *broker_config_path(const char *arg);

/* Parse and validate the config file at path. *out set only on success. */
int broker_config_load(const char *path, struct broker_config **out, struct cerr *err)
	__attribute__((warn_unused_result));
/* Same, from text; base_dir resolves relative paths (path: for messages). */
int broker_config_parse(const char *text, size_t len, const char *path, const char *base_dir,
			struct broker_config **out, struct cerr *err)
	__attribute__((warn_unused_result));
void broker_config_free(struct broker_config *c);
/* `custody config check`: load path as broker_config_load does, calling
 * each(ctx, msg) for every error found ("FILE: principals[1].match.uid:
 * expected an integer"), not just the first, where the parse can go on
 * (each section, each principal, each unknown key). 0 valid, -EINVAL
 * invalid (each called at least once), else the file could not be read
 * (err says why; each not called). */
int broker_config_check(const char *path, void (*each)(void *ctx, const char *msg), void *ctx,
			struct cerr *err) __attribute__((warn_unused_result));

/* The vault key source described by the config (pointers into c). */
void broker_config_key_source(const struct broker_config *c, struct vault_key_source *src);

/* A complete config in JSON (pretty-printed, newline-ended, every key at its
 * default) for `custody init`. state_dir, runtime_dir and key_file may be
 * NULL for the defaults (/var/lib/custody, /run/custody,
 * /etc/custody/master.key). malloc'd; NULL on allocation failure. The text
 * loads with broker_config_parse as is (no principals, roles for root only,
 * sockets without a group). */
char *broker_config_default_text(const char *state_dir, const char *runtime_dir,
				 const char *key_file);

/* Role names "admin", "officer", "auditor". */
const char *broker_role_name(enum broker_role r);

/* custodyd [--config FILE] [--foreground]; returns the process exit status. */
int broker_main(int argc, char **argv);

#endif

/* test_broker_config.c — custodyd's config parser: defaults, paths, every
 * error naming its key path, and the default text `custody init` writes. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker.h"

static int parse(const char *text, struct broker_config **c, struct cerr *err)
{
	memset(err, 0, sizeof(*err));
	return broker_config_parse(text, strlen(text), "cfg.json", "/etc/custody", c, err);
}

static void expect_error(const char *text, const char *needle)
{
	struct broker_config *c = NULL;
	struct cerr err;

	assert_int_equal(parse(text, &c, &err), -EINVAL);
	assert_null(c);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err.msg, needle);
}

static void test_defaults(void **state)
{
	struct broker_config *c = NULL;
	struct cerr err;

	(void)state;
	assert_int_equal(parse("{\"state_dir\":\"state\"}", &c, &err), 0);
	assert_string_equal(c->state_dir, "/etc/custody/state");
	assert_string_equal(c->vault_dir, "/etc/custody/state/vault");
	assert_string_equal(c->audit_db, "/etc/custody/state/audit.db");
	assert_string_equal(c->runtime_dir, "/run/custody");
	assert_string_equal(c->tool_socket.path, "/run/custody/custody.sock");
	assert_string_equal(c->admin_socket.path, "/run/custody/admin.sock");
	assert_int_equal(c->tool_socket.mode, 0660);
	assert_null(c->tool_socket.group);
	assert_string_equal(c->key_file, "/etc/custody/master.key");
	assert_null(c->passphrase_file);
	assert_string_equal(c->audit_origin, "custody.example.net/audit");
	assert_int_equal(c->checkpoint_every, 1000);
	assert_int_equal(c->checkpoint_interval_s, 60);
	assert_int_equal(c->limits.max_connections, 1024);
	assert_int_equal(c->limits.max_connections_per_uid, 64);
	assert_int_equal(c->limits.max_request_bytes, 65536);
	assert_int_equal(c->limits.idle_timeout_s, 60);
	assert_int_equal(c->upstream.timeout_ms, 10000);
	assert_int_equal(c->upstream.retries, 3);
	assert_int_equal(c->upstream.probe_wait_s, 90);
	assert_null(c->upstream.ca_file);
	assert_string_equal(c->upstream.allowed_hosts[0], "login.microsoftonline.com");
	assert_null(c->upstream.allowed_hosts[3]);
	assert_int_equal(c->n_principals, 0);
	for (int r = 0; r < ROLE_COUNT; r++) {
		assert_int_equal(c->roles[r].n_uids, 1);
		assert_int_equal(c->roles[r].uids[0], 0);
	}
	broker_config_free(c);
}

static void test_full(void **state)
{
	struct broker_config *c = NULL;
	struct cerr err;
	const char *text =
		"{\"state_dir\":\"/var/lib/custody\",\"runtime_dir\":\"/run/x\","
		"\"passphrase_file\":\"pass\","
		"\"tool_socket\":{\"path\":\"t.sock\",\"mode\":\"0666\",\"group\":\"root\"},"
		"\"admin_socket\":{\"path\":\"/abs/a.sock\",\"mode\":\"0600\"},"
		"\"roles\":{\"auditor\":{\"uids\":[5,6],\"groups\":[\"root\"]},\"admin\":{}},"
		"\"principals\":[{\"name\":\"siem\",\"match\":{\"uid\":1001,\"exe\":\"/usr/bin/x\","
		"\"exe_sha256\":\"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\"},"
		"\"tenants\":[\"contoso\"],\"scopes\":[\"s/.default\"],"
		"\"rate\":{\"per_second\":0.5,\"burst\":2},\"require_purpose\":true},"
		"{\"name\":\"t1\",\"match\":{\"user\":\"root\",\"group\":\"root\"}}],"
		"\"upstream\":{\"ca_file\":\"ca.pem\",\"timeout_ms\":500,\"retries\":0,"
		"\"allowed_hosts\":[\"127.0.0.1\"],\"probe_wait_s\":5},"
		"\"audit\":{\"origin\":\"mssp.example/audit\",\"checkpoint_every\":10,"
		"\"checkpoint_interval_s\":0},"
		"\"limits\":{\"max_connections\":10,\"max_connections_per_uid\":2,"
		"\"max_request_bytes\":4096,\"idle_timeout_s\":3}}";

	(void)state;
	assert_int_equal(parse(text, &c, &err), 0);
	assert_string_equal(c->tool_socket.path, "/run/x/t.sock");
	assert_int_equal(c->tool_socket.mode, 0666);
	assert_string_equal(c->tool_socket.group, "root");
	assert_int_equal(c->tool_socket.gid, 0);
	assert_string_equal(c->admin_socket.path, "/abs/a.sock");
	assert_null(c->key_file);
	assert_string_equal(c->passphrase_file, "/etc/custody/pass");
	assert_int_equal(c->roles[ROLE_AUDITOR].n_uids, 2);
	assert_int_equal(c->roles[ROLE_AUDITOR].n_gids, 1);
	assert_int_equal(c->roles[ROLE_ADMIN].n_uids, 0);
	assert_int_equal(c->roles[ROLE_OFFICER].n_uids, 1);
	assert_int_equal(c->n_principals, 2);
	assert_true(c->principals[0].match.has_uid);
	assert_int_equal(c->principals[0].match.uid, 1001);
	assert_string_equal(c->principals[0].match.exe, "/usr/bin/x");
	assert_true(c->principals[0].match.has_exe_sha256);
	assert_int_equal(c->principals[0].match.exe_sha256[31], 0xff);
	assert_int_equal(c->principals[0].n_scopes, 1);
	assert_true(c->principals[0].has_rate);
	assert_true(c->principals[0].rate_per_second == 0.5);
	assert_true(c->principals[0].require_purpose);
	assert_true(c->principals[1].match.has_user);
	assert_int_equal(c->principals[1].match.user_uid, 0);
	assert_int_equal(c->principals[1].n_tenants, 1);
	assert_string_equal(c->principals[1].tenants[0], "*");
	assert_null(c->principals[1].scopes);
	assert_string_equal(c->upstream.ca_file, "/etc/custody/ca.pem");
	assert_string_equal(c->upstream.allowed_hosts[0], "127.0.0.1");
	assert_null(c->upstream.allowed_hosts[1]);
	assert_string_equal(c->audit_origin, "mssp.example/audit");
	assert_int_equal(c->limits.idle_timeout_s, 3);
	broker_config_free(c);
}

static void test_errors_name_the_key(void **state)
{
	(void)state;
	expect_error("{}", "state_dir: required");
	expect_error("{\"state_dir\":\"s\",\"limits\":{\"foo\":1}}", "unknown key: limits.foo");
	expect_error("{\"state_dir\":\"s\",\"bogus\":1}", "unknown key: bogus");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{\"uid\":1}},"
		     "{\"name\":\"b\",\"match\":{\"uid\":\"x\"}}]}",
		     "principals[1].match.uid: expected an integer");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{\"uid\":1,\"pid\":2}}]}",
		     "unknown key: principals[0].match.pid");
	expect_error("{\"state_dir\":\"s\",\"state_dir\":\"t\"}", "duplicate");
	expect_error("{\"state_dir\":\"s\",\"tool_socket\":{\"group\":\"no-such-group-xyz\"}}",
		     "tool_socket.group: no such group");
	expect_error("{\"state_dir\":\"s\",\"roles\":{\"officer\":{\"groups\":[\"no-such-group-xyz\"]}}}",
		     "roles.officer.groups[0]: no such group");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{\"user\":\"no-such-user-xyz\"}}]}",
		     "principals[0].match.user: no such user");
	expect_error("{\"state_dir\":\"s\",\"tool_socket\":{\"mode\":660}}", "tool_socket.mode");
	expect_error("{\"state_dir\":\"s\",\"tool_socket\":{\"mode\":\"01777\"}}", "tool_socket.mode");
	expect_error("{\"state_dir\":\"s\",\"key_file\":\"k\",\"passphrase_file\":\"p\"}",
		     "not both");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{}}]}",
		     "principals[0].match: give at least one");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{\"uid\":1}},"
		     "{\"name\":\"a\",\"match\":{\"uid\":2}}]}",
		     "principals[1].name: duplicate");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{\"uid\":1},"
		     "\"rate\":{\"per_second\":0}}]}",
		     "principals[0].rate.per_second");
	expect_error("{\"state_dir\":\"s\",\"principals\":[{\"name\":\"a\",\"match\":{\"exe_sha256\":\"abc\"}}]}",
		     "principals[0].match.exe_sha256");
	expect_error("{\"state_dir\":\"s\",\"limits\":{\"max_request_bytes\":10}}",
		     "limits.max_request_bytes: expected an integer from 1024");
	expect_error("{\"state_dir\":\"s\",\"audit\":{\"origin\":\"a b\"}}", "audit.origin");
	expect_error("{\"state_dir\":\"s\",\"upstream\":{\"allowed_hosts\":[\"\"]}}",
		     "upstream.allowed_hosts[0]");
	expect_error("{\"state_dir\":\"s\",\"admin_socket\":{\"path\":\"custody.sock\"}}",
		     "admin_socket.path: must differ");
	expect_error("[]", "expected a JSON object");
	expect_error("{\"state_dir\":\"s\"} x", "line 1");
}

static void test_default_text_loads(void **state)
{
	struct broker_config *c = NULL;
	struct cerr err;
	char *text;

	(void)state;
	text = broker_config_default_text("/tmp/st", "/tmp/rt", "/tmp/k");
	assert_non_null(text);
	assert_int_equal(parse(text, &c, &err), 0);
	assert_string_equal(c->state_dir, "/tmp/st");
	assert_string_equal(c->tool_socket.path, "/tmp/rt/custody.sock");
	assert_string_equal(c->key_file, "/tmp/k");
	broker_config_free(c);
	free(text);
	text = broker_config_default_text(NULL, NULL, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "/var/lib/custody"));
	/* relative, so the service finds it as a systemd credential */
	assert_non_null(strstr(text, "\"key_file\": \"master.key\""));
	free(text);
}

static void test_path_and_credentials(void **state)
{
	struct broker_config *c = NULL;
	struct cerr err = {0};
	char dir[] = "/tmp/custody-cfg-XXXXXX", path[256], key[256];
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/custody.json", dir);
	snprintf(key, sizeof(key), "%s/master.key", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"state_dir\":\"st\",\"key_file\":\"master.key\"}", f);
	fclose(f);
	/* not in $CREDENTIALS_DIRECTORY: relative to the config file */
	setenv("CREDENTIALS_DIRECTORY", "/nonexistent", 1);
	assert_int_equal(broker_config_load(path, &c, &err), 0);
	assert_string_equal(c->key_file, key);
	broker_config_free(c);
	/* present there: taken from there */
	f = fopen(key, "w");
	assert_non_null(f);
	fclose(f);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	snprintf(path, sizeof(path), "%s/sub", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub/custody.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"state_dir\":\"st\",\"key_file\":\"master.key\"}", f);
	fclose(f);
	assert_int_equal(broker_config_load(path, &c, &err), 0);
	assert_string_equal(c->key_file, key);
	assert_string_equal(c->path, path);
	broker_config_free(c);
	unsetenv("CREDENTIALS_DIRECTORY");
	assert_int_equal(broker_config_load("/nonexistent/custody.json", &c, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "custody init"));
	/* the path rule */
	setenv("CUSTODY_CONFIG", "/x.json", 1);
	assert_string_equal(broker_config_path(NULL), "/x.json");
	assert_string_equal(broker_config_path("/y.json"), "/y.json");
	unsetenv("CUSTODY_CONFIG");
	assert_string_equal(broker_config_path(NULL), BROKER_DEFAULT_CONFIG);
	unlink(path);
	snprintf(path, sizeof(path), "%s/sub", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/custody.json", dir);
	unlink(path);
	unlink(key);
	rmdir(dir);
}

struct collected {
	size_t n;
	char all[4096];
};

static void collect(void *ctx, const char *msg)
{
	struct collected *c = ctx;
	size_t len = strlen(c->all);

	c->n++;
	snprintf(c->all + len, sizeof(c->all) - len, "%s\n", msg);
}

/* config check: every error, each with its key path, not just the first;
 * a valid file calls back nothing. */
static void test_check_collects_every_error(void **state)
{
	char path[] = "/tmp/custody-cfgcheck-XXXXXX";
	static const char text[] =
		"{\"bogus\":1,\"state_dir\":2,"
		"\"principals\":[{\"name\":\"a\",\"match\":{\"uid\":\"x\"}},"
		"{\"name\":\"b\",\"match\":{\"gid\":\"y\"}}],"
		"\"upstream\":{\"timeout_ms\":\"x\"},\"limits\":{\"foo\":1}}";
	static const char good[] = "{\"state_dir\":\"/tmp/x\"}";
	struct collected c = {0};
	struct cerr err = {{0}};
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	assert_int_equal(broker_config_check(path, collect, &c, &err), -EINVAL);
	assert_int_equal(c.n, 6);
	assert_non_null(strstr(c.all, "unknown key: bogus"));
	assert_non_null(strstr(c.all, "state_dir: expected a string"));
	assert_non_null(strstr(c.all, "principals[0].match.uid"));
	assert_non_null(strstr(c.all, "principals[1].match.gid"));
	assert_non_null(strstr(c.all, "upstream.timeout_ms"));
	assert_non_null(strstr(c.all, "unknown key: limits.foo"));
	/* loading for use still stops at the first */
	{
		struct broker_config *cfg = NULL;

		assert_int_equal(broker_config_load(path, &cfg, &err), -EINVAL);
		assert_null(cfg);
		assert_non_null(strstr(err.msg, "unknown key: bogus"));
	}
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good, sizeof(good) - 1), (ssize_t)(sizeof(good) - 1));
	close(fd);
	c.n = 0;
	assert_int_equal(broker_config_check(path, collect, &c, &err), 0);
	assert_int_equal(c.n, 0);
	unlink(path);
	assert_int_equal(broker_config_check(path, collect, &c, &err), -ENOENT);
	assert_int_equal(c.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_errors_name_the_key),
		cmocka_unit_test(test_default_text_loads),
		cmocka_unit_test(test_path_and_credentials),
		cmocka_unit_test(test_check_collects_every_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

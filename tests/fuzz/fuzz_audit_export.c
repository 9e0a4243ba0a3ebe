/* fuzz_audit_export.c — audit_verify_export on arbitrary bytes written to
 * a temporary file, with a fixed verifier key: a customer verifies exports
 * it received from the MSSP, so an export is untrusted input. Nothing but
 * "verified" (0), "tampered" (-EBADMSG) or "unreadable/invalid" may come
 * back; a garbage file must never verify. The export is read a record at
 * a time (export_scan.c finds the pieces): every input must get the same
 * answer, message and statistics as from one tree of the whole document
 * (audit_verify_export_whole), or the target aborts. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The seed corpus was made with the key in corpus/audit_export/export.vkey
 * (make_audit_seeds.py); meson passes it as $CUSTODY_FUZZ_VKEY_FILE. */
static const char *vkey_env;
static char vkey[256];
/* /dev/shm when there is one: truncating and rewriting a file on a disk
 * file system blocks on writeback and cut the rate to a few hundred a second */
static char path[64];
static int fd = -1;
/* Outcomes, printed at exit: a run must show that valid exports verify
 * (the seeds) and that mutated ones are refused, not only parse errors. */
static unsigned long n_ok, n_tampered, n_other;

static void cleanup(void)
{
	fprintf(stderr, "fuzz-audit_export: %lu verified, %lu tampered, %lu invalid\n", n_ok,
		n_tampered, n_other);
	if (fd >= 0)
		close(fd);
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FILE *f;

	if (sodium_init() < 0)
		abort();
	snprintf(path, sizeof(path), "%s/custody-fuzz-export-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	atexit(cleanup);
	/* the key the seeds were signed with sits next to them; fall back to a
	 * syntactically valid key of our own */
	vkey_env = getenv("CUSTODY_FUZZ_VKEY_FILE");
	if (vkey_env != NULL && (f = fopen(vkey_env, "r")) != NULL) {
		if (fgets(vkey, sizeof(vkey), f) == NULL)
			vkey[0] = '\0';
		fclose(f);
		vkey[strcspn(vkey, "\r\n")] = '\0';
	}
	if (vkey[0] == '\0')
		snprintf(vkey, sizeof(vkey),
			 "custody.example.net/audit+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit_verify_stats st, st2;
	struct audit_verify_opts o = {.vkey = vkey};
	struct cerr err = {{0}}, err2 = {{0}};
	int rc, rc2;

	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	memset(&st, 0, sizeof(st));
	rc = audit_verify_export(path, vkey, &st, &err);
	if (rc > 0)
		abort();
	if (rc < 0 && err.msg[0] == '\0')
		abort(); /* a failure says why */
	rc2 = audit_verify_export_whole(path, &o, &st2, &err2);
	if (rc2 != rc || strcmp(err.msg, err2.msg) != 0 || memcmp(&st, &st2, sizeof(st)) != 0) {
		fprintf(stderr, "record at a time: %d %s\nwhole document: %d %s\n", rc, err.msg,
			rc2, err2.msg);
		abort();
	}
	if (rc == 0)
		n_ok++;
	else if (rc == -EBADMSG)
		n_tampered++;
	else
		n_other++;
	return 0;
}

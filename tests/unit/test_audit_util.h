/* test_audit_util.h — shared fixtures for the audit store's unit tests. */
#ifndef TEST_AUDIT_UTIL_H
#define TEST_AUDIT_UTIL_H

#include <stdint.h>

#include "audit.h"

struct tkey {
	uint8_t pk[32];
	uint8_t sk[64];
	struct audit_signer signer;
	char vkey[512];
};

/* A fixed test key (seeded) signing as origin. */
void tkey_init(struct tkey *k, const char *origin, uint8_t seed_byte);
/* mkdtemp'd directory; tdir_free removes it and its files. */
char *tdir_new(void);
void tdir_free(char *dir);
/* dir/name, malloc'd */
char *tpath(const char *dir, const char *name);
/* Open a writable store with the key (checkpoint_every 0). */
struct audit *topen(const char *path, struct tkey *k);
/* Append n records cycling through tenants "t0".."t<ntenants-1>". */
void tfill(struct audit *a, unsigned n, unsigned ntenants);
/* Run SQL on a closed store file (test tampering). */
void tsql(const char *path, const char *sql);

int audit_group_store(void);
int audit_group_verify(void);
int audit_group_fault(void);
int audit_group_cosig(void);
int audit_group_scan(void);
/* Verify an export record at a time and as one tree (the reference):
 * fails the test unless both say the same; returns what they say. */
int verify_export_both(const char *path, const char *vkey, const char *checkpoint,
		       struct audit_verify_stats *st, struct cerr *err);

#endif

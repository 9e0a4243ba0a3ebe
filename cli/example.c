/* example.c — the smallest libcustody tool (the README shows it):
 *
 *     cc example.c $(pkg-config --cflags --libs libcustody) -o example
 *     ./example contoso
 *
 * It asks the broker for a token for one tenant and prints what it got,
 * never the token itself. Exit 0 got one, 3 refused, 1 anything else. */
#include <errno.h>
#include <stdio.h>

#include <libcustody.h>

int main(int argc, char **argv)
{
	struct custody_token_request req = {
		.tenant = argc > 1 ? argv[1] : "contoso",
		.min_ttl = 300,
		.purpose = "libcustody example",
	};
	struct custody_client *c = NULL;
	struct custody_token *t = NULL;
	struct custody_error err;
	int rc;

	rc = custody_connect(NULL, &c, &err);      /* $CUSTODY_SOCKET or the default path */
	if (rc == 0)
		rc = custody_token_request(c, &req, 15000, &t, &err);
	custody_close(c);
	if (rc == -EREMOTEIO) {
		fprintf(stderr, "refused: %s (%s)\n", err.message, err.code);
		if (err.retry_after > 0)
			fprintf(stderr, "retry in %d s\n", err.retry_after);
		return 3;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", custody_strerror(rc), err.message);
		return 1;
	}
	/* use t->access_token here (never log it); it is valid until t->expires_at */
	printf("token for %s, grant %s, expires %s\n", t->tenant, t->grant, t->expires_at);
	custody_token_free(t);
	return 0;
}

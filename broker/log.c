/* log.c — custodyd's log lines (log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

#include "util.h"

void broker_log(const char *fmt, ...)
{
	char line[1024], ts[UTIL_TIME_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One line per event: no value may break the line or send a
	 * terminal control sequence. */
	for (char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	if (util_time_format(util_now_us(), false, ts) < 0)
		ts[0] = '\0';
	fprintf(stderr, "%s custodyd: %s\n", ts, line);
}

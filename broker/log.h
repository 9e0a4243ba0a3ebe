/* log.h — custodyd's log: one line per event on stderr, never a secret. */
#ifndef CUSTODY_BROKER_LOG_H
#define CUSTODY_BROKER_LOG_H

/* A timestamped line; control characters in the text become spaces, so
 * no value can break the line or send a terminal control sequence. */
void broker_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

/* custodyd.c — the broker daemon's main(); everything else is in the
 * broker library so tests and fuzz targets link it without a main. */
#include "broker.h"

int main(int argc, char **argv)
{
	return broker_main(argc, argv);
}

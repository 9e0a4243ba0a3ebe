#include "cli.h"
int cmd_demo(struct cli_ctx *ctx, int argc, char **argv) { (void)ctx; (void)argc; (void)argv; return 1; }

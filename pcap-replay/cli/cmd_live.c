#include "sp_cli.h"
int sp_cmd_live(int argc, char **argv) { (void)argc; (void)argv; return 2; }

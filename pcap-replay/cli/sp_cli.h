/*
 * sp_cli.h: the subcommands of sluice-replay.  Each lives in its own file
 * (cmd_<name>.c), takes the arguments after its name (argv[0] is the
 * subcommand name) and returns the process exit status.  To add one,
 * declare it here and list it in main.c's table.
 */
#ifndef SP_CLI_H
#define SP_CLI_H

#define SP_EXIT_OK 0
/* malformed input, unsupported capture, write error */
#define SP_EXIT_INPUT 1
/* bad command line, input file missing */
#define SP_EXIT_USAGE 2

int sp_cmd_extract(int argc, char **argv);
int sp_cmd_stats(int argc, char **argv);
int sp_cmd_sim(int argc, char **argv);
int sp_cmd_patience(int argc, char **argv);
int sp_cmd_bench(int argc, char **argv);
int sp_cmd_live(int argc, char **argv);

#endif

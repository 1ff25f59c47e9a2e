/*
 * sluice-replay: capture tooling of sluice.  One executable, one subcommand
 * per file, so that sim and live can join extract and stats without
 * touching each other.
 */
#include <stdio.h>
#include <string.h>

#include "sp_cli.h"

#ifndef SP_VERSION
#define SP_VERSION "unknown" /* set by CMake from the project version */
#endif

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} commands[] = {
    {"extract", sp_cmd_extract,
     "write one transcript per SMTP session found in captures"},
    {"stats", sp_cmd_stats,
     "print one line per SMTP session found in captures, write nothing"},
    {"sim", sp_cmd_sim,
     "replay client sessions through the core on a virtual clock"},
    {"patience", sp_cmd_patience,
     "Kaplan-Meier estimate of client patience from captures"},
    {"bench", sp_cmd_bench, "sessions replayed per second through the core"},
    {"live", sp_cmd_live,
     "replay client sessions over TCP against a loopback SMTP server"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: sluice-replay COMMAND [OPTIONS] FILE...\n"
             "\n"
             "Reads pcap/pcapng captures, reassembles TCP and finds SMTP "
             "sessions.\n"
             "\n"
             "Commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n"
             "'sluice-replay COMMAND --help' describes a command's options.\n"
             "Exit status: 0 success, 1 malformed or unsupported input (the "
             "message names\nthe file, packet number and byte offset), 2 usage "
             "error.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return SP_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
    printf("sluice-replay %s\n", SP_VERSION);
    return SP_EXIT_OK;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    usage(stdout);
    return SP_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "sluice-replay: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return SP_EXIT_USAGE;
}

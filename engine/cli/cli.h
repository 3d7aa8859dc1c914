/* cli/cli.h - the `qnext` command table: one file per subcommand (cmd_<name>.c). */
#ifndef QN_CLI_H
#define QN_CLI_H

/* Every subcommand gets argv with argv[0] = the subcommand name and returns the exit status:
 * 0 success, 1 runtime failure (message on stderr), 2 usage error. `--help` prints usage, exits 0. */
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_demo_model(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif

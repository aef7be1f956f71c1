/* operator.h — `tuma op`: the operator side of the switch from the command line, for trying a
 * scheme out and for checks by hand. `op receive` stands in for a payee operator (it registers
 * parties and answers each forwarded transfer), `op send` for a payer (one transfer, then its
 * outcome), `op query` asks for a transfer's state. They speak the operator protocol
 * (proto/README.md §5-6) over a wire.h connection with an operator certificate.
 */
#ifndef TUMA_CLI_OPERATOR_H
#define TUMA_CLI_OPERATOR_H

/* `tuma op VERB …`: argv[0] is "op". Returns a CLI_EXIT_* code (cli.h): 0 done (for send: the
 * transfer committed), 1 refused, failed, aborted or expired, 2 usage error (nothing was
 * attempted). */
int cli_op_main(int argc, char **argv);

#endif

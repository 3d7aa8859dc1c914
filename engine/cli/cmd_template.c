/* cli/cmd_template.c - placeholder until its issue lands; replaced by the real command. */
#include "cli.h"

#include <stdio.h>

int cmd_template(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "qnext: '%s' is not built yet\n", argv[0]);
    return 1;
}

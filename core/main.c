/* main.c: the zhengtong command: serve, check, backup, version. */
#include "core.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "version") == 0) {
        printf("zhengtong %s (plugin ABI %d)\n", ZT_VERSION, ZT_ABI_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: zhengtong serve|check|backup|version [-c FILE]\n");
    return 2;
}

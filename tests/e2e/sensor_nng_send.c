/* sensor_nng_send.c: a gateway stand-in for the e2e tests: push each file as one message. */
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/supplemental/util/platform.h>
#include <stdio.h>
#include <stdlib.h>

/* usage: sensor_nng_send URL FILE... */
int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s URL FILE...\n", argv[0]);
        return 2;
    }
    nng_socket s;
    int rv = nng_push0_open(&s);
    if (rv == 0) rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 10000);
    if (rv == 0) rv = nng_dial(s, argv[1], NULL, 0); /* blocking: connected when it returns */
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], nng_strerror(rv));
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        char *buf = malloc(n > 0 ? (size_t)n : 1);
        if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 1;
        }
        fclose(f);
        if ((rv = nng_send(s, buf, (size_t)n, 0)) != 0) {
            fprintf(stderr, "send: %s\n", nng_strerror(rv));
            return 1;
        }
        free(buf);
    }
    nng_msleep(300); /* nng_close drops what is still queued: let it go out */
    nng_close(s);
    return 0;
}

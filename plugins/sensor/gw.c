/* gw.c: the nng pull socket for gateways: each message a batch of line protocol or JSON. */
#include "sensor.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <stdlib.h>

struct sn_gw {
    nng_socket sock;
    nng_aio *aio;
    sn_inbox *inbox;
    sn *S;
};

/* On an nng thread: queue the message, receive the next. */
static void on_recv(void *arg)
{
    sn_gw *g = arg;
    int rv = nng_aio_result(g->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) return;
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(g->aio);
        sn_inbox_push(g->inbox, NULL, nng_msg_body(m), nng_msg_len(m));
        nng_msg_free(m);
    }
    nng_recv_aio(g->sock, g->aio);
}

int sn_gw_start(sn *S)
{
    const char *url = zt_opt_string(S->p, "nng_listen");
    if (!url || !*url) return ZT_OK;
    if (zt_option_listen_apart(S->p, "nng_listen", url) != ZT_OK) return ZT_EINVAL;
    int fmt = sn_format_parse(zt_opt_string(S->p, "nng_format"));
    if (fmt < 0)
        return zt_option_fail(S->p, "nng_format", "auto, line or json, not \"%s\"",
                              zt_opt_string(S->p, "nng_format"));
    sn_gw *g = calloc(1, sizeof *g);
    if (!g) return ZT_ENOMEM;
    S->gw = g;
    g->S = S;
    if (!(g->inbox = sn_inbox_new(S, "nng", fmt))) return ZT_ENOMEM;
    /* Making the listener parses the address (scheme, host, port) without binding it: a
     * check stops there, as the address may be the live node's. */
    bool check = zt_check_only(S->p);
    nng_listener l;
    int rv = nng_pull0_open(&g->sock);
    if (rv == 0) {
        nng_socket_set_size(g->sock, NNG_OPT_RECVMAXSZ, S->max_body);
        if ((rv = nng_listener_create(&l, g->sock, url)) == 0 && !check)
            rv = nng_listener_start(l, 0);
        if (rv != 0 || check) {
            nng_close(g->sock);
            g->sock = (nng_socket)NNG_SOCKET_INITIALIZER;
        }
    }
    if (rv == 0 && !check) rv = nng_aio_alloc(&g->aio, on_recv, g);
    if (rv != 0) {
        return zt_option_fail(S->p, "nng_listen", "cannot listen at %s: %s", url, nng_strerror(rv));
    }
    if (check) return ZT_OK;
    nng_recv_aio(g->sock, g->aio);
    zt_log(S->p, ZT_LOG_INFO, "nng: pulling gateway batches at %s", url);
    return ZT_OK;
}

void sn_gw_stats(sn *S, cJSON *into)
{
    if (!S->gw) return;
    cJSON *o = cJSON_AddObjectToObject(into, "nng");
    sn_inbox_stats(S->gw->inbox, o);
}

void sn_gw_stop(sn *S)
{
    sn_gw *g = S->gw;
    if (!g) return;
    if (g->aio) nng_aio_stop(g->aio); /* waits for a callback running now */
    if (nng_socket_id(g->sock) > 0) nng_close(g->sock);
    if (g->aio) nng_aio_free(g->aio);
    sn_inbox_free(g->inbox);
    free(g);
    S->gw = NULL;
}

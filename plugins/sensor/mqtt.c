/* mqtt.c: the MQTT input: libmosquitto's own thread subscribes and queues into an inbox. */
#include "sensor.h"

#include <errno.h>
#include <mosquitto.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct sn_mqtt {
    struct mosquitto *m;
    sn_inbox *inbox;
    int qos;
    size_t ntopics;
    char **topics; /* mqtt_topics, copied at start: on_connect runs on libmosquitto's thread */
    atomic_int connected;
    atomic_uint connects; /* how many times it (re)connected and subscribed */
    atomic_uint retained; /* the broker's replays of retained messages, skipped */
};

/* On libmosquitto's thread: after every (re)connect, subscribe again (a clean session
 * forgets subscriptions). */
static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    sn *S = ud;
    if (rc != 0) {
        zt_log(S->p, ZT_LOG_WARN, "MQTT: the broker refused the connection: %s",
               mosquitto_connack_string(rc));
        return;
    }
    for (size_t i = 0; i < S->mqtt->ntopics; i++) {
        const char *t = S->mqtt->topics[i];
        int r = mosquitto_subscribe(m, NULL, t, S->mqtt->qos);
        if (r != MOSQ_ERR_SUCCESS)
            zt_log(S->p, ZT_LOG_WARN, "MQTT: cannot subscribe to %s: %s", t, mosquitto_strerror(r));
    }
    atomic_store(&S->mqtt->connected, 1);
    atomic_fetch_add(&S->mqtt->connects, 1);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc)
{
    (void)m;
    sn *S = ud;
    atomic_store(&S->mqtt->connected, 0);
    if (rc != 0) zt_log(S->p, ZT_LOG_WARN, "MQTT: connection lost; reconnecting");
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    (void)m;
    sn *S = ud;
    /* A retained message comes with the retain flag only as the broker's replay at a
     * subscribe (after every reconnect, the session being clean): the reading is old, and
     * taking it again would record it once more at the node's time (lines without a
     * timestamp) and show the rules a device that speaks (an offline alert closed for a
     * station that is silent). A live message, retained or not, comes without the flag. */
    if (msg->retain) {
        atomic_fetch_add(&S->mqtt->retained, 1);
        return;
    }
    if (msg->payloadlen > 0)
        sn_inbox_push(S->mqtt->inbox, msg->topic, msg->payload, (size_t)msg->payloadlen);
}

int sn_mqtt_start(sn *S)
{
    const char *host = zt_opt_string(S->p, "mqtt_host");
    if (!host || !*host) return ZT_OK;
    int fmt = sn_format_parse(zt_opt_string(S->p, "mqtt_format"));
    int qos = (int)zt_opt_int(S->p, "mqtt_qos");
    if (fmt < 0)
        return zt_option_fail(S->p, "mqtt_format", "auto, line or json, not \"%s\"",
                              zt_opt_string(S->p, "mqtt_format"));
    if (qos < 0 || qos > 2) return zt_option_fail(S->p, "mqtt_qos", "0, 1 or 2, not %d", qos);
    int64_t port = zt_opt_int(S->p, "mqtt_port");
    if (port < 1 || port > 65535)
        return zt_option_fail(S->p, "mqtt_port", "1 to 65535, not %lld", (long long)port);
    sn_mqtt *q = calloc(1, sizeof *q);
    if (!q) return ZT_ENOMEM;
    S->mqtt = q;
    q->qos = qos;
    size_t n = zt_opt_list_len(S->p, "mqtt_topics");
    if (!(q->topics = calloc(n ? n : 1, sizeof *q->topics))) return ZT_ENOMEM;
    for (; q->ntopics < n; q->ntopics++)
        if (!(q->topics[q->ntopics] = strdup(zt_opt_list_item(S->p, "mqtt_topics", q->ntopics))))
            return ZT_ENOMEM;
    if (!(q->inbox = sn_inbox_new(S, "mqtt", fmt))) return ZT_ENOMEM;
    mosquitto_lib_init();
    const char *id = zt_opt_string(S->p, "mqtt_client_id");
    errno = 0;
    if (!(q->m = mosquitto_new(id, true, S)))
        return errno == EINVAL
                   ? zt_option_fail(S->p, "mqtt_client_id",
                                    "not a client id MQTT takes (not UTF-8, or too long)")
                   : ZT_ENOMEM;
    const char *user = zt_opt_string(S->p, "mqtt_username");
    if (user && *user &&
        mosquitto_username_pw_set(q->m, user, zt_opt_string(S->p, "mqtt_password")) ==
            MOSQ_ERR_MALFORMED_UTF8)
        return zt_option_fail(S->p, "mqtt_username", "not UTF-8");
    mosquitto_connect_callback_set(q->m, on_connect);
    mosquitto_disconnect_callback_set(q->m, on_disconnect);
    mosquitto_message_callback_set(q->m, on_message);
    mosquitto_reconnect_delay_set(q->m, 1, 30, true);
    /* A check stops short of the broker: the live node may be connected with this client
     * id, which the broker would take from it for the check. */
    if (zt_check_only(S->p)) return ZT_OK;
    /* connect in the background: a broker that is down now is retried, not fatal */
    int rc = mosquitto_connect_async(q->m, host, (int)port, 30);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
        zt_log(S->p, ZT_LOG_ERROR, "MQTT: cannot connect to %s:%d: %s", host, (int)port,
               mosquitto_strerror(rc));
        return ZT_EINVAL;
    }
    if (rc != MOSQ_ERR_SUCCESS)
        zt_log(S->p, ZT_LOG_WARN, "MQTT: %s:%d not reachable yet; retrying", host, (int)port);
    if ((rc = mosquitto_loop_start(q->m)) != MOSQ_ERR_SUCCESS) {
        zt_log(S->p, ZT_LOG_ERROR, "MQTT: cannot start its thread: %s", mosquitto_strerror(rc));
        return ZT_ERROR;
    }
    zt_log(S->p, ZT_LOG_INFO, "MQTT: subscribing at %s:%d to %zu topics", host, (int)port,
           q->ntopics);
    return ZT_OK;
}

void sn_mqtt_stats(sn *S, cJSON *into)
{
    if (!S->mqtt) return;
    cJSON *o = cJSON_AddObjectToObject(into, "mqtt");
    cJSON_AddBoolToObject(o, "connected", atomic_load(&S->mqtt->connected));
    cJSON_AddNumberToObject(o, "connects", atomic_load(&S->mqtt->connects));
    cJSON_AddNumberToObject(o, "retained", atomic_load(&S->mqtt->retained));
    sn_inbox_stats(S->mqtt->inbox, o);
}

void sn_mqtt_stop(sn *S)
{
    sn_mqtt *q = S->mqtt;
    if (!q) return;
    if (q->m) {
        mosquitto_disconnect(q->m);
        mosquitto_loop_stop(q->m, true);
        mosquitto_destroy(q->m);
        mosquitto_lib_cleanup();
    }
    sn_inbox_free(q->inbox);
    for (size_t i = 0; i < q->ntopics; i++) free(q->topics[i]);
    free(q->topics);
    free(q);
    S->mqtt = NULL;
}

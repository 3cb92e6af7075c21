/* throttle.c: attempts counted per key (an account, a client address) in memory, for the
 * sign-in lock and the registration quota. */
#include "core.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

/*
 * A table of at most max entries. The keys are the clients' to choose (a login, an
 * address), so the chains are found by a keyed hash they cannot aim at one chain.
 *
 * A full table must not stop counting: an attacker who filled it with keys of their own
 * (many logins tried once each, from many IPv6 addresses) could otherwise guess one
 * account's password freely. So a full table first forgets what no longer matters (each
 * entry says until when it does), at most once a second, and if everything still
 * matters it forgets, of a sample, the entry with the fewest attempts (a key tried once
 * makes no one wait; a locked account does), the oldest of those. Keys made once each
 * cannot push a locked account out; zt_auth_throttle_evictions_total shows a flood.
 */

#define BUCKETS 1024

typedef struct entry {
    struct entry *next;
    int64_t hold_ms; /* until when it may make someone wait; forgettable after */
    zt_attempts at;
    char key[];
} entry;

struct zt_throttle {
    entry *b[BUCKETS];
    unsigned char hkey[crypto_shorthash_KEYBYTES];
    size_t n, max;
    int64_t swept_ms; /* the last sweep of the whole table, if swept */
    bool swept;
    uint64_t evicted; /* entries that still mattered, forgotten for room */
};

zt_throttle *zt__throttle_new(size_t max)
{
    zt_throttle *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->max = max ? max : 1;
    randombytes_buf(t->hkey, sizeof t->hkey);
    return t;
}

/* A key may be what someone typed as their login (their password, by mistake): wiped. */
static void entry_free(entry *e)
{
    zt__free_wiped(e, sizeof *e + strlen(e->key) + 1);
}

void zt__throttle_free(zt_throttle *t)
{
    if (!t) return;
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = t->b[i], *n; e; e = n) {
            n = e->next;
            entry_free(e);
        }
    free(t);
}

static entry **bucket(zt_throttle *t, const char *key)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, strlen(key), t->hkey);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return &t->b[v % BUCKETS];
}

static entry **find(entry **p, const char *key)
{
    while (*p && strcmp((*p)->key, key) != 0) p = &(*p)->next;
    return p;
}

static void unlink_entry(zt_throttle *t, entry **p)
{
    entry *e = *p;
    *p = e->next;
    entry_free(e);
    t->n--;
}

zt_attempts zt__throttle_get(zt_throttle *t, const char *key)
{
    entry *e = *find(bucket(t, key), key);
    return e ? e->at : (zt_attempts){0, 0, 0};
}

/* Forget what can no longer make anyone wait. */
static void sweep(zt_throttle *t, int64_t now)
{
    t->swept_ms = now;
    t->swept = true;
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry **p = &t->b[i]; *p;)
            if ((*p)->hold_ms <= now)
                unlink_entry(t, p);
            else
                p = &(*p)->next;
}

/* Of a and b, the entry to forget first: the one with fewer attempts (one or two failures
 * make no one wait yet; a locked account's five do), then the one that stops mattering
 * first. */
static bool forget_before(const entry *a, const entry *b)
{
    return a->at.count != b->at.count ? a->at.count < b->at.count : a->hold_ms < b->hold_ms;
}

#define SAMPLE 16 /* entries looked at to choose one to forget */

/* Room for one more entry, the table being full: forget what has stopped mattering, or
 * else the entry that matters least among some SAMPLE, from chain b on. */
static void make_room(zt_throttle *t, entry **b, int64_t now)
{
    if (!t->swept || now - t->swept_ms >= 1000 || now < t->swept_ms) sweep(t, now);
    if (t->n < t->max) return;
    size_t i = (size_t)(b - t->b), seen = 0;
    entry **victim = NULL;
    for (size_t k = 0; k < BUCKETS && seen < SAMPLE; k++)
        for (entry **p = &t->b[(i + k) % BUCKETS]; *p; p = &(*p)->next, seen++)
            if (!victim || forget_before(*p, *victim)) victim = p;
    if (victim) {
        unlink_entry(t, victim);
        t->evicted++;
    }
}

int zt__throttle_note(zt_throttle *t, const char *key, int64_t now, int64_t window_ms, bool sliding,
                      int64_t hold_ms)
{
    entry **b = bucket(t, key), **p = find(b, key), *e = *p;
    if (!e) {
        if (t->n >= t->max) {
            make_room(t, b, now);
            p = find(b, key); /* the chain may have changed */
        }
        size_t klen = strlen(key);
        if (!(e = calloc(1, sizeof *e + klen + 1))) return ZT_ENOMEM;
        memcpy(e->key, key, klen + 1);
        e->next = *p;
        *p = e;
        t->n++;
    }
    int64_t since = sliding ? e->at.last_ms : e->at.first_ms;
    if (e->at.count == 0 || now - since >= window_ms || now < since) {
        e->at.count = 0;
        e->at.first_ms = now;
    }
    e->at.count++;
    e->at.last_ms = now;
    if (now + hold_ms > e->hold_ms) e->hold_ms = now + hold_ms;
    return ZT_OK;
}

void zt__throttle_clear(zt_throttle *t, const char *key)
{
    entry **p = find(bucket(t, key), key);
    if (*p) unlink_entry(t, p);
}

size_t zt__throttle_size(const zt_throttle *t)
{
    return t->n;
}

uint64_t zt__throttle_evictions(const zt_throttle *t)
{
    return t->evicted;
}

int zt__client_prefix(const char *client, char *out, size_t cap)
{
    struct in6_addr a6;
    int n;
    if (inet_pton(AF_INET6, client, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6)) { /* ::ffff:a.b.c.d is that IPv4 client */
            n = snprintf(out, cap, "%u.%u.%u.%u", a6.s6_addr[12], a6.s6_addr[13], a6.s6_addr[14],
                         a6.s6_addr[15]);
        } else {
            /* one subscriber's network: a host picks its own low 64 bits at will */
            memset(a6.s6_addr + 8, 0, 8);
            char text[INET6_ADDRSTRLEN];
            if (!inet_ntop(AF_INET6, &a6, text, sizeof text)) return ZT_EINVAL;
            n = snprintf(out, cap, "%s/64", text);
        }
    } else {
        n = snprintf(out, cap, "%s", client);
    }
    return n >= 0 && (size_t)n < cap ? ZT_OK : ZT_EINVAL;
}

/* ---- zt_rate_*: limits per client for plugins ----------------------------------------- */

#define RATE_MAX_ENTRIES 65536

/* "rate:<plugin>:<name>:<client prefix>" */
static zt_throttle *rate_key(zt_req *req, const char *name, char key[256])
{
    zt_server *srv = req->srv;
    if (!srv->rates && !(srv->rates = zt__throttle_new(RATE_MAX_ENTRIES))) return NULL;
    const zt__route *rt = req->match.route;
    char who[64];
    if (zt__client_prefix(zt_req_client(req), who, sizeof who) != ZT_OK)
        snprintf(who, sizeof who, "?");
    snprintf(key, 256, "rate:%s:%.100s:%s", rt && rt->plugin ? rt->plugin->name : "core", name,
             who);
    return srv->rates;
}

static int64_t rate_wait(zt_throttle *t, const char *key, unsigned max, unsigned window_s,
                         int64_t now)
{
    zt_attempts a = zt__throttle_get(t, key);
    int64_t end = a.first_ms + (int64_t)window_s * 1000;
    if (!max || a.count < max || now >= end || now < a.first_ms) return 0;
    return (end - now + 999) / 1000;
}

int64_t zt_rate_wait(zt_req *req, const char *name, unsigned max, unsigned window_s)
{
    char key[256];
    zt_throttle *t = rate_key(req, name, key);
    return t ? rate_wait(t, key, max, window_s, zt_now_ms()) : 0;
}

int64_t zt_rate_note(zt_req *req, const char *name, unsigned max, unsigned window_s)
{
    char key[256];
    zt_throttle *t = rate_key(req, name, key);
    if (!t) return 0;
    int64_t now = zt_now_ms(), window = (int64_t)window_s * 1000;
    zt__throttle_note(t, key, now, window, false, window);
    return rate_wait(t, key, max, window_s, now);
}

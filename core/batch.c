/* batch.c: how long the group commit waits for the writers it expects (see core.h). */
#include "core.h"

#include <string.h>

void zt__bw_init(zt__batchwait *bw)
{
    memset(bw, 0, sizeof *bw);
    bw->seq = 1;
}

void zt__bw_join(zt__batchwait *bw, uint64_t *wrote_in)
{
    if (*wrote_in == bw->seq) return;
    if (*wrote_in && *wrote_in + 1 == bw->seq) bw->again++;
    *wrote_in = bw->seq;
    bw->joined++;
}

void zt__bw_gone(zt__batchwait *bw, uint64_t wrote_in)
{
    /* expected counts the writers of the two batches before the open one */
    if (wrote_in && wrote_in < bw->seq && wrote_in + 2 >= bw->seq && bw->expected) bw->expected--;
}

uint64_t zt__bw_wait(zt__batchwait *bw, uint64_t now_ns, uint64_t max_ns)
{
    if (!bw->open_ns) bw->open_ns = now_ns;
    /* Not a stream of writes (the batch opened long after the last one ended), nobody
     * else expected, or waited long enough: commit now. */
    if (!max_ns || bw->joined >= bw->expected || bw->open_ns - bw->last_end_ns > max_ns) return 0;
    uint64_t waited = now_ns - bw->open_ns;
    if (waited >= max_ns) {
        if (bw->waiting) bw->timed_out++;
        return 0;
    }
    if (!bw->waiting) bw->waited++;
    bw->waiting = true;
    return max_ns - waited;
}

void zt__bw_end(zt__batchwait *bw, uint64_t now_ns)
{
    bw->expected = bw->joined + bw->prev - bw->again;
    bw->prev = bw->joined;
    bw->joined = bw->again = 0;
    bw->seq++;
    bw->last_end_ns = now_ns;
    bw->open_ns = 0;
    bw->waiting = false;
}

/* timerother.c: a test plugin that tries to cancel another plugin's timers. */
#include "e2eplugin.h"

static int init(zt_plugin *p)
{
    const zt_route r = {.method = "POST",
                        .path = "/timerother/cancel",
                        .handler = cancel_timer,
                        .role = ZT_ROLE_PUBLIC,
                        .summary = "Cancel a timer"};
    return zt_route_add(p, &r);
}

ZT_PLUGIN(.name = "timerother", .version = "1", .description = "test: someone else's timers",
          .init = init);

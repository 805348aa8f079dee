/* A C service written against ipc/include/nonstop_heartbeat.h: attaches the table at KEY,
 * registers as NAME, prints "slot N", beats every 2 ms until its stdin closes, then frees its
 * slot and prints "freed". Used by tests/it/table.rs. */
#include "nonstop_heartbeat.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s KEY NAME\n", argv[0]);
        return 2;
    }
    key_t key = (key_t)strtoul(argv[1], NULL, 0);
    struct nonstop_hb hb;
    if (nonstop_hb_attach(&hb, key) != 0) {
        fprintf(stderr, "attach: %s (%s)\n", hb.error, strerror(errno));
        return 1;
    }
    if (nonstop_hb_register(&hb, argv[2], 30000) != 0) {
        fprintf(stderr, "register: %s\n", strerror(errno));
        return 1;
    }
    printf("slot %ld\n", (long)(hb.mine - hb.slots));
    fflush(stdout);
    struct pollfd in = {0, POLLIN, 0};
    for (;;) {
        nonstop_hb_beat(&hb);
        if (poll(&in, 1, 2) > 0) {
            char buf[64];
            if (read(0, buf, sizeof buf) <= 0) break;
        }
    }
    nonstop_hb_free(&hb);
    nonstop_hb_detach(&hb);
    printf("freed\n");
    return 0;
}

/* A task with `heartbeat:` using the C client: finds its slot with nonstop_hb_from_env, prints
 * "beating", beats COUNT times (-1: forever) every INTERVAL_MS, then hangs. With a FILE, it
 * first forks a grandchild that sleeps forever and writes the grandchild's pid to FILE (the
 * watchdog must stop it too). Used by tests/it/hang.rs. */
#define _GNU_SOURCE
#include "nonstop_heartbeat.h"

#include <signal.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s INTERVAL_MS COUNT [GRANDCHILD_PID_FILE]\n", argv[0]);
        return 2;
    }
    long interval = strtol(argv[1], NULL, 10);
    long count = strtol(argv[2], NULL, 10);
    if (argc > 3) {
        pid_t child = fork();
        if (child == 0) {
            for (;;) pause();
        }
        FILE *f = fopen(argv[3], "w");
        if (!f) return 1;
        fprintf(f, "%d\n", (int)child);
        fclose(f);
    }
    struct nonstop_hb hb;
    if (nonstop_hb_from_env(&hb) != 0) {
        printf("error %s\n", hb.error);
        return 3;
    }
    printf("beating\n");
    fflush(stdout);
    struct timespec pause_for = {interval / 1000, (interval % 1000) * 1000000L};
    for (long i = 0; count < 0 || i < count; i++) {
        nonstop_hb_beat(&hb);
        nanosleep(&pause_for, NULL);
    }
    for (;;) pause();
}

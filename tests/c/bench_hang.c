/* The task of the hang benchmarks (cargo xtask bench watch), through NONSTOP_HEARTBEAT.
 *
 *   bench_hang hang FILE      beats 5 times 10 ms apart, then stops beating and waits for
 *                             SIGTERM; then appends "LAST TERM\n" to FILE: the last beat it
 *                             stored (CLOCK_MONOTONIC_COARSE ns, what the watchdog reads) and
 *                             when SIGTERM arrived (CLOCK_MONOTONIC ns).
 *   bench_hang beat MS        beats every MS milliseconds, forever. */
#define _GNU_SOURCE
#include "nonstop_heartbeat.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>

static uint64_t fine_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    struct nonstop_hb hb;
    if (nonstop_hb_from_env(&hb) != 0) {
        fprintf(stderr, "%s\n", hb.error);
        return 3;
    }
    if (strcmp(argv[1], "beat") == 0) {
        long ms = strtol(argv[2], NULL, 10);
        for (;;) {
            nonstop_hb_beat(&hb);
            sleep_ms(ms);
        }
    }
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        last = nonstop_hb_now_ns();
        __atomic_store_n(&hb.mine->last_beat_ns, last, __ATOMIC_RELAXED);
        sleep_ms(10);
    }
    int sig;
    sigwait(&term, &sig);
    uint64_t killed = fine_ns();
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %llu\n", (unsigned long long)last,
                     (unsigned long long)killed);
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0 && write(fd, line, (size_t)n) != n) return 4;
    return 0;
}

/* The task the runner benchmarks supervise (cargo xtask bench). Timestamps are
 * CLOCK_MONOTONIC nanoseconds in a file of u64 slots, shared through mmap.
 *
 *   bench_task crash FILE N   slot 0: last exit time, slot 1: count, slots 2..: latencies.
 *                             Reads the clock first thing in main; if an earlier instance
 *                             left its exit time, records now - then. Crashes (exit 1) until
 *                             N latencies are recorded, then exits 0.
 *   bench_task hold FILE I    writes its start time to slot I, then waits for a signal. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static volatile uint64_t *map(const char *path, size_t slots) {
    int fd = open(path, O_RDWR);
    if (fd < 0) _exit(2);
    void *p = mmap(NULL, slots * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) _exit(2);
    close(fd);
    return p;
}

int main(int argc, char **argv) {
    uint64_t start = now_ns();
    if (argc != 4) return 2;
    if (strcmp(argv[1], "crash") == 0) {
        uint64_t n = strtoull(argv[3], NULL, 10);
        volatile uint64_t *d = map(argv[2], 2 + n);
        if (d[0] != 0 && d[1] < n) {
            d[2 + d[1]] = start - d[0];
            d[1] = d[1] + 1;
        }
        if (d[1] >= n) return 0;
        d[0] = now_ns();
        _exit(1);
    }
    if (strcmp(argv[1], "hold") == 0) {
        uint64_t i = strtoull(argv[3], NULL, 10);
        volatile uint64_t *d = map(argv[2], i + 1);
        d[i] = start;
        for (;;) pause();
    }
    return 2;
}

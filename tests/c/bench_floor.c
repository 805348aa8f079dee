/* The floor the runner benchmarks are measured against: the least a supervisor can do, with
 * fork and execve and nothing else (cargo xtask bench).
 *
 *   bench_floor restart PROGRAM ARGS...   fork+execve PROGRAM; waitpid; again until it
 *                                         exits 0 (the seed's procctl without its sleep).
 *   bench_floor hold N PROGRAM ARGS...    starts N children, each with its index appended to
 *                                         ARGS; on SIGTERM sends SIGTERM to each, waits for
 *                                         all, and exits 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "restart") == 0) {
        for (;;) {
            pid_t pid = fork();
            if (pid == 0) {
                execv(argv[2], &argv[2]);
                _exit(127);
            }
            int status;
            if (waitpid(pid, &status, 0) < 0) return 1;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
        }
    }
    if (argc >= 4 && strcmp(argv[1], "hold") == 0) {
        int n = atoi(argv[2]);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, NULL);
        pid_t *pids = calloc(n, sizeof(pid_t));
        int extra = argc - 3;
        char **args = calloc(extra + 2, sizeof(char *));
        memcpy(args, &argv[3], extra * sizeof(char *));
        char index[16];
        args[extra] = index;
        for (int i = 0; i < n; i++) {
            snprintf(index, sizeof index, "%d", i);
            pid_t pid = fork();
            if (pid == 0) {
                sigprocmask(SIG_UNBLOCK, &set, NULL);
                execv(args[0], args);
                _exit(127);
            }
            pids[i] = pid;
        }
        int sig;
        sigwait(&set, &sig);
        for (int i = 0; i < n; i++) kill(pids[i], SIGTERM);
        for (int i = 0; i < n; i++) waitpid(pids[i], NULL, 0);
        return 0;
    }
    fprintf(stderr, "usage: bench_floor restart PROGRAM ARGS... | hold N PROGRAM ARGS...\n");
    return 2;
}

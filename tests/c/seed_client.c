/* A service built the seed framework's way: CSEM + CPActive, transcribed to C from the
 * tutorial (st_procinfo, AddPInfo, UptATime, the destructor). Registers as NAME with a
 * TIMEOUT (seconds, default 30) in the table at KEY, prints "slot N", beats time(0) every 2 ms
 * until its stdin closes, then zeroes its record and prints "freed". With "hang" after the
 * timeout, it stops beating at once (a hung service) and waits for its stdin to close.
 * Used by tests/it/seed.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>

struct st_procinfo {
    int pid;
    char pname[51];
    int timeout;
    time_t atime;
};
#define MAXNUMP 1000

_Static_assert(sizeof(struct st_procinfo) == 72, "st_procinfo is 72 bytes on x86-64");

union semun { int val; struct semid_ds *buf; unsigned short *array; };

/* CSEM::init(key, 1, SEM_UNDO) */
static int csem_init(key_t key) {
    int id = semget(key, 1, 0640);
    if (id == -1 && errno == ENOENT) {
        id = semget(key, 1, 0666 | IPC_CREAT | IPC_EXCL);
        if (id == -1 && errno == EEXIST) return semget(key, 1, 0640);
        if (id == -1) return -1;
        union semun arg = {.val = 1};
        if (semctl(id, 0, SETVAL, arg) < 0) return -1;
    }
    return id;
}

static void csem_op(int id, short op) {
    struct sembuf b = {0, op, SEM_UNDO};
    semop(id, &b, 1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s KEY NAME [TIMEOUT [hang]]\n", argv[0]);
        return 2;
    }
    int hang = argc > 4 && strcmp(argv[4], "hang") == 0;
    key_t key = (key_t)strtoul(argv[1], NULL, 0);
    /* CPActive::AddPInfo */
    int shmid = shmget(key, MAXNUMP * sizeof(struct st_procinfo), 0640 | IPC_CREAT);
    if (shmid < 0) { perror("shmget"); return 1; }
    int semid = csem_init(key);
    if (semid < 0) { perror("semget"); return 1; }
    struct st_procinfo *shm = shmat(shmid, NULL, 0);
    if (shm == (void *)-1) { perror("shmat"); return 1; }
    struct st_procinfo info = {0};
    info.pid = getpid();
    snprintf(info.pname, sizeof info.pname, "%s", argv[2]);
    info.timeout = argc > 3 ? atoi(argv[3]) : 30;
    info.atime = time(0);
    int pos = -1;
    for (int i = 0; i < MAXNUMP; i++)
        if (shm[i].pid == info.pid) { pos = i; break; }
    csem_op(semid, -1);
    if (pos == -1)
        for (int i = 0; i < MAXNUMP; i++)
            if (shm[i].pid == 0) { pos = i; break; }
    if (pos == -1) { csem_op(semid, 1); fprintf(stderr, "table full\n"); return 1; }
    memcpy(&shm[pos], &info, sizeof info);
    csem_op(semid, 1);
    printf("slot %d\n", pos);
    fflush(stdout);
    struct pollfd in = {0, POLLIN, 0};
    for (;;) {
        if (!hang) shm[pos].atime = time(0); /* CPActive::UptATime */
        if (poll(&in, 1, 2) > 0) {
            char buf[64];
            if (read(0, buf, sizeof buf) <= 0) break;
        }
    }
    memset(&shm[pos], 0, sizeof(struct st_procinfo)); /* ~CPActive */
    shmdt(shm);
    printf("freed\n");
    return 0;
}

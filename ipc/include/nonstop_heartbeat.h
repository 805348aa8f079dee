/*
 * nonstop_heartbeat.h: the nonstop heartbeat table for C programs.
 *
 * The layout is nonstop's, version 1, documented byte by byte in ipc/src/table/layout.rs and
 * docs/heartbeat.md. A C service attaches the table that nonstop created, registers once,
 * beats from its work loop, and frees its slot on exit:
 *
 *     struct nonstop_hb hb;
 *     if (nonstop_hb_attach(&hb, 0x4e53) != 0) ...        // errno set, message in hb.error
 *     if (nonstop_hb_register(&hb, "ingest", 30000) != 0) ...  // timeout in ms
 *     for (;;) { work(); nonstop_hb_beat(&hb); }
 *     nonstop_hb_free(&hb); nonstop_hb_detach(&hb);
 *
 * A task that nonstop starts with `heartbeat:` in its pipeline already has a slot, named by
 * NONSTOP_HEARTBEAT: it only beats (nonstop_hb_free leaves the runner's slot alone):
 *
 *     struct nonstop_hb hb;
 *     if (nonstop_hb_from_env(&hb) != 0) { fprintf(stderr, "%s\n", hb.error); exit(1); }
 *     for (;;) { work(); nonstop_hb_beat(&hb); }
 *
 * Taking and freeing a slot hold the table's semaphore (same key, SEM_UNDO); a beat is one
 * atomic store of CLOCK_MONOTONIC_COARSE nanoseconds. Needs C11 and GCC/Clang builtins.
 */
#ifndef NONSTOP_HEARTBEAT_H
#define NONSTOP_HEARTBEAT_H

/* semtimedop() is a GNU extension: include this header first, or build with -D_GNU_SOURCE. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>

#define NONSTOP_HB_MAGIC 0x00706f74736e6f6eULL /* the bytes "nonstop\0" */
#define NONSTOP_HB_VERSION 1u
#define NONSTOP_HB_CLOCK_MONOTONIC 1u
#define NONSTOP_HB_STATE_FREE 0u
#define NONSTOP_HB_STATE_ACTIVE 1u
#define NONSTOP_HB_STATE_RESERVED 2u /* held by a runner for a task: never taken by register */
#define NONSTOP_HB_NAME_CAPACITY 64

struct nonstop_hb_header {
    uint64_t magic;        /*  0: NONSTOP_HB_MAGIC, written last by the creator */
    uint32_t version;      /*  8: 1 */
    uint32_t header_size;  /* 12: 64 */
    uint32_t slot_size;    /* 16: 128 */
    uint32_t capacity;     /* 20: number of slots */
    uint32_t clock;        /* 24: 1 = CLOCK_MONOTONIC */
    int32_t  owner_pid;    /* 28: the runner that owns the table, 0 = none */
    uint64_t owner_start;  /* 32: its start time (/proc/PID/stat field 22) */
    uint64_t reserved[3];  /* 40 */
};

struct nonstop_hb_slot {
    uint32_t seq;            /*  0: seqlock, odd while being written (under the semaphore) */
    uint32_t state;          /*  4: 0 free, 1 active */
    int32_t pid;             /*  8 */
    uint32_t reserved0;      /* 12: flags; bit 0: a runner's task slot (never taken) */
    uint64_t start_time;     /* 16: field 22 of /proc/PID/stat */
    uint64_t timeout_ns;     /* 24 */
    uint64_t registered_ns;  /* 32: CLOCK_MONOTONIC ns */
    uint64_t last_beat_ns;   /* 40: CLOCK_MONOTONIC ns, atomic 8-byte store */
    char name[NONSTOP_HB_NAME_CAPACITY]; /* 48: NUL-padded, at most 63 bytes */
    uint64_t start_timeout_ns; /* 112: first deadline until the first beat; 0 = timeout_ns */
    uint64_t reserved;       /* 120 */
};

_Static_assert(sizeof(struct nonstop_hb_header) == 64, "header is 64 bytes");
_Static_assert(offsetof(struct nonstop_hb_header, capacity) == 20, "capacity at 20");
_Static_assert(offsetof(struct nonstop_hb_header, clock) == 24, "clock at 24");
_Static_assert(offsetof(struct nonstop_hb_header, owner_pid) == 28, "owner_pid at 28");
_Static_assert(offsetof(struct nonstop_hb_header, owner_start) == 32, "owner_start at 32");
_Static_assert(sizeof(struct nonstop_hb_slot) == 128, "slot is 128 bytes");
_Static_assert(offsetof(struct nonstop_hb_slot, pid) == 8, "pid at 8");
_Static_assert(offsetof(struct nonstop_hb_slot, start_time) == 16, "start_time at 16");
_Static_assert(offsetof(struct nonstop_hb_slot, timeout_ns) == 24, "timeout_ns at 24");
_Static_assert(offsetof(struct nonstop_hb_slot, registered_ns) == 32, "registered_ns at 32");
_Static_assert(offsetof(struct nonstop_hb_slot, last_beat_ns) == 40, "last_beat_ns at 40");
_Static_assert(offsetof(struct nonstop_hb_slot, name) == 48, "name at 48");
_Static_assert(offsetof(struct nonstop_hb_slot, start_timeout_ns) == 112, "start_timeout_ns at 112");

struct nonstop_hb {
    int shmid, semid;
    struct nonstop_hb_header *header;
    struct nonstop_hb_slot *slots;
    struct nonstop_hb_slot *mine;  /* NULL until registered */
    uint64_t my_start_time, my_registered_ns;
    char error[160];
};

static inline uint64_t nonstop_hb_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Start time of this process: field 22 of /proc/self/stat, counted after the last ')'. */
static inline int nonstop_hb_start_time(uint64_t *out) {
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    int field = 2;
    for (p++; *p && field < 22; p++)
        if (*p == ' ') field++;
    if (field != 22) return -1;
    return sscanf(p, "%llu", (unsigned long long *)out) == 1 ? 0 : -1;
}

static inline int nonstop_hb_lock(struct nonstop_hb *hb, int delta) {
    struct sembuf op = {0, (short)delta, SEM_UNDO};
    struct timespec timeout = {5, 0};
    while (semtimedop(hb->semid, &op, 1, delta < 0 ? &timeout : NULL) != 0)
        if (errno != EINTR) return -1;
    return 0;
}

/* Attaches the existing table at key and checks its header. 0 on success. */
static inline int nonstop_hb_attach(struct nonstop_hb *hb, key_t key) {
    memset(hb, 0, sizeof *hb);
    hb->shmid = shmget(key, 0, 0);
    hb->semid = semget(key, 0, 0);
    if (hb->shmid < 0 || hb->semid < 0) {
        snprintf(hb->error, sizeof hb->error, "no nonstop table at key 0x%x", (unsigned)key);
        return -1;
    }
    struct shmid_ds ds;
    if (shmctl(hb->shmid, IPC_STAT, &ds) != 0) return -1;
    void *p = shmat(hb->shmid, NULL, 0);
    if (p == (void *)-1) return -1;
    hb->header = (struct nonstop_hb_header *)p;
    hb->slots = (struct nonstop_hb_slot *)((char *)p + 64);
    struct nonstop_hb_header *h = hb->header;
    if (ds.shm_segsz < 64 || __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != NONSTOP_HB_MAGIC ||
        h->version != NONSTOP_HB_VERSION || h->header_size != 64 || h->slot_size != 128 ||
        h->clock != NONSTOP_HB_CLOCK_MONOTONIC ||
        ds.shm_segsz != 64 + (size_t)h->capacity * 128) {
        snprintf(hb->error, sizeof hb->error, "key 0x%x is not a nonstop table, layout 1",
                 (unsigned)key);
        shmdt(p);
        hb->header = NULL;
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static inline void nonstop_hb_write_begin(struct nonstop_hb_slot *s) {
    __atomic_store_n(&s->seq, __atomic_load_n(&s->seq, __ATOMIC_RELAXED) | 1u, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void nonstop_hb_write_end(struct nonstop_hb_slot *s) {
    __atomic_store_n(&s->seq, __atomic_load_n(&s->seq, __ATOMIC_RELAXED) + 1u, __ATOMIC_RELEASE);
}

/* Takes a slot for this process. 0 on success; -1 with errno ENOSPC if the table is full. */
static inline int nonstop_hb_register(struct nonstop_hb *hb, const char *name, uint64_t timeout_ms) {
    if (nonstop_hb_start_time(&hb->my_start_time) != 0) return -1;
    if (nonstop_hb_lock(hb, -1) != 0) return -1;
    struct nonstop_hb_slot *slot = NULL;
    for (uint32_t i = 0; i < hb->header->capacity && !slot; i++) {
        struct nonstop_hb_slot *s = &hb->slots[i];
        uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        if ((seq & 1u) || __atomic_load_n(&s->state, __ATOMIC_RELAXED) == NONSTOP_HB_STATE_FREE)
            slot = s;
    }
    if (slot) {
        uint64_t now = nonstop_hb_now_ns();
        nonstop_hb_write_begin(slot);
        __atomic_store_n(&slot->pid, (int32_t)getpid(), __ATOMIC_RELAXED);
        __atomic_store_n(&slot->start_time, hb->my_start_time, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->timeout_ns, timeout_ms * 1000000ull, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->start_timeout_ns, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->registered_ns, now, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->last_beat_ns, now, __ATOMIC_RELAXED);
        size_t len = strnlen(name, NONSTOP_HB_NAME_CAPACITY - 1);
        for (size_t i = 0; i < NONSTOP_HB_NAME_CAPACITY; i++)
            __atomic_store_n(&slot->name[i], i < len ? name[i] : 0, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->state, NONSTOP_HB_STATE_ACTIVE, __ATOMIC_RELAXED);
        nonstop_hb_write_end(slot);
        hb->mine = slot;
        hb->my_registered_ns = now;
    }
    nonstop_hb_lock(hb, +1);
    if (!slot) {
        errno = ENOSPC;
        return -1;
    }
    return 0;
}

static inline void nonstop_hb_detach(struct nonstop_hb *hb) {
    if (hb->header) shmdt(hb->header);
    hb->header = NULL;
}

/* Attaches the table and the slot that a nonstop runner gave this task, named by the
 * environment variable NONSTOP_HEARTBEAT=KEY:SLOT (a task with `heartbeat:` in its pipeline).
 * The runner registered the slot for this process: just beat. 0 on success; -1 with errno
 * set and the reason in hb->error (no variable, a malformed one, no such table or slot). */
static inline int nonstop_hb_from_env(struct nonstop_hb *hb) {
    const char *spec = getenv("NONSTOP_HEARTBEAT");
    memset(hb, 0, sizeof *hb);
    if (!spec) {
        snprintf(hb->error, sizeof hb->error,
                 "NONSTOP_HEARTBEAT is not set: not started by a nonstop task with heartbeat:");
        errno = ENOENT;
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long key = strtoul(spec, &end, 0);
    if (errno || end == spec || *end != ':' || key == 0 || key > 0xffffffffUL) {
        snprintf(hb->error, sizeof hb->error, "NONSTOP_HEARTBEAT=%.40s is not KEY:SLOT", spec);
        errno = EINVAL;
        return -1;
    }
    const char *digits = end + 1;
    unsigned long index = strtoul(digits, &end, 10);
    if (errno || end == digits || *end != 0) {
        snprintf(hb->error, sizeof hb->error, "NONSTOP_HEARTBEAT=%.40s is not KEY:SLOT", spec);
        errno = EINVAL;
        return -1;
    }
    if (nonstop_hb_attach(hb, (key_t)(uint32_t)key) != 0) return -1;
    uint32_t state = index < hb->header->capacity
                         ? __atomic_load_n(&hb->slots[index].state, __ATOMIC_ACQUIRE)
                         : NONSTOP_HB_STATE_FREE;
    if (state != NONSTOP_HB_STATE_ACTIVE && state != NONSTOP_HB_STATE_RESERVED) {
        snprintf(hb->error, sizeof hb->error,
                 "NONSTOP_HEARTBEAT=%.40s: no such slot, or it was freed", spec);
        nonstop_hb_detach(hb);
        errno = ENOENT;
        return -1;
    }
    hb->mine = &hb->slots[index];
    return 0;
}

/* One beat: a coarse monotonic clock read and one atomic store. */
static inline void nonstop_hb_beat(struct nonstop_hb *hb) {
    __atomic_store_n(&hb->mine->last_beat_ns, nonstop_hb_now_ns(), __ATOMIC_RELAXED);
}

/* Frees this process's slot if it still holds our registration. */
static inline void nonstop_hb_free(struct nonstop_hb *hb) {
    struct nonstop_hb_slot *s = hb->mine;
    if (!s || nonstop_hb_lock(hb, -1) != 0) return;
    if (__atomic_load_n(&s->pid, __ATOMIC_RELAXED) == (int32_t)getpid() &&
        __atomic_load_n(&s->registered_ns, __ATOMIC_RELAXED) == hb->my_registered_ns) {
        nonstop_hb_write_begin(s);
        __atomic_store_n(&s->state, NONSTOP_HB_STATE_FREE, __ATOMIC_RELAXED);
        __atomic_store_n(&s->pid, 0, __ATOMIC_RELAXED);
        nonstop_hb_write_end(s);
    }
    nonstop_hb_lock(hb, +1);
    hb->mine = NULL;
}

#endif

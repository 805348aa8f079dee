"""nonstop's heartbeat client for Python: the standard library only (ctypes), Linux only.

A task with ``heartbeat:`` in its pipeline has a slot in the runner's table, named by
``NONSTOP_HEARTBEAT=KEY:SLOT``. The runner registered it for this process; the script only
beats, from its work loop::

    import nonstop_heartbeat

    heartbeat = nonstop_heartbeat.from_env()
    for batch in batches():
        process(batch)
        heartbeat.beat()

A beat is one read of CLOCK_MONOTONIC_COARSE and one aligned 8-byte store into the slot's
``last_beat_ns`` (ipc/src/table/layout.rs and docs/heartbeat.md give the layout): no lock, no
system call beyond the clock's (served by the vDSO). Copy this file next to your script or put
its directory on PYTHONPATH.
"""

import ctypes
import ctypes.util
import os
import time

__all__ = ["Heartbeat", "HeartbeatError", "from_env", "ENV"]

ENV = "NONSTOP_HEARTBEAT"

_MAGIC = 0x00706F74736E6F6E  # the bytes "nonstop\0"
_VERSION = 1
_HEADER_SIZE = 64
_SLOT_SIZE = 128
_CLOCK_MONOTONIC = 1
_STATE_ACTIVE = 1
_STATE_RESERVED = 2
_LAST_BEAT_OFFSET = 40
# Linux's clock id; the time module does not name it.
_CLOCK_MONOTONIC_COARSE = 6
# struct shmid_ds on Linux x86-64 and arm64: shm_segsz follows the 48-byte ipc_perm.
_SHM_SEGSZ_OFFSET = 48
_IPC_STAT = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmget.restype = ctypes.c_int
_libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmat.restype = ctypes.c_void_p
_libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_libc.shmctl.restype = ctypes.c_int


class HeartbeatError(Exception):
    """No slot: the variable is missing or malformed, or the table or slot does not exist."""


class Heartbeat:
    """A slot of a nonstop runner's heartbeat table that this process beats for."""

    def __init__(self, key, slot):
        self.key = key
        self.slot = slot
        shmid = _libc.shmget(ctypes.c_int(_signed32(key)), 0, 0)
        if shmid < 0:
            raise HeartbeatError(
                "%s=%s: there is no heartbeat table at key 0x%08x; the runner that gave this "
                "task its slot is not running" % (ENV, _spec(key, slot), key)
            )
        stat = ctypes.create_string_buffer(256)
        if _libc.shmctl(shmid, _IPC_STAT, stat) != 0:
            raise HeartbeatError("cannot stat the table at key 0x%08x: %s"
                                 % (key, os.strerror(ctypes.get_errno())))
        size = ctypes.c_uint64.from_buffer(stat, _SHM_SEGSZ_OFFSET).value
        address = _libc.shmat(shmid, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise HeartbeatError("cannot attach the table at key 0x%08x: %s"
                                 % (key, os.strerror(ctypes.get_errno())))
        u32 = lambda offset: ctypes.c_uint32.from_address(address + offset).value
        magic = ctypes.c_uint64.from_address(address).value if size >= _HEADER_SIZE else 0
        capacity = u32(20) if size >= _HEADER_SIZE else 0
        if (magic != _MAGIC or u32(8) != _VERSION or u32(12) != _HEADER_SIZE
                or u32(16) != _SLOT_SIZE or u32(24) != _CLOCK_MONOTONIC
                or size != _HEADER_SIZE + capacity * _SLOT_SIZE):
            raise HeartbeatError("key 0x%08x is not a nonstop heartbeat table, layout 1" % key)
        if slot >= capacity:
            raise HeartbeatError("%s=%s: the table at key 0x%08x has %d slots, there is no slot %d"
                                 % (ENV, _spec(key, slot), key, capacity, slot))
        base = address + _HEADER_SIZE + slot * _SLOT_SIZE
        if u32(base - address + 4) not in (_STATE_ACTIVE, _STATE_RESERVED):
            raise HeartbeatError("%s=%s: slot %d is free; the runner that gave it to this task "
                                 "has stopped or freed it" % (ENV, _spec(key, slot), slot))
        self._last_beat = ctypes.c_uint64.from_address(base + _LAST_BEAT_OFFSET)

    def beat(self):
        """Records that this task is alive and making progress."""
        self._last_beat.value = time.clock_gettime_ns(_CLOCK_MONOTONIC_COARSE)


def from_env():
    """The slot named by NONSTOP_HEARTBEAT (KEY:SLOT); HeartbeatError if there is none."""
    value = os.environ.get(ENV)
    if value is None:
        raise HeartbeatError("%s is not set: this process was not started by a nonstop task "
                             "with `heartbeat:`" % ENV)
    key, sep, slot = value.partition(":")
    try:
        key = int(key, 0) & 0xFFFFFFFF
        slot = int(slot, 10)
    except ValueError:
        key = 0
    if not sep or key == 0 or slot < 0:
        raise HeartbeatError("%s=%r is not KEY:SLOT (for example 0x00004e53:3)" % (ENV, value))
    return Heartbeat(key, slot)


def _signed32(key):
    return key - (1 << 32) if key >= 1 << 31 else key


def _spec(key, slot):
    return "0x%08x:%d" % (key, slot)


if __name__ == "__main__":
    # `python3 nonstop_heartbeat.py`: one beat, like `nonstop beat`.
    import sys

    try:
        from_env().beat()
    except HeartbeatError as e:
        sys.exit("nonstop_heartbeat: %s" % e)

"""A hostile peer of pipekit's shared-memory connections (Linux).

    shm_hostile.py client PATH CASE   connect to the pipekit server at PATH, take its offer,
                                      and break the ring protocol as CASE says
    shm_hostile.py server PATH CASE   serve PATH and send the first client an unusable offer

Client cases: `head` (a write index far past the ring), `length` (a message length past what
was published), `wrap` (a wrap mark covering more than was published), `tail` (a read index
far past the ring), `scribble` and `scribble-bytes` (message or byte mode: random words, at
random, in both control blocks and in both rings' data, without end, from the first line on
stdin on), `flood-bell` (64 KiB at a time into the wake-up socket, without end;
`flood-bell-unswitched` without switching to the ring first). Server cases: `unsealed` (a segment that may shrink), `two-fds` (an offer
with two descriptors), `capacity` (a header that does not match the segment), `scribble` (a
usable offer, then random words over the segment as the client case does).

Prints `done` once the damage is done (a scribbler: once it switched to the ring), then stays
connected until stdin closes (a scribbler: until it is killed), so that the other side meets
the damage and not the end of a dead peer.
"""

import fcntl
import mmap
import os
import random
import socket
import struct
import sys

OFFER = b"\0pipekit-shm-v1\0"
PAGE = 4096
CONTROL = (512, 1536)  # ring 0: server to client; ring 1: client to server
HEAD, SWITCHED, BEFORE, TAIL = 0, 12, 16, 128


def client(path, case):
    kind = socket.SOCK_STREAM if case == "scribble-bytes" else socket.SOCK_SEQPACKET
    sock = socket.socket(socket.AF_UNIX, kind)
    sock.bind(b"\0pipekit-shm-v1/hostile-%d" % os.getpid())
    sock.connect(path)
    msg, anc, _flags, _addr = sock.recvmsg(len(OFFER), socket.CMSG_SPACE(3 * 4))
    assert msg == OFFER, msg
    fds = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack("%di" % (len(data) // 4), data)
    segment, _bell0, bell1 = fds
    size = os.fstat(segment).st_size
    mem = mmap.mmap(segment, size)
    capacity = struct.unpack_from("<Q", mem, 8)[0]
    ring1 = CONTROL[1]
    data1 = PAGE + capacity
    if case.startswith("scribble"):
        scribble(mem, size, capacity, bell1)
    if case.startswith("flood-bell"):
        flood(mem, bell1, case == "flood-bell")
    if case == "tail":
        struct.pack_into("<Q", mem, CONTROL[0] + TAIL, 1 << 40)
    else:
        if case == "head":
            head = 1 << 40
        elif case == "length":
            struct.pack_into("<I", mem, data1, 0x7FFFFFFF)
            head = 16
        elif case == "wrap":
            struct.pack_into("<I", mem, data1, 0xFFFFFFFF)
            head = 8
        else:
            raise SystemExit("unknown case " + case)
        struct.pack_into("<Q", mem, ring1 + BEFORE, 0)
        struct.pack_into("<Q", mem, ring1 + HEAD, head)
        struct.pack_into("<I", mem, ring1 + SWITCHED, 1)
    os.write(bell1, b"\1")
    print("done", flush=True)
    sys.stdin.read()


def scribble(mem, size, capacity, bell):
    """Switches to the ring and, once told (the other side reads the ring by then),
    writes random words at random places until killed."""
    ring1 = CONTROL[1]
    struct.pack_into("<Q", mem, ring1 + BEFORE, 0)
    struct.pack_into("<I", mem, ring1 + SWITCHED, 1)
    os.write(bell, b"\1")
    print("done", flush=True)
    sys.stdin.readline()
    rng = random.Random(os.getpid())
    while True:
        scribble_once(rng, mem, size, capacity)
        if rng.random() < 0.01:
            try:
                os.write(bell, b"\1")
            except BlockingIOError:
                pass


def scribble_once(rng, mem, size, capacity):
    """One random word at a random place: a control word or anywhere in the rings."""
    near = (0, 8, 16, capacity - 8, capacity, capacity + 8, 1 << 32, (1 << 64) - 8)
    if rng.random() < 0.6:
        at = rng.choice(CONTROL) + rng.choice((0, 8, 12, 16, 128, 136, 256, 384))
    else:
        at = rng.randrange(PAGE, size - 8) & ~7
    value = rng.choice(near) + rng.randrange(-64, 64) if rng.random() < 0.7 else rng.getrandbits(64)
    value %= 1 << 64
    if rng.random() < 0.5:
        struct.pack_into("<Q", mem, at, value)
    else:
        struct.pack_into("<I", mem, at, value & 0xFFFFFFFF)


def flood(mem, bell, switch):
    """Switches to the ring (or not), then writes into the wake-up socket as fast as it can,
    for ever."""
    if switch:
        struct.pack_into("<Q", mem, CONTROL[1] + BEFORE, 0)
        struct.pack_into("<I", mem, CONTROL[1] + SWITCHED, 1)
    print("done", flush=True)
    chunk = b"\1" * 65536
    while True:
        try:
            os.write(bell, chunk)
        except BlockingIOError:
            pass


def server(path, case):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path)
    srv.listen(1)
    print("ready", flush=True)
    conn, _ = srv.accept()
    bells = socket.socketpair()
    if case == "scribble":
        capacity = 65536
        size = PAGE + 2 * capacity
        segment = os.memfd_create("hostile", os.MFD_ALLOW_SEALING)
        os.ftruncate(segment, size)
        mem = mmap.mmap(segment, size)
        struct.pack_into("<QQ", mem, 0, int.from_bytes(b"pkshm-v1", "little"), capacity)
        fcntl.fcntl(segment, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        fds = struct.pack("3i", segment, bells[0].fileno(), bells[1].fileno())
        conn.sendmsg([OFFER], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        print("done", flush=True)
        sys.stdin.readline()
        rng = random.Random(os.getpid())
        while True:
            scribble_once(rng, mem, size, capacity)
    if case == "unsealed":
        segment = os.memfd_create("hostile")
        os.ftruncate(segment, PAGE + 2 * 65536)
    else:
        segment = os.memfd_create("hostile", os.MFD_ALLOW_SEALING)
        os.ftruncate(segment, PAGE + 2 * 65536)
        mem = mmap.mmap(segment, PAGE + 2 * 65536)
        struct.pack_into("<QQ", mem, 0, int.from_bytes(b"pkshm-v1", "little"), 1 << 20)
        fcntl.fcntl(segment, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    fds = [segment, bells[0].fileno()]
    if case != "two-fds":
        fds.append(bells[1].fileno())
    conn.sendmsg([OFFER], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))])
    print("done", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    {"client": client, "server": server}[sys.argv[1]](sys.argv[2], sys.argv[3])

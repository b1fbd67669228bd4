"""Crash safety under load (issue 15, item 3): a process updating and looking up from several
threads with RocksDB on is killed with SIGKILL at a random moment; after a restart every update
whose call had returned is there, and no row is torn. A few rounds here (CI); HPS_CRASH_ROUNDS=N
(and HPS_CRASH_SEED for other kill moments) for a long run, e.g.
    HPS_CRASH_ROUNDS=300 .venv/bin/python -m pytest -s tests/python/test_crash_safety.py"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import hps

from conftest import config_for, make_table

pytestmark = pytest.mark.skipif(not hps.rocksdb_available(), reason="this build has no RocksDB")

THREADS, KEYS_PER_THREAD, DIM = 4, 500, 8
ROUNDS = int(os.environ.get("HPS_CRASH_ROUNDS", "3"))

# Each thread owns its keys and writes versions that only grow (each round above the last round's, all
# exact in float32); every row is one version repeated DIM times, so a torn row (half of two writes)
# shows as unequal values. After each update() returns the thread appends "key version" lines to the
# ack file with one write (the page cache survives SIGKILL).
CHILD = textwrap.dedent("""
    import os, sys, threading, numpy as np, hps
    config, acks, threads, per, dim, first = (sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                              int(sys.argv[5]), int(sys.argv[6]))
    ps = hps.HPS(config)
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    acked_once = threading.Semaphore(0)
    def work(j):
        rng = np.random.default_rng(j)
        base = 10_000_000 + j * per
        version = first  # above every version of earlier rounds
        while True:
            version += 1
            keys = base + rng.choice(per, 32, replace=False).astype(np.int64)
            ps.update("m", 0, keys, np.full((32, dim), float(version), np.float32))
            os.write(fd, "".join(f"{k} {version}\\n" for k in keys.tolist()).encode())
            if version == first + 1:
                acked_once.release()
            rows = ps.lookup("m", 0, keys)
            if not (rows == rows[:, :1]).all():
                os.write(2, b"torn row seen by a lookup\\n"); os._exit(3)
    for j in range(threads):
        threading.Thread(target=work, args=(j,), daemon=True).start()
    for j in range(threads):  # ready once every thread is in its loop (on a busy machine that takes a while)
        acked_once.acquire()
    print("ready", flush=True)
    threading.Event().wait()
""")


@pytest.mark.timeout(600 + 20 * ROUNDS)  # a long run outlasts the suite's default limit
def test_sigkill_under_load_loses_no_returned_update(tmp_path):
    table = make_table(tmp_path / "t", 100, DIM)
    config = config_for([table], persistent=str(tmp_path / "db"), gpucache=False)
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(config))
    acks = tmp_path / "acks"
    rng = random.Random(int(os.environ.get("HPS_CRASH_SEED", "0")))
    rounds = ROUNDS
    latest: dict = {}  # key -> highest acknowledged version, over every round so far
    read_to = 0  # bytes of the ack file already folded into `latest`
    first = 0  # every version a round writes is above it
    started = time.monotonic()
    for round_ in range(rounds):
        # A thread acks version v before it starts v + 1, so no row holds more than (highest ack) + 1:
        # starting the next round above that keeps versions growing, and far below 2^24 (exact in float32).
        assert first < (1 << 24) - (1 << 20), f"round {round_}: versions near float32's exact limit"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(acks), str(THREADS),
                                  str(KEYS_PER_THREAD), str(DIM), str(first)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.2, 1.5))
        assert child.poll() is None, f"round {round_}: the child died first: {child.stderr.read()}"
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
        with open(acks, "rb") as f:
            f.seek(read_to)
            text = f.read()
        # Only whole lines: a write cut by the kill leaves a part line, which acknowledges nothing;
        # it is cut off so that the next round's first line does not continue it.
        text = text[:text.rfind(b"\n") + 1]
        read_to += len(text)
        os.truncate(acks, read_to)
        acked_this_round = 0
        for line in text.decode().splitlines():
            key, version = line.split()
            latest[int(key)] = max(latest.get(int(key), 0), int(version))
            acked_this_round += 1
        assert acked_this_round, f"round {round_}: no update returned before the kill"
        first = max(first, max(latest.values())) + 1
        keys = np.fromiter(latest, dtype=np.int64)
        with hps.HPS(str(path)) as ps:
            rows = ps.lookup("m", 0, keys)
        torn = np.flatnonzero((rows != rows[:, :1]).any(axis=1))
        assert torn.size == 0, f"round {round_}: {torn.size} torn rows, e.g. key {keys[torn[0]]}: {rows[torn[0]]}"
        # A row may be newer than its last ack (killed between update() and the ack), never older.
        acked = np.array([latest[k] for k in keys.tolist()], dtype=np.float64)
        lost = np.flatnonzero(rows[:, 0].astype(np.float64) < acked)
        assert lost.size == 0, (f"round {round_}: {lost.size} returned updates lost, e.g. key {keys[lost[0]]}: "
                                f"expected version >= {acked[lost[0]]:.0f}, found {rows[lost[0], 0]}")
        if rounds > 3 and (round_ + 1) % 25 == 0:  # long runs: progress on the terminal (pytest -s)
            print(f"crash safety: {round_ + 1}/{rounds} rounds, {len(latest)} keys checked, highest version "
                  f"{first - 1}, {time.monotonic() - started:.0f} s", flush=True)

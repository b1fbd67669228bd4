"""Atheris target (libFuzzer for Python): the inputs `hps convert` reads (.npz archives, .npy dense
matrices, keys + rows .npy pairs), through hps.convert.convert, the function behind the command.

Input: u8 mode | bytes. mode % 3 == 0: the bytes are an .npz input; 1: an .npy dense matrix
[N, D] (row index = key); 2: u32 length L (little-endian), then L bytes of a keys .npy and the
rest a rows .npy (--keys/--rows).

Properties: convert either writes a table or raises hps.InvalidArgumentError / hps.StorageError
(anything else, a MemoryError included, is a failure); a table it writes reads back with
hps.read_sparse_model as result.rows rows of result.dim floats.

Run through scripts/fuzz.sh (it passes the corpus folders and libFuzzer flags), or
`python fuzz/fuzz_convert.py [libFuzzer flags] CORPUS...`.
"""

import os
import shutil
import struct
import sys
import tempfile
import warnings

import atheris

with atheris.instrument_imports():
    import numpy as np

    import hps
    from hps.convert import convert

SCRATCH = tempfile.mkdtemp(prefix="hps-fuzz-convert-")
OUT = os.path.join(SCRATCH, "table")


def write(name: str, data: bytes) -> str:
    path = os.path.join(SCRATCH, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    inputs, keys, rows = [], None, None
    if mode == 0:
        inputs = [write("input.npz", body)]
    elif mode == 1:
        inputs = [write("input.npy", body)]
    else:
        length = struct.unpack("<I", body[:4].ljust(4, b"\0"))[0]
        keys = write("keys.npy", body[4:4 + length])
        rows = write("rows.npy", body[4 + length:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate keys, ignored members: reported, not failures
        try:
            result = convert(OUT, inputs, keys=keys, rows=rows, overwrite=True, progress=False)
        except (hps.InvalidArgumentError, hps.StorageError):
            return
    read_keys, read_rows = hps.read_sparse_model(OUT)
    if read_keys.shape != (result.rows,) or read_rows.shape != (result.rows, result.dim):
        raise AssertionError(f"convert reported {result.rows} rows of {result.dim} but wrote keys {read_keys.shape}, "
                             f"rows {read_rows.shape}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()

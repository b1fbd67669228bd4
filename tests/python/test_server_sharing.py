"""hps.HPS acquires its server through the core's registry: one server per config per process."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import hps
from conftest import config_for, make_table


@pytest.fixture
def config_file(tmp_path):
    table = make_table(tmp_path / "t0", 200, 4, default=-0.5)
    path = tmp_path / "ps.json"
    path.write_text(json.dumps(config_for([table])))
    return table, path


def test_two_instances_on_one_file_share_updates(config_file):
    table, path = config_file
    with hps.HPS(path) as a, hps.HPS(str(path)) as b:
        assert a.server_id == b.server_id == os.path.abspath(path)
        key = int(table.keys[0])
        a.update("m", 0, [key], np.full((1, 4), 7.0, np.float32))
        assert np.array_equal(b.lookup("m", 0, [key]), np.full((1, 4), 7.0, np.float32))
        b.erase("m", 0, [key])
        assert np.array_equal(a.lookup("m", 0, [key]), np.full((1, 4), -0.5, np.float32))
        # A Config read from that file names the same server.
        with hps.HPS(hps.Config(path)) as c:
            assert c.server_id == a.server_id


def test_close_drops_one_reference(config_file):
    table, path = config_file
    key = int(table.keys[1])
    a = hps.HPS(path)
    b = hps.HPS(path)
    a.update("m", 0, [key], np.full((1, 4), 3.0, np.float32))
    a.close()
    assert a.closed and not b.closed
    assert np.array_equal(b.lookup("m", 0, [key]), np.full((1, 4), 3.0, np.float32))  # still the same server
    b.close()
    with hps.HPS(path) as c:  # the last close freed it: a new server from the files
        assert np.array_equal(c.lookup("m", 0, [key]), table.rows[1:2])


def test_two_configs_do_not_share(config_file, tmp_path):
    table, path = config_file
    as_dict = config_for([table])
    other = dict(as_dict, models=[dict(as_dict["models"][0], model="other")])
    with hps.HPS(path) as a, hps.HPS(as_dict) as d, hps.HPS(other) as o:
        assert a.server_id != d.server_id != o.server_id
        assert d.server_id.startswith("hps-json:") and o.server_id.startswith("hps-json:")
        key = int(table.keys[2])
        d.update("m", 0, [key], np.full((1, 4), 5.0, np.float32))
        assert np.array_equal(a.lookup("m", 0, [key]), table.rows[2:3])
        assert np.array_equal(o.lookup("other", 0, [key]), table.rows[2:3])
        with hps.HPS(dict(as_dict)) as d2:  # an equal dict: the same server
            assert d2.server_id == d.server_id
            assert np.array_equal(d2.lookup("m", 0, [key]), np.full((1, 4), 5.0, np.float32))


def test_lookup_threads_of_a_live_server_must_agree(config_file):
    _, path = config_file
    with hps.HPS(path, lookup_threads=2) as a:
        with hps.HPS(path, lookup_threads=2) as b, hps.HPS(path) as c:
            assert a.server_id == b.server_id == c.server_id
        with pytest.raises(hps.InvalidArgumentError, match="lookup_threads 2.*lookup_threads 3"):
            hps.HPS(path, lookup_threads=3)


def test_progress_shows_only_for_the_build(config_file, capsys):
    _, path = config_file
    with hps.HPS(path, progress=True):
        built = capsys.readouterr().err
        with hps.HPS(path, progress=True):
            shared = capsys.readouterr().err
    assert built  # this acquire loaded the tables
    assert shared == ""  # this one shared the live server: nothing to load

"""The sandbox on its own: what student code can see and do in it, and the wire format.

These tests talk to the sandboxes directly (no nbgrader), so each failure points at one
guarantee: instructor files are invisible, there is no network, the environment is read-only,
limits are in force, a hanging or dying call costs only that call, and what comes back over the
wire is decoded strictly.
"""

import json
import os

import numpy as np
import pytest

from bncourse.grading import sandbox, trusted
from bncourse.grading.inside import wire
from conftest import REPO, printed_json_of_notebook_run

LIMITS = sandbox.Limits(cell_seconds=5, wall_seconds=60)
INSTRUCTOR_ONLY = [REPO / "solutions", REPO / "autograder", REPO / ".git", REPO / "tests"]
ANSWERS_CANNOT_SEE = [REPO / "src" / "bncourse" / "reference.py", REPO / "src" / "bncourse" / "checks",
                      REPO / "src" / "bncourse" / "grading"]

OBSERVE = '''
import os, resource, socket, sys

def observe(paths):
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2).close()
        network = "connected"
    except OSError as exc:
        network = type(exc).__name__
    try:
        open(os.path.join(sys.prefix, "written-by-student"), "w").close()
        wrote_environment = True
    except OSError:
        wrote_environment = False
    return {"seen": [p for p in paths if os.path.exists(p)], "network": network, "uid": os.getuid(),
            "home": sorted(os.listdir(os.path.expanduser("~"))), "wrote_environment": wrote_environment,
            "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0], "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "file_size": resource.getrlimit(resource.RLIMIT_FSIZE)[0]}

def hang():
    while True:
        pass

def die():
    os._exit(1)

def update_in_place(array, params):
    array[0] = 99.0
    params["running_mean"] = array * 2
    return ("done", array.sum())
'''


def plan(source=OBSERVE):
    return [{"index": 0, "name": "answer", "role": "answer", "source": source}]


@pytest.fixture
def server():
    with trusted.AnswerServer(plan(), LIMITS, slot=0) as s:
        yield s


def test_answers_sandbox_sees_no_instructor_files_no_network_and_cannot_write(server):
    seen = server.call("observe", ([str(p) for p in INSTRUCTOR_ONLY + ANSWERS_CANNOT_SEE],), {})
    assert seen["seen"] == []
    assert seen["network"] != "connected"
    assert seen["home"] == []  # a private, empty working directory
    assert not seen["wrote_environment"]
    assert seen["address_space"] == LIMITS.memory_mb * 2**20
    assert seen["file_size"] == LIMITS.file_mb * 2**20
    if os.geteuid() == 0:
        assert seen["uid"] != 0 and seen["nproc"] == LIMITS.processes


def test_in_kernel_sandbox_has_the_check_helpers_but_no_instructor_files():
    probe = OBSERVE + "\nimport json\nprint('OBSERVED' + json.dumps(observe(%r)))" % (
        [str(p) for p in INSTRUCTOR_ONLY + [REPO / "src" / "bncourse" / "checks"]])
    observed = printed_json_of_notebook_run(probe, "OBSERVED", LIMITS)
    assert observed["seen"] == [str(REPO / "src" / "bncourse" / "checks")]  # visible checks need it
    assert observed["network"] != "connected" and not observed["wrote_environment"]


def test_a_hanging_call_times_out_and_the_next_call_gets_a_fresh_process(server):
    with pytest.raises(trusted.AnswerError, match="did not return within 5 s"):
        server.call("hang", (), {})
    assert server.call("observe", ([],), {})["seen"] == []
    assert server.starts == 2


def test_a_call_that_kills_its_process_is_reported_and_survived(server):
    with pytest.raises(trusted.AnswerError, match="ended the process"):
        server.call("die", (), {})
    assert server.call("observe", ([],), {})["seen"] == []


def test_a_cell_that_hangs_while_loading_is_skipped_and_reported():
    cells = [{"index": 0, "name": "slow", "role": "answer", "source": "while True:\n    pass"},
             {"index": 1, "name": "fine", "role": "answer", "source": "def f():\n    return 42"}]
    with trusted.AnswerServer(cells, LIMITS, slot=0) as s:
        assert s.call("f", (), {}) == 42
        assert "did not finish within 5 s" in s.cell_errors["slow"]


def test_missing_functions_and_student_errors_are_reported_in_words(server):
    with pytest.raises(trusted.AnswerError, match="spatial_batchnorm_forward is not defined"):
        server.call("spatial_batchnorm_forward", (), {})
    with pytest.raises(trusted.AnswerError, match="update_in_place raised TypeError"):
        server.call("update_in_place", (), {})


def test_in_place_changes_to_arguments_reach_the_caller(server):
    array, params = np.zeros(3), {"mode": "train"}
    result = server.call("update_in_place", (array, params), {})
    assert result == ("done", 99.0)
    assert array.tolist() == [99.0, 0.0, 0.0]
    np.testing.assert_array_equal(params["running_mean"], [198.0, 0.0, 0.0])


def test_wire_round_trip_keeps_types_dtypes_and_shapes():
    value = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "t": (1, 2.5, None, "s"), "l": [True, np.int64(3)],
             "nan": float("nan")}
    back = wire.decode(json.loads(json.dumps(wire.encode(value))))
    assert back["x"].dtype == np.float32 and back["x"].shape == (2, 3)
    np.testing.assert_array_equal(back["x"], value["x"])
    assert back["t"] == (1, 2.5, None, "s") and back["l"] == [True, 3] and np.isnan(back["nan"])
    opaque = wire.decode(wire.encode(object()))
    assert isinstance(opaque, wire.Opaque) and type(opaque).__name__ == "object"
    # a set (Exercise 5's answer is one) arrives as a list in a fixed order
    assert wire.decode(json.loads(json.dumps(wire.encode({"b", "a", "c"})))) == ["a", "b", "c"]


@pytest.mark.parametrize("message", [
    {"__ndarray__": "AAAA", "dtype": "|O", "shape": [1]},  # object arrays could hold anything
    {"__ndarray__": "AAAAAAAAAAA=", "dtype": "<f8", "shape": [2]},  # 8 bytes for 2 float64
    {"__ndarray__": "AAAAAAAAAAA=", "dtype": "<f8", "shape": [-1]},
    {"__pickle__": "gASV"},
    {"__tuple__": "not a list"},
    {},
])
def test_wire_rejects_malformed_values(message):
    with pytest.raises(wire.WireError):
        wire.decode(message)


def test_the_whole_answer_run_has_one_time_budget():
    slow = [{"index": i, "name": f"slow{i}", "role": "answer", "source": "import time\ntime.sleep(1.5)"}
            for i in range(4)]
    with trusted.AnswerServer(slow, sandbox.Limits(cell_seconds=3, wall_seconds=4), slot=0) as s:
        with pytest.raises(trusted.AnswerError, match="time budget of 4 s"):
            s.call("f", (), {})


def test_writing_to_the_grader_channel_is_caught_as_tampering():
    forge = '''
import json, os, struct
def forge():
    message = json.dumps({"event": "cell", "index": 0}).encode()
    for fd in range(3, 64):
        try:
            os.write(fd, struct.pack("!Q", len(message)) + message)
        except OSError:
            pass
    return 1

def fine():
    return 2
'''
    with trusted.AnswerServer(plan(forge), LIMITS, slot=0) as s:
        with pytest.raises(trusted.AnswerError, match="tampering"):
            s.call("forge", (), {})
        assert s.call("fine", (), {}) == 2


def test_magics_run_the_code_they_wrap_and_lines_that_start_with_percent_are_kept():
    cells = [{"index": 0, "name": "lines", "role": "answer",
              "source": "%time setup = 1\n!pip install nothing\nremainder = (7\n% 4)\ndef f():\n    return remainder + setup"},
             {"index": 1, "name": "timed", "role": "answer", "source": "%%time\ndef g():\n    return 5"}]
    with trusted.AnswerServer(cells, LIMITS, slot=0) as s:
        assert s.call("f", (), {}) == 4
        assert s.call("g", (), {}) == 5
        assert s.cell_errors == {}


def test_deeply_nested_json_from_a_sandbox_is_rejected_not_fatal():
    read_end, write_end = os.pipe()
    payload = b"[" * 20_000  # deep enough for RecursionError, small enough for the pipe buffer
    os.write(write_end, len(payload).to_bytes(8, "big") + payload)
    with pytest.raises(wire.WireError):
        wire.receive(read_end, deadline=None)
    os.close(read_end)
    os.close(write_end)
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert trusted.merge_outputs(notebook, payload)[1] == "the notebook run returned an unreadable notebook"


def test_each_slot_caps_memory_and_processes_of_its_whole_sandbox():
    """rlimits cap single processes; the slot's control groups cap the sandbox as a whole."""
    with sandbox.SlotPool(1, LIMITS) as slots:
        if slots.cgroups.kind == "none":
            pytest.skip("this machine does not let the grader create control groups; only rlimits apply")
        with trusted.AnswerServer(plan(), LIMITS, slot=0) as s:
            s.call("observe", ([],), {})
            members = [p.read_text().split() for p in sandbox._CGROUP_PROCS[0]]
            assert all(members) and str(s.process.pid) in members[0]  # the sandbox, from bwrap down
        caps = {f.name: f.read_text().strip() for d in slots.cgroups.dirs for f in d.iterdir()
                if f.name in ("memory.limit_in_bytes", "memory.max", "pids.max")}
        assert caps.get("pids.max") == str(LIMITS.processes)
        assert str(LIMITS.memory_mb * 2**20) in (caps.get("memory.limit_in_bytes"), caps.get("memory.max"))
        dirs = list(slots.cgroups.dirs)
    assert not any(d.exists() for d in dirs)  # removed when the run ends

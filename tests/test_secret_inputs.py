"""Secret inputs neither leak into the feedback nor stay the same across changed submissions (issue 14).

Hostile cases: a function that raises with its own (secret) inputs in the message, or in the name
of an exception class it makes up, or a reply forged in the sandbox; a check that chokes on a return
value made of the inputs. Expected outcome: the verdict names a built-in exception type and the line
of the student's cell, never the values. And the seed changes with the submission's content, but not
between two gradings of the same submission.
"""

import numpy as np
import pytest

from bncourse.grading import sandbox, trusted

LIMITS = sandbox.Limits(cell_seconds=10, wall_seconds=60)
SECRET = np.array([0.123456789, 9.87654321])

LEAKY = '''
import numpy as np

def leak_in_message(x):
    raise ValueError(f"cannot normalise {x.tolist()}")

def leak_in_class_name(x):
    raise type("Leak_" + "_".join(str(int(v * 1e6)) for v in x), (KeyError,), {})("no")

def leak_from_numpy(x):
    return np.reshape(x, (3, 7))

def leak_in_return(x):
    return "secret " + repr(x.tolist())

def fine(x):
    return x * 2
'''
LEAKED = ("123456", "987654", "0.123", "9.876")


def plan():
    return [{"index": 0, "name": "answer", "role": "answer", "source": LEAKY}]


def test_an_exception_is_reported_by_type_and_line_without_its_message():
    with trusted.AnswerServer(plan(), LIMITS, slot=0) as server:
        messages = {}
        for name in ("leak_in_message", "leak_in_class_name", "leak_from_numpy"):
            with pytest.raises(trusted.AnswerError) as error:
                server.call(name, (SECRET.copy(),), {})
            messages[name] = str(error.value)
        assert server.call("fine", (SECRET.copy(),), {}).tolist() == (SECRET * 2).tolist()
    for name, message in messages.items():
        assert not any(value in message for value in LEAKED), message
    # "raised ValueError" is what the kit's checks look for when an exception is the right answer
    assert messages["leak_in_message"].startswith("leak_in_message raised ValueError at line 5 of the cell 'answer'")
    assert messages["leak_in_class_name"].startswith("leak_in_class_name raised KeyError at line 8")
    assert messages["leak_from_numpy"].startswith("leak_from_numpy raised ValueError at line 11")


TORCH_FUNCTIONS = '''
import numpy as np
import torch

class Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        return 2 * x

    @staticmethod
    def backward(ctx, dout):
        return BACKWARD(dout)

def run(x):
    t = torch.tensor(x, requires_grad=True)
    Double.apply(t, 1e-5).sum().backward()
    return t.grad.numpy()
'''


@pytest.mark.parametrize("backward, cause", [
    ("(2 * dout,)", "wrong number of gradients; backward must return one gradient per input of forward"),
    ("(2 * dout.sum(axis=0), None)", "a gradient returned by backward has the wrong shape"),
    ("((2 * dout).numpy(), None)", "not a tensor (a NumPy array?)"),
])
def test_a_known_torch_error_is_named_without_its_message(backward, cause):
    """torch's own words quote the secret shapes, so they never cross; a fixed code for the cause does."""
    source = TORCH_FUNCTIONS.replace("BACKWARD(dout)", backward)
    with trusted.AnswerServer([{"index": 0, "name": "answer", "role": "answer", "source": source}], LIMITS,
                              slot=0) as server:
        with pytest.raises(trusted.AnswerError) as error:
            server.call("run", (np.ones((17, 23)),), {})
    message = str(error.value)
    assert message.startswith("run raised RuntimeError") and cause in message, message
    assert "17" not in message and "23" not in message


@pytest.mark.parametrize("reply, expected", [
    ({"ok": False, "types": ["Leak_123456", "object"], "where": ["answer", 5]}, "an exception at line 5 of the cell"),
    ({"ok": False, "types": ["ValueError"], "where": ["answer 123456", 5]}, "ValueError (its message"),
    ({"ok": False, "types": ["ValueError"], "where": ["answer", 123456]}, "ValueError (its message"),
    ({"ok": False, "types": "ValueError: 0.123456", "where": None}, "an exception (its message"),
    ({"ok": False, "error": "ValueError: 0.123456"}, "an exception (its message"),  # the old format
    ({"ok": False, "types": ["RuntimeError"], "where": "library", "known": "0.123456"}, "RuntimeError outside"),
    ({"ok": False, "types": ["RuntimeError"], "where": None, "known": ["torch_gradient_count"]}, "RuntimeError (its"),
])
def test_a_forged_error_reply_cannot_carry_values(reply, expected):
    server = trusted.AnswerServer(plan(), LIMITS, slot=0)
    try:
        described = server._describe_error(reply)
    finally:
        server.close()
    assert described.startswith(expected) and "123456" not in described


def test_trusted_verdicts_do_not_echo_secret_inputs():
    def check_raises(answers, rng):
        answers.leak_in_message(rng.normal(size=3))

    def check_chokes(answers, rng):
        out = answers.leak_in_return(SECRET.copy())
        int(out)  # ValueError: invalid literal for int() with base 10: 'secret [0.123456789, ...]'

    verdicts, cell_errors = trusted.run_trusted_checks({"a": check_raises, "b": check_chokes}, plan(), seed=7,
                                                       limits=LIMITS, slot=0)
    assert not verdicts["a"].passed and "raised ValueError at line 5" in verdicts["a"].message
    assert not verdicts["b"].passed and verdicts["b"].message.endswith("(ValueError)")
    for verdict in verdicts.values():
        assert not any(value in verdict.message for value in LEAKED), verdict.message
    assert cell_errors == {}


def test_the_seed_is_fresh_for_each_changed_submission_and_stable_for_the_same_one():
    secret, content = b"k" * 32, [{"cells": [{"source": "def f(x):\n    return x"}]}, [{"index": 0}]]
    seed = trusted.student_seed(secret, "ex02", "alice", content)
    assert seed == trusted.student_seed(secret, "ex02", "alice", [dict(content[0]), list(content[1])])
    changed = [{"cells": [{"source": "def f(x):\n    return x  # resubmitted"}]}, [{"index": 0}]]
    others = [trusted.student_seed(secret, "ex02", "alice", changed), trusted.student_seed(secret, "ex02", "bob", content),
              trusted.student_seed(secret, "ex03", "alice", content), trusted.student_seed(b"j" * 32, "ex02", "alice", content)]
    assert len({seed, *others}) == 5
    # no ambiguity between the parts ("ex0" + "2/alice" is not "ex02" + "alice")
    assert trusted.student_seed(secret, "ex0", "2/alice", content) != seed

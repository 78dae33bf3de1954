"""Programs that run *inside* the grading sandbox (see ``..sandbox``).

They are bound read-only at ``/grader`` and started with the course's Python. They must not import
``bncourse``: in the sandbox that calls a student's functions the course package (and with it the
reference implementations) is hidden. Only :mod:`wire` is shared with the trusted side.
"""

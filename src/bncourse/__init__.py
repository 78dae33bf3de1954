"""Code shared by the chapters, the exercise notebooks and the autograder.

Modules:
    reference  -- NumPy reference implementations, checked against PyTorch by the test suite
    checks     -- the check helpers that exercise notebooks call; they explain mistakes in words
    plotting   -- the course's figure style
    grading    -- the instructor's pipeline around nbgrader (``make grade``)
"""

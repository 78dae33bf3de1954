"""The student kit of the Batch Normalization course.

One module per exercise, named like the exercise (``bnkit.ex02_batchnorm_forward``), holds the
checks its notebook calls. A check runs the student's function on the fixed inputs stored in
``fixtures/<exercise>.json`` and compares the results with the expected outputs stored beside
them, and with the outputs of known mistakes, so it can name the mistake. The fixtures are
computed from the course's reference implementations when the kit is built; the kit itself
contains no code that computes an answer.
"""

__version__ = "0.1.0"

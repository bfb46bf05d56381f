"""Computations both engines share: feature views over frames, window assignment.

The batch engine runs them over history, the streaming engine over its state plus each new
micro-batch; sharing the code is what makes the two give the same answers.
"""

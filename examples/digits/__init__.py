"""Framework-free pieces shared by the digits examples (``examples/pytorch``, ``examples/tf_vision``).

Both trainers solve the same task with the same decisions and flags; what
they share lives here so the two cannot drift apart. Nothing in this package
imports torch or TensorFlow: a controller can load a search space, and a test
can check flags, without paying for either.
"""

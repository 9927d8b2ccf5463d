"""TensorFlow 2 / Keras 3 example trainer for the digits MnasNet search space (see README.md)."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) would bury the trainer's own log lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

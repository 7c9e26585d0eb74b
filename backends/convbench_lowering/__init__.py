"""Framework-free helpers shared by the plugin backends' lowerings (never imports a framework).

* :mod:`convbench_lowering.layout`: which memory order (permutation of the logical NCHW
  axes) every value of a graph takes in a backend that computes NHWC or stores conv
  weights HWIO, and the conversions between them;
* :mod:`convbench_lowering.drive`: the table-driven lowering loop (one function per op)
  that every backend uses, and the shared training-step conventions.
* :mod:`convbench_lowering.shift`: where the windows of a ``shift`` are, which every
  backend then pads, slices and concatenates.
"""

"""Evaluation: validation-set views under any strategy (`validation`) and the
paper's dense multi-view testing (`dense`)."""

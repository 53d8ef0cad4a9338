"""What every package and binary of the project shares, depending on nothing
of ours (the role of Model Garden's `official/common`): the one error type
for user mistakes, command-line helpers, whole-file writes, the host's free
memory, and a quiet TensorFlow start."""

"""Stage 1, the split configurations of a network: the phone part of each cut in each embedding, and its costs."""

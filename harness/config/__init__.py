"""Stage 0, what to measure: the spec file, the backends, the network profiles (no torch)."""

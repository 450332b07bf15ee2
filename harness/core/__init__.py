"""Leaf helpers every stage may use: errors, exit codes, units, the clock. They import nothing else of harness."""

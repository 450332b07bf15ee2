"""Stage 4, the results directory: immutable records, the store, statistics, the derived tables, the manifest."""

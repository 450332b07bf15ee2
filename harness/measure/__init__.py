"""Stage 3, the host side of measuring: planning jobs, executors, device sessions, the writer loop, the cloud parts.

The numbers themselves are measured on the device side, in :mod:`device_agents` (one folder per platform)."""

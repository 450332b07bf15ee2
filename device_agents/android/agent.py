"""The Android agent (``android``, ``android:<serial>``, ``android:<host>:<port>``), as the orchestrator
loads it (``device_agents.base.open_agent`` imports ``device_agents.android.agent`` by name): each job
measured on the phone by the runtime's own native benchmark tool, pinned with ``taskset`` to one core
and held to one thread.

The agent layer, by job (the transport below it is ``transport.py``, what is said to the phone
``protocol.py``):

- ``session.py``: the ``[android]`` table and the session on one phone (connect, facts, core, work
  directory, tools pushed by hash, performance mode, close);
- ``measure.py``: :class:`AndroidAgent`, the session with its jobs (artifacts placed, the per-job
  protocol, timings, failures, cool-down) and :func:`agent_for`;
- ``upkeep.py``: :func:`discover`, :func:`doctor`, :func:`clean`.

The user-facing description is docs/android.md.
"""

from __future__ import annotations

from device_agents.android.measure import AndroidAgent, agent_for
from device_agents.android.session import AndroidOptions, PhoneStorageFull
from device_agents.android.upkeep import clean, discover, doctor

__all__ = ["AndroidAgent", "AndroidOptions", "PhoneStorageFull", "agent_for", "clean", "discover", "doctor"]

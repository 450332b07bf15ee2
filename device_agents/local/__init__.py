"""The local single-core CPU profile: transport (a local process), protocol, worker, agent."""

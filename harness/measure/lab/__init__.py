"""The Ray lab: many hosts' devices in one run (the driver, the device host, the cluster commands)."""

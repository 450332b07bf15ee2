"""The iOS profile: Core ML on an iPhone, measured by the splitbench agent app (``app/``, built on macOS)
and driven from Linux or macOS with pymobiledevice3. Layers: ``transport`` (pymobiledevice3 services) with
``errors`` (what their failures mean), ``protocol`` (the job and result files, ``schema/``), and the agent:
``session`` (options, preconditions), ``measure`` (jobs), ``doctor`` (discover, doctor, clean), ``agent``
(the DeviceAgent and the platform functions). docs/ios.md is the user's page."""

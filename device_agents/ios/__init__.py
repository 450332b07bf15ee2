"""The iOS profile: Core ML on an iPhone, measured by the splitbench agent app (``app/``, built on macOS)
and driven from Linux or macOS with pymobiledevice3. Layers: ``transport`` (pymobiledevice3 services),
``protocol`` (the job and result files, ``schema/``), ``agent`` (the DeviceAgent and the platform functions)."""

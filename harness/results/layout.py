"""Every name in a results directory, in one place: what each file holds and which stage writes it.

```
OUT/
├── records/<record_key>.json   one measured (configuration, backend, device): results.store, the run's writer
│   └── retried/                 a failed record kept aside when --resume measured it again
├── summary.csv                  one row per record, derived (results.tables)
├── samples.parquet              every raw timing sample, derived (results.tables)
├── manifest.json                the run: spec, versions, devices, status, counts (results.manifest)
├── .splitbench.lock             held by the one writer of OUT (results.store.ResultsLock)
├── cloud.csv, cloud.json        the cloud part of each cut timed on this host, and for what (measure.cloud)
├── privacy.csv                  privacy scores of the uploaded features (analysis.privacy.stage)
├── figures/                     the trade-off and cost figures (report.figures, report.tradeoff)
├── report.html                  the report, the answer first (report.build)
└── report_first_screen.png      the report as a browser first shows it (report.browser, the demo)
```
"""

from __future__ import annotations

RECORDS_DIR = "records"
RETRIED_DIR = "retried"  # under RECORDS_DIR
SUMMARY_CSV = "summary.csv"
SAMPLES_PARQUET = "samples.parquet"
MANIFEST_JSON = "manifest.json"
LOCK_FILE = ".splitbench.lock"
CLOUD_CSV = "cloud.csv"
CLOUD_JSON = "cloud.json"  # what cloud.csv was timed for (redone only when that changed)
PRIVACY_CSV = "privacy.csv"
FIGURES_DIR = "figures"
REPORT_HTML = "report.html"
SCREENSHOT_PNG = "report_first_screen.png"

"""Test helpers: the residency policies the vault tests set up their vaults with.

Two regions, Zurich and Moscow. POLICY puts every country but Russia in Zurich
and has the two categories the tests store, samples and telemetry.
"""

from __future__ import annotations

ZRH, MOW = "ch-zurich", "ru-moscow"

# The [regions] tables: a policy's text starts with these.
REGIONS = """\
[regions.ch-zurich]
description = "Zurich, Switzerland (supervised)"
[regions.ru-moscow]
description = "Moscow, Russia"
"""

POLICY = (
    REGIONS
    + """
[countries]
EU = "ch-zurich"
US = "ch-zurich"
CA = "ch-zurich"
AU = "ch-zurich"
RU = "ru-moscow"

[categories.sample]
description = "suspicious files sent for analysis"
retention_days = 365

[categories.telemetry]
description = "threat statistics"
retention_days = 90
"""
)

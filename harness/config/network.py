"""Network profiles for the upload of a cut's feature, and the upload-time model.

The time to send a feature is modelled as in FaceMix (Table 1): a fixed one-way delay plus the bytes
over the uplink rate, ``upload_ms = delay_ms + bytes * 8 / uplink``. No protocol overhead, no TCP
slow start, no radio wake-up: it is the papers' first-order estimate, good for ranking cuts, not for
promising a user a latency. Rates are SI (1 Mbps = 10**6 bit/s).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import UserError


@dataclass(frozen=True)
class NetworkProfile:
    """One network: uplink and downlink rates, one-way delay, and where the figures come from."""

    name: str
    uplink_mbps: float
    downlink_mbps: float | None
    delay_ms: float
    source: str

    def describe(self) -> str:
        down = f", {self.downlink_mbps:g} down" if self.downlink_mbps else ""
        return f"{self.name}: {self.uplink_mbps:g} Mbps up{down}, {self.delay_ms:g} ms delay ({self.source})"


# The figures and their sources. Only the uplink and the delay enter the upload time; the downlink is
# kept for the record (the cloud's answer is a few bytes).
PROFILES: dict[str, NetworkProfile] = {
    # FaceMix (the seed paper 004), Table 1: the 4G LTE profile it uses for transmission time.
    "lte": NetworkProfile("lte", 15.0, 30.0, 25.0, "FaceMix Table 1, 4G LTE"),
    # Rates: mean 3G upload/download measured in Neurosurgeon (Kang et al., ASPLOS 2017, Table 3:
    # 1.1 / 2.03 Mbps). Delay: our assumption of 100 ms one-way, the order of HSPA user-plane latency;
    # the paper gives no delay we could use. The rates were not re-checked against the paper's text
    # on the machine this was written on: the source string says so until someone does.
    "3g": NetworkProfile("3g", 1.1, 2.03, 100.0, "rates: Neurosurgeon Table 3 (not re-checked); delay: assumed"),
    # Rates: mean Wi-Fi upload/download in Neurosurgeon (Table 3: 18.88 / 54.97 Mbps). Delay: our
    # assumption of 5 ms, one hop on a local access point to a nearby cloud region.
    "wifi": NetworkProfile("wifi", 18.88, 54.97, 5.0, "rates: Neurosurgeon Table 3 (not re-checked); delay: assumed"),
    # The IMT-2020 (5G) minimum requirements, ITU-R M.2410-0 (2017): user-experienced data rate
    # 50 Mbps uplink / 100 Mbps downlink, user-plane latency 4 ms (eMBB).
    "5g": NetworkProfile("5g", 50.0, 100.0, 4.0, "ITU-R M.2410-0 IMT-2020 minimum requirements"),
}


def get_profile(name: str, *, uplink_mbps: float | None = None, delay_ms: float | None = None) -> NetworkProfile:
    """The named profile, with ``uplink_mbps``/``delay_ms`` overriding its figures.

    ``name == "custom"`` needs ``uplink_mbps``; its delay defaults to 0 ms.
    """
    key = name.strip().lower()
    if uplink_mbps is not None and not uplink_mbps > 0:
        raise UserError(f"--uplink-mbps must be positive, got {uplink_mbps:g}")
    if delay_ms is not None and delay_ms < 0:
        raise UserError(f"--delay-ms must be zero or positive, got {delay_ms:g}")
    if key == "custom":
        if uplink_mbps is None:
            raise UserError("--network custom needs --uplink-mbps (and optionally --delay-ms)")
        return NetworkProfile("custom", uplink_mbps, None, delay_ms or 0.0, "given on the command line")
    if key not in PROFILES:
        raise UserError(f"unknown network {name!r}: choose one of {', '.join(PROFILES)} or custom "
                        f"(with --uplink-mbps)")
    base = PROFILES[key]
    if uplink_mbps is None and delay_ms is None:
        return base
    return NetworkProfile(base.name, uplink_mbps if uplink_mbps is not None else base.uplink_mbps,
                          base.downlink_mbps, delay_ms if delay_ms is not None else base.delay_ms,
                          base.source + ", overridden on the command line")


def upload_ms(n_bytes: float, profile: NetworkProfile) -> float:
    """Time to send ``n_bytes`` over ``profile``: delay + bits / uplink rate, in milliseconds."""
    return profile.delay_ms + n_bytes * 8.0 / (profile.uplink_mbps * 1e6) * 1e3

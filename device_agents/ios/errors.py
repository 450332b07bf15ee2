"""What the iOS agent acts on, from pymobiledevice3's exceptions and the NSErrors the phone sends.

Every exception that means "the phone went away or is locked" becomes :class:`DeviceUnavailable`; the
few the agent acts on become the small exception types below; anything else propagates as it is.

Launch refusals come from DVT process control as ``pymobiledevice3.dtx.exceptions.DTXNsError``
(dtx/channel.py l.133-142), which is not a ``PyMobileDevice3Exception``: its ``error`` is the phone's
NSError (``domain``, ``code``, ``user_info``). SpringBoard (FrontBoard) names its reason in
``BSErrorCodeDescription``, at the top or in the ``NSUnderlyingError`` it wraps, and repeats it in
``NSLocalizedFailureReason``, e.g. (appium/appium#14339, SpringBoard's log of a refused launch):

    domain: FBSOpenApplicationServiceErrorDomain; code: 1 (RequestDenied); reason: "The request was denied
    by service delegate (SBMainWorkspace) for reason: Security ("Unable to launch <bundle> because it has an
    invalid code signature, inadequate entitlements or its profile has not been explicitly trusted by the
    user")." underlyingError = domain: FBSOpenApplicationErrorDomain; code: 3 (Security)

and ``{'BSErrorCodeDescription': 'NotFound', 'NSLocalizedFailureReason': 'Application info provider
(FBSApplicationLibrary) returned nil for "<bundle>"'}`` for an app that is not installed
(fritzlb/iOS17-JIT-WIN#72, pymobiledevice3's ``dvt launch``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

from device_agents.base import DeviceUnavailable

# AfcError.NO_SPACE_LEFT (services/afc.py l.128): a write the phone had no room for.
AFC_NO_SPACE_LEFT = 18


class TransportError(Exception):
    """A failure the agent turns into a precondition message or a row (never "the device went away")."""


class UsbmuxdUnavailable(TransportError):
    """usbmuxd (Linux: the usbmuxd daemon; macOS: built in) cannot be reached."""


class NotPaired(TransportError):
    """The phone has not trusted this computer (no valid pair record)."""


class DeveloperServicesUnavailable(TransportError):
    """The DVT instruments service cannot be started (Developer Mode off, no developer disk image)."""


class TunnelUnavailable(TransportError):
    """iOS 17+: no RSD tunnel could be opened to the phone."""


class AppNotInstalled(TransportError):
    """The agent app is not installed (house arrest or the launch says so)."""


class InstallFailed(TransportError):
    """installation_proxy refused the app (signature, provisioning profile, entitlements)."""


class DiskFull(TransportError):
    """The phone has no room for a file."""


class DvtError(TransportError):
    """Any other NSError the phone's developer services answered; the message names its domain and code."""

    def __init__(self, domain: str, code: Any, said: str):
        super().__init__(f"{domain} error {code}" + (f" ({said})" if said else ""))
        self.domain, self.code, self.said = domain, code, said


class LaunchRefused(TransportError):
    """iOS did not start the app. ``kind``: ``untrusted`` (SpringBoard's "Security": the developer profile is
    not trusted on the phone, or the signature or entitlements are bad), ``no process`` (DVT answered no
    pid: ProcessControl.launch's ``assert result``), ``dvt`` (any other NSError, domain and code named)."""

    KINDS = ("untrusted", "no process", "dvt")

    def __init__(self, kind: str, detail: str):
        if kind not in self.KINDS:
            raise ValueError(kind)
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class DeviceLocked(DeviceUnavailable):
    """The phone is locked: SpringBoard refuses to launch apps, lockdown asks for the passcode."""


class TunnelLost(DeviceUnavailable):
    """tunneld lists the phone but none of its tunnels to it could be connected."""


# --------------------------------------------------------------------------------------------------
# The phone's NSError


def ns_errors(exc: BaseException) -> Iterator[Any]:
    """The NSError a ``DTXNsError`` carries, then each ``NSUnderlyingError`` it wraps (none for others)."""
    err = getattr(exc, "error", None)
    seen = 0
    while err is not None and hasattr(err, "domain") and seen < 8:
        yield err
        info = getattr(err, "user_info", None)
        err = info.get("NSUnderlyingError") if isinstance(info, dict) else None
        seen += 1


def _said(err: Any) -> str:
    """What an NSError says, in one line: SpringBoard's reason, else its description."""
    info = err.user_info if isinstance(getattr(err, "user_info", None), dict) else {}
    for key in ("NSLocalizedFailureReason", "NSLocalizedDescription", "NSDebugDescription"):
        if isinstance(info.get(key), str) and info[key].strip():
            return " ".join(info[key].split())
    return ""


def launch_refusal(exc: BaseException) -> str | None:
    """SpringBoard's reason for refusing a launch ("Locked", "NotFound", "Security"), else None."""
    errors = list(ns_errors(exc))
    codes = {e.user_info.get("BSErrorCodeDescription") for e in errors if isinstance(e.user_info, dict)}
    text = " ".join(_said(e) for e in errors)
    for reason in ("Locked", "NotFound", "Security"):
        if reason in codes or f"for reason: {reason}" in text:
            return reason
    if "could not be, unlocked" in text:
        return "Locked"
    if "explicitly trusted" in text or "invalid code signature" in text:
        return "Security"
    return None


def dvt_error(exc: BaseException) -> DvtError | None:
    """A :class:`DvtError` naming the NSError's domain and code, None for an exception that carries none."""
    errors = list(ns_errors(exc))
    if not errors:
        return None
    top = errors[0]
    info = top.user_info if isinstance(top.user_info, dict) else {}
    parts = [info.get("BSErrorCodeDescription")] + [_said(e) for e in errors]
    said = "; ".join(dict.fromkeys(str(p) for p in parts if p))
    return DvtError(str(top.domain), top.code, said[:400])


def translate(udid: str, exc: BaseException) -> BaseException:
    """The exception the agent should see for a pymobiledevice3 (or socket) failure."""
    if isinstance(exc, (DeviceUnavailable, TransportError)):
        return exc
    from pymobiledevice3 import exceptions as e

    if isinstance(exc, e.ConnectionFailedToUsbmuxdError):
        return UsbmuxdUnavailable(str(exc) or "cannot connect to usbmuxd")
    refusal = launch_refusal(exc)
    if refusal == "Locked" or isinstance(exc, (e.PasscodeRequiredError, e.PasswordRequiredError)):
        return DeviceLocked(udid, "the iPhone is locked (unlock it and set Auto-Lock to Never for the run)")
    if refusal == "NotFound" or isinstance(exc, e.AppNotInstalledError):
        said = next((s for s in map(_said, ns_errors(exc)) if s), "")
        return AppNotInstalled(said or str(exc))
    if refusal == "Security":
        said = next((s for s in map(_said, ns_errors(exc)) if "Security" in s or "trusted" in s), "")
        return LaunchRefused("untrusted", f"iOS refused to launch the app: {said or 'Security'}")
    if isinstance(exc, (e.NoDeviceConnectedError, e.DeviceNotFoundError)):
        return DeviceUnavailable(udid, "not attached (usbmuxd does not list it)")
    if isinstance(exc, (e.MuxException, e.ConnectionTerminatedError, ConnectionError, asyncio.IncompleteReadError,
                        EOFError, BrokenPipeError)):
        return DeviceUnavailable(udid, f"the connection to the iPhone dropped ({type(exc).__name__}: {exc})")
    if isinstance(exc, TimeoutError):
        return DeviceUnavailable(udid, f"the iPhone did not answer ({exc})")
    if isinstance(exc, e.AfcException) and getattr(exc, "status", None) == AFC_NO_SPACE_LEFT:
        return DiskFull(f"no space left on the iPhone writing {getattr(exc, 'filename', None) or 'a file'}")
    if isinstance(exc, (e.NotPairedError, e.InvalidHostIDError, e.FatalPairingError, e.NotTrustedError,
                        e.UserDeniedPairingError, e.PairingDialogResponsePendingError)):
        return NotPaired(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (e.InvalidServiceError, e.StartServiceError, e.DeveloperModeIsNotEnabledError)):
        return DeveloperServicesUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, e.UserspaceTunnelUnavailableError):
        return TunnelUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, e.AppInstallError):
        return InstallFailed(str(exc))
    from pymobiledevice3.dtx.exceptions import DTXNsError

    return (dvt_error(exc) or exc) if isinstance(exc, DTXNsError) else exc

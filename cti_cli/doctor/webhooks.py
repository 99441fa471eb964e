"""Each webhook for `cti doctor`: its TLS certificate (https), then a signed `ping`.

The certificate is checked with the trust store the agent's deliveries use (httpx's: certifi,
or `SSL_CERT_FILE` / `SSL_CERT_DIR`), so "valid here" means "the agent can deliver". The ping is
the body and headers of `cti webhooks test`: `{"event":"ping",…}` signed with the webhook's
secret. A Zammad endpoint takes only Zammad's own events, so it gets no ping: only the
connection (and certificate) is checked.
"""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from cti_cli.config import Config, Webhook
from cti_cli.doctor import Check, fail, ok, warn
from cti_cli.notify.webhook import host_of, safe_url, send_ping

CERT_WARN_DAYS = 14


class _TlsProblem(Exception):
    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.fix = fix


def certificate_expiry(host: str, port: int, timeout: float) -> datetime:
    """When the server's certificate expires, once it verified for `host`; _TlsProblem if not."""
    context = httpx.create_ssl_context(verify=True, trust_env=True)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:  # fmt: skip
            cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        raise _TlsProblem(
            f"TLS certificate of {host}:{port} is not valid: {exc.verify_message}; ping not sent",
            f"Give {host} a certificate for that name from a CA this host trusts "
            "(or add its CA to SSL_CERT_FILE for the agent).",
        ) from None
    except ssl.SSLError as exc:
        raise _TlsProblem(
            f"TLS handshake with {host}:{port} failed: {exc.reason or exc}; ping not sent",
            "Check that the URL's port speaks HTTPS.",
        ) from None
    except OSError as exc:
        raise _TlsProblem(
            f"cannot connect to {host}:{port}: {exc.strerror or exc}",
            "Start the receiver or correct the URL (cti webhooks list, remove, add).",
        ) from None
    not_after = cert.get("notAfter") if cert else None
    if not isinstance(not_after, str):
        raise _TlsProblem(f"{host}:{port} sent no certificate expiry", "Check its certificate.")
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)


def _ping(hook: Webhook) -> httpx.Response:
    return send_ping(hook, delivery="doctor-ping")


def _refused(status: int, reply: httpx.Response) -> str:
    if status in (401, 403):
        return "Make the receiver's secret match this webhook's secret (or secret_file)."
    if 300 <= status < 400:
        return "Put the final URL in [[webhooks]] url: cti never follows redirects."
    if status == 404:
        return "Correct the URL's path (cti webhooks list, remove, add)."
    if status >= 500:
        return "See the receiver's log; meanwhile deliveries wait in the outbox (cti outbox list)."
    return "See the receiver's log for why it refuses cti's ping."


def check_webhook(number: int, hook: Webhook) -> Check:
    cid, name = f"webhook.{number}", f"webhook {number}"
    shown = safe_url(hook.url) if hook.format == "json" else host_of(hook.url)
    parts = urlsplit(hook.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cert_note, expiring = "", False
    if parts.scheme == "https":
        try:
            expires = certificate_expiry(host, port, hook.timeout)
        except _TlsProblem as exc:
            return fail(cid, name, f"{shown}: {exc}", exc.fix)
        days = (expires - datetime.now(UTC)).days
        expiring = days < CERT_WARN_DAYS
        cert_note = f"; certificate valid until {expires:%Y-%m-%d} ({days} days)"
    if hook.format == "zammad":
        if parts.scheme != "https":
            try:
                socket.create_connection((host, port), timeout=hook.timeout).close()
            except OSError as exc:
                return fail(cid, name, f"{shown}: cannot connect: {exc.strerror or exc}",
                            "Check that Zammad runs there and the URL is right.")
        check = ok(cid, name, f"{shown}: reachable{cert_note}; no ping (a Zammad endpoint "
                   "takes only its own events)")  # fmt: skip
    else:
        started = time.perf_counter()
        try:
            reply = _ping(hook)
        except httpx.TimeoutException:
            return fail(cid, name, f"{shown}: no answer within {hook.timeout:g} s",
                        "Check that the receiver is up, or raise this webhook's timeout.")
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return fail(cid, name, f"{shown}: cannot connect ({reason})",
                        "Start the receiver or correct the URL (cti webhooks list, remove, add).")
        took = (time.perf_counter() - started) * 1000
        status = reply.status_code
        if not 200 <= status < 300:
            where = reply.headers.get("location")
            extra = f" (redirect to {safe_url(where)})" if where and 300 <= status < 400 else ""
            return fail(cid, name, f"{shown}: HTTP {status}{extra}: the receiver refused the "
                        "signed ping", _refused(status, reply))  # fmt: skip
        detail = f"{shown}: HTTP {status} in {took:.0f} ms"
        if not hook.secret.get_secret_value():
            return warn(cid, name, f"{detail}, but unsigned (no secret){cert_note}",
                        "Give it a secret (cti webhooks remove, then add --secret-stdin) so "
                        "receivers can verify X-CTI-Signature.")  # fmt: skip
        check = ok(cid, name, f"{detail}, signed ping accepted{cert_note}")
    if expiring:
        return warn(cid, name, check.detail, f"Renew the certificate of {host} now: it expires "
                    "soon and deliveries will then fail.")  # fmt: skip
    return check


def webhook_checks(config: Config) -> list[Check]:
    if not config.webhooks:
        return [ok("webhooks", "webhooks", "none configured: pops reach operator pages only")]
    return [check_webhook(n, hook) for n, hook in enumerate(config.webhooks, 1)]

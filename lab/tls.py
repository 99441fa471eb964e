"""A per-instance CA and server cert for TLS AMI (CN=localhost, SAN IP:127.0.0.1 + DNS:localhost).

A separate CA (instead of one self-signed leaf) keeps strict verifiers happy: the leaf has
CA:FALSE, serverAuth and an authority key id, the CA file is what clients pass as `cafile`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.errors import LabUnavailable

LEAF_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabUnavailable(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")


def make_certs(tls_dir: Path) -> Path:
    """Create ca.pem, server.pem, server.key in tls_dir; returns the CA file path."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = tls_dir / "ca.key", tls_dir / "ca.pem"
    key, csr, pem = tls_dir / "server.key", tls_dir / "server.csr", tls_dir / "server.pem"
    ext = tls_dir / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_pem), "-days", "3650",
        "-subj", "/CN=cti lab CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    ext.write_text(LEAF_EXT)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(pem), "-days", "3650", "-extfile", str(ext),
    )  # fmt: skip
    for secret in (ca_key, key):
        secret.chmod(0o600)
    return ca_pem

"""The fleet's TLS edge: Debian's nginx, a config rendered from deploy/nginx.conf, a cert.

``render_nginx_conf`` rewrites only the lines of deploy/nginx.conf marked
``# fleet: <name>`` (addresses, ports, file paths), so the compose edge and the
local one share every directive that matters: TLS 1.3 only, HSTS, timeouts,
the body limit, what is proxied and what is refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

NGINX_TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
_MARK = re.compile(r"^(?P<indent>\s*)(?P<directive>\S+)\s.*;\s*# fleet: (?P<name>\w+)\s*$")
_SERVER_PARAMS = re.compile(r"^server\s+\S+(?P<params>(\s+[^;\s]+)*)\s*;")


def find_nginx() -> str | None:
    """The nginx binary (Debian installs it in /usr/sbin, often not on PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render_nginx_conf(
    template: str,
    runtime: Path,
    *,
    api_port: int | Sequence[int],
    https_port: int,
    http_port: int,
    cert: Path,
    key: Path,
) -> str:
    """Rewrite the ``# fleet:`` lines of deploy/nginx.conf for a loopback child nginx.

    ``api_port`` is one coordinator's port or every coordinator's: the template's
    ``upstream`` lines become one ``server`` per port, with the template's parameters
    (``max_fails``, ``fail_timeout``).
    """
    ports = [api_port] if isinstance(api_port, int) else list(api_port)
    values = {
        "pid": f"pid {runtime / 'nginx.pid'};",
        "error_log": f"error_log {runtime / 'logs' / 'error.log'} warn;",
        "access_log": f"access_log {runtime / 'logs' / 'access.log'} vp_json;",
        "upstream": f"server 127.0.0.1:{api_port};",
        "http_listen": f"listen 127.0.0.1:{http_port};",
        "redirect": f"return 301 https://$host:{https_port}$request_uri;",
        "https_listen": f"listen 127.0.0.1:{https_port} ssl;",
        "cert": f"ssl_certificate {cert};",
        "key": f"ssl_certificate_key {key};",
    }
    out, seen = [], set()
    for line in template.splitlines():
        m = _MARK.match(line)
        if m is None:
            out.append(line)
            continue
        name, directive = m["name"], m["directive"]
        if name == "upstream":
            if "upstream" not in seen:
                params = _SERVER_PARAMS.match(line.strip())
                extra = params["params"] if params else ""
                out += [f"{m['indent']}server 127.0.0.1:{port}{extra};" for port in ports]
            seen.add(name)
            continue
        if name == "temp":
            rendered = f"{directive} {runtime / 'temp' / directive.removesuffix('_temp_path')};"
        elif name in values:
            rendered = values[name]
        else:
            raise ValueError(f"deploy/nginx.conf has an unknown fleet marker: {name}")
        seen.add(name)
        out.append(m["indent"] + rendered)
    missing = (set(values) | {"temp"}) - seen
    if missing:
        raise ValueError(f"deploy/nginx.conf lacks fleet markers: {sorted(missing)}")
    return "\n".join(out) + "\n"


def write_self_signed_cert(directory: Path, days: int = 7) -> tuple[Path, Path]:
    """A fresh P-256 key and a self-signed certificate for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "tls.key", directory / "tls.crt"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path

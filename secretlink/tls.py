"""A self-signed certificate for instances served over HTTPS without a proxy.

Made once with the `cryptography` package and kept in the data folder; reused while
it covers the configured host names and has more than 30 days left.
"""

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 397  # the longest lifetime browsers accept
RENEW_BEFORE = datetime.timedelta(days=30)


def _subject_names(hostnames: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _usable(cert_path: Path, key_path: Path, hostnames: tuple[str, ...]) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return left > RENEW_BEFORE and set(names) == set(_subject_names(hostnames))


def self_signed(data_dir: Path, hostnames: tuple[str, ...]) -> tuple[Path, Path]:
    """Return (certificate, key) paths, creating or renewing them when needed."""
    folder = data_dir / "tls"
    folder.mkdir(mode=0o700, exist_ok=True)
    cert_path, key_path = folder / "self-signed-cert.pem", folder / "self-signed-key.pem"
    if _usable(cert_path, key_path, hostnames):
        return cert_path, key_path

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path

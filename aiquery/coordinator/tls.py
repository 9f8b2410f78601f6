"""TLS for the coordinator when the application encrypts Spark's own traffic.

The driver makes a self-signed certificate for each application (a fresh EC key, valid for a day) and ships the
certificate's SHA-256 fingerprint to the workers in the query plan, next to the secret. Workers check the
certificate they are shown against that fingerprint instead of against a certificate authority: the plan is
the one channel the application already trusts, and no certificate has to be provisioned on any machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import ssl
import tempfile
from typing import Any

__all__ = ["certificate_fingerprint", "client_context", "encryption_wanted", "server_context"]

_TRUE = {"true", "1", "yes"}


def encryption_wanted(conf: Any) -> bool:
    """Whether a Spark configuration (a ``SparkConf`` or ``spark.conf``) encrypts Spark's own traffic."""
    for key in ("spark.network.crypto.enabled", "spark.ssl.enabled", "spark.ssl.rpc.enabled"):
        value = conf.get(key, None)
        if value is not None and str(value).strip().lower() in _TRUE:
            return True
    return False


def server_context() -> tuple[ssl.SSLContext, str]:
    """A TLS server context with a fresh self-signed certificate, and that certificate's SHA-256 (hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiquery coordinator")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads certificates only from files: a private temporary file, deleted as soon as it is read.
    descriptor, path = tempfile.mkstemp(prefix="aiquery-coordinator-", suffix=".pem")
    try:
        os.write(descriptor, pem)
        os.close(descriptor)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context, hashlib.sha256(der).hexdigest()


def client_context() -> ssl.SSLContext:
    """A TLS client context that accepts any certificate: the caller checks the fingerprint itself."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def certificate_fingerprint(transport: Any) -> str | None:
    """SHA-256 (hex) of the certificate the peer of a TLS transport showed, or None."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else None

"""``mqtts://``: the bridge checks the broker's certificate against ``mqtt.tls_ca_file``
(or the system's CAs), and skips the check only with ``tls_verify: false``."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from staterelay.app.appkeys import CORE_KEY
from staterelay.core.errors import Conflict
from staterelay.integrations.mqtt.dashboard import BRIDGE_KEY
from staterelay.settings import MqttSettings, Settings
from tests.conftest import make_account
from tests.mqtt.broker import Broker
from tests.mqtt.conftest import HOUSEHOLD, mqtt_app, wait_for, with_mqtt


def _pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o644)
    return str(path)


def certificates(directory: Path) -> tuple[str, str, str]:
    """A CA and a server certificate for localhost and 127.0.0.1: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _pem(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        _pem(directory / "server.pem", server.public_bytes(serialization.Encoding.PEM)),
        _pem(
            directory / "server.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
        ),
    )


@pytest.fixture
def tls_broker() -> Iterator[tuple[Broker, str]]:
    """A Mosquitto whose listener speaks TLS with a certificate of a test CA; and the CA.

    Started as root, Mosquitto reads its certificates as the user ``mosquitto``: they live
    in a directory anyone may traverse (pytest's own temporary directories are private).
    """
    directory = Path(tempfile.mkdtemp(prefix="staterelay-mqtt-tls-"))
    directory.chmod(0o755)
    try:
        ca, cert, key = certificates(directory)
        broker = Broker(directory, extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
        broker.start()
        try:
            yield broker, ca
        finally:
            broker.kill()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def connects(
    aiohttp_client: Callable[..., Any], settings: Settings, broker: Broker, mqtt: MqttSettings
) -> bool:
    """Whether a bridge with ``mqtt`` connects within two seconds."""
    configured = dataclasses.replace(with_mqtt(settings, broker), mqtt=mqtt)
    client = await aiohttp_client(mqtt_app(configured))
    with contextlib.suppress(Conflict):  # the data directory is the test's, shared by all
        await make_account(client.app[CORE_KEY], HOUSEHOLD)
    bridge = client.app[BRIDGE_KEY]
    try:
        await wait_for(lambda: bridge.status.connected, seconds=2)
    except AssertionError:
        assert bridge.status.errors["connection"] > 0
        return False
    finally:
        await client.close()
    return True


# paho-mqtt drops the socket of a failed TLS handshake without closing it; the garbage
# collector closes it (with a ResourceWarning). Not the bridge's socket to close.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_the_broker_certificate_is_checked(
    aiohttp_client: Callable[..., Any], settings: Settings, tls_broker: tuple[Broker, str]
) -> None:
    """Trusted through tls_ca_file: connects. Unknown CA: refused. tls_verify false: connects."""
    broker, ca = tls_broker
    url = f"mqtts://localhost:{broker.port}"
    trusted = MqttSettings(url=url, household=HOUSEHOLD, tls_ca_file=ca)
    assert await connects(aiohttp_client, settings, broker, trusted)
    unknown = MqttSettings(url=url, household=HOUSEHOLD)
    assert not await connects(aiohttp_client, settings, broker, unknown)
    unchecked = MqttSettings(url=url, household=HOUSEHOLD, tls_verify=False)
    assert await connects(aiohttp_client, settings, broker, unchecked)

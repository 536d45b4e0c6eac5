"""`make run`'s admission webhooks on the local control plane: a self-signed serving certificate for
127.0.0.1 and the two webhook configurations pointing at the operator's TLS port.

    python hack/webhook.py FOLDER PORT   # writes FOLDER/webhook.crt and .key, registers the webhooks

Both use the same failurePolicy, as in the chart (``webhook.failurePolicy``, Fail by default): the
mutating webhook's source approval is a security decision, and the validating one refuses a new or
changed source the mutating one did not approve for the same request's user. `make run` registers
both with Ignore, so the local cluster stays usable while the operator is stopped (while it is, a
Trigger whose source needs approval is admitted unapproved, and the operator, once back, refuses
to read that source until the Trigger is written again); the integration tests register Fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def serving_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, bytes]:
    """A self-signed certificate for ``host`` (an IP address), its key, and the PEM to trust it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trigger-operator-webhooks")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = folder / "webhook.crt", folder / "webhook.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, pem


def configurations(port: int, ca: bytes, *, failure_policy: str, namespace: str | None = None,
                   suffix: str = "", host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """Both webhook configurations (for Triggers in ``namespace`` only, when given), calling
    ``host``: the address at which the API server reaches this machine."""
    common: dict[str, Any] = {
        "admissionReviewVersions": ["v1"], "sideEffects": "None", "timeoutSeconds": 5,
        "rules": [{"apiGroups": ["trigger-operator.io"], "apiVersions": ["v1alpha1"], "resources": ["triggers"],
                   "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}]}
    if namespace:
        common["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    bundle = base64.b64encode(ca).decode()
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": f"trigger-operator-local{suffix}"},
         "webhooks": [{**common, "name": "validate.trigger-operator.io", "failurePolicy": failure_policy,
                       "clientConfig": {"url": f"https://{host}:{port}/admission/validate", "caBundle": bundle}}]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": f"trigger-operator-local{suffix}"},
         "webhooks": [{**common, "name": "mutate.trigger-operator.io", "failurePolicy": failure_policy,
                       "reinvocationPolicy": "Never",
                       "clientConfig": {"url": f"https://{host}:{port}/admission/mutate", "caBundle": bundle}}]},
    ]


def main() -> int:
    folder, port = Path(sys.argv[1]), int(sys.argv[2])
    cert, key, ca = serving_certificate(folder)
    for configuration in configurations(port, ca, failure_policy="Ignore"):
        subprocess.run(["kubectl", "apply", "-f", "-"], input=json.dumps(configuration), text=True, check=True,
                       capture_output=True)
    print(f"{cert} {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real Kubernetes control plane as local processes: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes), all built from Go modules by ``hack/build-binaries.sh``.

Used by ``make cluster-up``/``cluster-down``, ``make run`` and the pytest harness. Each cluster lives in
its own folder (certificates, etcd data, logs, kubeconfig, pids) on free loopback ports, so several can
run side by side.

    python hack/localcluster.py up   --dir .cluster     # prints progress, writes .cluster/kubeconfig
    python hack/localcluster.py down --dir .cluster     # stops every process it started, removes state
    python hack/localcluster.py up --real-node --dir .cluster-node   # plus a real node (hack/realnode.py)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import realnode

HACK = Path(__file__).resolve().parent
NODE_COUNT = 2
SERVICE_CIDR = "10.0.0.0/24"
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_binaries() -> Path:
    """Builds (or finds cached) binaries; returns their folder."""
    result = subprocess.run(
        ["bash", str(HACK / "build-binaries.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_LISTENING_PORT = 20000
_handed_out: set[int] = set()


def ports_to_listen_on(ephemeral_range: str) -> range:
    """The loopback ports a server of ours may take: those below the kernel's ephemeral range
    (``ip_local_port_range``, e.g. "32768\t60999"), from 20000 up. A port inside that range can be
    taken between our check and the server's bind by any outgoing connection (the API server's to
    etcd, a client's): a CI run lost its controller manager that way ("bind: address already in
    use"). An empty range means the ephemeral range starts too low to leave room."""
    low = int(ephemeral_range.split()[0])
    return range(LOWEST_LISTENING_PORT, max(LOWEST_LISTENING_PORT, low))


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range, not handed out before
    by this process; random, so harnesses running side by side seldom try the same one."""
    candidates = ports_to_listen_on(EPHEMERAL_RANGE.read_text()) if EPHEMERAL_RANGE.exists() else range(0)
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates -------------------------------------------------------------------------------

def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(folder: Path, *, extra_ips: Sequence[str] = (), node_name: str | None = None) -> None:
    """One CA; a serving cert for the API server; an admin client cert (system:masters) that the
    controller manager, scheduler, kwok and tests use; a key to sign ServiceAccount tokens. With
    ``node_name``, a kubelet's client cert too (``system:node:<name>``, for the Node authorizer);
    ``extra_ips`` are more addresses the API server's cert names (the real node's)."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trigger-operator-local-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_key(folder / "ca.key", ca_key)
    _write_cert(folder / "ca.crt", ca)

    def leaf(name: str, subject: list[x509.NameAttribute[str]], usage: x509.ObjectIdentifier,
             sans: list[x509.GeneralName] | None = None) -> None:
        key = _key()
        builder = (x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_key(folder / f"{name}.key", key)
        _write_cert(folder / f"{name}.crt", builder.sign(ca_key, hashes.SHA256()))

    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    ips = ["127.0.0.1", "::1", str(next(ipaddress.ip_network(SERVICE_CIDR).hosts())), *extra_ips]
    leaf("apiserver", [x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")],
         ExtendedKeyUsageOID.SERVER_AUTH,
         [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
    leaf("admin", [x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")],
         ExtendedKeyUsageOID.CLIENT_AUTH)
    if node_name is not None:
        leaf("node", [x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes")],
             ExtendedKeyUsageOID.CLIENT_AUTH)
    _write_key(folder / "sa.key", _key())


def write_kubeconfig(path: Path, pki: Path, server: str, user: str = "admin") -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "trigger-operator-local",
        "clusters": [{"name": "local", "cluster": {
            "server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": "trigger-operator-local",
                      "context": {"cluster": "local", "user": "admin"}}],
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML


# --- processes -----------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """Run in the child before exec: the kernel sends SIGTERM when the parent dies, so a
    killed test run leaves no control plane behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Cluster:
    folder: Path
    kubeconfig: Path
    server: str
    bin_dir: Path | None = None
    real_node: realnode.RealNode | None = None

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (written only when ``up`` was given an audit policy)."""
        return self.folder / "logs" / "audit.log"

    @property
    def pids_file(self) -> Path:
        return self.folder / "pids.json"


def _request(url: str, pki: Path, timeout: float = 2.0) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (OSError, urllib.error.URLError) as error:
        return 0, str(error)


def _wait(what: str, check: Callable[[], bool], timeout: float, folder: Path, component: str) -> None:
    """Waits for ``check``; on a timeout, or at once when ``component`` (of the cluster in
    ``folder``) has exited, fails with the tail of that component's log."""
    deadline = time.monotonic() + timeout
    pid: int | None = json.loads((folder / "pids.json").read_text()).get(component)
    exited = False
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            exited = True
            break
        time.sleep(0.25)
    tail = ""
    logs = folder / "logs" / f"{component}.log"
    if logs.exists():
        tail = "\n".join(logs.read_text(errors="replace").splitlines()[-30:])
    reason = f"{component} exited" if exited else f"timed out after {timeout:.0f}s"
    raise RuntimeError(f"{reason} waiting for {what}\n{tail}")


def _start_process(folder: Path, bins: Path, name: str, args: list[str], *, tie_to_parent: bool) -> int:
    """Starts one binary of ``bins``, logging to ``folder/logs/<name>.log``; records its pid in
    ``folder/pids.json`` (so ``down`` stops it) and returns it."""
    out = (folder / "logs" / f"{name}.log").open("ab")
    proc = subprocess.Popen([str(bins / args[0]), *args[1:]], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True,
                            preexec_fn=_die_with_parent if tie_to_parent else None)
    pids_file = folder / "pids.json"
    pids: dict[str, int] = json.loads(pids_file.read_text() or "{}") if pids_file.exists() else {}
    pids[name] = proc.pid
    pids_file.write_text(json.dumps(pids))
    commands_file = folder / "commands.json"  # for `restart`
    commands: dict[str, list[str]] = json.loads(commands_file.read_text()) if commands_file.exists() else {}
    commands[name] = args
    commands_file.write_text(json.dumps(commands))
    return proc.pid


def restart(cluster: Cluster, name: str, *, down_seconds: float = 2.0, tie_to_parent: bool = True) -> int:
    """Kills one component (SIGKILL, as a crash) and starts it again with the same command, after
    ``down_seconds``: for chaos runs (the API server's or etcd's restart). Returns the new pid."""
    pids: dict[str, int] = json.loads(cluster.pids_file.read_text())
    command: list[str] = json.loads((cluster.folder / "commands.json").read_text())[name]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pids[name], signal.SIGKILL)
    time.sleep(down_seconds)
    assert cluster.bin_dir is not None
    return _start_process(cluster.folder, cluster.bin_dir, name, command, tie_to_parent=tie_to_parent)


def up(folder: Path, *, tie_to_parent: bool = False, bin_dir: Path | None = None, controllers: str = "*",
       audit_policy: Path | None = None, controller_manager_args: Sequence[str] = (),
       real_node: bool = False) -> Cluster:
    """Starts a control plane in ``folder`` (created; must not hold a running cluster).

    ``controllers`` is the controller manager's ``--controllers`` (the benchmark passes
    ``*,-cronjob`` and runs the cronjob controller in a manager of its own, see
    ``start_controller_manager``); ``audit_policy`` turns on the API server's audit log
    (``Cluster.audit_log``, JSON lines) with that policy file; ``real_node`` adds a real node beside
    kwok's (hack/realnode.py: containerd, kubelet, kube-proxy, a local registry; root only, one per
    machine), and then the API server listens on the node's address too, so that pods reach it
    through the ``kubernetes`` Service. The defaults change nothing."""
    started = time.monotonic()
    if (folder / "pids.json").exists():
        down(folder)
    if real_node:
        realnode.check_prerequisites()
    bins = bin_dir or build_binaries()
    folder.mkdir(parents=True, exist_ok=True)
    pki, logs = folder / "pki", folder / "logs"
    for sub in (pki, logs):
        sub.mkdir(exist_ok=True)
    node_ip = realnode.host_ip() if real_node else None
    make_pki(pki, extra_ips=[node_ip] if node_ip else [], node_name=realnode.NODE_NAME if real_node else None)
    ports = {name: free_port() for name in
             ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok")}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = folder / "kubeconfig"
    write_kubeconfig(kubeconfig, pki, server)
    cluster = Cluster(folder=folder, kubeconfig=kubeconfig, server=server, bin_dir=bins)
    cluster.pids_file.write_text("{}")
    if node_ip is not None:
        cluster.real_node = realnode.RealNode(folder=folder, node_ip=node_ip, registry=f"127.0.0.1:{free_port()}")
        realnode.state_file(folder).write_text(json.dumps({
            "node_ip": node_ip, "registry": cluster.real_node.registry, "name": realnode.NODE_NAME,
            "bin_dir": str(bins)}))
    # The real node's pods reach the API server at the node's address, through the `kubernetes`
    # Service (its endpoints kept by the lease reconciler); the API server reaches the kubelet for
    # logs with the admin cert.
    apiserver_real_node = [] if node_ip is None else [
        "--bind-address=0.0.0.0", f"--advertise-address={node_ip}", "--endpoint-reconciler-type=lease",
        f"--kubelet-client-certificate={pki / 'admin.crt'}", f"--kubelet-client-key={pki / 'admin.key'}",
        "--kubelet-preferred-address-types=InternalIP"]

    def start(name: str, args: list[str]) -> int:
        return _start_process(folder, bins, name, args, tie_to_parent=tie_to_parent)

    try:
        log(f"starting etcd on 127.0.0.1:{ports['etcd']}")
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd_peer']}"
        start("etcd", ["etcd", "--name=node0", f"--data-dir={folder / 'etcd'}",
                       f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                       f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                       f"--initial-cluster=node0={peer_url}", "--auto-compaction-retention=1",
                       "--quota-backend-bytes=8589934592", "--unsafe-no-fsync=true",
                       "--listen-metrics-urls=", "--log-level=warn"])

        def etcd_healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{etcd_url}/health", timeout=1) as r:
                    return bool(json.loads(r.read()).get("health") == "true")
            except OSError:
                return False
        _wait("etcd", etcd_healthy, 30, folder, "etcd")

        log(f"starting kube-apiserver on {server}")
        start("kube-apiserver", [
            "kube-apiserver", f"--etcd-servers={etcd_url}",
            *(apiserver_real_node[:2] if node_ip else ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"]),
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            *(apiserver_real_node[2:] if node_ip else ["--endpoint-reconciler-type=none"]),
            # The API server's own default admission plugins stay on (PodSecurity, ServiceAccount,
            # LimitRanger, ...); nothing is disabled so security tests are real.
            *([f"--audit-policy-file={audit_policy}", f"--audit-log-path={cluster.audit_log}",
               "--audit-log-format=json", "--audit-log-maxsize=0"] if audit_policy is not None else []),
        ])
        _wait("kube-apiserver /readyz", lambda: _request(f"{server}/readyz", pki)[0] == 200, 90,
              folder, "kube-apiserver")

        log("starting kube-controller-manager, kube-scheduler and kwok")
        start("kube-controller-manager", [
            "kube-controller-manager", f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={ports['kcm']}", f"--authorization-always-allow-paths={HEALTH_PATHS}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=true", "--leader-elect=false",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            # The Job controller makes ~5 calls per Job (pod, status, finalizers); at the default
            # 20 per second it fell minutes behind under `make chaos` (Jobs created, pods minutes late).
            "--kube-api-qps=200", "--kube-api-burst=400",
            *([f"--controllers={controllers}"] if controllers != "*" else []), *controller_manager_args,
        ])
        start("kube-scheduler", [
            "kube-scheduler", f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}", f"--authorization-always-allow-paths={HEALTH_PATHS}",
            "--leader-elect=false",
        ])
        start("kwok", [
            "kwok", f"--kubeconfig={kubeconfig}",
            # Beside a real node, kwok manages only its own (annotated) nodes.
            *(["--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake"]
              if node_ip else ["--manage-all-nodes=true"]),
            f"--config={HACK / 'kwok-stages.yaml'}", "--node-ip=10.0.0.1", "--node-name=kwok-controller",
            f"--node-port={ports['kwok']}", f"--server-address=127.0.0.1:{ports['kwok']}",
            "--node-lease-duration-seconds=40",
            f"--tls-cert-file={pki / 'admin.crt'}", f"--tls-private-key-file={pki / 'admin.key'}",
        ])
        create_nodes(cluster)
        if cluster.real_node is not None:
            start_real_node(cluster, start)
        wait_until_usable(cluster)
    except BaseException:
        down(folder, keep_logs=True)
        raise
    log(f"ready in {time.monotonic() - started:.1f}s; KUBECONFIG={kubeconfig}")
    return cluster


def start_real_node(cluster: Cluster, start: Callable[[str, list[str]], int]) -> None:
    """The registry (with the pause image), containerd, the kubelet and kube-proxy (hack/realnode.py)."""
    node = cluster.real_node
    assert node is not None
    folder, pki = cluster.folder, cluster.folder / "pki"
    t0 = time.monotonic()
    log(f"starting the real node {node.name} ({node.node_ip}): registry on {node.registry}, containerd, "
        "kubelet, kube-proxy")
    (folder / "registry").mkdir(exist_ok=True)
    (folder / "registry.yaml").write_text(realnode.registry_config(folder / "registry-data",
                                                                   int(node.registry.rsplit(":", 1)[1])))
    start("registry", ["registry", "serve", str(folder / "registry.yaml")])

    def registry_up() -> bool:
        try:
            with urllib.request.urlopen(f"http://{node.registry}/v2/", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False
    _wait("the registry", registry_up, 30, folder, "registry")
    realnode.push_pause_image(node)

    containerd_dir = folder / "containerd"
    hosts = containerd_dir / "certs.d" / node.registry
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(realnode.registry_hosts_toml(node.registry))
    (containerd_dir / "config.toml").write_text(realnode.containerd_config(node))
    (folder / "cni").mkdir(exist_ok=True)
    (folder / "cni" / "10-trigger-operator.conflist").write_text(realnode.cni_conflist(folder))
    start("containerd", ["/usr/bin/containerd", f"--config={containerd_dir / 'config.toml'}"])
    _wait("containerd", node.containerd_socket.exists, 30, folder, "containerd")

    kubelet_dir = folder / "kubelet"
    kubelet_dir.mkdir(exist_ok=True)
    write_kubeconfig(folder / "kubelet.kubeconfig", pki, f"https://{node.node_ip}:{cluster.server.rsplit(':', 1)[1]}",
                     user="node")
    (folder / "kubelet.yaml").write_text(realnode.kubelet_config(node, pki, free_port(), free_port()))
    start("kubelet", [
        "kubelet", f"--config={folder / 'kubelet.yaml'}", f"--kubeconfig={folder / 'kubelet.kubeconfig'}",
        f"--hostname-override={node.name}", f"--node-ip={node.node_ip}", f"--root-dir={kubelet_dir}",
        f"--cert-dir={kubelet_dir / 'pki'}", f"--node-labels={realnode.NODE_LABEL}=true", "--v=1",
    ])
    start("kube-proxy", [
        "kube-proxy", f"--kubeconfig={cluster.kubeconfig}", f"--hostname-override={node.name}",
        "--proxy-mode=iptables", f"--cluster-cidr={realnode.POD_CIDR}",
        f"--metrics-bind-address=127.0.0.1:{free_port()}", f"--healthz-bind-address=127.0.0.1:{free_port()}",
        # No sysctl writes (no CAP_SYS_RESOURCE here, and they are the machine's): conntrack as it is.
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
    ])

    def node_ready() -> bool:
        out = kubectl(cluster, "get", "node", node.name, "-o",
                      "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
        return out.strip() == "True"
    _wait(f"the real node {node.name} Ready", node_ready, 120, folder, "kubelet")
    log(f"real node {node.name} Ready in {time.monotonic() - t0:.1f}s")


def start_controller_manager(cluster: Cluster, name: str, controllers: str, *, tie_to_parent: bool = True) -> int:
    """Another kube-controller-manager beside the cluster's own, running only ``controllers`` at
    their default settings (client QPS, concurrency, leader election on its own Lease ``name``), on
    its own port, with the same credentials as the first; ``down`` stops it. Returns its pid, so its
    CPU and memory can be read apart (the benchmark's CronJob side)."""
    pki = cluster.folder / "pki"
    return _start_process(cluster.folder, cluster.bin_dir or build_binaries(), name, [
        "kube-controller-manager", f"--kubeconfig={cluster.kubeconfig}", "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}", f"--authorization-always-allow-paths={HEALTH_PATHS}",
        f"--root-ca-file={pki / 'ca.crt'}", f"--service-account-private-key-file={pki / 'sa.key'}",
        "--use-service-account-credentials=true", f"--controllers={controllers}",
        "--leader-elect-resource-namespace=kube-system", f"--leader-elect-resource-name={name}",
    ], tie_to_parent=tie_to_parent)


def kubectl(cluster: Cluster, *args: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run(["kubectl", f"--kubeconfig={cluster.kubeconfig}", *args], input=input,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def create_nodes(cluster: Cluster) -> None:
    """Fake nodes that kwok manages. No taint: the operator's Job pods must schedule on them."""
    items = []
    for i in range(NODE_COUNT):
        name = f"kwok-node-{i}"
        items.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        })
    kubectl(cluster, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def wait_until_usable(cluster: Cluster) -> None:
    def nodes_ready() -> bool:
        out = kubectl(cluster, "get", "nodes", "-o",
                      "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
                      check=False)
        return out.split() == ["True"] * expected
    expected = NODE_COUNT + (1 if cluster.real_node is not None else 0)
    _wait(f"{expected} Ready nodes", nodes_ready, 60, cluster.folder, "kwok")

    def default_service_account() -> bool:
        return bool(kubectl(cluster, "get", "serviceaccount", "default", "-n", "default", "-o", "name",
                            check=False).strip())
    _wait("the default ServiceAccount", default_service_account, 60, cluster.folder,
          "kube-controller-manager")


def _alive(pid: int) -> bool:
    """Whether the process runs. A zombie does not: the cluster's processes are children we keep no
    Popen for, so a dead one stays in /proc as Z (or X) until something reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # reaped since the signal
        return False
    except OSError:  # no /proc here: the signal's answer stands
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def down(folder: Path, *, keep_logs: bool = False) -> None:
    """Stops every process recorded in ``folder`` (reverse start order), then removes its state."""
    pids_file = folder / "pids.json"
    if pids_file.exists():
        pids: dict[str, int] = json.loads(pids_file.read_text() or "{}")
        for pid in reversed(list(pids.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        pids_file.unlink()
    realnode.cleanup(folder)
    if folder.exists():
        for child in folder.iterdir():
            if keep_logs and child.name == "logs":
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if not keep_logs:
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def running(folder: Path) -> Iterator[Cluster]:
    cluster = up(folder, tie_to_parent=True)
    try:
        yield cluster
    finally:
        down(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "build"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    parser.add_argument("--real-node", action="store_true",
                        help="add a real node (containerd, kubelet, kube-proxy, a local registry; root only)")
    args = parser.parse_args()
    if args.command == "build":
        print(build_binaries())
    elif args.command == "up":
        up(args.dir.resolve(), real_node=args.real_node)
        print(args.dir.resolve() / "kubeconfig")
    else:
        down(args.dir.resolve())
        log(f"stopped and removed {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

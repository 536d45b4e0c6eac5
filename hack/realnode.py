"""A real node for the local control plane (``localcluster.up(..., real_node=True)``): containerd and
runc from Debian, a kubelet and kube-proxy built from the same Kubernetes module as the API server, a
bridge CNI, and distribution's OCI registry on 127.0.0.1 that containerd pulls from. kwok keeps
managing only its own (annotated) nodes beside it.

What these machines need, found by trying (docs/install.md, /work/shared/reference/real-node.md):
runc, not crun; containerd's ``restrict_oom_score_adj`` (no CAP_SYS_RESOURCE); the CNI plugins in
/usr/lib/cni; the kubelet with cgroupfs, cgroup v1 allowed and no local-storage isolation; a pause
image made here (busybox-static) and pushed to the local registry; ``--node-ip`` so that the API
server can reach the kubelet (``kubectl logs``).

One real-node cluster per machine at a time: containerd's socket, the ``cni0`` bridge and
kube-proxy's iptables rules are the machine's. Everything else lives in the cluster's folder.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "real-node-0"
# Where kwok's nodes are not: pods that must run for real select this label.
NODE_LABEL = "trigger-operator.io/real-node"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "cni0"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins (containerd's default is /opt/cni/bin)
PAUSE_REPOSITORY = "pause"
PAUSE_TAG = "3.10"
BUSYBOX = Path("/bin/busybox")  # busybox-static
SEARCH_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/sbin"
DEBIAN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "busybox-static")


@dataclass(frozen=True)
class RealNode:
    folder: Path
    node_ip: str
    registry: str  # host:port, plain HTTP on 127.0.0.1
    name: str = NODE_NAME

    @property
    def containerd_socket(self) -> Path:
        return self.folder / "containerd" / "containerd.sock"

    @property
    def pause_image(self) -> str:
        return f"{self.registry}/{PAUSE_REPOSITORY}:{PAUSE_TAG}"


def state_file(folder: Path) -> Path:
    return folder / "realnode.json"


def load(folder: Path) -> RealNode | None:
    """The real node of the cluster in ``folder``, if it has one."""
    path = state_file(folder)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return RealNode(folder=folder, node_ip=data["node_ip"], registry=data["registry"], name=data["name"])


def host_ip() -> str:
    """The address of the interface of the default route: what the node registers (``--node-ip``)
    and what pods reach the API server and the tests' HTTP servers on."""
    out = subprocess.run(["ip", "-j", "-4", "route", "get", "1.0.0.1"], check=True, capture_output=True,
                         text=True).stdout
    return str(json.loads(out)[0]["prefsrc"])


def check_prerequisites() -> None:
    """Fails loudly, naming what is missing and how to get it (never a silent skip)."""
    missing = [b for b in ("containerd", "runc", "iptables") if not shutil.which(b, path=SEARCH_PATH)]
    if not Path(CNI_BIN_DIR, "bridge").exists():
        missing.append(f"{CNI_BIN_DIR}/bridge")
    if not BUSYBOX.exists():
        missing.append(str(BUSYBOX))
    if missing:
        raise RuntimeError(f"the real node needs {', '.join(missing)}: run `bash hack/install-node.sh` "
                           f"(Debian packages {' '.join(DEBIAN_PACKAGES)})")
    if os.geteuid() != 0:
        raise RuntimeError("the real node runs containerd, the kubelet and kube-proxy: it needs root")


# --- files ---------------------------------------------------------------------------------------

def registry_config(root: Path, port: int) -> str:
    return json.dumps({
        "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    })


def containerd_config(node: RealNode) -> str:
    c = node.folder / "containerd"
    return f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = "{node.containerd_socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{node.pause_image}"
  # A negative oom_score_adj for sandboxes is refused without CAP_SYS_RESOURCE ("can't get final
  # child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node.folder / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{c / 'certs.d'}"
"""


def registry_hosts_toml(registry: str) -> str:
    """containerd's mirror config for the local registry: plain HTTP on loopback."""
    return f"""server = "http://{registry}"
[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
"""


def cni_conflist(folder: Path) -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": "trigger-operator",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(folder / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=1)


def kubelet_config(node: RealNode, pki: Path, port: int, healthz_port: int) -> str:
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": node.node_ip, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": True, "failSwapOn": False, "failCgroupV1": False,
        "enforceNodeAllocatable": [],
        # The eviction manager cannot read the root filesystem's stats here.
        "localStorageCapacityIsolation": False,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "podCIDR": POD_CIDR, "resolvConf": "/etc/resolv.conf", "serializeImagePulls": False,
        "registerNode": True, "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }, indent=1)


# --- the pause image -----------------------------------------------------------------------------

def pause_layer() -> bytes:
    """A gzipped tar of busybox-static with sh and sleep: the sandbox's process, which sleeps until
    it is told to stop."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin",):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "sleep"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return raw.getvalue()


def push_image(registry: str, repository: str, tag: str, layer_tar: bytes, entrypoint: list[str]) -> str:
    """Pushes a one-layer OCI image to the registry with its HTTP API; returns the manifest digest."""
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
    }).encode()
    base = f"http://{registry}/v2/{repository}"

    def blob(data: bytes) -> dict[str, object]:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        req = urllib.request.Request(f"{base}/blobs/uploads/", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=30) as r:
            location = r.headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry}{location}"
        sep = "&" if "?" in location else "?"
        req = urllib.request.Request(f"{location}{sep}digest={digest}", method="PUT", data=data,
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req, timeout=30).close()
        return {"digest": digest, "size": len(data)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layer)}],
    }).encode()
    req = urllib.request.Request(f"{base}/manifests/{tag}", method="PUT", data=manifest,
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(r.headers.get("Docker-Content-Digest", ""))


def push_pause_image(node: RealNode) -> None:
    push_image(node.registry, PAUSE_REPOSITORY, PAUSE_TAG, pause_layer(),
               ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"])


# --- teardown ------------------------------------------------------------------------------------

def cleanup(folder: Path) -> None:
    """After the node's processes stopped: stops the containers' shims (they outlive containerd),
    removes kube-proxy's rules and the bridge, and unmounts what the kubelet and containerd mounted
    under ``folder``, so that removing the folder works and the next cluster starts clean."""
    node = load(folder)
    if node is None:
        return
    bin_dir = Path(json.loads(state_file(folder).read_text()).get("bin_dir", "/nonexistent"))
    marker = str(node.containerd_socket)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in cmdline[0] and marker.encode() in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
    time.sleep(0.5)
    if (bin_dir / "kube-proxy").exists():
        subprocess.run([str(bin_dir / "kube-proxy"), "--cleanup"], capture_output=True, check=False)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    for table in ("nat", "filter", "mangle"):  # the kubelet's own canary chain
        subprocess.run(["iptables", "-t", table, "-X", "KUBE-KUBELET-CANARY"], capture_output=True, check=False)
    prefix = str(folder.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)

#!/usr/bin/env python3
"""Serval's image without Docker, for the test cluster (tests/src/cluster.rs).

The `Dockerfile` is how users build the image; this machine has no Docker engine and no
registry ships a base image, so the test cluster gets the same image assembled by hand: the
test build's two binaries (stripped), the shared libraries they and ONNX Runtime link, ONNX
Runtime itself, CA certificates, and the non-root user 65532, with the Dockerfile's
ENV/USER/ENTRYPOINT. It is written as an OCI image layout in one tar, which
`ctr -n k8s.io images import` takes. A second image holds the pod sandbox's `pause`
(tools/cluster/pause.c, compiled static), since no registry ships that one either.

    image.py serval --serval BIN --queue-proxy BIN --onnxruntime LIB --ref REF --out TAR
    image.py pause --ref REF --out TAR
    image.py binary --binary BIN --ref REF --out TAR   # one program and the libraries it links
    image.py list --onnxruntime-version V   # what the Dockerfile must also install

`list` prints Serval's own part of the image (files, links, environment, user, entrypoint),
one per line; tests/tests/image.rs checks that the Dockerfile lists the same.
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

USER = "65532:65532"
ENTRYPOINT = ["/usr/local/bin/serval"]
ORT_DIR = "/usr/local/lib"


def serval_part(ort_version):
    """Serval's own files and settings, as the Dockerfile installs them."""
    ort = f"{ORT_DIR}/libonnxruntime.so.{ort_version}"
    return {
        "files": ["/usr/local/bin/serval", "/usr/local/bin/serval-queue-proxy", ort],
        "links": {f"{ORT_DIR}/libonnxruntime.so": f"libonnxruntime.so.{ort_version}"},
        "env": {"ORT_DYLIB_PATH": f"{ORT_DIR}/libonnxruntime.so"},
        "user": USER,
        "entrypoint": ENTRYPOINT,
    }


def linked_libraries(binaries):
    """The shared libraries `binaries` load, by the paths the dynamic linker finds them at."""
    libs = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"(/\S+) \(0x", line)
            if m:
                libs.add(m.group(1))
    return sorted(libs)


def add_libraries(layer, binaries):
    """The shared libraries `binaries` link, at the paths they are loaded from."""
    for lib in linked_libraries(binaries):
        if lib.startswith("/lib64/"):
            # The interpreter path the binaries name, pointing where Debian keeps it.
            layer.file(os.path.realpath(lib), lib, 0o755)
            layer.link(lib, os.path.realpath(lib))
        else:
            layer.file(lib, lib, 0o755)


class Layer:
    """One uncompressed layer tar, built in memory, owned by root."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dir("/" + d, 0o755)

    def dir(self, path, mode):
        self._parents(path)
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.mode = tarfile.DIRTYPE, mode
        self.tar.addfile(info)
        self.dirs.add(path.strip("/"))

    def data(self, path, data, mode=0o644):
        self._parents(path)
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def file(self, path, source, mode=None):
        with open(source, "rb") as f:
            data = f.read()
        self.data(path, data, mode if mode is not None else os.stat(source).st_mode & 0o777)

    def link(self, path, target):
        self._parents(path)
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(info)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def write_layout(out, ref, layer, config):
    """An OCI image layout in one tar: index.json -> manifest -> config + one layer."""
    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer_digest = blob(layer)
    config = dict(config)
    config["rootfs"] = {"type": "layers", "diff_ids": [layer_digest]}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": blob(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": blob(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    tmp = out + ".part"
    with tarfile.open(tmp, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, out)


def image_config(env, user, entrypoint, cmd=None):
    config = {"Env": [f"{k}={v}" for k, v in env.items()], "User": user, "Entrypoint": entrypoint}
    if cmd:
        config["Cmd"] = cmd
    return {"architecture": "amd64", "os": "linux", "config": config}


def stripped(binary, tmpdir):
    out = os.path.join(tmpdir, os.path.basename(binary))
    subprocess.run(["strip", "-o", out, binary], check=True)
    return out


def build_serval(args):
    version = re.search(r"libonnxruntime\.so\.(\d+\.\d+\.\d+)$", args.onnxruntime)
    if not version:
        sys.exit(f"image.py: {args.onnxruntime}: not a libonnxruntime.so.X.Y.Z")
    part = serval_part(version.group(1))
    layer = Layer()
    layer.dir("/tmp", 0o1777)
    with tempfile.TemporaryDirectory() as tmpdir:
        serval = stripped(args.serval, tmpdir)
        queue_proxy = stripped(args.queue_proxy, tmpdir)
        add_libraries(layer, [args.serval, args.queue_proxy, args.onnxruntime])
        bins = dict(zip(part["files"], [serval, queue_proxy, args.onnxruntime]))
        for path, source in bins.items():
            layer.file(path, source, 0o755)
    for path, target in part["links"].items():
        layer.link(path, target)
    layer.file("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644)
    layer.data("/etc/passwd", b"root:x:0:0:root:/root:/usr/sbin/nologin\n"
               b"serval:x:65532:65532::/nonexistent:/usr/sbin/nologin\n")
    layer.data("/etc/group", b"root:x:0:\nserval:x:65532:\n")
    layer.data("/etc/nsswitch.conf", b"hosts: files dns\n")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **part["env"]}
    write_layout(args.out, args.ref, layer.bytes(), image_config(env, part["user"], part["entrypoint"]))


def build_pause(args):
    here = os.path.dirname(os.path.abspath(__file__))
    layer = Layer()
    with tempfile.TemporaryDirectory() as tmpdir:
        binary = os.path.join(tmpdir, "pause")
        subprocess.run(["gcc", "-static", "-Os", "-s", "-o", binary, os.path.join(here, "pause.c")],
                       check=True)
        layer.file("/pause", binary, 0o755)
    write_layout(args.out, args.ref, layer.bytes(), image_config({}, "65535:65535", ["/pause"]))


def build_binary(args):
    layer = Layer()
    layer.dir("/tmp", 0o1777)
    add_libraries(layer, [args.binary])
    name = "/usr/local/bin/" + os.path.basename(args.binary)
    with tempfile.TemporaryDirectory() as tmpdir:
        layer.file(name, stripped(args.binary, tmpdir), 0o755)
    layer.data("/etc/nsswitch.conf", b"hosts: files dns\n")
    write_layout(args.out, args.ref, layer.bytes(), image_config({}, USER, [name]))


def list_part(args):
    part = serval_part(args.onnxruntime_version)
    for path in part["files"]:
        print(f"file {path}")
    for path, target in part["links"].items():
        print(f"link {path} -> {target}")
    for key, value in part["env"].items():
        print(f"env {key}={value}")
    print(f"user {part['user']}")
    print(f"entrypoint {json.dumps(part['entrypoint'])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serval = sub.add_parser("serval")
    serval.add_argument("--serval", required=True)
    serval.add_argument("--queue-proxy", required=True)
    serval.add_argument("--onnxruntime", required=True)
    serval.add_argument("--ref", required=True)
    serval.add_argument("--out", required=True)
    pause = sub.add_parser("pause")
    pause.add_argument("--ref", required=True)
    pause.add_argument("--out", required=True)
    binary = sub.add_parser("binary")
    binary.add_argument("--binary", required=True)
    binary.add_argument("--ref", required=True)
    binary.add_argument("--out", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--onnxruntime-version", required=True)
    args = parser.parse_args()
    {"serval": build_serval, "pause": build_pause, "binary": build_binary, "list": list_part}[args.command](args)


if __name__ == "__main__":
    main()

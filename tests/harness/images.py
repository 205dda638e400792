"""Runnable test images made offline: `FROM scratch` + the host's static busybox.

Each build carries a marker file, so two builds with different markers always differ in digest
and image ID. Variants mirror what podman's own auto-update tests need:

- ``good``: runs until SIGTERM, then exits 0 at once (a shell trap, not busybox sleep as PID 1).
- ``broken``: cannot start at all: no busybox in it, entrypoint missing (podman's
  ``autoupdatebroken``), whatever command the container is given.
- ``crash``: starts, then exits 1 after about a second, whatever command it is given.
- ``healthy`` / ``unhealthy``: like ``good`` with a HEALTHCHECK that passes / fails (docker
  format, the only one that keeps HEALTHCHECK).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.harness.podman_host import PodmanStore

if TYPE_CHECKING:
    from tests.harness.machine import Machine

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = (
    "sh",
    "sleep",
    "top",
    "true",
    "false",
    "echo",
    "cat",
    "ls",
    "kill",
    "ps",
    "env",
    "id",
    "date",
    "touch",
    "rm",
    "mkdir",
    "printf",
    "test",
    "[",
    "wget",
    "nc",
    "hostname",
    "uname",
)


def run_forever(stop_seconds: float = 0) -> list[str]:
    """A command that runs until SIGTERM, then takes `stop_seconds` to exit 0 (a service that
    drains before it stops); `wait` is interrupted by the trap."""
    on_term = f"sleep {stop_seconds:g}; exit 0" if stop_seconds else "exit 0"
    return ["sh", "-c", f"trap '{on_term}' TERM; while :; do sleep 3600 & wait $!; done"]


RUN_FOREVER = run_forever()  # exits at once on SIGTERM
VARIANTS = ("good", "broken", "crash", "healthy", "unhealthy")


def find_busybox() -> Path:
    for c in BUSYBOX_CANDIDATES:
        p = Path(c)
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise FileNotFoundError("no static busybox on the host (apt-get install busybox-static)")


def _containerfile(variant: str) -> str:
    forever = json.dumps(RUN_FOREVER)
    if variant == "good":
        return f"FROM scratch\nCOPY bin /bin\nCOPY marker /marker\nCMD {forever}\n"
    if variant == "broken":
        return 'FROM scratch\nCOPY marker /marker\nENTRYPOINT ["/bin/does-not-exist"]\n'
    if variant == "crash":
        crash = json.dumps(["/bin/sh", "-c", "sleep 1; echo crashing >&2; exit 1", "crash"])
        return f"FROM scratch\nCOPY bin /bin\nCOPY marker /marker\nENTRYPOINT {crash}\n"
    if variant in ("healthy", "unhealthy"):
        check = "true" if variant == "healthy" else "false"
        return (
            "FROM scratch\nCOPY bin /bin\nCOPY marker /marker\n"
            f'HEALTHCHECK --interval=2s --timeout=2s --retries=1 CMD ["/bin/{check}"]\n'
            f"CMD {forever}\n"
        )
    raise ValueError(f"unknown image variant {variant!r}; known: {', '.join(VARIANTS)}")


def _tag_part(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text).lstrip(".-")[:120]
    return cleaned or "x"


class ImageBuilder:
    """Builds test images with host podman in an isolated store and pushes them to registries.

    ``build`` returns a local reference (``localhost/autoupdated-test/VARIANT:MARKER``);
    ``push`` copies it to a registry and returns the manifest digest the registry stored.
    """

    def __init__(self, workdir: Path, store: PodmanStore | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = store or PodmanStore()
        self._busybox = find_busybox()
        self._count = itertools.count()

    def build(
        self,
        variant: str = "good",
        marker: str | None = None,
        *,
        ref: str | None = None,
        format: str | None = None,
        extra: str = "",
    ) -> str:
        """Build one image; `marker` goes into /marker (default: a fresh counter value).

        `extra` is appended to the Containerfile (e.g. ``LABEL a=b``); `format` is ``oci`` or
        ``docker`` (default: docker for the health-check variants, else oci).
        """
        n = next(self._count)
        marker = marker if marker is not None else f"build-{os.getpid()}-{n}"
        ctx = self.workdir / f"ctx-{n}"
        shutil.rmtree(ctx, ignore_errors=True)
        (ctx / "bin").mkdir(parents=True)
        if variant != "broken":
            shutil.copy2(self._busybox, ctx / "bin" / "busybox")
            for applet in APPLETS:
                (ctx / "bin" / applet).symlink_to("busybox")
        (ctx / "marker").write_text(f"{variant}\n{marker}\n")
        (ctx / "Containerfile").write_text(_containerfile(variant) + (extra + "\n" if extra else ""))
        ref = ref or f"localhost/autoupdated-test/{variant}:{_tag_part(marker)}"
        fmt = format or ("docker" if variant in ("healthy", "unhealthy") else "oci")
        self.store.podman(
            "build",
            "--quiet",
            "--format",
            fmt,
            "--pull=never",
            "-t",
            ref,
            "-f",
            str(ctx / "Containerfile"),
            str(ctx),
        )
        shutil.rmtree(ctx, ignore_errors=True)
        return ref

    def image_id(self, ref: str) -> str:
        return self.store.podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    def tag(self, ref: str, *new: str) -> None:
        self.store.podman("tag", ref, *new)

    def remove(self, *refs: str) -> None:
        self.store.podman("rmi", "--force", *refs, check=False)

    def push(
        self,
        local_ref: str,
        dest: str,
        creds: tuple[str, str] | None = None,
        *,
        tls_verify: bool = False,
        cert_dir: Path | None = None,
        format: str | None = None,
    ) -> str:
        """Push to ``HOST:PORT/name:tag`` and return the manifest digest (``sha256:...``).

        Plain HTTP by default (``tls_verify=False``); for a TLS registry pass ``cert_dir``, a
        directory holding its ``ca.crt`` (then TLS is verified). `creds` are for htpasswd.
        """
        digestfile = self.workdir / f"digest-{next(self._count)}"
        args = ["push", "--quiet", f"--digestfile={digestfile}"]
        if cert_dir is not None:
            args += ["--tls-verify=true", f"--cert-dir={cert_dir}"]
        else:
            args.append(f"--tls-verify={'true' if tls_verify else 'false'}")
        if creds is not None:
            args.append(f"--creds={creds[0]}:{creds[1]}")
        if format is not None:
            args.append(f"--format={format}")
        self.store.podman(*args, local_ref, f"docker://{dest}")
        digest = digestfile.read_text().strip()
        digestfile.unlink()
        return digest

    def build_and_push(self, variant: str, marker: str, dest: str, **push_kw: object) -> str:
        """Build a variant and push it to `dest`; returns the pushed digest."""
        return self.push(self.build(variant, marker), dest, **push_kw)  # type: ignore[arg-type]

    def save(self, ref: str, path: Path) -> Path:
        """`podman save` (docker-archive: keeps the image ID and the tag)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.store.podman("save", "--quiet", "--format", "docker-archive", "-o", str(path), ref)
        return path

    def import_into(self, machine: Machine, ref: str, tags: Sequence[str] = ()) -> str:
        """Copy a built image into the machine's podman storage (for `local`-policy tests).

        The image keeps its ID; it is tagged `ref` there plus every one of `tags`. Returns the
        image ID as podman inside the machine reports it.
        """
        name = f"import-{next(self._count)}.tar"
        host_path = machine.root / "var" / "tmp" / name
        self.save(ref, host_path)
        try:
            machine.podman("load", "--quiet", "-i", f"/var/tmp/{name}")
        finally:
            host_path.unlink(missing_ok=True)
        if tags:
            machine.podman("tag", ref, *tags)
        return machine.podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()

    def destroy(self) -> None:
        self.store.destroy()

"""The container side of tests/pod_runner.py: build one container's view of the file system
inside fresh namespaces, then become the container's process.

tests/pod_runner.py starts it as
    nsenter --net=<the cluster's network namespace> --
        unshare --mount --pid --ipc --uts --fork --kill-child --propagation private --
            python pod_launcher.py SPEC.json
so it runs as root, as PID 1 of a new PID namespace, in a mount namespace of its own whose
mounts propagate nowhere (`--propagation private`, and made private again below): nothing
it mounts is seen by the machine or by another container. It then

1. lays a copy-on-write view over this machine's root file system (overlayfs: the machine's
   root read-only below, a tmpfs above), so files can be added, replaced or hidden for this
   container without touching the machine: the image's own programs at their paths (the
   image model of tests/pod_runner.py), the generated /etc/hosts, /etc/passwd, /etc/group,
   host programs the image does not have removed (so that calling them fails as it would in
   the image), the machine's work folders hidden;
2. mounts the pod's volumes at their mountPaths (bind mounts of folders the runner filled:
   ConfigMap items, emptyDirs, claims, Secrets), read-only where the manifest says so, and
   a /proc of the new PID namespace, a minimal /dev, a read-only /sys;
3. makes the root read-only when the container says `readOnlyRootFilesystem: true`;
4. pivots into that root, so the container sees nothing else;
5. changes to the working directory, and executes the command with the container's
   environment as the container's uid, gid and groups (setpriv: no capabilities left, none
   to gain with `allowPrivilegeEscalation: false`).

A command that is not there fails the way the container runtime fails it: exit code 128
and "no such file or directory", before anything runs.

Standard library only: it runs with the interpreter of the tests, before the privileges drop.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

LIBC = ctypes.CDLL(None, use_errno=True)
SYS_PIVOT_ROOT = 155  # x86_64
MNT_DETACH = 2
# What a container runtime puts in /dev (runc's default devices), bound from this machine.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def mount(*args: str) -> None:
    run("mount", *args)


def inside(root: Path, path: str) -> Path:
    """`path` of the container, as a path below the new root (never outside it)."""
    return root / path.lstrip("/")


def fail(message: str, code: int) -> None:
    print(f"pod_launcher: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def build_root(spec: dict, state: Path) -> Path:
    scratch, root = state / "scratch", state / "root"
    scratch.mkdir(exist_ok=True)
    root.mkdir(exist_ok=True)
    mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(scratch))
    (scratch / "upper").mkdir()
    (scratch / "work").mkdir()
    # The machine's root file system as the lower, read-only layer; every change lands in
    # the tmpfs above it and vanishes with this mount namespace.
    mount(
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir=/,upperdir={scratch / 'upper'},workdir={scratch / 'work'}",
        str(root),
    )
    image = spec["image"]
    for path in image["hide"]:
        target = inside(root, path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    for path in image["empty_dirs"]:
        target = inside(root, path)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    for item in image["copies"]:
        target = inside(root, item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item["source"], target)
    for link in image["symlinks"]:
        target = inside(root, link["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(link["target"])
    for item in image["dirs"]:
        target = inside(root, item["path"])
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, item["uid"], item["gid"])
        target.chmod(item["mode"])
    for item in spec["files"]:
        target = inside(root, item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_text(item["content"], encoding="utf-8")
        target.chmod(item["mode"])
    return root


def mount_volumes(spec: dict, root: Path) -> None:
    # Parents before children (/var/lib/sentry before /var/lib/sentry/files).
    for item in sorted(spec["mounts"], key=lambda m: m["target"].count("/")):
        target = inside(root, item["target"])
        source = Path(item["source"])
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.touch()
        mount("--bind", str(source), str(target))
        if item["read_only"]:
            mount("-o", "remount,bind,ro", str(target))
    # Folders of this machine that are no part of any image (the repositories, the tests'
    # scratch space): an empty, read-only tmpfs over each, unless a volume is mounted there.
    targets = {m["target"] for m in spec["mounts"]}
    for path in spec["image"]["mask"]:
        if path not in targets and inside(root, path).is_dir():
            mount("-t", "tmpfs", "-o", "ro,mode=0755", "tmpfs", str(inside(root, path)))


def mount_system(root: Path) -> None:
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(root / "proc"))
    dev = root / "dev"
    mount("-t", "tmpfs", "-o", "nosuid,mode=0755", "tmpfs", str(dev))
    for name in DEVICES:
        (dev / name).touch()
        mount("--bind", f"/dev/{name}", str(dev / name))
    (dev / "shm").mkdir()
    # A pod's /dev/shm: its own, 64 MiB, as the container runtime makes it (billiard, under
    # the Celery worker, keeps its semaphores here).
    mount("-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=1777,size=64m", "shm", str(dev / "shm"))
    (dev / "pts").mkdir()
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        (dev / name).symlink_to(target)
    (dev / "stderr").symlink_to("/proc/self/fd/2")
    mount("--rbind", "/sys", str(root / "sys"))
    mount("-o", "remount,bind,ro", str(root / "sys"))


def resolve(command: str, env: dict[str, str]) -> str | None:
    """Where the runtime finds the command in the container (PATH of its environment), or None."""
    if "/" in command:
        return command if os.access(command, os.X_OK) and not os.path.isdir(command) else None
    for folder in env.get("PATH", "").split(":"):
        candidate = os.path.join(folder or ".", command)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    if os.getpid() != 1:
        fail("must run as PID 1 of a new PID namespace (unshare --pid --fork)", 2)
    # Never let a mount of this container propagate to the machine (unshare made the tree
    # private already; this is the belt to those braces).
    mount("--make-rprivate", "/")
    socket.sethostname(spec["hostname"])
    state = Path(spec["state_dir"])
    root = build_root(spec, state)
    working_dir = spec["working_dir"]
    inside(root, working_dir).mkdir(parents=True, exist_ok=True)
    mount_volumes(spec, root)
    mount_system(root)
    if spec["read_only_root"]:
        mount("-o", "remount,bind,ro", str(root))
    os.chdir(root)
    if LIBC.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        fail(f"pivot_root failed: {os.strerror(ctypes.get_errno())}", 2)
    if LIBC.umount2(b".", MNT_DETACH) != 0:
        fail(f"detaching the old root failed: {os.strerror(ctypes.get_errno())}", 2)
    os.chdir("/")
    env = spec["env"]
    argv = spec["argv"]
    if not argv:
        fail("the container has no command, and the image model gives none", 128)
    # What the container runtime checks before it starts anything (runc: "exec: ...: no
    # such file or directory", the container's exit code 128).
    if resolve(argv[0], env) is None:
        if "/" in argv[0]:
            why = f"stat {argv[0]}: no such file or directory"
        else:
            why = f'"{argv[0]}": executable file not found in $PATH'
        fail(f'failed to create containerd task: exec: "{argv[0]}": {why}', 128)
    try:
        os.chdir(working_dir)
    except OSError as exc:
        fail(f"chdir to cwd ({working_dir!r}) set in config.json failed: {exc.strerror}", 128)
    user = spec["user"]
    setpriv = [
        "/usr/bin/setpriv",
        f"--reuid={user['uid']}",
        f"--regid={user['gid']}",
        f"--groups={','.join(str(g) for g in user['groups'])}" if user["groups"] else "--clear-groups",
        # capabilities: drop ALL (the bounding set, so nothing can come back either)
        "--bounding-set=-all",
        "--inh-caps=-all",
    ]
    if spec["no_new_privs"]:
        setpriv.append("--no-new-privs")
    # Everything the container should not inherit from this process is gone: the environment
    # is exactly the container's, file descriptors above 2 are closed by exec (Python opens
    # them close-on-exec).
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(setpriv[0], [*setpriv, "--", *argv], env)


if __name__ == "__main__":
    # Files the launcher itself creates are the container runtime's: no umask of the tests.
    os.umask(0o022)
    main(sys.argv[1])

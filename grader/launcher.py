"""The trusted step between the grader and a sandboxed child: run by `grader.sandbox` as
`python -I -S launcher.py SPEC`, it sets up the process (as root where the grader is root) and then
becomes the child with `exec`. Nothing here runs after the submitted code could.

In order (SPEC, a JSON object, says what applies):
  1. join the grading's control groups (`cgroup_procs`: the cgroup.procs files to write our pid in);
  2. new namespaces (`namespaces`: "ipc", "net", "mount"; only as root, at the user level), and in a
     new mount namespace private tmpfs mounts (`private_mounts`: {path: size in bytes});
  3. hard resource limits (`limits`: {name: value}, soft = hard, so they cannot be raised again);
  4. no new privileges (setuid programs run with the caller's rights: `su`, polkit gain nothing);
  5. drop to the child's own uid and gid with no supplementary groups (`uid`), umask 077;
  6. exec `command` in `cwd`.
Any failure exits with code 125 and one line on stderr, before the child has run.

Standard library only (it runs with `-S`, before any site-packages could be imported).
"""

import ctypes
import json
import os
import resource
import sys

EXIT_FAILED = 125
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
NAMESPACE_FLAGS = {"mount": CLONE_NEWNS, "ipc": CLONE_NEWIPC, "net": CLONE_NEWNET}
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
PR_SET_NO_NEW_PRIVS = 38
LIMITS = {"address_space": resource.RLIMIT_AS, "file_size": resource.RLIMIT_FSIZE, "cpu_time": resource.RLIMIT_CPU,
          "core_size": resource.RLIMIT_CORE, "processes": resource.RLIMIT_NPROC}


def fail(step: str, error) -> None:
    print(f"grader launcher: {step} failed: {error}", file=sys.stderr, flush=True)
    os._exit(EXIT_FAILED)


def libc_call(name: str, *arguments) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*arguments) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def join_control_groups(procs_files: list[str]) -> None:
    for path in procs_files:
        with open(path, "w") as file:
            file.write(str(os.getpid()))


def unshare(namespaces: list[str], private_mounts: dict[str, int]) -> None:
    flags = 0
    for name in namespaces:
        flags |= NAMESPACE_FLAGS[name]
    if flags:
        libc_call("unshare", flags)
    if "mount" in namespaces:
        # Our mounts must not propagate back to the machine's namespace.
        libc_call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
        for path, size in private_mounts.items():
            if os.path.isdir(path):
                options = f"size={int(size)},mode=1777".encode()
                libc_call("mount", b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)


def limit(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(LIMITS[name], (int(value), int(value)))


def main() -> None:
    spec = json.loads(sys.argv[1])
    steps = [
        ("joining the control groups", lambda: join_control_groups(spec.get("cgroup_procs", []))),
        ("unsharing namespaces", lambda: unshare(spec.get("namespaces", []), spec.get("private_mounts", {}))),
        ("setting the resource limits", lambda: limit(spec.get("limits", {}))),
        ("setting no_new_privs", lambda: libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
    ]
    for step, action in steps:
        try:
            action()
        except (OSError, ValueError, KeyError) as error:
            fail(step, error)
    uid = spec.get("uid")
    try:
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.umask(0o077)
        os.chdir(spec["cwd"])
        os.execv(spec["command"][0], spec["command"])
    except OSError as error:
        fail("starting the child", error)


if __name__ == "__main__":
    main()

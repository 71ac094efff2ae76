"""The process driver's syscall filter: Docker's default profile as a deny list, compiled to
BPF by libseccomp (through ctypes, docs/adr/0018) for bwrap's `--seccomp FD`.

What it denies is what Docker's default profile denies to a container without added
capabilities: mounting, new namespaces, kernel modules and keys, bpf, ptrace and
cross-process memory access, clock and reboot control. Calls fail with EPERM (clone3 with
ENOSYS, so libc falls back to clone, whose namespace flags the filter can see). A service's
`allow_syscalls` takes names off the list. It compiles and caches filters; it runs nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import platform
import threading
from functools import cache
from pathlib import Path

from corral.errors import SandboxUnavailable

DENIED = (
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "fanotify_init", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount",
    "mount_setattr", "move_mount", "move_pages", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "pidfd_getfd", "pivot_root",
    "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace", "query_module",
    "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setns",
    "settimeofday", "stime", "swapoff", "swapon", "syslog", "sysfs", "_sysctl", "umount",
    "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup", "vm86", "vm86old",
)
UNAVAILABLE = ("clone3",)  # ENOSYS: callers fall back to clone, filtered by its flags
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000)  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
FILTER_VERSION = "1"  # part of each cached filter's name: bump when the lists change

_ACT_ALLOW = 0x7FFF0000
_CMP_MASKED_EQ = 7
_EXTRA_ARCHES = {"x86_64": (0x40000003, 0x4000003E),  # i386 and x32 programs on x86_64
                 "aarch64": (0x40000028,)}  # 32-bit arm on arm64


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@cache
def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SandboxUnavailable(f"libseccomp is not installed ({exc}); the process driver "
                                 "needs it to filter system calls",
                                 hint="install it: apt-get install libseccomp2") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def filter_path(cache_dir: Path, allow: tuple[str, ...] = ()) -> Path:
    """The compiled filter for a service allowing `allow`, compiled once into `cache_dir`
    (an instance start then only opens a file)."""
    key = hashlib.sha256(f"{FILTER_VERSION}:{platform.machine()}:{sorted(set(allow))}"
                         .encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.bpf"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # per process and thread: a deployment starts a step's instances side by side
        tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        with open(tmp, "wb") as out:
            compile_filter(out.fileno(), allow)
        os.replace(tmp, path)  # atomic: a concurrent start reads a whole filter or none
    return path


def compile_filter(fd: int, allow: tuple[str, ...] = ()) -> None:
    """Write the BPF program denying DENIED minus `allow` to `fd`."""
    lib = _library()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SandboxUnavailable("libseccomp could not make a filter (seccomp_init failed)",
                                 hint="check that the kernel supports seccomp")
    try:
        for arch in _EXTRA_ARCHES.get(platform.machine(), ()):
            lib.seccomp_arch_add(ctx, arch)  # -EEXIST or -EINVAL if not addable: fine
        allowed = set(allow)
        for name in DENIED:
            if name not in allowed:
                _deny(lib, ctx, name, errno.EPERM)
        for name in UNAVAILABLE:
            if name not in allowed:
                _deny(lib, ctx, name, errno.ENOSYS)
        if "clone" not in allowed and "unshare" not in allowed:
            for flag in NAMESPACE_FLAGS:
                _deny(lib, ctx, "clone", errno.EPERM, _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))
        if lib.seccomp_export_bpf(ctx, fd) != 0:
            raise SandboxUnavailable("libseccomp could not write the filter",
                                     hint="check free space in the state folder")
    finally:
        lib.seccomp_release(ctx)


def _deny(lib: ctypes.CDLL, ctx: int, name: str, code: int, *conditions: _ArgCmp) -> None:
    """Make `name` fail with `code`; a call this kernel's architectures lack is skipped."""
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number == -1:  # __NR_SCMP_ERROR: unknown to libseccomp
        return
    array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
    lib.seccomp_rule_add_array(ctx, _errno_action(code), number, len(conditions), array)

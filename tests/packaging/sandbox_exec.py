"""Run a command under the unit's runtime restrictions, the way systemd 252 applies them,
without systemd: ``python sandbox_exec.py SYSCALLS_FILE -- COMMAND...``.

SYSCALLS_FILE lists the allowed system calls, one per line (what ``SystemCallFilter=
@system-service`` minus ``~@privileged @resources`` leaves). The filter is a seccomp allow-list
whose default answer is EPERM (``SystemCallErrorNumber=EPERM``), plus the seccomp rules
systemd uses for ``MemoryDenyWriteExecute=yes`` (no mmap that is both writable and executable,
no mprotect/pkey_mprotect that adds PROT_EXEC, no shmat with SHM_EXEC) and for
``RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6`` (other families: EAFNOSUPPORT). With
``NoNewPrivileges`` set, the filter survives the execve of COMMAND. libseccomp (a dependency
of systemd) is used through ctypes, so nothing needs installing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import sys
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
PR_SET_NO_NEW_PRIVS = 38
SCMP_CMP_EQ = 4
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7
SHM_EXEC = 0o100000


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp (seccomp.h)."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class Seccomp:
    def __init__(self) -> None:
        name = ctypes.util.find_library("seccomp")
        if name is None:
            raise SystemExit("sandbox_exec: libseccomp not found (apt-get install libseccomp2)")
        self.lib = ctypes.CDLL(name, use_errno=True)
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = [ctypes.c_uint32]
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)]
        self.lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.ctx = self.lib.seccomp_init(scmp_act_errno(errno.EPERM))
        if not self.ctx:
            raise SystemExit("sandbox_exec: seccomp_init failed")

    def number(self, name: str) -> int | None:
        nr = int(self.lib.seccomp_syscall_resolve_name(name.encode()))
        return None if nr < 0 else nr

    def rule(self, action: int, name: str, *cmps: ArgCmp) -> None:
        nr = self.number(name)
        if nr is None:
            return  # not a system call on this architecture (e.g. the *_time64 variants)
        array = (ArgCmp * len(cmps))(*cmps) if cmps else None
        rc = self.lib.seccomp_rule_add_array(self.ctx, action, nr, len(cmps), array)
        if rc < 0:
            raise SystemExit(f"sandbox_exec: seccomp rule for {name}: {os.strerror(-rc)}")

    def load(self) -> None:
        rc = self.lib.seccomp_load(self.ctx)
        if rc < 0:
            raise SystemExit(f"sandbox_exec: seccomp_load: {os.strerror(-rc)}")


def build_filter(allowed: set[str]) -> Seccomp:
    f = Seccomp()
    special = {"mmap", "mmap2", "mprotect", "pkey_mprotect", "shmat", "socket"}
    for name in sorted(allowed - special):
        f.rule(SCMP_ACT_ALLOW, name)
    for name in ("mmap", "mmap2"):
        if name in allowed:
            # Allowed unless both PROT_WRITE and PROT_EXEC are asked for.
            f.rule(SCMP_ACT_ALLOW, name, ArgCmp(2, SCMP_CMP_MASKED_EQ, mmap.PROT_WRITE, 0))
            f.rule(SCMP_ACT_ALLOW, name, ArgCmp(2, SCMP_CMP_MASKED_EQ, mmap.PROT_EXEC, 0))
    for name in ("mprotect", "pkey_mprotect"):
        if name in allowed:
            f.rule(SCMP_ACT_ALLOW, name, ArgCmp(2, SCMP_CMP_MASKED_EQ, mmap.PROT_EXEC, 0))
    if "shmat" in allowed:
        f.rule(SCMP_ACT_ALLOW, "shmat", ArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, 0))
    if "socket" in allowed:
        families = {int(socket.AF_UNIX), int(socket.AF_INET), int(socket.AF_INET6)}
        for family in families:
            f.rule(SCMP_ACT_ALLOW, "socket", ArgCmp(0, SCMP_CMP_EQ, family, 0))
        no_family = scmp_act_errno(errno.EAFNOSUPPORT)
        top = max(families)
        for family in range(top):
            if family not in families:
                f.rule(no_family, "socket", ArgCmp(0, SCMP_CMP_EQ, family, 0))
        f.rule(no_family, "socket", ArgCmp(0, SCMP_CMP_GT, top, 0))
    return f


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: sandbox_exec.py SYSCALLS_FILE -- COMMAND...", file=sys.stderr)
        return 64
    allowed = {line.strip() for line in Path(argv[1]).read_text().splitlines() if line.strip()}
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit("sandbox_exec: PR_SET_NO_NEW_PRIVS failed")
    build_filter(allowed).load()
    os.execvp(argv[3], argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The sandbox's seccomp filter: every syscall is allowed except those that reach past the sandbox.

Denied with EPERM (so user code gets a clear `PermissionError`, not a dead process): new namespaces
(unshare, setns, clone with a CLONE_NEW* flag), mounts (old and new API), ptrace and cross-process memory
access, the kernel keyring, eBPF, perf events, anonymous shared memory that escapes the /tmp cap
(memfd_create, memfd_secret), userfaultfd, io_uring, kernel modules and kexec, handle-based opens, swap,
reboot, quotas and the clocks. clone3 passes its flags in memory, which a filter cannot read, so it fails
with ENOSYS: glibc then falls back to clone, whose flags the filter checks. Another architecture's
syscalls (32-bit x86 on x86_64) kill the process, since their numbers would bypass the list.
Without bubblewrap there is no network namespace, so the process-only fallback's variant also denies
`socket` (every address family; socketpair stays): no TCP, UDP, raw, netlink or unix-path sockets.

The filter is compiled to BPF with libseccomp (through `pyseccomp`) once per process and handed to bwrap
(`--seccomp FD`) or, in the process-only fallback, loaded by the bootstrap itself.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

DENIED_SYSCALLS = (
    "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick",
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "memfd_create", "memfd_secret",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "iopl", "ioperm", "uselib", "personality",
)  # fmt: skip
NAMESPACE_CLONE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


class SeccompUnavailable(Exception):
    """libseccomp (or its Python binding) is missing or refused to build the filter."""


@functools.cache
def _compiled_filter(allow_sockets: bool) -> bytes:
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as exc:  # RuntimeError: the binding found no libseccomp.so
        raise SeccompUnavailable(
            f"libseccomp is not usable ({exc}); install the `libseccomp2` package and `pyseccomp`"
        ) from exc
    deny = pyseccomp.ERRNO(errno.EPERM)
    try:
        syscall_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        syscall_filter.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
        for name in DENIED_SYSCALLS:
            if pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) >= 0:  # unknown on this arch: absent
                syscall_filter.add_rule(deny, name)
        for flag in NAMESPACE_CLONE_FLAGS.values():
            syscall_filter.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
        syscall_filter.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
        if not allow_sockets:
            syscall_filter.add_rule(deny, "socket")
        with tempfile.TemporaryFile() as exported:
            syscall_filter.export_bpf(exported)
            exported.seek(0)
            return exported.read()
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp could not build the sandbox's filter: {exc}") from exc


def compiled_filter(*, allow_sockets: bool = True) -> bytes:
    """The filter as BPF (an array of `struct sock_filter`), built on first use and kept.

    Raises SeccompUnavailable, uncached, so a later call tries again."""
    return _compiled_filter(allow_sockets)


def filter_pipe(program: bytes) -> int:
    """A pipe's read end holding a compiled filter, for `bwrap --seccomp FD` (bwrap reads it to EOF)."""
    read_fd, write_fd = os.pipe()
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(write_fd, view) :]
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd

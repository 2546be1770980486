"""Run as root, just before a container's program when the node's /etc/passwd would tell it more than its image's:
a private mount namespace with the image's passwd/group bound over the node's, then the container's ids, then exec.

    python3 -I enter.py PASSWD GROUP UID GID GROUPS(comma-separated) HAD_LC_CTYPE(0|1) EXE ARGV0 ARG...
"""

import ctypes
import os
import sys

CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18


def main():
    passwd, group, uid, gid, groups, had_lc_ctype, exe = sys.argv[1:8]
    argv = sys.argv[8:]
    if had_lc_ctype == "0":
        # Python's own locale coercion (PEP 538) put it there; the container's env must stay exactly the pod's.
        os.environ.pop("LC_CTYPE", None)
    libc = ctypes.CDLL(None, use_errno=True)

    def check(rc, what):
        if rc != 0:
            sys.stderr.write("node-agent-double: %s: %s\n" % (what, os.strerror(ctypes.get_errno())))
            os._exit(128)

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    check(libc.mount(passwd.encode(), b"/etc/passwd", None, MS_BIND, None), "bind the image's passwd")
    check(libc.mount(group.encode(), b"/etc/group", None, MS_BIND, None), "bind the image's group")
    os.setgroups([int(g) for g in groups.split(",") if g])
    os.setgid(int(gid))
    os.setuid(int(uid))
    try:
        os.execv(exe, argv)
    except OSError as e:
        sys.stderr.write('exec: "%s": %s\n' % (argv[0], e.strerror))
        os._exit(128)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The reference side of tests/libinjection_differential.rs.

Reads inputs (one per line, hex-encoded) on stdin and writes, for each, the answer of
the C libinjection that ModSecurity v3 carries (Debian's libmodsecurity3 exports its
functions): `<sqli 0|1> <fingerprint or -> <xss 0|1>`. The first line of output is
libinjection's version. The library path is the first argument.
"""
import ctypes
import sys


def main() -> int:
    lib = ctypes.CDLL(sys.argv[1])
    lib.libinjection_version.restype = ctypes.c_char_p
    lib.libinjection_sqli.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]
    lib.libinjection_sqli.restype = ctypes.c_int
    lib.libinjection_xss.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.libinjection_xss.restype = ctypes.c_int
    out = sys.stdout
    out.write(lib.libinjection_version().decode() + "\n")
    fp = ctypes.create_string_buffer(8)
    for line in sys.stdin:
        data = bytes.fromhex(line.strip())
        fp.value = b""
        sqli = lib.libinjection_sqli(data, len(data), fp)
        xss = lib.libinjection_xss(data, len(data))
        finger = fp.value.decode("latin-1") if sqli else "-"
        out.write(f"{1 if sqli else 0} {finger} {1 if xss else 0}\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

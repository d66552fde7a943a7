"""One tar archive of the files an offline install puts on a node, on the control node:

    bundle.py DIR OUT DEST_DIR:MODE ... -- SRC:DEST:MODE ...

Each SRC (relative to DIR) is stored under DEST (absolute on the node, stored relative to /) with MODE, owner
root:root; each DEST_DIR is stored as a directory with MODE. Unpacked at the node's / it lays out the install in
one transfer, where copying file by file costs three round trips per file. OUT is written only when its content
would change (same inputs, same bytes: the mtimes are the sources'), so the archive is built once per run.
"""

import io
import os
import sys
import tarfile


def _info(name: str, mode: str, mtime: float, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.mode, info.uid, info.gid, info.uname, info.gname = int(mode, 8), 0, 0, "root", "root"
    info.mtime, info.type, info.size = int(mtime), kind, size
    return info


def build(directory: str, dirs: list[str], files: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for spec in dirs:
            dest, mode = spec.rsplit(":", 1)
            tar.addfile(_info(dest, mode, 0, tarfile.DIRTYPE))
        for spec in files:
            src, dest, mode = spec.rsplit(":", 2)
            path = os.path.join(directory, src)
            st = os.stat(path)
            with open(path, "rb") as f:
                tar.addfile(_info(dest, mode, st.st_mtime, tarfile.REGTYPE, st.st_size), f)
    return buf.getvalue()


def main() -> None:
    directory, out, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    split = rest.index("--")
    data = build(directory, rest[:split], rest[split + 1:])
    try:
        with open(out, "rb") as f:
            if f.read() == data:
                print("unchanged")
                return
    except OSError:
        pass
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    print("written")


if __name__ == "__main__":
    main()

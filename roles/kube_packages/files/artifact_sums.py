"""SHA-256 of artifact files, on the control node: artifact_sums.py DIR CACHE FILE... -> JSON {file: hex|null}.

CACHE (a JSON file, or "" for none) remembers each file's hash with its size and modification time, so a re-run
hashes only the files that changed since (an artifacts directory holds hundreds of MB of images).
"""

import hashlib
import json
import os
import sys


def main() -> None:
    directory, cache_path, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    cache = {}
    if cache_path:
        try:
            with open(cache_path) as f:
                cache = json.load(f)
        except (OSError, ValueError):
            cache = {}
    out, changed = {}, False
    for name in files:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            out[name] = None
            continue
        key = os.path.realpath(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = cache.get(key)
        if hit and hit[:3] == stamp:
            out[name] = hit[3]
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[name] = digest.hexdigest()
        cache[key] = [*stamp, out[name]]
        changed = True
    if cache_path and changed:
        tmp = cache_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f)
        os.replace(tmp, cache_path)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

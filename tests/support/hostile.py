"""Hostile inputs of issue 13 (classes 3-10 and 13), generated: servers on 127.0.0.1 that
are not Dask schedulers, multi-frame files with an empty frame, 16-bit PNGs with a tRNS
colour key, JPEG headers patched to declare a huge size, names that collide, and a batch
killed with SIGKILL (its pool workers found through /proc).

Used by ``tests/segment/test_reliability_hostile.py`` and by
``benchmarks/reliability_hostile.py`` (the table). Imports only the standard library at
the top, as :mod:`tests.support.odd_files`.
"""

import contextlib
import http.server
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# =============================================================================================
# Inputs
# =============================================================================================


def blocks(h=24, w=30, seed=0):
    """(h, w, 3) uint8: three noisy colour blocks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3))
    for i, c in enumerate(((200, 40, 40), (40, 160, 60), (50, 60, 210))):
        img[:, i * w // 3 :] = c
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def noise(h, w, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(array, path, **kwargs):
    from PIL import Image

    Image.fromarray(array).save(path, **kwargs)
    return Path(path)


class Listener:
    """A TCP server on 127.0.0.1 in a daemon thread, for ``--scheduler``: ``kind`` "http"
    (a real HTTP server), "garbage" (sends random bytes), "silent" (accepts, never answers).
    """

    def __init__(self, kind):
        self.kind = kind
        if kind == "http":
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
            self.server.daemon_threads = True
            self.port = self.server.server_address[1]
            target = self.server.serve_forever
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(16)
            self.port = self.sock.getsockname()[1]
            self.conns = []
            target = self._accept
        threading.Thread(target=target, daemon=True).start()

    def _accept(self):
        junk = os.urandom(1 << 16)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.kind == "garbage":
                with contextlib.suppress(OSError):
                    conn.sendall(junk)

    @property
    def address(self):
        return f"tcp://127.0.0.1:{self.port}"

    def close(self):
        if self.kind == "http":
            self.server.shutdown()
            self.server.server_close()
        else:
            self.sock.close()
            for c in self.conns:
                c.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def multi_frame_files(folder):
    """anim.webp (frames opaque, transparent, opaque), nan.tiff (float pages: data, all
    NaN, data) and empty.webp (every frame transparent) in ``folder``."""
    import numpy as np
    from PIL import Image

    def rgba(alpha, seed):
        a = np.zeros((20, 24, 4), np.uint8)
        a[..., :3] = blocks(20, 24, seed)
        a[..., 3] = alpha
        return Image.fromarray(a, "RGBA")

    folder = Path(folder)
    frames = [rgba(255, 0), rgba(0, 1), rgba(255, 2)]
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    rng = np.random.default_rng(0)
    pages = [
        Image.fromarray(rng.random((10, 12)).astype(np.float32), "F"),
        Image.fromarray(np.full((10, 12), np.nan, np.float32), "F"),
        Image.fromarray(rng.random((10, 12)).astype(np.float32), "F"),
    ]
    pages[0].save(folder / "nan.tiff", save_all=True, append_images=pages[1:])
    empty = [rgba(0, 3), rgba(0, 4)]
    empty[0].save(folder / "empty.webp", save_all=True, append_images=empty[1:], lossless=True)


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_rgb16(path, rgb16, key):
    """A 16-bit RGB PNG (colour type 2) with a tRNS colour key, written chunk by chunk
    (Pillow cannot write 16-bit RGB)."""
    import numpy as np

    rgb16 = np.asarray(rgb16)
    h, w, _ = rgb16.shape
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    data += _chunk(b"tRNS", struct.pack(">HHH", *key))
    data += _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(data)
    return Path(path)


def key16_images(folder):
    """nokey.png: no pixel equals the 16-bit key, but every pixel shares its high bytes
    (matched on those alone, the whole picture was "fully transparent"); keyed.png: the 10
    left columns equal the key (invisible), 2 more share its high bytes."""
    import numpy as np

    rgb = blocks().astype(np.uint16) * 257
    key = tuple(int(v) for v in rgb[0, 0])
    near = (key[0] ^ 0x01, key[1], key[2])
    flat = np.broadcast_to(np.asarray(key, np.uint16), rgb.shape).copy()
    low = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint16)
    low[low == (key[0] & 0xFF)] ^= 1  # never the key's own low byte
    flat[..., 0] = (flat[..., 0] & 0xFF00) | low
    keyed = rgb.copy()
    keyed[:, :10] = key
    keyed[:, 10:12] = near
    return png_rgb16(Path(folder) / "nokey.png", flat, key), png_rgb16(
        Path(folder) / "keyed.png", keyed, key
    )


def patched_jpeg(path, size, declared, *, progressive=False, subsampling=2):
    """A small JPEG of ``size`` (w, h) whose frame header is patched to ``declared``."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(noise(size[1], size[0])).save(
        buf, "JPEG", quality=60, progressive=progressive, subsampling=subsampling
    )
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", declared[1], declared[0])
    Path(path).write_bytes(bytes(data))
    return Path(path)


def colliding_names(folder):
    """a.png, a.jpg, a.png.png, x/c.png and y/c.png under ``folder``."""
    folder = Path(folder)
    (folder / "x").mkdir(parents=True, exist_ok=True)
    (folder / "y").mkdir(exist_ok=True)
    save(blocks(seed=1), folder / "a.png")
    save(blocks(seed=2), folder / "a.jpg", quality=95)
    save(blocks(seed=3), folder / "a.png.png")
    save(blocks(seed=4), folder / "x" / "c.png")
    save(blocks(seed=5), folder / "y" / "c.png")
    return folder


def hole_pair(folder):
    """one.png and two.png: RGBA, the same visible pixels, a transparent hole holding black
    in one and noise in the other."""
    import numpy as np

    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[..., :3] = blocks(40, 48)
    rgba[..., 3] = 255
    rgba[12:28, 16:32, 3] = 0
    one, two = rgba.copy(), rgba.copy()
    one[12:28, 16:32, :3] = 0
    two[12:28, 16:32, :3] = noise(16, 16, seed=9)
    return save(one, Path(folder) / "one.png"), save(two, Path(folder) / "two.png")


# =============================================================================================
# Processes: children of a process, kill -9 of a batch
# =============================================================================================


def children(pid):
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(f"/proc/{entry}/stat").read_text()
                if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry))
    return found


def alive(pid):
    """Running (not gone, not a zombie waiting for a reaper)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def is_pool_worker(pid):
    with contextlib.suppress(OSError):
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def kill_batch(tmp, *, settle=1.5, wait=15.0):
    """Start ``segment batch --workers 2`` on 6 images, SIGKILL it once both pool workers
    run, and return (workers, the ones still alive ``wait`` s later, seconds they took)."""
    folder = Path(tmp) / "kill_in"
    folder.mkdir()
    for i in range(6):
        save(noise(160, 160, seed=i), folder / f"n{i}.png")
    cmd = [sys.executable, "-m", "segment", "batch", str(folder), "-o", str(Path(tmp) / "ko")]
    cmd += ["--workers", "2", "-q", "-k", "8", "--max-iter", "300", "--tol", "0"]
    proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [p for p in children(proc.pid) if is_pool_worker(p)]
            time.sleep(0.1)
        time.sleep(settle)
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < wait and any(alive(p) for p in workers):
            time.sleep(0.1)
        left = [p for p in workers if alive(p)]
        return workers, left, time.monotonic() - t0
    finally:
        proc.kill()
        for p in workers:  # never leave one behind, whatever happened
            with contextlib.suppress(OSError):
                if is_pool_worker(p):
                    os.kill(p, signal.SIGKILL)

"""Progress bars: drawn on a terminal only, and drawn (not an empty line) on one that reports no width."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from deblur.core.progress import FALLBACK_SIZE

COUNT = "from deblur.core.progress import bar\nfor _ in bar(range(3), desc='counting', unit='img'):\n    pass\n"


def _frames_on_a_terminal(columns: int) -> list[str]:
    """What the bar draws on a pseudo-terminal of ``columns`` (0: never sized, as ``script`` makes one)."""
    master, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", COUNT], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=child)
    os.close(child)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child's end is closed
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return [f for f in drawn.decode().replace("\n", "\r").split("\r") if f.strip()]


def test_a_terminal_of_no_width_gets_a_bar_of_the_fallback_width():
    frames = _frames_on_a_terminal(0)
    assert frames and "counting: 100%" in frames[-1], frames  # before: one empty line
    assert max(len(f) for f in frames) <= FALLBACK_SIZE[0]


def test_a_sized_terminal_gets_a_bar_of_its_width():
    frames = _frames_on_a_terminal(40)
    assert frames and "100%" in frames[-1] and max(len(f) for f in frames) <= 40, frames


def test_a_redirected_stream_gets_no_bar():
    done = subprocess.run([sys.executable, "-c", COUNT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_redirected_stream_gets_a_line_now_and_then():
    """A log (deblur eval's, a job's) shows the work going on: a line every so often, no frames."""
    count = COUNT.replace("unit='img')", "unit='img', every=0)")
    done = subprocess.run([sys.executable, "-c", count], capture_output=True, text=True, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 0 and [ln.split(" after ")[0] for ln in lines] == [f"counting: {i}/3 img" for i in (1, 2, 3)]
    assert "\r" not in done.stderr

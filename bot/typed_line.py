"""The console's line being typed, in a terminal: read with GNU readline (line editing,
history), and every other line Baton prints (progress, replies, news) drawn above it, the
prompt and what was typed so far drawn again below, so a progress line never breaks the
line being typed.

readline reads in the console's reader thread; ``say`` comes from the event loop's
thread, erases the prompt's line, writes the text, and draws the prompt with
``readline.get_line_buffer()`` again (the usual way to print above a readline prompt).
The terminal's settings are put back when the console closes, even while readline still
waits for a line (it reads with echo and canonical mode off).
"""

from __future__ import annotations

import contextlib
import errno
import os
import readline
import termios
import threading
from typing import TextIO

ERASE = "\r\x1b[2K"
"""Back to the line's start, and erase the line (the prompt and what was typed)."""


class TypedLine:
    def __init__(self, prompt: str, out: TextIO, fd: int) -> None:
        self.prompt = prompt
        self.out = out
        self.fd = fd
        self.reading = False
        self.closed = False
        self._lock = threading.Lock()
        self._held = False
        self._saved = termios.tcgetattr(fd)
        readline.set_pre_input_hook(self._shown)

    def read(self) -> str | None:
        """The next line typed (with its newline), None at end of input (Ctrl-D, or a
        read the terminal refused). Called by the reader thread. Nothing is said while
        readline draws its prompt: the lock is held until it is drawn (``_shown``)."""
        self._lock.acquire()
        self._held = self.reading = True
        try:
            return input(self.prompt) + "\n"
        except EOFError:
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return None
        finally:
            self.reading = False
            self._shown()

    def _shown(self) -> None:
        """readline's pre-input hook: the prompt is drawn, lines may be said above it."""
        if self._held:
            self._held = False
            self._lock.release()

    def in_background(self) -> bool:
        """Whether this process is no longer the terminal's foreground job."""
        try:
            return os.tcgetpgrp(self.fd) != os.getpgrp()
        except OSError:
            return True

    def say(self, text: str) -> None:
        """``text`` on its own line above the prompt, the prompt and what was typed so
        far below it; a plain line when no line is being read."""
        with self._lock:
            if self.reading and not self.closed:
                typed = readline.get_line_buffer()
                self.out.write(f"{ERASE}{text}\n{self.prompt}{typed}")
            else:
                self.out.write(f"{text}\n")
            self.out.flush()

    def close(self) -> None:
        """No more prompt: erase the one readline may still show, and give the terminal
        its settings back."""
        with self._lock:
            self.closed = True
            if self.reading:
                self.out.write(ERASE)
                self.out.flush()
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

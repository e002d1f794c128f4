"""The core as a process: finding its command ($NST_CORE_COMMAND, else nst-core.json beside
the plug-in), starting it with its stderr in the run's log, the threads that write the request
and read the replies (so that GIMP never blocks on a pipe), and stopping it: a cancel message
first, then the process. A core reached through ssh is recognised for its messages."""
# Python 2.7 compatible on purpose: no f-strings, no `raise from`, IOError spelled out.
# ruff: noqa: UP003, UP010, UP024, UP025, UP031, B904

from __future__ import absolute_import, division, print_function

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

try:
    import queue  # novm
except ImportError:  # Python 2
    import Queue as queue  # novm

from nst_base import PY2, REPAIR, TEXT_TYPES, BridgeError, brief, monotonic, printable
from nst_logs import log_note
from nst_protocol import MAX_HEADER, Broken, check_reply, header_line

CONFIG_NAME = "nst-core.json"
ENV_COMMAND = "NST_CORE_COMMAND"
CANCEL_WAIT_S = 2.0
EXIT_WAIT_S = 10.0  # how long the core may take to close stdout after answering, and to exit


def _split_command(line):
    if os.name != "nt":
        return shlex.split(line)
    parts = []
    for part in shlex.split(line, posix=False):  # keeps backslashes; strip the quotes
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


def config_path(config_dir=None):
    folder = config_dir or os.path.dirname(os.path.abspath(__file__))
    return os.path.join(folder, CONFIG_NAME)


def find_core_command(config_dir=None):
    """The core's command as an argument list: $NST_CORE_COMMAND, else nst-core.json beside this
    file (or in config_dir). Raises BridgeError(kind="core_missing") saying how to repair."""
    line = os.environ.get(ENV_COMMAND, "").strip()
    if line:
        try:
            command = _split_command(line)
        except ValueError as e:
            raise BridgeError("core_missing", "%s=%r cannot be split into a command (%s)."
                              % (ENV_COMMAND, line, e))
        if command:
            return command
    path = config_path(config_dir)
    if not os.path.exists(path):
        raise BridgeError("core_missing", "The neural style core is not installed: %s is "
                          "missing and %s is not set. %s." % (path, ENV_COMMAND, REPAIR))
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as e:
        raise BridgeError("core_missing", "The neural style core's settings file %s cannot be "
                          "read (%s). %s." % (path, e, REPAIR))
    command = config.get("command") if isinstance(config, dict) else None
    if not (isinstance(command, list) and command
            and all(isinstance(a, TEXT_TYPES) and a for a in command)):
        raise BridgeError("core_missing", "The neural style core's settings file %s has no "
                          "valid \"command\". %s." % (path, REPAIR))
    return [_native(a) for a in command]


def _native(text):
    """Python 2: unicode from JSON -> str in the file system's encoding, for subprocess."""
    if PY2 and not isinstance(text, str):
        return text.encode(sys.getfilesystemencoding() or "utf-8")
    return text


def check_executable(command):
    program = command[0]
    if os.path.dirname(program):
        if not os.path.isfile(program):
            raise BridgeError("core_missing", "The neural style core's program %s does not "
                              "exist. %s." % (program, REPAIR))
        if os.name != "nt" and not os.access(program, os.X_OK):
            raise BridgeError("core_missing", "The neural style core's program %s is not "
                              "executable. %s." % (program, REPAIR))


class Reader(threading.Thread):
    """Reads the core's stdout into a queue: ("message", message, payload) for each message
    that passes check_reply, then ("eof",) or ("broken", how). Checks every size before reading a
    payload; anything after the answer (a result, estimate or error) is broken too."""

    def __init__(self, stream, answer, expected):
        threading.Thread.__init__(self, name="nst-bridge-reader")
        self.daemon = True
        self.stream = stream
        self.answer = answer  # "result", "preview" (streamed images, then a result), "estimate"
        self.expected = expected  # the result's dict(width, height, channels, format)
        self.answered = False
        self.queue = queue.Queue()

    def run(self):
        try:
            while True:
                line = self.stream.readline(MAX_HEADER + 1)
                if not line:
                    self.queue.put(("eof",))
                    return
                message, payload = self._message(line)
                self.queue.put(("message", message, payload))
        except Broken as e:
            self.queue.put(("broken", e.args[0]))
        except Exception as e:  # noqa: BLE001 - reported to the main thread
            self.queue.put(("broken", "reading its output failed (%s)" % brief(e)))

    def _message(self, line):
        if self.answered:
            raise Broken("it wrote more after its answer")
        if len(line) > MAX_HEADER:
            raise Broken("it wrote a line longer than %d bytes" % MAX_HEADER)
        if not line.endswith(b"\n"):
            raise Broken("its output ended in the middle of a message")
        try:
            message = json.loads(line.decode("utf-8"))
        except (ValueError, RuntimeError):  # RuntimeError: RecursionError, deeply nested junk
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), TEXT_TYPES):
            raise Broken(u'it wrote "%s" instead of a protocol message'
                          % printable(line[:80].decode("utf-8", "replace").strip(), 80))
        message = check_reply(message, self.answer, self.expected)
        payload = None
        if message["type"] in ("result", "image"):
            payload = self._read(message["payload"])
        self.answered = message["type"] in ("result", "estimate", "error")
        return message, payload

    def _read(self, size):
        chunks, left = [], size
        while left:
            chunk = self.stream.read(min(left, 1 << 22))
            if not chunk:
                raise Broken("its output ended %d bytes before the end of its result" % left)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class Writer(threading.Thread):
    """Writes the request without blocking the main thread (which watches for a cancel)."""

    def __init__(self, stream, parts):
        threading.Thread.__init__(self, name="nst-bridge-writer")
        self.daemon = True
        self.stream = stream
        self.parts = parts
        self.error = None

    def run(self):
        try:
            for part in self.parts:
                self.stream.write(part)
            self.stream.flush()
        except Exception as e:  # noqa: BLE001 - mostly: the core stopped reading; it says why
            self.error = e
            close_stream(self.stream)  # a request cut short: the core reports it, never waits
        self.parts = None

    def send_cancel(self):
        """Ask the core to stop, then close its stdin (closing also means stop)."""
        if self.is_alive():
            return False  # still writing the request: the caller kills the core instead
        try:
            self.stream.write(header_line({"type": "cancel"}))
            self.stream.flush()
        except (IOError, OSError, ValueError):
            pass
        close_stream(self.stream)
        return True


def close_stream(stream):
    try:
        stream.close()
    except (IOError, OSError, ValueError):
        pass


def wait_exit(proc, timeout):
    """proc.wait with a timeout on Python 2 and 3; the exit status or None."""
    deadline = monotonic() + timeout
    while proc.poll() is None:
        if monotonic() >= deadline:
            return None
        time.sleep(0.02)
    return proc.returncode


def stop_process(proc):
    """Kill the core if it still runs and reap it: never a zombie."""
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    proc.wait()


# ssh's options that take a value (`ssh -p 2222 -i key host command`): skipped to find the host.
_SSH_VALUE_OPTIONS = "BbcDEeFIiJLlmOoPpQRSWw"


def ssh_host(command):
    """The host of a core command run through ssh (a remote core), else None."""
    if not command or os.path.basename(command[0]).split(".")[0] != "ssh":
        return None
    args = iter(command[1:])
    for arg in args:
        if arg.startswith("-") and len(arg) > 1:
            if arg[-1] in _SSH_VALUE_OPTIONS and len(arg) == 2:
                next(args, None)
            continue
        return arg
    return None


def exit_description(code):
    if code is None:
        return "did not exit within %.0f s" % EXIT_WAIT_S
    if code < 0:
        names = dict((getattr(signal, n), n) for n in dir(signal)
                     if n.startswith("SIG") and not n.startswith("SIG_")
                     and isinstance(getattr(signal, n), int))
        name = names.get(-code, "signal %d" % -code)
        text = "was killed by %s" % name
        if -code == getattr(signal, "SIGKILL", 9):
            text += " (the system may have run out of memory)"
        return text
    return "exited with code %d" % code


def popen(command, log_fd):
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    kwargs = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_fd, env=env,
                  bufsize=-1)
    if os.name == "nt":
        kwargs["creationflags"] = 0x08000000  # CREATE_NO_WINDOW: no console window pops up
    else:
        kwargs["close_fds"] = True
    return subprocess.Popen(command, **kwargs)


def cancel(proc, writer, log_path):
    log_note(log_path, "cancelled by the user")
    if writer.send_cancel():
        if wait_exit(proc, CANCEL_WAIT_S) is not None:
            return
        log_note(log_path, "the core did not stop within %.0f s; killing it" % CANCEL_WAIT_S)
    stop_process(proc)

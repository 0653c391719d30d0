"""The lab's typist (sshkit.Terminal, vi_edit, shell_session) against a real bash and vim on
a pty, without namespaces: a session must end when it is closed, whatever vim was doing.

A session whose `exit` went into vim (the old typist recalled `vi` from the history right
after editing, which reopened the editor) never ended, and ssh-reverse-login and
ssh-interactive then failed after their whole 600 s budget without labels.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowdet.lab.sshkit import NOTES, Terminal, open_pty, shell_session, vi_edit

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("vi") is None, reason="needs bash and vi"
)
QUICK = (0.05, 0.2)  # think times: the test is about what is typed, not how slowly


class _Lab:
    """What Terminal and the session helpers use of a Lab."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[Terminal, Path]]:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "logs").mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HISTFILE": str(home / ".bash_history"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "PS1": "lab# ",
    }
    master, slave = open_pty()
    proc = subprocess.Popen(
        ["bash", "--login", "--noprofile", "--norc", "-i"],  # as sshd starts it: says logout
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=home,
        start_new_session=True,
    )
    os.close(slave)
    term = Terminal(_Lab(tmp_path), proc, random.Random(7), pty_master=master)
    try:
        yield term, home
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_close_leaves_a_vim_that_is_still_open(shell: tuple[Terminal, Path]) -> None:
    term, home = shell
    (home / "notes.txt").write_text("first line\n")
    term.settle(quiet=0.3)
    vi_edit(term, random.Random(3), "notes.txt", QUICK)
    assert not term.full_screen()
    added = [x for x in (home / "notes.txt").read_text().splitlines()[1:] if x]
    assert added and all(line in NOTES for line in added)
    # what the old typist did next: recall the last command (vi) and run it again
    term.press(b"\x1b[A")
    term.settle(quiet=0.3)
    term.press(b"\r")
    assert term.wait_full_screen(True, 20.0), term.output[-500:]
    assert term.close(20.0) == 0
    assert term.proc.returncode == 0


def test_a_failed_last_command_is_not_a_failed_session(shell: tuple[Terminal, Path]) -> None:
    term, _ = shell
    term.settle(quiet=0.3)
    term.run("grep -n lab /dev/null")  # no match: status 1, which `exit` hands to ssh
    assert term.close(20.0) == 0
    assert term.proc.returncode == 1  # what the client itself returned


@pytest.mark.slow
def test_a_session_with_an_edit_ends_on_close(shell: tuple[Terminal, Path]) -> None:
    term, home = shell
    before = {p.name for p in home.iterdir()}
    shell_session(term, random.Random(11), 3, QUICK, home, edit=True)
    assert not term.full_screen()
    assert term.close(20.0) == 0
    scratch = [p for p in home.iterdir() if p.name not in before and not p.name.startswith(".")]
    assert len(scratch) == 1
    lines = [x for x in scratch[0].read_text().splitlines() if x]
    assert len(lines) > 3 and all(line in NOTES for line in lines)  # 3 notes + the edit
    assert term.output.count("\x1b[?1049h") == 1  # vim ran once: never recalled

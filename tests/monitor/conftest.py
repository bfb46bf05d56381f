"""Monitoring fixtures: a loopback HTTP receiver, projects with [metrics] / [alerts] settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _monitor_helpers import ProjectFactory, Received, Receiver

import headrace as hr


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state.requests.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def make_project(tmp_path: Path) -> Iterator[ProjectFactory]:
    """A project whose headrace.toml holds ``settings`` (TOML text after [project])."""
    opened: list[hr.Project] = []

    def make(settings: str) -> hr.Project:
        root = tmp_path / f"project{len(opened)}"
        root.mkdir()
        (root / "headrace.toml").write_text(
            f'[project]\nname = "shop"\npipelines = []\n{settings}\n', encoding="utf-8"
        )
        project = hr.Project(root)
        opened.append(project)
        return project

    yield make
    for project in opened:
        project.close()

"""Run a real Alertmanager (clustering off) on loopback; its API v2 through ``npuobs.amapi``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from npuobs.amapi import AlertmanagerAPI
from npuobs.binaries import find_binary
from npuobs.stack.proc import ManagedProcess, StackError, free_port, wait_http_ok


class AlertmanagerServer(AlertmanagerAPI):
    """An Alertmanager process started by :meth:`start`; a context manager that stops it on exit."""

    def __init__(self, process: ManagedProcess, url: str, config_path: Path) -> None:
        super().__init__(url)
        self.process = process
        self.config_path = config_path

    @classmethod
    def start(cls, config: Path | str | dict[str, Any], workdir: Path, port: int | None = None, *,
              extra_args: Sequence[str] = (), binary: str | None = None,
              ready_timeout: float = 20.0) -> AlertmanagerServer:
        """Start on a config file path or a config dict (written to ``workdir``); return once ready.

        ``--cluster.listen-address=`` (empty) turns gossip off: a single test instance otherwise
        binds 0.0.0.0:9094 and collides with any other Alertmanager on the machine.
        """
        binary = binary or find_binary("alertmanager", "prometheus-alertmanager")
        if binary is None:
            raise StackError("alertmanager not found on PATH (apt-get install -y prometheus-alertmanager)")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, dict):
            config_path = workdir / "alertmanager.yml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        else:
            config_path = Path(config).resolve()
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            binary, f"--config.file={config_path}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}/",
            "--cluster.listen-address=",
            *extra_args,
        ]
        process = ManagedProcess(argv, workdir / "alertmanager.log", name="alertmanager").start()
        try:
            wait_http_ok(f"{url}/-/ready", ready_timeout, process=process)
        except BaseException:
            process.stop()
            raise
        return cls(process, url, config_path)

    def stop(self) -> int | None:
        return self.process.stop()

    def __enter__(self) -> AlertmanagerServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

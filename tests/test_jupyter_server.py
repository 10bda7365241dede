"""A notebook stepped through as JupyterLab does it: a real Jupyter server on localhost, a session and kernel opened
through its REST API, every code cell sent over the kernel's websocket, one after the other, on the smoke profile.

What a person would see in a cell is what is checked: no error, nothing on stderr (a warning, a traceback), no echo of
a helper's return value (a dict of paths), and a figure where a cell draws one. Notebook 03 (Figure 2, the GMM
tables, the w_imb strip plot) only reads: the set-up first trains the one smoke run it reads, as notebook 02 does
(through :mod:`gapkit.studies`, into the server's results folder), about 15 s on 2 CPU cores.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

import jupyter_server  # noqa: F401  (the notebooks extra installs it; the test fails rather than skips without it)
import websocket  # websocket-client, a dependency of jupyter_server

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/03_gmm_analysis.ipynb"
CELL_TIMEOUT = 300  # seconds for one cell


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gapkit_roots(base: Path) -> dict[str, str]:
    """The smoke profile and gapkit's folders below ``base`` (data and cache unless the caller's environment sets
    them): the server's kernels and the set-up that trains their runs see the same ones."""
    roots = {"GAPKIT_PROFILE": "smoke", "GAPKIT_RESULTS": str(base / "results"),
             "GAPKIT_FIGURES": str(base / "figures"), "GAPKIT_TABLES": str(base / "tables")}
    for name, folder in (("GAPKIT_DATA", "data"), ("GAPKIT_CACHE", "cache")):
        roots[name] = os.environ.get(name, str(base / folder))
    return roots


def _train_what_the_notebook_reads(base: Path) -> None:
    """Notebook 03's runs (Table 1's adaptive runs, warm-up included), trained as notebook 02 trains them."""
    from gapkit import studies
    from gapkit.profiles import get_profile
    from gapkit.runs import load_data

    with pytest.MonkeyPatch.context() as env:
        for name, value in _gapkit_roots(base).items():
            env.setenv(name, value)
        profile = get_profile("smoke")
        studies.warmup_runs(profile, load_data(profile), log=None)


class Server:
    """``jupyter server`` from this environment, on a free localhost port, with a token; rooted at the project."""

    def __init__(self, base: Path):
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JPY_SESSION_NAME")}
        env.update({**_gapkit_roots(base),
                    # a server and kernels of their own: no user config, runtime files or IPython start-up scripts
                    "JUPYTER_CONFIG_DIR": str(base / "jupyter-config"),
                    "JUPYTER_RUNTIME_DIR": str(base / "jupyter-runtime"), "IPYTHONDIR": str(base / "ipython")})
        env.setdefault("OMP_NUM_THREADS", "1")
        self.log = (base / "server.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", f"--ServerApp.root_dir={ROOT}",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", "--ServerApp.allow_root=True"],  # in containers too
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = base / "server.log"
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the Jupyter server did not start:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.3)

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = Request(self.url + path, data=data, method=method,
                          headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _message(msg_type: str, content: dict, session: str) -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session, "username": "test",
                       "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}


def _execute(ws, code: str, session: str) -> tuple[dict, list[dict]]:
    """Run ``code``; return the execute_reply's content and the iopub messages it caused (until the kernel is idle)."""
    request = _message("execute_request", {"code": code, "silent": False, "store_history": True,
                                           "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
                       session)
    ws.send(json.dumps(request))
    msg_id, reply, outputs, idle = request["header"]["msg_id"], None, [], False
    deadline = time.monotonic() + CELL_TIMEOUT
    while reply is None or not idle:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply within {CELL_TIMEOUT} s to:\n{code}")
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if msg["channel"] == "shell" and kind == "execute_reply":
            reply = msg["content"]
        elif msg["channel"] == "iopub":
            if kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind in ("stream", "display_data", "execute_result", "error", "update_display_data"):
                outputs.append(msg)
    return reply, outputs


def _shown(outputs: list[dict]) -> str:
    parts = []
    for msg in outputs:
        c = msg["content"]
        if msg["header"]["msg_type"] == "stream":
            parts.append(f"[{c['name']}] {c['text']}")
        elif msg["header"]["msg_type"] == "error":
            parts.append(f"[error] {c['ename']}: {c['evalue']}")
        else:
            parts.append(f"[{msg['header']['msg_type']}] {sorted(c.get('data', {}))} "
                         f"{c.get('data', {}).get('text/plain', '')[:300]}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def server(tmp_path_factory, one_thread):
    base = tmp_path_factory.mktemp("jupyter-server")
    _train_what_the_notebook_reads(base)
    srv = Server(base)
    yield srv
    srv.close()


def test_notebook_steps_through_a_jupyter_server_cleanly(server):
    started = time.perf_counter()
    specs = server.api("GET", "/api/kernelspecs")
    notebook = server.api("GET", f"/api/contents/{NOTEBOOK}?content=1&type=notebook")["content"]
    wanted = notebook["metadata"]["kernelspec"]["name"]
    # ./run_all.sh --setup-only (and tests/run.sh) register the notebooks' kernel; in another environment the
    # server's own Python kernel runs the same interpreter
    kernel = wanted if wanted in specs["kernelspecs"] else specs["default"]
    print(f"kernel {kernel!r} (the notebook asks for {wanted!r}; available: {sorted(specs['kernelspecs'])})")
    session = server.api("POST", "/api/sessions", {"path": NOTEBOOK, "name": Path(NOTEBOOK).name, "type": "notebook",
                                                   "kernel": {"name": kernel}})
    client_session = uuid.uuid4().hex
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/api/kernels/{session['kernel']['id']}/channels?session_id={client_session}",
        header=[f"Authorization: token {server.token}"], timeout=CELL_TIMEOUT)
    problems, figures = [], 0
    try:
        for i, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            reply, outputs = _execute(ws, source, client_session)
            shown = _shown(outputs)
            kinds = [m["header"]["msg_type"] for m in outputs]
            if reply["status"] != "ok" or "error" in kinds:
                problems.append(f"cell {i} failed ({reply.get('ename')}: {reply.get('evalue')}):\n{shown}")
                break  # as Run All does: the cells after a failure depend on it
            if any(m["content"].get("name") == "stderr" for m in outputs if m["header"]["msg_type"] == "stream"):
                problems.append(f"cell {i} wrote to stderr (a warning?):\n{shown}")
            if "warning" in shown.lower():
                problems.append(f"cell {i} shows a warning:\n{shown}")
            if "PosixPath(" in shown or "{'png'" in shown:
                problems.append(f"cell {i} echoes paths:\n{shown}")
            draws = "save_figure(" in source
            images = sum("image/png" in m["content"].get("data", {}) for m in outputs)
            if draws and images == 0:
                problems.append(f"cell {i} draws a figure but shows none:\n{shown}")
            figures += images
    finally:
        ws.close()
        server.api("DELETE", f"/api/sessions/{session['id']}")
    seconds = time.perf_counter() - started
    print(f"{NOTEBOOK}: {len(notebook['cells'])} cells, {figures} figure(s) shown, {seconds:.0f} s")
    assert not problems, "\n\n".join(problems)
    assert figures >= 1

"""Security: weights from safetensors only, nothing but atomic writes, no server and no network,
paths inside a graph file never opened, markup from data never becomes markup in an export.

Dynamic checks use a Python audit hook (PEP 578): every ``open``, socket, subprocess and file
rename the interpreter performs while a block runs is recorded, so "never" is what was observed,
not what the code looks like. (The live-browser XSS test of every panel is
tests/browser/test_security_browser.py.)
"""

from __future__ import annotations

import ast
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

import interp_widgets as iw
from interp_widgets.widgets.report import static_html

PACKAGE = Path(iw.__file__).resolve().parent
XSS = '<img src=x onerror="window.__iw_pwned=1"></script><script>window.__iw_pwned=2</script><!--'

_EVENTS: list | None = None
_HOOKED = False
WATCHED = ("open", "socket.bind", "socket.connect", "socket.__new__", "subprocess.Popen", "os.system",
           "os.rename", "os.replace", "os.remove", "os.mkdir", "shutil.rmtree", "urllib.Request")


def _hook(event: str, args: tuple) -> None:
    if _EVENTS is not None and event in WATCHED:
        _EVENTS.append((event, args))


@contextmanager
def audit():
    """Record the watched audit events raised while the block runs."""
    global _EVENTS, _HOOKED
    if not _HOOKED:
        sys.addaudithook(_hook)  # process-wide and permanent, so it records only inside audit()
        _HOOKED = True
    _EVENTS = []
    try:
        yield _EVENTS
    finally:
        _EVENTS = None


def _writes(events: list) -> list[str]:
    """Paths opened for writing (``open()`` gives a mode string, ``os.open`` / mkstemp flags)."""
    import os

    out = []
    for e, a in events:
        if e != "open" or not isinstance(a[0], (str, Path)):
            continue
        mode, flags = a[1], a[2] if len(a) > 2 else 0
        if (isinstance(mode, str) and re.search(r"[wax+]", mode)) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
            out.append(str(a[0]))
    return out


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_static" not in p.parts)


def _calls(path: Path) -> list[tuple[int, str, ast.Call]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            out.append((node.lineno, ast.unparse(node.func), node))
    return out


# ============================================================================ static guards
def test_no_code_path_can_unpickle():
    """No pickle-capable loader anywhere in the package: weights come from safetensors only."""
    bad = []
    for path in _sources():
        for line, name, call in _calls(path):
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if re.fullmatch(r"(torch|pickle|cPickle|dill|joblib|cloudpickle|marshal|shelve)\.(load|loads|open)", name) \
                    or (name.endswith("np.load") or name == "numpy.load") and kw.get("allow_pickle") != "False" \
                    or name in ("yaml.load", "yaml.unsafe_load", "eval", "exec") \
                    or (name.endswith("from_pretrained") and kw.get("use_safetensors") == "False"):
                bad.append(f"{path.relative_to(PACKAGE)}:{line}: {name}")
    assert not bad, bad


def test_every_file_write_goes_through_the_atomic_helpers():
    """Only files.py writes files (temp file + fsync + rename); loading.py builds the model cache
    inside a temporary folder that it swaps in whole."""
    allowed = {"files.py", "models/loading.py"}
    writes = re.compile(r"(\.write_text|\.write_bytes|save_file|torch\.save|\.to_csv|\.to_parquet|json\.dump|"
                        r"np\.save|\.savez)$")
    bad = []
    for path in _sources():
        rel = str(path.relative_to(PACKAGE))
        if rel in allowed:
            continue
        for line, name, call in _calls(path):
            mode = next((ast.unparse(a) for a in call.args[1:2]), "") + "".join(
                ast.unparse(k.value) for k in call.keywords if k.arg == "mode")
            if writes.search(name) or (name in ("open", "io.open") and re.search(r"[wax+]", mode)):
                bad.append(f"{rel}:{line}: {name}")
    assert not bad, bad


def test_only_the_cli_touches_sockets_or_processes():
    """The library opens no server and starts no process; `interp-widgets demo` (cli.py) starts
    JupyterLab on purpose."""
    bad = []
    for path in _sources():
        rel = str(path.relative_to(PACKAGE))
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in ("socket", "socketserver", "subprocess", "http", "aiohttp", "tornado",
                                       "flask", "multiprocessing") and not n.startswith("http.client") \
                        and rel != "cli.py":
                    bad.append(f"{rel}:{node.lineno}: import {n}")
    assert not bad, bad


# ============================================================================ what really happens
@pytest.mark.timeout(300)
def test_a_whole_session_opens_no_server_and_no_network(tiny_llama, sae, transcoders, tmp_path):
    """Everything a notebook does with the library, under the audit hook: no socket is created,
    bound or connected, no process started, and every file written lies in the folder given."""
    corpus = iw.Corpus.from_strings(["The cat sat on the mat. The dog sat on the log."] * 30)
    with audit() as events:
        acts = iw.feature_activations(tiny_llama, [sae, iw.neuron_basis(tiny_llama, [1])], ["The cat sat"])
        index = iw.scan(tiny_llama, sae, corpus, max_tokens=256, seq_len=16, batch_size=2, top_k=2, window=4,
                        progress=False)
        res = iw.steer(tiny_llama, iw.Steer(sae[2], 6.0)).generate("The cat", max_new_tokens=3)
        graph = iw.attribute(tiny_llama, "The cat sat", transcoders, max_feature_nodes=6, progress=False)
        sel = iw.Selection()
        panels = [iw.LogitLens(tiny_llama, "The cat sat"),
                  iw.FeaturePanel(tiny_llama, sae, prompt="The cat sat", index=index, selection=sel),
                  iw.FeatureDashboard(sae, 2, index=index, selection=sel),
                  iw.SteeringPanel(tiny_llama, sae, prompt="The cat", steers=[sae[2]], max_new_tokens=2,
                                   selection=sel),
                  iw.CircuitView(graph, selection=sel, model=tiny_llama)]
        panels[3].wait()
        panels[3].set_strength(0, 9.0)
        panels[3].wait()
        panels[4].selected = [graph.nodes["node_id"].iat[-1]]
        sae.save(tmp_path / "sae")
        sae.set_label(2, "cats")
        index.save(tmp_path / "index")
        acts.save(tmp_path / "acts")
        graph.save(tmp_path / "graph")
        graph.to_json(tmp_path / "graph.json")
        panels[0].to_html(tmp_path / "lens.html")
        for p in panels:
            p.close()
    assert res.steered.tokens and all(not p.error for p in panels), [p.error for p in panels]
    kinds = {e for e, _ in events}
    assert not kinds & {"socket.__new__", "socket.bind", "socket.connect", "subprocess.Popen", "os.system",
                        "urllib.Request"}, sorted(kinds)
    written = _writes(events)
    assert len(written) >= 10 and all(w.startswith(str(tmp_path)) for w in written), written


@pytest.fixture(scope="module")
def hostile_graph_file(tmp_path_factory, tiny_llama):
    """A graph file whose every free-text field is a path (some to files that exist)."""
    root = tmp_path_factory.mktemp("hostile")
    bait = root / "evil_bait.txt"
    bait.write_text("must never be read")
    g = iw.attribute(tiny_llama, "The cat sat", "neurons", max_feature_nodes=5, progress=False)
    data = g.to_json()
    ids = [n["node_id"] for n in data["nodes"]]
    data["metadata"].update(slug="../../evil_slug", scan=str(bait),
                            info={"path": str(bait), "url": "file://" + str(bait)})
    ours = data["metadata"]["interp_widgets"]
    ours["metadata"].update(transcoders=str(root / "evil_transcoders"), path=str(bait), model=str(root / "evil_model"),
                            dictionary_path=str(root / "evil_dict"))
    ours["labels"] = {ids[0]: str(bait), ids[1]: "../evil_label"}
    data["qParams"]["supernodes"] = [["../../evil_group", ids[0], ids[1]]]
    for n in data["nodes"]:
        n["clerp"] = "file://" + str(bait)
        n["iw"]["label"] = str(root / "evil_node_label")
    path = root / "graph.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.timeout(300)
def test_paths_inside_a_graph_file_are_never_opened(hostile_graph_file, tiny_llama, tmp_path):
    with audit() as events:
        g = iw.AttributionGraph.from_json(hostile_graph_file)
        g.prune(0.8, 0.98).scores()
        g.to_pandas("nodes"), g.to_pandas("edges")
        g.diff(g)
        g.intervene({g.top(1)["node_id"].iat[0]: 0.0}, model=tiny_llama, transcoders=iw.neuron_basis(tiny_llama))
        view = iw.CircuitView(g, selection=iw.Selection())
        view.selected = list(g.nodes["node_id"][:2])
        view.group("mine")
        static_html([view])
        g.to_json(tmp_path / "out.json")
        g.save(tmp_path / "saved")
        iw.AttributionGraph.load(tmp_path / "saved")
        view.close()
    touched = [str(a[0]) for e, a in events if e in ("open", "os.mkdir", "os.rename", "os.replace", "os.remove")
               and isinstance(a[0], (str, Path))]
    assert str(hostile_graph_file) in touched  # the hook sees the opens it should
    assert not [t for t in touched if "evil" in t], [t for t in touched if "evil" in t]
    written = _writes(events)
    assert written and all(w.startswith(str(tmp_path)) for w in written), written
    assert g.labels and g.supernodes["../../evil_group"]  # the text is kept, as text


def test_static_export_of_every_panel_injects_no_script(tiny_llama, tmp_path):
    """Markup in a prompt, a dictionary name, feature labels, graph tokens and labels, and a
    steering row label reaches the page only as escaped data."""
    sae = iw.SAE.random(d_in=64, n_features=16, site="resid_post.1", architecture="topk", k=3, seed=4)
    sae.name = XSS
    for i in range(16):
        sae.labels[i] = XSS
    corpus = iw.Corpus.from_strings([f"{XSS} The cat sat on the mat."] * 20)
    index = iw.scan(tiny_llama, sae, corpus, max_tokens=256, seq_len=16, batch_size=2, top_k=2, window=4,
                    progress=False)
    graph = iw.attribute(tiny_llama, XSS, "neurons", max_feature_nodes=5, progress=False)
    for nid in graph.nodes["node_id"]:
        graph.labels[nid] = XSS
    graph.supernodes[XSS] = list(graph.nodes["node_id"][:2])
    sel = iw.Selection()
    panels = [iw.LogitLens(tiny_llama, XSS), iw.FeaturePanel(tiny_llama, sae, prompt=XSS, index=index, selection=sel),
              iw.FeatureDashboard(sae, 3, index=index, selection=sel),
              iw.SteeringPanel(tiny_llama, sae, prompt=XSS, steers=[sae[3]], max_new_tokens=2, selection=sel),
              iw.CircuitView(graph, selection=sel)]
    panels[3].wait()
    assert all(not p.error for p in panels), [p.error for p in panels]
    page = static_html(panels, title=XSS, subtitle=XSS, sections=[(XSS, XSS)] * 5)
    assert page.count("<script") == 2  # our state block and our host module, nothing from data
    assert "<img" not in page and "<!--" not in page
    blocks = re.findall(r"<script[^>]*>(.*?)</script>", page, re.S)
    state = json.loads(blocks[0])
    flat = json.dumps(state)
    assert flat.count(XSS.replace('"', '\\"')) >= 10  # the strings travel intact, as data
    for p in panels:
        p.close()

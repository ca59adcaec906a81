"""Our attribution beside circuit-tracer's, same model (SmolLM2), transcoders, prompt and settings.

circuit-tracer 0.5.0 needs nnsight 0.7 and transformers 4.57, so it runs in its own venv (see
/work/shared/NOTES.md); this script has three steps, each a separate process:

    python -m benchmarks.circuit_tracer_attribution ours OUT       # our venv: transcoders + our graph
    CT_PYTHON benchmarks/circuit_tracer_attribution.py ct OUT      # circuit-tracer's venv
    python -m benchmarks.circuit_tracer_attribution compare OUT    # numbers and times side by side
    CT_PYTHON benchmarks/circuit_tracer_attribution.py export OUT  # a circuit-tracer JSON export
                                                                   # (tests/analysis/data/)

Transcoders: 30 random TopK transcoders (width 1024, k 32: the starter pack's shape), written
to ``OUT/transcoders.safetensors`` in circuit-tracer's layout (``W_enc [d_tc, d_model]``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PROMPT_TEXT = ("The Eiffel Tower is in the city of Paris, the capital of France, and it was built for "
               "the World's Fair of 1889 by the company of Gustave Eiffel.")
N_TOKENS, WIDTH, K, NODES, BATCH = 16, 1024, 32, 1024, 64


def _threads() -> None:
    import torch

    if os.environ.get("IW_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["IW_BENCH_THREADS"]))


def _hf_folder_for_transformers4(out: Path) -> Path:
    """Our cached SmolLM2 folder as transformers 4.57 reads it (tokenizer class, rope, arch)."""
    from interp_widgets.models.loading import default_cache_path

    src, dst = default_cache_path(), out / "smollm2_hf4"
    dst.mkdir(parents=True, exist_ok=True)
    if not (dst / "model.safetensors").exists():
        os.symlink(src / "model.safetensors", dst / "model.safetensors")
    (dst / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    tok = json.loads((src / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    (dst / "tokenizer_config.json").write_text(json.dumps(tok))
    cfg = json.loads((src / "config.json").read_text())
    cfg["rope_theta"] = (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    cfg["rope_scaling"] = None
    cfg["architectures"] = ["LlamaForCausalLM"]
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def ours(out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    import interp_widgets as iw
    _threads()
    out.mkdir(parents=True, exist_ok=True)
    model = iw.load_model()
    # circuit-tracer puts a special token first (and leaves position 0 out of the graph): start
    # with one too, so both tokenize the same
    bos = model.tokenizer.convert_ids_to_tokens(1)
    ids = model.tokenizer(PROMPT_TEXT)["input_ids"][:N_TOKENS - 1]
    prompt = bos + model.tokenizer.decode(ids)
    tcs = {L: iw.Transcoder.random(d_in=model.d_model, n_features=WIDTH, layer=L, architecture="topk",
                                   k=K, seed=L, metadata={"model": model.name})
           for L in range(model.n_layers)}
    tensors = {}
    for L, tc in tcs.items():
        tensors[f"{L}.W_enc"] = tc.W_enc.detach().T.contiguous()
        tensors[f"{L}.W_dec"] = tc.W_dec.detach().contiguous()
        tensors[f"{L}.b_enc"] = tc.b_enc.detach().contiguous()
        tensors[f"{L}.b_dec"] = tc.b_dec.detach().contiguous()
    save_file(tensors, str(out / "transcoders.safetensors"))
    kw = dict(max_feature_nodes=NODES, batch_size=BATCH, progress=False)
    iw.attribute(model, prompt, tcs, **kw)  # warm-up
    times, cpu = [], []
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        graph = iw.attribute(model, prompt, tcs, **kw)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    graph.save(out / "ours")
    (out / "ours.json").write_text(json.dumps({
        "prompt": prompt, "token_ids": graph.token_ids,
        "model_folder": str(_hf_folder_for_transformers4(out)),
        "wall_s": times, "cpu_s": cpu,
        "threads": torch.get_num_threads(), "load_avg": os.getloadavg(),
    }))


def _ct_model(out: Path):
    """circuit-tracer's ReplacementModel on the same weights and transcoders as ours."""
    import torch
    from circuit_tracer import ReplacementModel
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.single_layer_transcoder import (
        SingleLayerTranscoder,
        TranscoderSet,
    )
    from safetensors.torch import load_file

    meta = json.loads((out / "ours.json").read_text())
    w = load_file(str(out / "transcoders.safetensors"))
    n_layers = 1 + max(int(k.split(".")[0]) for k in w)
    d_model = w["0.W_enc"].shape[1]
    tcs = {}
    for L in range(n_layers):
        tc = SingleLayerTranscoder(d_model, WIDTH, TopK(K), L, device=torch.device("cpu"),
                                   dtype=torch.float32)
        with torch.no_grad():
            for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
                getattr(tc, name).copy_(w[f"{L}.{name}"])
        tcs[L] = tc
    tset = TranscoderSet(tcs, feature_input_hook="mlp.hook_in", feature_output_hook="mlp.hook_out",
                         scan="random-topk")
    return ReplacementModel.from_pretrained_and_transcoders(
        meta["model_folder"], tset, backend="nnsight", device=torch.device("cpu"), dtype=torch.float32)


def ct(out: Path) -> None:
    import torch
    from circuit_tracer import attribute
    from safetensors.torch import save_file

    _threads()
    meta = json.loads((out / "ours.json").read_text())
    model = _ct_model(out)
    kw = dict(max_n_logits=10, desired_logit_prob=0.95, batch_size=BATCH, max_feature_nodes=NODES)
    times, cpu = [], []
    for _ in range(int(os.environ.get("CT_REPEATS", "1"))):
        t, c = time.perf_counter(), time.process_time()
        g = attribute(torch.tensor(meta["token_ids"]), model, **kw)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    feats = g.active_features[g.selected_features]
    save_file({"adjacency": g.adjacency_matrix.float().contiguous(), "features": feats.contiguous(),
               "logit_ids": g.logit_token_ids.contiguous(), "input_ids": g.input_tokens.contiguous()},
              str(out / "ct.safetensors"))
    (out / "ct.json").write_text(json.dumps({"wall_s": times, "cpu_s": cpu,
                                             "threads": torch.get_num_threads(),
                                             "load_avg": os.getloadavg()}))


def export(out: Path) -> Path:
    """circuit-tracer's own Neuronpedia JSON for a short prompt (our import test's fixture)."""
    from circuit_tracer import attribute
    from circuit_tracer.utils.create_graph_files import create_graph_files

    _threads()
    model = _ct_model(out)
    g = attribute("The capital of France is", model, max_feature_nodes=48, batch_size=BATCH)
    create_graph_files(g, slug="ct-capital", output_path=str(out / "ct_export"),
                       scan="smollm2-random-topk", node_threshold=0.995, edge_threshold=0.995)
    return out / "ct_export" / "ct-capital.json"


def compare(out: Path) -> dict:
    import numpy as np
    from safetensors.torch import load_file

    import interp_widgets as iw

    g = iw.AttributionGraph.load(out / "ours")
    c = load_file(str(out / "ct.safetensors"))
    A_ct = c["adjacency"].numpy()
    feats = c["features"].numpy()
    n_f, P = len(feats), int(c["input_ids"].shape[0])
    L = g.n_layers
    # circuit-tracer's node order: features, errors (layer-major), tokens, logits
    ct_ids = [f"{a}_{f}_{p}" for a, p, f in feats.tolist()]
    ct_ids += [f"{a}_-1_{p}" for a in range(L) for p in range(P)]
    ct_ids += [f"E_{t}_{p}" for p, t in enumerate(c["input_ids"].tolist())]
    ct_ids += [f"{L + 1}_{t}_{P - 1}" for t in c["logit_ids"].tolist()]
    ours_ids = list(g.nodes["node_id"])
    shared = [i for i in ct_ids if i in set(ours_ids)]
    kinds = dict(zip(g.nodes["node_id"], g.nodes["kind"], strict=True))
    # compare edges between shared features / logits / embeddings after position 0 (circuit-tracer
    # zeroes position 0's features and error vectors)
    pos = dict(zip(g.nodes["node_id"], g.nodes["position"], strict=True))
    keep = [i for i in shared if kinds[i] in ("feature", "logit", "embedding") and pos[i] > 0]
    oi = g.index(keep)
    ci = np.array([ct_ids.index(i) for i in keep])
    a_ours = g.adjacency.toarray()[np.ix_(oi, oi)]
    a_ct = A_ct[np.ix_(ci, ci)]
    rel = float(np.abs(a_ours - a_ct).max() / max(np.abs(a_ct).max(), 1e-12))
    mo, mc = json.loads((out / "ours.json").read_text()), json.loads((out / "ct.json").read_text())
    n_feat_ours = int((g.nodes["kind"] == "feature").sum())
    res = {
        "name": f"attribute vs circuit-tracer 0.5.0, SmolLM2 {P} tokens, 30 random TopK transcoders "
                f"(width {WIDTH}, k {K}), {NODES} feature nodes, batch {BATCH}",
        "ours_wall_s": mo["wall_s"], "ours_cpu_s": mo["cpu_s"],
        "circuit_tracer_wall_s": mc["wall_s"], "circuit_tracer_cpu_s": mc["cpu_s"],
        "speedup_wall": min(mc["wall_s"]) / min(mo["wall_s"]),
        "speedup_cpu": min(mc["cpu_s"]) / min(mo["cpu_s"]),
        "shared_feature_nodes": sum(kinds[i] == "feature" for i in keep),
        "feature_nodes": [n_feat_ours, n_f],
        "same_tokens": c["input_ids"].tolist() == g.token_ids,
        "same_logit_targets": sorted(c["logit_ids"].tolist()) == sorted(g.targets["token_id"].tolist()),
        "max_rel_diff_shared_edges": rel,
        "threads": [mo["threads"], mc["threads"]], "load_avg": [mo["load_avg"], mc["load_avg"]],
    }
    path = Path(__file__).resolve().parent / "results" / "attribution_circuit_tracer.json"
    path.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    if step == "ours":
        ours(folder)
    elif step == "ct":
        ct(folder)
    elif step == "export":
        print(export(folder))
    else:
        print(json.dumps(compare(folder), indent=1))

# Source of notebooks/04_circuits.ipynb: edit here, then run `python scripts/build_notebooks.py`
# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).

# %% [markdown]
# # Circuits: attribution graphs
#
# **You will learn**
#
# - what an attribution graph is: the direct linear effects between input tokens, features,
#   error terms and output logits in a *replacement model* of one prompt;
# - to build graphs for `The opposite of "small" is "` and for a factual recall prompt;
# - to **prune** a graph to what matters, and to group nodes into **supernodes**;
# - to **check** a circuit by intervening on the real model and comparing with the graph;
# - what the **replacement** and **completeness** scores mean;
# - to **export** a graph to Neuronpedia's JSON format.
#
# About two minutes on a laptop CPU. Statements about the model are checked by `assert`s.

# %%
import json
import tempfile
from pathlib import Path

import interp_widgets as iw

model = iw.load_model()
work = Path(tempfile.mkdtemp(prefix="iw_circuits_"))
ANTONYM = 'The opposite of "small" is "'
EIFFEL = "The Eiffel Tower is in the city of"

# %% [markdown]
# ## 1. The replacement model
#
# Attribution needs every MLP replaced by a dictionary that reads the MLP's input and writes its
# output (a *transcoder*), so that each MLP becomes a sum of features times decoder rows. The
# part a transcoder misses becomes an *error node*. With attention patterns and normalisation
# scales frozen at their values on the prompt, the whole model is then linear in the features,
# and the effect of any node on any later node is an exact number: an edge.
#
# Here each layer's transcoder is its own MLP neurons (`iw.neuron_basis`): exact, so the error
# nodes carry nothing. The trained transcoders of the starter pack
# (`iw.load_transcoders("starter")`, used by `iw.attribute` by default when installed) give
# sparser, more readable features at the price of error nodes. `max_feature_nodes` keeps the most
# influential features (64 here: seconds instead of minutes on a CPU).

# %%
transcoders = iw.neuron_basis(model)                  # 30 layers x 1536 neurons
graph = iw.attribute(model, ANTONYM, transcoders, max_feature_nodes=64, max_n_logits=5)
print(graph)
graph.targets

# %% [markdown]
# The targets are the model's most likely next tokens: `large` first, with probability about
# 0.24. The nodes table has one row per node: kind, layer, position, activation and
# *influence*, the share of the (probability-weighted) logits that flows through the node along
# all paths.

# %%
top_target = graph.targets.sort_values("probability").iloc[-1]
assert top_target["token"] == "large" and abs(top_target["probability"] - 0.24) < 0.03
graph.top(8)[["node_id", "layer", "position", "activation", "influence"]]

# %% [markdown]
# The most influential neurons sit at position 0 (`The`), the attention sink: they shape what
# every later token reads through attention, whatever the prompt. The prompt-specific work is at
# later positions. `contributions` gives each node's signed effect on one target: among the
# neurons that push `large` up most are late-layer neurons at the last token and a neuron at the
# position of `small`, the word being negated.

# %%
assert graph.top(1)["position"].iloc[0] == 0
supporters = graph.contributions("large").query("kind == 'feature'").head(5)
assert (supporters["position"] == graph.str_tokens.index("small")).any()
supporters[["node_id", "layer", "position", "activation", "direct", "total"]]

# %% [markdown]
# ## 2. Pruning
#
# `prune(node_threshold=0.8, edge_threshold=0.98)` keeps the nodes that together carry 80% of
# the influence on the logits and the edges that carry 98% of the edge influence; token and logit
# nodes always stay. It returns a new, smaller graph and records what it kept.

# %%
pruned = graph.prune(0.8, 0.98)
print(pruned, pruned.metadata["pruning"], sep="\n")
assert pruned.n_nodes < graph.n_nodes and len(pruned.targets) == len(graph.targets)

# %% [markdown]
# ## 3. Supernodes, and checking the circuit with interventions
#
# A supernode groups nodes that do one job. Group the five neurons that support `large` most,
# then switch them off *in the real model* (`intervene` scales their output, 0 = ablate) and
# compare each target's real logit change with the change the graph's linear edges predict.
# Both go the same way for `large` (down; its probability falls from about 0.24 to about 0.12),
# but the graph overestimates the drop about threefold, and `small` even rises in the real model.
# The graph is a linear approximation with attention and normalisation frozen; always check
# the nodes you build a story on.

# %%
grouped = graph.group(supporters["node_id"].tolist(), "supports large")
check = grouped.intervene({"supports large": 0.0}).set_index("token")
assert check.loc["large", "real_change"] < 0 and check.loc["large", "predicted_change"] < 0
assert check.loc["large", "prob_after"] < 0.2 and check.loc["large", "predicted_change"] < 2 * check.loc["large", "real_change"]
check[["real_change", "predicted_change", "prob_before", "prob_after"]].round(3)

# %% [markdown]
# Where the approximation fails is itself informative. The five most *influential* neurons at the
# last position have huge activations: ablating them lowers every target's logit by more than 3
# (they carry much of the residual stream's norm there, and the final RMSNorm, frozen in the
# graph, rescales all logits in the real model), while the graph predicts changes below 2.

# %%
last = len(graph.str_tokens) - 1
loud = graph.nodes.query("kind == 'feature' and position == @last").nlargest(5, "influence")["node_id"]
norm_check = graph.group(loud.tolist(), "loud").intervene({"loud": 0.0}).set_index("token")
assert (norm_check["real_change"] < -3).all() and abs(norm_check.loc["large", "predicted_change"]) < 2
norm_check[["real_change", "predicted_change", "prob_before", "prob_after"]].round(3)

# %% [markdown]
# The circuit view shows the pruned graph with the supernode: token positions across, layers up.
# Drag the pruning slider, hover a node for its label and activation, click it for its inputs
# and outputs, shift-click several and press *Group*.

# %%
view = iw.CircuitView(grouped, node_threshold=0.8, edge_threshold=0.98)
assert view.error == "" and "supports large" in view.graph.supernodes
view

# %% [markdown]
# ## 4. Replacement and completeness scores
#
# How much of the model does the graph explain? Two scores from the Circuit Tracing paper:
#
# - **replacement**: of all the influence that reaches the logits from the graph's sources
#   (token embeddings and error nodes), the share that starts at tokens and flows through
#   features rather than through errors;
# - **completeness**: the influence-weighted share of every node's inputs that comes from
#   explained (non-error) nodes.
#
# Counting only error nodes (`count_dropped=False`, circuit-tracer's convention), the exact
# neuron basis scores 1 on both. But the graph keeps 64 of the roughly 30 x 1536 x 8 = 368,640
# active neurons, and by default the input of the active features it left out counts as
# unexplained too: then both scores are far below 0.5. Dense neurons spread the computation over
# too many nodes for a readable graph; sparse trained transcoders concentrate it.
#
# Give only layers 15-29 a transcoder, and layers 0-14 become pure error nodes: even counting
# only errors, the replacement score collapses (almost every path from the tokens passes through
# an early MLP) and completeness drops.

# %%
exact = graph.scores(count_dropped=False)
with_dropped = graph.scores()
partial = iw.attribute(model, ANTONYM, iw.neuron_basis(model, range(15, 30)), max_feature_nodes=64,
                       max_n_logits=5).scores(count_dropped=False)
for name, sc in [("exact, errors only", exact), ("exact, left-out features count", with_dropped),
                 ("layers 15-29, errors only", partial)]:
    print(f"{name:32s}", {k: round(v, 3) for k, v in sc.items()})
assert exact["replacement"] > 0.999 and exact["completeness"] > 0.999
assert with_dropped["replacement"] < 0.5 and with_dropped["completeness"] < 0.5
assert partial["replacement"] < 0.2 and partial["completeness"] < 0.9

# %% [markdown]
# ## 5. Factual recall
#
# `The Eiffel Tower is in the city of` → ` Paris` (p about 0.66). The same tools apply: which
# nodes carry the answer, and from which positions?

# %%
eiffel = iw.attribute(model, EIFFEL, transcoders, max_feature_nodes=64, max_n_logits=5)
answer = eiffel.targets.sort_values("probability").iloc[-1]
assert answer["token"] == " Paris" and abs(answer["probability"] - 0.66) < 0.03
by_position = (eiffel.nodes.query("kind == 'feature' and position > 0")
               .groupby("position")["influence"].sum())
by_position.index = [eiffel.str_tokens[i] for i in by_position.index]
by_position.round(3)

# %% [markdown]
# ## 6. Export to Neuronpedia
#
# `to_json` writes the graph in the JSON format of Neuronpedia's attribution-graph viewer (and of
# circuit-tracer): `metadata`, `qParams` (pinned nodes, supernodes), `nodes` and `links`. Upload
# it there or share it; `AttributionGraph.from_json` reads it back, supernodes included.

# %%
data = grouped.to_json(work / "antonym.json", node_threshold=0.8, edge_threshold=0.98)
back = iw.AttributionGraph.from_json(work / "antonym.json")
print(sorted(data), len(data["nodes"]), "nodes", len(data["links"]), "links")
assert sorted(data) == ["links", "metadata", "nodes", "qParams"]
assert back.n_nodes == len(data["nodes"]) and "supports large" in back.supernodes
json.dumps(data["nodes"][0])[:300]

# %% [markdown]
# ## Exercises
#
# 1. How many nodes does `graph.prune(0.8, 0.98)` keep? (`answer_1`, an int)
# 2. In the Eiffel graph, which prompt token (after position 0) holds the most feature
#    influence? (`answer_2`, the token string)
# 3. How many error nodes does the pruned antonym graph keep? (`answer_3`, an int; why so
#    few?)
#
# Replace each `...`, run the cell, then the hidden check cell below it (it holds the solutions).

# %%
answer_1 = ...
answer_2 = ...
answer_3 = ...

# %% tags=["check"] jupyter={"source_hidden": true}
# Checks (and solutions) for the exercises.
def check_1(answer):
    assert answer == pruned.n_nodes, f"{answer!r}: pruned.n_nodes"


top_position_token = by_position.idxmax()


def check_2(answer):
    assert answer == top_position_token, f"{answer!r}: sum the feature influence per position"


kept_errors = int((pruned.nodes["kind"] == "error").sum())


def check_3(answer):
    assert answer == kept_errors, (
        f"{answer!r}: count pruned.nodes of kind 'error' (the neuron basis is exact: its errors "
        f"carry no influence, so pruning drops them)")


CHECKS = {1: (check_1, pruned.n_nodes, graph.n_nodes), 2: (check_2, top_position_token, " of" if top_position_token != " of" else " city"),
          3: (check_3, kept_errors, kept_errors + 30)}
iw.check_exercises(CHECKS, globals())

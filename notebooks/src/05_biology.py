# Source of notebooks/05_biology.ipynb: edit here, then run `python scripts/build_notebooks.py`
# (cells: `# %%` code, `# %% [markdown]` text; metadata as key=<json> after the marker).

# %% [markdown]
# # The biology of a small language model
#
# "On the Biology of a Large Language Model" (Anthropic, 2025) studied a large model's internal
# steps on factual recall, two-hop reasoning, antonyms in several languages, arithmetic and
# known versus unknown entities. Here are miniature versions on SmolLM2-135M.
#
# **You will learn**
#
# - to test a behaviour before explaining it: a circuit only makes sense for a prompt the model
#   gets right;
# - which of these behaviours a 135M model shows, and which it does not;
# - what an attribution graph shows when the model does only half the job (a two-hop question);
# - to compare the graphs of two prompts with `diff`.
#
# About two minutes on a laptop CPU. Every statement about the model is checked by an `assert`.

# %%
import interp_widgets as iw

model = iw.load_model()


def next_tokens(prompt, k=5):
    """The model's k most likely next tokens as [(token, probability)], and the entropy (nats)."""
    logits, _ = model.run_with_cache(prompt, sites=[])
    p = logits[0, -1].double().softmax(-1)
    top = p.topk(k)
    entropy = float(-(p * p.clamp_min(1e-30).log()).sum())
    return [(model.tokenizer.decode([int(i)]), round(float(v), 3)) for v, i in zip(top.values, top.indices)], entropy


def first(prompt):
    return next_tokens(prompt, k=1)[0][0]


transcoders = iw.neuron_basis(model)  # exact; see notebook 04 (the starter pack's transcoders are sparser)

# %% [markdown]
# ## 1. Factual recall: works
#
# Landmarks and capitals come out right and confidently: ` Paris` (p about 0.66) for the Eiffel
# Tower, ` Rome` (about 0.85) for the Colosseum, ` Paris` (about 0.77) for the capital of France.

# %%
recall = {"The Eiffel Tower is in the city of": (" Paris", 0.66),
          "The Colosseum is in the city of": (" Rome", 0.85),
          "The capital of France is": (" Paris", 0.77)}
for prompt, (want, p) in recall.items():
    got = first(prompt)
    print(f"{prompt!r:40} -> {got}")
    assert got[0] == want and abs(got[1] - p) < 0.03

# %% [markdown]
# ## 2. Antonyms: work in English, not in French
#
# `The opposite of "small" is "` → `large` (p about 0.24; `small` itself is second, the model
# is tempted to copy), "hot" → `cold`, "big" → `small`. The same question in French fails:
# the top answer to `Le contraire de "petit" est "` is the English word `little`, with p below
# 0.1. A 135M model trained mostly on English has the concept of an opposite in English only.

# %%
antonyms = {'The opposite of "small" is "': "large", 'The opposite of "hot" is "': "cold",
            'The opposite of "big" is "': "small"}
for prompt, want in antonyms.items():
    print(f"{prompt!r:34} -> {next_tokens(prompt, 3)[0]}")
    assert first(prompt)[0] == want
assert abs(first('The opposite of "small" is "')[1] - 0.24) < 0.03
french = next_tokens('Le contraire de "petit" est "', 3)[0]
print(f"{'Le contraire de petit':34} -> {french}")
assert french[0][0] == "little" and french[0][1] < 0.1

# %% [markdown]
# ## 3. Multilingual facts: the fact crosses languages, the antonym does not
#
# In French the Eiffel Tower is still in ` Paris` (p about 0.41). Do the two languages use the
# same internal steps? `diff` compares two graphs, matching features by (layer, neuron) across
# prompts: the English and French graphs share more influential neurons than either has alone.

# %%
EN, FR = "The Eiffel Tower is in the city of", "La tour Eiffel est dans la ville de"
assert first(FR)[0] == " Paris" and abs(first(FR)[1] - 0.41) < 0.03
g_en = iw.attribute(model, EN, transcoders, max_feature_nodes=64, max_n_logits=3)
g_fr = iw.attribute(model, FR, transcoders, max_feature_nodes=64, max_n_logits=3)
diff = g_en.diff(g_fr)
shared = diff.nodes_changed.query("kind == 'feature'")
only_en = diff.nodes_lost.query("kind == 'feature'")
only_fr = diff.nodes_gained.query("kind == 'feature'")
print(diff, f"\nfeatures: {len(shared)} shared, {len(only_en)} only English, {len(only_fr)} only French")
assert len(shared) > max(len(only_en), len(only_fr))
shared.head(8)

# %% [markdown]
# ## 4. Two hops: the first hop only
#
# `The capital of the state containing Dallas is` needs two steps: Dallas → Texas → Austin.
# The model takes the first: its top answer is ` Texas` (p about 0.17), while ` Austin` has
# p below 0.01. It *knows* the second fact on its own (`The capital of Texas is the city of` →
# ` Austin`), so what is missing is the composition. Asked for a city, it even echoes ` Dallas`.
#
# The attribution graph, built for both targets, shows the first hop: ` Texas` gets far more
# input than ` Austin`, whose logit node has little to explain. A graph explains what the model
# does, not what it should do: there is no Austin path to find.

# %%
DALLAS = "The capital of the state containing Dallas is"
dallas = next_tokens(DALLAS)[0]
print(dallas)
assert dallas[0][0] == " Texas" and abs(dallas[0][1] - 0.17) < 0.03
assert first("The capital of Texas is the city of")[0] == " Austin"
assert first("The capital of the state containing Dallas is the city of")[0] == " Dallas"
two_hop = iw.attribute(model, DALLAS, transcoders, max_feature_nodes=64, targets=[" Texas", " Austin"])
targets = two_hop.targets.set_index(two_hop.targets["token"].str.strip())
assert targets.loc["Texas", "probability"] > 0.1 > 0.01 > targets.loc["Austin", "probability"]
assert targets.loc["Texas", "value"] > targets.loc["Austin", "value"]
view = iw.CircuitView(two_hop.prune(0.8, 0.98))
view

# %% [markdown]
# ## 5. Arithmetic: not really
#
# After `2 + 3 =` the model first writes a space (p about 0.89). After `2 + 3 = ` (with the
# space) its top digit is `4`, not `5`: a 135M model does not add digits. In words it does a
# little better: `Two plus three equals` → ` five`, but with p below 0.3.

# %%
assert first("2 + 3 =")[0] == " " and abs(first("2 + 3 =")[1] - 0.89) < 0.03
digits = next_tokens("2 + 3 = ")[0]
words = next_tokens("Two plus three equals")[0]
print(digits, words, sep="\n")
assert digits[0][0] != "5" and words[0][0] == " five" and words[0][1] < 0.3

# %% [markdown]
# ## 6. Known and unknown entities
#
# The large model of the paper has a default "I don't know" behaviour that known entities switch
# off. A 135M model does not refuse, but its confidence separates the two: for a real landmark or
# person the next-token distribution is much sharper (entropy lower by more than one nat) than
# for a made-up one. Being famous is not enough: it places Barack Obama's birth state at
# ` New` (York, Jersey, ...), not Hawaii.

# %%
pairs = [("The Golden Gate Bridge is in the city of", "The Zorblat Bridge is in the city of"),
         ("Albert Einstein was a famous", "Albert Quenby was a famous"),
         ("The Eiffel Tower is in the country of", "The Varnsworth Tower is in the country of")]
for known, unknown in pairs:
    (tk, ek), (tu, eu) = next_tokens(known, 2), next_tokens(unknown, 2)
    print(f"entropy {ek:4.2f} {tk}   vs   {eu:4.2f} {tu}")
    assert ek < eu - 1
assert first("Barack Obama was born in the state of")[0] != " Hawaii"

# %% [markdown]
# ## Exercises
#
# 1. Which token does the model put first after `The capital of Texas is the city of`?
#    (`answer_1`, with its leading space)
# 2. What is the entropy (nats, 1 decimal) of the next token after
#    `The Zorblat Bridge is in the city of`? (`answer_2`, a float)
# 3. How many features do the English and French Eiffel graphs share (`diff` by feature)?
#    (`answer_3`, an int)
#
# Replace each `...`, run the cell, then the hidden check cell below it (it holds the solutions).

# %%
answer_1 = ...
answer_2 = ...
answer_3 = ...

# %% tags=["check"] jupyter={"source_hidden": true}
# Checks (and solutions) for the exercises.
capital_of_texas = first("The capital of Texas is the city of")[0]
zorblat = next_tokens("The Zorblat Bridge is in the city of")[1]


def check_1(answer):
    assert answer == capital_of_texas, f"{answer!r}: use first(prompt) or next_tokens(prompt)"


def check_2(answer):
    assert isinstance(answer, (int, float)) and abs(answer - zorblat) < 0.051, f"{answer!r}: next_tokens(prompt)[1]"


def check_3(answer):
    assert answer == len(shared), f"{answer!r}: count diff.nodes_changed rows of kind 'feature'"


CHECKS = {1: (check_1, capital_of_texas, " Dallas"), 2: (check_2, round(zorblat, 1), round(zorblat, 1) - 2),
          3: (check_3, len(shared), len(shared) + len(only_en))}
iw.check_exercises(CHECKS, globals())

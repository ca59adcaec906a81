"""Analysis: computations on a model and its dictionaries that return frozen, printable results.

Activations, logit effects, corpus scans, steering, attribution graphs, the logit lens. Imports
``dictionaries`` and ``models`` (never ``widgets``). Submodules are imported on use (this file
imports nothing, so ``import interp_widgets.analysis.<x>`` stays cheap and free of cycles).

    >>> from interp_widgets.analysis.activations import feature_activations
    >>> acts = feature_activations(model, sae, ["The Eiffel Tower is in Paris"])
    >>> acts.top_features(-1, k=5)
"""

"""Black-box search over the soft prompt: the shared ask-score-tell loop and its optimizers.

protocol.py        what an optimizer implements (BlackBoxOptimizer, SearchSetup); its fit() runs loop.py
loop.py            ask, score a generation with the one survey fitness, tell, checkpoint, resume, ranks
space.py           where the search moves: a random subspace V = V0 + A z, or the full prompt
nevergrad_base.py  adapter for nevergrad optimizers (one generation = popsize asks, then tells)
de.py              Differential Evolution, the paper's optimizer (`--optimizer DE`)
"""

"""`culturalign evaluate`: compare trained prompts with baselines, across wordings, on CDEval.

candidates.py      prompts compared: run directories + built-in baselines
generalisation.py  the wordings each prompt is asked with, and administering them
cdeval.py          CDEval two-option questions, both option orders (paper Table 1(a))
position.py        answer-position histogram ("always 1" detector)
report.py          Markdown + JSON + PNG plots of one evaluation
"""

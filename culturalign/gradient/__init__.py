"""Gradient descent on the soft prompt (`--optimizer GD`): one folder, one entry point (GD.fit).

optimizer.py    GD and its option groups (--data via tasks.DataArgs, --cv, --sweep)
tasks.py        the Task protocol and the `--data NAME` registry (CDEval, synthetic VSM13, the survey)
loop.py         cross-validation over folds, token sweep, the run's summary
fold.py         one fold: baseline, Lightning Trainer fit (resumable), best prompt, test metrics
module.py       the LightningModule (AdamW on V only) and its objectives
datamodules.py  loaders by fold (labelled data) or survey administrations
checkpoint.py   PromptCheckpoint: the best prompt in the shared checkpoint format
callback.py     the survey loss of the current prompt on training and held-out wordings
report.py       report.md tables
"""

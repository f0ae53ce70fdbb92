"""Measurements behind `culturalign bench`: one module per measurement.

- `machine`: what the numbers were measured on, and peak memory.
- `timing`: best-of-N wall time with device synchronisation.
- `gemm`: the same-dtype matmul peak the FLOP utilisation is measured against.
- `flops`: the FLOPs a survey administration must do (dense + attention).
- `survey_paths`: survey fitness throughput: paper-style generation (batched / one item at a
  time), logits without prefix reuse, and the default path (`SurveyFitness`).
- `training`: soft-prompt GD step throughput, ours against PEFT's prompt tuning.
"""

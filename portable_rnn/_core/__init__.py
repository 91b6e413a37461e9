"""The math, unchecked: every cell written once against the array API standard.

* `spec`: one `CellSpec` per cell (keys, shapes, gate orders): data only;
* `activations`: sigmoid and softmax;
* `sequence`: what the three cells share: the fused `Weights`, the `Cell` interface,
  the whole-sequence `forward` and `backward` (BPTT) over any cell;
* `rnn`, `lstm`, `gru`: each cell's step, its backward and its `Cell`;
* `stacked`: multi-layer and bidirectional stacks over any cell.

Nothing here checks its arguments (the dialects do, before calling in) or imports an
array library: ``xp`` is the inputs' namespace, and what the standard leaves to each
library comes from `portable_rnn._backend`. Nothing above this package is imported.
"""

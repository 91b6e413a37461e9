"""The column dialect (deeplearning.ai) and seed 000: the checked, documented front-ends.

A batch is columns: ``x`` is ``(n_x, m, T_x)``, states ``(n_a, m)``, parameters dicts
named as in the seed notebooks (`portable_rnn._core.spec`). Each public function checks
every argument (`portable_rnn._validate`, `checks`), then calls the unchecked math of
`portable_rnn._core`; the sequence forwards return the seeds' caches (`caches`).
Imports `_core`, `_backend` and `_validate`; nothing imports this package but the
package root.
"""

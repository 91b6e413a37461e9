"""The array seam: the only code that depends on which array library runs.

* `compat`: the one module that imports array-api-compat (namespaces, devices, names);
* `devices`: the backend table (module, pip extra), device names, dtype names, and the
  explicit moves between NumPy and each backend;
* `seam`: what the array API standard leaves to each library, one small function each
  (allocation on a device, the time loop, fused elementwise kernels, compilation);
* `steps`: the two containers of per-step values the time loop produces and consumes.

Imports only the standard library, NumPy (in `devices`) and array-api-compat (in
`compat`); nothing above this package.
"""

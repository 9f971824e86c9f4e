// Row softmax and log-softmax, y = e^{x − M}/S or (x − M) − log S (softmax.wgsl), with the
// one-workgroup-per-row kernels reducing through workgroup memory: the module for adapters
// without subgroups, or with them turned off.
//! import softmax, row_reduce_shared
//! storage f32, f16, bf16

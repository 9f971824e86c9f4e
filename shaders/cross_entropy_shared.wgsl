// Fused softmax cross-entropy, loss = −Σ_c w_c t'_c log p_c and dz = scale·(p·Σ w t' − w t')
// (cross_entropy.wgsl), with the one-workgroup-per-row kernels reducing through workgroup
// memory: the module for adapters without subgroups, or with them turned off.
//! import cross_entropy, row_reduce_shared

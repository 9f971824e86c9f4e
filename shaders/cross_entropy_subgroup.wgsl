// Fused softmax cross-entropy, loss = −Σ_c w_c t'_c log p_c and dz = scale·(p·Σ w t' − w t')
// (cross_entropy.wgsl), with the one-workgroup-per-row kernels reducing through subgroups and
// the one-subgroup-per-row kernel for class indices (cross_entropy_subgroup_rows.wgsl): the
// module for adapters with SUBGROUP.
//! import cross_entropy, cross_entropy_subgroup_rows, row_reduce_subgroup

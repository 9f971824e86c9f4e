// Row softmax and log-softmax, y = e^{x − M}/S or (x − M) − log S (softmax.wgsl), with the
// one-workgroup-per-row kernels reducing through subgroups and the one-subgroup-per-row
// kernels (softmax_subgroup_rows.wgsl): the module for adapters with SUBGROUP.
//! import softmax, softmax_subgroup_rows, row_reduce_subgroup
//! storage f32, f16, bf16

// Workgroup reductions through subgroups: workgroup_max2(v) = the lane-wise max over the
// workgroup's invocations of v, workgroup_sum2(v) = Σ v, for a pair v: a subgroup reduction,
// one slot per subgroup in workgroup memory, then every invocation folds the slots. Imported by
// a root whose kernel file declares `override WG`, on adapters with SUBGROUP. The subgroup size
// is counted (subgroupAdd(1)) rather than trusted, and subgroups are taken to be consecutive
// invocations. Call from uniform control flow only (it has barriers). NaN is never reduced
// here: kernels carry it as a flag.
//! requires subgroups

// One slot per subgroup; subgroups have at least 4 invocations and WG is at most 1024.
var<workgroup> reduce_slots: array<vec2<f32>, 256>;

fn fold_slots(v: vec2<f32>, lid: u32, is_max: bool) -> vec2<f32> {
    let size = subgroupAdd(1u);
    if subgroupExclusiveAdd(1u) == 0u {
        reduce_slots[lid / size] = v;
    }
    workgroupBarrier();
    var total = reduce_slots[0];
    for (var i = 1u; i < (WG + size - 1u) / size; i++) {
        if is_max {
            total = max(total, reduce_slots[i]);
        } else {
            total += reduce_slots[i];
        }
    }
    workgroupBarrier();
    return total;
}

fn workgroup_max2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    return fold_slots(subgroupMax(v), lid, true);
}

fn workgroup_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    return fold_slots(subgroupAdd(v), lid, false);
}

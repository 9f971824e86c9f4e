// Fused cross-entropy with class indices, one subgroup per row, the row read from device
// memory once and held in registers (row_cache.wgsl): M = subgroupMax, then e = e^{z − M}
// computed once and kept while the loss sums are taken (subgroupAdd), then the gradient
// written from e/S. The formulas are the other cross-entropy kernels' (index_sums, index_grad,
// index_loss), arranged so that the common case (no label smoothing) costs least per
// element. Imported with cross_entropy.wgsl by cross_entropy_subgroup.wgsl, on adapters with
// SUBGROUP, for K ≤ 4·S·LANE_VEC4S classes with K and base divisible by 4.
//! import row_cache

// The vec4 row_cache.wgsl's `load_part` reads.
fn row_load(i: u32) -> vec4<f32> {
    return z4[i];
}

// e = e^{z − M} in place of z over part h, and that part's Σ e over the elements below M
// (`rest`), count of elements equal to M (`maxima`) and Σ (z − M) (the row's NaN verdict,
// online_softmax.wgsl's `row_nan`). Slots past the row's end hold −∞ and add e = 0 to `rest`.
fn exp_sums_part(c: ptr<function, Part>, h: u32, m: f32) -> vec3<f32> {
    var rest = vec4(0.0);
    var maxima = vec4(0.0);
    var t = vec4(0.0);
    for (var k = 0u; k < part_count(h); k++) {
        let d = (*c)[k] - m;
        let e = exp(d);
        let at_max = at_row_max(d);
        rest += select(e, vec4(0.0), at_max);
        maxima += select(vec4(0.0), vec4(1.0), at_max);
        t += d;
        (*c)[k] = e;
    }
    return vec3(hsum(rest), hsum(maxima), hsum(t));
}

// Σ_c w_c (z_c − M) over part h (label smoothing), before z is replaced by e.
fn smoothing_sum_part(c: ptr<function, Part>, h: u32, m: f32, s: LaneSpan) -> f32 {
    var weighted = vec4(0.0);
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        weighted += select(vec4(0.0), weights_vec4(j) * ((*c)[k] - m), vec4(j < s.n));
    }
    return hsum(weighted);
}

// Writes the gradient of part h from e = e^{z − M} without label smoothing:
// dz = a·e/S − a·[c = y] with a = scale·w_y (index_grad's formula with ε = 0), the one-hot
// term added only in the vec4 that holds class y.
fn store_grad_part(c: ptr<function, Part>, h: u32, s: LaneSpan, y: u32, w_y: f32, inv_s: f32) {
    let a = p.scale * w_y;
    let a_inv_s = a * inv_s;
    let hit = one_hot_term(y, a);
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        if j < s.n {
            put_dz4(s.b + j, (*c)[k] * a_inv_s - select(vec4(0.0), hit, j == y / 4u));
        }
    }
}

// The same with label smoothing, through index_grad.
fn store_smoothed_grad_part(c: ptr<function, Part>, h: u32, s: LaneSpan, y: u32, w_y: f32,
                            inv_s: f32) {
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        if j < s.n {
            put_dz4(s.b + j, index_grad((*c)[k] * inv_s, classes(4u * j), weights_vec4(j), y, w_y));
        }
    }
}

// Writes `v` over part h's slots (an ignored row's zeros, a NaN row's NaNs).
fn store_fill_part(h: u32, s: LaneSpan, v: f32) {
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        if j < s.n {
            put_dz4(s.b + j, vec4(v));
        }
    }
}

@compute @workgroup_size(WG)
fn index_subgroup_rows(ids: SubgroupIds) {
    // Every lane runs every subgroup operation (no return on NO_ROW or an ignored row, which
    // a compiler cannot prove uniform); a lane past the rows has an empty span and stores
    // nothing, and an ignored row (IGNORED, also a stand-in for NO_ROW) stores zeros.
    let r = subgroup_row(ids);
    let span = lane_span(ids, r, p.base + r * p.cols, p.cols);
    var y = IGNORED;
    if r != NO_ROW {
        y = class_index[p.row0 + r];
    }
    var c0: Part;
    var c1: Part;
    var c2: Part;
    var c3: Part;
    let m = load_row(&c0, &c1, &c2, &c3, span);
    // z_y − M, read before the gradient may overwrite the logits (in place).
    var z_y = 0.0;
    if y != IGNORED {
        z_y = z4[span.b + y / 4u][y % 4u];
    }
    var sums = Sums(0.0, 0.0, z_y - m, 0.0);
    if SMOOTHING {
        sums.weighted = subgroupAdd((smoothing_sum_part(&c0, 0u, m, span) + smoothing_sum_part(&c1, 1u, m, span))
                                    + (smoothing_sum_part(&c2, 2u, m, span) + smoothing_sum_part(&c3, 3u, m, span)));
    }
    let part = subgroupAdd((exp_sums_part(&c0, 0u, m) + exp_sums_part(&c1, 1u, m))
                           + (exp_sums_part(&c2, 2u, m) + exp_sums_part(&c3, 3u, m)));
    sums.rest = part.x;
    sums.maxima = part.y;
    let w_y = weight_of_vec4(y);
    // A NaN row: a NaN or +∞ in it, or nothing but −∞ (row_nan, by the bits of Σ (z − M)).
    let s = sums.rest + sums.maxima;
    let nan_row = row_nan(part.z);
    let inv_s = 1.0 / select(s, 1.0, nan_row);
    // One branch per row (no subgroup operation below): an ignored or NaN row is filled.
    if y == IGNORED || nan_row {
        let fill = row_value(0.0, y == IGNORED, true);
        store_fill_part(0u, span, fill);
        store_fill_part(1u, span, fill);
        store_fill_part(2u, span, fill);
        store_fill_part(3u, span, fill);
    } else if SMOOTHING {
        store_smoothed_grad_part(&c0, 0u, span, y, w_y, inv_s);
        store_smoothed_grad_part(&c1, 1u, span, y, w_y, inv_s);
        store_smoothed_grad_part(&c2, 2u, span, y, w_y, inv_s);
        store_smoothed_grad_part(&c3, 3u, span, y, w_y, inv_s);
    } else {
        store_grad_part(&c0, 0u, span, y, w_y, inv_s);
        store_grad_part(&c1, 1u, span, y, w_y, inv_s);
        store_grad_part(&c2, 2u, span, y, w_y, inv_s);
        store_grad_part(&c3, 3u, span, y, w_y, inv_s);
    }
    if ids.lane == 0u && r != NO_ROW {
        row_loss[p.row0 + r] = row_value(index_loss(sums, w_y), y == IGNORED, nan_row);
    }
}

// Softmax and log-softmax with one subgroup per row, each input row read from device memory
// once and held in registers (row_cache.wgsl). Forward: M = subgroupMax of the lanes' maxima,
// then e = e^{x − M} is computed once, kept and summed (S = subgroupAdd), and y = e / S (or
// (x − M) − log S) written. Backward: y and g are held, d = subgroupAdd of the row sum, and
// dx = y ⊙ (g − d) (or g − e^y·d) written. Imported with softmax.wgsl by softmax_subgroup.wgsl, on adapters
// with SUBGROUP, for rows of cols ≤ 4·S·LANE_VEC4S floats with cols and base divisible by 4.
// Slots past the row's end hold −∞ and add e = 0; NaN, +∞ and all-−∞ rows come out NaN, by
// bits, as in the online kernels.
//! import row_cache

// The vec4 row_cache.wgsl's `load_part` reads.
fn row_load(i: u32) -> vec4<f32> {
    return load4(x4[i]);
}

// ---- forward ----

// Σ e^{x − M} over part h; keeps e in place of x for softmax, x − M for log-softmax (so that
// its output is (x − M) − log S: x − (M + log S) would round the sum to the ulp of M, 1e-3 at
// M = 1e4).
// Returns (Σ e, Σ (x − M)), the second the row's NaN verdict (online_softmax.wgsl, `row_nan`).
fn exp_part(c: ptr<function, Part>, h: u32, m: f32) -> vec2<f32> {
    var s = 0.0;
    var t = vec4(0.0);
    for (var k = 0u; k < part_count(h); k++) {
        let v = (*c)[k];
        let d = v - m;
        let e = exp(d);
        s += hsum(e);
        t += d;
        if LOG {
            (*c)[k] = select(d, vec4(neg_inf()), is_neg_inf4(v));
        } else {
            (*c)[k] = e;
        }
    }
    return vec2(s, hsum(t));
}

// Writes part h: e·k for softmax (k = 1/S), (x − M) − k for log-softmax (k = log S); NaN for
// a NaN row.
fn store_part(c: ptr<function, Part>, h: u32, s: LaneSpan, n: Norm) {
    for (var i = 0u; i < part_count(h); i++) {
        let j = cached_index(h, i, s);
        if j < s.n {
            var y: vec4<f32>;
            if LOG {
                y = (*c)[i] - n.k;
            } else {
                y = (*c)[i] * n.k;
            }
            y4[s.b + j] = store4(select(y, vec4(nan_f32()), n.nan_row));
        }
    }
}

@compute @workgroup_size(WG)
fn forward_subgroup_rows(ids: SubgroupIds) {
    let r = subgroup_row(ids);
    let span = lane_span(ids, r, row_start(r), p.cols);
    var c0: Part;
    var c1: Part;
    var c2: Part;
    var c3: Part;
    let m = load_row(&c0, &c1, &c2, &c3, span);
    let st = subgroupAdd((exp_part(&c0, 0u, m) + exp_part(&c1, 1u, m))
                         + (exp_part(&c2, 2u, m) + exp_part(&c3, 3u, m)));
    let n = finish(online_marked(m, st.x, row_nan(st.y)));
    store_part(&c0, 0u, span, n);
    store_part(&c1, 1u, span, n);
    store_part(&c2, 2u, span, n);
    store_part(&c3, 3u, span, n);
}

// ---- backward: dx = y ⊙ (g − Σ g·y) (softmax) or g − e^y·Σ g (log-softmax) ----

// Loads part h of the saved output y (bound as x4) and of the gradient g, 0 past the row's
// end, and returns that part's share of the row sum (dot_term).
fn load_backward_part(yc: ptr<function, Part>, gc: ptr<function, Part>, h: u32, s: LaneSpan)
    -> f32 {
    var d = 0.0;
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        (*yc)[k] = vec4(0.0);
        (*gc)[k] = vec4(0.0);
        if j < s.n {
            (*yc)[k] = load4(x4[s.b + j]);
            (*gc)[k] = load4(g4[s.b + j]);
        }
        d += dot_term((*yc)[k], (*gc)[k]);
    }
    return d;
}

fn store_backward_part(yc: ptr<function, Part>, gc: ptr<function, Part>, h: u32, s: LaneSpan,
                       d: f32) {
    for (var k = 0u; k < part_count(h); k++) {
        let j = cached_index(h, k, s);
        if j < s.n {
            y4[s.b + j] = store4(grad((*yc)[k], (*gc)[k], d, is_nan1(d)));
        }
    }
}

@compute @workgroup_size(WG)
fn backward_subgroup_rows(ids: SubgroupIds) {
    let r = subgroup_row(ids);
    let span = lane_span(ids, r, row_start(r), p.cols);
    var y0: Part;
    var y1: Part;
    var y2: Part;
    var y3: Part;
    var g0: Part;
    var g1: Part;
    var g2: Part;
    var g3: Part;
    let d = subgroupAdd((load_backward_part(&y0, &g0, 0u, span) + load_backward_part(&y1, &g1, 1u, span))
                        + (load_backward_part(&y2, &g2, 2u, span) + load_backward_part(&y3, &g3, 3u, span)));
    store_backward_part(&y0, &g0, 0u, span, d);
    store_backward_part(&y1, &g1, 1u, span, d);
    store_backward_part(&y2, &g2, 2u, span, d);
    store_backward_part(&y3, &g3, 3u, span, d);
}

// The launch grid. A launch of G workgroups of WG invocations is laid out as nwg.x × nwg.y
// groups, both within the adapter's per-dimension limit (src/layout.rs, `grid`), and indexed
// linearly:
//   group       g = wid.y·nwg.x + wid.x
//   invocation  i = g·WG + lid
//   grid stride s = nwg.x·nwg.y·WG, every invocation of the launch (a grid-stride loop visits
//               i, i + s, i + 2s, …)
// The importing file declares WG (an override or a constant). A launch may hold a few groups
// past the G asked for; kernels skip indices past their work.

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn invocation_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * WG + lid;
}

fn grid_stride(nwg: vec3<u32>) -> u32 {
    return nwg.x * nwg.y * WG;
}

//! Mutation property test: valid saved modules are damaged (bit flips, truncation at every
//! section boundary, oversized lengths, swapped dtypes, shapes that overflow usize, kernels
//! with out-of-range indices, dangling references, region tables with out-of-range region
//! ids, parents after children, dangling parameters and results, nesting past the limit,
//! graph-op attributes of the wrong kind, missing or out of bounds)
//! and loading must fail with a clean one-line error every time — never a panic, an abort,
//! a hang or an out-of-bounds access.
//!
//! Cases: `PROPTEST_CASES` (default 2000).

use crate::common;

use common::*;
use kiln_format::v1::{
    AttrV5, BodyV1, DTypeV1, ExprV1, HeaderV1, IndexNodeV1, IndexV1, KernelV1, LoadModeV1, NodeV1,
    OpV5, RegionV3, SliceAxisV1,
};
use kiln_format::{from_bytes, layout, to_bytes};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

/// Valid saved modules to damage.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = vec![
            to_bytes(&every_construct_module()).unwrap(),
            to_bytes(&interpreter_module()).unwrap(),
            to_bytes(&control_flow_module()).unwrap(),
            to_bytes(&debug_table_module()).unwrap(),
        ];
        for text in [
            include_str!("../../../fixtures/filetests/kernel/conv2d_padded_relu.kir"),
            include_str!("../../../fixtures/filetests/kernel/layer_norm_stats.kir"),
            include_str!("../../../fixtures/filetests/kernel/sgd_in_place.kir"),
        ] {
            let p = kiln_kernel::verify(kiln_kernel::parse(text).unwrap()).unwrap();
            out.push(to_bytes(&module_around(p).unwrap()).unwrap());
        }
        for s in &out {
            assert!(from_bytes(s).is_ok());
        }
        out
    })
}

/// Byte offsets where one section of a file ends and the next begins.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let parts = layout::split(bytes).unwrap();
    let header = header_of(bytes);
    let d0 = parts.data_offset as usize;
    let mut b = vec![0, 4, 8, 12, 16, 24, 32, 40, 40 + parts.header.len(), d0];
    let mut refs = Vec::new();
    refs.extend(header.state.iter().map(|s| s.tensor.clone()));
    let region_nodes = header.graph.regions.iter().flat_map(|r| &r.nodes);
    for n in header.graph.nodes.iter().chain(region_nodes) {
        if let OpV5::Constant(r) = &n.op {
            refs.push(r.clone());
        }
    }
    for r in refs {
        b.push(d0 + r.offset as usize);
        b.push(d0 + (r.offset + r.len) as usize);
    }
    b.extend([bytes.len() - 4, bytes.len() - 1]);
    b.retain(|&x| x < bytes.len());
    b.sort_unstable();
    b.dedup();
    b
}

/// A damage that must make loading fail.
#[derive(Clone, Debug)]
enum Structured {
    StateLen(u64),
    StateOffsetPastEnd(u64),
    StateOffsetUnaligned(u64),
    StateShapeOverflow(u8),
    SwapStateDType(u8),
    SwapNodeDType(u8),
    SwapSignatureDType(u8),
    NodeShapeOverflow(u8),
    NodeExtraAxis,
    NodeOperandDangling(u32),
    NodeAxisOutOfRange(u64),
    ConstantLen(u64),
    KernelIndexOutOfRange(u64),
    KernelBufferOutOfRange(u32),
    KernelVarOutOfRange(u32),
    KernelValueForward,
    OutputDangling(u32),
    DropSymbol,
    UndeclaredSymbolInShape,
    RegionIdOutOfRange(u32),
    RegionParentForward(u32),
    RegionResultDangling(u32),
    RegionParamDangling(u32),
    RegionNestedTooDeep,
    SwapRegionNodeDType(u8),
    RegionNodeOperandDangling(u32),
    AttrKindSwapped(u8),
    AttrDropped,
    AttrOutOfBounds(u64),
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Flip bits at distinct positions without fixing the checksum.
    Flip(BTreeMap<usize, u8>),
    /// Truncate at a section boundary, optionally re-sealing the checksum.
    TruncateAtBoundary(usize, bool),
    /// Truncate anywhere.
    Truncate(usize),
    /// Set a preamble length field to an oversized value, re-sealing the checksum.
    Oversize(usize, u64),
    /// A structural damage applied to the decoded header, re-encoded and re-sealed.
    Structured(Structured, usize),
    /// Flip bits and fix the checksum: loading may succeed (a flipped weight is still a
    /// valid module), but must never panic, and a module that loads must round-trip.
    FlipResealed(BTreeMap<usize, u8>),
}

fn flips() -> impl Strategy<Value = BTreeMap<usize, u8>> {
    proptest::collection::btree_map(any::<usize>(), 1u8..=255, 1..5)
}

fn structured() -> impl Strategy<Value = Structured> {
    prop_oneof![
        (1u64..u64::MAX).prop_map(Structured::StateLen),
        any::<u64>().prop_map(Structured::StateOffsetPastEnd),
        (1u64..64).prop_map(Structured::StateOffsetUnaligned),
        any::<u8>().prop_map(Structured::StateShapeOverflow),
        (1u8..6).prop_map(Structured::SwapStateDType),
        (1u8..6).prop_map(Structured::SwapNodeDType),
        (1u8..6).prop_map(Structured::SwapSignatureDType),
        any::<u8>().prop_map(Structured::NodeShapeOverflow),
        Just(Structured::NodeExtraAxis),
        (2_000_000u32..u32::MAX).prop_map(Structured::NodeOperandDangling),
        (40u64..u64::MAX).prop_map(Structured::NodeAxisOutOfRange),
        (1u64..u64::MAX).prop_map(Structured::ConstantLen),
        (1u64 << 40..=1u64 << 40).prop_map(Structured::KernelIndexOutOfRange),
        (100_000u32..u32::MAX).prop_map(Structured::KernelBufferOutOfRange),
        (16u32..u32::MAX).prop_map(Structured::KernelVarOutOfRange),
        Just(Structured::KernelValueForward),
        (2_000_000u32..u32::MAX).prop_map(Structured::OutputDangling),
        Just(Structured::DropSymbol),
        Just(Structured::UndeclaredSymbolInShape),
        (100u32..u32::MAX).prop_map(Structured::RegionIdOutOfRange),
        (1u32..1000).prop_map(Structured::RegionParentForward),
        (100_000u32..u32::MAX).prop_map(Structured::RegionResultDangling),
        (100_000u32..u32::MAX).prop_map(Structured::RegionParamDangling),
        Just(Structured::RegionNestedTooDeep),
        (1u8..6).prop_map(Structured::SwapRegionNodeDType),
        (100_000u32..u32::MAX).prop_map(Structured::RegionNodeOperandDangling),
        any::<u8>().prop_map(Structured::AttrKindSwapped),
        Just(Structured::AttrDropped),
        ((1u64 << 40) + 1..u64::MAX).prop_map(Structured::AttrOutOfBounds),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => flips().prop_map(Mutation::Flip),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, r)| Mutation::TruncateAtBoundary(i, r)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (0usize..3, prop_oneof![Just(u64::MAX), Just(1u64 << 63), (1u64 << 25..1u64 << 62)])
            .prop_map(|(f, v)| Mutation::Oversize(f, v)),
        6 => (structured(), any::<usize>()).prop_map(|(s, i)| Mutation::Structured(s, i)),
        2 => flips().prop_map(Mutation::FlipResealed),
    ]
}

fn dtype_shifted(d: DTypeV1, by: u8) -> DTypeV1 {
    const ALL: [DTypeV1; 6] = [
        DTypeV1::F32,
        DTypeV1::F64,
        DTypeV1::I32,
        DTypeV1::I64,
        DTypeV1::U32,
        DTypeV1::Bool,
    ];
    let i = ALL.iter().position(|&x| x == d).unwrap_or(0);
    ALL[(i + by as usize) % ALL.len()]
}

fn overflowing_dim(k: u8) -> String {
    [
        "18446744073709551616",
        "18446744073709551615",
        "1099511627777",
        "N^9",
        "N*99999999999999999999",
        "4294967296*N",
        "",
        "N+",
        "N N",
    ][k as usize % 9]
        .to_string()
}

fn bodies(k: &mut KernelV1) -> Vec<&mut BodyV1> {
    match k {
        KernelV1::Loop { body, .. } => vec![body],
        KernelV1::Matmul { a, b, epilogue, .. } => vec![a, b, epilogue],
        KernelV1::Conv2d {
            input,
            weight,
            epilogue,
            ..
        } => vec![input, weight, epilogue],
    }
}

/// Every proven access (plain or masked load, store) of the plan: its buffer and index.
fn accesses(h: &mut HeaderV1) -> Vec<(&mut u32, &mut IndexV1)> {
    let mut out = Vec::new();
    if let Some(p) = &mut h.program {
        for k in &mut p.kernels {
            for body in bodies(k) {
                for v in &mut body.values {
                    if let ExprV1::Load(l) = v
                        && !matches!(l.mode, LoadModeV1::Checked)
                    {
                        out.push((&mut l.buffer, &mut l.index));
                    }
                }
                for s in &mut body.stores {
                    out.push((&mut s.buffer, &mut s.index));
                }
            }
        }
    }
    out
}

/// The region fields of every control-flow op, in the top-level graph and every region.
fn region_refs(h: &mut HeaderV1) -> Vec<&mut u32> {
    let region_nodes = h.graph.regions.iter_mut().flat_map(|r| &mut r.nodes);
    let mut out = Vec::new();
    for n in h.graph.nodes.iter_mut().chain(region_nodes) {
        for a in attrs_mut(&mut n.op) {
            if let AttrV5::Region(r) = a {
                out.push(r);
            }
        }
    }
    out
}

/// The attribute values of a version 5 op (none for a constant).
fn attrs_mut(op: &mut OpV5) -> &mut [AttrV5] {
    match op {
        OpV5::Op { attrs, .. } => attrs,
        OpV5::Constant(_) => &mut [],
    }
}

/// The attribute lists of every node with attributes, in the top-level graph and every
/// region.
fn attr_lists(h: &mut HeaderV1) -> Vec<&mut Vec<AttrV5>> {
    let region_nodes = h.graph.regions.iter_mut().flat_map(|r| &mut r.nodes);
    h.graph
        .nodes
        .iter_mut()
        .chain(region_nodes)
        .filter_map(|n| match &mut n.op {
            OpV5::Op { attrs, .. } if !attrs.is_empty() => Some(attrs),
            _ => None,
        })
        .collect()
}

/// One value of every attribute kind.
fn one_of_each_kind() -> Vec<AttrV5> {
    vec![
        AttrV5::Axis(0),
        AttrV5::Axes(vec![0]),
        AttrV5::Count(1),
        AttrV5::Size(1),
        AttrV5::Sizes(vec![1]),
        AttrV5::Pairs(vec![(0, 1)]),
        AttrV5::Factor(1),
        AttrV5::Hw([1, 1]),
        AttrV5::Bool(false),
        AttrV5::Float(0),
        AttrV5::DType(DTypeV1::F32),
        AttrV5::Shape(vec!["2".into()]),
        AttrV5::Type(DTypeV1::F32, vec!["2".into()]),
        AttrV5::Dim("2".into()),
        AttrV5::Name("x".into()),
        AttrV5::Region(0),
        AttrV5::Slices(vec![SliceAxisV1 {
            start: 0,
            stop: 1,
            step: 1,
        }]),
    ]
}

/// The node `pick` of all region bodies together, if there are any.
fn region_node(h: &mut HeaderV1, pick: usize) -> Option<&mut NodeV1> {
    let n = h.graph.regions.iter().map(|r| r.nodes.len()).sum::<usize>();
    h.graph
        .regions
        .iter_mut()
        .flat_map(|r| &mut r.nodes)
        .nth(pick % n.max(1))
}

/// Applies a structural damage; `false` if the header has nothing it applies to.
fn damage(h: &mut HeaderV1, data_len: u64, s: &Structured, pick: usize) -> bool {
    let ns = h.state.len().max(1);
    let nn = h.graph.nodes.len().max(1);
    match s {
        Structured::StateLen(d) => match h.state.get_mut(pick % ns) {
            Some(e) => {
                e.tensor.len = e.tensor.len.wrapping_add(*d);
                true
            }
            None => false,
        },
        Structured::StateOffsetPastEnd(d) => match h.state.get_mut(pick % ns) {
            Some(e) if e.tensor.len > 0 => {
                e.tensor.offset = data_len.saturating_add(d.saturating_mul(64)) / 64 * 64;
                true
            }
            _ => false,
        },
        Structured::StateOffsetUnaligned(d) => match h.state.get_mut(pick % ns) {
            Some(e) => {
                e.tensor.offset += d;
                true
            }
            None => false,
        },
        Structured::StateShapeOverflow(k) => match h.state.get_mut(pick % ns) {
            Some(e) => {
                e.tensor.shape = match k % 4 {
                    0 => vec![u64::MAX],
                    1 => vec![1 << 32, 1 << 32, 1 << 32],
                    2 => vec![1 << 40, 1 << 40],
                    _ => vec![1; 40],
                };
                true
            }
            None => false,
        },
        Structured::SwapStateDType(by) => match h.state.get_mut(pick % ns) {
            Some(e) => {
                e.tensor.dtype = dtype_shifted(e.tensor.dtype, *by);
                true
            }
            None => false,
        },
        Structured::SwapNodeDType(by) => {
            let n = &mut h.graph.nodes[pick % nn];
            n.dtype = dtype_shifted(n.dtype, *by);
            true
        }
        Structured::SwapSignatureDType(by) => {
            let specs: Vec<_> = h
                .signature
                .inputs
                .iter_mut()
                .chain(h.signature.outputs.iter_mut())
                .collect();
            let len = specs.len();
            match specs.into_iter().nth(pick % len.max(1)) {
                Some(t) => {
                    t.dtype = dtype_shifted(t.dtype, *by);
                    true
                }
                None => false,
            }
        }
        Structured::NodeShapeOverflow(k) => {
            let n = &mut h.graph.nodes[pick % nn];
            match n.shape.first_mut() {
                Some(d) => {
                    *d = overflowing_dim(*k);
                    true
                }
                None => {
                    n.shape.push(overflowing_dim(*k));
                    true
                }
            }
        }
        Structured::NodeExtraAxis => {
            h.graph.nodes[pick % nn].shape.push("3".to_string());
            true
        }
        Structured::NodeOperandDangling(id) => {
            let n = &mut h.graph.nodes[pick % nn];
            n.operands.push(*id);
            true
        }
        Structured::NodeAxisOutOfRange(a) => {
            let target = h.graph.nodes.iter_mut().find_map(|n| {
                attrs_mut(&mut n.op).iter_mut().find_map(|a| match a {
                    AttrV5::Axis(axis) => Some(axis),
                    _ => None,
                })
            });
            match target {
                Some(axis) => {
                    *axis = *a;
                    true
                }
                None => false,
            }
        }
        Structured::ConstantLen(d) => {
            let target = h.graph.nodes.iter_mut().find_map(|n| match &mut n.op {
                OpV5::Constant(r) => Some(r),
                _ => None,
            });
            match target {
                Some(r) => {
                    r.len = r.len.wrapping_add(*d);
                    true
                }
                None => false,
            }
        }
        Structured::KernelIndexOutOfRange(c) => {
            let mut acc = accesses(h);
            let n = acc.len();
            match acc.get_mut(pick % n.max(1)) {
                Some((_, index)) => {
                    let root = (index.len() - 1) as u32;
                    index.push(IndexNodeV1::Dim(c.to_string()));
                    index.push(IndexNodeV1::Add(root, root + 1));
                    true
                }
                None => false,
            }
        }
        Structured::KernelBufferOutOfRange(b) => {
            let mut acc = accesses(h);
            let n = acc.len();
            match acc.get_mut(pick % n.max(1)) {
                Some((buffer, _)) => {
                    **buffer = *b;
                    true
                }
                None => false,
            }
        }
        Structured::KernelVarOutOfRange(v) => {
            let mut acc = accesses(h);
            let n = acc.len();
            match acc.get_mut(pick % n.max(1)) {
                Some((_, index)) => {
                    **index = vec![IndexNodeV1::Var(*v)];
                    true
                }
                None => false,
            }
        }
        Structured::KernelValueForward => {
            let Some(p) = &mut h.program else {
                return false;
            };
            let nk = p.kernels.len().max(1);
            let Some(k) = p.kernels.get_mut(pick % nk) else {
                return false;
            };
            let body = bodies(k).into_iter().last();
            match body.and_then(|b| b.stores.first_mut().map(|s| (s, b.values.len()))) {
                Some((s, len)) => {
                    s.value = len as u32 + 5;
                    true
                }
                None => false,
            }
        }
        Structured::OutputDangling(id) => {
            let no = h.outputs.len().max(1);
            match h.outputs.get_mut(pick % no) {
                Some(o) => {
                    o.node = *id;
                    true
                }
                None => false,
            }
        }
        Structured::DropSymbol => {
            if h.signature.symbols.is_empty() {
                return false;
            }
            h.signature.symbols.remove(pick % h.signature.symbols.len());
            true
        }
        Structured::UndeclaredSymbolInShape => {
            let n = &mut h.graph.nodes[pick % nn];
            n.shape.push("Undeclared".to_string());
            true
        }
        Structured::RegionIdOutOfRange(id) => {
            let mut refs = region_refs(h);
            let n = refs.len();
            match refs.get_mut(pick % n.max(1)) {
                Some(r) => {
                    **r = *id;
                    true
                }
                None => false,
            }
        }
        Structured::RegionParentForward(d) => {
            let nr = h.graph.regions.len();
            match h.graph.regions.get_mut(pick % nr.max(1)) {
                Some(r) => {
                    r.parent = ((pick % nr.max(1)) as u32).saturating_add(*d);
                    true
                }
                None => false,
            }
        }
        Structured::RegionResultDangling(id) | Structured::RegionParamDangling(id) => {
            let nr = h.graph.regions.len();
            match h.graph.regions.get_mut(pick % nr.max(1)) {
                Some(r) if matches!(s, Structured::RegionResultDangling(_)) => {
                    r.results.push(*id);
                    true
                }
                Some(r) => {
                    r.params.push(*id);
                    true
                }
                None => false,
            }
        }
        Structured::RegionNestedTooDeep => {
            if h.graph.regions.is_empty() {
                return false;
            }
            let first = h.graph.regions.len() as u32;
            for k in 0..40 {
                h.graph.regions.push(RegionV3 {
                    parent: if k == 0 { 0 } else { first + k },
                    nodes: vec![],
                    params: vec![],
                    results: vec![],
                });
            }
            true
        }
        Structured::SwapRegionNodeDType(by) => match region_node(h, pick) {
            Some(n) => {
                n.dtype = dtype_shifted(n.dtype, *by);
                true
            }
            None => false,
        },
        Structured::RegionNodeOperandDangling(id) => match region_node(h, pick) {
            Some(n) => {
                n.operands.push(*id);
                true
            }
            None => false,
        },
        Structured::AttrKindSwapped(k) => {
            let mut lists = attr_lists(h);
            let n = lists.len();
            let Some(attrs) = lists.get_mut(pick % n.max(1)) else {
                return false;
            };
            let i = pick % attrs.len();
            let kinds = one_of_each_kind();
            let old = std::mem::discriminant(&attrs[i]);
            let mut other = kinds[*k as usize % kinds.len()].clone();
            if std::mem::discriminant(&other) == old {
                other = kinds[(*k as usize + 1) % kinds.len()].clone();
            }
            attrs[i] = other;
            true
        }
        Structured::AttrDropped => {
            let mut lists = attr_lists(h);
            let n = lists.len();
            match lists.get_mut(pick % n.max(1)) {
                Some(attrs) => {
                    attrs.pop();
                    true
                }
                None => false,
            }
        }
        Structured::AttrOutOfBounds(v) => {
            let target = attr_lists(h).into_iter().flatten().find_map(|a| match a {
                AttrV5::Count(c) | AttrV5::Size(c) | AttrV5::Factor(c) => Some(c),
                AttrV5::Hw([c, _]) => Some(c),
                AttrV5::Pairs(p) if !p.is_empty() => Some(&mut p[0].1),
                _ => None,
            });
            match target {
                Some(c) => {
                    *c = *v;
                    true
                }
                None => false,
            }
        }
    }
}

/// The damaged bytes and whether loading them must fail.
fn apply(seed: &[u8], m: &Mutation) -> (Vec<u8>, bool) {
    match m {
        Mutation::Flip(f) => {
            let mut b = seed.to_vec();
            let mut hit = BTreeMap::new();
            for (&pos, &mask) in f {
                *hit.entry(pos % b.len()).or_insert(0u8) ^= mask;
            }
            hit.retain(|_, m| *m != 0);
            for (&pos, &mask) in &hit {
                b[pos] ^= mask;
            }
            let changed = !hit.is_empty();
            (b, changed)
        }
        Mutation::TruncateAtBoundary(i, reseal) => {
            let bs = boundaries(seed);
            let mut b = seed[..bs[i % bs.len()]].to_vec();
            if *reseal {
                layout::reseal(&mut b);
            }
            (b, true)
        }
        Mutation::Truncate(i) => (seed[..i % seed.len()].to_vec(), true),
        Mutation::Oversize(field, v) => {
            let mut b = seed.to_vec();
            let at = 16 + 8 * field;
            let old = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            layout::reseal(&mut b);
            (b, *v != old)
        }
        Mutation::Structured(s, pick) => {
            let data_len = layout::split(seed).unwrap().data.len() as u64;
            let mut applied = false;
            let b = rewrite(seed, |h, _| {
                applied = damage(h, data_len, s, *pick);
                if !applied {
                    // Nothing to damage of this kind: damage the first node's id instead.
                    h.graph.nodes[0].id = u32::MAX;
                }
            });
            (b, true)
        }
        Mutation::FlipResealed(f) => {
            let mut b = seed.to_vec();
            for (&pos, &mask) in f {
                let end = b.len() - 4;
                b[pos % end] ^= mask;
            }
            layout::reseal(&mut b);
            (b, false)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_modules_fail_cleanly(seed in 0usize..7, m in mutation()) {
        let seed = &seeds()[seed];
        let (bytes, must_fail) = apply(seed, &m);
        match from_bytes(&bytes) {
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.is_empty());
                prop_assert!(!text.contains('\n'), "multi-line message: {}", text);
            }
            Ok(module) => {
                prop_assert!(!must_fail, "damaged module loaded: {:?}", m);
                let again = to_bytes(&module);
                prop_assert!(again.is_ok(), "loaded module does not encode: {:?}", again.err());
                let again = again.unwrap_or_default();
                prop_assert!(from_bytes(&again).is_ok());
            }
        }
    }
}

#[test]
fn truncation_at_every_boundary_of_every_seed_fails() {
    for seed in seeds() {
        for b in boundaries(seed) {
            for reseal in [false, true] {
                let mut bytes = seed[..b].to_vec();
                if reseal {
                    layout::reseal(&mut bytes);
                }
                let e = from_bytes(&bytes).err();
                assert!(e.is_some(), "truncation at {b} (reseal {reseal}) loaded");
            }
        }
    }
}

//! Graphs with control flow (`cond`, `scan`, `while`, `get`, nested regions) in `.kiln`
//! files: they round-trip to the same text form and the same interpreter results, and
//! hostile region tables (out-of-range region ids, dangling parameters and results,
//! parents after their children, nesting past the limit, too many regions, shared bodies
//! that multiply the verifier's work, control flow in an older version's file) are refused
//! with one-line errors.
//!
//! The modules here have no kernel plan (the plan cannot express control flow yet): the
//! graph section is what carries the regions, and an interpreter-only module is a complete
//! `.kiln` file.

use crate::common;

use common::*;
use kiln_format::limits::{MAX_REGION_DEPTH, MAX_REGIONS, MAX_VERIFY_WORK};
use kiln_format::v1::{AttrV5, HeaderV1, NamedV2, OpV1, OpV5, RegionV3};
use kiln_format::{FormatError, Module, codec, from_bytes, layout, to_bytes};
use kiln_ir::{Array, Graph, NodeId, Region};
use std::collections::HashMap;

/// Runs a module's graph in the reference interpreter with its state as parameters.
fn run(m: &Module, inputs: &[(&str, Array)]) -> Vec<Array> {
    let inputs: HashMap<String, Array> = inputs
        .iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect();
    let params: HashMap<String, Array> = m.state.iter().cloned().collect();
    let outputs: Vec<NodeId> = m.outputs.iter().map(|(_, id)| *id).collect();
    kiln_interp::eval(&m.graph, &outputs, &inputs, &params).unwrap_or_else(|e| panic!("{e}"))
}

fn control_flow_inputs(steps: usize, n: i32) -> Vec<(&'static str, Array)> {
    let xs: Vec<f32> = (0..steps * 2).map(|i| i as f32 * 0.5 - 1.0).collect();
    vec![
        ("xs", Array::from_f32(&[steps, 2], xs).unwrap()),
        ("c0", Array::from_f32(&[2], vec![1.0, -3.0]).unwrap()),
        ("n", Array::from_i32(&[], vec![n]).unwrap()),
    ]
}

#[test]
fn cond_scan_while_and_nested_regions_round_trip_with_the_same_results() {
    let m = control_flow_module();
    let bytes = to_bytes(&m).unwrap();
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        kiln_format::FORMAT_VERSION
    );
    let back = from_bytes(&bytes).unwrap();
    assert_same(&m, &back);
    assert_eq!(back.graph.regions().len(), 5);
    assert_eq!(
        back.graph
            .region(kiln_ir::RegionId(0))
            .graph
            .regions()
            .len(),
        2
    );
    // Deterministic: the loaded module encodes to the same bytes.
    assert_eq!(to_bytes(&back).unwrap(), bytes);
    // The symbolic scan length binds at run time: zero, one and several steps.
    for (steps, n) in [(0, 1), (1, 6), (4, 27)] {
        let feeds = control_flow_inputs(steps, n);
        let want = run(&m, &feeds);
        let got = run(&back, &feeds);
        assert_eq!(want.len(), got.len());
        for (i, (a, b)) in want.iter().zip(&got).enumerate() {
            assert!(a.bit_eq(b), "T={steps} output {i}: {a:?} vs {b:?}");
        }
        assert_eq!(got[1].shape(), &[steps, 2]);
    }
    // Spot values: one reverse step from c0 = [1, -3] with x = [-1, -0.5], k = 2: the
    // carry is (c + x) * 0.5 (the nested cond's else branch), y = (c + x) * k; the while
    // loop counts the Collatz steps of 6.
    let out = run(&back, &control_flow_inputs(1, 6));
    assert_eq!(out[0].as_f32().unwrap(), &[0.0, -1.75]);
    assert_eq!(out[1].as_f32().unwrap(), &[0.0, -7.0]);
    assert_eq!(out[2].as_f32().unwrap(), &[-0.0, 1.75]);
    assert_eq!(out[4].as_i32().unwrap(), &[8]);
}

#[test]
fn regions_nested_to_the_depth_limit_round_trip() {
    let depth = MAX_REGION_DEPTH as usize;
    let m = nested_conds_module(depth, false);
    let back = from_bytes(&to_bytes(&m).unwrap()).unwrap();
    assert_same(&m, &back);
    let feeds = [
        ("a", Array::from_f32(&[], vec![1.5]).unwrap()),
        ("p", Array::from_bool(&[], vec![true]).unwrap()),
    ];
    assert_eq!(run(&back, &feeds)[0].as_f32().unwrap(), &[1.5]);
}

#[test]
fn a_region_no_op_runs_is_kept_in_place() {
    let mut m = control_flow_module();
    // A pass that removed a body's op leaves the region behind: ids stay as they were.
    let orphan = m.graph.region(kiln_ir::RegionId(2)).clone();
    m.graph.add_region(orphan);
    let nested = kiln_ir::RegionId(0);
    m.graph
        .region_mut(nested)
        .graph
        .add_region(Region::default());
    let back = from_bytes(&to_bytes(&m).unwrap()).unwrap();
    assert_same(&m, &back);
    assert_eq!(back.graph.regions().len(), 6);
}

#[test]
fn a_shared_body_is_saved_once_and_stays_shared() {
    let m = nested_conds_module(3, true);
    let bytes = to_bytes(&m).unwrap();
    assert_eq!(header_of(&bytes).graph.regions.len(), 3);
    assert_same(&m, &from_bytes(&bytes).unwrap());
}

/// The error of loading a control-flow file after `f` changes its header.
fn load_rewritten(f: impl FnOnce(&mut HeaderV1, &mut Vec<u8>)) -> FormatError {
    let bytes = rewrite(&to_bytes(&control_flow_module()).unwrap(), f);
    let e = from_bytes(&bytes).unwrap_err();
    assert!(!e.to_string().contains('\n'), "{e}");
    e
}

/// The op of node `id` in a node list. (In the region table of [`CONTROL_FLOW_GRAPH`] the
/// top-level r0..r4 are entries 0..4, r0's own r0 and r1 entries 5 and 6: breadth first.)
fn node_mut(list: &mut [kiln_format::v1::NodeV1], id: u32) -> &mut OpV5 {
    &mut list.iter_mut().find(|n| n.id == id).unwrap().op
}

#[test]
fn the_region_table_is_breadth_first_with_parents_first() {
    let h = header_of(&to_bytes(&control_flow_module()).unwrap());
    let parents: Vec<u32> = h.graph.regions.iter().map(|r| r.parent).collect();
    assert_eq!(parents, [0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(h.graph.regions[0].params, [0, 1, 2]);
    assert_eq!(h.graph.regions[0].results, [8, 4]);
    assert_eq!(h.graph.regions[1].results, [0, 1]);
    // Body locations share the header's file table with the top-level graph.
    assert_eq!(h.files, ["src/model.rs", "src/body.rs"]);
}

#[test]
fn region_ids_out_of_range_are_refused_naming_the_node() {
    let e = load_rewritten(|h, _| {
        *node_mut(&mut h.graph.nodes, 9) =
            op_v5("cond", vec![AttrV5::Region(1), AttrV5::Region(7)]);
    });
    assert_eq!(
        e.to_string(),
        "graph node n9: region r7 is out of range (its graph has 5 region(s))"
    );
    let e = load_rewritten(|h, _| {
        *node_mut(&mut h.graph.regions[0].nodes, 7) =
            op_v5("cond", vec![AttrV5::Region(2), AttrV5::Region(1)]);
    });
    assert_eq!(
        e.to_string(),
        "graph region r0 node n7: region r2 is out of range (its graph has 2 region(s))"
    );
    let e = load_rewritten(|h, _| {
        if let OpV5::Op { name, attrs } = node_mut(&mut h.graph.nodes, 14) {
            assert_eq!(name, "while");
            attrs[1] = AttrV5::Region(u32::MAX);
        }
    });
    assert_eq!(
        e.to_string(),
        "graph node n14: region r4294967295 is out of range (its graph has 5 region(s))"
    );
}

#[test]
fn parameters_and_results_must_be_nodes_of_their_region() {
    let e = load_rewritten(|h, _| h.graph.regions[0].results[0] = 99);
    assert_eq!(
        e.to_string(),
        "graph region r0: result n99 is not a node of the region"
    );
    let e = load_rewritten(|h, _| h.graph.regions[6].params = vec![0, 5]);
    assert_eq!(
        e.to_string(),
        "graph region r0/r1: parameter n5 is not a node of the region"
    );
    // A parameter that is a node but not an input is the verifier's finding.
    let e = load_rewritten(|h, _| h.graph.regions[2].params = vec![2, 1]);
    let msg = e.to_string();
    assert!(matches!(e, FormatError::GraphVerify { .. }), "{msg}");
    assert!(
        msg.contains("in r2: parameter n2 is not an input node of the region"),
        "{msg}"
    );
}

#[test]
fn a_region_table_must_list_parents_first() {
    let e = load_rewritten(|h, _| h.graph.regions[5].parent = 6);
    assert_eq!(
        e.to_string(),
        "graph region table entry 5: parent 6 must be 0 (the top-level graph) or an earlier entry's index plus one (at most 5)"
    );
    let e = load_rewritten(|h, _| h.graph.regions[0].parent = 1);
    assert_eq!(
        e.to_string(),
        "graph region table entry 0: parent 1 must be 0 (the top-level graph) or an earlier entry's index plus one (at most 0)"
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_before_anything_is_built() {
    let e = load_rewritten(|h, _| {
        let first = h.graph.regions.len() as u32;
        for k in 0..40 {
            h.graph.regions.push(RegionV3 {
                parent: if k == 0 { 0 } else { first + k },
                nodes: vec![],
                params: vec![],
                results: vec![],
            });
        }
    });
    let path = format!("r5{}", "/r0".repeat(MAX_REGION_DEPTH as usize));
    assert_eq!(
        e.to_string(),
        format!("graph region {path}: nesting depth 33 exceeds the limit 32")
    );
    let e = to_bytes(&nested_conds_module(MAX_REGION_DEPTH as usize + 1, false)).unwrap_err();
    let path = vec!["r0"; MAX_REGION_DEPTH as usize + 1].join("/");
    assert_eq!(
        e.to_string(),
        format!("cannot encode module: graph region {path}: nesting depth 33 exceeds the limit 32")
    );
}

#[test]
fn too_many_regions_are_refused() {
    let e = load_rewritten(|h, _| {
        h.graph.regions.resize(
            MAX_REGIONS as usize + 1,
            RegionV3 {
                parent: 0,
                nodes: vec![],
                params: vec![],
                results: vec![],
            },
        );
    });
    assert_eq!(
        e.to_string(),
        "graph: region count 65537 exceeds the limit 65536"
    );
}

#[test]
fn a_body_shared_at_every_level_cannot_make_the_verifier_walk_it_exponentially_often() {
    // 2^24 walks of a few nodes each: refused before verifying, in milliseconds.
    let start = std::time::Instant::now();
    let e = to_bytes(&nested_conds_module(24, true)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("cannot encode module: graph: verification work ")
            && msg.ends_with(&format!("exceeds the limit {MAX_VERIFY_WORK}")),
        "{msg}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    // Shallow sharing is fine.
    assert!(to_bytes(&nested_conds_module(12, true)).is_ok());
}

#[test]
fn many_gets_of_a_wide_control_op_count_as_verification_work() {
    // One cond with 4000 arguments read by 4000 gets: each get re-types the whole op.
    let n = 4000;
    let mut text = String::from("n0 = input \"p\" : bool[]\nn1 = input \"x\" : f32[]\n");
    let args = vec!["n1"; n].join(", ");
    text += &format!("n2 = cond n0, {args} then=r0 else=r0 : bool[]\n");
    for i in 0..n {
        text += &format!("n{} = get n2 index={i} : f32[]\n", 3 + i);
    }
    let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    text += &format!("r0 ({}) -> ({}) {{\n", ids.join(", "), ids.join(", "));
    for i in 0..n {
        text += &format!("  n{i} = input \"a{i}\" : f32[]\n");
    }
    text += "}\n";
    let g: Graph = kiln_ir::parse_unverified(&text).unwrap();
    let m = graph_module(g, &[NodeId(3)], &[], vec![]);
    let msg = to_bytes(&m).unwrap_err().to_string();
    assert!(msg.contains("graph: verification work"), "{msg}");
}

#[test]
fn a_region_no_op_runs_is_verified_too() {
    let e = load_rewritten(|h, _| {
        let mut r = h.graph.regions[2].clone();
        r.nodes[2].dtype = kiln_format::v1::DTypeV1::I32;
        h.graph.regions.insert(5, r);
    });
    assert_eq!(
        e.to_string(),
        "graph fails verification (1 error): in graph region r5 (run by no op): n2 (neg): stated type i32[2] differs from the inferred f32[2]"
    );
}

#[test]
fn control_flow_attributes_are_checked() {
    let e = load_rewritten(|h, _| {
        if let OpV5::Op { name, attrs } = node_mut(&mut h.graph.nodes, 3) {
            assert_eq!(name, "scan");
            attrs[1] = AttrV5::Dim("U".to_string());
        }
    });
    assert_eq!(
        e.to_string(),
        "graph node n3: symbol U is not declared in the signature"
    );
    let e = load_rewritten(|h, _| {
        *node_mut(&mut h.graph.nodes, 4) = op_v5("get", vec![AttrV5::Count(1 << 40)]);
    });
    assert_eq!(
        e.to_string(),
        "graph node n4: count attribute 1099511627776 exceeds the limit 65536"
    );
    let e = load_rewritten(|h, _| {
        if let OpV5::Op { attrs, .. } = node_mut(&mut h.graph.nodes, 3) {
            attrs[2] = AttrV5::Count(2);
        }
    });
    assert!(matches!(e, FormatError::GraphVerify { .. }), "{e}");
}

#[test]
fn region_node_ids_share_one_slot_budget() {
    let e = load_rewritten(|h, _| {
        let mut r = h.graph.regions[1].clone();
        r.nodes.truncate(1);
        r.nodes[0].id = 65_000;
        r.params = vec![65_000];
        r.results = vec![];
        for _ in 0..4 {
            h.graph.regions.push(r.clone());
        }
    });
    let msg = e.to_string();
    assert!(
        msg.starts_with("graph and its regions: node id span "),
        "{msg}"
    );
}

#[test]
fn control_flow_in_a_version_2_file_is_refused() {
    // A version 2 header (no region table) whose last node claims to be a `get`.
    let v2 = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/v2_files/interpreter_only.kiln"),
    )
    .unwrap();
    let parts = layout::split(&v2).unwrap();
    let mut h: HeaderV1<NamedV2> = codec::decode_header(parts.header).unwrap();
    let last = h.graph.nodes.last_mut().unwrap();
    last.op = OpV1::Get { index: 0 };
    let id = last.id;
    let mut bytes = layout::assemble(&codec::encode_header(&h).unwrap(), parts.data).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    layout::reseal(&mut bytes);
    assert_eq!(
        from_bytes(&bytes).unwrap_err().to_string(),
        format!("graph node n{id}: get needs format version 3 (this file is version 2)")
    );
}

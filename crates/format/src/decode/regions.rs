//! The regions of a version 3 graph (bodies of `cond`, `scan` and `while`), read from the
//! flat region table of [`RegionV3`]: the table's shape (parents first, nesting depth,
//! counts, region ids named by ops, the verifier's work) is checked before anything is
//! built; then every region graph is built, its parameters and results checked to name its
//! nodes, and the regions attached to their parents from the deepest up, with no
//! recursion. Regions no op runs (a pass removed their op) are verified here as graphs (the
//! rules a region must follow to be run, such as parameters being `input` nodes, are
//! checked when an op runs it); the rest are verified with the graph by
//! [`kiln_ir::verify()`], which recurses through the bodies an op runs.

use super::context::{Cx, Result, count};
use super::graph::{Slots, nodes};
use super::op_names::ReadOpNames;
use crate::error::{FormatError, region_path, summarize};
use crate::limits::*;
use crate::v1::*;
use kiln_ir::{Graph, NodeId, Region};
use std::collections::HashMap;

/// The checked shape of a region table. Table graph 0 is the top-level graph, table graph
/// `k + 1` the region of entry `k`.
pub(super) struct Table {
    /// Each entry's path as messages show it (`r0`, `r0/r2`).
    pub(super) paths: Vec<String>,
    /// The entries of each table graph, in region id order.
    children: Vec<Vec<usize>>,
    /// Entries no op of their parent runs.
    unused: Vec<bool>,
    /// Nodes of the top-level graph and every region.
    pub(super) total_nodes: usize,
}

/// What one table graph asks of the verifier, in [`MAX_VERIFY_WORK`] units: each node and
/// operand once; each control-flow op its fan (operands and its regions' parameters and
/// results) once for itself and once per `get` reading it; each region it runs, per run,
/// plus `setup` ([`REGION_VERIFY_WORK`] for a region graph, 0 for the top-level graph).
/// Also marks the entries its ops run and checks their region ids.
fn graph_work<N: ReadOpNames>(
    list: &[NodeV1<N>],
    what: &str,
    setup: u64,
    kids: &[usize],
    entries: &[RegionV3<N>],
    work: &[u64],
    used: &mut [bool],
) -> Result<u64> {
    let mut gets: HashMap<u32, u64> = HashMap::new();
    for n in list {
        if let (true, Some(&src)) = (N::op_ref(&n.op).is_get(), n.operands.first()) {
            *gets.entry(src).or_default() += 1;
        }
    }
    let mut total = setup;
    for n in list {
        total = total.saturating_add(1 + n.operands.len() as u64);
        let Some((name, regions)) = N::op_ref(&n.op).control() else {
            continue;
        };
        let location = || format!("{what} node n{}", n.id);
        if N::VERSION < 3 {
            return Err(FormatError::invalid(
                location(),
                format!(
                    "{name} needs format version 3 (this file is version {})",
                    N::VERSION
                ),
            ));
        }
        let mut fan = n.operands.len() as u64;
        let mut runs: u64 = 0;
        for r in regions {
            let Some(&entry) = kids.get(r as usize) else {
                return Err(FormatError::invalid(
                    location(),
                    format!(
                        "region r{r} is out of range (its graph has {} region(s))",
                        kids.len()
                    ),
                ));
            };
            used[entry] = true;
            let e = &entries[entry];
            fan = fan.saturating_add((e.params.len() + e.results.len()) as u64);
            runs = runs.saturating_add(work[entry]);
        }
        let readers = gets.get(&n.id).copied().unwrap_or(0);
        total = total
            .saturating_add(fan.saturating_mul(1 + readers))
            .saturating_add(runs);
    }
    Ok(total)
}

impl Table {
    /// Checks a graph's region table: at most [`MAX_REGIONS`] entries, each after its
    /// parent, at most [`MAX_REGION_DEPTH`] deep, with at most [`MAX_OPERANDS`] parameters
    /// and results; at most [`MAX_NODES`] nodes in all; every region id an op names in
    /// range; control flow only in version 3; at most [`MAX_VERIFY_WORK`] for the verifier.
    pub(super) fn check<N: ReadOpNames>(g: &GraphV1<N>) -> Result<Table> {
        let entries = N::region_list(&g.regions);
        count(
            entries.len(),
            MAX_REGIONS,
            || "graph".into(),
            "region count",
        )?;
        let mut paths: Vec<String> = Vec::with_capacity(entries.len());
        let mut depth: Vec<u64> = Vec::with_capacity(entries.len());
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); entries.len() + 1];
        let mut total_nodes = g.nodes.len();
        for (k, e) in entries.iter().enumerate() {
            let parent = e.parent as usize;
            if parent > k {
                return Err(FormatError::invalid(
                    format!("graph region table entry {k}"),
                    format!(
                        "parent {parent} must be 0 (the top-level graph) or an earlier entry's index plus one (at most {k})"
                    ),
                ));
            }
            let (parent_path, parent_depth) = match parent {
                0 => ("", 0),
                p => (paths[p - 1].as_str(), depth[p - 1]),
            };
            let path = region_path(parent_path, children[parent].len());
            if parent_depth + 1 > MAX_REGION_DEPTH {
                return Err(FormatError::limit(
                    format!("graph region {path}"),
                    "nesting depth",
                    parent_depth + 1,
                    MAX_REGION_DEPTH,
                ));
            }
            let location = || format!("graph region {path}");
            count(e.params.len(), MAX_OPERANDS, location, "parameter count")?;
            count(e.results.len(), MAX_OPERANDS, location, "result count")?;
            children[parent].push(k);
            paths.push(path);
            depth.push(parent_depth + 1);
            total_nodes = total_nodes.saturating_add(e.nodes.len());
        }
        count(
            total_nodes,
            MAX_NODES,
            || "graph and its regions".into(),
            "node count",
        )?;
        // Children come after their parents, so the deepest work is known first.
        let mut work = vec![0u64; entries.len()];
        let mut used = vec![false; entries.len()];
        for k in (0..entries.len()).rev() {
            let what = format!("graph region {}", paths[k]);
            work[k] = graph_work(
                &entries[k].nodes,
                &what,
                REGION_VERIFY_WORK,
                &children[k + 1],
                entries,
                &work,
                &mut used,
            )?;
        }
        let top = graph_work(
            &g.nodes,
            "graph",
            0,
            &children[0],
            entries,
            &work,
            &mut used,
        )?;
        // A region no op runs is verified once, on its own.
        let total = (0..entries.len())
            .filter(|&k| !used[k])
            .fold(top, |t, k| t.saturating_add(work[k]));
        if total > MAX_VERIFY_WORK {
            return Err(FormatError::limit(
                "graph",
                "verification work",
                total,
                MAX_VERIFY_WORK,
            ));
        }
        Ok(Table {
            paths,
            children,
            unused: used.into_iter().map(|u| !u).collect(),
            total_nodes,
        })
    }

    /// The graph with its regions: the top-level nodes, then every region built and
    /// attached to its parent, deepest first (a region's own regions are attached before it
    /// is). A region no op runs is verified once it is complete.
    pub(super) fn graph<N: ReadOpNames>(
        &self,
        cx: &Cx<'_>,
        g: &GraphV1<N>,
        files: &[String],
    ) -> Result<Graph> {
        let entries = N::region_list(&g.regions);
        let mut slots = Slots::new(self.total_nodes);
        let mut top = nodes(cx, &g.nodes, files, "graph", &mut slots)?;
        let mut built: Vec<Region> = Vec::with_capacity(entries.len());
        for (e, path) in entries.iter().zip(&self.paths) {
            let what = format!("graph region {path}");
            let graph = nodes::<N>(cx, &e.nodes, files, &what, &mut slots)?;
            let ids = |list: &[u32], role: &str| -> Result<Vec<NodeId>> {
                list.iter()
                    .map(|&id| {
                        if graph.contains(NodeId(id)) {
                            Ok(NodeId(id))
                        } else {
                            Err(FormatError::invalid(
                                what.as_str(),
                                format!("{role} n{id} is not a node of the region"),
                            ))
                        }
                    })
                    .collect()
            };
            let params = ids(&e.params, "parameter")?;
            let results = ids(&e.results, "result")?;
            built.push(Region {
                graph,
                params,
                results,
            });
        }
        for k in (0..entries.len()).rev() {
            for &child in &self.children[k + 1] {
                let r = std::mem::take(&mut built[child]);
                built[k].graph.add_region(r);
            }
            if self.unused[k]
                && let Err(errors) = kiln_ir::verify(&built[k].graph)
            {
                return Err(FormatError::GraphVerify {
                    count: errors.len(),
                    summary: format!(
                        "in graph region {} (run by no op): {}",
                        self.paths[k],
                        summarize(&errors)
                    ),
                });
            }
        }
        for &child in &self.children[0] {
            top.add_region(std::mem::take(&mut built[child]));
        }
        Ok(top)
    }
}

//! What the generated shaders may assume about the device: subgroup operations and the
//! GEMM tile shape, chosen from the adapter's features and limits by the host.

/// Invocations per workgroup of the elementwise and reduction templates.
pub(crate) const WORKGROUP: u32 = 64;

/// The tile shape of the GEMM template: a workgroup of `cols x rows` invocations, each
/// accumulating 4x4 outputs, covers a `4 * rows` by `4 * cols` tile of the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmTile {
    /// 8x8 invocations, 32x32 outputs, 4 KiB of `f32` workgroup memory: fits every
    /// WebGPU adapter (the default limits allow 256 invocations and 16 KiB).
    Small,
    /// 16x16 invocations, 64x64 outputs, 8 KiB of `f32` workgroup memory: twice the
    /// arithmetic per staged element, for adapters with 256 invocations per workgroup.
    Large,
}

impl GemmTile {
    /// Invocations along x and y of one workgroup.
    pub fn invocations(self) -> u32 {
        match self {
            GemmTile::Small => 8,
            GemmTile::Large => 16,
        }
    }

    /// Output rows (and columns) of one tile.
    pub fn outputs(self) -> u32 {
        4 * self.invocations()
    }

    /// The depth of a staged slice of the reduction axis.
    pub fn depth(self) -> u32 {
        16
    }

    /// Elements of workgroup memory the staged tiles of A and B take.
    pub fn staged_elements(self) -> u32 {
        2 * self.outputs() * self.depth()
    }
}

/// The device facts the code generator specialises for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Row reductions combine within subgroups with `subgroupAdd`/`Max`/`Min`/`Mul`
    /// before the workgroup combines one partial per subgroup, instead of a tree over
    /// every invocation in workgroup memory. Only set when the adapter has subgroups of
    /// between 4 and 64 invocations (the reduction templates' workgroup size).
    pub subgroups: bool,
    /// The GEMM template's tile for matrices of at least [`GemmTile::Large`]'s size in
    /// both output dimensions; smaller (or symbolic) products keep the small tile.
    pub gemm: GemmTile,
}

impl Target {
    /// What every WebGPU adapter allows: no subgroups, small GEMM tiles. Shaders for this
    /// target are the ones a test validates without knowing the device.
    pub const fn portable() -> Target {
        Target {
            subgroups: false,
            gemm: GemmTile::Small,
        }
    }

    /// The target for an adapter: `subgroup_sizes` is `Some((min, max))` when it has
    /// subgroup operations; the limits are its invocations per workgroup (and per axis)
    /// and its bytes of workgroup memory.
    pub fn for_adapter(
        subgroup_sizes: Option<(u32, u32)>,
        max_invocations: u32,
        max_invocations_xy: u32,
        workgroup_memory: u32,
    ) -> Target {
        let subgroups =
            subgroup_sizes.is_some_and(|(lo, hi)| lo >= 4 && hi <= WORKGROUP && lo <= hi);
        let large = GemmTile::Large;
        // The large tile must fit with 8-byte (two-word i64) accumulators.
        let fits = max_invocations >= large.invocations() * large.invocations()
            && max_invocations_xy >= large.invocations()
            && workgroup_memory >= large.staged_elements() * 8;
        Target {
            subgroups,
            gemm: if fits { large } else { GemmTile::Small },
        }
    }
}

impl Default for Target {
    fn default() -> Target {
        Target::portable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_get_what_their_limits_allow() {
        // WebGPU's default limits: 256 invocations, 256 along x and y, 16 KiB.
        let t = Target::for_adapter(Some((32, 32)), 256, 256, 16384);
        assert_eq!(
            t,
            Target {
                subgroups: true,
                gemm: GemmTile::Large
            }
        );
        // Subgroups wider than the reduction workgroup, or of unknown small size, are not
        // used; a tight workgroup-memory limit keeps the small tile.
        let t = Target::for_adapter(Some((4, 128)), 256, 256, 4096);
        assert_eq!(t, Target::portable());
        let t = Target::for_adapter(None, 128, 128, 16384);
        assert_eq!(t, Target::portable());
        assert_eq!(GemmTile::Large.outputs(), 64);
        assert_eq!(GemmTile::Small.staged_elements() * 4, 4096);
    }
}
